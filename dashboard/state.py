"""The shared sidebar filters and their place in the URL.

Filters: organization, date range (a preset or custom dates), granularity, and the time
zone dates are read in. They live in the URL so that a link reproduces the view::

    ?org=12&range=30d&grain=week&tz=org
    ?org=acme-corp&range=custom&from=2026-10-01&to=2026-10-31

``org`` is an organization id (a slug is accepted too), resolved on the server
(``get_organization`` by id, the exact match of ``search_organizations`` by slug); text
that cannot be an id or a slug is never sent to the database. Every value is parsed strictly
(ids are ASCII digits, dates YYYY-MM-DD between 2000 and 2100, with the checks of
``queries.checks``); a value that cannot be used (unknown organization, bad date, unknown
preset ...) is dropped with a notice and the view falls back to the current or default
value. :func:`parse_url` never raises, whatever the text.

The picker never loads every organization: it lists the selected organization (read by
id) and the first ``PICKER_PAGE`` matches of its search box (``K_ORG_SEARCH``), searched on
the server by name, slug or exact id and cached.

The selected organization is held by id in its own session key (``K_ORG_ID``), not by
the selectbox. A keyed selectbox keeps its identity when its options change, but its
value travels between browser and server as the option's *label*: after a rename the
browser sends back the label it still shows, no option has it any more, and the widget
fell back to its first option (the first organization by name) on the next rerun. So the
selectbox is set from ``K_ORG_ID`` before it is drawn in every run (which also sends the
browser the current label) and a person's choice reaches ``K_ORG_ID`` only through its
``on_change`` callback; renaming, adding or removing organizations never changes the
selection. If the selected organization is gone, the page says so and asks for a choice
instead of switching.

The URL and the widgets stay in step as every page's own keys do, with the same
machinery (``dashboard.url``: :func:`~dashboard.url.incoming`, :func:`~dashboard.url.put`,
notices and toasts): a URL value that differs from what this session last wrote came from
outside (a pasted link, the browser's back button, a name clicked in a table) and is
applied; otherwise the widgets win, and their values are written back to the URL at the
end of every run. A missing parameter keeps the current value, so switching pages does
not reset the filters. What is the sidebar's own is :func:`parse_url`: the keys are read
together, since ``from`` and ``to`` mean something only with ``range``.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, NoReturn, Protocol, get_args

import streamlit as st

from dashboard import clock, data, url
from dashboard.navigation import ALL_FILTERS, FilterName
from dashboard.text import md
from queries import orgs
from queries.checks import MAX_DATE, MAX_RANGE_DAYS, MIN_DATE, parse_date, parse_id
from queries.db import company_timezone
from queries.errors import InvalidInput

Preset = Literal["7d", "30d", "90d", "this_month", "last_month", "custom"]
PRESETS: Final[Mapping[Preset, str]] = {
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "90d": "Last 90 days",
    "this_month": "This month",
    "last_month": "Last month",
    "custom": "Custom dates",
}
DEFAULT_PRESET: Final[Preset] = "30d"
Grain = Literal["day", "week", "month"]
GRAINS: Final[tuple[Grain, ...]] = get_args(Grain)
DEFAULT_GRAIN: Final[Grain] = "day"
Zone = Literal["org", "utc"]
ZONES: Final[tuple[Zone, ...]] = get_args(Zone)
DEFAULT_ZONE: Final[Zone] = "org"

URL_KEYS: Final = ("org", "range", "from", "to", "grain", "tz")

# Session keys of the widgets (shared across pages, hence the "filters." prefix).
K_ORG: Final = "filters.org"  # the organization selectbox: a view of K_ORG_ID
K_ORG_ID: Final = "filters.org_id"  # the selected organization's id: the selection itself
K_ORG_LAST: Final = "filters.org_last"  # the selected Organization as last seen
K_ORG_SEARCH: Final = "filters.org_search"  # the picker's search box (on the server)
PICKER_PAGE: Final = 50  # organizations the picker lists for one search
K_RANGE: Final = "filters.range"
K_FROM: Final = "filters.from"
K_TO: Final = "filters.to"
K_GRAIN: Final = "filters.grain"
K_ZONE: Final = "filters.tz"
URL_SCOPE: Final = "filters"  # what this session wrote last is kept by dashboard.url
K_CURRENT: Final = "filters.current"  # the Filters of this run, for the page


@dataclass(frozen=True, slots=True)
class Organization:
    id: int
    name: str
    slug: str
    timezone: str
    plan: str

    @property
    def label(self) -> str:
        return f"{self.name} · {self.slug}"

    @classmethod
    def of(cls, row: _OrganizationLike) -> Organization:
        """The picker's view of a ``queries.orgs`` row (OrganizationInfo or OrganizationRow)."""
        return cls(id=row.id, name=row.name, slug=row.slug, timezone=row.timezone, plan=row.plan)


