"""Who is this and what may they do: roles from configuration, the development identity,
OIDC through st.user, the pages each role sees, and every way the configuration is
refused (fail closed: unknown roles, no identity off the embedded database, unverified
emails, emails outside the allowed domains)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.errors import StreamlitSecretNotFoundError

from dashboard import auth, navigation
from tests.dashboard.apptest import make_app, page_file, plain_texts, texts
from tooling import embedded

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


@pytest.fixture(scope="session")
def embedded_url() -> str:
    """A URL of the project's embedded demo server (started if need be)."""
    return embedded.ensure_running().url(embedded.DEFAULT_DATABASE)


@pytest.fixture
def on_embedded(monkeypatch: pytest.MonkeyPatch, embedded_url: str) -> str:
    """DATABASE_URL is the project's embedded demo database."""
    monkeypatch.setenv("DATABASE_URL", embedded_url)
    return embedded_url


@pytest.fixture
def not_embedded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, embedded_url: str) -> None:
    """The same server stops being "the embedded database": the data folder the project
    would own is an empty one, so ``owns_url`` is False for every URL (for real).
    (``embedded_url`` first: nothing may start a server in that empty folder.)"""
    monkeypatch.setenv("DASHBOARD_PGDATA", str(tmp_path / "no-cluster"))


def test_roles_come_from_secrets_and_the_environment_wins() -> None:
    roles = auth.parse_roles(
        {"Ana@Example.com": "finance", "sam@example.com": "support"},
        "sam@example.com=manager, lee@example.com = Admin ,*=manager,",
    )
    assert roles == {
        "ana@example.com": "finance",
        "sam@example.com": "manager",
        "lee@example.com": "admin",
        "*": "manager",
    }


@pytest.mark.parametrize(
    ("secrets_roles", "env_roles", "named"),
    [
        (
            None,
            "ana@example.com=support,ANA@Example.com=admin",
            "ana@example.com already has the role support in DASHBOARD_ROLES under another "
            "spelling; one person has one role",
        ),
        (
            {"ana@example.com": "support", "ＡＮＡ@example.com": "finance"},
            None,
            "already has the role support in [roles] under another spelling",
        ),
        (None, "ana@example.com\u200b=admin", "invisible or control character (U+200B"),
        (None, "ana\u202e@example.com=admin", "invisible or control character (U+202E"),
        (
            None,
            "a@x.com=finance,b@y.com=managers",
            'DASHBOARD_ROLES entry "b@y.com=managers": unknown role "managers"; '
            "roles are admin, finance, support, manager",
        ),
        (None, "broken", 'DASHBOARD_ROLES entry "broken": not email=role'),
        (None, "z@example.com=", 'DASHBOARD_ROLES entry "z@example.com=": unknown role ""'),
        (None, "=finance", 'DASHBOARD_ROLES entry "=finance": no email'),
        (
            {"x@example.com": "read-only"},
            None,
            '[roles] entry "x@example.com" = "read-only": unknown role "read-only"',
        ),
        ({"x@example.com": 3}, None, 'unknown role "3"'),
        ({"*": "viewer"}, None, '[roles] entry "*" = "viewer": unknown role "viewer"'),
        ("admin", None, "[roles] in secrets.toml must be a table"),
    ],
)
def test_an_unknown_role_or_a_malformed_entry_is_refused_and_named(
    secrets_roles: object, env_roles: str | None, named: str
) -> None:
    with pytest.raises(auth.ConfigurationProblem) as refused:
        auth.parse_roles(secrets_roles, env_roles)
    assert named in str(refused.value)


@pytest.mark.usefixtures("on_embedded")
def test_without_configuration_the_local_developer_may_do_everything_on_the_demo_database(
    secrets: dict[str, Any],
) -> None:
    assert auth.current_problem() is None
    user = auth.current_user()
    assert (user.email, user.role, user.source) == ("developer@localhost", "admin", "development")
    assert user.can("adjust_credits") and user.can("change_limits")


@pytest.mark.usefixtures("on_embedded")
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


