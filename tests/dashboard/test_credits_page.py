"""Credits page: balance and ledger, the adjustment form (once per key, refused when
invalid or not allowed), and reversing an entry."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, text
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Button

import queries.credits
from dashboard import actions, auth
from queries.approvals import approve, request_adjustment
from queries.credits import adjust_credits
from queries.errors import OutcomeUnknown
from tests.dashboard.apptest import make_app, open_page, page_file, plain, scalar, table_with, texts
from tests.dashboard.hostile import MARKUP, rename
from tests.dashboard.shown import readable, shown
from tests.factories import make_org

PENDING = "credits.pending"


def first_org(engine: Engine) -> int:
    return int(scalar(engine, "SELECT id FROM organizations ORDER BY name, id LIMIT 1"))


def balance(engine: Engine, org: int) -> int:
    return int(
        scalar(engine, "SELECT balance FROM credit_balances WHERE organization_id = :o", o=org)
    )


def ledger_rows(engine: Engine, org: int) -> int:
    return int(
        scalar(engine, "SELECT count(*) FROM credit_ledger WHERE organization_id = :o", o=org)
    )


def credits_page(org: int, *, role: str = "finance") -> AppTest:
    at = make_app(role=role, email=f"{role}@example.com", query={"org": str(org)})
    return open_page(at, "credits")


def button(at: AppTest, label: str) -> Button:
    matches = [b for b in at.button if b.label.startswith(label)]
    assert matches, f"no button {label!r}; buttons: {[b.label for b in at.button]}"
    return matches[0]


def review(
    at: AppTest,
    *,
    direction: str = "grant",
    amount: int | str | None = 500,
    reason: str | None = "Goodwill gesture",
    note: str = "",
) -> AppTest:
    at.radio(key="credits.direction").set_value(direction)
    at.text_input(key="credits.amount").input("" if amount is None else str(amount))
    if reason is not None:
        at.selectbox(key="credits.reason").set_value(reason)
    at.text_area(key="credits.note").input(note)
    button(at, "Review adjustment").click()
    return at.run()


def confirm(at: AppTest) -> AppTest:
    button(at, "Confirm").click()
    return at.run()


@pytest.fixture
def org(fresh_url: str, fresh_engine: Engine, use_database: Callable[[str], None]) -> int:
    use_database(fresh_url)
    return first_org(fresh_engine)


def test_the_page_shows_balance_burn_rate_runway_and_the_ledger(
    org: int, fresh_engine: Engine
) -> None:
    at = credits_page(org)
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Balance"] == f"{balance(fresh_engine, org):,} credits"
    assert {"Burn rate", "Runway"} <= metrics.keys()
    ledger = table_with(at, "Balance after")
    assert ledger["Entry"].notna().all()
    # No note, nothing reversed: blank cells, not "None".
    assert not ledger["Reversal"].isna().any()
    (shown,) = [d for d in at.dataframe if "Balance after" in d.value.columns]
    assert shown.proto.placeholder == ""
    assert any(b.proto.label.startswith("Download CSV") for b in at.get("download_button"))


def test_the_runway_tile_counts_credits_that_expire_before_the_burn_uses_them(
    org: int, fresh_engine: Engine
) -> None:
    # A promotion far beyond what the burn can use in the two days before it expires.
    with fresh_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO credit_ledger (organization_id, amount, kind, reason, actor, "
                "idempotency_key, grant_expires_at, grant_priority) VALUES (:o, 5000000, "
                "'grant', 'Launch promotion', 'finance@example.com', 'tile-promo', "
                "now() + interval '2 days', 0)"
            ),
            {"o": org},
        )
    at = credits_page(org)
    assert not at.exception
    [tile] = [m for m in at.metric if m.label == "Runway"]
    assert "expire" in tile.proto.help, tile.proto.help


def test_the_runway_tile_of_an_idle_organization_says_when_its_last_credits_expire(
    fresh_url: str, fresh_engine: Engine, use_database: Callable[[str], None]
) -> None:
    # Nothing consumed, and all of its credits one promotion that expires in 5 days (of
    # the database's clock, which the page reads).
    use_database(fresh_url)
    with fresh_engine.begin() as conn:
        org = make_org(conn, name="Idle Promotion Org", timezone="Asia/Kathmandu")
        expires = conn.execute(
            text(
                "INSERT INTO credit_ledger (organization_id, amount, kind, reason, actor, "
                "idempotency_key, grant_expires_at) VALUES (:o, 8000, 'grant', "
                "'Launch promotion', 'finance@example.com', 'idle-promo', "
                "now() + interval '5 days') RETURNING grant_expires_at"
            ),
            {"o": org},
        ).scalar_one()
    on = expires.astimezone(ZoneInfo("Asia/Kathmandu"))
    at = credits_page(org)
    assert not at.exception
    [tile] = [m for m in at.metric if m.label == "Runway"]
    assert tile.value == "5 days"
    assert tile.proto.help == (
        f"Nothing was consumed recently, yet the balance runs out on {on.day} {on:%b}, "
        "when 8,000 credits expire (the organization's own dates)."
    )


def test_a_valid_grant_writes_one_ledger_row_and_shows_the_new_balance(
    org: int, fresh_engine: Engine
) -> None:
    before, rows = balance(fresh_engine, org), ledger_rows(fresh_engine, org)
    at = review(credits_page(org), amount=750, reason="Goodwill gesture", note="ticket 42")

    shown = {m.label: m.value for m in at.metric}
    assert shown["Balance now"] == f"{before:,}"
    assert shown["Balance after"] == f"{before + 750:,}"
    assert ledger_rows(fresh_engine, org) == rows, "reviewing must not write"

    at = confirm(at)
    assert not at.exception
    assert ledger_rows(fresh_engine, org) == rows + 1
    assert balance(fresh_engine, org) == before + 750
    (success,) = texts(at, "success")
    assert f"New balance: {before + 750:,} credits" in success
    assert (
        scalar(
            fresh_engine,
            "SELECT actor || '|' || reason || '|' || note || '|' || amount FROM credit_ledger "
            "WHERE organization_id = :o ORDER BY id DESC LIMIT 1",
            o=org,
        )
        == "finance@example.com|Goodwill gesture|ticket 42|750"
    )
    # The page reads the new balance at once (caches were cleared after the write).
    assert {m.label: m.value for m in at.metric}["Balance"] == f"{before + 750:,} credits"


def test_confirming_twice_or_rerunning_writes_one_row(org: int, fresh_engine: Engine) -> None:
    before, rows = balance(fresh_engine, org), ledger_rows(fresh_engine, org)
    at = review(credits_page(org), direction="deduct", amount=10, reason="Billing correction")
    pending = at.session_state[PENDING]
    assert isinstance(pending, actions.AdjustmentRequest) and pending.amount == -10

    at = confirm(at)
    at.run()  # a rerun
    at.run()
    assert ledger_rows(fresh_engine, org) == rows + 1

    # A second click that arrives with the same request (a double click, or a retry
    # after the first response was lost) carries the same idempotency key.
    at.session_state[PENDING] = pending
    at.run()
    at = confirm(at)
    assert not at.exception
    assert ledger_rows(fresh_engine, org) == rows + 1
    assert balance(fresh_engine, org) == before - 10
    assert any(f"New balance: {before - 10:,}" in s for s in texts(at, "success"))


def test_the_next_adjustment_gets_a_new_idempotency_key(org: int, fresh_engine: Engine) -> None:
    rows = ledger_rows(fresh_engine, org)
    at = confirm(review(credits_page(org), amount=5))
    at = confirm(review(at, amount=5))
    assert ledger_rows(fresh_engine, org) == rows + 2


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"amount": None}, "Enter the number of credits"),
        ({"amount": 0}, "at least 1"),
        ({"amount": -5}, "whole number such as 1500"),
        ({"amount": 10_000_001}, "at most 10,000,000 credits"),
        ({"reason": None}, "Choose a reason"),
        ({"reason": actions.OTHER}, "explain the reason in the note"),
        ({"note": "x" * 2001}, "The note is too long"),
        ({"direction": "deduct", "amount": 9_999_999}, "Insufficient credits"),
    ],
    ids=[
        "empty",
        "zero",
        "negative",
        "too-large",
        "no-reason",
        "other-without-note",
        "note-too-long",
        "deduct-more-than-balance",
    ],
)
def test_an_invalid_adjustment_shows_an_error_and_writes_nothing(
    org: int, fresh_engine: Engine, changes: dict[str, object], error: str
) -> None:
    rows, before = ledger_rows(fresh_engine, org), balance(fresh_engine, org)
    form: dict[str, object] = {
        "direction": "grant",
        "amount": 100,
        "reason": "Goodwill gesture",
        "note": "",
    } | changes
    at = credits_page(org)
    if form["reason"] is None:
        at.selectbox(key="credits.reason").set_value(None)
    at = review(
        at,
        direction=str(form["direction"]),
        amount=form["amount"] if isinstance(form["amount"], int | str) else None,
        reason=form["reason"] if isinstance(form["reason"], str) else None,
        note=str(form["note"]),
    )
    assert not at.exception
    errors = shown(at, "error")
    assert any(error in e and "Nothing was changed" in e for e in errors), errors
    assert PENDING not in at.session_state
    assert not [b for b in at.button if b.label.startswith("Confirm")]
    assert ledger_rows(fresh_engine, org) == rows
    assert balance(fresh_engine, org) == before


def test_a_write_refused_by_the_database_changes_nothing_and_says_so(
    org: int, fresh_engine: Engine
) -> None:
    before = balance(fresh_engine, org)
    at = review(credits_page(org), direction="deduct", amount=before, reason="Chargeback")
    # Between review and confirmation, someone else spends part of the balance.
    adjust_credits(
        fresh_engine,
        organization_id=org,
        amount=-1,
        reason="Chargeback",
        actor="other@example.com",
        idempotency_key="elsewhere",
    )
    rows = ledger_rows(fresh_engine, org)
    at = confirm(at)
    assert not at.exception
    (error,) = texts(at, "error")
    assert "Insufficient credits" in error and "Nothing was changed" in error
    assert ledger_rows(fresh_engine, org) == rows
    assert balance(fresh_engine, org) == before - 1


def test_a_manager_sees_no_adjustment_form_and_a_forged_request_is_refused(
    org: int, fresh_engine: Engine
) -> None:
    rows = ledger_rows(fresh_engine, org)
    at = credits_page(org, role="manager")
    assert not at.exception
    labels = [b.label for b in at.button]
    assert not [label for label in labels if label.startswith(("Review", "Confirm"))]
    assert any("can read credits but not adjust them" in c for c in texts(at, "caption"))

    # Forge the session state the confirmation step would have left behind.
    at.session_state[PENDING] = actions.AdjustmentRequest(
        organization_id=org,
        organization_name="forged",
        amount=1_000_000,
        reason="Goodwill gesture",
        note=None,
        idempotency_key="forged-key",
        balance_before=0,
    )
    at.run()
    assert any("may not adjust credits" in e for e in texts(at, "error"))
    assert ledger_rows(fresh_engine, org) == rows


def test_the_write_handler_checks_the_role_itself(
    org: int, fresh_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "_secrets", dict)  # no secrets.toml of the developer's
    monkeypatch.setenv("DASHBOARD_USER", "boss@example.com")
    monkeypatch.setenv("DASHBOARD_ROLE", "manager")
    rows = ledger_rows(fresh_engine, org)
    request = actions.AdjustmentRequest(
        organization_id=org,
        organization_name="x",
        amount=100,
        reason="Goodwill gesture",
        note=None,
        idempotency_key="forged",
        balance_before=0,
    )
    with pytest.raises(auth.AccessDenied, match="may not adjust credits"):
        actions.apply_adjustment(request)
    monkeypatch.setenv("DASHBOARD_ROLE", "support")
    with pytest.raises(auth.AccessDenied):
        actions.apply_reversal(
            actions.ReversalRequest(
                organization_id=org,
                organization_name="x",
                entry_id=1,
                entry_amount=1,
                entry_kind="grant",
                reason="x",
                balance_before=0,
            )
        )
    assert ledger_rows(fresh_engine, org) == rows


def test_support_has_no_credits_page(today_url: str, use_database: Callable[[str], None]) -> None:
    use_database(today_url)
    at = make_app(role="support").run()
    assert not at.exception
    at.switch_page(page_file("credits")).run()
    assert at.title[0].value.startswith("Overview")
    assert [plain(str(w.value)) for w in at.main.warning] == [
        "Credits is for finance, manager and admin; your role (support) cannot open it."
    ]


def test_reversing_an_entry_writes_one_reversal_and_restores_the_balance(
    org: int, fresh_engine: Engine
) -> None:
    before = balance(fresh_engine, org)
    at = confirm(review(credits_page(org), amount=300))
    entry = int(
        scalar(
            fresh_engine,
            "SELECT max(id) FROM credit_ledger WHERE organization_id = :o AND kind = 'grant'",
            o=org,
        )
    )
    at.selectbox(key="credits.reverse_entry").set_value(entry)
    at.selectbox(key="credits.reverse_reason").set_value("Entered in error")
    at.text_input(key="credits.reverse_note").input("wrong customer")
    button(at, "Review reversal").click()
    at.run()
    shown = {m.label: m.value for m in at.metric}
    assert shown["Balance after"] == f"{before:,}"

    button(at, "Confirm reversal").click()
    at.run()
    assert not at.exception
    assert any("Reversed ledger entry" in s for s in texts(at, "success"))
    assert balance(fresh_engine, org) == before
    ledger = table_with(at, "Balance after").set_index("Entry")
    reversal = int(ledger.index[0])  # the newest entry
    assert ledger.loc[reversal, "Reversal"] == f"reverses #{entry}"
    assert ledger.loc[entry, "Reversal"] == f"reversed by #{reversal}"
    assert (
        scalar(
            fresh_engine,
            "SELECT count(*) FROM credit_ledger WHERE reverses_id = :e AND kind = 'reversal' "
            "AND reason = 'Entered in error: wrong customer' AND actor = 'finance@example.com'",
            e=entry,
        )
        == 1
    )


def reversals_of(engine: Engine, entry: int) -> int:
    return int(scalar(engine, "SELECT count(*) FROM credit_ledger WHERE reverses_id = :e", e=entry))


def choose_reversal(at: AppTest, entry: int) -> AppTest:
    at.selectbox(key="credits.reverse_entry").set_value(entry)
    at.selectbox(key="credits.reverse_reason").set_value("Entered in error")
    button(at, "Review reversal").click()
    return at.run()


def test_a_reversal_above_the_threshold_is_refused_under_the_form_and_nothing_is_written(
    org: int, fresh_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An approved grant of 250,000 (two other people) cannot be taken back by one person:
    the review shows the refusal, offers nothing to confirm, and writes nothing."""
    monkeypatch.setenv("CREDITS_APPROVAL_THRESHOLD", "100000")
    request = request_adjustment(
        fresh_engine,
        organization_id=org,
        amount=250_000,
        reason="Plan top-up",
        actor="ben@example.com",
        idempotency_key="page-reversal-request",
    )
    entry = approve(fresh_engine, request_id=request.id, approver="cara@example.com").id
    rows, before = ledger_rows(fresh_engine, org), balance(fresh_engine, org)

    at = choose_reversal(credits_page(org), entry)
    assert not at.exception
    assert shown(at, "error") == [
        f"Reversing entry {entry} moves 250,000 credits, more than the approval threshold "
        "of 100,000, so one person cannot apply it, and a reversal cannot be requested for "
        f"approval. Request an adjustment of -250,000 credits instead, naming entry {entry} "
        "in its note: a second person approves it. Nothing was changed."
    ]
    assert "credits.reversal_pending" not in at.session_state
    assert not [b for b in at.button if b.label.startswith("Confirm reversal")]
    assert (ledger_rows(fresh_engine, org), balance(fresh_engine, org)) == (rows, before)
    assert reversals_of(fresh_engine, entry) == 0


