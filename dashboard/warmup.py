"""Work done once when the server starts, so the visitors after it do not wait for it.

After a restart the first run of the app used to import pandas, plotly, SQLAlchemy,
psycopg and the data layer, compile the pages, open the pool's first connection and
read PostgreSQL's cold pages, behind a white page. Now ``app.py`` draws a progress sign
before its imports, and ``cli.server`` (how ``dashboard serve`` starts Streamlit)
starts the server and, in a background thread (:func:`warm_up`):

1. waits :data:`GRACE_SECONDS` after the server is up, so that a tab already open
   (reconnecting after a restart) starts its run and draws its progress sign first;
2. imports every module the default view uses (:data:`DEFAULT_VIEW_MODULES`, in
   ``app.py``'s order, then what its first table and charts load; never a page module:
   a page draws itself when executed). If a visitor's run is importing them already,
   this waits on Python's import locks instead of doing the work twice. What the other
   pages add (:data:`OTHER_PAGES_MODULES`) comes last, after step 5;
3. builds one chart of each kind the default view draws, from a one-row frame, and
   encodes it as ``st.plotly_chart`` does: Plotly loads its figure classes and their
   validators on first use (``plotly.graph_objects`` imports nothing until then), which
   cost the first visitor's run more than its reads;
4. compiles ``app.py`` and the pages into Streamlit's own script cache, so no run
   compiles them;
5. reads what the default view shows (the Overview of the first organization by name,
   the sidebar's default filters) through :mod:`dashboard.data`, which fills the shared
   ``st.cache_data`` caches with the very keys a visitor's run asks for, and warms the
   engine's pool and PostgreSQL's buffers.

``dashboard serve`` starts the server's process before the database is ready
(``cli.server.prestart``), and it listens only once the database is: no visitor can be
there before, so the warm-up runs steps 2 and 3 at once, while the command readies the
database (``early``), pausing between two modules while the server starts (it comes
first: the browser can do nothing before the server answers), and steps 4 and 5 as
soon as the server's runtime exists.

Why not import before the server listens, or at once in the thread, when the server
listens at once (``streamlit run`` through ``cli.server`` alone): measured on this
project's 2-core machine, importing first kept the server down 4 s longer (the page came
later in all); importing in the thread from the start competed with the first visitor's
run for the GIL and the import locks, and its progress sign came 3.7 s after the server
was up instead of 0.85 s (``scripts/measure_startup.py``).

Nothing here may stop the server: a step that fails (no database yet, a schema behind)
is logged and the app reports it to the visitor as usual.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from dashboard import bare

_log = logging.getLogger(__name__)

DASHBOARD: Final = Path(__file__).resolve().parent
APP: Final = DASHBOARD / "app.py"
PAGES: Final = DASHBOARD / "app_pages"
# What the default view (app.py and the Overview) imports, in app.py's order, then what
# its first table and charts load: a styled table (jinja2), Streamlit's conversion of a
# DataFrame to Arrow, and what st.plotly_chart imports to encode a figure.
DEFAULT_VIEW_MODULES: Final = (
    "pandas",
    "plotly.graph_objects",
    "dashboard.auth",
    "dashboard.data",
    "dashboard.navigation",
    "dashboard.state",
    "dashboard.ui",
    "dashboard.text",
    "queries.db",
    "queries.schema_version",
    "dashboard.charts",
    "dashboard.paging",
    "pandas.io.formats.style",
    "pyarrow.pandas_compat",
    "plotly.io",
    "plotly.tools",
)
# What the other pages add (the statement PDF's fpdf2 alone is a quarter of all the
# imports' time): imported last, once the default view is read.
OTHER_PAGES_MODULES: Final = (
    "dashboard.actions",
    "dashboard.confirm",
    "dashboard.exports",
    "dashboard.statement_files",
    "dashboard.timezone_form",
)
MODULES: Final = DEFAULT_VIEW_MODULES + OTHER_PAGES_MODULES
RUNTIME_WAIT_SECONDS: Final = 60.0
THREAD_NAME: Final = "dashboard-warm-up"
GRACE_SECONDS: Final = 1.5


# Set by the launcher when it starts the server (``cli.server``): from then until the
# server's runtime has started, the early imports wait, so they do not take the GIL from
# the server's start (the browser can do nothing before it answers).
_server_starting = threading.Event()


def server_starting() -> None:
    """Say the server is starting now (see :data:`_server_starting`)."""
    _server_starting.set()


def _server_started() -> bool:
    from streamlit.runtime import Runtime, RuntimeState

    return Runtime.exists() and Runtime.instance().state != RuntimeState.INITIAL


def _wait_while_the_server_starts() -> None:
    deadline = time.monotonic() + RUNTIME_WAIT_SECONDS
    while _server_starting.is_set() and not _server_started() and time.monotonic() < deadline:
        time.sleep(0.01)


def import_modules(names: Sequence[str] = MODULES) -> None:
    """Import ``names`` (step 2: by default every module the app uses), one at a time,
    never while the server is starting."""
    for name in names:
        _wait_while_the_server_starts()
        importlib.import_module(name)


def _import_default_view_modules() -> None:
    import_modules(DEFAULT_VIEW_MODULES)


def _import_other_pages_modules() -> None:
    import_modules(OTHER_PAGES_MODULES)


def compile_scripts() -> int:
    """Compile app.py and every page into the running server's script cache (the one
    ``st.navigation`` reads bytecode from); how many were compiled, 0 without a runtime."""
    from streamlit.runtime import Runtime

    if not Runtime.exists():
        return 0
    # Streamlit keeps compiled scripts in the runtime's ScriptCache (private API): if
    # it moves, the pages are compiled on first use, as before.
    cache = getattr(Runtime.instance(), "_script_cache", None)
    if cache is None:
        return 0
    # A page is a module, or a package whose page.py draws it (app_pages/credits/).
    scripts = [APP, *sorted(PAGES.glob("*.py")), *sorted(PAGES.glob("*/page.py"))]
    for script in scripts:
        cache.get_bytecode(str(script))
    return len(scripts)


# The Overview's page sizes (dashboard/app_pages/overview.py: TOP_USERS, PAGE_SIZE):
# a page module cannot be imported (it draws itself), so they are repeated here; a
# mismatch only costs the first visitor those two reads.
OVERVIEW_TOP_USERS: Final = 10
OVERVIEW_PAGE_SIZE: Final = 25


def read_default_view() -> None:
    """Read, through the cached reads, what the first visitor's default view reads: the
    sidebar's organization and picker, and the Overview of the first organization by
    name with the default filters."""
    from dashboard import clock, data, state

    if not data.any_organizations():
        return
    first = data.organization_search(limit=1).organizations
    if not first:
        return
    org = first[0].id
    info = data.organization(organization_id=org)
    if info is None:
        return
    data.organization_search(query=None, limit=state.PICKER_PAGE)
    utc = state.DEFAULT_ZONE == "utc"
    start, end = state.preset_range(
        state.DEFAULT_PRESET, state.today_in("UTC" if utc else info.timezone)
    )
    # The Overview's key: "now" to the quarter-hour (dashboard.app_pages.overview).
    data.period_kpis(organization_id=org, start=start, end=end, utc=utc, now=clock.quarter_hour())
    data.timeline_by_type(
        organization_id=org, start=start, end=end, granularity=state.DEFAULT_GRAIN, utc=utc
    )
    data.top_users(organization_id=org, start=start, end=end, limit=OVERVIEW_TOP_USERS, utc=utc)
    data.users(organization_id=org)
    data.recent_generations(
        organization_id=org, user_id=None, limit=OVERVIEW_PAGE_SIZE, before=None
    )


# Any day: the sample charts only load Plotly's classes (a bucket cut by the period, so
# the hatching's classes too).
_SAMPLE_DAY: Final = dt.date(2026, 1, 5)


def build_sample_charts() -> int:
    """Step 3: the default view's two kinds of chart (the Overview's stacked timeline and
    top users) from one-row frames, encoded as ``st.plotly_chart`` encodes a figure;
    needs no database. How many were built."""
    import pandas as pd
    import plotly.io

    from dashboard import charts

    day = pd.Timestamp(_SAMPLE_DAY)
    timeline = pd.DataFrame({"bucket": [day], "type": ["chat"], "generations": [1], "credits": [1]})
    top = pd.DataFrame(
        {
            "user_id": [1],
            "name": ["A"],
            "email": ["a@example.com"],
            "generations": [1],
            "credits": [1],
        }
    )
    figures = [
        charts.timeline_by_type(
            timeline,
            metric="credits",
            granularity="week",
            start=_SAMPLE_DAY + dt.timedelta(days=1),
            end=_SAMPLE_DAY + dt.timedelta(days=1),
            today=_SAMPLE_DAY + dt.timedelta(days=1),
        ),
        charts.top_users(top),
    ]
    for figure in figures:
        _wait_while_the_server_starts()
        plotly.io.to_json(figure, validate=False)
    return len(figures)


def _step(name: str, step: Callable[[], object]) -> None:
    began = time.monotonic()
    try:
        step()
    except Exception:  # a warm-up never stops the server; the app reports problems
        _log.warning("warm-up: %s failed", name, exc_info=True)
    else:
        _log.info("warm-up: %s in %.2f s", name, time.monotonic() - began)


def warm_up(*, grace: float = GRACE_SECONDS, early: bool = False) -> None:
    """Steps 1 to 5 of the module's docstring; with ``early`` (the server does not
    listen yet), steps 2 and 3 at once and no grace. Never raises."""
    from streamlit.runtime import Runtime

    if early:
        _step("imports", _import_default_view_modules)
        _step("building the sample charts", build_sample_charts)
        # However long the command takes to ready the database (a first demo load, a
        # migration): the server starts only then (a process never started ends unheard).
        _server_starting.wait()
    deadline = time.monotonic() + RUNTIME_WAIT_SECONDS
    while not Runtime.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not early:
        time.sleep(grace)
        _step("imports", _import_default_view_modules)
        _step("building the sample charts", build_sample_charts)
    _step("compiling the pages", compile_scripts)
    _step("reading the default view", read_default_view)
    _step("imports for the other pages", _import_other_pages_modules)


def start(*, early: bool = False) -> threading.Thread:
    """:func:`warm_up` in a background thread (call it before starting the server)."""
    thread = threading.Thread(
        target=warm_up, kwargs={"early": early}, name=THREAD_NAME, daemon=True
    )
    # It reads through the caches outside any script run, on purpose: without this,
    # each read logged "missing ScriptRunContext" (31 lines at every start).
    bare.quiet_thread(THREAD_NAME)
    thread.start()
    return thread
