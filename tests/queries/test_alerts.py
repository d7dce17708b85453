"""Alerts: what becomes an alert (``alerts_from`` on hand-built frames), the alerts of a
real database, and delivery at most once per (kind, organization, type, local day)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Connection, Engine, text

from queries import forecast
from queries.alerts import Alert, alerts_from, current_alerts, deliver
from queries.db import create_write_engine
from queries.errors import InvalidInput, OutcomeUnknown
from queries.quotas import UTILIZATION_COLUMNS
from tests.conftest import WRITE_DATABASE, PgServer
from tests.factories import add_generations, ensure_types, make_org, make_user
from tests.faults import CommitCutProxy
from tests.queries.roles import APP_LOGIN, READER_LOGIN, login_engine
from tests.queries.test_forecast import (
    DAY,
    EXPIRY_NOW,
    HOUR,
    Tenant,
    evenly,
    hold_grants,
    local_midnight,
)
from tests.queries.writes import new_org
from tests.statements import recording

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 25, 20, 0, tzinfo=UTC)  # 01:45 on the 26th in Kathmandu


def _frame(columns: dict[str, str], rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns)).astype(columns)


def _forecast(*rows: dict[str, Any]) -> pd.DataFrame:
    base = {"name": "Acme Corp", "slug": "acme", "timezone": "Asia/Kathmandu", "status": "ok"}
    return _frame(forecast.FORECAST_COLUMNS, [{**base, **row} for row in rows])


def _over(*rows: dict[str, Any]) -> pd.DataFrame:
    base = {
        "name": "Bolt Ltd",
        "slug": "bolt",
        "plan": "pro",
        "timezone": "America/New_York",
        "date": pd.Timestamp("2026-11-25"),
        "utilization": 1.0,
        "soft": False,
        "overage": 0,
    }
    return _frame(UTILIZATION_COLUMNS, [{**base, **row} for row in rows])


def _spikes(*rows: dict[str, Any]) -> pd.DataFrame:
    base = {"name": "Cirrus", "slug": "cirrus", "timezone": "Asia/Kathmandu"}
    return _frame(forecast.SPIKE_COLUMNS, [{**base, **row} for row in rows])


def _runway(*rows: dict[str, Any]) -> pd.DataFrame:
    base = {
        "name": "Dune",
        "slug": "dune",
        "timezone": "Europe/Berlin",
        "plan": "starter",
        "cause": "burn",
        "expiring_unused": 0,
        "expiring_then": 0,
    }
    return _frame(forecast.RUNWAY_COLUMNS, [{**base, **row} for row in rows])


EMPTY = {
    "forecast": _forecast(),
    "spikes": _spikes(),
    "runway": _runway(),
    "over": _over(),
}


def _alerts(**frames: pd.DataFrame) -> list[Alert]:
    return alerts_from(**{**EMPTY, **frames}, now=NOW)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- alerts_from


def test_will_hit_names_the_local_time_in_the_organizations_zone() -> None:
    hits = pd.Timestamp("2026-11-26 08:45", tz="UTC")  # 14:30 at UTC+5:45
    [alert] = _alerts(
        forecast=_forecast(
            {
                "organization_id": 1,
                "type": "image",
                "used": 62,
                "daily_limit": 100,
                "projected_used": 140.4,
                "hits_limit_at": hits,
            }
        )
    )
    assert alert.kind == "will_hit_limit"
    assert alert.message == (
        "Acme Corp will hit its image limit at 14:30 Asia/Kathmandu (62 of 100, projected 140)"
    )
    assert (alert.organization_id, alert.slug, alert.type) == (1, "acme", "image")
    # 20:00 UTC on the 25th is already the 26th in Kathmandu: the dedupe key's day.
    assert alert.local_day == dt.date(2026, 11, 26)
    assert alert.details == {
        "used": 62,
        "daily_limit": 100,
        "projected_used": 140.4,
        "hits_limit_at": "2026-11-26T08:45:00+00:00",
        "timezone": "Asia/Kathmandu",
    }


def test_will_hit_leaves_out_rows_that_will_not_hit_or_already_have() -> None:
    hits = pd.Timestamp("2026-11-26 08:45", tz="UTC")
    row = {"type": "image", "daily_limit": 100, "projected_used": 150.0}
    alerts = _alerts(
        forecast=_forecast(
            {**row, "organization_id": 1, "used": 40, "hits_limit_at": pd.NaT},  # not today
            {**row, "organization_id": 2, "used": 100, "hits_limit_at": hits},  # at the limit
            {**row, "organization_id": 3, "used": 120, "hits_limit_at": hits, "status": "over"},
            {**row, "organization_id": 4, "used": 90, "hits_limit_at": hits, "status": "near"},
            # The over-limit read says it is over (the forecast read a moment earlier).
            {**row, "organization_id": 5, "used": 99, "hits_limit_at": hits},
        ),
        over=_over({"organization_id": 5, "type": "image", "used": 101, "daily_limit": 100,
                    "status": "over"}),
    )  # fmt: skip
    assert [(a.kind, a.organization_id) for a in alerts] == [
        ("over_limit", 5),
        ("will_hit_limit", 4),
    ]


def test_over_limit_comes_from_over_and_at_limit_rows_for_their_local_date() -> None:
    alerts = _alerts(
        over=_over(
            {"organization_id": 7, "type": "video", "used": 12, "daily_limit": 10,
             "status": "over"},
            {"organization_id": 7, "type": "chat", "used": 50, "daily_limit": 50,
             "status": "at limit"},
            {"organization_id": 8, "type": "chat", "used": 45, "daily_limit": 50,
             "status": "near"},
            # A type switched off (limit 0) and not used: nothing to act on.
            {"organization_id": 9, "type": "video", "used": 0, "daily_limit": 0,
             "status": "at limit"},
        )
    )  # fmt: skip
    assert [(a.kind, a.type, a.local_day) for a in alerts] == [
        ("over_limit", "chat", dt.date(2026, 11, 25)),
        ("over_limit", "video", dt.date(2026, 11, 25)),
    ]
    assert alerts[0].message == (
        "Bolt Ltd has reached its chat limit: 50 of 50 used today (2026-11-25, America/New_York)"
    )
    assert alerts[1].message.startswith("Bolt Ltd is over its video limit: 12 of 10 used today")


def test_a_soft_limit_past_its_limit_is_an_alert_of_how_far_over() -> None:
    [alert] = _alerts(
        over=_over(
            {"organization_id": 7, "type": "video", "used": 13, "daily_limit": 10,
             "status": "over", "soft": True, "overage": 3},
        )
    )  # fmt: skip
    assert alert.message == (
        "Bolt Ltd is over its soft video limit by 3: 13 of 10 used today "
        "(2026-11-25, America/New_York)"
    )
    assert (alert.details["soft"], alert.details["overage"]) == (True, 3)


def test_spike_and_low_runway_are_about_the_whole_organization() -> None:
    alerts = _alerts(
        spikes=_spikes(
            {
                "organization_id": 3,
                "recent_credits": 1200,
                "baseline_credits": 300.0,
                "factor": 4.0,
            }
        ),
        runway=_runway(
            {
                "organization_id": 4,
                "balance": 1200,
                "daily_burn": 230.0,
                "runway_days": 5.2,
                "runs_out_on": dt.date(2026, 12, 1),
            },
            {
                "organization_id": 6,
                "name": "Empty Inc",
                "balance": 0,
                "daily_burn": 10.0,
                "runway_days": 0.0,
                "runs_out_on": dt.date(2026, 11, 25),
            },
        ),
    )
    spike, runway, empty = alerts
    assert (spike.kind, spike.type, spike.local_day) == ("spike", None, dt.date(2026, 11, 26))
    assert spike.message == (
        "Cirrus used 1,200 credits in the last 3 h, 4.0x its usual 300 for this weekday and hour"
    )
    assert (runway.kind, runway.type, runway.local_day) == (
        "low_runway",
        None,
        dt.date(2026, 11, 25),  # 21:00 in Berlin
    )
    assert runway.message == (
        "Dune runs out of credits in 5.2 days, around 2026-12-01 (balance 1,200, burning 230 a day)"
    )
    assert runway.details["runs_out_on"] == "2026-12-01"
    assert empty.message == "Empty Inc has no credits left (balance 0, burning 10 a day)"


def test_a_runway_alert_says_when_credits_expire_unused() -> None:
    alerts = _alerts(
        runway=_runway(
            {
                "organization_id": 4,
                "balance": 10_000,
                "daily_burn": 100.0,
                "runway_days": 15.0,
                "runs_out_on": dt.date(2026, 12, 14),
                "runs_out_at": pd.Timestamp("2026-12-13 23:30", tz="UTC"),
                "cause": "expiry",
                "expiring_unused": 8_000,
                "expiring_then": 8_000,
            },
            {
                "organization_id": 5,
                "name": "Ember",
                "balance": 1_200,
                "daily_burn": 230.0,
                "runway_days": 5.2,
                "runs_out_on": dt.date(2026, 12, 1),
                "cause": "burn",
                "expiring_unused": 2_000,
            },
        ),
    )
    by_org = {a.organization_id: a for a in alerts}
    assert [a.kind for a in alerts] == ["low_runway", "low_runway"]
    # The date is the organization's own (Berlin: 14 Dec, though 13 Dec in UTC).
    assert by_org[4].message == (
        "Dune runs out on 14 Dec, when 8,000 credits expire (balance 10,000, burning 100 a day)"
    )
    assert by_org[4].details["cause"] == "expiry"
    assert by_org[4].details["runs_out_at"] == "2026-12-13T23:30:00+00:00"
    assert by_org[5].message == (
        "Ember runs out of credits in 5.2 days, around 2026-12-01 (balance 1,200, burning "
        "230 a day); 2,000 credits will expire unused at today's pace"
    )
    assert by_org[5].details["expiring_unused"] == 2_000
    json.dumps([a.details for a in alerts], allow_nan=False)


def test_a_runway_alert_of_an_idle_organization_says_its_credits_expire() -> None:
    # Nothing burned; every credit it holds expires on 14 Dec (its own date in Berlin).
    [alert] = _alerts(
        runway=_runway(
            {
                "organization_id": 4,
                "balance": 8_000,
                "daily_burn": 0.0,
                "runway_days": 18.1,
                "runs_out_on": dt.date(2026, 12, 14),
                "runs_out_at": pd.Timestamp("2026-12-13 23:30", tz="UTC"),
                "cause": "expiry",
                "expiring_unused": 8_000,
                "expiring_then": 6_000,
            }
        ),
    )
    assert alert.message == (
        "Dune runs out on 14 Dec, when 6,000 credits expire; 2,000 more expire unused "
        "before (balance 8,000, no recent use)"
    )
    assert (alert.details["daily_burn"], alert.details["cause"]) == (0.0, "expiry")


def test_one_alert_per_kind_organization_and_type_most_urgent_first() -> None:
    hits = pd.Timestamp("2026-11-26 08:45", tz="UTC")
    row = {"organization_id": 1, "type": "image", "used": 62, "daily_limit": 100}
    alerts = _alerts(
        forecast=_forecast(
            {**row, "projected_used": 140.0, "hits_limit_at": hits},
            {**row, "projected_used": 150.0, "hits_limit_at": hits},
        ),
        spikes=_spikes(
            {"organization_id": 3, "recent_credits": 900, "baseline_credits": 100.0,
             "factor": 9.0}
        ),
        runway=_runway(
            {"organization_id": 4, "balance": 10, "daily_burn": 5.0, "runway_days": 2.0,
             "runs_out_on": dt.date(2026, 11, 27)}
        ),
        over=_over({"organization_id": 2, "type": "chat", "used": 60, "daily_limit": 50,
                    "status": "over"}),
    )  # fmt: skip
    assert [a.kind for a in alerts] == ["over_limit", "will_hit_limit", "spike", "low_runway"]


def test_details_are_plain_json_and_names_stay_on_one_line() -> None:
    alerts = _alerts(
        spikes=_spikes(
            {
                "organization_id": 3,
                "name": "Evil\nCorp <!channel>",
                "recent_credits": 500,
                "baseline_credits": float("nan"),
                "factor": float("inf"),
            }
        )
    )
    [alert] = alerts
    assert "\n" not in alert.message and alert.organization == "Evil Corp <!channel>"
    assert alert.details["baseline_credits"] is None and alert.details["factor"] is None
    json.dumps(alert.details, allow_nan=False)
    assert all(type(v) in (int, float, str, type(None)) for v in alert.details.values())


def test_alerts_from_needs_an_aware_now() -> None:
    with pytest.raises(InvalidInput):
        alerts_from(**EMPTY, now=dt.datetime(2026, 11, 25, 20))  # type: ignore[arg-type]


# ------------------------------------------------------------------------- current_alerts


def _over_today(
    conn: Connection, *, timezone: str, limit: int = 2, used: int = 3, now: dt.datetime = NOW
) -> int:
    """An organization that used ``used`` chats at ``now`` against a limit of ``limit``."""
    ensure_types(conn)
    org = make_org(conn, timezone=timezone, name=f"Over {timezone}", balance=100)
    user = make_user(conn, org)
    add_generations(conn, org, [(user, "chat", 1, now) for _ in range(used)])
    conn.execute(
        text("UPDATE usage_limits SET daily_limit = :limit WHERE organization_id = :org"),
        {"org": org, "limit": limit},
    )
    return org


def test_current_alerts_reports_an_organization_over_its_limit_today(
    connection: Connection,
) -> None:
    org = _over_today(connection, timezone="Asia/Kathmandu")
    near = _over_today(connection, timezone="UTC", limit=4)  # 3 of 4: not over
    # (Either may also be forecast to hit its limit: 3 generations at 01:45 in Kathmandu
    # is a steep pace. Only the over-limit alerts are this test's.)
    alerts = [
        a
        for a in current_alerts(connection, now=NOW)
        if a.organization_id in (org, near) and a.kind == "over_limit"
    ]
    [alert] = alerts
    assert (alert.kind, alert.organization_id, alert.type) == ("over_limit", org, "chat")
    assert alert.local_day == dt.date(2026, 11, 26)  # Kathmandu's day at NOW, not UTC's
    assert "is over its chat limit: 3 of 2 used today" in alert.message


def test_current_alerts_says_by_how_much_a_soft_limit_is_exceeded(
    connection: Connection,
) -> None:
    org = _over_today(connection, timezone="UTC", used=5)
    connection.execute(
        text(
            "INSERT INTO limit_enforcement (organization_id, type, soft) VALUES (:o, 'chat', true)"
        ),
        {"o": org},
    )
    [alert] = [
        a
        for a in current_alerts(connection, now=NOW)
        if a.organization_id == org and a.kind == "over_limit"
    ]
    assert "is over its soft chat limit by 3: 5 of 2 used today" in alert.message


def test_current_alerts_issues_a_fixed_number_of_statements(connection: Connection) -> None:
    _over_today(connection, timezone="UTC")
    with recording(connection) as one:
        current_alerts(connection, now=NOW)
    for zone in ("Europe/Berlin", "America/New_York", "Asia/Kolkata"):
        _over_today(connection, timezone=zone)
    with recording(connection) as four:
        current_alerts(connection, now=NOW)
    assert one.count == four.count


@pytest.mark.parametrize("days", [0, -1, 400, 1.5, True])
def test_current_alerts_refuses_a_bad_runway(connection: Connection, days: object) -> None:
    with pytest.raises(InvalidInput):
        current_alerts(connection, runway_days=days)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- deliver


def _alert(org: int, *, kind: str = "over_limit", day: dt.date = dt.date(2026, 11, 25)) -> Alert:
    typed = kind in ("over_limit", "will_hit_limit")
    return Alert(
        kind=kind,  # type: ignore[arg-type]
        organization_id=org,
        organization=f"Org {org}",
        slug=f"org-{org}",
        type="chat" if typed else None,
        local_day=day,
        message=f"Org {org}: {kind}",
        details={"used": 3, "daily_limit": 2},
    )


class Outbox:
    """A ``send`` that records each call (one call = one POST)."""

    def __init__(self) -> None:
        self.posts: list[list[Alert]] = []

    def __call__(self, alerts: list[Alert]) -> None:
        self.posts.append(list(alerts))


def _recorded(engine: Engine, org: int) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT kind, type, local_day, message, details, destination, sent_at "
                "FROM alert_deliveries WHERE organization_id = :org ORDER BY kind, local_day"
            ),
            {"org": org},
        ).all()
    return [tuple(row) for row in rows]


def test_an_alert_is_sent_once_per_local_day(write_engine: Engine) -> None:
    org, _ = new_org(write_engine)
    alerts = [_alert(org), _alert(org, kind="spike")]
    outbox = Outbox()

    first = deliver(write_engine, alerts=alerts, send=outbox, destination="hooks.example.com")
    assert first.sent == tuple(alerts) and first.already_sent == ()
    assert outbox.posts == [alerts]  # one POST with both

    second = deliver(write_engine, alerts=alerts, send=outbox, destination="hooks.example.com")
    assert second.sent == () and second.already_sent == tuple(alerts)
    assert len(outbox.posts) == 1, "nothing new: no POST at all"

    tomorrow = [_alert(org, day=dt.date(2026, 11, 26)), *alerts]
    third = deliver(write_engine, alerts=tomorrow, send=outbox, destination="hooks.example.com")
    assert third.sent == (tomorrow[0],) and third.already_sent == tuple(alerts)
    assert outbox.posts[-1] == [tomorrow[0]]

    rows = _recorded(write_engine, org)
    assert [(kind, type_, day) for kind, type_, day, *_ in rows] == [
        ("over_limit", "chat", dt.date(2026, 11, 25)),
        ("over_limit", "chat", dt.date(2026, 11, 26)),
        ("spike", "", dt.date(2026, 11, 25)),
    ]
    _, _, _, message, details, destination, sent_at = rows[0]
    assert message == f"Org {org}: over_limit"
    assert details == {"used": 3, "daily_limit": 2}
    assert destination == "hooks.example.com" and sent_at is not None


def test_a_failed_send_records_nothing_and_the_next_run_sends_again(write_engine: Engine) -> None:
    org, _ = new_org(write_engine)
    alerts = [_alert(org), _alert(org, kind="low_runway")]

    def refuse(claimed: list[Alert]) -> None:
        raise ConnectionError("the webhook answered 500")

    with pytest.raises(ConnectionError):
        deliver(write_engine, alerts=alerts, send=refuse, destination="hooks.example.com")
    assert _recorded(write_engine, org) == []

    outbox = Outbox()
    again = deliver(write_engine, alerts=alerts, send=outbox, destination="hooks.example.com")
    assert again.sent == tuple(alerts) and outbox.posts == [alerts]


def test_nothing_to_send_touches_nothing(write_engine: Engine) -> None:
    outbox = Outbox()
    result = deliver(write_engine, alerts=[], send=outbox, destination="hooks.example.com")
    assert (result.sent, result.already_sent, outbox.posts) == ((), (), [])


@pytest.mark.parametrize(
    ("change", "destination"),
    [
        ({"type": None}, "hooks.example.com"),  # over_limit needs its type
        ({"kind": "spike"}, "hooks.example.com"),  # a spike has none
        ({"kind": "weather"}, "hooks.example.com"),
        ({"details": {"when": dt.date(2026, 1, 1)}}, "hooks.example.com"),
        ({}, "  "),
    ],
)
def test_bad_alerts_are_refused_before_anything_is_sent(
    write_engine: Engine, change: dict[str, Any], destination: str
) -> None:
    org, _ = new_org(write_engine)
    fields = {
        "kind": "over_limit",
        "organization_id": org,
        "organization": "X",
        "slug": "x",
        "type": "chat",
        "local_day": dt.date(2026, 11, 25),
        "message": "m",
        "details": {},
        **change,
    }
    outbox = Outbox()
    with pytest.raises(InvalidInput):
        deliver(write_engine, alerts=[Alert(**fields)], send=outbox, destination=destination)
    assert outbox.posts == [] and _recorded(write_engine, org) == []


def _waiting_on_a_lock(engine: Engine, *, seconds: float = 10.0) -> bool:
    """Whether another session is waiting on a lock (the unique index's row)."""
    deadline = time.monotonic() + seconds
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE '%INSERT INTO alert_deliveries%' "
                    "AND datname = current_database()"
                )
            ).scalar_one()
            conn.rollback()
            if waiting:
                return True
            time.sleep(0.05)
    return False


