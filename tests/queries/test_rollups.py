"""The generation rollups are exact: each equals a recount from ``generations``.

- per zone, with generations at the edges of local days: UTC, Asia/Kolkata (+5:30),
  Asia/Kathmandu (+5:45), America/New_York across its spring-forward and fall-back days;
- summing quarter-hours over a local day gives that zone's day exactly;
- a refused generation changes no rollup;
- after concurrent record_generation calls from threads, on one organization and on
  several, through a login that is only a member of ``dashboard_app``;
- on the demo database (tests/tooling/test_demo_data.py checks the loader's rollups);
- the shared recounts (queries/recounts.py: the loader, set_timezone and reconciliation
  use them) equal every stored rollup after out-of-order writes in UTC, +5:45 and a DST
  zone, and after set_timezone rebuilt them from those recounts.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import zoneinfo
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from queries import recounts
from queries.errors import InsufficientCredits, QuotaExceeded
from queries.generations import record_generation
from queries.orgs import set_timezone
from queries.quotas import set_daily_limit
from tests.conftest import PgServer
from tests.queries.roles import APP_LOGIN, login_engine
from tests.queries.rollups import ROLLUPS, mismatches, rows, shared_recount_mismatches
from tests.queries.writes import new_org

EXACT = dict.fromkeys(ROLLUPS, 0)

# Local wall-clock times around the day's edges and DST changes, per zone: each is
# recorded at the UTC instant it names in that zone.
_LOCAL_TIMES = (
    "2026-03-07 23:59:59",
    "2026-03-08 00:00:00",
    "2026-03-08 01:59:00",
    "2026-03-08 03:00:00",  # New York: the hour after 02:00 does not exist this day
    "2026-03-08 23:44:59",
    "2026-03-08 23:45:00",
    "2026-03-08 23:59:59",
    "2026-03-09 00:14:59",
    "2026-11-01 00:59:00",
    "2026-11-01 01:30:00",  # New York: this hour happens twice this day
    "2026-11-01 23:59:59",
    "2026-11-02 00:00:00",
)
ZONES = ("UTC", "Asia/Kolkata", "Asia/Kathmandu", "America/New_York")


def _instants(zone: str) -> list[dt.datetime]:
    tz = zoneinfo.ZoneInfo(zone)
    out = []
    for local in _LOCAL_TIMES:
        wall = dt.datetime.fromisoformat(local)
        out.append(wall.replace(tzinfo=tz))
        out.append(wall.replace(tzinfo=tz, fold=1))  # the second 01:30 of fall-back
    return out


# Per local day of the organization: the per-user rollup's totals and the totals of
# the quarter-hours between that day's local midnights.
_DAY_TOTALS = text(
    """
    WITH days AS (
        SELECT d.date, sum(d.generations) AS generations, sum(d.credits) AS credits
        FROM user_daily_usage d WHERE d.organization_id = :org GROUP BY d.date
    )
    SELECT days.date, days.generations, days.credits,
           (SELECT coalesce(sum(q.generations), 0) FROM quarter_hour_usage q
            WHERE q.organization_id = :org
              AND q.bucket >= days.date::timestamp AT TIME ZONE o.timezone
              AND q.bucket < (days.date + 1)::timestamp AT TIME ZONE o.timezone)
               AS quarter_hour_generations,
           (SELECT coalesce(sum(q.credits), 0) FROM quarter_hour_usage q
            WHERE q.organization_id = :org
              AND q.bucket >= days.date::timestamp AT TIME ZONE o.timezone
              AND q.bucket < (days.date + 1)::timestamp AT TIME ZONE o.timezone)
               AS quarter_hour_credits
    FROM days JOIN organizations o ON o.id = :org
    ORDER BY days.date
    """
)


@pytest.mark.parametrize("zone", ZONES)
def test_rollups_equal_a_recount_at_the_edges_of_local_days(
    write_engine: Engine, zone: str
) -> None:
    org, users = new_org(write_engine, balance=100_000, timezone=zone, users=2)
    for n, at in enumerate(_instants(zone)):
        record_generation(
            write_engine,
            organization_id=org,
            user_id=users[n % 2],
            type=("chat", "image")[n % 3 == 0],
            at=at,
        )
    with write_engine.connect() as conn:
        assert mismatches(conn, organization_id=org) == EXACT
        assert all(rows(conn, table, organization_id=org) > 0 for table in ROLLUPS)
        days = conn.execute(_DAY_TOTALS, {"org": org}).all()
    # Quarter-hours add up to every local day exactly, +5:45 and DST days included.
    assert days
    for day in days:
        assert (day.quarter_hour_generations, day.quarter_hour_credits) == (
            day.generations,
            day.credits,
        ), day.date
    assert sum(day.generations for day in days) == len(_instants(zone))


@pytest.mark.parametrize(
    ("zone", "moved_to"),
    [
        ("UTC", "Asia/Kathmandu"),
        ("Asia/Kathmandu", "America/New_York"),
        ("America/New_York", "UTC"),
    ],
)
def test_the_shared_recounts_equal_every_rollup_after_out_of_order_writes(
    write_engine: Engine, zone: str, moved_to: str
) -> None:
    org, users = new_org(write_engine, balance=100_000, timezone=zone, users=2)
    instants = _instants(zone)
    random.Random(zone).shuffle(instants)  # back-dated writes move later running totals
    for n, at in enumerate(instants):
        record_generation(
            write_engine,
            organization_id=org,
            user_id=users[n % 2],
            type=("chat", "image")[n % 3 == 0],
            at=at,
        )
    with write_engine.connect() as conn:
        assert shared_recount_mismatches(conn, organization_id=org) == dict.fromkeys(
            recounts.RECOUNTED, 0
        )
        assert mismatches(conn, organization_id=org) == EXACT  # the tests' own recount
        assert all(rows(conn, table, organization_id=org) > 0 for table in ROLLUPS)
    set_timezone(
        write_engine, organization_id=org, timezone=moved_to, actor="ops@example.com", reason="Move"
    )
    with write_engine.connect() as conn:
        assert shared_recount_mismatches(conn, organization_id=org) == dict.fromkeys(
            recounts.RECOUNTED, 0
        )
        assert mismatches(conn, organization_id=org) == EXACT


# Every offset a zone uses between 2000 and 2040 (the dates record_generation accepts
# and then some), sampled on the 1st and 15th of each month.
_OFFSETS_OFF_THE_QUARTER_HOUR = text(
    """
    SELECT z.name, min(t) AS first_seen
    FROM pg_timezone_names z
    CROSS JOIN generate_series(TIMESTAMPTZ '2000-01-01 00:00+00', TIMESTAMPTZ '2040-12-31 00:00+00',
                               INTERVAL '1 month') AS m
    CROSS JOIN LATERAL (VALUES (m), (m + INTERVAL '14 days')) AS s(t)
    WHERE z.name NOT LIKE 'posix/%' AND z.name NOT LIKE 'right/%'
      AND extract(epoch FROM (t AT TIME ZONE z.name) - (t AT TIME ZONE 'UTC'))::bigint % 900 <> 0
    GROUP BY z.name
    ORDER BY z.name
    """
)


def test_every_zone_offset_is_a_whole_number_of_quarter_hours(write_engine: Engine) -> None:
    # Why quarter-hour buckets give every zone its exact local day.
    with write_engine.connect() as conn:
        assert conn.execute(_OFFSETS_OFF_THE_QUARTER_HOUR).all() == []


def test_a_refused_generation_changes_no_rollup(write_engine: Engine) -> None:
    org, (user,) = new_org(write_engine, balance=50, timezone="Asia/Kathmandu")
    at = None  # now: only today's limit can still be changed
    record_generation(write_engine, organization_id=org, user_id=user, type="chat", at=at)
    with pytest.raises(InsufficientCredits):
        record_generation(
            write_engine, organization_id=org, user_id=user, type="chat", credits=60, at=at
        )
    set_daily_limit(
        write_engine,
        organization_id=org,
        type="chat",
        daily_limit=1,
        actor="ops@example.com",
        reason="test",
    )
    with pytest.raises(QuotaExceeded):
        record_generation(write_engine, organization_id=org, user_id=user, type="chat", at=at)
    with write_engine.connect() as conn:
        assert mismatches(conn, organization_id=org) == EXACT
        totals = conn.execute(
            text(
                "SELECT (SELECT sum(generations) FROM user_daily_usage WHERE organization_id = :org),"
                " (SELECT sum(generations) FROM quarter_hour_usage WHERE organization_id = :org)"
            ),
            {"org": org},
        ).one()
    assert tuple(totals) == (1, 1)


@pytest.fixture
def app_writer(write_engine: Engine, test_server: PgServer) -> Iterator[Engine]:
    """A login that is only a member of dashboard_app: the grants must suffice."""
    database = write_engine.url.database
    assert database is not None
    engine = login_engine(test_server, database, APP_LOGIN, pool_size=10, max_overflow=10)
    yield engine
    engine.dispose()


def test_rollups_stay_exact_under_concurrent_generations(
    write_engine: Engine, app_writer: Engine
) -> None:
    zones = ("Asia/Kathmandu", "Asia/Kolkata", "America/New_York", "UTC")
    orgs = {
        zone: new_org(write_engine, balance=10_000_000, timezone=zone, users=3) for zone in zones
    }
    errors: list[BaseException] = []
    # Many threads hit the same rows at once: the same few minutes, users and types.
    base = dt.datetime(2026, 3, 8, 6, 44, tzinfo=dt.UTC)

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(40):
                # Half the threads on the first organization, half spread over all.
                org, users = orgs[zones[0]] if seed % 2 else orgs[rng.choice(zones)]
                record_generation(
                    app_writer,
                    organization_id=org,
                    user_id=rng.choice(users),
                    type=rng.choice(("chat", "image")),
                    at=base + dt.timedelta(minutes=rng.randrange(0, 32)),
                )
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with write_engine.connect() as conn:
        recorded = 0
        for org, _ in orgs.values():
            assert mismatches(conn, organization_id=org) == EXACT
            recorded += conn.execute(
                text(
                    "SELECT sum(generations) FROM quarter_hour_usage WHERE organization_id = :org"
                ),
                {"org": org},
            ).scalar_one()
    assert recorded == 8 * 40


def test_rollups_equal_a_recount_on_the_demo_database(demo_engine: Engine) -> None:
    with demo_engine.connect() as conn:
        assert mismatches(conn) == EXACT
        assert shared_recount_mismatches(conn) == dict.fromkeys(recounts.RECOUNTED, 0)
