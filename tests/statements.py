"""Recording the SQL statements a block of code sends, through SQLAlchemy events.

Shared with the query benchmark (``benchmarks/queries``), which EXPLAINs what a read sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, event


@dataclass
class Recorded:
    statements: list[tuple[str, Any]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.statements)


@contextmanager
def recording(target: Engine | Connection) -> Iterator[Recorded]:
    """Every statement executed on ``target`` inside the block, with its parameters."""
    recorded = Recorded()
    engine = target if isinstance(target, Engine) else target.engine

    def before(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        recorded.statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield recorded
    finally:
        event.remove(engine, "before_cursor_execute", before)
