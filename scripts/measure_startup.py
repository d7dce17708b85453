"""How long a browser waits after the dashboard's server starts: to the first frame (the
app's own elements: a progress sign, the title) and to the whole first page.

    uv run python scripts/measure_startup.py [--database-url URL] [--runs N] [--plain]
        [--baseline REF]
    uv run python scripts/measure_startup.py --command [--stopped] [--runs N] [--baseline REF]

Each run starts the server (``python -m cli.server``, the launcher ``dashboard
serve`` uses, or with ``--plain`` a bare ``streamlit run dashboard/app.py`` as before
it; with ``--command``, the whole of ``uv run dashboard serve`` on the embedded demo
database, as a user types it: uv, the embedded server (stopped first with
``--stopped``, as after a reboot), the schema check and the launcher), and at the same moment opens Debian's Chromium (Playwright), which loads the app
as soon as the server answers. It prints, from the process start: when the server
answered its health check, when the page first showed an element of the app (any
element in the main area, or the page menu), when the Overview's title showed, when
the script's first run ended, and when the page had finished drawing (every chart
drawn by plotly). With ``--visit-after S`` the page is opened S seconds after the server
is up (a visitor who comes later), and those times count from opening it. The database is ``--database-url`` or the tests' demo database on the
project's embedded server (``dashboard_test_demo``, made by ``uv run pytest``).

With ``--baseline REF``, REF's server is started the same way from a temporary worktree
on REF's packages (``scripts/_baseline.py``), in runs alternating with this checkout's,
and one table puts the medians and p95 of each side side by side. With ``--command``,
that is ``uv run dashboard serve`` in REF's worktree (its own environment) on this
checkout's embedded database (``DASHBOARD_PGDATA``), stopped before each run of either
side with ``--stopped``.

With ``--command``, each side's environment is synced and its bytecode compiled before
the first run (``uv sync --compile-bytecode``, and the project's folders): Python
writes those caches itself on a first run, unless ``PYTHONDONTWRITEBYTECODE`` is set (as
in this project's sandbox), and then every start compiles every module it imports from
source: the app's and the server's imports took 4.0-4.2 CPU seconds so instead of
1.3 here.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Final

import _baseline
from playwright.sync_api import sync_playwright

ROOT: Final = Path(__file__).resolve().parents[1]
CHROMIUM: Final = "/usr/bin/chromium"
ARGS: Final = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"]
USER: Final = "startup@example.com"

# The app's own frame: its progress sign ("Starting the dashboard…"), a title or the
# page menu; Streamlit's empty containers and its "running" widget do not count.
FRAME_JS: Final = """() => {
  const main = document.querySelector('[data-testid="stMain"]');
  if (main && main.textContent.includes("Starting the dashboard")) return true;
  return !!document.querySelector('[data-testid="stMain"] h1, [data-testid="stSidebarNav"]');
}"""
TITLE_JS: Final = """() => {
  const h1 = document.querySelector('[data-testid="stMain"] h1');
  return !!h1 && h1.textContent.trim().startsWith("Overview");
}"""
SCRIPT_DONE_JS: Final = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  return !!app && app.dataset.testScriptState === "notRunning"
    && !!document.querySelector('[data-testid="stMain"] h1');
}"""
DONE_JS: Final = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.dataset.testScriptState !== "notRunning") return false;
  const h1 = document.querySelector('[data-testid="stMain"] h1');
  if (!h1 || !h1.textContent.trim().startsWith("Overview")) return false;
  for (const chart of document.querySelectorAll('[data-testid="stPlotlyChart"]'))
    if (!chart.querySelector(".main-svg")) return false;
  return !document.querySelector('[data-testid="stSkeleton"]');
}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def embedded_data_dir() -> Path:
    from queries.embedded_server import data_dir

    return data_dir()


def default_database() -> str:
    from tooling import embedded

    return embedded.ensure_running().url("dashboard_test_demo")


