"""A bulk load beside the live tables, then swapped in: all or nothing, on both cores.

A load in one transaction builds every index in the one session that loaded the rows
(nothing else can see them before the commit), one index after the other on one core.
Here the rows go into copies of the tables in the schema ``demo_staging`` and are
committed there; several sessions then build the indexes and keys at once; last, one
short transaction drops the live tables and moves the staged ones into ``public``. A
failure anywhere before that leaves the live tables as they were and drops the
staging schema; the swap itself is one transaction.

What a table carries beyond its columns is copied by the swap from the live table,
read from the catalog rather than written here, so a table or grant a later
migration adds needs no change here: column defaults, identities, checks, not-null
constraints, storage and comments (``LIKE ... INCLUDING ALL``); indexes, unique and
primary keys and foreign keys (from the models, see ``tooling.demo_data.tables.table_keys``);
the owner, the table and column grants, and the triggers with their ``ENABLE`` mode.
Anything else (row security, reloptions, rules, dependent views) is not copied:
``DROP TABLE`` refuses a dependent view, and the load then fails with nothing changed.

Why logged tables and not ``UNLOGGED ... SET LOGGED``: the tables are created in the
loading transaction, so with ``wal_level=minimal`` (the embedded server) COPY and each
index build (a new file in its own transaction) skip the WAL anyway, and ``SET
LOGGED`` would rewrite every table once more. With ``wal_level=replica`` both ways
write the rows to the WAL once; ``SET LOGGED`` would still add the rewrite.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import psycopg
from psycopg import sql

SCHEMA = "demo_staging"
_SCHEMA = sql.Identifier(SCHEMA)
_PUBLIC = sql.Identifier("public")

Statement = str | sql.Composed

# Each building session: the staged tables first on its path; memory for sorts, shared
# out between the sessions; no parallel workers of its own (the sessions are the
# parallelism, one per core); and no wait for the WAL flush at each commit.
_SESSION = (
    sql.SQL("SET search_path = {}, public").format(_SCHEMA),
    "SET max_parallel_maintenance_workers = 0",
    "SET synchronous_commit = off",
)

_PRIVILEGES = frozenset(
    ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "MAINTAIN")
)
_ENABLE_MODES = {
    "A": "ENABLE ALWAYS TRIGGER",
    "R": "ENABLE REPLICA TRIGGER",
    "D": "DISABLE TRIGGER",
}


@dataclass(frozen=True, slots=True)
class Job:
    """Statements one session runs in order (one lock holder for one table's steps)."""

    label: str
    statements: tuple[Statement, ...]


def create_tables(conn: psycopg.Connection, tables: Sequence[str]) -> None:
    """Empty copies of ``tables`` in the staging schema, without indexes or keys,
    committed (so several sessions can load them)."""
    drop_schema(conn)
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(_SCHEMA))
    for table in tables:
        conn.execute(
            sql.SQL("CREATE TABLE {}.{} (LIKE {}.{} INCLUDING ALL EXCLUDING INDEXES)").format(
                _SCHEMA, sql.Identifier(table), _PUBLIC, sql.Identifier(table)
            )
        )
    conn.commit()


def begin_loading(conn: psycopg.Connection, tables: Sequence[str]) -> None:
    """Open ``conn``'s transaction that loads ``tables`` (staged), and put them first
    on its path. Each session loads its own tables: it truncates them first, which
    gives them new files in this transaction, so with ``wal_level=minimal`` its COPY
    skips the WAL as if it had created them."""
    conn.execute(sql.SQL("SET search_path = {}, public").format(_SCHEMA))
    conn.execute("SET synchronous_commit = off")
    if tables:
        conn.execute(
            sql.SQL("TRUNCATE {}").format(
                sql.SQL(", ").join(sql.Identifier(SCHEMA, t) for t in tables)
            )
        )


def drop_schema(conn: psycopg.Connection) -> None:
    """Drop the staging schema and everything in it, if it is there."""
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(_SCHEMA))


def sizes(conn: psycopg.Connection, tables: Sequence[str]) -> dict[str, int]:
    """Bytes of each staged table: the biggest builds go first."""
    return {
        table: int(
            conn.execute(
                "SELECT pg_relation_size(format('%%I.%%I', %s::text, %s::text)::regclass)",
                (SCHEMA, table),
            ).fetchone()[0]  # type: ignore[index]
        )
        for table in tables
    }