def test_a_reversal_the_last_24_hours_fill_before_it_is_confirmed_is_refused(
    org: int, fresh_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reviewed within the threshold, then the same person grants from another tab: the
    confirmation is refused with the data layer's sentence and nothing is reversed."""
    monkeypatch.setenv("CREDITS_APPROVAL_THRESHOLD", "100000")
    entry = adjust_credits(
        fresh_engine,
        organization_id=org,
        amount=60_000,
        reason="Plan top-up",
        actor="ben@example.com",
        idempotency_key="page-reversal-grant",
    ).id
    at = choose_reversal(credits_page(org), entry)
    assert {m.label: m.value for m in at.metric}["Balance after"] == (
        f"{balance(fresh_engine, org) - 60_000:,}"
    )
    adjust_credits(  # the same person, in another tab
        fresh_engine,
        organization_id=org,
        amount=50_000,
        reason="Plan top-up",
        actor="finance@example.com",
        idempotency_key="page-reversal-other-tab",
    )
    rows, before = ledger_rows(fresh_engine, org), balance(fresh_engine, org)
    slug = scalar(fresh_engine, "SELECT slug FROM organizations WHERE id = :o", o=org)

    button(at, "Confirm reversal").click()
    at.run()
    assert not at.exception
    assert (
        f"You moved 50,000 credits for {slug} in the last 24 hours; with this reversal of "
        f"60,000 (entry {entry}) it passes the approval threshold of 100,000, so you cannot "
        "apply it alone: a second person with approval rights must reverse it. Nothing was "
        "changed."
    ) in shown(at, "error")
    assert (ledger_rows(fresh_engine, org), balance(fresh_engine, org)) == (rows, before)
    assert reversals_of(fresh_engine, entry) == 0
    assert button(at, "Review reversal")  # back on the form


# ------------------------------------------------- whole numbers, drafts, failures


@pytest.mark.parametrize("typed", ["1.5", "1e3", "0.999", "2.5", "-3", "abc"])
def test_an_amount_that_is_not_a_whole_number_is_refused_never_rounded(
    org: int, fresh_engine: Engine, typed: str
) -> None:
    rows, before = ledger_rows(fresh_engine, org), balance(fresh_engine, org)
    at = review(credits_page(org), amount=typed)
    assert not at.exception
    (error,) = shown(at, "error")
    assert f"not '{typed}'" in error and "whole number" in error, error
    assert "Nothing was changed" in error
    assert PENDING not in at.session_state
    assert at.text_input(key="credits.amount").value == typed  # still there to correct
    assert (ledger_rows(fresh_engine, org), balance(fresh_engine, org)) == (rows, before)


def test_an_amount_grouped_by_commas_is_accepted(org: int, fresh_engine: Engine) -> None:
    before = balance(fresh_engine, org)
    at = review(credits_page(org), amount="1,500")
    assert at.session_state[PENDING].amount == 1500
    at = confirm(at)
    assert balance(fresh_engine, org) == before + 1500


def orgs_by_name(engine: Engine) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        return [
            (int(i), str(n))
            for i, n in conn.execute(text("SELECT id, name FROM organizations ORDER BY name, id"))
        ]


def test_a_draft_stays_bound_to_its_organization(org: int, fresh_engine: Engine) -> None:
    (a, a_name), (b, b_name) = orgs_by_name(fresh_engine)[:2]
    rows_a, rows_b = ledger_rows(fresh_engine, a), ledger_rows(fresh_engine, b)
    at = review(credits_page(a), amount=40)

    at.selectbox(key="filters.org").set_value(b).run()
    assert not at.exception
    warning = " ".join(shown(at, "warning"))
    assert (
        f"This adjustment was drafted for {a_name} (#{a}), but the page now shows "
        f"{b_name} (#{b}); switch back to confirm it, or discard it." in warning
    )
    assert button(at, "Confirm").disabled
    assert (ledger_rows(fresh_engine, a), ledger_rows(fresh_engine, b)) == (rows_a, rows_b)

    at.selectbox(key="filters.org").set_value(a).run()
    at = confirm(at)
    assert (ledger_rows(fresh_engine, a), ledger_rows(fresh_engine, b)) == (rows_a + 1, rows_b)
    assert any(f"Granted 40 credits to {a_name}" in s for s in shown(at, "success"))


def test_the_confirm_button_checks_the_organization_it_was_drawn_for(
    org: int, fresh_engine: Engine
) -> None:
    """A click that arrives for a page drawn for another organization than the draft's
    (a stale page, a crafted request) is refused by the button's own check."""
    (a, _), (b, b_name) = orgs_by_name(fresh_engine)[:2]
    rows_a, rows_b = ledger_rows(fresh_engine, a), ledger_rows(fresh_engine, b)
    at = review(credits_page(a), amount=40)  # the button is drawn for A
    drafted = at.session_state[PENDING]
    at.session_state[PENDING] = dataclasses.replace(
        drafted, organization_id=b, organization_name=b_name
    )
    at = confirm(at)
    errors = shown(at, "error")
    assert any(f"drafted for {b_name} (#{b})" in e and "Nothing was changed" in e for e in errors)
    assert (ledger_rows(fresh_engine, a), ledger_rows(fresh_engine, b)) == (rows_a, rows_b)


def test_a_draft_for_another_organization_can_be_discarded(org: int, fresh_engine: Engine) -> None:
    (a, _), (b, _) = orgs_by_name(fresh_engine)[:2]
    at = review(credits_page(a), amount=40)
    key = at.session_state[PENDING].idempotency_key
    at.selectbox(key="filters.org").set_value(b).run()
    button(at, "Discard").click()
    at.run()
    assert PENDING not in at.session_state
    assert button(at, "Review adjustment")
    assert at.session_state["credits.idempotency_key"] != key
    assert ledger_rows(fresh_engine, a) == ledger_rows(fresh_engine, a)


def test_a_reversal_drafted_for_another_organization_is_refused(
    org: int, fresh_engine: Engine
) -> None:
    (a, a_name), (b, _) = orgs_by_name(fresh_engine)[:2]
    at = confirm(review(credits_page(a), amount=300))
    entry = int(
        scalar(fresh_engine, "SELECT max(id) FROM credit_ledger WHERE organization_id = :o", o=a)
    )
    at.selectbox(key="credits.reverse_entry").set_value(entry)
    at.selectbox(key="credits.reverse_reason").set_value("Entered in error")
    button(at, "Review reversal").click()
    at.run()
    rows = ledger_rows(fresh_engine, a)
    at.selectbox(key="filters.org").set_value(b).run()
    assert any(f"This reversal was drafted for {a_name} (#{a})" in w for w in shown(at, "warning"))
    assert button(at, "Confirm reversal").disabled
    assert ledger_rows(fresh_engine, a) == rows
    at.selectbox(key="filters.org").set_value(a).run()
    button(at, "Confirm reversal").click()
    at.run()
    assert ledger_rows(fresh_engine, a) == rows + 1
    assert any("Reversed ledger entry" in s for s in shown(at, "success"))


def test_an_unknown_outcome_keeps_the_request_and_confirming_again_applies_once(
    org: int, fresh_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows, before = ledger_rows(fresh_engine, org), balance(fresh_engine, org)
    at = review(credits_page(org), amount=77)
    key = at.session_state[PENDING].idempotency_key
    real = queries.credits.adjust_credits

    def committed_but_answer_lost(*args: Any, **kwargs: Any) -> NoReturn:
        real(*args, **kwargs)  # the change reaches the books...
        raise OutcomeUnknown()  # ...and the answer is lost

    monkeypatch.setattr(queries.credits, "adjust_credits", committed_but_answer_lost)
    at = confirm(at)
    assert not at.exception
    (error,) = shown(at, "error")
    assert "could not be checked whether it was applied" in error
    assert "Confirming again is safe" in error and "at most once" in error
    assert "Nothing was changed" not in error
    assert at.session_state[PENDING].idempotency_key == key
    again = button(at, "Confirm again")
    assert again.label == "Confirm again: grant 77"

    monkeypatch.setattr(queries.credits, "adjust_credits", real)
    again.click()
    at.run()
    assert ledger_rows(fresh_engine, org) == rows + 1, "the same key applied twice"
    assert balance(fresh_engine, org) == before + 77
    assert any("New balance" in s for s in shown(at, "success"))


def test_an_unexpected_failure_says_the_outcome_is_not_known(
    org: int, fresh_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = review(credits_page(org), amount=5)

    def broken(*_: object, **__: object) -> NoReturn:
        raise RuntimeError("boom")

    monkeypatch.setattr(queries.credits, "adjust_credits", broken)
    at = confirm(at)
    (error,) = shown(at, "error")
    assert "not known whether the change was applied" in error
    assert "Nothing was changed" not in error
    assert isinstance(at.session_state[PENDING], actions.AdjustmentRequest)


def test_a_refused_confirmation_returns_to_the_filled_in_form(
    org: int, fresh_engine: Engine
) -> None:
    before = balance(fresh_engine, org)
    at = review(credits_page(org), direction="deduct", amount=before, reason="Chargeback")
    adjust_credits(
        fresh_engine,
        organization_id=org,
        amount=-1,
        reason="Chargeback",
        actor="other@example.com",
        idempotency_key="elsewhere-2",
    )
    at = confirm(at)
    (error,) = shown(at, "error")
    assert "Insufficient credits" in error and "Nothing was changed" in error
    assert PENDING not in at.session_state
    assert at.text_input(key="credits.amount").value == str(before)
    assert at.radio(key="credits.direction").value == "deduct"


def test_the_same_movement_twice_within_minutes_is_named_before_it_is_confirmed(
    org: int, fresh_engine: Engine
) -> None:
    at = confirm(review(credits_page(org), amount=250))
    first = int(
        scalar(fresh_engine, "SELECT max(id) FROM credit_ledger WHERE organization_id = :o", o=org)
    )
    at = review(at, amount=250)
    (warning,) = [w for w in shown(at, "warning") if "same movement" in w]
    assert f"ledger entry #{first}, +250 credits" in warning and "UTC" in warning
    # Another amount is not the same movement.
    button(at, "Back").click()
    at.run()
    at = review(at, amount=251)
    assert not [w for w in shown(at, "warning") if "same movement" in w]


def test_the_entry_just_made_is_listed_even_under_a_past_range(
    org: int, fresh_engine: Engine
) -> None:
    # The sidebar's dates end long before today: the ledger still lists every date,
    # newest first, so the grant just confirmed is its first row.
    past = {"org": str(org), "range": "custom", "from": "2024-01-01", "to": "2024-01-31"}
    at = open_page(make_app(role="finance", email="finance@example.com", query=past), "credits")
    at = confirm(review(at, amount=321, reason="Goodwill gesture"))
    assert not at.exception and not at.error
    newest = int(
        scalar(
            fresh_engine,
            "SELECT max(id) FROM credit_ledger WHERE organization_id = :o",
            o=org,
        )
    )
    ledger = table_with(at, "Balance after")
    assert int(ledger["Entry"].iloc[0]) == newest
    assert int(ledger["Amount"].iloc[0]) == 321

    # Narrowed to the sidebar's dates on request, the past month has no such entry.
    at.toggle(key="credits.ledger_dates").set_value(True)
    at = at.run()
    assert not at.exception
    assert all("Balance after" not in t.value.columns for t in at.dataframe) or newest not in set(
        table_with(at, "Balance after")["Entry"].astype(int)
    )


# ------------------------------------------------------------ the ledger at one entry


def entry_link(org: int, entry: str, **query: str) -> AppTest:
    """The Credits page opened by a link to one of its ledger entries (``entry=``)."""
    link = {"org": str(org), "entry": entry, **query}
    return open_page(make_app(role="finance", email="finance@example.com", query=link), "credits")


def ledger_shown(at: AppTest) -> list[int]:
    """The entries the ledger shows (the table with a "Balance after" column)."""
    return [int(e) for e in table_with(at, "Balance after")["Entry"]]


def link_notices(at: AppTest) -> list[str]:
    """The sentences said about a link's value (the warnings with the broken-link icon)."""
    return [readable(w.value) for w in at.warning if w.icon == ":material/link_off:"]


def entries_of(engine: Engine, org: int) -> list[int]:
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT id FROM credit_ledger WHERE organization_id = :o ORDER BY id"), {"o": org}
        ).scalars()
        return [int(i) for i in found]


def test_a_link_to_a_ledger_entry_shows_that_entry_named_with_a_way_back(
    org: int, fresh_engine: Engine
) -> None:
    rename(fresh_engine, org, f"{MARKUP} Acme")
    entries = entries_of(fresh_engine, org)
    assert len(entries) > 1, "the organization's ledger has more than the entry asked for"
    oldest = entries[0]
    at = entry_link(org, str(oldest))
    assert not at.exception and not at.error and not link_notices(at)
    assert ledger_shown(at) == [oldest]
    # Named, with the organization's name as text (escaped, never Markdown).
    assert f"Showing ledger entry {oldest} of {MARKUP} Acme." in shown(at, "caption")
    assert at.query_params["entry"] == str(oldest) and at.query_params["org"] == str(org)

    button(at, "Show the full ledger").click()
    at.run()
    assert not at.exception and not link_notices(at)
    assert "entry" not in at.query_params
    assert sorted(ledger_shown(at)) == entries  # the whole ledger, newest first
    assert not any("Showing ledger entry" in c for c in texts(at, "caption"))


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("abc", "'abc'"),
        ("-3", "'-3'"),
        ("0", "'0'"),
        ("1.5", "'1.5'"),
        ("9" * 19, f"'{'9' * 19}'"),
        ("1" * 60, f"'{'1' * 40}…'"),
    ],
    ids=["text", "negative", "zero", "fraction", "beyond-bigint", "long"],
)
def test_a_link_to_an_entry_that_is_not_a_number_says_so_over_the_full_ledger(
    org: int, fresh_engine: Engine, value: str, quoted: str
) -> None:
    at = entry_link(org, value)
    assert not at.exception and not at.error
    assert link_notices(at) == [
        f"Ignored entry={quoted} from the link: a ledger entry is a positive whole number. "
        "Showing the full ledger."
    ]
    assert sorted(ledger_shown(at)) == entries_of(fresh_engine, org)
    assert "entry" not in at.query_params


