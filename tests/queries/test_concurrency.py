"""The bank test: many threads, real connections, mixed writes; not a credit lost.

8 threads with their own pooled connections run thousands of grants, deductions,
generations, replays of the same idempotency keys and reversals on a few
organizations at once. Afterwards every invariant is checked in SQL.

It runs twice: as the owner, and through a login role that is only a member of
``dashboard_app`` (migration 0003), which proves the whole write path works with the
least privilege a deployment gives the app.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import Engine, text

from queries.credits import adjust_credits, reverse_adjustment
from queries.errors import (
    AlreadyReversed,
    InsufficientCredits,
    NothingToReverse,
    QuotaExceeded,
)
from queries.generations import record_generation
from queries.quotas import set_daily_limit
from tests.conftest import PgServer
from tests.queries.roles import APP_LOGIN, login_engine
from tests.queries.rollups import ROLLUPS
from tests.queries.rollups import mismatches as rollup_mismatches
from tests.queries.writes import invariant_holds, new_org

THREADS = 8
OPERATIONS_PER_THREAD = 320


@dataclass
class Outcome:
    lock: threading.Lock = field(default_factory=threading.Lock)
    ledger_ids: set[int] = field(default_factory=set)
    reversible: set[int] = field(default_factory=set)
    generation_ids: set[int] = field(default_factory=set)
    first_result: dict[tuple[int, str], int] = field(default_factory=dict)
    replays: list[tuple[tuple[int, str], int]] = field(default_factory=list)
    refusals: Counter[str] = field(default_factory=Counter)
    unexpected: list[BaseException] = field(default_factory=list)


def _worker(
    engine: Engine,
    seed: int,
    orgs: dict[int, list[int]],
    outcome: Outcome,
    keys: list[tuple[int, str, int]],
) -> None:
    rng = random.Random(seed)
    org_ids = list(orgs)
    for n in range(OPERATIONS_PER_THREAD):
        org = rng.choice(org_ids)
        roll = rng.random()
        try:
            if roll < 0.25:
                key = f"grant-{seed}-{n}"
                amount = rng.randint(1, 60)
                entry = adjust_credits(
                    engine,
                    organization_id=org,
                    amount=amount,
                    reason="Top-up",
                    actor=f"t{seed}@x.com",
                    idempotency_key=key,
                )
                with outcome.lock:
                    outcome.ledger_ids.add(entry.id)
                    outcome.reversible.add(entry.id)
                    outcome.first_result[(org, key)] = entry.id
                    keys.append((org, key, amount))
            elif roll < 0.40:
                entry = adjust_credits(
                    engine,
                    organization_id=org,
                    amount=-rng.randint(1, 90),
                    reason="Correction",
                    actor=f"t{seed}@x.com",
                    idempotency_key=f"deduct-{seed}-{n}",
                )
                with outcome.lock:
                    outcome.ledger_ids.add(entry.id)
                    outcome.reversible.add(entry.id)
            elif roll < 0.75:
                made = record_generation(
                    engine,
                    organization_id=org,
                    user_id=rng.choice(orgs[org]),
                    type=rng.choice(["chat", "image", "video"]),
                )
                with outcome.lock:
                    outcome.generation_ids.add(made.id)
            elif roll < 0.85:
                with outcome.lock:
                    if not keys:
                        continue
                    org_k, key, amount = rng.choice(keys)
                    actor = f"t{key.split('-')[1]}@x.com"
                # A double click or a retried request: same key, same payload.
                entry = adjust_credits(
                    engine,
                    organization_id=org_k,
                    amount=amount,
                    reason="Top-up",
                    actor=actor,
                    idempotency_key=key,
                )
                with outcome.lock:
                    outcome.replays.append(((org_k, key), entry.id))
            elif roll < 0.92:
                key = f"gen-{seed}-{n % 7}"
                made = record_generation(
                    engine,
                    organization_id=org,
                    user_id=orgs[org][0],
                    type="chat",
                    idempotency_key=key,
                )
                with outcome.lock:
                    outcome.generation_ids.add(made.id)
            else:
                with outcome.lock:
                    candidates = sorted(outcome.reversible)
                if not candidates:
                    continue
                target = rng.choice(candidates)
                entry = reverse_adjustment(
                    engine, entry_id=target, actor=f"t{seed}@x.com", reason=f"Undo by {seed}"
                )
                with outcome.lock:
                    outcome.ledger_ids.add(entry.id)
        # A reversed grant gives back what remains of it: nothing, once all was used.
        except (InsufficientCredits, QuotaExceeded, AlreadyReversed, NothingToReverse) as refused:
            with outcome.lock:
                outcome.refusals[type(refused).__name__] += 1
        except BaseException as exc:
            with outcome.lock:
                outcome.unexpected.append(exc)


@pytest.fixture(params=["owner", "dashboard_app"])
def writer(
    request: pytest.FixtureRequest, write_engine: Engine, test_server: PgServer
) -> Iterator[Engine]:
    """The engine the threads write through: the owner's, or a dashboard_app login's."""
    if request.param == "owner":
        yield write_engine
        return
    database = write_engine.url.database
    assert database is not None
    engine = login_engine(test_server, database, APP_LOGIN, pool_size=10, max_overflow=10)
    with engine.connect() as conn:
        who = conn.execute(
            text("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")
        ).one()
    assert tuple(who) == (APP_LOGIN, False)
    yield engine
    engine.dispose()


def test_concurrent_mixed_writes_keep_every_invariant(write_engine: Engine, writer: Engine) -> None:
    orgs: dict[int, list[int]] = {}
    for zone in ("UTC", "Asia/Tokyo", "America/Los_Angeles"):
        org, users = new_org(write_engine, balance=200, timezone=zone, users=4)
        orgs[org] = users
        # A tight video quota, so some generations are refused by the limit.
        set_daily_limit(
            writer,
            organization_id=org,
            type="video",
            daily_limit=25,
            actor="cs@x.com",
            reason="Trial",
        )
    outcome = Outcome()
    keys: list[tuple[int, str, int]] = []
    threads = [
        threading.Thread(target=_worker, args=(writer, seed, orgs, outcome, keys))
        for seed in range(THREADS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert outcome.unexpected == []
    assert outcome.refusals["InsufficientCredits"] > 0, "the mix never ran an organization dry"
    assert outcome.refusals["QuotaExceeded"] > 0, "the mix never reached a limit"
    assert len(outcome.replays) > 50 and len(outcome.generation_ids) > 300

    # Every replay returned the entry its key created the first time.
    for key, entry_id in outcome.replays:
        assert outcome.first_result[key] == entry_id

    with write_engine.connect() as conn:
        org_list = list(orgs)
        for org in org_list:
            assert invariant_holds(write_engine, org), f"balance drifted for organization {org}"
        ledger_rows = conn.execute(
            text(
                "SELECT count(*) FROM credit_ledger WHERE organization_id = ANY(:o) AND idempotency_key <> 'open'"
            ),
            {"o": org_list},
        ).scalar_one()
        assert ledger_rows == len(outcome.ledger_ids), (
            "a successful call without its row, or a row without a call"
        )
        generations = conn.execute(
            text("SELECT count(*) FROM generations WHERE organization_id = ANY(:o)"),
            {"o": org_list},
        ).scalar_one()
        assert generations == len(outcome.generation_ids)
        # Usage rows are the exact rollup of the generations, and never over the limit.
        mismatches = conn.execute(
            text(
                """
                WITH actual AS (
                    SELECT g.organization_id, g.type, (g.created_at AT TIME ZONE o.timezone)::date AS date,
                           count(*) AS used, sum(g.credits) AS credits_used
                    FROM generations g JOIN organizations o ON o.id = g.organization_id
                    WHERE g.organization_id = ANY(:o) GROUP BY 1, 2, 3
                )
                SELECT count(*) FROM actual a
                FULL JOIN (SELECT * FROM usage_limits WHERE organization_id = ANY(:o) AND used > 0) u
                  USING (organization_id, type, date)
                WHERE a.used IS DISTINCT FROM u.used OR a.credits_used IS DISTINCT FROM u.credits_used
                """
            ),
            {"o": org_list},
        ).scalar_one()
        assert mismatches == 0
        # So are the generation rollups, refusals and replays notwithstanding.
        for org in org_list:
            assert rollup_mismatches(conn, organization_id=org) == dict.fromkeys(ROLLUPS, 0)
        over = conn.execute(
            text(
                "SELECT count(*) FROM usage_limits WHERE organization_id = ANY(:o) AND used > daily_limit"
            ),
            {"o": org_list},
        ).scalar_one()
        assert over == 0
        # Each idempotency key applied once (the unique key makes a second row impossible;
        # this checks the generation keys were replayed, not refused).
        keyed = conn.execute(
            text(
                "SELECT count(*) FROM generations WHERE organization_id = ANY(:o) AND idempotency_key IS NOT NULL"
            ),
            {"o": org_list},
        ).scalar_one()
        assert keyed <= THREADS * 7 * len(org_list)
        assert len(keys) == len({(org, key) for org, key, _ in keys})
