"""Who is using the dashboard and what they may do: :func:`current_user` is the one answer.

Identity:

- With an ``[auth]`` section in ``.streamlit/secrets.toml``, the identity is the OIDC
  user Streamlit signed in (``st.login`` / ``st.user``); its email is the actor recorded
  with every change.
- Without it, a **development-only** local identity: ``DASHBOARD_USER`` (environment)
  or ``[dev] user`` (secrets), default ``developer@localhost``. The sidebar says so.

Roles come from configuration, email -> role: the ``[roles]`` table of the secrets
and ``DASHBOARD_ROLES="a@x.com=finance,b@y.com=support"`` (the environment wins for an
email in both); ``"*"`` is the role of any other signed-in email. The local identity
takes ``DASHBOARD_ROLE`` / ``[dev] role`` if set, else its entry in the roles, else
``admin``, so ``uv run dashboard`` on a laptop can do every task.

A role's pages are the only ones in its navigation, and every write asks
:func:`require` again right before it calls ``queries`` (a hidden page is not access
control).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

import streamlit as st
from streamlit.errors import StreamlitSecretNotFoundError

Role = Literal["admin", "finance", "support", "manager"]
ROLES: Final[tuple[Role, ...]] = get_args(Role)

Permission = Literal[
    "view_overview",
    "view_usage",
    "view_credits",
    "view_quotas",
    "view_audit",
    "adjust_credits",
    "change_limits",
]

_VIEW_ALL: frozenset[Permission] = frozenset(
    {"view_overview", "view_usage", "view_credits", "view_quotas", "view_audit"}
)
PERMISSIONS: Final[Mapping[Role, frozenset[Permission]]] = {
    "admin": _VIEW_ALL | {"adjust_credits", "change_limits"},
    # Finance reviews usage and moves credits; customer success watches quotas and
    # changes limits; managers read everything and change nothing.
    "finance": frozenset(
        {"view_overview", "view_usage", "view_credits", "view_audit", "adjust_credits"}
    ),
    "support": frozenset({"view_overview", "view_quotas", "view_audit", "change_limits"}),
    "manager": _VIEW_ALL,
}

DEV_DEFAULT_USER: Final = "developer@localhost"
DEV_DEFAULT_ROLE: Final[Role] = "admin"

_log = logging.getLogger(__name__)


class AccessDenied(PermissionError):
    """The current identity may not do this; ``str(error)`` is the sentence to show."""


@dataclass(frozen=True, slots=True)
class CurrentUser:
    """The person using the dashboard, their role, and where the identity came from."""

    email: str
    name: str
    role: Role | None
    source: Literal["oidc", "development"]
    signed_in: bool = True

    @property
    def is_development(self) -> bool:
        return self.source == "development"

    def can(self, permission: Permission) -> bool:
        return self.role is not None and permission in PERMISSIONS[self.role]


def _secrets() -> dict[str, Any]:
    """The secrets as a plain dict; empty when there is no secrets.toml."""
    try:
        return st.secrets.to_dict()
    except (StreamlitSecretNotFoundError, FileNotFoundError):
        return {}


def _role(value: object, *, source: str) -> Role | None:
    if isinstance(value, str) and value.strip().lower() in ROLES:
        return value.strip().lower()  # type: ignore[return-value]
    _log.warning("ignoring unknown role %r in %s; roles are %s", value, source, ", ".join(ROLES))
    return None


def parse_roles(
    secrets_roles: Mapping[str, object] | None, env_roles: str | None
) -> dict[str, Role]:
    """email (lower case) or ``*`` -> role, from the secrets table then the environment.

    ``env_roles`` is ``"a@x.com=finance,b@y.com=support"``; entries with an unknown role
    or without ``=`` are ignored (and logged).
    """
    roles: dict[str, Role] = {}
    for email, value in (secrets_roles or {}).items():
        role = _role(value, source="[roles]")
        if role is not None:
            roles[str(email).strip().lower()] = role
    for entry in (env_roles or "").split(","):
        if not entry.strip():
            continue
        email, sep, value = entry.partition("=")
        role = _role(value, source="DASHBOARD_ROLES") if sep else None
        if role is not None and email.strip():
            roles[email.strip().lower()] = role
    return roles


def _oidc_user(email: str, name: str, roles: Mapping[str, Role]) -> CurrentUser:
    role = roles.get(email.lower(), roles.get("*"))
    return CurrentUser(email=email, name=name or email, role=role, source="oidc")


def current_user() -> CurrentUser:
    """Who is this and what may they do (see the module docstring for the rules).

    With ``[auth]`` configured and nobody signed in yet, the result has
    ``signed_in=False`` and no role.
    """
    secrets = _secrets()
    roles_table = secrets.get("roles")
    roles = parse_roles(
        roles_table if isinstance(roles_table, Mapping) else None,
        os.environ.get("DASHBOARD_ROLES"),
    )
    if isinstance(secrets.get("auth"), Mapping):
        if not st.user.is_logged_in:
            return CurrentUser(email="", name="", role=None, source="oidc", signed_in=False)
        email = str(st.user.get("email") or "").strip()
        name = str(st.user.get("name") or "").strip()
        return _oidc_user(email, name, roles)

    dev = secrets.get("dev")
    dev = dev if isinstance(dev, Mapping) else {}
    email = (os.environ.get("DASHBOARD_USER") or str(dev.get("user") or "")).strip()
    email = email or DEV_DEFAULT_USER
    explicit = os.environ.get("DASHBOARD_ROLE") or dev.get("role")
    role = _role(explicit, source="DASHBOARD_ROLE / [dev] role") if explicit else None
    if role is None:
        role = roles.get(email.lower(), DEV_DEFAULT_ROLE)
    name = str(dev.get("name") or email.split("@")[0])
    return CurrentUser(email=email, name=name, role=role, source="development")


def oidc_available() -> bool:
    """Whether ``st.login`` can work here (it needs the Authlib package)."""
    return importlib.util.find_spec("authlib") is not None


def login_provider() -> str | None:
    """The provider to pass to ``st.login``: the one named subsection of ``[auth]``
    (``[auth.google]`` -> ``"google"``), or None for a single unnamed provider."""
    auth = _secrets().get("auth")
    if not isinstance(auth, Mapping):
        return None
    named = [key for key, value in auth.items() if isinstance(value, Mapping)]
    return named[0] if named else None


_ACTIONS: Final[Mapping[Permission, str]] = {
    "adjust_credits": "adjust credits",
    "change_limits": "change daily limits",
    "view_overview": "see the overview",
    "view_usage": "see the usage review",
    "view_credits": "see credits",
    "view_quotas": "see quotas",
    "view_audit": "see the audit trail",
}


def require(permission: Permission) -> CurrentUser:
    """The current user if they may do ``permission``; raises :class:`AccessDenied`.

    Called by every write right before it reaches ``queries``.
    """
    user = current_user()
    if not user.signed_in:
        raise AccessDenied("You are not signed in. Sign in and try again; nothing was changed.")
    if not user.can(permission):
        role = user.role or "no role"
        raise AccessDenied(
            f"{user.email} ({role}) may not {_ACTIONS[permission]}. Nothing was changed; "
            "ask an admin for the role if you need it."
        )
    return user
