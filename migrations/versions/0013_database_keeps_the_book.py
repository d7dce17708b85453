"""The database keeps the book: it moves balances, sets identity and time, and decides.

Only the database moves a balance. Two row triggers, BEFORE INSERT, keep
``credit_balances.balance`` equal to the ledger minus consumption:

- ``credit_ledger_moves_balance`` (``book_ledger_entry()``) adds ``NEW.amount`` and sets
  ``NEW.balance_after`` to the new balance, whatever the inserter gave;
- ``generations_move_balance`` (``book_generation()``) takes ``NEW.credits``.

Either refuses (``refuse_overdraft``) to take a balance below zero with SQLSTATE 23514 (check_violation)
naming ``ck_credit_balances_balance_not_negative``, and a DETAIL that is JSON
(``organization_id``, ``balance``, ``requested``): ``queries.credits`` makes it
``InsufficientCredits``. The functions are SECURITY DEFINER (they run as the migrating
role, which owns the tables) with a fixed ``search_path``. The triggers are plain
ENABLE, not ALWAYS: a logical replica (session_replication_role = replica) receives
the balances it replicates and must not move them again. The demo reset disables
them with the append-only guard while it COPYs a consistent book
(``tooling.demo_data.append_only_guard_lifted``).

``dashboard_app`` loses UPDATE on ``credit_balances``. It locks an organization (the
per-organization lock every write takes) with ``lock_organization(org)``, which
returns the balance (NULL: no such organization), or ``lock_organizations(orgs[])``,
which locks several in id order; the row locks belong to the caller's transaction.

The database sets identity and time. ``dashboard_app`` may INSERT into
``credit_ledger`` only the columns a caller decides (not ``id``, ``created_at``,
``balance_after`` or ``approval_request_id``), and into ``audit_log`` not ``id`` or
``created_at``: a value it supplies for one of them is refused (permission denied).
The owner still may (tests and the demo loader back-date history).

Decisions go through ``decide_approval_request(request_id, decision, decided_by,
reason)`` (SECURITY DEFINER): it locks the organization and the request, returns the
approved request's ledger entry id (NULL for a rejection), and

- for the same decision again by the same person (canonical form, migration 0012;
  the stored names read with ``stored_identity``), and for a rejection the same
  reason, changes nothing (a retry);
- refuses the requester (the same person under any spelling): SQLSTATE 23514 naming
  ``ck_approval_requests_two_people``;
- refuses a request already decided or expired: SQLSTATE 55000
  (object_not_in_prerequisite_state) with a JSON DETAIL (status, decided_by,
  ledger_entry_id, expires_at); an unknown request: P0002 (no_data_found);
- approving inserts the ledger entry (key ``approval:<id>``, ``approval_request_id``,
  the request's amount and reason, a note naming both people), which the trigger
  books; then it records the decision and its audit row (``approve_adjustment:<id>``
  or ``reject_adjustment:<id>``).

``dashboard_app`` loses the UPDATE of a request's decision columns (migration 0009);
EXECUTE on these functions is revoked from PUBLIC and granted to ``dashboard_app``.
No function's signature names a table's row type: ``tooling.staging`` swaps tables
(DROP and rename), which such a dependency would block.

Downgrade restores migration 0012's grants and drops the functions and triggers.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 02:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FUNCTIONS = (
    # The refusal both triggers raise when a balance would go below zero.
    """
    CREATE FUNCTION refuse_overdraft(org bigint, requested bigint) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, public AS $fn$
    DECLARE
        current bigint;
    BEGIN
        SELECT b.balance INTO current FROM public.credit_balances b WHERE b.organization_id = org;
        IF current IS NULL THEN
            RAISE EXCEPTION 'organization % has no credit balance', org
                USING ERRCODE = 'foreign_key_violation', TABLE = 'credit_balances';
        END IF;
        RAISE EXCEPTION 'organization % has % credits; % cannot be taken', org, current, requested
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'ck_credit_balances_balance_not_negative',
                  TABLE = 'credit_balances',
                  DETAIL = json_build_object('organization_id', org, 'balance', current,
                                             'requested', requested)::text;
    END
    $fn$
    """,
    """
    CREATE FUNCTION book_ledger_entry() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
    BEGIN
        UPDATE public.credit_balances b
        SET balance = b.balance + NEW.amount, updated_at = now()
        WHERE b.organization_id = NEW.organization_id AND b.balance + NEW.amount >= 0
        RETURNING b.balance INTO NEW.balance_after;
        IF NOT FOUND THEN
            PERFORM public.refuse_overdraft(NEW.organization_id, -NEW.amount);
        END IF;
        RETURN NEW;
    END
    $fn$
    """,
    """
    CREATE FUNCTION book_generation() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
    BEGIN
        UPDATE public.credit_balances b
        SET balance = b.balance - NEW.credits, updated_at = now()
        WHERE b.organization_id = NEW.organization_id AND b.balance >= NEW.credits;
        IF NOT FOUND THEN
            PERFORM public.refuse_overdraft(NEW.organization_id, NEW.credits);
        END IF;
        RETURN NEW;
    END
    $fn$
    """,
    """
    CREATE FUNCTION lock_organization(org bigint) RETURNS bigint
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
        SELECT b.balance FROM public.credit_balances b WHERE b.organization_id = org
        FOR UPDATE
    $fn$
    """,
    """
    CREATE FUNCTION lock_organizations(orgs bigint[])
    RETURNS TABLE (organization_id bigint, balance bigint)
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
        SELECT b.organization_id, b.balance FROM public.credit_balances b
        WHERE b.organization_id = ANY(orgs)
        ORDER BY b.organization_id
        FOR UPDATE
    $fn$
    """,
    """
    CREATE FUNCTION decide_approval_request(
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
        -- The organization's lock first, as every write takes it, then the request.
        PERFORM 1 FROM public.credit_balances b WHERE b.organization_id = org FOR UPDATE;
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
                 approval_request_id)
            VALUES (org, r.amount, CASE WHEN r.amount > 0 THEN 'grant' ELSE 'deduct' END,
                    r.reason,
                    format('Requested by %s, approved by %s (approval request %s).',
                           r.requested_by, v_by, r.id)
                        || CASE WHEN coalesce(r.note, '') = '' THEN '' ELSE E'\\n' || r.note END,
                    v_by, 'approval:' || r.id, r.id)
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
                    'ledger_entry_id', entry)),
                v_decision || '_adjustment:' || r.id);
        RETURN entry;
    END
    $fn$
    """,
)

_TRIGGERS = (
    """
    CREATE TRIGGER credit_ledger_moves_balance BEFORE INSERT ON credit_ledger
    FOR EACH ROW EXECUTE FUNCTION book_ledger_entry()
    """,
    """
    CREATE TRIGGER generations_move_balance BEFORE INSERT ON generations
    FOR EACH ROW EXECUTE FUNCTION book_generation()
    """,
)

_APP_FUNCTIONS = (
    "lock_organization(bigint), lock_organizations(bigint[]), "
    "decide_approval_request(bigint, text, text, text)"
)

_GRANTS = (
    "REVOKE EXECUTE ON FUNCTION refuse_overdraft(bigint, bigint), book_ledger_entry(), "
    f"book_generation(), {_APP_FUNCTIONS} FROM PUBLIC",
    f"GRANT EXECUTE ON FUNCTION {_APP_FUNCTIONS} TO dashboard_app",
    "REVOKE UPDATE (balance, updated_at) ON credit_balances FROM dashboard_app",
    """
    REVOKE UPDATE (status, decided_by, decided_at, decision_reason, ledger_entry_id)
    ON approval_requests FROM dashboard_app
    """,
    # A table-level REVOKE also takes the column privileges; then the columns it keeps.
    "REVOKE INSERT ON credit_ledger, audit_log FROM dashboard_app",
    """
    GRANT INSERT (organization_id, amount, kind, reason, note, actor, idempotency_key,
                  reverses_id)
    ON credit_ledger TO dashboard_app
    """,
    """
    GRANT INSERT (organization_id, action, actor, reason, details, idempotency_key)
    ON audit_log TO dashboard_app
    """,
)

_REVOKES = (
    "REVOKE INSERT ON credit_ledger, audit_log FROM dashboard_app",
    "GRANT INSERT ON credit_ledger, audit_log TO dashboard_app",
    """
    GRANT UPDATE (status, decided_by, decided_at, decision_reason, ledger_entry_id)
    ON approval_requests TO dashboard_app
    """,
    "GRANT UPDATE (balance, updated_at) ON credit_balances TO dashboard_app",
)


def upgrade() -> None:
    for statement in (*_FUNCTIONS, *_TRIGGERS, *_GRANTS):
        op.execute(statement)


def downgrade() -> None:
    for statement in _REVOKES:
        op.execute(statement)
    op.execute("DROP TRIGGER generations_move_balance ON generations")
    op.execute("DROP TRIGGER credit_ledger_moves_balance ON credit_ledger")
    op.execute(
        "DROP FUNCTION decide_approval_request(bigint, text, text, text), "
        "lock_organizations(bigint[]), lock_organization(bigint), book_generation(), "
        "book_ledger_entry(), refuse_overdraft(bigint, bigint)"
    )
