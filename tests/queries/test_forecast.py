"""Forecasts, spikes and low runway: synthetic intraday patterns in several zones."""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as hs
from sqlalchemy import Connection, text

from queries import forecast, usage
from queries.errors import InvalidInput
from tests.factories import add_generations, ensure_types, make_org, make_user

HOUR = dt.timedelta(hours=1)
MINUTE = dt.timedelta(minutes=1)
QUARTER = dt.timedelta(minutes=15)


def local_midnight(day: dt.date, tz: str) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), ZoneInfo(tz)).astimezone(dt.UTC)


def evenly(start: dt.datetime, end: dt.datetime, per_hour: int) -> list[dt.datetime]:
    """``per_hour`` instants per real hour from ``start`` (inclusive) to ``end``."""
    step = HOUR / per_hour
    count = int((end - start) / step)
    return [start + i * step for i in range(count)]


def local_hours(day: dt.date, tz: str, hours: range, per_hour: int) -> list[dt.datetime]:
    """``per_hour`` instants in each of the given local clock hours of ``day``."""
    zone = ZoneInfo(tz)
    out: list[dt.datetime] = []
    for h in hours:
        start = dt.datetime.combine(day, dt.time(h), zone).astimezone(dt.UTC)
        out += evenly(start, start + HOUR, per_hour)
    return out


class Tenant:
    """An organization with one user and generations of one type."""

    def __init__(self, conn: Connection, tz: str) -> None:
        ensure_types(conn)
        self.conn = conn
        self.tz = tz
        # Generations debit the balance (never below 0): plenty, set_balance() after.
        self.org = make_org(conn, timezone=tz, balance=10**9)
        self.user = make_user(conn, self.org)

    def generate(self, instants: list[dt.datetime], type: str = "chat", credits: int = 1) -> None:
        add_generations(self.conn, self.org, [(self.user, type, credits, at) for at in instants])

    def usual_days(self, day: dt.date, hours: range, per_hour: int) -> None:
        """The same local weekday of the 4 weeks before ``day``: ``per_hour`` in each hour."""
        instants: list[dt.datetime] = []
        for weeks in range(1, 5):
            instants += local_hours(day - dt.timedelta(weeks=weeks), self.tz, hours, per_hour)
        self.generate(instants)

    def set_balance(self, balance: int) -> None:
        self.conn.execute(
            text("UPDATE credit_balances SET balance = :balance WHERE organization_id = :org"),
            {"balance": balance, "org": self.org},
        )

    def set_limit(self, day: dt.date, limit: int, type: str = "chat") -> None:
        self.conn.execute(
            text(
                "UPDATE usage_limits SET daily_limit = :limit "
                "WHERE organization_id = :org AND type = :type AND date = :day"
            ),
            {"limit": limit, "org": self.org, "type": type, "day": day},
        )


def row_of(df: pd.DataFrame, org: int) -> pd.Series:
    rows = df[df["organization_id"] == org]
    assert len(rows) == 1, rows
    return rows.iloc[0]


STEADY = [
    # zone, local day, hours in that day
    ("UTC", dt.date(2031, 4, 9), 24),
    ("Asia/Kathmandu", dt.date(2031, 4, 9), 24),  # UTC+5:45: hours start at :15 UTC
    ("America/New_York", dt.date(2026, 11, 1), 25),  # fall back: a 25-hour day
    ("America/New_York", dt.date(2026, 3, 8), 23),  # spring forward: a 23-hour day
]


@pytest.mark.parametrize("history", [True, False], ids=["usual-flat-day", "no-history"])
@pytest.mark.parametrize(("tz", "day", "hours"), STEADY, ids=[s[0] + str(s[1]) for s in STEADY])
def test_a_steady_pace_is_forecast_to_hit_the_limit_within_a_quarter_hour(
    connection: Connection, tz: str, day: dt.date, hours: int, history: bool
) -> None:
    tenant = Tenant(connection, tz)
    if history:
        tenant.usual_days(day, range(24), per_hour=1)
    midnight = local_midnight(day, tz)
    now = midnight + 10 * HOUR  # ten real hours into the local day, at 4 an hour
    tenant.generate(evenly(midnight, now, per_hour=4))
    tenant.set_limit(day, 60)

    row = row_of(forecast.quota_forecast(connection, now=now), tenant.org)

    # 40 done in 10 of the day's hours: 4 an hour for the rest of it, 60 at now + 5 h.
    assert row["used"] == 40 and row["daily_limit"] == 60 and row["status"] == "ok"
    assert row["basis"] == ("profile" if history else "uniform")
    assert row["expected_share_by_now"] == pytest.approx(10 / hours)
    assert row["projected_used"] == pytest.approx(4 * hours)
    assert abs(row["hits_limit_at"] - (now + 5 * HOUR)) <= dt.timedelta(minutes=15)


ZONES = ["UTC", "Asia/Kathmandu", "America/New_York", "Pacific/Kiritimati", "America/St_Johns"]


# How far a forecast hit time may be from the instant a steady rate reaches the limit:
# the rollup's grain. The projection is exact for whole quarter-hours of steady use.
HIT_TOLERANCE = dt.timedelta(minutes=15)


def steady(start: dt.datetime, end: dt.datetime, per_quarter: int) -> list[dt.datetime]:
    """``per_quarter`` instants in each quarter-hour from ``start`` to ``end``."""
    return evenly(start, end, per_hour=4 * per_quarter)


