"""The usual days the forecast keeps (``usual_days``, migration 0017) are exact, and the
forecast is the same with them as without them:

- every kept row is either stale (its zone or its count of the generations before its
  day is no longer the organization's: the forecast never reads it) or equal to the
  tests' own recount from ``generations`` (Python's zoneinfo, apart from ``usual_day()``),
  after out-of-order and concurrent writes in UTC, +5:45 and a DST zone; after
  ``set_timezone`` and the shared recount every row is current and exact;
- the first generation of a local day keeps that day's row (the trigger), current;
- the forecast with the kept rows equals, value for value, the forecast with the table
  emptied (every usual day computed from ``quarter_hour_usage``), on the demo data and on
  histories drawn by hypothesis, fresh or made stale by a late write.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import zoneinfo
from collections import Counter

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from sqlalchemy import Connection, Engine, text

from queries import recounts
from queries.forecast import quota_forecast
from queries.generations import record_generation
from queries.orgs import set_timezone
from tests.conftest import DEMO_NOW
from tests.queries.writes import new_org

ZONES = ("UTC", "Asia/Kathmandu", "America/New_York")
# A Sunday in New York's spring-forward week: its usual days cross the DST change, and
# the Sunday after it is a 23-hour day.
_BASE = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def _usual_day(created: list[dt.datetime], zone: str, day: dt.date) -> tuple[int, list[int]]:
    """The tests' own usual day: generations before ``day`` and, over the day's real
    hours from local midnight, the prefix sums of the generations of each hour's local
    clock hour on the same weekday 1..4 weeks before."""
    tz = zoneinfo.ZoneInfo(zone)
    start = dt.datetime.combine(day, dt.time(), tz).astimezone(dt.UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tz).astimezone(dt.UTC)
    local = [at.astimezone(tz) for at in created]
    weeks = {day - dt.timedelta(days=7 * k) for k in range(1, 5)}
    by_hour = Counter(at.hour for at in local if at.date() in weeks)
    before = [0]
    hour = start
    while hour < end:
        before.append(before[-1] + by_hour[hour.astimezone(tz).hour])
        hour += dt.timedelta(hours=1)
    return sum(at.date() < day for at in local), before


def _check_kept(conn: Connection, org: int, *, all_current: bool) -> int:
    """Every kept row of ``org`` stale or exact (all current when asked); the count of
    current rows."""
    zone = conn.execute(
        text("SELECT timezone FROM organizations WHERE id = :org"), {"org": org}
    ).scalar_one()
    created = list(
        conn.execute(
            text("SELECT created_at FROM generations WHERE organization_id = :org"), {"org": org}
        ).scalars()
    )
    current = 0
    for row in conn.execute(
        text("SELECT * FROM usual_days WHERE organization_id = :org ORDER BY date"), {"org": org}
    ):
        generations_before, usual_before = _usual_day(created, zone, row.date)
        if (row.timezone, row.generations_before) == (zone, generations_before):
            assert row.usual_before == usual_before, (zone, row.date)
            current += 1
        else:
            assert not all_current, (zone, row.date)
    return current


def _record(engine: Engine, org: int, users: list[int], instants: list[dt.datetime]) -> None:
    for n, at in enumerate(instants):
        record_generation(
            engine,
            organization_id=org,
            user_id=users[n % len(users)],
            type=("chat", "image")[n % 3 == 0],
            at=at,
        )


def _history(seed: int, days: int = 36) -> list[dt.datetime]:
    """A few generations a day over ``days`` days from _BASE, busier in the afternoon."""
    rng = random.Random(seed)
    return [
        _BASE + dt.timedelta(days=d, hours=rng.choice((3, 9, 14, 15, 16, 21)), minutes=m)
        for d in range(days)
        for m in rng.sample(range(60), 3)
    ]


@pytest.mark.parametrize("zone", ZONES)
def test_kept_usual_days_are_stale_or_exact_after_out_of_order_writes(
    write_engine: Engine, zone: str
) -> None:
    org, users = new_org(write_engine, balance=1_000_000, timezone=zone, users=2)
    instants = _history(len(zone))
    random.Random(zone).shuffle(instants)  # late writes make kept rows stale
    _record(write_engine, org, users, instants)
    with write_engine.begin() as conn:
        # The first generation of a day drops the rows before the day before it.
        assert (
            0
            < conn.execute(
                text("SELECT count(*) FROM usual_days WHERE organization_id = :org"), {"org": org}
            ).scalar_one()
            <= len(_history_days(instants, zoneinfo.ZoneInfo(zone)))
        )
        _check_kept(conn, org, all_current=False)
        # The shared recount makes every row current, and the tests' recount agrees.
        conn.execute(recounts.REBUILD_USUAL_DAYS, {"organization_ids": [org]})
        assert _check_kept(conn, org, all_current=True) > 0
        recounted = conn.execute(recounts.RECOUNT_USUAL_DAYS, {"organization_ids": [org]}).all()
        kept = conn.execute(
            text(
                "SELECT organization_id, date, timezone, generations_before, usual_before"
                " FROM usual_days WHERE organization_id = :org"
            ),
            {"org": org},
        ).all()
        assert sorted(recounted) == sorted(kept)


def test_the_first_generation_of_a_day_keeps_its_usual_day_current(write_engine: Engine) -> None:
    org, users = new_org(write_engine, balance=1_000_000, timezone="Asia/Kathmandu", users=1)
    _record(write_engine, org, users, sorted(_history(3)))  # in order, as they happen
    with write_engine.connect() as conn:
        days = conn.execute(
            text("SELECT count(*) FROM usual_days WHERE organization_id = :org"), {"org": org}
        ).scalar_one()
        assert _check_kept(conn, org, all_current=True) == days == 2  # the last two days


@pytest.mark.parametrize(
    ("zone", "moved_to"), [("UTC", "America/New_York"), ("America/New_York", "Asia/Kathmandu")]
)
def test_set_timezone_recomputes_the_usual_days_in_the_new_zone(
    write_engine: Engine, zone: str, moved_to: str
) -> None:
    org, users = new_org(write_engine, balance=1_000_000, timezone=zone, users=1)
    _record(write_engine, org, users, sorted(_history(5)))
    set_timezone(
        write_engine, organization_id=org, timezone=moved_to, actor="ops@example.com", reason="Move"
    )
    with write_engine.connect() as conn:
        assert _check_kept(conn, org, all_current=True) > 0


def test_kept_usual_days_stay_exact_under_concurrent_generations(write_engine: Engine) -> None:
    orgs = {
        zone: new_org(write_engine, balance=10_000_000, timezone=zone, users=2) for zone in ZONES
    }
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(30):
                org, users = orgs[rng.choice(ZONES)]
                record_generation(
                    write_engine,
                    organization_id=org,
                    user_id=rng.choice(users),
                    type=rng.choice(("chat", "image")),
                    at=_BASE + dt.timedelta(days=rng.randrange(36), minutes=rng.randrange(1440)),
                )
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with write_engine.begin() as conn:
        for org, _ in orgs.values():
            _check_kept(conn, org, all_current=False)
            conn.execute(recounts.REBUILD_USUAL_DAYS, {"organization_ids": [org]})
            assert _check_kept(conn, org, all_current=True) > 0


def _history_days(instants: list[dt.datetime], tz: zoneinfo.ZoneInfo) -> set[dt.date]:
    return {at.astimezone(tz).date() for at in instants}


def _with_and_without(conn: Connection, now: dt.datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
    kept = quota_forecast(conn, now=now)
    savepoint = conn.begin_nested()
    conn.execute(text("DELETE FROM usual_days"))
    computed = quota_forecast(conn, now=now)
    savepoint.rollback()
    return kept, computed


def test_the_forecast_is_the_same_without_kept_usual_days_on_the_demo_data(
    demo_engine: Engine,
) -> None:
    with demo_engine.connect() as conn:
        kept, computed = _with_and_without(conn, DEMO_NOW)
        # The loader kept every usual day the forecast reads, and they are current.
        assert (
            conn.execute(
                text(
                    """
                SELECT count(*) FROM usual_days d
                JOIN organizations o ON o.id = d.organization_id
                CROSS JOIN LATERAL usual_day(d.organization_id, d.date) f
                WHERE d.date = (CAST(:now AS timestamptz) AT TIME ZONE o.timezone)::date
                  AND (d.timezone, d.generations_before, d.usual_before)
                      = (f.timezone, f.generations_before, f.usual_before)
                """
                ),
                {"now": DEMO_NOW},
            ).scalar_one()
            == kept["organization_id"].nunique()
            > 0
        )
    assert len(kept) > 0 and (kept["basis"] == "profile").any()
    pd.testing.assert_frame_equal(kept, computed, check_exact=True)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    zone=hs.sampled_from(ZONES),
    seed=hs.integers(0, 10_000),
    hour=hs.integers(0, 23),
    minute=hs.integers(0, 59),
    late=hs.booleans(),
)
def test_the_forecast_is_the_same_without_kept_usual_days_on_drawn_histories(
    write_engine: Engine, zone: str, seed: int, hour: int, minute: int, late: bool
) -> None:
    org, users = new_org(write_engine, balance=1_000_000, timezone=zone, users=2)
    rng = random.Random(seed)
    tz = zoneinfo.ZoneInfo(zone)
    # Today is a Sunday: New York's 23-hour 2026-03-08, or a month later.
    today = (_BASE + dt.timedelta(days=rng.choice((7, 35)))).date()
    midnight = dt.datetime.combine(today, dt.time(), tz).astimezone(dt.UTC)
    now = dt.datetime.combine(today, dt.time(hour, minute), tz).astimezone(dt.UTC)
    start = dt.datetime.combine(today - dt.timedelta(days=28), dt.time(), tz)
    history = [
        start + dt.timedelta(days=7 * k, minutes=rng.randrange(1440))
        for k in range(4)
        for _ in range(rng.randrange(0, 8))
    ]
    elapsed = int((now - midnight).total_seconds())
    so_far = [midnight + dt.timedelta(seconds=rng.randrange(elapsed + 1)) for _ in range(8)]
    so_far = [at for at in so_far if at < now] or [midnight]
    _record(write_engine, org, users, history)
    _record(write_engine, org, users, so_far)
    if late and history:
        _record(write_engine, org, users, [history[0] + dt.timedelta(minutes=1)])
    with write_engine.connect() as conn:
        kept, computed = _with_and_without(conn, now)
        # Today's row is current unless a late write came after it: then it is stale.
        current = _check_kept(conn, org, all_current=False)
        today_kept = conn.execute(
            text("SELECT count(*) FROM usual_days WHERE organization_id = :org AND date = :day"),
            {"org": org, "day": today},
        ).scalar_one()
        assert today_kept == 1
        if not (late and history):
            assert current == len(
                {today, today - dt.timedelta(days=1)} & (_history_days(history, tz) | {today})
            )
    assert org in set(kept["organization_id"])
    pd.testing.assert_frame_equal(kept, computed, check_exact=True)


def test_the_demo_loader_turns_the_usual_day_trigger_back_on(demo_engine: Engine) -> None:
    with demo_engine.connect() as conn:
        enabled = conn.execute(
            text("SELECT tgenabled FROM pg_trigger WHERE tgname = 'usage_limits_keep_usual_day'")
        ).scalar_one()
    assert enabled == "O"
