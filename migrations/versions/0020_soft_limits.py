"""Soft limits: per organization and type, a daily limit is hard (generations beyond it
are refused, as before) or soft (they go through, and what is beyond it is overage).

``limit_enforcement`` keeps the mode per (organization, type); no row means hard, so
every organization keeps its behaviour until someone switches a type. A soft limit is
still a limit: ``usage_limits.daily_limit`` and ``limit_in_force`` are unchanged, and
the overage of a day is derived, ``greatest(used - daily_limit, 0)``, never stored, so
the rollups and the reconciliation that recounts them stay as they were.

``record_generation_work`` (migration 0016) is replaced with the same signature and
result: ``in_force`` gains ``soft`` (one probe of ``pk_limit_enforcement``), and a soft
limit lets the generation through both in ``go`` and in the quota upsert's guard. A
hard limit is checked exactly as before. The downgrade puts back 0016's function.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 13:40:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SIGNATURE = "record_generation_work(bigint, bigint, text, integer, timestamptz, text)"

# 0016's statement (see its comments, block by block) with three changes: in_force's
# `soft`, `go` letting a soft limit through, and the upsert's guard doing the same (the
# guard may read `go`, which holds this generation's mode).
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


def _migration_0016() -> ModuleType:
    """Migration 0016's module, whose upgrade creates the function as it was."""
    path = Path(__file__).with_name("0016_record_generation_function.py")
    spec = importlib.util.spec_from_file_location("migration_0016", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    op.create_table(
        "limit_enforcement",
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.Text(collation="C"), nullable=False),
        sa.Column("soft", sa.Boolean(), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_limit_enforcement_organization_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["type"],
            ["generation_types.type"],
            name=op.f("fk_limit_enforcement_type_generation_types"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "type", name=op.f("pk_limit_enforcement")),
    )
    op.create_index(op.f("ix_limit_enforcement_type"), "limit_enforcement", ["type"])
    op.execute(
        "GRANT SELECT ON limit_enforcement TO dashboard_app, dashboard_reader, dashboard_auditor"
    )
    op.execute(
        "GRANT INSERT (organization_id, type, soft), UPDATE (soft, updated_at) "
        "ON limit_enforcement TO dashboard_app"
    )
    # CREATE OR REPLACE keeps the function's owner, grants and settings.
    op.execute(_FUNCTION)


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {_SIGNATURE}")
    _migration_0016().upgrade()
    op.drop_table("limit_enforcement")
