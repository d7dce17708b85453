"""The staged demo load (``dashboard seed``): the same rows as the one-transaction
load, swapped in with exactly the migrated schema, and all or nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence

import psycopg
import pytest
from sqlalchemy import Connection, Engine, text

from queries.db import create_direct_engine
from tests.conftest import PgServer, _recreate
from tests.queries.rollups import ROLLUPS, mismatches
from tooling import demo_data, schema, staging
from tooling.demo_data import generations, rollups, seed_demo_data, seed_demo_data_staged

_DATABASE = "dashboard_test_staging"
_NOW = dt.datetime(2026, 3, 29, 12, tzinfo=dt.UTC)  # a daylight-saving weekend in Europe
_OPTIONS: dict[str, object] = {
    "organizations": 7,
    "generations": 6_000,
    "days": 20,
    "seed": 5,
    "now": _NOW,
}

# Everything the swap must carry over from the migrated tables, as text to compare.
_SCHEMA = text(
    """
    SELECT 'column', concat_ws(' ', c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                               co.collname, a.attnotnull, a.attidentity,
                               pg_get_expr(d.adbin, d.adrelid))
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    LEFT JOIN pg_collation co ON co.oid = a.attcollation
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
      AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT 'table', concat_ws(' ', relname, pg_get_userbyid(relowner), relpersistence,
                              relreplident, relrowsecurity, reloptions)
    FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'
    UNION ALL
    SELECT 'index', indexdef FROM pg_indexes WHERE schemaname = 'public'
    UNION ALL
    SELECT 'constraint', concat_ws(' ', conrelid::regclass, conname, contype,
                                   pg_get_constraintdef(oid), convalidated)
    FROM pg_constraint WHERE connamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'trigger', concat_ws(' ', tgenabled, pg_get_triggerdef(oid))
    FROM pg_trigger WHERE NOT tgisinternal
    UNION ALL
    SELECT 'grant', concat_ws(' ', c.relname, x.privilege_type, x.grantee::regrole,
                              x.is_grantable)
    FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) x
    WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'S')
    UNION ALL
    SELECT 'column grant', concat_ws(' ', c.relname, a.attname, x.privilege_type,
                                     x.grantee::regrole, x.is_grantable)
    FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
    CROSS JOIN LATERAL aclexplode(a.attacl) x
    WHERE c.relnamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'sequence', concat_ws(' ', c.relname, pg_get_serial_sequence(c.relname, a.attname))
    FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
    WHERE c.relnamespace = 'public'::regnamespace AND a.attidentity <> ''
    UNION ALL
    SELECT 'schema', nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%'
    ORDER BY 1, 2
    """
)

_ROWS = text(
    """
    SELECT (SELECT md5(string_agg(concat_ws(',', organization_id, id, user_id, type, credits, created_at), ';' ORDER BY id)) FROM generations),
           (SELECT md5(string_agg(concat_ws(',', organization_id, id, amount, balance_after, kind, reason, actor, idempotency_key, reverses_id, created_at), ';' ORDER BY id)) FROM credit_ledger),
           (SELECT md5(string_agg(concat_ws(',', organization_id, id, type, date, used, credits_used, daily_limit, updated_at), ';' ORDER BY id)) FROM usage_limits),
           (SELECT md5(string_agg(concat_ws(',', organization_id, user_id, date, type, generations, credits), ';' ORDER BY organization_id, user_id, date, type)) FROM user_daily_usage),
           (SELECT md5(string_agg(concat_ws(',', organization_id, bucket, type, generations, credits), ';' ORDER BY organization_id, bucket, type)) FROM quarter_hour_usage),
           (SELECT md5(string_agg(concat_ws(',', organization_id, details, created_at), ';' ORDER BY organization_id, details::text)) FROM audit_log),
           (SELECT md5(string_agg(concat_ws(',', organization_id, balance), ';' ORDER BY organization_id)) FROM credit_balances),
           (SELECT string_agg(last_value::text, ',' ORDER BY sequencename) FROM pg_sequences WHERE schemaname = 'public')
    """
)


@pytest.fixture
def scratch(test_server: PgServer) -> Iterator[Engine]:
    """A freshly migrated, empty database of its own (the staged load commits)."""
    _recreate(test_server, _DATABASE)
    url = test_server.url(_DATABASE)
    schema.upgrade(url=url)
    engine = create_direct_engine(url)
    yield engine
    engine.dispose()


def _schema(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [(kind, str(item)) for kind, item in conn.execute(_SCHEMA)]


def _rows(conn: Connection) -> tuple[object, ...]:
    return tuple(conn.execute(_ROWS).one())


def test_a_staged_load_swaps_in_exactly_the_migrated_schema_and_the_same_rows(
    scratch: Engine,
) -> None:
    migrated = _schema(scratch)
    seed_demo_data_staged(scratch, **_OPTIONS)  # type: ignore[arg-type]
    assert _schema(scratch) == migrated, "indexes, keys, grants, triggers as migrated"
    with scratch.connect() as conn:
        staged = _rows(conn)
        assert mismatches(conn) == dict.fromkeys(ROLLUPS, 0)
        # The one-transaction load (tests, first start) gives the very same rows.
        seed_demo_data(conn, reset=True, **_OPTIONS)  # type: ignore[arg-type]
        assert _rows(conn) == staged
        conn.rollback()
    # And a staged reset over existing data swaps in the same again.
    seed_demo_data_staged(scratch, reset=True, **_OPTIONS)  # type: ignore[arg-type]
    assert _schema(scratch) == migrated
    with scratch.connect() as conn:
        assert _rows(conn) == staged


def test_a_staged_load_refuses_a_database_with_data_unless_reset(scratch: Engine) -> None:
    seed_demo_data_staged(scratch, **_OPTIONS)  # type: ignore[arg-type]
    with pytest.raises(demo_data.DemoDataError, match="--reset"):
        seed_demo_data_staged(scratch, **{**_OPTIONS, "seed": 6})  # type: ignore[arg-type]
    with scratch.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM generations")).scalar_one() == 6_000


def _fail_in_a_building_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staging, "_SESSION", (*staging._SESSION, "SELECT 1 / 0"))


def _fail_inside_the_swap(monkeypatch: pytest.MonkeyPatch) -> None:
    carried = staging._carried
    monkeypatch.setattr(
        staging, "_carried", lambda conn, table: [*carried(conn, table), "SELECT 1 / 0"]
    )


def _fail_in_the_rollup_session(monkeypatch: pytest.MonkeyPatch) -> None:
    begin = staging.begin_loading

    def begin_then_fail(conn: psycopg.Connection, tables: Sequence[str]) -> None:
        begin(conn, tables)
        if set(tables) == set(rollups.ROLLUP_COPIES):
            conn.execute("SELECT 1 / 0")

    monkeypatch.setattr(staging, "begin_loading", begin_then_fail)


@pytest.mark.parametrize(
    "failure",
    [_fail_in_the_rollup_session, _fail_in_a_building_session, _fail_inside_the_swap],
)
def test_a_failed_staged_load_leaves_the_live_data_and_drops_the_staged_tables(
    scratch: Engine, monkeypatch: pytest.MonkeyPatch, failure: object
) -> None:
    seed_demo_data_staged(scratch, **_OPTIONS)  # type: ignore[arg-type]
    before = _schema(scratch)
    with scratch.connect() as conn:
        rows = _rows(conn)
    assert callable(failure)
    failure(monkeypatch)
    with pytest.raises(Exception, match="division by zero"):
        seed_demo_data_staged(scratch, reset=True, **{**_OPTIONS, "seed": 6})  # type: ignore[arg-type]
    assert _schema(scratch) == before, "no staging schema left, live tables untouched"
    with scratch.connect() as conn:
        assert _rows(conn) == rows


def test_a_rollup_without_a_numpy_path_is_loaded_by_its_statement(
    connection: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_demo_data(connection, **_OPTIONS)  # type: ignore[arg-type]
    from_arrays = _rows(connection)
    # A new entry of ROLLUPS needs nothing else: its statement recounts it.
    monkeypatch.setattr(generations, "ROLLUP_COPIES", {})
    seed_demo_data(connection, reset=True, **_OPTIONS)  # type: ignore[arg-type]
    assert _rows(connection) == from_arrays
    assert mismatches(connection) == dict.fromkeys(ROLLUPS, 0)


def test_chunks_do_not_change_the_rows(
    connection: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_demo_data(connection, **_OPTIONS)  # type: ignore[arg-type]
    one_chunk = _rows(connection)
    monkeypatch.setattr(generations, "_CHUNK_ROWS", 500)  # several organizations per chunk
    seed_demo_data(connection, reset=True, **_OPTIONS)  # type: ignore[arg-type]
    assert _rows(connection) == one_chunk
    assert mismatches(connection) == dict.fromkeys(ROLLUPS, 0)


def test_a_second_staged_load_at_the_same_time_is_refused(scratch: Engine) -> None:
    conninfo = scratch.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (demo_data.STAGED_LOAD_LOCK,))
        with pytest.raises(demo_data.DemoDataError, match="another `dashboard seed`"):
            seed_demo_data_staged(scratch, **_OPTIONS)  # type: ignore[arg-type]
    with scratch.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM organizations")).scalar_one() == 0
