"""A benchmark side by side with a git ref (``--baseline REF``): the same measurement of
REF's code and of this checkout's, in alternating rounds, in one table.

REF is checked out into a temporary ``git worktree add --detach``, removed afterwards
(also on an error, Ctrl-C or SIGTERM). The rounds alternate sides (``alternate``), REF
first in even rounds and this checkout first in odd ones, so machine noise and any order
effect hit both alike; each side warms up once before the first round, not in a round.
"HEAD" in the table is this checkout's working tree, edits included (it says "edited").

The page and forecast benchmarks measure each side with a *worker* (``compare``): a
child process that warms up, then answers "round" with one sample per case, as JSON on
its stdout (``--json``, ``serve``). The browser and start-up benchmarks serve each
side's app and time both from the same browser: there the instrument is the browser and
only the served code differs. Which script a worker runs:

- this checkout: its own script, on its own packages;
- REF: REF's copy of the script when it speaks this module's protocol (``PROTOCOL``),
  so its measurement matches its code; otherwise this checkout's script (the same
  harness) with REF's packages first on ``sys.path``. The harness imports this module
  by its bare name from ``scripts/`` (the script's own folder, first on ``sys.path``),
  so it stays this checkout's; everything else it imports (``dashboard``, ``queries``,
  ``tooling``, ``benchmarks``) is REF's, which the worker checks. A name REF lacks stops
  the worker with the import error: choose a newer REF.

Which Python: when REF's ``uv.lock`` is this checkout's, this environment with
``PYTHONPATH=<worktree>``, so the same interpreter and libraries run both sides and the
table compares the project's code alone (and nothing is installed). When the locks
differ, the library change is part of what changed since REF: REF runs in its own locked
environment, ``uv run --frozen --project <worktree>`` (synced into the worktree, then
removed with it). A REF without a ``uv.lock`` runs in this environment.

The database is shared and stays at this checkout's schema: migrations are additive, so
REF's code reads it as is. REF's worktree is given the migrations added since REF, so
its schema check (``queries.schema_version``) accepts the database; the output says so.
A REF with a migration this checkout lacks is refused: run from the newer checkout.
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any, Final, Protocol

# A worker's messages carry it; REF's copy of a script is used only if its _baseline.py
# declares the same (the line below, verbatim).
PROTOCOL: Final = 1
_DECLARATION: Final = f"PROTOCOL: Final = {PROTOCOL}\n"
ROOT: Final = Path(__file__).resolve().parents[1]
MIGRATIONS: Final = Path("migrations") / "versions"


def add_arguments(parser: argparse.ArgumentParser, *, worker: bool = True) -> None:
    """``--baseline REF`` and, for a script measured by workers, their ``--json``."""
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="also measure this git ref (a tag, main~5, a commit) in alternating rounds, "
        "and print both side by side",
    )
    if not worker:
        return
    parser.add_argument(
        "--json",
        action="store_true",
        help="be a worker for --baseline: warm up, then one round per 'round' line on stdin, "
        "as JSON on stdout",
    )


# ---------------------------------------------------------------------- the checkout


@dataclass(frozen=True, slots=True)
class Checkout:
    """REF in a temporary worktree, and what sharing the database means for it."""

    ref: str
    commit: str
    path: Path
    schema: str

    @property
    def label(self) -> str:
        short = self.commit[:9]
        return self.ref if self.ref.startswith(short) else f"{self.ref} ({short})"

    def notes(self, ran: str, rounds: int, *, repo: Path = ROOT) -> tuple[str, str]:
        """What the output says about REF's side: what ran, in which Python, the schema."""
        python = (
            "this Python environment (the same uv.lock)"
            if python_for(self.path, repo=repo)[0] == [sys.executable]
            else "its own locked environment (uv.lock differs)"
        )
        return f"{self.label} ran {ran}, in {python}; {rounds} alternating rounds.", self.schema


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def current_label(repo: Path = ROOT) -> str:
    """This checkout as the table names it: HEAD, its commit, and whether it is edited."""
    commit = _git(repo, "rev-parse", "--short=9", "HEAD")
    edited = _git(repo, "status", "--porcelain", "--untracked-files=no")
    return f"HEAD ({commit}{', edited' if edited else ''})"


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the worktree is removed on either."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave the handler alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def checkout(ref: str, *, repo: Path = ROOT) -> Iterator[Checkout]:
    """``ref`` checked out, detached, in a temporary worktree of ``repo``; removed after."""
    commit = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    folder = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
    path = folder / "tree"
    with _sigterm_as_interrupt():
        try:
            _git(repo, "worktree", "add", "--detach", "--quiet", str(path), commit)
            yield Checkout(ref, commit, path, _share_schema(repo, path, ref))
        finally:
            subprocess.run(
                ["git", "-C", str(repo), "worktree", "remove", "--force", str(path)],
                capture_output=True,
            )
            shutil.rmtree(folder, ignore_errors=True)
            subprocess.run(["git", "-C", str(repo), "worktree", "prune"], capture_output=True)


