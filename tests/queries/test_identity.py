"""One canonical form of a person, the same in Python and in the database."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from queries.bulk import parse_file
from queries.credits import adjust_credits
from queries.errors import InvalidAdjustment, InvalidInput
from queries.identity import canonical_identity, same_person, stored_identity
from tests.factories import make_org
from tests.queries.writes import new_org

_DB = text("SELECT canonical_identity(:value)")


def _database(connection: Connection, value: str) -> str | None:
    """The database's canonical form, or None when it refuses the value."""
    savepoint = connection.begin_nested()
    try:
        folded = connection.execute(_DB, {"value": value}).scalar_one()
    except DBAPIError:
        savepoint.rollback()
        return None
    savepoint.commit()
    return str(folded)


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        ("ANA@Example.com", "ana@example.com"),
        ("  ana@example.com ", "ana@example.com"),
        ("ＡＮＡ@ｅｘａｍｐｌｅ.com", "ana@example.com"),  # full-width, NFKC
        ("Straße@example.com", "strasse@example.com"),  # full case folding
        ("ΣΟΦΊΑ@example.com", "σοφία@example.com"),
        ("ana\u00a0b@example.com", "ana b@example.com"),  # a no-break space is a space
    ],
)
def test_spellings_of_one_person_have_one_form_in_python_and_in_the_database(
    connection: Connection, typed: str, canonical: str
) -> None:
    assert canonical_identity(typed) == canonical
    assert _database(connection, typed) == canonical


@pytest.mark.parametrize(
    "typed",
    [
        "ana@example.com\u200b",  # zero-width space (Cf)
        "\u202eana@example.com",  # right-to-left override (Cf)
        "ana\t@example.com",  # control (Cc)
        "ana\u2028@example.com",  # line separator (Zl)
        "ana\u1680b@example.com",  # a space other than a space, after NFKC
        "\ue000ana@example.com",  # private use (Co)
        "   ",
        "",
    ],
)
def test_an_identity_with_an_invisible_character_is_refused_in_both_places(
    connection: Connection, typed: str
) -> None:
    with pytest.raises(InvalidInput):
        canonical_identity(typed)
    assert _database(connection, typed) is None


def test_an_unassigned_code_point_is_refused_in_python() -> None:
    assert unicodedata.category("\U000e0080") == "Cn"
    with pytest.raises(InvalidInput, match="invisible or control"):
        canonical_identity("ana\U000e0080@example.com")


def test_same_person_compares_canonical_forms() -> None:
    assert same_person("ANA@Example.com", "ana@example.com")
    assert not same_person("ana@example.com", "anna@example.com")
    with pytest.raises(InvalidInput):
        same_person("ana@example.com\u200b", "ana@example.com")


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(min_size=1, max_size=24))
def test_python_and_the_database_agree_on_every_text(connection: Connection, value: str) -> None:
    if "\x00" in value:  # PostgreSQL text cannot hold NUL; Python refuses it (Cc)
        with pytest.raises(InvalidInput):
            canonical_identity(value)
        return
    try:
        expected: str | None = canonical_identity(value)
    except InvalidInput:
        expected = None
    found = _database(connection, value)
    if expected is None:
        # The database refuses the same characters, except code points Unicode 14
        # leaves unassigned (Python refuses those; the database cannot know them).
        assert found is None or any(unicodedata.category(c) == "Cn" for c in value)
    else:
        assert found == expected


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.text(
        alphabet=st.characters(
            categories=["Lu", "Ll", "Lt", "Lm", "Lo", "Nd", "Pc", "Pd", "So", "Mn", "Zs"]
        ),
        min_size=1,
        max_size=12,
    )
)
def test_letters_of_every_script_fold_alike(connection: Connection, value: str) -> None:
    try:
        expected: str | None = canonical_identity(value)
    except InvalidInput:
        expected = None
    found = _database(connection, value)
    if expected is not None:
        assert found == expected


# ----------------------------------------------------------------- the two-person check


