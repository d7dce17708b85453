"""Who is this and what may they do: roles from configuration, the development identity,
OIDC through st.user, and the pages each role sees."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dashboard import auth, navigation
from tests.dashboard.apptest import make_app, texts

OIDC = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "not-a-secret",
    "client_id": "dashboard",
    "client_secret": "not-a-secret",
    "server_metadata_url": "https://login.example.com/.well-known/openid-configuration",
}


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The secrets current_user sees outside a running app (none of the developer's)."""
    values: dict[str, Any] = {}
    monkeypatch.setattr(auth, "_secrets", lambda: values)
    return values


def test_roles_come_from_secrets_and_the_environment_wins() -> None:
    roles = auth.parse_roles(
        {"Ana@Example.com": "finance", "sam@example.com": "support", "x@example.com": "boss"},
        "sam@example.com=manager, lee@example.com = admin ,broken,*=manager,z@example.com=",
    )
    assert roles == {
        "ana@example.com": "finance",
        "sam@example.com": "manager",
        "lee@example.com": "admin",
        "*": "manager",
    }


def test_without_configuration_the_local_developer_may_do_everything(
    secrets: dict[str, Any],
) -> None:
    user = auth.current_user()
    assert (user.email, user.role, user.source) == ("developer@localhost", "admin", "development")
    assert user.can("adjust_credits") and user.can("change_limits")


def test_the_development_identity_and_role_are_configurable(
    secrets: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets["dev"] = {"user": "maria@finance.example.com"}
    secrets["roles"] = {"maria@finance.example.com": "finance"}
    assert auth.current_user().role == "finance"
    monkeypatch.setenv("DASHBOARD_USER", "boss@example.com")
    monkeypatch.setenv("DASHBOARD_ROLES", "boss@example.com=manager")
    user = auth.current_user()
    assert (user.email, user.role) == ("boss@example.com", "manager")
    monkeypatch.setenv("DASHBOARD_ROLE", "support")
    assert auth.current_user().role == "support"


@pytest.mark.parametrize(
    ("role", "adjust", "limits"),
    [
        ("admin", True, True),
        ("finance", True, False),
        ("support", False, True),
        ("manager", False, False),
    ],
)
def test_each_role_may_do_its_own_writes_only(
    secrets: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    role: str,
    adjust: bool,
    limits: bool,
) -> None:
    monkeypatch.setenv("DASHBOARD_ROLE", role)
    for permission, allowed in (("adjust_credits", adjust), ("change_limits", limits)):
        if allowed:
            assert auth.require(permission).role == role  # type: ignore[arg-type]
        else:
            with pytest.raises(auth.AccessDenied, match="Nothing was changed"):
                auth.require(permission)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("role", "pages"),
    [
        ("admin", ["Overview", "Usage review", "Credits", "Quotas", "Audit trail"]),
        ("manager", ["Overview", "Usage review", "Credits", "Quotas", "Audit trail"]),
        ("finance", ["Overview", "Usage review", "Credits", "Audit trail"]),
        ("support", ["Overview", "Quotas", "Audit trail"]),
    ],
)
def test_a_role_sees_only_its_pages(role: auth.Role, pages: list[str]) -> None:
    user = auth.CurrentUser(email="a@example.com", name="A", role=role, source="oidc")
    assert [spec.title for spec in navigation.pages_for(user)] == pages
    nobody = auth.CurrentUser(email="a@example.com", name="A", role=None, source="oidc")
    assert navigation.pages_for(nobody) == []


@pytest.fixture
def app_db(today_url: str, use_database: Callable[[str], None]) -> None:
    use_database(today_url)


@pytest.mark.usefixtures("app_db")
def test_with_oidc_configured_a_visitor_is_asked_to_sign_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    at = make_app(secrets={"auth": OIDC})
    at.user = {"is_logged_in": False}
    monkeypatch.setattr(auth, "oidc_available", lambda: True)  # as with streamlit[auth]
    at.run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.sidebar.selectbox  # no filters, no data


@pytest.mark.usefixtures("app_db")
def test_sign_in_without_authlib_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    at = make_app(secrets={"auth": OIDC})
    at.user = {"is_logged_in": False}
    monkeypatch.setattr(auth, "oidc_available", lambda: False)
    at.run()
    assert not at.exception
    assert any("streamlit[auth]" in e for e in texts(at, "error"))


@pytest.mark.usefixtures("app_db")
def test_a_signed_in_user_acts_as_their_email_with_their_configured_role() -> None:
    at = make_app(secrets={"auth": OIDC, "roles": {"ana@example.com": "finance"}})
    at.user = {"is_logged_in": True, "email": "ana@example.com", "name": "Ana"}
    at.run()
    assert not at.exception
    assert any("ana@example.com" in c and "finance" in c for c in texts(at, "caption"))
    # A code span: Markdown would turn a bare address into a mailto link.
    assert any("`ana@example.com`" in c for c in texts(at, "caption"))
    assert "Sign out" in [b.label for b in at.button]
    assert not texts(at, "warning")  # not the development identity
    at.switch_page("app_pages/credits.py").run()
    assert any(b.label == "Review adjustment" for b in at.button)


@pytest.mark.usefixtures("app_db")
def test_a_signed_in_user_without_a_role_is_told_so() -> None:
    at = make_app(secrets={"auth": OIDC, "roles": {"ana@example.com": "finance"}})
    at.user = {"is_logged_in": True, "email": "eve@example.com"}
    at.run()
    assert not at.exception
    assert any("no role is configured" in e for e in texts(at, "error"))
    assert not at.sidebar.selectbox


@pytest.mark.usefixtures("app_db")
def test_the_development_identity_is_shown_in_the_sidebar() -> None:
    at = make_app(role="manager", email="boss@example.com").run()
    assert any("boss@example.com" in c and "manager" in c for c in texts(at, "caption"))
    assert any("Development identity" in w for w in texts(at, "warning"))
