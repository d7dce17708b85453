"""The quotas: usage_limits counted from the generations, with the limits customer
success lowered today (limit_changes) and their audit rows."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class _LoweredLimit:
    """A limit customer success lowered today (the audit trail records it)."""

    organization_id: int
    type: str
    date: dt.date
    old_limit: int
    new_limit: int


def load_usage(
    conn: psycopg.Connection,
    rng: np.random.Generator,
    orgs: list[Org],
    totals: dict[int, OrgTotals],
    now: dt.datetime,
) -> tuple[int, list[_LoweredLimit]]:
    """usage_limits rows: exact counts and credit sums per (organization, type, local day).

    Limits: each organization has headroom over its busiest day, except a few that
    customer success will find at or over their limit today. Returns the rows loaded
    and the limits lowered today.
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
    lowered: list[_LoweredLimit] = []
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
                    lowered.append(
                        _LoweredLimit(
                            org.id,
                            GENERATION_TYPES[t][0],
                            epoch + dt.timedelta(days=today),
                            int(limit[t]),
                            int(daily_limit[i]),
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
        return 0, lowered
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
    return n, lowered


def load_audit(conn: psycopg.Connection, lowered: list[_LoweredLimit], now: dt.datetime) -> None:
    """Today's lowered limits as ``set_daily_limit`` leaves them: a change in
    ``limit_changes`` (open-ended, from today) and its audit row. Without the change, a
    later change that ends would fall back past today's row to the limit before it."""
    copy_rows(
        conn,
        "COPY limit_changes (organization_id, type, effective, daily_limit, created_at) FROM STDIN",
        [
            (
                change.organization_id,
                change.type,
                change.date,
                change.new_limit,
                now - dt.timedelta(hours=1),
            )
            for change in lowered
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
                "Plan downgrade: limit lowered pending renewal",
                Jsonb(
                    {
                        "type": change.type,
                        "effective": change.date.isoformat(),
                        "old_limit": change.old_limit,
                        "new_limit": change.new_limit,
                    }
                ),
                now - dt.timedelta(hours=1),
            )
            for change in lowered
        ],
    )
