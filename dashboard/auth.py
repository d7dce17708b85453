"""Who is using the dashboard and what they may do: :func:`current_user` is the one answer.

It fails closed: a configuration that cannot be read exactly is refused with a
sentence, never guessed at, and nobody becomes an admin by default outside a laptop.

Identity:

- With an ``[auth]`` section in ``.streamlit/secrets.toml``, the identity is the OIDC
  user Streamlit signed in (``st.login`` / ``st.user``); its email is the actor recorded
  with every change. An identity whose ``email_verified`` claim is false is refused.
- Without it, a **development identity**: ``DASHBOARD_USER`` (environment) or
  ``[dev] user`` (secrets), default ``developer@localhost``. It is allowed only on the
  embedded demo database (``queries.embedded_server.owns_url``) or when ``DASHBOARD_USER`` is set
  explicitly (a deliberate single-user setup); anywhere else :func:`startup_problem`
  refuses to start. The sidebar says when it is in use.

Roles come from configuration, email -> role: the ``[roles]`` table of the secrets
and ``DASHBOARD_ROLES="a@x.com=finance,b@y.com=support"`` (the environment wins for an
email in both). ``"*"`` is the role of any other signed-in email, and with
``[auth] allowed_domains`` only of emails in those domains. The development identity
takes ``DASHBOARD_ROLE`` / ``[dev] role`` if set, else its entry in the roles; on the
embedded database without ``DASHBOARD_USER`` it is ``admin``, so ``uv run dashboard`` on
a laptop can do every task. An explicit ``DASHBOARD_USER`` without a role has none.
A role that is not one of :data:`ROLES`, in any of these places, stops the start-up
with the offending entry named.

A role's pages are the only ones in its navigation, and every write asks
:func:`require` again right before it calls ``queries`` (a hidden page is not access
control).
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Literal, get_args

import streamlit as st
from streamlit.errors import StreamlitSecretNotFoundError

from queries.errors import InvalidInput
from queries.identity import canonical_identity

Role = Literal["admin", "finance", "support", "manager"]
ROLES: Final[tuple[Role, ...]] = get_args(Role)

Permission = Literal[
    "view_overview",
    "view_usage",
    "view_credits",
    "view_quotas",
    "view_audit",
    "view_statements",
    "view_reconciliation",
    "adjust_credits",
    "change_limits",
    "change_timezone",
    "change_allowances",
]

_VIEW_ALL: frozenset[Permission] = frozenset(
    {"view_overview", "view_usage", "view_credits", "view_quotas", "view_audit"}
)
PERMISSIONS: Final[Mapping[Role, frozenset[Permission]]] = {
    # Only admins move an organization to another time zone: it recounts its local days.
    # Only admins change a plan's allowance: it moves every organization on the plan.
    # Reconciliation (do the books close?) is finance's and the admins' page.
    "admin": _VIEW_ALL
    | {
        "view_statements",
        "view_reconciliation",
        "adjust_credits",
        "change_limits",
        "change_timezone",
        "change_allowances",
    },
    # Finance reviews usage and moves credits; customer success watches quotas and
    # changes limits; managers read everything and change nothing. Statements are what
    # finance sends to customers: finance and admins only.
    "finance": frozenset(
        {
            "view_overview",
            "view_usage",
            "view_credits",
            "view_audit",
            "view_statements",
            "view_reconciliation",
            "adjust_credits",
        }
    ),
    "support": frozenset({"view_overview", "view_quotas", "view_audit", "change_limits"}),
    "manager": _VIEW_ALL,
}

DEV_DEFAULT_USER: Final = "developer@localhost"
DEV_DEFAULT_ROLE: Final[Role] = "admin"
_ROLE_LIST: Final = ", ".join(ROLES)
# A domain in [auth] allowed_domains: DNS labels, lower case (checked after lowering).
_DOMAIN: Final = re.compile(
    r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*"
)

NO_IDENTITY: Final = (
    "The dashboard is not on the embedded demo database and has no sign-in configured, "
    "so it will not start: everyone who can reach it would act as one shared identity. "
    "Either configure OIDC sign-in in an [auth] section of .streamlit/secrets.toml "
    "(see .streamlit/secrets.toml.example), or, for a deliberate single-user setup, set "
    "DASHBOARD_USER to that person's email address and give it a role with DASHBOARD_ROLE "
    "or DASHBOARD_ROLES."
)


class AccessDenied(PermissionError):
    """The current identity may not do this; ``str(error)`` is the sentence to show."""


class ConfigurationProblem(ValueError):
    """Identity or role configuration that cannot be used; ``str(error)`` names the entry."""


@dataclass(frozen=True, slots=True)
class CurrentUser:
    """The person using the dashboard, their role, and where the identity came from.

    ``refusal`` is the sentence to show instead of any data when this identity may not use
    the dashboard at all (configuration refused, email not verified); it has no rights.
    """

    email: str
    name: str
    role: Role | None
    source: Literal["oidc", "development"]
    signed_in: bool = True
    refusal: str | None = None

    @property
    def is_development(self) -> bool:
        return self.source == "development"

    def can(self, permission: Permission) -> bool:
        return (
            self.signed_in
            and self.refusal is None
            and self.role is not None
            and permission in PERMISSIONS[self.role]
        )


def _secrets() -> dict[str, Any]:
    """The secrets as a plain dict; empty when there is no secrets.toml. A file that is
    there but cannot be read raises :class:`ConfigurationProblem`: an unreadable [auth]
    must not quietly become "no sign-in configured"."""
    try:
        return st.secrets.to_dict()
    except (StreamlitSecretNotFoundError, FileNotFoundError) as exc:
        if getattr(exc, "error_id", None) in (
            "failed-parsing-secrets-file",
            "invalid-secrets-path",
        ):
            raise ConfigurationProblem(f"The secrets cannot be read: {exc}") from exc
        return {}


def _text(value: object) -> str:
    """A configured value as it would be read, for naming it in a sentence."""
    return value if isinstance(value, str) else repr(value)


def _role(value: object, *, entry: str, problems: list[str]) -> Role | None:
    """The role ``value`` names (any case, surrounding blanks ignored), or None with a
    problem naming ``entry`` when it is not one of :data:`ROLES`."""
    if isinstance(value, str) and value.strip().lower() in ROLES:
        return value.strip().lower()  # type: ignore[return-value]
    problems.append(
        f'{entry}: unknown role "{_text(value)}"; roles are {_ROLE_LIST}. '
        "Fix the entry and start the dashboard again."
    )
    return None


def _person(email: str, *, entry: str, problems: list[str]) -> str | None:
    """The canonical form of a role map's email (``*`` as is), or None with a problem."""
    if email.strip() == "*":
        return "*"
    try:
        return canonical_identity(email, "email")
    except InvalidInput as exc:
        problems.append(f"{entry}: {exc}")
        return None


