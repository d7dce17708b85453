"""The schema as PostgreSQL sees it: indexes, keys and the rules the database enforces."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from tests.factories import ensure_types, make_org, make_user

TENANT_TABLES = (
    "users",
    "credit_balances",
    "credit_ledger",
    "usage_limits",
    "generations",
    "audit_log",
    "alert_deliveries",
)


def _index_columns(
    conn: Connection, table: str
) -> dict[str, tuple[tuple[str, ...], bool, str | None]]:
    rows = conn.execute(
        text(
            """
            SELECT i.relname,
                   array_agg(a.attname ORDER BY k.ord) AS cols,
                   ix.indisunique,
                   pg_get_expr(ix.indpred, ix.indrelid) AS predicate
            FROM pg_index ix
            JOIN pg_class i ON i.oid = ix.indexrelid
            JOIN pg_class t ON t.oid = ix.indrelid
            CROSS JOIN LATERAL unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
            WHERE t.relname = :table AND t.relnamespace = 'public'::regnamespace
            GROUP BY i.relname, ix.indisunique, ix.indpred, ix.indrelid
            """
        ),
        {"table": table},
    )
    return {r.relname: (tuple(r.cols), r.indisunique, r.predicate) for r in rows}


@pytest.mark.parametrize(
    ("table", "columns", "unique"),
    [
        # The seed's compound indexes, which every dashboard query relies on.
        ("generations", ("organization_id", "created_at"), False),
        ("usage_limits", ("organization_id", "date"), False),
        ("usage_limits", ("organization_id", "type", "date"), True),
        ("credit_ledger", ("organization_id", "created_at"), False),
        ("credit_ledger", ("organization_id", "idempotency_key"), True),
        ("credit_balances", ("organization_id",), True),
        ("organizations", ("slug",), True),
        ("users", ("email",), True),
        ("users", ("organization_id", "id"), True),
        ("generations", ("organization_id", "user_id", "created_at"), False),
    ],
)
def test_index_exists(
    connection: Connection, table: str, columns: tuple[str, ...], unique: bool
) -> None:
    found = {cols: uniq for cols, uniq, _ in _index_columns(connection, table).values()}
    assert columns in found, f"{table} has no index on {columns}: {sorted(found)}"
    assert found[columns] is unique


def test_every_foreign_key_is_served_by_an_index(connection: Connection) -> None:
    fks = connection.execute(
        text(
            """
            SELECT c.conname, t.relname AS tbl,
                   array_agg(a.attname ORDER BY k.ord) AS cols
            FROM pg_constraint c
            JOIN pg_class t ON t.oid = c.conrelid
            CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
            WHERE c.contype = 'f' AND t.relnamespace = 'public'::regnamespace
            GROUP BY c.conname, t.relname
            """
        )
    ).all()
    assert len(fks) >= 10
    for fk in fks:
        indexes = [cols for cols, _, _ in _index_columns(connection, fk.tbl).values()]
        n = len(fk.cols)
        assert any(sorted(cols[:n]) == sorted(fk.cols) for cols in indexes), (
            f"{fk.conname}: no index leads with {fk.cols}"
        )


def test_every_tenant_table_requires_organization_id(connection: Connection) -> None:
    rows = connection.execute(
        text(
            "SELECT table_name, is_nullable FROM information_schema.columns "
            "WHERE table_schema = 'public' AND column_name = 'organization_id'"
        )
    ).all()
    nullable = {r.table_name: r.is_nullable for r in rows}
    for table in TENANT_TABLES:
        assert nullable.get(table) == "NO", table


def test_keys_of_tenant_tables_allow_distribution_by_organization(connection: Connection) -> None:
    # Citus requires primary keys and unique constraints of a distributed table to
    # include the distribution column. users.email is the documented exception.
    for table in TENANT_TABLES:
        for name, (cols, unique, _) in _index_columns(connection, table).items():
            if unique and name != "uq_users_email":
                assert "organization_id" in cols, f"{table}.{name} {cols}"


def test_balance_cannot_go_negative(connection: Connection) -> None:
    org = make_org(connection, balance=5)
    with pytest.raises(IntegrityError, match="balance_not_negative"):
        connection.execute(
            text("UPDATE credit_balances SET balance = balance - 6 WHERE organization_id = :o"),
            {"o": org},
        )


def test_generation_user_must_belong_to_the_paying_organization(connection: Connection) -> None:
    ensure_types(connection)
    # Funded, so that the balance (migration 0013's trigger) is not what refuses it.
    paying, other = make_org(connection, balance=5), make_org(connection)
    outsider = make_user(connection, other)
    with pytest.raises(IntegrityError, match="fk_generations_organization_id_user_id_users"):
        connection.execute(
            text(
                "INSERT INTO generations (organization_id, user_id, type, credits) "
                "VALUES (:org, :user, 'chat', 1)"
            ),
            {"org": paying, "user": outsider},
        )


def test_one_usage_row_per_organization_type_and_day(connection: Connection) -> None:
    ensure_types(connection)
    org = make_org(connection)
    insert = text(
        "INSERT INTO usage_limits (organization_id, type, date, used, daily_limit) "
        "VALUES (:org, 'chat', :day, 1, 10)"
    )
    connection.execute(insert, {"org": org, "day": dt.date(2026, 1, 1)})
    with pytest.raises(IntegrityError, match="uq_usage_limits_organization_id_type_date"):
        connection.execute(insert, {"org": org, "day": dt.date(2026, 1, 1)})


def test_idempotency_key_is_unique_per_organization(connection: Connection) -> None:
    org, other = make_org(connection), make_org(connection)
    insert = text(
        "INSERT INTO credit_ledger (organization_id, amount, balance_after, kind, reason, actor, "
        "idempotency_key) VALUES (:org, 10, 10, 'grant', 'test', 'a@example.com', 'key-1')"
    )
    connection.execute(insert, {"org": org})
    connection.execute(insert, {"org": other})  # another tenant may use the same key
    with pytest.raises(IntegrityError, match="uq_credit_ledger_organization_id_idempotency_key"):
        connection.execute(insert, {"org": org})


@pytest.mark.parametrize(
    ("amount", "kind"),
    [(0, "grant"), (-5, "grant"), (5, "deduct"), (5, "bonus")],
)
def test_ledger_rejects_amounts_that_contradict_their_kind(
    connection: Connection, amount: int, kind: str
) -> None:
    org = make_org(connection, balance=10)  # funded: the kind refuses it, not the balance
    with pytest.raises(IntegrityError):
        connection.execute(
            text(
                "INSERT INTO credit_ledger (organization_id, amount, balance_after, kind, reason, "
                "actor, idempotency_key) VALUES (:org, :amount, 0, :kind, 'r', 'a@x.com', 'k')"
            ),
            {"org": org, "amount": amount, "kind": kind},
        )


def test_the_database_books_a_ledger_entry_whatever_balance_after_it_is_given(
    connection: Connection,
) -> None:
    # Migration 0013: the insert moves the balance and sets balance_after, even the
    # owner's (which may still back-date it).
    org = make_org(connection, balance=7)
    booked = connection.execute(
        text(
            "INSERT INTO credit_ledger (organization_id, amount, balance_after, kind, reason, "
            "actor, idempotency_key, created_at) VALUES (:o, 5, 999999, 'grant', 'r', "
            "'a@example.com', 'k', TIMESTAMPTZ '2020-01-01 00:00:00+00') "
            "RETURNING balance_after, created_at"
        ),
        {"o": org},
    ).one()
    assert booked.balance_after == 12
    assert booked.created_at == dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    balance = connection.execute(
        text("SELECT balance FROM credit_balances WHERE organization_id = :o"), {"o": org}
    ).scalar_one()
    assert balance == 12


@pytest.mark.parametrize("table", ["credit_ledger", "generations"])
def test_the_database_refuses_an_insert_that_takes_a_balance_below_zero(
    connection: Connection, table: str
) -> None:
    ensure_types(connection)
    org = make_org(connection, balance=5)
    user = make_user(connection, org)
    statement = {
        "credit_ledger": "INSERT INTO credit_ledger (organization_id, amount, kind, reason, "
        "actor, idempotency_key) VALUES (:o, -6, 'deduct', 'r', 'a@example.com', 'k')",
        "generations": "INSERT INTO generations (organization_id, user_id, type, credits) "
        "VALUES (:o, :u, 'chat', 6)",
    }[table]
    with pytest.raises(IntegrityError) as refused, connection.begin_nested():
        connection.execute(text(statement), {"o": org, "u": user})
    diag = refused.value.orig.diag  # type: ignore[union-attr]
    assert diag.constraint_name == "ck_credit_balances_balance_not_negative"
    assert json.loads(diag.message_detail or "") == {
        "organization_id": org,
        "balance": 5,
        "requested": 6,
    }
    balance = connection.execute(
        text("SELECT balance FROM credit_balances WHERE organization_id = :o"), {"o": org}
    ).scalar_one()
    assert balance == 5
