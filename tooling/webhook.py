"""Posting alerts to a webhook (Slack's incoming webhooks, or any service that takes JSON).

Standard library only (``urllib.request``): one POST of JSON with a Slack-compatible
``text`` (a digest: a count per kind, each kind's most urgent alerts, "and N more", and
links to the dashboard at ``DASHBOARD_BASE_URL``) and the alerts themselves as
structured data::

    {"text": "...", "dashboard": base URL or null,
     "kinds": [{"kind", "title", "count", "link"}],
     "alerts": [{"kind", "organization_id", "organization", "slug", "type",
                 "local_day", "message", "details", "link"}]}

A 2xx answer is success; anything else, a redirect, a timeout or a refused connection
is a ``WebhookError`` whose text is one sentence (the URL is never in it: a webhook URL
usually holds its token).

One deadline (``DEADLINE_SECONDS``, 10 s) covers the whole request: connecting, sending
and the full answer. A socket timeout alone bounds each read, so a webhook that answers
200 and then sends its body a byte every 7 s would hold the run for minutes (and the
alerts' claim with it). At the deadline the connection is shut. A 2xx status is the
webhook's acceptance: if it came, the alerts count as delivered even when the rest of
the answer did not (``Posted.complete`` is false); before it, the outcome is unknown and
the post is a failure (the next run sends the alerts again).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from queries import links
from queries.alerts import Alert, AlertKind, most_urgent_first
from queries.words import counted

DEADLINE_SECONDS = 10.0
# The answer is read up to this much (Slack answers "ok"); the rest is not waited for.
MAX_ANSWER_BYTES = 65536
# Only web URLs: urllib also opens file:, ftp: and data: URLs, so a mistyped or
# malicious setting could read a local file or talk another protocol instead of posting.
SCHEMES = ("https", "http")


class WebhookError(Exception):
    """The webhook did not take the alerts; ``str(error)`` says why in one sentence."""


def check_url(url: object) -> str:
    """A webhook URL: http(s) with a host. Raises ``WebhookError`` otherwise."""
    if not isinstance(url, str) or not url.strip():
        raise WebhookError("The webhook URL is empty.")
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number
    except ValueError as exc:
        raise WebhookError(f"The webhook URL is not a valid URL ({exc}).") from exc
    if parts.scheme.lower() not in SCHEMES:
        raise WebhookError(
            f"The webhook URL must start with https:// (or http://), not "
            f"{parts.scheme + ':' if parts.scheme else 'no scheme'}: other schemes "
            "(file:, ftp:, data:) would read or send something else than a web request."
        )
    if not parts.hostname:
        raise WebhookError("The webhook URL has no host.")
    del port
    return url


def destination(url: str) -> str:
    """What is recorded about where alerts went: the host (and port, if given), never
    the path or query, which hold the webhook's token."""
    parts = urlsplit(check_url(url))
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def slack_escape(value: str) -> str:
    """Text as Slack shows it literally: ``&``, ``<`` and ``>`` escaped, so a customer's
    name cannot become a link or a mention (``<!channel>``, ``<@U123>``)."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# Items listed per kind in the digest; the rest are counted ("and 24 more") and linked.
MAX_PER_KIND = 5
KIND_TITLES: dict[str, str] = {
    "over_limit": "Over the limit",
    "will_hit_limit": "Will hit a limit today",
    "spike": "Spikes",
    "low_runway": "Low runway",
}
NO_LINKS = f"(No links to the dashboard: {links.BASE_URL_ENV} is not set.)"


def _link(url: str, label: str) -> str:
    """A Slack link; the URL is ours (ids and fixed words), escaped all the same."""
    return f"<{slack_escape(url)}|{label}>"


def digest(alerts: Sequence[Alert], *, base_url: str | None = None) -> str:
    """Slack's ``text``: a count per kind, then each kind with its most urgent
    ``MAX_PER_KIND`` alerts, "and N more", and links to the dashboard when ``base_url``
    is set (without it, one line says there are none). Customer text is escaped."""
    ordered = most_urgent_first(alerts)
    kinds: dict[AlertKind, list[Alert]] = {}
    for alert in ordered:
        kinds.setdefault(alert.kind, []).append(alert)
    summary = "; ".join(f"{KIND_TITLES[k]}: {len(found):,}" for k, found in kinds.items())
    lines = [f"*{counted(len(ordered), 'alert')} from the usage dashboard* ({summary})"]
    if base_url is None:
        lines.append(NO_LINKS)
    for kind, found in kinds.items():
        heading = f"*{KIND_TITLES[kind]}: {len(found):,}*"
        if base_url is not None:
            heading += " " + _link(links.kind_link(base_url, kind), "open the list")
        lines += ["", heading]
        for alert in found[:MAX_PER_KIND]:
            line = f"• {slack_escape(alert.message)}"
            if base_url is not None:
                line += " " + _link(links.alert_link(base_url, alert), "open")
            lines.append(line)
        more = len(found) - MAX_PER_KIND
        if more > 0:
            line = f"and {more:,} more"
            if base_url is not None:
                line += " " + _link(links.kind_link(base_url, kind), f"see all {len(found):,}")
            lines.append(line)
    return "\n".join(lines)


def payload(alerts: Sequence[Alert], *, base_url: str | None = None) -> dict[str, Any]:
    """The JSON body: Slack's ``text`` (:func:`digest`), the dashboard's address (None
    when unset), each kind with its count and list link, and the structured alerts, most
    urgent first within their kind, each with its link (None without an address)."""
    ordered = most_urgent_first(alerts)
    base_url = None if base_url is None else links.check_base_url(base_url)
    counts: dict[AlertKind, int] = {}
    for alert in ordered:
        counts[alert.kind] = counts.get(alert.kind, 0) + 1
    return {
        "text": digest(ordered, base_url=base_url),
        "dashboard": base_url,
        "kinds": [
            {
                "kind": kind,
                "title": KIND_TITLES[kind],
                "count": count,
                "link": None if base_url is None else links.kind_link(base_url, kind),
            }
            for kind, count in counts.items()
        ],
        "alerts": [
            {
                "kind": alert.kind,
                "organization_id": alert.organization_id,
                "organization": alert.organization,
                "slug": alert.slug,
                "type": alert.type,
                "local_day": alert.local_day.isoformat(),
                "message": alert.message,
                "details": alert.details,
                "link": None if base_url is None else links.alert_link(base_url, alert),
            }
            for alert in ordered
        ],
    }


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is a failure: urllib would follow a 301/302 of a POST with a GET
    without the body, and the GET's 200 would look like a delivery."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Deadline:
    """One deadline for a whole request. Each connection opened under it gets only the
    time that is left for its connect and for each read or write, and when the time is
    up every one of its sockets is shut down, which ends a read or write in progress,
    however slowly the other end trickles."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._ends = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def left(self) -> float:
        return max(0.001, self._ends - time.monotonic())

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


