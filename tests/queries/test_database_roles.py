"""The database itself keeps the books: append-only history and least privilege.

- ``credit_ledger``, ``audit_log`` and ``generations`` refuse UPDATE, DELETE and
  TRUNCATE for their owner, a superuser here; INSERT still works.
- A login that is only a member of ``dashboard_app`` runs every write function of
  queries/, and is refused DDL, DELETE, TRUNCATE, rewriting history and updating
  columns the writes do not need.
- A login that is only a member of ``dashboard_reader`` runs every public read and is
  refused every write.
- A login that is only a member of ``dashboard_auditor`` runs every public read and
  ``dashboard reconcile``, which records checkpoints; it is refused every other write.
  Neither the app nor a reader may write a checkpoint.
"""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

import cli.main
import queries
from cli import server
from queries.alerts import Alert, deliver
from queries.allowances import AllowanceReport, grant_allowances, set_plan_allowance
from queries.approvals import approve, reject, request_adjustment
from queries.bulk import apply_bulk
from queries.credits import adjust_credits, reverse_adjustment
from queries.db import create_runtime_engine
from queries.edges import KeptEdges, keep_usage_edges
from queries.embedded_server import owns_url
from queries.generations import record_generation
from queries.grants import ExpiryReport, expire_credits
from queries.limit_approvals import (
    approve_limit_request,
    reject_limit_request,
    request_limit_change,
)
from queries.models import Base
from queries.orgs import set_timezone
from queries.quotas import set_daily_limit, set_limit_enforcement
from queries.reconciliation import check_books, reconcile
from tests.conftest import PgServer, seeded_database
from tests.factories import add_generations, add_ledger, ensure_types, make_org, make_user
from tests.queries.read_functions import CHECKS, CROSS_ORGANIZATION, PER_ORGANIZATION, Context
from tests.queries.roles import (
    APP_LOGIN,
    AUDITOR_LOGIN,
    READER_LOGIN,
    login_engine,
    password_for,
)
from tests.queries.writes import add_due_grant, invariant_holds, new_org, snapshot
from tooling import embedded
from tooling.embedded import ensure_login_role

ACTOR = "finance@example.com"
APPEND_ONLY = ("credit_ledger", "audit_log", "generations")
TABLES = sorted({*Base.metadata.tables, "alembic_version"})


# --------------------------------------------------------------------------- the grants


_TABLE_GRANTS = text(
    """
    SELECT c.relname, NULL AS attname, a.privilege_type
    FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
    JOIN pg_roles r ON r.oid = a.grantee
    WHERE r.rolname = :role AND c.relnamespace = CAST('public' AS regnamespace)
    UNION ALL
    SELECT c.relname, t.attname, a.privilege_type
    FROM pg_attribute t JOIN pg_class c ON c.oid = t.attrelid
    CROSS JOIN LATERAL aclexplode(t.attacl) a
    JOIN pg_roles r ON r.oid = a.grantee
    WHERE r.rolname = :role AND c.relnamespace = CAST('public' AS regnamespace)
    """
)
_ROLE = text(
    "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls, "
    "has_schema_privilege(rolname, 'public', 'USAGE') AS can_use, "
    "has_schema_privilege(rolname, 'public', 'CREATE') AS can_create "
    "FROM pg_roles WHERE rolname = :role"
)


# The SECURITY DEFINER functions of the public schema a role may call: migration
# 0013's (the book's trigger functions are nobody's to call).
_EXECUTABLE = text(
    """
    SELECT p.proname FROM pg_proc p
    WHERE p.pronamespace = CAST('public' AS regnamespace) AND p.prosecdef
      AND has_function_privilege(:role, p.oid, 'EXECUTE')
    """
)
APP_FUNCTIONS = {"lock_organization", "lock_organizations", "decide_approval_request"}


def _executable(conn: Connection, role: str) -> set[str]:
    return set(conn.execute(_EXECUTABLE, {"role": role}).scalars())


def _grants(conn: Connection, role: str) -> set[tuple[str, str | None, str]]:
    rows = conn.execute(_TABLE_GRANTS, {"role": role})
    return {(row.relname, row.attname, row.privilege_type) for row in rows}


