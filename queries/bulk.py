"""Bulk credit adjustments from a CSV file: check every row, show the result, apply all.

The file (UTF-8, a header row) has the columns ``organization`` (the slug), ``amount``
(a whole number, ``-`` for a deduction, "1,500" accepted), ``reason``, and optionally
``note``, ``key`` and, for a grant (a positive amount), its terms: ``expires_at``
(``parse_expiry``: ISO 8601 with ``Z`` or an offset, or a date meaning 00:00 UTC that
day; a time without an offset is refused, since its day would be a guess) and
``priority`` (``parse_priority``: 0-255, lower drawn first; empty: 10). ``parse_file`` reads it without a database and never raises: every
problem is a sentence with its line number. ``plan_bulk`` is the dry run (reads only):
every row with its organization's balance before and after it, counting the earlier
rows of the same file. ``apply_bulk`` applies the whole file in one transaction or
nothing of it (``BulkRejected``).

Each row's idempotency key is the file's ``key`` column, else ``bulk:<sha256 of the
file>:<line>``: applying the same file again finds every row's entry (or request) and
changes nothing. A row above ``CREDITS_APPROVAL_THRESHOLD`` becomes an approval request
(``queries.approvals``) instead of moving credits, in the same transaction.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from sqlalchemy import Connection, Engine, text

# A bulk row moves the balance, books its entry and records a request exactly as a
# single adjustment or request does.
from queries.approvals import expiry_days, record_request
from queries.checks import (
    MAX_NOTE,
    MAX_REASON,
    check_key,
    check_text,
    check_timestamp,
    parse_whole,
    required_text,
)
from queries.credits import check_adjustment_amount
from queries.errors import BulkRejected, IdempotencyConflict, InvalidAdjustment, InvalidInput
from queries.grants import MAX_GRANT_PRIORITY
from queries.identity import canonical_identity
from queries.ledger import (
    approval_threshold,
    insert_movement,
    lock_organizations,
    moved_alone,
    needs_approval,
    replay,
)
from queries.transactions import run_in_transaction

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_ROWS",
    "BulkPlan",
    "BulkRow",
    "ParsedFile",
    "ParsedRow",
    "apply_bulk",
    "parse_expiry",
    "parse_file",
    "parse_priority",
    "plan_bulk",
]

# One file is one transaction under every named organization's lock, within the 10 s
# budget of queries.transactions: a few thousand rows, not a data load.
MAX_FILE_BYTES: Final = 1_000_000
MAX_ROWS: Final = 2_000
_MAX_SLUG: Final = 200

_COLUMNS: Final = {
    "organization": "organization",
    "organization_slug": "organization",
    "slug": "organization",
    "amount": "amount",
    "credits": "amount",
    "reason": "reason",
    "note": "note",
    "key": "key",
    "idempotency_key": "key",
    "expires_at": "expires_at",
    "expires": "expires_at",
    "expiry": "expires_at",
    "priority": "priority",
}
_REQUIRED: Final = ("organization", "amount", "reason")

Status = Literal["apply", "request", "exists", "applied", "requested", "error"]


@dataclass(frozen=True, slots=True)
class ParsedRow:
    """One data row of the file as read, its values checked (None where refused)."""

    line: int
    slug: str | None
    amount: int | None
    reason: str | None
    note: str | None
    key: str | None
    errors: tuple[str, ...]
    # A grant's terms (None: never expires; the default priority).
    expires_at: dt.datetime | None = None
    priority: int | None = None


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """The rows of a file and its problems that belong to no row (line, sentence)."""

    digest: str
    rows: tuple[ParsedRow, ...]
    errors: tuple[tuple[int, str], ...]


@dataclass(frozen=True, slots=True)
class BulkRow:
    """One row with what it does: ``apply`` (moves credits), ``request`` (above the
    threshold: an approval request, the balance unchanged), ``exists`` (this row's key
    was applied or requested before: nothing changes), ``error``; after ``apply_bulk``,
    ``applied`` / ``requested`` with the new entry's or request's id."""

    line: int
    slug: str | None
    organization_id: int | None
    organization: str | None
    amount: int | None
    reason: str | None
    note: str | None
    key: str | None
    status: Status
    balance_before: int | None
    balance_after: int | None
    entry_id: int | None
    request_id: int | None
    errors: tuple[str, ...]
    expires_at: dt.datetime | None = None
    priority: int | None = None


@dataclass(frozen=True, slots=True)
class BulkPlan:
    """Every row of the file, in file order, and every problem with its line number."""

    digest: str
    rows: tuple[BulkRow, ...]
    errors: tuple[tuple[int, str], ...]

    @property
    def ok(self) -> bool:
        return not self.errors

    def count(self, *statuses: Status) -> int:
        return sum(1 for row in self.rows if row.status in statuses)


def _fail(data: bytes, message: str, line: int = 1) -> ParsedFile:
    return ParsedFile(hashlib.sha256(data).hexdigest(), (), ((line, message),))


def _amount(raw: str | None) -> int:
    """A signed whole number: the magnitude as ``parse_whole`` reads what people type."""
    typed = (raw or "").strip()
    sign = -1 if typed.startswith("-") else 1
    if typed[:1] in ("-", "+"):
        typed = typed[1:]
    magnitude = parse_whole(typed, "amount", error=InvalidAdjustment)
    return check_adjustment_amount(sign * magnitude)


# ASCII digits only: ``\d`` would let other scripts' digits through to fromisoformat.
_DATE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TIME: Final = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[T ](?P<time>[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?)"
    r"(?P<zone>Z|z|[+-][0-9]{2}:[0-9]{2})?"
)
_EXPIRY_FORMS: Final = (
    "2027-01-06T00:00:00Z, 2027-01-06T05:45:00+05:45, or the date 2027-01-06 (00:00 UTC that day)"
)


def _shown_value(raw: str) -> str:
    return repr(raw if len(raw) <= 40 else raw[:40] + "…")


def parse_expiry(raw: str | None) -> dt.datetime | None:
    """A bulk row's ``expires_at`` as an aware UTC datetime; empty: None (never expires).

    ISO 8601 with ``Z`` or an offset (``2027-01-06T00:00:00+05:45``), or a date alone,
    meaning the start of that day in UTC. A time without an offset is refused
    (``InvalidAdjustment``): which day it falls on depends on a zone the file does not
    name. Whether it is still ahead is checked against the database's clock.
    """
    typed = (raw or "").strip()
    if not typed:
        return None
    if _DATE.fullmatch(typed):
        try:
            day = dt.date.fromisoformat(typed)
        except ValueError:
            raise InvalidAdjustment(
                f"The expires_at {_shown_value(typed)} is not a real date."
            ) from None
        when = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    else:
        match = _TIME.fullmatch(typed)
        if match is None:
            raise InvalidAdjustment(
                f"The expires_at {_shown_value(typed)} is not a date and time; write it as "
                f"{_EXPIRY_FORMS}."
            )
        if match["zone"] is None:
            raise InvalidAdjustment(
                f"The expires_at {_shown_value(typed)} has no UTC offset, so its day is a "
                "guess; add Z or an offset such as +05:45, or give a date alone (00:00 UTC "
                "that day)."
            )
        zone = "+00:00" if match["zone"] in ("Z", "z") else match["zone"]
        try:
            when = dt.datetime.fromisoformat(f"{match['date']}T{match['time']}{zone}")
        except ValueError:
            raise InvalidAdjustment(
                f"The expires_at {_shown_value(typed)} is not a real date and time."
            ) from None
    # The range every timestamp keeps (2000-2100), as UTC.
    return check_timestamp(when, "expires_at", error=InvalidAdjustment).astimezone(dt.UTC)


def parse_priority(raw: str | None) -> int | None:
    """A bulk row's ``priority``: a whole number from 0 to 255 (lower is drawn first);
    empty: None (the default, 10). Anything else raises ``InvalidAdjustment``."""
    typed = (raw or "").strip()
    if not typed:
        return None
    if not re.fullmatch(r"[0-9]{1,3}", typed) or int(typed) > MAX_GRANT_PRIORITY:
        raise InvalidAdjustment(
            f"The priority {_shown_value(typed)} must be a whole number from 0 to "
            f"{MAX_GRANT_PRIORITY} (lower is drawn first; empty means 10)."
        )
    return int(typed)


def _row(line: int, values: Mapping[str, str], digest: str) -> ParsedRow:
    errors: list[str] = []

    slug = amount = reason = note = key = None
    try:
        slug = check_text(values.get("organization"), "organization", maximum=_MAX_SLUG)
    except InvalidInput as exc:
        errors.append(str(exc))
    try:
        amount = _amount(values.get("amount"))
    except InvalidInput as exc:
        errors.append(str(exc))
    try:
        reason = required_text(values.get("reason") or "", "reason", maximum=MAX_REASON)
    except InvalidInput as exc:
        errors.append(str(exc))
    try:
        note = check_text(
            values.get("note"), "note", maximum=MAX_NOTE, required=False, multiline=True
        )
    except InvalidInput as exc:
        errors.append(str(exc))
    try:
        key = check_key(values.get("key"), "key", required=False)
    except InvalidInput as exc:
        errors.append(str(exc))
    else:
        # The same file gives the same keys, so applying it again changes nothing.
        key = key or f"bulk:{digest[:40]}:{line}"
    expires_at = priority = None
    try:
        expires_at = parse_expiry(values.get("expires_at"))
    except InvalidInput as exc:
        errors.append(str(exc))
    try:
        priority = parse_priority(values.get("priority"))
    except InvalidInput as exc:
        errors.append(str(exc))
    if (
        amount is not None
        and amount < 0
        and ((values.get("expires_at") or "").strip() or (values.get("priority") or "").strip())
    ):
        errors.append(
            "Only a grant (a positive amount) can have an expires_at or a priority; leave "
            "them empty on a deduction, which draws from the grants in order."
        )
    return ParsedRow(line, slug, amount, reason, note, key, tuple(errors), expires_at, priority)


def parse_file(data: bytes) -> ParsedFile:
    """Read a bulk adjustment file. Never raises on its content: a file or row that
    cannot be used has its problems, each with a line number, in ``errors``."""
    if not isinstance(data, bytes):
        raise InvalidInput("The file must be bytes.")
    if len(data) > MAX_FILE_BYTES:
        return _fail(data, f"The file is larger than {MAX_FILE_BYTES:,} bytes; split it.")
    digest = hashlib.sha256(data).hexdigest()
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return _fail(data, "The file is not UTF-8 text; save it as UTF-8 CSV.", line)
    reader = csv.reader(io.StringIO(content, newline=""), strict=True)
    header: list[str | None] | None = None
    rows: list[ParsedRow] = []
    errors: list[tuple[int, str]] = []
    seen_keys: dict[tuple[str | None, str], int] = {}
    start = 1
    try:
        for record in reader:
            line, start = start, reader.line_num + 1
            if not any(field.strip() for field in record):
                continue
            if header is None:
                header, problems = _header(record)
                errors.extend((line, problem) for problem in problems)
                if problems:
                    break
                continue
            if len(rows) >= MAX_ROWS:
                errors.append((line, f"The file has more than {MAX_ROWS:,} rows; split it."))
                break
            if len(record) > len(header):
                rows.append(
                    ParsedRow(
                        line,
                        None,
                        None,
                        None,
                        None,
                        None,
                        (f"The row has {len(record)} fields; the header has {len(header)}.",),
                    )
                )
                continue
            values = {name: value for name, value in zip(header, record, strict=False) if name}
            row = _row(line, values, digest)
            if row.key is not None and values.get("key"):
                first = seen_keys.setdefault((row.slug, row.key), line)
                if first != line:
                    row = dataclasses.replace(
                        row,
                        errors=(*row.errors, f"The key {row.key!r} is already on line {first}."),
                    )
            rows.append(row)
    except csv.Error as exc:
        # The record that broke starts on ``start`` (e.g. the quote that is never closed).
        errors.append((start, f"The file is not valid CSV from this line on: {exc}."))
    if header is None and not errors:
        errors.append((1, "The file is empty: it needs a header row and at least one row."))
    elif header is not None and not rows and not errors:
        errors.append((start, "The file has a header but no rows."))
    return ParsedFile(digest, tuple(rows), tuple(errors))


def _header(record: list[str]) -> tuple[list[str | None], list[str]]:
    names: list[str | None] = []
    problems: list[str] = []
    for field in record:
        typed = field.strip().lower().replace(" ", "_").replace("-", "_")
        name = _COLUMNS.get(typed)
        if name is None:
            shown = typed if len(typed) <= 40 else typed[:40] + "…"
            problems.append(
                f"Unknown column {shown!r}: the columns are organization, amount, reason, "
                "and optionally note, key, expires_at and priority."
            )
        elif name in names:
            problems.append(f"The column {name!r} appears twice.")
        names.append(name)
    missing = [name for name in _REQUIRED if name not in names]
    if missing:
        problems.append(
            f"The header row lacks the {'column' if len(missing) == 1 else 'columns'} "
            f"{', '.join(missing)}."
        )
    return names, problems


# ------------------------------------------------------------------------ checking rows

_ORGANIZATIONS = text(
    """
    SELECT o.id, o.slug, o.name, b.balance - coalesce(d.due, 0) AS balance
    FROM organizations o JOIN credit_balances b ON b.organization_id = o.id
    -- The dry run takes no lock, which would write off due grants: they are gone already.
    LEFT JOIN due_credits(now()) d ON d.organization_id = o.id
    WHERE o.slug = ANY(CAST(:slugs AS text[]))
    """
)
_ENTRIES_BY_KEY = text(
    """
    SELECT organization_id, idempotency_key, id, amount, reason, note, grant_expires_at,
           grant_priority
    FROM credit_ledger
    WHERE organization_id = ANY(CAST(:ids AS bigint[]))
      AND idempotency_key = ANY(CAST(:keys AS text[]))
    """
)
_REQUESTS_BY_KEY = text(
    """
    SELECT organization_id, idempotency_key, id, amount, reason, note, grant_expires_at,
           grant_priority
    FROM approval_requests
    WHERE organization_id = ANY(CAST(:ids AS bigint[]))
      AND idempotency_key = ANY(CAST(:keys AS text[]))
    """
)


def plan_bulk(conn: Connection, *, data: bytes, actor: str | None = None) -> BulkPlan:
    """The dry run: every row of the file with its balance before and after, and every
    problem with its line number. Reads only; nothing is written. With ``actor`` (who
    would apply it), rows that with what that person moved alone for the organization
    in the last 24 hours pass the approval threshold show as requests; without, only
    the file's own rows count together."""
    who = None if actor is None else canonical_identity(actor, "actor", error=InvalidAdjustment)
    return _plan(conn, parse_file(data), lock=False, actor=who)