def _share_schema(repo: Path, tree: Path, ref: str) -> str:
    """Give REF's worktree the migrations added since REF; say what that means."""
    ours = repo / MIGRATIONS
    theirs = tree / MIGRATIONS
    names = {p.name for p in ours.glob("*.py")}
    old = {p.name for p in theirs.glob("*.py")}
    if old - names:
        raise SystemExit(
            f"{ref} has migrations this checkout lacks ({', '.join(sorted(old - names))}): "
            "the shared database is at this checkout's schema. Run from the newer checkout."
        )
    added = sorted(names - old)
    if not added:
        return f"{ref} and this checkout have the same schema."
    theirs.mkdir(parents=True, exist_ok=True)
    for name in added:
        shutil.copy2(ours / name, theirs / name)
    return (
        f"The database is at this checkout's schema, {len(added)} "
        f"{'migration' if len(added) == 1 else 'migrations'} newer than {ref} "
        f"({', '.join(added)}); migrations are additive, so {ref}'s code reads it "
        "as is (its worktree was given them, so its schema check accepts the database)."
    )


# ---------------------------------------------------------------------- the sides


def python_for(
    tree: Path, *, repo: Path = ROOT, env: Mapping[str, str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """The command that starts Python on ``tree``'s code, and its environment (``env``,
    by default this process's, with ``tree`` first on the path)."""
    base = os.environ if env is None else env
    unset = ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "PYTHONPATH")
    out = {k: v for k, v in base.items() if k not in unset}
    out["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), base.get("PYTHONPATH")]))
    # The embedded server is this checkout's: REF's code must recognise it as the demo
    # one (its identity rules), not look for a cluster in its empty worktree.
    out.setdefault("DASHBOARD_PGDATA", str(repo / ".pgdata"))
    lock = tree / "uv.lock"
    if tree == repo or not lock.exists() or filecmp.cmp(lock, repo / "uv.lock", shallow=False):
        return [sys.executable], out
    return ["uv", "run", "--quiet", "--frozen", "--project", str(tree), "python"], out


def speaks_protocol(tree: Path, script: str) -> bool:
    """Does ``tree``'s copy of ``scripts/<script>`` run as a worker of this protocol?"""
    own, helper = tree / "scripts" / script, tree / "scripts" / "_baseline.py"
    return (
        own.exists()
        and helper.exists()
        and "_baseline.serve(" in own.read_text()
        and _DECLARATION in helper.read_text()
    )


class Worker:
    """One side's measuring process: warmed up once, then one round per request."""

    def __init__(
        self, name: str, command: Sequence[str], env: Mapping[str, str], cwd: Path, hint: str = ""
    ):
        self.name = name
        self._hint = hint
        self._command = list(command)
        self._env = dict(env)
        self._cwd = cwd
        self._process: subprocess.Popen[str] | None = None

    @classmethod
    def for_side(
        cls, name: str, script: str, args: Sequence[str], *, tree: Path, repo: Path = ROOT
    ) -> Worker:
        """``scripts/<script> --json args`` measuring ``tree``'s code (see the module)."""
        own = tree if speaks_protocol(tree, script) else repo
        python, env = python_for(tree, repo=repo)
        hint = (
            ""
            if own == tree
            else f" (this checkout's script on {name}'s packages: if they lack what it "
            "measures, choose a newer REF)"
        )
        command = [*python, str(own / "scripts" / script), "--json", *args]
        return cls(name, command, env, tree, hint)

    def __enter__(self) -> Worker:
        self._process = subprocess.Popen(
            self._command,
            cwd=self._cwd,
            env=self._env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        return self

    def ready(self) -> None:
        """Wait for the warm-up (both sides warm up at once, before any round)."""
        message = self._read()
        if message.get("code") and Path(message["code"]) != self._cwd.resolve():
            raise SystemExit(f"the {self.name} worker measured {message['code']}, not {self._cwd}")

    def __exit__(self, failed: type[BaseException] | None, *exc: object) -> None:
        process = self._process
        if process is None:
            return
        if failed is not None:  # the other side failed, or Ctrl-C: no waiting for a warm-up
            process.kill()
        with contextlib.suppress(OSError):
            if process.stdin:
                process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def round(self) -> dict[str, list[float]]:
        """One sample of every case."""
        assert self._process is not None and self._process.stdin is not None
        try:
            self._process.stdin.write("round\n")
            self._process.stdin.flush()
        except BrokenPipeError:
            pass  # the read below says why it stopped
        samples: dict[str, list[float]] = self._read()["samples"]
        return samples

    def _read(self) -> dict[str, Any]:
        assert self._process is not None and self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            code = self._process.wait()
            raise SystemExit(
                f"the {self.name} worker stopped (exit {code}); its error is above{self._hint}"
            )
        message: dict[str, Any] = json.loads(line)
        if message.get("protocol") != PROTOCOL:
            raise SystemExit(f"the {self.name} worker speaks protocol {message.get('protocol')}")
        return message


def serve(measure_round: Callable[[], Mapping[str, Sequence[float]]]) -> None:
    """A worker's side: say it is ready, then one round per "round" line on stdin."""
    sys.stdout.flush()
    out: IO[str] = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever else the code prints goes to stderr, not into the messages

    def send(message: dict[str, object]) -> None:
        out.write(json.dumps({"protocol": PROTOCOL, **message}) + "\n")
        out.flush()

    # Where the measured code came from, so the parent can check each side ran its own.
    queries = sys.modules.get("queries")
    code = str(Path(queries.__file__).resolve().parents[1]) if queries and queries.__file__ else ""
    send({"ready": True, "code": code})
    for line in sys.stdin:
        if line.strip() != "round":
            raise SystemExit(f"a worker expects 'round', got {line.strip()!r}")
        send({"samples": {case: list(values) for case, values in measure_round().items()}})


@dataclass(frozen=True, slots=True)
class Comparison:
    """Both sides' samples per case, named, and how REF was run."""

    baseline: tuple[str, dict[str, list[float]]]
    current: tuple[str, dict[str, list[float]]]
    notes: tuple[str, ...]

    def table(self, *, unit: str = "ms", digits: int = 0) -> str:
        return table(self.baseline, self.current, unit=unit, digits=digits)


def compare(
    script: str, args: Sequence[str], *, ref: str, rounds: int, repo: Path = ROOT
) -> Comparison:
    """``scripts/<script> --json args`` on REF's code and on this checkout's, alternating."""
    current_name = current_label(repo)
    with checkout(ref, repo=repo) as tree:
        script_used = (
            "its own copy of the script"
            if speaks_protocol(tree.path, script)
            else "this checkout's script on its packages (its own script predates --json)"
        )
        notes = tree.notes(script_used, rounds, repo=repo)
        baseline = Worker.for_side(tree.label, script, args, tree=tree.path, repo=repo)
        current = Worker.for_side(current_name, script, args, tree=repo, repo=repo)
        with baseline, current:
            old, new = alternate(baseline, current, rounds)
    return Comparison((tree.label, old), (current_name, new), notes)


class Side(Protocol):
    """What a round measures on one side: a worker process, or a server in a browser."""

    @property
    def name(self) -> str: ...

    def ready(self) -> None: ...

    def round(self) -> dict[str, list[float]]: ...


def alternate(
    baseline: Side, current: Side, rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """``rounds`` rounds of each, alternating sides and which goes first."""
    baseline.ready()
    current.ready()
    # By position, not name: REF may be this very commit.
    before: dict[str, list[float]] = {}
    after: dict[str, list[float]] = {}
    for index in range(rounds):
        order = ((baseline, before), (current, after))
        for side, collected in order if index % 2 == 0 else reversed(order):
            for case, values in side.round().items():
                collected.setdefault(case, []).extend(values)
    return before, after


# ---------------------------------------------------------------------- the table


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) with linear interpolation, as numpy's default."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def table(
    baseline: tuple[str, Mapping[str, Sequence[float]]],
    current: tuple[str, Mapping[str, Sequence[float]]],
    *,
    unit: str = "ms",
    digits: int = 0,
) -> str:
    """One row per case: each side's p50 / p95 and this checkout's p95 over REF's
    ("before" is REF, "now" this checkout)."""
    (old_name, old), (new_name, new) = baseline, current

    def cell(values: Sequence[float] | None) -> str:
        if not values:
            return "—"
        p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
        return f"{p50:,.{digits}f} / {p95:,.{digits}f}"

    lines = [
        f"| case | before: {old_name} p50 / p95 {unit} | now: {new_name} p50 / p95 {unit} | "
        "now/before p95 |",
        "| --- | ---: | ---: | ---: |",
    ]
    for case in [*new, *(c for c in old if c not in new)]:
        before, after = old.get(case), new.get(case)
        ratio = "—"
        if before and after and percentile(before, 0.95) > 0:
            ratio = f"{percentile(after, 0.95) / percentile(before, 0.95):.2f}×"
        lines.append(f"| {case} | {cell(before)} | {cell(after)} | {ratio} |")
    return "\n".join(lines)
