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
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import text

from cli.main import main, webhook_from_secrets
from queries.alerts import alerts_from, deliver
from queries.db import create_direct_engine, create_write_engine
from tests.conftest import PgServer, _recreate
from tests.factories import add_generations, ensure_types, make_org, make_user
from tests.faults import TricklingWebhook
from tests.queries.roles import APP_LOGIN, login_url
from tests.queries.test_alerts import _forecast, _over, _runway, _spikes
from tooling import schema, webhook

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
    monkeypatch.delenv("DASHBOARD_BASE_URL", raising=False)
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
        f"sent 1 alert to 127.0.0.1:{port}; 0 already sent today",
    ]
    [request] = hook.requests
    assert request["path"] == TOKEN_PATH
    assert request["content_type"] == "application/json"
    body = request["body"]
    # Slack's text: a digest in which the name cannot make a mention or a link.
    assert body["text"].splitlines() == [
        "*1 alert from the usage dashboard* (Over the limit: 1)",
        webhook.NO_LINKS,
        "",
        "*Over the limit: 1*",
        "• Acme &lt;!channel&gt; &amp; &lt;https://evil.example|Co&gt; is over its chat limit: "
        f"3 of 2 used today ({today.isoformat()}, {ZONE})",
    ]
    [alert] = body["alerts"]
    assert alert == {
        "kind": "over_limit",
        "organization_id": org,
        "organization": HOSTILE,
        "slug": slug,
        "type": "chat",
        "local_day": today.isoformat(),
        "message": message,
        "details": {
            "used": 3,
            "daily_limit": 2,
            "status": "over",
            "timezone": ZONE,
            "soft": False,
            "overage": 1,
        },
        "link": None,
    }
    [row] = _deliveries(database)
    assert row[:5] == (org, "over_limit", "chat", today, message)
    assert row[6] == f"127.0.0.1:{port}", "the host only: the URL's path holds the token"

    assert main(["alerts", "--webhook", hook.url], now=NOW) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == f"sent 0 alerts to 127.0.0.1:{port}; 1 already sent today"
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
    assert "sent 1 alert " in capsys.readouterr().out
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
    assert "sent 1 alert " in capsys.readouterr().out
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
        (["--base", "usage.example.com"], "DASHBOARD_BASE_URL must be the dashboard's address"),
        (["--base", "https://usage.example.com/?x=1"], "must not have a query"),
    ],
)
def test_bad_usage_exits_2_with_a_sentence(
    database: str,
    hook: Hook,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    said: str,
) -> None:
    _over_the_limit(database)
    if args[0] == "--base":  # the dashboard's address is a setting: checked before a post
        monkeypatch.setenv("DASHBOARD_BASE_URL", args[1])
        args = ["--webhook", hook.url]
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
    command = [sys.executable, "-m", "cli.main", "alerts", "--webhook", hook.url]
    root = Path(__file__).resolve().parents[2]
    path = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("over_limit") and "sent 1 alert " in run.stdout
    assert len(hook.requests) == 1 and len(_deliveries(database)) == 1


def test_a_webhook_that_trickles_its_answer_is_posted_once_within_the_deadline(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The webhook: 200 at once, then its body a byte every 7 s. Before, each read
    # got its own 10 s, the claim's session was ended at 60 s idle, the run said "posted,
    # but ... lost" and the next run posted the same alerts again. Here the server would
    # even end an idle transaction after 1 s (and, on 17+, any transaction after 2 s):
    # the claim's own settings keep it alive for the post's deadline.
    _over_the_limit(database, now=NOW)
    admin = create_direct_engine(database)
    try:
        with admin.connect() as conn:
            raw = conn.connection.driver_connection
            assert isinstance(raw, psycopg.Connection)
            timeouts = {"idle_in_transaction_session_timeout": "1s"}
            if raw.info.server_version >= 170000:
                timeouts["transaction_timeout"] = "2s"
            for name, value in timeouts.items():
                raw.execute(
                    sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                        sql.Identifier(DATABASE), sql.Identifier(name), sql.Literal(value)
                    )
                )
            raw.commit()
    finally:
        admin.dispose()
    with TricklingWebhook(every=7) as hook:
        began = time.monotonic()
        assert main(["alerts", "--webhook", hook.url], now=NOW) == 0
        took = time.monotonic() - began
        first = capsys.readouterr()
        assert took < webhook.DEADLINE_SECONDS + 5, took
        assert "sent 1 alert " in first.out
        assert "answered 200 but had not finished its answer after 10 s" in first.err
        assert "token" not in first.err
        assert len(_deliveries(database)) == 1

        assert main(["alerts", "--webhook", hook.url], now=NOW) == 0
        assert capsys.readouterr().out.splitlines()[-1].endswith("1 already sent today")
        assert len(hook.requests) == 1, "the same alerts were posted again"


