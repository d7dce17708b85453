"""Bulk adjustments from a CSV: a dry run writes nothing, apply is all or nothing and
applies a file once however often it is applied."""

from __future__ import annotations

import datetime as dt
import re
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from queries.bulk import (
    MAX_ROWS,
    BulkPlan,
    apply_bulk,
    parse_expiry,
    parse_file,
    parse_priority,
    plan_bulk,
)
from queries.errors import BulkRejected, InvalidAdjustment
from queries.grants import credit_grants
from tests.queries.writes import invariant_holds, new_org, snapshot

ANA = "ana@finance.example"
BEN = "ben@finance.example"


def _slug(engine: Engine, org: int) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                text("SELECT slug FROM organizations WHERE id = :org"), {"org": org}
            ).scalar_one()
        )


def _csv(*rows: str, header: str = "organization,amount,reason,note,key") -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def _plan(engine: Engine, data: bytes):  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return plan_bulk(conn, data=data)


def test_dry_run_shows_balances_counting_earlier_rows_and_writes_nothing(
    write_engine: Engine,
) -> None:
    a, _ = new_org(write_engine, balance=1000)
    b, _ = new_org(write_engine, balance=50)
    sa, sb = _slug(write_engine, a), _slug(write_engine, b)
    data = _csv(
        f"{sa},500,Goodwill,,",
        f"{sb},-30,Correction,,",
        f'{sa},"-1,200",Clawback,a note,',
        f"{sb},-30,Second correction,,",
    )
    before = (snapshot(write_engine, a), snapshot(write_engine, b))
    plan = _plan(write_engine, data)
    assert (snapshot(write_engine, a), snapshot(write_engine, b)) == before
    assert [(r.line, r.status, r.balance_before, r.balance_after) for r in plan.rows] == [
        (2, "apply", 1000, 1500),
        (3, "apply", 50, 20),
        (4, "apply", 1500, 300),
        (5, "error", 20, 20),  # 50 - 30 leaves 20: the second deduction does not fit
    ]
    assert [line for line, _ in plan.errors] == [5]
    assert "Insufficient credits" in plan.errors[0][1]
    assert not plan.ok


@pytest.mark.parametrize(
    ("row", "fragment"),
    [
        ("no-such-org,10,Top-up,,", "no organization with the slug"),
        ("{slug},1.5,Top-up,,", "whole number"),
        ("{slug},1e3,Top-up,,", "whole number"),
        ("{slug},abc,Top-up,,", "whole number"),
        ("{slug},0,Top-up,,", "cannot be zero"),
        ("{slug},10,   ,,", "reason cannot be empty"),
        ("{slug},,Top-up,,", "Enter the amount"),
        ("{slug},10,Top\x00up,,", "NUL"),
        ("{slug},10,Top-up\u202e,,", "control character"),
        ("{slug},-2000,Clawback,,", "Insufficient credits"),
    ],
)
def test_each_kind_of_bad_row_is_an_error_with_its_line_and_applies_nothing(
    write_engine: Engine, row: str, fragment: str
) -> None:
    org, _ = new_org(write_engine, balance=1000)
    slug = _slug(write_engine, org)
    data = _csv(f"{slug},10,Fine row,,", row.format(slug=slug))
    plan = _plan(write_engine, data)
    assert [line for line, _ in plan.errors] == [3]
    assert fragment in plan.errors[0][1]
    before = snapshot(write_engine, org)
    with pytest.raises(BulkRejected) as rejected:
        apply_bulk(write_engine, data=data, actor=ANA)
    assert rejected.value.errors[0][0] == 3
    # One bad row and nothing of the file is applied, not even the good first row.
    assert snapshot(write_engine, org) == before