def _add_role(
    roles: dict[str, Role],
    sources: dict[str, str],
    person: str,
    role: Role,
    *,
    entry: str,
    problems: list[str],
) -> None:
    """Record ``person``'s role; two entries of one source that are one person (another
    spelling) with different roles are a configuration error, not a guess."""
    source = entry.split(" entry ", 1)[0]
    if person in roles and sources[person] == source and roles[person] != role:
        problems.append(
            f"{entry}: {person} already has the role {roles[person]} in {source} under "
            "another spelling; one person has one role. Keep one entry."
        )
        return
    roles[person] = role
    sources[person] = source


def _read_roles(
    secrets_roles: object, env_roles: str | None, problems: list[str]
) -> dict[str, Role]:
    """canonical email (or ``*``) -> role; the environment wins over the secrets."""
    roles: dict[str, Role] = {}
    sources: dict[str, str] = {}
    if secrets_roles is not None and not isinstance(secrets_roles, Mapping):
        problems.append(
            f'[roles] in secrets.toml must be a table of "email" = "role", not {_text(secrets_roles)}.'
        )
        secrets_roles = None
    for email, value in (secrets_roles or {}).items():
        entry = f'[roles] entry "{email}" = "{_text(value)}"'
        if not str(email).strip():
            problems.append(f"{entry}: the email is empty.")
            continue
        person = _person(str(email), entry=entry, problems=problems)
        role = _role(value, entry=entry, problems=problems)
        if role is not None and person is not None:
            _add_role(roles, sources, person, role, entry=entry, problems=problems)
    for raw in (env_roles or "").split(","):
        if not raw.strip():
            continue  # "a=b," or a blank variable: nothing written, nothing to refuse
        entry = f'DASHBOARD_ROLES entry "{raw.strip()}"'
        email, sep, value = raw.partition("=")
        if not sep:
            problems.append(
                f"{entry}: not email=role; write DASHBOARD_ROLES as "
                '"a@x.com=finance,b@y.com=support".'
            )
            continue
        if not email.strip():
            problems.append(f'{entry}: no email before "=".')
            continue
        person = _person(email, entry=entry, problems=problems)
        role = _role(value, entry=entry, problems=problems)
        if role is not None and person is not None:
            _add_role(roles, sources, person, role, entry=entry, problems=problems)
    return roles


