"""Every read that shows a balance at a time counts a grant that is due but not yet
written off as gone (issue 18): the same balance before ``expire_credits`` runs and after."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, text

from queries.forecast import low_runway
from queries.grants import expire_credits
from queries.orgs import get_organization
from queries.usage import all_orgs_usage, all_orgs_usage_page, balance_and_runway
from tests.factories import add_generations
from tests.queries.writes import add_due_grant, invariant_holds, new_org


def _shown(engine: Engine, org: int, slug: str) -> dict[str, int]:
    """The balance each read shows for the organization."""
    today = dt.date(2026, 1, 1)
    with engine.connect() as conn:
        info = get_organization(conn, organization_id=org)
        assert info is not None
        ranking = all_orgs_usage(conn, start=today, end=today)
        page = all_orgs_usage_page(conn, start=today, end=today, search=slug, limit=5).rows
        runway = balance_and_runway(conn, organization_id=org)
        assert runway is not None
        return {
            "overview": info.balance,
            "ranking": int(ranking.loc[ranking.organization_id == org, "balance"].item()),
            "usage page": int(page.loc[page.organization_id == org, "balance"].item()),
            "runway": runway.balance,
        }


def test_a_due_grant_is_out_of_every_balance_shown_before_and_after_its_write_off(
    write_engine: Engine,
) -> None:
    org, _ = new_org(write_engine, balance=1_000)
    add_due_grant(write_engine, org, 300)
    with write_engine.connect() as conn:
        slug = conn.execute(text("SELECT slug FROM organizations WHERE id = :o"), {"o": org})
        slug = slug.scalar_one()
        stored = conn.execute(
            text("SELECT balance FROM credit_balances WHERE organization_id = :o"), {"o": org}
        ).scalar_one()
    assert stored == 1_300, "not yet written off: the stored balance still holds it"
    before = _shown(write_engine, org, slug)
    assert before == dict.fromkeys(before, 1_000)

    report = expire_credits(write_engine, organization_ids=[org])
    assert (report.grants, report.credits) == (1, 300)
    assert _shown(write_engine, org, slug) == before
    # The write-off is booked now; it is an expiry, not a deduction.
    with write_engine.connect() as conn:
        today = conn.execute(text("SELECT (now() AT TIME ZONE 'UTC')::date")).scalar_one()
        ranking = all_orgs_usage(conn, start=today - dt.timedelta(days=1), end=today)
    assert int(ranking.loc[ranking.organization_id == org, "credits_deducted"].item()) == 0
    assert invariant_holds(write_engine, org)


def test_low_runway_counts_a_due_grant_as_gone(write_engine: Engine) -> None:
    """The balance that runs out is what the live grants hold, not the due one too."""
    org, (user,) = new_org(write_engine, balance=100)
    add_due_grant(write_engine, org, 500)
    with write_engine.begin() as conn:
        at = conn.execute(text("SELECT now() - interval '2 days'")).scalar_one()
        add_generations(conn, org, [(user, "chat", 10, at)])
    with write_engine.connect() as conn:
        rows = low_runway(conn, within_days=3660)
    assert int(rows.loc[rows.organization_id == org, "balance"].item()) == 90
