"""An append-only book, and two group roles with the least privilege each needs.

Append-only: ``credit_ledger``, ``audit_log`` and ``generations`` are history. One
trigger function, ``refuse_append_only_change()``, is attached to each as a
statement-level ``BEFORE UPDATE OR DELETE OR TRUNCATE`` trigger named
``<table>_append_only``: it refuses every such statement, for every role, superusers
included (triggers do not care who runs the statement), even one that matches no row.
An entry is corrected with a new one (a reversal). The refusal is SQLSTATE 23001
``restrict_violation`` (an ``IntegrityError`` to drivers: a rule of the data, not a
lost connection), and its message names the table and what to do. The triggers are
``ENABLE ALWAYS``, so ``SET session_replication_role = replica`` (the usual way to
silence triggers) does not silence them either. The one documented way around the guard is the demo reset of
the embedded database (``tooling.demo_data.seed_demo_data``): as the tables' owner, in
its own transaction, it disables these triggers, truncates, reloads and enables them
again before it commits, so no other session ever sees them disabled.

Roles (NOLOGIN groups; a deployment makes login roles members of one of them):

- ``dashboard_app``, the app at runtime: SELECT on every table; INSERT on the
  append-only tables; on ``credit_balances`` UPDATE of ``balance`` and ``updated_at``
  only (the writes move a balance, and lock its row with SELECT ... FOR UPDATE, which
  needs UPDATE privilege); on ``usage_limits`` INSERT of the counted columns and UPDATE
  of ``used``, ``credits_used``, ``daily_limit`` and ``updated_at`` (the upserts of
  record_generation and set_daily_limit). No INSERT on organizations, users or
  balances, no DELETE, no TRUNCATE, no DDL (it owns nothing and may not CREATE in the
  schema). Identity columns need no sequence privilege.
- ``dashboard_reader``, for read replicas and analysts: SELECT only.

Every later migration that adds a table must GRANT SELECT on it to both roles (and
to ``dashboard_app`` whatever writes the app makes), or the app cannot read it:
``tests/queries/test_database_roles.py`` fails until it does. Likewise a new column
the app writes in ``credit_balances`` or ``usage_limits`` needs its column grant.

Roles belong to the whole server, not to one database, and the tests migrate many
databases on one server, possibly at the same time: they are created only when
missing, and a concurrent creation by another migration is not an error. The
migrating role needs CREATEROLE only when a role is missing; a DBA may create both
roles beforehand. ``REVOKE CREATE ON SCHEMA public FROM PUBLIC`` is PostgreSQL's
default since 15; it is repeated here so that a database created on an older server
gives the app no DDL either.

Downgrade revokes exactly what upgrade granted and drops the triggers and their
function. It leaves the two roles in place and does not give CREATE back to PUBLIC:
another database on the same server may still grant to those roles and have login
roles in them (DROP ROLE would fail there, or strand those logins), and an empty
NOLOGIN role is inert. To remove them for good, revoke or ``DROP OWNED BY`` in every
database, then ``DROP ROLE``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 18:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_GUARD_FUNCTION = """
CREATE FUNCTION refuse_append_only_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: %', TG_TABLE_NAME, TG_ARGV[0]
        USING ERRCODE = 'restrict_violation',
              DETAIL = TG_OP || ' on ' || TG_TABLE_NAME || ' is refused for every role. '
                       'Only the demo reset of the embedded database goes around this guard.';
END
$$
"""

# Per table: the trigger (its argument is the advice the refusal gives), then ALWAYS.
_TRIGGERS = (
    """
    CREATE TRIGGER credit_ledger_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON credit_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION
        refuse_append_only_change('correct an entry with a new one (a reversal)')
    """,
    "ALTER TABLE credit_ledger ENABLE ALWAYS TRIGGER credit_ledger_append_only",
    """
    CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION
        refuse_append_only_change('it records what was done; record a correction as a new entry')
    """,
    "ALTER TABLE audit_log ENABLE ALWAYS TRIGGER audit_log_append_only",
    """
    CREATE TRIGGER generations_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON generations
    FOR EACH STATEMENT EXECUTE FUNCTION
        refuse_append_only_change('a recorded generation is billed history; '
                                  'give credits back with a new ledger entry (a refund)')
    """,
    "ALTER TABLE generations ENABLE ALWAYS TRIGGER generations_append_only",
)

# Both roles are created only when missing; see the docstring for why.
_CREATE_ROLES = (
    """
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dashboard_app') THEN
        CREATE ROLE dashboard_app NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- created meanwhile by the migration of another database on this server
END
$$
""",
    """
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dashboard_reader') THEN
        CREATE ROLE dashboard_reader NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$
""",
)

_GRANTS = (
    "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
    "GRANT USAGE ON SCHEMA public TO dashboard_app, dashboard_reader",
    """
    GRANT SELECT ON organizations, users, credit_balances, credit_ledger, generation_types,
                    usage_limits, generations, audit_log, alembic_version
    TO dashboard_app, dashboard_reader
    """,
    "GRANT INSERT ON credit_ledger, audit_log, generations TO dashboard_app",
    "GRANT UPDATE (balance, updated_at) ON credit_balances TO dashboard_app",
    """
    GRANT INSERT (organization_id, type, date, used, credits_used, daily_limit),
          UPDATE (used, credits_used, daily_limit, updated_at)
    ON usage_limits TO dashboard_app
    """,
)

# Exactly what _GRANTS granted, in reverse order (CREATE stays revoked from PUBLIC).
_REVOKES = (
    """
    REVOKE INSERT (organization_id, type, date, used, credits_used, daily_limit),
           UPDATE (used, credits_used, daily_limit, updated_at)
    ON usage_limits FROM dashboard_app
    """,
    "REVOKE UPDATE (balance, updated_at) ON credit_balances FROM dashboard_app",
    "REVOKE INSERT ON credit_ledger, audit_log, generations FROM dashboard_app",
    """
    REVOKE SELECT ON organizations, users, credit_balances, credit_ledger, generation_types,
                     usage_limits, generations, audit_log, alembic_version
    FROM dashboard_app, dashboard_reader
    """,
    "REVOKE USAGE ON SCHEMA public FROM dashboard_app, dashboard_reader",
)


def upgrade() -> None:
    op.execute(_GUARD_FUNCTION)
    for statement in _TRIGGERS:
        op.execute(statement)
    for statement in _CREATE_ROLES:
        op.execute(statement)
    for statement in _GRANTS:
        op.execute(statement)


def downgrade() -> None:
    for statement in _REVOKES:
        op.execute(statement)
    op.execute("DROP TRIGGER generations_append_only ON generations")
    op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
    op.execute("DROP TRIGGER credit_ledger_append_only ON credit_ledger")
    op.execute("DROP FUNCTION refuse_append_only_change()")
