"""The forecast sections: Quotas leads with who will hit a limit today (at their local
time) and spikes; Usage review and Credits show low runway with a days input."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pandas as pd
import pytest
from sqlalchemy import Engine, text

from dashboard import forecasts
from queries import forecast
from tests.dashboard.apptest import make_app, open_page, table_with
from tests.factories import add_generations


@pytest.fixture
def trouble(
    fresh_url: str, fresh_engine: Engine, use_database: Callable[[str], None]
) -> dict[str, object]:
    """The organization with use today that is earliest in its own day: a burst of
    images in the last hour, its limits squeezed to just above today's use, and a
    balance of 10 credits."""
    use_database(fresh_url)
    with fresh_engine.begin() as conn:
        org, name, tz = conn.execute(
            text(
                """
                SELECT o.id, o.name, o.timezone FROM organizations o
                JOIN usage_limits u ON u.organization_id = o.id
                 AND u.date = (now() AT TIME ZONE o.timezone)::date AND u.used > 0
                -- The earliest in its own day: the most of the day is still ahead.
                ORDER BY (now() AT TIME ZONE o.timezone)::time, o.id LIMIT 1
                """
            )
        ).one()
        user = conn.execute(
            text("SELECT id FROM users WHERE organization_id = :org ORDER BY id LIMIT 1"),
            {"org": org},
        ).scalar_one()
        conn.execute(
            text("UPDATE credit_balances SET balance = 10000000 WHERE organization_id = :org"),
            {"org": org},
        )
        now = conn.execute(text("SELECT now()")).scalar_one()
        add_generations(
            conn,
            org,
            [(user, "image", 4, now - dt.timedelta(seconds=30 * (100 - i))) for i in range(100)],
        )
        conn.execute(
            text(
                """
                UPDATE usage_limits u SET daily_limit = u.used + 1 FROM organizations o
                WHERE o.id = u.organization_id AND o.id = :org
                  AND u.date = (now() AT TIME ZONE o.timezone)::date
                """
            ),
            {"org": org},
        )
        conn.execute(
            text("UPDATE credit_balances SET balance = 10 WHERE organization_id = :org"),
            {"org": org},
        )
    return {"org": org, "name": name, "timezone": tz}


def test_quotas_leads_with_who_will_hit_a_limit_today_at_their_local_time(
    trouble: dict[str, object], fresh_engine: Engine
) -> None:
    at = open_page(make_app(role="support", query={"org": str(trouble["org"])}), "quotas")
    assert not at.exception and not at.error
    assert [s.value for s in at.subheader][:3] == ["Will hit its limit today", "Spikes", "Today"]
    table = table_with(at, "Hits the limit at")
    ours = table[table["Organization"] == trouble["name"]]
    assert len(ours) >= 1
    assert all(str(v).endswith(f" {trouble['timezone']}") for v in ours["Hits the limit at"])
    with fresh_engine.connect() as conn:
        expected = forecast.quota_forecast(conn)
    expected = expected[expected["hits_limit_at"].notna()]
    assert sorted(zip(table["Organization"], table["Type"], strict=True)) == sorted(
        zip(expected["name"], expected["type"], strict=True)
    )
    spikes = table_with(at, "Factor")
    assert trouble["name"] in set(spikes["Organization"])


@pytest.mark.parametrize("page", ["usage", "credits"])
def test_low_runway_is_on_usage_review_and_credits_with_a_days_input(
    trouble: dict[str, object], fresh_engine: Engine, page: str
) -> None:
    at = open_page(make_app(role="admin", query={"org": str(trouble["org"])}), page)
    assert not at.exception and not at.error
    table = table_with(at, "Runs out on")
    assert trouble["name"] in set(table["Organization"])
    at.number_input(key=f"{page}.runway_days").set_value(365).run()
    assert not at.exception
    wider = table_with(at, "Runs out on")
    with fresh_engine.connect() as conn:
        expected = forecast.low_runway(conn, within_days=365)
    assert list(wider["Organization"]) == list(expected["name"])


def test_a_hit_time_is_shown_in_the_organizations_own_clock() -> None:
    hit = pd.Timestamp("2031-04-09 08:45", tz="UTC")
    shown = forecasts.local_clock(
        pd.Series([hit, pd.NaT, hit], dtype="datetime64[us, UTC]"),
        pd.Series(["Asia/Kathmandu", "UTC", "America/New_York"]),
    )
    assert list(shown) == ["14:30 Asia/Kathmandu", "", "04:45 America/New_York"]