@pytest.mark.parametrize("first_fails", [False, True], ids=["first-sends", "first-fails"])
def test_concurrent_runs_send_each_alert_once(write_engine: Engine, first_fails: bool) -> None:
    org, _ = new_org(write_engine)
    alerts = [_alert(org), _alert(org, kind="spike")]
    second_outbox = Outbox()
    second_result: list[Any] = []
    errors: list[BaseException] = []

    def second_run() -> None:
        try:
            second_result.append(
                deliver(write_engine, alerts=alerts, send=second_outbox, destination="b.example")
            )
        except BaseException as exc:  # surfaced by the assertions below
            errors.append(exc)

    thread = threading.Thread(target=second_run)
    first_posts: list[list[Alert]] = []
    saw_wait: list[bool] = []

    def first_send(claimed: list[Alert]) -> None:
        # The claim is held: start the second run and let it queue on the unique index.
        thread.start()
        saw_wait.append(_waiting_on_a_lock(write_engine))
        first_posts.append(claimed)
        if first_fails:
            raise ConnectionError("the webhook answered 502")

    try:
        deliver(write_engine, alerts=alerts, send=first_send, destination="a.example")
    except ConnectionError:
        assert first_fails
    thread.join(timeout=30)
    assert not errors, errors
    assert saw_wait == [True], "the second run did not wait for the first one's claim"
    [second] = second_result
    if first_fails:
        # Rolled back: the second run claims and sends them, once.
        assert second.sent == tuple(alerts) and second_outbox.posts == [alerts]
        assert {r[5] for r in _recorded(write_engine, org)} == {"b.example"}
    else:
        assert second.sent == () and second.already_sent == tuple(alerts)
        assert second_outbox.posts == []
        assert {r[5] for r in _recorded(write_engine, org)} == {"a.example"}
    assert len(_recorded(write_engine, org)) == 2


