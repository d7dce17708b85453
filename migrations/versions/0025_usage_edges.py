"""``usage_edges``: every organization's use before the instants the cross-organization
reads cut their ranges at, kept exact, so a range is two ranges of one index.

The usage ranking and the monthly trend count the company zone's days
(``DASHBOARD_TIMEZONE``) for every organization: per organization and edge of the range,
``usage_before()`` (migration 0015), a running-total probe plus the quarter-hours of its
local day before the edge. At 10,000 organizations that was 218 ms for a page of the
ranking and 461 ms for the trend at 100M (issue 17). The edges of the presets are few
and known: the company zone's midnights of the last 90 days and the end of today.

``usage_edges (edge, organization_id)`` holds ``usage_before(organization, edge)`` for
every instant registered in ``kept_usage_edges``; no row means no generation before the
edge. It is an instant, not a local day, so it does not depend on the organization's
zone (``set_timezone`` leaves it) and two company zones with the same midnights share
it. Kept exact in two ways:

- each generation adds itself, in its own statement (``record_generation_work``, one
  more block), to every kept edge after its ``created_at``: the end of today for a
  generation of now (one upsert on the organization's own row, whose lock the write
  already holds), the later days too for a back-dated one;
- ``usage.keep_usage_edges`` registers a new edge (the day's turn) and writes its rows
  from ``usage_before()`` in one transaction that first locks ``usage_edges`` in SHARE
  ROW EXCLUSIVE mode: a generation's statement holds ROW EXCLUSIVE on the table from
  its start, so the fill waits for every generation in flight to commit (its snapshot,
  taken after the lock, sees them) and every later one waits for the fill, then sees
  the new edge and adds itself.

A read takes an edge from here only when it is registered, else from
``usage_before()`` as before, so an edge not kept (a custom range, the minutes after
midnight before the turn) is slower, never wrong. Recounted from ``generations`` by
``recounts.RECOUNT_USAGE_EDGES`` (loader and reconciliation).

The app role keeps the rows (the generation's statement, the turn); every role reads.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07 21:00:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 0020's statement (see 0016's comments, block by block) with one block more: per_edge.
_FUNCTION = """
CREATE OR REPLACE FUNCTION record_generation_work(
    p_org bigint, p_user bigint, p_type text, p_credits integer, p_at timestamptz, p_key text)
