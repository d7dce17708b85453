"""A period that reaches now is compared like with like: both periods are counted up to
the same local time of their last day, from the quarter-hour rollup, and the numbers
equal a recount of the raw generations between those instants.

"Now" is fixed at awkward instants: the first minutes of a month in UTC, the last
minutes of the year, New York's DST day (25 hours) and a +05:45 organization."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

import pytest
from sqlalchemy import Connection, text

from queries import timelines
from tests.factories import add_generations, ensure_types, make_org, make_user

UTC = dt.UTC
D = dt.date

# Raw recount: generations and active users in [lo, hi).
_RAW = text(
    """
    SELECT count(*) AS generations, coalesce(sum(credits), 0) AS credits,
           count(DISTINCT user_id) AS users
    FROM generations
    WHERE organization_id = :org AND created_at >= :lo AND created_at < :hi
    """
)


def _raw(conn: Connection, org: int, lo: dt.datetime, hi: dt.datetime) -> tuple[int, int, int]:
    row = conn.execute(_RAW, {"org": org, "lo": lo, "hi": hi}).one()
    return int(row.generations), int(row.credits), int(row.users)


def _org_with_hourly_use(
    conn: Connection, zone: str, first: dt.datetime, last: dt.datetime
) -> tuple[int, list[int]]:
    """An organization in ``zone`` with a generation every 20 minutes from ``first`` to
    ``last`` (two users, alternating; credits vary), so every cut moves the counts."""
    ensure_types(conn)
    org = make_org(conn, timezone=zone, balance=1_000_000)
    users = [make_user(conn, org), make_user(conn, org)]
    rows: list[tuple[int, str, int, dt.datetime]] = []
    at, n = first, 0
    while at <= last:
        rows.append((users[n % 2], "chat", 1 + n % 5, at))
        at += dt.timedelta(minutes=20)
        n += 1
    add_generations(conn, org, rows)
    return org, users


CASES: list[tuple[str, dt.datetime, str, D, D]] = [
    # (zone, now, preset, start, end): the period is the local "last N days" at now.
    # 00:04 UTC on 1 December: 05:49 in Kathmandu (+05:45), so today has 5 h 45 of use.
    (
        "Asia/Kathmandu",
        dt.datetime(2026, 12, 1, 0, 4, tzinfo=UTC),
        "7d",
        D(2026, 11, 25),
        D(2026, 12, 1),
    ),
    # The same instant in UTC: today is four minutes old, nothing whole to compare yet.
    ("UTC", dt.datetime(2026, 12, 1, 0, 4, tzinfo=UTC), "7d", D(2026, 11, 25), D(2026, 12, 1)),
    # 23:58 on 31 December in UTC.
    ("UTC", dt.datetime(2026, 12, 31, 23, 58, tzinfo=UTC), "7d", D(2026, 12, 25), D(2026, 12, 31)),
    # New York on its DST day (1 November 2026 lasts 25 hours), in the afternoon, and a
    # week later, when the previous period's last day is 8 November.
    (
        "America/New_York",
        dt.datetime(2026, 11, 1, 19, 37, tzinfo=UTC),
        "7d",
        D(2026, 10, 26),
        D(2026, 11, 1),
    ),
    (
        "America/New_York",
        dt.datetime(2026, 11, 8, 19, 37, tzinfo=UTC),
        "7d",
        D(2026, 11, 2),
        D(2026, 11, 8),
    ),
]


@pytest.mark.parametrize(("zone", "now", "preset", "start", "end"), CASES)
def test_a_period_that_reaches_now_is_compared_up_to_the_same_local_time(
    connection: Connection,
    zone: str,
    now: dt.datetime,
    preset: str,
    start: D,
    end: D,
) -> None:
    tz = zoneinfo.ZoneInfo(zone)
    org, _ = _org_with_hourly_use(
        connection, zone, now - dt.timedelta(days=20), now + dt.timedelta(days=1)
    )
    kpis = timelines.period_kpis(connection, organization_id=org, start=start, end=end, now=now)
    # Counted up to the last whole quarter-hour, in the organization's zone ...
    cut = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    assert kpis.through == cut
    lower = dt.datetime.combine(start, dt.time(), tz)
    # ... and the previous period up to the same local time on its last day.
    days = (end - start).days + 1
    local_cut = cut.astimezone(tz).replace(tzinfo=None) - dt.timedelta(days=days)
    previous_through = local_cut.replace(tzinfo=tz)
    assert kpis.previous_through == previous_through
    previous_lower = dt.datetime.combine(start - dt.timedelta(days=days), dt.time(), tz)
    now_counts = _raw(connection, org, lower, cut)
    before_counts = _raw(connection, org, previous_lower, previous_through)
    assert (kpis.generations, kpis.credits, kpis.active_users) == now_counts
    assert (
        kpis.previous_generations,
        kpis.previous_credits,
        kpis.previous_active_users,
    ) == before_counts
    # Use every 20 minutes, so the previous period is the same use: no change at all
    # (the old comparison with a whole previous day said −x % here).
    assert kpis.generations == kpis.previous_generations or zone == "America/New_York"
    # Generations after the cut (they exist: use runs a day past now) are not counted.
    assert _raw(connection, org, lower, cut + dt.timedelta(hours=1))[0] > kpis.generations


def test_a_period_that_has_ended_compares_whole_days(connection: Connection) -> None:
    now = dt.datetime(2026, 12, 1, 0, 4, tzinfo=UTC)
    org, _ = _org_with_hourly_use(
        connection, "Asia/Kathmandu", now - dt.timedelta(days=20), now + dt.timedelta(days=1)
    )
    kpis: Any = timelines.period_kpis(
        connection, organization_id=org, start=D(2026, 11, 24), end=D(2026, 11, 30), now=now
    )
    assert kpis.through is None and kpis.previous_through is None
    tz = zoneinfo.ZoneInfo("Asia/Kathmandu")
    lower = dt.datetime.combine(D(2026, 11, 24), dt.time(), tz)
    upper = dt.datetime.combine(D(2026, 12, 1), dt.time(), tz)
    assert (kpis.generations, kpis.credits) == _raw(connection, org, lower, upper)[:2]


def test_now_must_carry_a_zone(connection: Connection) -> None:
    from queries.errors import InvalidInput

    with pytest.raises(InvalidInput, match="time zone"):
        timelines.period_kpis(
            connection,
            organization_id=1,
            start=D(2026, 11, 1),
            end=D(2026, 11, 7),
            now=dt.datetime(2026, 11, 7, 12),
        )
