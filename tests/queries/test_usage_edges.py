"""The kept usage edges (migration 0025) are exact, and the reads answer the same with
them as without.

- after out-of-order writes on both sides of the turn, for company zones UTC,
  Asia/Kathmandu (+5:45) and America/New_York across its spring-forward day, the rows
  equal the shared recount (queries/recounts.py) and the tests' own;
- a turn while threads record generations misses none of them;
- the ranking (every row, every page order) and the monthly trend answer row for row
  what they answered from ``usage_before()`` before the edges were kept;
- a second turn adds nothing, and a later one drops the edges no preset reaches.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import zoneinfo
from collections.abc import Iterator

import pandas as pd
import pytest
from sqlalchemy import Engine, text

from queries import recounts, usage
from queries.edges import KEEP_DAYS, keep_usage_edges
from queries.generations import record_generation
from queries.orgs import set_timezone
from tests.queries.writes import new_org

# The turn's day: 90 days back reach into December, the New York spring-forward day
# (2026-03-08) is among them.
NOW = dt.datetime(2026, 3, 9, 12, 0, tzinfo=dt.UTC)
ZONES = ("UTC", "Asia/Kathmandu", "America/New_York")

_LOCAL_TIMES = (
    "2025-12-10 00:00:00",
    "2025-12-31 23:59:59",
    "2026-01-01 00:00:00",
    "2026-02-28 23:44:59",
    "2026-03-07 23:59:59",
    "2026-03-08 00:00:00",
    "2026-03-08 03:00:00",
    "2026-03-08 23:45:00",
    "2026-03-09 00:14:59",
    "2026-03-09 11:59:00",
    "2026-03-10 00:00:00",  # after the last kept edge (the end of NOW's day)
    "2026-11-01 01:30:00",  # in the future of the turn
)

# The tests' own definition: a kept edge's row counts the generations before it.
_OWN_MISMATCHES = text(
    """
    WITH stored AS (
        SELECT u.edge, u.organization_id, u.generations, u.credits
        FROM usage_edges u JOIN kept_usage_edges k ON k.edge = u.edge
        WHERE u.organization_id = :org
    ),
    recount AS (
        SELECT k.edge, g.organization_id, count(*)::bigint, sum(g.credits)::bigint
        FROM kept_usage_edges k JOIN generations g ON g.created_at < k.edge
        WHERE g.organization_id = :org
        GROUP BY 1, 2
    )
    SELECT (SELECT count(*) FROM (TABLE stored EXCEPT ALL TABLE recount) a)
         + (SELECT count(*) FROM (TABLE recount EXCEPT ALL TABLE stored) b)
    """
)


def _shared_mismatches(engine: Engine, org: int) -> int:
    """Rows of the organization's kept edges that differ from the shared recount."""
    with engine.connect() as conn:
        recount = {
            (r.edge, r.organization_id): (r.generations, r.credits)
            for r in conn.execute(recounts.RECOUNT_USAGE_EDGES, {"organization_ids": [org]})
        }
        stored = {
            (r.edge, r.organization_id): (r.generations, r.credits)
            for r in conn.execute(
                text(
                    "SELECT u.* FROM usage_edges u JOIN kept_usage_edges k USING (edge)"
                    " WHERE u.organization_id = :org"
                ),
                {"org": org},
            )
        }
    assert recount, "nothing kept: the test would prove nothing"
    return len(set(recount.items()) ^ set(stored.items()))


def _own_mismatches(engine: Engine, org: int) -> int:
    with engine.connect() as conn:
        return int(conn.execute(_OWN_MISMATCHES, {"org": org}).scalar_one())


@pytest.fixture
def kept(write_engine: Engine) -> Iterator[None]:
    """Edges kept only for the test: the database is shared with the other writes."""

    def forget() -> None:
        with write_engine.begin() as conn:
            conn.execute(text("LOCK TABLE usage_edges IN SHARE ROW EXCLUSIVE MODE"))
            conn.execute(text("DELETE FROM usage_edges"))
            conn.execute(text("DELETE FROM kept_usage_edges"))

    forget()
    yield
    forget()


def _instants(zone: str) -> list[dt.datetime]:
    tz = zoneinfo.ZoneInfo(zone)
    return [dt.datetime.fromisoformat(t).replace(tzinfo=tz) for t in _LOCAL_TIMES]


@pytest.mark.usefixtures("kept")
@pytest.mark.parametrize("company", ZONES)
def test_kept_edges_equal_a_recount_after_out_of_order_writes(
    write_engine: Engine, company: str
) -> None:
    # The organization lives elsewhere than the company: its local days are not the
    # edges' days.
    own = {"UTC": "Asia/Kathmandu", "Asia/Kathmandu": "America/New_York"}.get(company, "UTC")
    org, users = new_org(write_engine, balance=100_000, timezone=own, users=2)
    instants = _instants(company) + _instants(own)
    random.Random(company).shuffle(instants)
    half = len(instants) // 2
    for n, at in enumerate(instants[:half]):
        record_generation(
            write_engine, organization_id=org, user_id=users[n % 2], type="chat", at=at
        )
    report = keep_usage_edges(write_engine, timezone=company, now=NOW)
    assert len(report.added) == KEEP_DAYS + 1
    # Back-dated and future writes after the turn add themselves to the kept edges.
    for n, at in enumerate(instants[half:]):
        record_generation(
            write_engine, organization_id=org, user_id=users[n % 2], type="image", at=at
        )
    assert _shared_mismatches(write_engine, org) == 0
    assert _own_mismatches(write_engine, org) == 0
    # An instant, not a local day: a new zone changes nothing kept.
    set_timezone(
        write_engine,
        organization_id=org,
        timezone="Asia/Kolkata",
        actor="ops@example.com",
        reason="Move",
    )
    assert _own_mismatches(write_engine, org) == 0
    assert keep_usage_edges(write_engine, timezone=company, now=NOW).added == ()


