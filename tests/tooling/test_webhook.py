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
    body = webhook.payload([_alert("A&B <!here> <@U123> <https://x.example|click>")])
    assert body["text"] == (
        "A&amp;B &lt;!here&gt; &lt;@U123&gt; &lt;https://x.example|click&gt; used 900 credits "
        "in the last 3 h"
    )
    # The structured alerts keep the name as it is: they are data, not markup.
    assert body["alerts"][0]["organization"] == "A&B <!here> <@U123> <https://x.example|click>"
    assert body["alerts"][0]["type"] is None
    assert body["alerts"][0]["local_day"] == "2026-11-26"
    json.dumps(body, allow_nan=False)


def test_one_line_per_alert() -> None:
    body = webhook.payload([_alert("One"), _alert("Two")])
    assert body["text"].splitlines() == [
        "One used 900 credits in the last 3 h",
        "Two used 900 credits in the last 3 h",
    ]


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
