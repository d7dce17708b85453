"""Tenant isolation: every per-organization read returns its own organization's rows only."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Connection, text

from tests.factories import add_generations, add_ledger, ensure_types, make_org, make_user
from tests.queries.read_functions import (
    PER_ORGANIZATION,
    Context,
    public_read_functions,
    registered,
)

UTC = dt.UTC


def _norm(value: Any) -> Any:
    if isinstance(value, pd.DataFrame):
        return value.astype(object).where(value.notna(), None).to_dict("records")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _norm(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def _tenant(conn: Connection, *, tz: str, users: int, seed: int) -> Context:
    # Plans differ too, so reads of what a plan allows differ between tenants.
    org = make_org(conn, timezone=tz, balance=0, plan=("pro", "enterprise")[seed])
    user_ids = [make_user(conn, org) for _ in range(users)]
    add_ledger(
        conn,
        org,
        [
            (5000 + seed, "grant", "Opening balance", dt.datetime(2026, 10, 30, 9, tzinfo=UTC)),
            (-7 - seed, "deduct", "Correction", dt.datetime(2026, 11, 3, 9, tzinfo=UTC)),
        ],
    )
    # A promotion that expires, for the reads of grants expiring soon.
    conn.execute(
        text(
            "INSERT INTO credit_ledger (organization_id, amount, kind, reason, actor, "
            "idempotency_key, created_at, grant_expires_at, grant_priority) "
            "VALUES (:org, :amount, 'grant', 'Promotion', 'finance@example.com', "
            "'promo-' || :org, '2026-10-31 09:00Z', '2027-01-31 00:00Z', 5)"
        ),
        {"org": org, "amount": 300 + seed},
    )
    rows = []
    for i in range(10 + 5 * seed):
        at = dt.datetime(2026, 11, 2, 8, tzinfo=UTC) + dt.timedelta(hours=7 * i)
        rows.append(
            (user_ids[i % users], ("chat", "image", "video")[i % (2 + seed)], 1 + i % 5 + seed, at)
        )
    add_generations(conn, org, rows)
    conn.execute(
        text(
            "INSERT INTO audit_log (organization_id, action, actor, reason, details) "
            "VALUES (:org, 'set_daily_limit', 'cs@example.com', 'test', '{}')"
        ),
        {"org": org},
    )
    return Context(org, user_ids[0], dt.date(2026, 11, 1), dt.date(2026, 11, 14))


def test_every_read_function_is_registered() -> None:
    missing = public_read_functions() - registered()
    assert not missing, f"add these to tests/queries/read_functions.py: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(PER_ORGANIZATION))
def test_per_organization_reads_see_only_their_organization(
    connection: Connection, name: str
) -> None:
    ensure_types(connection)
    call = PER_ORGANIZATION[name]
    mine = _tenant(connection, tz="Europe/Berlin", users=2, seed=0)
    alone = _norm(call(connection, mine))
    assert alone not in (None, [], {}), "the function returned nothing to compare"

    # Add another tenant with rows on the same days: my answer must not change. (Adding,
    # not removing: the ledger, audit log and generations are append-only.)
    theirs = _tenant(connection, tz="America/New_York", users=3, seed=1)
    assert _norm(call(connection, mine)) == alone
    assert _norm(call(connection, theirs)) != alone, "both tenants look the same"
