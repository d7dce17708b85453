"""How long each page takes in a real browser, as a user feels it, beside the floor a
Streamlit page cannot beat on this machine (issue 17).

    uv run python scripts/benchmark_browser.py [--database-url URL] [--runs N]
        [--pages overview,quotas] [--org ID] [--baseline REF]

Two timings per page, p50 and p95 over ``--runs`` (Debian's Chromium, headless):

- **in the app**: from another page, a click on the page's link in the sidebar menu,
  until the script has finished, nothing is stale or a placeholder, and every chart has
  been drawn by plotly (the other page is the next one measured; with one page in
  ``--pages``, the first page of the dashboard besides it, reached untimed);
- **fresh tab**: the page's URL opened in a new tab (a new browser context, so a new
  Streamlit session and nothing cached in the browser), until the same.

**The floor** goes through the same timings first: a minimal Streamlit app with the same
kinds of elements (a title, a metric, a Plotly bar chart, a 50-row dataframe) on two
pages. It is served the same way (``streamlit run``, the same flags), so the difference
between a page and the floor is the page's own cost: its reads, its imports, what it
sends and its reruns.

The app runs as an admin against ``--database-url`` (default: the demo database
``uv run dashboard`` loads on the embedded server, ``dashboard``), with the sidebar's
filters left at their defaults and the organization ``--org`` (default: the first by
name). The server is started once and warmed with one visit of every page, as a server
that has been up for a while; the cold start of a server is ``scripts/measure_startup.py``.
Each round times every page once each way, so the pages share the machine's noise.

With ``--baseline REF``, REF's ``dashboard/app.py`` is served too, from a temporary
worktree on REF's packages (``scripts/_baseline.py``), beside this checkout's, against
the same database; the same browser times both in alternating rounds, and one table puts
each page's timings side by side. The instrument here is the browser, not a worker: only
the served code differs between the sides.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import _baseline
from playwright.sync_api import Browser, Page, sync_playwright

ROOT: Final = Path(__file__).resolve().parents[1]
CHROMIUM: Final = "/usr/bin/chromium"
ARGS: Final = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"]
VIEWPORT: Final = {"width": 1440, "height": 900}
USER: Final = "benchmark@example.com"
TIMEOUT_MS: Final = 120_000

# The page has finished: the script is not running, the session is connected, nothing
# is stale or a placeholder, the title is the page's, and every chart has been drawn.
SETTLED_JS: Final = """
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

FLOOR_APP: Final = """
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

st.set_page_config(layout="wide", initial_sidebar_state="expanded")


def page(title: str) -> None:
    st.title(title)
    st.metric("Credits consumed", "1,234,567", "+4.2 %", border=True)
    days = pd.date_range("2026-09-01", periods=90, freq="D")
    rng = np.random.default_rng(7)
    figure = go.Figure(go.Bar(x=days, y=rng.integers(100, 1000, len(days))))
    st.plotly_chart(figure, use_container_width=True)
    table = pd.DataFrame(
        {
            "Organization": [f"Organization {i}" for i in range(50)],
            "Credits": rng.integers(0, 100_000, 50),
            "Generations": rng.integers(0, 10_000, 50),
        }
    )
    st.dataframe(table, hide_index=True)


st.navigation(
    [
        st.Page(lambda: page("Floor one"), title="Floor one", url_path="one", default=True),
        st.Page(lambda: page("Floor two"), title="Floor two", url_path="two"),
    ]
).run()
"""


@dataclass(frozen=True, slots=True)
class Target:
    """A page to time: its menu label, the title its heading starts with, its path."""

    label: str
    title: str
    path: str


# The first page is the default one, served at the root.
FLOOR: Final = (Target("Floor one", "Floor one", ""), Target("Floor two", "Floor two", "two"))