@pytest.mark.parametrize("history", ["no-history", "evening-heavy"])
@pytest.mark.parametrize("tz", ["UTC", "Asia/Kathmandu"])
def test_a_late_start_at_a_steady_rate_hits_the_limit_when_that_rate_reaches_it(
    connection: Connection, tz: str, history: str
) -> None:
    day = dt.date(2031, 4, 9)
    tenant = Tenant(connection, tz)
    if history == "evening-heavy":
        tenant.usual_days(day, range(18, 23), per_hour=10)  # usually nothing before 18:00
    start = local_midnight(day, tz) + 10 * HOUR
    now = start + 2 * HOUR
    tenant.generate(steady(start, now, per_quarter=2))  # 8 an hour from 10:00 local
    tenant.set_limit(day, 48)

    row = row_of(forecast.quota_forecast(connection, now=now), tenant.org)

    # 16 used; at 8 an hour 48 is reached at 16:00, before the usual evening. The average
    # since midnight (16 in 12 hours) would put it at 12:00 + 32 / (16 / 12) h: midnight.
    assert row["used"] == 16
    assert abs(row["hits_limit_at"] - (start + 6 * HOUR)) <= HIT_TOLERANCE
    if history == "no-history":
        assert row["basis"] == "uniform"
        assert row["projected_used"] == pytest.approx(16 + 8 * 12)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tz=hs.sampled_from(ZONES),
    day=hs.sampled_from([dt.date(2031, 4, 9), dt.date(2026, 11, 1), dt.date(2026, 3, 8)]),
    start_quarter=hs.integers(0, 60),
    quarters=hs.integers(4 * forecast.RECENT_HOURS, 24),
    per_quarter=hs.integers(1, 4),
    more=hs.integers(1, 300),
)
def test_a_steady_rate_from_any_quarter_hour_hits_the_limit_when_it_reaches_it(
    connection: Connection,
    tz: str,
    day: dt.date,
    start_quarter: int,
    quarters: int,
    per_quarter: int,
    more: int,
) -> None:
    # No history: a steady r an hour from t0, read RECENT_HOURS or more later, with a
    # limit of L is forecast to hit it at t0 + L / r when that is today, and not if not.
    midnight = local_midnight(day, tz)
    start = midnight + start_quarter * QUARTER
    now = start + quarters * QUARTER
    used = per_quarter * quarters
    limit = used + more
    expected = start + limit * QUARTER / per_quarter
    day_end = local_midnight(day + dt.timedelta(days=1), tz)
    with connection.begin_nested() as savepoint:
        tenant = Tenant(connection, tz)
        tenant.generate(steady(start, now, per_quarter))
        tenant.set_limit(day, limit)
        row = row_of(forecast.quota_forecast(connection, now=now), tenant.org)
        savepoint.rollback()

    assert row["used"] == used
    if expected <= day_end - HIT_TOLERANCE:
        assert abs(row["hits_limit_at"] - expected) <= HIT_TOLERANCE
    elif expected > day_end + HIT_TOLERANCE:
        assert pd.isna(row["hits_limit_at"])


def test_late_in_the_day_85_percent_is_no_emergency_but_40_percent_at_eight_is(
    connection: Connection,
) -> None:
    day = dt.date(2031, 4, 9)
    late, early = Tenant(connection, "Asia/Kathmandu"), Tenant(connection, "America/New_York")
    for tenant in (late, early):
        tenant.usual_days(day, range(24), per_hour=1)
    late_now = local_midnight(day, late.tz) + 23 * HOUR
    late.generate(evenly(local_midnight(day, late.tz), late_now, per_hour=4)[:85])
    late.set_limit(day, 100)
    # Each is read at its own local time: 23:00 in Kathmandu, 08:00 in New York.
    early_now = local_midnight(day, early.tz) + 8 * HOUR
    early.generate(evenly(local_midnight(day, early.tz), early_now, per_hour=5))
    early.set_limit(day, 100)

    late_row = row_of(forecast.quota_forecast(connection, now=late_now), late.org)
    early_row = row_of(forecast.quota_forecast(connection, now=early_now), early.org)

    assert late_row["used"] == 85 and pd.isna(late_row["hits_limit_at"])
    assert late_row["projected_used"] < 100
    assert early_row["used"] == 40 and early_row["projected_used"] == pytest.approx(120)
    assert abs(early_row["hits_limit_at"] - (early_now + 12 * HOUR)) <= dt.timedelta(minutes=15)


def test_a_morning_burst_is_judged_against_the_organizations_usual_day(
    connection: Connection,
) -> None:
    day = dt.date(2031, 4, 9)
    mornings, flat = Tenant(connection, "Europe/Berlin"), Tenant(connection, "Europe/Berlin")
    mornings.usual_days(day, range(6, 10), per_hour=5)  # usually all done by 10:00
    flat.usual_days(day, range(24), per_hour=1)
    now = dt.datetime.combine(day, dt.time(10), ZoneInfo("Europe/Berlin")).astimezone(dt.UTC)
    for tenant in (mornings, flat):
        tenant.generate(local_hours(day, tenant.tz, range(6, 10), per_hour=15))  # 60
        tenant.set_limit(day, 100)

    result = forecast.quota_forecast(connection, now=now)
    usual_mornings, usual_flat = row_of(result, mornings.org), row_of(result, flat.org)

    assert usual_mornings["used"] == usual_flat["used"] == 60
    assert usual_mornings["expected_share_by_now"] > 0.9
    assert pd.isna(usual_mornings["hits_limit_at"]) and usual_mornings["projected_used"] < 70
    # The flat one started at 06:00 and has kept 15 an hour since: 15 an hour for the
    # 14 hours left, and 100 at 12:40, when that rate reaches it.
    assert usual_flat["projected_used"] == pytest.approx(60 + 15 * 14)
    assert abs(usual_flat["hits_limit_at"] - (now + 160 * MINUTE)) <= dt.timedelta(minutes=1)
    # Soonest hit first: the flagged one leads.
    ours = result[result["organization_id"].isin([mornings.org, flat.org])]
    assert list(ours["organization_id"]) == [flat.org, mornings.org]


