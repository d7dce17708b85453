"""Limit changes that end by themselves (``until``): the change applies from its
effective day through ``until``, local dates; afterwards what was in force without it
applies again, with no second write. The most recently made change covering a day
wins (``limit_in_force``, migration 0018)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from queries.audit import all_orgs_audit_trail
from queries.errors import IdempotencyConflict, InvalidLimitChange, QuotaExceeded
from queries.generations import record_generation
from queries.quotas import limits_in_force, set_daily_limit
from tests.queries.writes import new_org

D = dt.date(2032, 3, 8)  # America/New_York moves its clocks forward on 2032-03-14.
PRO_CHAT = 1000  # tests.factories' chat default on the pro plan


def _set(engine: Engine, org: int, limit: int, **kw: Any) -> Any:
    return set_daily_limit(
        engine,
        organization_id=org,
        type="chat",
        daily_limit=limit,
        actor="cs@x.com",
        reason="r",
        **kw,
    )


def _chat(engine: Engine, org: int, day: dt.date) -> tuple[int, dt.date | None, dt.date | None]:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT daily_limit, since, until FROM limit_in_force(:o, 'chat', :d)"),
            {"o": org, "d": day},
        ).one()
    return row.daily_limit, row.since, row.until


def _writes(engine: Engine, org: int) -> tuple[int, int]:
    with engine.connect() as conn:
        changes, audit = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM limit_changes WHERE organization_id = :o),"
                " (SELECT count(*) FROM audit_log WHERE organization_id = :o)"
            ),
            {"o": org},
        ).one()
    return changes, audit


def _generate(engine: Engine, org: int, user: int, zone: str, local: dt.datetime) -> bool:
    """One chat generation at a local wall time; False when the limit refuses it."""
    at = local.replace(tzinfo=ZoneInfo(zone))
    try:
        record_generation(engine, organization_id=org, user_id=user, type="chat", at=at)
    except QuotaExceeded:
        return False
    return True


def test_a_temporary_raise_applies_through_until_then_the_previous_limit_again(
    write_engine: Engine,
) -> None:
    org, _ = new_org(write_engine)
    _set(write_engine, org, 5, effective=D)
    change = _set(
        write_engine, org, 50, effective=D + dt.timedelta(days=2), until=D + dt.timedelta(days=4)
    )
    assert (change.old_limit, change.new_limit, change.until) == (5, 50, D + dt.timedelta(days=4))
    days = [D + dt.timedelta(days=n) for n in range(-1, 7)]
    assert [_chat(write_engine, org, d)[0] for d in days] == [PRO_CHAT, 5, 5, 50, 50, 50, 5, 5]
    assert _chat(write_engine, org, D + dt.timedelta(days=3)) == (
        50,
        D + dt.timedelta(days=2),
        D + dt.timedelta(days=4),
    )
    assert _chat(write_engine, org, D + dt.timedelta(days=5)) == (5, D, None)
    assert _writes(write_engine, org) == (2, 2), "no second write when the change ends"
    with write_engine.connect() as conn:
        shown = limits_in_force(conn, organization_id=org, day=D + dt.timedelta(days=4))
        audit = conn.execute(
            text("SELECT details FROM audit_log WHERE id = :id AND organization_id = :o"),
            {"id": change.audit_id, "o": org},
        ).scalar_one()
    chat = shown.set_index("type").loc["chat"]
    assert (chat["daily_limit"], chat["until"].date(), chat["limit_after"]) == (
        50,
        D + dt.timedelta(days=4),
        5,
    )
    assert audit["until"] == str(D + dt.timedelta(days=4))
    with write_engine.connect() as conn:
        # The entries are stamped with the database's now(): read around that day.
        made = conn.execute(text("SELECT CAST(now() AT TIME ZONE 'UTC' AS date)")).scalar_one()
        trail = all_orgs_audit_trail(
            conn,
            start=made - dt.timedelta(days=1),
            end=made + dt.timedelta(days=1),
            organization_id=org,
        )
    assert list(trail["details"]) == [
        f"chat · limit 5 → 50 · from {D + dt.timedelta(days=2)} · until {D + dt.timedelta(days=4)}",
        f"chat · limit {PRO_CHAT} → 5 · from {D}",
    ]


def test_rows_of_later_days_take_the_change_only_up_to_until(write_engine: Engine) -> None:
    org, (user,) = new_org(write_engine, balance=100)
    for n in range(6):
        assert _generate(
            write_engine,
            org,
            user,
            "UTC",
            dt.datetime.combine(D, dt.time(9)) + dt.timedelta(days=n),
        )
    _set(write_engine, org, 7, effective=D + dt.timedelta(days=1), until=D + dt.timedelta(days=3))
    with write_engine.connect() as conn:
        rows: dict[dt.date, int] = dict(
            conn.execute(
                text("SELECT date, daily_limit FROM usage_limits WHERE organization_id = :o"),
                {"o": org},
            ).all()
        )
    assert [rows[D + dt.timedelta(days=n)] for n in range(6)] == [
        PRO_CHAT,
        7,
        7,
        7,
        PRO_CHAT,
        PRO_CHAT,
    ]
    # Every row holds the limit the one rule gives its day.
    assert all(_chat(write_engine, org, d)[0] == limit for d, limit in rows.items())


def test_a_temporary_change_on_top_of_a_later_open_ended_one_and_overlapping_ones(
    write_engine: Engine,
) -> None:
    org, _ = new_org(write_engine)
    _set(write_engine, org, 100, effective=D + dt.timedelta(days=5))  # open-ended, made first
    _set(write_engine, org, 200, effective=D, until=D + dt.timedelta(days=8))  # covers it, later
    _set(write_engine, org, 300, effective=D + dt.timedelta(days=2), until=D + dt.timedelta(days=3))
    expected = [PRO_CHAT, 200, 200, 300, 300, 200, 200, 200, 200, 200, 100]
    got = [_chat(write_engine, org, D + dt.timedelta(days=n))[0] for n in range(-1, 10)]
    assert got == expected


@pytest.mark.parametrize(
    ("zone", "start"),
    [
        ("UTC", D),
        ("Asia/Kathmandu", D),  # +5:45
        ("America/New_York", D + dt.timedelta(days=5)),  # through the 23-hour 14 March
    ],
)
def test_record_generation_follows_the_temporary_limit_on_its_local_days(
    write_engine: Engine, zone: str, start: dt.date
) -> None:
    org, (user,) = new_org(write_engine, balance=1000, timezone=zone)
    _set(write_engine, org, 1, effective=start)
    until = start + dt.timedelta(days=1)
    _set(write_engine, org, 2, effective=start, until=until)

    def allowed(local: dt.datetime) -> int:
        return sum(_generate(write_engine, org, user, zone, local) for _ in range(3))

    # The first local minutes of effective and the last of until are inside; the first
    # minutes of the day after are not.
    assert allowed(dt.datetime.combine(start, dt.time(0, 5))) == 2
    assert allowed(dt.datetime.combine(until, dt.time(23, 55))) == 2
    assert allowed(dt.datetime.combine(until + dt.timedelta(days=1), dt.time(0, 5))) == 1


@pytest.mark.parametrize(
    ("effective", "until", "says"),
    [
        (D, D - dt.timedelta(days=1), "before the effective day"),
        (None, dt.date(2001, 1, 1), "before the effective day"),
        (D, "2032-03-09", "end day"),
        (D, dt.datetime(2032, 3, 9, tzinfo=dt.UTC), "end day"),
    ],
)
def test_a_bad_end_day_is_refused_with_a_sentence_and_writes_nothing(
    write_engine: Engine, effective: dt.date | None, until: object, says: str
) -> None:
    org, _ = new_org(write_engine)
    with pytest.raises(InvalidLimitChange, match=says):
        _set(write_engine, org, 5, effective=effective, until=until)
    assert _writes(write_engine, org) == (0, 0)


def test_a_replay_with_the_same_end_day_applies_once_and_another_end_day_conflicts(
    write_engine: Engine,
) -> None:
    org, _ = new_org(write_engine)
    until = D + dt.timedelta(days=2)
    first = _set(write_engine, org, 9, effective=D, until=until, idempotency_key="k1")
    again = _set(write_engine, org, 9, effective=D, until=until, idempotency_key="k1")
    assert again == first
    open_ended = _set(write_engine, org, 8, effective=D, idempotency_key="k2")
    assert _set(write_engine, org, 8, effective=D, idempotency_key="k2") == open_ended
    assert open_ended.until is None
    for other in (None, until + dt.timedelta(days=1)):
        with pytest.raises(IdempotencyConflict):
            _set(write_engine, org, 9, effective=D, until=other, idempotency_key="k1")
    with pytest.raises(IdempotencyConflict):
        _set(write_engine, org, 8, effective=D, until=until, idempotency_key="k2")
    assert _writes(write_engine, org) == (2, 2)


_CHANGE = st.tuples(
    st.integers(0, 12),  # effective, days after D
    st.one_of(st.none(), st.integers(0, 5)),  # None: open-ended; else days it lasts after effective
    st.integers(0, 9),  # limit
)
_STEP = st.one_of(
    st.tuples(st.just("change"), _CHANGE),
    st.tuples(
        st.just("generate"),
        st.tuples(
            st.integers(0, 20),  # day, after D
            st.sampled_from([dt.time(0, 30), dt.time(12), dt.time(23, 30)]),  # local time
        ),
    ),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    zone=st.sampled_from(["UTC", "Asia/Kathmandu", "America/New_York"]),
    steps=st.lists(_STEP, max_size=8),
)
def test_the_limit_in_force_is_the_latest_change_covering_the_day_else_the_plan_default(
    write_engine: Engine, zone: str, steps: list[tuple[str, Any]]
) -> None:
    org, (user,) = new_org(write_engine, balance=1000, timezone=zone)
    made: list[tuple[int, int | None, int]] = []
    used: dict[int, int] = {}

    def model(day: int) -> int:
        covering = [lim for e, u, lim in made if e <= day and (u is None or day <= u)]
        return covering[-1] if covering else PRO_CHAT

    for kind, step in steps:
        if kind == "change":
            effective, lasts, limit = step
            until = None if lasts is None else D + dt.timedelta(days=effective + lasts)
            _set(write_engine, org, limit, effective=D + dt.timedelta(days=effective), until=until)
            made.append((effective, None if lasts is None else effective + lasts, limit))
        else:
            day, time = step
            local = dt.datetime.combine(D + dt.timedelta(days=day), time)
            expected = used.get(day, 0) < model(day)
            assert _generate(write_engine, org, user, zone, local) == expected, (day, time)
            used[day] = used.get(day, 0) + expected

    for day in range(-1, 22):
        assert _chat(write_engine, org, D + dt.timedelta(days=day))[0] == model(day), day
    with write_engine.connect() as conn:
        rows = conn.execute(
            text("SELECT date, daily_limit FROM usage_limits WHERE organization_id = :o"),
            {"o": org},
        ).all()
    assert all(limit == model((d - D).days) for d, limit in rows)
