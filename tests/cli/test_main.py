"""The `dashboard` command: migrate, seed and db-url against a real server, and every
refusal at start-up (unknown roles, no identity off the embedded database, a schema
that is behind, demo data into a database nobody named)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

import cli.main
from cli import server
from cli.main import main
from queries.db import create_direct_engine
from queries.embedded_server import owns_url
from tests.conftest import PgServer, _recreate
from tooling import embedded, schema


@pytest.fixture
def scratch_url(test_server: PgServer, monkeypatch: pytest.MonkeyPatch) -> str:
    _recreate(test_server, "dashboard_test_cli")
    url = test_server.url("dashboard_test_cli")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DIRECT_URL", url.replace("postgresql+psycopg://", "postgres://", 1))
    return url


def test_migrate_creates_the_schema_on_direct_url(
    scratch_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate"]) == 0
    engine = create_direct_engine(scratch_url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert {"organizations", "generations", "usage_limits", "credit_ledger"} <= tables
    finally:
        engine.dispose()
    assert "migrated" in capsys.readouterr().out


def test_seed_loads_and_refuses_to_overwrite_without_reset(
    scratch_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["seed", "--orgs", "5", "--generations", "2000", "--days", "10"]) == 0
    assert "2,000 generations" in capsys.readouterr().out
    assert main(["seed", "--orgs", "5", "--generations", "2000"]) == 2
    assert "--reset" in capsys.readouterr().err
    assert main(["seed", "--orgs", "3", "--generations", "1000", "--reset"]) == 0
    engine = create_direct_engine(scratch_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM generations")).scalar_one() == 1000
    finally:
        engine.dispose()


def test_seed_rejects_nonsense_sizes(scratch_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["seed", "--orgs", "0"]) == 2
    assert "--orgs must be at least 1" in capsys.readouterr().err


def test_db_url_prints_a_libpq_url(scratch_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db-url"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("postgresql://") and "dashboard_test_cli" in printed


def test_bad_database_url_is_a_sentence_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://nope@host/db")
    assert main(["db-url"]) == 2
    assert "unsupported database URL scheme" in capsys.readouterr().err


def test_streamlit_options_pass_through_to_streamlit_run(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def serve(args: object) -> int:
        seen.append(list(args.streamlit_args))  # type: ignore[attr-defined]
        return 0

    monkeypatch.setattr(cli.main, "cmd_serve", serve)
    assert main(["serve", "--server.port", "8600", "--server.headless", "true"]) == 0
    assert main(["--server.port", "8601"]) == 0
    assert main([]) == 0
    assert seen == [
        ["--server.port", "8600", "--server.headless", "true"],
        ["--server.port", "8601"],
        [],
    ]


# ------------------------------------------------------------------ start-up refusals


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The streamlit options of each server serve would start (never started here)."""
    calls: list[list[str]] = []

    def run(app: Path, streamlit_args: Sequence[str], *, env: Mapping[str, str]) -> int:
        calls.append(list(streamlit_args))
        return 0

    # Only the final step is replaced: everything serve checks before it runs for real.
    monkeypatch.setattr(server, "run", run)
    return calls