def test_an_organization_already_over_its_limit_has_no_hit_time_and_says_over(
    connection: Connection,
) -> None:
    day = dt.date(2031, 4, 9)
    tenant = Tenant(connection, "UTC")
    now = local_midnight(day, "UTC") + 12 * HOUR
    tenant.generate(evenly(local_midnight(day, "UTC"), now, per_hour=10))
    tenant.set_limit(day, 100)

    row = row_of(forecast.quota_forecast(connection, now=now), tenant.org)

    assert (row["used"], row["status"]) == (120, "over")
    assert pd.isna(row["hits_limit_at"]) and row["projected_used"] >= 120


def test_a_first_generation_early_in_the_day_does_not_project_to_infinity(
    connection: Connection,
) -> None:
    day = dt.date(2031, 4, 9)
    tenant = Tenant(connection, "UTC")
    now = local_midnight(day, "UTC") + dt.timedelta(minutes=5)
    tenant.generate([local_midnight(day, "UTC")])
    tenant.set_limit(day, 1000)

    row = row_of(forecast.quota_forecast(connection, now=now), tenant.org)

    assert row["projected_used"] <= 1 / forecast.SHARE_FLOOR + 1
    assert pd.isna(row["hits_limit_at"])


def test_forecast_columns_and_types_are_exactly_as_documented(connection: Connection) -> None:
    result = forecast.quota_forecast(connection, now=dt.datetime(2031, 4, 9, tzinfo=dt.UTC))
    assert list(result.columns) == list(forecast.FORECAST_COLUMNS)
    dtypes = result.dtypes.astype(str)
    for column in ("organization_id", "used", "daily_limit"):
        assert dtypes[column] == "int64"
    assert dtypes["projected_used"] == dtypes["expected_share_by_now"] == "float64"
    assert dtypes["hits_limit_at"] == "datetime64[us, UTC]"


def test_hits_only_is_the_rows_that_hit_their_limit_in_the_same_order(
    connection: Connection,
) -> None:
    day = dt.date(2031, 4, 9)
    now = local_midnight(day, "UTC") + 10 * HOUR
    tenants = {}
    # 4 an hour since local midnight: the limit hit at 15:00 UTC; at 11:45 UTC (63 used
    # by 15:45 local); never today; already over.
    for name, tz, limit in [
        ("late", "UTC", 60),
        ("soon", "Asia/Kathmandu", 70),
        ("never", "UTC", 1_000),
        ("over", "UTC", 30),
    ]:
        tenant = Tenant(connection, tz)
        local_day = now.astimezone(ZoneInfo(tz)).date()
        tenant.generate(evenly(local_midnight(local_day, tz), now, per_hour=4))
        tenant.set_limit(local_day, limit)
        tenants[name] = tenant.org

    full = forecast.quota_forecast(connection, now=now)
    hits = forecast.quota_forecast(connection, now=now, hits_only=True)

    expected = full[full["hits_limit_at"].notna()].reset_index(drop=True)
    pd.testing.assert_frame_equal(hits, expected, check_exact=True)
    ours = [org for org in hits["organization_id"] if org in tenants.values()]
    assert ours == [tenants["soon"], tenants["late"]]
    assert {tenants["never"], tenants["over"]} <= set(full["organization_id"])


@pytest.mark.parametrize("hits_only", [1, "yes", None])
def test_hits_only_must_be_a_bool(connection: Connection, hits_only: object) -> None:
    with pytest.raises(InvalidInput, match="hits_only"):
        forecast.quota_forecast(connection, hits_only=hits_only)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "now", [dt.datetime(2031, 4, 9, 10), "2031-04-09T10:00Z", dt.date(2031, 4, 9), 0]
)
def test_a_naive_or_non_datetime_now_is_refused(connection: Connection, now: object) -> None:
    for read in (forecast.quota_forecast, forecast.usage_spikes, forecast.low_runway):
        with pytest.raises(InvalidInput):
            read(connection, now=now)  # type: ignore[arg-type]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tz=hs.sampled_from(ZONES),
    day=hs.sampled_from([dt.date(2031, 4, 9), dt.date(2026, 11, 1), dt.date(2026, 3, 8)]),
    usual=hs.lists(hs.integers(0, 3), min_size=24, max_size=24),
    today=hs.lists(hs.integers(0, 6), min_size=1, max_size=23),
    minutes=hs.integers(0, 59),
    limit=hs.integers(0, 120),
)
def test_the_forecast_never_projects_below_used_and_hits_within_today_or_never(
    connection: Connection,
    tz: str,
    day: dt.date,
    usual: list[int],
    today: list[int],
    minutes: int,
    limit: int,
) -> None:
    with connection.begin_nested() as savepoint:
        tenant = Tenant(connection, tz)
        history: list[dt.datetime] = []
        for weeks in range(1, 5):
            past = day - dt.timedelta(weeks=weeks)
            for hour, count in enumerate(usual):
                history += local_hours(past, tz, range(hour, hour + 1), count) if count else []
        midnight = local_midnight(day, tz)
        instants = [
            midnight + hour * HOUR + i * HOUR / (count + 1)
            for hour, count in enumerate(today)
            for i in range(count)
        ]
        now = midnight + (len(today) - 1) * HOUR + dt.timedelta(minutes=minutes)
        instants = [at for at in instants if at < now] or [midnight]
        tenant.generate(history + instants)
        tenant.set_limit(day, limit)

        result = forecast.quota_forecast(connection, now=now)
        row = row_of(result, tenant.org)
        day_end = local_midnight(day + dt.timedelta(days=1), tz)
        assert row["projected_used"] >= row["used"] - 1e-9
        assert 0 <= row["expected_share_by_now"] <= 1 + 1e-9
        if pd.isna(row["hits_limit_at"]):
            assert row["used"] >= limit or row["projected_used"] < limit + 1e-6
        else:
            assert now <= row["hits_limit_at"] <= day_end
            assert row["used"] < limit <= row["projected_used"] + 1e-6
        savepoint.rollback()


