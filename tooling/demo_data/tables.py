"""The tables a load replaces, and what it takes off them meanwhile: the append-only
guard and the book's triggers, each table's indexes and keys (rebuilt as steps)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg
from psycopg import sql
from sqlalchemy import Connection, ForeignKeyConstraint, PrimaryKeyConstraint, UniqueConstraint
from sqlalchemy.schema import AddConstraint, CreateIndex, DropConstraint, DropIndex

from queries.models import Base
from tooling import staging

# The append-only guard of migration 0003: one trigger per table, created ENABLE ALWAYS
# (it fires even under session_replication_role = replica).
_GUARD_OFF = (
    "ALTER TABLE credit_ledger DISABLE TRIGGER credit_ledger_append_only",
    "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
    "ALTER TABLE generations DISABLE TRIGGER generations_append_only",
)
_GUARD_ON = (
    "ALTER TABLE credit_ledger ENABLE ALWAYS TRIGGER credit_ledger_append_only",
    "ALTER TABLE audit_log ENABLE ALWAYS TRIGGER audit_log_append_only",
    "ALTER TABLE generations ENABLE ALWAYS TRIGGER generations_append_only",
)
# The book's triggers of migration 0013 (plain ENABLE): inserting a ledger entry or a
# generation moves the balance. The loader COPYs a book it computed whole (every
# balance_after and final balance), so they are off with the guard.
# So is migration 0021's that opens a new balance's grants: the loader COPYs them too.
# So is the trigger of migration 0017 that keeps a day's usual day at its first use:
# the loader keeps those of the load's last day itself (rollups.keep_usual_days).
_BOOK_OFF = (
    "ALTER TABLE credit_ledger DISABLE TRIGGER credit_ledger_moves_balance",
    "ALTER TABLE generations DISABLE TRIGGER generations_move_balance",
    "ALTER TABLE usage_limits DISABLE TRIGGER usage_limits_keep_usual_day",
    "ALTER TABLE credit_balances DISABLE TRIGGER credit_balances_open_grants",
)
_BOOK_ON = (
    "ALTER TABLE credit_ledger ENABLE TRIGGER credit_ledger_moves_balance",
    "ALTER TABLE generations ENABLE TRIGGER generations_move_balance",
    "ALTER TABLE usage_limits ENABLE TRIGGER usage_limits_keep_usual_day",
    "ALTER TABLE credit_balances ENABLE TRIGGER credit_balances_open_grants",
)


@contextlib.contextmanager
def append_only_guard_lifted(connection: Connection) -> Iterator[None]:
    """The one way around the append-only guard, for demo data only: inside the
    caller's open transaction, as the tables' owner, the guard is off for the block and
    on again at its end, before anything commits, so no other session ever sees it off
    (ALTER TABLE also locks out their writes meanwhile). If the block raises, the
    caller's rollback restores the guard with everything else. The triggers that move
    balances are off in the block too: what it inserts must keep balances equal to the
    ledger minus consumption itself, as the demo loader's COPY does.
    """
    for statement in (*_GUARD_OFF, *_BOOK_OFF):
        connection.exec_driver_sql(statement)
    yield
    for statement in (*_GUARD_ON, *_BOOK_ON):
        connection.exec_driver_sql(statement)


@dataclass(frozen=True, slots=True)
class TableKeys:
    """A table's indexes and keys as separate steps, taken from the models.

    Taken from the metadata so a bulk load can never recreate a schema that differs
    from the migrations (``alembic check`` keeps those two equal). Primary keys and
    unique constraints are built as plain unique indexes first and attached with
    ``USING INDEX`` afterwards: ``ADD PRIMARY KEY`` would lock the table against the
    other index builds, a ``CREATE INDEX`` only against writes, so two sessions can
    build two indexes of one table at once. Unqualified names: the session's
    ``search_path`` says which schema (``public``, or the staging one).
    """

    table: str
    drops: tuple[Statement, ...]
    indexes: tuple[Statement, ...]
    attach: tuple[Statement, ...]
    foreign_keys: tuple[Statement, ...]
    # The same keys in two steps: added NOT VALID (a moment's lock on both tables),
    # then validated, which locks only this table against writes and schema changes,
    # so the big scans of different tables can run at once (a plain ADD FOREIGN KEY
    # also locks the referenced table, and every key references organizations).
    foreign_keys_not_valid: tuple[Statement, ...]
    validations: tuple[Statement, ...]


Statement = staging.Statement


def table_keys(table_name: str) -> TableKeys:
    """The steps that drop and rebuild ``table_name``'s indexes and keys."""
    from sqlalchemy.dialects import postgresql

    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    table = Base.metadata.tables[table_name]
    own = [c for c in table.constraints if isinstance(c, PrimaryKeyConstraint | UniqueConstraint)]
    foreign = [c for c in table.constraints if isinstance(c, ForeignKeyConstraint)]
    name = sql.Identifier(table_name)
    indexes: list[Statement] = []
    attach: list[Statement] = []
    for constraint in own:
        index = sql.Identifier(str(constraint.name))
        columns = sql.SQL(", ").join(sql.Identifier(c.name) for c in constraint.columns)
        kind = "PRIMARY KEY" if isinstance(constraint, PrimaryKeyConstraint) else "UNIQUE"
        # A key's covering columns (postgresql_include) belong to its index too.
        include = constraint.dialect_options["postgresql"]["include"] or []
        covering = (
            sql.SQL(" INCLUDE ({})").format(
                sql.SQL(", ").join(sql.Identifier(str(getattr(c, "name", c))) for c in include)
            )
            if include
            else sql.SQL("")
        )
        indexes.append(
            sql.SQL("CREATE UNIQUE INDEX {} ON {} ({}){}").format(index, name, columns, covering)
        )
        attach.append(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} USING INDEX {}").format(
                name, index, sql.SQL(kind), index
            )
        )
    indexes += [str(CreateIndex(i).compile(dialect=dialect)) for i in table.indexes]
    drops: list[Statement] = [str(DropConstraint(c).compile(dialect=dialect)) for c in foreign]
    drops += [str(DropIndex(i).compile(dialect=dialect)) for i in table.indexes]
    drops += [str(DropConstraint(c).compile(dialect=dialect)) for c in own]
    return TableKeys(
        table=table_name,
        drops=tuple(drops),
        indexes=tuple(indexes),
        attach=tuple(attach),
        # Foreign keys last: their validating joins use the indexes just built.
        foreign_keys=tuple(str(AddConstraint(c).compile(dialect=dialect)) for c in foreign),
        foreign_keys_not_valid=tuple(
            sql.SQL("{} NOT VALID").format(sql.SQL(str(AddConstraint(c).compile(dialect=dialect))))
            for c in foreign
        ),
        validations=tuple(
            sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                name, sql.Identifier(str(c.name))
            )
            for c in foreign
        ),
    )