def test_every_table_is_readable_by_every_role_and_nothing_more_is_granted(
    engine: Engine,
) -> None:
    # A later migration that adds a table without granting SELECT on it fails here.
    select_all = {(table, None, "SELECT") for table in TABLES}
    app_writes = {
        # Only the database moves a balance and sets an entry's id, time and
        # balance_after, and an audit row's id and time (migration 0013).
        ("generations", None, "INSERT"),
        *(
            ("credit_ledger", column, "INSERT")
            for column in (
                "organization_id",
                "amount",
                "kind",
                "reason",
                "note",
                "actor",
                "idempotency_key",
                "reverses_id",
                # A grant's terms (0021); the database sets an expiry's grant and time.
                "grant_expires_at",
                "grant_priority",
            )
        ),
        *(
            ("audit_log", column, "INSERT")
            for column in (
                "organization_id",
                "action",
                "actor",
                "reason",
                "details",
                "idempotency_key",
            )
        ),
        *(
            ("usage_limits", column, "INSERT")
            for column in ("organization_id", "type", "date", "used", "credits_used")
        ),
        ("usage_limits", "daily_limit", "INSERT"),
        *(
            ("usage_limits", column, "UPDATE")
            for column in ("used", "credits_used", "daily_limit", "updated_at")
        ),
        # The rollups record_generation upserts: insert a row, add to its counts.
        *(
            ("user_daily_usage", column, "INSERT")
            for column in ("organization_id", "user_id", "date", "type", "generations", "credits")
        ),
        *(
            ("quarter_hour_usage", column, "INSERT")
            for column in ("organization_id", "bucket", "type", "generations", "credits")
        ),
        *(
            (table, column, "UPDATE")
            for table in ("user_daily_usage", "quarter_hour_usage")
            for column in ("generations", "credits")
        ),
        # set_timezone: the zone, and the per-user local days it rebuilds.
        ("organizations", "timezone", "UPDATE"),
        ("user_daily_usage", None, "DELETE"),
        # The cross-organization rollups (0007): record_generation inserts a day or a
        # month and adds to it (and to a back-dated day's later prefix sums);
        # set_timezone deletes an organization's rows and rebuilds them.
        *(
            ("organization_daily_usage", column, privilege)
            for column in ("generations", "credits", "generations_through", "credits_through")
            for privilege in ("INSERT", "UPDATE")
        ),
        *(("organization_daily_usage", column, "INSERT") for column in ("organization_id", "date")),
        *(
            ("organization_monthly_usage", column, privilege)
            for column in ("generations", "credits")
            for privilege in ("INSERT", "UPDATE")
        ),
        *(
            ("organization_monthly_usage", column, "INSERT")
            for column in ("month", "organization_id")
        ),
        ("organization_daily_usage", None, "DELETE"),
        ("organization_monthly_usage", None, "DELETE"),
        # The usual days (0017): written by the first generation of a day's trigger,
        # refreshed when stale, rebuilt by set_timezone.
        *(
            ("usual_days", column, privilege)
            for column in ("timezone", "generations_before", "usual_before")
            for privilege in ("INSERT", "UPDATE")
        ),
        *(("usual_days", column, "INSERT") for column in ("organization_id", "date")),
        ("usual_days", None, "DELETE"),
        # The kept usage edges (0025): record_generation upserts the kept edges after
        # it; the day's turn registers an edge, fills its rows and drops old ones.
        *(
            ("usage_edges", column, "INSERT")
            for column in ("edge", "organization_id", "generations", "credits")
        ),
        *(("usage_edges", column, "UPDATE") for column in ("generations", "credits")),
        ("usage_edges", None, "DELETE"),
        ("kept_usage_edges", "edge", "INSERT"),
        ("kept_usage_edges", None, "DELETE"),
        # Two-person approval (0009): a request is inserted.
        *(
            ("approval_requests", column, "INSERT")
            for column in (
                "organization_id",
                "amount",
                "reason",
                "note",
                "requested_by",
                "idempotency_key",
                "expires_at",
                "grant_expires_at",
                "grant_priority",
            )
        ),
        # A limit change is kept as made (0018): inserted, never changed.
        *(
            ("limit_changes", column, "INSERT")
            for column in ("organization_id", "type", "effective", "until", "daily_limit")
        ),
        # A limit request (0019) is inserted, and its decision recorded in its own columns
        # (the two-person rule is its CHECK).
        *(
            ("limit_requests", column, "INSERT")
            for column in (
                "organization_id",
                "type",
                "daily_limit",
                "effective",
                "until",
                "reason",
                "requested_by",
                "idempotency_key",
            )
        ),
        *(
            ("limit_requests", column, "UPDATE")
            for column in ("status", "decided_by", "decided_at", "decision_reason", "audit_id")
        ),
        # A limit's mode (0020): set_limit_enforcement upserts it, never deletes it.
        *(
            ("limit_enforcement", column, "INSERT")
            for column in ("organization_id", "type", "soft")
        ),
        *(("limit_enforcement", column, "UPDATE") for column in ("soft", "updated_at")),
        # Plan allowances (0022): an admin changes a plan's two amounts, stamped, and
        # the change is recorded in its append-only history.
        *(
            ("plan_allowances", column, "UPDATE")
            for column in ("monthly_allowance", "rollover_cap", "updated_at", "updated_by")
        ),
        *(
            ("plan_allowance_changes", column, "INSERT")
            for column in (
                "plan",
                "monthly_allowance",
                "rollover_cap",
                "old_monthly_allowance",
                "old_rollover_cap",
                "actor",
                "reason",
                "idempotency_key",
            )
        ),
        # Decisions are decide_approval_request's (0013): no UPDATE of a request.
        # Checkpoints are the reconciler's (0014): the app only reads them.
        # Alert deliveries (0011): a delivery is inserted, never changed or deleted.
        *(
            ("alert_deliveries", column, "INSERT")
            for column in (
                "organization_id",
                "kind",
                "type",
                "local_day",
                "message",
                "details",
                "destination",
            )
        ),
    }
    # Reconciliation (0008, 0014): the reconciler writes the checkpoints of what
    # verified (the database sets verified_at of a new one), moves a clean
    # organization's to its new ids and deletes a drifted one's. The app only reads them.
    auditor_writes = {
        *(
            ("reconciliation_checkpoints", column, "INSERT")
            for column in ("organization_id", "date", "generation_id", "ledger_id", "timezone")
        ),
        *(
            ("reconciliation_checkpoints", column, "UPDATE")
            for column in ("generation_id", "ledger_id", "timezone", "verified_at")
        ),
        ("reconciliation_checkpoints", None, "DELETE"),
        # And what each run found (0024): inserted once, never changed; the database
        # names who ran it.
        *(
            ("reconciliation_runs", column, "INSERT")
            for column in (
                "checked_at",
                "full_check",
                "organizations_checked",
                "days_checked",
                "drifts",
            )
        ),
    }
    with engine.connect() as conn:
        assert _grants(conn, "dashboard_reader") == select_all
        assert _grants(conn, "dashboard_app") == select_all | app_writes
        assert _grants(conn, "dashboard_auditor") == select_all | auditor_writes
        for role in ("dashboard_app", "dashboard_reader", "dashboard_auditor"):
            assert _executable(conn, role) == (APP_FUNCTIONS if role == "dashboard_app" else set())
        for role in ("dashboard_app", "dashboard_reader", "dashboard_auditor"):
            facts = conn.execute(_ROLE, {"role": role}).one()
            assert tuple(facts) == (False, False, False, False, False, True, False), role


# record_generation's work (migration 0016): it writes with its caller's rights, so what
# a role may write is still its grants on the tables; its search_path is fixed, so the
# caller's cannot redirect a table; only the app may call it.
_WORK_FUNCTION = text(
    """
    SELECT p.prosecdef, p.proconfig,
           has_function_privilege('dashboard_app', p.oid, 'EXECUTE'),
           has_function_privilege('dashboard_reader', p.oid, 'EXECUTE'),
           has_function_privilege('dashboard_auditor', p.oid, 'EXECUTE')
    FROM pg_proc p
    WHERE p.proname = 'record_generation_work'
    """
)


