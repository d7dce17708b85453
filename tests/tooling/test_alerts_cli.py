"""`dashboard alerts` against a real database and a local HTTP server: it prints the
alerts, posts the new ones once per local day as JSON with Slack's text, records them,
and a failing webhook records nothing."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from queries.db import create_direct_engine
from tests.conftest import PgServer, _recreate
from tests.factories import add_generations, ensure_types, make_org, make_user
from tests.queries.roles import APP_LOGIN, login_url
from tooling import schema
from tooling.cli import main, webhook_from_secrets

DATABASE = "dashboard_test_alerts_cli"
ZONE = "Asia/Kathmandu"
# The instant the in-process runs of the command take as now, and their data is built
# around: 01:45 on 26 November in Kathmandu, still the 25th in UTC.
NOW = dt.datetime(2026, 11, 25, 20, 0, tzinfo=dt.UTC)
HOSTILE = "Acme <!channel> & <https://evil.example|Co>"
TOKEN_PATH = "/services/T000/B000/secret-token"


@dataclass
class Hook:
    """A local webhook: what it was sent, and the status it answers with."""

    url: str
    status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def hook() -> Iterator[Hook]:
    seen = Hook(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            seen.requests.append(
                {
                    "path": self.path,
                    "content_type": self.headers.get("Content-Type"),
                    "body": json.loads(self.rfile.read(length)),
                }
            )
            self.send_response(seen.status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:  # keep the test output quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    seen.url = f"http://127.0.0.1:{server.server_address[1]}{TOKEN_PATH}"
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def database(
    test_server: PgServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[str]:
    """A migrated database; DATABASE_URL logs in as a dashboard_app member (as the app
    does); no secrets from the developer's home or the project."""
    _recreate(test_server, DATABASE)
    url = test_server.url(DATABASE)
    schema.upgrade(url=url)
    monkeypatch.setenv("DATABASE_URL", login_url(test_server, DATABASE, APP_LOGIN))
    monkeypatch.delenv("DIRECT_URL", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    yield url


def _over_the_limit(url: str, *, now: dt.datetime = NOW) -> tuple[int, str]:
    """An organization in Kathmandu that used 3 chats at ``now`` against a limit of 2."""
    engine = create_direct_engine(url)
    try:
        with engine.begin() as conn:
            ensure_types(conn)
            org = make_org(conn, name=HOSTILE, timezone=ZONE, balance=100)
            user = make_user(conn, org)
            add_generations(conn, org, [(user, "chat", 1, now) for _ in range(3)])
            conn.execute(
                text("UPDATE usage_limits SET daily_limit = 2 WHERE organization_id = :org"),
                {"org": org},
            )
            slug = conn.execute(
                text("SELECT slug FROM organizations WHERE id = :org"), {"org": org}
            ).scalar_one()
    finally:
        engine.dispose()
    return org, slug


def _deliveries(url: str) -> list[tuple[Any, ...]]:
    engine = create_direct_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT organization_id, kind, type, local_day, message, details, "
                    "destination FROM alert_deliveries ORDER BY id"
                )
            ).all()
    finally:
        engine.dispose()
    return [tuple(row) for row in rows]


def test_first_run_posts_the_alerts_and_a_second_run_the_same_day_posts_nothing(
    database: str, hook: Hook, capsys: pytest.CaptureFixture[str]
) -> None:
    org, slug = _over_the_limit(database)
    today = dt.date(2026, 11, 26)  # NOW in Kathmandu
    message = f"{HOSTILE} is over its chat limit: 3 of 2 used today ({today.isoformat()}, {ZONE})"

    assert main(["alerts", "--webhook", hook.url], now=NOW) == 0
    out = capsys.readouterr().out
    port = hook.url.split(":")[2].split("/")[0]
    assert out.splitlines() == [
        f"over_limit  {slug}  {message}",
        f"sent 1 alert(s) to 127.0.0.1:{port}; 0 already sent today",
    ]
    [request] = hook.requests
    assert request["path"] == TOKEN_PATH
    assert request["content_type"] == "application/json"
    body = request["body"]
    # Slack's text: the name cannot make a mention or a link.
    assert body["text"] == (
        "Acme &lt;!channel&gt; &amp; &lt;https://evil.example|Co&gt; is over its chat limit: "
        f"3 of 2 used today ({today.isoformat()}, {ZONE})"
    )
    [alert] = body["alerts"]
    assert alert == {
        "kind": "over_limit",
        "organization_id": org,
        "organization": HOSTILE,
        "slug": slug,
        "type": "chat",
        "local_day": today.isoformat(),
        "message": message,
        "details": {"used": 3, "daily_limit": 2, "status": "over", "timezone": ZONE},
    }
    [row] = _deliveries(database)
    assert row[:5] == (org, "over_limit", "chat", today, message)
    assert row[6] == f"127.0.0.1:{port}", "the host only: the URL's path holds the token"

    assert main(["alerts", "--webhook", hook.url], now=NOW) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == f"sent 0 alert(s) to 127.0.0.1:{port}; 1 already sent today"
    assert len(hook.requests) == 1, "the same alert on the same local day is not posted again"
    assert len(_deliveries(database)) == 1


