"""`dashboard keep-edges` against a real database, as the app's role: it keeps the
company zone's edges of the day once, says so, and a second run adds nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from cli.main import main
from queries.db import create_direct_engine
from queries.edges import KEEP_DAYS
from tests.conftest import PgServer, _recreate
from tests.queries.roles import APP_LOGIN, login_url
from tooling import schema

DATABASE = "dashboard_test_keep_edges_cli"


@pytest.fixture
def database(
    test_server: PgServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[str]:
    _recreate(test_server, DATABASE)
    url = test_server.url(DATABASE)
    schema.upgrade(url=url)
    monkeypatch.setenv("DATABASE_URL", login_url(test_server, DATABASE, APP_LOGIN))
    monkeypatch.delenv("DIRECT_URL", raising=False)
    monkeypatch.setenv("DASHBOARD_TIMEZONE", "Asia/Kathmandu")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    yield url


def test_it_keeps_the_days_edges_once(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keep-edges"]) == 0
    assert capsys.readouterr().out == (
        f"Kept {KEEP_DAYS + 1} new edges of the Asia/Kathmandu days and dropped 0 old ones.\n"
    )
    assert main(["keep-edges"]) == 0
    assert capsys.readouterr().out == (
        "Kept 0 new edges of the Asia/Kathmandu days and dropped 0 old ones.\n"
    )
    owner = create_direct_engine(database)
    try:
        with owner.connect() as conn:
            # Kathmandu's midnights are 18:15 UTC.
            minutes = (
                conn.execute(
                    text(
                        "SELECT DISTINCT to_char(edge AT TIME ZONE 'UTC', 'HH24:MI') FROM kept_usage_edges"
                    )
                )
                .scalars()
                .all()
            )
        assert minutes == ["18:15"]
    finally:
        owner.dispose()


def test_no_database_exits_2_with_a_sentence(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:9/nothing")
    assert main(["keep-edges"]) == 2
    assert "could not keep the usage edges" in capsys.readouterr().err