@pytest.fixture
def clean_identity(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No identity from the developer's shell or secrets: the secrets files serve reads
    are ``./.streamlit/secrets.toml`` of an empty folder and an empty home."""
    for name in ("DASHBOARD_USER", "DASHBOARD_ROLE", "DASHBOARD_ROLES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".streamlit").mkdir()
    return tmp_path / ".streamlit" / "secrets.toml"


@pytest.fixture
def real_database(scratch_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """``scratch_url``, no longer the embedded database: the project's data folder is an
    empty one, so ``owns_url`` is False (as for any real server)."""
    embedded.ensure_running()  # before the folder moves, so nothing starts in it
    monkeypatch.setenv("DASHBOARD_PGDATA", str(tmp_path / "no-cluster"))
    assert not owns_url(scratch_url)
    return scratch_url


def _tables(url: str) -> set[str]:
    engine = create_direct_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("env", "secrets", "named"),
    [
        ({"DASHBOARD_ROLE": "managers"}, "", 'DASHBOARD_ROLE="managers": unknown role'),
        (
            {"DASHBOARD_ROLES": "a@x.com=finance,b@y.com=managers"},
            "",
            'DASHBOARD_ROLES entry "b@y.com=managers": unknown role "managers"; '
            "roles are admin, finance, support, manager",
        ),
        ({"DASHBOARD_ROLES": "a@x.com"}, "", 'DASHBOARD_ROLES entry "a@x.com": not email=role'),
        ({}, '[dev]\nrole = "viewer"\n', '[dev] role = "viewer": unknown role'),
        ({}, '[roles]\n"a@x.com" = "read-only"\n', '[roles] entry "a@x.com" = "read-only"'),
    ],
)
def test_serve_refuses_an_unknown_role_in_any_source_before_anything_happens(
    scratch_url: str,
    clean_identity: Path,
    started: list[list[str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    secrets: str,
    named: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    clean_identity.write_text(secrets)
    assert main(["serve"]) == 2
    assert named in capsys.readouterr().err
    assert started == []
    assert _tables(scratch_url) == set()  # not even migrated


def test_serve_reads_the_secrets_file_streamlit_is_told_to_use(
    scratch_url: str,
    clean_identity: Path,
    started: list[list[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    elsewhere = tmp_path / "deploy-secrets.toml"
    elsewhere.write_text('[roles]\n"a@x.com" = "superuser"\n')
    assert main(["serve", "--secrets.files", str(elsewhere)]) == 2
    assert '"superuser"' in capsys.readouterr().err
    assert started == []


@pytest.mark.usefixtures("clean_identity")
def test_serve_without_an_identity_off_the_embedded_database_names_both_ways_out(
    real_database: str,
    started: list[list[str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["migrate"]) == 0
    capsys.readouterr()
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "[auth]" in err and ".streamlit/secrets.toml" in err and "DASHBOARD_USER" in err
    assert started == []

    # Either way out works: a deliberate single user ...
    monkeypatch.setenv("DASHBOARD_USER", "solo@example.com")
    monkeypatch.setenv("DASHBOARD_ROLE", "finance")
    assert main(["serve", "--server.port", "8611"]) == 0
    assert len(started) == 1 and started[0][-2:] == ["--server.port", "8611"]


@pytest.mark.usefixtures("real_database")
def test_serve_with_oidc_configured_starts_off_the_embedded_database(
    clean_identity: Path, started: list[list[str]]
) -> None:
    assert main(["migrate"]) == 0
    clean_identity.write_text(
        '[auth]\nredirect_uri = "https://d.example.com/oauth2callback"\n'
        'cookie_secret = "x"\nclient_id = "d"\nclient_secret = "y"\n'
        'server_metadata_url = "https://login.example.com/.well-known/openid-configuration"\n'
        'allowed_domains = ["example.com"]\n[roles]\n"*" = "manager"\n'
    )
    assert main(["serve"]) == 0 and len(started) == 1


@pytest.mark.usefixtures("clean_identity")
def test_serve_refuses_a_schema_that_is_behind_and_never_migrates_it(
    real_database: str,
    started: list[list[str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    schema.upgrade(url=real_database)
    schema.downgrade(revision="0001", url=real_database)
    monkeypatch.setenv("DASHBOARD_USER", "solo@example.com")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "schema is behind" in err and "dashboard migrate" in err
    assert started == []
    engine = create_direct_engine(real_database)
    try:
        with engine.connect() as conn:
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        engine.dispose()
    assert revision == "0001"


def test_seed_reset_on_a_real_database_needs_its_name_confirmed(
    real_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    small = ["--orgs", "2", "--generations", "200", "--days", "5"]
    assert main(["seed", *small, "--reset"]) == 2
    err = capsys.readouterr().err
    assert "not the embedded demo database" in err
    assert "--confirm-database dashboard_test_cli" in err
    assert _tables(real_database) == set()  # refused before a connection

    assert main(["seed", *small, "--reset", "--confirm-database", "production"]) == 2
    assert "does not name the database in use" in capsys.readouterr().err
    assert _tables(real_database) == set()

    assert main(["seed", *small, "--reset", "--confirm-database", "dashboard_test_cli"]) == 0
    assert "seeded 2 organizations" in capsys.readouterr().out


# ----------------------------------------------------------------------- bulk-adjust


@pytest.fixture
def bulk_database(real_database: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A database that is not the embedded one, migrated, with one organization ``acme``
    holding 100 credits; the role map lets ana (finance) adjust credits, not sam."""
    monkeypatch.setenv("DASHBOARD_ROLES", "Ana@Finance.example=finance,sam@support.example=support")
    scratch_url = real_database
    schema.upgrade(url=scratch_url)
    engine = create_direct_engine(scratch_url)
    try:
        with engine.begin() as conn:
            org = conn.execute(
                text("INSERT INTO organizations (name, slug) VALUES ('Acme', 'acme') RETURNING id")
            ).scalar_one()
            conn.execute(
                text("INSERT INTO credit_balances (organization_id) VALUES (:o)"),
                {"o": org},
            )
            conn.execute(  # the database books it: balance 100 (migration 0013)
                text(
                    "INSERT INTO credit_ledger (organization_id, amount, kind, "
                    "reason, actor, idempotency_key) "
                    "VALUES (:o, 100, 'grant', 'Opening', 'setup@example.com', 'open')"
                ),
                {"o": org},
            )
    finally:
        engine.dispose()
    return scratch_url


def _balance(url: str) -> tuple[int, int]:
    engine = create_direct_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT (SELECT balance FROM credit_balances), (SELECT count(*) FROM credit_ledger)"
                )
            ).one()
            return int(row[0]), int(row[1])
    finally:
        engine.dispose()


