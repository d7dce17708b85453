"""Query plans and statement counts of every read, on 200,000 analysed demo generations.

- Per-organization reads use the compound indexes docs/design.md names and never
  scan ``generations`` (or ``usage_limits``) sequentially.
- Every read issues a fixed number of statements, whatever the organization's size, the
  range or the page size (no N+1).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text

from tests.conftest import DEMO_NOW
from tests.queries.read_functions import CROSS_ORGANIZATION, PER_ORGANIZATION, Context
from tests.statements import recording

GENERATION_INDEXES = {
    "ix_generations_organization_id_created_at",
    "ix_generations_organization_id_user_id_created_at",
    "pk_generations",
}
USAGE_INDEXES = {
    "ix_usage_limits_organization_id_date",
    "uq_usage_limits_organization_id_type_date",
}


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _context(conn: Connection, *, largest: bool, days: int = 30) -> Context:
    org = conn.execute(
        text(
            "SELECT organization_id FROM generations GROUP BY 1 ORDER BY count(*) "
            + ("DESC" if largest else "ASC")
            + " LIMIT 1 OFFSET :skip"
        ),
        {"skip": 0 if largest else 10},
    ).scalar_one()
    user = conn.execute(
        text(
            "SELECT user_id FROM generations WHERE organization_id = :org "
            "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        ),
        {"org": org},
    ).scalar_one()
    end = DEMO_NOW.date()
    return Context(org, user, end - dt.timedelta(days=days - 1), end)


@pytest.fixture(scope="module")
def demo(demo_engine: Engine) -> Iterator[Connection]:
    with demo_engine.connect() as conn:
        yield conn


def test_demo_database_is_big_enough_to_mean_something(demo: Connection) -> None:
    assert demo.execute(text("SELECT count(*) FROM generations")).scalar_one() >= 200_000
    assert (
        demo.execute(
            text("SELECT reltuples FROM pg_class WHERE relname = 'generations'")
        ).scalar_one()
        >= 150_000
    ), "generations has been analysed"


@pytest.mark.parametrize("largest", [True, False], ids=["largest-org", "median-org"])
@pytest.mark.parametrize("name", sorted(PER_ORGANIZATION))
def test_per_organization_reads_use_the_compound_indexes(
    demo: Connection, name: str, largest: bool
) -> None:
    ctx = _context(demo, largest=largest, days=90)
    with recording(demo) as recorded:
        PER_ORGANIZATION[name](demo, ctx)
    assert recorded.count >= 1
    for statement, params in recorded.statements:
        plan = demo.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, params).scalar_one()
        nodes = list(_nodes(plan[0]["Plan"]))
        for node in nodes:
            relation = node.get("Relation Name")
            if relation in ("generations", "usage_limits"):
                assert node["Node Type"] != "Seq Scan", f"{name}: sequential scan of {relation}"
        # Bitmap index scans name no relation, so look at every index the plan uses.
        used = {n["Index Name"] for n in nodes if "Index Name" in n}
        relations = {n.get("Relation Name") for n in nodes}
        if "generations" in relations:
            assert used & GENERATION_INDEXES, f"{name}: generations read without its indexes {used}"
        if "usage_limits" in relations:
            assert used & USAGE_INDEXES, f"{name}: usage_limits read without its indexes {used}"


def _count(conn: Connection, call: Any, ctx: Context) -> int:
    with recording(conn) as recorded:
        call(conn, ctx)
    return recorded.count


@pytest.mark.parametrize("name", sorted({**PER_ORGANIZATION, **CROSS_ORGANIZATION}))
def test_statement_count_does_not_grow_with_rows_users_or_days(demo: Connection, name: str) -> None:
    call = {**PER_ORGANIZATION, **CROSS_ORGANIZATION}[name]
    small = _count(demo, call, _context(demo, largest=False, days=7))
    large = _count(demo, call, _context(demo, largest=True, days=90))
    assert small == large, (
        f"{name}: {small} statements for a small question, {large} for a large one"
    )
    assert large <= 2, f"{name} issues {large} statements"


# The cross-organization reads (migration 0007): consumption from the prefix sums and
# months, never a sum of usage_limits or generations over the range; today's quotas from
# the dates that are today somewhere; the ledger and audit log by their UTC range.
HISTORY = {"generations", "usage_limits", "organization_daily_usage"}
# The demo's ledger and audit log (and any history of plan allowance changes) are small
# enough that a sequential scan can be the cheaper plan; with sequential scans priced
# out, an index must serve their ranges.
SMALL_HISTORY = {"credit_ledger", "audit_log", "plan_allowance_changes"}
# The ranking and the trend read the kept edges (migration 0025), and through
# usage_before() the running totals for an edge that is not kept.
ROLLUP_READS = {
    "usage.all_orgs_usage": "usage_edges",
    "usage.all_orgs_usage_page": "usage_edges",
    "usage.all_orgs_usage_page[balance_asc]": "usage_edges",
    "usage.all_orgs_monthly_credits": "usage_edges",
}


def _plans(conn: Connection, call: Any, ctx: Context) -> list[list[dict[str, Any]]]:
    with recording(conn) as recorded:
        call(conn, ctx)
    plans = []
    for statement, params in recorded.statements:
        plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, params).scalar_one()
        plans.append(list(_nodes(plan[0]["Plan"])))
    return plans


def _sequential_scans(plans: list[list[dict[str, Any]]], relations: set[str]) -> set[str]:
    return {
        node["Relation Name"]
        for nodes in plans
        for node in nodes
        if node["Node Type"] == "Seq Scan" and node.get("Relation Name") in relations
    }


@pytest.mark.parametrize("days", [7, 30])
@pytest.mark.parametrize("name", sorted(CROSS_ORGANIZATION))
def test_cross_organization_reads_do_not_scan_history(
    demo: Connection, name: str, days: int
) -> None:
    ctx = _context(demo, largest=True, days=days)
    plans = _plans(demo, CROSS_ORGANIZATION[name], ctx)
    assert not _sequential_scans(plans, HISTORY), f"{name} scans history"
    for nodes in plans:
        relations = {n.get("Relation Name") for n in nodes}
        assert "generations" not in relations, f"{name} aggregates raw generations"
        if name in ROLLUP_READS:
            assert ROLLUP_READS[name] in relations, f"{name} does not read its rollup"
            assert "usage_limits" not in relations, f"{name} sums usage_limits over the range"
    demo.exec_driver_sql("SET enable_seqscan = off")
    try:
        priced_out = _plans(demo, CROSS_ORGANIZATION[name], ctx)
    finally:
        demo.exec_driver_sql("RESET enable_seqscan")
    assert not _sequential_scans(priced_out, SMALL_HISTORY), f"{name}: no index serves its range"


def test_low_runway_reads_only_the_grants_that_expire_within_its_window(
    demo: Connection,
) -> None:
    # Burning or idle, an organization's grants are walked only when one of them expires
    # within the window: a range of the due-grants index finds them, not a read of every
    # grant (nor of every grant with an expiry). Sequential scans priced out: the demo's
    # grants are few enough that one could be the cheaper plan.
    ctx = _context(demo, largest=True)
    demo.exec_driver_sql("SET enable_seqscan = off")
    try:
        (nodes,) = _plans(demo, CROSS_ORGANIZATION["forecast.low_runway"], ctx)
    finally:
        demo.exec_driver_sql("RESET enable_seqscan")
    assert not _sequential_scans([nodes], {"credit_grants"})
    windows = [
        node["Index Cond"]
        for node in nodes
        if node.get("Index Name") == "ix_credit_grants_due" and "Index Cond" in node
    ]
    assert any("expires_at >" in cond and "expires_at <=" in cond for cond in windows), windows
