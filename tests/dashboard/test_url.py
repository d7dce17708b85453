"""The page filters' parsers and the keyset cursor in the URL: strict, and never raising
anything but a sentence (InvalidInput) whatever the text."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import json
import math
import typing
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard import url
from queries.approvals import ApprovalCursor
from queries.audit import AuditCursor
from queries.errors import InvalidInput
from queries.frames import KeysetCursor
from queries.quotas import UtilizationCursor
from queries.usage import LedgerCursor, UsageCursor


def token(values: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("page", "cursor"),
    [
        (2, UsageCursor(1234, 'Acme, Inc. = "quoted" ünïcode', 7)),
        (17, AuditCursor(dt.datetime(2026, 11, 20, 15, 30, 1, 5, tzinfo=dt.UTC), 1, 99)),
        (2, AuditCursor(dt.datetime(2026, 11, 20, 15, 30, tzinfo=dt.UTC), 0, 1, "oldest")),
        (3, UtilizationCursor(1.25, 500, "Zeta", 4, "image")),
        (4, UsageCursor(0, "Zeta", 4, "name_asc")),
        (5, UtilizationCursor(-0.5, 0, "Zeta", 4, "image", "limit_desc")),
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
        token([2, 1, "x", "credits_desc"]),  # too few fields
        token([1, 1, "x", 2, "credits_desc"]),  # page 1 has no cursor
        token([True, 1, "x", 2, "credits_desc"]),  # a boolean for the page
        token([2, "1", "x", 2, "credits_desc"]),  # text for a number
        token([2, 1, "x", 2**70, "credits_desc"]),  # beyond bigint
        token([2, 1, "a\x00b", 2, "credits_desc"]),  # a NUL in the name
        token([2, 1, "x" * 600, 2, "credits_desc"]),  # a name too long
        token([2, 1, "x", 2, "name_desc"]),  # not one of the orders
        token([2, 1, "x", 2]),  # a token from before the orders: no order
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
        [2, "2026-11-20T15:30:00", 1, 2, "newest"],  # no zone
        [2, "1900-01-01T00:00:00+00:00", 1, 2, "newest"],  # out of range
        [2, "yesterday", 1, 2, "newest"],
        [2, 5, 1, 2, "newest"],
    ],
)
def test_a_cursor_time_must_be_a_zoned_time_near_the_data(values: list[object]) -> None:
    with pytest.raises(InvalidInput):
        url.decode_cursor(token(values), AuditCursor)


def test_an_infinite_utilization_is_refused() -> None:
    with pytest.raises(InvalidInput, match="finite"):
        url.decode_cursor(
            raw_token('[2,1e400,1,"x",2,"chat","utilization_desc"]'), UtilizationCursor
        )


@given(st.text(max_size=300))
def test_decoding_any_text_raises_only_a_sentence(raw: str) -> None:
    with contextlib.suppress(InvalidInput):
        url.decode_cursor(raw, AuditCursor)


def raw_token(text: str) -> str:
    """``text`` (any JSON, or not) as an ``after`` token."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


CURSORS = (UsageCursor, AuditCursor, UtilizationCursor, KeysetCursor, ApprovalCursor, LedgerCursor)

# Values of every JSON type, including numbers far outside what the database takes.
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**62, max_value=2**70)
    | st.integers(min_value=-(2**70), max_value=-(2**62))
    | st.floats()
    | st.text(max_size=40)
    | st.sampled_from(["2026-11-20T15:30:00+00:00", "2026-11-20T15:30:00", "\ud800", ""])
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=30,
)


def _in_range(cursor: object) -> None:
    """What a decoded cursor promises the query that gets it."""
    for field in dataclasses.fields(cursor):  # type: ignore[arg-type]
        value = getattr(cursor, field.name)
        if isinstance(value, bool):
            raise AssertionError(f"{field.name} is a boolean")
        if isinstance(value, int):
            low = 1 if field.name == "id" or field.name.endswith("_id") else -(2**63 - 1)
            assert low <= value <= 2**63 - 1, (field.name, value)
        elif isinstance(value, float):
            assert math.isfinite(value), (field.name, value)
        elif isinstance(value, str):
            value.encode("utf-8")  # no lone surrogate reaches the driver
            assert len(value) <= url.MAX_TEXT_FIELD
        else:
            assert isinstance(value, dt.datetime) and value.tzinfo is not None


ZONES: list[dt.tzinfo | None] = [None, dt.UTC, ZoneInfo("Asia/Kathmandu")]


def _near(kind: object) -> st.SearchStrategy[object]:
    """Values for a cursor field of type ``kind``: of its type, often at or past the edges
    of what the database takes, or of any other JSON type."""
    huge = st.integers(min_value=2**62, max_value=2**70)
    own: st.SearchStrategy[object]
    if typing.get_origin(kind) is typing.Literal:
        own = st.integers(min_value=-3, max_value=3) | huge
    elif kind is int:
        own = st.integers() | huge | huge.map(lambda n: -n) | st.sampled_from([0, 2**63 - 1])
    elif kind is float:
        own = st.floats() | huge | st.integers()
    elif kind is str:
        # Short text of any characters, or plain text around the longest allowed.
        own = st.text(max_size=60) | st.text("abc ", min_size=490, max_size=510)
    else:  # a time, with or without a zone, around the range the data can have
        own = st.datetimes(
            min_value=dt.datetime(1990, 1, 1),
            max_value=dt.datetime(2110, 1, 1),
            timezones=st.sampled_from(ZONES),
        ).map(dt.datetime.isoformat)
    # Three times in four its own type (one_of would draw each branch equally often).
    return st.integers(0, 3).flatmap(lambda i: own if i else _JSON)


