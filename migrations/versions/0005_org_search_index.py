"""The organization picker searches and pages on the server.

- ``ix_organizations_name_id``: the picker lists organizations by name, a page at a time
  (keyset on (name, id)); this serves the first page and every next one without sorting.
- ``ix_organizations_name_trgm``, ``ix_organizations_slug_trgm`` (GIN, pg_trgm): a
  search is a case-insensitive substring (ILIKE '%...%'), which no btree serves; at
  10,000 organizations a sequential scan took 8–20 ms, the trigram indexes well under
  one. pg_trgm ships with PostgreSQL's contrib (the embedded wheel, Debian, Neon) and is a
  trusted extension: the schema owner may create it without superuser rights.

Exact ids and slugs are served by the primary key and uq_organizations_slug.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 19:15:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_organizations_name_id"), "organizations", ["name", "id"])
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for column in ("name", "slug"):
        op.create_index(
            op.f(f"ix_organizations_{column}_trgm"),
            "organizations",
            [column],
            postgresql_using="gin",
            postgresql_ops={column: "gin_trgm_ops"},
        )


def downgrade() -> None:
    for column in ("name", "slug"):
        op.drop_index(op.f(f"ix_organizations_{column}_trgm"), table_name="organizations")
    # pg_trgm stays: other schemas in the database may use it.
    op.drop_index(op.f("ix_organizations_name_id"), table_name="organizations")
