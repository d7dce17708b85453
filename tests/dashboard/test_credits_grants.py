"""Credits page, grants: the organization's grants with what remains of each, its
expiry and priority; a grant with an expiry and a priority from the form; the list of
credits expiring in the next 30 days across organizations."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, text

from dashboard import clock
from queries.credits import adjust_credits
from tests.dashboard.apptest import (
    capture_downloads,
    click,
    links_of,
    plain,
    plain_texts,
    scalar,
    table_with,
    texts,
)
from tests.dashboard.hostile import MARKUP, rename
from tests.dashboard.test_approvals_page import decide, page_as
from tests.dashboard.test_credits_page import button, confirm, credits_page, ledger_rows

# A fixed expiry far ahead: no test depends on the wall clock.
FAR = dt.datetime(2099, 1, 6, tzinfo=dt.UTC)


@pytest.fixture
def org(fresh_url: str, fresh_engine: Engine, use_database: Callable[[str], None]) -> int:
    """An organization of the small load in a zone that is not UTC (its own clock and
    UTC differ on the page)."""
    use_database(fresh_url)
    org = int(scalar(fresh_engine, "SELECT id FROM organizations ORDER BY name, id LIMIT 1"))
    with fresh_engine.begin() as conn:
        # Only its zone's label changes here, as the page reads it; no local day is read.
        conn.execute(
            text("UPDATE organizations SET timezone = 'Asia/Kathmandu' WHERE id = :o"), {"o": org}
        )
    return org


def _local(at: dt.datetime, zone: str = "Asia/Kathmandu") -> str:
    return f"{at.astimezone(zoneinfo.ZoneInfo(zone)):%Y-%m-%d %H:%M}"


def test_the_grants_section_lists_a_grant_with_its_expiry_remaining_and_entry(
    org: int, fresh_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = adjust_credits(
        fresh_engine,
        organization_id=org,
        amount=1234,
        reason="Promotion",
        actor="ana@example.com",
        idempotency_key="grants-page-promo",
        expires_at=FAR,
        priority=5,
    )
    offered = capture_downloads(monkeypatch)
    at = credits_page(org)
    assert not at.exception
    grants = table_with(at, "Ledger entry")
    (row,) = grants[grants["Ledger entry"] == entry.id].to_dict("records")
    assert (row["Status"], row["Amount"], row["Remaining"], row["Priority"]) == (
        "live",
        1234,
        1234,
        5,
    )
    assert row["Expires (UTC)"] == "2099-01-06 00:00"
    assert row["Expires (Asia/Kathmandu)"] == "2099-01-06 05:45"
    assert row["Source"] == "adjustment"
    # Priority 5 is drawn before the default 10: it leads the live grants.
    assert int(grants["Ledger entry"].iloc[0]) == entry.id
    assert sum(grants["Remaining"]) == int(
        scalar(
            fresh_engine, "SELECT balance FROM credit_balances WHERE organization_id = :o", o=org
        )
    )
    csv = offered[next(name for name in offered if name.startswith("grants_"))].decode()
    assert "2099-01-06 05:45" in csv and "Expires (Asia/Kathmandu)" in csv


def test_a_grants_ledger_entry_opens_the_ledger_at_that_entry(
    org: int, fresh_engine: Engine
) -> None:
    entry = adjust_credits(
        fresh_engine,
        organization_id=org,
        amount=2345,
        reason="Promotion",
        actor="ana@example.com",
        idempotency_key="grants-page-link",
        expires_at=FAR,
        priority=5,
    )
    at = credits_page(org)
    assert not at.exception
    grants = table_with(at, "Ledger entry").reset_index(drop=True)
    links = links_of(at, "credits.grants", "Ledger entry")
    # Every entry is a link; a grant without one (the opening balance) stays plain.
    assert [link is None for link in links] == list(grants["Ledger entry"].isna())
    (row,) = grants.index[grants["Ledger entry"] == entry.id]
    link = links[row]
    assert link.page == "credits"
    assert (link.query["org"], link.query["entry"]) == (str(org), str(entry.id))

    at = click(at, "credits.grants", int(row), "Ledger entry")
    assert not at.exception and not at.error
    assert at.query_params["entry"] == str(entry.id) and at.query_params["org"] == str(org)
    assert [int(e) for e in table_with(at, "Balance after")["Entry"]] == [entry.id]
    name = scalar(fresh_engine, "SELECT name FROM organizations WHERE id = :o", o=org)
    assert f"Showing ledger entry {entry.id} of {name}." in plain_texts(at, "caption")


def test_a_grant_from_the_form_lands_with_its_expiry_and_priority(
    org: int, fresh_engine: Engine
) -> None:
    rows = ledger_rows(fresh_engine, org)
    at = credits_page(org)
    at.radio(key="credits.direction").set_value("grant")
    at.text_input(key="credits.amount").input("10,000")
    at.selectbox(key="credits.reason").set_value("Promotion")
    at.date_input(key="credits.expiry_date").set_value(dt.date(2099, 1, 6))
    at.time_input(key="credits.expiry_time").set_value(dt.time(0, 0))
    at.number_input(key="credits.priority").set_value(5)
    button(at, "Review adjustment").click()
    at.run()
    assert not at.exception
    asked = " ".join(plain(m.value) for m in at.markdown)
    assert "10,000 credits, expiring 6 Jan 2099 00:00 Asia/Kathmandu" in asked
    assert "(5 Jan 2099 18:15 UTC), priority 5" in asked
    assert ledger_rows(fresh_engine, org) == rows, "reviewing must not write"

    at = confirm(at)
    assert not at.exception
    (success,) = plain_texts(at, "success")
    assert "expiring 6 Jan 2099 00:00 Asia/Kathmandu" in success
    expected = dt.datetime(2099, 1, 5, 18, 15, tzinfo=dt.UTC)
    with fresh_engine.connect() as conn:
        entry = conn.execute(
            text(
                "SELECT id, amount, grant_expires_at, grant_priority FROM credit_ledger "
                "WHERE organization_id = :o ORDER BY id DESC LIMIT 1"
            ),
            {"o": org},
        ).one()
        grant = conn.execute(
            text(
                "SELECT amount, remaining, expires_at, priority FROM credit_grants "
                "WHERE organization_id = :o AND ledger_entry_id = :e"
            ),
            {"o": org, "e": entry.id},
        ).one()
    assert tuple(entry)[1:] == (10_000, expected, 5)
    assert tuple(grant) == (10_000, 10_000, expected, 5)
    # The grants section shows it at once.
    grants = table_with(at, "Ledger entry")
    assert entry.id in list(grants["Ledger entry"])


def test_an_expiry_in_the_past_is_refused_with_a_sentence_and_writes_nothing(
    org: int, fresh_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The page's now, fixed: 12:00 in Kathmandu, so the start of that day has passed
    # (the date picker offers no earlier day).
    monkeypatch.setattr(clock, "now", lambda: dt.datetime(2030, 6, 1, 6, 15, tzinfo=dt.UTC))
    rows = ledger_rows(fresh_engine, org)
    at = credits_page(org)
    at.text_input(key="credits.amount").input("500")
    at.selectbox(key="credits.reason").set_value("Promotion")
    at.date_input(key="credits.expiry_date").set_value(dt.date(2030, 6, 1))
    at.time_input(key="credits.expiry_time").set_value(dt.time(0, 0))
    button(at, "Review adjustment").click()
    at.run()
    assert not at.exception
    (error,) = plain_texts(at, "error")
    assert "The expiry 1 Jun 2030 00:00 Asia/Kathmandu is not in the future" in error
    assert "Nothing was changed" in error
    assert "credits.pending" not in at.session_state
    assert ledger_rows(fresh_engine, org) == rows


def test_a_deduction_with_a_priority_is_refused(org: int, fresh_engine: Engine) -> None:
    rows = ledger_rows(fresh_engine, org)
    at = credits_page(org)
    at.radio(key="credits.direction").set_value("deduct")
    at.text_input(key="credits.amount").input("1")
    at.selectbox(key="credits.reason").set_value("Billing correction")
    at.number_input(key="credits.priority").set_value(3)
    button(at, "Review adjustment").click()
    at.run()
    (error,) = plain_texts(at, "error")
    assert "Only a grant can expire or carry a priority" in error
    assert ledger_rows(fresh_engine, org) == rows


def test_an_approval_request_from_the_form_carries_the_terms(
    org: int, fresh_engine: Engine
) -> None:
    at = credits_page(org)
    at.text_input(key="credits.amount").input("250000")
    at.selectbox(key="credits.reason").set_value("Promotion")
    at.date_input(key="credits.expiry_date").set_value(dt.date(2099, 1, 6))
    at.number_input(key="credits.priority").set_value(7)
    button(at, "Review adjustment").click()
    at.run()
    at = confirm(at)
    assert not at.exception
    with fresh_engine.connect() as conn:
        request = conn.execute(
            text(
                "SELECT amount, grant_expires_at, grant_priority FROM approval_requests "
                "WHERE organization_id = :o ORDER BY id DESC LIMIT 1"
            ),
            {"o": org},
        ).one()
    assert tuple(request) == (250_000, dt.datetime(2099, 1, 5, 18, 15, tzinfo=dt.UTC), 7)
    queue = table_with(at, "Grant terms")
    assert "expires 2099-01-06 00:00, priority 7" in list(queue["Grant terms"])

    # Another person approves it: the confirmation states the terms, and the grant
    # booked has them.
    request_id = int(
        scalar(
            fresh_engine, "SELECT max(id) FROM approval_requests WHERE organization_id = :o", o=org
        )
    )
    at = decide(page_as("ben@example.com", org), request_id, "approve")
    asked = " ".join(plain(m.value) for m in at.markdown)
    assert "+250,000 credits, expiring 6 Jan 2099 00:00 Asia/Kathmandu" in asked
    at = confirm(at)
    assert not at.exception
    with fresh_engine.connect() as conn:
        grant = conn.execute(
            text(
                "SELECT g.amount, g.expires_at, g.priority, g.source FROM credit_grants g "
                "JOIN approval_requests r ON r.ledger_entry_id = g.ledger_entry_id "
                "WHERE r.id = :r AND g.organization_id = :o"
            ),
            {"r": request_id, "o": org},
        ).one()
    assert tuple(grant) == (
        250_000,
        dt.datetime(2099, 1, 5, 18, 15, tzinfo=dt.UTC),
        7,
        "approval",
    )


def test_the_expiring_list_shows_a_grant_expiring_soon_with_a_link_to_its_organization(
    org: int, fresh_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"{MARKUP} =cmd"
    rename(fresh_engine, org, name)
    with fresh_engine.begin() as conn:
        # Ten days ahead of the database's clock, as the owner may write it.
        conn.execute(
            text(
                "INSERT INTO credit_ledger (organization_id, amount, kind, reason, actor, "
                "idempotency_key, grant_expires_at) VALUES (:o, 4321, 'grant', 'Promotion', "
                "'setup@example.com', 'soon', now() + interval '10 days')"
            ),
            {"o": org},
        )
    offered = capture_downloads(monkeypatch)
    at = credits_page(org)
    assert not at.exception
    expiring = table_with(at, "Left").reset_index(drop=True)
    (row,) = expiring.index[expiring["Remaining"] == 4321]
    # The name is data: shown as stored, never as Markdown.
    assert expiring["Organization"][row] == name
    assert expiring["Left"][row].startswith(("in 9 d", "in 10 d"))
    link = links_of(at, "credits.expiring", "Organization")[row]
    assert link.page == "credits" and link.query["org"] == str(org)
    assert not any(MARKUP in t for t in texts(at, "markdown"))
    csv = offered["grants_expiring_30_days.csv"].decode()
    assert "4321" in csv and "'=cmd" not in csv  # the name starts with ':', not a formula
