"""Reads through a real streaming replica (tests/replica.py): every public read returns
what the primary returns once the replica has caught up, and the replica says how far
behind it is."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from queries import usage
from queries.credits import adjust_credits
from queries.db import create_runtime_engine, replication_lag
from tests.queries.read_functions import CROSS_ORGANIZATION, PER_ORGANIZATION, Context
from tests.replica import DEMO_NOW, StreamingPair

Engines = tuple[Engine, Engine]
# The registry's call looks for the isolation tenants' entry, which the demo load has not.
# The demo data makes no limit requests (migration 0019 came after it).
# The busiest organization of the demo has no grant that expires.
FINDS_NOTHING_IN_THE_DEMO = {
    "credits.recent_duplicate",
    "limit_approvals.pending_limit_requests",
    "grants.expiring_grants",
}


@pytest.fixture(scope="module")
def pair() -> Iterator[StreamingPair]:
    pair = StreamingPair()
    try:
        pair.start()
        yield pair
    finally:
        pair.close()


@pytest.fixture(scope="module")
def engines(pair: StreamingPair) -> Iterator[Engines]:
    primary = create_runtime_engine(pair.primary_url())
    replica = create_runtime_engine(pair.replica_url())
    yield primary, replica
    primary.dispose()
    replica.dispose()


@pytest.fixture(scope="module")
def context(engines: Engines) -> Context:
    primary, _ = engines
    with primary.connect() as conn:
        org, user = conn.execute(
            text(
                "SELECT u.organization_id, u.id FROM users u "
                "JOIN generations g ON g.user_id = u.id "
                "GROUP BY u.organization_id, u.id ORDER BY count(*) DESC LIMIT 1"
            )
        ).one()
    end = DEMO_NOW.date()
    return Context(organization_id=org, user_id=user, start=end - dt.timedelta(days=29), end=end)


def comparable(value: Any) -> Any:
    """``value`` with DataFrames and dataclasses turned into plain, comparable values."""
    if isinstance(value, pd.DataFrame):
        # NaN is not equal to itself: compare missing values as None.
        return value.astype(object).where(value.notna(), None).to_dict("split")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: comparable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [comparable(item) for item in value]
    return value


def test_the_replica_is_a_streaming_standby_that_reports_its_lag(
    pair: StreamingPair, engines: Engines
) -> None:
    primary, replica = engines
    assert pair.replica_is_standby()
    with primary.connect() as conn:
        assert replication_lag(conn) is None  # a primary is behind nothing
    with replica.connect() as conn:
        lag = replication_lag(conn)
    assert lag is not None and lag >= dt.timedelta(0)


@pytest.mark.parametrize("name", sorted({**PER_ORGANIZATION, **CROSS_ORGANIZATION}))
def test_every_read_returns_on_the_replica_what_it_returns_on_the_primary(
    name: str, engines: Engines, context: Context
) -> None:
    call = {**PER_ORGANIZATION, **CROSS_ORGANIZATION}[name]
    primary, replica = engines
    with primary.connect() as conn:
        expected = comparable(call(conn, context))
    with replica.connect() as conn:
        got = comparable(call(conn, context))
    assert got == expected
    if name not in FINDS_NOTHING_IN_THE_DEMO:
        assert expected not in (None, [], {}), "the read found nothing to compare"


def test_a_write_on_the_primary_reaches_the_replica_and_its_lag_shows_until_then(
    pair: StreamingPair, engines: Engines, context: Context
) -> None:
    primary, replica = engines

    def balance(engine: Engine) -> int:
        with engine.connect() as conn:
            found = usage.balance_and_runway(conn, organization_id=context.organization_id)
        assert found is not None
        return found.balance

    def grant(amount: int, key: str) -> None:
        adjust_credits(
            primary,
            organization_id=context.organization_id,
            amount=amount,
            reason="Goodwill gesture",
            actor="replica-test@example.com",
            idempotency_key=key,
        )

    # A replica knows how old its data is from the last commit it replayed.
    grant(1, "replica-test-first")
    pair.wait_caught_up()
    before = balance(primary)
    assert balance(replica) == before
    pair.pause_replay()
    try:
        grant(123, "replica-test-lag")
        assert balance(primary) == before + 123
        pair.wait_received()
        assert balance(replica) == before, "a paused replica must not show the write yet"
        with replica.connect() as conn:
            lag = replication_lag(conn)
        assert lag is not None and lag > dt.timedelta(0)
    finally:
        pair.resume_replay()
    pair.wait_caught_up()
    assert balance(replica) == before + 123


def test_the_least_privileged_login_can_read_the_replica_and_its_lag(
    pair: StreamingPair, engines: Engines, context: Context
) -> None:
    primary, _ = engines
    with primary.begin() as conn:
        # Roles replicate like everything else: made on the primary, used on the replica.
        conn.execute(text("DROP ROLE IF EXISTS replica_test_reader"))
        conn.execute(text("CREATE ROLE replica_test_reader LOGIN IN ROLE dashboard_reader"))
    pair.wait_caught_up()
    reader = create_runtime_engine(
        make_url(pair.replica_url())
        .set(username="replica_test_reader")
        .render_as_string(hide_password=False)
    )
    try:
        with reader.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar_one() == "replica_test_reader"
            found = usage.balance_and_runway(conn, organization_id=context.organization_id)
            assert found is not None
            assert replication_lag(conn) is not None
    finally:
        reader.dispose()
