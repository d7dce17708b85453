"""Each rollup recounted from the raw ``generations``: the one definition that the demo
loader, ``orgs.set_timezone`` and reconciliation use.

The recounts are SQLAlchemy Core over a *source* of generations with the columns
``organization_id, user_id, type, credits, created_at`` and ``date``, the generation's
local date in its organization's zone. ``generations_of`` is that source for some
organizations or all; reconciliation passes its own (the generations of the days it
checks). The counted rollups:

- ``usage_limits``: ``used``, ``credits_used`` per (organization, type, local date);
  the table also holds each day's limit, so it is recounted, never rebuilt from empty;
- ``user_daily_usage``: per (organization, user, local date, type);
- ``quarter_hour_usage``: per (organization, UTC quarter-hour, type), whatever the zone;
- ``organization_daily_usage``: per (organization, local date), with the running totals
  through each day (``running_totals`` of ``days``);
- ``organization_monthly_usage``: per (organization, local month), the sum of its days
  (``months`` of ``days``).

These are the expressions ``record_generation`` upserts (queries/generations.py); the
tests hold every rollup to them in UTC, +5:45 and a DST zone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Date,
    FromClause,
    Insert,
    Select,
    Table,
    any_,
    bindparam,
    cast,
    delete,
    func,
    literal_column,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.sql.elements import ColumnElement

from queries.models import (
    Generation,
    Organization,
    OrganizationDailyUsage,
    OrganizationMonthlyUsage,
    QuarterHourUsage,
    UsageEdge,
    UsageLimit,
    UserDailyUsage,
)

_TABLES: dict[str, Table] = {
    "usage_limits": UsageLimit.__table__,  # type: ignore[dict-item]
    "user_daily_usage": UserDailyUsage.__table__,  # type: ignore[dict-item]
    "quarter_hour_usage": QuarterHourUsage.__table__,  # type: ignore[dict-item]
    "organization_daily_usage": OrganizationDailyUsage.__table__,  # type: ignore[dict-item]
    "organization_monthly_usage": OrganizationMonthlyUsage.__table__,  # type: ignore[dict-item]
}
# Every recounted table, and those that are nothing but a rollup (rebuilt from empty).
RECOUNTED: tuple[str, ...] = tuple(_TABLES)
ROLLUPS: tuple[str, ...] = RECOUNTED[1:]

# A recount's rows: the rollup's columns, in its column names.
_Rows = Select[*tuple[Any, ...]]

_generations: Table = Generation.__table__  # type: ignore[assignment]
_organizations: Table = Organization.__table__  # type: ignore[assignment]


def _ids(organization_ids: Sequence[int]) -> ColumnElement[Any]:
    ids: Any = [int(i) for i in organization_ids]
    return bindparam("organization_ids", ids, type_=ARRAY(BigInteger))


def generations_of(organization_ids: Sequence[int] | None = None) -> FromClause:
    """The source of the recounts: the generations of ``organization_ids`` (None: of
    every organization, without a filter) with their local date in their organization's
    current zone."""
    g, o = _generations, _organizations
    query = select(
        g.c.organization_id,
        g.c.user_id,
        g.c.type,
        g.c.credits,
        g.c.created_at,
        cast(func.timezone(o.c.timezone, g.c.created_at), Date).label("date"),
    ).join_from(g, o, o.c.id == g.c.organization_id)
    if organization_ids is not None:
        query = query.where(g.c.organization_id == any_(_ids(organization_ids)))
    return query.subquery("g")


def _typed(table: str, name: str, value: ColumnElement[Any]) -> ColumnElement[Any]:
    """``value`` as the rollup's column ``name``: its type, so a recount and the stored
    rows compare row for row."""
    return cast(value, _TABLES[table].c[name].type).label(name)


def days(source: FromClause) -> _Rows:
    """Per (organization, local date) of ``source``: generations, credits."""
    s = source.c
    return select(
        s.organization_id,
        s.date,
        _typed("organization_daily_usage", "generations", func.count()),
        _typed("organization_daily_usage", "credits", func.sum(s.credits)),
    ).group_by(s.organization_id, s.date)


def running_totals(by_day: FromClause) -> _Rows:
    """``by_day`` (organization_id, date, generations, credits) with the running totals
    through each day of its organization: organization_daily_usage's rows."""
    d = by_day.c
    return select(
        d.organization_id,
        d.date,
        d.generations,
        d.credits,
        _typed(
            "organization_daily_usage",
            "generations_through",
            func.sum(d.generations).over(partition_by=d.organization_id, order_by=d.date),
        ),
        _typed(
            "organization_daily_usage",
            "credits_through",
            func.sum(d.credits).over(partition_by=d.organization_id, order_by=d.date),
        ),
    )


