"""Audit trail: who changed what, when and why, filterable and downloadable."""

from __future__ import annotations

import io
from collections.abc import Callable

import pandas as pd
import pytest
from sqlalchemy import Engine, text
from streamlit.testing.v1 import AppTest

from tests.dashboard.apptest import (
    DEMO_RANGE,
    capture_downloads,
    click,
    links_of,
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


def test_each_credit_change_links_its_ledger_entry_to_the_organizations_ledger(
    audit_page: Callable[..., AppTest], demo_engine: Engine
) -> None:
    at = audit_page()
    rows = trail(at).reset_index(drop=True)
    credit_changes = rows["Action"].isin(["Credit grant", "Credit deduction", "Refund"])
    limit_changes = rows["Action"] == "Daily-limit change"
    assert credit_changes.any() and limit_changes.any()
    assert rows[credit_changes]["Entry"].notna().all()
    assert rows[limit_changes]["Entry"].isna().all()
    links = links_of(at, "audit.table", "Entry")
    assert [link is None for link in links] == list(rows["Entry"].isna())
    (row, *_) = rows.index[credit_changes]
    entry, name = int(rows["Entry"][row]), rows["Organization"][row]
    org = int(scalar(demo_engine, "SELECT id FROM organizations WHERE name = :n", n=name))
    # Each row's own organization, whichever is selected in the sidebar.
    assert (links[row].page, links[row].query["org"], links[row].query["entry"]) == (
        "credits",
        str(org),
        str(entry),
    )
    click(at, "audit.table", int(row), "Entry")
    assert not at.exception and not at.error
    assert at.query_params["org"] == str(org) and at.query_params["entry"] == str(entry)
    assert [int(e) for e in table_with(at, "Balance after")["Entry"]] == [entry]


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


# ------------------------------------------------------------ plan allowance changes

# The page module draws itself when imported: its page size, as it says.
PLAN_PAGE_SIZE = 50
# Fixed instants inside DEMO_RANGE (the company zone is UTC here), and one outside it.
PLAN_CHANGES = (
    ("pro", "2026-11-05 10:00+00", "ada@admin.example", "2027 price list", 100_000, 120_000, 50_000, 50_000),
    ("free", "2026-11-12 16:30+00", "bo@admin.example", "Correction", 1_000, 1_500, 0, 100),
    ("starter", "2026-10-01 09:00+00", "ada@admin.example", "Before the range", 20_000, 1, 10_000, 1),
)  # fmt: skip


def add_plan_changes(engine: Engine, changes: tuple[tuple[object, ...], ...]) -> None:
    """Plan allowance changes at fixed times, as the owner (the app cannot date one)."""
    with engine.begin() as conn:
        for n, (plan, at, actor, reason, old, new, old_cap, cap) in enumerate(changes):
            conn.execute(
                text(
                    "INSERT INTO plan_allowance_changes (plan, monthly_allowance, rollover_cap,"
                    " old_monthly_allowance, old_rollover_cap, actor, reason, idempotency_key,"
                    " created_at) VALUES (:plan, :new, :cap, :old, :old_cap, :actor, :reason,"
                    " :key, CAST(:at AS timestamptz))"
                ),
                {
                    "plan": plan,
                    "new": new,
                    "cap": cap,
                    "old": old,
                    "old_cap": old_cap,
                    "actor": actor,
                    "reason": reason,
                    "key": f"page-test-{n}-{at}",
                    "at": at,
                },
            )


@pytest.fixture
def plan_changes_page(
    fresh_url: str, fresh_engine: Engine, use_database: Callable[[str], None]
) -> Callable[..., AppTest]:
    use_database(fresh_url)
    add_plan_changes(fresh_engine, PLAN_CHANGES)

    def open_audit(role: str = "manager", **query: str) -> AppTest:
        at = make_app(role=role, email=f"{role}@example.com", query={**DEMO_RANGE, **query})
        return open_page(at, "audit")

    return open_audit


def plan_changes(at: AppTest) -> pd.DataFrame:
    return table_with(at, "Rollover cap")  # type: ignore[no-any-return]


@pytest.mark.parametrize("role", ["admin", "finance", "support", "manager"])
def test_plan_allowance_changes_are_on_the_trail_for_every_role_that_opens_it(
    plan_changes_page: Callable[..., AppTest], role: str
) -> None:
    at = plan_changes_page(role)
    assert not at.exception and not at.error
    assert "Plan allowance changes" in [s.value for s in at.subheader]
    rows = plan_changes(at)
    # Newest first, in the range only: who, when, which plan, before → after, why.
    assert rows.to_dict("records") == [
        {
            "When": pd.Timestamp("2026-11-12 16:30", tz="UTC"),
            "Plan": "Free",
            "Actor": "bo@admin.example",
            "Reason": "Correction",
            "Monthly allowance": "1,000 → 1,500",
            "Rollover cap": "0 → 100",
        },
        {
            "When": pd.Timestamp("2026-11-05 10:00", tz="UTC"),
            "Plan": "Pro",
            "Actor": "ada@admin.example",
            "Reason": "2027 price list",
            "Monthly allowance": "100,000 → 120,000",
            "Rollover cap": "50,000 (unchanged)",
        },
    ]


def test_plan_allowance_changes_follow_the_dates_actor_order_and_action_not_the_organization(
    plan_changes_page: Callable[..., AppTest], fresh_engine: Engine
) -> None:
    at = plan_changes_page()
    at.text_input(key="audit.actor").input("ADA").run()
    assert list(plan_changes(at)["Reason"]) == ["2027 price list"]
    at.text_input(key="audit.actor").input("nobody").run()
    assert any("No plan's allowance was changed" in c for c in texts(at, "caption"))
    at.text_input(key="audit.actor").input("").run()

    at.selectbox(key="audit.sort").set_value("oldest").run()
    assert list(plan_changes(at)["Reason"]) == ["2027 price list", "Correction"]

    # A plan belongs to no organization: the same changes for one organization.
    org = int(scalar(fresh_engine, "SELECT id FROM organizations ORDER BY name, id LIMIT 1"))
    at.selectbox(key="filters.org").set_value(org)
    at.radio(key="audit.scope").set_value("one").run()
    assert not at.exception
    assert list(plan_changes(at)["Reason"]) == ["2027 price list", "Correction"]

    # None of them is a credit grant.
    at.selectbox(key="audit.action").set_value("grant").run()
    assert not [d for d in at.dataframe if "Rollover cap" in d.value.columns]
    assert any("while Action is Credit grants" in c for c in texts(at, "caption"))

    # The dates of the range (and the link) decide, as for the trail.
    at = plan_changes_page(**{"from": "2026-09-01", "to": "2026-10-15"})
    assert list(plan_changes(at)["Reason"]) == ["Before the range"]


def test_the_plan_changes_csv_is_the_list_shown_safe_for_a_spreadsheet(
    fresh_url: str,
    fresh_engine: Engine,
    use_database: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_database(fresh_url)
    formula = '=HYPERLINK("http://127.0.0.1:9/x","click")'
    add_plan_changes(
        fresh_engine,
        (
            *PLAN_CHANGES,
            ("enterprise", "2026-11-20 08:00+00", "-2+3@admin.example", formula, 1, 2, 3, 4),
        ),
    )
    downloads = capture_downloads(monkeypatch)
    at = open_page(make_app(role="finance", query=DEMO_RANGE), "audit")
    shown = plan_changes(at)
    assert shown["Reason"].iloc[0] == formula  # shown as stored, a plain cell
    name = "plan-allowance-changes_2026-10-22_2026-11-20.csv"
    assert name in downloads, list(downloads)
    csv = pd.read_csv(io.BytesIO(downloads[name]), dtype=str)
    assert list(csv.columns) == list(shown.columns)
    assert list(csv["Plan"]) == list(shown["Plan"])
    assert list(csv["Monthly allowance"]) == list(shown["Monthly allowance"])
    # A reason or actor a spreadsheet would run is written as text.
    assert (csv["Reason"].iloc[0], csv["Actor"].iloc[0]) == ("'" + formula, "'-2+3@admin.example")

    at.text_input(key="audit.actor").input("Ada@Admin").run()
    assert "plan-allowance-changes_2026-10-22_2026-11-20_actor-ada-admin.csv" in downloads


def test_plan_allowance_changes_page_by_keyset_and_the_csv_holds_every_page(
    fresh_url: str,
    fresh_engine: Engine,
    use_database: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_database(fresh_url)
    many = tuple(
        ("pro", f"2026-11-{1 + n // 24:02d} {n % 24:02d}:00+00", "ada@admin.example",
         f"Step {n}", n, n + 1, 0, 0)
        for n in range(PLAN_PAGE_SIZE + 5)
    )  # fmt: skip
    add_plan_changes(fresh_engine, many)
    downloads = capture_downloads(monkeypatch)
    at = open_page(make_app(role="manager", query=DEMO_RANGE), "audit")
    first = plan_changes(at)
    assert len(first) == PLAN_PAGE_SIZE and first["Reason"].iloc[0] == f"Step {len(many) - 1}"
    assert not [n for n in downloads if n.startswith("plan-")]  # more than a page: on request
    at.button(key="audit.plans.next").click().run()
    second = plan_changes(at)
    assert list(second["Reason"]) == [f"Step {n}" for n in range(4, -1, -1)]
    assert any("Plan changes 51–55" in c for c in texts(at, "caption"))
    # The trail's own page is untouched by the plans' pager.
    assert "after" not in at.query_params
    at.button(key="audit.plans.prepare_csv").click().run()
    [csv_bytes] = [b for n, b in downloads.items() if n.startswith("plan-")]
    csv = pd.read_csv(io.BytesIO(csv_bytes))
    assert list(csv["Reason"]) == [f"Step {n}" for n in range(len(many) - 1, -1, -1)]
    at.button(key="audit.plans.previous").click().run()
    pd.testing.assert_frame_equal(plan_changes(at), first)


def test_a_plan_allowance_changed_on_credits_is_on_the_trail_at_once(
    fresh_url: str, fresh_engine: Engine, use_database: Callable[[str], None]
) -> None:
    use_database(fresh_url)
    org = int(scalar(fresh_engine, "SELECT id FROM organizations ORDER BY name LIMIT 1"))
    at = open_page(
        make_app(role="admin", email="ana@example.com", query={"org": str(org)}), "audit"
    )
    # Read now (the default range ends today), so the cache holds the list without it.
    assert any("No plan's allowance was changed" in c for c in texts(at, "caption"))
    at.switch_page(page_file("credits")).run()
    at.selectbox(key="credits.allowance_plan").set_value("starter")
    at.text_input(key="credits.allowance_monthly").input("25,000")
    at.text_input(key="credits.allowance_cap").input("10,000")
    at.selectbox(key="credits.allowance_reason").set_value("New price list")
    next(b for b in at.button if b.label == "Review change").click()
    at.run()
    next(b for b in at.button if b.label == "Confirm change").click()
    at.run()
    assert not at.exception
    at.switch_page(page_file("audit")).run()
    [row] = plan_changes(at).to_dict("records")
    assert (row["Plan"], row["Actor"], row["Reason"]) == (
        "Starter",
        "ana@example.com",
        "New price list",
    )
    assert (row["Monthly allowance"], row["Rollover cap"]) == (
        "20,000 → 25,000",
        "10,000 (unchanged)",
    )
