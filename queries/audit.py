"""The audit trail: who changed what, when and why.

Credit movements are audited by the ledger itself (append-only, with actor and
reason); other changes (daily limits) by ``audit_log``. This reads both as one list.
Changes of a plan's allowance belong to no organization, so they are kept apart, in
``plan_allowance_changes`` (migration 0022), and read as a list of their own beside it
(``plan_allowance_changes_page``), with the same range, actor filter and orders.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final, Literal

import pandas as pd
from sqlalchemy import Connection, TextClause, text

from queries.allowances import AllowanceChange
from queries.checks import (
    check_id,
    check_limit,
    check_range,
    check_sort,
    check_timezone,
    like_pattern,
)
from queries.errors import InvalidInput
from queries.frames import TIME_ORDER_WORDS, TIME_SORTS, TimeSort, frame
from queries.models import LEDGER_KINDS

# The approval steps (queries.approvals) are audit_log rows; an approved adjustment is
# also its ledger entry (a grant or a deduct).
APPROVAL_ACTIONS = ("request_adjustment", "approve_adjustment", "reject_adjustment")
# A limit above LIMIT_APPROVAL_FACTOR x the plan's (queries.limit_approvals): requested,
# then approved (its set_daily_limit row names the request) or rejected.
LIMIT_APPROVAL_ACTIONS = ("request_limit_change", "reject_limit_change")
AUDIT_ACTIONS = (
    *LEDGER_KINDS,
    "set_daily_limit",
    "set_limit_enforcement",
    *APPROVAL_ACTIONS,
    *LIMIT_APPROVAL_ACTIONS,
)

AUDIT_COLUMNS = {
    "at": "datetime64[us, UTC]",
    "organization_id": "int64",
    "organization": "str",
    "action": "str",
    "actor": "str",
    "reason": "str",
    "amount": "Int64",
    "details": "str",
    "ledger_entry_id": "Int64",
}

# Each source is read on its (created_at, organization_id) index in the order asked
# (newest first backwards, oldest first forwards) and stops at the LIMIT, filters applied
# inside; the two short lists are merged. However long the range, a call reads at most
# 2 x limit rows (plus those its filters skip). Rows are ordered by (at, source, id), a
# total order, so a page continues exactly after the (at, source, id) of the last row
# shown (keyset), bounded on the index by the cursor's created_at. The days of the range
# are those of the zone ``:tz`` (its local midnights, as PostgreSQL reads them, DST
# included). One statement per order, from the same text: only the direction differs
# (fixed words, never input).
_TRAIL = """
    SELECT e.at, e.organization_id, o.name AS organization, e.action, e.actor, e.reason,
           e.amount, e.details, e.ledger_entry_id, e.source, e.id
    FROM (
        (SELECT l.created_at AS at, l.organization_id, l.kind AS action, l.actor, l.reason,
                l.amount, 1 AS source, l.id,
                concat_ws(' · ', 'entry ' || l.id, 'balance after ' || l.balance_after,
                          'reverses ' || l.reverses_id, nullif(l.note, '')) AS details,
                l.id AS ledger_entry_id
         FROM credit_ledger l
         WHERE l.created_at >= CAST(:start AS timestamp) AT TIME ZONE CAST(:tz AS text)
           AND l.created_at < (CAST(:end AS date) + 1)::timestamp AT TIME ZONE CAST(:tz AS text)
           AND (CAST(:org AS bigint) IS NULL OR l.organization_id = :org)
           AND (CAST(:action AS text) IS NULL OR l.kind = :action)
           AND (CAST(:actor AS text) IS NULL OR l.actor ILIKE '%' || :actor || '%' ESCAPE '\\')
           AND (CAST(:c_at AS timestamptz) IS NULL
                OR (l.created_at {at_bound} CAST(:c_at AS timestamptz)
                    AND (l.created_at, 1, l.id)
                        {after} (CAST(:c_at AS timestamptz), CAST(:c_source AS integer),
                           CAST(:c_id AS bigint))))
         ORDER BY l.created_at {dir}, l.id {dir}
         LIMIT :limit)
        UNION ALL
        (SELECT a.created_at, a.organization_id, a.action, a.actor, a.reason,
                CAST(a.details ->> 'amount' AS bigint), 0, a.id,
                concat_ws(' · ', 'request ' || (a.details ->> 'request_id'),
                          'requested by ' || (a.details ->> 'requested_by'),
                          'entry ' || (a.details ->> 'ledger_entry_id'),
                          a.details ->> 'type',
                          'limit ' || (a.details ->> 'old_limit') || ' → '
                              || (a.details ->> 'new_limit'),
                          (a.details ->> 'old_mode') || ' → ' || (a.details ->> 'new_mode'),
                          'from ' || (a.details ->> 'effective'),
                          'until ' || (a.details ->> 'until')),
                -- The entry an approval booked (a number the database wrote; anything
                -- else in the JSON is no entry).
                CASE WHEN a.details ->> 'ledger_entry_id' ~ '^[0-9]{{1,18}}$'
                     THEN CAST(a.details ->> 'ledger_entry_id' AS bigint) END
         FROM audit_log a
         WHERE a.created_at >= CAST(:start AS timestamp) AT TIME ZONE CAST(:tz AS text)
           AND a.created_at < (CAST(:end AS date) + 1)::timestamp AT TIME ZONE CAST(:tz AS text)
           AND (CAST(:org AS bigint) IS NULL OR a.organization_id = :org)
           AND (CAST(:action AS text) IS NULL OR a.action = :action)
           AND (CAST(:actor AS text) IS NULL OR a.actor ILIKE '%' || :actor || '%' ESCAPE '\\')
           AND (CAST(:c_at AS timestamptz) IS NULL
                OR (a.created_at {at_bound} CAST(:c_at AS timestamptz)
                    AND (a.created_at, 0, a.id)
                        {after} (CAST(:c_at AS timestamptz), CAST(:c_source AS integer),
                           CAST(:c_id AS bigint))))
         ORDER BY a.created_at {dir}, a.id {dir}
         LIMIT :limit)
    ) e
    JOIN organizations o ON o.id = e.organization_id
    ORDER BY e.at {dir}, e.source {dir}, e.id {dir}
    LIMIT :limit
