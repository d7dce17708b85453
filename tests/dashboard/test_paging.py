"""The keyset pager every paged list uses (``dashboard.paging.Pager``), on a list of 35
numbers in pages of 10, where a page's cursor is the first number after it."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.dashboard.apptest import plain


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
    at = AppTest.from_function(_script, default_timeout=30).run()
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
    at = AppTest.from_function(_script, default_timeout=30).run()
    at.button(key="numbers.next").click().run()
    assert shown(at) == "11: 10-19"
    at.text_input[0].input("another").run()
    assert shown(at) == "1: 0-9"
    assert disabled(at)["previous"]
    # And the same filters again keep their place.
    at.button(key="numbers.next").click().run()
    at.run()
    assert shown(at) == "11: 10-19"


def _sorted_script() -> None:
    """35 organizations "00".."34" whose credits are their number, in two orders, with
    the order and the page in the URL (cursors of the usage ranking)."""
    import streamlit as st

    from dashboard import paging, url
    from queries.usage import UsageCursor, UsageSort

    orders: dict[UsageSort, str] = {"credits_desc": "Most first", "name_asc": "A to Z"}
    params = (paging.sort_param("numbers.sort", orders, default="credits_desc"),)
    url.apply("numbers", params)
    sort = paging.sort_select("numbers.sort", orders, default="credits_desc")
    url.write("numbers", params)
    pager: paging.Pager[UsageCursor] = paging.Pager(
        "numbers",
        filters="all",
        page_size=10,
        url_page="numbers",
        cursor_type=UsageCursor,
        sort=sort,
    )

    def key(i: int) -> tuple[int, str, int]:
        return (-i if sort == "credits_desc" else 0, f"{i:02d}", i + 1)

    rows = sorted(range(35), key=key)
    after = pager.after
    if after is not None:
        rows = [i for i in rows if key(i) > (after.key, after.name, after.organization_id)]
    page = rows[:10]
    last_key, last_name, last_id = key(page[-1])
    following = UsageCursor(last_key, last_name, last_id, sort) if len(rows) > 10 else None
    st.text(f"{pager.first}: {page[0]}-{page[-1]}")
    pager.buttons(next=following)


def _link(at: AppTest) -> AppTest:
    """A new session opened with ``at``'s URL."""
    opened = AppTest.from_function(_sorted_script, default_timeout=30)
    for name in ("sort", "after"):
        if name in at.query_params:
            opened.query_params[name] = at.query_params[name]
    return opened


def test_a_new_order_starts_again_from_the_first_page_and_is_kept_in_the_url() -> None:
    at = AppTest.from_function(_sorted_script, default_timeout=30).run()
    at.button(key="numbers.next").click().run()
    assert shown(at) == "11: 24-15"
    assert "sort" not in at.query_params  # the default order is left out
    at.selectbox(key="numbers.sort").set_value("name_asc").run()
    assert shown(at) == "1: 0-9"
    assert at.query_params["sort"] == "name_asc" and "after" not in at.query_params
    at.button(key="numbers.next").click().run()
    at.button(key="numbers.next").click().run()
    assert shown(at) == "21: 20-29"
    # A link opens the same page in the same order.
    opened = _link(at).run()
    assert shown(opened) == "21: 20-29"
    assert opened.selectbox(key="numbers.sort").value == "name_asc"
    assert not opened.toast and not opened.exception


def test_a_page_of_another_order_in_a_link_is_dropped_with_a_notice() -> None:
    at = AppTest.from_function(_sorted_script, default_timeout=30)
    at.query_params["sort"] = "name_asc"
    at.run()
    at.button(key="numbers.next").click().run()
    assert shown(at) == "11: 10-19"
    # The same page token with the default order: its rows would be the wrong ones.
    opened = AppTest.from_function(_sorted_script, default_timeout=30)
    opened.query_params["after"] = at.query_params["after"]
    opened.run()
    assert shown(opened) == "1: 34-25"
    assert any("another order" in plain(str(t.value)) for t in opened.toast)
    assert "after" not in opened.query_params


def test_an_unknown_order_in_a_link_is_dropped_with_a_notice() -> None:
    at = AppTest.from_function(_sorted_script, default_timeout=30)
    at.query_params["sort"] = "cheapest"
    at.run()
    assert shown(at) == "1: 34-25"
    assert any("Ignored sort='cheapest'" in plain(str(t.value)) for t in at.toast)
    assert "sort" not in at.query_params
