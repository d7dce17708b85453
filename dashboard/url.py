"""A page's own filters in the URL, beside the sidebar's (``dashboard.state``), and links
from a row to another view.

A page declares its filters once, as :class:`Param` (URL key + session key + strict
parser + how the value is written), and calls :func:`apply` before drawing its widgets
and :func:`write` after. The keys, by page (``a,b`` is a list, comma-separated; a value
equal to the default is left out)::

    Overview      user=42                    the drilled-down user (an id of the org's)
                  compare=previous           the timelines overlay the previous period
                  metric=generations         the timeline's metric (credits: left out)
                  after=<cursor>             the page of most recent generations
    Usage review  plan=pro,starter  q=acme   plans and the name/slug search
                  sort=balance_asc           the ranking's order (default credits_desc)
                  compare=previous           the timeline overlays the previous period
                  after=<cursor>             the page of the ranking
    Credits       kind=grant,refund          ledger kinds
                  actor=alice                ledger actor (part of an email)
                  sort=oldest                the ledger's order (default newest)
                  after=<cursor>             the ledger page
                  entry=<id>                 the ledger opened at one entry of the org's
    Quotas        q=acme  plan=pro  type=image,video  status=over,near
                  sort=name_asc              the table's order (default utilization_desc)
                  after=<cursor>             the page of "every organization and type"
                  form=limit                 the limit form first, at the top
    Audit trail   scope=org|all  action=grant  actor=alice
                  sort=oldest                the trail's order (default newest)
                  after=<cursor>             the page of the trail
    Statements    month=2026-10              (``app_pages/statements.py``; without it the
                                             last closed month)

``sort`` is one of the list's fixed orders (:func:`dashboard.paging.sort_param`; the
orders are ``Literal`` types beside each query). ``after`` is the keyset cursor of the
page shown (:class:`dashboard.paging.Pager`), an opaque token: the page's number, the
last row's sort key before it and the order it belongs to, as JSON in base64url; a
token of another order than ``sort`` is dropped with a notice. It is parsed as strictly as any other value, and bounded before it costs
anything: its length before it is decoded, its nesting before it is parsed, each number's
digits, every field's type and the database's range for it (ids positive bigints, other
whole numbers bigints, text short and clean). A token that does not fit is dropped with
a notice and the list shows its first page. A link opened on page
3 shows page 3 (same rows, same numbers); "Previous" from there returns to the first
page, since the cursors of the pages in between are not in the link.

The rules are the sidebar's: every value is parsed strictly, and one that cannot be used
is dropped with a notice (a toast quoting it) and never reaches the database; a value
that differs from what this session last wrote came from outside (a pasted link) and
wins over the session's; otherwise the widgets win and are written back at the end of
the run. A missing key keeps the session's value (the menu clears a page's keys when
switching pages). A page writes only its own keys.

The sidebar's filters (``org``, ``range``, ``from``, ``to``, ``grain``, ``tz``) use the
same machinery (:func:`incoming`, :func:`put`, :func:`notice`, :func:`toast`, under the
scope ``filters``); ``dashboard.state`` parses them together, since ``from`` and ``to``
mean something only with ``range``.

Links (:class:`Link`, :func:`target`, :func:`link`) carry ids and the sidebar's filters,
never customer text. In a table the name itself is the link (:func:`table`): a click
selects the cell, and :func:`follow`, which the app calls before the page runs, switches
to the row's view in the same tab with its URL keys (Streamlit's link columns always
open a new tab). A followed link is the whole view: every value in it wins over the
session's, and the target page's keys it leaves out take their defaults
(:func:`arrived`). Organizations link to their Overview (every role has it: KPIs,
timeline, top users), Quotas rows to Quotas scoped to the organization (``form=limit``
for those who may change limits), and "Adjust" in the usage ranking to Credits (the
adjustment form leads that page). A ledger entry's number links to the Credits page's
ledger opened at that entry (:func:`ledger_entries`: ``entry=<id>`` with its
organization), wherever it is shown. A column whose pages the person may not open stays
plain text. The first page of a person's menu is served at the app's root, so
:func:`href` writes links to it as ``./?...``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import datetime as dt
import json
import math
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, TypeVar
from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from dashboard import auth, navigation
from dashboard.text import md
from queries.checks import check_text, parse_id
from queries.errors import InvalidInput

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler

    from dashboard.state import Filters

T = TypeVar("T")
V = TypeVar("V")

MAX_TEXT: Final = 200  # as the search and actor boxes' max_chars
MAX_TOKEN: Final = 2000  # characters of an ``after`` token
MAX_PAGE: Final = 1_000_000
_WRITTEN: Final = "url._written"  # page -> {key: value} this session wrote last
_FOLLOWED: Final = "url._followed"  # the page a table's link was followed to, last run
_ARRIVED: Final = "url._arrived"  # the page this run opens by a followed link


@dataclass(frozen=True, slots=True)
class Param(Generic[T]):
    """One filter of a page in the URL.

    ``parse`` turns the URL's text into the session value or raises ``InvalidInput``
    (its sentence goes into the notice); ``show`` turns the session value into the
    URL's text, or None to leave the key out (the default value)."""

    key: str
    session_key: str
    parse: Callable[[str], T]
    show: Callable[[Any], str | None]


