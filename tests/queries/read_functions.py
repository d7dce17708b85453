"""Every public read function of queries/, found by inspection, with a way to call it.

Tests that must cover *all* read functions (tenant isolation, statement counts, query
plans) iterate over ``PER_ORGANIZATION`` and ``CROSS_ORGANIZATION``; a new public
function without an entry here fails ``test_every_read_function_is_registered``.

The query benchmark (``benchmarks/queries``) times every entry too, at sizes up to 100M
generations, with ``Context`` set to the last 30 days of its largest and a median
tenant: so an entry is also the benchmark's call of that read. It lives here, not in
the benchmark, because the test above is what keeps it complete.
"""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from queries import (
    approvals,
    audit,
    credits,
    forecast,
    generations,
    grants,
    ledger,
    limit_approvals,
    orgs,
    quotas,
    reconciliation,
    statements,
    timelines,
    usage,
)

READ_MODULES = (
    approvals,
    audit,
    credits,
    forecast,
    generations,
    grants,
    ledger,
    limit_approvals,
    orgs,
    quotas,
    statements,
    timelines,
    usage,
)
# Steps of a write, run on its connection inside its transaction and under its lock:
# they belong to the writes, which the write tests cover, and some of them write.
WRITE_STEPS = frozenset(
    {
        "approvals.record_request",
        "ledger.check_alone",
        "ledger.entry_by_key",
        "ledger.insert_movement",
        "ledger.lock_organization",
        "ledger.lock_organizations",
        "quotas.apply_limit_change",
        "quotas.change_by_key",
        "quotas.limit_context",
    }
)
# Reads that check the books from the raw rows: they scan history by design (a full
# reconciliation reads every generation) and issue one statement per invariant, so the
# plan, statement-count and benchmark tests of the dashboard's reads do not apply. Both
# roles must still be able to run them (test_database_roles), and every public one is
# registered in CHECKS (test_reconciliation).
CHECK_MODULES = (reconciliation,)


@dataclass(frozen=True)
class Context:
    organization_id: int
    user_id: int
    start: dt.date
    end: dt.date
    # "Now" for the reads that take it (None: the database's clock).
    now: dt.datetime | None = None


Call = Callable[[Connection, Context], Any]


def afternoon(day: dt.date) -> dt.datetime:
    """The instant the registry's reads of "now" take: 15:00 UTC on ``day`` (some zones are
    mid-day then, some late, some already in the next day)."""
    return dt.datetime.combine(day, dt.time(15), dt.UTC)


def newest_entry(conn: Connection, organization_id: int) -> int:
    """The organization's newest ledger entry, for the read of one entry: a statement of
    its own before that read (the lookup is on the ledger's key, as the read is)."""
    found = conn.execute(
        text("SELECT max(id) FROM credit_ledger WHERE organization_id = :org"),
        {"org": organization_id},
    ).scalar_one()
    return int(found)