@pytest.mark.parametrize("whose", ["another organization's", "no one's"])
def test_a_link_to_an_entry_the_organization_does_not_have_shows_nothing_of_another(
    org: int, fresh_engine: Engine, whose: str
) -> None:
    other = int(scalar(fresh_engine, "SELECT max(id) FROM organizations WHERE id <> :o", o=org))
    secret = adjust_credits(
        fresh_engine,
        organization_id=other,
        amount=4_321,
        reason="Goodwill gesture",
        note="the other organization's note",
        actor="finance@example.com",
        idempotency_key="other-org-entry",
    )
    asked = secret.id if whose == "another organization's" else secret.id + 1_000
    name = scalar(fresh_engine, "SELECT name FROM organizations WHERE id = :o", o=org)
    at = entry_link(org, str(asked))
    assert not at.exception and not at.error
    (warning,) = link_notices(at)
    assert warning == f"{name} has no ledger entry {asked}. Showing its full ledger."
    assert sorted(ledger_shown(at)) == entries_of(fresh_engine, org)
    # Nothing of the other organization's entry anywhere on the page.
    everything = " ".join(
        [*(d.value.to_csv() for d in at.dataframe), *texts(at, "caption"), *texts(at, "markdown")]
    )
    assert "the other organization's note" not in everything and "4321" not in everything
    assert "entry" not in at.query_params


def test_an_open_entry_stays_with_its_organization(org: int, fresh_engine: Engine) -> None:
    (entry, *_) = entries_of(fresh_engine, org)
    at = entry_link(org, str(entry))
    assert ledger_shown(at) == [entry]
    other = int(scalar(fresh_engine, "SELECT max(id) FROM organizations WHERE id <> :o", o=org))
    at.query_params["org"] = str(other)  # another organization, the entry still in the URL
    at.run()
    assert not at.exception and not at.error and not link_notices(at)
    assert sorted(ledger_shown(at)) == entries_of(fresh_engine, other)
    assert "entry" not in at.query_params