def _plan(conn: Connection, parsed: ParsedFile, *, lock: bool, actor: str | None) -> BulkPlan:
    slugs = sorted({row.slug for row in parsed.rows if row.slug})
    found = {r.slug: r for r in conn.execute(_ORGANIZATIONS, {"slugs": slugs})} if slugs else {}
    ids = sorted(int(r.id) for r in found.values())
    balances = {int(r.id): int(r.balance) for r in found.values()}
    if lock and ids:
        # Every organization of the file, in id order, in one statement.
        balances = lock_organizations(conn, organization_ids=ids)
    keys = sorted({row.key for row in parsed.rows if row.key})
    entries: dict[tuple[int, str], Any] = {}
    requests: dict[tuple[int, str], Any] = {}
    if ids and keys:
        params = {"ids": ids, "keys": keys}
        entries = {
            (r.organization_id, r.idempotency_key): r for r in conn.execute(_ENTRIES_BY_KEY, params)
        }
        requests = {
            (r.organization_id, r.idempotency_key): r
            for r in conn.execute(_REQUESTS_BY_KEY, params)
        }
    # An expiry must be ahead of the database's clock, the one that books the entry
    # (under the locks, the same transaction's).
    now = (
        conn.execute(_NOW).scalar_one()
        if any(row.expires_at is not None for row in parsed.rows)
        else None
    )
    threshold = approval_threshold()
    # The two-person rule over 24 hours: what the applier moved alone for each
    # organization, then the file's rows in file order (queries.ledger.moved_alone).
    moved = dict.fromkeys(ids, 0)
    if actor is not None and ids:
        moved.update(moved_alone(conn, organization_ids=ids, actor=actor))

    def taken(previous: Any) -> str:
        what = (
            "ledger entry"
            if (previous.organization_id, previous.idempotency_key) in entries
            else "request"
        )
        return (
            f"The key {previous.idempotency_key!r} was already used by {what} {previous.id} "
            "with other details; give this row another key."
        )

    planned: list[BulkRow] = []
    for row in parsed.rows:
        org = found.get(row.slug) if row.slug else None
        errors = list(row.errors)
        if row.slug and org is None:
            errors.append(f"There is no organization with the slug {row.slug!r}.")
        org_id = int(org.id) if org is not None else None
        before = balances.get(org_id) if org_id is not None else None
        status: Status = "error"
        entry_id = request_id = None
        after = before
        key = row.key or ""
        if not errors and org_id is not None and before is not None and row.amount is not None:
            try:
                previous = replay(
                    first=entries.get((org_id, key)) or requests.get((org_id, key)),
                    asked=(row.amount, row.reason, row.note, row.expires_at, row.priority),
                    recorded=lambda p: (
                        p.amount,
                        p.reason,
                        p.note,
                        p.grant_expires_at,
                        p.grant_priority,
                    ),
                    conflict=taken,
                )
            except IdempotencyConflict as exc:
                errors.append(str(exc))
            else:
                if previous is not None:
                    status = "exists"
                    is_entry = (org_id, key) in entries
                    entry_id = int(previous.id) if is_entry else None
                    request_id = None if is_entry else int(previous.id)
                elif row.expires_at is not None and now is not None and row.expires_at <= now:
                    errors.append(
                        f"The expires_at {row.expires_at:%Y-%m-%d %H:%M} UTC has passed; a "
                        "grant's expiry must be in the future."
                    )
                elif needs_approval(amount=row.amount, moved=moved[org_id], threshold=threshold):
                    # Above the threshold alone, or with what this person moved for this
                    # organization in the last 24 hours (earlier rows included): nothing
                    # moves until a second person approves it.
                    status = "request"
                elif before + row.amount < 0:
                    errors.append(
                        f"Insufficient credits: {row.slug} would have {before:,} credits by "
                        f"this row (counting the earlier rows of the file); it cannot deduct "
                        f"{-row.amount:,}."
                    )
                else:
                    status = "apply"
                    after = before + row.amount
                    balances[org_id] = after
                    moved[org_id] += abs(row.amount)
        planned.append(
            BulkRow(
                line=row.line,
                slug=row.slug,
                organization_id=org_id,
                organization=str(org.name) if org is not None else None,
                amount=row.amount,
                reason=row.reason,
                note=row.note,
                key=row.key,
                status=status if not errors else "error",
                balance_before=before,
                balance_after=after if not errors else before,
                entry_id=entry_id,
                request_id=request_id,
                errors=tuple(errors),
                expires_at=row.expires_at,
                priority=row.priority,
            )
        )
    problems = [*parsed.errors, *((r.line, e) for r in planned for e in r.errors)]
    return BulkPlan(parsed.digest, tuple(planned), tuple(sorted(problems, key=lambda p: p[0])))


