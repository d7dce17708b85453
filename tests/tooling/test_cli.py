"""The `dashboard` command: migrate, seed and db-url against a real server."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from queries.db import create_direct_engine
from tests.conftest import PgServer, _recreate
from tooling.cli import main


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
    import tooling.cli as cli

    seen: list[list[str]] = []

    def serve(args: object) -> int:
        seen.append(list(args.streamlit_args))  # type: ignore[attr-defined]
        return 0

    monkeypatch.setattr(cli, "cmd_serve", serve)
    assert main(["serve", "--server.port", "8600", "--server.headless", "true"]) == 0
    assert main(["--server.port", "8601"]) == 0
    assert main([]) == 0
    assert seen == [
        ["--server.port", "8600", "--server.headless", "true"],
        ["--server.port", "8601"],
        [],
    ]
