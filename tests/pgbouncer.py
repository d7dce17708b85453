"""Start Debian's PgBouncer in transaction mode in front of the test server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def pgbouncer(
    *, host: str, port: int, database: str, user: str, password: str | None, pool_size: int = 2
) -> Iterator[str]:
    """Run PgBouncer (pool_mode=transaction) and yield a postgresql:// URL through it."""
    if not Path(PGBOUNCER).exists():
        raise FileNotFoundError("pgbouncer is not installed (apt-get install -y pgbouncer)")
    listen = _free_port()
    workdir = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    workdir.chmod(0o777)
    auth = workdir / "userlist.txt"
    auth.write_text(f'"{user}" "{password or ""}"\n')
    backend = f"host={host} port={port} dbname={database} user={user}"
    if password:
        backend += f" password={password}"
    ini = workdir / "pgbouncer.ini"
    ini.write_text(
        f"""
[databases]
{database} = {backend}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = {"plain" if password else "trust"}
auth_file = {auth}
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 100
server_reset_query =
ignore_startup_parameters = extra_float_digits,options
logfile = {workdir / "pgbouncer.log"}
pidfile = {workdir / "pgbouncer.pid"}
"""
    )
    for path in workdir.iterdir():
        path.chmod(0o666)
    command = [PGBOUNCER, str(ini)]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # PgBouncer refuses to run as root; use the embedded server's system user.
        command[1:1] = ["-u", "embedded_postgres"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", listen), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read().decode() if process.stdout else ""
                    log = workdir / "pgbouncer.log"
                    raise RuntimeError(
                        f"pgbouncer did not start: {output}\n"
                        f"{log.read_text() if log.exists() else ''}"
                    ) from None
                time.sleep(0.05)
        credentials = f"{user}:{password}" if password else user
        yield f"postgresql://{credentials}@127.0.0.1:{listen}/{database}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