_NOW = text("SELECT now()")
_AUDIT_FILE = text(
    """
    INSERT INTO audit_log (organization_id, action, actor, reason, details, idempotency_key)
    SELECT f.org, 'bulk_adjust', :actor, :reason,
           jsonb_build_object('file', CAST(:digest AS text), 'via', CAST(:via AS text),
                              'entries', to_jsonb(f.entries), 'requests', to_jsonb(f.requests)),
           'bulk_adjust:' || CAST(:digest AS text)
    FROM jsonb_to_recordset(CAST(:orgs AS jsonb)) AS f(org bigint, entries bigint[],
                                                         requests bigint[])
    """
)


def apply_bulk(engine: Engine, *, data: bytes, actor: str, via: str = "the dashboard") -> BulkPlan:
    """Apply every row of the file in one transaction, or none: any problem raises
    ``BulkRejected`` (with every problem's line) and nothing is written. Rows above the
    approval threshold, alone or with what ``actor`` moved alone for the organization in
    the last 24 hours and the file's earlier rows, become approval requests by
    ``actor``. Each organization the file changed gets one ``bulk_adjust`` audit row
    naming ``actor``, the file and ``via`` (where it came from, e.g. "the command line
    (dashboard bulk-adjust)"). Applying the same file again returns its rows as
    ``exists`` (with their entries and requests) and changes nothing."""
    actor = canonical_identity(actor, "actor", error=InvalidAdjustment)
    via = required_text(via, "via", maximum=200, error=InvalidAdjustment)
    parsed = parse_file(data)
    if parsed.errors or any(row.errors for row in parsed.rows):
        raise BulkRejected(
            tuple(
                sorted(
                    [*parsed.errors, *((r.line, e) for r in parsed.rows for e in r.errors)],
                    key=lambda p: p[0],
                )
            )
        )
    days = expiry_days()

    def body(conn: Connection) -> BulkPlan:
        # Under the locks the checks are exact: nothing else moves these balances now.
        plan = _plan(conn, parsed, lock=True, actor=actor)
        if not plan.ok:
            raise BulkRejected(plan.errors)
        done: list[BulkRow] = []
        for row in plan.rows:
            org, amount, reason, key = row.organization_id, row.amount, row.reason, row.key
            assert org is not None and amount is not None and reason is not None and key
            if row.status == "apply":
                entry = insert_movement(
                    conn,
                    organization_id=org,
                    amount=amount,
                    kind="grant" if amount > 0 else "deduct",
                    reason=reason,
                    note=row.note,
                    actor=actor,
                    idempotency_key=key,
                    grant_expires_at=row.expires_at,
                    grant_priority=row.priority,
                )
                row = dataclasses.replace(
                    row, status="applied", entry_id=entry.id, balance_after=entry.balance_after
                )
            elif row.status == "request":
                request = record_request(
                    conn,
                    organization_id=org,
                    amount=amount,
                    reason=reason,
                    note=row.note,
                    actor=actor,
                    idempotency_key=key,
                    days=days,
                    via=via,
                    grant_expires_at=row.expires_at,
                    grant_priority=row.priority,
                )
                row = dataclasses.replace(row, status="requested", request_id=request.id)
            done.append(row)
        changed: dict[int, dict[str, Any]] = {}
        for row in done:
            if row.status in ("applied", "requested") and row.organization_id is not None:
                one = changed.setdefault(
                    row.organization_id,
                    {"org": row.organization_id, "entries": [], "requests": []},
                )
                if row.entry_id is not None:
                    one["entries"].append(row.entry_id)
                if row.request_id is not None:
                    one["requests"].append(row.request_id)
        if changed:
            conn.execute(
                _AUDIT_FILE,
                {
                    "actor": actor,
                    "reason": f"Bulk adjustment file {plan.digest[:12]}, via {via}",
                    "digest": plan.digest[:40],
                    "via": via,
                    "orgs": json.dumps(list(changed.values())),
                },
            )
        return dataclasses.replace(plan, rows=tuple(done))

    # Every row has a key: a retry after a lost commit finds them all as ``exists``.
    return run_in_transaction(engine, body, idempotent=True)