def parse_roles(secrets_roles: object, env_roles: str | None) -> dict[str, Role]:
    """email (canonical: ``queries.identity``) or ``*`` -> role, from the secrets table
    then the environment (which wins for a person in both).

    ``env_roles`` is ``"a@x.com=finance,b@y.com=support"``. An unknown role or an entry
    that is not ``email=role`` raises :class:`ConfigurationProblem` naming that entry.
    """
    problems: list[str] = []
    roles = _read_roles(secrets_roles, env_roles, problems)
    if problems:
        raise ConfigurationProblem(" ".join(problems))
    return roles


def _section(secrets: Mapping[str, Any], name: str, problems: list[str]) -> Mapping[str, Any]:
    value = secrets.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(f"[{name}] in secrets.toml must be a table, not {_text(value)}.")
        return {}
    return value


def _allowed_domains(auth: Mapping[str, Any], problems: list[str]) -> frozenset[str] | None:
    """``[auth] allowed_domains`` in lower case, or None when it is not set."""
    value = auth.get("allowed_domains")
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, list | tuple):
        problems.append(
            f'[auth] allowed_domains must be a list such as ["example.com"], not {_text(value)!r}.'
        )
        return frozenset()
    domains: set[str] = set()
    for item in value:
        domain = item.strip().lower().removeprefix("@") if isinstance(item, str) else ""
        if not _DOMAIN.fullmatch(domain):
            problems.append(
                f'[auth] allowed_domains entry "{_text(item)}": not a domain name such as '
                '"example.com" (subdomains are listed one by one).'
            )
            continue
        domains.add(domain)
    return frozenset(domains)


def _explicit_dev_role(
    env: Mapping[str, str], dev: Mapping[str, Any], problems: list[str]
) -> Role | None:
    """The role ``DASHBOARD_ROLE`` (else ``[dev] role``) names. Both are checked, so a
    typo in the one that is not used is refused too."""
    from_env = env.get("DASHBOARD_ROLE", "").strip()
    env_role = (
        _role(from_env, entry=f'DASHBOARD_ROLE="{from_env}"', problems=problems)
        if from_env
        else None
    )
    value = dev.get("role")
    dev_role = (
        _role(value, entry=f'[dev] role = "{_text(value)}"', problems=problems)
        if value is not None
        else None
    )
    return env_role if from_env else dev_role


def database_url_from(env: Mapping[str, str]) -> str | None:
    """The runtime database URL ``env`` configures, or None (none, or not a URL)."""
    from queries.db import ConfigurationError, configured_urls

    try:
        return configured_urls(env).runtime
    except ConfigurationError:
        return None


def on_embedded_database(database_url: str | None) -> bool:
    """Whether ``database_url`` is this project's embedded demo database."""
    if not database_url:
        return False
    from queries.embedded_server import owns_url

    return owns_url(database_url)


@dataclass(frozen=True, slots=True)
class _Config:
    problems: list[str]
    roles: dict[str, Role]
    oidc: bool
    allowed_domains: frozenset[str] | None
    dev: Mapping[str, Any]
    dev_role: Role | None