def _project_pages() -> tuple[Target, ...]:
    from dashboard.navigation import PAGES

    return tuple(
        Target(spec.title, spec.title, "" if index == 0 else spec.url_path)
        for index, spec in enumerate(PAGES)
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def _served(
    script: Path,
    env: dict[str, str],
    secrets: Path,
    *,
    python: Sequence[str] = (sys.executable,),
    cwd: Path = ROOT,
) -> Iterator[str]:
    """``streamlit run script`` on a free port; yields its URL."""
    port = _free_port()
    command = [
        *python,
        "-m",
        "streamlit",
        "run",
        str(script),
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
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        began = time.monotonic()
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() - began > 60:
                raise SystemExit(f"the server for {script.name} did not start")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def _settle(page: Page, title: str) -> None:
    page.wait_for_function(SETTLED_JS, arg=title, timeout=TIMEOUT_MS, polling=20)


def _fresh_tab(browser: Browser, url: str, target: Target) -> float:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    try:
        page = context.new_page()
        began = time.perf_counter()
        page.goto(url)
        _settle(page, target.title)
        return time.perf_counter() - began
    finally:
        context.close()


def _in_app(page: Page, target: Target, other: Target) -> float:
    """From ``other`` (reached first, not timed), a click on ``target`` in the menu."""
    menu = page.locator('[data-testid="stSidebarNav"] a')
    menu.filter(has_text=other.label).first.click()
    _settle(page, other.title)
    began = time.perf_counter()
    menu.filter(has_text=target.label).first.click()
    _settle(page, target.title)
    return time.perf_counter() - began


@dataclass(frozen=True, slots=True)
class Timing:
    name: str
    in_app: list[float]
    fresh: list[float]


class _Served:
    """One served app in the browser: a page kept open for the in-app clicks."""

    def __init__(
        self,
        browser: Browser,
        base: str,
        targets: Sequence[Target],
        *,
        query: str,
        name: str,
        via: Target | None = None,
    ):
        self.name = name
        self._browser = browser
        self._targets = targets
        # Where a click to the only page measured starts from: else a click on the page
        # it is already on, a rerun, not a visit from another page.
        self._via = via
        self._links = {t.path: f"{base}/{t.path}{query}" for t in targets}
        self._page: Page | None = None

    def ready(self) -> None:
        """Open the first page, then every page once, as a server that has been up a while."""
        first = self._targets[0]
        self._page = self._browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
        self._page.goto(self._links[first.path])
        _settle(self._page, first.title)
        for index, target in enumerate(self._targets):
            _in_app(self._page, target, self._other(index))

    def _other(self, index: int) -> Target:
        """The page a click to ``self._targets[index]`` starts from."""
        if len(self._targets) == 1 and self._via is not None:
            return self._via
        return self._targets[(index + 1) % len(self._targets)]

    def round(self) -> dict[str, list[float]]:
        """Every page once in the app (from the next one) and once in a fresh tab."""
        assert self._page is not None
        times: dict[str, list[float]] = {}
        for index, target in enumerate(self._targets):
            times[f"{target.label}, in the app"] = [_in_app(self._page, target, self._other(index))]
            fresh = _fresh_tab(self._browser, self._links[target.path], target)
            times[f"{target.label}, fresh tab"] = [fresh]
        return times

    def close(self) -> None:
        if self._page is not None:
            self._page.close()


def _time_app(
    browser: Browser,
    base: str,
    targets: Sequence[Target],
    *,
    query: str,
    runs: int,
    name: str,
    via: Target | None = None,
) -> list[Timing]:
    served = _Served(browser, base, targets, query=query, name=name, via=via)
    served.ready()
    rounds = [served.round() for _ in range(runs)]
    served.close()
    timings = []
    for target in targets:
        label = target.label if name == "" else f"{name}: {target.label}"
        in_app = [t for r in rounds for t in r[f"{target.label}, in the app"]]
        fresh = [t for r in rounds for t in r[f"{target.label}, fresh tab"]]
        timings.append(Timing(label, in_app, fresh))
    print(f"  measured {name or 'the dashboard'}", file=sys.stderr, flush=True)
    return timings


def _side_by_side(
    browser: Browser,
    env: dict[str, str],
    secrets: Path,
    pages: Sequence[Target],
    *,
    query: str,
    runs: int,
    ref: str,
    via: Target | None = None,
) -> None:
    """REF's app and this checkout's, served at once, timed in alternating rounds."""
    current_name = _baseline.current_label()
    with _baseline.checkout(ref) as tree:
        python, ref_env = _baseline.python_for(tree.path, env=env)
        app = Path("dashboard") / "app.py"
        with (
            _served(tree.path / app, ref_env, secrets, python=python, cwd=tree.path) as old,
            _served(ROOT / app, env, secrets) as new,
        ):
            baseline = _Served(browser, old, pages, query=query, name=tree.label, via=via)
            current = _Served(browser, new, pages, query=query, name=current_name, via=via)
            before, after = _baseline.alternate(baseline, current, runs)
            baseline.close()
            current.close()
        notes = tree.notes("its dashboard/app.py under streamlit run", runs)
    print(*notes, sep="\n", end="\n\n")
    print(_baseline.table((tree.label, before), (current_name, after), unit="s", digits=2))


def _p95(values: Sequence[float]) -> float:
    return _baseline.percentile(values, 0.95)


def _table(timings: Sequence[Timing], floor: Timing) -> str:
    lines = [
        "| page | in the app p50 | in the app p95 | fresh tab p50 | fresh tab p95 "
        "| fresh p95 − floor |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for t in timings:
        lines.append(
            f"| {t.name} | {statistics.median(t.in_app):.2f} s | {_p95(t.in_app):.2f} s "
            f"| {statistics.median(t.fresh):.2f} s | {_p95(t.fresh):.2f} s "
            f"| {_p95(t.fresh) - _p95(floor.fresh):+.2f} s |"
        )
    return "\n".join(lines)


def _default_database() -> str:
    from tooling import embedded

    return embedded.ensure_running().url(embedded.DEFAULT_DATABASE)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="default: the embedded demo database")
    parser.add_argument("--runs", type=int, default=15, help="timings per page (default 15)")
    parser.add_argument("--pages", help="url paths, comma-separated (default: every page)")
    parser.add_argument("--org", type=int, help="organization id (default: the sidebar's)")
    _baseline.add_arguments(parser, worker=False)
    args = parser.parse_args(argv)
    if args.runs < 2:
        parser.error("--runs must be at least 2")
    every = pages = _project_pages()
    if args.pages:
        wanted = args.pages.split(",")
        named = {p.path or "overview": p for p in pages}
        unknown = set(wanted) - named.keys()
        if unknown:
            parser.error(f"not a page of the dashboard: {', '.join(sorted(unknown))}")
        pages = tuple(named[path] for path in wanted)
    via = next((p for p in every if p not in pages), None) if len(pages) == 1 else None
    database_url = args.database_url or _default_database()
    query = f"?org={args.org}" if args.org else ""

    folder = Path(tempfile.mkdtemp(prefix="bench-browser-"))
    floor_script = folder / "floor_app.py"
    floor_script.write_text(FLOOR_APP)
    secrets = folder / "secrets.toml"
    secrets.write_text(f'[dev]\nuser = "{USER}"\nrole = "admin"\n')
    env = {k: v for k, v in os.environ.items() if k not in ("DIRECT_URL", "DASHBOARD_ROLES")}
    env |= {
        "DATABASE_URL": database_url,
        "DASHBOARD_USER": USER,
        "DASHBOARD_ROLE": "admin",
    }
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            with _served(floor_script, env, secrets) as base:
                floor = _time_app(browser, base, FLOOR, query="", runs=args.runs, name="floor")
            slowest_floor = max(floor, key=lambda t: _p95(t.fresh))
            print(f"runs per page: {args.runs}; database: {database_url.split('@')[-1]}")
            if args.baseline:
                print(_table(floor, slowest_floor), end="\n\n", flush=True)
                _side_by_side(
                    browser,
                    env,
                    secrets,
                    pages,
                    query=query,
                    runs=args.runs,
                    ref=args.baseline,
                    via=via,
                )
                return
            with _served(ROOT / "dashboard" / "app.py", env, secrets) as base:
                timed = _time_app(
                    browser, base, pages, query=query, runs=args.runs, name="", via=via
                )
        finally:
            browser.close()
    print(_table([*floor, *timed], slowest_floor))


if __name__ == "__main__":
    main()
