"""The long tables' orders: the usage ranking and today's quota table are sorted in SQL
in each of their fixed orders, and paging through any order with any page size gives
every row once, in the order a plain ORDER BY over a recount gives."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from sqlalchemy import Connection, TextClause, text

from queries import audit, quotas, usage
from queries.errors import InvalidInput
from tests.factories import add_ledger, ensure_types, make_org
from tests.statements import recording

DAY = dt.date(2026, 11, 20)

# One (organization, type) row of DAY: (name suffix, used, credits per generation, daily
# limit, balance).
# Names are lowercase hex, whose order is the same in every collation; few suffixes, few
# values, so names, counts and utilizations tie and the tie-breakers are exercised.
ROWS = hs.tuples(
    hs.sampled_from(["", "a", "b", "ab"]),
    hs.integers(0, 4),
    hs.integers(0, 3),
    hs.integers(0, 3),
    hs.integers(0, 3),
)


def _load(conn: Connection, rows: list[tuple[str, int, int, int, int]]) -> str:
    """An organization per row with its use of DAY (image) and its rollups; returns the
    tag every name starts with, which a search finds them by."""
    ensure_types(conn)
    tag = uuid.uuid4().hex[:10]
    for suffix, used, cost, limit, balance in rows:
        credits = used * cost
        org = make_org(conn, name=f"{tag}{suffix}", balance=balance)
        conn.execute(
            text(
                "INSERT INTO usage_limits (organization_id, type, date, used, credits_used,"
                " daily_limit) VALUES (:org, 'image', :day, :used, :credits, :limit)"
            ),
            {"org": org, "day": DAY, "used": used, "credits": credits, "limit": limit},
        )
        if used:
            conn.execute(
                text(
                    "INSERT INTO organization_daily_usage (organization_id, date, generations,"
                    " credits, generations_through, credits_through)"
                    " VALUES (:org, :day, :used, :credits, :used, :credits)"
                ),
                {"org": org, "day": DAY, "used": used, "credits": credits},
            )
    return tag


# Each order of the ranking as a plain ORDER BY over a recount of usage_limits.
_USAGE_RECOUNT = text(
    """
    WITH r AS (
        SELECT o.id, o.name, coalesce(sum(u.used), 0) AS generations,
               coalesce(sum(u.credits_used), 0) AS credits, max(b.balance) AS balance
        FROM organizations o
        JOIN credit_balances b ON b.organization_id = o.id
        LEFT JOIN usage_limits u ON u.organization_id = o.id AND u.date = :day
        WHERE o.name LIKE :tag || '%'
        GROUP BY o.id, o.name
    )
    SELECT id,
           row_number() OVER (ORDER BY credits DESC, name, id) AS credits_desc,
           row_number() OVER (ORDER BY credits, name, id) AS credits_asc,
           row_number() OVER (ORDER BY generations DESC, name, id) AS generations_desc,
           row_number() OVER (ORDER BY balance, name, id) AS balance_asc,
           row_number() OVER (ORDER BY balance DESC, name, id) AS balance_desc,
           row_number() OVER (ORDER BY name, id) AS name_asc
    FROM r
    """
)

_QUOTA_RECOUNT = text(
    """
    WITH r AS (
        SELECT o.id, o.name, u.type, u.used, u.daily_limit,
               CASE WHEN u.daily_limit > 0 THEN u.used::float8 / u.daily_limit
                    WHEN u.used > 0 THEN 'Infinity' ELSE 0 END AS utilization
        FROM organizations o JOIN usage_limits u ON u.organization_id = o.id
        WHERE o.name LIKE :tag || '%' AND u.date = :day
    )
    SELECT id, type,
           row_number() OVER (ORDER BY utilization DESC, used DESC, name, id, type)
               AS utilization_desc,
           row_number() OVER (ORDER BY utilization, used, name, id, type) AS utilization_asc,
           row_number() OVER (ORDER BY used DESC, name, id, type) AS used_desc,
           row_number() OVER (ORDER BY daily_limit DESC, name, id, type) AS limit_desc,
           row_number() OVER (ORDER BY daily_limit, name, id, type) AS limit_asc,
           row_number() OVER (ORDER BY name, id, type) AS name_asc
    FROM r
    """
)


def _recounted(conn: Connection, statement: TextClause, tag: str, sort: str) -> list[Any]:
    """The recount's rows (their id, or (id, type)) in the order ``sort``."""
    rows = conn.execute(statement, {"tag": tag, "day": DAY}).mappings().all()
    ordered = sorted(rows, key=lambda r: int(r[sort]))
    return [(int(r["id"]), r["type"]) if "type" in r else int(r["id"]) for r in ordered]


def _walk_usage(conn: Connection, tag: str, sort: usage.UsageSort, size: int) -> list[int]:
    ids: list[int] = []
    cursor = None
    while True:
        with recording(conn) as recorded:
            page = usage.all_orgs_usage_page(
                conn, start=DAY, end=DAY, search=tag, limit=size, after=cursor, sort=sort
            )
        assert recorded.count == 1 and len(page.rows) <= size
        ids += [int(i) for i in page.rows["organization_id"]]
        if page.next is None:
            return ids
        assert page.next.sort == sort
        cursor = page.next


