"""queries.audit: plan allowance changes, the part of the audit trail that belongs to no
organization (``plan_allowance_changes``, migration 0022), read beside the trail with
its range, actor filter, orders and keyset pages.

Rows are written as the owner with fixed times (``created_at`` is the database's clock
for the app), so no test depends on the wall clock; the one that goes through
``set_plan_allowance`` reads back the day its own change was recorded on.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text

from queries import audit
from queries.allowances import set_plan_allowance
from queries.errors import InvalidInput
from tests.statements import recording

UTC = dt.UTC
D = dt.date
NOON = dt.datetime(2030, 7, 1, 12, tzinfo=UTC)
_counter = itertools.count(1)
_INSERT = text(
    """
    INSERT INTO plan_allowance_changes
        (plan, monthly_allowance, rollover_cap, old_monthly_allowance, old_rollover_cap,
         actor, reason, idempotency_key, created_at)
    VALUES (:plan, :allowance, :cap, :old_allowance, :old_cap, :actor, :reason, :key, :at)
    RETURNING id
    """
)


def add_change(
    conn: Connection,
    *,
    plan: str,
    at: dt.datetime,
    actor: str = "ada@admin.example",
    reason: str = "New price list",
    old: tuple[int, int] = (100_000, 50_000),
    new: tuple[int, int] = (120_000, 60_000),
) -> int:
    """A plan allowance change recorded at ``at`` (as the owner: the app cannot date one)."""
    return int(
        conn.execute(
            _INSERT,
            {
                "plan": plan,
                "allowance": new[0],
                "cap": new[1],
                "old_allowance": old[0],
                "old_cap": old[1],
                "actor": actor,
                "reason": reason,
                "key": f"test-{next(_counter)}-{uuid.uuid4()}",
                "at": at,
            },
        ).scalar_one()
    )


def reasons(page: audit.PlanChangePage) -> list[str]:
    return [change.reason for change in page.rows]


def test_every_plans_changes_in_the_range_newest_first_with_who_why_and_the_values(
    connection: Connection,
) -> None:
    add_change(connection, plan="pro", at=NOON - dt.timedelta(days=2), reason="Before")
    add_change(
        connection,
        plan="pro",
        at=NOON,
        actor="ada@admin.example",
        reason="2031 price list",
        old=(100_000, 50_000),
        new=(120_000, 60_000),
    )
    add_change(
        connection,
        plan="free",
        at=NOON + dt.timedelta(hours=1),
        actor="bo@admin.example",
        reason="Correction",
        old=(1_000, 0),
        new=(1_500, 0),
    )
    add_change(connection, plan="starter", at=NOON + dt.timedelta(days=2), reason="After")

    page = audit.plan_allowance_changes_page(connection, start=NOON.date(), end=NOON.date())

    assert page.next_cursor is None
    newest, oldest = page.rows
    assert (newest.plan, newest.actor, newest.reason, newest.created_at) == (
        "free",
        "bo@admin.example",
        "Correction",
        NOON + dt.timedelta(hours=1),
    )
    assert (newest.old_monthly_allowance, newest.monthly_allowance) == (1_000, 1_500)
    assert (newest.old_rollover_cap, newest.rollover_cap) == (0, 0)
    assert (oldest.plan, oldest.reason) == ("pro", "2031 price list")
    assert (oldest.old_monthly_allowance, oldest.monthly_allowance) == (100_000, 120_000)
    assert (oldest.old_rollover_cap, oldest.rollover_cap) == (50_000, 60_000)
    oldest_first = audit.plan_allowance_changes_page(
        connection, start=NOON.date(), end=NOON.date(), sort="oldest"
    )
    assert reasons(oldest_first) == ["2031 price list", "Correction"]


def test_the_range_is_the_days_of_the_zone_asked_for(connection: Connection) -> None:
    """A change at 23:30 UTC on 1 June is on 2 June in Kolkata (+5:30) and on 1 June in
    New York (-4), as the rest of the trail."""
    add_change(connection, plan="pro", at=dt.datetime(2030, 6, 1, 23, 30, tzinfo=UTC))

    def on(day: dt.date, zone: str) -> int:
        page = audit.plan_allowance_changes_page(connection, start=day, end=day, timezone=zone)
        return len(page.rows)

    assert (on(D(2030, 6, 1), "UTC"), on(D(2030, 6, 2), "UTC")) == (1, 0)
    assert (on(D(2030, 6, 1), "Asia/Kolkata"), on(D(2030, 6, 2), "Asia/Kolkata")) == (0, 1)
    assert (on(D(2030, 6, 1), "America/New_York"), on(D(2030, 6, 2), "America/New_York")) == (
        1,
        0,
    )


def test_the_actor_filter_is_part_of_an_email_whatever_its_case_and_wildcards(
    connection: Connection,
) -> None:
    add_change(connection, plan="pro", at=NOON, actor="ada@admin.example", reason="Ada's")
    add_change(connection, plan="pro", at=NOON, actor="bo_b@admin.example", reason="Bo's")
    day = NOON.date()

    def by(actor: str | None) -> list[str]:
        page = audit.plan_allowance_changes_page(connection, start=day, end=day, actor=actor)
        return sorted(reasons(page))

    assert by("ADA") == ["Ada's"]
    assert by("  ") == ["Ada's", "Bo's"]  # blank: no filter
    assert by("_") == ["Bo's"]  # typed characters match themselves, not "any"
    assert by("%") == []


@pytest.mark.parametrize("sort", audit.AUDIT_SORTS)
@pytest.mark.parametrize("size", [1, 2, 3])
def test_pages_hold_every_change_once_in_either_order_ties_across_plans_included(
    connection: Connection, sort: audit.AuditSort, size: int
) -> None:
    # Changes of several plans at the same few instants: the pages must still meet
    # exactly, on (created_at, id).
    instants = [NOON, NOON, NOON + dt.timedelta(minutes=1), NOON + dt.timedelta(minutes=1)]
    made: list[tuple[dt.datetime, int, str]] = []
    for n, (plan, at) in enumerate(itertools.product(("free", "pro", "enterprise"), instants)):
        reason = f"Change {n}"
        made.append((at, add_change(connection, plan=plan, at=at, reason=reason), reason))
    expected = [reason for _, _, reason in sorted(made, reverse=sort == "newest")]
    day = NOON.date()
    walked: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = audit.plan_allowance_changes_page(
            connection, start=day, end=day, limit=size, after=cursor, sort=sort
        )
        pages += 1
        assert len(page.rows) <= size
        walked += reasons(page)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert walked == expected
    assert pages == -(-len(expected) // size)


def test_a_page_is_one_statement_on_the_plan_and_time_index(connection: Connection) -> None:
    for n in range(30):
        add_change(connection, plan=("pro", "free")[n % 2], at=NOON + dt.timedelta(minutes=n))
    day = NOON.date()
    with recording(connection) as recorded:
        page = audit.plan_allowance_changes_page(connection, start=day, end=day, limit=5)
    assert len(page.rows) == 5 and page.next_cursor is not None
    assert recorded.count == 1
    [(statement, params)] = recorded.statements
    # A table this small is cheaper to scan; priced out, the index must serve the range.
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    plan = connection.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, params).scalar_one()

    def nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
        return [node, *(n for child in node.get("Plans", []) for n in nodes(child))]

    read = [n for n in nodes(plan[0]["Plan"]) if n.get("Relation Name") == "plan_allowance_changes"]
    assert read and all(n["Node Type"] != "Seq Scan" for n in read), read
    assert {n.get("Index Name") for n in read} == {"ix_plan_allowance_changes_plan_created_at"}


def test_bad_arguments_are_refused_with_a_sentence(connection: Connection) -> None:
    add_change(connection, plan="pro", at=NOON, reason="One")
    add_change(connection, plan="pro", at=NOON, reason="Two")
    day = NOON.date()
    page = audit.plan_allowance_changes_page(connection, start=day, end=day, limit=1)
    assert page.next_cursor is not None
    with pytest.raises(InvalidInput, match="another order"):
        audit.plan_allowance_changes_page(
            connection, start=day, end=day, limit=1, after=page.next_cursor, sort="oldest"
        )
    with pytest.raises(InvalidInput, match="next_cursor of a previous page"):
        audit.plan_allowance_changes_page(
            connection,
            start=day,
            end=day,
            after=audit.AuditCursor(NOON, 0, 1),  # type: ignore[arg-type]
        )
    with pytest.raises(InvalidInput, match="after the end date"):
        audit.plan_allowance_changes_page(connection, start=day, end=day - dt.timedelta(days=1))
    with pytest.raises(InvalidInput, match="Page size"):
        audit.plan_allowance_changes_page(connection, start=day, end=day, limit=10_001)
    with pytest.raises(InvalidInput, match="Unknown time zone"):
        audit.plan_allowance_changes_page(connection, start=day, end=day, timezone="Mars/Base")


def test_a_change_set_by_an_admin_is_read_back_as_it_was_recorded(write_engine: Engine) -> None:
    admin = f"audit-{uuid.uuid4().hex[:8]}@admin.example"
    change = set_plan_allowance(
        write_engine,
        plan="starter",
        monthly_allowance=20_000,
        rollover_cap=10_000,
        actor=admin,
        reason="Back to the price list",
        idempotency_key=f"audit-{uuid.uuid4()}",
    )
    # The day it was recorded on (the database's clock), not the test's clock.
    day = change.created_at.astimezone(UTC).date()
    with write_engine.connect() as conn:
        page = audit.plan_allowance_changes_page(conn, start=day, end=day, actor=admin)
    assert page.rows == [change]
