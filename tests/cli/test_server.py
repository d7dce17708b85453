"""`dashboard serve`'s launcher passes the server's safety settings itself, whatever the
working directory (the server started from another folder is in tests/dashboard/
test_browser.py)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
from streamlit import config

from cli.server import SETTINGS, env_var, settings_flags
from queries import embedded_server
from queries.bulk import MAX_FILE_BYTES
from tests.conftest import PgServer, _recreate
from tooling import embedded, schema

ROOT = Path(__file__).resolve().parents[2]


def _as_flags(settings: dict[str, str]) -> list[str]:
    return [part for key, value in settings.items() for part in (f"--{key}", value)]


def test_every_setting_is_passed_as_a_flag_when_nothing_else_sets_it() -> None:
    assert settings_flags([], {}) == _as_flags(dict(SETTINGS))
    for key in (
        "server.address",
        "server.enableXsrfProtection",
        "server.enableCORS",
        "server.maxUploadSize",
        "server.runOnSave",
        "server.fileWatcherType",
        "client.toolbarMode",
        "client.showErrorDetails",
        "browser.gatherUsageStats",
    ):
        assert key in SETTINGS


@pytest.mark.parametrize(
    ("args", "env", "left_out"),
    [
        (["--server.address", "0.0.0.0", "--server.port", "8600"], {}, "server.address"),
        (["--server.address=0.0.0.0"], {}, "server.address"),
        ([], {"STREAMLIT_SERVER_ADDRESS": "0.0.0.0"}, "server.address"),
        ([], {"STREAMLIT_SERVER_MAX_UPLOAD_SIZE": "5"}, "server.maxUploadSize"),
    ],
)
def test_a_setting_given_to_serve_as_a_flag_or_variable_wins(
    args: list[str], env: dict[str, str], left_out: str
) -> None:
    expected = {key: value for key, value in SETTINGS.items() if key != left_out}
    assert settings_flags(args, env) == _as_flags(expected)


def test_a_blank_variable_sets_nothing() -> None:
    assert settings_flags([], {"STREAMLIT_SERVER_ADDRESS": " "}) == _as_flags(dict(SETTINGS))


def test_the_variables_are_the_ones_streamlit_reads() -> None:
    config.get_config_options()
    for key in SETTINGS:
        assert env_var(key) == config._config_options_template[key].env_var


def test_the_project_config_says_what_serve_passes() -> None:
    # `streamlit run` in the project folder reads .streamlit/config.toml: the same server.
    with (ROOT / ".streamlit" / "config.toml").open("rb") as handle:
        sections = tomllib.load(handle)
    written = {
        f"{section}.{key}": str(value).lower() if isinstance(value, bool) else str(value)
        for section, values in sections.items()
        for key, value in values.items()
    }
    assert written == dict(SETTINGS)


def test_the_upload_limit_takes_a_whole_bulk_file_and_not_much_more() -> None:
    megabytes = int(SETTINGS["server.maxUploadSize"])
    assert MAX_FILE_BYTES <= megabytes * 2**20 < MAX_FILE_BYTES + 2**20


# ------------------------------------------------------------------ stopping the server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name, in parentheses, may hold spaces: the fields follow it.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_sigterm_to_dashboard_serve_stops_streamlit_and_frees_the_port(
    test_server: PgServer, tmp_path: Path
) -> None:
    """A service manager stopping `dashboard serve` stops the whole server: the command
    exits, its Streamlit child is gone (not orphaned) and nothing listens any more."""
    _recreate(test_server, "dashboard_test_serve_stop")
    url = test_server.url("dashboard_test_serve_stop")
    schema.upgrade(url=url)
    secrets = tmp_path / "secrets.toml"
    secrets.write_text("")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DIRECT_URL", "DASHBOARD_USER", "DASHBOARD_ROLE", "DASHBOARD_ROLES")
    }
    # A real database to serve (its data folder is an empty one): nothing is seeded.
    env |= {
        "DATABASE_URL": url,
        "DASHBOARD_USER": "ops@example.com",
        "DASHBOARD_ROLE": "admin",
        "DASHBOARD_PGDATA": str(tmp_path / "no-cluster"),
    }
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "cli.main",
        "serve",
        "--server.port",
        str(port),
        "--secrets.files",
        str(secrets),
    ]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not _healthy(port):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        children = _children(process.pid)
        assert children, "dashboard serve runs Streamlit as its child"

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log.read_text()
        assert not _listening(port)
        assert not [pid for pid in children if _alive(pid)]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sigterm_while_dashboard_serve_prepares_stops_the_embedded_database_it_started(
    tmp_path: Path,
) -> None:
    """Stopped while it loads demo data into the embedded database it has just started,
    `dashboard serve` exits and stops that database too, rather than leaving it running."""
    folder = Path(tempfile.mkdtemp(prefix="emb-"))  # short: the socket lives in it
    folder.chmod(0o777)  # the server runs as the wheel's unprivileged user under root
    pgdata = folder / "pgdata"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "DIRECT_URL", "DATABASE_READ_URL")
    }
    env |= {"DASHBOARD_PGDATA": str(pgdata), "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--server.port", str(_free_port())],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while "loading demo data" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert embedded_server.running_socket(pgdata) is not None

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text()
        assert "stopped the embedded database" in log.read_text()
        assert embedded_server.running_socket(pgdata) is None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        embedded.stop(pgdata)
        shutil.rmtree(folder, ignore_errors=True)


def test_ctrl_c_while_dashboard_serve_prepares_stops_everything_without_a_traceback(
    tmp_path: Path,
) -> None:
    """Ctrl-C in the terminal (SIGINT to the whole process group) while `dashboard serve`
    loads demo data: the command stops the database it started and exits 0, and the
    server's process, started early and still waiting, ends quietly with it."""
    folder = Path(tempfile.mkdtemp(prefix="emb-"))  # short: the socket lives in it
    folder.chmod(0o777)  # the server runs as the wheel's unprivileged user under root
    pgdata = folder / "pgdata"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "DIRECT_URL", "DATABASE_READ_URL")
    }
    env |= {"DASHBOARD_PGDATA": str(pgdata), "PYTHONUNBUFFERED": "1"}
    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--server.port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            # Its own process group, with Ctrl-C's default meaning (as in a terminal).
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        deadline = time.monotonic() + 120
        while "loading demo data" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)

        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=60) == 0, log.read_text()
        assert "stopped the embedded database" in log.read_text()
        assert "Traceback" not in log.read_text()
        assert embedded_server.running_socket(pgdata) is None
        assert _processes_naming(f"--server.port {port}") == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        embedded.stop(pgdata)
        shutil.rmtree(folder, ignore_errors=True)


