"""The dashboard with DATABASE_READ_URL pointing at a real streaming replica
(tests/replica.py): pages read from it and say how far behind it is, a session sees its
own write at once, and with the primary down the pages still show numbers while a
write says that changes are unavailable.

The replica's replay is paused where a test must tell the two servers apart: then the
replica shows the old balance and the primary the new one.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

import queries.transactions
from dashboard.ui import behind_by
from queries.credits import adjust_credits
from queries.db import create_runtime_engine
from tests.dashboard.apptest import make_app, open_page, reset_app_state, scalar, texts
from tests.dashboard.shown import shown
from tests.replica import StreamingPair


@pytest.fixture(scope="module")
def pair() -> Iterator[StreamingPair]:
    pair = StreamingPair()
    try:
        pair.start(organizations=3, generations=2_000, days=10)
        yield pair
    finally:
        pair.close()


@pytest.fixture(scope="module")
def primary(pair: StreamingPair) -> Iterator[Engine]:
    engine = create_runtime_engine(pair.primary_url())
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def _through_the_replica(pair: StreamingPair, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", pair.primary_url())
    monkeypatch.setenv("DATABASE_READ_URL", pair.replica_url())
    # Not the embedded server, so the development identity must be deliberate.
    monkeypatch.setenv("DASHBOARD_USER", "finance@example.com")
    monkeypatch.setenv("DASHBOARD_ROLE", "finance")
    reset_app_state()


@pytest.fixture(scope="module")
def org(primary: Engine) -> int:
    return int(scalar(primary, "SELECT id FROM organizations ORDER BY name, id LIMIT 1"))


def balance(engine: Engine, org: int) -> int:
    return int(
        scalar(engine, "SELECT balance FROM credit_balances WHERE organization_id = :o", o=org)
    )


def credits_page(org: int) -> AppTest:
    at = make_app(role="finance", email="finance@example.com", query={"org": str(org)})
    return open_page(at, "credits")


def shown_balance(at: AppTest) -> str:
    return {m.label: m.value for m in at.metric}["Balance"]


def as_of(at: AppTest) -> str:
    (caption,) = [c for c in texts(at, "caption") if c.startswith("Data as of ")]
    return caption


def grant(at: AppTest, amount: int) -> AppTest:
    at.text_input(key="credits.amount").input(str(amount))
    at.selectbox(key="credits.reason").set_value("Goodwill gesture")
    next(b for b in at.button if b.label == "Review adjustment").click()
    at.run()
    next(b for b in at.button if b.label.startswith("Confirm")).click()
    return at.run()


def behind_replica(pair: StreamingPair, primary: Engine, org: int, amount: int) -> None:
    """Make the replica lag: it replays one commit, then pauses while the primary
    grants ``amount`` more."""
    adjust_credits(
        primary,
        organization_id=org,
        amount=1,
        reason="Goodwill gesture",
        actor="setup@example.com",
        idempotency_key=f"lag-setup-{amount}",
    )
    pair.wait_caught_up()
    pair.pause_replay()
    adjust_credits(
        primary,
        organization_id=org,
        amount=amount,
        reason="Goodwill gesture",
        actor="setup@example.com",
        idempotency_key=f"lag-{amount}",
    )
    pair.wait_received()
    # The lag is the age of the last commit the replica replayed: let it reach a second.
    time.sleep(1.1)


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(0, "less than 1 s"), (0.6, "less than 1 s"), (2.4, "2 s"), (119, "119 s"), (600, "10 min")],
)
def test_the_lag_is_said_in_seconds_or_minutes(seconds: float, words: str) -> None:
    assert behind_by(dt.timedelta(seconds=seconds)) == words


def test_a_caught_up_replica_serves_the_page_and_says_so(
    pair: StreamingPair, primary: Engine, org: int
) -> None:
    pair.wait_caught_up()
    at = credits_page(org)
    assert not at.exception
    assert shown_balance(at) == f"{balance(primary, org):,} credits"
    assert as_of(at).endswith("UTC (replica less than 1 s behind)")


def test_a_page_reads_the_replica_and_shows_how_far_behind_it_is(
    pair: StreamingPair, primary: Engine, org: int
) -> None:
    before = balance(primary, org) + 1
    behind_replica(pair, primary, org, amount=40)
    try:
        at = credits_page(org)
        assert not at.exception
        # The replica has not replayed the grant of 40: the page shows its numbers.
        assert shown_balance(at) == f"{before:,} credits"
        assert re.search(r"^Data as of \d\d:\d\d UTC \(replica \d+ s behind\)$", as_of(at))
    finally:
        pair.resume_replay()
        pair.wait_caught_up()


def test_a_session_sees_its_own_write_while_the_replica_lags(
    pair: StreamingPair, primary: Engine, org: int
) -> None:
    before = balance(primary, org)
    pair.pause_replay()
    try:
        at = grant(credits_page(org), 500)
        assert not at.exception
        assert any("New balance" in s for s in texts(at, "success"))
        # The re-read right after the write comes from the primary ...
        assert shown_balance(at) == f"{before + 500:,} credits"
        # ... while another session still reads the paused replica.
        reset_app_state()
        other = credits_page(org)
        assert shown_balance(other) == f"{before:,} credits"
    finally:
        pair.resume_replay()
        pair.wait_caught_up()


# Last in this module: it stops the primary.
def test_with_the_primary_down_pages_show_the_replica_and_writes_say_they_are_unavailable(
    pair: StreamingPair, primary: Engine, org: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A write waits out its whole budget for a restarting primary before it gives up;
    # this one does not come back, so a short budget keeps the test short.
    monkeypatch.setattr(queries.transactions, "BUDGET_SECONDS", 2.0)
    writer = grant(credits_page(org), 250)  # a write: this session now reads the primary
    assert not writer.exception
    after = balance(primary, org)
    pair.wait_caught_up()
    pair.stop_primary()

    # The writer's next run falls back to the replica instead of failing.
    writer.run()
    assert not writer.exception
    assert shown(writer, "error") == []
    assert shown_balance(writer) == f"{after:,} credits"
    assert "data._wrote_at" not in writer.session_state, "it stops trying the primary"

    # A new session (schema check included) reads the replica too.
    reset_app_state()
    at = credits_page(org)
    assert not at.exception
    assert shown(at, "error") == []
    assert shown_balance(at) == f"{after:,} credits"
    assert "(replica " in as_of(at)

    # A write says in a sentence that nothing can be changed right now.
    at = grant(at, 10)
    assert not at.exception
    (error,) = shown(at, "error")
    assert "cannot be reached right now" in error and "Nothing was changed" in error
