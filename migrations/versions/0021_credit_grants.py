"""Credit grants: credits that can expire, drawn down in a fixed order, kept by the database.

``credit_grants`` holds each organization's grants. The database keeps them as it keeps
the balance (migration 0013), in the same triggers, so every write, whatever its caller,
moves both or neither:

- a positive ledger entry makes a grant: its ``amount``, and the terms the entry carries
  (``grant_expires_at``, NULL: never; ``grant_priority``, NULL: the default, 10; lower
  is drawn first). Its ``source`` follows from the entry: ``bulk:``, ``allowance:`` and
  ``rollover:`` keys, an approval, a refund, a reversed deduction ('restored'), else
  'manual';
- a deduction and a generation draw from the live grants (``remaining > 0``, not expired)
  in the order priority, soonest expiry (never last), age: ``draw_credits``, one UPDATE;
- a reversal of a grant's entry takes what remains of that grant (never more: the caller
  reverses only the rest, ``queries.credits.reverse_adjustment``);
- an ``expired`` entry (key ``expiry:<grant>``, ``grant_id``) writes off what remained of
  its grant; its ``effective_at`` is the grant's ``expires_at``, its ``created_at`` when
  it was recorded.

Expiry needs no job to be exact. ``lock_organization`` and ``lock_organizations``, which
every write takes first, now also write off the organization's grants that are due
(``expire_due_grants``), so the write that follows sees only live grants; an idle
organization's are written off by ``dashboard expire-credits`` (the same function). Until
then a read counts them as gone: ``due_credits(at)`` is what is due and not written off.

Each organization gets one 'opening' grant: the balance it has now (possibly 0), never
expiring, covering its ledger through its latest entry (``ledger_entry_id``); a new
organization's balance row opens one by a trigger.

``approval_requests`` keeps a grant's terms, and ``decide_approval_request`` gives them to
the entry it books; it also locks through ``lock_organization``, so an approval writes
off due grants first too.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 15:10:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DERIVED_KEYS_0012 = (
    "(idempotency_key LIKE 'reversal:%') = (reverses_id IS NOT NULL)"
    " AND (reverses_id IS NULL OR idempotency_key = 'reversal:' || reverses_id)"
    " AND (idempotency_key LIKE 'approval:%') = (approval_request_id IS NOT NULL)"
    " AND (approval_request_id IS NULL OR idempotency_key = 'approval:' || approval_request_id)"
    " AND (idempotency_key NOT LIKE 'bulk:%' OR idempotency_key ~ '^bulk:[0-9a-f]{40}:[1-9][0-9]*$')"
)
_DERIVED_KEYS = (
    _DERIVED_KEYS_0012 + " AND (idempotency_key LIKE 'expiry:%') = (kind = 'expired')"
    " AND (kind <> 'expired' OR idempotency_key = 'expiry:' || grant_id)"
    " AND (idempotency_key NOT LIKE 'allowance:%'"
    "      OR idempotency_key ~ '^allowance:[0-9]{4}-(0[1-9]|1[0-2])$')"
    " AND (idempotency_key NOT LIKE 'rollover:%'"
    "      OR idempotency_key ~ '^rollover:[0-9]{4}-(0[1-9]|1[0-2])$')"
)
_KINDS_0001 = "kind IN ('grant', 'deduct', 'refund', 'reversal')"
_KINDS = "kind IN ('grant', 'deduct', 'refund', 'reversal', 'expired')"
_SIGN_0001 = (
    "(kind IN ('grant', 'refund') AND amount > 0)"
    " OR (kind = 'deduct' AND amount < 0)"
    " OR (kind = 'reversal' AND reverses_id IS NOT NULL)"
)
_SIGN = (
    _SIGN_0001 + " OR (kind = 'expired' AND amount < 0 AND grant_id IS NOT NULL"
    "     AND effective_at IS NOT NULL)"
)

_FUNCTIONS = (
    # Draw `amount` from the organization's live grants, in order; refuse an overdraft.
    # The window sums what the grants before each one hold: a grant is drawn while the
    # ones before it could not cover the amount, and only what is still needed.
    """
    CREATE FUNCTION draw_credits(org bigint, amount bigint) RETURNS void
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
    END
    $fn$
    """,
    # The ledger's trigger (0013's, BEFORE INSERT): the balance as before, then the grants.
    # NEW.id is already drawn from its identity here, so a new grant can name its entry.
    """
    CREATE OR REPLACE FUNCTION book_ledger_entry() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
    DECLARE
        g public.credit_grants%ROWTYPE;
    BEGIN
        IF NEW.kind = 'expired' THEN
            SELECT * INTO g FROM public.credit_grants c
            WHERE c.organization_id = NEW.organization_id AND c.id = NEW.grant_id
            FOR UPDATE;
            IF NOT FOUND OR g.written_off_at IS NOT NULL OR g.remaining <> -NEW.amount
               OR g.expires_at IS NULL OR g.expires_at > now() THEN
                RAISE EXCEPTION 'grant % of organization % cannot expire % credits now',
                        NEW.grant_id, NEW.organization_id, -NEW.amount
                    USING ERRCODE = 'check_violation', TABLE = 'credit_grants',
                          CONSTRAINT = 'ck_credit_grants_remaining_adds_up';
            END IF;
            NEW.effective_at := g.expires_at;
        END IF;
        UPDATE public.credit_balances b
        SET balance = b.balance + NEW.amount, updated_at = now()
        WHERE b.organization_id = NEW.organization_id AND b.balance + NEW.amount >= 0
        RETURNING b.balance INTO NEW.balance_after;
        IF NOT FOUND THEN
            PERFORM public.refuse_overdraft(NEW.organization_id, -NEW.amount);
        END IF;
        IF NEW.kind = 'expired' THEN
            UPDATE public.credit_grants c
            SET expired = c.remaining, remaining = 0, written_off_at = now()
            WHERE c.organization_id = NEW.organization_id AND c.id = NEW.grant_id;
        ELSIF NEW.amount > 0 THEN
            INSERT INTO public.credit_grants
                (organization_id, ledger_entry_id, source, amount, remaining, priority,
                 expires_at, created_at)
            VALUES (NEW.organization_id, NEW.id,
                    CASE WHEN NEW.idempotency_key LIKE 'bulk:%' THEN 'bulk'
                         WHEN NEW.idempotency_key LIKE 'allowance:%' THEN 'allowance'
                         WHEN NEW.idempotency_key LIKE 'rollover:%' THEN 'rollover'
                         WHEN NEW.approval_request_id IS NOT NULL THEN 'approval'
                         WHEN NEW.kind = 'refund' THEN 'refund'
                         WHEN NEW.kind = 'reversal' THEN 'restored'
                         ELSE 'manual' END,
                    NEW.amount, NEW.amount, coalesce(NEW.grant_priority, 10),
                    NEW.grant_expires_at, NEW.created_at);
        ELSIF NEW.kind = 'reversal' THEN
            -- A reversed grant gives back what remains of it; an entry from before grants
            -- began (covered by the opening grant) draws like a deduction.
            UPDATE public.credit_grants c
            SET remaining = c.remaining + NEW.amount, reversed = c.reversed - NEW.amount
            WHERE c.organization_id = NEW.organization_id
              AND c.ledger_entry_id = NEW.reverses_id AND c.source <> 'opening';
            IF NOT FOUND THEN
                PERFORM public.draw_credits(NEW.organization_id, -NEW.amount);
            END IF;
        ELSE
            PERFORM public.draw_credits(NEW.organization_id, -NEW.amount);
        END IF;
        RETURN NEW;
    END
    $fn$
    """,
    """
    CREATE OR REPLACE FUNCTION book_generation() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
    BEGIN
        UPDATE public.credit_balances b
        SET balance = b.balance - NEW.credits, updated_at = now()
        WHERE b.organization_id = NEW.organization_id AND b.balance >= NEW.credits;
        IF NOT FOUND THEN
            PERFORM public.refuse_overdraft(NEW.organization_id, NEW.credits);
        END IF;
        IF NEW.credits > 0 THEN
            PERFORM public.draw_credits(NEW.organization_id, NEW.credits);
        END IF;
        RETURN NEW;
    END
    $fn$
    """,
    # Write off the organization's grants due by now: an 'expired' entry for what
    # remained, or only the mark when nothing did. The caller holds its lock.
    """
    CREATE FUNCTION expire_due_grants(org bigint) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
    DECLARE
        g record;
        n integer := 0;
    BEGIN
        FOR g IN
            SELECT c.id, c.remaining, c.expires_at FROM public.credit_grants c
            WHERE c.organization_id = org AND c.written_off_at IS NULL
              AND c.expires_at <= now()
            ORDER BY c.expires_at, c.id
        LOOP
            IF g.remaining > 0 THEN
                INSERT INTO public.credit_ledger
                    (organization_id, amount, kind, reason, actor, idempotency_key, grant_id,
                     effective_at)
                VALUES (org, -g.remaining, 'expired', format('Grant %s expired', g.id),
                        'system', 'expiry:' || g.id, g.id, g.expires_at);
            ELSE
                UPDATE public.credit_grants c SET written_off_at = now()
                WHERE c.organization_id = org AND c.id = g.id;
            END IF;
            n := n + 1;
        END LOOP;
        RETURN n;
    END
    $fn$
    """,
    """
    CREATE OR REPLACE FUNCTION lock_organization(org bigint) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
    DECLARE
        current bigint;
    BEGIN
        SELECT b.balance INTO current FROM public.credit_balances b
        WHERE b.organization_id = org FOR UPDATE;
        IF FOUND AND EXISTS (
            SELECT FROM public.credit_grants c
            WHERE c.organization_id = org AND c.written_off_at IS NULL
              AND c.expires_at <= now()
        ) THEN
            PERFORM public.expire_due_grants(org);
            SELECT b.balance INTO current FROM public.credit_balances b
            WHERE b.organization_id = org;
        END IF;
        RETURN current;
    END
    $fn$
    """,
    "DROP FUNCTION lock_organizations(bigint[])",
    """
    CREATE FUNCTION lock_organizations(orgs bigint[])
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
            SELECT DISTINCT c.organization_id FROM public.credit_grants c
            WHERE c.organization_id = ANY(orgs) AND c.written_off_at IS NULL
              AND c.expires_at <= now()
        LOOP
            PERFORM public.expire_due_grants(org);
        END LOOP;
        RETURN QUERY
            SELECT b.organization_id, b.balance FROM public.credit_balances b
            WHERE b.organization_id = ANY(orgs) ORDER BY b.organization_id;
    END
    $fn$
    """,
    # A new balance row (a new organization) opens its grants: one 'opening' grant of
    # the balance it starts with. Off while the demo loader COPYs (it opens them itself).
    """
    CREATE FUNCTION open_credit_grants() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
    BEGIN
        INSERT INTO public.credit_grants
            (organization_id, ledger_entry_id, source, amount, remaining)
        VALUES (NEW.organization_id,
                (SELECT max(l.id) FROM public.credit_ledger l
                 WHERE l.organization_id = NEW.organization_id),
                'opening', NEW.balance, NEW.balance);
        RETURN NULL;
    END
    $fn$
    """,
    """
    CREATE TRIGGER credit_balances_open_grants AFTER INSERT ON credit_balances
    FOR EACH ROW EXECUTE FUNCTION open_credit_grants()
    """,
    # What is due by `at` and not yet written off, per organization: a read of a balance
    # at `at` takes it off. Plain SQL without SET, so the planner inlines it.
    """
    CREATE FUNCTION due_credits(at timestamptz)
    RETURNS TABLE (organization_id bigint, due bigint)
    LANGUAGE sql STABLE AS $fn$
        SELECT c.organization_id, sum(c.remaining)::bigint
        FROM public.credit_grants c
        WHERE c.expires_at IS NOT NULL AND c.written_off_at IS NULL AND c.expires_at <= at
          AND c.remaining > 0
        GROUP BY c.organization_id
    $fn$
    """,
    """
    CREATE OR REPLACE FUNCTION decide_approval_request(
        request_id bigint, decision text, decided_by text, reason text DEFAULT NULL
    ) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
    #variable_conflict use_column
    DECLARE
        v_id bigint := decide_approval_request.request_id;
        v_decision text := decide_approval_request.decision;
        v_by text := decide_approval_request.decided_by;
        v_reason text := decide_approval_request.reason;
        who text := public.canonical_identity(decide_approval_request.decided_by);
        org bigint;
        r public.approval_requests;
        entry bigint;
    BEGIN
        IF v_decision IS NULL OR v_decision NOT IN ('approve', 'reject') THEN
            RAISE EXCEPTION 'a decision is approve or reject, not %', v_decision
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF v_decision = 'reject' AND coalesce(btrim(v_reason), '') = '' THEN
            RAISE EXCEPTION 'a rejection needs a reason' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        SELECT a.organization_id INTO org FROM public.approval_requests a WHERE a.id = v_id;
        IF org IS NULL THEN
            RAISE EXCEPTION 'there is no approval request %', v_id USING ERRCODE = 'no_data_found';
        END IF;
        -- The organization's lock first, as every write takes it (writing off its due
        -- grants), then the request.
        PERFORM public.lock_organization(org);
        SELECT * INTO r FROM public.approval_requests a
        WHERE a.organization_id = org AND a.id = v_id FOR UPDATE;
        -- The same decision again by the same person: a retry, nothing new.
        IF public.stored_identity(r.decided_by) = who AND (
            (v_decision = 'approve' AND r.status = 'approved')
            OR (v_decision = 'reject' AND r.status = 'rejected'
                AND r.decision_reason = v_reason)
        ) THEN
            RETURN r.ledger_entry_id;
        END IF;
        IF public.stored_identity(r.requested_by) = who THEN
            RAISE EXCEPTION 'request % was requested by the person who decides on it', r.id
                USING ERRCODE = 'check_violation',
                      CONSTRAINT = 'ck_approval_requests_two_people',
                      TABLE = 'approval_requests';
        END IF;
        IF r.status <> 'pending' OR r.expires_at <= now() THEN
            RAISE EXCEPTION 'request % is % and cannot be decided', r.id,
                    CASE WHEN r.status = 'pending' THEN 'expired' ELSE r.status END
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = json_build_object(
                          'status', r.status, 'decided_by', r.decided_by,
                          'ledger_entry_id', r.ledger_entry_id,
                          'expires_at', to_char(r.expires_at AT TIME ZONE 'UTC',
                                                'YYYY-MM-DD HH24:MI'))::text;
        END IF;
        IF v_decision = 'approve' THEN
            INSERT INTO public.credit_ledger
                (organization_id, amount, kind, reason, note, actor, idempotency_key,
                 approval_request_id, grant_expires_at, grant_priority)
            VALUES (org, r.amount, CASE WHEN r.amount > 0 THEN 'grant' ELSE 'deduct' END,
                    r.reason,
                    format('Requested by %s, approved by %s (approval request %s).',
                           r.requested_by, v_by, r.id)
                        || CASE WHEN coalesce(r.note, '') = '' THEN '' ELSE E'\\n' || r.note END,
                    v_by, 'approval:' || r.id, r.id, r.grant_expires_at, r.grant_priority)
            RETURNING id INTO entry;
            UPDATE public.approval_requests a
            SET status = 'approved', decided_by = v_by, decided_at = now(),
                decision_reason = NULL, ledger_entry_id = entry
            WHERE a.organization_id = org AND a.id = v_id
            RETURNING * INTO r;
        ELSE
            UPDATE public.approval_requests a
            SET status = 'rejected', decided_by = v_by, decided_at = now(),
                decision_reason = v_reason, ledger_entry_id = NULL
            WHERE a.organization_id = org AND a.id = v_id
            RETURNING * INTO r;
        END IF;
        INSERT INTO public.audit_log (organization_id, action, actor, reason, details,
                                      idempotency_key)
        VALUES (org, v_decision || '_adjustment', v_by,
                CASE WHEN v_decision = 'approve' THEN r.reason ELSE v_reason END,
                jsonb_strip_nulls(jsonb_build_object(
                    'request_id', r.id, 'amount', r.amount, 'requested_by', r.requested_by,
                    'ledger_entry_id', entry, 'grant_expires_at', r.grant_expires_at,
                    'grant_priority', r.grant_priority)),
                v_decision || '_adjustment:' || r.id);
        RETURN entry;
    END
    $fn$
    """,
)

# Every organization's balance now, as one grant that never expires.
_OPENING = """
INSERT INTO credit_grants (organization_id, ledger_entry_id, source, amount, remaining)
SELECT b.organization_id,
       (SELECT max(l.id) FROM credit_ledger l WHERE l.organization_id = b.organization_id),
       'opening', b.balance, b.balance