def test_apply_twice_applies_once_and_reports_the_existing_entries(write_engine: Engine) -> None:
    org, _ = new_org(write_engine, balance=100)
    slug = _slug(write_engine, org)
    data = _csv(f"{slug},40,Goodwill,,", f"{slug},-100,Correction,from the sheet,")
    first = apply_bulk(write_engine, data=data, actor=ANA)
    assert [r.status for r in first.rows] == ["applied", "applied"]
    assert [r.balance_after for r in first.rows] == [140, 40]
    after_first = snapshot(write_engine, org)
    assert after_first["balance"] == 40
    # Applied again, even by someone else: the same entries, nothing changes.
    second = apply_bulk(write_engine, data=data, actor=BEN)
    assert [r.status for r in second.rows] == ["exists", "exists"]
    assert [r.entry_id for r in second.rows] == [r.entry_id for r in first.rows]
    assert snapshot(write_engine, org) == after_first
    assert invariant_holds(write_engine, org)
    with write_engine.connect() as conn:
        actors = conn.execute(
            text(
                "SELECT actor, reason, note, kind FROM credit_ledger "
                "WHERE organization_id = :org AND idempotency_key LIKE 'bulk:%' ORDER BY id"
            ),
            {"org": org},
        ).all()
    # Audited like a single adjustment: who, why, and the note.
    assert [tuple(r) for r in actors] == [
        (ANA, "Goodwill", None, "grant"),
        (ANA, "Correction", "from the sheet", "deduct"),
    ]


def test_a_given_key_makes_the_row_idempotent_across_files(write_engine: Engine) -> None:
    org, _ = new_org(write_engine, balance=0)
    slug = _slug(write_engine, org)
    apply_bulk(write_engine, data=_csv(f"{slug},10,Top-up,,k-1"), actor=ANA)
    # Another file (another hash) with the same key and row: the entry exists already.
    again = apply_bulk(
        write_engine, data=_csv(f"{slug},10,Top-up,,k-1", f"{slug},5,More,,"), actor=ANA
    )
    assert [r.status for r in again.rows] == ["exists", "applied"]
    assert snapshot(write_engine, org)["balance"] == 15
    # The same key with other details is an error, never a silent skip.
    plan = _plan(write_engine, _csv(f"{slug},11,Top-up,,k-1"))
    assert "already used by ledger entry" in plan.errors[0][1]
    # And the same key twice in one file.
    plan = _plan(write_engine, _csv(f"{slug},1,A,,k-2", f"{slug},2,B,,k-2"))
    assert plan.errors == ((3, "The key 'k-2' is already on line 2."),)


def test_rows_above_the_threshold_become_requests_in_the_same_transaction(
    write_engine: Engine,
) -> None:
    org, _ = new_org(write_engine, balance=10)
    slug = _slug(write_engine, org)
    data = _csv(f"{slug},250000,Enterprise renewal,,", f"{slug},5,Goodwill,,")
    plan = _plan(write_engine, data)
    assert plan.ok
    assert [(r.status, r.balance_before, r.balance_after) for r in plan.rows] == [
        ("request", 10, 10),  # nothing moves until a second person approves it
        ("apply", 10, 15),
    ]
    done = apply_bulk(write_engine, data=data, actor=ANA)
    assert [r.status for r in done.rows] == ["requested", "applied"]
    with write_engine.connect() as conn:
        request = conn.execute(
            text("SELECT amount, requested_by, status FROM approval_requests WHERE id = :id"),
            {"id": done.rows[0].request_id},
        ).one()
        audit = conn.execute(
            text("SELECT action, actor FROM audit_log WHERE organization_id = :org"),
            {"org": org},
        ).all()
    assert tuple(request) == (250_000, ANA, "pending")
    # The request's own row, and the file's row saying who applied it from where.
    assert [tuple(a) for a in audit] == [("request_adjustment", ANA), ("bulk_adjust", ANA)]
    again = apply_bulk(write_engine, data=data, actor=ANA)
    assert [(r.status, r.request_id) for r in again.rows] == [
        ("exists", done.rows[0].request_id),
        ("exists", None),
    ]
    assert snapshot(write_engine, org)["balance"] == 15


def test_hostile_text_is_kept_as_data(write_engine: Engine) -> None:
    org, _ = new_org(write_engine, balance=0)
    slug = _slug(write_engine, org)
    hostile = "<script>alert(1)</script> **bold** =cmd|' /C calc'!A0 '; DROP TABLE x; --"
    data = _csv(f'{slug},7,"{hostile.replace(chr(34), chr(34) * 2)}","line 1\nline 2",')
    done = apply_bulk(write_engine, data=data, actor=ANA)
    assert done.rows[0].reason == hostile
    assert done.rows[0].note == "line 1\nline 2"
    assert done.rows[0].line == 2


