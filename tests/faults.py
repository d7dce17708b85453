"""Faults for tests against a real server: a proxy that loses the answer to a COMMIT,
killed backends, a lock held too long (a row's or a whole table's), a webhook that
answers a byte at a time, and the checks that the books survived.

``CommitCutProxy`` sits between an engine and PostgreSQL (127.0.0.1 TCP in front of the
server's Unix socket or TCP port). When armed, it lets the next COMMIT through, waits for
the server's complete answer, drops it and cuts the client's connection: the change is
committed and the client cannot know. Pages' tests use it too::

    proxy = CommitCutProxy.for_server(test_server, database)
    engine = create_runtime_engine(proxy.url)
    proxy.arm_cut_after_commit()
    ...  # the write; proxy.cuts == 1 afterwards
    proxy.close()
"""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import struct
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import psycopg.sql
from sqlalchemy import Engine, event, text
from sqlalchemy.engine import ExceptionContext

if TYPE_CHECKING:
    from tests.conftest import PgServer

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_CANCEL_REQUEST = 80877102


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    """``size`` bytes from ``sock``, or None when it closes first."""
    chunks = bytearray()
    while len(chunks) < size:
        try:
            chunk = sock.recv(size - len(chunks))
        except OSError:
            return None
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def _read_message(sock: socket.socket) -> tuple[bytes, bytes] | None:
    """One typed protocol message: (type byte, whole message including header)."""
    header = _read_exactly(sock, 5)
    if header is None:
        return None
    (length,) = struct.unpack("!i", header[1:5])
    body = _read_exactly(sock, length - 4) if length > 4 else b""
    if body is None:
        return None
    return header[:1], header + body


def _is_commit(message: bytes) -> bool:
    """A simple-protocol Query whose text is COMMIT (how psycopg commits)."""
    query = message[5:].rstrip(b"\x00").strip().rstrip(b";").strip().upper()
    return query in (b"COMMIT", b"COMMIT TRANSACTION", b"END")


