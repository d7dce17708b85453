"""The rollups recounted from ``generations``: the tests' own definition, written apart
from the shared recounts of queries/recounts.py so that each checks the other."""

from __future__ import annotations

from sqlalchemy import Connection, func, select, text

from queries import recounts
from queries.models import Base

# Rows of the rollup that the recount does not have, plus rows of the recount that the
# rollup does not have: 0 when the rollup is exact. :org NULL checks every organization.
_MISMATCHES = {
    "user_daily_usage": text(
        """
        WITH rollup AS (
            SELECT organization_id, user_id, date, type, generations::bigint, credits::bigint
            FROM user_daily_usage
            WHERE CAST(:org AS bigint) IS NULL OR organization_id = :org
        ),
        recount AS (
            SELECT g.organization_id, g.user_id, (g.created_at AT TIME ZONE o.timezone)::date,
                   g.type, count(*)::bigint, sum(g.credits)::bigint
            FROM generations g JOIN organizations o ON o.id = g.organization_id
            WHERE CAST(:org AS bigint) IS NULL OR g.organization_id = :org
            GROUP BY 1, 2, 3, 4
        )
        SELECT (SELECT count(*) FROM (TABLE rollup EXCEPT ALL TABLE recount) a)
             + (SELECT count(*) FROM (TABLE recount EXCEPT ALL TABLE rollup) b)
        """
    ),
    "quarter_hour_usage": text(
        """
        WITH rollup AS (
            SELECT organization_id, bucket, type, generations::bigint, credits::bigint
            FROM quarter_hour_usage
            WHERE CAST(:org AS bigint) IS NULL OR organization_id = :org
        ),
        recount AS (
            SELECT g.organization_id,
                   to_timestamp(floor(extract(epoch FROM g.created_at) / 900) * 900),
                   g.type, count(*)::bigint, sum(g.credits)::bigint
            FROM generations g
            WHERE CAST(:org AS bigint) IS NULL OR g.organization_id = :org
            GROUP BY 1, 2, 3
        )
        SELECT (SELECT count(*) FROM (TABLE rollup EXCEPT ALL TABLE recount) a)
             + (SELECT count(*) FROM (TABLE recount EXCEPT ALL TABLE rollup) b)
        """
    ),
    # Prefix sums included: every day's totals through it equal a recount up to it.
    "organization_daily_usage": text(
        """
        WITH rollup AS (
            SELECT organization_id, date, generations, credits, generations_through,
                   credits_through
            FROM organization_daily_usage
            WHERE CAST(:org AS bigint) IS NULL OR organization_id = :org
        ),
        days AS (
            SELECT g.organization_id, (g.created_at AT TIME ZONE o.timezone)::date AS date,
                   count(*)::bigint AS generations, sum(g.credits)::bigint AS credits
            FROM generations g JOIN organizations o ON o.id = g.organization_id
            WHERE CAST(:org AS bigint) IS NULL OR g.organization_id = :org
            GROUP BY 1, 2
        ),
        recount AS (
            SELECT organization_id, date, generations, credits,
                   (sum(generations) OVER w)::bigint, (sum(credits) OVER w)::bigint
            FROM days
            WINDOW w AS (PARTITION BY organization_id ORDER BY date)
        )
        SELECT (SELECT count(*) FROM (TABLE rollup EXCEPT ALL TABLE recount) a)
             + (SELECT count(*) FROM (TABLE recount EXCEPT ALL TABLE rollup) b)
        """
    ),
    "organization_monthly_usage": text(
        """
        WITH rollup AS (
            SELECT month, organization_id, generations, credits
            FROM organization_monthly_usage
            WHERE CAST(:org AS bigint) IS NULL OR organization_id = :org
        ),
        recount AS (
            SELECT date_trunc('month', (g.created_at AT TIME ZONE o.timezone)::date)::date,
                   g.organization_id, count(*)::bigint, sum(g.credits)::bigint
            FROM generations g JOIN organizations o ON o.id = g.organization_id
            WHERE CAST(:org AS bigint) IS NULL OR g.organization_id = :org
            GROUP BY 1, 2
        )
        SELECT (SELECT count(*) FROM (TABLE rollup EXCEPT ALL TABLE recount) a)
             + (SELECT count(*) FROM (TABLE recount EXCEPT ALL TABLE rollup) b)
        """
    ),
}
ROLLUPS = tuple(_MISMATCHES)


def mismatches(conn: Connection, *, organization_id: int | None = None) -> dict[str, int]:
    """Per rollup, how many rows differ from a recount of ``generations`` (0 = exact)."""
    return {
        table: int(conn.execute(query, {"org": organization_id}).scalar_one())
        for table, query in _MISMATCHES.items()
    }


def shared_recount_mismatches(
    conn: Connection, *, organization_id: int | None = None
) -> dict[str, int]:
    """Per recounted table (``usage_limits`` too), how many rows differ from its shared
    recount (queries/recounts.py), which the loader, set_timezone and reconciliation
    use (0 = equal). ``usage_limits`` rows that count nothing only hold a limit."""
    ids = None if organization_id is None else [organization_id]
    out = {}
    for table_name in recounts.RECOUNTED:
        recount = recounts.recount(table_name, recounts.generations_of(ids))
        table = Base.metadata.tables[table_name]
        columns = list(recount.selected_columns.keys())
        stored = select(*(table.c[c] for c in columns))
        if organization_id is not None:
            stored = stored.where(table.c.organization_id == organization_id)
        if table_name == "usage_limits":
            stored = stored.where((table.c.used != 0) | (table.c.credits_used != 0))
        differ = [stored.except_all(recount), recount.except_all(stored)]
        out[table_name] = sum(
            int(conn.execute(select(func.count()).select_from(d.subquery())).scalar_one())
            for d in differ
        )
    return out


def rows(conn: Connection, table: str, *, organization_id: int) -> int:
    """How many rows the rollup holds for the organization (so 'exact' is not 'empty')."""
    query = {
        "user_daily_usage": "SELECT count(*) FROM user_daily_usage WHERE organization_id = :org",
        "quarter_hour_usage": "SELECT count(*) FROM quarter_hour_usage WHERE organization_id = :org",
        "organization_daily_usage": (
            "SELECT count(*) FROM organization_daily_usage WHERE organization_id = :org"
        ),
        "organization_monthly_usage": (
            "SELECT count(*) FROM organization_monthly_usage WHERE organization_id = :org"
        ),
    }[table]
    return int(conn.execute(text(query), {"org": organization_id}).scalar_one())
