"""``dashboard``: one command to run, migrate, seed and locate the database.

dashboard [serve]   refuse a configuration the app would refuse (unknown roles; no
                    sign-in and no DASHBOARD_USER off the embedded database); with no
                    database configured: start the embedded demo database, migrate it
                    and load demo data into it when empty; with DATABASE_URL: check its
                    schema is current (never migrate or seed it); then `streamlit run`
dashboard migrate   migrate DIRECT_URL (or the embedded database) to the newest schema
dashboard seed      load demo data (--orgs, --generations, --days, --seed, --reset);
                    on any database but the embedded one only with --confirm-database NAME;
                    loaded beside the live tables, indexed from two sessions and swapped
                    in at the end: all or nothing (tooling/staging.py)
dashboard reconcile check that the books close (balances, ledger chain, rollups) from
                    the verified checkpoints on, or everything with --full; prints a
                    table of what drifted, exit 1 if anything did, 0 if all holds;
                    connects with RECONCILE_URL (a dashboard_auditor login; default
                    DIRECT_URL; on the embedded database its dashboard_reconciler)
dashboard bulk-adjust FILE
                    check a CSV of credit adjustments and print every row with its
                    balance before and after (--dry-run, the default; writes nothing);
                    --apply --actor EMAIL applies all of it in one transaction or none
                    (on any database but the embedded one only with --confirm-database
                    NAME); exit 1 if a row has a problem (nothing applied)
dashboard alerts    print the current alerts, one line each (for cron); with --webhook
                    URL (or [alerts] webhook in secrets) post the ones not sent yet
                    today as one digest by kind (linked to DASHBOARD_BASE_URL), once
                    per alert, organization and local day; exit 1 when the webhook
                    fails (nothing recorded, the next run sends them)
dashboard db-url    print the database URL in use (for psql)
dashboard stop      stop the embedded database

Nothing destructive happens to a real database by default: every refusal is a sentence
on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import signal
import sys
import threading
import tomllib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from queries.words import counted

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from queries.db import DatabaseUrls

# Light on purpose: `dashboard serve` starts the server's process before it imports the
# data layer (SQLAlchemy, psycopg), so each command imports what it uses.

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"


class Refused(Exception):
    """A command that would be unsafe as asked; ``str(error)`` says why and what to do."""


@dataclass(frozen=True, slots=True)
class Target:
    """The database a command works on, and whether it is the embedded demo one."""

    urls: DatabaseUrls
    embedded: bool
    started_embedded: bool = False


def _target() -> Target:
    """``DATABASE_URL``/``DIRECT_URL`` if set; else the embedded server, started on demand."""
    from queries.db import DatabaseUrls, configured_urls
    from queries.embedded_server import owns_url
    from tooling import embedded

    if os.environ.get("DATABASE_URL", "").strip() or os.environ.get("DIRECT_URL", "").strip():
        urls = configured_urls()
        return Target(urls, embedded=owns_url(urls.direct))
    server = embedded.ensure_running()
    embedded.ensure_database(server, embedded.DEFAULT_DATABASE)
    url = server.url(embedded.DEFAULT_DATABASE)
    return Target(
        DatabaseUrls(runtime=url, direct=url), embedded=True, started_embedded=server.started_here
    )


def _urls() -> DatabaseUrls:
    return _target().urls


def cmd_migrate(_: argparse.Namespace) -> int:
    from tooling import schema

    urls = _urls()
    schema.upgrade(url=urls.direct)
    print(f"migrated {_display(urls.direct)} to the newest schema")
    return 0


def _database_name(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).database or ""


def check_seed_allowed(target: Target, confirm_database: str | None) -> None:
    """Demo data goes into the embedded database, or into the one database a person
    named with ``--confirm-database``; anything else is refused before a connection."""
    if target.embedded:
        return
    name = _database_name(target.urls.direct)
    if confirm_database is None:
        raise Refused(
            f"Refusing to load demo data into {_display(target.urls.direct)}: it is not the "
            "embedded demo database, and demo data (with --reset, a wipe) must never reach a "
            f"real one by accident. If you mean it, add --confirm-database {name}."
        )
    if confirm_database != name:
        raise Refused(
            f"--confirm-database {confirm_database!r} does not name the database in use "
            f"({name!r}); nothing was changed."
        )


def cmd_seed(args: argparse.Namespace) -> int:
    from queries.db import create_direct_engine
    from tooling import schema
    from tooling.demo_data import seed_demo_data_staged

    target = _target()
    check_seed_allowed(target, args.confirm_database)
    urls = target.urls
    schema.upgrade(url=urls.direct)
    engine = create_direct_engine(urls.direct)
    try:
        # Staged: indexes built in two sessions, swapped in at the end (all or nothing).
        report = seed_demo_data_staged(
            engine,
            organizations=args.orgs,
            generations=args.generations,
            days=args.days,
            seed=args.seed,
            reset=args.reset,
        )
    finally:
        engine.dispose()
    print(
        f"seeded {report.organizations} organizations, {report.users} users, "
        f"{report.generations:,} generations, {report.usage_rows:,} usage rows, "
        f"{report.ledger_entries:,} ledger entries in {report.seconds:.1f}s "
        f"({report.generations_per_second:,.0f} generations/s end to end)"
    )
    if args.verbose:
        for stage, seconds in report.stages:
            print(f"  {seconds:7.2f}s  {stage}")
    return 0


RECONCILE_HEADER = ("organization", "check", "what", "first seen", "expected", "found", "rows")


def reconcile_table(drifts: Sequence[Any]) -> str:
    """The drifts as a plain-text table, one line per drift, columns aligned."""
    rows = [RECONCILE_HEADER] + [
        (
            d.slug,
            d.check,
            d.what,
            d.where,
            f"{d.expected:,}",
            f"{d.found:,}",
            f"{d.rows:,}",
        )
        for d in drifts
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(RECONCILE_HEADER))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _reconcile_url(target: Target) -> str:
    """Who checks the books: ``RECONCILE_URL``; else, on the embedded database, its
    ``dashboard_reconciler`` login (made on demand, once the schema has the role);
    else ``DIRECT_URL``."""
    from queries.db import create_direct_engine, reconcile_url
    from queries.schema_version import schema_problem
    from tooling import embedded

    url = reconcile_url()
    if url is not None:
        return url
    if not target.embedded:
        return target.urls.direct
    # The login is a member of dashboard_auditor, which a current schema has created.
    owner = create_direct_engine(target.urls.direct)
    try:
        problem = schema_problem(owner)
    finally:
        owner.dispose()
    if problem is not None:
        raise Refused(problem)
    return embedded.auditor_login_url(target.urls.direct)


def _refused_for_privilege(error: BaseException) -> bool:
    """Whether PostgreSQL's "permission denied" is ``error`` or what caused it."""
    from queries.errors import PermissionDenied, from_driver

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, PermissionDenied) or isinstance(from_driver(seen), PermissionDenied):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def cmd_reconcile(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from queries.db import ConfigurationError, create_runtime_engine
    from queries.errors import DashboardError
    from queries.reconciliation import reconcile
    from queries.schema_version import schema_problem

    target = _target()
    url = target.urls.direct
    try:
        url = _reconcile_url(target)
        engine = create_runtime_engine(url)
        try:
            problem = schema_problem(engine)
            if problem is not None:
                raise Refused(problem)
            result = reconcile(engine, full=args.full)
        finally:
            engine.dispose()
    except (DashboardError, SQLAlchemyError, ConfigurationError) as exc:
        # Connection refused, a schema without the checkpoints, a role without access
        # (an app login cannot record checkpoints): not a drift, so not exit 1.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        if _refused_for_privilege(exc):
            reason = (
                f"{make_url(url).username} may not do this ({reason}); RECONCILE_URL must "
                "be a login that is a member of dashboard_auditor, which reads everything "
                "and records the checkpoints"
            )
        raise Refused(f"could not check the books of {_display(url)}: {reason}") from exc
    scope = (
        "every day"
        if result.days_checked is None
        else f"{counted(result.days_checked, 'changed day')} since the checkpoints"
    )
    summary = (
        f"{'full' if result.full else 'incremental'} check of "
        f"{counted(result.organizations_checked, 'organization')}, {scope}; balances and grants of all"
    )
    if result.ok:
        print(f"the books close: {summary}")
        return 0
    print(reconcile_table(result.drifts))
    print(f"{counted(len(result.drifts), 'drift')} found: {summary}")
    return 1


BULK_HEADER = (
    "line",
    "organization",
    "amount",
    "reason",
    "grant terms",
    "status",
    "before",
    "after",
    "id",
)


def _number(value: int | None, *, sign: bool = False) -> str:
    return "" if value is None else (f"{value:+,}" if sign else f"{value:,}")


def _terms(row: Any) -> str:
    """A grant row's expiry (UTC) and priority, as far as the file gave them."""
    parts = []
    if getattr(row, "expires_at", None) is not None:
        parts.append(f"expires {row.expires_at:%Y-%m-%d %H:%M} UTC")
    if getattr(row, "priority", None) is not None:
        parts.append(f"priority {row.priority}")
    return ", ".join(parts)


def bulk_table(rows: Sequence[Any]) -> str:
    """The rows of a bulk file as a plain-text table: what each does to which balance."""

    def shown(value: str | None) -> str:
        value = value or ""
        return value if len(value) <= 40 else value[:39] + "…"

    table = [BULK_HEADER] + [
        (
            str(r.line),
            shown(r.slug),
            _number(r.amount, sign=True),
            shown(r.reason),
            _terms(r),
            r.status,
            _number(r.balance_before),
            _number(r.balance_after),
            f"entry {r.entry_id}"
            if r.entry_id
            else (f"request {r.request_id}" if r.request_id else ""),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(BULK_HEADER))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def check_write_allowed(target: Target, confirm_database: str | None, what: str) -> None:
    """A write command off the embedded database runs only on the one database a person
    named with ``--confirm-database``, as for demo data."""
    if target.embedded:
        return
    name = _database_name(target.urls.direct)
    if confirm_database is None:
        raise Refused(
            f"Refusing to {what} on {_display(target.urls.direct)}: it is not the embedded "
            f"demo database. If you mean it, add --confirm-database {name}."
        )
    if confirm_database != name:
        raise Refused(
            f"--confirm-database {confirm_database!r} does not name the database in use "
            f"({name!r}); nothing was changed."
        )


def _read_file(path: Path, limit: int) -> bytes:
    try:
        with path.open("rb") as handle:
            # One byte more than allowed, so the parser can say the file is too large.
            return handle.read(limit + 1)
    except OSError as exc:
        raise Refused(f"cannot read {path}: {exc.strerror or exc}.") from exc


# What the audit rows of a file applied here say about where it came from.
CLI_BULK_VIA = "the command line (dashboard bulk-adjust)"


def cmd_bulk_adjust(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from queries.bulk import MAX_FILE_BYTES, apply_bulk, plan_bulk
    from queries.db import create_runtime_engine
    from queries.errors import BulkRejected, DashboardError
    from queries.schema_version import schema_problem

    if args.apply and not (args.actor or "").strip():
        raise Refused("--apply needs --actor EMAIL: the person the ledger names for it.")
    if args.actor and not args.apply:
        raise Refused("--actor goes with --apply; a dry run writes nothing and names no one.")
    actor = None
    if args.apply:
        # The name must be in the role map with a role that may adjust credits; this
        # does not prove who is at the keyboard (README: "What `--actor` proves").
        from dashboard.auth import AccessDenied, cli_actor

        try:
            actor = cli_actor(
                args.actor,
                env=os.environ,
                secrets=read_secrets(_secrets_files([])),
                permission="adjust_credits",
            )
        except AccessDenied as exc:
            raise Refused(str(exc)) from None
    data = _read_file(Path(args.file), MAX_FILE_BYTES)
    target = _target()
    if args.apply:
        check_write_allowed(target, args.confirm_database, "apply a bulk adjustment file")
    urls = target.urls
    engine = create_runtime_engine(urls.runtime)
    try:
        problem = schema_problem(engine)
        if problem is not None:
            raise Refused(problem)
        with engine.connect() as conn:
            plan = plan_bulk(conn, data=data)
        if plan.ok and args.apply:
            try:
                assert actor is not None
                plan = apply_bulk(engine, data=data, actor=actor, via=CLI_BULK_VIA)
            except BulkRejected as rejected:  # the balances moved since the dry run
                print(bulk_table(plan.rows))
                for line, message in rejected.errors:
                    print(f"line {line}: {message}")
                print("nothing was applied")
                return 1
    except (DashboardError, SQLAlchemyError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise Refused(f"could not use {_display(urls.runtime)}: {reason}") from exc
    finally:
        engine.dispose()
    print(bulk_table(plan.rows))
    for line, message in plan.errors:
        print(f"line {line}: {message}")
    if not plan.ok:
        print(f"{counted(len(plan.errors), 'problem')}; nothing was applied")
        return 1
    if args.apply:
        print(
            f"applied {counted(plan.count('applied'), 'row')}, requested approval for "
            f"{plan.count('requested'):,}, {plan.count('exists'):,} already there"
        )
    else:
        print(
            f"dry run: {counted(plan.count('apply'), 'row')} would be applied, "
            f"{plan.count('request'):,} would become approval requests, "
            f"{plan.count('exists'):,} already there; nothing was written "
            "(apply with --apply --actor EMAIL)"
        )
    return 0


def alerts_table(alerts: Sequence[Any]) -> str:
    """The alerts as plain text, one line each: kind, organization (slug), message."""
    kinds = max(len(a.kind) for a in alerts)
    slugs = max(len(a.slug) for a in alerts)
    return "\n".join(
        f"{a.kind.ljust(kinds)}  {a.slug.ljust(slugs)}  {a.message}".rstrip() for a in alerts
    )


def webhook_from_secrets(files: Sequence[Path]) -> str | None:
    """``[alerts] webhook`` of the secrets files (as Streamlit merges them), or None."""
    section = read_secrets(files).get("alerts", {})
    value = section.get("webhook") if isinstance(section, dict) else None
    if value is None:
        return None
    if not isinstance(value, str):
        raise Refused("[alerts] webhook in the secrets must be a URL in quotes.")
    return value.strip() or None


def cmd_alerts(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from queries import links
    from queries.alerts import MAX_RUNWAY_DAYS, current_alerts, deliver
    from queries.db import ConfigurationError, create_write_engine
    from queries.errors import DashboardError
    from queries.schema_version import schema_problem
    from tooling import webhook

    if not 1 <= args.runway_days <= MAX_RUNWAY_DAYS:
        raise Refused(f"--runway-days must be from 1 to {MAX_RUNWAY_DAYS}, not {args.runway_days}.")
    url = args.webhook if args.webhook is not None else webhook_from_secrets(_secrets_files([]))
    base_url: str | None = None
    if url is not None:
        try:
            url = webhook.check_url(url)
        except webhook.WebhookError as exc:
            raise Refused(str(exc)) from exc
        try:  # the digest's links; checked before anything is read or posted
            base_url = links.base_url_from_env()
        except ConfigurationError as exc:
            raise Refused(str(exc)) from exc
    urls = _urls()
    # The app's role (DATABASE_URL), like the dashboard: it reads and records deliveries.
    engine = create_write_engine(urls.runtime)
    try:
        try:
            problem = schema_problem(engine)
            if problem is not None:
                raise Refused(problem)
            with engine.connect() as conn:
                alerts = current_alerts(conn, now=args.now, runway_days=args.runway_days)
        except (DashboardError, SQLAlchemyError) as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise Refused(
                f"could not read the alerts of {_display(urls.runtime)}: {reason}"
            ) from exc
        print(alerts_table(alerts) if alerts else "No alerts.")
        if url is None or not alerts:
            return 0
        where = webhook.destination(url)
        send = webhook.sender(url, base_url=base_url)
        try:
            # The claim is kept open for as long as the post may take (its one deadline).
            result = deliver(
                engine, alerts=alerts, send=send, destination=where, send_deadline=send.timeout
            )
        except webhook.WebhookError as exc:
            print(
                f"dashboard: {exc} Nothing was recorded; the next run sends these alerts again.",
                file=sys.stderr,
            )
            return 1
        except (DashboardError, SQLAlchemyError) as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            print(f"dashboard: the alerts could not be delivered: {reason}", file=sys.stderr)
            return 1
    finally:
        engine.dispose()
    print(
        f"sent {counted(len(result.sent), 'alert')} to {where}; "
        f"{len(result.already_sent):,} already sent today"
    )
    if send.posted is not None and not send.posted.complete:
        print(
            f"dashboard: the webhook at {where} answered {send.posted.status} but had not "
            f"finished its answer after {send.timeout:g} s; the connection was closed. A 2xx "
            "status is its acceptance, so the alerts were recorded as sent.",
            file=sys.stderr,
        )
    return 0


def cmd_expire_credits(_: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from queries.db import create_write_engine
    from queries.errors import DashboardError
    from queries.grants import expire_credits
    from queries.schema_version import schema_problem

    urls = _urls()
    # The app's role (DATABASE_URL): the write-off every write of an organization makes
    # first, for the idle ones. Not destructive, so no --confirm-database: it books only
    # what the database's own rule says is due, once (a second run finds nothing).
    engine = create_write_engine(urls.runtime)
    try:
        problem = schema_problem(engine)
        if problem is not None:
            raise Refused(problem)
        report = expire_credits(engine)
    except (DashboardError, SQLAlchemyError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise Refused(
            f"could not expire the credits due on {_display(urls.runtime)}: {reason}. "
            "What was written off before this stays written off; run it again."
        ) from exc
    finally:
        engine.dispose()
    if report.grants == 0:
        print("No grants were due to expire.")
    else:
        print(
            f"Wrote off {counted(report.grants, 'expired grant')} of "
            f"{counted(report.organizations, 'organization')}: "
            f"{report.credits:,} credits expired unused."
        )
    return 0


def cmd_keep_edges(_: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from queries.db import ConfigurationError, company_timezone, create_write_engine
    from queries.edges import keep_usage_edges
    from queries.errors import DashboardError
    from queries.schema_version import schema_problem

    try:
        zone = company_timezone()
    except ConfigurationError as exc:
        raise Refused(str(exc)) from exc
    urls = _urls()
    # The app's role (DATABASE_URL), which keeps the edges with every generation too.
    engine = create_write_engine(urls.runtime)
    try:
        problem = schema_problem(engine)
        if problem is not None:
            raise Refused(problem)
        report = keep_usage_edges(engine, timezone=zone)
    except (DashboardError, SQLAlchemyError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise Refused(
            f"could not keep the usage edges on {_display(urls.runtime)}: {reason}. "
            "The edges kept before stay kept; run it again."
        ) from exc
    finally:
        engine.dispose()
    print(
        f"Kept {counted(len(report.added), 'new edge')} of the {zone} days "
        f"and dropped {counted(report.dropped, 'old one')}."
    )
    return 0


def cmd_grant_allowances(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from queries.allowances import check_month, grant_allowances
    from queries.db import create_write_engine
    from queries.errors import DashboardError, InvalidAllowance
    from queries.schema_version import schema_problem

    try:
        # A month written wrong is refused before any connection.
        if args.month is not None:
            check_month(args.month)
    except InvalidAllowance as exc:
        raise Refused(str(exc)) from None
    urls = _urls()
    # The app's role (DATABASE_URL), as expire-credits: it grants only what the plans
    # say, once per organization and month (a second run finds the keys), so no
    # --confirm-database.
    engine = create_write_engine(urls.runtime)
    try:
        problem = schema_problem(engine)
        if problem is not None:
            raise Refused(problem)
        report = grant_allowances(engine, month=args.month, now=args.now)
    except InvalidAllowance as exc:
        raise Refused(str(exc)) from None
    except (DashboardError, SQLAlchemyError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise Refused(
            f"could not grant the allowances on {_display(urls.runtime)}: {reason}. "
            "What was granted before this stays granted, once; run it again."
        ) from exc
    finally:
        engine.dispose()
    month = report.month or "each organization's local month"
    print(
        f"Allowances for {month}: granted {counted(report.allowances, 'allowance')} "
        f"({report.allowance_credits:,} credits) and {counted(report.rollovers, 'rollover')} "
        f"({report.rollover_credits:,} credits); {counted(report.already, 'organization')} had "
        "nothing more to grant."
    )
    skipped = [
        f"{report.not_begun:,} where the month has not begun" if report.not_begun else "",
        f"{report.over:,} where it is over" if report.over else "",
    ]
    if any(skipped):
        print(
            f"Skipped {counted(report.not_begun + report.over, 'organization')}: "
            + ", ".join(s for s in skipped if s)
            + "."
        )
    if report.waiting:
        print(
            f"{counted(report.waiting, 'rollover')} waiting for last month's grants to be "
            "written off; the next run grants them."
        )
    return 0


def cmd_db_url(_: argparse.Namespace) -> int:
    # psql speaks libpq URLs, not SQLAlchemy's "+psycopg" dialect suffix.
    print(_urls().runtime.replace("postgresql+psycopg://", "postgresql://", 1))
    return 0


def cmd_stop(_: argparse.Namespace) -> int:
    from tooling import embedded

    print("stopped the embedded database" if embedded.stop() else "no embedded database running")
    return 0


def _secrets_files(streamlit_args: Sequence[str]) -> list[Path]:
    """The secrets files `streamlit run` will read: ``--secrets.files`` when given, else
    Streamlit's default (``~/.streamlit/secrets.toml``, then ``./.streamlit/secrets.toml``)."""
    given: list[str] = []
    for i, arg in enumerate(streamlit_args):
        if arg == "--secrets.files" and i + 1 < len(streamlit_args):
            given.append(streamlit_args[i + 1])
        elif arg.startswith("--secrets.files="):
            given.append(arg.split("=", 1)[1])
    if given:
        return [Path(path) for path in given]
    from streamlit import config

    return [Path(path) for path in config.get_option("secrets.files")]


def read_secrets(files: Sequence[Path]) -> dict[str, Any]:
    """The secrets as Streamlit merges them: later files win, table by table."""
    secrets: dict[str, Any] = {}
    for path in files:
        if path.is_file():
            try:
                with path.open("rb") as handle:
                    secrets.update(tomllib.load(handle))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise Refused(f"Cannot read {path}: {exc}.") from exc
    return secrets


def check_identity(
    env: Mapping[str, str], streamlit_args: Sequence[str], database_url: str
) -> None:
    """Refuse to serve a configuration the app would refuse (unknown roles, no identity
    off the embedded database), before streamlit starts: the same check, the same sentence."""
    from dashboard.auth import startup_problem

    secrets = read_secrets(_secrets_files(streamlit_args))
    problem = startup_problem(env=env, secrets=secrets, database_url=database_url)
    if problem is not None:
        raise Refused(problem)


def cmd_serve(args: argparse.Namespace) -> int:
    from cli import server

    # The server's process starts first: it imports Streamlit and the app on the other
    # core while this one checks who may use it and readies the database, and it listens
    # only when server.run hands it the database's URLs. A refusal or a failure below
    # ends it unheard (server.prestart).
    with server.prestart(APP, args.streamlit_args):
        # The identity check imports Streamlit, the longest step here: it is imported
        # meanwhile, while this thread imports the data layer and PostgreSQL starts
        # (pg_ctl waits in a subprocess, the GIL free).
        streamlit_imports = threading.Thread(
            target=importlib.import_module, args=("dashboard.auth",), daemon=True
        )
        streamlit_imports.start()
        try:
            target = _target()
        finally:
            streamlit_imports.join()
        return _serve(args, target)


def _serve(args: argparse.Namespace, target: Target) -> int:
    from cli import server
    from queries.db import create_direct_engine
    from queries.schema_version import schema_problem
    from tooling import embedded

    urls = target.urls
    env = dict(os.environ)
    env["DATABASE_URL"], env["DIRECT_URL"] = urls.runtime, urls.direct
    # Until the server runs, SIGTERM stops the command as Ctrl-C does, so the embedded
    # database it started is still stopped below (server.run handles both meanwhile).
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        # Who may use it comes first: nothing is migrated or loaded for a refused start.
        check_identity(env, args.streamlit_args, urls.runtime)
        engine = create_direct_engine(urls.direct)
        try:
            # One cheap read of the revision; Alembic only when there is work for it.
            problem = schema_problem(engine)
            if target.embedded:
                if problem is not None:
                    from tooling import schema

                    schema.upgrade(url=urls.direct)
                _load_demo_data_if_empty(engine)
                # Least privilege on the demo database too: the app logs in as
                # dashboard_web (the role exists once the schema is migrated).
                env["DATABASE_URL"] = embedded.app_login_url(urls.direct)
            elif problem is not None:
                raise Refused(problem)
        finally:
            engine.dispose()
        # `streamlit run`, with the app's start-up work (imports, compiling the pages,
        # reading the default view) done in the background as the server starts; a
        # SIGTERM or Ctrl-C stops it before the embedded database below.
        return server.run(APP, args.streamlit_args, env=env)
    except KeyboardInterrupt:  # asked to stop before the server ran
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if target.started_embedded:
            embedded.stop()
            print("stopped the embedded database")


def _load_demo_data_if_empty(engine: Engine) -> None:
    from tooling import embedded

    if not embedded.database_is_empty(engine):
        return
    from tooling.demo_data import seed_demo_data

    print("empty demo database: loading demo data (dashboard seed --reset to reload)")
    with engine.connect() as conn:
        try:
            report = seed_demo_data(conn)
        except BaseException as exc:
            if not _stopped(exc):
                raise
            # Stopped (Ctrl-C, SIGTERM) in the middle of a COPY, the connection is left
            # mid-protocol: the rollback on the way out fails, and its error would hide
            # the stop (exit 1, tracebacks). Nothing was committed: drop the connection.
            conn.invalidate()
            raise KeyboardInterrupt from None
        conn.commit()
    print(f"loaded {report.generations:,} generations in {report.seconds:.1f}s")


def _stopped(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was raised while handling, a KeyboardInterrupt."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _display(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dashboard", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="start everything and open the dashboard (default)")
    serve.add_argument(
        "streamlit_args",
        nargs=argparse.REMAINDER,
        help="extra arguments for `streamlit run`, e.g. --server.port 8600",
    )
    serve.set_defaults(func=cmd_serve)
    sub.add_parser("migrate", help="migrate the database to the newest schema").set_defaults(
        func=cmd_migrate
    )
    seed = sub.add_parser("seed", help="load deterministic demo data")
    seed.add_argument("--orgs", type=int, default=40, help="organizations (default 40)")
    seed.add_argument(
        "--generations", type=int, default=250_000, help="generations (default 250,000)"
    )
    seed.add_argument("--days", type=int, default=120, help="days of history (default 120)")
    seed.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    seed.add_argument("--reset", action="store_true", help="replace existing data")
    seed.add_argument(
        "--confirm-database",
        metavar="NAME",
        help="required on any database but the embedded one: the name of that database",
    )
    seed.add_argument("-v", "--verbose", action="store_true", help="print the time of each stage")
    seed.set_defaults(func=cmd_seed)
    reconcile = sub.add_parser(
        "reconcile", help="check that balances, the ledger and the rollups close (exit 1 if not)"
    )
    reconcile.add_argument(
        "--full", action="store_true", help="check everything, not only what changed"
    )
    reconcile.set_defaults(func=cmd_reconcile)
    bulk = sub.add_parser(
        "bulk-adjust", help="check (default) or apply a CSV of credit adjustments"
    )
    bulk.add_argument(
        "file",
        metavar="FILE",
        help="CSV: organization,amount,reason[,note][,key][,expires_at][,priority]",
    )
    mode = bulk.add_mutually_exclusive_group()
    mode.add_argument(
        "--dry-run", action="store_true", help="check and show every row, write nothing (default)"
    )
    mode.add_argument("--apply", action="store_true", help="apply the whole file, or nothing")
    bulk.add_argument(
        "--actor",
        metavar="EMAIL",
        help="who applies it (with --apply): a person the role map allows to adjust credits",
    )
    bulk.add_argument(
        "--confirm-database",
        metavar="NAME",
        help="with --apply on any database but the embedded one: the name of that database",
    )
    bulk.set_defaults(func=cmd_bulk_adjust)
    alerts = sub.add_parser(
        "alerts", help="print the current alerts; with a webhook, post the new ones once a day"
    )
    alerts.add_argument(
        "--webhook",
        metavar="URL",
        help="post the alerts not sent yet today here (default: [alerts] webhook in secrets)",
    )
    alerts.add_argument(
        "--runway-days",
        type=int,
        default=14,
        metavar="N",
        help="alert when a balance runs out within N days at the recent burn (default 14)",
    )
    alerts.set_defaults(func=cmd_alerts)
    sub.add_parser(
        "expire-credits",
        help="write off what remains of grants past their expiry (idempotent; for cron)",
    ).set_defaults(func=cmd_expire_credits)
    sub.add_parser(
        "keep-edges",
        help="keep the company zone's new day for the usage ranking and trend (cron; idempotent)",
    ).set_defaults(func=cmd_keep_edges)
    allowances = sub.add_parser(
        "grant-allowances",
        help="grant every organization its plan's allowance for its local month, with "
        "last month's unused part rolled over up to the plan's cap (idempotent; for cron)",
    )
    allowances.add_argument(
        "--month",
        metavar="YYYY-MM",
        help="the month to grant (default: each organization's own local month now); "
        "skipped where it has not begun or is over, refused when over in every zone",
    )
    allowances.set_defaults(func=cmd_grant_allowances)
    sub.add_parser("db-url", help="print the database URL in use").set_defaults(func=cmd_db_url)
    sub.add_parser("stop", help="stop the embedded database").set_defaults(func=cmd_stop)
    return parser


def _serve_args(argv: list[str]) -> argparse.Namespace | None:
    """``dashboard [serve] [streamlit options]``: everything after ``serve`` (or the
    whole command line, when it starts with an option) goes to `streamlit run` as is.

    argparse cannot take ``--server.port 8600`` as a positional remainder, so this is
    split off by hand; other commands (and ``-h``) go through the parser.
    """
    if argv and argv[0] == "serve":
        rest = argv[1:]
    elif not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        rest = argv
    else:
        return None
    if rest[:1] in (["-h"], ["--help"]):
        return None
    return argparse.Namespace(command="serve", func=cmd_serve, streamlit_args=rest)


def main(argv: Sequence[str] | None = None, *, now: dt.datetime | None = None) -> int:
    """Run the command ``argv`` (default: the process's arguments); ``now`` (aware) is the
    instant the commands that ask "what is happening now" (alerts) take, default the
    current time."""
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    parser = build_parser()
    args = _serve_args(list(sys.argv[1:] if argv is None else argv)) or parser.parse_args(argv)
    args.now = now
    try:
        return int(args.func(args))
    except Exception as exc:
        if not _said_in_a_sentence(exc):
            raise
        print(f"dashboard: {exc}", file=sys.stderr)
        return 2


def _said_in_a_sentence(exc: Exception) -> bool:
    """Whether ``exc`` is a refusal or a failure whose message is the whole story (exit
    2), rather than a bug (a traceback). Imported here, not at the top: see there."""
    from queries.db import ConfigurationError
    from tooling.errors import DemoDataError, EmbeddedServerError

    return isinstance(exc, (ConfigurationError, DemoDataError, EmbeddedServerError, Refused))


if __name__ == "__main__":
    sys.exit(main())
