"""Pages across organizations count their days in the company zone (DASHBOARD_TIMEZONE),
whichever organization is selected; pages of one organization keep its own zone.

"Now" is fixed (``dashboard.clock.now``) at awkward instants: the first minutes of a
month in UTC, which is still the previous month in New York and already morning at
UTC+5:45, and New York's DST day. Numbers are checked against a recount from the raw
rows of the demo database (its data ends on 2026-11-20)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from dashboard import clock, ui
from tests.dashboard.apptest import (
    make_app,
    metrics,
    open_page,
    plain_texts,
    scalar,
    table_with,
)

FIRST_MINUTES_OF_DECEMBER = dt.datetime(2026, 12, 1, 0, 4, tzinfo=dt.UTC)

# Consumption and grants of every organization between the company zone's midnights.
_RECOUNT = """
    SELECT ARRAY[
        (SELECT coalesce(sum(credits), 0) FROM generations
         WHERE created_at >= CAST(:lo AS timestamp) AT TIME ZONE :tz
           AND created_at < CAST(:hi AS timestamp) AT TIME ZONE :tz),
        (SELECT count(*) FROM generations
         WHERE created_at >= CAST(:lo AS timestamp) AT TIME ZONE :tz
           AND created_at < CAST(:hi AS timestamp) AT TIME ZONE :tz),
        (SELECT coalesce(sum(amount), 0) FROM credit_ledger
         WHERE amount > 0
           AND created_at >= CAST(:lo AS timestamp) AT TIME ZONE :tz
           AND created_at < CAST(:hi AS timestamp) AT TIME ZONE :tz)]