def one_run(
    database_url: str | None, *, plain: bool, visit_after: float, tree: Path = ROOT
) -> tuple[float, ...]:
    """One start of ``tree``'s server (``database_url`` None: ``uv run dashboard serve``
    on the embedded demo database): the moments in ``STAGES``, in seconds."""
    port = free_port()
    secrets = Path(tempfile.mkdtemp()) / "secrets.toml"
    secrets.write_text(f'[dev]\nuser = "{USER}"\nrole = "admin"\n')
    urls = ("DATABASE_URL", "DIRECT_URL", "DATABASE_READ_URL")
    env = {k: v for k, v in os.environ.items() if k not in urls}
    env |= {"DASHBOARD_USER": USER, "DASHBOARD_ROLE": "admin"}
    if database_url is None:
        launcher = ["uv", "run", "--locked", "dashboard", "serve"]
        # REF's worktree serves this checkout's embedded database, in its own environment.
        env = {k: v for k, v in env.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")}
        env.setdefault("DASHBOARD_PGDATA", str(embedded_data_dir()))
    else:
        env["DATABASE_URL"] = database_url
        python, env = _baseline.python_for(tree, env=env)
        module = ["-m", "streamlit", "run"] if plain else ["-m", "cli.server"]
        launcher = [*python, *module, "dashboard/app.py"]
    command = [
        *launcher,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--secrets.files",
        str(secrets),
    ]
    url = f"http://127.0.0.1:{port}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        began = time.monotonic()
        process = subprocess.Popen(
            command, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            while not healthy(url):
                if time.monotonic() - began > 60:
                    raise SystemExit("the server did not answer within 60 s")
                time.sleep(0.02)
            up = time.monotonic() - began
            time.sleep(visit_after)
            opened = time.monotonic()
            page.goto(url)
            page.wait_for_function(FRAME_JS, timeout=60_000, polling=20)
            frame = time.monotonic() - began
            page.wait_for_function(TITLE_JS, timeout=60_000, polling=20)
            title = time.monotonic() - began
            page.wait_for_function(SCRIPT_DONE_JS, timeout=60_000, polling=20)
            script = time.monotonic() - began
            page.wait_for_function(DONE_JS, timeout=60_000, polling=50)
            done = time.monotonic() - began
        finally:
            process.terminate()
            process.wait(timeout=10)
            browser.close()
    if visit_after:  # times from opening the page instead
        shift = opened - began
        return up, frame - shift, title - shift, script - shift, done - shift
    return up, frame, title, script, done


STAGES: Final = ("server up", "first frame", "title", "script done", "page drawn")


def compile_environment(tree: Path) -> None:
    """``tree``'s own environment (``uv run`` in it) synced, with its packages' and the
    project's bytecode compiled, so that no measured start installs or compiles."""
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    folders = ["cli", "dashboard", "queries", "tooling", "migrations"]
    for command in (
        ["uv", "sync", "--locked", "--quiet", "--compile-bytecode"],
        ["uv", "run", "--locked", "python", "-m", "compileall", "-q", *folders],
    ):
        subprocess.run(command, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)


class _Starts:
    """One side of --baseline: a fresh start of its server per round."""

    def __init__(
        self,
        name: str,
        tree: Path,
        run: Callable[[Path], tuple[float, ...]],
        *,
        compile_first: bool = False,
    ):
        self.name = name
        self._tree = tree
        self._run = run
        self._compile_first = compile_first

    def ready(self) -> None:
        """Nothing to warm, the start is what is measured; with ``--command``, its
        environment synced and compiled first (:func:`compile_environment`)."""
        if self._compile_first:
            compile_environment(self._tree)

    def round(self) -> dict[str, list[float]]:
        return {stage: [t] for stage, t in zip(STAGES, self._run(self._tree), strict=True)}


def side_by_side(
    ref: str, runs: int, run: Callable[[Path], tuple[float, ...]], *, command: bool = False
) -> None:
    current_name = _baseline.current_label()
    with _baseline.checkout(ref) as tree:
        baseline = _Starts(tree.label, tree.path, run, compile_first=command)
        current = _Starts(current_name, ROOT, run, compile_first=command)
        before, after = _baseline.alternate(baseline, current, runs)
        notes = tree.notes("its server", runs)
        if command:
            notes = (
                f"{tree.label} ran `uv run dashboard serve` in its worktree, in its own "
                f"environment, on this checkout's embedded database; {runs} alternating rounds.",
                notes[1],
            )
    print(*notes, sep="\n", end="\n\n")
    print(_baseline.table((tree.label, before), (current_name, after), unit="s", digits=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--plain", action="store_true", help="bare `streamlit run`")
    parser.add_argument(
        "--visit-after",
        type=float,
        default=0.0,
        help="open the page this many seconds after the server is up; the times after "
        "'server up' are then counted from opening the page",
    )
    parser.add_argument(
        "--command",
        action="store_true",
        help="time `uv run dashboard serve` on the embedded demo database (load it first "
        "with `uv run dashboard seed`)",
    )
    parser.add_argument(
        "--stopped",
        action="store_true",
        help="with --command: stop the embedded database before each run, as after a reboot",
    )
    _baseline.add_arguments(parser, worker=False)
    args = parser.parse_args()
    if args.stopped and not args.command:
        parser.error("--stopped goes with --command")
    if args.command:

        def command_run(tree: Path) -> tuple[float, ...]:
            if args.stopped:
                from tooling import embedded

                embedded.stop()
            return one_run(None, plain=False, visit_after=args.visit_after, tree=tree)

        if args.baseline:
            side_by_side(args.baseline, args.runs, command_run, command=True)
            return
        compile_environment(ROOT)
        report([command_run(ROOT) for _ in range(args.runs)])
        return
    database_url = args.database_url or default_database()
    if args.baseline:
        side_by_side(
            args.baseline,
            args.runs,
            lambda tree: one_run(
                database_url, plain=args.plain, visit_after=args.visit_after, tree=tree
            ),
        )
        return
    report(
        [
            one_run(database_url, plain=args.plain, visit_after=args.visit_after)
            for _ in range(args.runs)
        ]
    )


def report(rows: list[tuple[float, ...]]) -> None:
    line = (
        "server up {:.2f} s, first frame {:.2f} s, title {:.2f} s, script done {:.2f} s, "
        "page drawn {:.2f} s"
    )
    for i, row in enumerate(rows, 1):
        print(f"run {i}: " + line.format(*row))
    print("median: " + line.format(*(statistics.median(c) for c in zip(*rows, strict=True))))


if __name__ == "__main__":
    main()
