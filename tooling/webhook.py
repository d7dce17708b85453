"""Posting alerts to a webhook (Slack's incoming webhooks, or any service that takes JSON).

Standard library only (``urllib.request``): one POST of JSON with a Slack-compatible
``text`` (one line per alert) and the alerts themselves as structured data::

    {"text": "...", "alerts": [{"kind", "organization_id", "organization", "slug",
                                "type", "local_day", "message", "details"}]}

A 2xx answer is success; anything else, a redirect, a timeout or a refused connection
is a ``WebhookError`` whose text is one sentence (the URL is never in it: a webhook URL
usually holds its token).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from queries.alerts import Alert

TIMEOUT_SECONDS = 10.0
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


def payload(alerts: Sequence[Alert]) -> dict[str, Any]:
    """The JSON body: Slack's ``text`` and the structured alerts."""
    return {
        "text": "\n".join(slack_escape(alert.message) for alert in alerts),
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
            }
            for alert in alerts
        ],
    }


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is a failure: urllib would follow a 301/302 of a POST with a GET
    without the body, and the GET's 200 would look like a delivery."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def post(url: str, alerts: Sequence[Alert], *, timeout: float = TIMEOUT_SECONDS) -> None:
    """POST the alerts as JSON; returns on a 2xx answer, raises ``WebhookError`` else."""
    url = check_url(url)
    where = destination(url)
    body = json.dumps(payload(alerts), allow_nan=False).encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "usage-dashboard-alerts"},
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status = response.status
            response.read(65536)  # drain a little, so the connection closes cleanly
    except urllib.error.HTTPError as exc:
        raise WebhookError(
            f"The webhook at {where} answered {exc.code} {exc.reason or ''}".rstrip()
            + "; the alerts were not taken."
        ) from exc
    except TimeoutError as exc:
        raise WebhookError(
            f"The webhook at {where} did not answer within {timeout:g} s; the alerts may not "
            "have been taken."
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WebhookError(f"Could not reach the webhook at {where}: {reason}.") from exc
    if not 200 <= status < 300:
        raise WebhookError(f"The webhook at {where} answered {status}; the alerts were not taken.")


def sender(url: str, *, timeout: float = TIMEOUT_SECONDS) -> Callable[[list[Alert]], None]:
    """``send`` for :func:`queries.alerts.deliver`: one POST of all the claimed alerts."""
    url = check_url(url)

    def send(alerts: list[Alert]) -> None:
        post(url, alerts, timeout=timeout)

    return send
