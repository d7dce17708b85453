"""Alerts for customer success, and sending each at most once a day.

An alert is one thing a person should act on today: an organization that will hit a
daily limit before its local day ends, one already at or over a limit, a spike of use
far above its own baseline, or a balance that runs out within days (by the burn or by an
expiry: the runway alert says which, and how many credits expire unused). ``alerts_from``
turns the four reads' frames into alerts (pure, no database), ``current_alerts`` runs
the reads, and ``deliver`` hands the alerts not yet sent today to a sender (the webhook
of ``tooling/webhook.py``) and records them in ``alert_deliveries``.

The day an alert belongs to is the organization's own local date: an organization in
Asia/Kathmandu gets its "over the limit" alert again after its midnight, not UTC's.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import unicodedata
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, text

from queries.checks import check_whole, required_text
from queries.errors import Busy, InvalidInput, OutcomeUnknown
from queries.forecast import low_runway, quota_forecast, runway_reason, usage_spikes
from queries.models import ALERT_KINDS, TYPED_ALERT_KINDS
from queries.quotas import all_orgs_quota_alerts
from queries.transactions import run_in_transaction, timeout_ms
from queries.words import counted

AlertKind = Literal["will_hit_limit", "over_limit", "spike", "low_runway"]
assert get_args(AlertKind) == ALERT_KINDS  # one list of kinds: the table checks it too

# Most urgent first: the order alerts are printed and posted in.
_KIND_ORDER = {"over_limit": 0, "will_hit_limit": 1, "spike": 2, "low_runway": 3}
# The window usage_spikes compares with the baseline, in hours (its default).
SPIKE_HOURS = 3
MAX_RUNWAY_DAYS = 366
MAX_DESTINATION = 255


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert: what, about whom, for which local day, as one plain-text line.

    ``type`` is the generation type for the limit kinds and None for ``spike`` and
    ``low_runway`` (about the whole organization). ``local_day`` is the organization's
    local date the alert belongs to: with (kind, organization, type) the key that lets
    it be sent once a day. ``details`` holds the numbers behind the message, JSON-able.
    """

    kind: AlertKind
    organization_id: int
    organization: str
    slug: str
    type: str | None
    local_day: dt.date
    message: str
    details: dict[str, Any]

    @property
    def key(self) -> tuple[str, int, str, dt.date]:
        """(kind, organization_id, type or '', local_day): sent at most once."""
        return (self.kind, self.organization_id, self.type or "", self.local_day)


def _plain(value: object) -> str:
    """Customer text on one line: control and format characters (newlines, bidi
    overrides) become spaces, so a name cannot break the one-line-per-alert output."""
    return "".join(
        " " if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") else char
        for char in str(value)
    ).strip()


def _number(value: object) -> int | float | None:
    """A JSON-able number: NaN, NaT and infinities become None (JSON has no such numbers)."""
    if value is None or pd.isna(value):  # type: ignore[call-overload]
        return None
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value)
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else None


def _local_day(now: dt.datetime, timezone: str) -> dt.date:
    return now.astimezone(zoneinfo.ZoneInfo(timezone)).date()


