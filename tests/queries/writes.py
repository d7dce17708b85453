"""Helpers for tests of writes, which commit in the writes database."""

from __future__ import annotations

from sqlalchemy import Engine, text

from tests.factories import ensure_types, make_org, make_user


def new_org(
    engine: Engine,
    *,
    balance: int = 0,
    timezone: str = "UTC",
    users: int = 1,
    plan: str = "pro",
) -> tuple[int, list[int]]:
    """A committed organization with ``users`` members and a starting balance.

    The starting balance is a committed ledger grant (the database books it), so the
    balance invariant holds.
    """
    with engine.begin() as conn:
        ensure_types(conn)
        org = make_org(conn, timezone=timezone, plan=plan)
        members = [make_user(conn, org) for _ in range(users)]
        if balance:
            conn.execute(
                text(
                    "INSERT INTO credit_ledger (organization_id, amount, kind, "
                    "reason, actor, idempotency_key) "
                    "VALUES (:org, :b, 'grant', 'Opening balance', 'setup@example.com', 'open')"
                ),
                {"org": org, "b": balance},
            )
    return org, members


def add_due_grant(
    engine: Engine, organization_id: int, amount: int, *, priority: int | None = None
) -> int:
    """A grant made two days ago that expired yesterday and is not yet written off, as
    the owner may back-date; its ledger entry id. Time passes without a clock."""
    with engine.begin() as conn:
        return int(
            conn.execute(
                text(
                    "INSERT INTO credit_ledger (organization_id, amount, kind, reason, actor, "
                    "idempotency_key, created_at, grant_expires_at, grant_priority) "
                    "VALUES (:org, :amount, 'grant', 'Promotion', 'setup@example.com', "
                    "'due-' || gen_random_uuid(), now() - interval '2 days', "
                    "now() - interval '1 day', :priority) RETURNING id"
                ),
                {"org": organization_id, "amount": amount, "priority": priority},
            ).scalar_one()
        )


def snapshot(engine: Engine, organization_id: int) -> dict[str, object]:
    """Everything a write could change for one organization."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                """
                SELECT (SELECT balance FROM credit_balances WHERE organization_id = :org) AS balance,
                       (SELECT count(*) FROM credit_ledger WHERE organization_id = :org) AS ledger,
                       (SELECT count(*) FROM generations WHERE organization_id = :org) AS generations,
                       (SELECT coalesce(sum(used), 0) FROM usage_limits WHERE organization_id = :org) AS used,
                       (SELECT count(*) FROM usage_limits WHERE organization_id = :org) AS usage_rows,
                       (SELECT string_agg(daily_limit::text, ',' ORDER BY type, date) FROM usage_limits
                         WHERE organization_id = :org) AS limits,
                       (SELECT count(*) FROM audit_log WHERE organization_id = :org) AS audit,
                       (SELECT count(*) FROM reconciliation_checkpoints
                         WHERE organization_id = :org) AS checkpoints,
                       (SELECT count(*) FROM alert_deliveries
                         WHERE organization_id = :org) AS alert_deliveries
                """
            ),
            {"org": organization_id},
        ).one()
    return dict(row._mapping)


def invariant_holds(engine: Engine, organization_id: int) -> bool:
    """balance = sum(ledger) - sum(generation credits) = sum(grants' remaining), and
    nothing negative (each grant's parts add up: its table's checks)."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                """
                SELECT b.balance,
                       (SELECT coalesce(sum(amount), 0) FROM credit_ledger WHERE organization_id = :org) AS ledger,
                       (SELECT coalesce(sum(credits), 0) FROM generations WHERE organization_id = :org) AS spent,
                       (SELECT coalesce(min(balance_after), 0) FROM credit_ledger WHERE organization_id = :org) AS lowest,
                       (SELECT coalesce(sum(remaining), 0) FROM credit_grants WHERE organization_id = :org) AS granted
                FROM credit_balances b WHERE b.organization_id = :org
                """
            ),
            {"org": organization_id},
        ).one()
    return bool(
        row.balance == row.ledger - row.spent == row.granted
        and row.balance >= 0
        and row.lowest >= 0
    )