PER_ORGANIZATION: dict[str, Call] = {
    "grants.credit_grants": lambda c, x: grants.credit_grants(
        c, organization_id=x.organization_id, at=x.now
    ),
    # Every grant expiring within a year of the end, an expiring one included.
    "grants.expiring_grants": lambda c, x: grants.expiring_grants(
        c,
        organization_id=x.organization_id,
        within=dt.timedelta(days=366),
        now=afternoon(x.end),
    ),
    "limit_approvals.most_alone_limits": lambda c, x: limit_approvals.most_alone_limits(
        c, organization_id=x.organization_id
    ),
    "timelines.generation_timeline": lambda c, x: timelines.generation_timeline(
        c, organization_id=x.organization_id, start=x.start, end=x.end
    ),
    "timelines.generation_timeline[utc,by_type,week]": lambda c, x: timelines.generation_timeline(
        c,
        organization_id=x.organization_id,
        start=x.start,
        end=x.end,
        utc=True,
        by_type=True,
        granularity="week",
    ),
    "timelines.generation_timeline[by_type,month]": lambda c, x: timelines.generation_timeline(
        c,
        organization_id=x.organization_id,
        start=x.start,
        end=x.end,
        by_type=True,
        granularity="month",
    ),
    "timelines.user_timeline": lambda c, x: timelines.user_timeline(
        c,
        organization_id=x.organization_id,
        user_id=x.user_id,
        start=x.start,
        end=x.end,
        by_type=True,
    ),
    "timelines.top_users": lambda c, x: timelines.top_users(
        c, organization_id=x.organization_id, start=x.start, end=x.end, limit=5
    ),
    "timelines.period_kpis": lambda c, x: timelines.period_kpis(
        c, organization_id=x.organization_id, start=x.start, end=x.end, now=x.now
    ),
    "timelines.period_kpis[utc]": lambda c, x: timelines.period_kpis(
        c, organization_id=x.organization_id, start=x.start, end=x.end, utc=True, now=x.now
    ),
    "usage.credits_granted_vs_consumed": lambda c, x: usage.credits_granted_vs_consumed(
        c, organization_id=x.organization_id, start=x.start, end=x.end, granularity="week"
    ),
    "usage.balance_and_runway": lambda c, x: usage.balance_and_runway(
        c, organization_id=x.organization_id, now=afternoon(x.end)
    ),
    "usage.ledger_page": lambda c, x: usage.ledger_page(
        c, organization_id=x.organization_id, limit=3
    ),
    "usage.ledger_page[oldest]": lambda c, x: usage.ledger_page(
        c, organization_id=x.organization_id, limit=3, sort="oldest"
    ),
    # The entry a link opens the ledger at (credits?entry=N): the organization's newest.
    "usage.ledger_entry": lambda c, x: usage.ledger_entry(
        c, organization_id=x.organization_id, entry_id=newest_entry(c, x.organization_id)
    ),
    "quotas.quota_history": lambda c, x: quotas.quota_history(
        c, organization_id=x.organization_id, start=x.start, end=x.end
    ),
    "quotas.limits_in_force": lambda c, x: quotas.limits_in_force(
        c, organization_id=x.organization_id, day=x.end
    ),
    "quotas.limits_in_force[today]": lambda c, x: quotas.limits_in_force(
        c, organization_id=x.organization_id
    ),
    "generations.recent_generations": lambda c, x: generations.recent_generations(
        c, organization_id=x.organization_id, limit=5
    ),
    "generations.recent_generations[user]": lambda c, x: generations.recent_generations(
        c, organization_id=x.organization_id, user_id=x.user_id, limit=5
    ),
    "orgs.get_organization": lambda c, x: orgs.get_organization(
        c, organization_id=x.organization_id
    ),
    "orgs.list_users": lambda c, x: orgs.list_users(c, organization_id=x.organization_id),
    "statements.monthly_statement": lambda c, x: statements.monthly_statement(
        c, organization_id=x.organization_id, month=x.end, now=afternoon(x.end)
    ),
    # The isolation tenants' deduction of 7 on 2026-11-03 09:00 UTC by this actor.
    "ledger.moved_alone": lambda c, x: ledger.moved_alone(
        c, organization_ids=[x.organization_id], actor="finance@example.com"
    ),
    "credits.recent_duplicate": lambda c, x: credits.recent_duplicate(
        c,
        organization_id=x.organization_id,
        actor="finance@example.com",
        amount=-7,
        within=dt.timedelta(days=1),
        now=dt.datetime(2026, 11, 3, 9, 5, tzinfo=dt.UTC),
    ),
}

