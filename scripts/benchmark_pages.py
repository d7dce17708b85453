"""Benchmark of the dashboard's pages: the server-side run time of each page.

    uv run python scripts/benchmark_pages.py [--sizes 250000,1000000] [--runs N]
        [--orgs N] [--days N] [--seed N] [--range 30d] [--org largest|default|ID]
        [--database-url URL] [--now INSTANT] [--baseline REF]

What it measures: one run of the app's script for a page, ``dashboard/app.py`` (identity,
navigation, the organizations, the sidebar filters) and then the page, exactly as
``streamlit run`` executes it, driven by ``streamlit.testing.v1.AppTest`` as an admin
(so every form is drawn). The time is taken around Streamlit's own call that executes
the script (``exec_func_with_error_handling``), so it includes every query, the pandas
work, building the plotly figures and serializing every element (Arrow tables, figure
JSON, protobuf), and excludes only AppTest's harness (its mock runtime and the parsing
of the element tree it returns), which a real server does not run either. As on a
server, app.py and the page are compiled once, not on every run.

- **cold**: ``st.cache_data`` emptied before each run, as after a write, a Refresh or an
  expired ``ttl``: every read goes to PostgreSQL. The engine (``st.cache_resource``) and
  its pooled connections are kept, as on a running server.
- **warm**: the run again with the caches filled, what a user gets when they change a
  widget or come back to the page within the ``ttl``.

Each size uses the query benchmark's database for that size (``dashboard_bench_<size>``
on the project's embedded PostgreSQL, or ``BENCH_DATABASE_URL``) and its load when the
parameters match (``benchmarks.queries.database``; ``--reload`` loads afresh, ending now
so "today" has quota use), so a 100M load is made once for both benchmarks. The pages show the
organization with the most generations (``--org default`` keeps the app's default, the
first by name) and the app's default filters (``--range``: last 30 days, by day, in the
organization's time zone). ``--database-url`` measures that database as it is, without
loading. Each round runs every page once cold and once warm, so the pages share the
machine's noise. It prints markdown tables; see docs/performance.md.

``--now`` fixes the pages' clock (``dashboard.clock.now``), which every read of
"today" on the pages takes since 9683b73 (the forecast sections and runway tiles read the
database's clock before it): a load that ended yesterday is measured late in its own
day. A REF older than that reads those from the database: run both sides, and the
embedded server, under ``faketime`` instead.

With ``--baseline REF``, each page as REF's code draws it and as this checkout's does, on
the same database and organization, in ``--runs`` alternating rounds, in one table
(``scripts/_baseline.py``: REF in a temporary worktree, each side in a warm worker
process running this script with ``--json``). The app's script is the imported
``dashboard`` package's, so a worker with REF's packages first on ``sys.path`` measures
REF's ``dashboard/`` and ``queries/``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import _baseline
import streamlit as st
from sqlalchemy import Engine, event, make_url, text
from streamlit import config as st_config
from streamlit import logger as streamlit_logger
from streamlit.runtime.scriptrunner import exec_code, script_runner
from streamlit.runtime.scriptrunner.script_cache import ScriptCache
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1 import app_test as app_test_module

import dashboard
from benchmarks.arguments import instant
from dashboard import clock
from dashboard.navigation import PAGES, PageSpec
from queries.db import create_direct_engine, dispose_engine

# The imported package's, not this file's neighbour: a --baseline worker measures REF's.
APP: Final = Path(dashboard.__file__).resolve().parent / "app.py"
DATABASE_PREFIX: Final = "dashboard_bench"
TARGET_MS: Final = 300.0
RUN_TIMEOUT: Final = 300.0
IDENTITY_ENV: Final = ("DASHBOARD_USER", "DASHBOARD_ROLE", "DASHBOARD_ROLES")
SECRETS: Final = {"dev": {"user": "benchmark@example.com", "role": "admin"}}


# ---------------------------------------------------------------------- measuring


@dataclass(slots=True)
class RunClock:
    """What the last script run cost: wall time of the script, SQL statements and time."""

    script: list[float] = field(default_factory=list)
    statements: int = 0
    sql_seconds: float = 0.0

    def reset(self) -> None:
        self.script.clear()
        self.statements = 0
        self.sql_seconds = 0.0


CLOCK: Final = RunClock()


def _install_clock() -> None:
    """Time each script execution and every SQL statement (any engine)."""
    runner: Any = script_runner  # patched: the name is imported there, not exported
    original = exec_code.exec_func_with_error_handling

    def timed(func: Callable[[], Any], ctx: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(func, ctx)
        finally:
            CLOCK.script.append(time.perf_counter() - started)

    runner.exec_func_with_error_handling = timed

    # A server compiles each script once and keeps the bytecode in one ScriptCache;
    # AppTest makes a new cache for every run. Share one, as the server does, so a run
    # is not charged for compiling app.py and the page again.
    shared = ScriptCache()
    harness: Any = app_test_module
    harness.ScriptCache = lambda: shared

    def before(
        conn: Any, cursor: Any, statement: Any, params: Any, context: Any, many: Any
    ) -> None:
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def after(conn: Any, cursor: Any, statement: Any, params: Any, context: Any, many: Any) -> None:
        started = conn.info["bench_started"].pop()
        CLOCK.statements += 1
        CLOCK.sql_seconds += time.perf_counter() - started

    event.listen(Engine, "before_cursor_execute", before)
    event.listen(Engine, "after_cursor_execute", after)


@dataclass(frozen=True, slots=True)
class Sample:
    ms: float
    statements: int
    sql_ms: float


@dataclass(frozen=True, slots=True)
class PageResult:
    spec: PageSpec
    cold: list[Sample]
    warm: list[Sample]


def _run(at: AppTest) -> Sample:
    CLOCK.reset()
    at.run(timeout=RUN_TIMEOUT)
    if len(CLOCK.script) != 1:
        raise RuntimeError(f"expected one script run, saw {len(CLOCK.script)} (a rerun?)")
    _check(at)
    return Sample(CLOCK.script[0] * 1000, CLOCK.statements, CLOCK.sql_seconds * 1000)


def _check(at: AppTest) -> None:
    """A page that failed would be fast for the wrong reason: stop instead."""
    if at.exception:
        raise RuntimeError(f"the page raised: {[e.message for e in at.exception]}")
    errors = [str(e.value) for e in at.error]
    if errors:
        raise RuntimeError(f"the page shows errors: {errors}")


def open_app(spec: PageSpec, query: dict[str, str]) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=RUN_TIMEOUT)
    at.secrets = dict(SECRETS)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    if spec is not PAGES[0]:
        at.switch_page(f"app_pages/{spec.file}").run()
    _check(at)
    title = at.title[0].value if at.title else ""
    if not str(title).startswith(spec.title):
        raise RuntimeError(f"expected the page {spec.title!r}, got {title!r}")
    return at


def open_pages(specs: list[PageSpec], query: dict[str, str]) -> dict[PageSpec, AppTest]:
    """Each page opened once: also the warm-up (imports, first connections)."""
    return {spec: open_app(spec, query) for spec in specs}


def one_round(pages: dict[PageSpec, AppTest]) -> dict[PageSpec, tuple[Sample, Sample]]:
    """Every page once cold, then at once again warm (the same view, from the caches)."""
    samples = {}
    for spec, at in pages.items():
        st.cache_data.clear()
        cold = _run(at)
        samples[spec] = (cold, _run(at))
    return samples


def measure(specs: list[PageSpec], query: dict[str, str], runs: int) -> list[PageResult]:
    pages = open_pages(specs, query)
    results = {spec: PageResult(spec, [], []) for spec in specs}
    for _ in range(runs):
        for spec, (cold, warm) in one_round(pages).items():
            results[spec].cold.append(cold)
            results[spec].warm.append(warm)
    return list(results.values())


def work(specs: list[PageSpec], query: dict[str, str]) -> None:
    """A worker of ``--baseline``: open every page, then one round per request."""
    pages = open_pages(specs, query)

    def times() -> dict[str, list[float]]:
        out = {}
        for spec, (cold, warm) in one_round(pages).items():
            out[f"{spec.title}, cold"] = [cold.ms]
            out[f"{spec.title}, warm"] = [warm.ms]
        return out

    _baseline.serve(times)


# ---------------------------------------------------------------------- the database


# From the monthly rollup: counting 100M generations would take longer than the pages.
_ORG_GENERATIONS: Final = (
    "SELECT o.id, o.name, coalesce(sum(m.generations), 0) AS n FROM organizations o "
    "LEFT JOIN organization_monthly_usage m ON m.organization_id = o.id GROUP BY o.id, o.name "
)
_LARGEST: Final = text(_ORG_GENERATIONS + "ORDER BY n DESC, o.id LIMIT 1")
_DEFAULT: Final = text(_ORG_GENERATIONS + "ORDER BY o.name, o.id LIMIT 1")  # the app's default


_CHOSEN: Final = text(_ORG_GENERATIONS + "HAVING o.id = :id")


def pick_organization(url: str, which: str) -> tuple[int, str, int, str]:
    """(id, name, generations) of the organization the pages will show (the largest,
    the app's default or an id), and the server's version."""
    query = {"largest": _LARGEST, "default": _DEFAULT}.get(which, _CHOSEN)
    direct = create_direct_engine(url)
    try:
        with direct.connect() as conn:
            found = conn.execute(query, {"id": int(which)} if query is _CHOSEN else {})
            row = found.one_or_none()
            if row is None:
                raise SystemExit(f"no organization {which} in the database")
            server_version = conn.execute(text("SHOW server_version")).scalar_one()
    finally:
        direct.dispose()
    return int(row.id), str(row.name), int(row.n), str(server_version)


@contextlib.contextmanager
def app_database(url: str) -> Iterator[None]:
    """Point the app at ``url`` with fresh engine and caches."""
    os.environ["DATABASE_URL"] = url
    os.environ.pop("DIRECT_URL", None)
    dispose_engine()
    st.cache_data.clear()
    st.cache_resource.clear()
    try:
        yield
    finally:
        dispose_engine()
        st.cache_data.clear()
        st.cache_resource.clear()


# ---------------------------------------------------------------------- reporting


def machine() -> str:
    cpus = os.cpu_count()
    model = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=True
        ).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    load1, load5, _ = os.getloadavg()
    return f"{cpus} CPUs ({model}), load average {load1:.2f} / {load5:.2f} at the start"


def table(results: list[PageResult]) -> str:
    lines = [
        "| page | cold p50 ms | cold p95 ms | cold SQL: statements, p50 ms | "
        "warm p50 ms | warm p95 ms | cold p95 <= 300 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | :---: |",
    ]
    for r in results:
        cold = [s.ms for s in r.cold]
        warm = [s.ms for s in r.warm]
        statements = statistics.median(s.statements for s in r.cold)
        sql_ms = statistics.median(s.sql_ms for s in r.cold)
        p95 = _baseline.percentile(cold, 0.95)
        lines.append(
            f"| {r.spec.title} | {_baseline.percentile(cold, 0.5):,.0f} | {p95:,.0f} | "
            f"{statements:.0f}, {sql_ms:,.0f} | {_baseline.percentile(warm, 0.5):,.0f} | "
            f"{_baseline.percentile(warm, 0.95):,.0f} | {'yes' if p95 <= TARGET_MS else '**no**'} |"
        )
    return "\n".join(lines)


def _organization(value: str) -> str:
    if value in ("largest", "default") or value.isdigit():
        return value
    raise argparse.ArgumentTypeError("largest, default or an organization id")


def _databases(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """(heading, URL) of each database to measure: the one given, or each size's load."""
    if args.database_url:
        yield f"{make_url(args.database_url).database}, as it is", args.database_url
        return
    # Loading is the parent's alone: a --baseline worker is given the database's URL.
    from benchmarks.queries.database import (
        LoadParameters,
        bench_target,
        database_name,
        load_unless_loaded,
        prepare_schema,
    )

    for size in (int(s) for s in args.sizes.split(",")):
        target = bench_target(database_name(DATABASE_PREFIX, size))
        prepare_schema(target)
        parameters = LoadParameters(args.orgs, size, args.days, args.seed)
        load_unless_loaded(target, parameters, reload=args.reload)
        heading = (
            f"{size:,} generations ({args.orgs} organizations, {args.days} days, "
            f"seed {args.seed}; {target.description})"
        )
        yield heading, target.url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default="250000,1000000",
        help="generations per load, comma-separated (default 250000,1000000)",
    )
    parser.add_argument("--runs", type=int, default=20, help="cold and warm runs per page")
    parser.add_argument("--orgs", type=int, default=40, help="organizations (default 40)")
    parser.add_argument("--days", type=int, default=120, help="days of history (default 120)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--range", default="30d", help="the Dates filter (default 30d)")
    parser.add_argument(
        "--org",
        type=_organization,
        default="largest",
        help="the organization shown: the one with most generations (largest), the app's "
        "default or an id",
    )
    parser.add_argument("--pages", default="", help="only these url paths, comma-separated")
    parser.add_argument("--reload", action="store_true", help="load the data even if present")
    parser.add_argument("--database-url", help="measure this database as it is, without --sizes")
    parser.add_argument(
        "--now",
        type=instant,
        help="the pages' clock (ISO 8601 with an offset, e.g. 2026-12-07T23:30Z), fixed: "
        "a day inside a load that ended before today; default the wall clock",
    )
    _baseline.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.now is not None:
        fixed = args.now
        clock.now = lambda: fixed

    warnings.filterwarnings("ignore")
    # Quiet "No runtime found" and "missing ScriptRunContext", which AppTest provokes.
    st_config.set_option("logger.level", "error")
    streamlit_logger.set_log_level("error")
    for name in IDENTITY_ENV:
        os.environ.pop(name, None)
    # An explicit single user: the app refuses the [dev] identity alone on a database
    # that is not the embedded one (BENCH_DATABASE_URL).
    os.environ["DASHBOARD_USER"] = SECRETS["dev"]["user"]
    wanted = {p.strip() for p in args.pages.split(",") if p.strip()}
    specs = [spec for spec in PAGES if not wanted or spec.url_path in wanted]

    if args.json:
        if not args.database_url:
            parser.error("--json needs --database-url")
        org_id = pick_organization(args.database_url, args.org)[0]
        _install_clock()
        with app_database(args.database_url):
            work(specs, {"org": str(org_id), "range": args.range})
        return 0

    print(f"Machine: {machine()}")
    print(
        f"Runs per page: {args.runs} cold + {args.runs} warm"
        f"{f', alternating with {args.baseline}' if args.baseline else ''}; "
        f"filters: range={args.range}, organization: {args.org}\n"
    )
    if not args.baseline:
        _install_clock()
    for heading, url in _databases(args):
        org_id, org_name, org_generations, version = pick_organization(url, args.org)
        print(
            f"### {heading}\n\nPostgreSQL {version}. Organization shown: {org_name} "
            f"(id {org_id}, {org_generations:,} generations)\n",
            flush=True,
        )
        if args.baseline:
            pages = ",".join(spec.url_path for spec in specs)
            comparison = _baseline.compare(
                "benchmark_pages.py",
                [
                    "--database-url",
                    url,
                    "--org",
                    str(org_id),
                    "--range",
                    args.range,
                    "--pages",
                    pages,
                    *(["--now", args.now.isoformat()] if args.now else []),
                ],
                ref=args.baseline,
                rounds=args.runs,
            )
            print(*comparison.notes, sep="\n", end="\n\n")
            print(comparison.table(), "\n", flush=True)
            continue
        query = {"org": str(org_id), "range": args.range}
        with app_database(url):
            results = measure(specs, query, args.runs)
        print(table(results), "\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