def test_the_apply_actor_is_checked(write_engine: Engine) -> None:
    with pytest.raises(InvalidAdjustment):
        apply_bulk(write_engine, data=_csv("x,1,y,,"), actor="  ")


@pytest.mark.parametrize(
    ("data", "line", "fragment"),
    [
        (b"", 1, "empty"),
        (b"organization,amount,reason\n", 2, "no rows"),
        (b"organization,amount\nacme,1\n", 1, "lacks the column reason"),
        (b"organization,amount,reason,colour\n", 1, "Unknown column 'colour'"),
        (b"organization,amount,reason\nacme,1,ok\n\xff\xfe,2,x\n", 3, "not UTF-8"),
        (b'organization,amount,reason\nacme,1,"open\n', 2, "not valid CSV"),
        (b"organization,amount,reason\nacme,1,ok,extra\n", 2, "4 fields"),
    ],
)
def test_file_problems_have_a_line_number(data: bytes, line: int, fragment: str) -> None:
    parsed = parse_file(data)
    problems = [*parsed.errors, *((r.line, e) for r in parsed.rows for e in r.errors)]
    assert problems and problems[0][0] == line
    assert fragment in problems[0][1]


def test_the_row_cap() -> None:
    data = _csv(*(f"acme,{n + 1},Top-up,," for n in range(MAX_ROWS + 1)))
    parsed = parse_file(data)
    assert parsed.errors == (
        (MAX_ROWS + 2, f"The file has more than {MAX_ROWS:,} rows; split it."),
    )


def test_derived_keys_depend_on_the_file_and_the_line() -> None:
    one = parse_file(_csv("acme,1,A,,", "acme,1,A,,"))
    two = parse_file(_csv("acme,1,A,,", "acme,1,A,,", "acme,2,B,,"))
    keys = [r.key for r in one.rows]
    assert len(set(keys)) == 2
    assert keys == [r.key for r in parse_file(_csv("acme,1,A,,", "acme,1,A,,")).rows]
    assert not set(keys) & {r.key for r in two.rows}


_FIELD = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["acme", "-5", "0", "1,000", "1.5", "", " ", '"', "\x00", "\u202e", "é"]),
    st.integers(-(10**20), 10**20).map(str),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    header=st.one_of(
        st.just("organization,amount,reason,note,key"),
        st.just("organization,amount,reason,expires_at,priority"),
        st.lists(
            st.sampled_from(
                ["organization", "amount", "reason", "x", "", "expires_at", "priority"]
            ),
            max_size=6,
        ).map(",".join),
    ),
    rows=st.lists(st.lists(_FIELD, max_size=7), max_size=6),
    garbage=st.binary(max_size=40),
)
def test_random_files_never_crash_never_write_and_every_problem_has_a_line(
    write_engine: Engine, header: str, rows: list[list[str]], garbage: bytes
) -> None:
    body = "\n".join([header, *(",".join(row) for row in rows)]).encode("utf-8", "replace")
    for data in (body, body + garbage, garbage):
        with write_engine.connect() as conn:
            plan = plan_bulk(conn, data=data)
            # A dry run opens no write: its transaction has no transaction id.
            assert conn.execute(text("SELECT pg_current_xact_id_if_assigned()")).scalar() is None
        lines = {r.line for r in plan.rows}
        for line, message in plan.errors:
            assert line >= 1 and message
        for row in plan.rows:
            assert (row.status == "error") == bool(row.errors)
        assert all(r.line in lines or r.line >= 1 for r in plan.rows)