def _read_config(
    env: Mapping[str, str], secrets: Mapping[str, Any], database_url: str | None
) -> _Config:
    problems: list[str] = []
    roles = _read_roles(secrets.get("roles"), env.get("DASHBOARD_ROLES"), problems)
    dev = _section(secrets, "dev", problems)
    dev_role = _explicit_dev_role(env, dev, problems)
    oidc = "auth" in secrets
    auth = _section(secrets, "auth", problems)
    domains = _allowed_domains(auth, problems) if oidc else None
    if (
        not oidc
        and not env.get("DASHBOARD_USER", "").strip()
        and not on_embedded_database(database_url)
    ):
        problems.append(NO_IDENTITY)
    return _Config(problems, roles, oidc, domains, dev, dev_role)


def startup_problem(
    *, env: Mapping[str, str], secrets: Mapping[str, Any], database_url: str | None
) -> str | None:
    """Why the dashboard must not start with this configuration, or None if it may.

    Checks every role source (``DASHBOARD_ROLE``, ``DASHBOARD_ROLES``, ``[dev] role``,
    ``[roles]``), ``[auth] allowed_domains``, and that an identity is configured: OIDC
    sign-in, an explicit ``DASHBOARD_USER``, or the embedded demo database
    (``database_url`` is the runtime URL), and that ``DASHBOARD_TIMEZONE`` names a zone and ``LIMIT_APPROVAL_FACTOR`` is a number.
    ``dashboard serve`` and the app both ask this.
    """
    from queries.db import ConfigurationError, company_timezone, limit_approval_factor

    problems = _read_config(env, secrets, database_url).problems
    for check in (company_timezone, limit_approval_factor):
        try:
            check(env)
        except ConfigurationError as exc:
            problems.append(f"{exc}.")
    return " ".join(problems) if problems else None


def current_problem() -> str | None:
    """:func:`startup_problem` for this running app (its environment and secrets)."""
    try:
        secrets = _secrets()
    except ConfigurationProblem as exc:
        return str(exc)
    return startup_problem(
        env=os.environ, secrets=secrets, database_url=database_url_from(os.environ)
    )


def _claim_false(value: object) -> bool:
    return value is False or (isinstance(value, str) and value.strip().lower() == "false")


def _oidc_user(
    email: str,
    name: str,
    roles: Mapping[str, Role],
    *,
    allowed_domains: frozenset[str] | None = None,
    email_verified: object = None,
) -> CurrentUser:
    """The signed-in identity: its own entry's role, else ``"*"`` (inside the allowed
    domains, when they are set); refused when the provider says the email is unverified."""
    user = CurrentUser(email=email, name=name or email, role=None, source="oidc")
    if not email:
        return replace(
            user,
            refusal="Your identity provider did not give an email address, so the dashboard "
            "cannot tell who you are. Sign out and sign in with an account that has one.",
        )
    if _claim_false(email_verified):
        return replace(
            user,
            refusal=f"Your identity provider has not verified the address {email}, so the "
            "dashboard cannot trust it. Verify it with the provider, then sign out and in again.",
        )
    try:
        key = canonical_identity(email, "email address")
    except InvalidInput as exc:
        return replace(
            user,
            refusal=f"Your identity provider gave an email address the dashboard cannot use: {exc}",
        )
    user = replace(user, email=key)
    if key in roles:
        return replace(user, role=roles[key])
    domain = key.rpartition("@")[2]
    if allowed_domains is not None and domain not in allowed_domains:
        return user
    return replace(user, role=roles.get("*"))


def _development_user(
    env: Mapping[str, str], config: _Config, database_url: str | None
) -> CurrentUser:
    explicit = env.get("DASHBOARD_USER", "").strip()
    typed = explicit or str(config.dev.get("user") or "").strip() or DEV_DEFAULT_USER
    try:
        email = canonical_identity(typed, "development identity")
    except InvalidInput as exc:
        return CurrentUser(
            email="", name="", role=None, source="development", refusal=f"DASHBOARD_USER: {exc}"
        )
    role = config.dev_role or config.roles.get(email)
    if role is None and not explicit and on_embedded_database(database_url):
        # `uv run dashboard` on a laptop: the demo database, nobody named, every task.
        role = DEV_DEFAULT_ROLE
    name = str(config.dev.get("name") or email.split("@")[0])
    return CurrentUser(email=email, name=name, role=role, source="development")