class _Link:
    """One client connection and its upstream connection, copied in two threads."""

    def __init__(self, proxy: CommitCutProxy, client: socket.socket, server: socket.socket):
        self.proxy = proxy
        self.client = client
        self.server = server
        self.cut_pending = False
        self.closed = threading.Event()
        self.threads = [
            threading.Thread(target=self._client_to_server, daemon=True),
            threading.Thread(target=self._server_to_client, daemon=True),
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def close(self) -> None:
        self.closed.set()
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def _client_to_server(self) -> None:
        try:
            # The startup packet has no type byte: a length, then a protocol code.
            while True:
                header = _read_exactly(self.client, 8)
                if header is None:
                    return
                length, code = struct.unpack("!ii", header)
                rest = _read_exactly(self.client, length - 8)
                if rest is None:
                    return
                self.server.sendall(header + rest)
                if code in (_SSL_REQUEST, _GSSENC_REQUEST):
                    raise RuntimeError("use sslmode=disable and gssencmode=disable via the proxy")
                if code == _CANCEL_REQUEST:
                    return
                break
            while not self.closed.is_set():
                message = _read_message(self.client)
                if message is None:
                    return
                kind, raw = message
                if kind == b"Q" and _is_commit(raw) and self.proxy._take_arm():
                    # Set before the COMMIT leaves, so no part of its answer slips through.
                    self.cut_pending = True
                self.server.sendall(raw)
        except OSError:
            return
        finally:
            if not self.cut_pending:
                self.close()

    def _server_to_client(self) -> None:
        try:
            while not self.closed.is_set():
                message = _read_message(self.server)
                if message is None:
                    return
                kind, raw = message
                if self.cut_pending:
                    # Hold the whole answer to COMMIT; once it is complete (the server
                    # is ready for the next query), drop it and cut the client.
                    if kind == b"Z":
                        self.proxy._record_cut()
                        return
                    continue
                self.client.sendall(raw)
        except OSError:
            return
        finally:
            self.close()


class CommitCutProxy:
    """A bounded TCP proxy on 127.0.0.1 in front of PostgreSQL that can lose the answer
    to a COMMIT after the server has committed it."""

    def __init__(
        self,
        *,
        upstream: str | tuple[str, int],
        database: str,
        user: str,
        password: str | None = None,
        max_connections: int = 64,
    ) -> None:
        """``upstream``: a Unix socket path, or (host, port)."""
        self._upstream = upstream
        self._max_connections = max_connections
        self._lock = threading.Lock()
        self._armed = 0
        self._cut = threading.Condition(self._lock)
        self.cuts = 0
        self._links: list[_Link] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = int(self._listener.getsockname()[1])
        credentials = f"{user}:{password}" if password else user
        # Plain TCP only: the proxy reads the protocol, so no TLS or GSS encryption.
        self.url = (
            f"postgresql+psycopg://{credentials}@127.0.0.1:{self.port}/{database}"
            "?sslmode=disable&gssencmode=disable"
        )
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    @classmethod
    def for_server(cls, server: PgServer, database: str) -> CommitCutProxy:
        """A proxy to ``database`` on the tests' server (its Unix socket or TCP port)."""
        host = server.libpq_host
        upstream: str | tuple[str, int] = (
            str(Path(host) / f".s.PGSQL.{server.libpq_port}")
            if host.startswith("/")
            else (host, server.libpq_port)
        )
        return cls(upstream=upstream, database=database, user=server.user, password=server.password)

    def arm_cut_after_commit(self, times: int = 1) -> None:
        """Lose the answer to the next ``times`` COMMITs (on any connection)."""
        with self._lock:
            self._armed = times

    def disarm(self) -> None:
        with self._lock:
            self._armed = 0

    def wait_for_cuts(self, count: int, timeout: float = 5) -> bool:
        with self._cut:
            return self._cut.wait_for(lambda: self.cuts >= count, timeout=timeout)

    def close(self) -> None:
        self._closed = True
        # shutdown() wakes the thread blocked in accept(); close() alone does not.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            links = list(self._links)
        for link in links:
            link.close()
        self._acceptor.join(timeout=2)
        for link in links:
            for thread in link.threads:
                thread.join(timeout=2)

    def __enter__(self) -> CommitCutProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take_arm(self) -> bool:
        with self._lock:
            if self._armed <= 0:
                return False
            self._armed -= 1
            return True

    def _record_cut(self) -> None:
        with self._cut:
            self.cuts += 1
            self._cut.notify_all()

    def _connect_upstream(self) -> socket.socket:
        if isinstance(self._upstream, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self._upstream)
        else:
            sock = socket.create_connection(self._upstream, timeout=5)
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            # Messages are forwarded one by one: without this, Nagle's algorithm and the
            # client's delayed ACKs add 40 ms to many of them.
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._links = [link for link in self._links if not link.closed.is_set()]
                full = len(self._links) >= self._max_connections
            if full:
                client.close()
                continue
            try:
                server = self._connect_upstream()
            except OSError:
                client.close()
                continue
            link = _Link(self, client, server)
            with self._lock:
                self._links.append(link)
            link.start()


class Disconnects:
    """Counts the connections ``engine`` saw fail (SQLAlchemy's ``handle_error`` event
    with ``is_disconnect``): proof that a fault reached the writes, which recovered."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        self._lock = threading.Lock()
        event.listen(engine, "handle_error", self._seen)

    def _seen(self, context: ExceptionContext) -> None:
        if context.is_disconnect:
            with self._lock:
                self.count += 1


def admin_connect(server: PgServer) -> psycopg.Connection[tuple[Any, ...]]:
    """An autocommit connection to the server's ``postgres`` database."""
    return psycopg.connect(server.admin_conninfo(), autocommit=True)


# Backends in the middle of a transaction (running a statement, or between two), so
# every kill interrupts a write; idle pooled connections are left to pool_pre_ping.
_TERMINATE = (
    "SELECT count(pg_terminate_backend(pid)) FROM ("
    " SELECT pid FROM pg_stat_activity"
    " WHERE datname = %s AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
    " AND state IN ('active', 'idle in transaction') ORDER BY random() LIMIT %s) AS chosen"
)


class BackendKiller:
    """A thread that terminates up to ``per_round`` client backends of ``database`` that
    are inside a transaction, every ``interval`` seconds (pg_terminate_backend), until
    stopped."""

    def __init__(
        self, server: PgServer, database: str, *, interval: float = 0.03, per_round: int = 1
    ) -> None:
        self._server = server
        self._database = database
        self._interval = interval
        self._per_round = per_round
        self._stop = threading.Event()
        self.killed = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with admin_connect(self._server) as conn:
                while not self._stop.wait(self._interval):
                    row = conn.execute(_TERMINATE, (self._database, self._per_round)).fetchone()
                    self.killed += int(row[0]) if row else 0
        except BaseException as exc:  # reported by the test
            self.error = exc

    def __enter__(self) -> BackendKiller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@contextmanager
def row_locked(engine: Engine, organization_id: int) -> Iterator[None]:
    """Hold the organization's balance row lock (every write's first step) until exit."""
    with engine.connect() as conn:
        trans = conn.begin()
        conn.execute(
            text("SELECT 1 FROM credit_balances WHERE organization_id = :o FOR UPDATE"),
            {"o": organization_id},
        )
        try:
            yield
        finally:
            trans.rollback()


@contextmanager
def table_locked(engine: Engine, table: str) -> Iterator[None]:
    """Hold ``table`` in ACCESS EXCLUSIVE mode (as a migration or a long change would),
    from another connection, until exit: every read of it waits."""
    with engine.connect() as conn:
        trans = conn.begin()
        raw = conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        raw.execute(
            psycopg.sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                psycopg.sql.Identifier(table)
            )
        )
        try:
            yield
        finally:
            trans.rollback()


