"""The project's own migrations: up, down and up again, and no drift from the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

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


def test_upgrade_downgrade_upgrade_round_trip(test_server: PgServer) -> None:
    _recreate(test_server, "dashboard_test_migrations")
    url = test_server.url("dashboard_test_migrations")
    engine = create_direct_engine(url)
    try:
        schema.upgrade(url=url)
        assert set(inspect(engine).get_table_names()) >= TABLES
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