def test_a_lost_commit_after_the_post_is_reported_and_never_posted_twice_by_one_run(
    write_engine: Engine, test_server: PgServer
) -> None:
    org, _ = new_org(write_engine)
    alerts = [_alert(org)]
    outbox = Outbox()
    with CommitCutProxy.for_server(test_server, WRITE_DATABASE) as proxy:
        engine = create_write_engine(proxy.url)
        try:
            proxy.arm_cut_after_commit()
            with pytest.raises(OutcomeUnknown, match="posted"):
                deliver(engine, alerts=alerts, send=outbox, destination="hooks.example.com")
        finally:
            engine.dispose()
    assert proxy.cuts == 1
    assert outbox.posts == [alerts], "no retry after the post"
    # This proxy loses the answer after the server committed: the next run skips it.
    # (Had the COMMIT itself been lost, the next run would post it again: at least once.)
    again = deliver(write_engine, alerts=alerts, send=outbox, destination="hooks.example.com")
    assert again.sent == () and len(outbox.posts) == 1


@pytest.mark.parametrize("login", [READER_LOGIN, APP_LOGIN])
def test_current_alerts_runs_as_either_role(
    write_engine: Engine, test_server: PgServer, login: str
) -> None:
    # Printing alerts needs no write: a dashboard_reader login (or a replica) will do.
    org, users = new_org(write_engine, balance=100)
    with write_engine.begin() as conn:
        add_generations(conn, org, [(users[0], "chat", 1, NOW)] * 2)
        conn.execute(
            text("UPDATE usage_limits SET daily_limit = 1 WHERE organization_id = :org"),
            {"org": org},
        )
    engine = login_engine(test_server, WRITE_DATABASE, login)
    try:
        with engine.connect() as conn:
            kinds = [
                (a.kind, a.type) for a in current_alerts(conn, now=NOW) if a.organization_id == org
            ]
    finally:
        engine.dispose()
    assert kinds == [("over_limit", "chat")]


