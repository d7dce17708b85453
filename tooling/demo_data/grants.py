"""Credit grants of each kind (issue 18): promotions that expire, one already written
off, and plan allowances with a rollover, for a few organizations.

They are ledger entries like the others, numbered among them by time (so the
``balance_after`` chain holds), and each makes a ``credit_grants`` row as the book's
trigger would have. The draw is deterministic and uses no random numbers, so every
other row of the demo stays what it was. What the burn took from each grant follows
the draw order: a grant that expires is drawn before the organization's plan credits
(which never expire), so it took the consumption of its own window, up to its amount.
Everything else is the organization's opening grant, as migration 0021 opened it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from tooling.demo_data.organizations import Org, zone_named

PROMOTION_REASON = "Launch promotion, valid for 30 days"
ALLOWANCE_REASON = "Monthly plan allowance"
ROLLOVER_REASON = "Unused allowance rolled over"
SYSTEM = "system"
DEFAULT_PRIORITY = 10
# Live promotions end this many days after the load: all within the next 30 days.
PROMOTION_ENDS = (6, 13, 24)


@dataclass(slots=True)
class DemoGrant:
    """One grant: its entry's terms, what the burn drew, and when it was written off."""

    id: int
    source: str
    amount: int
    drawn: int
    priority: int | None  # as the entry carries it (None: the default)
    created_at: dt.datetime
    expires_at: dt.datetime
    key: str
    reason: str
    actor: str
    ledger_entry_id: int | None = None  # set when the entries are numbered

    @property
    def unused(self) -> int:
        return self.amount - self.drawn

    def written_off(self, now: dt.datetime) -> bool:
        return self.expires_at <= now


@dataclass(frozen=True, slots=True)
class Roles:
    """Which organizations get promotions, and which allowances."""

    promotions: tuple[int, ...]
    allowances: tuple[int, ...]


def _month_start(at: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    local = at.astimezone(zone)
    return dt.datetime(local.year, local.month, 1, tzinfo=zone)


def _next_month(start: dt.datetime) -> dt.datetime:
    return (start + dt.timedelta(days=32)).replace(day=1)


def pick_roles(orgs: list[Org], now: dt.datetime) -> Roles:
    """Three organizations with 60 days of history get promotions, the next two with a
    whole previous local month get allowances; the first organization (the goodwill
    reversal's) keeps its ledger as it was."""
    promotions: list[int] = []
    allowances: list[int] = []
    for org in orgs[1:]:
        zone = zone_named(org.timezone)
        if len(promotions) < 3 and org.created_at <= now - dt.timedelta(days=60):
            promotions.append(org.id)
        elif len(allowances) < 2 and org.created_at <= _previous_month(now, zone):
            allowances.append(org.id)
    return Roles(tuple(promotions), tuple(allowances))


def _previous_month(now: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    return (_month_start(now, zone) - dt.timedelta(days=1)).replace(day=1)


def _rounded(credits: float) -> int:
    return max(1_000, int(round(credits, -2)))


def grants_of(
    org: Org,
    roles: Roles,
    now: dt.datetime,
    consumed: Callable[[dt.datetime, dt.datetime], int],
    next_id: int,
) -> list[DemoGrant]:
    """The organization's grants (none for most), ids from ``next_id``; ``consumed(a, b)``
    is what its generations consumed in [a, b)."""
    grants: list[DemoGrant] = []

    def add(
        source: str,
        amount: int,
        drawn: int,
        start: dt.datetime,
        end: dt.datetime,
        key: str,
        reason: str,
        priority: int | None = None,
        actor: str = SYSTEM,
    ) -> None:
        grant = DemoGrant(
            next_id + len(grants), source, amount, min(drawn, amount), priority, start, end,
            key, reason, actor,
        )  # fmt: skip
        grants.append(grant)

    if org.id in roles.promotions:
        rank = roles.promotions.index(org.id)
        staff = "maria.keller@finance.example.com"
        if rank == 0:
            # Made 50 days ago for 35 days, not all used: written off 15 days ago.
            start, end = now - dt.timedelta(days=50), now - dt.timedelta(days=15)
            used = consumed(start, end)
            add("manual", _rounded(used * 1.5 + 1_000), used, start, end,
                f"promo-{org.id}-spring", PROMOTION_REASON, actor=staff)  # fmt: skip
        # Made 12 days ago; twice what was used since, so some of it is still there and
        # expires within 30 days, more than the burn uses by then.
        start = now - dt.timedelta(days=12)
        end = now + dt.timedelta(days=PROMOTION_ENDS[rank])
        used = consumed(start, now)
        add("manual", _rounded(2 * used + 1_000), used, start, end, f"promo-{org.id}-launch",
            PROMOTION_REASON, priority=5 if rank == 1 else None, actor=staff)  # fmt: skip
    if org.id in roles.allowances:
        zone = zone_named(org.timezone)
        this = _month_start(now, zone)
        last = _previous_month(now, zone)
        used_last = consumed(last, this)
        allowance = _rounded(used_last * 1.25)
        add("allowance", allowance, used_last, last, this, f"allowance:{last:%Y-%m}",
            ALLOWANCE_REASON)  # fmt: skip
        rolled = min(allowance - min(used_last, allowance), allowance // 2)
        used_now = consumed(this, now)
        if rolled > 0:
            # Drawn before this month's allowance: the same expiry, made first.
            add("rollover", rolled, used_now, this, _next_month(this), f"rollover:{this:%Y-%m}",
                ROLLOVER_REASON)  # fmt: skip
            used_now -= min(used_now, rolled)
        add("allowance", allowance, used_now, this, _next_month(this), f"allowance:{this:%Y-%m}",
            ALLOWANCE_REASON)  # fmt: skip
    return grants
