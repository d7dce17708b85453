"""Typed errors a page can show as a sentence: ``str(error)`` is that sentence.

:func:`from_driver` is the one reading of what a database driver's exception means
(psycopg's, SQLAlchemy's around it, the pool's): the write path retries and words its
outcome from it (``queries.transactions``), the dashboard's cached reads raise it
(``dashboard.data``), and pages only turn these types into sentences.
"""

from __future__ import annotations

import psycopg
import psycopg.errors
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from queries.words import counted


class DashboardError(Exception):
    """Base of every error the data layer raises on purpose."""


class InvalidInput(DashboardError, ValueError):
    """An argument a caller or a form got wrong; nothing was read or written."""


class InvalidAdjustment(InvalidInput):
    """A credit adjustment or reversal that cannot be made as asked."""


class AlreadyReversed(InvalidAdjustment):
    """The ledger entry has been reversed before; an entry is reversed once."""


class NothingToReverse(InvalidAdjustment):
    """Nothing remains of the grant an entry made (all used or expired): no reversal."""


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


class DatabaseUnavailable(DashboardError):
    """The database could not be reached, before anything was sent that could change
    data: nothing was changed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "The database cannot be reached right now. Nothing was changed; try again in "
            "a moment."
        )


class ConnectionLost(DatabaseUnavailable):
    """No connection could be had, or it failed while in use (the socket, the server
    ending the session, no connection free in the pool in time). Unlike the rest of
    :class:`DatabaseUnavailable`, no answer came: a COMMIT in flight may have applied."""


class Busy(DashboardError):
    """The change waited too long for a lock (another change to the same organization,
    or a long-running one) and was given up: nothing was changed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "The database is busy with another change to this organization. Nothing was "
            "changed; try again in a moment."
        )


class TimedOut(Busy):
    """The server gave the statement up at its time limit: ``lock_timeout`` (behind
    another transaction's lock) or ``statement_timeout``. Nothing was changed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "The database gave up waiting (another change held a lock, or the statement "
            "took longer than its time limit). Nothing was changed; try again in a moment."
        )


class Cancelled(DashboardError):
    """The server cancelled the statement for a reason of its own (an administrator's
    ``pg_cancel_backend``): nothing was changed, and running it again may work."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "The database cancelled the statement (an administrator stopped it). "
            "Nothing was changed; try again in a moment."
        )


class OutcomeUnknown(DashboardError):
    """The connection was lost after the commit was sent, and the answer could not be
    learned by retrying: the change may or may not have been applied."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "The connection to the database was lost while this change was being saved, "
            "and it could not be checked whether it was applied. Confirming again is safe: "
            "the same request applies at most once."
        )


class DatabaseRefused(DashboardError):
    """The database refused the statement for a reason no retry fixes (a bug, or data
    outside what the schema allows): nothing was changed. ``kind`` names the driver's
    error (``NumericValueOutOfRange``, ``InsufficientPrivilege``, ...)."""

    def __init__(self, message: str | None = None, *, kind: str = "error") -> None:
        self.kind = kind
        super().__init__(
            message
            or f"The database refused the statement ({kind}). Nothing was changed; trying "
            "again will not help, so please report it."
        )


class PermissionDenied(DatabaseRefused):
    """The login may not do this (PostgreSQL's "permission denied", SQLSTATE 42501)."""


# Conflicts with other transactions: the same transaction run again can succeed.
_CONFLICTS = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)


def from_driver(exc: BaseException) -> DashboardError | None:
    """The typed error that a database driver's exception ``exc`` means, or None when
    ``exc`` is none (a SQLAlchemy misuse, anything else):

    - :class:`TimedOut`: a lock wait or the statement ran past its time limit;
    - :class:`Cancelled`: the statement was cancelled otherwise (``pg_cancel_backend``);
    - :class:`Busy`: a serialization failure or a deadlock;
    - :class:`ConnectionLost`: no connection, or it failed in use (no SQLSTATE: the
      socket; class 08; 57P: the server ended the session; no connection free in the
      pool in time);
    - :class:`DatabaseUnavailable`: the server answered that it is out of connections,
      memory or disk (class 53);
    - :class:`PermissionDenied`, or else :class:`DatabaseRefused`: a refusal no retry fixes.
    """
    if isinstance(exc, PoolTimeout):
        return ConnectionLost()
    if isinstance(exc, DBAPIError):
        orig: BaseException | None = exc.orig
    elif isinstance(exc, psycopg.Error):
        orig = exc
    else:
        return None
    if isinstance(orig, psycopg.errors.LockNotAvailable):
        return TimedOut()
    if isinstance(orig, psycopg.errors.QueryCanceled):
        said = (orig.diag.message_primary or "").lower()
        return TimedOut() if "timeout" in said else Cancelled()
    if isinstance(orig, _CONFLICTS):
        return Busy()
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return ConnectionLost()
    if isinstance(orig, psycopg.InterfaceError):  # the connection is already closed
        return ConnectionLost()
    if isinstance(orig, psycopg.OperationalError):
        state = orig.sqlstate or ""
        if not state or state.startswith(("08", "57P")):
            return ConnectionLost()
        if state.startswith("53"):  # a reply came: the server is short of resources
            return DatabaseUnavailable()
    kind = type(orig if orig is not None else exc).__name__
    if isinstance(orig, psycopg.errors.InsufficientPrivilege):
        return PermissionDenied(kind=kind)
    return DatabaseRefused(kind=kind)


