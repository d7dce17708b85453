"""``--baseline REF`` (scripts/_baseline.py): REF checked out in a temporary worktree and
always removed, the database's newer migrations given to it, and a benchmark run side by
side with it in one table. Real git repositories, real worker processes, no mocks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.conftest import DEMO_NOW

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "scripts"))  # the scripts import the helper by its bare name
import _baseline  # noqa: E402


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def _worktrees(repo: Path) -> list[str]:
    return [
        line for line in _git(repo, "worktree", "list", "--porcelain").splitlines()
        if line.startswith("worktree ")
    ]  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with release v1 (one migration) and a newer commit (a second one)."""
    repo = tmp_path / "repo"
    versions = repo / "migrations" / "versions"
    versions.mkdir(parents=True)
    _git(repo, "init", "--quiet", "--initial-branch=main")
    (repo / "uv.lock").write_text("same\n")
    (repo / "VERSION").write_text("1\n")
    (versions / "0001_first.py").write_text("# first\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "--quiet", "-m", "v1")
    _git(repo, "tag", "v1")
    (repo / "VERSION").write_text("2\n")
    (versions / "0002_second.py").write_text("# second\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "--quiet", "-m", "v2")
    return repo


def test_ref_is_checked_out_with_the_newer_migrations_and_removed_after(repo: Path) -> None:
    with _baseline.checkout("v1", repo=repo) as tree:
        assert (tree.path / "VERSION").read_text() == "1\n"
        assert sorted(p.name for p in (tree.path / "migrations" / "versions").iterdir()) == [
            "0001_first.py",
            "0002_second.py",
        ]
        assert "1 migration newer than v1 (0002_second.py)" in tree.schema
        assert tree.label == f"v1 ({tree.commit[:9]})"
        assert len(_worktrees(repo)) == 2
    assert not tree.path.exists()
    assert _worktrees(repo) == [f"worktree {repo}"]


@pytest.mark.parametrize("stop", [RuntimeError, KeyboardInterrupt])
def test_the_worktree_is_removed_when_the_run_fails_or_is_interrupted(
    repo: Path, stop: type[BaseException]
) -> None:
    with pytest.raises(stop), _baseline.checkout("HEAD~1", repo=repo) as tree:
        raise stop
    assert not tree.path.exists()
    assert _worktrees(repo) == [f"worktree {repo}"]


def test_a_ref_with_a_migration_this_checkout_lacks_is_refused(repo: Path) -> None:
    _git(repo, "checkout", "--quiet", "v1")
    refused = pytest.raises(SystemExit, match="has migrations this checkout lacks")
    with refused, _baseline.checkout("main", repo=repo):
        pass
    assert _worktrees(repo) == [f"worktree {repo}"]


def test_an_unknown_ref_says_so(repo: Path) -> None:
    with pytest.raises(SystemExit, match="rev-parse"), _baseline.checkout("v9", repo=repo):
        pass


def test_the_same_lock_runs_ref_in_this_environment_another_in_its_own(repo: Path) -> None:
    with _baseline.checkout("v1", repo=repo) as tree:
        python, env = _baseline.python_for(tree.path, repo=repo)
        assert python == [sys.executable]
        assert env["PYTHONPATH"].split(":")[0] == str(tree.path)
        (tree.path / "uv.lock").write_text("older\n")
        python, _ = _baseline.python_for(tree.path, repo=repo)
        assert python[:2] == ["uv", "run"] and str(tree.path) in python


def test_refs_own_script_measures_it_only_if_it_speaks_the_protocol(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "bench.py").write_text("import _baseline\n_baseline.serve(measure)\n")
    assert not _baseline.speaks_protocol(tmp_path, "bench.py")  # no helper: an older REF
    (scripts / "_baseline.py").write_text((ROOT / "scripts" / "_baseline.py").read_text())
    assert _baseline.speaks_protocol(tmp_path, "bench.py")
    ours = _baseline.Worker.for_side("REF", "bench.py", ["--x"], tree=tmp_path, repo=ROOT)
    (scripts / "_baseline.py").write_text("PROTOCOL: Final = 0\n")  # another protocol
    older = _baseline.Worker.for_side("REF", "bench.py", ["--x"], tree=tmp_path, repo=ROOT)
    assert ours._command[-3:] == [str(scripts / "bench.py"), "--json", "--x"]
    assert older._command[-3:] == [str(ROOT / "scripts" / "bench.py"), "--json", "--x"]


class _Counting:
    """A side whose every round is one sample, numbered in the order the rounds ran."""

    def __init__(self, name: str, clock: list[str]):
        self.name = name
        self._clock = clock

    def ready(self) -> None:
        pass

    def round(self) -> dict[str, list[float]]:
        self._clock.append(self.name)
        return {"case": [float(len(self._clock))]}


def test_rounds_alternate_sides_and_who_goes_first_and_keep_same_named_sides_apart() -> None:
    clock: list[str] = []
    before, after = _baseline.alternate(_Counting("HEAD", clock), _Counting("HEAD", clock), 3)
    assert before == {"case": [1.0, 4.0, 5.0]}
    assert after == {"case": [2.0, 3.0, 6.0]}


def test_the_table_puts_both_sides_and_the_ratio_of_their_p95_in_one_row() -> None:
    text = _baseline.table(
        ("v1 (abc)", {"Overview": [10.0, 20.0, 30.0], "Gone": [5.0]}),
        ("HEAD (def)", {"Overview": [5.0, 10.0, 15.0], "New": [1.0]}),
    )
    assert text.splitlines() == [
        "| case | before: v1 (abc) p50 / p95 ms | now: HEAD (def) p50 / p95 ms | now/before p95 |",
        "| --- | ---: | ---: | ---: |",
        "| Overview | 20 / 29 | 10 / 14 | 0.50× |",
        "| New | — | 1 / 1 | — |",
        "| Gone | 5 / 5 | — | — |",
    ]


def test_the_forecast_benchmark_runs_side_by_side_with_head(demo_engine: Engine) -> None:
    before = _worktrees(ROOT)
    url = demo_engine.url.render_as_string(hide_password=False)
    run = subprocess.run(
        [
            sys.executable, str(ROOT / "scripts" / "benchmark_forecast.py"),
            "--database-url", url, "--now", DEMO_NOW.isoformat(),
            "--repeat", "2", "--baseline", "HEAD",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "2 alternating rounds" in run.stdout
    assert "HEAD and this checkout have the same schema." in lines
    header = next(line for line in lines if line.startswith("| case |"))
    assert header.startswith("| case | before: HEAD (") and "| now: HEAD (" in header
    rows = [line.split(" | ")[0] for line in lines if line.startswith("| ") and "×" in line]
    assert rows == ["| quota_forecast", "| usage_spikes", "| low_runway (14 days)"]
    assert _worktrees(ROOT) == before
