"""Audit trail: who changed what, when and why, filterable and downloadable."""

from __future__ import annotations

import io
from collections.abc import Callable

import pandas as pd
import pytest
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from tests.dashboard.apptest import (
    DEMO_RANGE,
    capture_downloads,
    make_app,
    open_page,
    page_file,
    plain,
    scalar,
    table_with,
    texts,
)


@pytest.fixture
def audit_page(demo_url: str, use_database: Callable[[str], None]) -> Callable[..., AppTest]:
    use_database(demo_url)

    def open_audit(**query: str) -> AppTest:
        return open_page(make_app(role="manager", query={**DEMO_RANGE, **query}), "audit")

    return open_audit


def trail(at: AppTest) -> pd.DataFrame:
    return table_with(at, "Actor")  # type: ignore[no-any-return]


def test_credit_movements_and_limit_changes_are_listed_newest_first(
    audit_page: Callable[..., AppTest],
) -> None:
    at = audit_page()
    assert not at.exception and not at.error
    rows = trail(at)
    # Actions by the labels the filter uses, not the raw keys.
    assert {"Credit grant", "Daily-limit change"} <= set(rows["Action"])
    assert rows["When"].is_monotonic_decreasing
    # A person by their email, or the system for what nobody does by hand (expiries).
    people = rows["Actor"].str.contains("@") | (rows["Actor"] == "system")
    assert rows["Reason"].str.len().min() > 0 and people.all()
    # A limit change moves no credits: the cell is missing and drawn blank, not "None".
    limits = rows[rows["Action"] == "Daily-limit change"]
    assert limits["Credits"].isna().all()
    (table,) = [d for d in at.dataframe if "Actor" in d.value.columns]
    assert table.proto.placeholder == ""


def test_the_trail_filters_by_action_actor_and_organization(
    audit_page: Callable[..., AppTest], demo_engine: Engine
) -> None:
    at = audit_page()
    everything = trail(at)
    at.selectbox(key="audit.action").set_value("set_daily_limit").run()
    assert set(trail(at)["Action"]) == {"Daily-limit change"}
    at.selectbox(key="audit.action").set_value("").run()

    actor = str(everything["Actor"].iloc[0])
    at.text_input(key="audit.actor").input(actor.split("@")[0].upper()).run()
    assert set(trail(at)["Actor"]) == {actor}
    at.text_input(key="audit.actor").input("").run()

    org = str(everything["Organization"].iloc[0])
    org_id = int(scalar(demo_engine, "SELECT id FROM organizations WHERE name = :n", n=org))
    at.selectbox(key="filters.org").set_value(org_id)
    at.radio(key="audit.scope").set_value("one").run()
    assert not at.exception
    assert set(trail(at)["Organization"]) == {org}


def test_the_csv_is_the_trail_shown(
    audit_page: Callable[..., AppTest], monkeypatch: pytest.MonkeyPatch
) -> None:
    downloads = capture_downloads(monkeypatch)
    at = audit_page()
    at.selectbox(key="audit.action").set_value("grant").run()
    shown = trail(at)  # the names are the links: no column of links to leave out
    name = "audit_2026-10-22_2026-11-20_all-orgs_grant.csv"
    assert name in downloads, list(downloads)
    csv = pd.read_csv(io.BytesIO(downloads[name]))
    assert list(csv.columns) == list(shown.columns)
    assert len(csv) == len(shown)
    assert list(csv["Credits"]) == list(shown["Credits"])


def test_an_empty_period_says_so(audit_page: Callable[..., AppTest]) -> None:
    at = audit_page(**{"from": "2020-01-01", "to": "2020-01-31"})
    assert not at.exception
    assert any("No change matches" in i for i in texts(at, "info"))