def test_the_database_refuses_a_decision_by_the_requester_under_another_spelling(
    connection: Connection,
) -> None:
    org = make_org(connection)
    request = connection.execute(
        text(
            "INSERT INTO approval_requests (organization_id, amount, reason, requested_by, "
            "idempotency_key, expires_at) "
            "VALUES (:org, 500000, 'launch', 'ana@example.com', 'k-1', now() + interval '1 day') "
            "RETURNING id"
        ),
        {"org": org},
    ).scalar_one()
    with pytest.raises(IntegrityError, match="ck_approval_requests_two_people"):
        connection.execute(
            text(
                "UPDATE approval_requests SET status = 'rejected', decided_by = 'ANA@Example.COM', "
                "decided_at = now(), decision_reason = 'no' WHERE id = :id"
            ),
            {"id": request},
        )


# ------------------------------------------------------------------- derived key shapes


@pytest.mark.parametrize(
    ("key", "reverses"),
    [
        ("approval:15", False),  # an approval entry's key, on a row that applies no request
        ("reversal:1", False),  # a reversal's key, on a row that reverses nothing
        ("bulk:not-a-digest:1", False),
    ],
)
def test_the_ledger_refuses_a_derived_key_on_a_row_it_does_not_belong_to(
    connection: Connection, key: str, reverses: bool
) -> None:
    org = make_org(connection)
    with pytest.raises(IntegrityError, match="ck_credit_ledger_derived_keys"):
        connection.execute(
            text(
                "INSERT INTO credit_ledger (organization_id, amount, balance_after, kind, reason, "
                "actor, idempotency_key) VALUES (:org, 100, 100, 'grant', 'squat', "
                "'mallory@example.com', :key)"
            ),
            {"org": org, "key": key},
        )


@pytest.mark.parametrize("key", ["approval:15", "reversal:119", "bulk:0123:4"])
def test_a_request_cannot_take_a_derived_key(connection: Connection, key: str) -> None:
    org = make_org(connection)
    with pytest.raises(IntegrityError, match="ck_approval_requests_derived_keys"):
        connection.execute(
            text(
                "INSERT INTO approval_requests (organization_id, amount, reason, requested_by, "
                "idempotency_key, expires_at) "
                "VALUES (:org, 500000, 'x', 'ana@example.com', :key, now() + interval '1 day')"
            ),
            {"org": org, "key": key},
        )


@pytest.mark.parametrize("key", ["approval:15", "reversal:119", "bulk:x"])
def test_a_caller_key_of_a_derived_shape_is_refused_with_a_sentence(
    write_engine: Engine, key: str
) -> None:
    org, _ = new_org(write_engine, balance=0)
    with pytest.raises(InvalidAdjustment, match="made by the dashboard itself"):
        adjust_credits(
            write_engine,
            organization_id=org,
            amount=100,
            reason="squat",
            actor="mallory@example.com",
            idempotency_key=key,
        )
    parsed = parse_file(f"organization,amount,reason,key\nacme,100,squat,{key}\n".encode())
    assert any("made by the dashboard itself" in e for row in parsed.rows for e in row.errors)


@pytest.mark.parametrize(
    "stored",
    [
        "ana@example.com\u200b",  # written before identities were canonical
        "ANA@Example.com",
        "\u202eANA@example.com ",
        "ana@exam\x07ple.com",
    ],
)
def test_a_stored_identity_from_before_is_read_as_the_same_person_in_both_places(
    connection: Connection, stored: str
) -> None:
    assert stored_identity(stored) == "ana@example.com"
    folded = connection.execute(
        text("SELECT stored_identity(:value)"), {"value": stored}
    ).scalar_one()
    assert folded == "ana@example.com"


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(alphabet=st.characters(exclude_categories=["Cn", "Cs"]), max_size=16))
def test_stored_identity_agrees_in_python_and_the_database(
    connection: Connection, value: str
) -> None:
    if "\x00" in value:
        return  # PostgreSQL text cannot hold NUL
    expected = stored_identity(value) or None
    found = connection.execute(
        text("SELECT stored_identity(:value)"), {"value": value}
    ).scalar_one()
    assert found == expected
