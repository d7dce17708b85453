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
"""

from __future__ import annotations

import logging
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Final

from dashboard import warmup
from queries.bulk import MAX_FILE_BYTES

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
    # Megabytes: the one upload, a bulk adjustment file, is at most 1,000,000 bytes.
    "server.maxUploadSize": str(math.ceil(MAX_FILE_BYTES / 2**20)),
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


def run(app: Path, streamlit_args: Sequence[str], *, env: Mapping[str, str]) -> int:
    """Serve ``app`` in a child process (this module's :func:`main`) until it ends or this
    process gets SIGTERM or SIGINT; then the child is asked to stop (SIGTERM), waited
    for (killed after :data:`STOP_SECONDS`), and this returns. Its exit code; 0 after a
    requested stop."""
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
        child = subprocess.Popen(
            [sys.executable, "-m", "cli.server", str(app), *streamlit_args], env=dict(env)
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


def main(argv: list[str]) -> None:
    # The warm-up's few lines (each step and its time) go to the server's log.
    log = logging.getLogger(warmup.__name__)
    log.setLevel(logging.INFO)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    from streamlit.web import cli

    app, *options = argv
    warmup.start()
    # Ours before the caller's: after a `--`, the rest are the script's own arguments.
    sys.argv = ["streamlit", "run", app, *settings_flags(options, os.environ), *options]
    cli.main()


if __name__ == "__main__":
    main(sys.argv[1:])
