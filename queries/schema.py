"""Running the project's Alembic migrations from code (CLI, tests)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

from queries.embedded import PROJECT_ROOT

ALEMBIC_INI = PROJECT_ROOT / "alembic.ini"


def alembic_config(*, url: str | None = None, connection: Connection | None = None) -> Config:
    """Alembic's config for this project, bound to ``url`` or an open ``connection``."""
    config = Config(str(ALEMBIC_INI))
    if url is not None:
        config.attributes["url"] = url
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(*, url: str | None = None, connection: Connection | None = None) -> None:
    """Migrate to the newest revision (on ``DIRECT_URL`` unless told otherwise)."""
    command.upgrade(alembic_config(url=url, connection=connection), "head")


def downgrade(
    *, revision: str = "base", url: str | None = None, connection: Connection | None = None
) -> None:
    """Migrate down to ``revision``."""
    command.downgrade(alembic_config(url=url, connection=connection), revision)
