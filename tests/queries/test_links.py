"""Links into the dashboard from outside it (the webhook digest): the address setting is
checked, and the pages and URL keys are the ones the app serves and reads."""

from __future__ import annotations

import ast
import datetime as dt

import pytest

from dashboard import navigation
from dashboard.state import URL_KEYS
from queries import links
from queries.alerts import Alert
from queries.db import ConfigurationError


@pytest.mark.parametrize(
    ("raw", "base"),
    [
        ("https://usage.example.com", "https://usage.example.com"),
        ("  https://usage.example.com/  ", "https://usage.example.com"),
        ("http://127.0.0.1:8501/dash/", "http://127.0.0.1:8501/dash"),
    ],
)
def test_a_web_address_is_the_base_of_the_links(raw: str, base: str) -> None:
    assert links.base_url_from_env({links.BASE_URL_ENV: raw}) == base


def test_unset_or_blank_means_no_links() -> None:
    assert links.base_url_from_env({}) is None
    assert links.base_url_from_env({links.BASE_URL_ENV: "  "}) is None


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        ("usage.example.com", "must start with https://"),
        ("javascript:alert(1)", "must start with https://"),
        ("file:///etc/passwd", "must start with https://"),
        ("https://", "has no host"),
        ("https://usage.example.com:port", "not a valid URL"),
        ("https://me:secret@usage.example.com", "user name or password"),
        ("https://usage.example.com/?org=1", "query"),
        ("https://usage.example.com/#x", "fragment"),
        ("https://usage.example.com/a|b", "characters a link cannot hold"),
        ("https://usage.example.com/<!channel>", "characters a link cannot hold"),
        ("https://usage.example.com/a b", "characters a link cannot hold"),
    ],
)
def test_anything_else_is_refused_with_a_sentence(raw: str, said: str) -> None:
    with pytest.raises(ConfigurationError, match=said) as caught:
        links.base_url_from_env({links.BASE_URL_ENV: raw})
    assert str(caught.value).startswith("DASHBOARD_BASE_URL must be the dashboard's address")


def test_the_linked_pages_and_keys_are_the_apps() -> None:
    paths = {spec.url_path for spec in navigation.PAGES}
    assert {links.QUOTAS, links.CREDITS} <= paths
    # Overview is linked as the root: it must lead every menu (the first page is
    # served at the root, and has no path of its own there).
    assert navigation.PAGES[0].url_path == "overview"
    assert navigation.PAGES[0].permission == "view_overview"
    assert links.ORG in URL_KEYS
    # The Quotas page is a script (importing it draws it): read its declarations.
    tree = ast.parse((navigation.PAGE_DIR / "quotas.py").read_text())
    quota_keys = {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr.endswith("_param")
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }
    assert {links.TYPE, links.STATUS} <= quota_keys
    [statuses] = [
        ast.literal_eval(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and node.target.id == "STATUSES"
        and node.value is not None
    ]
    for status in links.KIND_PAGES["over_limit"][1][links.STATUS].split(","):
        assert status in statuses


def test_every_alert_links_to_its_organization() -> None:
    def alert(kind: str, type_: str | None) -> Alert:
        return Alert(kind, 12, "Acme", "acme", type_, dt.date(2026, 1, 1), "m", {})  # type: ignore[arg-type]

    base = "https://u.example.com"
    assert links.alert_link(base, alert("over_limit", "chat")) == f"{base}/quotas?org=12&type=chat"
    assert links.alert_link(base, alert("will_hit_limit", "image")).endswith("org=12&type=image")
    assert links.alert_link(base, alert("spike", None)) == f"{base}/?org=12"
    assert links.alert_link(base, alert("low_runway", None)) == f"{base}/credits?org=12"
