"""Which schema this version of the code needs, and whether a database has it.

The app checks this before its first page and the command line before it serves or
writes; neither migrates here (a real database is migrated only by `dashboard migrate`,
``tooling.schema``).

The check is cheap, because it runs on every start: the revisions are read from the
migration files' ``revision``/``down_revision`` lines as text (the files are never
imported, and Alembic is not imported at all), and the database's from
``alembic_version`` (two SELECTs: is the table there, which revision). A test holds the text reading equal to Alembic's
own (``tests/queries/test_schema_version.py``).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, text

if TYPE_CHECKING:
    from alembic.config import Config

ALEMBIC_INI = Path(__file__).resolve().parents[1] / "alembic.ini"
VERSIONS = Path(__file__).resolve().parents[1] / "migrations" / "versions"

# How every migration names itself and its parent (Alembic's template, typed): a
# revision is a quoted id, a parent a quoted id or None.
_REVISION = re.compile(r'^revision(?:\s*:\s*[^=]+)?\s*=\s*["\']([^"\']+)["\']', re.MULTILINE)
_DOWN_REVISION = re.compile(
    r'^down_revision(?:\s*:\s*[^=]+)?\s*=\s*(?:None|["\']([^"\']+)["\'])', re.MULTILINE
)
# As Alembic reads it: whether the table is there (its name a parameter), then the row.
_HAS_TABLE = text("SELECT to_regclass(:name) IS NOT NULL")
_CURRENT = text("SELECT version_num FROM alembic_version")


def alembic_config(*, url: str | None = None, connection: Connection | None = None) -> Config:
    """Alembic's config for this project, bound to ``url`` or an open ``connection``."""
    from alembic.config import Config

    config = Config(str(ALEMBIC_INI))
    if url is not None:
        config.attributes["url"] = url
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def revisions() -> dict[str, str | None]:
    """Every revision this version of the code knows, with its parent (None for the
    first), read from the migration files as text."""
    found: dict[str, str | None] = {}
    for path in sorted(VERSIONS.glob("*.py")):
        source = path.read_text(encoding="utf-8")
        revision = _REVISION.search(source)
        down = _DOWN_REVISION.search(source)
        if revision is None or down is None:
            raise RuntimeError(f"{path.name} names no revision or no down_revision")
        found[revision.group(1)] = down.group(1)
    return found


def head_revision() -> str:
    """The newest revision this version of the code knows: the one no other revises."""
    known = revisions()
    heads = set(known) - set(known.values())
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads: {sorted(heads)}")
    return heads.pop()


def current_revision(conn: Connection) -> str | None:
    """The revision the database is at, None when it has no dashboard schema."""
    if not conn.execute(_HAS_TABLE, {"name": "alembic_version"}).scalar_one():
        return None
    rows = conn.execute(_CURRENT).scalars().all()
    if len(rows) > 1:
        raise RuntimeError(f"the database is at {len(rows)} revisions at once: {sorted(rows)}")
    return rows[0] if rows else None


def revision_problem(current: str | None) -> str | None:
    """A sentence if ``current`` (the database's revision) is not the newest, else None."""
    head = head_revision()
    if current == head:
        return None
    if current is None:
        return (
            "The database has no dashboard schema yet. Run `uv run dashboard migrate` "
            "(as the owner, DIRECT_URL) first."
        )
    if current not in revisions():
        return (
            f"The database's schema (revision {current}) is newer than this version of the "
            "dashboard knows. Deploy the newer dashboard."
        )
    return (
        f"The database's schema is behind (revision {current}; this version needs {head}). "
        "Run `uv run dashboard migrate` (as the owner, DIRECT_URL) first."
    )


def schema_problem(engine: Engine) -> str | None:
    """A sentence if the database's schema is not the newest one, else None.

    Nothing is changed: a real database is migrated only by `dashboard migrate`.
    """
    with engine.connect() as conn:
        current = current_revision(conn)
    return revision_problem(current)
