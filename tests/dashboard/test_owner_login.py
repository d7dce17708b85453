"""An app that logs in as a superuser or as the tables' owner, off the embedded database,
says so: in the log and, on every page, to admins (not to other roles)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from sqlalchemy.engine import make_url
from streamlit.testing.v1 import AppTest

from dashboard import auth
from tests.conftest import PgServer
from tests.dashboard.apptest import make_app, open_page, plain_texts
from tests.queries.roles import APP_LOGIN, login_url

BANNER = "Give DATABASE_URL a login that is only a member of dashboard_app"


@pytest.fixture
def off_embedded(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """The app as a deployment sees it: not the embedded demo database, one explicit
    development identity with ``role``."""
    monkeypatch.setattr(auth, "on_embedded_database", lambda _url: False)
    monkeypatch.setenv("DASHBOARD_USER", "tester@example.com")

    def as_role(role: str) -> None:
        monkeypatch.setenv("DASHBOARD_ROLE", role)

    return as_role


def _banners(at: AppTest) -> list[str]:
    return [t for t in plain_texts(at, "warning") if BANNER in t]


@pytest.mark.parametrize("page", ["overview", "audit"])
def test_an_admin_is_warned_of_a_superuser_login_on_every_page(
    today_url: str,
    use_database: Callable[[str], None],
    off_embedded: Callable[[str], None],
    caplog: pytest.LogCaptureFixture,
    page: str,
) -> None:
    use_database(today_url)  # the tests' server: its superuser
    off_embedded("admin")
    with caplog.at_level(logging.WARNING, logger="__main__"):
        at = open_page(make_app(role=None), page)
    assert not at.exception
    [banner] = _banners(at)
    login = make_url(today_url).username
    assert f"logs in to the database as {login}, a superuser" in banner
    assert any(BANNER in r.getMessage() for r in caplog.records)


def test_a_support_user_is_not_shown_the_warning(
    today_url: str, use_database: Callable[[str], None], off_embedded: Callable[[str], None]
) -> None:
    use_database(today_url)
    off_embedded("support")
    at = open_page(make_app(role=None), "quotas")
    assert not at.exception
    assert _banners(at) == []


def test_a_dashboard_app_login_gives_no_warning(
    test_server: PgServer,
    today_url: str,
    use_database: Callable[[str], None],
    off_embedded: Callable[[str], None],
) -> None:
    use_database(login_url(test_server, str(make_url(today_url).database), APP_LOGIN))
    off_embedded("admin")
    at = make_app(role=None).run()
    assert not at.exception
    assert _banners(at) == []