class ApprovalRequired(InvalidAdjustment):
    """The adjustment moves more than ``CREDITS_APPROVAL_THRESHOLD`` credits, alone or with
    what the same person moved for the same organization in the last 24 hours: one
    person may not apply it; it must be requested and approved by a second person."""

    def __init__(
        self, *, amount: int, threshold: int, moved: int = 0, organization: str | None = None
    ) -> None:
        self.amount = amount
        self.threshold = threshold
        # What this person moved for this organization in the last 24 hours, alone.
        self.moved = moved
        if moved or abs(amount) <= threshold:
            where = f" for {organization}" if organization else ""
            sentence = (
                f"You moved {moved:,} credits{where} in the last 24 hours; with this "
                f"{abs(amount):,} it passes {threshold:,}: a second person must approve it. "
                "Request it instead. Nothing was changed."
            )
        else:
            sentence = (
                f"An adjustment of {abs(amount):,} credits is above the approval threshold "
                f"of {threshold:,}: request it, and a second person approves it. "
                "Nothing was changed."
            )
        super().__init__(sentence)


class ReversalApprovalRequired(ApprovalRequired):
    """Reversing the entry moves more than ``CREDITS_APPROVAL_THRESHOLD`` credits, alone
    or with what the same person moved for the same organization in the last 24 hours:
    one person may not apply it. Unlike an adjustment it cannot be requested for
    approval (a request's approval books a grant or a deduction, never a reversal), so
    the sentence names the ways that remain."""

    def __init__(
        self,
        *,
        entry_id: int,
        amount: int,
        threshold: int,
        moved: int = 0,
        organization: str | None = None,
    ) -> None:
        self.amount = amount
        self.threshold = threshold
        self.moved = moved
        self.entry_id = entry_id
        if moved or abs(amount) <= threshold:
            where = f" for {organization}" if organization else ""
            sentence = (
                f"You moved {moved:,} credits{where} in the last 24 hours; with this reversal "
                f"of {abs(amount):,} (entry {entry_id}) it passes the approval threshold of "
                f"{threshold:,}, so you cannot apply it alone: a second person with approval "
                "rights must reverse it. Nothing was changed."
            )
        else:
            sentence = (
                f"Reversing entry {entry_id} moves {abs(amount):,} credits, more than the "
                f"approval threshold of {threshold:,}, so one person cannot apply it, and a "
                f"reversal cannot be requested for approval. Request an adjustment of "
                f"{amount:+,} credits instead, naming entry {entry_id} in its note: a "
                "second person approves it. Nothing was changed."
            )
        InvalidAdjustment.__init__(self, sentence)


class LimitApprovalRequired(InvalidLimitChange):
    """The new daily limit is above ``LIMIT_APPROVAL_FACTOR`` times the plan's limit for
    the type: one person may not set it; it must be requested and approved by a second
    person (``queries.limit_approvals``)."""

    def __init__(self, *, type: str, daily_limit: int, most: int, plan_limit: int) -> None:
        self.daily_limit = daily_limit
        self.most = most
        super().__init__(
            f"A daily {type} limit of {daily_limit:,} is above {most:,}, the most one person "
            f"may set alone (the plan's {plan_limit:,} times LIMIT_APPROVAL_FACTOR): request "
            "it, and a second person approves it. Nothing was changed."
        )


class ApprovalRefused(InvalidAdjustment):
    """An approval or rejection that cannot be made: the request was decided already,
    has expired, does not exist, or the approver is its requester."""


class SelfApproval(ApprovalRefused):
    """The approver is the person who requested the adjustment."""


class RequestClosed(ApprovalRefused):
    """The request is no longer pending: approved, rejected or expired."""


class InvalidStatement(InvalidInput):
    """A monthly statement that cannot be made as asked (unknown organization, a month
    that is not a date or is out of range)."""


class BulkRejected(InvalidAdjustment):
    """A bulk adjustment file with at least one bad row: nothing of it was applied.
    ``errors`` holds (line, sentence) for each problem, in file order."""

    def __init__(self, errors: tuple[tuple[int, str], ...]) -> None:
        self.errors = errors
        first = f" (line {errors[0][0]}: {errors[0][1]})" if errors else ""
        super().__init__(
            f"{counted(len(errors), 'problem')} in the file{first}; nothing was applied. "
            "Fix the file and upload it again."
        )


class InvalidAllowance(InvalidInput):
    """A plan allowance change, or a run of grant-allowances, that cannot be made as asked."""