def _walk_quotas(
    conn: Connection, tag: str, sort: quotas.UtilizationSort, size: int
) -> list[tuple[int, str]]:
    keys: list[tuple[int, str]] = []
    cursor = None
    while True:
        page = quotas.all_orgs_quota_utilization_page(
            conn, day=DAY, search=tag, limit=size, after=cursor, sort=sort
        )
        assert len(page.rows) <= size
        keys += [
            (int(i), str(t))
            for i, t in zip(page.rows["organization_id"], page.rows["type"], strict=True)
        ]
        if page.next is None:
            return keys
        cursor = page.next


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=hs.lists(ROWS, min_size=1, max_size=14),
    usage_sort=hs.sampled_from(usage.USAGE_SORTS),
    quota_sort=hs.sampled_from(quotas.UTILIZATION_SORTS),
    size=hs.integers(1, 5),
)
def test_every_order_pages_through_every_row_once_in_the_recounted_order(
    connection: Connection,
    rows: list[tuple[str, int, int, int, int]],
    usage_sort: usage.UsageSort,
    quota_sort: quotas.UtilizationSort,
    size: int,
) -> None:
    with connection.begin_nested() as savepoint:
        tag = _load(connection, rows)
        expected_orgs = _recounted(connection, _USAGE_RECOUNT, tag, usage_sort)
        assert _walk_usage(connection, tag, usage_sort, size) == expected_orgs
        expected_rows = _recounted(connection, _QUOTA_RECOUNT, tag, quota_sort)
        assert _walk_quotas(connection, tag, quota_sort, size) == expected_rows
        savepoint.rollback()


def test_the_ranking_sorted_by_name_keeps_the_rank_by_credits(connection: Connection) -> None:
    tag = _load(connection, [("b", 1, 3, 1, 0), ("a", 1, 1, 1, 0), ("c", 1, 2, 1, 0)])
    page = usage.all_orgs_usage_page(connection, start=DAY, end=DAY, search=tag, sort="name_asc")
    assert list(page.rows["name"]) == [f"{tag}a", f"{tag}b", f"{tag}c"]
    ranks = dict(zip(page.rows["name"], page.rows["rank"], strict=True))
    assert ranks[f"{tag}b"] < ranks[f"{tag}c"] < ranks[f"{tag}a"]


def test_a_cursor_of_another_order_is_refused(connection: Connection) -> None:
    tag = _load(connection, [("a", 1, 1, 1, 0), ("b", 2, 2, 1, 0)])
    ranked = usage.all_orgs_usage_page(connection, start=DAY, end=DAY, search=tag, limit=1)
    assert ranked.next is not None
    with pytest.raises(InvalidInput, match="another order"):
        usage.all_orgs_usage_page(
            connection,
            start=DAY,
            end=DAY,
            search=tag,
            limit=1,
            after=ranked.next,
            sort="name_asc",
        )
    table = quotas.all_orgs_quota_utilization_page(connection, day=DAY, search=tag, limit=1)
    assert table.next is not None
    with pytest.raises(InvalidInput, match="another order"):
        quotas.all_orgs_quota_utilization_page(
            connection, day=DAY, search=tag, limit=1, after=table.next, sort="used_desc"
        )


@pytest.mark.parametrize("sort", ["name_desc", "", None, "CREDITS_DESC", 1])
def test_an_unknown_order_is_refused_with_a_sentence(connection: Connection, sort: object) -> None:
    with pytest.raises(InvalidInput, match="sort must be one of"):
        usage.all_orgs_usage_page(connection, start=DAY, end=DAY, sort=sort)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="sort must be one of"):
        quotas.all_orgs_quota_utilization_page(connection, day=DAY, sort=sort)  # type: ignore[arg-type]


def test_an_infinite_utilization_pages_with_a_finite_cursor(connection: Connection) -> None:
    # Used with a limit of 0 is the fullest of all; its cursor still fits in a link.
    tag = _load(connection, [("a", 2, 2, 0, 0), ("b", 1, 1, 0, 0), ("c", 3, 3, 3, 0)])
    page = quotas.all_orgs_quota_utilization_page(connection, day=DAY, search=tag, limit=1)
    assert page.next is not None and abs(page.next.key) < float("inf")
    assert _walk_quotas(connection, tag, "utilization_desc", 1) == [
        (int(i), "image")
        for i in connection.scalars(
            text("SELECT id FROM organizations WHERE name LIKE :t || '%' ORDER BY name"),
            {"t": tag},
        )
    ]


