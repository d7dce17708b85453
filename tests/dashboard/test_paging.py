"""The keyset pager every paged list uses (``dashboard.paging.Pager``), on a list of 35
numbers in pages of 10, where a page's cursor is the first number after it."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def _script() -> None:
    import streamlit as st

    from dashboard import paging

    filters = st.text_input("Filter", value="all")
    pager: paging.Pager[int] = paging.Pager("numbers", filters=filters, page_size=10)
    start = pager.after or 0
    rows = list(range(start, min(start + 10, 35)))
    following = rows[-1] + 1 if rows[-1] + 1 < 35 else None
    st.text(f"{pager.first}: {rows[0]}-{rows[-1]}")
    pager.buttons(next=following, first_label="First").caption("where")


def shown(at: AppTest) -> str:
    return str(at.text[0].value)


def disabled(at: AppTest) -> dict[str, bool]:
    return {
        name: at.button(key=f"numbers.{name}").disabled for name in ("first", "previous", "next")
    }


def test_the_pager_goes_forward_back_and_to_the_first_page() -> None:
    at = AppTest.from_function(_script).run()
    assert shown(at) == "1: 0-9"
    assert disabled(at) == {"first": True, "previous": True, "next": False}
    at.button(key="numbers.next").click().run()
    at.button(key="numbers.next").click().run()
    assert shown(at) == "21: 20-29"
    assert disabled(at) == {"first": False, "previous": False, "next": False}
    at.button(key="numbers.previous").click().run()
    assert shown(at) == "11: 10-19"
    at.button(key="numbers.next").click().run()
    at.button(key="numbers.next").click().run()
    assert shown(at) == "31: 30-34"
    assert disabled(at)["next"], "the last page has no next"
    at.button(key="numbers.first").click().run()
    assert shown(at) == "1: 0-9"
    assert not at.exception


def test_new_filters_start_again_from_the_first_page() -> None:
    at = AppTest.from_function(_script).run()
    at.button(key="numbers.next").click().run()
    assert shown(at) == "11: 10-19"
    at.text_input[0].input("another").run()
    assert shown(at) == "1: 0-9"
    assert disabled(at)["previous"]
    # And the same filters again keep their place.
    at.button(key="numbers.next").click().run()
    at.run()
    assert shown(at) == "11: 10-19"
