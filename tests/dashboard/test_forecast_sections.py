"""The forecast sections: Quotas leads with who will hit a limit today (at their local
time) and spikes; Usage review and Credits show low runway with a days input."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlalchemy import Connection, Engine, text

from dashboard import clock, forecasts
from queries import forecast
from tests.dashboard.apptest import (
    capture_downloads,
    links_of,
    make_app,
    open_page,
    table_with,
    texts,
)
from tests.factories import add_generations, make_org, make_user

# Clocks 5 hours apart at most (Honolulu and Kiritimati show the same hour): at any
# moment one of them is between 04:00 and 16:00, with most of its day still ahead.
ZONES = (
    "Pacific/Kiritimati",
    "Asia/Tokyo",
    "Asia/Kathmandu",
    "Europe/Berlin",
    "UTC",
    "America/New_York",
    "America/Los_Angeles",
    "Pacific/Honolulu",
)


def _in_trouble(conn: Connection, name: str, now: dt.datetime | None = None) -> tuple[int, str]:
    """A new organization (its id and zone) in a zone where it is morning or early
    afternoon at ``now`` (default: the database's): images on each of the 5 days before,
    a burst in the hour before, that day's limit just above its use, and a balance of 10
    credits."""
    now = now or conn.execute(text("SELECT now()")).scalar_one()
    tz = next(z for z in ZONES if 4 <= now.astimezone(ZoneInfo(z)).hour < 16)
    org = make_org(conn, name=name, timezone=tz, balance=10_000_000)
    user = make_user(conn, org)
    burst = [now - dt.timedelta(seconds=30 * (100 - i)) for i in range(100)]
    past = [now - dt.timedelta(days=d, minutes=m) for d in range(1, 6) for m in range(10)]
    add_generations(conn, org, [(user, "image", 4, at) for at in burst + past])
    conn.execute(
        text(
            """
            UPDATE usage_limits u SET daily_limit = u.used + 1 FROM organizations o
            WHERE o.id = u.organization_id AND o.id = :org
              AND u.date = (CAST(:now AS timestamptz) AT TIME ZONE o.timezone)::date
            """
        ),
        {"org": org, "now": now},
    )
    conn.execute(
        text("UPDATE credit_balances SET balance = 10 WHERE organization_id = :org"),
        {"org": org},
    )
    return org, tz


@pytest.fixture
def trouble(
    fresh_url: str, fresh_engine: Engine, use_database: Callable[[str], None]
) -> dict[str, object]:
    """An organization in trouble (:func:`_in_trouble`) in a fresh demo database."""
    use_database(fresh_url)
    with fresh_engine.begin() as conn:
        org, tz = _in_trouble(conn, "Forecast Fixture Org")
    return {"org": org, "name": "Forecast Fixture Org", "timezone": tz}


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
    # Each name opens the organization's quotas (with the limit form for support), its
    # id in the link, never its name.
    opens = links_of(at, "forecasts.limit_today", "Organization")
    assert all(
        opens[i].page == "quotas"
        and opens[i].query["org"] == str(trouble["org"])
        and opens[i].query["form"] == "limit"
        and trouble["name"] not in opens[i].query.values()
        for i in ours.index
    )
    spikes = table_with(at, "Factor")
    assert trouble["name"] in set(spikes["Organization"])
    spiked = spikes[spikes["Organization"] == trouble["name"]]
    opens = links_of(at, "forecasts.spikes", "Organization")
    assert [opens[i].query["org"] for i in spiked.index] == [str(trouble["org"])]


def test_the_forecast_sections_read_the_pages_clock(
    fresh_url: str,
    fresh_engine: Engine,
    use_database: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Trouble on a day years from the database's clock: the page's clock alone makes
    # it today, for the limits hit today, the spikes, today's quotas and low runway.
    now = dt.datetime(2031, 4, 9, 5, 0, tzinfo=dt.UTC)
    use_database(fresh_url)
    with fresh_engine.begin() as conn:
        org, tz = _in_trouble(conn, "Future Fixture Org", now=now)
    monkeypatch.setattr(clock, "now", lambda: now + dt.timedelta(seconds=20))
    quotas = open_page(make_app(role="support", query={"org": str(org)}), "quotas")
    assert not quotas.exception and not quotas.error
    hits = table_with(quotas, "Hits the limit at")
    [hit] = hits[hits["Organization"] == "Future Fixture Org"].to_dict("records")
    with fresh_engine.connect() as conn:
        forecasts_then = forecast.quota_forecast(conn, now=now, hits_only=True)
    [at] = forecasts_then[forecasts_then["organization_id"] == org]["hits_limit_at"]
    assert hit["Hits the limit at"] == f"{at.tz_convert(tz):%H:%M} {tz}"
    assert "Future Fixture Org" in set(table_with(quotas, "Factor")["Organization"])
    # Today's quotas too: its limit, just above its use, is near.
    near = links_of(quotas, "quotas.near", "Organization")
    assert str(org) in {link.query["org"] for link in near if link is not None}
    usage = open_page(make_app(role="admin", query={"org": str(org)}), "usage")
    assert "Future Fixture Org" in set(table_with(usage, "Runs out on")["Organization"])


def _page_clock_fixed(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> dt.datetime:
    """A second organization in trouble, and the page's clock fixed just after: the
    instant (to the minute, as the page reads) the test's own reads take too."""
    with engine.begin() as conn:
        _in_trouble(conn, "Second Fixture Org")
        now = conn.execute(text("SELECT now()")).scalar_one() + dt.timedelta(seconds=1)
    monkeypatch.setattr(clock, "now", lambda: now)
    return clock.minute()


def _draws_the_first_and_offers_all_as_csv(
    at: Any,
    downloads: dict[str, bytes],
    expected: pd.DataFrame,
    *,
    column: str,
    key: str,
    caption: str,
    file_name: str,
    csv_columns: dict[str, str],
) -> None:
    """A forecast list drawn one row at a time (its SHOWN patched to 1): the first of
    ``expected`` drawn (the table with ``column``, its link opening that organization),
    ``caption`` said, and after "Prepare", a CSV (``file_name``) of every row, its
    ``csv_columns`` (CSV column: expected column) in ``expected``'s order."""
    assert len(expected) >= 2, "the two fixture organizations should both be listed"
    shown = table_with(at, column)
    assert list(shown["Organization"]) == list(expected["name"][:1])
    opens = links_of(at, key, "Organization")
    assert [opens[i].query["org"] for i in shown.index] == [
        str(i) for i in expected["organization_id"][:1]
    ]
    assert any(caption in c for c in texts(at, "caption"))
    assert file_name not in downloads, "written only when asked"
    at.button(key=f"{key}.prepare_csv").click().run()
    csv = pd.read_csv(io.BytesIO(downloads[file_name]))
    assert list(zip(*(csv[c] for c in csv_columns), strict=True)) == list(
        zip(*(expected[e] for e in csv_columns.values()), strict=True)
    )


def test_a_long_limit_forecast_draws_the_soonest_and_offers_all_of_them_as_csv(
    trouble: dict[str, object],
    fresh_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = _page_clock_fixed(fresh_engine, monkeypatch)
    monkeypatch.setattr(forecasts, "LIMIT_TODAY_SHOWN", 1)
    downloads = capture_downloads(monkeypatch)
    at = open_page(make_app(role="support", query={"org": str(trouble["org"])}), "quotas")
    assert not at.exception and not at.error
    with fresh_engine.connect() as conn:
        expected = forecast.quota_forecast(conn, hits_only=True, now=now)
    _draws_the_first_and_offers_all_as_csv(
        at,
        downloads,
        expected,
        column="Hits the limit at",
        key="forecasts.limit_today",
        caption=f"The 1 soonest of {len(expected):,} limits hit today at this pace",
        file_name="will-hit-limit-today.csv",
        csv_columns={"Organization": "name", "Type": "type"},
    )


def test_a_long_spike_list_draws_the_highest_and_offers_all_of_them_as_csv(
    trouble: dict[str, object],
    fresh_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = _page_clock_fixed(fresh_engine, monkeypatch)
    monkeypatch.setattr(forecasts, "SPIKES_SHOWN", 1)
    downloads = capture_downloads(monkeypatch)
    at = open_page(make_app(role="support", query={"org": str(trouble["org"])}), "quotas")
    assert not at.exception and not at.error
    with fresh_engine.connect() as conn:
        expected = forecast.usage_spikes(conn, now=now)
    _draws_the_first_and_offers_all_as_csv(
        at,
        downloads,
        expected,
        column="Factor",
        key="forecasts.spikes",
        caption=f"The 1 highest of {len(expected):,} spikes",
        file_name="spikes.csv",
        csv_columns={"Organization": "name"},
    )


@pytest.mark.parametrize("page", ["usage", "credits"])
def test_low_runway_is_on_usage_review_and_credits_with_a_days_input(
    trouble: dict[str, object], fresh_engine: Engine, page: str
) -> None:
    at = open_page(make_app(role="admin", query={"org": str(trouble["org"])}), page)
    assert not at.exception and not at.error
    table = table_with(at, "Runs out on")
    assert trouble["name"] in set(table["Organization"])
    ours = table[table["Organization"] == trouble["name"]]
    opens = links_of(at, f"{page}.low_runway", "Organization")
    assert [(opens[i].page, opens[i].query["org"]) for i in ours.index] == [
        ("credits", str(trouble["org"]))
    ]
    at.number_input(key=f"{page}.runway_days").set_value(365).run()
    assert not at.exception
    wider = table_with(at, "Runs out on")
    with fresh_engine.connect() as conn:
        expected = forecast.low_runway(conn, within_days=365)
    assert list(wider["Organization"]) == list(expected["name"])


def test_low_runway_lists_an_idle_organization_whose_credits_all_expire(
    fresh_url: str, fresh_engine: Engine, use_database: Callable[[str], None]
) -> None:
    # Nothing consumed; 8,000 credits that expire in 5 days (of the database's clock,
    # which the page reads), and another idle one that keeps 500 that never expire.
    use_database(fresh_url)
    with fresh_engine.begin() as conn:
        idle = make_org(conn, name="Idle Promotion Org", timezone="Asia/Kathmandu")
        keeps = make_org(conn, name="Idle Keeper Org", timezone="Asia/Kathmandu", balance=500)
        for org in (idle, keeps):
            expires = conn.execute(
                text(
                    "INSERT INTO credit_ledger (organization_id, amount, kind, reason, "
                    "actor, idempotency_key, grant_expires_at) VALUES (:o, 8000, 'grant', "
                    "'Launch promotion', 'finance@example.com', 'idle-promo', "
                    "now() + interval '5 days') RETURNING grant_expires_at"
                ),
                {"o": org},
            ).scalar_one()
    on = expires.astimezone(ZoneInfo("Asia/Kathmandu"))
    at = open_page(make_app(role="admin"), "usage")
    assert not at.exception and not at.error
    table = table_with(at, "Runs out on")
    [row] = table[table["Organization"] == "Idle Promotion Org"].to_dict("records")
    assert (row["Balance"], row["Daily burn"], row["Expires unused"]) == (8_000, 0, 8_000)
    assert row["Runs out on"] == on.date()
    assert row["Why"] == f"runs out on {on.day} {on:%b}, when 8,000 credits expire"
    assert "Idle Keeper Org" not in set(table["Organization"])


def test_a_long_low_runway_list_draws_the_soonest_and_offers_all_of_them_as_csv(
    trouble: dict[str, object], fresh_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(forecasts, "RUNWAY_SHOWN", 2)
    downloads = capture_downloads(monkeypatch)
    at = open_page(make_app(role="admin", query={"org": str(trouble["org"])}), "usage")
    at.number_input(key="usage.runway_days").set_value(365).run()
    assert not at.exception
    with fresh_engine.connect() as conn:
        expected = forecast.low_runway(conn, within_days=365)
    assert len(expected) > 2, "the demo data should hold more than two with a runway"
    shown = table_with(at, "Runs out on")
    assert list(shown["Organization"]) == list(expected["name"][:2])
    opens = links_of(at, "usage.low_runway", "Organization")
    assert [opens[i].query["org"] for i in shown.index] == [
        str(i) for i in expected["organization_id"][:2]
    ]
    assert any(
        f"The 2 that run out soonest of {len(expected):,}" in c for c in texts(at, "caption")
    )
    assert "low-runway_within-365-days.csv" not in downloads, "read only when asked"
    at.button(key="usage.low_runway.prepare_csv").click().run()
    csv = pd.read_csv(io.BytesIO(downloads["low-runway_within-365-days.csv"]))
    assert list(csv["Organization"]) == list(expected["name"])


def test_a_hit_time_is_shown_in_the_organizations_own_clock() -> None:
    hit = pd.Timestamp("2031-04-09 08:45", tz="UTC")
    shown = forecasts.local_clock(
        pd.Series([hit, pd.NaT, hit], dtype="datetime64[us, UTC]"),
        pd.Series(["Asia/Kathmandu", "UTC", "America/New_York"]),
    )
    assert list(shown) == ["14:30 Asia/Kathmandu", "", "04:45 America/New_York"]
