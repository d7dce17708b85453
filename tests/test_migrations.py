"""The project's own migrations: up, down and up again, and no drift from the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from queries.db import create_direct_engine
from queries.models import Base
from tests.conftest import PgServer, _recreate
from tooling import schema

TABLES = {
    "organizations",
    "users",
    "credit_balances",
    "credit_ledger",
    "generation_types",
    "usage_limits",
    "generations",
    "audit_log",
}


# Migration 0003's guard function, its triggers, and the group roles that hold any
# privilege on a table of this database.
_GUARDS_AND_GRANTS = text(
    """
    SELECT (SELECT count(*) FROM pg_proc WHERE proname = 'refuse_append_only_change'),
           (SELECT count(*) FROM pg_trigger
            WHERE tgname IN ('credit_ledger_append_only', 'audit_log_append_only',
                             'generations_append_only')),
           (SELECT count(DISTINCT r.rolname)
            FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
            JOIN pg_roles r ON r.oid = a.grantee
            WHERE r.rolname IN ('dashboard_app', 'dashboard_reader'))
    """
)
_ROLES = text(
    "SELECT count(*) FROM pg_roles WHERE rolname IN ('dashboard_app', 'dashboard_reader')"
)


def test_upgrade_downgrade_upgrade_round_trip(test_server: PgServer) -> None:
    _recreate(test_server, "dashboard_test_migrations")
    url = test_server.url("dashboard_test_migrations")
    engine = create_direct_engine(url)
    try:
        schema.upgrade(url=url)
        assert set(inspect(engine).get_table_names()) >= TABLES
        with engine.connect() as conn:
            assert conn.execute(_GUARDS_AND_GRANTS).one() == (1, 3, 2)
        # 0003 down: its function, triggers and grants go; the server-wide roles stay.
        schema.downgrade(url=url, revision="0002")
        with engine.connect() as conn:
            assert conn.execute(_GUARDS_AND_GRANTS).one() == (0, 0, 0)
            assert conn.execute(_ROLES).scalar_one() == 2
        schema.downgrade(url=url, revision="base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        schema.upgrade(url=url)
        assert set(inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_models_and_migrations_do_not_drift(engine: Engine) -> None:
    # What `alembic check` does: autogenerate against the migrated database.
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        assert compare_metadata(context, Base.metadata) == []
