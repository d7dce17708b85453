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
from tests.conftest import DEMO_NOW
from tests.queries import raw_timelines
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