def test_the_same_file_applied_concurrently_applies_once(write_engine: Engine) -> None:
    a, _ = new_org(write_engine, balance=100)
    b, _ = new_org(write_engine, balance=100)
    sa, sb = _slug(write_engine, a), _slug(write_engine, b)
    # Rows of both organizations in both orders: the locks are taken in id order anyway.
    data = _csv(f"{sb},-10,Fee,,", f"{sa},5,Goodwill,,", f"{sb},3,Refund,,")
    results: list[object] = []

    def run() -> None:
        try:
            results.append(apply_bulk(write_engine, data=data, actor=ANA))
        except Exception as exc:  # collected and checked below
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    plans = [r for r in results if isinstance(r, BulkPlan)]
    assert len(plans) == 4, results
    statuses = sorted(tuple(r.status for r in p.rows) for p in plans)
    assert statuses[0] == ("applied", "applied", "applied")
    assert statuses[1:] == [("exists", "exists", "exists")] * 3
    balances = (snapshot(write_engine, a)["balance"], snapshot(write_engine, b)["balance"])
    assert balances == (105, 93)
    assert invariant_holds(write_engine, a) and invariant_holds(write_engine, b)


# --------------------------------------------------------------- a grant's terms
TERMS = "organization,amount,reason,note,key,expires_at,priority"
KATHMANDU = dt.timezone(dt.timedelta(hours=5, minutes=45))


def test_rows_grant_with_the_expiry_and_priority_of_their_columns(write_engine: Engine) -> None:
    org, _ = new_org(write_engine, balance=0)
    slug = _slug(write_engine, org)
    data = _csv(
        f"{slug},100,Promotion,,,2099-01-06T05:45:00+05:45,5",
        f"{slug},200,Promotion,,,2099-01-06,",  # a date alone: 00:00 UTC that day
        f"{slug},300,Top-up,,,,0",
        f"{slug},400,Top-up,,,,",
        header=TERMS,
    )
    done = apply_bulk(write_engine, data=data, actor=ANA)
    midnight = dt.datetime(2099, 1, 6, tzinfo=dt.UTC)
    assert [(r.status, r.expires_at, r.priority) for r in done.rows] == [
        ("applied", midnight, 5),
        ("applied", midnight, None),
        ("applied", None, 0),
        ("applied", None, None),
    ]
    with write_engine.connect() as conn:
        grants = {g.ledger_entry_id: g for g in credit_grants(conn, organization_id=org)}
    made = [grants[r.entry_id] for r in done.rows]
    assert [(g.amount, g.expires_at, g.priority, g.source) for g in made] == [
        (100, midnight, 5, "bulk"),
        (200, midnight, 10, "bulk"),
        (300, None, 0, "bulk"),
        (400, None, 10, "bulk"),
    ]
    # The same file again: the same entries, nothing changes.
    assert [r.status for r in apply_bulk(write_engine, data=data, actor=ANA).rows] == ["exists"] * 4
    assert invariant_holds(write_engine, org)


def test_a_request_from_a_file_keeps_the_rows_terms_for_its_approval(
    write_engine: Engine,
) -> None:
    org, _ = new_org(write_engine, balance=10)
    slug = _slug(write_engine, org)
    data = _csv(f"{slug},250000,Enterprise renewal,,,2099-01-06Z,7", header=TERMS)
    assert parse_file(data).rows[0].errors  # "2099-01-06Z" is neither form
    data = _csv(f"{slug},250000,Enterprise renewal,,,2099-01-06T00:00Z,7", header=TERMS)
    (row,) = apply_bulk(write_engine, data=data, actor=ANA).rows
    assert row.status == "requested"
    with write_engine.connect() as conn:
        terms = conn.execute(
            text("SELECT grant_expires_at, grant_priority FROM approval_requests WHERE id = :id"),
            {"id": row.request_id},
        ).one()
    assert tuple(terms) == (dt.datetime(2099, 1, 6, tzinfo=dt.UTC), 7)