@pytest.mark.usefixtures("on_embedded")
def test_an_explicit_dashboard_user_without_a_role_has_none_even_on_the_demo_database(
    secrets: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHBOARD_USER", "someone@example.com")
    monkeypatch.setenv("DASHBOARD_ROLES", "other@example.com=admin,*=admin")
    user = auth.current_user()
    assert (user.email, user.role, user.refusal) == ("someone@example.com", None, None)
    assert not user.can("view_overview")
    with pytest.raises(auth.AccessDenied, match="no role"):
        auth.require("adjust_credits")


@pytest.mark.parametrize(
    ("env", "dev", "named"),
    [
        ({"DASHBOARD_ROLE": "managers"}, {}, 'DASHBOARD_ROLE="managers": unknown role'),
        ({"DASHBOARD_ROLE": "viewer"}, {"role": "admin"}, 'DASHBOARD_ROLE="viewer"'),
        ({}, {"role": "read-only"}, '[dev] role = "read-only": unknown role'),
        # The unused source is checked too: a typo anywhere stops the start.
        ({"DASHBOARD_ROLE": "admin"}, {"role": "boss"}, '[dev] role = "boss"'),
        ({"DASHBOARD_ROLES": "a@x.com=finance,b@y.com=managers"}, {}, '"b@y.com=managers"'),
    ],
)
@pytest.mark.usefixtures("on_embedded")
def test_an_unknown_role_in_any_source_refuses_everything_never_admin(
    secrets: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    dev: dict[str, str],
    named: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    secrets["dev"] = dev
    problem = auth.current_problem()
    assert problem is not None and named in problem
    assert "roles are admin, finance, support, manager" in problem
    user = auth.current_user()
    assert user.refusal == problem and user.role is None
    assert not any(user.can(p) for p in auth.PERMISSIONS["admin"])
    with pytest.raises(auth.AccessDenied, match="Nothing was changed"):
        auth.require("view_overview")


@pytest.mark.usefixtures("not_embedded")
def test_off_the_embedded_database_an_identity_must_be_configured(
    secrets: dict[str, Any], monkeypatch: pytest.MonkeyPatch, on_embedded: str
) -> None:
    assert not auth.on_embedded_database(on_embedded)
    problem = auth.current_problem()
    assert problem == auth.NO_IDENTITY
    assert "[auth]" in problem and "secrets.toml" in problem and "DASHBOARD_USER" in problem
    assert auth.current_user().refusal == auth.NO_IDENTITY
    # A [dev] section is not a deliberate choice of one user for a real database.
    secrets["dev"] = {"user": "dev@example.com", "role": "admin"}
    assert auth.current_problem() == auth.NO_IDENTITY

    monkeypatch.setenv("DASHBOARD_USER", "solo@example.com")
    assert auth.current_problem() is None
    assert auth.current_user().role == "admin"  # from [dev] role
    del secrets["dev"]
    assert auth.current_user().role is None  # no admin default off the demo database

    monkeypatch.delenv("DASHBOARD_USER")
    secrets["auth"] = dict(OIDC)
    assert auth.current_problem() is None


def test_no_database_configured_is_not_the_embedded_one(
    secrets: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert auth.startup_problem(env={}, secrets={}, database_url=None) == auth.NO_IDENTITY


@pytest.mark.parametrize(
    ("domains", "named"),
    [
        ("example.com", "allowed_domains must be a list"),
        (["example.com", "*.example.com"], '"*.example.com": not a domain name'),
        ([""], '"": not a domain name'),
        ([3], '"3": not a domain name'),
    ],
)
def test_malformed_allowed_domains_are_refused(domains: object, named: str) -> None:
    problem = auth.startup_problem(
        env={}, secrets={"auth": {**OIDC, "allowed_domains": domains}}, database_url=None
    )
    assert problem is not None and named in problem


def test_the_star_role_applies_only_inside_the_allowed_domains() -> None:
    roles: dict[str, auth.Role] = {"*": "manager", "bob@partner.org": "finance"}
    domains = frozenset({"example.com"})

    def role(email: str) -> str | None:
        return auth._oidc_user(email, "", roles, allowed_domains=domains).role

    assert role("Ana@Example.COM") == "manager"
    assert role("eve@evil.org") is None
    assert role("eve@sub.example.com") is None  # subdomains are listed one by one
    assert role("eve@example.com.evil.org") is None
    assert role("bob@partner.org") == "finance"  # an explicit entry applies anywhere
    assert auth._oidc_user("eve@evil.org", "", roles).role == "manager"  # no domains set


@pytest.mark.parametrize("claim", [False, "false", "False"])
def test_an_unverified_email_is_refused(claim: object) -> None:
    user = auth._oidc_user("ana@example.com", "Ana", {"*": "admin"}, email_verified=claim)
    assert user.refusal is not None and "not verified" in user.refusal
    assert not user.can("view_overview")


@pytest.mark.parametrize("claim", [True, "true", None])
def test_a_verified_or_silent_claim_is_accepted(claim: object) -> None:
    user = auth._oidc_user("ana@example.com", "Ana", {"*": "admin"}, email_verified=claim)
    assert (user.refusal, user.role) == (None, "admin")


@pytest.mark.usefixtures("on_embedded")
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
        (
            "admin",
            [
                "Overview",
                "Usage review",
                "Credits",
                "Quotas",
                "Audit trail",
                "Statements",
                "Reconciliation",
            ],
        ),
        ("manager", ["Overview", "Usage review", "Credits", "Quotas", "Audit trail"]),
        (
            "finance",
            ["Overview", "Usage review", "Credits", "Audit trail", "Statements", "Reconciliation"],
        ),
        ("support", ["Overview", "Quotas", "Audit trail"]),
    ],
)
def test_a_role_sees_only_its_pages(role: auth.Role, pages: list[str]) -> None:
    user = auth.CurrentUser(email="a@example.com", name="A", role=role, source="oidc")
    assert [spec.title for spec in navigation.pages_for(user)] == pages
    nobody = auth.CurrentUser(email="a@example.com", name="A", role=None, source="oidc")
    assert navigation.pages_for(nobody) == []


def test_the_readmes_role_table_lists_each_roles_pages_as_the_app_does() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", readme, flags=re.MULTILINE))
    for role in auth.ROLES:
        user = auth.CurrentUser(email="a@example.com", name="A", role=role, source="oidc")
        pages = ", ".join(spec.title for spec in navigation.pages_for(user))
        assert rows.get(role, "").strip() == pages, f"README's row for {role}"


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
    at.switch_page(page_file("credits")).run()
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


# ------------------------------------------------------------- refusals in the app


def no_data(at: Any) -> bool:
    """Nothing of the dashboard is drawn: no filters, no metrics, no tables, no menu."""
    return not (at.sidebar.selectbox or at.metric or at.dataframe or at.radio)


@pytest.mark.usefixtures("app_db")
def test_an_unverified_email_sees_only_the_sentence() -> None:
    at = make_app(secrets={"auth": OIDC, "roles": {"*": "admin"}})
    at.user = {"is_logged_in": True, "email": "ana@example.com", "email_verified": False}
    at.run()
    assert not at.exception
    (error,) = plain_texts(at, "error")
    assert "has not verified the address ana@example.com" in error
    assert no_data(at)
    assert [b.label for b in at.button] == ["Sign out"]


@pytest.mark.usefixtures("app_db")
def test_allowed_domains_limit_the_star_role_in_the_app() -> None:
    secrets = {
        "auth": {**OIDC, "allowed_domains": ["example.com"]},
        "roles": {"*": "manager", "bob@partner.org": "finance"},
    }
    inside = make_app(secrets=secrets)
    inside.user = {"is_logged_in": True, "email": "ana@example.com", "email_verified": True}
    inside.run()
    assert not inside.exception and inside.sidebar.selectbox
    assert any("ana@example.com" in c and "manager" in c for c in texts(inside, "caption"))

    outside = make_app(secrets=secrets)
    outside.user = {"is_logged_in": True, "email": "eve@elsewhere.org"}
    outside.run()
    assert not outside.exception
    assert any("no role is configured" in e for e in texts(outside, "error"))
    assert no_data(outside)

    listed = make_app(secrets=secrets)
    listed.user = {"is_logged_in": True, "email": "bob@partner.org"}
    listed.run()
    assert any("bob@partner.org" in c and "finance" in c for c in texts(listed, "caption"))


@pytest.mark.usefixtures("app_db")
def test_an_unknown_role_in_the_secrets_stops_the_app_with_the_entry_named() -> None:
    at = make_app(secrets={"dev": {"user": "a@example.com"}, "roles": {"a@example.com": "boss"}})
    at.run()
    assert not at.exception
    (error,) = plain_texts(at, "error")
    assert "unknown role" in error and "boss" in error
    assert no_data(at)


@pytest.mark.usefixtures("app_db", "not_embedded")
def test_off_the_embedded_database_without_an_identity_the_app_shows_only_the_sentence() -> None:
    at = make_app().run()  # a [dev] section, no [auth], no DASHBOARD_USER
    assert not at.exception
    (error,) = plain_texts(at, "error")
    assert "[auth]" in error and "DASHBOARD_USER" in error
    assert no_data(at) and not at.button


@pytest.mark.usefixtures("app_db", "not_embedded")
def test_an_explicit_single_user_without_a_role_sees_no_data(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DASHBOARD_USER", "solo@example.com")
    at = make_app(role=None, email="ignored@example.com").run()
    assert not at.exception
    assert any("no role is configured" in e for e in texts(at, "error"))
    assert no_data(at)


@pytest.mark.usefixtures("on_embedded")
def test_a_secrets_file_that_cannot_be_read_refuses_rather_than_dropping_sign_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Unreadable:
        def to_dict(self) -> dict[str, Any]:
            raise StreamlitSecretNotFoundError(
                "Error parsing secrets file at {path}: {error}",
                path=".streamlit/secrets.toml",
                error="Expected '=' after a key (at line 3, column 5)",
                error_id="failed-parsing-secrets-file",
            )

    monkeypatch.setattr(st, "secrets", Unreadable())
    problem = auth.current_problem()
    assert problem is not None and "secrets cannot be read" in problem and "line 3" in problem
    user = auth.current_user()
    assert user.refusal == problem and not user.can("view_overview")


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "UTC+3", "../etc/passwd"])
def test_a_company_zone_that_is_not_a_zone_stops_start_up_with_a_sentence(zone: str) -> None:
    problem = auth.startup_problem(
        env={"DASHBOARD_TIMEZONE": zone}, secrets={"auth": OIDC}, database_url=None
    )
    assert problem is not None
    assert (
        f"DASHBOARD_TIMEZONE must be an IANA time zone such as UTC or Europe/Berlin, not {zone!r}"
        in problem
    )


@pytest.mark.parametrize("zone", ["", "UTC", "Asia/Kathmandu", "America/New_York"])
def test_a_company_zone_that_is_a_zone_starts(zone: str) -> None:
    assert (
        auth.startup_problem(
            env={"DASHBOARD_TIMEZONE": zone}, secrets={"auth": OIDC}, database_url=None
        )
        is None
    )


@pytest.mark.parametrize("factor", ["0", "ten", "1e3", "-2", "1001"])
def test_a_limit_approval_factor_that_is_not_a_number_stops_start_up(factor: str) -> None:
    problem = auth.startup_problem(
        env={"LIMIT_APPROVAL_FACTOR": factor}, secrets={"auth": OIDC}, database_url=None
    )
    assert problem is not None
    assert "LIMIT_APPROVAL_FACTOR must be a number from 1 to 1000" in problem
    assert repr(factor) in problem


@pytest.mark.parametrize("factor", ["", "1", "2.5", "1000"])
def test_a_limit_approval_factor_that_is_a_number_starts(factor: str) -> None:
    assert (
        auth.startup_problem(
            env={"LIMIT_APPROVAL_FACTOR": factor}, secrets={"auth": OIDC}, database_url=None
        )
        is None
    )