"""


@pytest.fixture
def at_instant(
    demo_url: str, use_database: Callable[[str], None], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., AppTest]:
    use_database(demo_url)

    def open_at(
        page: str, now: dt.datetime, *, company: str | None = None, **query: str
    ) -> AppTest:
        monkeypatch.setattr(clock, "now", lambda: now)
        if company is None:
            monkeypatch.delenv("DASHBOARD_TIMEZONE", raising=False)
        else:
            monkeypatch.setenv("DASHBOARD_TIMEZONE", company)
        return open_page(make_app(role="admin", query=query), page)

    return open_at


def _far_apart(engine: Engine) -> tuple[int, int]:
    """The demo organizations furthest west and furthest east of UTC on 1 December."""
    west, east = scalar(
        engine,
        "SELECT ARRAY[(array_agg(id ORDER BY off, id))[1], (array_agg(id ORDER BY off DESC, id))[1]]"
        " FROM (SELECT id, extract(timezone FROM TIMESTAMPTZ '2026-12-01 00:04+00'"
        " AT TIME ZONE timezone AT TIME ZONE 'UTC') AS off FROM organizations) o",
    )
    return int(west), int(east)


@pytest.mark.parametrize(
    ("company", "first", "last"),
    [
        # 00:04 UTC on 1 December: already 1 December in UTC and at +05:45 ...
        ("UTC", dt.date(2026, 11, 2), dt.date(2026, 12, 1)),
        ("Asia/Kathmandu", dt.date(2026, 11, 2), dt.date(2026, 12, 1)),
        # ... still 30 November in New York, whose window starts on its DST day.
        ("America/New_York", dt.date(2026, 11, 1), dt.date(2026, 11, 30)),
    ],
)
def test_usage_review_totals_are_the_company_zones_whichever_organization_is_selected(
    at_instant: Callable[..., AppTest],
    demo_engine: Engine,
    company: str,
    first: dt.date,
    last: dt.date,
) -> None:
    west, east = _far_apart(demo_engine)
    credits, generations, granted = scalar(
        demo_engine,
        _RECOUNT,
        lo=first.isoformat(),
        hi=(last + dt.timedelta(days=1)).isoformat(),
        tz=company,
    )
    assert credits > 0
    seen = []
    for org in (west, east):
        at = at_instant(
            "usage", FIRST_MINUTES_OF_DECEMBER, company=company, org=str(org), range="30d"
        )
        assert not at.exception
        captions = plain_texts(at, "caption")
        span = f"{first:%d %b %Y} – {last:%d %b %Y}"
        assert any(span in c and f"Dates in {company}, the company zone." in c for c in captions)
        shown = metrics(at)
        assert shown["Credits consumed"][0] == ui.number(credits)
        assert shown["Generations"][0] == ui.number(generations)
        assert shown["Credits granted"][0] == ui.number(granted)
        seen.append(shown)
    assert seen[0] == seen[1]


def test_an_unknown_company_zone_stops_the_app_with_a_sentence(
    at_instant: Callable[..., AppTest],
) -> None:
    at = at_instant("usage", FIRST_MINUTES_OF_DECEMBER, company="Mars/Olympus_Mons")
    errors = plain_texts(at, "error")
    assert any(
        "DASHBOARD_TIMEZONE must be an IANA time zone" in e and "Mars/Olympus_Mons" in e
        for e in errors
    ), errors
    assert not at.dataframe


@pytest.mark.parametrize("company", ["UTC", "Asia/Kathmandu"])
def test_the_all_organizations_audit_trail_is_in_the_company_zone(
    at_instant: Callable[..., AppTest], demo_engine: Engine, company: str
) -> None:
    west, _ = _far_apart(demo_engine)
    # A week around New York's DST day, with the selected organization in its own zone.
    at = at_instant(
        "audit",
        FIRST_MINUTES_OF_DECEMBER,
        company=company,
        org=str(west),
        tz="org",
        range="custom",
        **{"from": "2026-10-29", "to": "2026-11-04"},
    )
    assert not at.exception
    assert any(f"times in {company}, the company zone." in c for c in plain_texts(at, "caption"))
    rows = table_with(at, "Actor")
    assert str(rows["When"].dt.tz) == company
    expected = scalar(
        demo_engine,
        "SELECT (SELECT count(*) FROM credit_ledger"
        "  WHERE created_at >= '2026-10-29'::timestamp AT TIME ZONE :z"
        "  AND created_at < '2026-11-05'::timestamp AT TIME ZONE :z)"
        " + (SELECT count(*) FROM audit_log"
        "  WHERE created_at >= '2026-10-29'::timestamp AT TIME ZONE :z"
        "  AND created_at < '2026-11-05'::timestamp AT TIME ZONE :z)",
        z=company,
    )
    assert 0 < int(expected) < 100, "the week should fit on one page of the trail"
    assert len(rows) == int(expected)
    assert rows["When"].dt.date.min() >= dt.date(2026, 10, 29)
    assert rows["When"].dt.date.max() <= dt.date(2026, 11, 4)


def test_the_overview_compares_today_up_to_the_same_local_time(
    at_instant: Callable[..., AppTest], demo_engine: Engine
) -> None:
    # The demo data ends at 15:30 UTC on 20 November; at 15:37 "Last 7 days" in the
    # organization's own zone ends with today, unfinished. The organization furthest
    # east (its today is well under way), in its own zone.
    _, east = _far_apart(demo_engine)
    now = dt.datetime(2026, 11, 20, 15, 37, tzinfo=dt.UTC)
    at = at_instant("overview", now, org=str(east), range="7d", tz="org")
    assert not at.exception
    zone = str(scalar(demo_engine, "SELECT timezone FROM organizations WHERE id = :o", o=east))
    tz = ZoneInfo(zone)
    today = now.astimezone(tz).date()
    cut = now.replace(minute=30)
    lower = dt.datetime.combine(today - dt.timedelta(days=6), dt.time(), tz)
    previous_lower = dt.datetime.combine(today - dt.timedelta(days=13), dt.time(), tz)
    local_cut = cut.astimezone(tz).replace(tzinfo=None)
    previous_cut = (local_cut - dt.timedelta(days=7)).replace(tzinfo=tz)
    count = "SELECT count(*) FROM generations WHERE organization_id = :o AND created_at >= :lo AND created_at < :hi"
    generations = int(scalar(demo_engine, count, o=east, lo=lower, hi=cut))
    previous = int(scalar(demo_engine, count, o=east, lo=previous_lower, hi=previous_cut))
    value, delta = metrics(at)["Generations"]
    assert value == ui.number(generations)
    assert delta == ui.change((generations - previous) / previous)
    assert any(
        f"Today ({today:%d %b}) is not over" in c and f"up to {local_cut:%H:%M} ({zone})" in c
        for c in plain_texts(at, "caption")
    )
