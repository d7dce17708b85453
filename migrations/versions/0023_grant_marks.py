"""Grant marks on the balance row: a generation's draw and the lock's expiry check
touch the row the generation already writes.

Migration 0021 made every generation draw its credits from the organization's grants
(``draw_credits``: a window over the live grants, then an UPDATE) and every lock look for
due grants (a probe of ``ix_credit_grants_due``). Both run under the organization's lock,
so a busy organization paid them in throughput (docs/performance.md, "Issue 18: what the
grants cost a generation"). Two marks on ``credit_balances`` take them off the common path:

- ``head_grant_id``: the grant first in line (priority, soonest expiry, age) when it was
  last found, or NULL when not known. A generation draws from it with one UPDATE by key,
  if it is still live and holds enough; otherwise ``draw_credits`` walks the grants as
  before and sets the mark again. Anything that could put another grant first (a new
  grant, a write-off, a change of a grant's terms or amount, a grant that gains credits)
  clears it (``credit_grants_marks``), so it never points past a grant that should be
  drawn first; a head that ran dry or expired only sends the next draw the long way.
- ``next_expiry``: the soonest ``expires_at`` of the organization's grants not yet written
  off, kept by the same trigger. ``lock_organization`` reads it from the row it locks and
  writes off due grants only when it has passed, with no second statement.

Both are caches of ``credit_grants``; reconciliation checks them against it. The demo
loader writes ``next_expiry`` with the balances it COPYs (``head_grant_id`` starts NULL).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 18:10:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FUNCTIONS = (
    # 0021's draw, which now also marks the grant first in line after it.
    """
    CREATE OR REPLACE FUNCTION draw_credits(org bigint, amount bigint) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
    DECLARE
        taken bigint;
    BEGIN
        WITH live AS (
            SELECT g.id, g.remaining,
                   sum(g.remaining) OVER (ORDER BY g.priority, g.expires_at NULLS LAST, g.id)
                       - g.remaining AS before
            FROM public.credit_grants g
            WHERE g.organization_id = org AND g.remaining > 0 AND g.written_off_at IS NULL
              AND (g.expires_at IS NULL OR g.expires_at > now())
        ),
        taking AS (
            SELECT live.id, least(live.remaining, amount - live.before) AS part
            FROM live WHERE live.before < amount
        ),
        drawn AS (
            UPDATE public.credit_grants g
            SET remaining = g.remaining - t.part, drawn = g.drawn + t.part
            FROM taking t
            WHERE g.organization_id = org AND g.id = t.id
            RETURNING t.part
        )
        SELECT coalesce(sum(drawn.part), 0) INTO taken FROM drawn;
        IF taken < amount THEN
            PERFORM public.refuse_overdraft(org, amount);
        END IF;
        UPDATE public.credit_balances b
        SET head_grant_id = (SELECT c.id FROM public.credit_grants c
                             WHERE c.organization_id = org AND c.remaining > 0
                               AND c.written_off_at IS NULL
                               AND (c.expires_at IS NULL OR c.expires_at > now())
                             ORDER BY c.priority, c.expires_at NULLS LAST, c.id
                             LIMIT 1)
        WHERE b.organization_id = org;
    END
    $fn$
    """,
    # 0021's generation trigger: the balance, then the marked head if it covers the
    # credits (one UPDATE by key), else the walk.
    """
    CREATE OR REPLACE FUNCTION book_generation() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
    DECLARE
        head bigint;
    BEGIN
        UPDATE public.credit_balances b
        SET balance = b.balance - NEW.credits, updated_at = now()
        WHERE b.organization_id = NEW.organization_id AND b.balance >= NEW.credits
        RETURNING b.head_grant_id INTO head;
        IF NOT FOUND THEN
            PERFORM public.refuse_overdraft(NEW.organization_id, NEW.credits);
        END IF;
        IF NEW.credits > 0 THEN
            IF head IS NOT NULL THEN
                UPDATE public.credit_grants g
                SET remaining = g.remaining - NEW.credits, drawn = g.drawn + NEW.credits
                WHERE g.organization_id = NEW.organization_id AND g.id = head
                  AND g.remaining >= NEW.credits AND g.written_off_at IS NULL
                  AND (g.expires_at IS NULL OR g.expires_at > now());
            END IF;
            IF head IS NULL OR NOT FOUND THEN
                PERFORM public.draw_credits(NEW.organization_id, NEW.credits);
            END IF;
        END IF;
        RETURN NEW;
    END
    $fn$
    """,
    """
    CREATE OR REPLACE FUNCTION lock_organization(org bigint) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
    DECLARE
        current bigint;
        due timestamptz;
    BEGIN
        SELECT b.balance, b.next_expiry INTO current, due FROM public.credit_balances b
        WHERE b.organization_id = org FOR UPDATE;
        IF due <= now() THEN
            PERFORM public.expire_due_grants(org);
            SELECT b.balance INTO current FROM public.credit_balances b
            WHERE b.organization_id = org;
        END IF;
        RETURN current;
    END
    $fn$
    """,
    """
    CREATE OR REPLACE FUNCTION lock_organizations(orgs bigint[])
    RETURNS TABLE (organization_id bigint, balance bigint)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
    #variable_conflict use_column
    DECLARE
        org bigint;
    BEGIN
        PERFORM 1 FROM public.credit_balances b
        WHERE b.organization_id = ANY(orgs)
        ORDER BY b.organization_id
        FOR UPDATE;
        FOR org IN
            SELECT b.organization_id FROM public.credit_balances b
            WHERE b.organization_id = ANY(orgs) AND b.next_expiry <= now()
        LOOP
            PERFORM public.expire_due_grants(org);
        END LOOP;
        RETURN QUERY
            SELECT b.organization_id, b.balance FROM public.credit_balances b
            WHERE b.organization_id = ANY(orgs) ORDER BY b.organization_id;
    END
    $fn$
    """,
    # Whatever could change which grant is first in line, or the soonest expiry, sets
    # the marks again. A draw (remaining down, drawn up) does neither, and passes the
    # trigger's WHEN without a call.
    """
    CREATE FUNCTION mark_credit_grants() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
    DECLARE
        was bigint := CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE OLD.organization_id END;
        now_of bigint := CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE NEW.organization_id END;
    BEGIN
        UPDATE public.credit_balances b
        SET head_grant_id = NULL,
            next_expiry = (SELECT min(c.expires_at) FROM public.credit_grants c
                           WHERE c.organization_id = b.organization_id
                             AND c.written_off_at IS NULL AND c.expires_at IS NOT NULL)
        WHERE b.organization_id IN (was, now_of);
        RETURN NULL;
    END
    $fn$
    """,
    """
    CREATE TRIGGER credit_grants_marks AFTER INSERT OR DELETE ON credit_grants
    FOR EACH ROW EXECUTE FUNCTION mark_credit_grants()
    """,
    """
    CREATE TRIGGER credit_grants_marks_on_change AFTER UPDATE ON credit_grants
    FOR EACH ROW
    WHEN (NEW.remaining > OLD.remaining OR NEW.amount <> OLD.amount
          OR NEW.priority <> OLD.priority
          OR NEW.expires_at IS DISTINCT FROM OLD.expires_at
          OR NEW.written_off_at IS DISTINCT FROM OLD.written_off_at
          OR NEW.organization_id <> OLD.organization_id OR NEW.id <> OLD.id)
    EXECUTE FUNCTION mark_credit_grants()
    """,
    "REVOKE EXECUTE ON FUNCTION mark_credit_grants() FROM PUBLIC",
)

_FILL = """
UPDATE credit_balances b
SET next_expiry = (SELECT min(c.expires_at) FROM public.credit_grants c
                   WHERE c.organization_id = b.organization_id
                     AND c.written_off_at IS NULL AND c.expires_at IS NOT NULL)
"""


def upgrade() -> None:
    op.add_column("credit_balances", sa.Column("head_grant_id", sa.BigInteger()))
    op.add_column("credit_balances", sa.Column("next_expiry", sa.DateTime(timezone=True)))
    op.execute(_FILL)
    for statement in _FUNCTIONS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER credit_grants_marks_on_change ON credit_grants")
    op.execute("DROP TRIGGER credit_grants_marks ON credit_grants")
    op.execute("DROP FUNCTION mark_credit_grants()")
    # 0021's draw, generation trigger and locks, as they were (same signatures).
    for statement in _revision_0021()._FUNCTIONS:
        if statement.lstrip().startswith("CREATE") and any(
            f"FUNCTION {name}(" in statement
            for name in (
                "draw_credits",
                "book_generation",
                "lock_organization",
                "lock_organizations",
            )
        ):
            op.execute(statement.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
    op.drop_column("credit_balances", "next_expiry")
    op.drop_column("credit_balances", "head_grant_id")


def _revision_0021() -> ModuleType:
    path = Path(__file__).with_name("0021_credit_grants.py")
    spec = importlib.util.spec_from_file_location("migration_0021", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