def current_user() -> CurrentUser:
    """Who is this and what may they do (see the module docstring for the rules).

    With ``[auth]`` configured and nobody signed in yet, the result has
    ``signed_in=False`` and no role. A configuration :func:`startup_problem` refuses gives
    an identity with no rights whose ``refusal`` is that sentence.
    """
    env = os.environ
    try:
        secrets = _secrets()
    except ConfigurationProblem as exc:
        return CurrentUser(email="", name="", role=None, source="development", refusal=str(exc))
    database_url = database_url_from(env)
    config = _read_config(env, secrets, database_url)
    source: Literal["oidc", "development"] = "oidc" if config.oidc else "development"
    if config.problems:
        return CurrentUser(
            email="", name="", role=None, source=source, refusal=" ".join(config.problems)
        )
    if config.oidc:
        if not st.user.is_logged_in:
            return CurrentUser(email="", name="", role=None, source="oidc", signed_in=False)
        return _oidc_user(
            str(st.user.get("email") or "").strip(),
            str(st.user.get("name") or "").strip(),
            config.roles,
            allowed_domains=config.allowed_domains,
            email_verified=st.user.get("email_verified"),
        )
    return _development_user(env, config, database_url)


def oidc_available() -> bool:
    """Whether ``st.login`` can work here (it needs the Authlib package)."""
    return importlib.util.find_spec("authlib") is not None


def login_provider() -> str | None:
    """The provider to pass to ``st.login``: the one named subsection of ``[auth]``
    (``[auth.google]`` -> ``"google"``), or None for a single unnamed provider."""
    try:
        auth = _secrets().get("auth")
    except ConfigurationProblem:
        return None
    if not isinstance(auth, Mapping):
        return None
    named = [key for key, value in auth.items() if isinstance(value, Mapping)]
    return named[0] if named else None


_ACTIONS: Final[Mapping[Permission, str]] = {
    "adjust_credits": "adjust credits",
    "change_limits": "change daily limits",
    "change_timezone": "change an organization's time zone",
    "change_allowances": "change a plan's allowance",
    "view_overview": "see the overview",
    "view_usage": "see the usage review",
    "view_credits": "see credits",
    "view_quotas": "see quotas",
    "view_audit": "see the audit trail",
    "view_statements": "see statements",
}


def require(permission: Permission) -> CurrentUser:
    """The current user if they may do ``permission``; raises :class:`AccessDenied`.

    Called by every write right before it reaches ``queries``.
    """
    user = current_user()
    if user.refusal is not None:
        raise AccessDenied(f"{user.refusal} Nothing was changed.")
    if not user.signed_in:
        raise AccessDenied("You are not signed in. Sign in and try again; nothing was changed.")
    if not user.can(permission):
        role = user.role or "no role"
        raise AccessDenied(
            f"{user.email} ({role}) may not {_ACTIONS[permission]}. Nothing was changed; "
            "ask an admin for the role if you need it."
        )
    return user


def cli_actor(
    actor: object, *, env: Mapping[str, str], secrets: Mapping[str, Any], permission: Permission
) -> str:
    """The canonical form of a command line's ``--actor``, when the role map names that
    person (its own entry, not ``*``) with a role that may do ``permission``; raises
    :class:`AccessDenied` with a sentence otherwise. It proves the name is in the role
    map, not that the person at the keyboard is that person."""
    try:
        person = canonical_identity(actor, "actor")
    except InvalidInput as exc:
        raise AccessDenied(f"--actor: {exc} Nothing was changed.") from None
    problems: list[str] = []
    roles = _read_roles(secrets.get("roles"), env.get("DASHBOARD_ROLES"), problems)
    if problems:
        raise AccessDenied(" ".join(problems) + " Nothing was changed.")
    role = roles.get(person)
    if role is None or person == "*":
        raise AccessDenied(
            f"--actor {person} is not in the role map (DASHBOARD_ROLES or [roles] in the "
            "secrets); name a person who has a role there. Nothing was changed."
        )
    if permission not in PERMISSIONS[role]:
        raise AccessDenied(
            f"--actor {person} has the role {role}, which may not {_ACTIONS[permission]}. "
            "Nothing was changed."
        )
    return person
