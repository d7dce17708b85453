"""Credit grants: what each organization was granted, what remains, and what expires.

The database keeps the grants (migration 0021) in the same triggers that move the
balance: a positive ledger entry makes one, a deduction or a generation draws from the
live ones (priority, then the soonest expiry, then age), and an ``expired`` entry writes
off what remained at ``expires_at``. Every write of an organization first writes off its
grants that are due (``lock_organization``); ``expire_credits`` does it for the idle
ones, for cron. Until then, reads count a due grant as gone (``due_credits``).

Reads here take ``conn`` (any role may read) and a fixed ``at``/``now`` where the time
matters, defaulting to the database's clock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text

from queries.checks import check_id, check_timestamp
from queries.errors import InvalidInput
from queries.models import DEFAULT_GRANT_PRIORITY, GRANT_SOURCES, MAX_GRANT_PRIORITY
from queries.transactions import run_in_transaction

__all__ = [
    "DEFAULT_GRANT_PRIORITY",
    "GRANT_SOURCES",
    "MAX_GRANT_PRIORITY",
    "CreditGrant",
    "ExpiringGrant",
    "ExpiryReport",
    "check_grant_terms",
    "credit_grants",
    "expire_credits",
    "expiring_grants",
]


@dataclass(frozen=True, slots=True)
class CreditGrant:
    """One grant as it stands at ``at``: ``status`` is live, used, expired or reversed.

    ``remaining`` is what can still be drawn (0 once expired, even while the write-off
    is not yet recorded; ``expired`` then holds what will be written off).
    """

    id: int
    organization_id: int
    amount: int
    remaining: int
    drawn: int
    expired: int
    reversed: int
    priority: int
    expires_at: dt.datetime | None
    source: str
    ledger_entry_id: int | None
    created_at: dt.datetime
    status: str


def check_grant_terms(
    *, amount: int, expires_at: object, priority: object, error: type[InvalidInput]
) -> tuple[dt.datetime | None, int | None]:
    """A grant's expiry (an aware datetime, as UTC) and priority (0-255, lower first).

    Only a grant (a positive amount) carries them. Whether the expiry is still ahead
    is the database's call, by its clock, when the entry is booked.
    """
    if expires_at is None and priority is None:
        return None, None
    if amount <= 0:
        raise error("Only a grant can expire or carry a priority; a deduction draws from grants.")
    when = None
    if expires_at is not None:
        when = check_timestamp(expires_at, "expiry", error=error).astimezone(dt.UTC)
    rank = None
    if priority is not None:
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise error(f"The priority must be a whole number, not {priority!r}.")
        if not 0 <= priority <= MAX_GRANT_PRIORITY:
            raise error(
                f"The priority must be between 0 and {MAX_GRANT_PRIORITY} (lower is drawn "
                f"first; {DEFAULT_GRANT_PRIORITY} by default), not {priority}."
            )
        rank = priority
    return when, rank


_GRANTS = text(
    """
    WITH clock AS (SELECT coalesce(CAST(:at AS timestamptz), now()) AS at)
    SELECT g.id, g.organization_id, g.amount, g.drawn, g.reversed, g.priority,
           g.expires_at, g.source, g.ledger_entry_id, g.created_at,
           g.written_off_at IS NULL AND coalesce(g.expires_at <= clock.at, false) AS due,
           g.remaining, g.expired
    FROM credit_grants g CROSS JOIN clock
    WHERE g.organization_id = :org AND g.amount > 0
    ORDER BY (g.remaining = 0 OR g.written_off_at IS NOT NULL
              OR coalesce(g.expires_at <= clock.at, false)),
             g.priority, g.expires_at NULLS LAST, g.id
    """
)


def credit_grants(
    conn: Connection, *, organization_id: int, at: dt.datetime | None = None
) -> list[CreditGrant]:
    """The organization's grants as they stand at ``at`` (default: the database's now).

    Live grants first, in the order they are drawn (priority, soonest expiry, age),
    then the used, expired and reversed ones. An empty opening grant is left out.
    """
    org = check_id(organization_id)
    when = None if at is None else check_timestamp(at, "time")
    rows = conn.execute(_GRANTS, {"org": org, "at": when}).all()
    grants = []
    for r in rows:
        remaining, expired = int(r.remaining), int(r.expired)
        if r.due:
            remaining, expired = 0, expired + remaining
        if remaining > 0:
            status = "live"
        elif expired > 0 or (r.expires_at is not None and r.due):
            status = "expired"
        elif int(r.reversed) > 0 and int(r.drawn) < int(r.amount):
            status = "reversed"
        else:
            status = "used"
        grants.append(
            CreditGrant(
                id=int(r.id),
                organization_id=int(r.organization_id),
                amount=int(r.amount),
                remaining=remaining,
                drawn=int(r.drawn),
                expired=expired,
                reversed=int(r.reversed),
                priority=int(r.priority),
                expires_at=r.expires_at,
                source=str(r.source),
                ledger_entry_id=None if r.ledger_entry_id is None else int(r.ledger_entry_id),
                created_at=r.created_at,
                status=status,
            )
        )
    return grants


@dataclass(frozen=True, slots=True)
class ExpiringGrant:
    """A live grant that expires within the window asked for."""

    organization_id: int
    slug: str
    name: str
    grant_id: int
    remaining: int
    expires_at: dt.datetime
    source: str


_EXPIRING = text(
    """
    WITH clock AS (SELECT coalesce(CAST(:now AS timestamptz), now()) AS now)
    SELECT g.organization_id, o.slug, o.name, g.id AS grant_id, g.remaining, g.expires_at,
           g.source
    FROM clock
    JOIN credit_grants g
      ON g.expires_at > clock.now AND g.expires_at <= clock.now + CAST(:within AS interval)
    JOIN organizations o ON o.id = g.organization_id
    WHERE g.expires_at IS NOT NULL AND g.written_off_at IS NULL AND g.remaining > 0
      AND (CAST(:org AS bigint) IS NULL OR g.organization_id = CAST(:org AS bigint))
    ORDER BY g.expires_at, g.organization_id, g.id
    LIMIT :limit
    """
)
MAX_EXPIRING_WINDOW = dt.timedelta(days=366)


def expiring_grants(
    conn: Connection,
    *,
    within: dt.timedelta = dt.timedelta(days=30),
    organization_id: int | None = None,
    now: dt.datetime | None = None,
    limit: int = 500,
) -> list[ExpiringGrant]:
    """Live grants that expire in the ``within`` after ``now``, soonest first.

    Across organizations, or one; reads the due-grants index (``ix_credit_grants_due``).
    """
    if not isinstance(within, dt.timedelta) or not (
        dt.timedelta(0) < within <= MAX_EXPIRING_WINDOW
    ):
        raise InvalidInput(f"within must be a period of up to a year, not {within!r}.")
    org = None if organization_id is None else check_id(organization_id)
    when = None if now is None else check_timestamp(now, "now")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
        raise InvalidInput(f"limit must be a whole number from 1 to 10,000, not {limit!r}.")
    rows = conn.execute(
        _EXPIRING, {"within": within, "org": org, "now": when, "limit": limit}
    ).all()
    return [
        ExpiringGrant(
            organization_id=int(r.organization_id),
            slug=str(r.slug),
            name=str(r.name),
            grant_id=int(r.grant_id),
            remaining=int(r.remaining),
            expires_at=r.expires_at,
            source=str(r.source),
        )
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class ExpiryReport:
    """What one ``expire_credits`` run wrote off."""

    organizations: int
    grants: int
    credits: int


_DUE_ORGS = text(
    """
    SELECT DISTINCT g.organization_id FROM credit_grants g
    WHERE g.expires_at IS NOT NULL AND g.written_off_at IS NULL AND g.expires_at <= now()
      AND (CAST(:orgs AS bigint[]) IS NULL OR g.organization_id = ANY(CAST(:orgs AS bigint[])))
    ORDER BY 1
    """
)
_LOCK = text("SELECT lock_organization(:org)")
# What this transaction wrote off: its write-offs carry the transaction's now().
_WRITTEN_OFF = text(
    """
    SELECT count(*) AS grants, coalesce(sum(g.expired), 0) AS credits
    FROM credit_grants g
    WHERE g.organization_id = :org AND g.written_off_at = now()
    """
)


def expire_credits(engine: Engine, *, organization_ids: list[int] | None = None) -> ExpiryReport:
    """Write off every grant that is due by the database's clock; idempotent, for cron.

    Each organization in its own short transaction, under its lock (the write-off every
    write makes first): what remained of each due grant becomes an ``expired`` ledger
    entry that takes effect at the grant's expiry. A second run finds nothing more to do.
    """
    orgs = None if organization_ids is None else [check_id(o) for o in organization_ids]
    with engine.connect() as conn:
        due = [int(o) for o in conn.execute(_DUE_ORGS, {"orgs": orgs}).scalars()]
    grants = credits = touched = 0
    for org in due:

        def body(conn: Connection, org: int = org) -> tuple[int, int]:
            conn.execute(_LOCK, {"org": org})
            row = conn.execute(_WRITTEN_OFF, {"org": org}).one()
            return int(row.grants), int(row.credits)

        n, amount = run_in_transaction(engine, body, idempotent=True)
        grants, credits, touched = grants + n, credits + amount, touched + (n > 0)
    return ExpiryReport(organizations=touched, grants=grants, credits=credits)
