"""The everyday path in a real browser (issue 16): a quota row's link that changes a
limit, filters that survive every page, one company zone across organizations, KPI
comparisons that say what they compare, a page a role may not open, and a database
that stops and comes back while the app serves.

Each role gets its own ``streamlit run`` (tests/dashboard/test_browser.py's
``_fresh_server``) against a small demo database of its own; Playwright drives Debian's
Chromium.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final
from urllib.parse import parse_qsl, urlsplit

import pytest
from playwright.sync_api import Browser, Page
from sqlalchemy import Engine, text

from queries import embedded_server
from queries.db import create_direct_engine
from queries.generations import record_generation
from tests.conftest import DEMO_NOW, PgServer, seeded_database
from tests.dashboard.test_browser import (
    TIMEOUT_MS,
    VIEWPORT,
    RunningApp,
    _fresh_server,
    browser,  # noqa: F401 (a fixture used by the tests here)
    problems,
    settle,
)
from tooling import embedded, schema
from tooling.demo_data import seed_demo_data

DATABASE: Final = "dashboard_test_browser_paths"

# A server per role, started on first use and kept for the module.
Servers = Callable[[str], RunningApp]


@pytest.fixture(scope="module")
def paths_database(test_server: PgServer) -> str:
    return seeded_database(
        test_server, DATABASE, organizations=6, generations=4_000, days=60, seed=16, now=DEMO_NOW
    )


@pytest.fixture(scope="module")
def db(paths_database: str) -> Iterator[Engine]:
    engine = create_direct_engine(paths_database)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def servers(paths_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    running: dict[str, RunningApp] = {}
    with contextlib.ExitStack() as stack:

        def server(role: str) -> RunningApp:
            if role not in running:
                folder = tmp_path_factory.mktemp(f"paths-{role}")
                running[role] = stack.enter_context(
                    _fresh_server(
                        paths_database,
                        folder,
                        ["-m", "streamlit", "run"],
                        user=f"{role}@support.example.com",
                        role=role,
                    )
                )
            return running[role]

        yield server


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:  # noqa: F811 (the imported fixture)
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


def _org(db: Engine, position: int = 0) -> tuple[int, str]:
    with db.connect() as conn:
        row = conn.execute(
            text("SELECT id, name FROM organizations ORDER BY name, id OFFSET :n LIMIT 1"),
            {"n": position},
        ).one()
    return int(row.id), str(row.name)


def _query(page: Page) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(page.url).query))


def _go(page: Page, link: str, title: str | None = None) -> None:
    """Click ``link`` in the sidebar's navigation and wait for the page titled ``title``
    (``link`` if not given)."""
    page.locator('[data-testid="stSidebarNav"] a').filter(has_text=link).first.click()
    settle(page, title or link)


def _main(page: Page) -> str:
    return page.locator('[data-testid="stMain"]').inner_text()


# ------------------------------------------------------------ 1. form=limit


@pytest.mark.parametrize("role", ["support", "admin"])
def test_a_limit_changed_from_a_quota_rows_link_is_written(
    page: Page, servers: Servers, db: Engine, role: str
) -> None:
    app = servers(role)
    org, _ = _org(db, 1)
    with db.connect() as conn:
        audits = conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one()
    # What a row's "Open" link is (tests/dashboard/test_links.py checks the link itself).
    page.goto(f"{app.url}/quotas?org={org}&range=30d&form=limit")
    title = "Quotas"
    settle(page, title)
    main = page.locator('[data-testid="stMain"]')
    form = main.locator('[data-testid="stForm"]').filter(has_text="Review change")
    form.get_by_role("combobox", name="Type").click()
    page.get_by_role("option").filter(has_text="(image)").first.click()
    form.get_by_label("New daily limit", exact=True).fill("4321")
    form.get_by_role("combobox", name="Reason").click()
    page.get_by_role("option", name="Customer request", exact=True).click()
    form.get_by_label("Note", exact=True).fill(f"browser test as {role}")
    form.get_by_role("button", name="Review change").click()
    confirm = main.get_by_role("button", name="Confirm limit")
    confirm.wait_for()
    settle(page, title)
    confirm.click()
    success = main.locator('[data-testid="stAlertContentSuccess"]')
    success.wait_for()
    settle(page, title)
    assert "The daily image limit is now 4,321" in success.inner_text()
    assert "may not change daily limits" not in _main(page)
    assert "can read quotas but not change limits" not in _main(page)
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one() == audits + 1
        actor = conn.execute(text("SELECT actor FROM audit_log ORDER BY id DESC LIMIT 1"))
        assert actor.scalar_one() == f"{role}@support.example.com"


def test_a_limit_until_a_day_is_typed_reviewed_and_written_with_its_end(
    page: Page, servers: Servers, db: Engine
) -> None:
    app = servers("support")
    org, _ = _org(db, 2)
    with db.connect() as conn:
        today = conn.execute(
            text("SELECT (now() AT TIME ZONE timezone)::date FROM organizations WHERE id = :o"),
            {"o": org},
        ).scalar_one()
        until = today + dt.timedelta(days=3)
        after = conn.execute(
            text("SELECT daily_limit FROM limit_in_force(:o, 'image', :d)"),
            {"o": org, "d": until + dt.timedelta(days=1)},
        ).scalar_one()
    page.goto(f"{app.url}/quotas?org={org}&range=30d&form=limit")
    title = "Quotas"
    settle(page, title)
    main = page.locator('[data-testid="stMain"]')
    form = main.locator('[data-testid="stForm"]').filter(has_text="Review change")
    form.get_by_role("combobox", name="Type").click()
    page.get_by_role("option").filter(has_text="(image)").first.click()
    form.get_by_label("New daily limit", exact=True).fill(str(after + 7))
    # A date field of segments (year, month, day): typed into, as a person would.
    form.get_by_role("spinbutton", name="year, Until (optional)").click()
    page.keyboard.type(until.strftime("%Y%m%d"))
    page.keyboard.press("Tab")
    form.get_by_role("combobox", name="Reason").click()
    page.get_by_role("option", name="Customer request", exact=True).click()
    form.get_by_label("Note", exact=True).fill("launch week")
    form.get_by_role("button", name="Review change").click()
    confirm = main.get_by_role("button", name="Confirm limit")
    confirm.wait_for()
    settle(page, title)
    label = f"{until.day} {until:%b}" + ("" if until.year == today.year else f" {until:%Y}")
    assert f"through {label}" in _main(page)
    confirm.click()
    main.locator('[data-testid="stAlertContentSuccess"]').wait_for()
    settle(page, title)
    with db.connect() as conn:
        stored = conn.execute(
            text("SELECT until FROM limit_changes WHERE organization_id = :o ORDER BY id DESC"),
            {"o": org},
        ).first()
    # The table's "raised until" is drawn on a canvas: test_quotas_page.py reads it.
    assert stored is not None and stored.until == until


# ------------------------------------------------- 2. filters survive pages


@pytest.mark.parametrize(
    "path",
    [
        ("Statements", "Usage review", "Credits"),
        ("Overview", "Reconciliation", "Overview", "Usage review"),
    ],
    ids=["statements-usage-credits", "overview-reconciliation-overview-usage"],
)
def test_every_page_keeps_the_date_range_it_was_opened_with(
    page: Page, servers: Servers, db: Engine, path: tuple[str, ...]
) -> None:
    app = servers("admin")
    org, name = _org(db, 2)
    page.goto(f"{app.url}/usage?org={org}&range=last_month&grain=week&tz=utc")
    settle(page, "Usage review")
    for title in path:
        _go(page, title, f"Overview · {name}" if title == "Overview" else title)
        query = _query(page)
        assert (query.get("range"), query.get("grain"), query.get("tz")) == (
            "last_month",
            "week",
            "utc",
        ), f"{title}: {page.url}"
        assert query.get("org") == str(org), f"{title}: {page.url}"
        if title in ("Credits", "Usage review", "Overview"):
            sidebar = page.locator('[data-testid="stSidebar"]')
            shown = sidebar.get_by_role("combobox", name="Dates").input_value()
            assert "Last month" in shown, f"{title}: the Dates filter shows {shown!r}"
        assert not page.locator('[data-testid="stException"]').count(), title
        assert not page.locator('[data-testid="stToast"]').count(), title


# ------------------------------- 3. one company zone across organizations


def test_usage_review_counts_the_same_days_whichever_organization_is_selected(
    page: Page, servers: Servers, db: Engine
) -> None:
    app = servers("finance")
    with db.connect() as conn:
        zoned = conn.execute(
            text(
                "SELECT DISTINCT ON (timezone) id, timezone FROM organizations"
                " WHERE timezone <> 'UTC' ORDER BY timezone, id LIMIT 2"
            )
        ).all()
    assert len(zoned) == 2 and zoned[0].timezone != zoned[1].timezone
    seen: dict[str, list[str]] = {}
    # Fixed dates around the demo's data, so the totals are not empty at any instant,
    # and a preset, whose window the page says in its header.
    for link in ("range=custom&from=2026-10-22&to=2026-11-20", "range=30d"):
        for org in zoned:
            page.goto(f"{app.url}/usage?org={org.id}&{link}")
            settle(page, "Usage review")
            main = page.locator('[data-testid="stMain"]')
            header = main.locator('[data-testid="stCaptionContainer"]').first.inner_text()
            assert "Dates in UTC, the company zone." in header, header
            totals = main.locator('[data-testid="stMetric"]').all_inner_texts()
            seen.setdefault(link, []).append(header + "\n" + "\n".join(totals))
    custom, preset = seen["range=custom&from=2026-10-22&to=2026-11-20"], seen["range=30d"]
    assert custom[0] == custom[1], "the totals changed with the organization selected"
    assert "Credits consumed\n0" not in custom[0], "the fixed dates should find the demo data"
    assert preset[0] == preset[1], "the last 30 days moved with the organization selected"


# -------------------------------------------- 4. comparisons of equal spans


def _in_full(page: Page, words: str) -> str:
    """The caption holding ``words``, after checking that nothing of it is cut off."""
    caption = page.locator('[data-testid="stCaptionContainer"]').filter(has_text=words).first
    caption.wait_for()
    clipped = caption.evaluate(
        "e => e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1"
    )
    assert not clipped, f"the caption is cut off: {caption.inner_text()!r}"
    return caption.inner_text()


def test_the_kpis_say_in_full_what_they_compare(page: Page, servers: Servers, db: Engine) -> None:
    app = servers("admin")
    org, name = _org(db, 4)
    with db.connect() as conn:
        first = conn.execute(
            text(
                "SELECT min((created_at AT TIME ZONE 'UTC')::date) FROM generations"
                " WHERE organization_id = :org"
            ),
            {"org": org},
        ).scalar_one()
        user, kind = conn.execute(
            text(
                "SELECT user_id, type FROM generations WHERE organization_id = :org"
                " ORDER BY id LIMIT 1"
            ),
            {"org": org},
        ).one()
    # Seven days that start three days after the organization's first data: the previous
    # seven days have data for only some of them, and the page says so in full.
    start = first + dt.timedelta(days=3)
    end = start + dt.timedelta(days=6)
    page.goto(f"{app.url}/?org={org}&range=custom&from={start}&to={end}&tz=utc")
    settle(page, f"Overview · {name}")
    said = _in_full(page, "The previous period has data for")
    assert re.search(r"has data for [1-6] of 7 days", said), said
    assert "read it with care" in said, said

    # A period that reaches now: today is not over, and both periods are counted up to
    # the same time of day. The generation is made now, so today has data at any instant.
    record_generation(db, organization_id=org, user_id=user, type=kind, credits=1)
    page.goto(f"{app.url}/?org={org}&range=7d&tz=utc")
    settle(page, f"Overview · {name}")
    said = _in_full(page, "is not over: both periods are counted up to")
    assert "so the change compares equal spans" in said, said


# ------------------------------------------- names open their view, same tab

PERIOD: Final = "range=custom&from=2026-10-22&to=2026-11-20&grain=week&tz=utc"
ROW_HEIGHT: Final = 35  # a dataframe's header and rows, in pixels


def _click_cell(page: Page, key: str, row: int, x: int) -> None:
    """Click the cell of ``row`` (0 = the first under the header) at ``x`` pixels from
    the left of the dataframe keyed ``key`` (its cells are drawn on a canvas)."""
    grid = page.locator(f'.st-key-{key.replace(".", "-")} [data-testid="stDataFrame"]')
    grid.evaluate("el => el.scrollIntoView({block: 'start'})")  # its first rows in view
    box = grid.bounding_box()
    assert box is not None, f"no table {key}"
    page.mouse.click(box["x"] + x, box["y"] + ROW_HEIGHT * (row + 1) + ROW_HEIGHT / 2)


def _opens_here(
    page: Page, click: Callable[[], None], title: str, arrived: Callable[[str], bool]
) -> None:
    """``click`` leads to the page titled ``title`` whose URL is ``arrived``, in this
    tab: no new tab or popup, the same document (the session kept: no reload)."""
    opened: list[Page] = []
    page.context.on("page", lambda new: opened.append(new))
    page.evaluate("window.__sameTab = true")
    click()
    page.wait_for_url(arrived)
    settle(page, title)
    assert opened == [], "a new tab or popup was opened"
    assert page.context.pages == [page]
    assert page.evaluate("window.__sameTab === true"), "the page was loaded again"


def _name_of(db: Engine, org: str) -> str:
    with db.connect() as conn:
        return str(
            conn.execute(
                text("SELECT name FROM organizations WHERE id = :o"), {"o": int(org)}
            ).scalar_one()
        )


@pytest.mark.parametrize(
    ("path", "table", "x"),
    [("usage", "usage.table", 90), ("audit", "audit.table", 185)],
    ids=["usage-review-ranking", "audit-trail"],
)
def test_an_organizations_name_opens_its_overview_in_the_same_tab(
    page: Page, servers: Servers, db: Engine, path: str, table: str, x: int
) -> None:
    app = servers("admin")
    org, _ = _org(db, 4)
    page.goto(f"{app.url}/{path}?org={org}&{PERIOD}&scope=all")
    settle(page, "Usage review" if path == "usage" else "Audit trail")
    _opens_here(
        page,
        lambda: _click_cell(page, table, 0, x),
        "Overview · ",
        lambda url: urlsplit(url).path.strip("/") == "",
    )
    query = _query(page)
    name = _name_of(db, query["org"])
    heading = page.locator('[data-testid="stMain"] h1').first.inner_text().strip()
    assert heading == f"Overview · {name}"
    assert page.title() == f"Overview · {name} — Usage dashboard"
    # The view's filters are in the URL it landed on: the address bar can be shared.
    assert (query["range"], query["from"], query["to"]) == ("custom", "2026-10-22", "2026-11-20")
    assert (query["grain"], query["tz"]) == ("week", "utc")
    assert urlsplit(page.url).path.strip("/") == ""  # the Overview, at the app's root
    assert not problems(page), problems(page)
    # The browser's Back button returns to the table.
    page.go_back()
    settle(page, "Usage review" if path == "usage" else "Audit trail")
    assert urlsplit(page.url).path.strip("/") == path


def test_a_users_name_opens_their_drill_down_in_the_same_tab(
    page: Page, servers: Servers, db: Engine
) -> None:
    app = servers("admin")
    org, org_name = _org(db, 0)
    page.goto(f"{app.url}/?org={org}&{PERIOD}")
    settle(page, f"Overview · {org_name}")
    assert page.title() == f"Overview · {org_name} — Usage dashboard"
    _opens_here(
        page,
        lambda: _click_cell(page, "overview.top_users", 0, 60),
        "Overview · ",
        lambda url: "user" in dict(parse_qsl(urlsplit(url).query)),
    )
    query = _query(page)
    with db.connect() as conn:
        user = conn.execute(
            text("SELECT name FROM users WHERE id = :u AND organization_id = :o"),
            {"u": int(query["user"]), "o": org},
        ).scalar_one()
    main = page.locator('[data-testid="stMain"]')
    # The user leads the page: their name in the title, their numbers at the top.
    assert main.locator("h1").first.inner_text().strip() == f"Overview · {user}"
    first_tile = main.locator('[data-testid="stMetricLabel"]').first.inner_text()
    assert first_tile.strip() == "Generations"
    assert query["org"] == str(org) and query["from"] == "2026-10-22"
    assert page.title() == f"Overview · {org_name} — Usage dashboard"
    # And back to the organization, in the same tab.
    _opens_here(
        page,
        lambda: main.get_by_role("button", name="The whole organization").click(),
        f"Overview · {org_name}",
        lambda url: "user" not in dict(parse_qsl(urlsplit(url).query)),
    )
    assert "user" not in _query(page)


# ------------------------------------------ 5. a page the role may not open


@pytest.mark.parametrize(
    ("role", "path", "sentence"),
    [
        (
            "support",
            "usage",
            "Usage review is for finance, manager and admin; your role (support) cannot open it.",
        ),
        (
            "manager",
            "statements",
            "Statements is for finance and admin; your role (manager) cannot open it.",
        ),
    ],
)
def test_a_page_the_role_may_not_open_lands_on_the_overview_saying_who_may(
    page: Page, servers: Servers, db: Engine, role: str, path: str, sentence: str
) -> None:
    app = servers(role)
    org, name = _org(db, 3)
    page.goto(f"{app.url}/{path}?org={org}&range=last_month")
    settle(page, f"Overview · {name}")
    assert urlsplit(page.url).path.strip("/") == "", page.url
    notice = page.locator('[data-testid="stMain"] [data-testid="stAlertContentWarning"]')
    assert notice.locator('[data-testid="stMarkdownContainer"]').inner_text().strip() == sentence
    assert _query(page).get("range") == "last_month", "the link's filters were dropped"
    # Said once: the next page does not repeat it.
    _go(page, "Audit trail")
    assert not page.locator('[data-testid="stMain"] [data-testid="stAlertContentWarning"]').count()


# ---------------------------------------- 7. the database stops and comes back


@pytest.fixture
def own_embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """An embedded server of this test's own (never the shared test server): its data
    folder and the URL of a small demo database on it. Started with the wheel's defaults
    (not tooling.embedded's laptop settings: a throwaway server)."""
    folder = Path(tempfile.mkdtemp(prefix="emb-"))  # short: the socket lives in it
    folder.chmod(0o777)  # the server runs as the wheel's unprivileged user under root
    pgdata = folder / "pgdata"
    try:
        embedded_server.wheel().get_server(pgdata, cleanup_mode=None)
        server = embedded.ensure_running(pgdata)
        embedded.ensure_database(server, "dashboard_outage")
        url = server.url("dashboard_outage")
        schema.upgrade(url=url)
        direct = create_direct_engine(url)
        try:
            with direct.connect() as conn:
                seed_demo_data(
                    conn, organizations=3, generations=600, days=14, seed=7, now=DEMO_NOW
                )
                conn.commit()
        finally:
            direct.dispose()
        yield pgdata, url
    finally:
        embedded.stop(pgdata)
        shutil.rmtree(folder, ignore_errors=True)


def _start_again(pgdata: Path) -> None:
    """Start the stopped server as the wheel first did: the same socket folder and port
    (the wheel keeps one handle per folder and would not start it a second time)."""
    embedded_server.wheel().pg_ctl(
        ["-w", "-o", '-h ""', "-o", f"-k {pgdata}", "-l", str(pgdata / "restart.log"), "start"],
        pgdata=pgdata,
        user=embedded._system_user(),
        timeout=60,
    )


def test_a_stopped_database_is_said_and_the_app_recovers_when_it_returns(
    page: Page, own_embedded: tuple[Path, str], tmp_path: Path
) -> None:
    pgdata, url = own_embedded
    # `uv run dashboard` on a laptop: the embedded database, nobody named, no [auth].
    with _fresh_server(
        url,
        tmp_path,
        ["-m", "streamlit", "run"],
        env_changes={"DASHBOARD_PGDATA": str(pgdata), "DASHBOARD_USER": None},
    ) as app:
        page.goto(f"{app.url}/audit")
        settle(page, "Audit trail")
        assert "Demo data" in _main(page)

        embedded.stop(pgdata)
        page.goto(f"{app.url}/audit?range=7d")
        page.get_by_text("The database cannot be reached right now").first.wait_for()
        shown = _main(page)
        assert "no sign-in configured" not in shown and "not on the embedded" not in shown

        _start_again(pgdata)
        page.goto(f"{app.url}/audit?range=90d")
        settle(page, "Audit trail")
        assert "cannot be reached" not in _main(page)
        assert not page.locator('[data-testid="stException"]').count()