def _single(values: Sequence[str]) -> str | None:
    return values[-1] if values else None


def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= 40 else raw[:40] + "…")


def notice(key: str, raw: str, why: InvalidInput | str) -> str:
    """The sentence for a dropped URL value (Markdown is escaped where it is shown):
    the value, cut short when long, and why it was dropped."""
    return f"Ignored {key}={_shown(raw)} from the link: {why}"


def _written(page: str) -> dict[str, str]:
    ss = st.session_state
    everything = ss.get(_WRITTEN)
    if not isinstance(everything, dict):
        everything = ss[_WRITTEN] = {}
    mine = everything.get(page)
    if not isinstance(mine, dict):
        mine = everything[page] = {}
    return mine


def incoming(page: str, key: str) -> str | None:
    """The URL's value of ``key`` when it came from outside this session (it differs
    from what the session last wrote for ``page``), else None."""
    if key not in st.query_params:
        return None
    raw = _single(st.query_params.get_all(key))
    if raw is None or raw == _written(page).get(key):
        return None
    return raw


def toast(notices: Sequence[str]) -> None:
    """Show each notice. Toasts are Markdown; a notice quotes what the link said. Shown
    for 10 s, not 4: it is a sentence to read, and a slow first page must not outlive it."""
    for sentence in notices:
        st.toast(md(sentence), icon=":material/link_off:", duration="long")


def arrived(page: str) -> bool:
    """Whether this run opens ``page`` by a link followed from a table (:func:`follow`):
    the link is the whole view, so a key it leaves out takes its default value."""
    return st.session_state.get(_ARRIVED) == page


def apply(page: str, params: Sequence[Param[Any]]) -> list[str]:
    """Before the widgets are drawn: copy the values a link brought into the session
    (checked by each ``parse``); toast and return a notice for each one dropped."""
    notices: list[str] = []
    fresh = arrived(page)
    for param in params:
        raw = incoming(page, param.key)
        if raw is None:
            if fresh and param.key not in st.query_params:
                st.session_state.pop(param.session_key, None)  # the widget's default
            continue
        try:
            st.session_state[param.session_key] = param.parse(raw)
        except InvalidInput as exc:
            notices.append(notice(param.key, raw, exc))
    toast(notices)
    return notices


def put(page: str, key: str, value: str | None) -> None:
    """Write one of ``page``'s keys (None removes it) and remember it as written."""
    if value is None:
        if key in st.query_params:
            del st.query_params[key]
        _written(page).pop(key, None)
        return
    if st.query_params.get_all(key) != [value]:
        st.query_params[key] = value
    _written(page)[key] = value


def write(page: str, params: Sequence[Param[Any]]) -> None:
    """After the widgets are drawn: write their values into the URL."""
    for param in params:
        put(page, param.key, param.show(st.session_state.get(param.session_key)))


# ------------------------------------------------------------------ parsers


def text_param(key: str, session_key: str, what: str) -> Param[str]:
    """Free text (a search, part of an email): at most ``MAX_TEXT`` characters, no
    control characters; it reaches the database only as a bound parameter."""

    def parse(raw: str) -> str:
        return check_text(raw, what, maximum=MAX_TEXT, required=False) or ""

    def show(value: object) -> str | None:
        return value.strip() or None if isinstance(value, str) else None

    return Param(key, session_key, parse, show)


def choices_param(
    key: str, session_key: str, options: Sequence[str], what: str
) -> Param[list[str]]:
    """Any of ``options``, comma-separated (``plan=pro,starter``); an unknown name drops
    the whole value."""
    allowed = tuple(options)

    def parse(raw: str) -> list[str]:
        names = [name.strip() for name in raw.split(",") if name.strip()]
        unknown = [name for name in names if name not in allowed]
        if unknown:
            raise InvalidInput(
                f"{_shown(unknown[0])} is not one of the {what} ({', '.join(allowed)})."
            )
        return [name for name in allowed if name in names]  # in the options' order, once

    def show(value: object) -> str | None:
        if not isinstance(value, list | tuple):
            return None
        chosen = [name for name in allowed if name in value]
        return ",".join(chosen) or None

    return Param(key, session_key, parse, show)


