"""The quotas: usage_limits counted from the generations, with the limits customer
success changed (limit_changes: a few lowered today, one raised for a week that ends by
itself) and their audit rows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from queries.models import PLAN_LIMIT_FACTOR
from tooling.demo_data.binary import PG_EPOCH_DAY, PG_EPOCH_US, TEXT, binary_rows
from tooling.demo_data.copying import copy_bytes, copy_rows
from tooling.demo_data.generations import OrgTotals
from tooling.demo_data.organizations import GENERATION_TYPES, Org, zone_named

SUPPORT_STAFF = ("sam.rivera@support.example.com", "noor.haddad@support.example.com")


_COPY_USAGE = (
    "COPY usage_limits (organization_id, id, type, date, used, credits_used, daily_limit, "
    "updated_at) FROM STDIN (FORMAT BINARY)"
)


# The temporary raise: from two days ago through five days ahead, twice the limit.
RAISED_DAYS_BEFORE: Final = 2
RAISED_DAYS_AFTER: Final = 5
RAISE_REASON: Final = "Launch week: temporary raise"
LOWER_REASON: Final = "Plan downgrade: limit lowered pending renewal"
SOFT_REASON: Final = "Renewal in progress: flag overage, do not refuse"


@dataclass(frozen=True, slots=True)
class LimitChange:
    """A limit customer success changed, as ``set_daily_limit`` records it: from
    ``date`` (through ``until`` when it ends by itself), with its audit row."""

    organization_id: int
    type: str
    date: dt.date
    old_limit: int
    new_limit: int
    reason: str
    made_at: dt.datetime
    until: dt.date | None = None
    # Also made soft (set_limit_enforcement): its work goes on and shows as overage.
    soft: bool = False


def load_usage(
    conn: psycopg.Connection,
    rng: np.random.Generator,
    orgs: list[Org],
    totals: dict[int, OrgTotals],
    now: dt.datetime,
) -> tuple[int, list[LimitChange]]:
    """usage_limits rows: exact counts and credit sums per (organization, type, local day).

    Limits: each organization has headroom over its busiest day, except a few that
    customer success will find at or over their limit today, and one whose busiest type
    is raised for a launch week that ends by itself (no random draw, so every other
    row is as before). Returns the rows loaded and the limit changes.
    """
    headroom = rng.uniform(1.3, 2.5, len(orgs))
    pressure = np.ones(len(orgs))
    epoch = dt.date(1970, 1, 1)

    def busy_today(org: Org) -> bool:
        cells = totals.get(org.id)
        today = (now.astimezone(zone_named(org.timezone)).date() - epoch).days
        return cells is not None and bool(np.any((cells.day == today) & (cells.used >= 2)))

    if len(orgs) > 1:
        # Among the busier tenants (not the largest), so today's numbers mean something,
        # and only those with use today already: early in some zones' day a small tenant
        # may have none yet, and a squeezed limit needs use to squeeze.
        candidates = np.arange(1, min(len(orgs), 16))
        active = np.array([i for i in candidates.tolist() if busy_today(orgs[i])], dtype=np.int64)
        candidates = active if len(active) else candidates
        size = min(len(candidates), max(3, len(orgs) // 5))
        picked = rng.choice(candidates, size=size, replace=False)
        for k, idx in enumerate(picked):
            pressure[idx] = rng.uniform(0.82, 0.97) if k % 2 == 0 else rng.uniform(1.02, 1.25)
    defaults = np.array([t[3] for t in GENERATION_TYPES], dtype=np.float64)
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("org", "kind", "day", "used", "spent", "limit", "last")
    }
    changes: list[LimitChange] = []
    raised = _raised_organization(orgs, pressure, busy_today)
    for org in orgs:
        cells = totals.get(org.id)
        if cells is None:
            continue
        floor = (defaults * PLAN_LIMIT_FACTOR[org.plan] / 4).astype(np.int64)
        limit = np.maximum(np.ceil(cells.peak * headroom[org.id - 1] / 10) * 10, floor)
        limit = limit.astype(np.int64)
        daily_limit = limit[cells.kind]
        squeeze = pressure[org.id - 1]
        today = (now.astimezone(zone_named(org.timezone)).date() - epoch).days
        if squeeze != 1:
            for i in np.flatnonzero((cells.day == today) & (cells.used >= 2)).tolist():
                t = int(cells.kind[i])
                daily_limit[i] = max(1, int(int(cells.used[i]) / squeeze))
                earlier = bool(np.any((cells.kind == t) & (cells.day < today)))
                if earlier and daily_limit[i] < limit[t]:
                    changes.append(
                        LimitChange(
                            org.id,
                            GENERATION_TYPES[t][0],
                            epoch + dt.timedelta(days=today),
                            int(limit[t]),
                            int(daily_limit[i]),
                            LOWER_REASON,
                            now - dt.timedelta(hours=1),
                            # The first tenant pushed over its limit is let through.
                            soft=bool(squeeze > 1) and not any(c.soft for c in changes),
                        )
                    )
        if org.id == raised:
            # Its busiest type, raised on the days of the change so far: a row on a
            # covered day holds the change's limit, as set_daily_limit leaves it.
            t = int(np.argmax(np.bincount(cells.kind, weights=cells.used, minlength=len(limit))))
            start = today - RAISED_DAYS_BEFORE
            covered = (cells.kind == t) & (cells.day >= start) & (cells.day <= today)
            daily_limit[covered] = 2 * limit[t]
            changes.append(
                LimitChange(
                    org.id,
                    GENERATION_TYPES[t][0],
                    epoch + dt.timedelta(days=start),
                    int(limit[t]),
                    int(2 * limit[t]),
                    RAISE_REASON,
                    # The morning before the launch week began.
                    now - dt.timedelta(days=RAISED_DAYS_BEFORE, hours=1),
                    until=epoch + dt.timedelta(days=today + RAISED_DAYS_AFTER),
                )
            )
        parts["org"].append(np.full(len(cells.kind), org.id, dtype=np.int64))
        parts["kind"].append(cells.kind)
        parts["day"].append(cells.day)
        parts["used"].append(cells.used)
        parts["spent"].append(cells.spent)
        parts["limit"].append(daily_limit)
        parts["last"].append(cells.last)
    if not parts["org"]:
        return 0, changes
    col = {k: np.concatenate(v) for k, v in parts.items()}
    n = len(col["org"])
    copy_bytes(
        conn,
        _COPY_USAGE,
        binary_rows(
            (
                (">i8", col["org"]),
                (">i8", np.arange(1, n + 1, dtype=np.int64)),
                (TEXT, col["kind"]),
                (">i4", col["day"] - PG_EPOCH_DAY),
                (">i4", col["used"]),
                (">i8", col["spent"]),
                (">i4", col["limit"]),
                (">i8", col["last"] - PG_EPOCH_US),
            ),
            col["kind"],
        ),
    )
    return n, changes


def _raised_organization(
    orgs: list[Org], pressure: np.ndarray, busy_today: Callable[[Org], bool]
) -> int | None:
    """The organization whose limit is raised for a week: the busiest (by its place in
    the list) of those with use today whose limit is not squeezed, not the largest."""
    for i in range(1, min(len(orgs), 16)):
        if pressure[i] == 1 and busy_today(orgs[i]):
            return orgs[i].id
    return None


def load_audit(conn: psycopg.Connection, changes: list[LimitChange], now: dt.datetime) -> None:
    """The limit changes as ``set_daily_limit`` leaves them: a row in ``limit_changes``
    and its audit row. Without the row, a later change that ends would fall back past
    the changed days' rows to the limit before them. One of those over their limit today
    is also made soft, as ``set_limit_enforcement`` leaves it: its work goes on and what
    is past the limit shows as overage."""
    copy_rows(
        conn,
        "COPY limit_changes (organization_id, type, effective, until, daily_limit, created_at) "
        "FROM STDIN",
        [
            (
                change.organization_id,
                change.type,
                change.date,
                change.until,
                change.new_limit,
                change.made_at,
            )
            for change in changes
        ],
    )
    copy_rows(
        conn,
        "COPY audit_log (organization_id, action, actor, reason, details, created_at) FROM STDIN",
        [
            (
                change.organization_id,
                "set_daily_limit",
                SUPPORT_STAFF[0],
                change.reason,
                Jsonb(
                    {
                        "type": change.type,
                        "effective": change.date.isoformat(),
                        "old_limit": change.old_limit,
                        "new_limit": change.new_limit,
                    }
                    | ({} if change.until is None else {"until": change.until.isoformat()})
                ),
                change.made_at,
            )
            for change in changes
        ],
    )

    soft = next((c for c in changes if c.soft), None)
    if soft is None:
        return
    made_at = now - dt.timedelta(minutes=30)
    copy_rows(
        conn,
        "COPY limit_enforcement (organization_id, type, soft, updated_at) FROM STDIN",
        [(soft.organization_id, soft.type, True, made_at)],
    )
    copy_rows(
        conn,
        "COPY audit_log (organization_id, action, actor, reason, details, created_at) FROM STDIN",
        [
            (
                soft.organization_id,
                "set_limit_enforcement",
                SUPPORT_STAFF[1],
                SOFT_REASON,
                Jsonb({"type": soft.type, "old_mode": "hard", "new_mode": "soft"}),
                made_at,
            )
        ],
    )
