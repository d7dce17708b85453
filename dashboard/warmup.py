"""Work done once when the server starts, so the first visitor does not wait for it.

After a restart the first run of the app used to import pandas, plotly, SQLAlchemy,
psycopg and the data layer, compile the pages, open the pool's first connection and
read PostgreSQL's cold pages: seconds of a white page. ``tooling.serve_app`` (how
``dashboard serve`` starts Streamlit) does that work as the server starts:

1. :func:`import_modules` imports every module the app and its pages use (never a page
   module: a page draws itself when it is executed), in the main thread before the
   server listens. Done in a background thread instead, it competed for the one GIL with
   the server's start and the first visitor's run (measured: the first frame came
   2.5 s after the server was up instead of 1 s, the page 5 s later), and plotly could
   see a half-imported pandas;
2. :func:`warm_up`, in a background thread once the runtime exists, compiles
   ``app.py`` and the pages into Streamlit's own script cache, so the first run does not
   compile them;
3. and reads what the default view shows (the Overview of the first organization by
   name, the sidebar's default filters) through :mod:`dashboard.data`, which fills the
   shared ``st.cache_data`` caches with the very keys the first visitor's run asks for,
   and warms the engine's pool and PostgreSQL's buffers.

Nothing here may stop the server: a step that fails (no database yet, a schema behind)
is logged and the app reports it to the visitor as usual. A bare ``streamlit run``
skips all of it; ``app.py`` then shows "Starting the dashboard…" while it imports.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

_log = logging.getLogger(__name__)

DASHBOARD: Final = Path(__file__).resolve().parent
APP: Final = DASHBOARD / "app.py"
PAGES: Final = DASHBOARD / "app_pages"
# What the app and its pages import: what app.py imports, then what the pages add.
MODULES: Final = (
    "pandas",
    "plotly.graph_objects",
    "dashboard.auth",
    "dashboard.data",
    "dashboard.navigation",
    "dashboard.state",
    "dashboard.ui",
    "dashboard.text",
    "queries.db",
    "tooling.schema",
    "dashboard.charts",
    "dashboard.actions",
    "dashboard.confirm",
    "dashboard.exports",
    "dashboard.paging",
    "dashboard.statement_files",
    "dashboard.timezone_form",
)
RUNTIME_WAIT_SECONDS: Final = 60.0


def import_modules() -> None:
    """Import what the app uses (step 1), in the calling thread."""
    for name in MODULES:
        importlib.import_module(name)


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
    scripts = [APP, *sorted(PAGES.glob("*.py"))]
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
    from dashboard import data, state

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
    data.period_kpis(organization_id=org, start=start, end=end, utc=utc)
    data.timeline_by_type(
        organization_id=org, start=start, end=end, granularity=state.DEFAULT_GRAIN, utc=utc
    )
    data.top_users(organization_id=org, start=start, end=end, limit=OVERVIEW_TOP_USERS, utc=utc)
    data.users(organization_id=org)
    data.recent_generations(
        organization_id=org, user_id=None, limit=OVERVIEW_PAGE_SIZE, before=None
    )


def _step(name: str, step: Callable[[], object]) -> None:
    began = time.monotonic()
    try:
        step()
    except Exception:  # a warm-up never stops the server; the app reports problems
        _log.warning("warm-up: %s failed", name, exc_info=True)
    else:
        _log.info("warm-up: %s in %.2f s", name, time.monotonic() - began)


def warm_up() -> None:
    """Compile and read ahead (steps 2 and 3) once the runtime exists; never raises."""
    from streamlit.runtime import Runtime

    deadline = time.monotonic() + RUNTIME_WAIT_SECONDS
    while not Runtime.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    _step("compiling the pages", compile_scripts)
    _step("reading the default view", read_default_view)


def start(*, imports: bool = True) -> threading.Thread:
    """Step 1 here (unless ``imports`` is False), then steps 2 and 3 in a background
    thread, which waits for the server's runtime."""
    if imports:
        _step("imports", import_modules)
    thread = threading.Thread(target=warm_up, name="dashboard-warm-up", daemon=True)
    thread.start()
    return thread