"""
# The orders of the trail: by time, newest or oldest first (then source and id).
AuditSort = TimeSort
AUDIT_SORTS = TIME_SORTS
_TRAILS: Final[dict[AuditSort, TextClause]] = {
    sort: text(_TRAIL.format(**words)) for sort, words in TIME_ORDER_WORDS.items()
}


@dataclass(frozen=True, slots=True)
class AuditCursor:
    """Where the next page of the trail starts: the last row shown, as its time, its
    source (1 the ledger, 0 ``audit_log``) and its id there, in the order ``sort``."""

    at: dt.datetime
    source: Literal[0, 1]
    id: int
    sort: AuditSort = "newest"


@dataclass(frozen=True, slots=True)
class AuditPage:
    """A page of the trail in its order, and the cursor of the next one."""

    rows: pd.DataFrame
    next_cursor: AuditCursor | None


def all_orgs_audit_page(
    conn: Connection,
    *,
    start: dt.date,
    end: dt.date,
    organization_id: int | None = None,
    action: str | None = None,
    actor: str | None = None,
    limit: int = 100,
    after: AuditCursor | None = None,
    timezone: str = "UTC",
    sort: AuditSort = "newest",
) -> AuditPage:
    """A keyset page of the changes made in [start, end] (dates in ``timezone``, an IANA
    name), newest (or, ``sort="oldest"``, oldest) first, across organizations unless
    ``organization_id`` is given; ``after`` is the ``next_cursor`` of the page before, in
    the same order. Columns as ``all_orgs_audit_trail`` (``at`` stays UTC).
    """
    sort = check_sort(sort, AUDIT_SORTS)
    start, end = check_range(start, end)
    if organization_id is not None:
        organization_id = check_id(organization_id)
    if action is not None and action not in AUDIT_ACTIONS:
        raise InvalidInput(f"Unknown action {action!r}: use one of {', '.join(AUDIT_ACTIONS)}.")
    if after is not None and (not isinstance(after, AuditCursor) or after.source not in (0, 1)):
        # (source is cast to integer in SQL: anything else would be refused there.)
        raise InvalidInput("after must be the next_cursor of a previous page.")
    if after is not None and after.sort != sort:
        raise InvalidInput("after is the cursor of a page in another order.")
    pattern = like_pattern(actor, "actor filter")
    limit = check_limit(limit, maximum=10_000)
    timezone = check_timezone(timezone)
    result = conn.execute(
        _TRAILS[sort],
        {
            "start": start,
            "end": end,
            "tz": timezone,
            "org": organization_id,
            "action": action,
            "actor": pattern,
            "limit": limit + 1,
            "c_at": after.at if after else None,
            "c_source": after.source if after else 0,
            "c_id": after.id if after else 0,
        },
    )
    rows = frame(result, {**AUDIT_COLUMNS, "source": "int64", "id": "int64"})
    cursor = None
    if len(rows) > limit:
        rows = rows.iloc[:limit]
        last = rows.iloc[-1]
        source: Literal[0, 1] = 1 if int(last["source"]) == 1 else 0
        cursor = AuditCursor(last["at"].to_pydatetime(), source, int(last["id"]), sort)
    return AuditPage(rows.drop(columns=["source", "id"]).reset_index(drop=True), cursor)


def all_orgs_audit_trail(
    conn: Connection,
    *,
    start: dt.date,
    end: dt.date,
    organization_id: int | None = None,
    action: str | None = None,
    actor: str | None = None,
    limit: int = 500,
    timezone: str = "UTC",
    sort: AuditSort = "newest",
) -> pd.DataFrame:
    """Changes made in [start, end] (dates in ``timezone``), newest (or oldest) first, across
    organizations unless ``organization_id`` is given: the first ``limit`` (the CSV
    download).

    Columns: at (UTC), organization_id, organization, action (grant, deduct, refund,
    reversal, set_daily_limit, request_adjustment, approve_adjustment,
    reject_adjustment), actor, reason, amount (credits, <NA> for limit changes),
    details (str), ledger_entry_id (the organization's ledger entry: the movement's own,
    or the one an approval booked; <NA> for the others).
    """
    return all_orgs_audit_page(
        conn,
        start=start,
        end=end,
        organization_id=organization_id,
        action=action,
        actor=actor,
        limit=limit,
        timezone=timezone,
        sort=sort,
    ).rows


# Plan allowance changes: read per plan (a handful, from plan_allowances) on the
# (plan, created_at) index in the order asked, each stopping at the LIMIT, then merged,
# as the trail merges its sources: a call reads at most plans x limit rows whatever the
# range. Rows are ordered by (created_at, id), a total order, so a page continues
# exactly after the cursor's (created_at, id). The range's days are those of ``:tz``.
_PLAN_CHANGES = """
    SELECT c.id, c.plan, c.monthly_allowance, c.rollover_cap, c.old_monthly_allowance,
           c.old_rollover_cap, c.actor, c.reason, c.idempotency_key, c.created_at
    FROM plan_allowances p
    CROSS JOIN LATERAL (
        SELECT ch.id, ch.plan, ch.monthly_allowance, ch.rollover_cap, ch.old_monthly_allowance,
               ch.old_rollover_cap, ch.actor, ch.reason, ch.idempotency_key, ch.created_at
        FROM plan_allowance_changes ch
        WHERE ch.plan = p.plan
          AND ch.created_at >= CAST(:start AS timestamp) AT TIME ZONE CAST(:tz AS text)
          AND ch.created_at < (CAST(:end AS date) + 1)::timestamp AT TIME ZONE CAST(:tz AS text)
          AND (CAST(:actor AS text) IS NULL OR ch.actor ILIKE '%' || :actor || '%' ESCAPE '\\')
          AND (CAST(:c_at AS timestamptz) IS NULL
               OR (ch.created_at {at_bound} CAST(:c_at AS timestamptz)
                   AND (ch.created_at, ch.id)
                       {after} (CAST(:c_at AS timestamptz), CAST(:c_id AS bigint))))
        ORDER BY ch.created_at {dir}, ch.id {dir}
        LIMIT :limit
    ) c
    ORDER BY c.created_at {dir}, c.id {dir}
    LIMIT :limit
