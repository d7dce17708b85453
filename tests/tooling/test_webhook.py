"""The webhook sender on its own: which URLs it accepts, what it records as the
destination, Slack's escaping, and a webhook that does not answer in time."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from queries.alerts import Alert
from tests.faults import TricklingWebhook
from tooling import webhook


def _alert(name: str) -> Alert:
    return Alert(
        kind="spike",
        organization_id=7,
        organization=name,
        slug="acme",
        type=None,
        local_day=dt.date(2026, 11, 26),
        message=f"{name} used 900 credits in the last 3 h",
        details={"recent_credits": 900, "baseline_credits": None},
    )


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://hooks.slack.com/services/T0/B0/token?x=secret", "hooks.slack.com"),
        ("http://user:password@127.0.0.1:8080/hook", "127.0.0.1:8080"),
        ("HTTPS://[::1]:9000/hook", "[::1]:9000"),
    ],
)
def test_the_destination_is_the_host_never_the_token(url: str, host: str) -> None:
    assert webhook.destination(url) == host


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("file:///etc/passwd", "must start with https://"),
        ("ftp://hooks.example.com/x", "must start with https://"),
        ("data:text/plain,hello", "must start with https://"),
        ("hooks.example.com/x", "no scheme"),
        ("https://", "has no host"),
        ("https://hooks.example.com:port/x", "not a valid URL"),
        ("   ", "is empty"),
    ],
)
def test_only_web_urls_are_accepted(url: str, said: str) -> None:
    with pytest.raises(webhook.WebhookError, match=said):
        webhook.check_url(url)


def test_slack_text_escapes_what_slack_would_turn_into_links_and_mentions() -> None:
    hostile = "A&B <!here> <@U123> <https://x.example|click>"
    body = webhook.payload([_alert(hostile)], base_url="https://usage.example.com")
    assert (
        "• A&amp;B &lt;!here&gt; &lt;@U123&gt; &lt;https://x.example|click&gt; used 900 "
        "credits in the last 3 h <https://usage.example.com/?org=7|open>"
    ) in body["text"].splitlines()
    for raw in ("<!here>", "<@U123>", "<https://x.example", "A&B"):
        assert raw not in body["text"]
    # The structured alerts keep the name as it is: they are data, not markup.
    assert body["alerts"][0]["organization"] == hostile
    assert body["alerts"][0]["type"] is None
    assert body["alerts"][0]["local_day"] == "2026-11-26"
    json.dumps(body, allow_nan=False)


DAY = dt.date(2026, 11, 26)
BASE = "https://usage.example.com/dash"


def _limit(org: int, used: int, limit: int, kind: str = "over_limit") -> Alert:
    hits = dt.datetime(2026, 11, 26, 8, 0, tzinfo=dt.UTC) + dt.timedelta(minutes=used)
    return Alert(
        kind=kind,  # type: ignore[arg-type]
        organization_id=org,
        organization=f"Org {org}",
        slug=f"org-{org}",
        type="chat",
        local_day=DAY,
        message=f"Org {org} {kind} {used} of {limit}",
        details={"used": used, "daily_limit": limit, "hits_limit_at": hits.isoformat()},
    )


def _runway(org: int, balance: int, days: float | None) -> Alert:
    return Alert(
        kind="low_runway",
        organization_id=org,
        organization=f"Org {org}",
        slug=f"org-{org}",
        type=None,
        local_day=DAY,
        message=f"Org {org} runs out in {days} days",
        details={"balance": balance, "runway_days": days},
    )


def _spike(org: int, factor: float | None) -> Alert:
    return Alert(
        kind="spike",
        organization_id=org,
        organization=f"Org {org}",
        slug=f"org-{org}",
        type=None,
        local_day=DAY,
        message=f"Org {org} spiked {factor}x",
        details={"recent_credits": 900, "factor": factor},
    )


def test_the_digest_groups_by_kind_most_urgent_first_with_links_and_a_cap() -> None:
    runway = [_runway(100 + n, balance=50, days=float(n + 1)) for n in range(8)]
    runway.append(_runway(99, balance=0, days=None))  # no credits left: the most urgent
    alerts = [
        *reversed(runway),
        _spike(20, 4.0),
        _spike(21, None),  # no baseline at all: the largest spike
        _limit(30, used=3, limit=2),  # 150 %
        _limit(31, used=5, limit=2),  # 250 %: first
        _limit(40, used=50, limit=60, kind="will_hit_limit"),  # hits later
        _limit(41, used=10, limit=60, kind="will_hit_limit"),  # hits sooner: first
    ]
    body = webhook.payload(alerts, base_url=BASE + "/")
    assert body["text"].splitlines() == [
        "*15 alerts from the usage dashboard* (Over the limit: 2; Will hit a limit today: 2; "
        "Spikes: 2; Low runway: 9)",
        "",
        f"*Over the limit: 2* <{BASE}/quotas?status=over,at%20limit|open the list>",
        f"• Org 31 over_limit 5 of 2 <{BASE}/quotas?org=31&amp;type=chat|open>",
        f"• Org 30 over_limit 3 of 2 <{BASE}/quotas?org=30&amp;type=chat|open>",
        "",
        f"*Will hit a limit today: 2* <{BASE}/quotas|open the list>",
        f"• Org 41 will_hit_limit 10 of 60 <{BASE}/quotas?org=41&amp;type=chat|open>",
        f"• Org 40 will_hit_limit 50 of 60 <{BASE}/quotas?org=40&amp;type=chat|open>",
        "",
        f"*Spikes: 2* <{BASE}/quotas|open the list>",
        f"• Org 21 spiked Nonex <{BASE}/?org=21|open>",
        f"• Org 20 spiked 4.0x <{BASE}/?org=20|open>",
        "",
        f"*Low runway: 9* <{BASE}/credits|open the list>",
        f"• Org 99 runs out in None days <{BASE}/credits?org=99|open>",
        f"• Org 100 runs out in 1.0 days <{BASE}/credits?org=100|open>",
        f"• Org 101 runs out in 2.0 days <{BASE}/credits?org=101|open>",
        f"• Org 102 runs out in 3.0 days <{BASE}/credits?org=102|open>",
        f"• Org 103 runs out in 4.0 days <{BASE}/credits?org=103|open>",
        f"and 4 more <{BASE}/credits|see all 9>",
    ]
    # Machine-readable too: every alert (the capped ones included), in the same order,
    # with its link, and each kind with its count and list.
    assert [a["organization_id"] for a in body["alerts"]] == [
        31,
        30,
        41,
        40,
        21,
        20,
        99,
        *range(100, 108),
    ]
    assert body["alerts"][0]["link"] == f"{BASE}/quotas?org=31&type=chat"
    assert body["dashboard"] == BASE
    assert body["kinds"] == [
        {"kind": "over_limit", "title": "Over the limit", "count": 2,
         "link": f"{BASE}/quotas?status=over,at%20limit"},
        {"kind": "will_hit_limit", "title": "Will hit a limit today", "count": 2,
         "link": f"{BASE}/quotas"},
        {"kind": "spike", "title": "Spikes", "count": 2, "link": f"{BASE}/quotas"},
        {"kind": "low_runway", "title": "Low runway", "count": 9, "link": f"{BASE}/credits"},
    ]  # fmt: skip


def test_without_a_dashboard_address_the_digest_says_once_that_it_has_no_links() -> None:
    body = webhook.payload([_runway(n, 10, float(n)) for n in range(1, 8)] + [_spike(9, 3.0)])
    lines = body["text"].splitlines()
    assert lines.count(webhook.NO_LINKS) == 1 and lines[1] == webhook.NO_LINKS
    assert "DASHBOARD_BASE_URL" in webhook.NO_LINKS
    assert not any("<http" in line for line in lines)
    assert "and 2 more" in lines
    assert body["dashboard"] is None
    assert {a["link"] for a in body["alerts"]} == {None}
    assert {k["link"] for k in body["kinds"]} == {None}


def test_one_alert_is_counted_in_the_singular() -> None:
    assert webhook.digest([_spike(1, 3.0)]).startswith("*1 alert from the usage dashboard*")


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A server that accepts the connection and never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    finally:
        for conn in accepted:
            conn.close()
        listener.close()


def test_a_webhook_that_does_not_answer_in_time_is_a_failure(silent_server: str) -> None:
    with pytest.raises(webhook.WebhookError, match=r"did not answer within 0\.3 s"):
        webhook.post(silent_server, [_alert("Acme")], timeout=0.3)


def test_a_webhook_nobody_listens_on_is_a_failure() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(webhook.WebhookError, match=r"Could not reach the webhook at 127\.0\.0\.1"):
        webhook.post(f"http://127.0.0.1:{port}/hook", [_alert("Acme")], timeout=2)


def test_a_webhook_that_answers_200_and_trickles_its_body_is_a_delivery_within_the_deadline() -> (
    None
):
    # The webhook: 200 at once, then a byte every 7 s. A timeout per socket read
    # never fires; one deadline for the whole request does.
    with TricklingWebhook(every=7) as hook:
        began = time.monotonic()
        posted = webhook.post(hook.url, [_alert("Acme")], timeout=1.5)
        took = time.monotonic() - began
    assert posted == webhook.Posted(status=200, complete=False)
    assert 1.4 <= took < 3, took
    assert len(hook.requests) == 1


def test_a_webhook_that_trickles_its_status_line_did_not_answer_in_time() -> None:
    # No status arrived within the deadline: whether it took the alerts is unknown.
    with TricklingWebhook(every=0.4, status_first=False) as hook:
        began = time.monotonic()
        with pytest.raises(webhook.WebhookError, match=r"did not answer within 1\.5 s; it may"):
            webhook.post(hook.url, [_alert("Acme")], timeout=1.5)
        took = time.monotonic() - began
    assert 1.4 <= took < 3, took


def test_a_prompt_webhook_is_a_complete_delivery() -> None:
    with TricklingWebhook(every=0.001, length=2) as hook:
        assert webhook.post(hook.url, [_alert("Acme")], timeout=5) == webhook.Posted(200, True)
