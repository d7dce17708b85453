"""The server start: ``dashboard serve`` runs ``python -m cli.server APP [streamlit
options]`` as its child (:func:`run`), and that child is ``streamlit run APP`` with the
dashboard's start-up work done in the background as the server starts
(:mod:`dashboard.warmup`: the imports, the pages compiled, the default view read), so
visitors do not wait for imports, compiling or cold reads; one who comes at once gets
the app's progress sign within a second and shares the imports already under way.

The parent stays in charge of its child: SIGTERM or SIGINT to ``dashboard serve`` (a
service manager stopping it, Ctrl-C) stops Streamlit first, waits for it, and only then
does the command stop the embedded database it started, so neither is left behind.

Streamlit reads ``.streamlit/config.toml`` from the working directory only: started
from any other folder, it would listen on every address with its own defaults (uploads
up to 200 MB, usage statistics, developer menus). So the launcher passes the settings
that keep the server safe itself, as command-line flags (:data:`SETTINGS`), wherever it
is started from. A setting given to ``dashboard serve`` as a flag, or as a
``STREAMLIT_*`` environment variable, still wins: that is how a deployment opts in to
another address. A ``config.toml`` in the working directory does not (flags outrank
config files), so a stray file cannot open the server up.

The child is started early (:func:`prestart`): ``dashboard serve`` starts it first
thing, and while the command checks the identity configuration and starts, migrates and
checks the database, the child imports Streamlit and the app's modules on the other
core. It listens only once :func:`run` hands it its environment (the database's URLs)
on its stdin; a start refused or failed before that ends it without its ever having
listened, and it ends by itself if the command goes away (its stdin closes).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Final

from dashboard import warmup

# The one description of how the server runs; .streamlit/config.toml says the same for
# `streamlit run` started in the project folder (a test holds them equal).
SETTINGS: Final[Mapping[str, str]] = {
    # Only this machine can connect; another address is an explicit opt-in.
    "server.address": "127.0.0.1",
    "server.headless": "true",  # no browser opened, no e-mail prompt on the terminal
    "server.showEmailPrompt": "false",
    # Code on disk is not watched: an edit never reruns or reloads a served app.
    "server.runOnSave": "false",
    "server.fileWatcherType": "none",
    # Cross-site requests refused: uploads need the XSRF token, other origins get no
    # Access-Control-Allow-Origin.
    "server.enableCORS": "true",
    "server.enableXsrfProtection": "true",
    # Megabytes: the one upload, a bulk adjustment file, is at most
    # queries.bulk.MAX_FILE_BYTES (1,000,000) bytes; a test holds the two together (the
    # child does not import the data layer before it listens).
    "server.maxUploadSize": "1",
    "server.enableStaticServing": "false",  # no ./static folder served
    "server.enableAgentApi": "false",  # no HTTP API that drives the app
    "browser.gatherUsageStats": "false",  # no usage statistics sent to Streamlit
    "client.toolbarMode": "minimal",  # no developer menu (rerun, clear cache, deploy)
    "client.showErrorDetails": "none",  # an unexpected error never shows a traceback
    "client.showErrorLinks": "false",  # nor offers to search the web with its text
    "theme.base": "light",
    "theme.primaryColor": "#2563eb",
    "theme.backgroundColor": "#ffffff",
    "theme.font": "sans-serif",
}


def env_var(key: str) -> str:
    """The environment variable Streamlit reads for ``key``: ``server.maxUploadSize`` ->
    ``STREAMLIT_SERVER_MAX_UPLOAD_SIZE``."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key.replace(".", "_"))
    return f"STREAMLIT_{snake.upper()}"


