"""What a person sees: the dashboard in a real browser.

The app runs with ``streamlit run`` on a free port against its own demo database, as an
admin (the development identity), and Playwright drives Debian's Chromium
(``/usr/bin/chromium``; Playwright's own browser download does not work here). The test
visits every page of the navigation, checks that none shows an exception or an error
banner, saves a full-page screenshot of each (to ``$DASHBOARD_SCREENSHOTS``, e.g.
``docs/screenshots``, else a scratch folder), and makes one
credit adjustment through the form on the Credits page, then checks the ledger row in
the database.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import datetime as dt
import http.server
import io
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, FilePayload, Page, ViewportSize, sync_playwright
from sqlalchemy import Engine, text

from dashboard.navigation import PAGES
from queries.approvals import reject, request_adjustment
from queries.credits import adjust_credits
from queries.db import create_direct_engine
from queries.reconciliation import reconcile
from tests.conftest import PgServer, seeded_database

ROOT: Final = Path(__file__).resolve().parents[2]
CHROMIUM: Final = Path("/usr/bin/chromium")
CHROMIUM_ARGS: Final = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DATABASE: Final = "dashboard_test_browser"
# Screenshots go to a scratch folder unless DASHBOARD_SCREENSHOTS names one, so a test
# run does not rewrite the committed docs/screenshots/ (see docs/pages.md, "Screenshots").
SCREENSHOTS: Final = Path(
    os.environ.get("DASHBOARD_SCREENSHOTS") or Path(tempfile.gettempdir()) / "dashboard-screenshots"
).resolve()
VIEWPORT: Final = ViewportSize(width=1440, height=900)
USER: Final = "browser-test@example.com"
TIMEOUT_MS: Final = 30_000
STARTUP_SECONDS: Final = 60

# Alerts a page may show on purpose; anything else is a failure.
EXPECTED_ALERTS: Final = (
    # The sidebar says when the development identity is in use (it is, here).
    re.compile(r"^Development identity from DASHBOARD_USER"),
)

# True once the script has finished, every element is drawn (no loading skeleton, no
# stale element of the previous run, no "Running..." widget), the page's title is the
# one asked for, and every chart has been drawn by plotly.
_SETTLED_JS: Final = """
(title) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.dataset.testScriptState !== "notRunning") return false;
  if (app.dataset.testConnectionState !== "CONNECTED") return false;
  if (document.querySelector(
      '[data-testid="stStatusWidget"], [data-testid="stSkeleton"], [data-stale="true"]'))
    return false;
  const h1 = document.querySelector('[data-testid="stMain"] h1');
  if (!h1 || !h1.textContent.trim().startsWith(title)) return false;
  for (const chart of document.querySelectorAll('[data-testid="stPlotlyChart"]'))
    if (!chart.querySelector(".main-svg")) return false;
  return true;
}
"""


@dataclass(frozen=True, slots=True)
class RunningApp:
    url: str
    database_url: str
    log: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def browser_database(test_server: PgServer) -> str:
    """A demo load ending now (so today has quota use): 20 organizations, 60,000
    generations over 90 days."""
    return seeded_database(
        test_server, DATABASE, organizations=20, generations=60_000, days=90, seed=5
    )


@pytest.fixture(scope="module")
def db(browser_database: str) -> Iterator[Engine]:
    engine = create_direct_engine(browser_database)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def app(browser_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """``streamlit run dashboard/app.py`` on a free port, as an admin."""
    with _fresh_server(
        browser_database, tmp_path_factory.mktemp("browser"), ["-m", "streamlit", "run"]
    ) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser test drives Debian's Chromium. Install it "
            "with `apt-get install -y chromium` (.ci/run does); never `playwright install`."
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, app: RunningApp) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


def settle(page: Page, title: str) -> None:
    """Wait until the app has finished running and drawn the page titled ``title``."""
    try:
        page.wait_for_function(_SETTLED_JS, arg=title, timeout=TIMEOUT_MS, polling=100)
        # Held twice, 300 ms apart: a rerun the script asks for (st.rerun, a URL
        # update) has started by then.
        page.wait_for_timeout(300)
        page.wait_for_function(_SETTLED_JS, arg=title, timeout=TIMEOUT_MS, polling=100)
    except Exception as exc:
        heading = page.locator('[data-testid="stMain"] h1')
        shown = heading.first.inner_text() if heading.count() else "(no title)"
        raise AssertionError(
            f"the page {title!r} did not finish drawing within {TIMEOUT_MS / 1000:.0f}s "
            f"(title shown: {shown!r}, url {page.url})"
        ) from exc


def problems(page: Page) -> list[str]:
    """Exceptions, error and unexpected warning banners, and toasts on the page."""
    found = [
        f"exception: {element.inner_text()}"
        for element in page.locator('[data-testid="stException"]').all()
    ]
    for alert in page.locator('[data-testid="stAlertContainer"]').all():
        body = alert.locator('[data-testid="stMarkdownContainer"]').first.inner_text().strip()
        if not any(pattern.search(body) for pattern in EXPECTED_ALERTS):
            found.append(f"alert: {body}")
    found += [f"toast: {t.inner_text()}" for t in page.locator('[data-testid="stToast"]').all()]
    return found


def cut_off_tables(page: Page) -> list[str]:
    """Tables wider than their place on the page (columns behind a sideways scroll):
    for each, its number on the page and how many pixels are hidden."""
    found: list[str] = page.evaluate(
        """() => [...document.querySelectorAll('[data-testid="stDataFrame"]')]
             .map((table, i) => {
               const scroller = table.querySelector('.dvn-scroller');
               const hidden = scroller ? scroller.scrollWidth - scroller.clientWidth : 0;
               return hidden > 1 ? `table ${i + 1}: ${hidden} px hidden` : null;
             })
             .filter(Boolean)"""
    )
    return found


def screenshot(page: Page, name: str) -> None:
    """The whole page: the app scrolls inside its main area and sidebar, not the
    document, so the viewport is made as tall as their content for the shot."""
    height = page.evaluate(
        """() => Math.max(...['stMain', 'stSidebarContent'].map(id => {
             const el = document.querySelector(`[data-testid="${id}"]`);
             return el ? el.scrollHeight : 0;
           }))"""
    )
    page.set_viewport_size({"width": VIEWPORT["width"], "height": max(int(height), 900)})
    try:
        page.wait_for_timeout(500)  # let plotly and the grids follow the new size
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True, animations="disabled")
    finally:
        page.set_viewport_size(VIEWPORT)


def test_every_page_renders_without_an_error_and_is_photographed(
    page: Page, app: RunningApp, db: Engine
) -> None:
    # As after the nightly `dashboard reconcile`: Reconciliation shows what it recorded.
    reconcile(db)
    page.goto(app.url)
    settle(page, PAGES[0].title)
    sidebar = page.locator('[data-testid="stSidebar"]')
    assert USER in sidebar.inner_text(), "the sidebar does not say who is signed in"
    assert not sidebar.locator('a[href^="mailto:"]').count(), "the address became a link"
    links = page.locator('[data-testid="stSidebarNav"] a')
    assert [link.inner_text().strip().split("\n")[-1] for link in links.all()] == [
        spec.title for spec in PAGES
    ], "an admin sees every page in the navigation"

    for spec in PAGES:
        links.filter(has_text=spec.title).first.click()
        settle(page, spec.title)
        path = urlsplit(page.url).path.strip("/")
        # The default page is the app's root.
        assert path in ({spec.url_path, ""} if spec is PAGES[0] else {spec.url_path}), page.url
        assert not problems(page), f"{spec.title} shows: {problems(page)}"
        assert page.locator('[data-testid="stMain"]').inner_text().strip()
        assert not cut_off_tables(page), f"{spec.title}: cut off at 1440 px: {cut_off_tables(page)}"
        screenshot(page, spec.url_path)


def _books(db: Engine, organization_id: int) -> tuple[int, int]:
    """(ledger rows, balance) of an organization."""
    with db.connect() as conn:
        rows, balance = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM credit_ledger WHERE organization_id = :org), "
                "(SELECT balance FROM credit_balances WHERE organization_id = :org)"
            ),
            {"org": organization_id},
        ).one()
    return int(rows), int(balance)


def test_a_credit_grant_through_the_form_shows_the_new_balance_and_writes_one_row(
    page: Page, app: RunningApp, db: Engine
) -> None:
    with db.connect() as conn:
        org_id, name = conn.execute(
            text("SELECT id, name FROM organizations ORDER BY id DESC LIMIT 1")
        ).one()
    rows_before, before = _books(db, org_id)
    amount = 1_234
    after = before + amount
    note = "Browser test: a grant through the form"

    page.goto(f"{app.url}/credits?org={org_id}")
    title = f"Credits · {name}"
    settle(page, title)
    main = page.locator('[data-testid="stMain"]')
    balance = main.locator('[data-testid="stMetric"]').filter(has_text="Balance").first
    assert f"{before:,} credits" in balance.inner_text()

    form = main.locator('[data-testid="stForm"]').filter(has_text="Review adjustment")
    form.get_by_text("Grant credits", exact=True).click()
    form.get_by_label("Credits", exact=True).fill(str(amount))
    form.get_by_role("combobox", name="Reason").click()
    page.get_by_role("option", name="Goodwill gesture", exact=True).click()
    form.get_by_label("Note", exact=True).fill(note)
    form.get_by_role("button", name="Review adjustment").click()

    # The confirmation step shows the balance before and after; nothing is written yet.
    confirm = main.get_by_role("button", name=f"Confirm: grant {amount:,}")
    confirm.wait_for()
    settle(page, title)
    review = main.inner_text()
    assert "Balance now" in review and "Balance after" in review and f"{after:,}" in review
    assert _books(db, org_id) == (rows_before, before), "reviewing changed the books"

    confirm.click()
    success = main.locator('[data-testid="stAlertContentSuccess"]')
    success.wait_for()
    settle(page, title)
    assert f"New balance: {after:,} credits" in success.inner_text()
    balance = main.locator('[data-testid="stMetric"]').filter(has_text="Balance").first
    assert f"{after:,} credits" in balance.inner_text(), "the balance tile was not refreshed"
    assert [p for p in problems(page) if not p.startswith("alert: Granted")] == []

    assert _books(db, org_id) == (rows_before + 1, after)
    with db.connect() as conn:
        entry = conn.execute(
            text(
                "SELECT kind, amount, balance_after, reason, note, actor, idempotency_key "
                "FROM credit_ledger WHERE organization_id = :org ORDER BY id DESC LIMIT 1"
            ),
            {"org": org_id},
        ).one()
    assert tuple(entry[:6]) == ("grant", amount, after, "Goodwill gesture", note, USER)
    assert str(entry.idempotency_key).startswith("dashboard:")


def test_a_grant_with_an_expiry_from_the_form_is_on_credits_and_its_expiry_on_the_statement(
    page: Page, app: RunningApp, db: Engine
) -> None:
    """Issue 18: a grant with an expiry and a priority typed on the organization's clock,
    listed with them among the grants, and, once it has expired, a line of the statement
    of the month it expired in."""
    with db.connect() as conn:
        org_id, name, zone, today = conn.execute(
            text(
                "SELECT id, name, timezone, (now() AT TIME ZONE timezone)::date "
                "FROM organizations ORDER BY id DESC LIMIT 1 OFFSET 1"
            )
        ).one()
    expires_on = today + dt.timedelta(days=10)
    amount = 777

    page.goto(f"{app.url}/credits?org={org_id}")
    title = f"Credits · {name}"
    settle(page, title)
    main = page.locator('[data-testid="stMain"]')
    form = main.locator('[data-testid="stForm"]').filter(has_text="Review adjustment")
    form.get_by_text("Grant credits", exact=True).click()
    form.get_by_label("Credits", exact=True).fill(str(amount))
    form.get_by_role("combobox", name="Reason").click()
    page.get_by_role("option", name="Goodwill gesture", exact=True).click()
    # A date field of segments (year, month, day): typed into from its first one.
    form.get_by_label(f"Expires ({zone})", exact=True).get_by_role("spinbutton").first.click()
    page.keyboard.type(f"{expires_on:%Y%m%d}")
    page.keyboard.press("Tab")
    form.get_by_label("Priority", exact=True).fill("3")
    form.get_by_role("button", name="Review adjustment").click()
    confirm = main.get_by_role("button", name=f"Confirm: grant {amount:,}")
    confirm.wait_for()
    settle(page, title)
    review = main.inner_text()
    assert f"{expires_on.day} {expires_on:%b %Y} 00:00 {zone}" in review and "priority 3" in review
    confirm.click()
    main.locator('[data-testid="stAlertContentSuccess"]').wait_for()
    settle(page, title)

    local_midnight = dt.datetime.combine(expires_on, dt.time(), ZoneInfo(zone))
    with db.connect() as conn:
        entry, *terms = conn.execute(
            text(
                "SELECT l.id, g.expires_at, g.priority, g.remaining FROM credit_ledger l "
                "JOIN credit_grants g ON g.organization_id = l.organization_id "
                " AND g.ledger_entry_id = l.id "
                "WHERE l.organization_id = :org ORDER BY l.id DESC LIMIT 1"
            ),
            {"org": org_id},
        ).one()
    assert terms == [local_midnight, 3, amount]

    # On Credits, among the grants: its amount, priority and expiry on the org's clock.
    listed = list(csv.DictReader(io.StringIO(_download(page, "Download grants CSV").decode())))
    [row] = [r for r in listed if r["Ledger entry"] == str(entry)]
    assert (row["Amount"], row["Remaining"], row["Priority"], row["Status"]) == (
        str(amount),
        str(amount),
        "3",
        "live",
    )
    assert row[f"Expires ({zone})"] == f"{expires_on:%Y-%m-%d} 00:00"

    # Time passes for this grant (as the owner: its expiry moved to a moment after it
    # was made), and the statement of its month lists the expiry.
    with db.begin() as conn:
        expired_at, month = conn.execute(
            text(
                "UPDATE credit_grants SET expires_at = created_at + interval '1 millisecond' "
                "WHERE organization_id = :org AND ledger_entry_id = :entry "
                "RETURNING expires_at, to_char(expires_at AT TIME ZONE :zone, 'YYYY-MM')"
            ),
            {"org": org_id, "entry": entry, "zone": zone},
        ).one()
    page.goto(f"{app.url}/statements?org={org_id}&month={month}")
    settle(page, "Statements")
    table = _download(page, "Download CSV").decode().split("\n", 3)[3]
    lines = list(csv.DictReader(io.StringIO(table)))
    grant_id = _grant_of(db, org_id, entry)
    [line] = [r for r in lines if r["Line"] == f"Expired: grant {grant_id} (manual)"]
    assert line["Section"] == "Expiry" and line["Credits"] == str(-amount)
    assert [r["Credits"] for r in lines if r["Entry"] == str(entry)] == [str(amount)]
    assert expired_at.astimezone(ZoneInfo(zone)).strftime("%Y-%m") == month
    assert problems(page) == []


def _grant_of(db: Engine, organization_id: int, entry_id: int) -> int:
    with db.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT id FROM credit_grants WHERE organization_id = :org "
                    "AND ledger_entry_id = :entry"
                ),
                {"org": organization_id, "entry": entry_id},
            ).scalar_one()
        )


# ------------------------------------------------- customer text is data (issue 7)

JOINER: Final = "\u2060"  # dashboard.text breaks bare addresses with it; invisible


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every request with 404 and remembers its path."""

    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def image_server() -> Iterator[tuple[int, list[str]]]:
    """A tiny HTTP server on 127.0.0.1 that records every request it gets."""
    seen: list[str] = []
    handler = type("Recorder", (_Recorder,), {"requests": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def renamed(db: Engine, names: dict[int, str]) -> Iterator[None]:
    """Organizations renamed for the test, and their names given back after it."""
    with db.begin() as conn:
        before = {
            int(org): str(name)
            for org, name in conn.execute(
                text("SELECT id, name FROM organizations WHERE id = ANY(:ids)"),
                {"ids": list(names)},
            )
        }
        for org, name in names.items():
            conn.execute(
                text("UPDATE organizations SET name = :n WHERE id = :o"), {"n": name, "o": org}
            )
    try:
        yield
    finally:
        with db.begin() as conn:
            for org, name in before.items():
                conn.execute(
                    text("UPDATE organizations SET name = :n WHERE id = :o"), {"n": name, "o": org}
                )


def _refresh(page: Page, title: str) -> None:
    """Press Refresh, so the running app reads the organizations again."""
    page.locator('[data-testid="stMain"]').get_by_role("button", name="Refresh").first.click()
    settle(page, title)


def _main_text(page: Page) -> str:
    return page.locator('[data-testid="stMain"]').inner_text().replace(JOINER, "")


def test_a_markdown_image_name_shows_literally_and_the_browser_never_fetches_it(
    page: Page, app: RunningApp, db: Engine, image_server: tuple[int, list[str]]
) -> None:
    port, received = image_server
    name = f"![x](http://127.0.0.1:{port}/p.png) **bold** :red[x] <b>x</b>"
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    with db.connect() as conn:
        org = int(
            conn.execute(
                text("SELECT id FROM organizations ORDER BY id LIMIT 1 OFFSET 1")
            ).scalar_one()
        )
    try:
        with renamed(db, {org: name}):
            page.goto(f"{app.url}/credits?org={org}")
            settle(page, "Credits · ")
            _refresh(page, "Credits · ")
            # Loaded again: a combobox keeps showing its old text when only its
            # options' labels change.
            page.goto(f"{app.url}/credits?org={org}")
            title = "Credits · ![x](http:"
            settle(page, title)
            heading = page.locator('[data-testid="stMain"] h1').first.inner_text()
            assert heading.replace(JOINER, "").strip() == f"Credits · {name}"
            picker = page.locator('[data-testid="stSidebar"]').get_by_role(
                "combobox", name="Organization"
            )
            assert picker.input_value().startswith(f"{name} · "), "the picker shows it as typed"

            # The confirmation names the organization literally too.
            main = page.locator('[data-testid="stMain"]')
            form = main.locator('[data-testid="stForm"]').filter(has_text="Review adjustment")
            form.get_by_label("Credits", exact=True).fill("3")
            form.get_by_role("combobox", name="Reason").click()
            page.get_by_role("option", name="Promotion", exact=True).click()
            form.get_by_role("button", name="Review adjustment").click()
            main.get_by_role("button", name="Confirm: grant 3").wait_for()
            settle(page, title)
            assert f"Grant 3 credits to {name}?" in _main_text(page)
            main.get_by_role("button", name="Back").click()
            settle(page, title)

            for path, prefix in (
                ("", "Overview · "),
                ("audit", "Audit trail"),
                ("quotas", "Quotas"),
            ):
                page.goto(f"{app.url}/{path}?org={org}")
                settle(page, prefix)
                shown = _main_text(page)
                if path == "":
                    assert f"Overview · {name}" in shown
                elif path == "audit":
                    assert name in shown  # the "this organization" option
                else:
                    assert f"Quota history · {name}" in shown
                markup = page.evaluate(
                    """(port) => [...document.querySelectorAll(
                         '[data-testid="stMain"] img, [data-testid="stMain"] a[href*=":' + port + '"],'
                         + ' [data-testid="stMain"] strong, [data-testid="stMain"] b')]
                         .map(e => e.outerHTML)""",
                    str(port),
                )
                assert not [m for m in markup if "bold" in m or str(port) in m or ">x<" in m], (
                    markup
                )
    finally:
        _read_the_names_again(page, app, [org])
    page.wait_for_timeout(500)
    assert not [url for url in requested if f":{port}" in url], requested
    assert received == [], f"the browser fetched {received}"


def _download(page: Page, label: str) -> bytes:
    with page.expect_download() as info:
        page.locator('[data-testid="stMain"]').get_by_role("button", name=label).click()
    path = info.value.path()
    return Path(path).read_bytes()


def test_every_csv_download_is_neutralised_in_the_browser(
    page: Page, app: RunningApp, db: Engine
) -> None:
    from tests.dashboard.hostile import FORMULAS, add_hostile_books

    with db.connect() as conn:
        ids = [
            int(i)
            for i in conn.execute(
                text("SELECT id FROM organizations ORDER BY id LIMIT 6 OFFSET 2")
            ).scalars()
        ]
    org = ids[0]
    add_hostile_books(db, org)
    numeric = {
        "Rank",
        "Generations",
        "Credits consumed",
        "Credits granted",
        "Credits deducted",
        "Balance",
        "Share %",
        "Entry",
        "Amount",
        "Balance after",
        "Credits",
        "Reverses",
        "Reversed by",
    }
    quoted: set[str] = set()
    try:
        with renamed(db, dict(zip(ids, FORMULAS, strict=True))):
            for path, title, label in (
                ("usage", "Usage review", "Download CSV"),
                ("credits", "Credits · ", "Download CSV (all pages)"),
                ("audit", "Audit trail", "Download CSV"),
            ):
                page.goto(f"{app.url}/{path}?org={org}")
                settle(page, title)
                _refresh(page, title)
                rows = list(csv.reader(io.StringIO(_download(page, label).decode(), newline="")))
                header, body = rows[0], rows[1:]
                assert body, path
                for row in body:
                    for column, cell in zip(header, row, strict=True):
                        if column in numeric:
                            assert cell == "" or float(cell) == float(cell), (path, column, cell)
                        else:
                            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (
                                path,
                                column,
                                cell,
                            )
                            quoted |= {cell[1:]} if cell.startswith("'") else set()
                if path == "usage":
                    names = {row[header.index("Organization")] for row in body}
                    assert {"'" + f for f in FORMULAS} <= names, names
    finally:
        _read_the_names_again(page, app, ids)
    assert set(FORMULAS) <= quoted, set(FORMULAS) - quoted


# ------------------------------------------------- crafted links, renamed organizations


def toasts(page: Page) -> list[str]:
    return [t.inner_text() for t in page.locator('[data-testid="stToast"]').all()]


def _first_by_name(db: Engine) -> str:
    with db.connect() as conn:
        return str(
            conn.execute(text("SELECT name FROM organizations ORDER BY name LIMIT 1")).one()[0]
        )


@pytest.mark.parametrize(
    ("path", "query", "title"),
    [
        # Mostly the audit trail: it uses the organization and the dates, and draws fast.
        ("audit", "org=%C2%B2", "Audit trail"),  # ²
        ("audit", "org=%E2%91%A0", "Audit trail"),  # ①
        ("audit", "org=" + "7" * 5000, "Audit trail"),
        ("", "range=custom&from=0001-01-01&to=0001-01-31", "Overview"),
        ("audit", "range=custom&from=0001-01-01&to=2026-01-31", "Audit trail"),
        ("audit", "range=custom&from=2026-01-01&to=9999-12-31", "Audit trail"),
        ("audit", "org=%21%5Bx%5D%28http%3A%2F%2F127.0.0.1%3A9%2Fp.png%29", "Audit trail"),
    ],
)
def test_a_crafted_link_shows_a_notice_and_no_error_box(
    page: Page, app: RunningApp, db: Engine, path: str, query: str, title: str
) -> None:
    images: list[str] = []
    page.on("request", lambda r: images.append(r.url) if r.url.endswith("/p.png") else None)
    page.goto(f"{app.url}/{path}?{query}")
    if title == "Overview":
        title = f"Overview · {_first_by_name(db)}"
    # Read while shown: a toast goes after 10 s, and a loaded machine can take longer to
    # draw the whole page (the Overview's charts).
    page.locator('[data-testid="stToast"]').first.wait_for()
    notices = toasts(page)
    settle(page, title)
    assert notices and all("Ignored" in n for n in notices), notices
    assert not page.locator('[data-testid="stException"]').count()
    assert [p for p in problems(page) if not p.startswith("toast: ")] == []
    assert not images, "a value from the link made the browser fetch an image"


def _token(text: str) -> str:
    """``text`` as an ``after`` token, as the dashboard writes one (base64url JSON)."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


_RECORD_TOASTS_JS: Final = """
window.__toasts = [];
new MutationObserver(() => {
  for (const toast of document.querySelectorAll('[data-testid="stToast"]')) {
    if (!toast.dataset.recorded) {
      toast.dataset.recorded = "1";
      window.__toasts.push(toast.textContent);
    }
  }
}).observe(document, {childList: true, subtree: true});
"""


@pytest.mark.parametrize(
    ("path", "query", "title", "said"),
    [
        # The links of issue 15: each crashed its page or replaced part of it.
        (
            "quotas",
            "after=" + _token("[2," + "9" * 1200 + ',1,"a",1,"chat"]'),
            "Quotas",
            "Showing the first page.",
        ),
        ("audit", "after=" + _token("[" * 1400), "Audit trail", "Showing the first page."),
        (
            "audit",
            "after=" + _token(f'[2,"2026-11-20T15:30:00+00:00",{2**63 - 1},5]'),
            "Audit trail",
            "Showing the first page.",
        ),
        (
            "audit",
            "after=" + _token(f'[2,"2026-11-20T15:30:00+00:00",1,{-(2**63 - 1)}]'),
            "Audit trail",
            "Showing the first page.",
        ),
        ("", "org=" + "x" * 201, "Overview", "at most 200 characters"),
    ],
)
def test_a_crafted_page_token_or_slug_shows_the_page_with_a_notice(
    page: Page, app: RunningApp, db: Engine, path: str, query: str, title: str, said: str
) -> None:
    # A toast fades after a few seconds, and Quotas takes longer than that to draw:
    # every toast shown is recorded as it appears.
    page.add_init_script(_RECORD_TOASTS_JS)
    page.goto(f"{app.url}/{path}?{query}")
    if title == "Overview":
        title = f"Overview · {_first_by_name(db)}"
    settle(page, title)
    page.wait_for_function("() => window.__toasts.length > 0")
    notices: list[str] = page.evaluate("() => window.__toasts")
    assert any("Ignored" in n and said in " ".join(n.split()) for n in notices), notices
    assert not page.locator('[data-testid="stException"]').count()
    assert [p for p in problems(page) if not p.startswith("toast: ")] == []
    # The page itself, not a sentence in its place: its tables are drawn.
    assert page.locator('[data-testid="stMain"] [data-testid="stDataFrame"]').count() > 0
    assert "after=" not in page.url


def _selected_label(page: Page) -> str:
    """What the sidebar's organization picker shows as chosen."""
    sidebar = page.locator('[data-testid="stSidebar"]')
    return sidebar.get_by_role("combobox", name="Organization").input_value()


def test_renaming_the_selected_organization_keeps_it_selected(
    page: Page, app: RunningApp, db: Engine
) -> None:
    with db.connect() as conn:
        rows = conn.execute(text("SELECT id, name FROM organizations ORDER BY name")).all()
        newest = conn.execute(text("SELECT max(id) FROM organizations")).scalar_one()
    # Not the newest (other tests'), and renamed to sort last: a picker that resets
    # lands on the first by name, which must not be this one.
    org_id, name = next((i, n) for i, n in rows[3:] if i != newest)
    renamed = "Zzz renamed while selected"

    page.goto(f"{app.url}/?org={org_id}")
    settle(page, f"Overview · {name}")
    assert name in _selected_label(page)
    try:
        with db.begin() as conn:
            conn.execute(
                text("UPDATE organizations SET name = :name WHERE id = :id"),
                {"name": renamed, "id": org_id},
            )
        # Refresh reads the organizations again (their cache would expire on its own).
        refresh = page.locator('[data-testid="stMain"]').get_by_role("button", name="Refresh")
        refresh.click()
        settle(page, f"Overview · {renamed}")
        # The next rerun is where it went wrong: the browser sends back the label it
        # shows, and a label that is no longer an option reset the picker to the first.
        refresh.click()
        page.wait_for_timeout(500)
        settle(page, f"Overview · {renamed}")
        assert renamed in _selected_label(page)
        assert f"org={org_id}" in page.url
        assert not problems(page), problems(page)

        # A person's own choice in the picker still changes the organization.
        other_id, other = rows[1]
        picker = page.locator('[data-testid="stSidebar"]').get_by_role(
            "combobox", name="Organization"
        )
        picker.click()
        page.get_by_role("option", name=other, exact=False).first.click()
        settle(page, f"Overview · {other}")
        assert other in _selected_label(page) and f"org={other_id}" in page.url
    finally:
        with db.begin() as conn:
            conn.execute(
                text("UPDATE organizations SET name = :name WHERE id = :id"),
                {"name": name, "id": org_id},
            )
        _read_the_names_again(page, app, [org_id])


def _read_the_names_again(page: Page, app: RunningApp, org_ids: Iterable[int]) -> None:
    """After a test gave renamed organizations their names back: the shared app's caches
    still hold the names it gave, so a later test would see them. "Refresh" reads again
    only what the page it is pressed on read, so it is pressed where each name was
    cached: each organization's Overview (its own reads and the directory) and the
    Usage review (the views across organizations). Best effort, in a ``finally`` (a
    failure here must not hide the test's own)."""
    for path, title in (*((f"?org={org}", "Overview") for org in org_ids), ("usage", "Usage")):
        with contextlib.suppress(Exception):
            page.goto(f"{app.url}/{path}")
            settle(page, title)
            _refresh(page, title)


def test_a_drafted_grant_stays_on_its_organization_when_that_organization_is_renamed(
    page: Page, app: RunningApp, db: Engine
) -> None:
    with db.connect() as conn:
        rows = conn.execute(text("SELECT id, name FROM organizations ORDER BY name")).all()
    # Renamed to sort last, so a picker that fell back to "the first by name" would show
    # another organization, and the grant would go there.
    org_id, name = rows[2]
    renamed = "Zzz renamed while a grant is drafted"
    rows_before, before = _books(db, org_id)
    amount = 4_321

    page.goto(f"{app.url}/credits?org={org_id}")
    settle(page, f"Credits · {name}")
    main = page.locator('[data-testid="stMain"]')
    form = main.locator('[data-testid="stForm"]').filter(has_text="Review adjustment")
    form.get_by_text("Grant credits", exact=True).click()
    form.get_by_label("Credits", exact=True).fill(str(amount))
    form.get_by_role("combobox", name="Reason").click()
    page.get_by_role("option", name="Goodwill gesture", exact=True).click()
    form.get_by_role("button", name="Review adjustment").click()
    confirm = main.get_by_role("button", name=f"Confirm: grant {amount:,}")
    confirm.wait_for()
    settle(page, f"Credits · {name}")

    try:
        with db.begin() as conn:
            conn.execute(
                text("UPDATE organizations SET name = :name WHERE id = :id"),
                {"name": renamed, "id": org_id},
            )
        # Two reruns: the first reads the new name, the second is where a picker that
        # followed labels used to fall back to another organization.
        for _ in range(2):
            main.get_by_role("button", name="Refresh").first.click()
            page.wait_for_timeout(300)
            settle(page, f"Credits · {renamed}")
        assert renamed in _selected_label(page) and f"org={org_id}" in page.url
        # The draft is still there, for this organization, and can be confirmed.
        assert confirm.is_enabled()
        assert "drafted for" not in main.inner_text()
        confirm.click()
        main.locator('[data-testid="stAlertContentSuccess"]').wait_for()
        settle(page, f"Credits · {renamed}")
        assert _books(db, org_id) == (rows_before + 1, before + amount)
    finally:
        with db.begin() as conn:
            conn.execute(
                text("UPDATE organizations SET name = :name WHERE id = :id"),
                {"name": name, "id": org_id},
            )
        _read_the_names_again(page, app, [org_id])


def test_the_pending_approvals_queue_fits_the_page_and_is_photographed(
    page: Page, app: RunningApp, db: Engine
) -> None:
    with db.connect() as conn:
        org_id, name = conn.execute(
            text("SELECT id, name FROM organizations ORDER BY name LIMIT 1 OFFSET 1")
        ).one()
    request = request_adjustment(
        db,
        organization_id=org_id,
        amount=250_000,
        reason="Enterprise renewal",
        note="PO 4711",
        actor="ana@finance.example",
        idempotency_key="browser-approval-queue",
    )
    title = f"Credits · {name}"
    page.goto(f"{app.url}/credits?org={org_id}")
    settle(page, title)
    _refresh(page, title)
    main = page.locator('[data-testid="stMain"]')
    assert "Pending approvals" in main.inner_text()
    assert "Review decision" in main.inner_text()
    assert not problems(page), problems(page)
    assert not cut_off_tables(page), cut_off_tables(page)
    main.get_by_text("Pending approvals", exact=True).scroll_into_view_if_needed()
    screenshot(page, "credits-approvals")
    rows, balance = _books(db, org_id)
    reject(db, request_id=request.id, approver=USER, reason="Browser test done")
    assert _books(db, org_id) == (rows, balance)


def test_a_statement_pdf_downloaded_in_the_browser_carries_the_statements_totals(
    page: Page, app: RunningApp, db: Engine
) -> None:
    import pypdf

    from queries.statements import monthly_statement

    with db.connect() as conn:
        org = int(
            conn.execute(
                text("SELECT organization_id FROM credit_ledger ORDER BY id DESC LIMIT 1")
            ).scalar_one()
        )
        zone = conn.execute(
            text("SELECT timezone FROM organizations WHERE id = :org"), {"org": org}
        ).scalar_one()
    # The month that is running now; the statement is read as of the same instant.
    now = dt.datetime.now(dt.UTC)
    month = now.astimezone(ZoneInfo(zone)).date().replace(day=1)
    page.goto(f"{app.url}/statements?org={org}&month={month:%Y-%m}")
    settle(page, "Statements")
    assert not problems(page), problems(page)
    pdf = _download(page, "Download PDF")
    with db.connect() as conn:
        expected = monthly_statement(conn, organization_id=org, month=month, now=now)
        # What the live grants hold: a grant due but not yet written off is gone already.
        balance = conn.execute(
            text(
                "SELECT b.balance - coalesce(d.due, 0) FROM credit_balances b "
                "LEFT JOIN due_credits(:now) d ON d.organization_id = b.organization_id "
                "WHERE b.organization_id = :org"
            ),
            {"org": org, "now": now},
        ).scalar_one()
    assert expected.closing_balance == balance, "this month, to date, ends at the balance"
    shown = " ".join(
        " ".join(p.extract_text().split()) for p in pypdf.PdfReader(io.BytesIO(pdf)).pages
    )
    assert " ".join(expected.organization_name.split()) in shown
    assert f"{month:%B %Y}" in shown and expected.timezone in shown
    # Signed as they move the balance (a deduction or a consumption is negative).
    for label, amount in (
        ("Opening balance", expected.opening_balance),
        ("Granted", expected.granted),
        ("Deducted", -expected.deducted),
        ("Consumed", -expected.consumed),
        ("Expired", -expected.expired),
        ("Closing balance", expected.closing_balance),
    ):
        assert f"{label} {amount:,}" in shown, (label, amount)
    for entry in expected.entries:
        assert f"{entry.amount:+,} {entry.balance_after:,}" in shown, entry


def test_clicking_an_organization_in_the_usage_ranking_opens_its_overview(
    page: Page, app: RunningApp, db: Engine
) -> None:
    page.goto(f"{app.url}/usage?range=7d&grain=week")
    settle(page, "Usage review")
    table = page.locator('[data-testid="stDataFrame"]').first
    table.scroll_into_view_if_needed()
    box = table.bounding_box()
    assert box is not None
    # The grid is drawn on a canvas: click the first row's name, in the Organization
    # column after Rank (50 px); the columns share what is left of the table's width
    # evenly.
    widths = (50, 150, 60, 80, 90, 125, 110, 115, 80, 90)
    extra = max(0.0, (box["width"] - sum(widths)) / len(widths))
    x = box["x"] + widths[0] + extra + (widths[1] + extra) / 2
    y = box["y"] + 35 + 35 / 2  # below the header, the first row's middle
    opened: list[Page] = []
    page.context.on("page", lambda new: opened.append(new))
    page.mouse.click(x, y)
    # In this tab (tests/dashboard/test_browser_paths.py checks the same document).
    page.wait_for_url(lambda url: urlsplit(url).path in ("", "/"))
    query = dict(parse_qsl(urlsplit(page.url).query))
    assert urlsplit(page.url).path in ("", "/"), page.url  # the Overview: the root
    assert query["range"] == "7d" and query["grain"] == "week" and query["org"].isdigit()
    with db.connect() as conn:
        name = conn.execute(
            text("SELECT name FROM organizations WHERE id = :id"), {"id": int(query["org"])}
        ).scalar_one()
    settle(page, f"Overview · {name}")
    assert opened == [] and page.context.pages == [page]
    assert not problems(page), problems(page)


def test_clicking_an_organization_in_the_quotas_table_opens_its_quotas_in_the_same_tab(
    page: Page, app: RunningApp, db: Engine
) -> None:
    page.goto(f"{app.url}/quotas?range=7d")
    settle(page, "Quotas")
    table = page.locator('.st-key-quotas-table [data-testid="stDataFrame"]')
    table.evaluate("el => el.scrollIntoView({block: 'start'})")  # taller than the window
    box = table.bounding_box()
    assert box is not None, "no table of every organization and type (no use today?)"
    opened: list[Page] = []
    page.context.on("page", lambda new: opened.append(new))
    page.evaluate("window.__sameTab = true")
    # The first row's name, in the first column (drawn on a canvas).
    page.mouse.click(box["x"] + 40, box["y"] + 35 + 35 / 2)
    page.wait_for_function("() => location.search.includes('form=limit')")
    query = dict(parse_qsl(urlsplit(page.url).query))
    with db.connect() as conn:
        name = conn.execute(
            text("SELECT name FROM organizations WHERE id = :id"), {"id": int(query["org"])}
        ).scalar_one()
    settle(page, "Quotas")
    # An admin may change limits: the limit form for that organization leads the page.
    form = page.locator('[data-testid="stMain"] h3').first.inner_text()
    assert form.startswith("Change a daily limit") and name in form, form
    assert page.title() == f"Quotas · {name} — Usage dashboard"
    assert query["range"] == "7d" and urlsplit(page.url).path.strip("/") == "quotas"
    assert opened == [] and page.context.pages == [page]
    assert page.evaluate("window.__sameTab === true"), "the page was loaded again"
    assert not problems(page), problems(page)


def test_selecting_an_audit_row_shows_its_reason_and_details_in_full(
    page: Page, app: RunningApp, db: Engine
) -> None:
    long_reason = "Goodwill after the outage of " + "the image pipeline, " * 12 + "end."
    with db.connect() as conn:
        org_id = conn.execute(
            text("SELECT id FROM organizations ORDER BY name LIMIT 1")
        ).scalar_one()
    request = request_adjustment(
        db,
        organization_id=int(org_id),
        amount=150_000,
        reason=long_reason,
        actor="ana@finance.example",
        idempotency_key="browser-long-reason",
    )
    try:
        page.goto(f"{app.url}/audit?range=7d&action=request_adjustment")
        settle(page, "Audit trail")
        main = page.locator('[data-testid="stMain"]')
        assert "Select a row" in main.inner_text()
        table = page.locator('[data-testid="stDataFrame"]').first
        table.scroll_into_view_if_needed()
        box = table.bounding_box()
        assert box is not None
        # The row's selection box is drawn in the grid's first (marker) column.
        x, y = box["x"] + 15, box["y"] + 35 + 35 / 2
        page.mouse.move(x, y)
        page.wait_for_timeout(300)
        page.mouse.click(x, y)
        main.get_by_text("Reason: Goodwill", exact=False).wait_for()
        settle(page, "Audit trail")
        assert f"Reason: {long_reason}" in main.inner_text()
        assert not problems(page), problems(page)
    finally:
        reject(db, request_id=request.id, approver=USER, reason="Browser test done")


def test_plan_allowance_changes_fit_the_audit_page_and_a_selected_reason_shows_in_full(
    page: Page, app: RunningApp, db: Engine
) -> None:
    long_reason = "New price list after the review of " + "the enterprise tiers, " * 12 + "end."
    # As an admin's change is recorded (now, by the database), without moving the plan:
    # the history is append-only, so this row stays for the module's later tests.
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO plan_allowance_changes (plan, monthly_allowance, rollover_cap, "
                "old_monthly_allowance, old_rollover_cap, actor, reason, idempotency_key) "
                "VALUES ('enterprise', 1000000, 500000, 900000, 500000, "
                "'ana@admin.example', :reason, 'browser-plan-change')"
            ),
            {"reason": long_reason},
        )
    page.goto(f"{app.url}/audit?range=7d")
    settle(page, "Audit trail")
    main = page.locator('[data-testid="stMain"]')
    assert "Plan allowance changes" in main.inner_text()
    assert not cut_off_tables(page), cut_off_tables(page)
    # The plans' list is the grid whose (accessible, hidden) header names "Rollover cap".
    table = page.locator('[data-testid="stDataFrame"]').filter(has_text="Rollover cap")
    table.scroll_into_view_if_needed()
    box = table.bounding_box()
    assert box is not None
    x, y = box["x"] + 15, box["y"] + 35 + 35 / 2
    page.mouse.move(x, y)
    page.wait_for_timeout(300)
    page.mouse.click(x, y)
    main.get_by_text("Reason: New price list", exact=False).wait_for()
    settle(page, "Audit trail")
    shown = main.inner_text()
    assert "Enterprise · ana@admin.example" in shown
    assert f"Reason: {long_reason}" in shown
    rows = list(
        csv.reader(io.StringIO(_download(page, "Download plan changes CSV").decode(), newline=""))
    )
    assert rows[0] == ["When", "Plan", "Actor", "Reason", "Monthly allowance", "Rollover cap"]
    assert rows[1][1:] == [
        "Enterprise",
        "ana@admin.example",
        long_reason,
        "900,000 → 1,000,000",
        "500,000 (unchanged)",
    ]
    assert not problems(page), problems(page)


def test_custom_dates_fit_the_sidebar(page: Page, app: RunningApp) -> None:
    """From and To are stacked: each shows its whole date, inside the sidebar."""
    page.goto(f"{app.url}/?range=custom&from=2026-10-01&to=2026-10-31")
    settle(page, PAGES[0].title)
    sidebar = page.locator('[data-testid="stSidebar"]')
    inputs = sidebar.locator('[data-testid="stDateInput"] input')
    assert inputs.count() == 2
    assert [inputs.nth(i).input_value() for i in range(2)] == ["2026-10-01", "2026-10-31"]
    box = sidebar.bounding_box()
    assert box is not None
    for i in range(2):
        field = inputs.nth(i)
        clipped = field.evaluate("el => el.scrollWidth - el.clientWidth")
        assert clipped <= 1, f"date input {i + 1}: {clipped} px of its date hidden"
        own = field.bounding_box()
        assert own is not None and own["x"] + own["width"] <= box["x"] + box["width"]
    # The sidebar scrolls inside the window: a taller window shows all of it.
    page.set_viewport_size({"width": VIEWPORT["width"], "height": 1600})
    try:
        page.wait_for_timeout(300)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        sidebar.screenshot(path=SCREENSHOTS / "sidebar-custom-dates.png")
    finally:
        page.set_viewport_size(VIEWPORT)


@contextlib.contextmanager
def _fresh_server(
    database_url: str,
    folder: Path,
    launcher: list[str],
    *,
    user: str = USER,
    role: str = "admin",
    env_changes: Mapping[str, str | None] | None = None,
) -> Iterator[RunningApp]:
    """A new server process (nothing imported, nothing cached) started with
    ``launcher`` (``-m streamlit run`` or ``-m cli.server``), as ``user`` with
    ``role`` (an admin by default); ``env_changes`` sets (or, with None, removes)
    environment variables after that."""
    # Our own secrets file, so a developer's .streamlit/secrets.toml ([auth], roles)
    # cannot change who the test is.
    secrets = folder / "secrets.toml"
    secrets.write_text(f'[dev]\nuser = "{user}"\nrole = "{role}"\n')
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DIRECT_URL", "DASHBOARD_USER", "DASHBOARD_ROLE", "DASHBOARD_ROLES")
    }
    env |= {"DATABASE_URL": database_url, "DASHBOARD_USER": user, "DASHBOARD_ROLE": role}
    for key, value in (env_changes or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    port = _free_port()
    log = folder / "streamlit.log"
    command = [
        sys.executable,
        *launcher,
        "dashboard/app.py",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
        "--secrets.files",
        str(secrets),
    ]
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield RunningApp(url=url, database_url=database_url, log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# What the page shows, polled every 20 ms from the moment it is opened.
_FIRST_SIGNS_JS: Final = """() => {
  const main = document.querySelector('[data-testid="stMain"]');
  const text = main ? main.textContent : "";
  return {
    starting: text.includes("Starting the dashboard"),
    title: !!document.querySelector('[data-testid="stMain"] h1'),
  };
}"""


def _first_signs(page: Page, url: str) -> tuple[float | None, float]:
    """Seconds from opening ``url`` to the progress sign (None if never seen) and to the
    first title."""
    began = time.monotonic()
    page.goto(url)
    starting: float | None = None
    while time.monotonic() - began < TIMEOUT_MS / 1000:
        signs = page.evaluate(_FIRST_SIGNS_JS)
        now = time.monotonic() - began
        if signs["starting"] and starting is None:
            starting = now
        if signs["title"]:
            return starting, now
        page.wait_for_timeout(20)
    raise AssertionError(f"no title within {TIMEOUT_MS / 1000:.0f}s")


def test_a_fresh_server_shows_a_progress_sign_before_its_first_page(
    browser: Browser, browser_database: str, tmp_path: Path
) -> None:
    """Bare `streamlit run`: the first run imports everything, and says so meanwhile."""
    with _fresh_server(browser_database, tmp_path, ["-m", "streamlit", "run"]) as fresh:
        page = browser.new_page(viewport=VIEWPORT)
        try:
            starting, title = _first_signs(page, fresh.url)
        finally:
            page.close()
    assert starting is not None and starting < title, (starting, title)


def test_dashboard_serve_warms_up_before_the_first_visit(
    browser: Browser, browser_database: str, tmp_path: Path
) -> None:
    """`dashboard serve`'s launcher imports, compiles and reads the default view ahead in
    the background: a visitor after that gets the page, not the progress sign."""
    with _fresh_server(browser_database, tmp_path, ["-m", "cli.server"]) as fresh:
        deadline = time.monotonic() + STARTUP_SECONDS
        while "reading the default view in" not in fresh.log.read_text():
            assert "failed" not in fresh.log.read_text(), fresh.log.read_text()
            assert time.monotonic() < deadline, fresh.log.read_text()
            time.sleep(0.1)
        page = browser.new_page(viewport=VIEWPORT)
        try:
            starting, _ = _first_signs(page, fresh.url)
            settle(page, PAGES[0].title)
            assert not problems(page), problems(page)
        finally:
            page.close()
    assert starting is None  # nothing left to import: straight to the page
    log = fresh.log.read_text()
    assert "warm-up: imports in" in log and "warm-up: compiling the pages in" in log
    # Its cached reads outside a script run used to log 31 "missing ScriptRunContext".
    assert "missing ScriptRunContext" not in log and "No runtime found" not in log, log


# A config.toml in the folder `dashboard serve` is started from: it must not win.
_HOSTILE_CONFIG: Final = """
[server]
address = "0.0.0.0"
enableCORS = false
enableXsrfProtection = false
maxUploadSize = 200
runOnSave = true
enableStaticServing = true
[browser]
gatherUsageStats = true
[client]
toolbarMode = "developer"
showErrorDetails = "full"
"""


def _listening(port: int) -> set[str]:
    """The addresses with a socket listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found: set[str] = set()
    for table, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # The kernel prints each 32-bit word in host (little-endian) order.
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, size, 4))
            family = socket.AF_INET if size == 4 else socket.AF_INET6
            found.add(socket.inet_ntop(family, words))
    return found


def test_dashboard_serve_from_another_folder_listens_on_this_machine_with_the_safe_settings(
    browser: Browser, browser_database: str, tmp_path: Path
) -> None:
    """Issue 15: from another working directory, `dashboard serve` listened on every
    address with Streamlit's defaults, since .streamlit/config.toml is read from the
    working directory only. It passes the settings itself, and a config.toml there
    does not override them."""
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / ".streamlit").mkdir(parents=True)
    (elsewhere / ".streamlit" / "config.toml").write_text(_HOSTILE_CONFIG)
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(f'[dev]\nuser = "{USER}"\nrole = "admin"\n')
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("STREAMLIT_") and key not in ("DIRECT_URL", "DASHBOARD_ROLES")
    }
    env |= {"DATABASE_URL": browser_database, "DASHBOARD_USER": USER, "DASHBOARD_ROLE": "admin"}
    port = _free_port()
    dashboard = Path(sys.executable).with_name("dashboard")  # as `uv run dashboard` runs it
    command = [str(dashboard), "serve", "--server.port", str(port), "--secrets.files", str(secrets)]
    log = tmp_path / "serve.log"
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=elsewhere, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dashboard serve did not start:\n{log.read_text()}")
            time.sleep(0.05)

        assert _listening(port) == {"127.0.0.1"}, log.read_text()
        # CORS: another origin is not allowed to read the answers.
        health = urllib.request.Request(
            f"{url}/_stcore/health", headers={"Origin": "http://evil.example"}
        )
        with urllib.request.urlopen(health, timeout=5) as response:
            assert response.headers.get("Access-Control-Allow-Origin") is None
        # XSRF: an upload without the token is refused before anything else.
        upload = urllib.request.Request(
            f"{url}/_stcore/upload_file/session/file", data=b"x", method="PUT"
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(upload, timeout=5)
        assert refused.value.code == 403

        page = browser.new_page(viewport=VIEWPORT)
        try:
            page.goto(f"{url}/credits")
            settle(page, "Credits")
            # toolbarMode minimal: no developer menu, no deploy button.
            assert not page.locator('[data-testid="stMainMenu"]').count()
            assert not page.locator('[data-testid="stAppDeployButton"]').count()
            # maxUploadSize 1 MB: the bulk file upload refuses a larger file.
            uploader = page.locator('[data-testid="stFileUploader"]').first
            big = FilePayload(
                name="big.csv",
                mimeType="text/csv",
                buffer=b"organization,amount,reason\n" + b"x" * 1_500_000,
            )
            # The uploader says the limit the server enforces (not Streamlit's 200MB).
            said = uploader.locator('[data-testid="stFileUploaderDropzoneInstructions"]')
            assert "1MB per file" in said.inner_text(), said.inner_text()
            uploader.locator('input[type="file"]').set_input_files(files=[big])
            uploader.get_by_text(re.compile(r"File must be .* or smaller")).wait_for()
        finally:
            page.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_bulk_uploader_says_the_1mb_limit_the_server_enforces(
    page: Page, app: RunningApp
) -> None:
    """The dropzone says 1MB, not Streamlit's default 200MB: the widget carries its own
    limit (``max_upload_size``), beside ``server.maxUploadSize = 1`` in
    .streamlit/config.toml, which only a start in the project folder reads."""
    page.goto(f"{app.url}/credits")
    settle(page, "Credits")
    uploader = page.locator('[data-testid="stFileUploader"]').first
    uploader.scroll_into_view_if_needed()
    said = uploader.locator('[data-testid="stFileUploaderDropzoneInstructions"]').inner_text()
    assert "1MB per file" in said, said
    assert "200MB" not in said


def test_the_previous_period_is_a_dashed_line_named_in_the_legend(
    page: Page, app: RunningApp
) -> None:
    """Usage review with ``compare=previous``: the timeline across organizations draws
    the previous period as a dashed line whose legend names its dates."""
    page.goto(f"{app.url}/usage?range=30d&grain=week&compare=previous&timeline=shown")
    settle(page, "Usage review")
    assert not problems(page), problems(page)
    chart = page.locator('[data-testid="stPlotlyChart"]').filter(
        has_text=re.compile(r"by generation type, all organizations")
    )
    chart.scroll_into_view_if_needed()
    # SVG text has no innerText: its text content is what is drawn.
    legend = [t.text_content() or "" for t in chart.locator(".legendtext").all()]
    assert any(re.fullmatch(r"previous period \(.+ – .+\)", t) for t in legend), legend
    dashes = chart.locator(".scatterlayer path.js-line").first.get_attribute("style") or ""
    assert "stroke-dasharray" in dashes, dashes
    assert page.get_by_label("Compare with previous period").first.is_checked()


def test_selecting_a_ledger_row_shows_its_reason_and_note_in_full(
    page: Page, app: RunningApp, db: Engine
) -> None:
    # The newest entry of the organization with the most recent one: the ledger's first row.
    with db.connect() as conn:
        newest = conn.execute(
            text(
                "SELECT organization_id, reason, coalesce(note, '') AS note "
                "FROM credit_ledger ORDER BY created_at DESC, id DESC LIMIT 1"
            )
        ).one()
    page.goto(f"{app.url}/credits?org={newest.organization_id}")
    settle(page, "Credits")
    main = page.locator('[data-testid="stMain"]')
    assert "to read its reason and note in full" in main.inner_text()
    # The ledger is the grid whose (accessible, hidden) header names "Balance after".
    table = page.locator('[data-testid="stDataFrame"]').filter(has_text="Balance after")
    table.scroll_into_view_if_needed()
    box = table.bounding_box()
    assert box is not None
    # The row's selection box is drawn in the grid's first (marker) column.
    x, y = box["x"] + 15, box["y"] + 35 + 35 / 2
    page.mouse.move(x, y)
    page.wait_for_timeout(300)
    page.mouse.click(x, y)
    main.get_by_text("Reason: ", exact=False).first.wait_for()
    settle(page, "Credits")
    shown = main.inner_text()
    assert f"Reason: {newest.reason}" in shown
    assert f"Note: {newest.note}".strip() in shown  # (inner_text drops a trailing space)
    assert not problems(page), problems(page)


def test_clicking_a_grants_ledger_entry_opens_the_ledger_at_that_entry(
    page: Page, app: RunningApp, db: Engine
) -> None:
    with db.connect() as conn:
        org_id, name = conn.execute(
            text("SELECT id, name FROM organizations ORDER BY id LIMIT 1 OFFSET 2")
        ).one()
    # Priority 0, drawn before every other grant: the first row of the grants.
    entry = adjust_credits(
        db,
        organization_id=int(org_id),
        amount=321,
        reason="Goodwill gesture",
        actor="ana@finance.example",
        idempotency_key="browser-entry-link",
        priority=0,
    )
    title = f"Credits · {name}"
    # The grant was written beside the app, not through it: the shared app may still hold
    # this organization's grants from an earlier test (the one before opens the Credits of
    # the organization with the newest ledger entry, which can be this one). Refresh
    # forgets them; the page is then opened afresh, so the grid is drawn once, at rest.
    page.goto(f"{app.url}/credits?org={org_id}")
    settle(page, title)
    _refresh(page, title)
    page.goto(f"{app.url}/credits?org={org_id}")
    settle(page, title)
    table = page.locator('.st-key-credits-grants [data-testid="stDataFrame"]')
    table.evaluate("el => el.scrollIntoView({block: 'center'})")
    box = table.bounding_box()
    assert box is not None, "no table of live grants"
    opened: list[Page] = []
    page.context.on("page", lambda new: opened.append(new))
    page.evaluate("window.__sameTab = true")
    # The grid is drawn on a canvas: the first row's "Ledger entry", the last column.
    page.mouse.click(box["x"] + box["width"] - 30, box["y"] + 35 + 35 / 2)
    page.wait_for_function("() => location.search.includes('entry=')")
    settle(page, title)
    query = dict(parse_qsl(urlsplit(page.url).query))
    assert (query["org"], query["entry"]) == (str(org_id), str(entry.id))
    assert urlsplit(page.url).path.strip("/") == "credits"
    main = page.locator('[data-testid="stMain"]')
    assert f"Showing ledger entry {entry.id} of {name}." in main.inner_text()
    assert opened == [] and page.context.pages == [page]
    assert page.evaluate("window.__sameTab === true"), "the page was loaded again"
    assert not problems(page), problems(page)

    main.get_by_role("button", name="Show the full ledger").click()
    page.wait_for_function("() => !location.search.includes('entry=')")
    settle(page, title)
    assert "Showing ledger entry" not in main.inner_text()
    assert "Entries 1–" in main.inner_text(), "the full ledger, from its first page"
