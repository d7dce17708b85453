"""Customer and staff text is data on every page: titles, pickers, tables and
confirmations show it as typed (never Markdown or HTML), and every CSV download is
neutralised for spreadsheets while numbers stay numbers."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import streamlit as st
from sqlalchemy import Engine, text
from streamlit.delta_generator import DeltaGenerator
from streamlit.testing.v1 import AppTest

from dashboard.exports import FORMULA_START
from dashboard.text import md
from tests.dashboard.apptest import make_app, open_page, table_with
from tests.dashboard.hostile import (
    FORMULAS,
    MARKUP,
    add_hostile_books,
    add_hostile_plan_changes,
    rename,
)
from tests.dashboard.shown import readable, shown

IMAGE = "![x](http://127.0.0.1:9/p.png)"
PAGES = ("overview", "usage", "credits", "quotas", "audit")
TITLES = {"overview": "Overview · ", "credits": "Credits · "}


def orgs(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [
            int(i) for i in conn.execute(text("SELECT id FROM organizations ORDER BY id")).scalars()
        ]


@pytest.fixture
def hostile(
    fresh_url: str, fresh_engine: Engine, use_database: Callable[[str], None]
) -> Iterator[dict[str, int]]:
    """Organizations named with Markdown, an image and formulas; books full of formulas."""
    use_database(fresh_url)
    ids = orgs(fresh_engine)
    rename(fresh_engine, ids[0], MARKUP)
    rename(fresh_engine, ids[1], IMAGE)
    for org, formula in zip(ids[2:], FORMULAS, strict=False):
        rename(fresh_engine, org, formula)
    add_hostile_books(fresh_engine, ids[0])
    add_hostile_plan_changes(fresh_engine)
    yield {"markup": ids[0], "image": ids[1], "formula": ids[2]}


def capture_every_download(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """file name -> bytes of every download button drawn from now on, including those
    whose data is made on click (a callable: AppTest has no runtime to defer it to)."""
    offered: dict[str, bytes] = {}
    original = DeltaGenerator.download_button

    def download_button(self: DeltaGenerator, label: str, data: Any, *a: Any, **kw: Any) -> Any:
        content = data() if callable(data) else data
        name = kw.get("file_name") or "unnamed"
        offered[name] = content.encode() if isinstance(content, str) else content
        return original(self, label, data, *a, **kw)

    monkeypatch.setattr(DeltaGenerator, "download_button", download_button)
    # st.download_button is bound to the main area when Streamlit is imported.
    main = st.download_button.__self__  # type: ignore[attr-defined]
    monkeypatch.setattr(st, "download_button", lambda *a, **kw: download_button(main, *a, **kw))
    return offered


def page(org: int, name: str, *, role: str = "admin") -> AppTest:
    at = make_app(role=role, email=f"{role}@example.com", query={"org": str(org)})
    return open_page(at, name)


def cells(data: bytes) -> tuple[list[str], list[list[str]]]:
    header, *rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
    return header, rows


def test_every_download_on_every_page_is_neutralised_and_numbers_stay_numbers(
    hostile: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    downloads = capture_every_download(monkeypatch)
    for name in ("usage", "credits", "audit"):
        at = page(hostile["markup"], name)
        assert not at.exception, name
        if name == "usage":  # the timeline across organizations, read when asked
            at.toggle(key="usage.timeline").set_value(True).run()
            assert not at.exception
    assert {n.split("_")[0] for n in downloads} == {
        "usage",
        "low-runway",
        "timeline",
        "ledger",
        "grants",
        "audit",
        "plan-allowance-changes",
    }, list(downloads)
    numeric = {
        "Rank",
        "Generations",
        "Credits consumed",
        "Credits granted",
        "Balance",
        "Entry",
        "Amount",
        "Balance after",
        "Credits",
        "Daily burn",
        "Runway (days)",
        "Expires unused",
        "Grant",
        "Remaining",
        "Used",
        "Expired",
        "Priority",
        "Ledger entry",
    }
    seen: set[str] = set()
    for file_name, data in downloads.items():
        header, rows = cells(data)
        assert rows, file_name
        for row in rows:
            for column, cell in zip(header, row, strict=True):
                if column in numeric:
                    assert cell == "" or float(cell) == float(cell), (file_name, column, cell)
                    continue
                assert not cell.startswith(FORMULA_START), (file_name, column, cell)
                if cell.startswith("'"):
                    seen.add(cell[1:])
    # Every formula came through, quoted: as organization names (usage), and as
    # reasons, notes and actors (ledger, audit trail, plan allowance changes).
    assert set(FORMULAS) <= seen, set(FORMULAS) - seen
    plans = next(d for n, d in downloads.items() if n.startswith("plan-allowance-changes"))
    header, rows = cells(plans)
    for column in ("Actor", "Reason"):
        assert {row[header.index(column)] for row in rows} == {"'" + f for f in FORMULAS}
    ledger = next(d for n, d in downloads.items() if n.startswith("ledger"))
    header, rows = cells(ledger)
    amounts = [int(row[header.index("Amount")]) for row in rows]
    assert set(range(1, 7)) <= set(amounts)
    usage = next(d for n, d in downloads.items() if n.startswith("usage"))
    header, rows = cells(usage)
    assert all(int(row[header.index("Generations")]) >= 0 for row in rows)
    names = {row[header.index("Organization")] for row in rows}
    assert {"'" + formula for formula in FORMULAS} <= names


@pytest.mark.parametrize("name", [MARKUP, IMAGE])
def test_names_show_literally_in_titles_pickers_tables_and_messages(
    hostile: dict[str, int], name: str
) -> None:
    org = hostile["markup"] if name == MARKUP else hostile["image"]
    for page_name, prefix in TITLES.items():
        at = page(org, page_name)
        assert not at.exception
        (title,) = at.title
        assert title.value == prefix + md(name)  # every punctuation character escaped
        assert readable(title.value) == prefix + name
        picker = at.selectbox(key="filters.org")
        assert any(option.startswith(name + " · ") for option in picker.options)
    at = page(org, "usage")
    assert name in set(table_with(at, "Organization")["Organization"])
    at = page(org, "audit")
    scope = at.radio(key="audit.scope")
    assert md(name) in scope.options  # radio options are Markdown: escaped
    at = page(org, "quotas")
    assert any(readable(s.value) == f"Quota history · {name}" for s in at.subheader)


def test_a_confirmation_and_its_messages_show_the_name_literally(
    hostile: dict[str, int], fresh_engine: Engine
) -> None:
    org = hostile["markup"]
    at = page(org, "credits")
    at.text_input(key="credits.amount").input("25")
    at.selectbox(key="credits.reason").set_value("Promotion")
    at.text_area(key="credits.note").input("**not bold** <i>x</i> [l](http://127.0.0.1:9)")
    next(b for b in at.button if b.label == "Review adjustment").click()
    at.run()
    question = next(m.value for m in at.markdown if m.value.startswith("**Grant"))
    assert f"to {md(MARKUP)}?**" in question
    assert readable(question).endswith("Note: **not bold** <i>x</i> [l](http://127.0.0.1:9)")
    next(b for b in at.button if b.label.startswith("Confirm")).click()
    at.run()
    (success,) = shown(at, "success")
    assert f"Granted 25 credits to {MARKUP}." in success