FROM credit_balances b
"""

_GRANTS = (
    "GRANT SELECT ON credit_grants TO dashboard_app, dashboard_reader, dashboard_auditor",
    "GRANT INSERT (grant_expires_at, grant_priority) ON credit_ledger TO dashboard_app",
    "GRANT INSERT (grant_expires_at, grant_priority) ON approval_requests TO dashboard_app",
    "REVOKE EXECUTE ON FUNCTION draw_credits(bigint, bigint), expire_due_grants(bigint), "
    "open_credit_grants() FROM PUBLIC",
    "REVOKE EXECUTE ON FUNCTION lock_organizations(bigint[]) FROM PUBLIC",
    "GRANT EXECUTE ON FUNCTION lock_organizations(bigint[]) TO dashboard_app",
)


def upgrade() -> None:
    op.create_table(
        "credit_grants",
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("ledger_entry_id", sa.BigInteger(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.Column("drawn", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("expired", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("reversed", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("priority", sa.SmallInteger(), server_default=sa.text("10"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("written_off_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "source IN ('opening', 'manual', 'bulk', 'approval', 'allowance', 'rollover', "
            "'refund', 'restored')",
            name=op.f("ck_credit_grants_source_known"),
        ),
        sa.CheckConstraint(
            "amount > 0 OR (source = 'opening' AND amount = 0)",
            name=op.f("ck_credit_grants_amount_positive"),
        ),
        sa.CheckConstraint(
            "remaining >= 0 AND drawn >= 0 AND expired >= 0 AND reversed >= 0",
            name=op.f("ck_credit_grants_parts_not_negative"),
        ),
        sa.CheckConstraint(
            "remaining = amount - drawn - expired - reversed",
            name=op.f("ck_credit_grants_remaining_adds_up"),
        ),
        sa.CheckConstraint(
            "priority BETWEEN 0 AND 255", name=op.f("ck_credit_grants_priority_range")
        ),
        sa.CheckConstraint(
            "expired = 0 OR written_off_at IS NOT NULL",
            name=op.f("ck_credit_grants_expired_when_written_off"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_credit_grants_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_credit_grants")),
        sa.UniqueConstraint(
            "organization_id",
            "ledger_entry_id",
            name=op.f("uq_credit_grants_organization_id_ledger_entry_id"),
        ),
    )
    op.create_index(
        "ix_credit_grants_due",
        "credit_grants",
        ["expires_at", "organization_id"],
        unique=False,
        postgresql_where=sa.text("expires_at IS NOT NULL AND written_off_at IS NULL"),
    )
    for column in ("grant_expires_at", "effective_at"):
        op.add_column("credit_ledger", sa.Column(column, sa.DateTime(timezone=True)))
    op.add_column("credit_ledger", sa.Column("grant_priority", sa.SmallInteger()))
    op.add_column("credit_ledger", sa.Column("grant_id", sa.BigInteger()))
    op.add_column("approval_requests", sa.Column("grant_expires_at", sa.DateTime(timezone=True)))
    op.add_column("approval_requests", sa.Column("grant_priority", sa.SmallInteger()))
    for table in ("credit_ledger", "approval_requests"):
        op.create_check_constraint(
            op.f(f"ck_{table}_grant_terms_on_grants"),
            table,
            "(grant_expires_at IS NULL AND grant_priority IS NULL) OR amount > 0",
        )
        op.create_check_constraint(
            op.f(f"ck_{table}_grant_priority_range"), table, "grant_priority BETWEEN 0 AND 255"
        )
    op.create_check_constraint(
        op.f("ck_credit_ledger_grant_expires_after_created"),
        "credit_ledger",
        "grant_expires_at > created_at",
    )
    _replace_check("ck_credit_ledger_kind_known", _KINDS)
    _replace_check("ck_credit_ledger_kind_sign", _SIGN)
    _replace_check("ck_credit_ledger_derived_keys", _DERIVED_KEYS)
    op.execute(_OPENING)
    for statement in (*_FUNCTIONS, *_GRANTS):
        op.execute(statement)


def _replace_check(name: str, condition: str) -> None:
    op.drop_constraint(op.f(name), "credit_ledger", type_="check")
    op.create_check_constraint(op.f(name), "credit_ledger", condition)


def downgrade() -> None:
    # Expiries are entries of a kind 0020's ledger does not know: refused, with a sentence.
    op.execute(
        """
        DO $$ BEGIN
            IF EXISTS (SELECT FROM credit_ledger WHERE kind = 'expired') THEN
                RAISE EXCEPTION 'the ledger holds expired credits, which revision 0020 cannot '
                    'hold; restore a backup taken before revision 0021 instead';
            END IF;
        END $$
        """
    )
    op.execute("DROP TRIGGER credit_balances_open_grants ON credit_balances")
    op.execute(
        "DROP FUNCTION due_credits(timestamptz), expire_due_grants(bigint), "
        "open_credit_grants(), "
        "lock_organizations(bigint[]), lock_organization(bigint), "
        "decide_approval_request(bigint, text, text, text), draw_credits(bigint, bigint)"
    )
    # 0013's functions as they were (book_*: CREATE OR REPLACE), and its grants on them.
    path = Path(__file__).with_name("0013_database_keeps_the_book.py")
    spec = importlib.util.spec_from_file_location("migration_0013", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for statement in module._FUNCTIONS:
        if "refuse_overdraft(org bigint" in statement:
            continue
        op.execute(statement.replace("CREATE FUNCTION book_", "CREATE OR REPLACE FUNCTION book_"))
    op.execute(
        f"REVOKE EXECUTE ON FUNCTION {module._APP_FUNCTIONS} FROM PUBLIC; "
        f"GRANT EXECUTE ON FUNCTION {module._APP_FUNCTIONS} TO dashboard_app"
    )
    _replace_check("ck_credit_ledger_derived_keys", _DERIVED_KEYS_0012)
    _replace_check("ck_credit_ledger_kind_sign", _SIGN_0001)
    _replace_check("ck_credit_ledger_kind_known", _KINDS_0001)
    op.drop_constraint(
        op.f("ck_credit_ledger_grant_expires_after_created"), "credit_ledger", type_="check"
    )
    for table in ("credit_ledger", "approval_requests"):
        op.drop_constraint(op.f(f"ck_{table}_grant_priority_range"), table, type_="check")
        op.drop_constraint(op.f(f"ck_{table}_grant_terms_on_grants"), table, type_="check")
        op.drop_column(table, "grant_priority")
        op.drop_column(table, "grant_expires_at")
    op.drop_column("credit_ledger", "grant_id")
    op.drop_column("credit_ledger", "effective_at")
    op.drop_index("ix_credit_grants_due", "credit_grants")
    op.drop_table("credit_grants")
