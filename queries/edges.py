"""The kept edges of the cross-organization reads (``usage_edges``, migration 0025).

The usage ranking and the monthly trend cut their ranges at the company zone's
midnights. Each organization's use before such an instant is ``usage_before()``: a probe
and up to a day of quarter-hours per organization, 10,000 of each at 10,000
organizations. For the instants the presets use (the company zone's midnights from 89
days ago to the end of today), ``usage_edges`` keeps that answer, exact: every
generation adds itself to the kept edges after it, in its own statement. This module
adds the day's new edges as the day turns (``dashboard keep-edges``, from cron after the
company zone's midnight; idempotent) and drops those no preset reaches any more. The
reads take an edge from the table when it is kept and from ``usage_before()`` when not,
so a turn that has not run yet makes them slower, never wrong.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from sqlalchemy import Connection, Engine, text

from queries.checks import check_timestamp, check_timezone
from queries.transactions import run_in_transaction

# The oldest preset (90 days) starts at today - 89; last month starts within 62 days.
KEEP_DAYS: Final = 90
# Edges older than the oldest kept day by more than this are dropped: another kept
# company zone's midnights are at most 26 hours away.
_DROP_AFTER_DAYS: Final = KEEP_DAYS + 2

_MISSING = text(
    """
    SELECT e.edge
    FROM (
        SELECT DISTINCT d::date::timestamp AT TIME ZONE CAST(:tz AS text) AS edge
        FROM generate_series(
            (CAST(:now AS timestamptz) AT TIME ZONE CAST(:tz AS text))::date - :days + 1,
            (CAST(:now AS timestamptz) AT TIME ZONE CAST(:tz AS text))::date + 1,
            interval '1 day') AS d
    ) e
    WHERE NOT EXISTS (SELECT FROM kept_usage_edges k WHERE k.edge = e.edge)
    ORDER BY e.edge
    """
)
REGISTER_EDGES = text(
    """
    INSERT INTO kept_usage_edges (edge)
    SELECT DISTINCT d::date::timestamp AT TIME ZONE CAST(:tz AS text)
    FROM generate_series(
        (CAST(:now AS timestamptz) AT TIME ZONE CAST(:tz AS text))::date - :days + 1,
        (CAST(:now AS timestamptz) AT TIME ZONE CAST(:tz AS text))::date + 1,
        interval '1 day') AS d
    ON CONFLICT (edge) DO NOTHING
    """
)
"""Register the edges ``keep_usage_edges`` keeps for ``:tz`` at ``:now`` (``:days``:
``KEEP_DAYS``) without their rows: for a load that then inserts
``recounts.insert_usage_edges_recount()`` in the same transaction, with no generation
written meanwhile."""
# Every generation's statement holds ROW EXCLUSIVE on usage_edges from its start: this
# waits for those in flight to commit and holds back the next ones until the edge is
# kept, so the snapshot of the statements after it misses no generation, and every later
# generation sees the new edge and adds itself (migration 0025).
_LOCK = text("LOCK TABLE usage_edges IN SHARE ROW EXCLUSIVE MODE")
_REGISTER = text(
    """
    INSERT INTO kept_usage_edges (edge) VALUES (CAST(:edge AS timestamptz))
    ON CONFLICT (edge) DO NOTHING
    RETURNING edge
    """
)
_FILL = text(
    """
    INSERT INTO usage_edges (edge, organization_id, generations, credits)
    SELECT CAST(:edge AS timestamptz), o.id, x.generations, x.credits
    FROM organizations o
    CROSS JOIN LATERAL usage_before(o.id, o.timezone, CAST(:edge AS timestamptz)) x
    WHERE x.generations > 0
    """
)
_DROP_ROWS = text("DELETE FROM usage_edges WHERE edge < CAST(:before AS timestamptz)")
_DROP_EDGES = text("DELETE FROM kept_usage_edges WHERE edge < CAST(:before AS timestamptz)")


@dataclass(frozen=True, slots=True)
class KeptEdges:
    """What one turn did: the edges it added and how many old ones it dropped."""

    added: tuple[dt.datetime, ...]
    dropped: int


def keep_usage_edges(engine: Engine, *, timezone: str, now: dt.datetime | None = None) -> KeptEdges:
    """Keep the company zone's (``timezone``) midnights of the last ``KEEP_DAYS`` days
    at ``now`` (default: the current time) and the end of today, each organization's use
    before each; drop edges older than every preset. Idempotent.

    Each new edge in a transaction of its own, which holds back generations while it
    computes every organization's use before the edge (about a read of the ranking)."""
    tz = check_timezone(timezone)
    at = dt.datetime.now(dt.UTC) if now is None else check_timestamp(now, "now")
    with engine.connect() as conn:
        missing = [
            row.edge for row in conn.execute(_MISSING, {"tz": tz, "now": at, "days": KEEP_DAYS})
        ]
    added: list[dt.datetime] = []
    for edge in missing:

        def fill(conn: Connection, edge: dt.datetime = edge) -> bool:
            conn.execute(_LOCK)
            if conn.execute(_REGISTER, {"edge": edge}).first() is None:
                return False  # another turn kept it meanwhile
            conn.execute(_FILL, {"edge": edge})
            return True

        if run_in_transaction(engine, fill):
            added.append(edge)
    before = at - dt.timedelta(days=_DROP_AFTER_DAYS)

    def drop(conn: Connection) -> int:
        conn.execute(_LOCK)
        conn.execute(_DROP_ROWS, {"before": before})
        return int(conn.execute(_DROP_EDGES, {"before": before}).rowcount)

    return KeptEdges(added=tuple(added), dropped=run_in_transaction(engine, drop))
