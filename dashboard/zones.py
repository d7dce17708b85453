"""The company zone: the one zone pages that span organizations count their days in.

A per-organization view reads dates in the organization's own zone (or UTC, the
sidebar's choice). A view across organizations must not: with each organization's own
zone, "the last 30 days" would be other instants for every organization selected, and
two people would see different totals for the same period. Those pages read their dates
in ``DASHBOARD_TIMEZONE`` (default UTC; a name that is not a zone stops start-up with a
sentence, :func:`dashboard.auth.startup_problem`) and say so on the page."""

from __future__ import annotations

import dataclasses

from dashboard import clock, state
from dashboard.text import md
from queries.db import company_timezone


def timezone() -> str:
    """The company zone's IANA name (``DASHBOARD_TIMEZONE``, default UTC)."""
    return company_timezone()


def company_filters(f: state.Filters, *, tz: str | None = None) -> state.Filters:
    """The sidebar's filters with their dates in the company zone: a preset ("Last 30
    days", "This month" ...) ends on the company's today, whatever the organization
    selected; custom dates are calendar dates and stay as they are."""
    if f.preset == "custom":
        return f
    today = state.today_in(tz or timezone(), now=clock.now())
    start, end = state.preset_range(f.preset, today)
    return dataclasses.replace(f, start=start, end=end)


def note(tz: str | None = None) -> str:
    """What the page says about its dates, as Markdown: "Dates in UTC, the company zone." """
    return f"Dates in {md(tz or timezone())}, the company zone."
