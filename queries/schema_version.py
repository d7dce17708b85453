"""Which schema this version of the code needs, and whether a database has it.

The app checks this before its first page and the command line before it serves or
writes; neither migrates here (a real database is migrated only by `dashboard migrate`,
``tooling.schema``).
"""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

ALEMBIC_INI = Path(__file__).resolve().parents[1] / "alembic.ini"


def alembic_config(*, url: str | None = None, connection: Connection | None = None) -> Config:
    """Alembic's config for this project, bound to ``url`` or an open ``connection``."""
    config = Config(str(ALEMBIC_INI))
    if url is not None:
        config.attributes["url"] = url
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this version of the code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def schema_problem(engine: Engine) -> str | None:
    """A sentence if the database's schema is not the newest one, else None.

    Nothing is changed: a real database is migrated only by `dashboard migrate`.
    """
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    head = head_revision()
    if current == head:
        return None
    if current is None:
        return (
            "The database has no dashboard schema yet. Run `uv run dashboard migrate` "
            "(as the owner, DIRECT_URL) first."
        )
    known = {rev.revision for rev in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if current not in known:
        return (
            f"The database's schema (revision {current}) is newer than this version of the "
            "dashboard knows. Deploy the newer dashboard."
        )
    return (
        f"The database's schema is behind (revision {current}; this version needs {head}). "
        "Run `uv run dashboard migrate` (as the owner, DIRECT_URL) first."
    )