def _shut(sock: socket.socket) -> None:
    # socket.socket's own shutdown, on the descriptor: for a TLS socket too, without
    # touching its SSL state (another thread may be reading it).
    with contextlib.suppress(OSError):  # already closed
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _opener(deadline: _Deadline) -> urllib.request.OpenerDirector:
    """urllib's opener (proxies from the environment included), without redirects, whose
    connections obey ``deadline``."""

    class Http(http.client.HTTPConnection):
        def connect(self) -> None:
            self.timeout = deadline.left()
            super().connect()
            deadline.watch(self.sock)

    class Https(http.client.HTTPSConnection):
        def connect(self) -> None:
            self.timeout = deadline.left()
            super().connect()
            deadline.watch(self.sock)

    class HttpHandler(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(Http, req)

    class HttpsHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(Https, req, context=self._context)  # type: ignore[attr-defined]

    return urllib.request.build_opener(_NoRedirects, HttpHandler, HttpsHandler)


@dataclass(frozen=True, slots=True)
class Posted:
    """The webhook took the alerts: its 2xx ``status``, and whether its whole answer came
    within the deadline (false: it was still sending when the connection was shut)."""

    status: int
    complete: bool


def post(
    url: str,
    alerts: Sequence[Alert],
    *,
    timeout: float = DEADLINE_SECONDS,
    base_url: str | None = None,
) -> Posted:
    """POST the alerts as JSON (:func:`payload`, linking to the dashboard at
    ``base_url``), all within ``timeout`` seconds (connect, send, answer); returns on a
    2xx status, raises ``WebhookError`` else."""
    url = check_url(url)
    where = destination(url)
    body = json.dumps(payload(alerts, base_url=base_url), allow_nan=False).encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "usage-dashboard-alerts"},
    )
    status: int | None = None
    complete = False
    deadline = _Deadline(timeout)
    try:
        with deadline, _opener(deadline).open(request, timeout=timeout) as response:
            status = int(response.status)
            if 200 <= status < 300:
                try:
                    response.read(MAX_ANSWER_BYTES)
                    complete = not deadline.expired
                except (OSError, http.client.HTTPException):
                    complete = False  # accepted; the rest of the answer did not come
    except urllib.error.HTTPError as exc:
        raise WebhookError(
            f"The webhook at {where} answered {exc.code} {exc.reason or ''}".rstrip()
            + "; the alerts were not taken."
        ) from exc
    except (OSError, http.client.HTTPException) as exc:
        if status is not None and 200 <= status < 300:
            return Posted(status, complete=False)
        reason = getattr(exc, "reason", exc)
        if deadline.expired or isinstance(exc, TimeoutError) or isinstance(reason, TimeoutError):
            raise WebhookError(
                f"The webhook at {where} did not answer within {timeout:g} s; it may or may "
                "not have taken the alerts."
            ) from exc
        raise WebhookError(f"Could not reach the webhook at {where}: {reason}.") from exc
    if status is None or not 200 <= status < 300:
        raise WebhookError(f"The webhook at {where} answered {status}; the alerts were not taken.")
    return Posted(status, complete)


class Sender:
    """``send`` for :func:`queries.alerts.deliver`: one POST of all the claimed alerts,
    within ``timeout`` seconds; ``posted`` is the webhook's answer once it took them."""

    def __init__(
        self, url: str, *, timeout: float = DEADLINE_SECONDS, base_url: str | None = None
    ) -> None:
        self.url = check_url(url)
        self.timeout = timeout
        self.base_url = None if base_url is None else links.check_base_url(base_url)
        self.posted: Posted | None = None

    def __call__(self, alerts: list[Alert]) -> None:
        self.posted = post(self.url, alerts, timeout=self.timeout, base_url=self.base_url)


def sender(url: str, *, timeout: float = DEADLINE_SECONDS, base_url: str | None = None) -> Sender:
    """A :class:`Sender` for ``url``, linking to the dashboard at ``base_url``."""
    return Sender(url, timeout=timeout, base_url=base_url)
