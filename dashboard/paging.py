"""The one Previous/Next pager for keyset-paged lists (the usage ranking, the quota table,
the ledger, the most recent generations).

A keyset page is asked for with the cursor of the last row of the page before it, so
going forward pushes the shown page's ``next`` cursor and going back pops one: the
stack of cursors of the pages before the one shown lives in session state under the
page's key. A change of the filters the list belongs to starts it over from the first
page, since the old cursors describe another list.

    pager = paging.Pager("usage", filters=(start, end, plans, search), page_size=50,
                         url_page="usage", cursor_type=UsageCursor)
    page = data.usage_page(..., after=pager.after)
    middle = pager.buttons(next=page.next)
    middle.caption(f"Organizations {pager.first:,}–...")

A list sorted on the server offers a few fixed orders in a "Sort by" box
(:func:`sort_select`, in the URL as ``sort``: :func:`sort_param`) and passes the order
to its pager (``sort=``): a new order starts over, and the cursors carry their order.

With ``url_page`` the shown page is kept in the URL (``after``, :mod:`dashboard.url`): a
link opens the same page of the same list. The cursors of the pages before it are not
in the link, so "previous" from a page opened by a link goes back to the first page.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Final, Generic, TypeVar

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from dashboard import url
from queries.errors import InvalidInput
from queries.frames import TimeSort

C = TypeVar("C")
S = TypeVar("S", bound=str)

PREVIOUS: Final = "← Previous"
NEXT: Final = "Next →"
SORT_LABEL: Final = "Sort by"
OTHER_ORDER: Final = "it is a page of the list in another order than the one chosen."
# Under a list sorted on the server: the table's own header sort would only reorder the
# rows on screen (Streamlit 1.67 has no switch to turn it off per table).
SORT_NOTE: Final = (
    f"Clicking a column header reorders only this page; {SORT_LABEL} orders the list."
)


# The orders of a list by time (the audit trail, the ledger).
TIME_ORDERS: Final[dict[TimeSort, str]] = {
    "newest": "Newest first",
    "oldest": "Oldest first",
}


def sort_param(key: str, orders: Mapping[S, str], *, default: S) -> url.Param[S]:
    """The order of a list in the URL (``sort=<order>``, the default left out), kept in
    session state under ``key``, as :func:`sort_select` draws it."""
    return url.choice_param("sort", key, {order: order for order in orders}, default=default)


def sort_select(key: str, orders: Mapping[S, str], *, default: S) -> S:
    """The "Sort by" box of a list sorted on the server: one of ``orders`` (value ->
    label), kept in session state under ``key`` (and in the URL by :func:`sort_param`
    on the same key)."""
    if st.session_state.get(key) not in orders:
        st.session_state[key] = default
    chosen: S = st.selectbox(SORT_LABEL, list(orders), format_func=orders.__getitem__, key=key)
    return chosen


class Pager(Generic[C]):
    """The cursor stack of one keyset-paged list, and its buttons.

    ``key`` prefixes its session keys (``<key>.cursors``, ``<key>.cursors_for``) and
    its buttons' keys (``<key>.previous``, ``<key>.next``, ``<key>.first``);
    ``filters`` is everything the list depends on (a plain, comparable value);
    ``sort``, the order chosen for a list sorted on the server whose cursors carry their
    order (``cursor.sort``): a change of order starts over like a change of filters, and
    a link's cursor of another order is dropped with a notice, never read in this one.
    """

    def __init__(
        self,
        key: str,
        *,
        filters: Hashable,
        page_size: int,
        url_page: str | None = None,
        cursor_type: type[C] | None = None,
        sort: str | None = None,
    ) -> None:
        self.key = key
        self.page_size = page_size
        self._sort = sort
        self._cursors_key = f"{key}.cursors"
        ss = st.session_state
        filters = (filters, sort)
        if ss.get(f"{key}.cursors_for") != filters or not isinstance(
            ss.get(self._cursors_key), list
        ):
            ss[f"{key}.cursors_for"], ss[self._cursors_key] = filters, []
        if url_page is not None and cursor_type is not None:
            self._follow_url(url_page, cursor_type)

    def _follow_url(self, page: str, cursor_type: type[C]) -> None:
        """A page a link asked for wins (after the filters reset the stack); then the
        page shown goes into the URL."""
        raw = url.incoming(page, "after")
        if raw is None and url.arrived(page) and "after" not in st.query_params:
            st.session_state[self._cursors_key] = []  # a link without a page: the first
        if raw is not None:
            try:
                number, cursor = url.decode_cursor(raw, cursor_type)
                if self._sort is not None and getattr(cursor, "sort", None) != self._sort:
                    # Its rows would be the wrong ones: a position in another order.
                    raise InvalidInput(OTHER_ORDER)
            except InvalidInput as exc:
                # The position the link asked for cannot be used: say so, and show the
                # first page (not whatever page this session showed before).
                url.toast([f"{url.notice('after', raw, exc)} Showing the first page."])
                st.session_state[self._cursors_key] = []
            else:
                # The cursors of the pages in between are unknown (None): "previous"
                # from here goes back to the first page.
                unknown: list[C | None] = [None] * (number - 2)
                st.session_state[self._cursors_key] = [*unknown, cursor]
        cursors = self._cursors
        token = url.encode_cursor(len(cursors) + 1, cursors[-1]) if cursors else None
        url.put(page, "after", token)

    @property
    def _cursors(self) -> list[C | None]:
        cursors: list[C | None] = st.session_state[self._cursors_key]
        return cursors

    @property
    def after(self) -> C | None:
        """The cursor to read the shown page with (None: the first page)."""
        return self._cursors[-1] if self._cursors else None

    @property
    def on_first_page(self) -> bool:
        return not self._cursors

    @property
    def first(self) -> int:
        """The 1-based position of the shown page's first row in the whole list."""
        return len(self._cursors) * self.page_size + 1

    def _forward(self, cursor: C | None) -> None:
        if cursor is not None:
            st.session_state[self._cursors_key] = [*self._cursors, cursor]

    def _back(self) -> None:
        previous = self._cursors[:-1]
        # A page opened by a link does not know the cursors before it.
        st.session_state[self._cursors_key] = (
            previous if all(c is not None for c in previous) else []
        )

    def _to_first(self) -> None:
        st.session_state[self._cursors_key] = []

    def buttons(
        self,
        *,
        next: C | None,
        previous_label: str = PREVIOUS,
        next_label: str = NEXT,
        first_label: str | None = None,
    ) -> DeltaGenerator:
        """Draw "previous" (and, with ``first_label``, "back to the first page") on the
        left and "next" on the right; ``next`` is the shown page's cursor of the page
        after it (None on the last page). Returns the space between them, for a caption.
        """
        if first_label is None:
            previous, middle, following = st.columns([1, 3, 1])
        else:
            first, previous, middle, following = st.columns([1, 1, 3, 1])
            first.button(
                first_label,
                key=f"{self.key}.first",
                on_click=self._to_first,
                disabled=self.on_first_page,
            )
        previous.button(
            previous_label,
            key=f"{self.key}.previous",
            on_click=self._back,
            disabled=self.on_first_page,
        )
        following.button(
            next_label,
            key=f"{self.key}.next",
            on_click=self._forward,
            args=(next,),
            disabled=next is None,
        )
        return middle
