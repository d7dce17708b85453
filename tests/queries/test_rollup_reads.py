"""The rollup-backed reads give the answers the raw-row reads gave, on the demo data.

``tests/queries/raw_timelines.py`` is queries/timelines.py as it was before the rollups
(every answer aggregated from ``generations``); each read must equal it for every
demo organization (several zones, the largest tenant and the smallest), in the
organization's zone and in UTC, per day, week and month, with and without types. The
rollup reads must also use the rollups' keys, not scan them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import astuple
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Connection, Engine, text

from queries import timelines
from queries.generations import record_generation
from tests.conftest import DEMO_NOW
from tests.queries import raw_timelines
from tests.queries.writes import new_org
from tests.statements import recording

END = DEMO_NOW.date()
RANGES = (
    (END - dt.timedelta(days=29), END),
    (END - dt.timedelta(days=95), END - dt.timedelta(days=3)),
)


@pytest.fixture(scope="module")
def demo(demo_engine: Engine) -> Iterator[Connection]:
    with demo_engine.connect() as conn:
        yield conn


@pytest.fixture(scope="module")
def members(demo: Connection) -> list[tuple[int, int]]:
    """(organization, its busiest user) for every demo organization with generations."""
    return [
        (row.organization_id, row.user_id)
        for row in demo.execute(
            text(
                "SELECT DISTINCT ON (organization_id) organization_id, user_id FROM generations "
                "GROUP BY 1, 2 ORDER BY organization_id, count(*) DESC"
            )
        )
    ]


def test_the_demo_covers_several_zones(demo: Connection, members: list[tuple[int, int]]) -> None:
    zones = demo.execute(
        text("SELECT count(DISTINCT timezone) FROM organizations WHERE id = ANY(:o)"),
        {"o": [org for org, _ in members]},
    ).scalar_one()
    assert zones >= 3 and len(members) >= 10


@pytest.mark.parametrize("utc", [False, True], ids=["local", "utc"])
def test_organization_timelines_and_kpis_equal_the_raw_rows(
    demo: Connection, members: list[tuple[int, int]], utc: bool
) -> None:
    for org, _ in members:
        for start, end in RANGES:
            for granularity, by_type in (("day", False), ("week", True), ("month", False)):
                options: dict[str, Any] = {
                    "organization_id": org,
                    "start": start,
                    "end": end,
                    "granularity": granularity,
                    "utc": utc,
                    "by_type": by_type,
                }
                pd.testing.assert_frame_equal(
                    timelines.generation_timeline(demo, **options),
                    raw_timelines.generation_timeline(demo, **options),
                )
            kpis: dict[str, Any] = {"organization_id": org, "start": start, "end": end, "utc": utc}
            # Two PeriodKpis classes (the oracle has its own): compare their fields.
            assert astuple(timelines.period_kpis(demo, **kpis)) == astuple(
                raw_timelines.period_kpis(demo, **kpis)
            )


@pytest.mark.parametrize("utc", [False, True], ids=["local", "utc"])
def test_top_users_and_user_timelines_equal_the_raw_rows(
    demo: Connection, members: list[tuple[int, int]], utc: bool
) -> None:
    for org, user in members:
        for start, end in RANGES:
            top: dict[str, Any] = {
                "organization_id": org,
                "start": start,
                "end": end,
                "limit": 50,
                "utc": utc,
            }
            pd.testing.assert_frame_equal(
                timelines.top_users(demo, **top), raw_timelines.top_users(demo, **top)
            )
            for granularity, by_type in (("day", True), ("week", False)):
                options: dict[str, Any] = {
                    "organization_id": org,
                    "user_id": user,
                    "start": start,
                    "end": end,
                    "granularity": granularity,
                    "utc": utc,
                    "by_type": by_type,
                }
                pd.testing.assert_frame_equal(
                    timelines.user_timeline(demo, **options),
                    raw_timelines.user_timeline(demo, **options),
                )


# UTC days are read as local days plus the quarter-hours between each UTC midnight and
# the nearest local one: zones on both sides of UTC, off the hour (+5:45), half-hour DST
# (Lord Howe), beyond +12 (Kiritimati, +14), across New York's DST changes.
UTC_READ_ZONES = (
    "UTC",
    "Asia/Kathmandu",
    "America/New_York",
    "Australia/Lord_Howe",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
)
# Around UTC midnights and the DST changes of New York (March 8, November 1) and Lord
# Howe (April 5, October 4), 2026.
_UTC_INSTANTS = [
    dt.datetime.fromisoformat(f"{day} {time}+00:00")
    for day in (
        "2026-03-07",
        "2026-03-08",
        "2026-03-09",
        "2026-04-04",
        "2026-04-05",
        "2026-10-03",
        "2026-10-04",
        "2026-10-31",
        "2026-11-01",
        "2026-11-02",
    )
    for time in ("00:00:00", "00:14:59", "05:30:00", "10:45:00", "13:15:00", "15:00:00", "23:59:59")
]


@pytest.mark.parametrize("zone", UTC_READ_ZONES)
def test_utc_timelines_equal_the_raw_rows_in_every_kind_of_zone(
    write_engine: Engine, zone: str
) -> None:
    org, users = new_org(write_engine, balance=1_000_000, timezone=zone, users=2)
    for n, at in enumerate(_UTC_INSTANTS):
        record_generation(
            write_engine,
            organization_id=org,
            user_id=users[n % 2],
            type=("chat", "image")[n % 3 == 0],
            at=at,
        )
    ranges = (
        (dt.date(2026, 3, 1), dt.date(2026, 11, 30)),
        (dt.date(2026, 3, 8), dt.date(2026, 3, 8)),
        (dt.date(2026, 4, 4), dt.date(2026, 10, 4)),
        (dt.date(2026, 10, 29), dt.date(2026, 11, 4)),
    )
    with write_engine.connect() as conn:
        for start, end in ranges:
            for granularity in ("day", "week", "month"):
                for by_type in (False, True):
                    options: dict[str, Any] = {
                        "organization_id": org,
                        "start": start,
                        "end": end,
                        "granularity": granularity,
                        "utc": True,
                        "by_type": by_type,
                    }
                    pd.testing.assert_frame_equal(
                        timelines.generation_timeline(conn, **options),
                        raw_timelines.generation_timeline(conn, **options),
                    )
        whole = timelines.generation_timeline(
            conn, organization_id=org, start=ranges[0][0], end=ranges[0][1], utc=True
        )
    assert whole["generations"].sum() == len(_UTC_INSTANTS)


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


ROLLUP_READS: dict[str, Callable[[Connection, int, int], object]] = {
    "generation_timeline[utc]": lambda c, org, user: timelines.generation_timeline(
        c, organization_id=org, start=RANGES[0][0], end=END, utc=True, by_type=True
    ),
    "user_timeline": lambda c, org, user: timelines.user_timeline(
        c, organization_id=org, user_id=user, start=RANGES[0][0], end=END, by_type=True
    ),
    "top_users": lambda c, org, user: timelines.top_users(
        c, organization_id=org, start=RANGES[0][0], end=END
    ),
    "period_kpis": lambda c, org, user: timelines.period_kpis(
        c, organization_id=org, start=RANGES[0][0], end=END
    ),
    "period_kpis[utc]": lambda c, org, user: timelines.period_kpis(
        c, organization_id=org, start=RANGES[0][0], end=END, utc=True
    ),
}


@pytest.mark.parametrize("name", sorted(ROLLUP_READS))
def test_rollup_reads_use_the_rollup_keys(
    demo: Connection, members: list[tuple[int, int]], name: str
) -> None:
    largest = demo.execute(
        text("SELECT organization_id FROM generations GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
    ).scalar_one()
    user = dict(members)[largest]
    with recording(demo) as recorded:
        ROLLUP_READS[name](demo, largest, user)
    relations = set()
    for statement, params in recorded.statements:
        plan = demo.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, params).scalar_one()
        for node in _nodes(plan[0]["Plan"]):
            relation = node.get("Relation Name")
            relations.add(relation)
            if relation in ("user_daily_usage", "quarter_hour_usage"):
                assert node["Node Type"] != "Seq Scan", f"{name}: sequential scan of {relation}"
    assert relations & {"user_daily_usage", "quarter_hour_usage"}, f"{name} reads no rollup"