# -- spikes -----------------------------------------------------------------------------


def test_a_spike_is_three_times_the_usual_same_hours_with_enough_volume(
    connection: Connection,
) -> None:
    day = dt.date(2031, 4, 9)
    tz = "Asia/Kathmandu"
    now = dt.datetime.combine(day, dt.time(15), ZoneInfo(tz)).astimezone(dt.UTC)
    spiking, steady, tiny, newcomer = (Tenant(connection, tz) for _ in range(4))
    for tenant in (spiking, steady):
        # Usually 10 credits an hour from 12:00 to 15:00 local: a baseline of 30 in 3 h.
        for weeks in range(1, 5):
            tenant.generate(local_hours(day - dt.timedelta(weeks=weeks), tz, range(12, 15), 10))
    spiking.generate(local_hours(day, tz, range(12, 15), 40))  # 120 credits: 4x
    steady.generate(local_hours(day, tz, range(12, 15), 15))  # 45: 1.5x
    # Tiny: 1 credit an hour usually, 20 an hour now: 20x but 60 credits in all.
    for weeks in range(1, 5):
        tiny.generate(local_hours(day - dt.timedelta(weeks=weeks), tz, range(12, 15), 1))
    tiny.generate(local_hours(day, tz, range(12, 15), 20))
    # A newcomer: first use two weeks ago, nothing those hours since; its two weeks
    # without use count as 0, the weeks before its first use do not.
    newcomer.generate(local_hours(day - dt.timedelta(weeks=2), tz, range(12, 15), 20))
    newcomer.generate(local_hours(day - dt.timedelta(weeks=2), tz, range(20, 21), 1))
    newcomer.generate(local_hours(day, tz, range(12, 15), 40))

    result = forecast.usage_spikes(connection, now=now)
    ours = result[result["organization_id"].isin([spiking.org, steady.org, tiny.org, newcomer.org])]

    assert set(ours["organization_id"]) == {spiking.org, newcomer.org}
    spike = row_of(ours, spiking.org)
    assert (spike["recent_credits"], spike["baseline_credits"]) == (120, 30.0)
    assert spike["factor"] == pytest.approx(4.0)
    new = row_of(ours, newcomer.org)
    assert (new["recent_credits"], new["baseline_credits"]) == (120, 30.0)  # (60 + 0) / 2
    # A lower bar finds the steady one; a lower volume floor finds the tiny one.
    lower_bar = forecast.usage_spikes(connection, now=now, factor=1.5, min_credits=40)
    assert steady.org in set(lower_bar["organization_id"])
    assert tiny.org in set(
        forecast.usage_spikes(connection, now=now, min_credits=50)["organization_id"]
    )
    assert list(result.columns) == list(forecast.SPIKE_COLUMNS)
    assert list(result["factor"]) == sorted(result["factor"], reverse=True)


def test_a_first_ever_burst_has_an_infinite_factor(connection: Connection) -> None:
    day = dt.date(2031, 4, 9)
    tenant = Tenant(connection, "UTC")
    tenant.generate(local_hours(day, "UTC", range(9, 12), 50))
    now = local_midnight(day, "UTC") + 12 * HOUR

    row = row_of(forecast.usage_spikes(connection, now=now), tenant.org)

    assert row["recent_credits"] == 150 and row["baseline_credits"] == 0
    assert math.isinf(row["factor"])