def _utc(value: object) -> pd.Timestamp:
    """A timestamp in UTC; a naive one is taken to be UTC already."""
    stamp = pd.Timestamp(value)  # type: ignore[arg-type]
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _rows(frame: pd.DataFrame) -> list[Mapping[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]


def alerts_from(
    *,
    forecast: pd.DataFrame,
    spikes: pd.DataFrame,
    runway: pd.DataFrame,
    over: pd.DataFrame,
    now: dt.datetime,
    spike_hours: int = SPIKE_HOURS,
) -> list[Alert]:
    """The alerts in the four frames, most urgent first, one per (kind, organization,
    type). Pure: no database.

    - ``over``: :func:`queries.quotas.all_orgs_quota_alerts`; its 'over' and 'at limit'
      rows with some use become ``over_limit`` alerts for the row's local ``date``.
    - ``forecast``: :func:`queries.forecast.quota_forecast`; a row with a ``hits_limit_at``
      becomes ``will_hit_limit``, unless it is already at or over its limit (that is an
      ``over_limit`` alert, from either frame).
    - ``spikes``: :func:`queries.forecast.usage_spikes`, one ``spike`` per organization.
    - ``runway``: :func:`queries.forecast.low_runway`, one ``low_runway`` per organization.

    ``now`` (aware) gives the local day of the kinds whose frame has no date.
    """
    if now.tzinfo is None:
        raise InvalidInput("now must be an aware datetime (with a time zone).")
    found: dict[tuple[str, int, str, dt.date], Alert] = {}

    def add(alert: Alert) -> None:
        found.setdefault(alert.key, alert)  # one per key: the first row wins

    at_limit: set[tuple[int, str]] = set()
    for row in _rows(over):
        # A limit set to 0 with nothing used is a type switched off, not an alert.
        if row["status"] not in ("over", "at limit") or int(row["used"]) == 0:
            continue
        org, kind_type = int(row["organization_id"]), str(row["type"])
        at_limit.add((org, kind_type))
        name, tz = _plain(row["name"]), str(row["timezone"])
        used, limit = int(row["used"]), int(row["daily_limit"])
        day = pd.Timestamp(row["date"]).date()
        soft, overage = bool(row["soft"]), int(row["overage"])
        # A soft limit lets the work through, so the news is by how much it went over.
        if soft and overage > 0:
            state = f"is over its soft {kind_type} limit by {overage:,}"
        elif row["status"] == "over":
            state = f"is over its {kind_type} limit"
        else:
            state = f"has reached its {kind_type} limit"
        add(
            Alert(
                kind="over_limit",
                organization_id=org,
                organization=name,
                slug=str(row["slug"]),
                type=kind_type,
                local_day=day,
                message=(
                    f"{name} {state}: {used:,} of {limit:,} used today ({day.isoformat()}, {tz})"
                ),
                details={
                    "used": used,
                    "daily_limit": limit,
                    "status": str(row["status"]),
                    "timezone": tz,
                    "soft": soft,
                    "overage": overage,
                },
            )
        )
    for row in _rows(forecast):
        org, kind_type = int(row["organization_id"]), str(row["type"])
        used, limit = int(row["used"]), int(row["daily_limit"])
        hits = row["hits_limit_at"]
        if not pd.isna(hits):
            hits = _utc(hits)
        if (
            pd.isna(hits)
            or used >= limit
            or row.get("status") in ("over", "at limit")
            or (org, kind_type) in at_limit
        ):
            continue
        name, tz = _plain(row["name"]), str(row["timezone"])
        local = hits.tz_convert(tz)
        projected = _number(row["projected_used"])
        shown = "" if projected is None else f", projected {round(projected):,}"
        add(
            Alert(
                kind="will_hit_limit",
                organization_id=org,
                organization=name,
                slug=str(row["slug"]),
                type=kind_type,
                local_day=_local_day(now, tz),
                message=(
                    f"{name} will hit its {kind_type} limit at {local:%H:%M} {tz} "
                    f"({used:,} of {limit:,}{shown})"
                ),
                details={
                    "used": used,
                    "daily_limit": limit,
                    "projected_used": projected,
                    "hits_limit_at": hits.isoformat(),
                    "timezone": tz,
                },
            )
        )
    for row in _rows(spikes):
        org = int(row["organization_id"])
        name, tz = _plain(row["name"]), str(row["timezone"])
        recent = int(row["recent_credits"])
        baseline, factor = _number(row["baseline_credits"]), _number(row["factor"])
        usual = "" if baseline is None else f", {factor or 0:.1f}x its usual {baseline:,.0f}"
        add(
            Alert(
                kind="spike",
                organization_id=org,
                organization=name,
                slug=str(row["slug"]),
                type=None,
                local_day=_local_day(now, tz),
                message=(
                    f"{name} used {recent:,} credits in the last {spike_hours} h{usual} "
                    "for this weekday and hour"
                ),
                details={
                    "recent_credits": recent,
                    "baseline_credits": baseline,
                    "factor": factor,
                    "hours": spike_hours,
                    "timezone": tz,
                },
            )
        )
    for row in _rows(runway):
        org = int(row["organization_id"])
        name, tz = _plain(row["name"]), str(row["timezone"])
        balance = int(row["balance"])
        burn, days = _number(row["daily_burn"]), _number(row["runway_days"])
        out_on = row["runs_out_on"]
        out_on_text = None if out_on is None or pd.isna(out_on) else str(out_on)[:10]
        if burn is None:
            burning = ""
        elif burn == 0:  # idle: listed because an expiry takes its last credits
            burning = ", no recent use"
        else:
            burning = f", burning {burn:,.0f} a day"
        # Expiry (issue 18): in the runway alert, not a kind of its own, so it stays one
        # alert per organization and local day, sent once like before.
        cause = str(row.get("cause") or "burn")
        unused = int(row.get("expiring_unused") or 0)
        then = int(row.get("expiring_then") or 0)
        runs_out_at = row.get("runs_out_at")
        if balance <= 0:
            message = f"{name} has no credits left (balance {balance:,}{burning})"
        elif cause == "expiry" and out_on_text is not None:
            reason = runway_reason(
                balance=balance,
                cause=cause,
                runs_out_on=dt.date.fromisoformat(out_on_text),
                expiring_unused=unused,
                expiring_then=then,
            )
            message = f"{name} {reason} (balance {balance:,}{burning})"
        else:
            when = "" if days is None else f" in {counted(days, 'day', fmt='.1f')}"
            around = "" if out_on_text is None else f", around {out_on_text}"
            wasted = (
                f"; {unused:,} credits will expire unused at today's pace" if unused > 0 else ""
            )
            message = (
                f"{name} runs out of credits{when}{around} (balance {balance:,}{burning}){wasted}"
            )
        add(
            Alert(
                kind="low_runway",
                organization_id=org,
                organization=name,
                slug=str(row["slug"]),
                type=None,
                local_day=_local_day(now, tz),
                message=message,
                details={
                    "balance": balance,
                    "daily_burn": burn,
                    "runway_days": days,
                    "runs_out_on": out_on_text,
                    "runs_out_at": None
                    if runs_out_at is None or pd.isna(runs_out_at)
                    else _utc(runs_out_at).isoformat(),
                    "cause": cause,
                    "expiring_unused": unused,
                    "expiring_then": then,
                    "plan": str(row["plan"]),
                    "timezone": tz,
                },
            )
        )
    return sorted(
        found.values(),
        key=lambda a: (
            _KIND_ORDER[a.kind],
            a.organization.casefold(),
            a.organization_id,
            a.type or "",
        ),
    )


def _float(value: object, missing: float) -> float:
    return missing if value is None else float(value)  # type: ignore[arg-type]


def urgency(alert: Alert) -> tuple[Any, ...]:
    """A sort key within a kind, most urgent first: the limit most exceeded, the soonest
    hit time, the largest spike (no baseline at all counts as the largest), the shortest
    runway (no credits left first); then by name, id and type."""
    details = alert.details
    if alert.kind == "over_limit":
        limit = int(details.get("daily_limit") or 0)
        used = int(details.get("used") or 0)
        first: tuple[Any, ...] = (-(used / limit) if limit else -math.inf, -used)
    elif alert.kind == "will_hit_limit":
        hits = details.get("hits_limit_at")
        at = dt.datetime.fromisoformat(hits).timestamp() if isinstance(hits, str) else math.inf
        first = (at,)
    elif alert.kind == "spike":
        factor = _float(details.get("factor"), math.inf)  # None: a baseline of 0
        first = (-factor, -_float(details.get("recent_credits"), 0))
    else:
        balance = _float(details.get("balance"), 0)
        days = 0.0 if balance <= 0 else _float(details.get("runway_days"), math.inf)
        first = (days, balance)
    return (*first, alert.organization.casefold(), alert.organization_id, alert.type or "")


def most_urgent_first(alerts: Sequence[Alert]) -> list[Alert]:
    """``alerts`` by kind (over the limit, will hit a limit, spikes, low runway) and
    within each kind by :func:`urgency`."""
    return sorted(alerts, key=lambda a: (_KIND_ORDER[a.kind], *urgency(a)))


def current_alerts(
    conn: Connection, *, now: dt.datetime | None = None, runway_days: int = 14
) -> list[Alert]:
    """Every alert as of ``now`` (default: the current time), most urgent first.

    Runs one read per source, whatever the number of organizations: the quota
    forecast, the spikes, the low runways (balance out within ``runway_days``) and
    today's limits reached, each at the same ``now`` (so "today" is each
    organization's local day of that instant).
    """
    runway_days = check_whole(
        runway_days, "number of runway days", minimum=1, maximum=MAX_RUNWAY_DAYS
    )
    if now is not None and (not isinstance(now, dt.datetime) or now.tzinfo is None):
        raise InvalidInput(f"now must be an aware datetime, not {now!r}.")
    # One instant for every read and for the local days of the alerts: reads that each
    # took the clock on their own could fall either side of an organization's midnight.
    at = now or dt.datetime.now(dt.UTC)
    return alerts_from(
        forecast=quota_forecast(conn, now=at, hits_only=True),
        spikes=usage_spikes(conn, now=at, hours=SPIKE_HOURS),
        runway=low_runway(conn, within_days=runway_days, now=at),
        over=all_orgs_quota_alerts(conn, threshold=1.0, now=at),
        now=at,
    )


# ----------------------------------------------------------------------------- delivery


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What one ``deliver`` call did: the alerts it sent now, and those skipped because
    they had been sent before for the same local day."""

    sent: tuple[Alert, ...]
    already_sent: tuple[Alert, ...]


# The whole claim may wait this long for a concurrent run holding the same alerts
# (its post takes at most the webhook's 10 s deadline), then gives up: Busy.
DELIVERY_BUDGET_SECONDS = 30.0
# How long ``send`` may take at most, by default (the webhook's one deadline for its
# whole request: tooling.webhook.DEADLINE_SECONDS).
SEND_DEADLINE_SECONDS = 10.0
# Between its claim and its COMMIT the transaction is idle while ``send`` posts. The
# server must not end it meanwhile (the alerts would be posted and not recorded, and
# the next run would post them again), so this transaction's own
# idle_in_transaction_session_timeout is the send's deadline plus this margin, whatever
# the role or server says; a run that stalls longer than that (a process stopped in a
# debugger) is still ended, which rolls its claim back for the next run.
IDLE_MARGIN_SECONDS = 50.0
MAX_SEND_DEADLINE_SECONDS = 300.0

_POSTED_NOT_RECORDED = (
    "The alerts were posted, but the database's answer to recording them was lost: if "
    "they were not recorded, the next run posts them again."
)

# All for this transaction only. transaction_timeout (PostgreSQL 17+) is turned off for
# it: a role's or server's value would end the claim mid-post like an idle timeout, and a
# larger value set mid-transaction does not extend a timer already running. The claim
# stays bounded: each statement by statement_timeout, the post by its own deadline and
# the wait between them by the idle timeout.
_SET_TIMEOUTS = text(
    """
    SELECT set_config('lock_timeout', :ms, true),
           set_config('statement_timeout', :ms, true),
           set_config('idle_in_transaction_session_timeout', :idle_ms, true),
           CASE WHEN current_setting('server_version_num')::int >= 170000
                THEN set_config('transaction_timeout', '0', true) END
    """
)
# One statement claims every alert: a row per alert not yet sent for its local day.
# Rows go in key order, so two runs claiming overlapping sets wait on each other in
# the same order and cannot deadlock; a run that meets another's uncommitted row waits
# for it and then skips it (committed) or claims it (rolled back).
_CLAIM = text(
    """
    INSERT INTO alert_deliveries
        (organization_id, kind, type, local_day, message, details, destination)
    SELECT a.organization_id, a.kind, a.type, a.local_day, a.message,
           CAST(a.details AS jsonb), :destination
    FROM unnest(CAST(:orgs AS bigint[]), CAST(:kinds AS text[]), CAST(:types AS text[]),
                CAST(:days AS date[]), CAST(:messages AS text[]), CAST(:details AS text[]))
         AS a(organization_id, kind, type, local_day, message, details)
    ORDER BY a.organization_id, a.kind, a.type, a.local_day
    ON CONFLICT (organization_id, kind, type, local_day) DO NOTHING
    RETURNING organization_id, kind, type, local_day
    """
)


def _check_alerts(alerts: object) -> list[Alert]:
    if not isinstance(alerts, Sequence) or isinstance(alerts, str):
        raise InvalidInput("alerts must be a list of Alert.")
    checked: dict[tuple[str, int, str, dt.date], Alert] = {}
    for alert in alerts:
        if not isinstance(alert, Alert):
            raise InvalidInput(f"alerts must be a list of Alert, not {alert!r}.")
        if alert.kind not in ALERT_KINDS:
            raise InvalidInput(f"Unknown alert kind {alert.kind!r}.")
        if (alert.kind in TYPED_ALERT_KINDS) != bool(alert.type):
            raise InvalidInput(
                f"A {alert.kind} alert {'needs' if alert.kind in TYPED_ALERT_KINDS else 'has no'}"
                " generation type."
            )
        checked.setdefault(alert.key, alert)  # one row per key, the first one wins
    return list(checked.values())


def _json(details: Mapping[str, Any]) -> str:
    try:
        return json.dumps(details, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"An alert's details are not plain JSON numbers and text: {exc}."
        ) from exc


def deliver(
    engine: Engine,
    *,
    alerts: Sequence[Alert],
    send: Callable[[list[Alert]], object],
    destination: str,
    send_deadline: float = SEND_DEADLINE_SECONDS,
) -> DeliveryResult:
    """Send each alert at most once per (kind, organization, type, local day), and
    record it in ``alert_deliveries`` with ``destination`` (the webhook's host).

    In one transaction: claim the alerts not sent yet (``INSERT ... ON CONFLICT DO
    NOTHING RETURNING``), call ``send(claimed)`` once with all of them (not at all when
    none is new), and COMMIT only when ``send`` returned. When ``send`` raises, the
    transaction rolls back, nothing is recorded, and its exception propagates: the next
    run sends those alerts again. A second run at the same time waits on the unique
    index for the first one's outcome, then skips what it committed.

    At most once, except in one case: when ``send`` succeeded and the COMMIT after it
    is lost (the connection dies while COMMIT is in flight), the alerts were delivered
    but are not recorded, and the next run sends them again (at least once). Nothing is
    retried after ``send`` has run: that case raises ``OutcomeUnknown``.

    Timeouts: the claim waits at most ``DELIVERY_BUDGET_SECONDS`` (30 s) for another
    run's claim of the same alerts, then raises ``Busy`` having sent nothing.
    ``send_deadline`` is the longest ``send`` can take (it must enforce it itself: the
    webhook puts one deadline on its whole request); the claim is kept alive that long
    and ``IDLE_MARGIN_SECONDS`` more, explicitly for this transaction, so a post that
    finishes in time is always recorded, and a run that hangs longer is rolled back.
    """
    checked = _check_alerts(alerts)
    destination = required_text(destination, "destination", maximum=MAX_DESTINATION)
    if (
        isinstance(send_deadline, bool)
        or not isinstance(send_deadline, int | float)
        or not 0 < send_deadline <= MAX_SEND_DEADLINE_SECONDS
    ):
        raise InvalidInput(
            f"send_deadline must be a number of seconds up to {MAX_SEND_DEADLINE_SECONDS:g}, "
            f"not {send_deadline!r}."
        )
    idle_ms = str(round((send_deadline + IDLE_MARGIN_SECONDS) * 1000))
    if not checked:
        return DeliveryResult(sent=(), already_sent=())
    by_key = {alert.key: alert for alert in checked}
    params = {
        "orgs": [a.organization_id for a in checked],
        "kinds": [a.kind for a in checked],
        "types": [a.type or "" for a in checked],
        "days": [a.local_day for a in checked],
        "messages": [a.message for a in checked],
        "details": [_json(a.details) for a in checked],
        "destination": destination,
    }
    sends = 0

    def body(conn: Connection) -> tuple[Alert, ...]:
        nonlocal sends
        if sends:
            # The transaction is being run again after send() succeeded and its COMMIT
            # failed: sending again would post the same alerts twice.
            raise OutcomeUnknown(_POSTED_NOT_RECORDED)
        conn.execute(_SET_TIMEOUTS, {"ms": timeout_ms(), "idle_ms": idle_ms})
        claimed_keys = {
            (row.kind, int(row.organization_id), row.type, row.local_day)
            for row in conn.execute(_CLAIM, params)
        }
        claimed = [alert for alert in checked if alert.key in claimed_keys]
        if claimed:
            sends += 1
            send(claimed)
        return tuple(claimed)

    try:
        sent = run_in_transaction(engine, body, budget=DELIVERY_BUDGET_SECONDS, sets_timeouts=True)
    except Busy as exc:
        raise Busy(
            "Another run is sending the same alerts and did not finish in time. Nothing "
            "was sent; try again in a minute."
        ) from exc
    except OutcomeUnknown as exc:
        if not sends:  # nothing was posted: only the bookkeeping of a no-op was lost
            raise
        raise OutcomeUnknown(_POSTED_NOT_RECORDED) from exc
    sent_keys = {alert.key for alert in sent}
    return DeliveryResult(
        sent=sent,
        already_sent=tuple(a for key, a in by_key.items() if key not in sent_keys),
    )