def test_a_change_made_in_the_app_appears_in_the_trail_at_once(
    fresh_url: str, fresh_engine: Engine, use_database: Callable[[str], None]
) -> None:
    use_database(fresh_url)
    org = int(scalar(fresh_engine, "SELECT id FROM organizations ORDER BY name LIMIT 1"))
    at = open_page(
        make_app(role="admin", email="ana@example.com", query={"org": str(org)}), "audit"
    )
    before = len(trail(at))  # read now, so the cache holds the trail without the change
    at.switch_page(page_file("credits")).run()
    at.text_input(key="credits.amount").input("42")
    at.selectbox(key="credits.reason").set_value("Promotion")
    next(b for b in at.button if b.label == "Review adjustment").click()
    at.run()
    next(b for b in at.button if b.label.startswith("Confirm")).click()
    at.run()
    at.switch_page("app_pages/audit.py").run()
    rows = trail(at)
    assert len(rows) == before + 1
    newest = rows.iloc[0]
    assert (newest["Action"], newest["Actor"], newest["Reason"], newest["Credits"]) == (
        "Credit grant",
        "ana@example.com",
        "Promotion",
        42,
    )


def test_the_trail_pages_by_keyset_and_the_csv_holds_every_page(
    audit_page: Callable[..., AppTest], monkeypatch: pytest.MonkeyPatch
) -> None:
    downloads = capture_downloads(monkeypatch)
    # The whole demo history: more than one page of 100 changes.
    at = audit_page(**{"from": "2026-07-01", "to": "2026-11-20"})
    first = trail(at)
    assert len(first) == 100, "the demo history should hold more than one page of changes"
    at.button(key="audit.next").click().run()
    second = trail(at)
    assert not at.exception and 0 < len(second) <= 100
    # Older changes continue where the first page stopped: nothing repeated or skipped.
    assert second["When"].max() <= first["When"].min()
    assert any("Changes 101–" in c for c in texts(at, "caption"))
    # More than a page: the full CSV is read when asked for.
    assert not downloads
    at.button(key="audit.prepare_csv").click().run()
    (csv_bytes,) = downloads.values()
    csv = pd.read_csv(io.BytesIO(csv_bytes))
    assert len(csv) >= len(first) + len(second)
    assert list(csv["Reason"][100 : 100 + len(second)]) == list(second["Reason"])
    at.button(key="audit.previous").click().run()
    pd.testing.assert_frame_equal(trail(at), first)


@pytest.mark.parametrize("tz", ["org", "utc"])
def test_dates_and_times_are_in_the_zone_the_sidebar_names(
    audit_page: Callable[..., AppTest], demo_engine: Engine, tz: str
) -> None:
    # The organization with the most audited changes in a zone far from UTC.
    org_id, zone = (
        int(v) if i == 0 else str(v)
        for i, v in enumerate(
            scalar(
                demo_engine,
                "SELECT ARRAY[o.id::text, o.timezone] FROM organizations o "
                "JOIN credit_ledger l ON l.organization_id = o.id "
                "WHERE o.timezone NOT IN ('UTC', 'Europe/London') "
                "GROUP BY o.id ORDER BY count(*) DESC, o.id LIMIT 1",
            )
        )
    )
    at = audit_page(org=str(org_id), tz=tz)
    at.radio(key="audit.scope").set_value("one").run()
    assert not at.exception
    shown_zone = zone if tz == "org" else "UTC"
    assert at.radio(key="filters.tz").value == tz  # the sidebar names the zone here
    assert any(f"times in {shown_zone}." in plain(c) for c in texts(at, "caption"))
    rows = trail(at)
    assert str(rows["When"].dt.tz) == shown_zone
    # The range's days are that zone's: every change listed falls on them there, and
    # the count is the ledger's and the audit log's within the zone's midnights.
    days = rows["When"].dt.date
    assert days.min() >= pd.Timestamp("2026-10-22").date()
    assert days.max() <= pd.Timestamp("2026-11-20").date()
    expected = scalar(
        demo_engine,
        "SELECT (SELECT count(*) FROM credit_ledger WHERE organization_id = :o"
        "  AND created_at >= '2026-10-22'::timestamp AT TIME ZONE :z"
        "  AND created_at < '2026-11-21'::timestamp AT TIME ZONE :z)"
        " + (SELECT count(*) FROM audit_log WHERE organization_id = :o"
        "  AND created_at >= '2026-10-22'::timestamp AT TIME ZONE :z"
        "  AND created_at < '2026-11-21'::timestamp AT TIME ZONE :z)",
        o=org_id,
        z=shown_zone,
    )
    assert len(rows) == min(int(expected), 100)


