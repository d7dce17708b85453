"""Changing an organization's time zone rebuilds its local days in the same transaction.

After ``set_timezone`` the per-user rollup and the counts of ``usage_limits`` are the
recount of ``generations`` in the new zone, every day keeps the limit it had, the
change is audited, a retry with its key applies once, and generations recorded by
other threads meanwhile are counted in the right local day.
"""

from __future__ import annotations

import datetime as dt
import threading
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlalchemy import Engine, text

from queries import timelines
from queries.errors import IdempotencyConflict, InvalidInput
from queries.generations import record_generation
from queries.orgs import set_timezone
from queries.quotas import set_daily_limit
from tests.queries import raw_timelines
from tests.queries.rollups import ROLLUPS, mismatches
from tests.queries.writes import invariant_holds, new_org

EXACT = dict.fromkeys(ROLLUPS, 0)
ACTOR = "ops@example.com"

# usage_limits rows whose counts differ from a recount in the organization's zone.
_USAGE_MISMATCHES = text(
    """
    WITH actual AS (
        SELECT g.type, (g.created_at AT TIME ZONE o.timezone)::date AS date,
               count(*) AS used, sum(g.credits) AS credits_used
        FROM generations g JOIN organizations o ON o.id = g.organization_id
        WHERE g.organization_id = :org GROUP BY 1, 2
    )
    SELECT count(*) FROM actual a
    FULL JOIN (SELECT * FROM usage_limits WHERE organization_id = :org AND used > 0) u
      USING (type, date)
    WHERE a.used IS DISTINCT FROM u.used OR a.credits_used IS DISTINCT FROM u.credits_used
    """
)
_LIMITS = text(
    "SELECT type, date, daily_limit FROM usage_limits WHERE organization_id = :org "
    "ORDER BY type, date"
)


def _exact(engine: Engine, org: int) -> None:
    with engine.connect() as conn:
        assert mismatches(conn, organization_id=org) == EXACT
        assert conn.execute(_USAGE_MISMATCHES, {"org": org}).scalar_one() == 0


@pytest.mark.parametrize(
    ("before", "after"),
    [("UTC", "Asia/Kathmandu"), ("Asia/Kolkata", "America/New_York"), ("America/New_York", "UTC")],
)
def test_a_zone_change_recounts_the_local_days_and_keeps_the_limits(
    write_engine: Engine, before: str, after: str
) -> None:
    org, users = new_org(write_engine, balance=100_000, timezone=before, users=2)
    # Instants that land on different local days in the two zones, around DST days too.
    edges = [
        dt.datetime(2026, 3, 7, 18, 14, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 7, 18, 15, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 8, 4, 59, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 8, 5, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 8, 23, 50, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 1, 4, 30, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 1, 5, 30, tzinfo=dt.UTC),
    ]
    for n, at in enumerate(edges):
        record_generation(
            write_engine, organization_id=org, user_id=users[n % 2], type="chat", at=at
        )
    record_generation(write_engine, organization_id=org, user_id=users[0], type="image")
    later = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=5)
    set_daily_limit(
        write_engine,
        organization_id=org,
        type="chat",
        daily_limit=7,
        actor=ACTOR,
        reason="Trial",
        effective=later,
    )
    with write_engine.connect() as conn:
        limits_before = {
            (r.type, r.date): r.daily_limit for r in conn.execute(_LIMITS, {"org": org})
        }

    change = set_timezone(
        write_engine, organization_id=org, timezone=after, actor=ACTOR, reason="Moved office"
    )

    assert (change.previous_timezone, change.timezone) == (before, after)
    _exact(write_engine, org)
    assert invariant_holds(write_engine, org)
    with write_engine.connect() as conn:
        limits_after = {
            (r.type, r.date): r.daily_limit for r in conn.execute(_LIMITS, {"org": org})
        }
        audit = conn.execute(
            text("SELECT action, actor, reason, details FROM audit_log WHERE id = :id"),
            {"id": change.audit_id},
        ).one()
        # The reads in the new zone give the raw rows' answers.
        start, end = dt.date(2026, 3, 1), dt.date(2026, 11, 30)
        for by_type in (False, True):
            options = {"organization_id": org, "start": start, "end": end, "by_type": by_type}
            pd.testing.assert_frame_equal(
                timelines.generation_timeline(conn, **options),  # type: ignore[arg-type]
                raw_timelines.generation_timeline(conn, **options),  # type: ignore[arg-type]
            )
    # Every day that had a limit keeps it; a new local day gets the limit in force.
    assert {k: v for k, v in limits_after.items() if k in limits_before} == limits_before
    assert limits_after[("chat", later)] == 7
    assert tuple(audit) == ("set_timezone", ACTOR, "Moved office", {"from": before, "to": after})