@pytest.mark.usefixtures("kept")
def test_a_turn_while_generations_are_recorded_misses_none(write_engine: Engine) -> None:
    orgs = [new_org(write_engine, balance=10_000_000, timezone=z, users=2) for z in ZONES]
    base = dt.datetime(2026, 3, 9, 4, 0, tzinfo=dt.UTC)
    errors: list[BaseException] = []
    done = threading.Event()

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not done.is_set():
                org, users = rng.choice(orgs)
                record_generation(
                    write_engine,
                    organization_id=org,
                    user_id=rng.choice(users),
                    type="chat",
                    # Around the edges of the last days, some back-dated by weeks.
                    at=base - dt.timedelta(minutes=rng.randrange(0, 60 * 24 * 30)),
                )
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    try:
        keep_usage_edges(write_engine, timezone="America/New_York", now=NOW)
    finally:
        done.set()
        for thread in threads:
            thread.join()
    assert errors == []
    for org, _ in orgs:
        assert _own_mismatches(write_engine, org) == 0


def _reads(engine: Engine, zone: str) -> list[pd.DataFrame]:
    today = NOW.astimezone(zoneinfo.ZoneInfo(zone)).date()
    out = []
    with engine.connect() as conn:
        for days in (1, 7, 30, 90):
            start = today - dt.timedelta(days=days - 1)
            out.append(usage.all_orgs_usage(conn, start=start, end=today, timezone=zone))
            out.append(usage.all_orgs_monthly_credits(conn, start=start, end=today, timezone=zone))
            for sort in usage.USAGE_SORTS:
                page = usage.all_orgs_usage_page(
                    conn, start=start, end=today, timezone=zone, sort=sort, limit=5
                )
                out.append(page.rows)
        # A range reaching past the kept edges: one edge kept, one computed.
        start = today - dt.timedelta(days=120)
        out.append(usage.all_orgs_usage(conn, start=start, end=today, timezone=zone))
        out.append(usage.all_orgs_monthly_credits(conn, start=start, end=today, timezone=zone))
    return out


@pytest.mark.usefixtures("kept")
@pytest.mark.parametrize("company", ZONES)
def test_the_reads_answer_the_same_from_kept_edges(write_engine: Engine, company: str) -> None:
    for zone in ZONES:
        org, users = new_org(write_engine, balance=100_000, timezone=zone, users=1)
        for at in _instants(company)[:-2]:
            record_generation(
                write_engine, organization_id=org, user_id=users[0], type="chat", at=at
            )
    before = _reads(write_engine, company)
    assert keep_usage_edges(write_engine, timezone=company, now=NOW).added
    after = _reads(write_engine, company)
    for was, now in zip(before, after, strict=True):
        pd.testing.assert_frame_equal(was, now)
    assert any(not frame.empty and frame.select_dtypes("int64").to_numpy().any() for frame in after)


@pytest.mark.usefixtures("kept")
def test_a_later_turn_drops_the_edges_no_preset_reaches(write_engine: Engine) -> None:
    keep_usage_edges(write_engine, timezone="UTC", now=NOW)
    later = keep_usage_edges(write_engine, timezone="UTC", now=NOW + dt.timedelta(days=10))
    assert len(later.added) == 10
    assert later.dropped == 8  # older than 92 days before the later turn
    with write_engine.connect() as conn:
        oldest = conn.execute(text("SELECT min(edge) FROM kept_usage_edges")).scalar_one()
        orphans = conn.execute(
            text("SELECT count(*) FROM usage_edges WHERE edge < :e"), {"e": oldest}
        ).scalar_one()
    assert oldest == dt.datetime(2025, 12, 18, tzinfo=dt.UTC)
    assert orphans == 0


def test_the_demo_loader_keeps_the_edges_of_its_day(demo_engine: Engine) -> None:
    with demo_engine.connect() as conn:
        kept = conn.execute(text("SELECT count(*) FROM kept_usage_edges")).scalar_one()
        rows = conn.execute(text("SELECT count(*) FROM usage_edges")).scalar_one()
        differ = conn.execute(
            text(
                """
                WITH stored AS (SELECT edge, organization_id, generations, credits
                                FROM usage_edges),
                recount AS (
                    SELECT k.edge, g.organization_id, count(*)::bigint, sum(g.credits)::bigint
                    FROM kept_usage_edges k JOIN generations g ON g.created_at < k.edge
                    GROUP BY 1, 2
                )
                SELECT (SELECT count(*) FROM (TABLE stored EXCEPT ALL TABLE recount) a)
                     + (SELECT count(*) FROM (TABLE recount EXCEPT ALL TABLE stored) b)
                """
            )
        ).scalar_one()
    assert (kept, differ) == (KEEP_DAYS + 1, 0)
    assert rows > 0