BASE = "https://usage.example.com"


def test_a_day_of_many_alerts_is_posted_as_one_digest_by_kind_with_links(
    database: str, hook: Hook
) -> None:
    # The morning: 29 low runways, a few spikes and limits. One POST of a digest:
    # each kind counted, its most urgent first, five listed and "and N more", and links
    # to each organization's view and each kind's list; every alert still recorded once.
    engine = create_direct_engine(database)
    try:
        with engine.begin() as conn:
            orgs = [make_org(conn, name=f"Tenant {n:02d}") for n in range(34)]
    finally:
        engine.dispose()
    runway = [
        {"organization_id": org, "name": f"Tenant {n:02d}", "balance": 1_000 * (29 - n),
         "daily_burn": 1_000.0, "runway_days": float(29 - n), "runs_out_on": None}
        for n, org in enumerate(orgs[:29])
    ]  # fmt: skip
    spikes = [
        {"organization_id": org, "name": f"Tenant {29 + n:02d}", "recent_credits": 900,
         "baseline_credits": 100.0, "factor": factor}
        for n, (org, factor) in enumerate(zip(orgs[29:32], [3.0, 9.0, 5.0], strict=True))
    ]  # fmt: skip
    over = [
        {"organization_id": org, "name": f"Tenant {32 + n:02d}", "type": "chat",
         "used": used, "daily_limit": 10, "status": "over"}
        for n, (org, used) in enumerate(zip(orgs[32:], [12, 30], strict=True))
    ]  # fmt: skip
    alerts = alerts_from(
        forecast=_forecast(),
        spikes=_spikes(*spikes),
        runway=_runway(*runway),
        over=_over(*over),
        now=NOW,
    )
    assert len(alerts) == 34
    admin = create_write_engine(database)
    try:
        send = webhook.sender(hook.url, base_url=BASE)
        result = deliver(admin, alerts=alerts, send=send, destination="127.0.0.1")
        assert len(result.sent) == 34
        again = deliver(admin, alerts=alerts, send=send, destination="127.0.0.1")
        assert again.sent == () and len(again.already_sent) == 34
    finally:
        admin.dispose()
    [request] = hook.requests  # one POST; the second run had nothing new
    body = request["body"]
    lines = body["text"].splitlines()
    assert lines[0] == (
        "*34 alerts from the usage dashboard* (Over the limit: 2; Spikes: 3; Low runway: 29)"
    )
    assert webhook.NO_LINKS not in lines
    headings = [line for line in lines if line.startswith("*") and line != lines[0]]
    assert headings == [
        f"*Over the limit: 2* <{BASE}/quotas?status=over,at%20limit|open the list>",
        f"*Spikes: 3* <{BASE}/quotas|open the list>",
        f"*Low runway: 29* <{BASE}/credits|open the list>",
    ]
    items = [line for line in lines if line.startswith("• ")]
    # Most urgent first: 300 % before 120 %, 9x before 5x before 3x, 1 day before 2.
    assert [item.split(" ")[2] for item in items] == [
        "33", "32", "30", "31", "29", "28", "27", "26", "25", "24",
    ]  # fmt: skip
    assert items[0].endswith(f"<{BASE}/quotas?org={orgs[33]}&amp;type=chat|open>")
    assert items[2].endswith(f"<{BASE}/?org={orgs[30]}|open>")
    assert items[5].endswith(f"<{BASE}/credits?org={orgs[28]}|open>")
    assert lines[-1] == f"and 24 more <{BASE}/credits|see all 29>"
    # The structured alerts: all 34, in the digest's order, each with its link.
    assert len(body["alerts"]) == 34
    assert body["alerts"][0]["link"] == f"{BASE}/quotas?org={orgs[33]}&type=chat"
    assert body["alerts"][-1]["organization_id"] == orgs[0]
    assert [k["count"] for k in body["kinds"]] == [2, 3, 29]
    assert len(_deliveries(database)) == 34


def test_the_dashboard_address_comes_from_the_environment(
    database: str, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, _ = _over_the_limit(database)
    monkeypatch.setenv("DASHBOARD_BASE_URL", "https://usage.example.com/")
    assert main(["alerts", "--webhook", hook.url], now=NOW) == 0
    [request] = hook.requests
    [alert] = request["body"]["alerts"]
    assert alert["link"] == f"https://usage.example.com/quotas?org={org}&type=chat"
    assert (
        f"<https://usage.example.com/quotas?org={org}&amp;type=chat|open>"
        in (request["body"]["text"])
    )
