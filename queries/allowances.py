"""Plan allowances: each plan's monthly credits, granted per organization and local month,
with the unused part rolling into the next month up to a cap.

``plan_allowances`` (migration 0022) holds, per plan, ``monthly_allowance`` and
``rollover_cap``; finance reads them (``plan_allowances``), an admin changes one
(``set_plan_allowance``, recorded with who and why in ``plan_allowance_changes``: the
audit log is a tenant's, a plan is not).

``grant_allowances`` (``dashboard grant-allowances``, for cron) issues, for each
organization whose local month has begun, in its own short transaction under its lock:

1. the **rollover**: what remained of its previous month's allowance and rollover grants
   when they expired, that is what their write-off recorded as ``expired``, capped at the
   plan's ``rollover_cap``, as a grant keyed ``rollover:YYYY-MM`` expiring at the end of
   the month. The lock writes those grants off first (they expire when the month
   begins, so they are due by then); while one is not yet written off, the rollover
   waits for a later run;
2. the **allowance**: the plan's ``monthly_allowance`` as a grant keyed
   ``allowance:YYYY-MM`` expiring at the start of the next local month.

Both are ordinary ledger grants (``queries.ledger.insert_movement``) booked by actor
``system``: no person decides them (the plan's values do, and their changes are
audited), so they are outside the two-person rule. Their keys make a run idempotent:
a second one finds them and writes nothing; a zero amount is not granted. A month not
yet begun for an organization is skipped for it; a month over in every zone is refused.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import partial
from typing import Final

from sqlalchemy import Connection, Engine, text

from queries.checks import (
    MAX_REASON,
    check_id,
    check_key,
    check_timestamp,
    check_whole,
    required_text,
)
from queries.errors import InvalidAllowance
from queries.identity import canonical_identity, stored_identity
from queries.ledger import (
    entry_by_key,
    insert_movement,
    lock_organization,
    replay,
    submitted_differently,
)
from queries.models import PLANS
from queries.transactions import run_in_transaction

__all__ = [
    "MAX_ALLOWANCE",
    "AllowanceChange",
    "AllowanceReport",
    "PlanAllowance",
    "check_month",
    "grant_allowances",
    "plan_allowances",
    "set_plan_allowance",
]

# Far above any plan, far below a bigint: a typo of a few zeros is refused.
MAX_ALLOWANCE: Final = 1_000_000_000
SYSTEM: Final = "system"
# Organizations read per candidate statement.
BATCH: Final = 1000
# The zone furthest behind UTC (UTC-12): a month is over everywhere 12 hours after its
# end in UTC.
_LAST_ZONE_BEHIND: Final = dt.timedelta(hours=12)


# ------------------------------------------------------------------------------ reads


@dataclass(frozen=True, slots=True)
class PlanAllowance:
    """A plan's monthly allowance and rollover cap, and who set them last."""

    plan: str
    monthly_allowance: int
    rollover_cap: int
    updated_at: dt.datetime
    updated_by: str


_ALLOWANCES = text(
    """
    SELECT plan, monthly_allowance, rollover_cap, updated_at, updated_by
    FROM plan_allowances
    ORDER BY array_position(CAST(:plans AS text[]), plan), plan
    """
)


def plan_allowances(conn: Connection) -> list[PlanAllowance]:
    """Every plan's allowance, in the order of the plans (free first)."""
    rows = conn.execute(_ALLOWANCES, {"plans": list(PLANS)}).all()
    return [
        PlanAllowance(
            plan=str(r.plan),
            monthly_allowance=int(r.monthly_allowance),
            rollover_cap=int(r.rollover_cap),
            updated_at=r.updated_at,
            updated_by=str(r.updated_by),
        )
        for r in rows
    ]


# ----------------------------------------------------------------------------- change


@dataclass(frozen=True, slots=True)
class AllowanceChange:
    """One change of a plan's allowance, as recorded in ``plan_allowance_changes``."""

    id: int
    plan: str
    monthly_allowance: int
    rollover_cap: int
    old_monthly_allowance: int
    old_rollover_cap: int
    actor: str
    reason: str
    idempotency_key: str
    created_at: dt.datetime


_PLAN_FOR_UPDATE = text(
    "SELECT monthly_allowance, rollover_cap FROM plan_allowances WHERE plan = :plan FOR UPDATE"
)
_CHANGE_BY_KEY = text(
    """
    SELECT id, plan, monthly_allowance, rollover_cap, old_monthly_allowance, old_rollover_cap,
           actor, reason, idempotency_key, created_at
    FROM plan_allowance_changes WHERE idempotency_key = :key
    """
)
_UPDATE_PLAN = text(
    """
    UPDATE plan_allowances
    SET monthly_allowance = :allowance, rollover_cap = :cap, updated_at = now(),
        updated_by = :actor
    WHERE plan = :plan
    """
)
_RECORD_CHANGE = text(
    """
    INSERT INTO plan_allowance_changes
        (plan, monthly_allowance, rollover_cap, old_monthly_allowance, old_rollover_cap,
         actor, reason, idempotency_key)
    VALUES (:plan, :allowance, :cap, :old_allowance, :old_cap, :actor, :reason, :key)
    RETURNING id, plan, monthly_allowance, rollover_cap, old_monthly_allowance,
              old_rollover_cap, actor, reason, idempotency_key, created_at
    """
)


