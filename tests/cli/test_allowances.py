"""`dashboard grant-allowances` against a real database, as the app's login: it grants
each organization its allowance for its local month once (a second run grants nothing),
skips a month not begun, and refuses a month written wrong or over everywhere with a
sentence, before writing anything."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from cli.main import main
from queries.db import create_direct_engine
from tests.conftest import PgServer, _recreate
from tests.factories import ensure_types, make_org
from tests.queries.roles import APP_LOGIN, login_url
from tooling import schema

DATABASE = "dashboard_test_allowances_cli"


@pytest.fixture
def database(
    test_server: PgServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[str]:
    """A migrated database with a pro organization in Kathmandu; DATABASE_URL logs in
    as a dashboard_app member, as cron would."""
    _recreate(test_server, DATABASE)
    url = test_server.url(DATABASE)
    schema.upgrade(url=url)
    engine = create_direct_engine(url)
    try:
        with engine.begin() as conn:
            ensure_types(conn)
            make_org(conn, timezone="Asia/Kathmandu", plan="pro")
    finally:
        engine.dispose()
    monkeypatch.setenv("DATABASE_URL", login_url(test_server, DATABASE, APP_LOGIN))
    monkeypatch.delenv("DIRECT_URL", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    yield url


def _allowances(url: str) -> list[tuple[str, int]]:
    engine = create_direct_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT idempotency_key, amount FROM credit_ledger "
                    "WHERE idempotency_key LIKE 'allowance:%' ORDER BY id"
                )
            ).all()
    finally:
        engine.dispose()
    return [(str(r[0]), int(r[1])) for r in rows]


def _now_and_month(url: str) -> tuple[dt.datetime, str]:
    """Noon on the 1st of a month a few weeks after the database's clock, in Kathmandu:
    its grants expire in the future whenever the test runs."""
    engine = create_direct_engine(url)
    try:
        with engine.connect() as conn:
            clock: dt.datetime = conn.execute(text("SELECT now()")).scalar_one()
    finally:
        engine.dispose()
    first = (clock.date().replace(day=1) + dt.timedelta(days=40)).replace(day=1)
    now = dt.datetime.combine(first, dt.time(12), ZoneInfo("Asia/Kathmandu"))
    return now, f"{first:%Y-%m}"


def test_grant_allowances_grants_once_per_month(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    now, month = _now_and_month(database)
    assert main(["grant-allowances"], now=now) == 0
    out = capsys.readouterr().out
    assert "granted 1 allowance (100,000 credits)" in out
    assert _allowances(database) == [(f"allowance:{month}", 100_000)]
    assert main(["grant-allowances", "--month", month], now=now) == 0
    out = capsys.readouterr().out
    assert f"Allowances for {month}: granted 0 allowances" in out
    assert "1 organization had nothing more to grant" in out
    assert _allowances(database) == [(f"allowance:{month}", 100_000)]


def test_a_month_not_begun_is_skipped(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    now, month = _now_and_month(database)
    year, number = map(int, month.split("-"))
    later = f"{year + number // 12}-{number % 12 + 1:02d}"
    assert main(["grant-allowances", "--month", later], now=now) == 0
    assert "Skipped 1 organization: 1 where the month has not begun." in capsys.readouterr().out
    assert _allowances(database) == []


@pytest.mark.parametrize(
    ("month", "sentence"),
    [
        ("2026-13", "The month must be written YYYY-MM, such as 2026-12, not '2026-13'."),
        ("2001-01", "2001-01 is over in every time zone"),
    ],
)
def test_a_bad_month_is_refused_with_a_sentence(
    database: str, capsys: pytest.CaptureFixture[str], month: str, sentence: str
) -> None:
    assert main(["grant-allowances", "--month", month]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dashboard: ") and sentence in err and "Nothing was granted." in err
    assert _allowances(database) == []