def test_record_generation_work_runs_with_the_callers_rights_for_the_app_only(
    engine: Engine,
) -> None:
    with engine.connect() as conn:
        assert tuple(conn.execute(_WORK_FUNCTION).one()) == (
            False,
            ["search_path=pg_catalog, public, pg_temp"],
            True,
            False,
            False,
        )


# ------------------------------------------------------------------- append-only, owner


_REWRITES = {
    ("credit_ledger", "UPDATE"): text(
        "UPDATE credit_ledger SET reason = 'rewritten' WHERE organization_id = :org"
    ),
    ("credit_ledger", "DELETE"): text("DELETE FROM credit_ledger WHERE organization_id = :org"),
    ("credit_ledger", "TRUNCATE"): text("TRUNCATE credit_ledger"),
    ("audit_log", "UPDATE"): text(
        "UPDATE audit_log SET actor = 'someone-else' WHERE organization_id = :org"
    ),
    ("audit_log", "DELETE"): text("DELETE FROM audit_log WHERE organization_id = :org"),
    ("audit_log", "TRUNCATE"): text("TRUNCATE audit_log"),
    ("generations", "UPDATE"): text(
        "UPDATE generations SET credits = 0 WHERE organization_id = :org"
    ),
    ("generations", "DELETE"): text("DELETE FROM generations WHERE organization_id = :org"),
    ("generations", "TRUNCATE"): text("TRUNCATE generations"),
    # Refused even when it would change nothing: the statement itself is the refusal.
    ("credit_ledger", "DELETE nothing"): text("DELETE FROM credit_ledger WHERE false"),
    ("generations", "UPDATE nothing"): text("UPDATE generations SET credits = credits WHERE false"),
}
_COUNTS = text(
    "SELECT (SELECT count(*) FROM credit_ledger WHERE organization_id = :org), "
    "(SELECT count(*) FROM audit_log WHERE organization_id = :org), "
    "(SELECT count(*) FROM generations WHERE organization_id = :org)"
)
_AUDIT_ROW = text(
    "INSERT INTO audit_log (organization_id, action, actor, reason) "
    "VALUES (:org, 'set_daily_limit', :actor, 'test')"
)


def _history(conn: Connection) -> int:
    """An organization with rows in each append-only table, inserted by the owner."""
    ensure_types(conn)
    org = make_org(conn)
    user = make_user(conn, org)
    at = dt.datetime(2026, 11, 2, 9, tzinfo=dt.UTC)
    add_ledger(conn, org, [(500, "grant", "Opening balance", at)])
    add_generations(conn, org, [(user, "chat", 1, at), (user, "image", 4, at)])
    conn.execute(_AUDIT_ROW, {"org": org, "actor": ACTOR})
    return org


def _is_superuser(conn: Connection) -> bool:
    return bool(
        conn.execute(
            text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        ).scalar_one()
    )


@pytest.mark.parametrize("replica", [False, True], ids=["normal", "replica-mode"])
@pytest.mark.parametrize("case", sorted(_REWRITES), ids="-".join)
def test_history_cannot_be_rewritten_even_by_the_owner(
    connection: Connection, case: tuple[str, str], replica: bool
) -> None:
    table, _ = case
    org = _history(connection)  # INSERT works for the owner
    before = connection.execute(_COUNTS, {"org": org}).one()
    assert min(before) > 0
    if replica and not _is_superuser(connection):
        pytest.skip("only a superuser can switch session_replication_role")
    with pytest.raises(IntegrityError) as refused, connection.begin_nested():
        if replica:  # the usual way to silence triggers does not silence these
            connection.execute(text("SET LOCAL session_replication_role = replica"))
        connection.execute(_REWRITES[case], {"org": org})
    assert isinstance(refused.value.orig, psycopg.errors.RestrictViolation)
    assert f"{table} is append-only: " in str(refused.value.orig)
    assert connection.execute(_COUNTS, {"org": org}).one() == before


def test_the_refusal_says_how_to_correct_an_entry(connection: Connection) -> None:
    org = _history(connection)
    with pytest.raises(IntegrityError) as refused, connection.begin_nested():
        connection.execute(_REWRITES["credit_ledger", "UPDATE"], {"org": org})
    assert str(refused.value.orig).splitlines()[0] == (
        "credit_ledger is append-only: correct an entry with a new one (a reversal)"
    )


# ------------------------------------------------------------------ logins and fixtures


@pytest.fixture(scope="module")
def app_engine(test_server: PgServer, write_engine: Engine) -> Iterator[Engine]:
    """The writes database, through a login that is only a member of dashboard_app."""
    engine = login_engine(test_server, str(write_engine.url.database), APP_LOGIN)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def auditor_engine(test_server: PgServer, write_engine: Engine) -> Iterator[Engine]:
    """The writes database, through a login that is only a member of dashboard_auditor."""
    engine = login_engine(test_server, str(write_engine.url.database), AUDITOR_LOGIN)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def reader_engine(test_server: PgServer, write_engine: Engine) -> Iterator[Engine]:
    """The writes database, through a login that is only a member of dashboard_reader."""
    engine = login_engine(test_server, str(write_engine.url.database), READER_LOGIN)
    yield engine
    engine.dispose()


_MEMBERSHIPS = text(
    "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
    "JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = :login"
)


def _who(engine: Engine) -> tuple[str, bool, set[str]]:
    with engine.connect() as conn:
        user, superuser = conn.execute(
            text("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")
        ).one()
        groups = set(conn.execute(_MEMBERSHIPS, {"login": user}).scalars())
    return user, superuser, groups


def test_the_test_logins_are_members_of_their_group_only(
    app_engine: Engine, reader_engine: Engine, auditor_engine: Engine
) -> None:
    assert _who(app_engine) == (APP_LOGIN, False, {"dashboard_app"})
    assert _who(reader_engine) == (READER_LOGIN, False, {"dashboard_reader"})
    assert _who(auditor_engine) == (AUDITOR_LOGIN, False, {"dashboard_auditor"})


