"""The one review-then-confirm flow every write of the dashboard goes through.

A form is checked into a request (``dashboard.actions.check_*``, through
:meth:`WriteFlow.check`; nothing is written, a refusal is shown under the form), the
request waits in the session for confirmation, and the Confirm button's callback
(:meth:`WriteFlow.submit`) makes the change:

- only if the page still shows the organization the request was drafted for;
- once per idempotency key, so "Confirm again" after an unknown outcome is safe;
- every failure ends as a sentence that promises only what is known
  (``ui.describe_write_error``): a refused request goes back to its form, filled in; an
  unavailable database, a busy one or an unknown outcome keep the request and its key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import streamlit as st

from dashboard import ui
from queries.errors import IdempotencyConflict, InvalidInput

_log = logging.getLogger(__name__)


class Drafted(Protocol):
    """What every checked request knows: the organization it was drafted for."""

    @property
    def organization_id(self) -> int: ...

    @property
    def organization_name(self) -> str: ...


R = TypeVar("R", bound=Drafted)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class WriteFlow(Generic[R, T]):
    """One kind of write on one page, and the session keys it keeps its state in."""

    what: str  # "adjustment", "reversal", "limit change": used in sentences
    request_type: type[R]
    flash: str  # the page's flash key (``ui.flash``)
    pending: str  # session key of the request waiting for confirmation
    retry: str  # session key holding the token of a request to "Confirm again"
    apply: Callable[[R], T]  # makes the change (checks the role again)
    succeeded: Callable[[R, T], str]  # the success sentence, Markdown-safe
    token: Callable[[R], object]  # what makes a retry the same request: its key
    form_key: str | None = None  # session key of the form's idempotency key
    restore: Callable[[R], None] | None = None  # fills the form with a request's values

    def request(self) -> R | None:
        """The request waiting for confirmation, if any."""
        request = st.session_state.get(self.pending)
        return request if isinstance(request, self.request_type) else None

    def check(self, fn: Callable[[], R]) -> None:
        """A submitted form: ``fn`` checks it into a request (an ``actions.check_*``
        call), which is kept for confirmation and shown by a rerun; a refusal
        (``InvalidInput``) is shown as its sentence under the form, whose fields keep
        what was typed, and nothing is kept."""
        try:
            request = fn()
        except InvalidInput as exc:
            st.error(ui.describe_write_error(exc), icon=":material/block:")
            return
        self.draft(request)
        st.rerun()

    def draft(self, request: R) -> None:
        """Keep a freshly checked request for confirmation."""
        st.session_state[self.pending] = request
        st.session_state.pop(self.retry, None)

    def again(self, request: R) -> bool:
        """Whether the last attempt at ``request`` ended with its outcome open."""
        return bool(st.session_state.get(self.retry) == self.token(request))

    def buttons(
        self,
        request: R,
        *,
        shown: tuple[int, str],
        label: str,
        again_label: str,
        key: str,
        back: tuple[str, str] | None,
        discard: tuple[str, str],
    ) -> None:
        """The confirmation's buttons, and the warning when the page shows another
        organization than the draft's (then Confirm is disabled and only Discard is
        offered). ``back`` and ``discard`` are (label, widget key); without ``back``,
        the second button discards the draft."""
        here = request.organization_id == shown[0]
        if not here:
            drafted = (request.organization_id, request.organization_name)
            st.warning(
                ui.drafted_elsewhere(self.what, drafted, shown), icon=":material/swap_horiz:"
            )
        confirm, second, _ = st.columns([1, 1, 3])
        confirm.button(
            again_label if here and self.again(request) else label,
            type="primary",
            key=key,
            on_click=self.submit,
            args=shown,
            disabled=not here,
        )
        if here and back is not None:
            second.button(back[0], key=back[1], on_click=self.back)
        else:
            second.button(discard[0], key=discard[1], on_click=self.discard)

    def submit(self, shown_id: int, shown_name: str) -> None:
        """Confirm button: make the pending change if the page still shows the
        organization it was drafted for (``shown_*``: the one shown when the button was
        drawn)."""
        request = self.request()
        if request is None:
            return  # a second click after the first one succeeded: nothing to do
        if request.organization_id != shown_id:
            drafted = (request.organization_id, request.organization_name)
            sentence = ui.drafted_elsewhere(self.what, drafted, (shown_id, shown_name))
            ui.flash(self.flash, "error", f"{sentence} Nothing was changed.")
            return
        try:
            result = self.apply(request)
        except (
            Exception
        ) as exc:  # every failure ends as a sentence that promises only what is known
            _log.warning("%s failed: %r", self.what, exc)
            if ui.keeps_request(exc):
                # Keep the request and its key: confirming again sends the same key,
                # which applies at most once whether or not the first attempt landed.
                st.session_state[self.retry] = self.token(request)
            else:
                self.back()
                if isinstance(exc, IdempotencyConflict) and self.form_key:
                    st.session_state.pop(self.form_key, None)
            ui.flash(self.flash, "error", ui.describe_write_error(exc))
        else:
            self.discard()
            ui.flash(self.flash, "success", self.succeeded(request, result))

    def back(self) -> None:
        """Back (or a refusal): return to the form with the request's values filled in;
        the form keeps its key."""
        request = self.request()
        st.session_state.pop(self.pending, None)
        st.session_state.pop(self.retry, None)
        if request is not None and self.restore is not None:
            self.restore(request)

    def discard(self) -> None:
        """Forget the request; the next form gets a new key."""
        st.session_state.pop(self.pending, None)
        st.session_state.pop(self.retry, None)
        if self.form_key:
            st.session_state.pop(self.form_key, None)