def test_bulk_adjust_dry_run_then_apply_once(
    bulk_database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "grants.csv"
    csv.write_text("organization,amount,reason\nacme,50,Goodwill\nacme,-120,Correction\n")
    assert main(["bulk-adjust", str(csv)]) == 0
    out = capsys.readouterr().out
    assert "acme" in out and "150" in out and "30" in out and "nothing was written" in out
    assert _balance(bulk_database) == (100, 1)

    # Off the embedded database a write names the database, as seeding does.
    args = ["bulk-adjust", str(csv), "--apply", "--actor", "ana@finance.example"]
    assert main(args) == 2
    assert "--confirm-database dashboard_test_cli" in capsys.readouterr().err
    assert _balance(bulk_database) == (100, 1)

    confirmed = [*args, "--confirm-database", "dashboard_test_cli"]
    assert main(confirmed) == 0
    assert "applied 2 rows" in capsys.readouterr().out
    assert _balance(bulk_database) == (30, 3)
    assert main(confirmed) == 0  # the same file again: nothing changes
    assert "2 already there" in capsys.readouterr().out
    assert _balance(bulk_database) == (30, 3)


def test_bulk_adjust_shows_and_applies_a_grants_expiry_and_priority(
    bulk_database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "promo.csv"
    csv.write_text(
        "organization,amount,reason,expires_at,priority\n"
        "acme,50,Promotion,2099-01-06T05:45:00+05:45,5\n"
        "acme,-10,Correction,,\n"
    )
    args = ["bulk-adjust", str(csv), "--apply", "--actor", "ana@finance.example"]
    assert main([*args, "--confirm-database", "dashboard_test_cli"]) == 0
    out = capsys.readouterr().out
    assert "grant terms" in out and "expires 2099-01-06 00:00 UTC, priority 5" in out
    engine = create_direct_engine(bulk_database)
    try:
        with engine.connect() as conn:
            terms = conn.execute(
                text("SELECT expires_at, priority, amount FROM credit_grants WHERE source = 'bulk'")
            ).one()
    finally:
        engine.dispose()
    assert (f"{terms.expires_at:%Y-%m-%d %H:%M %z}", terms.priority, terms.amount) == (
        "2099-01-06 00:00 +0000",
        5,
        50,
    )


def test_bulk_adjust_a_naive_expiry_is_a_row_error_and_applies_nothing(
    bulk_database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "naive.csv"
    csv.write_text("organization,amount,reason,expires_at\nacme,50,Promotion,2099-01-06T00:00\n")
    assert main(["bulk-adjust", str(csv)]) == 1
    assert "line 2: The expires_at '2099-01-06T00:00' has no UTC offset" in capsys.readouterr().out
    assert _balance(bulk_database) == (100, 1)


def test_bulk_adjust_a_bad_row_exits_1_and_applies_nothing(
    bulk_database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("organization,amount,reason\nacme,50,Goodwill\nnobody,1.5,\n")
    args = ["bulk-adjust", str(csv), "--apply", "--actor", "ana@finance.example"]
    assert main([*args, "--confirm-database", "dashboard_test_cli"]) == 1
    out = capsys.readouterr().out
    # Every problem of the row, each with its line; the good row 2 is not applied either.
    assert "line 3: The amount must be a whole number" in out
    assert "line 3: The reason cannot be empty." in out
    assert "line 3: There is no organization with the slug 'nobody'." in out
    assert "nothing was applied" in out
    assert _balance(bulk_database) == (100, 1)


@pytest.mark.parametrize(
    ("actor", "fragment"),
    [
        ("mallory@example.com", "--actor mallory@example.com is not in the role map"),
        ("sam@support.example", "has the role support, which may not adjust credits"),
        ('=HYPERLINK("http://x.example","ana")', "is not in the role map"),
        ("ana@finance.example\u200b", "invisible or control character (U+200B"),
    ],
)
def test_bulk_adjust_refuses_an_actor_the_role_map_does_not_allow(
    bulk_database: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    actor: str,
    fragment: str,
) -> None:
    csv = tmp_path / "grants.csv"
    csv.write_text("organization,amount,reason\nacme,50,Goodwill\n")
    args = ["bulk-adjust", str(csv), "--apply", "--actor", actor]
    assert main([*args, "--confirm-database", "dashboard_test_cli"]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Nothing was changed." in err
    assert _balance(bulk_database) == (100, 1)


def test_bulk_adjust_records_the_canonical_actor_and_the_command_line(
    bulk_database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "grants.csv"
    csv.write_text("organization,amount,reason\nacme,50,Goodwill\n")
    args = ["bulk-adjust", str(csv), "--apply", "--actor", " ANA@finance.EXAMPLE "]
    assert main([*args, "--confirm-database", "dashboard_test_cli"]) == 0
    engine = create_direct_engine(bulk_database)
    try:
        with engine.connect() as conn:
            entry = conn.execute(
                text("SELECT actor FROM credit_ledger WHERE reason = 'Goodwill'")
            ).scalar_one()
            audit = conn.execute(
                text("SELECT action, actor, reason, details ->> 'via' FROM audit_log")
            ).one()
    finally:
        engine.dispose()
    assert entry == "ana@finance.example"
    assert audit.action == "bulk_adjust" and audit.actor == "ana@finance.example"
    assert audit[3] == "the command line (dashboard bulk-adjust)"
    assert "via the command line (dashboard bulk-adjust)" in audit.reason


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["bulk-adjust", "/no/such/file.csv"], "cannot read /no/such/file.csv"),
        (["bulk-adjust", "{csv}", "--apply"], "--apply needs --actor EMAIL"),
        (["bulk-adjust", "{csv}", "--actor", "a@b.example"], "--actor goes with --apply"),
    ],
)
def test_bulk_adjust_bad_arguments_exit_2_with_a_sentence(
    scratch_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    fragment: str,
) -> None:
    csv = tmp_path / "ok.csv"
    csv.write_text("organization,amount,reason\nacme,1,Top-up\n")
    assert main([a.format(csv=csv) for a in args]) == 2
    assert fragment in capsys.readouterr().err


def test_bulk_adjust_without_a_database_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "ok.csv"
    csv.write_text("organization,amount,reason\nacme,1,Top-up\n")
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:9/nothing")
    monkeypatch.delenv("DIRECT_URL", raising=False)
    assert main(["bulk-adjust", str(csv)]) == 2
    assert "could not use" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["bulk-adjust", str(csv), "--dry-run", "--apply"])
    assert usage.value.code == 2


def test_a_stop_hidden_behind_the_failed_rollback_of_an_interrupted_copy_is_still_a_stop() -> None:
    # Interrupted mid-COPY, the rollback on the way out fails: its error is what
    # propagates, with the KeyboardInterrupt only in its context.
    hidden = OSError("sending query failed: another command is already in progress")
    hidden.__context__ = KeyboardInterrupt()
    assert cli.main._stopped(hidden)
    assert cli.main._stopped(KeyboardInterrupt())
    try:
        raise RuntimeError("a real failure") from ValueError("its cause")
    except RuntimeError as exc:
        assert not cli.main._stopped(exc)