def choice_param(key: str, session_key: str, options: Mapping[str, V], *, default: V) -> Param[V]:
    """One of ``options`` (URL text -> session value); the default is left out."""
    to_url = [(value, text) for text, value in options.items()]

    def parse(raw: str) -> V:
        if raw.strip() not in options:
            raise InvalidInput(f"use one of {', '.join(options)}.")
        return options[raw.strip()]

    def show(value: object) -> str | None:
        if value == default:
            return None
        return next((text for known, text in to_url if known == value), None)

    return Param(key, session_key, parse, show)


def compare_param(session_key: str) -> Param[bool]:
    """``compare=previous``: the page's timelines overlay the previous period (off,
    the default, is left out; any other value is dropped with a notice)."""
    return choice_param("compare", session_key, {"previous": True}, default=False)


def id_param(
    key: str, session_key: str, allowed: Callable[[int], bool], what: str, *, default: int
) -> Param[int]:
    """An id (ASCII digits) that ``allowed`` accepts; ``default`` is left out."""

    def parse(raw: str) -> int:
        wanted = parse_id(raw, what)
        if not allowed(wanted):
            raise InvalidInput(f"there is no such {what} here.")
        return wanted

    def show(value: object) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or value == default:
            return None
        return str(value)

    return Param(key, session_key, parse, show)


# ------------------------------------------------------------------ cursors

C = TypeVar("C")


def encode_cursor(page: int, cursor: object) -> str:
    """``after``'s token: the page number and the fields of a keyset cursor dataclass."""
    values: list[object] = [page]
    for f in dataclasses.fields(cursor):  # type: ignore[arg-type]
        value = getattr(cursor, f.name)
        values.append(value.isoformat() if isinstance(value, dt.datetime) else value)
    raw = json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# What a token may hold, checked before and while it is decoded, so that no token, however
# made, costs more than a short scan or reaches the database out of range: its length
# (MAX_TOKEN, before anything is decoded), its nesting (a flat list: one level), each
# number's digits before it becomes an int, and each field's type and range below.
MAX_DEPTH: Final = 1
MAX_DIGITS: Final = 19  # as many as a bigint has
MAX_TEXT_FIELD: Final = 500
BIGINT: Final = 2**63 - 1  # PostgreSQL bigint (ids, credits, counts)


class _BadToken(ValueError):
    """Raised while decoding: the token is not one this dashboard wrote."""