def set_plan_allowance(
    engine: Engine,
    *,
    plan: str,
    monthly_allowance: int,
    rollover_cap: int,
    actor: str,
    reason: str,
    idempotency_key: str,
) -> AllowanceChange:
    """Set a plan's monthly allowance and rollover cap, recorded with who and why.

    It applies from the next ``grant_allowances`` run on: grants already made keep their
    amounts. The same key again returns the change recorded the first time and changes
    nothing; with different details, ``IdempotencyConflict``. ``InvalidAllowance``
    (nothing written) for an unknown plan, an amount that is not a whole number from 0
    to ``MAX_ALLOWANCE``, a blank actor, reason or key.
    """
    if not isinstance(plan, str) or plan not in PLANS:
        raise InvalidAllowance(f"The plan must be one of {', '.join(PLANS)}, not {plan!r}.")
    allowance = check_whole(
        monthly_allowance,
        "monthly allowance",
        minimum=0,
        maximum=MAX_ALLOWANCE,
        error=InvalidAllowance,
    )
    cap = check_whole(
        rollover_cap, "rollover cap", minimum=0, maximum=MAX_ALLOWANCE, error=InvalidAllowance
    )
    who = canonical_identity(actor, "actor", error=InvalidAllowance)
    why = required_text(reason, "reason", maximum=MAX_REASON, error=InvalidAllowance)
    key = check_key(idempotency_key, error=InvalidAllowance)
    assert key is not None

    def body(conn: Connection) -> AllowanceChange:
        # The plan's row lock serializes its changes, so a retry of this key is never
        # half-way while the key is looked up.
        old = conn.execute(_PLAN_FOR_UPDATE, {"plan": plan}).one()
        previous = conn.execute(_CHANGE_BY_KEY, {"key": key}).one_or_none()
        first = replay(
            first=None if previous is None else _change(previous),
            asked=(plan, allowance, cap, who, why),
            recorded=lambda c: (
                c.plan,
                c.monthly_allowance,
                c.rollover_cap,
                stored_identity(c.actor),
                c.reason,
            ),
            conflict=lambda c: submitted_differently(
                what="plan allowance change",
                first=f"change {c.id}: {c.plan} {c.monthly_allowance:,} a month, "
                f"rollover up to {c.rollover_cap:,}",
                start="change",
            ),
        )
        if first is not None:
            return first
        conn.execute(_UPDATE_PLAN, {"plan": plan, "allowance": allowance, "cap": cap, "actor": who})
        row = conn.execute(
            _RECORD_CHANGE,
            {
                "plan": plan,
                "allowance": allowance,
                "cap": cap,
                "old_allowance": int(old.monthly_allowance),
                "old_cap": int(old.rollover_cap),
                "actor": who,
                "reason": why,
                "key": key,
            },
        ).one()
        return _change(row)

    return run_in_transaction(engine, body, idempotent=True)


def _change(row: object) -> AllowanceChange:
    m = row._mapping  # type: ignore[attr-defined]
    return AllowanceChange(
        id=int(m["id"]),
        plan=str(m["plan"]),
        monthly_allowance=int(m["monthly_allowance"]),
        rollover_cap=int(m["rollover_cap"]),
        old_monthly_allowance=int(m["old_monthly_allowance"]),
        old_rollover_cap=int(m["old_rollover_cap"]),
        actor=str(m["actor"]),
        reason=str(m["reason"]),
        idempotency_key=str(m["idempotency_key"]),
        created_at=m["created_at"],
    )


# ------------------------------------------------------------------------------ grant


@dataclass(frozen=True, slots=True)
class AllowanceReport:
    """What one ``grant_allowances`` run did, in organizations and credits.

    ``already``: organizations whose month was under way with nothing left to grant
    (granted before, or zero); ``not_begun`` / ``over``: skipped, the month had not
    begun or had ended in their zone; ``waiting``: rollovers left for a later run, the
    previous month's grants not yet written off.
    """

    month: str | None
    allowances: int
    allowance_credits: int
    rollovers: int
    rollover_credits: int
    already: int
    not_begun: int
    over: int
    waiting: int


_MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")