"""
_PLAN_CHANGE_PAGES: Final[dict[AuditSort, TextClause]] = {
    sort: text(_PLAN_CHANGES.format(**words)) for sort, words in TIME_ORDER_WORDS.items()
}


@dataclass(frozen=True, slots=True)
class PlanChangeCursor:
    """Where the next page of plan allowance changes starts: the time and id of the last
    change shown, in the order ``sort``."""

    at: dt.datetime
    id: int
    sort: AuditSort = "newest"


@dataclass(frozen=True, slots=True)
class PlanChangePage:
    """A page of plan allowance changes in its order, and the cursor of the next one."""

    rows: list[AllowanceChange]
    next_cursor: PlanChangeCursor | None


def plan_allowance_changes_page(
    conn: Connection,
    *,
    start: dt.date,
    end: dt.date,
    actor: str | None = None,
    limit: int = 100,
    after: PlanChangeCursor | None = None,
    timezone: str = "UTC",
    sort: AuditSort = "newest",
) -> PlanChangePage:
    """A keyset page of the changes of plans' allowances made in [start, end] (dates in
    ``timezone``), every plan, newest (or, ``sort="oldest"``, oldest) first, by actors
    whose email contains ``actor``; ``after`` is the ``next_cursor`` of the page before,
    in the same order. Each row as ``set_plan_allowance`` recorded it (``created_at``
    UTC).
    """
    sort = check_sort(sort, AUDIT_SORTS)
    start, end = check_range(start, end)
    if after is not None and not isinstance(after, PlanChangeCursor):
        raise InvalidInput("after must be the next_cursor of a previous page.")
    if after is not None and after.sort != sort:
        raise InvalidInput("after is the cursor of a page in another order.")
    pattern = like_pattern(actor, "actor filter")
    limit = check_limit(limit, maximum=10_000)
    timezone = check_timezone(timezone)
    result = conn.execute(
        _PLAN_CHANGE_PAGES[sort],
        {
            "start": start,
            "end": end,
            "tz": timezone,
            "actor": pattern,
            "limit": limit + 1,
            "c_at": after.at if after else None,
            "c_id": after.id if after else 0,
        },
    )
    rows = [AllowanceChange(**row._mapping) for row in result]
    cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        cursor = PlanChangeCursor(rows[-1].created_at, rows[-1].id, sort)
    return PlanChangePage(rows, cursor)