def statement_label(statement: Statement) -> str:
    """A short name for a stage line (``-v``)."""
    text_ = statement if isinstance(statement, str) else statement.as_string(None)
    return " ".join(text_.replace('"', "").split()).split(" (")[0][:70]


# The product's configuration, kept by migrations and admins, not drawn by the demo: a
# load keeps it as it is (the plans' allowances and the history of their changes).
CONFIGURATION_TABLES = frozenset({"plan_allowances", "plan_allowance_changes"})


def schema_tables() -> tuple[str, ...]:
    """Every table of the models but the configuration, referenced before referencing:
    what a load replaces."""
    return tuple(t.name for t in Base.metadata.sorted_tables if t.name not in CONFIGURATION_TABLES)


def build_keys_serially(
    conn: psycopg.Connection, lap: Callable[[str], None], *, analyze: bool = True
) -> None:
    """Every index and key of the schema, one after the other, on ``conn``."""
    keys = [table_keys(t) for t in schema_tables()]
    conn.execute("SET LOCAL maintenance_work_mem = '1GB'")
    for step in ("indexes", "attach", "foreign_keys"):
        for k in keys:
            for statement in getattr(k, step):
                conn.execute(statement)
                lap(statement_label(statement))
    if analyze:
        for table in schema_tables():
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
        lap("analyze")