def check_month(value: object) -> dt.date:
    """A month given as text, ``YYYY-MM``, as its first day (years 2000-2100)."""
    if not isinstance(value, str) or not _MONTH.fullmatch(value.strip()):
        shown = value if isinstance(value, str) and len(value) <= 40 else "that value"
        raise InvalidAllowance(
            f"The month must be written YYYY-MM, such as 2026-12, not {shown!r}. "
            "Nothing was granted."
        )
    first = dt.date.fromisoformat(value.strip() + "-01")
    if not 2000 <= first.year <= 2100:
        raise InvalidAllowance(
            f"The month {value.strip()} is outside the years 2000-2100. Nothing was granted."
        )
    return first


def _next(first: dt.date) -> dt.date:
    return (first + dt.timedelta(days=32)).replace(day=1)


_CLOCK = text("SELECT coalesce(CAST(:now AS timestamptz), now())")
# Per organization: the month asked for (or its own local month at :now), its bounds in
# the organization's zone, whether it is under way (and not over by the database's clock
# either, which dates the grants), and what is left to grant. Keys are looked up on
# uq_credit_ledger_organization_id_idempotency_key; the previous month's grants through
# their entries.
_CANDIDATES = text(
    """
    SELECT o.id, o.plan, a.monthly_allowance, a.rollover_cap, m.label, m.previous, m.ends,
           CASE WHEN m.starts > CAST(:now AS timestamptz) THEN 'not_begun'
                WHEN m.ends <= greatest(CAST(:now AS timestamptz), now()) THEN 'over'
                ELSE 'due' END AS status,
           EXISTS (SELECT FROM credit_ledger l
                   WHERE l.organization_id = o.id
                     AND l.idempotency_key = 'allowance:' || m.label) AS allowance_done,
           EXISTS (SELECT FROM credit_ledger l
                   WHERE l.organization_id = o.id
                     AND l.idempotency_key = 'rollover:' || m.label) AS rollover_done,
           EXISTS (SELECT FROM credit_ledger l
                   JOIN credit_grants g
                     ON g.organization_id = l.organization_id AND g.ledger_entry_id = l.id
                   WHERE l.organization_id = o.id
                     AND l.idempotency_key IN ('allowance:' || m.previous,
                                               'rollover:' || m.previous)
                     AND (g.written_off_at IS NULL OR g.expired > 0)) AS may_roll_over
    FROM organizations o
    JOIN plan_allowances a ON a.plan = o.plan
    CROSS JOIN LATERAL (
        SELECT coalesce(CAST(:month AS date),
                        date_trunc('month', CAST(:now AS timestamptz) AT TIME ZONE o.timezone)::date)
                   AS first
    ) f
    CROSS JOIN LATERAL (
        SELECT to_char(f.first, 'YYYY-MM') AS label,
               to_char(f.first - interval '1 month', 'YYYY-MM') AS previous,
               f.first::timestamp AT TIME ZONE o.timezone AS starts,
               (f.first + interval '1 month')::timestamp AT TIME ZONE o.timezone AS ends
    ) m
    WHERE o.id > :after
      AND (CAST(:orgs AS bigint[]) IS NULL OR o.id = ANY(CAST(:orgs AS bigint[])))
    ORDER BY o.id
    LIMIT :batch
    """
)
# The previous month's allowance and rollover grants, after the lock wrote off those due:
# how many are not written off yet, and what their write-offs recorded as unused.
_PREVIOUS = text(
    """
    SELECT count(*) FILTER (WHERE g.written_off_at IS NULL) AS pending,
           coalesce(sum(g.expired), 0) AS unused
    FROM credit_ledger l
    JOIN credit_grants g ON g.organization_id = l.organization_id AND g.ledger_entry_id = l.id
    WHERE l.organization_id = :org AND l.idempotency_key IN (:allowance, :rollover)
    """
)


@dataclass(frozen=True, slots=True)
class _Candidate:
    organization_id: int
    plan: str
    monthly_allowance: int
    rollover_cap: int
    label: str
    previous: str
    ends: dt.datetime
    needs_allowance: bool
    needs_rollover: bool


@dataclass(frozen=True, slots=True)
class _Granted:
    allowance: int = 0
    rollover: int = 0
    waiting: bool = False