def test_spikes_keep_the_local_hours_across_a_dst_change(connection: Connection) -> None:
    # Sunday 2026-11-08 09:00-12:00 EST; four weeks before is EDT: same local hours,
    # UTC hours one earlier. The usual 30 credits come from the local hours only.
    tz = "America/New_York"
    day = dt.date(2026, 11, 8)
    tenant = Tenant(connection, tz)
    for weeks in range(1, 5):
        tenant.generate(local_hours(day - dt.timedelta(weeks=weeks), tz, range(9, 12), 10))
        tenant.generate(local_hours(day - dt.timedelta(weeks=weeks), tz, range(8, 9), 50))
    tenant.generate(local_hours(day, tz, range(9, 12), 40))
    now = dt.datetime.combine(day, dt.time(12), ZoneInfo(tz)).astimezone(dt.UTC)

    row = row_of(forecast.usage_spikes(connection, now=now), tenant.org)

    assert (row["recent_credits"], row["baseline_credits"]) == (120, 30.0)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tz=hs.sampled_from(ZONES),
    day=hs.sampled_from([dt.date(2031, 4, 9), dt.date(2026, 11, 1), dt.date(2026, 3, 29)]),
    hour=hs.integers(9, 22),
    weeks=hs.lists(hs.integers(0, 3), min_size=4, max_size=4),
    recent=hs.integers(0, 8),
)
def test_a_spike_is_recent_over_the_weeks_since_first_use_with_enough_volume(
    connection: Connection, tz: str, day: dt.date, hour: int, weeks: list[int], recent: int
) -> None:
    zone = ZoneInfo(tz)
    now = dt.datetime.combine(day, dt.time(hour), zone).astimezone(dt.UTC)
    credits = 50

    def in_window(weeks_back: int) -> dt.datetime:
        # 90 minutes before the same local wall-clock time ``weeks_back`` weeks before.
        wall = dt.datetime.combine(day - dt.timedelta(weeks=weeks_back), dt.time(hour), zone)
        return wall.astimezone(dt.UTC) - dt.timedelta(minutes=90)

    with connection.begin_nested() as savepoint:
        tenant = Tenant(connection, tz)
        instants = [in_window(0)] * recent
        for k, count in enumerate(weeks, start=1):
            instants += [in_window(k)] * count
        if instants:
            tenant.generate(instants, credits=credits)
        found = forecast.usage_spikes(connection, now=now)
        # No minimum: every organization with use today or yesterday is a candidate.
        unfiltered = forecast.usage_spikes(connection, now=now, min_credits=0, factor=1)
        savepoint.rollback()

    oldest = max([k for k, count in enumerate(weeks, start=1) if count] or [0])
    recent_credits = recent * credits
    baseline = sum(weeks[:oldest]) * credits / oldest if oldest else 0.0
    factor = recent_credits / baseline if baseline else math.inf
    flagged = recent_credits >= forecast.MIN_SPIKE_CREDITS and factor >= 3
    ours = found[found["organization_id"] == tenant.org]
    assert len(ours) == (1 if flagged else 0)
    # Use only weeks ago (or none) is no spike even with no minimum: nothing is recent.
    assert (tenant.org in set(unfiltered["organization_id"])) == (recent > 0 and factor >= 1)
    if flagged:
        row = ours.iloc[0]
        assert row["recent_credits"] == recent_credits
        assert row["baseline_credits"] == pytest.approx(baseline)
        assert row["factor"] == pytest.approx(factor)


@pytest.mark.parametrize(
    "bad",
    [
        {"hours": 0},
        {"hours": 25},
        {"hours": 2.5},
        {"factor": 0.5},
        {"factor": "3"},
        {"factor": True},
        {"min_credits": -1},
        {"min_credits": 1.5},
    ],
)
def test_spike_arguments_are_checked(connection: Connection, bad: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        forecast.usage_spikes(connection, **bad)  # type: ignore[arg-type]


# -- low runway -------------------------------------------------------------------------


def test_low_runway_equals_balance_and_runway(connection: Connection) -> None:
    today = connection.execute(text("SELECT CAST(now() AT TIME ZONE 'UTC' AS date)")).scalar_one()
    balances = {"short": 100, "long": 10_000, "spent": 0, "idle": 10}
    zones = {
        "short": "Asia/Kathmandu",
        "long": "America/New_York",
        "spent": "Pacific/Kiritimati",
        "idle": "UTC",
    }
    tenants = {key: Tenant(connection, zone) for key, zone in zones.items()}
    for key, tenant in tenants.items():
        if key == "idle":
            continue
        for back in (1, 3, 10, 29, 35):  # 35 days back is outside the burn window
            day = today - dt.timedelta(days=back)
            tenant.generate(local_hours(day, tenant.tz, range(9, 12), 20), credits=2)
        tenant.generate(local_hours(today, tenant.tz, range(0, 1), 1))  # maybe today
    for key, tenant in tenants.items():
        tenant.set_balance(balances[key])

    result = forecast.low_runway(connection, within_days=14)
    ours = result[result["organization_id"].isin([t.org for t in tenants.values()])]

    assert set(ours["organization_id"]) == {tenants["short"].org, tenants["spent"].org}
    everything = forecast.low_runway(connection, within_days=3660)
    all_ours = everything[everything["organization_id"].isin([t.org for t in tenants.values()])]
    assert len(all_ours) == 3  # the idle one never runs out
    for _, row in all_ours.iterrows():
        runway = usage.balance_and_runway(connection, organization_id=int(row["organization_id"]))
        assert runway is not None and runway.runway_days is not None
        assert row["balance"] == runway.balance
        assert row["daily_burn"] == pytest.approx(runway.daily_burn)
        assert row["runway_days"] == pytest.approx(runway.runway_days)
        assert row["runs_out_on"] == runway.today + dt.timedelta(
            days=math.floor(max(runway.runway_days, 0))
        )
    assert ours["organization_id"].iloc[0] == tenants["spent"].org  # soonest first
    assert list(result.columns) == list(forecast.RUNWAY_COLUMNS)
    # No grant expires: the burn empties the balance, and nothing is lost to expiry.
    assert set(all_ours["cause"]) == {"burn"}
    assert (all_ours["expiring_unused"] == 0).all() and (all_ours["expiring_then"] == 0).all()


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tz=hs.sampled_from(ZONES),
    back=hs.sets(hs.integers(0, 45), max_size=10),
    burn_days=hs.sampled_from([1, 2, 7, 30]),
    hour=hs.integers(0, 23),
    one=hs.booleans(),
)
# A burn of one day: New York's day before its window is UTC's day before (found twice).
@example(tz="America/New_York", back={1}, burn_days=1, hour=0, one=False)
def test_low_runway_burns_as_balance_and_runway_whatever_days_have_use(
    connection: Connection, tz: str, back: set[int], burn_days: int, hour: int, one: bool
) -> None:
    # The burn's two running totals come from the day before each edge when it has a
    # row (a range of the date-first index) and from a probe when it does not: any set of
    # days with use, the same burn as the per-organization read.
    now = dt.datetime(2031, 4, 9, hour, 30, tzinfo=dt.UTC)
    today = now.astimezone(ZoneInfo(tz)).date()
    with connection.begin_nested():
        Tenant(connection, "Pacific/Kiritimati")  # another zone, another today
        tenant = Tenant(connection, tz)
        if back:
            tenant.generate(
                [local_midnight(today - dt.timedelta(days=b), tz) for b in sorted(back)],
                credits=3,
            )
        tenant.set_balance(40)
        runway = usage.balance_and_runway(
            connection, organization_id=tenant.org, burn_days=burn_days, now=now
        )
        assert runway is not None
        rows = forecast.low_runway(
            connection,
            within_days=3660,
            burn_days=burn_days,
            now=now,
            organization_id=tenant.org if one else None,
        )
        ours = rows[rows["organization_id"] == tenant.org]
        if runway.credits_burned == 0:
            assert ours.empty  # idle, with credits that never expire: never runs out
        else:
            row = row_of(rows, tenant.org)
            assert row["balance"] == runway.balance == 40
            assert row["daily_burn"] == pytest.approx(runway.daily_burn)