def test_ensure_login_role_is_idempotent_and_removes_other_memberships(
    test_server: PgServer, engine: Engine
) -> None:
    login = "dashboard_test_web_login"
    password = password_for(test_server, login)
    admin_url = engine.url.render_as_string(hide_password=False)
    url = ensure_login_role(
        admin_url,
        login=login,
        member_of="dashboard_app",
        password=password,
    )
    with engine.begin() as conn:  # someone widened it by hand
        conn.execute(text("GRANT dashboard_reader TO dashboard_test_web_login"))
    again = ensure_login_role(
        admin_url,
        login=login,
        member_of="dashboard_app",
        password=password,
    )
    assert again == url
    web = create_runtime_engine(url)
    try:
        assert _who(web) == (login, False, {"dashboard_app"})
    finally:
        web.dispose()


# ------------------------------------------------------------------ the write functions


@dataclass(frozen=True)
class Tenant:
    organization_id: int
    user_id: int
    entry_id: int  # a grant that can be reversed
    request_id: int  # a pending approval request by another person
    limit_request_id: int  # a pending limit request by another person


def _tenant(owner: Engine) -> Tenant:
    org, users = new_org(owner, balance=1000, users=1)
    entry = adjust_credits(
        owner,
        organization_id=org,
        amount=50,
        reason="Goodwill",
        actor=ACTOR,
        idempotency_key=f"roles-setup-{org}",
    )
    request = request_adjustment(
        owner,
        organization_id=org,
        amount=250_000,
        reason="Enterprise renewal",
        actor="requester@example.com",
        idempotency_key=f"roles-setup-request-{org}",
    )
    limit_request = request_limit_change(
        owner,
        organization_id=org,
        type="chat",
        daily_limit=50_000,
        reason="Launch",
        actor="requester@example.com",
        idempotency_key=f"roles-setup-limit-request-{org}",
    )
    add_due_grant(owner, org, 30)  # for expire_credits to write off
    return Tenant(org, users[0], entry.id, request.id, limit_request.id)


def _limit_later_day_first(engine: Engine, t: Tenant) -> object:
    # A later day's row first, so the change from today also UPDATEs a later row.
    later = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=3)
    set_daily_limit(
        engine,
        organization_id=t.organization_id,
        type="chat",
        daily_limit=9,
        actor=ACTOR,
        reason="Trial",
        effective=later,
    )
    return set_daily_limit(
        engine,
        organization_id=t.organization_id,
        type="chat",
        daily_limit=7,
        actor=ACTOR,
        reason="Trial",
    )


def _reconcile_after_a_generation(engine: Engine, t: Tenant, *, app: Engine) -> object:
    # A generation first (by the app), so the organization has a local day to checkpoint.
    record_generation(
        app,
        organization_id=t.organization_id,
        user_id=t.user_id,
        type="chat",
        idempotency_key=f"roles-reconcile-gen-{t.organization_id}",
    )
    result = reconcile(engine)
    return [d for d in result.drifts if d.organization_id == t.organization_id]


def _timezone_after_a_generation(engine: Engine, t: Tenant) -> object:
    # A generation first, so the rebuild has local days to move.
    record_generation(
        engine,
        organization_id=t.organization_id,
        user_id=t.user_id,
        type="chat",
        idempotency_key=f"roles-zone-gen-{t.organization_id}",
    )
    return set_timezone(
        engine,
        organization_id=t.organization_id,
        timezone="Asia/Kathmandu",
        actor=ACTOR,
        reason="Head office moved",
        idempotency_key=f"roles-zone-{t.organization_id}",
    )


def _bulk_file(engine: Engine, t: Tenant) -> object:
    # One row applied, one above the threshold (a request): both writes of a bulk file.
    with engine.connect() as conn:
        slug = conn.execute(
            text("SELECT slug FROM organizations WHERE id = :org"), {"org": t.organization_id}
        ).scalar_one()
    data = f"organization,amount,reason\n{slug},25,Bulk top-up\n{slug},250000,Renewal\n"
    # The second apply reports the same entry and request ("exists"): compare the ids.
    rows = apply_bulk(engine, data=data.encode(), actor=ACTOR).rows
    return [(row.entry_id, row.request_id) for row in rows]


def _deliver_an_alert(engine: Engine, t: Tenant) -> object:
    # The second delivery sends nothing: compare what is recorded, not the results.
    alert = Alert(
        kind="over_limit",
        organization_id=t.organization_id,
        organization="Roles Org",
        slug="roles-org",
        type="chat",
        local_day=dt.date(2026, 11, 25),
        message="Roles Org is over its chat limit",
        details={"used": 2, "daily_limit": 1},
    )
    deliver(engine, alerts=[alert], send=lambda alerts: None, destination="hooks.example.com")
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT kind, type, local_day, destination FROM alert_deliveries "
                "WHERE organization_id = :org ORDER BY id"
            ),
            {"org": t.organization_id},
        ).all()