def grant_allowances(
    engine: Engine,
    *,
    month: str | None = None,
    now: dt.datetime | None = None,
    organization_ids: list[int] | None = None,
) -> AllowanceReport:
    """Grant each organization its plan's allowance for its local month, and the capped
    rollover of last month's unused allowance; idempotent, for cron.

    ``month`` (``YYYY-MM``; default: each organization's own local month at ``now``,
    default the database's clock) is granted to the organizations for which it has
    begun and not ended; the others are counted as ``not_begun`` or ``over``. A month
    that is over in every zone is refused (``InvalidAllowance``, nothing granted):
    allowances are for the month under way, and one already ended would expire at once.
    Each organization is its own short transaction; a second run grants nothing more.
    The plans' values are those read when the run began (a change meanwhile applies
    from the next run on).
    """
    first = None if month is None else check_month(month)
    when = None if now is None else check_timestamp(now, "now", error=InvalidAllowance)
    orgs = None if organization_ids is None else [check_id(o) for o in organization_ids]
    with engine.connect() as conn:
        clock: dt.datetime = conn.execute(_CLOCK, {"now": when}).scalar_one()
        if first is not None:
            over_everywhere = (
                dt.datetime.combine(_next(first), dt.time(), dt.UTC) + _LAST_ZONE_BEHIND
            )
            if clock >= over_everywhere:
                raise InvalidAllowance(
                    f"{first:%Y-%m} is over in every time zone (since "
                    f"{over_everywhere:%Y-%m-%d %H:%M} UTC): allowances are granted for the "
                    "month under way, and a grant for an ended month would expire at once. "
                    "Nothing was granted."
                )
        counts = {"already": 0, "not_begun": 0, "over": 0}
        todo: list[_Candidate] = []
        after = 0
        while True:
            rows = conn.execute(
                _CANDIDATES,
                {"now": clock, "month": first, "orgs": orgs, "after": after, "batch": BATCH},
            ).all()
            for r in rows:
                if r.status != "due":
                    counts[str(r.status)] += 1
                    continue
                candidate = _Candidate(
                    organization_id=int(r.id),
                    plan=str(r.plan),
                    monthly_allowance=int(r.monthly_allowance),
                    rollover_cap=int(r.rollover_cap),
                    label=str(r.label),
                    previous=str(r.previous),
                    ends=r.ends,
                    needs_allowance=not r.allowance_done and int(r.monthly_allowance) > 0,
                    needs_rollover=(
                        not r.rollover_done and int(r.rollover_cap) > 0 and bool(r.may_roll_over)
                    ),
                )
                if candidate.needs_allowance or candidate.needs_rollover:
                    todo.append(candidate)
                else:
                    counts["already"] += 1
            if len(rows) < BATCH:
                break
            after = int(rows[-1].id)
    allowances = allowance_credits = rollovers = rollover_credits = waiting = 0
    for candidate in todo:
        done = run_in_transaction(engine, partial(_grant, candidate=candidate), idempotent=True)
        allowances += done.allowance > 0
        allowance_credits += done.allowance
        rollovers += done.rollover > 0
        rollover_credits += done.rollover
        waiting += done.waiting
        if not done.allowance and not done.rollover and not done.waiting:
            counts["already"] += 1
    return AllowanceReport(
        month=None if first is None else f"{first:%Y-%m}",
        allowances=allowances,
        allowance_credits=allowance_credits,
        rollovers=rollovers,
        rollover_credits=rollover_credits,
        waiting=waiting,
        **counts,
    )


def _grant(conn: Connection, *, candidate: _Candidate) -> _Granted:
    """One organization's rollover, then its allowance, under its lock."""
    c = candidate
    org = c.organization_id
    # The lock writes off the organization's due grants first, the previous month's
    # allowance and rollover among them: their `expired` is then what rolls over.
    lock_organization(conn, organization_id=org)
    rollover = 0
    waiting = False
    rollover_key = f"rollover:{c.label}"
    if (
        c.needs_rollover
        and entry_by_key(conn, organization_id=org, idempotency_key=rollover_key) is None
    ):
        previous = conn.execute(
            _PREVIOUS,
            {
                "org": org,
                "allowance": f"allowance:{c.previous}",
                "rollover": f"rollover:{c.previous}",
            },
        ).one()
        if int(previous.pending) > 0:
            waiting = True
        else:
            unused = int(previous.unused)
            rollover = min(unused, c.rollover_cap)
            if rollover > 0:
                capped = f", capped at {c.rollover_cap:,}" if unused > rollover else ""
                insert_movement(
                    conn,
                    organization_id=org,
                    amount=rollover,
                    kind="grant",
                    reason=f"Rollover of {c.previous}'s unused allowance into {c.label} "
                    f"({c.plan}): {unused:,} unused{capped}",
                    note=None,
                    actor=SYSTEM,
                    idempotency_key=rollover_key,
                    grant_expires_at=c.ends,
                )
    allowance = 0
    allowance_key = f"allowance:{c.label}"
    if (
        c.needs_allowance
        and entry_by_key(conn, organization_id=org, idempotency_key=allowance_key) is None
    ):
        allowance = c.monthly_allowance
        insert_movement(
            conn,
            organization_id=org,
            amount=allowance,
            kind="grant",
            reason=f"Plan allowance for {c.label} ({c.plan})",
            note=None,
            actor=SYSTEM,
            idempotency_key=allowance_key,
            grant_expires_at=c.ends,
        )
    return _Granted(allowance=allowance, rollover=rollover, waiting=waiting)
