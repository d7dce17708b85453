"""Typed errors a page can show as a sentence: ``str(error)`` is that sentence."""

from __future__ import annotations


class DashboardError(Exception):
    """Base of every error the data layer raises on purpose."""


class InvalidInput(DashboardError, ValueError):
    """An argument a caller or a form got wrong; nothing was read or written."""


class InvalidAdjustment(InvalidInput):
    """A credit adjustment or reversal that cannot be made as asked."""


class AlreadyReversed(InvalidAdjustment):
    """The ledger entry has been reversed before; an entry is reversed once."""


class InvalidGeneration(InvalidInput):
    """A generation that cannot be recorded as asked (unknown type, foreign user, ...)."""


class InvalidLimitChange(InvalidInput):
    """A daily-limit change that cannot be made as asked."""


class InsufficientCredits(DashboardError):
    """The organization's balance does not cover the debit."""

    def __init__(self, *, organization_id: int, balance: int, requested: int) -> None:
        self.organization_id = organization_id
        self.balance = balance
        self.requested = requested
        super().__init__(
            f"Insufficient credits: the balance is {balance:,} credits and this needs "
            f"{requested:,}. Nothing was changed."
        )


class QuotaExceeded(DashboardError):
    """The organization has used its daily limit for this type."""

    def __init__(
        self, *, organization_id: int, type: str, day: object, used: int, limit: int
    ) -> None:
        self.organization_id = organization_id
        self.type = type
        self.day = day
        self.used = used
        self.limit = limit
        super().__init__(
            f"Daily limit reached: {used:,} of {limit:,} {type} generations used on {day}. "
            "Nothing was recorded."
        )


class IdempotencyConflict(DashboardError):
    """The idempotency key was used before for a different request."""
