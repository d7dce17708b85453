"""Checkpoints belong to the reconciler: a third group role, ``dashboard_auditor``.

A verified checkpoint tells the next incremental ``dashboard reconcile`` what it may
skip, so whoever writes one decides what is not checked. Until now the app's runtime
role wrote them (migration 0008); a compromised or careless app login could insert a
checkpoint dated 2100 with huge ids and hide a wrong ``balance_after`` from every
incremental run. From here on:

- ``dashboard_auditor`` (NOLOGIN; a deployment makes the login of ``RECONCILE_URL`` a
  member of it): USAGE on the schema, SELECT on every table, and on
  ``reconciliation_checkpoints`` INSERT of every column but ``verified_at`` (the
  database sets the time), UPDATE of ``generation_id``, ``ledger_id``, ``timezone`` and
  ``verified_at`` (a clean run moves an organization's checkpoints to its new ids, and
  ``ON CONFLICT DO UPDATE`` needs it) and DELETE (a run that finds drift, or a
  checkpoint of another zone, deletes it). Nothing else: no DDL, no write to the books.
- ``dashboard_app`` keeps SELECT on the checkpoints and loses the INSERT, UPDATE and
  DELETE of 0008: the Reconciliation page checks, it no longer records.

Every later migration that adds a table must GRANT SELECT on it to ``dashboard_auditor``
too (beside ``dashboard_app`` and ``dashboard_reader``, see 0003), or the reconciler
cannot read it: ``tests/queries/test_database_roles.py`` fails until it does.

The role is created only when missing, and a concurrent creation by the migration of
another database on the same server is not an error (roles belong to the server; see
0003). Downgrade gives ``dashboard_app`` back exactly the grants of 0008 and revokes
exactly what upgrade granted; like 0003 it leaves the role in place.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 00:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CREATE_ROLE = """
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dashboard_auditor') THEN
        CREATE ROLE dashboard_auditor NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- created meanwhile by the migration of another database on this server
END
$$
"""

_GRANTS = (
    "GRANT USAGE ON SCHEMA public TO dashboard_auditor",
    # Every table of the schema at this revision (alembic_version included).
    "GRANT SELECT ON ALL TABLES IN SCHEMA public TO dashboard_auditor",
    """
    GRANT INSERT (organization_id, date, generation_id, ledger_id, timezone),
          UPDATE (generation_id, ledger_id, timezone, verified_at), DELETE
    ON reconciliation_checkpoints TO dashboard_auditor
    """,
    # What 0008 granted the app on the checkpoints (it keeps SELECT).
    """
    REVOKE INSERT (organization_id, date, generation_id, ledger_id, timezone, verified_at),
           UPDATE (generation_id, ledger_id, timezone, verified_at), DELETE
    ON reconciliation_checkpoints FROM dashboard_app
    """,
)

# Exactly what _GRANTS did, undone in reverse order.
_REVOKES = (
    """
    GRANT INSERT (organization_id, date, generation_id, ledger_id, timezone, verified_at),
          UPDATE (generation_id, ledger_id, timezone, verified_at), DELETE
    ON reconciliation_checkpoints TO dashboard_app
    """,
    """
    REVOKE INSERT (organization_id, date, generation_id, ledger_id, timezone),
           UPDATE (generation_id, ledger_id, timezone, verified_at), DELETE
    ON reconciliation_checkpoints FROM dashboard_auditor
    """,
    "REVOKE SELECT ON ALL TABLES IN SCHEMA public FROM dashboard_auditor",
    "REVOKE USAGE ON SCHEMA public FROM dashboard_auditor",
)


def upgrade() -> None:
    op.execute(_CREATE_ROLE)
    for statement in _GRANTS:
        op.execute(statement)


def downgrade() -> None:
    for statement in _REVOKES:
        op.execute(statement)
