"""What the benchmark reads: every entry of the shared read registry, and deeper variants.

The registry (``tests/queries/read_functions.py``) is the one list of public read
functions with a way to call each; a test fails when a new function is not in it, so
every registered read is benchmarked here without a second list to forget. Its calls
get a 30-day range ending today in the organization's zone (cross-organization: in
UTC, the company zone by default). The benchmark adds the variants that matter at scale and that tests do not need:
90-day ranges, deep cursor pages and filters. Where a naive pandas answer to the same
question exists, it rides along and is checked against the function's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from benchmarks.queries import naive as n
from benchmarks.queries.tenants import OrgInfo
from queries import generations, quotas, timelines, usage
from tests.queries.read_functions import (
    CROSS_ORGANIZATION,
    PER_ORGANIZATION,
    Call,
    Context,
    afternoon,
)

REGISTRY_DAYS = 30


@dataclass(frozen=True, slots=True)
class Case:
    """One read to time: the function, and (where one exists) the naive equivalent."""

    function: str  # module.function
    variant: str
    org: OrgInfo | None  # None: cross-organization, measured once
    run: Callable[[Connection], object]
    naive: Callable[[Session], object] | None = None

    @property
    def scope(self) -> str:
        return self.org.label if self.org else "all"

    @property
    def name(self) -> str:
        """``module.function [variant] scope``, as progress lines and notes show it."""
        return describe(self.function, self.variant, self.scope)


def describe(function: str, variant: str, scope: str) -> str:
    return f"{function} [{variant}] {scope}" if variant else f"{function} {scope}"


Naive = Callable[[Session, OrgInfo, dt.date, dt.date], object]
NaiveCross = Callable[[Session, dt.date, dt.date], object]

# Registry entries whose call the naive answer reproduces exactly (same zone, buckets,
# types and limit); the others are timed without one.
NAIVE_PER_ORGANIZATION: dict[str, Naive] = {
    "timelines.generation_timeline": lambda s, o, a, b: n.naive_timeline(
        s, org=o, start=a, end=b, utc=False, by_type=False
    ),
    "timelines.user_timeline": lambda s, o, a, b: n.naive_timeline(
        s, org=o, start=a, end=b, utc=False, by_type=True, user=o.user_id
    ),
    "timelines.top_users": lambda s, o, a, b: n.naive_top_users(s, org=o, start=a, end=b, limit=5),
    "timelines.period_kpis": lambda s, o, a, b: n.naive_kpis(s, org=o, start=a, end=b, utc=False),
    "timelines.period_kpis[utc]": lambda s, o, a, b: n.naive_kpis(
        s, org=o, start=a, end=b, utc=True
    ),
    # The registry reads the runway at afternoon(end): the naive answer at the same instant.
    "usage.balance_and_runway": lambda s, o, a, b: n.naive_runway(s, org=o, now=afternoon(b)),
    "quotas.quota_history": lambda s, o, a, b: n.naive_quota_history(s, org=o, start=a, end=b),
}
NAIVE_CROSS_ORGANIZATION: dict[str, NaiveCross] = {
    "usage.all_orgs_usage": lambda s, a, b: n.naive_all_orgs_usage(s, start=a, end=b),
    "usage.all_orgs_monthly_credits": lambda s, a, b: n.naive_monthly_credits(s, start=a, end=b),
}


def _split(key: str) -> tuple[str, str]:
    """``module.function[variant]`` into the function and the variant."""
    function, _, variant = key.partition("[")
    return function, variant.rstrip("]").replace(",", ", ")


def _bound(call: Call, context: Context) -> Callable[[Connection], object]:
    return lambda conn: call(conn, context)


def _naive_for(
    baseline: Naive, org: OrgInfo, start: dt.date, end: dt.date
) -> Callable[[Session], object]:
    return lambda session: baseline(session, org, start, end)


def registry_cases(org: OrgInfo) -> list[Case]:
    """Every per-organization read of the registry, for ``org``."""
    start, end = org.last(REGISTRY_DAYS)
    # One "now" for a read and its naive answer: the KPIs of a period that reaches now
    # are cut at its quarter-hour, which must be the same for both.
    now = org.now or dt.datetime.now(dt.UTC)
    context = Context(organization_id=org.id, user_id=org.user_id, start=start, end=end, now=now)
    cases = []
    for key, call in PER_ORGANIZATION.items():
        function, detail = _split(key)
        baseline = NAIVE_PER_ORGANIZATION.get(key)
        naive: Callable[[Session], object] | None = (
            _naive_for(baseline, org, start, end) if baseline else None
        )
        if function == "timelines.period_kpis":
            naive = partial(
                n.naive_kpis, org=org, start=start, end=end, utc="utc" in detail, now=now
            )
        cases.append(Case(function, detail, org, _bound(call, context), naive))
    return cases


def cross_registry_cases(largest: OrgInfo) -> list[Case]:
    """Every cross-organization read of the registry, once (a search by id looks for the
    largest organization's)."""
    end = (largest.now or dt.datetime.now(dt.UTC)).date()
    start = end - dt.timedelta(days=REGISTRY_DAYS - 1)
    context = Context(organization_id=largest.id, user_id=largest.user_id, start=start, end=end)
    cases = []
    for key, call in CROSS_ORGANIZATION.items():
        function, detail = _split(key)
        baseline = NAIVE_CROSS_ORGANIZATION.get(key)
        cases.append(
            Case(
                function,
                detail,
                None,
                _bound(call, context),
                _cross_naive(baseline, start, end) if baseline else None,
            )
        )
    return cases


def _cross_naive(baseline: NaiveCross, start: dt.date, end: dt.date) -> Callable[[Session], object]:
    return lambda session: baseline(session, start, end)


# ------------------------------------------------------------ the benchmark's own variants


def _page_cursor(
    conn: Connection, *, org: int, user: int | None, page: int
) -> tuple[generations.GenerationCursor | None, int]:
    """The cursor of page ``page`` (1-based) of recent generations, and the page it
    reached (an organization or user with fewer rows stops earlier)."""
    cursor: generations.GenerationCursor | None = None
    reached = 1
    for _ in range(page - 1):
        next_cursor = generations.recent_generations(
            conn, organization_id=org, user_id=user, before=cursor
        ).next_cursor
        if next_cursor is None:
            break
        cursor, reached = next_cursor, reached + 1
    conn.rollback()
    return cursor, reached


def deeper_cases(conn: Connection, org: OrgInfo) -> list[Case]:
    """Variants a growing tenant makes slower if anything reads raw rows: 90 days, the
    UTC and by-type paths, deep keyset pages, filtered ledger pages."""
    oid, uid = org.id, org.user_id
    start, end = org.last(90)
    cases = [
        Case(
            "timelines.generation_timeline",
            f"90d, {'UTC' if utc else 'org tz'}{', by type' if by_type else ''}",
            org,
            partial(
                timelines.generation_timeline,
                organization_id=oid,
                start=start,
                end=end,
                utc=utc,
                by_type=by_type,
            ),
            partial(n.naive_timeline, org=org, start=start, end=end, utc=utc, by_type=by_type),
        )
        for utc in (False, True)
        for by_type in (False, True)
    ]
    cases += [
        Case(
            "timelines.user_timeline",
            "90d, top user, by type",
            org,
            partial(
                timelines.user_timeline,
                organization_id=oid,
                user_id=uid,
                start=start,
                end=end,
                by_type=True,
            ),
            partial(
                n.naive_timeline, org=org, start=start, end=end, utc=False, by_type=True, user=uid
            ),
        ),
        Case(
            "timelines.top_users",
            "90d, top 10",
            org,
            partial(timelines.top_users, organization_id=oid, start=start, end=end),
            partial(n.naive_top_users, org=org, start=start, end=end),
        ),
    ]
    now = org.now or dt.datetime.now(dt.UTC)  # one instant for the read and its naive answer
    cases += [
        Case(
            "timelines.period_kpis",
            f"90d vs previous 90d, {'UTC' if utc else 'org tz'}",
            org,
            partial(
                timelines.period_kpis, organization_id=oid, start=start, end=end, utc=utc, now=now
            ),
            partial(n.naive_kpis, org=org, start=start, end=end, utc=utc, now=now),
        )
        for utc in (False, True)
    ]
    start30, _ = org.last(30)
    cases += [
        Case(
            "usage.credits_granted_vs_consumed",
            "30d, by month",
            org,
            partial(usage.credits_granted_vs_consumed, organization_id=oid, start=start30, end=end),
            partial(n.naive_granted_vs_consumed, org=org, start=start30, end=end),
        ),
        Case(
            "usage.ledger_page",
            "grants by 'maria', 90d",
            org,
            partial(
                usage.ledger_page,
                organization_id=oid,
                kinds=["grant"],
                actor="maria",
                start=start,
                end=end,
            ),
        ),
    ]
    for user, who, page in ((None, "org", 10), (uid, "top user", 5)):
        cursor, reached = _page_cursor(conn, org=oid, user=user, page=page)
        if cursor is not None:
            cases.append(
                Case(
                    "generations.recent_generations",
                    f"{who}, page {reached} of 50 via cursor",
                    org,
                    partial(
                        generations.recent_generations,
                        organization_id=oid,
                        user_id=user,
                        before=cursor,
                    ),
                )
            )
    return cases


def deeper_cross_cases(now: dt.datetime) -> list[Case]:
    """Each organization's own today at ``now`` (the registry passes one day), with its
    naive answer at the same instant: each taking the clock on its own could fall either
    side of an organization's midnight."""
    return [
        Case(
            "quotas.all_orgs_quota_utilization",
            "each org's today",
            None,
            lambda conn: quotas.all_orgs_quota_utilization(conn, now=now),
            lambda session: n.naive_quota_utilization(session, now=now),
        ),
    ]


def all_cases(conn: Connection, picked: list[OrgInfo]) -> list[Case]:
    """Every case of one size: per organization for each picked one, then across."""
    cases = [case for org in picked for case in (*registry_cases(org), *deeper_cases(conn, org))]
    now = picked[0].now or dt.datetime.now(dt.UTC)
    return cases + cross_registry_cases(picked[0]) + deeper_cross_cases(now)