def books_problems(engine: Engine, organization_ids: Sequence[int]) -> list[str]:
    """What is wrong with the books of these organizations (empty when all is well):
    balance = sum(ledger) - sum(generation credits), and usage_limits.used/credits_used
    equal a recount of the generations per local day."""
    problems = []
    with engine.connect() as conn:
        for row in conn.execute(
            text(
                """
                SELECT b.organization_id, b.balance,
                       (SELECT coalesce(sum(amount), 0) FROM credit_ledger l
                         WHERE l.organization_id = b.organization_id) AS ledger,
                       (SELECT coalesce(sum(credits), 0) FROM generations g
                         WHERE g.organization_id = b.organization_id) AS spent
                FROM credit_balances b WHERE b.organization_id = ANY(:o)
                """
            ),
            {"o": list(organization_ids)},
        ):
            if row.balance != row.ledger - row.spent:
                problems.append(
                    f"organization {row.organization_id}: balance {row.balance} but ledger "
                    f"{row.ledger} - consumption {row.spent} = {row.ledger - row.spent}"
                )
        for row in conn.execute(
            text(
                """
                WITH actual AS (
                    SELECT g.organization_id, g.type,
                           (g.created_at AT TIME ZONE o.timezone)::date AS date,
                           count(*) AS used, sum(g.credits) AS credits_used
                    FROM generations g JOIN organizations o ON o.id = g.organization_id
                    WHERE g.organization_id = ANY(:o) GROUP BY 1, 2, 3
                )
                SELECT organization_id, type, date, a.used AS counted, u.used AS recorded,
                       a.credits_used AS counted_credits, u.credits_used AS recorded_credits
                FROM actual a
                FULL JOIN (SELECT * FROM usage_limits
                           WHERE organization_id = ANY(:o) AND used > 0) u
                  USING (organization_id, type, date)
                WHERE a.used IS DISTINCT FROM u.used
                   OR a.credits_used IS DISTINCT FROM u.credits_used
                """
            ),
            {"o": list(organization_ids)},
        ):
            problems.append(f"usage differs from the generations: {tuple(row)}")
    return problems


def rows_per_key(engine: Engine, organization_ids: Sequence[int]) -> dict[tuple[str, str], int]:
    """How many rows each idempotency key has, per table (ledger, generations, audit)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                """
                SELECT 'ledger', idempotency_key, count(*) FROM credit_ledger
                 WHERE organization_id = ANY(:o) GROUP BY 2
                UNION ALL
                SELECT 'generations', idempotency_key, count(*) FROM generations
                 WHERE organization_id = ANY(:o) AND idempotency_key IS NOT NULL GROUP BY 2
                UNION ALL
                SELECT 'audit', idempotency_key, count(*) FROM audit_log
                 WHERE organization_id = ANY(:o) AND idempotency_key IS NOT NULL GROUP BY 2
                """
            ),
            {"o": list(organization_ids)},
        ).all()
    return {(table, key): int(count) for table, key, count in rows}


class TricklingWebhook:
    """A real local webhook (``ThreadingHTTPServer``) that takes a POST and answers a
    byte every ``every`` seconds: with ``status_first`` (the issue's webhook), "200 OK"
    and its headers at once and then a body of ``length`` bytes; without it, the status
    line itself, so no status ever arrives in time. ``requests`` holds each JSON body.
    Use it as a context manager; ``url`` is the hook's address."""

    def __init__(self, *, every: float = 7.0, status_first: bool = True, length: int = 100):
        self.requests: list[dict[str, Any]] = []
        self._stop = threading.Event()
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                hook.requests.append(json.loads(self.rfile.read(size)))
                if status_first:
                    self.send_response(200)
                    self.send_header("Content-Length", str(length))
                    self.end_headers()
                    self.wfile.flush()
                    answer = b"o" * length
                else:
                    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                with contextlib.suppress(OSError):
                    for byte in answer:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        if hook._stop.wait(every):
                            return

            def log_message(self, *args: object) -> None:  # quiet test output
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/services/T0/B0/token"

    def __enter__(self) -> TricklingWebhook:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
