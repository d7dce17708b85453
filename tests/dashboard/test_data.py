"""The cached reads (``dashboard.data``): one factory, and invalidation by scope.

A write invalidates its organization's reads and the cross-organization views, for
every session, and leaves other organizations' reads (and the directory) cached;
"Refresh" reads again only what the page showed. Statements are counted on the real
server, outside a page run (Streamlit's bare mode keeps one session state)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pytest
import streamlit as st

from dashboard import actions, data
from tests.statements import recording

# Any fixed range will do: these tests count statements, not rows.
START, END = dt.date(2026, 10, 22), dt.date(2026, 11, 20)


@pytest.fixture
def orgs(
    use_database: Callable[[str], None], fresh_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[int, int]]:
    """Two organizations of a fresh copy of the small load, read as an admin."""
    use_database(fresh_url)
    monkeypatch.setenv("DASHBOARD_USER", "finance@example.com")
    monkeypatch.setenv("DASHBOARD_ROLE", "admin")
    st.session_state.clear()
    data.begin_run()
    first, second, *_ = data.organization_search(limit=2).organizations
    yield first.id, second.id
    st.session_state.clear()


def statements(read: Callable[[], object]) -> int:
    """How many statements ``read`` sends (0: it was served from the cache)."""
    with recording(data.engine()) as recorded:
        read()
    return recorded.count


def reads(a: int, b: int) -> dict[str, Callable[[], object]]:
    return {
        "A's balance": lambda: data.runway(organization_id=a),
        "A's ledger": lambda: data.ledger_page(organization_id=a, limit=10),
        "B's balance": lambda: data.runway(organization_id=b),
        "B's ledger": lambda: data.ledger_page(organization_id=b, limit=10),
        "B's timeline": lambda: data.timeline_by_type(
            organization_id=b, start=START, end=END, granularity="day", utc=False
        ),
        "the ranking": lambda: data.usage_page(start=START, end=END, limit=10),
        "the monthly trend": lambda: data.monthly_credits(start=START, end=END),
        "the quota alerts": lambda: data.quota_alerts(threshold=0.8),
        "the quota table": lambda: data.quota_page(limit=10),
        "the heatmap": lambda: data.quota_heatmap(top=5),
        "the audit trail": lambda: data.audit_page(start=START, end=END, limit=20),
        "the picker": lambda: data.organization_search(limit=50),
    }


def test_a_read_is_served_from_the_cache_the_second_time(orgs: tuple[int, int]) -> None:
    every = reads(*orgs)
    first = {name: statements(read) for name, read in every.items()}
    assert all(first.values()), first  # each one reads the database once...
    again = {name: statements(read) for name, read in every.items()}
    assert not any(again.values()), again  # ...and is then cached


def test_a_write_reads_its_organization_and_the_cross_organization_views_again(
    orgs: tuple[int, int],
) -> None:
    a, b = orgs
    every = reads(a, b)
    for read in every.values():
        read()
    balance_b = data.runway(organization_id=b)
    runway_a = data.runway(organization_id=a)
    assert runway_a is not None and balance_b is not None

    entry = actions.apply_adjustment(
        actions.check_adjustment(
            organization_id=a,
            organization_name="A",
            direction="grant",
            amount="250",
            reason="Goodwill gesture",
            note="",
            balance=runway_a.balance,
            idempotency_key=actions.new_idempotency_key(),
        )
    )

    after = {name: statements(read) for name, read in every.items()}
    stayed = {"B's balance", "B's ledger", "B's timeline", "the picker"}
    assert {name for name, count in after.items() if count == 0} == stayed, after
    # The re-read shows the write; B's answer is the one cached before it.
    runway = data.runway(organization_id=a)
    assert runway is not None and runway.balance == runway_a.balance + 250
    assert int(data.ledger_page(organization_id=a, limit=10).entries["id"].iloc[0]) == entry.id
    assert data.runway(organization_id=b) == balance_b


def test_refresh_reads_again_only_what_the_page_showed(orgs: tuple[int, int]) -> None:
    a, b = orgs
    every = reads(a, b)
    # Another page's run (another session, as far as the cache is concerned).
    data.begin_run()
    for read in every.values():
        read()
    # This page's run shows organization A and the ranking; then its user presses Refresh.
    data.begin_run()
    every["A's balance"]()
    every["the ranking"]()
    data.refresh()

    after = {name: statements(read) for name, read in every.items()}
    read_again = {"A's balance", "A's ledger", "the ranking", "the monthly trend"}
    read_again |= {"the quota alerts", "the quota table", "the heatmap", "the audit trail"}
    assert {name for name, count in after.items() if count} == read_again, after


def test_refresh_after_a_run_that_read_nothing_invalidates_nothing(
    orgs: tuple[int, int],
) -> None:
    every = reads(*orgs)
    for read in every.values():
        read()
    data.begin_run()
    data.refresh()
    assert not any(statements(read) for read in every.values())
