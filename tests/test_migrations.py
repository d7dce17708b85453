"""The project's own migrations: up, down and up again, and no drift from the models."""

from __future__ import annotations

import datetime as dt
import json

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from queries.db import create_direct_engine
from queries.models import Base
from queries.schema_version import alembic_config
from tests.conftest import PgServer, _recreate
from tests.factories import ensure_types, make_org
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


def _before(revision: str) -> str:
    """The revision just before ``revision``: where its data migration starts from."""
    down = ScriptDirectory.from_config(alembic_config()).get_revision(revision).down_revision
    assert isinstance(down, str)
    return down


def test_limit_changes_made_before_0018_keep_the_limits_they_set(test_server: PgServer) -> None:
    """0018 copies the changes in the audit log into limit_changes as open-ended ones:
    every day's limit in force is what it was under 0010's rule."""
    _recreate(test_server, "dashboard_test_limit_changes")
    url = test_server.url("dashboard_test_limit_changes")
    engine = create_direct_engine(url)
    days = [dt.date(2031, 1, 1) + dt.timedelta(days=n) for n in range(-2, 12)]
    in_force = text("SELECT daily_limit, since FROM limit_in_force(:o, 'chat', :d)")
    try:
        schema.upgrade(url=url)
        schema.downgrade(url=url, revision=_before("0018"))
        with engine.begin() as conn:
            ensure_types(conn)
            org = make_org(conn)
            # As 0010's set_daily_limit left them: 7 from day 3 on, made first; then 9
            # from day 1 on, which rewrote every later row.
            for effective, old, new in ((3, 1000, 7), (1, 1000, 9)):
                conn.execute(
                    text(
                        "INSERT INTO audit_log (organization_id, action, actor, reason, details)"
                        " VALUES (:o, 'set_daily_limit', 'cs@x.com', 'r', CAST(:d AS jsonb))"
                    ),
                    {
                        "o": org,
                        "d": json.dumps(
                            {
                                "type": "chat",
                                "effective": str(days[2 + effective]),
                                "old_limit": old,
                                "new_limit": new,
                            }
                        ),
                    },
                )
            conn.execute(
                text(
                    "INSERT INTO usage_limits (organization_id, type, date, daily_limit)"
                    " VALUES (:o, 'chat', :d, :l)"
                ),
                [{"o": org, "d": days[n], "l": 1000 if n < 3 else 9} for n in (0, 3, 5, 9)],
            )
            before = [tuple(conn.execute(in_force, {"o": org, "d": d}).one()) for d in days]
        schema.upgrade(url=url)
        with engine.connect() as conn:
            after = [tuple(conn.execute(in_force, {"o": org, "d": d}).one()) for d in days]
            copied = conn.execute(
                text("SELECT effective, until, daily_limit FROM limit_changes ORDER BY id")
            ).all()
        assert [limit for limit, _ in after] == [limit for limit, _ in before]
        assert [tuple(c) for c in copied] == [(days[5], None, 7), (days[3], None, 9)]
    finally:
        engine.dispose()


def test_0020_down_puts_back_0016s_function_with_its_grants(test_server: PgServer) -> None:
    """Soft limits go with 0020: record_generation_work is 0016's again, callable by the
    app only."""
    _recreate(test_server, "dashboard_test_soft_limits")
    url = test_server.url("dashboard_test_soft_limits")
    engine = create_direct_engine(url)
    work = text(
        """
        SELECT position('limit_enforcement' IN p.prosrc) > 0,
               has_function_privilege('dashboard_app', p.oid, 'EXECUTE'),
               has_function_privilege('dashboard_reader', p.oid, 'EXECUTE')
        FROM pg_proc p WHERE p.proname = 'record_generation_work'
        """
    )
    try:
        schema.upgrade(url=url)
        with engine.connect() as conn:
            assert tuple(conn.execute(work).one()) == (True, True, False)
        schema.downgrade(url=url, revision=_before("0020"))
        with engine.connect() as conn:
            assert tuple(conn.execute(work).one()) == (False, True, False)
            assert "limit_enforcement" not in inspect(conn).get_table_names()
        schema.upgrade(url=url)
        with engine.connect() as conn:
            assert tuple(conn.execute(work).one()) == (True, True, False)
    finally:
        engine.dispose()