def _broken_cluster(folder: Path) -> Path:
    """A data folder the embedded server cannot start from: ``PG_VERSION`` and nothing
    else (a cluster whose files were lost), open to the wheel's unprivileged user."""
    folder.chmod(0o777)
    pgdata = folder / "pgdata"
    pgdata.mkdir(mode=0o777)
    (pgdata / "PG_VERSION").write_text("18\n")
    return pgdata


def _processes_naming(text: str) -> list[int]:
    """The processes whose command line holds ``text`` (Linux /proc)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return [pid for pid in found if _alive(pid)]


def test_an_embedded_database_that_does_not_start_is_one_sentence_and_nothing_is_left(
    tmp_path: Path,
) -> None:
    """`dashboard serve` whose embedded database cannot start says so in one sentence
    with the server's reason, exits 2, and leaves nothing behind: the server's process,
    started early, never listened and is gone."""
    folder = Path(tempfile.mkdtemp(prefix="emb-"))
    pgdata = _broken_cluster(folder)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "DIRECT_URL", "DATABASE_READ_URL")
    }
    env["DASHBOARD_PGDATA"] = str(pgdata)
    port = _free_port()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", "serve", "--server.port", str(port)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith(f"dashboard: The embedded PostgreSQL in {pgdata} did not start (")
        assert "postgresql.conf" in line and f"its log is {pgdata / 'log'}." in line
        assert not _listening(port)
        assert _processes_naming(f"--server.port {port}") == []
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_the_early_server_process_ends_unheard_when_the_command_goes_away() -> None:
    """The server process `dashboard serve` starts before the database is ready listens
    only once it is handed its environment: when its stdin closes instead (a refused
    start, a command that died), it ends by itself and never listened."""
    port = _free_port()
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.server",
            "--wait-for-environment",
            str(ROOT / "dashboard" / "app.py"),
            "--server.port",
            str(port),
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert child.stdin is not None
        child.stdin.close()
        assert child.wait(timeout=120) == 0
        assert not _listening(port)
        assert child.stdout is not None
        assert b"Traceback" not in child.stdout.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