def run_in_sessions(
    connect: Callable[[], psycopg.Connection],
    phases: Sequence[Sequence[Job]],
    *,
    sessions: int,
    maintenance_work_mem_mb: int,
) -> list[tuple[str, float]]:
    """Run each phase's jobs on ``sessions`` connections at once, phase after phase.

    Returns each job's label and seconds. The first failure cancels what the other
    sessions are running and is raised once every session has stopped.
    """
    local = threading.local()
    opened: list[psycopg.Connection] = []
    guard = threading.Lock()
    timings: list[tuple[str, float]] = []

    def session() -> psycopg.Connection:
        conn: psycopg.Connection | None = getattr(local, "conn", None)
        if conn is None:
            conn = connect()
            conn.autocommit = True
            with guard:
                opened.append(conn)
            for statement in _SESSION:
                conn.execute(statement)
            conn.execute(
                sql.SQL("SET maintenance_work_mem = {}").format(
                    sql.Literal(f"{maintenance_work_mem_mb}MB")
                )
            )
            local.conn = conn
        return conn

    def run(job: Job) -> None:
        conn = session()
        started = time.perf_counter()
        for statement in job.statements:
            conn.execute(statement)
        with guard:
            timings.append((job.label, time.perf_counter() - started))

    try:
        with ThreadPoolExecutor(max_workers=sessions, thread_name_prefix="demo-build") as pool:
            for phase in phases:
                futures: list[Future[None]] = [pool.submit(run, job) for job in phase]
                done, pending = wait(futures, return_when=FIRST_EXCEPTION)
                failed = [f for f in done if f.exception() is not None]
                if failed:
                    for future in pending:
                        future.cancel()
                    with guard:
                        for conn in opened:
                            conn.cancel_safe()
                    wait(pending)
                    raise failed[0].exception()  # type: ignore[misc]
    finally:
        for conn in opened:
            conn.close()
    return timings


def swap_in(conn: psycopg.Connection, tables: Sequence[str], *, require_empty: bool) -> None:
    """In one transaction: drop the live ``tables``, move the staged ones into their
    place, give them the live tables' owner, grants and triggers, drop the schema.

    With ``require_empty``, refuses (``LookupError``) when the live organizations
    table has rows by now: checked under the swap's locks.
    """
    with conn.transaction():
        conn.execute("SET LOCAL search_path = public")
        # Waiting behind a long dashboard read is fine; forever is not.
        conn.execute("SET LOCAL lock_timeout = '60s'")
        live = sql.SQL(", ").join(sql.Identifier("public", t) for t in tables)
        conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(live))
        if require_empty:
            row = conn.execute("SELECT EXISTS (SELECT 1 FROM public.organizations)").fetchone()
            if row and row[0]:
                raise LookupError("the live tables have data")
        carried = [_carried(conn, table) for table in tables]
        conn.execute(sql.SQL("DROP TABLE {}").format(live))
        for table in tables:
            conn.execute(
                sql.SQL("ALTER TABLE {}.{} SET SCHEMA public").format(
                    _SCHEMA, sql.Identifier(table)
                )
            )
        for statements in carried:
            for statement in statements:
                conn.execute(statement)
        conn.execute(sql.SQL("DROP SCHEMA {}").format(_SCHEMA))


def _carried(conn: psycopg.Connection, table: str) -> list[Statement]:
    """What gives the staged ``table`` the live one's owner, grants and triggers."""
    name = sql.Identifier(table)
    live = sql.Identifier("public", table)
    statements: list[Statement] = []
    owner = conn.execute(
        "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = %s::regclass",
        (live.as_string(conn),),
    ).fetchone()
    if owner:
        statements.append(
            sql.SQL("ALTER TABLE {} OWNER TO {}").format(name, sql.Identifier(owner[0]))
        )
    for column, privilege, grantee, grantable in conn.execute(
        """
        SELECT NULL::name, x.privilege_type,
               CASE WHEN x.grantee <> 0 THEN pg_get_userbyid(x.grantee) END, x.is_grantable
        FROM pg_class c
        CROSS JOIN LATERAL aclexplode(c.relacl) x
        WHERE c.oid = %(table)s::regclass AND x.grantee <> c.relowner
        UNION ALL
        SELECT a.attname, x.privilege_type,
               CASE WHEN x.grantee <> 0 THEN pg_get_userbyid(x.grantee) END, x.is_grantable
        FROM pg_class c
        JOIN pg_attribute a ON a.attrelid = c.oid AND NOT a.attisdropped
        CROSS JOIN LATERAL aclexplode(a.attacl) x
        WHERE c.oid = %(table)s::regclass AND x.grantee <> c.relowner
        ORDER BY 3, 2, 1 NULLS FIRST
        """,
        {"table": live.as_string(conn)},
    ):
        if privilege not in _PRIVILEGES:
            raise ValueError(f"unexpected privilege {privilege!r} on {table}")
        target = sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee)
        columns = sql.SQL("") if column is None else sql.SQL(" ({})").format(sql.Identifier(column))
        statements.append(
            sql.SQL("GRANT {}{} ON {} TO {}{}").format(
                sql.SQL(privilege),
                columns,
                name,
                target,
                sql.SQL(" WITH GRANT OPTION" if grantable else ""),
            )
        )
    for definition, trigger, mode in conn.execute(
        """
        SELECT pg_get_triggerdef(oid), tgname, tgenabled FROM pg_trigger
        WHERE tgrelid = %s::regclass AND NOT tgisinternal ORDER BY tgname
        """,
        (live.as_string(conn),),
    ):
        # The catalog's own text of the trigger: it names the table as public sees it,
        # which after the swap is the staged table.
        statements.append(definition)
        if mode in _ENABLE_MODES:
            statements.append(
                sql.SQL("ALTER TABLE {} {} {}").format(
                    name, sql.SQL(_ENABLE_MODES[mode]), sql.Identifier(trigger)
                )
            )
    return statements