def test_current_alerts_warn_of_an_idle_organization_whose_credits_all_expire(
    connection: Connection,
) -> None:
    idle, keeps = Tenant(connection, "Asia/Kathmandu"), Tenant(connection, "Asia/Kathmandu")
    hold_grants(idle, EXPIRY_NOW, opening=0, grants=[(8_000, 5 * DAY, None)])
    hold_grants(keeps, EXPIRY_NOW, opening=500, grants=[(8_000, 5 * DAY, None)])

    alerts = [a for a in current_alerts(connection, now=EXPIRY_NOW) if a.kind == "low_runway"]

    [alert] = [a for a in alerts if a.organization_id == idle.org]
    assert alert.message.endswith(
        "runs out on 15 Apr, when 8,000 credits expire (balance 8,000, no recent use)"
    )
    assert alert.local_day == dt.date(2031, 4, 10)  # 01:45 in Kathmandu
    assert keeps.org not in {a.organization_id for a in alerts}


def test_current_alerts_carries_the_forecast_the_spikes_and_the_runways(
    connection: Connection,
) -> None:
    # The three forecast reads end to end, each with a tenant built to trip it.
    day = dt.date(2031, 4, 9)
    steep = Tenant(connection, "Asia/Kathmandu")
    steep.usual_days(day, range(24), per_hour=1)
    now = local_midnight(day, steep.tz) + 8 * HOUR  # 08:00 in Kathmandu
    steep.generate(evenly(local_midnight(day, steep.tz), now, per_hour=5))  # 40 by 08:00
    steep.set_limit(day, 100)

    spiky = Tenant(connection, "Europe/Berlin")
    for weeks in range(1, 5):
        spiky.generate(evenly(now - dt.timedelta(weeks=weeks, hours=3), now, per_hour=1)[:3])
    spiky.generate(evenly(now - 3 * HOUR, now, per_hour=50), type="image")

    poor = Tenant(connection, "America/New_York")
    for back in range(1, 11):
        poor.generate(evenly(now - dt.timedelta(days=back), now, per_hour=2)[:10], credits=3)
    poor.set_balance(60)  # 300 credits in the last 30 days, 10 a day: 6 days left

    found = {
        (a.kind, a.organization_id, a.type)
        for a in current_alerts(connection, now=now)
        if a.organization_id in (steep.org, spiky.org, poor.org)
    }

    assert ("will_hit_limit", steep.org, "chat") in found
    assert ("spike", spiky.org, None) in found
    assert ("low_runway", poor.org, None) in found
    assert not {kind for kind, org, _ in found if org == steep.org} - {"will_hit_limit"}