CROSS_ORGANIZATION: dict[str, Call] = {
    "usage.all_orgs_usage": lambda c, x: usage.all_orgs_usage(c, start=x.start, end=x.end),
    "usage.all_orgs_usage_page": lambda c, x: usage.all_orgs_usage_page(
        c, start=x.start, end=x.end, plans=["pro", "free"], search="a", limit=5
    ),
    "usage.all_orgs_usage_page[balance_asc]": lambda c, x: usage.all_orgs_usage_page(
        c, start=x.start, end=x.end, limit=5, sort="balance_asc"
    ),
    "usage.all_orgs_monthly_credits": lambda c, x: usage.all_orgs_monthly_credits(
        c, start=x.start, end=x.end
    ),
    "timelines.all_organizations_timeline": lambda c, x: timelines.all_organizations_timeline(
        c, start=x.start, end=x.end
    ),
    "timelines.all_organizations_timeline[zone,plans,week]": (
        lambda c, x: timelines.all_organizations_timeline(
            c,
            start=x.start,
            end=x.end,
            timezone="Asia/Kathmandu",
            granularity="week",
            plans=["pro", "free"],
        )
    ),
    "quotas.all_orgs_quota_utilization": lambda c, x: quotas.all_orgs_quota_utilization(
        c, day=x.end
    ),
    "quotas.all_orgs_quota_utilization_page": lambda c, x: quotas.all_orgs_quota_utilization_page(
        c, day=x.end, search="a", statuses=["over", "near"], limit=5
    ),
    "quotas.all_orgs_quota_utilization_page[limit_desc]": lambda c, x: (
        quotas.all_orgs_quota_utilization_page(c, day=x.end, limit=5, sort="limit_desc")
    ),
    "quotas.all_orgs_quota_heatmap": lambda c, x: quotas.all_orgs_quota_heatmap(
        c, day=x.end, top=5
    ),
    "quotas.all_orgs_quota_alerts": lambda c, x: quotas.all_orgs_quota_alerts(c, day=x.end),
    # "Now" is the afternoon (UTC) of the context's last day: some zones are mid-day,
    # some late, some already in the next day.
    "forecast.quota_forecast": lambda c, x: forecast.quota_forecast(c, now=afternoon(x.end)),
    "forecast.quota_forecast[hits_only]": lambda c, x: forecast.quota_forecast(
        c, now=afternoon(x.end), hits_only=True
    ),
    "forecast.usage_spikes": lambda c, x: forecast.usage_spikes(
        c, now=afternoon(x.end), min_credits=0, factor=1
    ),
    "forecast.low_runway": lambda c, x: forecast.low_runway(
        c, within_days=3660, now=afternoon(x.end)
    ),
    "audit.all_orgs_audit_trail": lambda c, x: audit.all_orgs_audit_trail(
        c, start=x.start, end=x.end
    ),
    "audit.all_orgs_audit_page": lambda c, x: audit.all_orgs_audit_page(
        c, start=x.start, end=x.end, limit=50
    ),
    "audit.all_orgs_audit_page[zone]": lambda c, x: audit.all_orgs_audit_page(
        c, start=x.start, end=x.end, limit=50, timezone="Asia/Kathmandu"
    ),
    "audit.all_orgs_audit_page[oldest]": lambda c, x: audit.all_orgs_audit_page(
        c, start=x.start, end=x.end, limit=50, sort="oldest"
    ),
    "audit.plan_allowance_changes_page": lambda c, x: audit.plan_allowance_changes_page(
        c, start=x.start, end=x.end, limit=50
    ),
    "audit.plan_allowance_changes_page[actor,oldest]": (
        lambda c, x: audit.plan_allowance_changes_page(
            c, start=x.start, end=x.end, actor="admin", limit=50, sort="oldest"
        )
    ),
    "approvals.pending_requests_page": lambda c, x: approvals.pending_requests_page(c, limit=5),
    "limit_approvals.pending_limit_requests": lambda c, x: limit_approvals.pending_limit_requests(
        c, limit=5
    ),
    "orgs.list_organizations": lambda c, x: orgs.list_organizations(c),
    "orgs.search_organizations": lambda c, x: orgs.search_organizations(c, query="a", limit=5),
    "orgs.search_organizations[id]": lambda c, x: orgs.search_organizations(
        c, query=str(x.organization_id), limit=5
    ),
    "orgs.any_organizations": lambda c, x: orgs.any_organizations(c),
    "orgs.list_generation_types": lambda c, x: orgs.list_generation_types(c),
}


CHECKS: dict[str, Call] = {
    "reconciliation.check_books": lambda c, x: reconciliation.check_books(c),
    "reconciliation.check_books[full]": lambda c, x: reconciliation.check_books(c, full=True),
    "reconciliation.last_run": lambda c, x: reconciliation.last_run(c),
    "reconciliation.last_run[full]": lambda c, x: reconciliation.last_run(c, full=True),
}


def public_read_functions(modules: tuple[Any, ...] = READ_MODULES) -> set[str]:
    """``module.function`` for each public read: a function whose first parameter is a
    Connection, not one of the ``WRITE_STEPS``."""
    found = set()
    for module in modules:
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("_") or fn.__module__ != module.__name__:
                continue
            params = list(inspect.signature(fn).parameters.values())
            if params and params[0].name == "conn":
                found.add(f"{module.__name__.split('.')[-1]}.{name}")
    return found - WRITE_STEPS


def registered() -> set[str]:
    return {key.split("[")[0] for key in (*PER_ORGANIZATION, *CROSS_ORGANIZATION)}