def settings_flags(args: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """``--key value`` for each of :data:`SETTINGS` that ``args`` (``--key value`` or
    ``--key=value``) and ``env`` (``STREAMLIT_...``) do not set themselves."""
    given = {arg.split("=", 1)[0] for arg in args if arg.startswith("--")}
    flags: list[str] = []
    for key, value in SETTINGS.items():
        if f"--{key}" in given or env.get(env_var(key), "").strip():
            continue
        flags += [f"--{key}", value]
    return flags


# How long Streamlit may take to shut down once asked before it is killed.
STOP_SECONDS: Final = 10.0
_STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
# The child's first argument when it waits for its environment on stdin (prestart).
WAIT_FOR_ENVIRONMENT: Final = "--wait-for-environment"


def _command(app: Path, streamlit_args: Sequence[str], *, waits: bool) -> list[str]:
    first = [WAIT_FOR_ENVIRONMENT] if waits else []
    return [sys.executable, "-m", "cli.server", *first, str(app), *streamlit_args]


@dataclass(slots=True)
class _Waiting:
    """A child started by :func:`prestart`, waiting for its environment."""

    app: Path
    streamlit_args: tuple[str, ...]
    child: subprocess.Popen[bytes]
    taken: bool = False


_waiting: list[_Waiting] = []


@contextlib.contextmanager
def prestart(app: Path, streamlit_args: Sequence[str]) -> Iterator[None]:
    """Start the server's process for ``app`` now, before its environment is known, so
    it imports Streamlit and the app meanwhile; :func:`run` with the same ``app`` and
    arguments inside the block takes it over. On leaving the block, a child not taken
    (a refusal, an error, Ctrl-C) is stopped; it never listened."""
    child = subprocess.Popen(
        _command(app, streamlit_args, waits=True), stdin=subprocess.PIPE, env=dict(os.environ)
    )
    waiting = _Waiting(app, tuple(streamlit_args), child)
    _waiting.append(waiting)
    try:
        yield
    finally:
        _waiting.remove(waiting)
        if not waiting.taken:
            _discard(child)


def _discard(child: subprocess.Popen[bytes]) -> None:
    """Stop a child that was never given its environment."""
    with contextlib.suppress(OSError):
        if child.stdin is not None:
            child.stdin.close()
    if child.poll() is None:
        child.terminate()
    try:
        child.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _take(
    app: Path, streamlit_args: Sequence[str], env: Mapping[str, str]
) -> subprocess.Popen[bytes] | None:
    """The prestarted child for ``app`` and these arguments, handed ``env`` (it listens
    now); None when there is none or it has ended meanwhile."""
    for waiting in _waiting:
        if waiting.taken or waiting.app != app or waiting.streamlit_args != tuple(streamlit_args):
            continue
        waiting.taken = True
        child = waiting.child
        try:
            assert child.stdin is not None
            child.stdin.write(json.dumps(dict(env)).encode() + b"\n")
            child.stdin.close()
        except (BrokenPipeError, OSError):  # it ended: start a fresh one
            _discard(child)
            return None
        return child
    return None


def run(app: Path, streamlit_args: Sequence[str], *, env: Mapping[str, str]) -> int:
    """Serve ``app`` in a child process (this module's :func:`main`; the one
    :func:`prestart` started, if any) until it ends or this process gets SIGTERM or
    SIGINT; then the child is asked to stop (SIGTERM), waited for (killed after
    :data:`STOP_SECONDS`), and this returns. Its exit code; 0 after a requested stop."""
    started: list[subprocess.Popen[bytes]] = []
    asked: list[float] = []  # when a stop was asked

    def stop(signum: int, frame: FrameType | None) -> None:
        if not asked:
            asked.append(time.monotonic())
        for child in started:
            if child.poll() is None:
                child.terminate()

    # Handlers first: a signal that comes while the child starts still reaches it.
    previous = {sig: signal.signal(sig, stop) for sig in _STOP_SIGNALS}
    try:
        child = _take(app, streamlit_args, env) or subprocess.Popen(
            _command(app, streamlit_args, waits=False), env=dict(env)
        )
        started.append(child)
        if asked:
            child.terminate()
        while True:
            try:
                code = child.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if asked and time.monotonic() - asked[0] > STOP_SECONDS:
                    child.kill()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if asked else code


def _environment(stdin: IO[bytes]) -> dict[str, str] | None:
    """The environment :func:`run` sends a prestarted child; None when the command went
    away or stopped the start instead (its end of the pipe closed first)."""
    line = stdin.readline()
    if not line.strip():
        return None
    env = json.loads(line)
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise SystemExit(
            "cli.server: the environment sent on stdin is not a JSON object of strings"
        )
    return env


# What Streamlit's server imports when it starts (streamlit.web.server.Server.start):
# imported while a prestarted child waits, so that its start, once it has the database,
# is little more than binding the port. Internal paths: one that moves is imported by
# the server's start, as before.
SERVER_MODULES: Final = ("streamlit.web.bootstrap", "streamlit.web.server.starlette", "uvicorn")


def _import_server_modules() -> None:
    for name in SERVER_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def main(argv: list[str]) -> None:
    waits = argv[:1] == [WAIT_FOR_ENVIRONMENT]
    interrupt = signal.getsignal(signal.SIGINT)
    if waits:
        argv = argv[1:]
        # Ctrl-C reaches the whole process group: while it waits, that ends it quietly
        # (the command stops the rest), not with a traceback of an import. Unless it is
        # ignored, as for the command itself (started in the background, say).
        if interrupt is not signal.SIG_IGN:
            signal.signal(signal.SIGINT, lambda signum, frame: os._exit(0))
    # The warm-up's few lines (each step and its time) go to the server's log.
    log = logging.getLogger(warmup.__name__)
    log.setLevel(logging.INFO)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    from streamlit.web import cli

    app, *options = argv
    if waits:
        # While it waits: first what the server's own start imports, then (in the
        # warm-up's thread; nobody can visit before it listens) the app's modules.
        _import_server_modules()
        warmup.start(early=True)
        env = _environment(sys.stdin.buffer)
        if env is None:
            # Unheard: nothing to shut down but the warm-up's imports, which need not finish.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        os.environ.clear()
        os.environ.update(env)
        signal.signal(signal.SIGINT, interrupt)
        warmup.server_starting()
    else:
        warmup.start()
    # Ours before the caller's: after a `--`, the rest are the script's own arguments.
    sys.argv = ["streamlit", "run", app, *settings_flags(options, os.environ), *options]
    cli.main()


if __name__ == "__main__":
    main(sys.argv[1:])