def opened(link: dict[str, str]) -> AppTest:
    """A new session opening a link to the trail (AppTest starts on the first page, which
    would clear a link's ``after``, so the link is opened from there, as a tab would)."""
    at = make_app(role="manager").run()
    for key, value in link.items():
        at.query_params[key] = value
    return at.switch_page("app_pages/audit.py").run()


def test_oldest_first_pages_the_whole_trail_is_kept_in_the_url_and_the_csv_follows_it(
    audit_page: Callable[..., AppTest], monkeypatch: pytest.MonkeyPatch
) -> None:
    downloads = capture_downloads(monkeypatch)
    history = {"from": "2026-07-01", "to": "2026-11-20"}
    at = audit_page(**history)
    newest = trail(at)
    at.selectbox(key="audit.sort").set_value("oldest").run()
    first = trail(at)
    assert at.query_params["sort"] == "oldest"
    assert first["When"].is_monotonic_increasing and first["When"].max() <= newest["When"].min()
    at.button(key="audit.next").click().run()
    second = trail(at)
    assert not at.exception and second["When"].min() >= first["When"].max()
    assert any("Changes 101–" in c and "oldest first" in c for c in texts(at, "caption"))
    # A link opens the same page in the same order.
    link = {**DEMO_RANGE, **history, "sort": "oldest", "after": at.query_params["after"]}
    pd.testing.assert_frame_equal(trail(opened(link)), second)
    # The same page without its order would be other rows: dropped, with a notice.
    other = opened({k: v for k, v in link.items() if k != "sort"})
    assert any("another order" in plain(t) for t in texts(other, "toast"))
    pd.testing.assert_frame_equal(trail(other), newest)
    # The CSV is every change, oldest first.
    at.button(key="audit.prepare_csv").click().run()
    (csv_bytes,) = downloads.values()
    csv = pd.read_csv(io.BytesIO(csv_bytes))
    assert list(csv["Reason"][:100]) == list(first["Reason"])
    assert list(csv["Reason"][100 : 100 + len(second)]) == list(second["Reason"])


def test_a_limit_made_soft_on_quotas_is_in_the_trail_with_its_modes(
    fresh_url: str, fresh_engine: Engine, use_database: Callable[[str], None]
) -> None:
    use_database(fresh_url)
    # An organization whose chat limit is hard (the demo made one tenant's soft).
    org = int(
        scalar(
            fresh_engine,
            "SELECT id FROM organizations o WHERE NOT EXISTS (SELECT FROM limit_enforcement e "
            "WHERE e.organization_id = o.id AND e.type = 'chat' AND e.soft) ORDER BY name LIMIT 1",
        )
    )
    at = open_page(
        make_app(role="admin", email="ana@example.com", query={"org": str(org)}), "quotas"
    )
    at.selectbox(key="quotas.mode_type").set_value("chat")
    at.radio(key="quotas.mode").set_value("soft")
    at.selectbox(key="quotas.mode_reason").set_value("Temporary increase for a launch")
    next(b for b in at.button if b.label == "Review switch").click()
    at.run()
    next(b for b in at.button if b.label == "Confirm switch").click()
    at.run()
    at.switch_page("app_pages/audit.py").run()
    at.selectbox(key="audit.action").set_value("set_limit_enforcement").run()
    # The demo data has a soft limit of its own, made by customer success.
    switches = trail(at)
    [row] = switches[switches["Actor"] == "ana@example.com"].to_dict("records")
    assert (row["Action"], row["Actor"], row["Reason"]) == (
        "Limit made hard or soft",
        "ana@example.com",
        "Temporary increase for a launch",
    )
    assert row["Details"] == "chat · hard → soft"