def _nesting(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON ``text`` (strings skipped), found
    without recursion, so a token of 1,400 ``[`` costs one scan and no stack."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _whole(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_DIGITS:
        raise _BadToken("a number with too many digits")
    return int(digits)


def _no_constant(name: str) -> object:
    raise _BadToken(f"{name} is not a number")


def _whole_in(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"its {name} is not a whole number from {low:,} to {high:,}.")
    return value


def _field(value: object, kind: object, name: str) -> object:
    """One field of a cursor, checked against its declared type and the range the
    database can take: ids are positive bigints, other whole numbers bigints, the values
    of a ``Literal`` those values, numbers finite, text short and clean, times zoned."""
    if typing.get_origin(kind) is Literal:
        allowed = typing.get_args(kind)
        if isinstance(value, bool) or value not in allowed:
            raise InvalidInput(f"its {name} is not one of {', '.join(map(str, allowed))}.")
        return value
    if kind is int:
        if name == "id" or name.endswith("_id"):
            return _whole_in(value, name, 1, BIGINT)
        return _whole_in(value, name, -BIGINT, BIGINT)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInput(f"its {name} is not a number.")
        if isinstance(value, int) and abs(value) > BIGINT:
            raise InvalidInput(f"its {name} is not a finite number.")
        if not math.isfinite(float(value)):
            raise InvalidInput(f"its {name} is not a finite number.")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise InvalidInput(f"its {name} is not text.")
        return check_text(value, name, maximum=MAX_TEXT_FIELD, required=False) or ""
    if kind is dt.datetime:
        if not isinstance(value, str) or len(value) > 40:
            raise InvalidInput(f"its {name} is not a time.")
        try:
            at = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise InvalidInput(f"its {name} is not a time.") from exc
        if at.tzinfo is None or not 2000 <= at.year <= 2100:
            raise InvalidInput(f"its {name} is not a time with a zone in 2000–2100.")
        return at
    raise TypeError(f"cursor field {name} of type {kind!r} cannot be in a URL")


NOT_A_PAGE: Final = "it is not the page of a list copied from this dashboard."


def decode_cursor(raw: str, cursor_type: type[C]) -> tuple[int, C]:
    """The page number and cursor in an ``after`` token, or ``InvalidInput``.

    Whatever the token, this raises nothing else: its length is checked before it is
    decoded, its nesting before it is parsed, every number's digits before it becomes
    an int, and every field against its type and the database's range."""
    text = raw.strip()
    bad = InvalidInput(NOT_A_PAGE)
    if not text or len(text) > MAX_TOKEN or not text.isascii():
        raise bad
    try:
        decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("utf-8")
        if _nesting(decoded) > MAX_DEPTH:
            raise _BadToken("nested too deep")
        values = json.loads(decoded, parse_int=_whole, parse_constant=_no_constant)
    except (binascii.Error, ValueError) as exc:  # _BadToken, JSON and UTF-8 errors too
        raise bad from exc
    fields = dataclasses.fields(cursor_type)  # type: ignore[arg-type]
    if not isinstance(values, list) or len(values) != len(fields) + 1:
        raise bad
    page = values[0]
    if isinstance(page, bool) or not isinstance(page, int) or not 2 <= page <= MAX_PAGE:
        raise bad
    hints = typing.get_type_hints(cursor_type)
    checked = [_field(v, hints[f.name], f.name) for v, f in zip(values[1:], fields, strict=True)]
    return page, cursor_type(*checked)


# -------------------------------------------------------------------- links


@dataclass(frozen=True, slots=True)
class Link:
    """Where a row leads: a page (its ``url_path``) and the URL keys it opens with, ids
    and fixed words only (the sidebar's filters, ``org``, a page's own keys)."""

    page: str
    query: Mapping[str, str]


def may_open(page: str) -> bool:
    """Whether the signed-in person's menu has ``page`` (a ``url_path``)."""
    return page in _menu()


def _menu() -> list[str]:
    return [spec.url_path for spec in navigation.pages_for(auth.current_user())]


def target(page: str, filters: Filters, *, organization_id: int, **extra: str) -> Link:
    """``page`` for one organization, with the sidebar's dates, granularity and zone and
    ``extra`` keys."""
    return Link(page, filters.to_url() | {"org": str(organization_id)} | extra)


def href(to: Link) -> str:
    """``to`` as a relative URL. The first page of the person's menu is served at the
    app's root and has no path of its own (``/overview`` would be "page not found"
    there), so it is linked as ``./``."""
    menu = _menu()
    path = "./" if menu and menu[0] == to.page else to.page
    return f"{path}?{urlencode(dict(to.query))}"


def link(page: str, filters: Filters, *, organization_id: int, **extra: str) -> str:
    """A relative URL of ``page`` for one organization: :func:`target` as :func:`href`."""
    return href(target(page, filters, organization_id=organization_id, **extra))


# --------------------------------------------------------- names that are links

_DRAWN: Final = "url._tables"  # table key -> {column: [Link | None, one per row]}
# A name that opens something looks like a link: the theme's link blue, in light and
# dark themes alike.
LINK_STYLE: Final = "color: #1c83e1"


@dataclass(frozen=True, slots=True)
class Links:
    """The links of one column of a :func:`table`: one per row (None: plain text)
    and what a click opens, for the column's help."""

    targets: Sequence[Link | None]
    help: str


def organizations(
    ids: Iterable[Any], page: str, filters: Filters, help: str, **extra: str
) -> Links:
    """Each row's organization (``ids``, in row order) opening ``page``: :func:`target`."""
    return Links([target(page, filters, organization_id=int(i), **extra) for i in ids], help)


# The Credits page's key of one ledger entry: its ledger opened at that entry.
ENTRY: Final = "entry"
LEDGER_PAGE: Final = "credits"


def ledger_entries(
    organization_ids: Iterable[Any], entry_ids: Iterable[Any], filters: Filters, help: str
) -> Links:
    """Each row's ledger entry (``entry_ids``, in row order, of the organization in
    ``organization_ids`` beside it) opening the Credits page's ledger at that entry
    (``entry=<id>``, :func:`target`); a row without an entry (None, <NA>) stays plain."""
    return Links(
        [
            None
            if entry is None or pd.isna(entry)
            else target(LEDGER_PAGE, filters, organization_id=int(org), **{ENTRY: str(int(entry))})
            for org, entry in zip(organization_ids, entry_ids, strict=True)
        ],
        help,
    )


def link_styler(frame: pd.DataFrame, columns: Sequence[str]) -> Styler:
    """``frame`` styled so that the cells of ``columns`` look like links. Styled, the
    cells' text is the Styler's: each value as itself (str), a missing one blank, never
    escaped into entities (it is drawn as text, not HTML)."""
    return frame.style.format(str, na_rep="").map(lambda _: LINK_STYLE, subset=list(columns))


def styler_strings() -> contextlib.AbstractContextManager[object]:
    """Where a Styler is handed to Streamlit. Streamlit sends its text as a copy of the
    frame cast to strings and filled one column at a time; with pandas' default
    Arrow-backed strings each fill copies the column (20-50 ms for a 50-row table).
    Python-backed strings hold the same text, sent as Arrow ``string`` instead of
    ``large_string``, in a third of the time."""
    return pd.option_context("mode.string_storage", "python")


def table(
    frame: pd.DataFrame,
    *,
    key: str,
    links: Mapping[str, Links],
    column_config: Mapping[str, Any] | None = None,
    selection_mode: Sequence[str] = (),
    where: Any = None,
    **options: Any,
) -> Any:
    """Draw ``frame`` (index reset) as a dataframe whose ``links`` columns are links: a
    click on a name opens its row's :class:`Link` in this tab (:func:`follow`), keeping
    the session, with the target view's filters in the URL, so the address bar can be
    copied from there. A column whose pages the person may not open stays plain text
    (no dead links). The cells stay the dataframe's plain text: a name is never
    Markdown. ``selection_mode`` adds the page's own selections (rows, for details);
    returns the dataframe's event."""
    shown = frame.reset_index(drop=True)
    menu = set(_menu())
    live = {
        column: [t if t is not None and t.page in menu else None for t in links_.targets]
        for column, links_ in links.items()
        if column in shown.columns
    }
    live = {column: targets for column, targets in live.items() if any(targets)}
    config = dict(column_config or {})
    for column in live:
        config[column] = {**config.get(column, {}), "help": links[column].help}
    drawn = st.session_state.setdefault(_DRAWN, {})
    if live:
        drawn[key] = live
    else:
        drawn.pop(key, None)
    modes = [*(["single-cell"] if live else []), *selection_mode]
    styled = link_styler(shown, list(live)) if live else shown
    with styler_strings():
        return (where or st).dataframe(
            styled,
            key=key,
            column_config=config,
            on_select="rerun" if modes else "ignore",
            selection_mode=modes or "multi-row",
            **options,
        )


def _clicked(value: object) -> tuple[int, str] | None:
    """The cell a person selected in a dataframe's state, if one."""
    selection = value.get("selection") if isinstance(value, Mapping) else None
    cells = selection.get("cells") if isinstance(selection, Mapping) else None
    if not isinstance(cells, Sequence) or not cells:
        return None
    cell = cells[-1]
    if not isinstance(cell, Sequence) or len(cell) != 2:
        return None
    row, column = cell
    if isinstance(row, bool) or not isinstance(row, int) or not isinstance(column, str):
        return None
    return row, column


def follow() -> None:
    """Before the page runs (every run): when the last run drew a :func:`table` in
    which a person has just clicked a link cell, open that row's link in this tab
    (``st.switch_page`` with its URL keys) and end this run. The click is cleared
    first, so coming back to the table (or a link to the same page) does not follow it
    again."""
    ss = st.session_state
    ss[_ARRIVED] = ss.pop(_FOLLOWED, None)
    drawn = ss.get(_DRAWN)
    ss[_DRAWN] = {}  # this run's tables say again what their cells open
    if not isinstance(drawn, dict):
        return
    for key, columns in drawn.items():
        cell = _clicked(ss.get(key))
        if cell is None:
            continue
        row, column = cell
        targets = columns.get(column) or []
        to = targets[row] if 0 <= row < len(targets) else None
        if to is None:
            continue
        ss[key] = {"selection": {"rows": [], "columns": [], "cells": []}}
        # As a link opened in a new tab: every value in it wins over the session's
        # (this session wrote none of them), and the keys it leaves out take their
        # defaults on that page (arrived).
        ss[_WRITTEN] = {}
        ss[_FOLLOWED] = to.page
        st.switch_page(navigation.path_of(to.page), query_params=dict(to.query))
