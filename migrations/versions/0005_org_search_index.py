"""The organization picker searches and pages on the server: an index on (name, id).

The picker lists organizations by name, a page at a time (keyset on (name, id)); with
thousands of organizations this index serves the first page and every next one without
sorting the table. Exact ids and slugs are served by the primary key and uq_slug.

Revision ID: 0005
Revises: 0003 (re-chained onto 0004 when the slices of issue 8 merge)
Create Date: 2026-11-25 19:15:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_organizations_name_id"), "organizations", ["name", "id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_organizations_name_id"), table_name="organizations")