RETURNS TABLE (
    balance bigint, day date, known_type boolean, cost integer, member boolean,
    used integer, daily_limit integer,
    previous_id bigint, previous_user bigint, previous_type text, previous_credits integer,
    previous_created_at timestamptz,
    balance_after bigint, used_after integer, limit_after integer,
    id bigint, created_at timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, public, pg_temp
AS $fn$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH ctx AS (
        SELECT b.balance,
               (coalesce(p_at, now()) AT TIME ZONE o.timezone)::date AS day,
               t.type IS NOT NULL AS known_type,
               coalesce(p_credits, t.default_credits) AS cost,
               EXISTS (SELECT 1 FROM users u WHERE u.organization_id = o.id AND u.id = p_user)
                   AS member
        FROM credit_balances b
        JOIN organizations o ON o.id = b.organization_id
        LEFT JOIN generation_types t ON t.type = p_type
        WHERE b.organization_id = p_org
    ),
    previous AS (
        SELECT p.id, p.user_id, p.type, p.credits, p.created_at
        FROM generations p
        WHERE p.organization_id = p_org AND p.idempotency_key = p_key
    ),
    today AS (
        SELECT u.used
        FROM usage_limits u JOIN ctx ON u.date = ctx.day
        WHERE u.organization_id = p_org AND u.type = p_type
    ),
    in_force AS (
        SELECT coalesce((SELECT used FROM today), 0) AS used, f.daily_limit,
               EXISTS (SELECT FROM limit_enforcement e
                       WHERE e.organization_id = p_org AND e.type = p_type AND e.soft)
                   AS soft
        FROM ctx CROSS JOIN LATERAL limit_in_force(p_org, p_type, ctx.day) AS f
    ),
    go AS (
        SELECT ctx.cost, ctx.day, in_force.daily_limit, in_force.soft
        FROM ctx CROSS JOIN in_force
        WHERE ctx.known_type AND ctx.member AND NOT EXISTS (SELECT FROM previous)
          AND ctx.balance >= ctx.cost
          AND (in_force.used < in_force.daily_limit OR in_force.soft)
    ),
    counted AS (
        INSERT INTO usage_limits AS u
            (organization_id, type, date, used, credits_used, daily_limit)
        SELECT p_org, p_type, go.day, 1, go.cost, go.daily_limit
        FROM go
        ON CONFLICT (organization_id, type, date) DO UPDATE
            SET used = u.used + 1, credits_used = u.credits_used + excluded.credits_used,
                updated_at = now()
            WHERE u.used < u.daily_limit OR (SELECT go.soft FROM go)
        RETURNING u.used, u.daily_limit
    ),
    g AS (
        INSERT INTO generations
            (organization_id, user_id, type, credits, idempotency_key, created_at)
        SELECT p_org, p_user, p_type, go.cost, p_key, coalesce(p_at, now())
        FROM go CROSS JOIN counted
        RETURNING id, created_at
    ),
    per_user AS (
        INSERT INTO user_daily_usage AS r
            (organization_id, user_id, date, type, generations, credits)
        SELECT p_org, p_user, go.day, p_type, 1, go.cost
        FROM go CROSS JOIN g
        ON CONFLICT (organization_id, user_id, date, type) DO UPDATE
            SET generations = r.generations + 1, credits = r.credits + excluded.credits
    ),
    per_quarter_hour AS (
        INSERT INTO quarter_hour_usage AS r (organization_id, bucket, type, generations, credits)
        SELECT p_org, date_bin('15 minutes', g.created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
               p_type, 1, go.cost
        FROM go CROSS JOIN g
        ON CONFLICT (organization_id, bucket, type) DO UPDATE
            SET generations = r.generations + 1, credits = r.credits + excluded.credits
    ),
    per_org_day AS (
        INSERT INTO organization_daily_usage AS r
            (organization_id, date, generations, credits, generations_through, credits_through)
        SELECT p_org, go.day, 1, go.cost,
               coalesce(p.generations_through, 0) + 1, coalesce(p.credits_through, 0) + go.cost
        FROM go CROSS JOIN g
        LEFT JOIN LATERAL (
            SELECT e.generations_through, e.credits_through
            FROM organization_daily_usage e
            WHERE e.organization_id = p_org AND e.date < go.day
            ORDER BY e.date DESC
            LIMIT 1
        ) p ON true
        ON CONFLICT (organization_id, date) DO UPDATE
            SET generations = r.generations + 1, credits = r.credits + excluded.credits,
                generations_through = r.generations_through + 1,
                credits_through = r.credits_through + excluded.credits
    ),
    per_org_later_days AS (
        UPDATE organization_daily_usage r
        SET generations_through = r.generations_through + 1,
            credits_through = r.credits_through + go.cost
        FROM go CROSS JOIN g
        WHERE r.organization_id = p_org AND r.date > go.day
    ),
    per_org_month AS (
        INSERT INTO organization_monthly_usage AS r (month, organization_id, generations, credits)
        SELECT date_trunc('month', go.day)::date, p_org, 1, go.cost
        FROM go CROSS JOIN g
        ON CONFLICT (organization_id, month) DO UPDATE
            SET generations = r.generations + 1, credits = r.credits + excluded.credits
    ),
    -- Every kept edge after the generation (0025): a generation of now adds to the end
    -- of today in each kept company zone, a back-dated one to the later kept days too.
    per_edge AS (
        INSERT INTO usage_edges AS r (edge, organization_id, generations, credits)
        SELECT k.edge, p_org, 1, go.cost
        FROM go CROSS JOIN g
        JOIN kept_usage_edges k ON k.edge > g.created_at
        ON CONFLICT (edge, organization_id) DO UPDATE
            SET generations = r.generations + 1, credits = r.credits + excluded.credits
    )
    SELECT ctx.balance, ctx.day, ctx.known_type, ctx.cost, ctx.member,
           in_force.used, in_force.daily_limit,
           previous.id, previous.user_id, previous.type, previous.credits,
           previous.created_at,
           CASE WHEN g.id IS NOT NULL THEN ctx.balance - ctx.cost END,
           counted.used, counted.daily_limit,
           g.id, g.created_at
    FROM ctx
    CROSS JOIN in_force
    LEFT JOIN previous ON true
    LEFT JOIN counted ON true
    LEFT JOIN g ON true;
END
$fn$
"""

# The reads' one door to the edges: each edge's rows from usage_edges when it is kept,
# else usage_before() (0015) for every organization; kept edges list only organizations
# with use before them (the others had none). A plain LANGUAGE sql STABLE function with
# one SELECT, so the planner inlines it into the caller.
_EDGES = """
CREATE FUNCTION usage_before_edges(edges timestamptz[])
RETURNS TABLE (edge timestamptz, organization_id bigint, generations bigint, credits bigint)
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT u.edge, u.organization_id, u.generations, u.credits
    FROM usage_edges u
    WHERE u.edge = ANY(edges) AND u.edge IN (SELECT k.edge FROM kept_usage_edges k)
    UNION ALL
    SELECT e.edge, o.id, x.generations, x.credits
    FROM (SELECT DISTINCT d.edge FROM unnest(edges) AS d(edge)) e
    CROSS JOIN organizations o
    CROSS JOIN LATERAL usage_before(o.id, o.timezone, e.edge) x
    WHERE NOT EXISTS (SELECT FROM kept_usage_edges k WHERE k.edge = e.edge)
$fn$
"""

_GRANTS = (
    "GRANT SELECT ON usage_edges, kept_usage_edges "
    "TO dashboard_app, dashboard_reader, dashboard_auditor",
    # The generation's statement upserts the rows; the turn registers an edge, fills
    # and drops rows (LOCK ... SHARE ROW EXCLUSIVE needs UPDATE or DELETE).
    "GRANT INSERT (edge, organization_id, generations, credits), "
    "UPDATE (generations, credits), DELETE ON usage_edges TO dashboard_app",
    "GRANT INSERT (edge), DELETE ON kept_usage_edges TO dashboard_app",
)


def _migration_0020() -> ModuleType:
    """Migration 0020's module, whose ``_FUNCTION`` is the function as it was."""
    path = Path(__file__).with_name("0020_soft_limits.py")
    spec = importlib.util.spec_from_file_location("migration_0020", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    op.create_table(
        "kept_usage_edges",
        sa.Column("edge", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "kept_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("edge", name=op.f("pk_kept_usage_edges")),
    )
    op.create_table(
        "usage_edges",
        sa.Column("edge", sa.DateTime(timezone=True), nullable=False),
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("generations", sa.BigInteger(), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_usage_edges_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("edge", "organization_id", name=op.f("pk_usage_edges")),
    )
    op.create_index(op.f("ix_usage_edges_organization_id"), "usage_edges", ["organization_id"])
    for statement in _GRANTS:
        op.execute(statement)
    # CREATE OR REPLACE keeps the function's owner, grants and settings. No edge is kept
    # yet: the reads compute every edge as before until the first turn.
    op.execute(_FUNCTION)
    op.execute(_EDGES)


def downgrade() -> None:
    op.execute("DROP FUNCTION usage_before_edges(timestamptz[])")
    op.execute(_migration_0020()._FUNCTION)
    op.drop_table("usage_edges")
    op.drop_table("kept_usage_edges")
