"""The ledger: grants sized ahead of consumption, staff deductions, refunds, one
reversal, a few grants that expire (``grants``), and the balances and grants they leave."""

from __future__ import annotations

import datetime as dt

import numpy as np
import psycopg

from tooling.demo_data.copying import copy_rows
from tooling.demo_data.generations import OrgTotals
from tooling.demo_data.grants import DEFAULT_PRIORITY, SYSTEM, DemoGrant, grants_of, pick_roles
from tooling.demo_data.organizations import Org, zone_named

FINANCE_STAFF = (
    "maria.keller@finance.example.com",
    "tom.okafor@finance.example.com",
    "lena.park@finance.example.com",
)


def load_ledger(
    conn: psycopg.Connection,
    rng: np.random.Generator,
    orgs: list[Org],
    totals: dict[int, OrgTotals],
    now: dt.datetime,
) -> int:
    """Grants ahead of consumption, some staff deductions, refunds and one reversal."""
    now_us = int(now.timestamp() * 1_000_000)
    rows: list[tuple[object, ...]] = []
    balances: list[tuple[int, int]] = []
    grant_rows: list[tuple[object, ...]] = []
    next_expiry: list[dt.datetime | None] = []
    entry_id = 0
    roles = pick_roles(orgs, now)
    next_grant = max((org.id for org in orgs), default=0) + 1  # the openings' ids are the orgs'
    no_ts, no_cum = np.array([], dtype=np.int64), np.zeros(1, dtype=np.int64)
    for org in orgs:
        own = totals.get(org.id)
        ts, cum = (own.ts, own.cum) if own else (no_ts, no_cum)

        def consumed_before(t_us: int, ts: np.ndarray = ts, cum: np.ndarray = cum) -> int:
            return int(cum[np.searchsorted(ts, t_us, side="left")])

        zone = zone_named(org.timezone)
        start = org.created_at.astimezone(zone)
        # Plan grants on the first of each local month at 09:00, the first at signup.
        grant_times = [int(org.created_at.timestamp() * 1_000_000)]
        month = dt.datetime(start.year, start.month, 1, 9, tzinfo=zone)
        while True:
            month = (month + dt.timedelta(days=32)).replace(day=1)
            if month >= now:
                break
            grant_times.append(int(month.timestamp() * 1_000_000))
        ledger_total = 0
        events: list[tuple[int, int, str, str, str | None, object]] = []
        for i, t in enumerate(grant_times):
            period_end = (
                grant_times[i + 1] if i + 1 < len(grant_times) else now_us + 30 * 86_400_000_000
            )
            future = consumed_before(period_end) - consumed_before(t)
            balance_now = ledger_total - consumed_before(t)
            need = int(future * rng.uniform(1.1, 1.6)) + 500
            amount = max(need - balance_now, 0)
            if amount == 0:
                continue
            note = "Opening balance" if i == 0 else None
            events.append((t, amount, "grant", "Monthly plan credits", note, None))
            ledger_total += amount
            # Now and then finance claws back part of the surplus, at office hours.
            if i > 0 and rng.random() < 0.35:
                d_time = t + int(rng.uniform(2, 20) * 86_400_000_000)
                if d_time < min(period_end, now_us):
                    surplus = (
                        ledger_total
                        - consumed_before(d_time)
                        - (consumed_before(period_end) - consumed_before(d_time))
                    )
                    take = int(surplus * rng.uniform(0.05, 0.3))
                    if take > 0:
                        reason = str(
                            rng.choice(
                                ["Billing correction", "Chargeback", "Expired promotional credits"]
                            )
                        )
                        events.append((d_time, -take, "deduct", reason, None, None))
                        ledger_total -= take
            if rng.random() < 0.25:
                r_time = t + int(rng.uniform(1, 25) * 86_400_000_000)
                if r_time < min(period_end, now_us):
                    refund = int(rng.integers(5, 200))
                    events.append(
                        (
                            r_time,
                            refund,
                            "refund",
                            "Failed generations refund",
                            "Ticket #" + str(int(rng.integers(1000, 9999))),
                            None,
                        )
                    )
                    ledger_total += refund
        # One goodwill grant reversed a day later, to show reversals in the ledger. It
        # joins the other events before they are numbered: ledger ids follow time, as
        # they follow the order writes take the organization's lock in production
        # (reconciliation's balance_after chain relies on that order).
        goodwill = org.id == 1 and bool(events) and now_us - 3 * 86_400_000_000 > grant_times[0]
        if goodwill:
            t = now_us - 3 * 86_400_000_000
            events.append((t, 250, "grant", "Goodwill credit", None, "goodwill"))
            events.append(
                (
                    t + 86_400_000_000,
                    -250,
                    "reversal",
                    "Granted to the wrong organization",
                    None,
                    "goodwill",
                )
            )

        # Grants that expire (issue 18): each grant's entry, and the write-off of what it
        # left when it expired before now, recorded at its expiry.
        def consumed(a: dt.datetime, b: dt.datetime) -> int:
            return consumed_before(_us(b)) - consumed_before(_us(a))

        grants = grants_of(org, roles, now, consumed, next_grant)
        next_grant += len(grants)
        for g in grants:
            events.append((_us(g.created_at), g.amount, "grant", g.reason, None, g))
            if g.written_off(now) and g.unused > 0:
                events.append(
                    (_us(g.expires_at), -g.unused, "expired", f"Grant {g.id} expired", None,
                     ("expiry", g))
                )  # fmt: skip
        events.sort(key=lambda e: e[0])
        running = 0
        k = 0
        goodwill_id: int | None = None
        covered: int | None = None  # the last entry the opening grant covers
        for t, amount, kind, reason, note, marker in events:
            entry_id += 1
            running += amount
            terms: tuple[object, ...] = (None, None, None, None)
            reverses: int | None
            if isinstance(marker, DemoGrant):
                marker.ledger_entry_id = entry_id
                actor, key, reverses = marker.actor, marker.key, None
                terms = (marker.expires_at, marker.priority, None, None)
            elif isinstance(marker, tuple):
                expiring: DemoGrant = marker[1]
                actor, key, reverses = SYSTEM, f"expiry:{expiring.id}", None
                terms = (None, None, expiring.id, expiring.expires_at)
            elif marker == "goodwill":
                # Drawn without the random generator, so the other rows stay as they were.
                actor = FINANCE_STAFF[0]
                reverses = goodwill_id if kind == "reversal" else None
                # A reversal's key is the one reverse_adjustment derives (migration 0012).
                key = f"reversal:{reverses}" if reverses is not None else f"seed-{org.id}-{kind}"
                goodwill_id = entry_id if kind == "grant" else goodwill_id
            else:
                actor = FINANCE_STAFF[int(rng.integers(len(FINANCE_STAFF)))]
                key, reverses, k = f"seed-{org.id}-{k}", None, k + 1
            if not isinstance(marker, DemoGrant):
                covered = entry_id
            rows.append((
                org.id, entry_id, amount, running - consumed_before(t), kind, reason, note, actor,
                key, reverses, _ts(t), *terms,
            ))  # fmt: skip
        balances.append((org.id, running - int(cum[-1])))
        # The soonest expiry not written off, as migration 0023's trigger keeps it.
        next_expiry.append(
            min(
                (g.expires_at for g in grants if g.expires_at and not g.written_off(now)),
                default=None,
            )
        )
        # The grants open after the loaded history: one opening grant of the balance,
        # covering the organization's entries so far, as migration 0021 opened them,
        # less what remains of the grants that expire (those have rows of their own).
        live = sum(g.unused for g in grants if not g.written_off(now))
        opening = balances[-1][1] - live
        assert opening >= 0, (org.id, opening)
        grant_rows.append((org.id, org.id, covered, "opening", opening, opening, 0, 0,
                           DEFAULT_PRIORITY, None, now, None))  # fmt: skip
        for g in grants:
            gone = g.written_off(now)
            grant_rows.append((
                org.id, g.id, g.ledger_entry_id, g.source, g.amount, 0 if gone else g.unused,
                g.drawn, g.unused if gone else 0, g.priority or DEFAULT_PRIORITY, g.expires_at,
                g.created_at, g.expires_at if gone else None,
            ))  # fmt: skip
    copy_rows(
        conn,
        "COPY credit_ledger (organization_id, id, amount, balance_after, kind, reason, note, "
        "actor, idempotency_key, reverses_id, created_at, grant_expires_at, grant_priority, "
        "grant_id, effective_at) FROM STDIN",
        rows,
    )
    copy_rows(
        conn,
        "COPY credit_balances (organization_id, balance, updated_at, next_expiry) FROM STDIN",
        [(org_id, bal, now, due) for (org_id, bal), due in zip(balances, next_expiry, strict=True)],
    )
    copy_rows(
        conn,
        "COPY credit_grants (organization_id, id, ledger_entry_id, source, amount, remaining, "
        "drawn, expired, priority, expires_at, created_at, written_off_at) FROM STDIN",
        grant_rows,
    )
    return len(rows)


def _us(at: dt.datetime) -> int:
    return int(at.timestamp() * 1_000_000)


def _ts(micros: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(micros / 1_000_000, dt.UTC)