def months(by_day: FromClause) -> _Rows:
    """``by_day`` (organization_id, date, generations, credits) summed per local month:
    organization_monthly_usage's rows."""
    d = by_day.c
    month = cast(func.date_trunc(literal_column("'month'"), d.date), Date)
    return select(
        month.label("month"),
        d.organization_id,
        _typed("organization_monthly_usage", "generations", func.sum(d.generations)),
        _typed("organization_monthly_usage", "credits", func.sum(d.credits)),
    ).group_by(month, d.organization_id)


def recount(rollup: str, source: FromClause) -> _Rows:
    """The rows ``rollup`` must hold for the generations of ``source``, in the table's
    column names (for ``usage_limits``: its key, ``used`` and ``credits_used``)."""
    s = source.c
    if rollup == "usage_limits":
        return select(
            s.organization_id,
            s.type,
            s.date,
            _typed(rollup, "used", func.count()),
            _typed(rollup, "credits_used", func.sum(s.credits)),
        ).group_by(s.organization_id, s.type, s.date)
    if rollup == "user_daily_usage":
        return select(
            s.organization_id,
            s.user_id,
            s.date,
            s.type,
            _typed(rollup, "generations", func.count()),
            _typed(rollup, "credits", func.sum(s.credits)),
        ).group_by(s.organization_id, s.user_id, s.date, s.type)
    if rollup == "quarter_hour_usage":
        # UTC quarter-hours from 2000-01-01 00:00 UTC, as record_generation keys them.
        bucket = func.date_bin(
            literal_column("interval '15 minutes'"),
            s.created_at,
            literal_column("TIMESTAMPTZ '2000-01-01 00:00:00+00'"),
        )
        return select(
            s.organization_id,
            bucket.label("bucket"),
            s.type,
            _typed(rollup, "generations", func.count()),
            _typed(rollup, "credits", func.sum(s.credits)),
        ).group_by(s.organization_id, bucket, s.type)
    if rollup == "organization_daily_usage":
        return running_totals(days(source).subquery("d"))
    if rollup == "organization_monthly_usage":
        return months(days(source).subquery("d"))
    raise ValueError(f"{rollup!r} is not a recounted rollup ({', '.join(RECOUNTED)}).")


def insert_recount(rollup: str, organization_ids: Sequence[int] | None = None) -> Insert:
    """INSERT of ``rollup``'s recount for ``organization_ids`` (None: every
    organization) into a table that holds none of their rows (not ``usage_limits``)."""
    if rollup not in ROLLUPS:
        raise ValueError(f"{rollup!r} is not a rollup rebuilt from empty ({', '.join(ROLLUPS)}).")
    query = recount(rollup, generations_of(organization_ids))
    return _TABLES[rollup].insert().from_select(list(query.selected_columns.keys()), query)


def rebuild(conn: Connection, *, rollup: str, organization_ids: Sequence[int]) -> None:
    """Replace ``rollup``'s rows of ``organization_ids`` by their recount, on ``conn``
    (in the caller's transaction; the caller holds the organizations' locks). The
    ``usage_limits`` rows keep their limits: their counts are zeroed, then the recount is
    written in, a day without a row getting the limit in force (``limit_in_force``,
    migration 0010) as ``record_generation`` would give it. Two statements."""
    table = _TABLES.get(rollup)
    if table is None:
        raise ValueError(f"{rollup!r} is not a recounted rollup ({', '.join(RECOUNTED)}).")
    ids = _ids(organization_ids)
    if rollup != "usage_limits":
        conn.execute(delete(table).where(table.c.organization_id == any_(ids)))
        conn.execute(insert_recount(rollup, organization_ids))
        return
    conn.execute(
        update(table)
        .where(
            table.c.organization_id == any_(ids),
            or_(table.c.used != 0, table.c.credits_used != 0),
        )
        .values(used=0, credits_used=0, updated_at=func.now())
    )
    counts = recount(rollup, generations_of(organization_ids)).subquery("c")
    limit = (
        func.limit_in_force(counts.c.organization_id, counts.c.type, counts.c.date)
        .table_valued("daily_limit", "since")
        .lateral("f")
    )
    rows = select(
        counts.c.organization_id,
        counts.c.type,
        counts.c.date,
        counts.c.used,
        counts.c.credits_used,
        limit.c.daily_limit,
    ).select_from(counts.join(limit, true()))
    upsert = pg_insert(table).from_select(
        ["organization_id", "type", "date", "used", "credits_used", "daily_limit"], rows
    )
    conn.execute(
        upsert.on_conflict_do_update(
            index_elements=["organization_id", "type", "date"],
            set_={
                "used": upsert.excluded.used,
                "credits_used": upsert.excluded.credits_used,
                "updated_at": func.now(),
            },
        )
    )


# ---------------------------------------------------------------- usual days (0017)
# ``usual_days`` is kept apart from the rollups above: a row is the usual day of an
# (organization, local date) as ``usual_day()`` computes it from quarter_hour_usage,
# stamped with the zone and the organization's generations before the date. It is a
# cache the forecast checks (a stale stamp is never read), so its recount is of the rows
# it holds, not of every day. ``usual_day()`` (migration 0017) is the one definition.

