"""Running the project's Alembic migrations from code (CLI, tests). Whether a database
is at the newest schema is ``queries.schema_version``'s question."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Connection

from queries.schema_version import alembic_config


def upgrade(*, url: str | None = None, connection: Connection | None = None) -> None:
    """Migrate to the newest revision (on ``DIRECT_URL`` unless told otherwise)."""
    command.upgrade(alembic_config(url=url, connection=connection), "head")


def downgrade(
    *, revision: str = "base", url: str | None = None, connection: Connection | None = None
) -> None:
    """Migrate down to ``revision``."""
    command.downgrade(alembic_config(url=url, connection=connection), revision)