def test_a_retry_with_its_key_applies_once_and_bad_changes_are_refused(
    write_engine: Engine,
) -> None:
    org, (user,) = new_org(write_engine, balance=1_000, timezone="UTC")
    record_generation(write_engine, organization_id=org, user_id=user, type="chat")
    options = {
        "organization_id": org,
        "timezone": "Asia/Kolkata",
        "actor": ACTOR,
        "reason": "Moved office",
        "idempotency_key": "zone-form-1",
    }
    first = set_timezone(write_engine, **options)  # type: ignore[arg-type]
    assert set_timezone(write_engine, **options) == first  # type: ignore[arg-type]
    with pytest.raises(IdempotencyConflict):
        set_timezone(write_engine, **{**options, "timezone": "Asia/Tokyo"})  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="already"):
        set_timezone(
            write_engine, organization_id=org, timezone="Asia/Kolkata", actor=ACTOR, reason="x"
        )
    with pytest.raises(InvalidInput, match="Unknown time zone"):
        set_timezone(
            write_engine, organization_id=org, timezone="Mars/Olympus", actor=ACTOR, reason="x"
        )
    with pytest.raises(InvalidInput, match="no organization"):
        set_timezone(write_engine, organization_id=10**12, timezone="UTC", actor=ACTOR, reason="x")
    with write_engine.connect() as conn:
        changes = conn.execute(
            text(
                "SELECT count(*) FROM audit_log WHERE organization_id = :org "
                "AND action = 'set_timezone'"
            ),
            {"org": org},
        ).scalar_one()
    assert changes == 1
    _exact(write_engine, org)


def test_generations_recorded_during_zone_changes_land_in_the_right_local_day(
    write_engine: Engine,
) -> None:
    org, users = new_org(write_engine, balance=10_000_000, timezone="UTC", users=3)
    errors: list[BaseException] = []
    stop = threading.Event()

    def record(n: int) -> None:
        # Spread over days (a few per local day, far from any limit), each near a
        # midnight of one of the zones.
        first = dt.datetime(2026, 6, 1, 18, 10 + n, tzinfo=dt.UTC)
        try:
            i = 0
            while not stop.is_set():
                record_generation(
                    write_engine,
                    organization_id=org,
                    user_id=users[n % 3],
                    type="chat",
                    at=first + dt.timedelta(hours=5 * i),
                )
                i += 1
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=record, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        # Several changes, so some generation waits on the lock of one (that race
        # once counted a generation in the local day of the replaced zone).
        for zone in ("Asia/Kathmandu", "Asia/Kolkata", "America/New_York", "UTC") * 3:
            set_timezone(write_engine, organization_id=org, timezone=zone, actor=ACTOR, reason="t")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
    _exact(write_engine, org)


# Each daily-limit change with the zone in force when it took the organization's lock:
# audit rows are written under that lock, so their ids are in lock order.
_LIMIT_DAYS = text(
    """
    SELECT action, details ->> 'to' AS zone, CAST(details ->> 'effective' AS date) AS effective,
           created_at
    FROM audit_log WHERE organization_id = :org ORDER BY id
    """
)


def test_limits_set_during_zone_changes_take_effect_on_the_new_zones_today(
    write_engine: Engine,
) -> None:
    # Two zones 25 hours apart: their local dates always differ, so a limit change that
    # computed "today" in the replaced zone is always caught.
    zones = ("Pacific/Kiritimati", "Pacific/Pago_Pago")
    org, _ = new_org(write_engine, balance=1_000, timezone="UTC")
    errors: list[BaseException] = []
    stop = threading.Event()

    def change_limits(n: int) -> None:
        try:
            i = 0
            while not stop.is_set():
                set_daily_limit(
                    write_engine,
                    organization_id=org,
                    type="chat",
                    daily_limit=100 + 10 * i + n,
                    actor=ACTOR,
                    reason="t",
                )
                i += 1
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=change_limits, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    try:
        # Several changes, so some limit change waits on the lock of one (that race
        # once set the limit of the replaced zone's today).
        for zone in zones * 6:
            set_timezone(write_engine, organization_id=org, timezone=zone, actor=ACTOR, reason="t")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
    with write_engine.connect() as conn:
        rows = conn.execute(_LIMIT_DAYS, {"org": org}).all()
    zone, checked = "UTC", 0
    for row in rows:
        if row.action == "set_timezone":
            zone = row.zone
        elif row.action == "set_daily_limit":
            # "today" is the local date, in the zone in force, of the transaction's now()
            # (its audit row's created_at).
            assert row.effective == row.created_at.astimezone(ZoneInfo(zone)).date(), row
            checked += 1
    assert checked > 0