KEEP_USUAL_DAYS = text(
    """
    INSERT INTO usual_days (organization_id, date, timezone, generations_before, usual_before)
    SELECT t.organization_id, t.date, f.timezone, f.generations_before, f.usual_before
    FROM (
        SELECT DISTINCT u.organization_id, u.date
        FROM usage_limits u
        JOIN organizations o ON o.id = u.organization_id
        -- Today is one of the UTC date's neighbours in every zone: a range on the date.
        WHERE u.date BETWEEN CAST(CAST(:at AS timestamptz) AT TIME ZONE 'UTC' AS date) - 1
                         AND CAST(CAST(:at AS timestamptz) AT TIME ZONE 'UTC' AS date) + 1
          AND u.date = (CAST(:at AS timestamptz) AT TIME ZONE o.timezone)::date
          AND u.used > 0
          AND (CAST(:organization_ids AS bigint[]) IS NULL
               OR u.organization_id = ANY(CAST(:organization_ids AS bigint[])))
    ) t
    CROSS JOIN LATERAL usual_day(t.organization_id, t.date) f
    ON CONFLICT (organization_id, date) DO UPDATE
        SET timezone = excluded.timezone,
            generations_before = excluded.generations_before,
            usual_before = excluded.usual_before
    """
)
"""Upsert the usual day of each organization's local day at ``:at`` where it has use
(``:organization_ids``, NULL: every organization): what the trigger writes at a day's
first generation, for loads that bypass it."""

RECOUNT_USUAL_DAYS = text(
    """
    SELECT d.organization_id, d.date, f.timezone, f.generations_before, f.usual_before
    FROM usual_days d
    CROSS JOIN LATERAL usual_day(d.organization_id, d.date) f
    WHERE d.organization_id = ANY(CAST(:organization_ids AS bigint[]))
    """
)
"""The rows ``usual_days`` holds for ``:organization_ids``, recounted."""

REBUILD_USUAL_DAYS = text(
    """
    UPDATE usual_days d
    SET (timezone, generations_before, usual_before) = (
        SELECT f.timezone, f.generations_before, f.usual_before
        FROM usual_day(d.organization_id, d.date) f)
    WHERE d.organization_id = ANY(CAST(:organization_ids AS bigint[]))
    """
)
"""Recompute every row ``usual_days`` holds for ``:organization_ids`` (``set_timezone``:
in the zone just set)."""


# ---------------------------------------------------------------- usage edges (0025)
# ``usage_edges`` holds, for each kept instant (``kept_usage_edges``), each
# organization's generations and credits before it (no row: none). An instant, not a
# local day, so the recount needs no zone: each generation falls in the slot of the
# first kept edge after it (width_bucket over the sorted edges), and an edge's count is
# the running sum of the slots before it. Rows with no generation are left out, as the
# table leaves them out.

RECOUNT_USAGE_EDGES = text(
    """
    WITH k AS (SELECT array_agg(edge ORDER BY edge) AS edges FROM kept_usage_edges),
    slots AS (
        SELECT g.organization_id, width_bucket(g.created_at, k.edges) AS slot,
               count(*) AS generations, sum(g.credits) AS credits
        FROM k JOIN generations g ON g.created_at < k.edges[cardinality(k.edges)]
        WHERE CAST(:organization_ids AS bigint[]) IS NULL
           OR g.organization_id = ANY(CAST(:organization_ids AS bigint[]))
        GROUP BY g.organization_id, slot
    ),
    running AS (
        SELECT e.edge, o.organization_id,
               CAST(sum(coalesce(s.generations, 0)) OVER w AS bigint) AS generations,
               CAST(sum(coalesce(s.credits, 0)) OVER w AS bigint) AS credits
        FROM (SELECT DISTINCT organization_id FROM slots) o
        CROSS JOIN k CROSS JOIN LATERAL unnest(k.edges) WITH ORDINALITY AS e(edge, n)
        LEFT JOIN slots s ON s.organization_id = o.organization_id AND s.slot = e.n - 1
        WINDOW w AS (PARTITION BY o.organization_id ORDER BY e.n)
    )
    SELECT edge, organization_id, generations, credits FROM running WHERE generations > 0
    """
)
"""The rows ``usage_edges`` must hold for ``:organization_ids`` (NULL: every
organization) at every kept edge, from ``generations``."""


def insert_usage_edges_recount() -> Insert:
    """INSERT of ``RECOUNT_USAGE_EDGES`` for every organization into a ``usage_edges``
    that holds none of the kept edges' rows (the demo loader, after the edges are
    registered)."""
    table: Table = UsageEdge.__table__  # type: ignore[assignment]
    rows = (
        RECOUNT_USAGE_EDGES.bindparams(organization_ids=None)
        .columns(*(table.c[name] for name in ("edge", "organization_id", "generations", "credits")))
        .subquery("r")
    )
    return table.insert().from_select(list(rows.c.keys()), select(rows))
