"""The page filters' parsers and the keyset cursor in the URL: strict, and never raising
anything but a sentence (InvalidInput) whatever the text."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dashboard import url
from queries.audit import AuditCursor
from queries.errors import InvalidInput
from queries.quotas import UtilizationCursor
from queries.usage import UsageCursor


def token(values: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("page", "cursor"),
    [
        (2, UsageCursor(1234, 'Acme, Inc. = "quoted" ünïcode', 7)),
        (17, AuditCursor(dt.datetime(2026, 11, 20, 15, 30, 1, 5, tzinfo=dt.UTC), 1, 99)),
        (3, UtilizationCursor(1.25, 500, "Zeta", 4, "image")),
    ],
)
def test_a_cursor_reads_back_the_same(page: int, cursor: object) -> None:
    raw = url.encode_cursor(page, cursor)
    assert raw.isascii() and "=" not in raw and "&" not in raw
    assert url.decode_cursor(raw, type(cursor)) == (page, cursor)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "!!!",
        "é",
        token([2, 1, "x"]),  # too few fields
        token([1, 1, "x", 2]),  # page 1 has no cursor
        token([True, 1, "x", 2]),  # a boolean for the page
        token([2, "1", "x", 2]),  # text for a number
        token([2, 1, "x", 2**70]),  # beyond bigint
        token([2, 1, "a\x00b", 2]),  # a NUL in the name
        token([2, 1, "x" * 600, 2]),  # a name too long
        token({"page": 2}),
        "A" * 3000,
    ],
)
def test_a_bad_cursor_is_refused_with_a_sentence(raw: str) -> None:
    with pytest.raises(InvalidInput, match=r"not the page of a list|its |too long|contains"):
        url.decode_cursor(raw, UsageCursor)


@pytest.mark.parametrize(
    "values",
    [
        [2, "2026-11-20T15:30:00", 1, 2],  # no zone
        [2, "1900-01-01T00:00:00+00:00", 1, 2],  # out of range
        [2, "yesterday", 1, 2],
        [2, 5, 1, 2],
    ],
)
def test_a_cursor_time_must_be_a_zoned_time_near_the_data(values: list[object]) -> None:
    with pytest.raises(InvalidInput):
        url.decode_cursor(token(values), AuditCursor)


def test_an_infinite_utilization_is_refused() -> None:
    with pytest.raises(InvalidInput, match="finite"):
        url.decode_cursor(token([2, 1e999, 1, "x", 2, "chat"]), UtilizationCursor)


@given(st.text(max_size=300))
def test_decoding_any_text_raises_only_a_sentence(raw: str) -> None:
    with contextlib.suppress(InvalidInput):
        url.decode_cursor(raw, AuditCursor)


def test_choices_keep_the_options_order_and_refuse_unknown_names() -> None:
    param = url.choices_param("plan", "k", ("free", "starter", "pro"), "plans")
    assert param.parse("pro, free") == ["free", "pro"]
    assert param.show(["pro", "free"]) == "free,pro"
    assert param.show([]) is None
    with pytest.raises(InvalidInput, match="not one of the plans \\(free, starter, pro\\)"):
        param.parse("pro,gold")


def test_text_is_checked_and_blank_is_left_out() -> None:
    param = url.text_param("q", "k", "search")
    assert param.parse("  acme ") == "acme"
    assert param.show("  ") is None
    with pytest.raises(InvalidInput, match="too long"):
        param.parse("x" * 201)
    with pytest.raises(InvalidInput, match="control character"):
        param.parse("a\nb")


def test_ids_must_be_digits_the_page_knows() -> None:
    param = url.id_param("user", "k", {4, 5}.__contains__, "user", default=0)
    assert param.parse("4") == 4 and param.show(4) == "4" and param.show(0) is None
    for raw in ("6", "-4", "4.0", "0x4", "٤"):
        with pytest.raises(InvalidInput):
            param.parse(raw)


def test_a_choice_maps_url_words_to_session_values() -> None:
    param = url.choice_param("scope", "k", {"all": "all", "org": "one"}, default="all")
    assert param.parse("org") == "one" and param.show("one") == "org"
    assert param.show("all") is None
    with pytest.raises(InvalidInput, match="use one of all, org"):
        param.parse("one")
