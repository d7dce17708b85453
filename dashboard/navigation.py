"""The pages, who may open each, and which shared filters each one uses.

Every page is registered with ``st.navigation``; those a role may not open are hidden
from its menu, so that a link to one (``/usage`` for support) is recognised and refused
with a sentence naming the roles that may open it (:func:`refusal`), on the first page of
the menu, instead of Streamlit's silent fallback to it. A refused page never runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, get_args

import streamlit as st
from streamlit.navigation.page import StreamlitPage

from dashboard.auth import PERMISSIONS, ROLES, CurrentUser, Permission, Role

PAGE_DIR: Final = Path(__file__).resolve().parent / "app_pages"
# The shared filters of the sidebar (``dashboard.state``) a page may use.
FilterName = Literal["org", "range", "grain", "tz"]
ALL_FILTERS: Final[frozenset[FilterName]] = frozenset(get_args(FilterName))


@dataclass(frozen=True, slots=True)
class PageSpec:
    file: str
    title: str
    icon: str
    url_path: str
    permission: Permission
    uses: frozenset[FilterName]

    def page(self, *, default: bool = False, hidden: bool = False) -> StreamlitPage:
        return st.Page(
            PAGE_DIR / self.file,
            title=self.title,
            icon=self.icon,
            url_path=self.url_path,
            default=default,
            visibility="hidden" if hidden else "visible",
        )


PAGES: Final[tuple[PageSpec, ...]] = (
    PageSpec(
        "overview.py",
        "Overview",
        ":material/monitoring:",
        "overview",
        "view_overview",
        ALL_FILTERS,
    ),
    PageSpec(
        "usage.py",
        "Usage review",
        ":material/leaderboard:",
        "usage",
        "view_usage",
        frozenset({"range"}),
    ),
    PageSpec(
        "credits/page.py",
        "Credits",
        ":material/account_balance_wallet:",
        "credits",
        "view_credits",
        ALL_FILTERS,
    ),
    PageSpec(
        "quotas.py",
        "Quotas",
        ":material/speed:",
        "quotas",
        "view_quotas",
        frozenset({"org", "range"}),
    ),
    PageSpec(
        "audit.py",
        "Audit trail",
        ":material/history:",
        "audit",
        "view_audit",
        frozenset({"org", "range", "tz"}),  # its days and times are in the sidebar's zone
    ),
    PageSpec(
        "statements.py",
        "Statements",
        ":material/receipt_long:",
        "statements",
        "view_statements",
        frozenset({"org"}),
    ),
    PageSpec(
        "reconciliation.py",
        "Reconciliation",
        ":material/balance:",
        "reconciliation",
        "view_reconciliation",
        frozenset(),
    ),
)


def pages_for(user: CurrentUser) -> list[PageSpec]:
    """The pages ``user``'s role may open, in menu order (others are not in the menu)."""
    return [spec for spec in PAGES if user.can(spec.permission)]


def roles_for(spec: PageSpec) -> list[Role]:
    """The roles that may open ``spec``'s page, admin last (it may open every page)."""
    return sorted(
        (role for role in ROLES if spec.permission in PERMISSIONS[role]),
        key=lambda role: (role == "admin", ROLES.index(role)),
    )


def _listed(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def refusal(spec: PageSpec, user: CurrentUser) -> str:
    """Why ``user`` landed elsewhere: the page, the roles that may open it, and theirs."""
    return (
        f"{spec.title} is for {_listed(list(roles_for(spec)))}; your role "
        f"({user.role or 'no role'}) cannot open it."
    )


def path_of(url_path: str) -> Path:
    """The file of the page served at ``url_path`` (for ``st.switch_page``)."""
    return PAGE_DIR / next(spec.file for spec in PAGES if spec.url_path == url_path)


def tab_title(spec: PageSpec, organization: str | None) -> str:
    """The browser tab's title: the page, the organization it shows (for pages with the
    organization filter), then the app, as "Credits · Acme Games — Usage dashboard".
    The browser shows a title as plain text; a long name is cut short so the page
    stays readable in a narrow tab."""
    if organization is None or "org" not in spec.uses:
        return f"{spec.title} — Usage dashboard"
    name = " ".join(organization.split())  # no line breaks in a title
    if len(name) > MAX_TITLE_NAME:
        name = name[: MAX_TITLE_NAME - 1] + "…"
    return f"{spec.title} · {name} — Usage dashboard"


MAX_TITLE_NAME: Final = 60


def spec_for(page: StreamlitPage) -> PageSpec:
    """The spec of a page ``st.navigation`` returned."""
    # The default page's url_path is "" (it is the app's root), so match the title.
    for spec in PAGES:
        if spec.title == page.title:
            return spec
    raise LookupError(f"no page spec for {page.title!r}")
