"""Typed SQLAlchemy 2 models: the one description of the schema.

Tenant tables carry ``organization_id NOT NULL`` and every primary key and unique
constraint of a tenant table starts with it, so the schema can be distributed by
``organization_id`` (Citus) without a redesign. The single exception is
``users.email``: a person signs in with one address across the whole product (see
docs/schema.md, "Schema").

The invariant every write keeps, per organization::

    credit_balances.balance = sum(credit_ledger.amount) - sum(generations.credits)

The database keeps it (migration 0013): triggers on inserts into ``credit_ledger`` and
``generations`` move the balance, never below zero, and set each entry's
``balance_after``; the app role cannot update a balance.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Alembic's recommended naming convention: stable names that migrations can drop.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

PLANS = ("free", "starter", "pro", "enterprise")
TypeKey = Text(collation="C")
LEDGER_KINDS = ("grant", "deduct", "refund", "reversal", "expired")
# Where a credit grant came from (``credit_grants.source``, migration 0021): 'opening'
# is the balance an organization had when grants began, one grant that never expires.
GRANT_SOURCES = (
    "opening",
    "manual",
    "bulk",
    "approval",
    "allowance",
    "rollover",
    "refund",
    "restored",
)
# A grant's priority: lower is drawn first; a grant given none has the default.
DEFAULT_GRANT_PRIORITY = 10
MAX_GRANT_PRIORITY = 255
# Idempotency keys in two namespaces (migration 0012): the shapes the system derives
# belong to the rows they derive from, so a key a caller gives can never squat one.
DERIVED_LEDGER_KEYS = (
    "(idempotency_key LIKE 'reversal:%') = (reverses_id IS NOT NULL)"
    " AND (reverses_id IS NULL OR idempotency_key = 'reversal:' || reverses_id)"
    " AND (idempotency_key LIKE 'approval:%') = (approval_request_id IS NOT NULL)"
    " AND (approval_request_id IS NULL OR idempotency_key = 'approval:' || approval_request_id)"
    " AND (idempotency_key NOT LIKE 'bulk:%' OR idempotency_key ~ '^bulk:[0-9a-f]{40}:[1-9][0-9]*$')"
    # Migration 0021: an expiry is keyed by its grant, a plan's allowance and its
    # rollover by the organization's local month.
    " AND (idempotency_key LIKE 'expiry:%') = (kind = 'expired')"
    " AND (kind <> 'expired' OR idempotency_key = 'expiry:' || grant_id)"
    " AND (idempotency_key NOT LIKE 'allowance:%'"
    "      OR idempotency_key ~ '^allowance:[0-9]{4}-(0[1-9]|1[0-2])$')"
    " AND (idempotency_key NOT LIKE 'rollover:%'"
    "      OR idempotency_key ~ '^rollover:[0-9]{4}-(0[1-9]|1[0-2])$')"
)
DERIVED_REQUEST_KEYS = (
    "idempotency_key NOT LIKE 'reversal:%' AND idempotency_key NOT LIKE 'approval:%'"
    " AND (idempotency_key NOT LIKE 'bulk:%' OR idempotency_key ~ '^bulk:[0-9a-f]{40}:[1-9][0-9]*$')"
)
# A new (organization, type) day with no earlier limit starts with the type's default
# limit times this. The rule lives in the database (plan_limit_factor and
# limit_in_force, migration 0010), which every write and read uses; this copy is for
# the demo loader's numpy, and tests/queries/test_limit_in_force.py keeps it equal.
PLAN_LIMIT_FACTOR = {"free": 0.05, "starter": 0.3, "pro": 1.0, "enterprise": 5.0}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _now() -> Mapped[dt.datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class Organization(Base):
    """A tenant: the billable entity whose members share one credit pool."""

    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    slug: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    timezone: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'UTC'"))
    plan: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'free'"))
    created_at: Mapped[dt.datetime] = _now()

    __table_args__ = (
        CheckConstraint("btrim(name) <> ''", name="name_not_blank"),
        CheckConstraint("slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'", name="slug_format"),
        CheckConstraint("plan IN (" + ", ".join(f"'{p}'" for p in PLANS) + ")", name="plan_known"),
        # The organization picker's keyset pages by name, and its substring search
        # (ILIKE '%...%') on trigram indexes (migration 0005).
        Index(None, "name", "id"),
        Index(
            "ix_organizations_name_trgm",
            "name",
            postgresql_using="gin",
            postgresql_ops={"name": "gin_trgm_ops"},
        ),
        Index(
            "ix_organizations_slug_trgm",
            "slug",
            postgresql_using="gin",
            postgresql_ops={"slug": "gin_trgm_ops"},
        ),
    )


class User(Base):
    """A member of exactly one organization."""

    __tablename__ = "users"

    organization_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("organizations.id"), nullable=False
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), nullable=False)
    email: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[dt.datetime] = _now()

    __table_args__ = (
        # (organization_id, id) lets generations reference a user *of the same
        # organization*: tenant integrity enforced by the database itself.
        PrimaryKeyConstraint("organization_id", "id"),
        CheckConstraint("position('@' in email) > 1", name="email_format"),
    )


class CreditBalance(Base):
    """The one shared credit pool of an organization."""

    __tablename__ = "credit_balances"

    organization_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("organizations.id"), primary_key=True
    )
    balance: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    updated_at: Mapped[dt.datetime] = _now()
    # Caches of credit_grants kept by its triggers (migration 0023): the grant first in
    # line when last found (NULL: not known), and the soonest expiry not written off.
    head_grant_id: Mapped[int | None] = mapped_column(BigInteger)
    next_expiry: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (CheckConstraint("balance >= 0", name="balance_not_negative"),)


class CreditLedger(Base):
    """Append-only record of every credit grant, deduction, refund and reversal."""

    __tablename__ = "credit_ledger"

    organization_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("organizations.id"), nullable=False
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), nullable=False)
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # Set by the database (credit_ledger_moves_balance), whatever the inserter gives.
    balance_after: Mapped[int] = mapped_column(BigInteger, nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    note: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(Text, nullable=False)
    idempotency_key: Mapped[str] = mapped_column(Text, nullable=False)
    reverses_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = _now()
    # The approval request this entry applies (its key is "approval:<id>"); only
    # decide_approval_request writes it (migration 0013).
    approval_request_id: Mapped[int | None] = mapped_column(BigInteger)
    # A grant's terms (migration 0021): the credit_grants row the trigger makes from a
    # positive entry expires then (NULL: never) and is drawn in this priority's turn.
    grant_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    grant_priority: Mapped[int | None] = mapped_column(SmallInteger)
    # An 'expired' entry's grant, and the time it takes effect (the grant's expiry; it
    # is recorded later, at created_at). NULL effective_at: effective when recorded.
    grant_id: Mapped[int | None] = mapped_column(BigInteger)
    effective_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        PrimaryKeyConstraint("organization_id", "id"),
        UniqueConstraint("organization_id", "idempotency_key"),
        # An entry can be reversed once: a second reversal collides here.
        UniqueConstraint("organization_id", "reverses_id"),
        # A request is applied once.
        UniqueConstraint("organization_id", "approval_request_id"),
        ForeignKeyConstraint(
            ["organization_id", "reverses_id"],
            ["credit_ledger.organization_id", "credit_ledger.id"],
        ),
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        CheckConstraint("balance_after >= 0", name="balance_after_not_negative"),
        CheckConstraint(
            "kind IN (" + ", ".join(f"'{k}'" for k in LEDGER_KINDS) + ")", name="kind_known"
        ),
        CheckConstraint(
            "(kind IN ('grant', 'refund') AND amount > 0)"
            " OR (kind = 'deduct' AND amount < 0)"
            " OR (kind = 'reversal' AND reverses_id IS NOT NULL)"
            " OR (kind = 'expired' AND amount < 0 AND grant_id IS NOT NULL"
            "     AND effective_at IS NOT NULL)",
            name="kind_sign",
        ),
        CheckConstraint(
            "(grant_expires_at IS NULL AND grant_priority IS NULL) OR amount > 0",
            name="grant_terms_on_grants",
        ),
        CheckConstraint(
            f"grant_priority BETWEEN 0 AND {MAX_GRANT_PRIORITY}", name="grant_priority_range"
        ),
        CheckConstraint("grant_expires_at > created_at", name="grant_expires_after_created"),
        CheckConstraint("btrim(reason) <> ''", name="reason_not_blank"),
        CheckConstraint("btrim(actor) <> ''", name="actor_not_blank"),
        CheckConstraint("btrim(idempotency_key) <> ''", name="idempotency_key_not_blank"),
        # Keys the system derives, which a caller's key can never take (migration 0012).
        CheckConstraint(DERIVED_LEDGER_KEYS, name="derived_keys"),
        Index(None, "organization_id", "created_at"),
        # The audit trail (newest first, ties by organization: a backward scan stops at
        # its LIMIT) and the usage ranking read the ledger by a UTC range.
        Index(None, "created_at", "organization_id"),
    )


class CreditGrant(Base):
    """Credits granted to an organization, drawn down as they are used (migration 0021).

    The database keeps them, as it keeps the balance: a positive ledger entry makes one
    (its terms are the entry's ``grant_expires_at`` and ``grant_priority``); a deduction
    or a generation draws from the live ones in a fixed order, priority, then the
    soonest expiry, then age; an ``expired`` entry writes off what remained at
    ``expires_at``. The balance is the sum of ``remaining``, and each row keeps
    ``remaining = amount - drawn - expired - reversed``. The app reads them only.
    """

    __tablename__ = "credit_grants"

    organization_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("organizations.id"), nullable=False
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), nullable=False)
    # The entry that made it; for the opening grant, the last entry it covers (NULL:
    # none). No foreign key, as approval_requests has none: the reconciliation checks it.
    ledger_entry_id: Mapped[int | None] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(Text, nullable=False)
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    remaining: Mapped[int] = mapped_column(BigInteger, nullable=False)
    drawn: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    expired: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    reversed: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    priority: Mapped[int] = mapped_column(
        SmallInteger, nullable=False, server_default=text(str(DEFAULT_GRANT_PRIORITY))
    )
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = _now()
    # When its expiry was written off (the 'expired' entry, or nothing when nothing
    # remained); NULL while it has not expired or is due but not yet written off.
    written_off_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        PrimaryKeyConstraint("organization_id", "id"),
        UniqueConstraint("organization_id", "ledger_entry_id"),
        CheckConstraint(
            "source IN (" + ", ".join(f"'{s}'" for s in GRANT_SOURCES) + ")",
            name="source_known",
        ),
        CheckConstraint(
            "amount > 0 OR (source = 'opening' AND amount = 0)", name="amount_positive"
        ),
        CheckConstraint(
            "remaining >= 0 AND drawn >= 0 AND expired >= 0 AND reversed >= 0",
            name="parts_not_negative",
        ),
        CheckConstraint(
            "remaining = amount - drawn - expired - reversed", name="remaining_adds_up"
        ),
        CheckConstraint(f"priority BETWEEN 0 AND {MAX_GRANT_PRIORITY}", name="priority_range"),
        CheckConstraint(
            "expired = 0 OR written_off_at IS NOT NULL", name="expired_when_written_off"
        ),
        # Grants due to expire and not yet written off: expire-credits, the write-off
        # every write of the organization makes first, and the reads that count due
        # grants as gone. Not on remaining, so a draw stays a HOT update.
        Index(
            "ix_credit_grants_due",
            "expires_at",
            "organization_id",
            postgresql_where=text("expires_at IS NOT NULL AND written_off_at IS NULL"),
        ),
    )


class PlanAllowance(Base):
    """A plan's monthly allowance of credits and the cap on what of it rolls over
    (migration 0022): global, one row per plan; finance reads it, admins change it
    (each change recorded in ``plan_allowance_changes``)."""

    __tablename__ = "plan_allowances"

    plan: Mapped[str] = mapped_column(Text, primary_key=True)
    monthly_allowance: Mapped[int] = mapped_column(BigInteger, nullable=False)
    rollover_cap: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at: Mapped[dt.datetime] = _now()
    updated_by: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'system'"))

    __table_args__ = (
        CheckConstraint("plan IN (" + ", ".join(f"'{p}'" for p in PLANS) + ")", name="plan_known"),
        CheckConstraint("monthly_allowance >= 0", name="monthly_allowance_not_negative"),
        CheckConstraint("rollover_cap >= 0", name="rollover_cap_not_negative"),
        CheckConstraint("btrim(updated_by) <> ''", name="updated_by_not_blank"),
    )


class PlanAllowanceChange(Base):
    """Append-only history of plan allowance changes: who, why, before and after.

    ``audit_log`` is a tenant's (keyed by organization); a plan is not, so its changes
    are audited here, once per idempotency key."""

    __tablename__ = "plan_allowance_changes"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    plan: Mapped[str] = mapped_column(Text, ForeignKey("plan_allowances.plan"), nullable=False)
    monthly_allowance: Mapped[int] = mapped_column(BigInteger, nullable=False)
    rollover_cap: Mapped[int] = mapped_column(BigInteger, nullable=False)
    old_monthly_allowance: Mapped[int] = mapped_column(BigInteger, nullable=False)
    old_rollover_cap: Mapped[int] = mapped_column(BigInteger, nullable=False)
    actor: Mapped[str] = mapped_column(Text, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    idempotency_key: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    created_at: Mapped[dt.datetime] = _now()

    __table_args__ = (
        CheckConstraint("btrim(actor) <> ''", name="actor_not_blank"),
        CheckConstraint("btrim(reason) <> ''", name="reason_not_blank"),
        # A plan's changes, newest first (the Credits page's history).
        Index(None, "plan", "created_at"),
    )


class GenerationType(Base):
    """Global lookup of generation types (no organization): cost and default quota."""

    __tablename__ = "generation_types"

    # "C" collation: type keys are ASCII identifiers (see the check below), so byte
    # order is their order, and sorts and index builds skip locale-aware comparison.
    type: Mapped[str] = mapped_column(TypeKey, primary_key=True)
    label: Mapped[str] = mapped_column(Text, nullable=False)
    default_credits: Mapped[int] = mapped_column(Integer, nullable=False)
    default_daily_limit: Mapped[int] = mapped_column(Integer, nullable=False)

    __table_args__ = (
        CheckConstraint("type ~ '^[a-z][a-z0-9_]*$'", name="type_format"),
        CheckConstraint("default_credits >= 0", name="default_credits_not_negative"),
        CheckConstraint("default_daily_limit >= 0", name="default_daily_limit_not_negative"),
    )


class UsageLimit(Base):
    """Daily quota and exact usage rollup per (organization, type, local date).

    ``date`` is the organization's local date. The row is upserted in the same
    transaction as each generation, so ``used``/``credits_used`` are exact.
    """

    __tablename__ = "usage_limits"

    organization_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("organizations.id"), nullable=False
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), nullable=False)
    type: Mapped[str] = mapped_column(
        TypeKey, ForeignKey("generation_types.type"), nullable=False, index=True
    )
    date: Mapped[dt.date] = mapped_column(Date, nullable=False)
    used: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    credits_used: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    daily_limit: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_at: Mapped[dt.datetime] = _now()

    __table_args__ = (
        PrimaryKeyConstraint("organization_id", "id"),
        UniqueConstraint("organization_id", "type", "date"),
        CheckConstraint("used >= 0", name="used_not_negative"),
        CheckConstraint("credits_used >= 0", name="credits_used_not_negative"),
        CheckConstraint("daily_limit >= 0", name="daily_limit_not_negative"),
        Index(None, "organization_id", "date"),
        # Today's quotas across organizations: the dates that are "today" somewhere.
        Index(None, "date"),
    )


class Generation(Base):
    """One AI generation: who made it, which organization pays, what it cost."""

    __tablename__ = "generations"

    organization_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("organizations.id"), nullable=False
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), nullable=False)
    user_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    type: Mapped[str] = mapped_column(
        TypeKey, ForeignKey("generation_types.type"), nullable=False, index=True
    )
    credits: Mapped[int] = mapped_column(Integer, nullable=False)
    idempotency_key: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = _now()

    __table_args__ = (
        PrimaryKeyConstraint("organization_id", "id"),
        # The user must belong to the organization that pays.
        ForeignKeyConstraint(["organization_id", "user_id"], ["users.organization_id", "users.id"]),
        # Partial: most generations come without a key, and they cost no index entry.
        Index(
            None,
            "organization_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        CheckConstraint("credits >= 0", name="credits_not_negative"),
        # Dashboard timelines and keyset drill-down: WHERE organization_id = ? AND
        # created_at in range ORDER BY created_at.
        Index(None, "organization_id", "created_at"),
        # Serves the (organization_id, user_id) foreign key and per-user timelines.
        Index(None, "organization_id", "user_id", "created_at"),
    )


class LimitChange(Base):
    """A daily-limit change as made: its limit from ``effective`` through ``until``
    (local dates; open-ended when ``until`` is NULL). The latest change covering a day
    is the limit in force that day (``limit_in_force``, migration 0018)."""

    __tablename__ = "limit_changes"

    organization_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("organizations.id"), nullable=False
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), nullable=False)
    type: Mapped[str] = mapped_column(
        TypeKey, ForeignKey("generation_types.type"), nullable=False, index=True
    )
    effective: Mapped[dt.date] = mapped_column(Date, nullable=False)
    until: Mapped[dt.date | None] = mapped_column(Date)
    daily_limit: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[dt.datetime] = _now()

    __table_args__ = (
        PrimaryKeyConstraint("organization_id", "id"),
        CheckConstraint("until >= effective", name="until_not_before_effective"),
        CheckConstraint("daily_limit >= 0", name="daily_limit_not_negative"),
        # limit_in_force's probe: an organization's changes of a type by day.
        Index(None, "organization_id", "type", "effective"),
    )


class LimitEnforcement(Base):
    """How a type's daily limit is enforced for an organization: ``soft`` lets
    generations beyond it through (the overage, ``used - daily_limit``, is derived, not
    stored); no row means hard, refused beyond it (migration 0020)."""

    __tablename__ = "limit_enforcement"

    organization_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("organizations.id"), nullable=False
    )
    type: Mapped[str] = mapped_column(
        TypeKey, ForeignKey("generation_types.type"), nullable=False, index=True
    )
    soft: Mapped[bool] = mapped_column(Boolean, nullable=False)
    updated_at: Mapped[dt.datetime] = _now()

    __table_args__ = (PrimaryKeyConstraint("organization_id", "type"),)


class LimitRequest(Base):
    """A daily-limit change above ``LIMIT_APPROVAL_FACTOR`` times the plan's limit,
    waiting for a second person: approved (made once, its audit row naming both) or
    rejected by someone other than its requester (migration 0019)."""

    __tablename__ = "limit_requests"

    organization_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("organizations.id"), nullable=False
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), nullable=False)
    type: Mapped[str] = mapped_column(
        TypeKey, ForeignKey("generation_types.type"), nullable=False, index=True
    )
    daily_limit: Mapped[int] = mapped_column(Integer, nullable=False)
    effective: Mapped[dt.date] = mapped_column(Date, nullable=False)
    until: Mapped[dt.date | None] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    requested_by: Mapped[str] = mapped_column(Text, nullable=False)
    idempotency_key: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'pending'"))
    created_at: Mapped[dt.datetime] = _now()
    decided_by: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    audit_id: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        PrimaryKeyConstraint("organization_id", "id"),
        UniqueConstraint("organization_id", "idempotency_key"),
        CheckConstraint("daily_limit >= 0", name="daily_limit_not_negative"),
        CheckConstraint("until >= effective", name="until_not_before_effective"),
        CheckConstraint(
            "status IN ('pending', 'approved', 'rejected')",
            name="status_known",
        ),
        CheckConstraint(
            "(status = 'pending' AND decided_by IS NULL AND audit_id IS NULL)"
            " OR (status = 'approved' AND decided_by IS NOT NULL AND audit_id IS NOT NULL)"
            " OR (status = 'rejected' AND decided_by IS NOT NULL AND audit_id IS NULL"
            "     AND btrim(decision_reason) <> '')",
            name="decision_complete",
        ),
        # The database keeps the two-person rule too, whatever the caller.
        CheckConstraint(
            "stored_identity(decided_by) <> stored_identity(requested_by)",
            name="two_people",
        ),
        # approve_limit_request(request_id=...) finds a request by its id alone.
        Index(None, "id"),
        # The queue: pending requests, oldest first.
        Index(
            "ix_limit_requests_pending_created_at_id",
            "created_at",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
    )


class AuditLog(Base):
    """Who changed what and why, for changes that are not credit movements."""

    __tablename__ = "audit_log"

    organization_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("organizations.id"), nullable=False
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), nullable=False)
    action: Mapped[str] = mapped_column(Text, nullable=False)
    actor: Mapped[str] = mapped_column(Text, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    details: Mapped[dict[str, object]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    # A change retried after a lost answer (same key) is recorded once.
    idempotency_key: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = _now()

    __table_args__ = (
        PrimaryKeyConstraint("organization_id", "id"),
        CheckConstraint("btrim(actor) <> ''", name="actor_not_blank"),
        CheckConstraint("btrim(reason) <> ''", name="reason_not_blank"),
        Index(None, "organization_id", "created_at"),
        Index(
            None,
            "organization_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        # The audit trail across organizations, newest first in a UTC range.
        Index(None, "created_at", "organization_id"),
    )


class UserDailyUsage(Base):
    """Exact per-user rollup of generations per (organization, user, local date, type).

    ``date`` is the organization's local date, as in ``usage_limits``. Upserted in the
    transaction of each generation; serves top users, user timelines and active users.
    """

    __tablename__ = "user_daily_usage"

    organization_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("organizations.id"), nullable=False
    )
    user_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    date: Mapped[dt.date] = mapped_column(Date, nullable=False)
    # No foreign key to generation_types: every row comes from a generation, whose type
    # is checked, and a key here would need one more index to maintain on each write.
    type: Mapped[str] = mapped_column(TypeKey, nullable=False)
    generations: Mapped[int] = mapped_column(Integer, nullable=False)
    credits: Mapped[int] = mapped_column(BigInteger, nullable=False)

    __table_args__ = (
        # Leads with the user: one user's timeline is one index range.
        PrimaryKeyConstraint("organization_id", "user_id", "date", "type"),
        ForeignKeyConstraint(["organization_id", "user_id"], ["users.organization_id", "users.id"]),
        CheckConstraint("generations > 0", name="generations_positive"),
        CheckConstraint("credits >= 0", name="credits_not_negative"),
        # Top users and active users of a date range: every user of those days.
        Index(None, "organization_id", "date"),
    )


class QuarterHourUsage(Base):
    """Exact rollup of generations per (organization, UTC quarter-hour, type).

    Every UTC offset in tzdata from 2000 on (tests/queries/test_rollups.py checks every
    zone through 2040) is a whole number of quarter-hours, so any zone's local midnight
    is a bucket boundary: summing buckets gives exact UTC days, exact local days for
    UTC+5:30, UTC+5:45 and DST days, and the intraday pace.
    """

    __tablename__ = "quarter_hour_usage"

    organization_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("organizations.id"), nullable=False
    )
    bucket: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # No foreign key to generation_types: every row comes from a generation, whose type
    # is checked, and a key here would need one more index to maintain on each write.
    type: Mapped[str] = mapped_column(TypeKey, nullable=False)
    generations: Mapped[int] = mapped_column(Integer, nullable=False)
    credits: Mapped[int] = mapped_column(BigInteger, nullable=False)

    __table_args__ = (
        PrimaryKeyConstraint("organization_id", "bucket", "type"),
        CheckConstraint(
            "bucket = date_bin('15 minutes', bucket, TIMESTAMPTZ '2000-01-01 00:00:00+00')",
            name="bucket_quarter_hour",
        ),
        CheckConstraint("generations > 0", name="generations_positive"),
        CheckConstraint("credits >= 0", name="credits_not_negative"),
    )


class OrganizationDailyUsage(Base):
    """Exact prefix sums of generations per (organization, local date).

    ``generations``/``credits`` are the day's; ``generations_through``/``credits_through``
    the organization's totals up to and including the day, so a range is two index-only
    probes per organization (cum(<= end) - cum(< start)) however long the history.
    Upserted in each generation's transaction (a back-dated one also adds to the later
    days); rebuilt by ``set_timezone``. Serves the cross-organization usage ranking.
    """

    __tablename__ = "organization_daily_usage"

    organization_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("organizations.id"), nullable=False
    )
    date: Mapped[dt.date] = mapped_column(Date, nullable=False)
    generations: Mapped[int] = mapped_column(BigInteger, nullable=False)
    credits: Mapped[int] = mapped_column(BigInteger, nullable=False)
    generations_through: Mapped[int] = mapped_column(BigInteger, nullable=False)
    credits_through: Mapped[int] = mapped_column(BigInteger, nullable=False)

    __table_args__ = (
        # INCLUDE: a probe "latest day <= X" reads the sums from the index alone.
        PrimaryKeyConstraint(
            "organization_id",
            "date",
            postgresql_include=["generations_through", "credits_through"],
        ),
        CheckConstraint("generations > 0", name="generations_positive"),
        CheckConstraint("credits >= 0", name="credits_not_negative"),
        CheckConstraint(
            "generations_through >= generations AND credits_through >= credits",
            name="through_covers_the_day",
        ),
        # Every organization's totals on one local date, as a range (low runway: the
        # day before each one's today, not a probe per organization). Migration 0026.
        Index(
            None,
            "date",
            "organization_id",
            postgresql_include=["generations_through", "credits_through"],
        ),
    )


class OrganizationMonthlyUsage(Base):
    """Exact generations and credits per (organization's local month, organization).

    ``month`` is the first day of the local month; the monthly trend reads whole months
    across all organizations on the month index. Upserted in each generation's
    transaction; rebuilt by ``set_timezone``.
    """

    __tablename__ = "organization_monthly_usage"

    month: Mapped[dt.date] = mapped_column(Date, nullable=False)
    organization_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("organizations.id"), nullable=False
    )
    generations: Mapped[int] = mapped_column(BigInteger, nullable=False)
    credits: Mapped[int] = mapped_column(BigInteger, nullable=False)

    __table_args__ = (
        PrimaryKeyConstraint("organization_id", "month"),
        # The monthly trend: every organization's row of the range's whole months.
        Index(None, "month"),
        CheckConstraint("month = date_trunc('month', month)", name="first_of_month"),
        CheckConstraint("generations > 0", name="generations_positive"),
        CheckConstraint("credits >= 0", name="credits_not_negative"),
    )


class UsualDay(Base):
    """The usual day of an (organization, local date), kept for the forecast.

    The organization's generations (all types) per local clock hour on the same local
    weekday of the 4 weeks before, over the day's real hours (23, 24 or 25) as prefix
    sums: ``usual_before[i + 1]`` (1-based) is the usual generations of the hours before
    hour ``i``, the last element the whole usual day. Computed by ``usual_day()``
    (migration 0017) at the first generation of each (organization, type, day); exact
    while ``timezone`` and ``generations_before`` (the organization's generations before
    the day) are the organization's current ones, which the forecast checks: a late
    write to an earlier day or a zone change makes a row stale, never wrong.
    """

    __tablename__ = "usual_days"

    organization_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("organizations.id"), nullable=False
    )
    date: Mapped[dt.date] = mapped_column(Date, nullable=False)
    timezone: Mapped[str] = mapped_column(Text, nullable=False)
    generations_before: Mapped[int] = mapped_column(BigInteger, nullable=False)
    usual_before: Mapped[list[int]] = mapped_column(ARRAY(BigInteger), nullable=False)

    __table_args__ = (PrimaryKeyConstraint("organization_id", "date"),)


class UsageEdge(Base):
    """An organization's generations and credits before an instant: ``usage_before()``
    (migration 0015) kept for the instants the cross-organization reads cut their
    ranges at (the company zone's midnights).

    Kept only for the instants in ``kept_usage_edges``; a kept instant without a row
    for an organization means it had no generation before it. Each generation adds
    itself to the kept instants after it, in its own transaction (migration 0025), so
    a row is exact at COMMIT; ``usage.keep_usage_edges`` adds an instant as the day
    turns. Zone-independent (an instant, not a local day): ``set_timezone`` leaves it.
    """

    __tablename__ = "usage_edges"

    edge: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    organization_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("organizations.id"), nullable=False, index=True
    )
    generations: Mapped[int] = mapped_column(BigInteger, nullable=False)
    credits: Mapped[int] = mapped_column(BigInteger, nullable=False)

    # Edge first: a read takes every organization's row of one instant as one range.
    __table_args__ = (PrimaryKeyConstraint("edge", "organization_id"),)


class KeptUsageEdge(Base):
    """An instant whose ``usage_edges`` rows are kept for every organization (global)."""

    __tablename__ = "kept_usage_edges"

    edge: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    kept_at: Mapped[dt.datetime] = _now()


APPROVAL_STATUSES = ("pending", "approved", "rejected")


class ApprovalRequest(Base):
    """A credit adjustment above the approval threshold, waiting for a second person.

    Made pending by its requester; approved (applied once, naming its ledger entry) or
    rejected by someone else. A pending request past ``expires_at`` is expired: it stays
    pending in the table, but can no longer be approved (the queue leaves it out).
    """

    __tablename__ = "approval_requests"

    organization_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("organizations.id"), nullable=False
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), nullable=False)
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    note: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(Text, nullable=False)
    idempotency_key: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'pending'"))
    created_at: Mapped[dt.datetime] = _now()
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    decided_by: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    ledger_entry_id: Mapped[int | None] = mapped_column(BigInteger)
    # The grant's terms, which the approved entry keeps (migration 0021).
    grant_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    grant_priority: Mapped[int | None] = mapped_column(SmallInteger)

    __table_args__ = (
        PrimaryKeyConstraint("organization_id", "id"),
        UniqueConstraint("organization_id", "idempotency_key"),
        CheckConstraint(
            "(grant_expires_at IS NULL AND grant_priority IS NULL) OR amount > 0",
            name="grant_terms_on_grants",
        ),
        CheckConstraint(
            f"grant_priority BETWEEN 0 AND {MAX_GRANT_PRIORITY}", name="grant_priority_range"
        ),
        # No foreign key to the ledger entry: one would make the append-only ledger's
        # TRUNCATE fail on the key before its guard could refuse it. The entry's own
        # idempotency key, "approval:<request id>", links it back.
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        CheckConstraint("btrim(reason) <> ''", name="reason_not_blank"),
        CheckConstraint("btrim(requested_by) <> ''", name="requested_by_not_blank"),
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in APPROVAL_STATUSES) + ")",
            name="status_known",
        ),
        # The database keeps the two-person rule too, whatever the caller.
        CheckConstraint(
            "(status = 'pending' AND decided_by IS NULL AND ledger_entry_id IS NULL)"
            " OR (status = 'approved' AND decided_by IS NOT NULL AND ledger_entry_id IS NOT NULL)"
            " OR (status = 'rejected' AND decided_by IS NOT NULL AND ledger_entry_id IS NULL"
            "     AND btrim(decision_reason) <> '')",
            name="decision_complete",
        ),
        CheckConstraint(
            "stored_identity(decided_by) <> stored_identity(requested_by)",
            name="two_people",
        ),
        CheckConstraint(DERIVED_REQUEST_KEYS, name="derived_keys"),
        # approve(request_id=...) and reject find a request by its id alone.
        Index(None, "id"),
        # The queue: pending requests across organizations, oldest first (keyset).
        Index(
            "ix_approval_requests_pending_created_at_id",
            "created_at",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
    )


class ReconciliationCheckpoint(Base):
    """A verified (organization, local date): every check of ``queries.reconciliation``
    held for the organization when its generations up to ``generation_id`` and its
    ledger up to ``ledger_id`` were counted, in its zone ``timezone``. An incremental
    run rechecks only what came after the organization's greatest ids; a run that finds
    drift in an organization deletes its checkpoints, so a checkpoint never hides a drift.
    """

    __tablename__ = "reconciliation_checkpoints"

    organization_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("organizations.id"), nullable=False
    )
    date: Mapped[dt.date] = mapped_column(Date, nullable=False)
    generation_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    ledger_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # The zone the local date is in: after set_timezone the organization is unverified.
    timezone: Mapped[str] = mapped_column(Text, nullable=False)
    verified_at: Mapped[dt.datetime] = _now()

    __table_args__ = (PrimaryKeyConstraint("organization_id", "date"),)


class ReconciliationRun(Base):
    """What one ``dashboard reconcile`` found (migration 0024), recorded with the
    checkpoints it wrote: the instant it checked as of, its scope, every drift (the
    report's rows, as JSON; an empty array when the books closed) and the database login
    that ran it (set by the database). Only the reconciler inserts one, and no group role
    may change or delete one. The Reconciliation page shows the latest on a session's
    first visit."""

    __tablename__ = "reconciliation_runs"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    checked_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    full_check: Mapped[bool] = mapped_column(Boolean, nullable=False)
    organizations_checked: Mapped[int] = mapped_column(Integer, nullable=False)
    # The changed (organization, day) pairs checked; NULL for a full check (every day).
    days_checked: Mapped[int | None] = mapped_column(Integer)
    drifts: Mapped[list[dict[str, object]]] = mapped_column(
        JSONB, nullable=False, server_default=text("'[]'::jsonb")
    )
    ran_by: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("session_user"))

    __table_args__ = (
        CheckConstraint("organizations_checked >= 0", name="organizations_checked_not_negative"),
        CheckConstraint(
            "(days_checked IS NULL) = full_check AND (days_checked IS NULL OR days_checked >= 0)",
            name="days_checked_unless_full",
        ),
        CheckConstraint("jsonb_typeof(drifts) = 'array'", name="drifts_array"),
        # The last run: one probe, newest first.
        Index(None, "checked_at", "id"),
    )


ALERT_KINDS = ("will_hit_limit", "over_limit", "spike", "low_runway")
# Kinds about one generation type; the others are about the whole organization.
TYPED_ALERT_KINDS = ("will_hit_limit", "over_limit")


class AlertDelivery(Base):
    """An alert sent to a webhook: at most one per (organization, kind, type, local day).

    ``queries.alerts.deliver`` claims a row before it posts and commits it only when the
    post succeeded, so the unique key is what makes an alert go out once a day.
    ``destination`` is the webhook's host, never its URL (a webhook URL often holds a
    token). ``type`` is '' for the kinds about the whole organization.
    """

    __tablename__ = "alert_deliveries"

    organization_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("organizations.id"), nullable=False
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), nullable=False)
    kind: Mapped[str] = mapped_column(TypeKey, nullable=False)
    type: Mapped[str] = mapped_column(TypeKey, nullable=False, server_default=text("''"))
    local_day: Mapped[dt.date] = mapped_column(Date, nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    details: Mapped[dict[str, object]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    destination: Mapped[str] = mapped_column(Text, nullable=False)
    sent_at: Mapped[dt.datetime] = _now()

    __table_args__ = (
        PrimaryKeyConstraint("organization_id", "id"),
        # The once-a-day key; organization_id leads, so it also serves the foreign key.
        UniqueConstraint("organization_id", "kind", "type", "local_day"),
        CheckConstraint(
            "kind IN (" + ", ".join(f"'{k}'" for k in ALERT_KINDS) + ")", name="kind_known"
        ),
        CheckConstraint(
            "(kind IN (" + ", ".join(f"'{k}'" for k in TYPED_ALERT_KINDS) + ")) = (type <> '')",
            name="type_matches_kind",
        ),
        CheckConstraint("btrim(destination) <> ''", name="destination_not_blank"),
    )