class _OrganizationLike(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def slug(self) -> str: ...
    @property
    def timezone(self) -> str: ...
    @property
    def plan(self) -> str: ...


# Finds an organization by id (int) or slug (str) on the server, or None.
Lookup = Callable[[int | str], "Organization | None"]


@dataclass(frozen=True, slots=True)
class Filters:
    """The filters in force for this run."""

    organization: Organization
    preset: Preset
    start: dt.date
    end: dt.date
    granularity: Grain
    zone: Zone

    @property
    def organization_id(self) -> int:
        return self.organization.id

    @property
    def utc(self) -> bool:
        return self.zone == "utc"

    @property
    def timezone(self) -> str:
        """The zone dates and times are shown in: the organization's own, or UTC."""
        return "UTC" if self.utc else self.organization.timezone

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def to_url(self) -> dict[str, str]:
        """The URL parameters that reproduce these filters."""
        params = {"org": str(self.organization_id), "range": self.preset}
        if self.preset == "custom":
            params["from"] = self.start.isoformat()
            params["to"] = self.end.isoformat()
        params["grain"] = self.granularity
        params["tz"] = self.zone
        return params

    @property
    def period_label(self) -> str:
        span = f"{self.start:%d %b %Y} – {self.end:%d %b %Y}"
        return span if self.preset == "custom" else f"{PRESETS[self.preset]} ({span})"


@dataclass(slots=True)
class UrlValues:
    """What a URL asks for, already checked; None where it says nothing usable."""

    org: int | None = None
    preset: Preset | None = None
    start: dt.date | None = None
    end: dt.date | None = None
    grain: Grain | None = None
    zone: Zone | None = None
    notices: list[str] = field(default_factory=list)


def today_in(timezone: str, *, now: dt.datetime | None = None) -> dt.date:
    """The calendar date in ``timezone`` (UTC if the name is unknown)."""
    now = now or clock.now()
    try:
        return now.astimezone(zoneinfo.ZoneInfo(timezone)).date()
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return now.astimezone(dt.UTC).date()


def preset_range(preset: Preset, today: dt.date) -> tuple[dt.date, dt.date]:
    """The inclusive dates of a preset ending ``today`` (custom: the last 30 days)."""
    if preset == "7d":
        return today - dt.timedelta(days=6), today
    if preset == "90d":
        return today - dt.timedelta(days=89), today
    if preset == "this_month":
        return today.replace(day=1), today
    if preset == "last_month":
        last = today.replace(day=1) - dt.timedelta(days=1)
        return last.replace(day=1), last
    return today - dt.timedelta(days=29), today


def _single(value: str | Sequence[str] | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value[-1] if value else None


def _parse_date(raw: str, name: str, notices: list[str]) -> dt.date | None:
    try:
        return parse_date(raw, f"{name} date")
    except InvalidInput as exc:
        notices.append(url.notice(name, raw, exc))
        return None


def lookup_in(organizations: Sequence[Organization]) -> Lookup:
    """A :data:`Lookup` over a list (tests, and callers that already hold the rows)."""

    def find(key: int | str) -> Organization | None:
        if isinstance(key, int):
            return next((o for o in organizations if o.id == key), None)
        return next((o for o in organizations if o.slug == key), None)

    return find


def find_on_server(key: int | str) -> Organization | None:
    """The organization with this id (``get_organization``) or slug (the exact match of
    ``search_organizations``), read on the server and cached."""
    if isinstance(key, int):
        info = data.organization(organization_id=key)
        return Organization.of(info) if info is not None else None
    exact = data.organization_search(query=key, limit=1).exact
    return Organization.of(exact) if exact is not None and exact.slug == key else None


def _parse_org(raw: str, find: Lookup, notices: list[str]) -> int | None:
    """An id (ASCII digits, as ``queries.checks.parse_id``) or a slug of an organization."""
    text = raw.strip()
    found: Organization | None = None
    try:
        if text.isascii() and text.isdigit():
            try:
                wanted = parse_id(text, "org")
            except InvalidInput:
                notices.append(
                    url.notice(
                        "org", raw, "not an organization id (a whole number of at most 18 digits)."
                    )
                )
                return None
            found = find(wanted)
        elif len(text) > orgs.MAX_SEARCH:
            # Slugs are looked up with the organization search, which takes this many.
            notices.append(
                url.notice(
                    "org",
                    raw,
                    f"an organization slug in a link can be at most {orgs.MAX_SEARCH} characters.",
                )
            )
            return None
        elif _SLUG.fullmatch(text.lower()):
            # Anything else can only be a slug: compared as text, never converted. Text
            # that cannot be a slug is not sent to the database at all.
            found = find(text.lower())
    except InvalidInput as exc:
        # The lookup refused the value (a slug longer than a search may be): a notice,
        # and the page goes on without it, as for any other value it cannot use.
        notices.append(url.notice("org", raw, exc))
        return None
    if found is None:
        notices.append(url.notice("org", raw, "there is no such organization."))
        return None
    return found.id


def parse_url(
    params: Mapping[str, str | Sequence[str]], organizations: Sequence[Organization] | Lookup
) -> UrlValues:
    """Check the filter parameters of a URL; every unusable value becomes a notice.
    ``organizations`` resolves ``org=``: a list, or a lookup on the server."""
    out = UrlValues()
    notices = out.notices
    raw = {key: _single(params.get(key)) for key in URL_KEYS}
    find = organizations if callable(organizations) else lookup_in(organizations)

    if raw["org"] is not None:
        out.org = _parse_org(raw["org"], find, notices)

    preset = raw["range"]
    if preset is not None:
        if preset in PRESETS:
            out.preset = preset  # type: ignore[assignment]
        else:
            notices.append(url.notice("range", preset, f"use one of {', '.join(PRESETS)}."))
    start = _parse_date(raw["from"], "from", notices) if raw["from"] is not None else None
    end = _parse_date(raw["to"], "to", notices) if raw["to"] is not None else None
    if (raw["from"] is not None or raw["to"] is not None) and out.preset in (None, "custom"):
        if raw["from"] is None or raw["to"] is None:
            notices.append("Ignored the link's dates: give both from and to.")
        elif start is None or end is None:
            pass  # already noticed as not a date
        elif start > end:
            notices.append(f"Ignored the link's dates: from {start} is after to {end}.")
        elif (end - start).days >= MAX_RANGE_DAYS:
            notices.append(
                f"Ignored the link's dates: choose a range of at most {MAX_RANGE_DAYS} days."
            )
        else:
            out.preset, out.start, out.end = "custom", start, end
        if out.preset == "custom" and out.start is None:
            out.preset = None
    elif out.preset == "custom":
        notices.append("Ignored range=custom from the link: it needs from and to dates.")
        out.preset = None

    grain = raw["grain"]
    if grain is not None:
        if grain in GRAINS:
            out.grain = grain
        else:
            notices.append(url.notice("grain", grain, "use day, week or month."))
    zone = raw["tz"]
    if zone is not None:
        if zone in ZONES:
            out.zone = zone
        else:
            notices.append(url.notice("tz", zone, "use org or utc."))
    return out


def to_url(filters: Filters) -> dict[str, str]:
    """The URL parameters that reproduce ``filters``."""
    return filters.to_url()


_SLUG: Final = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")  # as ck_organizations_slug_format


# --------------------------------------------------------------------------- Streamlit


def _apply_url(find: Lookup) -> list[str]:
    """Copy URL values that came from outside this session into the widgets' state
    (:func:`dashboard.url.incoming`, as every page's own keys)."""
    ss = st.session_state
    changed = {key for key in URL_KEYS if url.incoming(URL_SCOPE, key) is not None}
    if not changed:
        return []
    # Read together: "from" and "to" mean something only with "range".
    present = {key: st.query_params.get_all(key) for key in URL_KEYS if key in st.query_params}
    values = parse_url(present, find)
    # Values this session wrote itself carry no news; only changed ones are applied.
    if values.org is not None and "org" in changed:
        ss[K_ORG_ID] = values.org
    if values.preset is not None and changed & {"range", "from", "to"}:
        ss[K_RANGE] = values.preset
        if values.preset == "custom" and values.start is not None and values.end is not None:
            ss[K_FROM], ss[K_TO] = values.start, values.end
    if values.grain is not None and "grain" in changed:
        ss[K_GRAIN] = values.grain
    if values.zone is not None and "tz" in changed:
        ss[K_ZONE] = values.zone
    return values.notices


def _write_url(params: Mapping[str, str]) -> None:
    for key in URL_KEYS:
        url.put(URL_SCOPE, key, params.get(key))


def _chose_organization() -> None:
    """A person picked an organization in the selectbox: that id is the selection now."""
    value = st.session_state.get(K_ORG)
    if isinstance(value, int) and not isinstance(value, bool):
        st.session_state[K_ORG_ID] = value


def _organization_gone(last: object, notices: Sequence[str]) -> NoReturn:
    """The selected organization is no longer in the list: say so, show nothing else,
    and wait for a choice (never switch to another organization silently)."""
    ss = st.session_state
    # Keep the other filters' values through this run, which does not draw them
    # (Streamlit forgets the state of a widget that is not drawn in a run).
    for key in (K_RANGE, K_FROM, K_TO, K_GRAIN, K_ZONE):
        if key in ss:
            ss[key] = ss[key]
    what = (
        f"{last.name} (id {last.id})"
        if isinstance(last, Organization)
        else f"id {ss.get(K_ORG_ID)}"
    )
    st.title("Choose an organization")
    st.warning(
        md(
            f"The organization you had selected, {what}, is no longer in the database "
            "(it was removed, or its id changed). Nothing is shown for it; choose an "
            "organization in the sidebar."
        ),
        icon=":material/domain_disabled:",
    )
    url.toast(notices)
    st.stop()


def _picker_options(
    selected: Organization | None, search: str
) -> tuple[list[int], dict[int, Organization], orgs.OrganizationPage]:
    """The picker's options: the first page of name or slug matches, by name, after the
    exact id or slug match and the selection when they are not among them (the selection
    always shows, whatever the search says)."""
    page = data.organization_search(query=search.strip() or None, limit=PICKER_PAGE)
    matches = [Organization.of(r) for r in page.organizations]
    head = [Organization.of(page.exact)] if page.exact is not None else []
    if selected is not None and all(o.id != selected.id for o in matches):
        head.insert(0, selected)
    by_id: dict[int, Organization] = {}
    for row in (*head, *matches):
        by_id.setdefault(row.id, row)
    return list(by_id), by_id, page


# The session keys of each filter's widgets.
_WIDGET_KEYS: Final[Mapping[FilterName, tuple[str, ...]]] = {
    "org": (K_ORG_SEARCH, K_ORG),
    "range": (K_RANGE, K_FROM, K_TO),
    "grain": (K_GRAIN,),
    "tz": (K_ZONE,),
}


def _keep_values() -> None:
    """Set every filter's value again, in every run, before any widget is drawn.

    For a filter this run does not draw: Streamlit forgets the state of a keyed widget
    that is not drawn in a run, unless the key is set again. For a filter it draws: a
    widget's identity includes its page, so after a page switch the browser draws a new
    widget and, unless the server sends the value with it (which it does only for a
    value set in this run), shows its default ("Last 7 days", the first option) while
    the server holds another; the next click then sent that default back and the
    range changed silently (issue 16). The organization selectbox is set the same way.
    """
    ss = st.session_state
    for keys in _WIDGET_KEYS.values():
        for key in keys:
            if key in ss:
                ss[key] = ss[key]


def sidebar_filters(*, uses: frozenset[FilterName] = ALL_FILTERS) -> Filters:
    """Draw the shared filters in the sidebar and return them; keep the URL in step.

    The organization picker lists the selected organization (read by id) and the first
    matches of its search box, searched on the server; it never loads every
    organization. Filters a page does not use (``uses``) are not drawn; they keep their
    value (for the URL and the next page that uses them). When the selected organization
    is gone, the page shows only that and stops.
    """
    ss = st.session_state
    notices = _apply_url(find_on_server)
    if not isinstance(ss.get(K_ORG_ID), int):
        # A new session: the first by name.
        first = data.organization_search(limit=1).organizations
        if not first:
            raise RuntimeError("there are no organizations (the app checks this first)")
        ss[K_ORG_ID] = first[0].id
    selected: int = ss[K_ORG_ID]
    info = data.organization(organization_id=selected)
    current = Organization.of(info) if info is not None else None
    gone = current is None
    if ss.get(K_RANGE) not in PRESETS:
        ss[K_RANGE] = DEFAULT_PRESET
    if ss.get(K_GRAIN) not in GRAINS:
        ss[K_GRAIN] = DEFAULT_GRAIN
    if ss.get(K_ZONE) not in ZONES:
        ss[K_ZONE] = DEFAULT_ZONE

    sidebar = st.sidebar
    # A filter the page does not use is not drawn at all (a greyed-out control looked
    # like it mattered); its value is kept for the pages that use it and for the URL.
    shown: set[FilterName] = set(uses)
    if gone:
        shown.add("org")  # a choice is needed, whatever the page
    if shown:
        sidebar.header("Filters")
    _keep_values()
    if "org" in shown:
        search = sidebar.text_input(
            "Find an organization",
            key=K_ORG_SEARCH,
            placeholder="name, slug or id",
            help="Searches every organization on the server; the list below shows the "
            f"first {PICKER_PAGE} matches by name.",
            max_chars=200,
        )
        options, by_id, page = _picker_options(current, search or "")
        # The selectbox shows the selection held by id; set before it is drawn, this
        # wins over the label the browser sends back (stale once the organization is
        # renamed).
        ss[K_ORG] = None if gone else selected
        sidebar.selectbox(
            "Organization",
            options=options,
            format_func=lambda i: by_id[i].label if i in by_id else str(i),
            key=K_ORG,
            on_change=_chose_organization,
            placeholder="Choose an organization",
            help="Type in the box above to search every organization by name, slug or id.",
        )
        if page.next is not None:
            sidebar.caption(f"Showing the first {PICKER_PAGE} matches; type more to narrow them.")
        elif search and not page.organizations and page.exact is None:
            sidebar.caption("No organization matches the search.")
    if gone:
        _organization_gone(ss.get(K_ORG_LAST), notices)
    assert current is not None
    organization = current
    ss[K_ORG_LAST] = organization
    zone: Zone = ss[K_ZONE]
    if "tz" in shown:
        zone = sidebar.radio(
            "Time zone",
            options=ZONES,
            format_func=lambda z: (
                f"The organization's ({organization.timezone})" if z == "org" else "UTC"
            ),
            key=K_ZONE,
        )
    # A page across organizations (it has no organization filter) counts its days in the
    # company zone, whichever organization is selected (dashboard.zones).
    day_zone = organization.timezone if zone == "org" else "UTC"
    today = today_in(day_zone if "org" in shown else company_timezone(), now=clock.now())
    preset: Preset = ss[K_RANGE]
    if "range" in shown:
        preset = sidebar.selectbox(
            "Dates", options=list(PRESETS), format_func=PRESETS.__getitem__, key=K_RANGE
        )
    if preset == "custom":
        if not isinstance(ss.get(K_FROM), dt.date) or not isinstance(ss.get(K_TO), dt.date):
            ss[K_FROM], ss[K_TO] = preset_range(DEFAULT_PRESET, today)
        start, end = ss[K_FROM], ss[K_TO]
        if "range" in shown:
            # One above the other: side by side in the sidebar, each box was too narrow
            # for its date.
            start = sidebar.date_input(
                "From", key=K_FROM, min_value=MIN_DATE, max_value=MAX_DATE, format="YYYY-MM-DD"
            )
            end = sidebar.date_input(
                "To", key=K_TO, min_value=MIN_DATE, max_value=MAX_DATE, format="YYYY-MM-DD"
            )
        assert isinstance(start, dt.date) and isinstance(end, dt.date)
        if start > end:
            sidebar.error(f"From ({start}) is after To ({end}); showing {end} only.")
            start = end
        if (end - start).days >= MAX_RANGE_DAYS:
            start = end - dt.timedelta(days=MAX_RANGE_DAYS - 1)
            sidebar.warning(f"Ranges are at most {MAX_RANGE_DAYS} days; showing from {start}.")
    else:
        start, end = preset_range(preset, today)
        # Remember the dates, so switching to "Custom dates" starts from them.
        ss[K_FROM], ss[K_TO] = start, end
        if "range" in shown:
            sidebar.caption(f"{start:%d %b %Y} – {end:%d %b %Y}")
    grain: Grain = ss[K_GRAIN]
    if "grain" in shown:
        grain = sidebar.radio(
            "Granularity",
            options=GRAINS,
            format_func=str.capitalize,
            key=K_GRAIN,
            horizontal=True,
        )

    filters = Filters(
        organization=organization,
        preset=preset,
        start=start,
        end=end,
        granularity=grain,
        zone=zone,
    )
    _write_url(to_url(filters))
    ss[K_CURRENT] = filters
    url.toast(notices)
    return filters


def current() -> Filters:
    """The filters the sidebar drew in this run (pages call this)."""
    filters = st.session_state.get(K_CURRENT)
    if not isinstance(filters, Filters):
        raise RuntimeError("the sidebar filters have not been drawn in this run")
    return filters