WRITES: dict[str, Callable[[Engine, Tenant], object]] = {
    "approvals.request_adjustment": lambda e, t: request_adjustment(
        e,
        organization_id=t.organization_id,
        amount=250_000,
        reason="Enterprise renewal",
        actor=ACTOR,
        idempotency_key=f"roles-request-{t.organization_id}",
    ),
    "approvals.approve": lambda e, t: approve(e, request_id=t.request_id, approver=ACTOR),
    "approvals.reject": lambda e, t: reject(
        e, request_id=t.request_id, approver=ACTOR, reason="Not agreed"
    ),
    "bulk.apply_bulk": _bulk_file,
    "credits.adjust_credits[grant]": lambda e, t: adjust_credits(
        e,
        organization_id=t.organization_id,
        amount=100,
        reason="Top-up",
        actor=ACTOR,
        idempotency_key=f"roles-grant-{t.organization_id}",
    ),
    "credits.adjust_credits[deduct]": lambda e, t: adjust_credits(
        e,
        organization_id=t.organization_id,
        amount=-20,
        reason="Correction",
        actor=ACTOR,
        idempotency_key=f"roles-deduct-{t.organization_id}",
    ),
    "credits.reverse_adjustment": lambda e, t: reverse_adjustment(
        e, entry_id=t.entry_id, actor=ACTOR, reason="Granted by mistake"
    ),
    "generations.record_generation": lambda e, t: record_generation(
        e,
        organization_id=t.organization_id,
        user_id=t.user_id,
        type="image",
        idempotency_key=f"roles-gen-{t.organization_id}",
    ),
    "quotas.set_daily_limit": _limit_later_day_first,
    "quotas.set_limit_enforcement": lambda e, t: set_limit_enforcement(
        e,
        organization_id=t.organization_id,
        type="image",
        soft=True,
        actor=ACTOR,
        reason="Launch week",
        idempotency_key=f"roles-soft-{t.organization_id}",
    ),
    "limit_approvals.request_limit_change": lambda e, t: request_limit_change(
        e,
        organization_id=t.organization_id,
        type="image",
        daily_limit=9_000_000,
        reason="Launch",
        actor=ACTOR,
        idempotency_key=f"roles-limit-request-{t.organization_id}",
    ),
    "limit_approvals.approve_limit_request": lambda e, t: approve_limit_request(
        e, request_id=t.limit_request_id, approver=ACTOR
    ),
    "limit_approvals.reject_limit_request": lambda e, t: reject_limit_request(
        e, request_id=t.limit_request_id, approver=ACTOR, reason="Not agreed"
    ),
    "orgs.set_timezone": _timezone_after_a_generation,
    "alerts.deliver": _deliver_an_alert,
    "grants.expire_credits": lambda e, t: expire_credits(e, organization_ids=[t.organization_id]),
    # Global edges; days of 2000, before any other test's generation, so no later write
    # adds itself to them.
    "edges.keep_usage_edges": lambda e, t: keep_usage_edges(
        e, timezone="UTC", now=dt.datetime(2001, 1, 1, tzinfo=dt.UTC)
    ),
    "allowances.grant_allowances": lambda e, t: grant_allowances(
        e, organization_ids=[t.organization_id]
    ),
    # A plan is global: the tenant's snapshot does not show it (see below). The free
    # plan keeps its seeded values, so no other test sees a change.
    "allowances.set_plan_allowance": lambda e, t: set_plan_allowance(
        e,
        plan="free",
        monthly_allowance=1_000,
        rollover_cap=0,
        actor=ACTOR,
        reason="Price list",
        idempotency_key=f"roles-allowance-{t.organization_id}",
    ),
}
# Writes whose change is global, seen in these counts rather than in a tenant's snapshot.
_GLOBAL = text(
    "SELECT (SELECT count(*) FROM plan_allowance_changes) AS changes,"
    " (SELECT count(*) FROM kept_usage_edges) AS edges"
)
# The reconciler's write (migration 0014): only a dashboard_auditor login records
# checkpoints; see the tests below.
AUDITOR_WRITES = {"reconciliation.reconcile": _reconcile_after_a_generation}


def _everything(engine: Engine, tenant: Tenant) -> tuple[object, ...]:
    """The tenant's snapshot and the global counts: what any write could change."""
    with engine.connect() as conn:
        counts = tuple(conn.execute(_GLOBAL).one())
    return (snapshot(engine, tenant.organization_id), counts)


def _write_functions() -> set[str]:
    """``module.function`` for each public function of queries/ that takes an engine
    first: the writes, which own their transaction."""
    found = set()
    for info in pkgutil.iter_modules(queries.__path__):
        # Engines, the retry loop, and the schema check (it reads alembic_version and
        # writes nothing; the app runs it as its own login in every page test).
        if info.name in ("db", "transactions", "schema_version"):
            continue
        module = importlib.import_module(f"queries.{info.name}")
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("_") or fn.__module__ != module.__name__:
                continue
            params = list(inspect.signature(fn).parameters.values())
            if params and params[0].name == "engine":
                found.add(f"{info.name}.{name}")
    return found


def test_every_write_function_is_covered() -> None:
    covered = {key.split("[")[0] for key in (*WRITES, *AUDITOR_WRITES)}
    missing = _write_functions() - covered
    assert not missing, f"add these to WRITES in {__name__}: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(WRITES))
def test_every_write_function_works_as_dashboard_app(
    write_engine: Engine, app_engine: Engine, name: str
) -> None:
    tenant = _tenant(write_engine)
    before = _everything(write_engine, tenant)
    first = WRITES[name](app_engine, tenant)
    assert _everything(write_engine, tenant) != before
    # A retry with the same key (or the same reversal) applies once, also as the app.
    after = _everything(write_engine, tenant)
    replay = WRITES[name](app_engine, tenant)
    if name == "grants.expire_credits":
        # A second run finds nothing due: it reports nothing and changes nothing.
        assert replay == ExpiryReport(organizations=0, grants=0, credits=0)
        assert _everything(write_engine, tenant) == after
    elif name == "edges.keep_usage_edges":
        # The day's edges are kept: a second turn adds and drops nothing.
        assert replay == KeptEdges(added=(), dropped=0)
        assert _everything(write_engine, tenant) == after
    elif name == "allowances.grant_allowances":
        assert isinstance(replay, AllowanceReport)
        assert (replay.allowances, replay.rollovers, replay.already) == (0, 0, 1)
        assert _everything(write_engine, tenant) == after
    elif name != "quotas.set_daily_limit":
        assert replay == first
    assert invariant_holds(write_engine, tenant.organization_id)


