"""The review-then-confirm flow's first step (``WriteFlow.check``), on a one-field form:
a refused form shows its sentence and drafts nothing; a checked one is drafted once and
shown for confirmation."""

from __future__ import annotations

from dataclasses import dataclass

from streamlit.testing.v1 import AppTest

from dashboard import ui
from queries.errors import InvalidInput
from tests.dashboard.apptest import plain_texts

REFUSAL = "Enter a whole number of credits."


@dataclass(frozen=True, slots=True)
class Ask:
    organization_id: int
    organization_name: str
    amount: int


def check_ask(amount: object) -> Ask:
    """The form's check: a whole number, or ``InvalidInput``."""
    if not isinstance(amount, str) or not amount.isdigit():
        raise InvalidInput(REFUSAL)
    return Ask(organization_id=7, organization_name="Acme", amount=int(amount))


def _script() -> None:
    import streamlit as st

    from dashboard.confirm import WriteFlow
    from tests.dashboard.test_confirm import Ask, check_ask

    flow = WriteFlow(
        what="test",
        request_type=Ask,
        flash="test",
        pending="test.pending",
        retry="test.retry",
        apply=lambda request: request.amount,
        succeeded=lambda request, amount: f"Done: {amount}",
        token=lambda request: request.amount,
    )
    request = flow.request()
    if request is not None:
        st.text(f"Confirm {request.amount}?")
        return
    st.text_input("Amount", key="test.amount")
    if st.button("Review", key="test.review"):

        def checked() -> Ask:
            st.session_state["test.checks"] = st.session_state.get("test.checks", 0) + 1
            return check_ask(st.session_state.get("test.amount"))

        flow.check(checked)


def test_a_refused_form_shows_its_sentence_keeps_what_was_typed_and_drafts_nothing() -> None:
    at = AppTest.from_function(_script).run()
    at.text_input(key="test.amount").input("1.5")
    at.button(key="test.review").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [ui.describe_write_error(InvalidInput(REFUSAL))]
    assert REFUSAL in plain_texts(at, "error")[0]
    assert "test.pending" not in at.session_state
    assert at.text_input(key="test.amount").value == "1.5"


def test_a_checked_form_is_drafted_once_and_shown_for_confirmation() -> None:
    at = AppTest.from_function(_script).run()
    at.session_state["test.retry"] = 99  # a "Confirm again" left from an earlier request
    at.text_input(key="test.amount").input("1500")
    at.button(key="test.review").click().run()
    assert not at.exception and not at.error
    assert at.session_state["test.checks"] == 1  # the rerun does not check it again
    assert at.session_state["test.pending"] == Ask(7, "Acme", 1500)
    assert "test.retry" not in at.session_state
    # The same run ended by drawing the confirmation: the draft reran the page.
    assert [t.value for t in at.text] == ["Confirm 1500?"]
