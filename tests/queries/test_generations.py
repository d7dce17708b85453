"""Recording a generation: credits, quota and the generation in one transaction."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg import pq
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from queries import generations
from queries.errors import (
    IdempotencyConflict,
    InsufficientCredits,
    InvalidGeneration,
    QuotaExceeded,
)
from queries.generations import record_generation
from queries.quotas import set_daily_limit
from queries.transactions import pipelined
from tests.queries.writes import invariant_holds, new_org, snapshot
from tests.statements import recording


def _usage(engine: Engine, org: int) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT type, date, used, credits_used FROM usage_limits WHERE organization_id = :o ORDER BY date, type"
                ),
                {"o": org},
            )
        ]


def test_a_generation_debits_counts_and_is_recorded(write_engine: Engine) -> None:
    org, (user,) = new_org(write_engine, balance=100)
    at = dt.datetime(2030, 5, 6, 12, tzinfo=dt.UTC)
    made = record_generation(write_engine, organization_id=org, user_id=user, type="image", at=at)
    assert (made.credits, made.balance_after, made.used_today, made.local_date) == (
        4,
        96,
        1,
        dt.date(2030, 5, 6),
    )
    assert made.created_at == at
    record_generation(
        write_engine, organization_id=org, user_id=user, type="image", credits=7, at=at
    )
    assert _usage(write_engine, org) == [("image", dt.date(2030, 5, 6), 2, 11)]
    assert invariant_holds(write_engine, org)


@pytest.mark.parametrize(
    ("zone", "local"),
    [
        ("Europe/Berlin", dt.datetime(2026, 3, 28, 23, 30)),  # the evening before DST starts
        ("Europe/Berlin", dt.datetime(2026, 3, 29, 23, 30)),  # the evening DST started
        ("America/New_York", dt.datetime(2026, 11, 1, 23, 30)),  # the evening DST ended
        ("Asia/Kolkata", dt.datetime(2026, 6, 1, 23, 30)),  # a half-hour offset
        ("Pacific/Auckland", dt.datetime(2026, 4, 5, 23, 30)),  # UTC is still the same morning
    ],
)
def test_a_generation_at_2330_local_counts_for_that_local_day(
    write_engine: Engine, zone: str, local: dt.datetime
) -> None:
    org, (user,) = new_org(write_engine, balance=100, timezone=zone)
    at = local.replace(tzinfo=ZoneInfo(zone))
    made = record_generation(write_engine, organization_id=org, user_id=user, type="chat", at=at)
    assert made.local_date == local.date()
    assert _usage(write_engine, org) == [("chat", local.date(), 1, 1)]


def test_the_daily_limit_is_enforced_and_nothing_is_written_past_it(write_engine: Engine) -> None:
    org, (user,) = new_org(write_engine, balance=1000)
    day = dt.datetime(2030, 1, 2, 10, tzinfo=dt.UTC)
    set_daily_limit(
        write_engine,
        organization_id=org,
        type="video",
        daily_limit=2,
        actor="cs@x.com",
        reason="Trial",
        effective=day.date(),
    )
    for _ in range(2):
        record_generation(write_engine, organization_id=org, user_id=user, type="video", at=day)
    before = snapshot(write_engine, org)
    with pytest.raises(QuotaExceeded) as refused:
        record_generation(write_engine, organization_id=org, user_id=user, type="video", at=day)
    assert "2 of 2 video generations used on 2030-01-02" in str(refused.value)
    assert snapshot(write_engine, org) == before
    # The next day starts with the limit in force, and counts afresh.
    record_generation(
        write_engine, organization_id=org, user_id=user, type="video", at=day + dt.timedelta(days=1)
    )
    with write_engine.connect() as conn:
        limit = conn.execute(
            text(
                "SELECT daily_limit FROM usage_limits WHERE organization_id = :o AND date = '2030-01-03'"
            ),
            {"o": org},
        ).scalar_one()
    assert limit == 2


def test_a_limit_of_zero_refuses_the_first_generation(write_engine: Engine) -> None:
    org, (user,) = new_org(write_engine, balance=100)
    day = dt.date(2030, 2, 1)
    set_daily_limit(
        write_engine,
        organization_id=org,
        type="chat",
        daily_limit=0,
        actor="cs@x.com",
        reason="Blocked",
        effective=day,
    )
    before = snapshot(write_engine, org)
    with pytest.raises(QuotaExceeded, match="0 of 0"):
        record_generation(
            write_engine,
            organization_id=org,
            user_id=user,
            type="chat",
            at=dt.datetime(2030, 2, 1, 9, tzinfo=dt.UTC),
        )
    assert snapshot(write_engine, org) == before


def test_insufficient_credits_refuse_the_generation(write_engine: Engine) -> None:
    org, (user,) = new_org(write_engine, balance=39)
    before = snapshot(write_engine, org)
    with pytest.raises(InsufficientCredits, match="balance is 39 credits and this needs 40"):
        record_generation(write_engine, organization_id=org, user_id=user, type="video")
    assert snapshot(write_engine, org) == before


def test_a_retry_with_the_same_key_records_once(write_engine: Engine) -> None:
    org, (user,) = new_org(write_engine, balance=100)
    first = record_generation(
        write_engine, organization_id=org, user_id=user, type="chat", idempotency_key="req-1"
    )
    before = snapshot(write_engine, org)
    again = record_generation(
        write_engine, organization_id=org, user_id=user, type="chat", idempotency_key="req-1"
    )
    assert again.id == first.id
    assert snapshot(write_engine, org) == before
    with pytest.raises(IdempotencyConflict):
        record_generation(
            write_engine, organization_id=org, user_id=user, type="image", idempotency_key="req-1"
        )
    assert snapshot(write_engine, org) == before


BAD_GENERATIONS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown org", {"organization_id": 987_654_321}, "no organization with id"),
    ("org id text", {"organization_id": "x"}, "organization_id must be a positive whole number"),
    ("unknown type", {"type": "hologram"}, "Unknown generation type 'hologram'"),
    ("blank type", {"type": " "}, "generation type cannot be empty"),
    ("NUL in type", {"type": "chat\x00"}, "generation type contains a NUL"),
    ("negative credits", {"credits": -1}, "credits must be from 0 to 1,000,000"),
    ("float credits", {"credits": 1.5}, "credits must be a whole number"),
    ("bool credits", {"credits": True}, "credits must be a whole number"),
    ("naive time", {"at": dt.datetime(2030, 1, 1, 12)}, "must carry a time zone"),
    ("text time", {"at": "2030-01-01"}, "time must be a date and time"),
    ("year 1", {"at": dt.datetime(1, 1, 1, tzinfo=dt.UTC)}, "outside the years 2000–2100"),
    ("blank key", {"idempotency_key": ""}, "idempotency key cannot be empty"),
    ("NUL in key", {"idempotency_key": "k\x00"}, "idempotency key contains a NUL"),
    ("user id bool", {"user_id": True}, "user_id must be a positive whole number"),
]


@pytest.mark.parametrize(
    ("case", "change", "message"), BAD_GENERATIONS, ids=[c[0] for c in BAD_GENERATIONS]
)
def test_bad_generations_are_refused_and_write_nothing(
    write_engine: Engine, case: str, change: dict[str, Any], message: str
) -> None:
    org, (user,) = new_org(write_engine, balance=100)
    arguments: dict[str, Any] = {"organization_id": org, "user_id": user, "type": "chat", **change}
    before = snapshot(write_engine, org)
    with pytest.raises(InvalidGeneration, match=message):
        record_generation(write_engine, **arguments)
    assert snapshot(write_engine, org) == before


def test_a_user_of_another_organization_is_refused(write_engine: Engine) -> None:
    org, _ = new_org(write_engine, balance=100)
    _, (outsider,) = new_org(write_engine, balance=100)
    before = snapshot(write_engine, org)
    with pytest.raises(
        InvalidGeneration, match=f"User {outsider} is not a member of organization {org}"
    ):
        record_generation(write_engine, organization_id=org, user_id=outsider, type="chat")
    assert snapshot(write_engine, org) == before


_WORK_BODY = text("SELECT prosrc FROM pg_proc WHERE proname = 'record_generation_work'")


def test_a_generation_is_one_round_trip_of_the_lock_and_one_statement_doing_the_work(
    write_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, (user,) = new_org(write_engine, balance=10)
    sent: list[list[str]] = []

    def spy(conn: Connection, statements: Any, **options: Any) -> Any:
        sent.append([str(statement) for statement, _ in statements])
        return pipelined(conn, statements, **options)

    monkeypatch.setattr(generations, "pipelined", spy)
    with recording(write_engine) as recorded:
        made = record_generation(write_engine, organization_id=org, user_id=user, type="chat")
    # Nothing else is sent (no set_config of its own, no separate read).
    assert recorded.count == 0
    ((lock, work),) = sent
    # The lock (the database's lock_organization, migration 0013) carries the
    # transaction's timeouts.
    assert "lock_organization(" in lock
    assert "statement_timeout" in lock and "lock_timeout" in lock
    # The work is one call of record_generation_work (migration 0016), whose body is
    # one statement doing every write, with no lock of its own.
    assert "record_generation_work(" in work
    with write_engine.connect() as conn:
        body = conn.execute(_WORK_BODY).scalar_one()
    assert body.count("RETURN QUERY") == 1 and "FOR UPDATE" not in body
    for table in ("credit_balances", "usage_limits", "generations", "user_daily_usage"):
        assert table in body
    assert "quarter_hour_usage" in body and "organization_monthly_usage" in body
    # A refusal is the same round trip, and changes nothing.
    before = snapshot(write_engine, org)
    with pytest.raises(InsufficientCredits):
        record_generation(
            write_engine,
            organization_id=org,
            user_id=user,
            type="chat",
            credits=made.balance_after + 1,
        )
    assert len(sent) == 2
    assert snapshot(write_engine, org) == before


def test_a_keyed_generation_commits_in_the_round_trip_of_its_work(
    write_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, (user,) = new_org(write_engine, balance=10)
    seen: list[tuple[bool, pq.TransactionStatus]] = []

    def spy(conn: Connection, statements: Any, **options: Any) -> Any:
        rows = pipelined(conn, statements, **options)
        raw = conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        seen.append((options.get("commit", False), raw.info.transaction_status))
        return rows

    monkeypatch.setattr(generations, "pipelined", spy)
    made = record_generation(
        write_engine, organization_id=org, user_id=user, type="chat", idempotency_key="k1"
    )
    # Committed when the one round trip came back; without a key COMMIT is its own.
    assert seen == [(True, pq.TransactionStatus.IDLE)]
    again = record_generation(
        write_engine, organization_id=org, user_id=user, type="chat", idempotency_key="k1"
    )
    assert again.id == made.id
    record_generation(write_engine, organization_id=org, user_id=user, type="chat")
    assert seen[1:] == [(True, pq.TransactionStatus.IDLE), (False, pq.TransactionStatus.INTRANS)]
    assert invariant_holds(write_engine, org)


def test_a_failed_statement_before_a_pipelined_commit_leaves_nothing(
    write_engine: Engine,
) -> None:
    org, (user,) = new_org(write_engine, balance=10)
    before = snapshot(write_engine, org)
    insert = text(
        "INSERT INTO generations (organization_id, user_id, type, credits) "
        "VALUES (:org, :user, 'chat', 1)"
    )
    with write_engine.connect() as conn, pytest.raises(DBAPIError, match="division by zero"):
        conn.begin()
        pipelined(
            conn, [(insert, {"org": org, "user": user}), (text("SELECT 1/0"), {})], commit=True
        )
    # COMMIT did not run after the error: the insert (and its debit) rolled back.
    assert snapshot(write_engine, org) == before