def _refused_for_privilege(error: BaseException) -> bool:
    """Whether PostgreSQL's "permission denied" is the error or what caused it (a typed
    error of the data layer may wrap it)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(getattr(seen, "orig", seen), psycopg.errors.InsufficientPrivilege):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@pytest.mark.parametrize("name", sorted(WRITES))
def test_every_write_function_is_refused_as_dashboard_reader(
    write_engine: Engine, reader_engine: Engine, name: str
) -> None:
    tenant = _tenant(write_engine)
    before = _everything(write_engine, tenant)
    with pytest.raises(Exception) as refused:
        WRITES[name](reader_engine, tenant)
    assert _refused_for_privilege(refused.value), repr(refused.value)
    assert _everything(write_engine, tenant) == before


_CHECKPOINTS = text("SELECT count(*), max(verified_at) FROM reconciliation_checkpoints")


def _checkpoints(engine: Engine) -> tuple[int, object]:
    with engine.connect() as conn:
        count, latest = conn.execute(_CHECKPOINTS).one()
    return int(count), latest


def test_reconcile_works_as_dashboard_auditor_and_writes_checkpoints(
    write_engine: Engine, app_engine: Engine, auditor_engine: Engine
) -> None:
    tenant = _tenant(write_engine)
    drifts = AUDITOR_WRITES["reconciliation.reconcile"](auditor_engine, tenant, app=app_engine)
    assert drifts == []
    with write_engine.connect() as conn:
        written = conn.execute(
            text("SELECT count(*) FROM reconciliation_checkpoints WHERE organization_id = :o"),
            {"o": tenant.organization_id},
        ).scalar_one()
    assert written == 1  # its one local day, verified
    assert invariant_holds(write_engine, tenant.organization_id)


@pytest.mark.parametrize("login", ["app", "reader"])
def test_reconcile_cannot_record_checkpoints_as_the_app_or_a_reader(
    write_engine: Engine, app_engine: Engine, reader_engine: Engine, login: str
) -> None:
    tenant = _tenant(write_engine)
    engine = app_engine if login == "app" else reader_engine
    before = _checkpoints(write_engine)
    with pytest.raises(Exception) as refused:
        AUDITOR_WRITES["reconciliation.reconcile"](engine, tenant, app=app_engine)
    assert _refused_for_privilege(refused.value), repr(refused.value)
    assert _checkpoints(write_engine) == before
    # Checking without recording is a read: both may.
    with engine.connect() as conn:
        check_books(conn)


# ------------------------------------------------------------------ statements refused


_DDL = {
    "CREATE TABLE": "CREATE TABLE dashboard_test_sneaky (a int)",
    "ALTER TABLE": "ALTER TABLE organizations ADD COLUMN sneaky text",
    "DROP TABLE": "DROP TABLE audit_log",
    "CREATE INDEX": "CREATE INDEX dashboard_test_sneaky ON generations (credits)",
    "DISABLE TRIGGER": "ALTER TABLE credit_ledger DISABLE TRIGGER credit_ledger_append_only",
    "DROP TRIGGER": "DROP TRIGGER credit_ledger_append_only ON credit_ledger",
}
_DELETE = {
    "DELETE organizations": "DELETE FROM organizations WHERE id = :org",
    "DELETE users": "DELETE FROM users WHERE organization_id = :org",
    "DELETE credit_balances": "DELETE FROM credit_balances WHERE organization_id = :org",
    "DELETE credit_ledger": "DELETE FROM credit_ledger WHERE organization_id = :org",
    "DELETE generation_types": "DELETE FROM generation_types WHERE type = 'video'",
    "DELETE usage_limits": "DELETE FROM usage_limits WHERE organization_id = :org",
    "DELETE generations": "DELETE FROM generations WHERE organization_id = :org",
    "DELETE audit_log": "DELETE FROM audit_log WHERE organization_id = :org",
    "DELETE alembic_version": "DELETE FROM alembic_version",
    "DELETE alert_deliveries": "DELETE FROM alert_deliveries WHERE organization_id = :org",
}
_TRUNCATE = {
    "TRUNCATE organizations": "TRUNCATE organizations CASCADE",
    "TRUNCATE users": "TRUNCATE users CASCADE",
    "TRUNCATE credit_balances": "TRUNCATE credit_balances",
    "TRUNCATE credit_ledger": "TRUNCATE credit_ledger",
    "TRUNCATE generation_types": "TRUNCATE generation_types CASCADE",
    "TRUNCATE usage_limits": "TRUNCATE usage_limits",
    "TRUNCATE generations": "TRUNCATE generations",
    "TRUNCATE audit_log": "TRUNCATE audit_log",
    "TRUNCATE alembic_version": "TRUNCATE alembic_version",
    "TRUNCATE alert_deliveries": "TRUNCATE alert_deliveries",
}
# Updates neither role may make (dashboard_app's own column updates are the writes).
_UPDATE = {
    "UPDATE credit_ledger": "UPDATE credit_ledger SET amount = 1 WHERE organization_id = :org",
    "UPDATE audit_log": "UPDATE audit_log SET reason = 'x' WHERE organization_id = :org",
    "UPDATE generations": "UPDATE generations SET credits = 0 WHERE organization_id = :org",
    "UPDATE organizations": "UPDATE organizations SET name = 'x' WHERE id = :org",
    "UPDATE users": "UPDATE users SET email = 'x@example.com' WHERE organization_id = :org",
    "UPDATE generation_types": "UPDATE generation_types SET default_credits = 0",
    "UPDATE alembic_version": "UPDATE alembic_version SET version_num = 'x'",
    "UPDATE alert_deliveries": (
        "UPDATE alert_deliveries SET local_day = local_day - 1 WHERE organization_id = :org"
    ),
    "UPDATE credit_balances.organization_id": (
        "UPDATE credit_balances SET organization_id = organization_id WHERE organization_id = :org"
    ),
    "UPDATE usage_limits.organization_id": (
        "UPDATE usage_limits SET organization_id = organization_id WHERE organization_id = :org"
    ),
    "UPDATE usage_limits.type": "UPDATE usage_limits SET type = 'video' WHERE organization_id = :org",
    "UPDATE usage_limits.date": (
        "UPDATE usage_limits SET date = date - 1 WHERE organization_id = :org"
    ),
}
_INSERT_ELSEWHERE = {
    "INSERT organizations": "INSERT INTO organizations (name, slug) VALUES ('x', 'dashboard-test-x')",
    "INSERT users": (
        "INSERT INTO users (organization_id, email, name) VALUES (:org, 'x@dashboard.test', 'x')"
    ),
    "INSERT credit_balances": "INSERT INTO credit_balances (organization_id) VALUES (:org)",
    "INSERT generation_types": (
        "INSERT INTO generation_types VALUES ('dashboard_test', 'x', 1, 1)"
    ),
    "INSERT alembic_version": "INSERT INTO alembic_version VALUES ('x')",
    # The time a delivery was sent is the server's, never the caller's.
    "INSERT alert_deliveries.sent_at": (
        "INSERT INTO alert_deliveries (organization_id, kind, local_day, message, "
        "destination, sent_at) VALUES (:org, 'spike', DATE '2026-01-01', 'x', 'h', now())"
    ),
    "INSERT usage_limits.id": (
        "INSERT INTO usage_limits (organization_id, id, type, date, daily_limit) "
        "VALUES (:org, 1, 'chat', DATE '2026-01-01', 1)"
    ),
}
# What issue 15 found the runtime role could do to money and history (migration 0013).
_BOOK = {
    "UPDATE credit_balances.balance": "UPDATE credit_balances SET balance = 999999999",
    "UPDATE credit_balances.updated_at": (
        "UPDATE credit_balances SET updated_at = now() WHERE organization_id = :org"
    ),
    # Locking is lock_organization's: FOR UPDATE needs the UPDATE privilege.
    "SELECT credit_balances FOR UPDATE": (
        "SELECT 1 FROM credit_balances WHERE organization_id = :org FOR UPDATE"
    ),
    "INSERT credit_ledger.id": (
        "INSERT INTO credit_ledger (organization_id, id, amount, kind, reason, actor, "
        "idempotency_key) VALUES (:org, 999999, 1, 'grant', 'x', 'x', 'dashboard-test-id')"
    ),
    "INSERT credit_ledger.balance_after": (
        "INSERT INTO credit_ledger (organization_id, amount, balance_after, kind, reason, "
        "actor, idempotency_key) VALUES (:org, 1, 999999999, 'grant', 'x', 'x', 'dashboard-test')"
    ),
    "INSERT credit_ledger.created_at 2020": (
        "INSERT INTO credit_ledger (organization_id, amount, kind, reason, actor, "
        "idempotency_key, created_at) VALUES (:org, 1, 'grant', 'x', 'x', 'dashboard-test-at', "
        "TIMESTAMPTZ '2020-01-01 00:00:00+00')"
    ),
    "INSERT credit_ledger.approval_request_id": (
        "INSERT INTO credit_ledger (organization_id, amount, kind, reason, actor, "
        "idempotency_key, approval_request_id) "
        "VALUES (:org, 1, 'grant', 'x', 'x', 'approval:1', 1)"
    ),
    "INSERT audit_log.id": (
        "INSERT INTO audit_log (organization_id, id, action, actor, reason) "
        "VALUES (:org, 999999, 'x', 'x', 'x')"
    ),
    "INSERT audit_log.created_at 2020": (
        "INSERT INTO audit_log (organization_id, action, actor, reason, created_at) "
        "VALUES (:org, 'set_daily_limit', 'someone@example.com', 'x', "
        "TIMESTAMPTZ '2020-01-01 00:00:00+00')"
    ),
    "UPDATE approval_requests.decided_by": (
        "UPDATE approval_requests SET decided_by = 'mallory@example.com' "
        "WHERE organization_id = :org"
    ),
    "UPDATE approval_requests.status": (
        "UPDATE approval_requests SET status = 'rejected', decided_by = 'mallory@example.com', "
        "decision_reason = 'x' WHERE organization_id = :org"
    ),
}
# The reconciler's checkpoints (0014): dashboard_auditor only.
_CHECKPOINT_WRITES = {
    "INSERT reconciliation_checkpoints": (
        "INSERT INTO reconciliation_checkpoints "
        "(organization_id, date, generation_id, ledger_id, timezone) "
        "VALUES (:org, DATE '2100-01-01', 9223372036854775807, 9223372036854775807, 'UTC')"
    ),
    "UPDATE reconciliation_checkpoints": (
        "UPDATE reconciliation_checkpoints SET generation_id = generation_id + 1000000 "
        "WHERE organization_id = :org"
    ),
    "DELETE reconciliation_checkpoints": (
        "DELETE FROM reconciliation_checkpoints WHERE organization_id = :org"
    ),
    # A run saying the books closed, which the page would show (0024).
    "INSERT reconciliation_runs": (
        "INSERT INTO reconciliation_runs (checked_at, full_check, organizations_checked) "
        "VALUES (TIMESTAMPTZ '2100-01-01 00:00:00+00', true, :org)"
    ),
}
# The time of a checkpoint is the database's, even for the reconciler.
_AUDITOR_REFUSED_TOO = {
    "INSERT reconciliation_checkpoints.verified_at": (
        "INSERT INTO reconciliation_checkpoints "
        "(organization_id, date, generation_id, ledger_id, timezone, verified_at) "
        "VALUES (:org, DATE '2026-01-01', 1, 1, 'UTC', now())"
    ),
    # A recorded run names the login that ran it, and is never rewritten.
    "INSERT reconciliation_runs.ran_by": (
        "INSERT INTO reconciliation_runs (checked_at, full_check, organizations_checked, "
        "ran_by) VALUES (now(), true, :org, 'someone-else')"
    ),
    "UPDATE reconciliation_runs": "UPDATE reconciliation_runs SET drifts = '[]' WHERE id > 0",
    "DELETE reconciliation_runs": "DELETE FROM reconciliation_runs WHERE id > :org",
}
# What dashboard_app may write (through the write functions), and the reader may not.
_APP_WRITES = {
    "INSERT alert_deliveries": (
        "INSERT INTO alert_deliveries (organization_id, kind, type, local_day, message, "
        "destination) VALUES (:org, 'spike', '', DATE '2026-01-01', 'x', 'hooks.example.com')"
    ),
    "INSERT credit_ledger": (
        "INSERT INTO credit_ledger (organization_id, amount, kind, reason, "
        "actor, idempotency_key) VALUES (:org, 1, 'grant', 'x', 'x', 'dashboard-test')"
    ),
    "INSERT generations": (
        "INSERT INTO generations (organization_id, user_id, type, credits) "
        "VALUES (:org, 1, 'chat', 1)"
    ),
    "INSERT audit_log": (
        "INSERT INTO audit_log (organization_id, action, actor, reason) "
        "VALUES (:org, 'x', 'x', 'x')"
    ),
    "INSERT usage_limits": (
        "INSERT INTO usage_limits (organization_id, type, date, daily_limit) "
        "VALUES (:org, 'chat', DATE '2026-01-01', 1)"
    ),
    "UPDATE usage_limits": "UPDATE usage_limits SET daily_limit = 0 WHERE organization_id = :org",
    "lock_organization": "SELECT lock_organization(:org)",
    "lock_organizations": "SELECT * FROM lock_organizations(ARRAY[CAST(:org AS bigint)])",
    "decide_approval_request": (
        "SELECT * FROM decide_approval_request(0, 'approve', 'someone@example.com', NULL)"
    ),
}
REFUSED_FOR_APP = {
    **_DDL,
    **_DELETE,
    **_TRUNCATE,
    **_UPDATE,
    **_INSERT_ELSEWHERE,
    **_BOOK,
    **_CHECKPOINT_WRITES,
    **_AUDITOR_REFUSED_TOO,
}
REFUSED_FOR_READER = {**REFUSED_FOR_APP, **_APP_WRITES}
# The reconciler reads everything and writes only the checkpoints and its runs.
REFUSED_FOR_AUDITOR = {
    name: statement
    for name, statement in REFUSED_FOR_READER.items()
    if name not in _CHECKPOINT_WRITES
}


@pytest.fixture(scope="module")
def target(write_engine: Engine) -> Tenant:
    """An organization with a row in every table the statements aim at."""
    tenant = _tenant(write_engine)
    record_generation(
        write_engine, organization_id=tenant.organization_id, user_id=tenant.user_id, type="chat"
    )
    set_daily_limit(
        write_engine,
        organization_id=tenant.organization_id,
        type="chat",
        daily_limit=50,
        actor=ACTOR,
        reason="Trial",
    )
    return tenant


def _assert_refused(engine: Engine, statement: str, org: int) -> None:
    with engine.connect() as conn:
        with pytest.raises(Exception) as refused:
            conn.execute(text(statement), {"org": org})
        conn.rollback()
    assert _refused_for_privilege(refused.value), repr(refused.value)


@pytest.mark.parametrize("name", sorted(REFUSED_FOR_APP))
def test_dashboard_app_is_refused_ddl_and_writes_it_does_not_need(
    app_engine: Engine, write_engine: Engine, target: Tenant, name: str
) -> None:
    before = snapshot(write_engine, target.organization_id)
    _assert_refused(app_engine, REFUSED_FOR_APP[name], target.organization_id)
    assert snapshot(write_engine, target.organization_id) == before


@pytest.mark.parametrize("name", sorted(REFUSED_FOR_READER))
def test_dashboard_reader_is_refused_every_write(
    reader_engine: Engine, write_engine: Engine, target: Tenant, name: str
) -> None:
    before = snapshot(write_engine, target.organization_id)
    _assert_refused(reader_engine, REFUSED_FOR_READER[name], target.organization_id)
    assert snapshot(write_engine, target.organization_id) == before


@pytest.mark.parametrize("name", sorted(REFUSED_FOR_AUDITOR))
def test_dashboard_auditor_is_refused_every_write_but_the_checkpoints(
    auditor_engine: Engine, write_engine: Engine, target: Tenant, name: str
) -> None:
    before = snapshot(write_engine, target.organization_id)
    _assert_refused(auditor_engine, REFUSED_FOR_AUDITOR[name], target.organization_id)
    assert snapshot(write_engine, target.organization_id) == before


# ------------------------------------------------------------------ the reads


@pytest.fixture(scope="module")
def read_context(write_engine: Engine) -> Context:
    """A committed organization with generations, ledger entries and a limit change."""
    tenant = _tenant(write_engine)
    for kind in ("chat", "image", "chat"):
        record_generation(
            write_engine, organization_id=tenant.organization_id, user_id=tenant.user_id, type=kind
        )
    set_daily_limit(
        write_engine,
        organization_id=tenant.organization_id,
        type="chat",
        daily_limit=40,
        actor=ACTOR,
        reason="Trial",
    )
    today = dt.datetime.now(dt.UTC).date()
    return Context(tenant.organization_id, tenant.user_id, today - dt.timedelta(days=7), today)


READS = {**PER_ORGANIZATION, **CROSS_ORGANIZATION, **CHECKS}


@pytest.mark.parametrize("login", ["reader", "app", "auditor"])
@pytest.mark.parametrize("name", sorted(READS))
def test_every_public_read_works_for_every_role(
    reader_engine: Engine,
    app_engine: Engine,
    auditor_engine: Engine,
    read_context: Context,
    login: str,
    name: str,
) -> None:
    # tests/queries/test_isolation.py checks that READS holds every public read.
    engine = {"reader": reader_engine, "app": app_engine, "auditor": auditor_engine}[login]
    with engine.connect() as conn:
        READS[name](conn, read_context)


# ------------------------------------------------------------------ `dashboard serve`


def test_serve_runs_the_app_as_a_dashboard_app_login_on_the_embedded_database(
    test_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = seeded_database(
        test_server, "dashboard_test_serve", organizations=2, generations=200, days=3
    )
    if not owns_url(url):
        pytest.skip("TEST_DATABASE_URL is not the embedded server")
    seen: dict[str, str] = {}

    def streamlit_run(app: Path, streamlit_args: Sequence[str], *, env: Mapping[str, str]) -> int:
        seen.update(env)
        return 0

    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DIRECT_URL", url)
    monkeypatch.setattr(server, "run", streamlit_run)
    assert cli.main.main(["serve", "--server.headless", "true"]) == 0
    assert make_url(seen["DIRECT_URL"]).username == embedded.SUPERUSER
    assert make_url(seen["DATABASE_URL"]).username == embedded.APP_LOGIN
    app = create_runtime_engine(seen["DATABASE_URL"])
    try:
        assert _who(app) == (embedded.APP_LOGIN, False, {"dashboard_app"})
    finally:
        app.dispose()
