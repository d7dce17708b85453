"""Links into the dashboard from outside it: the alerts' webhook digest.

Inside the app, :func:`dashboard.url.link` builds relative links with the sidebar's
filters. A message posted to Slack needs absolute ones, so it needs the address the
dashboard is served at: ``DASHBOARD_BASE_URL`` (``https://usage.example.com`` or
``https://example.com/usage``). Unset, there are no links.

Links carry ids and fixed words only, never customer text, with the keys the app reads:
the sidebar's organization (``org``, :mod:`dashboard.state`) and the Quotas page's
``type`` and ``status`` (:mod:`dashboard.url`). The pages' paths are
``dashboard/navigation.py``'s ``url_path``; a test holds these equal. Overview is the
first page of every role's menu, so it is served at the app's root and linked as ``/``.

Pure: no Streamlit, no database, so the command line can use it without the app.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final
from urllib.parse import quote, urlencode, urlsplit

from queries.alerts import Alert, AlertKind
from queries.db import ConfigurationError

BASE_URL_ENV: Final = "DASHBOARD_BASE_URL"

# url_path of the pages linked to ("" is the app's root: Overview, first in every menu).
OVERVIEW: Final = ""
QUOTAS: Final = "quotas"
CREDITS: Final = "credits"
# The URL keys of the app that links set.
ORG: Final = "org"
TYPE: Final = "type"
STATUS: Final = "status"

# Where each kind of alert is listed: the Quotas page leads with who will hit a limit
# today and with spikes, and lists the limits reached (status over or at limit); Credits
# lists the organizations whose credits run out soon.
KIND_PAGES: Final[Mapping[AlertKind, tuple[str, Mapping[str, str]]]] = {
    "over_limit": (QUOTAS, {STATUS: "over,at limit"}),
    "will_hit_limit": (QUOTAS, {}),
    "spike": (QUOTAS, {}),
    "low_runway": (CREDITS, {}),
}
# Characters that a chat message or a shell would take for something else in a link.
_UNSAFE: Final = frozenset('<>|"`\\ ')


def check_base_url(value: object) -> str:
    """The dashboard's address: http(s), a host, no credentials, query or fragment;
    returned without its trailing ``/``. Raises ``ConfigurationError`` with a sentence."""
    what = f"{BASE_URL_ENV} must be the dashboard's address, like https://usage.example.com"
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{what}; it is empty.")
    url = value.strip()
    if any(char in _UNSAFE or not char.isprintable() for char in url):
        raise ConfigurationError(f"{what}; it has spaces or characters a link cannot hold.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  raises on a port that is not a number
    except ValueError as exc:
        raise ConfigurationError(f"{what}; it is not a valid URL ({exc}).") from exc
    if parts.scheme.lower() not in ("https", "http"):
        raise ConfigurationError(f"{what}; it must start with https:// (or http://).")
    if not parts.hostname:
        raise ConfigurationError(f"{what}; it has no host.")
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(f"{what}; it must not hold a user name or password.")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ConfigurationError(f"{what}; it must not have a query (?) or fragment (#).")
    return url.rstrip("/")


def base_url_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """``DASHBOARD_BASE_URL``, checked, or None when unset or blank."""
    raw = (os.environ if environ is None else environ).get(BASE_URL_ENV, "")
    return check_base_url(raw) if raw.strip() else None


def page_link(base_url: str, page: str, params: Mapping[str, str] | None = None) -> str:
    """The absolute URL of ``page`` (a ``url_path``; "" the root) with ``params``."""
    query = urlencode(dict(params or {}), quote_via=quote, safe=",")
    return f"{check_base_url(base_url)}/{page}" + (f"?{query}" if query else "")


def alert_link(base_url: str, alert: Alert) -> str:
    """Where to act on one alert: a limit's organization and type on Quotas, a spike's
    organization on Overview (its timeline), a low runway's organization on Credits."""
    org = {ORG: str(alert.organization_id)}
    if alert.kind in ("over_limit", "will_hit_limit"):
        return page_link(base_url, QUOTAS, org | ({TYPE: alert.type} if alert.type else {}))
    if alert.kind == "spike":
        return page_link(base_url, OVERVIEW, org)
    return page_link(base_url, CREDITS, org)


def kind_link(base_url: str, kind: AlertKind) -> str:
    """The dashboard's list of every alert of ``kind``."""
    page, params = KIND_PAGES[kind]
    return page_link(base_url, page, params)