@pytest.mark.parametrize(
    ("cells", "fragment"),
    [
        ("10,Promo,,,2099-01-06T00:00,", "expires_at '2099-01-06T00:00' has no UTC offset"),
        ("10,Promo,,,2099-02-30,", "expires_at '2099-02-30' is not a real date"),
        ("10,Promo,,,next week,", "expires_at 'next week' is not a date and time"),
        ("10,Promo,,,2001-01-06T00:00Z,", "expires_at 2001-01-06 00:00 UTC has passed"),
        ("10,Promo,,,,256", "priority '256' must be a whole number from 0 to 255"),
        ("10,Promo,,,,-1", "priority '-1'"),
        ("-10,Clawback,,,,5", "Only a grant (a positive amount)"),
        ("-10,Clawback,,,2099-01-06,", "Only a grant (a positive amount)"),
    ],
)
def test_bad_terms_are_row_errors_naming_the_column_and_nothing_is_applied(
    write_engine: Engine, cells: str, fragment: str
) -> None:
    org, _ = new_org(write_engine, balance=1000)
    slug = _slug(write_engine, org)
    data = _csv(f"{slug},10,Fine row,,,,", f"{slug},{cells}", header=TERMS)
    plan = _plan(write_engine, data)
    assert [line for line, _ in plan.errors] == [3]
    assert fragment in plan.errors[0][1]
    before = snapshot(write_engine, org)
    with pytest.raises(BulkRejected) as rejected:
        apply_bulk(write_engine, data=data, actor=ANA)
    assert rejected.value.errors[0][0] == 3
    assert snapshot(write_engine, org) == before


def test_a_key_used_with_other_terms_is_a_conflict(write_engine: Engine) -> None:
    org, _ = new_org(write_engine, balance=0)
    slug = _slug(write_engine, org)
    apply_bulk(write_engine, data=_csv(f"{slug},10,Promo,,k-t,,5", header=TERMS), actor=ANA)
    plan = _plan(write_engine, _csv(f"{slug},10,Promo,,k-t,,6", header=TERMS))
    assert "already used" in plan.errors[0][1]


# Property tests of the two columns' parsing: anything typed is either a valid value
# or an InvalidAdjustment sentence naming the column, never a crash.
_VALID_EXPIRY = st.datetimes(
    min_value=dt.datetime(2000, 1, 2), max_value=dt.datetime(2099, 12, 30)
).map(lambda d: d.replace(microsecond=0))
_OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda m: dt.timezone(dt.timedelta(minutes=m)))


@given(st.text(max_size=40))
def test_random_text_as_an_expiry_is_a_sentence_or_an_aware_utc_time(raw: str) -> None:
    try:
        parsed = parse_expiry(raw)
    except InvalidAdjustment as exc:
        assert "expires_at" in str(exc)
    else:
        assert parsed is None or parsed.utcoffset() == dt.timedelta(0)
        assert parsed is not None or not raw.strip()


@given(_VALID_EXPIRY, _OFFSETS)
def test_every_time_with_an_offset_parses_to_the_same_instant(
    naive: dt.datetime, zone: dt.timezone
) -> None:
    aware = naive.replace(tzinfo=zone)
    expected = aware.astimezone(dt.UTC)
    if (
        not dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
        <= expected
        < dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
    ):
        return
    for text_ in (aware.isoformat(), aware.isoformat(sep=" ")):
        assert parse_expiry(text_) == expected
    if zone.utcoffset(None) == dt.timedelta(0):
        assert parse_expiry(naive.isoformat() + "Z") == expected
    # The same time without its offset is refused: its day would be a guess.
    with pytest.raises(InvalidAdjustment, match="no UTC offset"):
        parse_expiry(naive.isoformat())


@given(st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2099, 12, 31)))
def test_a_date_alone_is_the_start_of_that_day_in_utc(day: dt.date) -> None:
    assert parse_expiry(day.isoformat()) == dt.datetime.combine(day, dt.time(), dt.UTC)


@given(st.one_of(st.text(max_size=8), st.integers(-1000, 1000).map(str), st.just("0007")))
def test_random_text_as_a_priority_is_a_sentence_or_0_to_255(raw: str) -> None:
    try:
        parsed = parse_priority(raw)
    except InvalidAdjustment as exc:
        assert "priority" in str(exc)
        typed = raw.strip()
        assert not (re.fullmatch("[0-9]{1,3}", typed) and int(typed) <= 255)
    else:
        assert parsed is None if not raw.strip() else parsed == int(raw.strip())
        assert parsed is None or 0 <= parsed <= 255