def _shaped(cursor_type: type) -> st.SearchStrategy[tuple[type, list[object]]]:
    hints = typing.get_type_hints(cursor_type)
    fields = [_near(hints[f.name]) for f in dataclasses.fields(cursor_type)]
    page = st.integers(min_value=-5, max_value=url.MAX_PAGE + 5)  # (any type: see below)
    return st.tuples(st.just(cursor_type), st.tuples(page, *fields).map(list))


@settings(max_examples=300)  # no database: cheap, and most shaped lists are refused
@given(
    st.sampled_from(CURSORS),
    _JSON,
    st.sampled_from(CURSORS).flatmap(_shaped),
)
def test_any_json_in_a_token_is_a_sentence_or_a_cursor_in_the_databases_range(
    cursor_type: type, anything: object, shaped: tuple[type, list[object]]
) -> None:
    # Any JSON at all, and lists shaped like a cursor (a page, then a value for each
    # field: of its type, near or past its edges, or of any other type).
    kind: type[object]
    for kind, values in ((cursor_type, anything), shaped):
        try:
            text = json.dumps(values)
        except ValueError:
            continue
        try:
            number, cursor = url.decode_cursor(raw_token(text), kind)
        except InvalidInput:
            continue
        assert 2 <= number <= url.MAX_PAGE
        _in_range(cursor)


@pytest.mark.parametrize(
    ("cursor_type", "text"),
    [
        # The links of issue 15 that crashed a page, each now a sentence.
        (
            UtilizationCursor,
            "[2," + "9" * 1200 + ',1,"a",1,"chat","utilization_desc"]',
        ),  # OverflowError
        (AuditCursor, "[" * 1400),  # RecursionError
        (UsageCursor, "[" * 1400 + "]" * 1400),
        (AuditCursor, '{"a":' * 1000 + "1" + "}" * 1000),
        (AuditCursor, f'[2,"2026-11-20T15:30:00+00:00",{2**63 - 1},5,"newest"]'),  # source: integer
        (
            AuditCursor,
            f'[2,"2026-11-20T15:30:00+00:00",1,{-(2**63 - 1)},"newest"]',
        ),  # a negative id
        (AuditCursor, '[2,"2026-11-20T15:30:00+00:00",1,0,"newest"]'),
        (UsageCursor, f'[2,{2**63},"x",1,"credits_desc"]'),  # one past bigint
        (
            UsageCursor,
            "[2," + "1" * 5000 + ',"x",1,"credits_desc"]',
        ),  # past Python's own digit limit
        (UsageCursor, '[2,1,"\\ud800",1,"credits_desc"]'),  # a lone surrogate
        (UtilizationCursor, '[2,NaN,1,"a",1,"chat","utilization_desc"]'),
        (UtilizationCursor, '[2,Infinity,1,"a",1,"chat","utilization_desc"]'),
        (UtilizationCursor, '[2,1e400,1,"a",1,"chat","utilization_desc"]'),
        (UtilizationCursor, f'[2,{2**70},1,"a",1,"chat","utilization_desc"]'),
        (UsageCursor, '[2,1,"x",1.5,"credits_desc"]'),  # a fraction for an id
        (UsageCursor, '[2,1,["x"],1,"credits_desc"]'),
        (UsageCursor, '[2,1,{"x":1},1,"credits_desc"]'),
        (UsageCursor, '[2,1,null,1,"credits_desc"]'),
    ],
)
def test_a_crafted_token_is_refused_with_a_sentence(cursor_type: type, text: str) -> None:
    with pytest.raises(InvalidInput):
        url.decode_cursor(raw_token(text), cursor_type)


def test_the_largest_values_the_database_takes_still_read_back() -> None:
    at = dt.datetime(2026, 11, 20, 15, 30, tzinfo=dt.UTC)
    for page, cursor in (
        (url.MAX_PAGE, AuditCursor(at, 0, 2**63 - 1)),
        (2, UsageCursor(-(2**63 - 1), "x" * url.MAX_TEXT_FIELD, 2**63 - 1)),
        (2, UtilizationCursor(1e300, 2**63 - 1, "株式会社", 1, "chat")),
    ):
        assert url.decode_cursor(url.encode_cursor(page, cursor), type(cursor)) == (page, cursor)


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


def test_a_linked_tables_text_is_each_cells_own_whatever_the_string_storage() -> None:
    # What Streamlit sends for a table with links: the display text of every cell and
    # the link colour on the linked column only. The Python-backed strings the table
    # hands Streamlit (for speed) must not change a character of it.
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
    from streamlit.elements.lib.pandas_styler_utils import marshall_styler
    from streamlit.proto.ArrowData_pb2 import ArrowData

    frame = pd.DataFrame(
        {
            "Organization": ["<b>Acme</b>", "**Bold** & co", "=1+1"],
            "Used": [1234, 0, 7],
            "Utilization": [0.8123456789, float("nan"), 1.5],
            "Overage": pd.array([None, 3, None], dtype="Int64"),
        }
    )

    def sent(strings: contextlib.AbstractContextManager[object]) -> tuple[list[list[str]], str]:
        proto = ArrowData()
        with strings:
            marshall_styler(proto, url.link_styler(frame, ["Organization"]), "t")
        shown = convert_arrow_bytes_to_pandas_df(proto.styler.display_values)
        return shown.astype(object).to_numpy().tolist(), proto.styler.styles

    rows, styles = sent(url.styler_strings())
    assert rows == sent(contextlib.nullcontext())[0]
    assert rows == [
        ["<b>Acme</b>", "1234", "0.8123456789", ""],
        ["**Bold** & co", "0", "", "3"],
        ["=1+1", "7", "1.5", ""],
    ]
    assert styles.count(url.LINK_STYLE) == 1
    assert "_col0" in styles and "_col1" not in styles
