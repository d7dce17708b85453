"""The cross-organization reads from the rollups of migration 0007 give the answers of a
recount from the raw generations and the ledger, in the company zone (UTC, UTC+5:45 and
America/New_York) whatever each organization's own zone.

- the usage ranking (and its page) and the monthly trend, on the demo database (zones
  from UTC-8 to UTC+10 with DST, UTC+5:30), for the usual ranges (last 7/30/90/365
  days), whole months, a range inside one month, partial first and last months, and a
  range that ends after the data;
- ledger movements at the edges of the company zone's days, in the zones furthest from UTC
  and with an organization in another zone;
- the timeline across organizations by type, per day, week and month of the company
  zone, for all organizations and for some plans (the demo's last 30 days hold New
  York's fall-back day, 1 November 2026);
- the prefix sums stay exact when generations arrive out of order (back-dated ones add
  to every later day), in UTC+5:45 and across a DST change.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import zoneinfo
from collections.abc import Iterator

import pandas as pd
import pytest
from sqlalchemy import Connection, Engine, text

from queries import timelines, usage
from queries.generations import record_generation
from tests.conftest import DEMO_NOW
from tests.factories import add_generations, add_ledger, ensure_types, make_org, make_user
from tests.queries.rollups import ROLLUPS, mismatches
from tests.queries.writes import new_org

TODAY = DEMO_NOW.date()
D = dt.date
RANGES = {
    "last-7-days": (TODAY - dt.timedelta(days=6), TODAY),
    "last-30-days": (TODAY - dt.timedelta(days=29), TODAY),
    "last-90-days": (TODAY - dt.timedelta(days=89), TODAY),
    "last-365-days": (TODAY - dt.timedelta(days=364), TODAY),
    "whole-month": (D(2026, 10, 1), D(2026, 10, 31)),
    "inside-one-month": (D(2026, 11, 3), D(2026, 11, 17)),
    "partial-first-and-last-months": (D(2026, 9, 15), D(2026, 11, 10)),
    "ends-after-the-data": (D(2026, 11, 1), D(2026, 12, 31)),
}

# The company zones the ranges are read in: UTC, one at +05:45 and one with DST.
COMPANY_ZONES = ("UTC", "Asia/Kathmandu", "America/New_York")

# A recount from the raw rows: generations and ledger entries whose date in the company
# zone (:tz) lies in the range, whatever each organization's own zone.
_RECOUNT_RANKING = text(
    """
    SELECT o.id AS organization_id,
           (SELECT count(*) FROM generations g
            WHERE g.organization_id = o.id
              AND (g.created_at AT TIME ZONE CAST(:tz AS text))::date
                  BETWEEN :start AND :end) AS generations,
           coalesce((SELECT sum(g.credits) FROM generations g
                     WHERE g.organization_id = o.id
                       AND (g.created_at AT TIME ZONE CAST(:tz AS text))::date
                           BETWEEN :start AND :end), 0) AS credits_consumed,
           coalesce((SELECT sum(l.amount) FROM credit_ledger l
                     WHERE l.organization_id = o.id AND l.amount > 0
                       AND (l.created_at AT TIME ZONE CAST(:tz AS text))::date
                           BETWEEN :start AND :end), 0) AS credits_granted,
           -- An expiry is not a deduction (issue 18): statements show it apart.
           coalesce((SELECT -sum(l.amount) FROM credit_ledger l
                     WHERE l.organization_id = o.id AND l.amount < 0 AND l.kind <> 'expired'
                       AND (l.created_at AT TIME ZONE CAST(:tz AS text))::date
                           BETWEEN :start AND :end), 0) AS credits_deducted
    FROM organizations o
    ORDER BY o.id
    """
)
_RECOUNT_MONTHLY = text(
    """
    WITH months AS (
        SELECT m::date AS month
        FROM generate_series(date_trunc('month', CAST(:start AS date)),
                             date_trunc('month', CAST(:end AS date)), interval '1 month') AS m
    ),
    g AS (
        SELECT date_trunc('month', (g.created_at AT TIME ZONE CAST(:tz AS text))::date)::date
                   AS month, g.organization_id, g.credits
        FROM generations g
        WHERE (g.created_at AT TIME ZONE CAST(:tz AS text))::date BETWEEN :start AND :end
    )
    SELECT m.month,
           (SELECT count(*) FROM g WHERE g.month = m.month) AS generations,
           coalesce((SELECT sum(g.credits) FROM g WHERE g.month = m.month), 0)
               AS credits_consumed,
           coalesce((SELECT sum(l.amount) FROM credit_ledger l
                     WHERE l.amount > 0
                       AND date_trunc('month', (l.created_at AT TIME ZONE CAST(:tz AS text))::date)
                           = m.month
                       AND (l.created_at AT TIME ZONE CAST(:tz AS text))::date
                           BETWEEN :start AND :end), 0) AS credits_granted,
           (SELECT count(DISTINCT g.organization_id) FROM g WHERE g.month = m.month)
               AS active_organizations
    FROM months m
    ORDER BY m.month
    """
)


@pytest.fixture(scope="module")
def demo(demo_engine: Engine) -> Iterator[Connection]:
    with demo_engine.connect() as conn:
        yield conn


@pytest.mark.parametrize("zone", COMPANY_ZONES)
@pytest.mark.parametrize("span", RANGES)
def test_usage_ranking_equals_a_recount_of_the_company_zones_days(
    demo: Connection, span: str, zone: str
) -> None:
    start, end = RANGES[span]
    ranked = usage.all_orgs_usage(demo, start=start, end=end, timezone=zone)
    expected = pd.DataFrame(
        demo.execute(_RECOUNT_RANKING, {"start": start, "end": end, "tz": zone}).mappings().all()
    ).astype("int64")
    columns = list(expected.columns)
    got = ranked[columns].sort_values("organization_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert expected["credits_consumed"].sum() > 0 or span == "ends-after-the-data"
    # The page's totals are those of the whole ranking.
    page = usage.all_orgs_usage_page(demo, start=start, end=end, limit=10, timezone=zone)
    assert page.totals == usage.UsageTotals(
        organizations=len(expected),
        generations=int(expected["generations"].sum()),
        credits_consumed=int(expected["credits_consumed"].sum()),
        credits_granted=int(expected["credits_granted"].sum()),
    )
    pd.testing.assert_frame_equal(page.rows, ranked.head(10), check_like=True)


@pytest.mark.parametrize("zone", COMPANY_ZONES)
@pytest.mark.parametrize("span", RANGES)
def test_monthly_trend_equals_a_recount_of_the_company_zones_months(
    demo: Connection, span: str, zone: str
) -> None:
    start, end = RANGES[span]
    monthly = usage.all_orgs_monthly_credits(demo, start=start, end=end, timezone=zone)
    expected = demo.execute(_RECOUNT_MONTHLY, {"start": start, "end": end, "tz": zone}).all()
    got = monthly.assign(month=monthly["month"].dt.date)
    assert [tuple(row) for row in got.itertuples(index=False)] == [tuple(row) for row in expected]


# Every generation on its date in the company zone (:tz), bucketed and typed, for the
# organizations of the plans (all when :any_plan): the cross-organization timeline.
_RECOUNT_TIMELINE = text(
    """
    WITH buckets AS (
        SELECT b::date AS bucket
        FROM generate_series(date_trunc(:unit, CAST(:start AS date)),
                             date_trunc(:unit, CAST(:end AS date)),
                             CAST('1 ' || :unit AS interval)) AS b
    ),
    g AS (
        SELECT date_trunc(:unit, (g.created_at AT TIME ZONE CAST(:tz AS text))::date)::date
                   AS bucket, g.type, count(*) AS generations, sum(g.credits) AS credits
        FROM generations g JOIN organizations o ON o.id = g.organization_id
        WHERE (g.created_at AT TIME ZONE CAST(:tz AS text))::date BETWEEN :start AND :end
          AND (CAST(:any_plan AS boolean) OR o.plan = ANY(CAST(:plans AS text[])))
        GROUP BY 1, 2
    )
    SELECT b.bucket, t.type, coalesce(g.generations, 0) AS generations,
           coalesce(g.credits, 0) AS credits
    FROM buckets b CROSS JOIN generation_types t
    LEFT JOIN g ON g.bucket = b.bucket AND g.type = t.type
    ORDER BY b.bucket, t.type
    """
)


@pytest.mark.parametrize("plans", [(), ("pro", "enterprise")])
@pytest.mark.parametrize("granularity", ["day", "week", "month"])
@pytest.mark.parametrize("zone", COMPANY_ZONES)
@pytest.mark.parametrize("span", ["last-30-days", "partial-first-and-last-months"])
def test_timeline_across_organizations_equals_a_recount_of_the_company_zones_days(
    demo: Connection, span: str, zone: str, granularity: str, plans: tuple[str, ...]
) -> None:
    start, end = RANGES[span]
    got = timelines.all_organizations_timeline(
        demo, start=start, end=end, timezone=zone, granularity=granularity, plans=plans
    )
    expected = demo.execute(
        _RECOUNT_TIMELINE,
        {
            "start": start,
            "end": end,
            "tz": zone,
            "unit": granularity,
            "any_plan": not plans,
            "plans": list(plans),
        },
    ).all()
    rows = [
        (b.date(), t, int(g), int(c))
        for b, t, g, c in got[["bucket", "type", "generations", "credits"]].itertuples(index=False)
    ]
    assert rows == [tuple(row) for row in expected]
    assert got["credits"].sum() > 0


def test_timeline_across_organizations_counts_the_company_zones_dst_day(
    connection: Connection,
) -> None:
    """Around New York's fall-back day (25 hours), with one organization in the company's
    zone (read from its local days) and one at UTC+5:45 (read from its quarter-hours):
    each generation on its company-zone day; the plan filter keeps one of them."""
    company = "America/New_York"
    zone = zoneinfo.ZoneInfo(company)
    times = [
        dt.datetime(2026, 10, 31, 23, 59, 59, tzinfo=zone),
        dt.datetime(2026, 11, 1, 0, 0, tzinfo=zone),
        dt.datetime(2026, 11, 1, 1, 30, tzinfo=zone, fold=0),  # the first 01:30 (EDT)
        dt.datetime(2026, 11, 1, 1, 30, tzinfo=zone, fold=1),  # the second (EST)
        dt.datetime(2026, 11, 1, 23, 59, tzinfo=zone),
        dt.datetime(2026, 11, 2, 0, 0, tzinfo=zone),
    ]
    ensure_types(connection)
    for own, plan in ((company, "pro"), ("Asia/Kathmandu", "free")):
        org = make_org(connection, timezone=own, plan=plan, balance=1_000)
        user = make_user(connection, org)
        add_generations(connection, org, [(user, "chat", 3, at) for at in times])
    assert mismatches(connection) == dict.fromkeys(ROLLUPS, 0)
    start, end = D(2026, 10, 31), D(2026, 11, 2)
    for plans in ((), ("pro",), ("free",)):
        got = timelines.all_organizations_timeline(
            connection, start=start, end=end, timezone=company, plans=plans
        )
        expected = connection.execute(
            _RECOUNT_TIMELINE,
            {
                "start": start,
                "end": end,
                "tz": company,
                "unit": "day",
                "any_plan": not plans,
                "plans": list(plans),
            },
        ).all()
        rows = [
            (b.date(), t, int(g), int(c))
            for b, t, g, c in got[["bucket", "type", "generations", "credits"]].itertuples(
                index=False
            )
        ]
        assert rows == [tuple(row) for row in expected]
        chat = {b: g for b, t, g, _ in rows if t == "chat"}
        # Ours at least (the database may hold other organizations' generations).
        each = 2 if not plans else 1
        assert chat[D(2026, 10, 31)] >= each and chat[D(2026, 11, 1)] >= 4 * each


# Out of order on purpose: each generation lands before, between or after days that
# already have rows, so the later days' totals must move too.
_LOCAL_TIMES = (
    "2026-11-01 12:00:00",
    "2026-10-31 23:59:59",
    "2026-11-02 00:00:00",
    "2026-10-15 08:00:00",
    "2026-11-01 01:30:00",  # New York: this hour happens twice this day
    "2026-09-30 23:45:00",
    "2026-11-01 00:00:00",
    "2026-10-01 00:00:00",
)


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kathmandu", "America/New_York"])
def test_prefix_sums_stay_exact_when_generations_arrive_out_of_order(
    write_engine: Engine, zone: str
) -> None:
    org, users = new_org(write_engine, balance=100_000, timezone=zone)
    tz = zoneinfo.ZoneInfo(zone)
    instants = [dt.datetime.fromisoformat(t).replace(tzinfo=tz) for t in _LOCAL_TIMES]
    random.Random(8).shuffle(instants)
    for n, at in enumerate(instants):
        record_generation(
            write_engine,
            organization_id=org,
            user_id=users[0],
            type=("chat", "image")[n % 2],
            at=at,
        )
    with write_engine.connect() as conn:
        assert mismatches(conn, organization_id=org) == dict.fromkeys(ROLLUPS, 0)
        days = conn.execute(
            text("SELECT count(*) FROM organization_daily_usage WHERE organization_id = :org"),
            {"org": org},
        ).scalar_one()
        assert days >= 5
        # Every range, in the organization's own zone and in the others, is the recount
        # of that range.
        ranges = [(D(2026, 10, 1), D(2026, 10, 31)), (D(2026, 11, 1), D(2026, 11, 1))]
        for (start, end), company in itertools.product(ranges, COMPANY_ZONES):
            ranked = usage.all_orgs_usage(conn, start=start, end=end, timezone=company)
            mine = ranked[ranked["organization_id"] == org].iloc[0]
            recount = conn.execute(
                _RECOUNT_RANKING, {"start": start, "end": end, "tz": company}
            ).all()
            expected = next(r for r in recount if r.organization_id == org)
            assert (mine["generations"], mine["credits_consumed"]) == (
                expected.generations,
                expected.credits_consumed,
            )


@pytest.mark.parametrize(
    ("company", "own"),
    [
        ("Pacific/Kiritimati", "Etc/GMT+12"),
        ("Etc/GMT+12", "Pacific/Kiritimati"),
        ("Asia/Kathmandu", "America/New_York"),
        ("UTC", "Asia/Kathmandu"),
    ],
)
def test_ledger_movements_fall_on_the_company_zones_days(
    connection: Connection, company: str, own: str
) -> None:
    # The edges of the company zone's days count, not those of the organization's own
    # zone: the extreme offsets (+14, -12), +5:45 and a DST zone.
    org = make_org(connection, timezone=own)
    tz = zoneinfo.ZoneInfo(company)
    start, end = D(2026, 11, 3), D(2026, 11, 5)

    def local(day: dt.date, clock: str) -> dt.datetime:
        return dt.datetime.combine(day, dt.time.fromisoformat(clock), tz)

    add_ledger(
        connection,
        org,
        [
            (1, "grant", "before", local(start - dt.timedelta(days=1), "23:59:59")),
            (10, "grant", "first", local(start, "00:00:00")),
            (100, "grant", "middle", local(D(2026, 11, 4), "12:00:00")),
            (1000, "grant", "last", local(end, "23:59:59")),
            (10000, "grant", "after", local(end + dt.timedelta(days=1), "00:00:00")),
        ],
    )
    ranked = usage.all_orgs_usage(connection, start=start, end=end, timezone=company)
    assert ranked.set_index("organization_id").loc[org, "credits_granted"] == 1110
    page = usage.all_orgs_usage_page(
        connection, start=start, end=end, search=None, limit=10_000, timezone=company
    )
    assert page.rows.set_index("organization_id").loc[org, "credits_granted"] == 1110
    monthly = usage.all_orgs_monthly_credits(connection, start=start, end=end, timezone=company)
    everyone = ranked["credits_granted"].sum()
    assert list(monthly["credits_granted"]) == [everyone]