# The trail of one organization in both orders, as a plain ORDER BY over its two sources.
_AUDIT_RECOUNT = text(
    """
    WITH e AS (
        SELECT created_at AS at, 1 AS source, id, reason FROM credit_ledger
        WHERE organization_id = :org
        UNION ALL
        SELECT created_at, 0, id, reason FROM audit_log WHERE organization_id = :org
    )
    SELECT reason,
           row_number() OVER (ORDER BY at DESC, source DESC, id DESC) AS newest,
           row_number() OVER (ORDER BY at, source, id) AS oldest
    FROM e
    """
)
NOON = dt.datetime(2030, 7, 1, 12, tzinfo=dt.UTC)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    events=hs.lists(hs.tuples(hs.booleans(), hs.integers(0, 3)), min_size=1, max_size=12),
    sort=hs.sampled_from(audit.AUDIT_SORTS),
    size=hs.integers(1, 4),
)
def test_the_audit_trail_pages_through_every_change_once_in_either_order(
    connection: Connection, events: list[tuple[bool, int]], sort: audit.AuditSort, size: int
) -> None:
    with connection.begin_nested() as savepoint:
        org = make_org(connection)
        # Ledger entries and limit changes at a few instants, so times tie across sources.
        for n, (ledger, minute) in enumerate(events):
            at = NOON + dt.timedelta(minutes=minute)
            if ledger:
                add_ledger(connection, org, [(5, "grant", f"Event {n}", at)])
            else:
                connection.execute(
                    text(
                        "INSERT INTO audit_log (organization_id, action, actor, reason,"
                        " created_at) VALUES (:o, 'set_daily_limit', 'b@x.com', :r, :at)"
                    ),
                    {"o": org, "r": f"Event {n}", "at": at},
                )
        recount = connection.execute(_AUDIT_RECOUNT, {"org": org}).mappings().all()
        expected = [r["reason"] for r in sorted(recount, key=lambda r: int(r[sort]))]
        day = NOON.date()
        walked: list[str] = []
        cursor = None
        while True:
            page = audit.all_orgs_audit_page(
                connection,
                start=day,
                end=day,
                organization_id=org,
                limit=size,
                after=cursor,
                sort=sort,
            )
            walked += list(page.rows["reason"])
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert walked == expected
        whole = audit.all_orgs_audit_trail(
            connection, start=day, end=day, organization_id=org, sort=sort
        )
        assert list(whole["reason"]) == expected
        savepoint.rollback()


def test_an_audit_cursor_of_the_other_order_is_refused(connection: Connection) -> None:
    org = make_org(connection)
    add_ledger(connection, org, [(5, "grant", "One", NOON), (5, "grant", "Two", NOON)])
    day = NOON.date()
    page = audit.all_orgs_audit_page(connection, start=day, end=day, organization_id=org, limit=1)
    assert page.next_cursor is not None
    with pytest.raises(InvalidInput, match="another order"):
        audit.all_orgs_audit_page(
            connection,
            start=day,
            end=day,
            organization_id=org,
            limit=1,
            after=page.next_cursor,
            sort="oldest",
        )
    with pytest.raises(InvalidInput, match="sort must be one of"):
        audit.all_orgs_audit_page(connection, start=day, end=day, sort="asc")  # type: ignore[arg-type]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    minutes=hs.lists(hs.integers(0, 3), min_size=1, max_size=12),
    sort=hs.sampled_from(usage.LEDGER_SORTS),
    size=hs.integers(1, 4),
)
def test_the_ledger_pages_through_every_entry_once_in_either_order(
    connection: Connection, minutes: list[int], sort: usage.LedgerSort, size: int
) -> None:
    with connection.begin_nested() as savepoint:
        org = make_org(connection)
        add_ledger(
            connection,
            org,
            [
                (5, "grant", f"Entry {n}", NOON + dt.timedelta(minutes=m))
                for n, m in enumerate(minutes)
            ],
        )
        expected = list(
            connection.scalars(
                text(
                    "SELECT id FROM credit_ledger WHERE organization_id = :org"
                    " ORDER BY created_at DESC, id DESC"
                ),
                {"org": org},
            )
        )
        if sort == "oldest":
            expected.reverse()
        walked: list[int] = []
        cursor = None
        while True:
            page = usage.ledger_page(
                connection, organization_id=org, limit=size, after=cursor, sort=sort
            )
            walked += [int(i) for i in page.entries["id"]]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert walked == expected
        savepoint.rollback()


def test_a_ledger_cursor_of_the_other_order_is_refused(connection: Connection) -> None:
    org = make_org(connection)
    add_ledger(connection, org, [(5, "grant", "One", NOON), (5, "grant", "Two", NOON)])
    page = usage.ledger_page(connection, organization_id=org, limit=1)
    assert page.next_cursor is not None
    with pytest.raises(InvalidInput, match="in this order"):
        usage.ledger_page(
            connection, organization_id=org, limit=1, after=page.next_cursor, sort="oldest"
        )
    with pytest.raises(InvalidInput, match="sort must be one of"):
        usage.ledger_page(connection, organization_id=org, sort="amount")  # type: ignore[arg-type]
