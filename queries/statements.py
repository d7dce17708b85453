"""Monthly statements: what an organization's credits did in one of its local months.

A statement closes by construction: every ledger entry and every generation belongs to
exactly one local month, the one of its local date (``created_at AT TIME ZONE`` the
organization's zone, the expression the rollups are keyed on), so

    opening  = sum(ledger before the month) - consumption before the month
    closing  = opening + granted - deducted - consumed - expired
             = the next month's opening

An expiry belongs to the month of its *effective* time, the grant's ``expires_at``, not
of the time it was written off (``created_at`` of its ``expired`` entry, which can be the
next month's first write). The expiries are read from the grants (migration 0021): each
grant that expired by the statement's ``now``, with its write-off entry when it has one,
or with what it still holds when it is due but not yet written off. So a month reads the
same before and after ``expire-credits`` runs, and the current month's closing, to date,
is the balance minus what is due (``due_credits``): the sum of the live grants'
remaining amounts. Consumption comes from the rollups
(``organization_daily_usage`` prefix sums before the month, ``organization_monthly_usage``
for the month, ``usage_limits`` per day and type), never from the generations.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from typing import Final

from sqlalchemy import Connection, text

from queries.checks import check_date, check_id, check_timestamp
from queries.credits import LedgerEntry
from queries.errors import InvalidStatement

__all__ = [
    "ConsumptionLine",
    "ExpiryLine",
    "InvalidStatement",
    "MonthlyStatement",
    "OverageLine",
    "first_of_month",
    "monthly_statement",
    "next_month",
    "previous_month",
]


@dataclass(frozen=True, slots=True)
class ConsumptionLine:
    """Generations of one type on one local day of the month, and their credits."""

    date: dt.date
    type: str
    generations: int
    credits: int


@dataclass(frozen=True, slots=True)
class ExpiryLine:
    """What remained of one grant when it expired, at ``effective_at`` (its expiry).

    ``ledger_entry_id``/``recorded_at``: its ``expired`` entry and when that was written
    off; None while the grant is due but not yet written off (the credits are gone all
    the same: nothing can be drawn after ``expires_at``)."""

    grant_id: int
    source: str
    credits: int
    effective_at: dt.datetime
    ledger_entry_id: int | None
    recorded_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class OverageLine:
    """Generations of one type past its daily limit over the month (only a soft limit
    lets them through): the sum over the month's local days of ``used - daily_limit``
    where positive. Their credits are already in the consumption."""

    type: str
    generations: int


@dataclass(frozen=True, slots=True)
class MonthlyStatement:
    """One organization's credits over one local month.

    ``granted`` is every entry that added credits (grants, refunds and reversals of
    deductions); ``deducted`` every entry that took credits back (deductions and
    reversals of grants or refunds), as a positive number; ``consumed`` the credits of
    the month's generations; ``expired`` what the grants that expired in the month still
    held, as a positive number, one ``expiries`` line each (never in ``entries`` nor in
    ``deducted``). ``period_start``/``period_end`` are the month's bounds in
    the organization's zone (end exclusive). ``to_date``: the month is the current one,
    so its closing is the balance now and may still move. ``created_on``: the
    organization's local date of creation.
    """

    organization_id: int
    organization_name: str
    organization_slug: str
    timezone: str
    month: dt.date
    period_start: dt.datetime
    period_end: dt.datetime
    to_date: bool
    opening_balance: int
    granted: int
    deducted: int
    consumed: int
    closing_balance: int
    entries: tuple[LedgerEntry, ...]
    consumption: tuple[ConsumptionLine, ...]
    created_on: dt.date | None = None
    overage: tuple[OverageLine, ...] = ()
    expired: int = 0
    expiries: tuple[ExpiryLine, ...] = ()

    @property
    def before_organization(self) -> bool:
        """The month ended before the organization was created and holds nothing: no
        statement to send, only "it did not exist yet". A month with credits in it (a
        ledger imported from before the organization's record) stays a statement."""
        return (
            self.created_on is not None
            and next_month(self.month) <= self.created_on
            and not self.entries
            and not self.consumption
            and not self.expiries
            and self.opening_balance == 0
        )


def first_of_month(day: dt.date) -> dt.date:
    return day.replace(day=1)


def next_month(day: dt.date) -> dt.date:
    first = first_of_month(day)
    return (first + dt.timedelta(days=32)).replace(day=1)


def previous_month(day: dt.date) -> dt.date:
    """The first day of the month before ``day``'s: the last closed month, for today."""
    return (first_of_month(day) - dt.timedelta(days=1)).replace(day=1)


# One statement (the read registry allows at most two per read): the organization, the
# balance before the month, the month's consumption, and the lines as JSON arrays.
# The ledger is read by (organization_id, created_at) in a UTC window one day wider than
# the local month on each side (no zone is a day away from UTC), then cut exactly by
# local date, as the rollups are: local dates are not monotonic in time where a zone
# fell back across midnight, so the cut is by date, not by the instant of midnight.
# Expiries are not read by created_at (one written off late belongs to an earlier month):
# x holds the organization's grants that expired by now, by organization (grants
# are few), each with its write-off entry by the (organization_id, idempotency_key)
# index; the ledger reads by created_at leave 'expired' entries out.
_STATEMENT: Final = text(
    """
    WITH o AS (
        SELECT id, name, slug, timezone, (created_at AT TIME ZONE timezone)::date AS created_on,
               coalesce(CAST(:now AS timestamptz), now()) AS now_at,
               (coalesce(CAST(:now AS timestamptz), now()) AT TIME ZONE timezone)::date AS today,
               (CAST(:first AS timestamp) AT TIME ZONE timezone) - interval '1 day' AS from_at,
               (CAST(:next AS timestamp) AT TIME ZONE timezone) + interval '1 day' AS to_at
        FROM organizations WHERE id = :org
    ),
    x AS (
        SELECT g.id AS grant_id, g.source, g.expires_at, l.id AS entry_id,
               l.created_at AS recorded_at,
               (g.expires_at AT TIME ZONE o.timezone)::date AS day,
               CASE WHEN g.written_off_at IS NULL THEN g.remaining
                    ELSE coalesce(-l.amount, g.expired) END AS credits
        FROM o
        JOIN credit_grants g ON g.organization_id = o.id
        LEFT JOIN credit_ledger l
          ON l.organization_id = g.organization_id AND l.idempotency_key = 'expiry:' || g.id
        WHERE g.expires_at IS NOT NULL
          AND (g.expires_at AT TIME ZONE o.timezone)::date < :next
          AND CASE WHEN g.written_off_at IS NULL
                   THEN g.remaining > 0 AND g.expires_at <= o.now_at
                   ELSE g.expired > 0 END
    )
    SELECT o.name, o.slug, o.timezone, o.today, o.created_on,
        (SELECT coalesce(sum(l.amount), 0) FROM credit_ledger l
         WHERE l.organization_id = o.id AND l.created_at < o.from_at + interval '2 days'
           AND (l.created_at AT TIME ZONE o.timezone)::date < :first
           AND l.kind <> 'expired') AS ledger_before,
        (SELECT coalesce(sum(x.credits), 0) FROM x WHERE x.day < :first) AS expired_before,
        (SELECT d.credits_through FROM organization_daily_usage d
         WHERE d.organization_id = o.id AND d.date < :first
         ORDER BY d.date DESC LIMIT 1) AS consumed_before,
        (SELECT m.credits FROM organization_monthly_usage m
         WHERE m.organization_id = o.id AND m.month = :first) AS consumed,
        (SELECT coalesce(json_agg(json_build_object(
                    'id', l.id, 'organization_id', l.organization_id, 'amount', l.amount,
                    'balance_after', l.balance_after, 'kind', l.kind, 'reason', l.reason,
                    'note', l.note, 'actor', l.actor, 'idempotency_key', l.idempotency_key,
                    'reverses_id', l.reverses_id, 'created_at', l.created_at
                ) ORDER BY l.created_at, l.id), '[]'::json)
         FROM credit_ledger l
         WHERE l.organization_id = o.id AND l.created_at >= o.from_at AND l.created_at < o.to_at
           AND (l.created_at AT TIME ZONE o.timezone)::date >= :first
           AND (l.created_at AT TIME ZONE o.timezone)::date < :next
           AND l.kind <> 'expired') AS entries,
        (SELECT coalesce(json_agg(json_build_object(
                    'grant_id', x.grant_id, 'source', x.source, 'credits', x.credits,
                    'effective_at', x.expires_at, 'ledger_entry_id', x.entry_id,
                    'recorded_at', x.recorded_at
                ) ORDER BY x.expires_at, x.grant_id), '[]'::json)
         FROM x WHERE x.day >= :first) AS expiries,
        (SELECT coalesce(json_agg(json_build_object(
                    'date', u.date, 'type', u.type, 'generations', u.used,
                    'credits', u.credits_used
                ) ORDER BY u.date, u.type), '[]'::json)
         FROM usage_limits u
         WHERE u.organization_id = o.id AND u.date >= :first AND u.date < :next
           AND u.used > 0) AS consumption,
        (SELECT coalesce(json_agg(json_build_object('type', v.type, 'generations', v.over)
                                  ORDER BY v.type), '[]'::json)
         FROM (SELECT u.type, sum(greatest(u.used - u.daily_limit, 0)) AS over
               FROM usage_limits u
               WHERE u.organization_id = o.id AND u.date >= :first AND u.date < :next
               GROUP BY u.type) AS v
         WHERE v.over > 0) AS overage
    FROM o
    """
)


def monthly_statement(
    conn: Connection, *, organization_id: int, month: dt.date, now: dt.datetime | None = None
) -> MonthlyStatement:
    """The statement of the organization's local month holding ``month`` (any date in
    it): opening and closing balances, the totals, every ledger entry of the month
    (oldest first; expiries apart), each expiry that took effect in the month (by its
    effective time, written off yet or not), the consumption per local day and type,
    and the generations past a (soft) daily limit per type.

    ``now`` (default: the database's) decides the organization's current month: the
    one whose statement is ``to_date``, and after which there is none yet.

    Raises ``InvalidStatement`` for an unknown organization, a month that is not a date
    (a datetime is refused: its day depends on a zone) or a month after the
    organization's current one.
    """
    org = check_id(organization_id, error=InvalidStatement)
    day = check_date(month, "month", error=InvalidStatement)
    first, following = first_of_month(day), next_month(day)
    if now is not None:
        now = check_timestamp(now, "time now", error=InvalidStatement)
    found = conn.execute(
        _STATEMENT, {"org": org, "first": first, "next": following, "now": now}
    ).one_or_none()
    if found is None:
        raise InvalidStatement(f"There is no organization with id {org}.")
    current = first_of_month(found.today)
    if first > current:
        raise InvalidStatement(
            f"There is no statement for {first:%B %Y} yet: it is "
            f"{current:%B %Y} in the organization's time zone ({found.timezone})."
        )
    entries = tuple(
        LedgerEntry(**{**e, "created_at": dt.datetime.fromisoformat(e["created_at"])})
        for e in found.entries
    )
    consumption = tuple(
        ConsumptionLine(
            date=dt.date.fromisoformat(c["date"]),
            type=c["type"],
            generations=int(c["generations"]),
            credits=int(c["credits"]),
        )
        for c in found.consumption
    )
    overage = tuple(
        OverageLine(type=v["type"], generations=int(v["generations"])) for v in found.overage
    )
    expiries = tuple(
        ExpiryLine(
            grant_id=int(x["grant_id"]),
            source=str(x["source"]),
            credits=int(x["credits"]),
            effective_at=dt.datetime.fromisoformat(x["effective_at"]),
            ledger_entry_id=None if x["ledger_entry_id"] is None else int(x["ledger_entry_id"]),
            recorded_at=None
            if x["recorded_at"] is None
            else dt.datetime.fromisoformat(x["recorded_at"]),
        )
        for x in found.expiries
    )
    opening = int(found.ledger_before) - int(found.expired_before) - int(found.consumed_before or 0)
    granted = sum(e.amount for e in entries if e.amount > 0)
    deducted = -sum(e.amount for e in entries if e.amount < 0)
    consumed = int(found.consumed or 0)
    expired = sum(x.credits for x in expiries)
    zone = zoneinfo.ZoneInfo(found.timezone)
    return MonthlyStatement(
        organization_id=org,
        organization_name=found.name,
        organization_slug=found.slug,
        timezone=found.timezone,
        month=first,
        period_start=dt.datetime.combine(first, dt.time(), zone),
        period_end=dt.datetime.combine(following, dt.time(), zone),
        to_date=first == current,
        opening_balance=opening,
        granted=granted,
        deducted=deducted,
        consumed=consumed,
        closing_balance=opening + granted - deducted - consumed - expired,
        entries=entries,
        consumption=consumption,
        created_on=found.created_on,
        overage=overage,
        expired=expired,
        expiries=expiries,
    )
