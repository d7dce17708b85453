"""``record_generation_work(...)``: record_generation's work statement, kept in the
database so each server connection plans it once.

``queries.generations.record_generation`` sends two statements in one round trip: the
lock (``lock_organization``, migration 0013), then all the work in one statement (the
checks, the quota upsert, the insert whose trigger debits the balance, the four
rollups). That statement has six writes, and planning it on every call was the largest
single cost of a generation (issue 17, ``docs/performance.md``, "What the rollups
cost"). Server-side prepared statements would keep its plan, but a transaction-mode
pooler (PgBouncer 1.18, Neon) hands each transaction any server connection, so they are
ruled out. A PL/pgSQL function keeps the plans of its statements per server connection,
whoever calls it: this one holds the statement verbatim (its parameters ``p_*`` where
the statement had bound ``:name`` parameters), and ``_RECORD`` is now its call.

- It returns what the statement returned: one row (none without the organization)
  whose columns ``queries.generations._answer`` reads to answer or to say why it
  refused. Refusals are columns, not errors; the errors it can raise are those of its
  statements (the balance trigger's check_violation, a lock or statement timeout,
  serialization failures), with their SQLSTATE, constraint and DETAIL unchanged.
- Its statement runs after the lock statement, in a snapshot of its own (a VOLATILE
  function takes one per statement), so it sees everything the lock's previous holder
  committed, as before.
- SECURITY INVOKER: it writes with the caller's rights, which ``dashboard_app`` already
  holds on each table, so the privilege model does not change; EXECUTE is revoked from
  PUBLIC and granted to ``dashboard_app`` (``dashboard_reader`` writes nothing). A fixed
  ``search_path`` (pg_temp last), as PostgreSQL recommends, so the caller's path cannot
  redirect its tables.
- ``#variable_conflict use_column``: the result columns (``balance``, ``day``, ``id``
  ...) are variables of the function too; in the statement such a name means the
  table's column, as it did in the statement sent from Python.
- Its body is a string, so it records no dependency on the tables it writes: the demo
  loader's table swaps (``tooling/staging.py``, DROP and rename) go on working, and the
  cached plans are invalidated by them like any other.

A rollup added later is a ``CREATE OR REPLACE FUNCTION`` of it in a new migration (the
same signature and result; a changed result needs DROP and CREATE).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 06:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# org, user, type, credits (NULL: the type's default), at (NULL: now()), idempotency key
_SIGNATURE = "record_generation_work(bigint, bigint, text, integer, timestamptz, text)"

# The statement, block by block:
# - ctx: the facts of the request (balance, local day, cost).
# - previous: the generation recorded earlier under this idempotency key, if any.
# - in_force: the day's count, and its limit by the database's one rule,
#   limit_in_force() (migration 0010; STABLE, so it reads this statement's snapshot
#   like the rest): its own row's, else the latest earlier day's, else the type's
#   default times the plan's factor.
# - go: one row when the generation is accepted; every write below hangs off it, so a
#   refused generation changes nothing.
# - counted (usage_limits), g (the insert): g runs only after counted returned a row.
#   Inserting g debits the balance: a trigger does (migration 0013, only the database
#   moves a balance), so the balance after is the locked balance minus the cost.
# - One self-contained block per rollup: it reads only `go` (cost, day), `g` (id,
#   created_at) and the parameters. Add a rollup as one more block of that shape.
#   The cross-organization ones (migration 0007) are in the organization's local day: a
#   new day starts from the running totals through the latest earlier day, and the days
#   after go.day (only a back-dated generation has any) each add it too. Exact because
#   the statement's snapshot is taken after the lock.
# - The last SELECT returns one row with what the caller needs to answer or to say why
#   it refused (NULL previous_* without a previous generation, NULL id and *_after when
#   nothing was recorded).
_FUNCTION = """
CREATE FUNCTION record_generation_work(
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
        SELECT coalesce((SELECT used FROM today), 0) AS used, f.daily_limit
        FROM ctx CROSS JOIN LATERAL limit_in_force(p_org, p_type, ctx.day) AS f
    ),
    go AS (
        SELECT ctx.cost, ctx.day, in_force.daily_limit
        FROM ctx CROSS JOIN in_force
        WHERE ctx.known_type AND ctx.member AND NOT EXISTS (SELECT FROM previous)
          AND ctx.balance >= ctx.cost AND in_force.used < in_force.daily_limit
    ),
    counted AS (
        INSERT INTO usage_limits AS u
            (organization_id, type, date, used, credits_used, daily_limit)
        SELECT p_org, p_type, go.day, 1, go.cost, go.daily_limit
        FROM go
        ON CONFLICT (organization_id, type, date) DO UPDATE
            SET used = u.used + 1, credits_used = u.credits_used + excluded.credits_used,
                updated_at = now()
            WHERE u.used < u.daily_limit
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


def upgrade() -> None:
    op.execute(_FUNCTION)
    op.execute(f"REVOKE EXECUTE ON FUNCTION {_SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {_SIGNATURE} TO dashboard_app")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {_SIGNATURE}")