@pytest.mark.parametrize(
    "bad", [{"within_days": -1}, {"within_days": 1.5}, {"burn_days": 0}, {"burn_days": 400}]
)
def test_runway_arguments_are_checked(connection: Connection, bad: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        forecast.low_runway(connection, **bad)  # type: ignore[arg-type]


def test_the_forecast_limit_is_the_limit_in_force(connection: Connection) -> None:
    # Every forecast row has use, so its day has a usage_limits row, whose limit is
    # limit_in_force()'s first rule: the two agree for a limit changed that day and for
    # one the day started with.
    day = dt.date(2031, 4, 9)
    changed, started = Tenant(connection, "Asia/Kathmandu"), Tenant(connection, "UTC")
    for tenant in (changed, started):
        tenant.generate(local_hours(day, tenant.tz, range(6, 8), 3))
    changed.set_limit(day, 55)
    now = local_midnight(day, "Asia/Kathmandu") + 9 * HOUR

    result = forecast.quota_forecast(connection, now=now)
    ours = result[result["organization_id"].isin([changed.org, started.org])]

    assert len(ours) == 2
    for _, row in ours.iterrows():
        in_force = connection.execute(
            text("SELECT daily_limit FROM limit_in_force(:org, :type, :day)"),
            {
                "org": int(row["organization_id"]),
                "type": row["type"],
                "day": (now.astimezone(ZoneInfo(row["timezone"]))).date(),
            },
        ).scalar_one()
        assert row["daily_limit"] == in_force
    assert row_of(ours, changed.org)["daily_limit"] == 55


# -- low runway with expiring grants (issue 18) -----------------------------------------

# A fixed instant ahead of the database's clock: the grants below expire after it, and
# the database only draws grants that have not expired by its own clock.
EXPIRY_NOW = dt.datetime(2031, 4, 9, 20, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def burning(tenant: Tenant, now: dt.datetime, per_day: int) -> None:
    """``per_day`` credits on each of the 30 complete local days before ``now``'s."""
    today = now.astimezone(ZoneInfo(tenant.tz)).date()
    for back in range(1, 31):
        tenant.generate(
            local_hours(today - back * DAY, tenant.tz, range(12, 13), 1), credits=per_day
        )


def hold_grants(
    tenant: Tenant,
    now: dt.datetime,
    *,
    opening: int,
    grants: list[tuple[int, dt.timedelta, int | None]],
) -> None:
    """The organization's live grants are exactly: its opening grant of ``opening``
    (never expires, default priority), then each (amount, expires after now, priority),
    made a day before ``now`` (back-dated, as the owner may). The balance follows."""
    conn = tenant.conn
    left = conn.execute(
        text("SELECT balance FROM credit_balances WHERE organization_id = :org"),
        {"org": tenant.org},
    ).scalar_one()
    conn.execute(
        text(
            "INSERT INTO credit_ledger (organization_id, amount, kind, reason, actor, "
            "idempotency_key) VALUES (:org, :amount, 'deduct', 'Test set-up', "
            "'setup@example.com', 'keep-opening')"
        ),
        {"org": tenant.org, "amount": opening - left},
    )
    for n, (amount, expires_in, priority) in enumerate(grants):
        conn.execute(
            text(
                "INSERT INTO credit_ledger (organization_id, amount, kind, reason, actor, "
                "idempotency_key, created_at, grant_expires_at, grant_priority) "
                "VALUES (:org, :amount, 'grant', 'Promotion', 'setup@example.com', :key, "
                ":created, :expires, :priority)"
            ),
            {
                "org": tenant.org,
                "amount": amount,
                "key": f"promo-{n}",
                "created": now - DAY,
                "expires": now + expires_in,
                "priority": priority,
            },
        )


@pytest.mark.parametrize(
    ("priority", "unused", "days"),
    [(None, 200, 103.0), (20, 500, 100.0)],
    ids=["promo-drawn-first", "promo-drawn-last"],
)
def test_a_small_expiring_grant_beside_a_big_one_shortens_the_runway_by_what_it_wastes(
    connection: Connection, priority: int | None, unused: int, days: float
) -> None:
    tenant = Tenant(connection, "UTC")
    burning(tenant, EXPIRY_NOW, 100)
    # 10,000 that never expire and 500 that expire in 3 days. Drawn first (the sooner
    # expiry at the same priority), the burn uses 300 of the 500 by then; drawn last,
    # none of it.
    hold_grants(tenant, EXPIRY_NOW, opening=10_000, grants=[(500, 3 * DAY, priority)])

    row = row_of(forecast.low_runway(connection, within_days=3660, now=EXPIRY_NOW), tenant.org)

    assert row["balance"] == 10_500 and row["daily_burn"] == pytest.approx(100)
    assert row["cause"] == "burn"
    assert row["expiring_unused"] == unused and row["expiring_then"] == 0
    assert row["runway_days"] == pytest.approx(days)  # (10,500 - unused) / 100
    assert row["runs_out_at"] == EXPIRY_NOW + days * DAY
    assert row["runs_out_on"] == EXPIRY_NOW.date() + int(days) * DAY


@pytest.mark.parametrize(
    ("tz", "shown"),
    [("UTC", dt.date(2031, 4, 24)), ("Asia/Kathmandu", dt.date(2031, 4, 25))],
)
def test_a_balance_mostly_in_a_grant_the_burn_cannot_use_in_time_runs_out_at_its_expiry(
    connection: Connection, tz: str, shown: dt.date
) -> None:
    tenant = Tenant(connection, tz)
    burning(tenant, EXPIRY_NOW, 100)
    # 1,000 drawn first, then 9,000 (priority 20) that expire in 15 days: the burn is on
    # them from day 10 and uses 500 before they expire, so the other 8,500 expire
    # unused and nothing is left: it runs out at the expiry, not after 100 days.
    hold_grants(tenant, EXPIRY_NOW, opening=1_000, grants=[(9_000, 15 * DAY, 20)])

    result = forecast.low_runway(connection, within_days=30, now=EXPIRY_NOW)
    row = row_of(result, tenant.org)

    assert row["balance"] == 10_000
    assert row["cause"] == "expiry"
    assert row["runs_out_at"] == EXPIRY_NOW + 15 * DAY  # 20:00 UTC, 01:45 in Kathmandu
    assert row["runway_days"] == pytest.approx(15)
    assert row["runs_out_on"] == shown  # the organization's own date of the expiry
    assert row["expiring_unused"] == row["expiring_then"] == 8_500
    assert (
        forecast.runway_reason(
            balance=int(row["balance"]),
            cause=str(row["cause"]),
            runs_out_on=row["runs_out_on"],
            expiring_unused=int(row["expiring_unused"]),
            expiring_then=int(row["expiring_then"]),
        )
        == f"runs out on {shown.day} Apr, when 8,500 credits expire"
    )
    # Within 14 days it does not run out; nor did the balance alone say it would soon.
    assert tenant.org not in set(
        forecast.low_runway(connection, within_days=14, now=EXPIRY_NOW)["organization_id"]
    )


@pytest.mark.parametrize(
    ("grants", "unused"),
    [
        # Same priority: the first promotion expires with 500 unused, so the burn reaches
        # the second 500 credits sooner than its place in the order says, and uses 500 of it.
        ([(1_000, 10 * DAY, None), (1_000, 20 * DAY, None)], 1_000),
        # The later expiry drawn first (priority 5): the earlier one waits, whole, and
        # expires untouched; the burn uses all of the one drawn first before it expires.
        ([(1_000, 10 * DAY, None), (1_000, 20 * DAY, 5)], 1_000),
        # Both drawn after the opening grant: nothing of either is used.
        ([(1_000, 10 * DAY, 30), (1_000, 20 * DAY, 30)], 2_000),
    ],
    ids=["same-priority", "later-expiry-first", "both-last"],
)
def test_the_walk_follows_the_draw_order_across_expiries(
    connection: Connection, grants: list[tuple[int, dt.timedelta, int | None]], unused: int
) -> None:
    tenant = Tenant(connection, "America/New_York")
    burning(tenant, EXPIRY_NOW, 50)
    hold_grants(tenant, EXPIRY_NOW, opening=5_000, grants=grants)

    row = row_of(
        forecast.low_runway(
            connection, within_days=3660, now=EXPIRY_NOW, organization_id=tenant.org
        ),
        tenant.org,
    )

    assert row["expiring_unused"] == unused
    assert row["cause"] == "burn"
    assert row["runway_days"] == pytest.approx((7_000 - unused) / 50)


# -- low runway of idle organizations: nothing burned, credits that expire -------------

# The local date of EXPIRY_NOW + 5 days (20:00 UTC): 01:45 the next day in Kathmandu.
IDLE_ZONES = [("UTC", dt.date(2031, 4, 14)), ("Asia/Kathmandu", dt.date(2031, 4, 15))]


def reason_of(row: pd.Series) -> str:
    return forecast.runway_reason(
        balance=int(row["balance"]),
        cause=str(row["cause"]),
        runs_out_on=row["runs_out_on"],
        expiring_unused=int(row["expiring_unused"]),
        expiring_then=int(row["expiring_then"]),
    )


def listed(connection: Connection, org: int, **kwargs: object) -> bool:
    rows = forecast.low_runway(connection, now=EXPIRY_NOW, **kwargs)  # type: ignore[arg-type]
    return org in set(rows["organization_id"])


@pytest.mark.parametrize(("tz", "shown"), IDLE_ZONES)
def test_an_idle_organization_whose_only_grant_expires_runs_out_at_that_expiry(
    connection: Connection, tz: str, shown: dt.date
) -> None:
    tenant = Tenant(connection, tz)  # no use at all
    hold_grants(tenant, EXPIRY_NOW, opening=0, grants=[(8_000, 5 * DAY, None)])

    row = row_of(forecast.low_runway(connection, within_days=14, now=EXPIRY_NOW), tenant.org)

    assert row["balance"] == 8_000 and row["daily_burn"] == 0
    assert row["cause"] == "expiry"
    assert row["runs_out_at"] == EXPIRY_NOW + 5 * DAY
    assert row["runway_days"] == pytest.approx(5)
    assert row["runs_out_on"] == shown  # the organization's own date of the expiry
    assert row["expiring_unused"] == row["expiring_then"] == 8_000
    assert reason_of(row) == f"runs out on {shown.day} Apr, when 8,000 credits expire"
    # The same row for the organization alone; not within a window that ends before.
    alone = forecast.low_runway(
        connection, within_days=14, now=EXPIRY_NOW, organization_id=tenant.org
    )
    assert row_of(alone, tenant.org).equals(row)
    assert not listed(connection, tenant.org, within_days=4)


@pytest.mark.parametrize(("tz", "shown"), IDLE_ZONES)
def test_an_idle_organization_runs_out_at_the_expiry_that_takes_its_last_credits(
    connection: Connection, tz: str, shown: dt.date
) -> None:
    tenant = Tenant(connection, tz)
    # 2,000 expire in 3 days, then two grants of 3,000 at one instant in 5 days (one
    # drawn first, priority 5): at a zero pace the order does not matter, all expire.
    hold_grants(
        tenant,
        EXPIRY_NOW,
        opening=0,
        grants=[(2_000, 3 * DAY, None), (3_000, 5 * DAY, 5), (3_000, 5 * DAY, 20)],
    )

    row = row_of(forecast.low_runway(connection, within_days=14, now=EXPIRY_NOW), tenant.org)

    assert (row["cause"], row["runs_out_at"]) == ("expiry", EXPIRY_NOW + 5 * DAY)
    assert row["expiring_unused"] == 8_000 and row["expiring_then"] == 6_000
    assert reason_of(row) == (
        f"runs out on {shown.day} Apr, when 6,000 credits expire; 2,000 more expire unused before"
    )


@pytest.mark.parametrize("tz", [tz for tz, _ in IDLE_ZONES])
def test_an_idle_organization_that_keeps_credits_past_the_window_is_not_listed(
    connection: Connection, tz: str
) -> None:
    # Credits that never expire, or that expire after the window, last for ever at a
    # zero pace: it does not run out, however much else expires (design.md, "idle").
    keeps = Tenant(connection, tz)
    hold_grants(keeps, EXPIRY_NOW, opening=500, grants=[(8_000, 5 * DAY, None)])
    later = Tenant(connection, tz)
    hold_grants(later, EXPIRY_NOW, opening=0, grants=[(2_000, 5 * DAY, None), (6_000, 20 * DAY, 5)])

    assert not listed(connection, keeps.org, within_days=14)
    assert not listed(connection, keeps.org, within_days=3660)
    assert not listed(connection, later.org, within_days=14)
    # Within 30 days the later grant's expiry takes the last of it.
    row = row_of(forecast.low_runway(connection, within_days=30, now=EXPIRY_NOW), later.org)
    assert (row["cause"], row["runs_out_at"]) == ("expiry", EXPIRY_NOW + 20 * DAY)
    assert row["expiring_unused"] == 8_000 and row["expiring_then"] == 6_000


@pytest.mark.parametrize("tz", [tz for tz, _ in IDLE_ZONES])
def test_an_idle_organization_with_nothing_live_is_not_listed(
    connection: Connection, tz: str
) -> None:
    # Nothing ahead of it: no credits at all, or only a grant that expired before now
    # (due, not yet written off).
    empty = Tenant(connection, tz)
    hold_grants(empty, EXPIRY_NOW, opening=0, grants=[])
    expired = Tenant(connection, tz)
    hold_grants(expired, EXPIRY_NOW, opening=0, grants=[(8_000, -12 * HOUR, None)])

    for tenant in (empty, expired):
        assert not listed(connection, tenant.org, within_days=3660)


@pytest.mark.parametrize("tz", [tz for tz, _ in IDLE_ZONES])
def test_idle_and_burning_organizations_are_listed_soonest_run_out_first(
    connection: Connection, tz: str
) -> None:
    soon, late = Tenant(connection, tz), Tenant(connection, tz)
    for tenant, credits in ((soon, 300), (late, 1_000)):
        burning(tenant, EXPIRY_NOW, 100)
        hold_grants(tenant, EXPIRY_NOW, opening=credits, grants=[])
    idle = Tenant(connection, tz)
    hold_grants(idle, EXPIRY_NOW, opening=0, grants=[(8_000, 5 * DAY, None)])

    result = forecast.low_runway(connection, within_days=14, now=EXPIRY_NOW)
    ours = result[result["organization_id"].isin([soon.org, late.org, idle.org])]

    assert list(ours["organization_id"]) == [soon.org, idle.org, late.org]
    assert list(ours["cause"]) == ["burn", "expiry", "burn"]
    # The burning ones read as they did: balance / burn, nothing lost to expiry.
    assert list(ours["runway_days"]) == pytest.approx([3, 5, 10])
    assert list(ours["daily_burn"]) == pytest.approx([100, 0, 100])