def test_a_failing_webhook_exits_1_and_records_nothing(
    database: str, hook: Hook, capsys: pytest.CaptureFixture[str]
) -> None:
    _over_the_limit(database)
    hook.status = 500
    assert main(["alerts", "--webhook", hook.url], now=NOW) == 1
    captured = capsys.readouterr()
    assert "over_limit" in captured.out
    assert "answered 500" in captured.err and "Nothing was recorded" in captured.err
    assert "secret-token" not in captured.err
    assert len(hook.requests) == 1 and _deliveries(database) == []

    hook.status = 204  # the webhook is back: the next run sends them
    assert main(["alerts", "--webhook", hook.url], now=NOW) == 0
    assert "sent 1 alert(s)" in capsys.readouterr().out
    assert len(hook.requests) == 2 and len(_deliveries(database)) == 1


def test_a_redirect_is_a_failure_not_a_delivery(
    database: str, hook: Hook, capsys: pytest.CaptureFixture[str]
) -> None:
    _over_the_limit(database)
    hook.status = 302
    assert main(["alerts", "--webhook", hook.url], now=NOW) == 1
    assert "answered 302" in capsys.readouterr().err
    assert _deliveries(database) == []


def test_no_alerts_prints_so_and_posts_nothing(
    database: str, hook: Hook, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["alerts", "--webhook", hook.url], now=NOW) == 0
    assert capsys.readouterr().out == "No alerts.\n"
    assert hook.requests == []


def test_the_webhook_comes_from_the_secrets_when_not_given(
    database: str, hook: Hook, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _over_the_limit(database)
    secrets = tmp_path / ".streamlit" / "secrets.toml"
    secrets.parent.mkdir()
    secrets.write_text(f'[alerts]\nwebhook = "{hook.url}"\n')
    assert webhook_from_secrets([secrets]) == hook.url
    assert main(["alerts"], now=NOW) == 0
    assert "sent 1 alert(s)" in capsys.readouterr().out
    assert len(hook.requests) == 1


def test_without_a_webhook_it_only_prints(
    database: str, hook: Hook, capsys: pytest.CaptureFixture[str]
) -> None:
    _over_the_limit(database)
    assert main(["alerts"], now=NOW) == 0
    out = capsys.readouterr().out
    assert out.startswith("over_limit") and "sent" not in out
    assert hook.requests == [] and _deliveries(database) == []


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--webhook", "file:///etc/passwd"], "must start with https://"),
        (["--webhook", "ftp://hooks.example.com/x"], "must start with https://"),
        (["--webhook", "https:///no-host"], "has no host"),
        (["--webhook", ""], "is empty"),
        (["--runway-days", "0"], "--runway-days must be from 1 to 366"),
    ],
)
def test_bad_usage_exits_2_with_a_sentence(
    database: str, hook: Hook, capsys: pytest.CaptureFixture[str], args: list[str], said: str
) -> None:
    _over_the_limit(database)
    assert main(["alerts", *args], now=NOW) == 2
    assert said in capsys.readouterr().err
    assert hook.requests == [] and _deliveries(database) == []


def test_no_database_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:9/nothing")
    assert main(["alerts"]) == 2
    assert "could not read the alerts" in capsys.readouterr().err


def test_the_command_runs_from_cron_as_a_process(database: str, hook: Hook) -> None:
    # One process (the in-process tests cover the second run): exit code and output. The
    # process reads the clock itself, so its data is built at the current time.
    _over_the_limit(database, now=dt.datetime.now(dt.UTC))
    command = [sys.executable, "-m", "tooling.cli", "alerts", "--webhook", hook.url]
    root = Path(__file__).resolve().parents[2]
    path = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("over_limit") and "sent 1 alert(s)" in run.stdout
    assert len(hook.requests) == 1 and len(_deliveries(database)) == 1
