"""`dashboard expire-credits` against a real database, as the app's role: it writes off
what is due once, says so, and a second run finds nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from cli.main import main
from queries.db import create_direct_engine
from tests.conftest import PgServer, _recreate
from tests.queries.roles import APP_LOGIN, login_url
from tests.queries.writes import add_due_grant, invariant_holds, new_org
from tooling import schema

DATABASE = "dashboard_test_expire_cli"


@pytest.fixture
def database(
    test_server: PgServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[str]:
    _recreate(test_server, DATABASE)
    url = test_server.url(DATABASE)
    schema.upgrade(url=url)
    monkeypatch.setenv("DATABASE_URL", login_url(test_server, DATABASE, APP_LOGIN))
    monkeypatch.delenv("DIRECT_URL", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    yield url


def test_it_writes_off_what_is_due_once(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    owner = create_direct_engine(database)
    try:
        a, _ = new_org(owner, balance=5)
        b, _ = new_org(owner)
        add_due_grant(owner, a, 1_200)
        add_due_grant(owner, b, 34)
        assert main(["expire-credits"]) == 0
        assert capsys.readouterr().out == (
            "Wrote off 2 expired grants of 2 organizations: 1,234 credits expired unused.\n"
        )
        assert main(["expire-credits"]) == 0
        assert capsys.readouterr().out == "No grants were due to expire.\n"
        with owner.connect() as conn:
            expired = conn.execute(
                text("SELECT count(*) FROM credit_ledger WHERE kind = 'expired'")
            ).scalar_one()
        assert expired == 2
        assert invariant_holds(owner, a) and invariant_holds(owner, b)
    finally:
        owner.dispose()


def test_no_database_exits_2_with_a_sentence(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:9/nothing")
    assert main(["expire-credits"]) == 2
    assert "could not expire the credits due" in capsys.readouterr().err
