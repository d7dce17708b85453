"""Organizations, their users and the generation types: the pickers' data."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

import pandas as pd
from sqlalchemy import Connection, text

from queries.checks import check_id, check_limit, like_pattern, parse_id
from queries.errors import InvalidInput
from queries.frames import frame


@dataclass(frozen=True, slots=True)
class OrganizationInfo:
    """One organization as the pages show it."""

    id: int
    name: str
    slug: str
    plan: str
    timezone: str
    created_at: dt.datetime
    users: int
    balance: int


def list_organizations(conn: Connection) -> pd.DataFrame:
    """All organizations by name.

    Columns: id (int), name, slug, plan, timezone (str).
    """
    result = conn.execute(
        text("SELECT id, name, slug, plan, timezone FROM organizations ORDER BY name, id")
    )
    return frame(
        result, {"id": "int64", "name": "str", "slug": "str", "plan": "str", "timezone": "str"}
    )


@dataclass(frozen=True, slots=True)
class OrganizationRow:
    """One organization as a picker lists it."""

    id: int
    name: str
    slug: str
    plan: str
    timezone: str


@dataclass(frozen=True, slots=True)
class OrganizationCursor:
    """Where the next page of organizations by name starts: the last (name, id) shown."""

    name: str
    id: int


@dataclass(frozen=True, slots=True)
class OrganizationPage:
    """A page of organizations matching a search.

    ``exact`` is the organization whose id or slug is exactly the query (first page
    only), so typing an id or a slug finds it whatever its name; ``organizations`` are
    the name or slug matches by (name, id), which may include ``exact`` too; ``next``
    is the cursor of the next page, or None on the last.
    """

    exact: OrganizationRow | None
    organizations: tuple[OrganizationRow, ...]
    next: OrganizationCursor | None


MAX_SEARCH: Final = 200

# One statement: the exact id/slug match (by primary key or the unique slug index) and a
# keyset page by (name, id), walked on ix_organizations_name_id so an empty search reads
# only the page it shows; a substring filter is checked on the rows walked (see README).
_SEARCH = text(
    """
    (SELECT id, name, slug, plan, timezone, true AS exact
     FROM organizations
     WHERE CAST(:first AS boolean) AND (id = CAST(:id AS bigint) OR slug = CAST(:slug AS text))
     ORDER BY id = CAST(:id AS bigint) DESC
     LIMIT 1)
    UNION ALL
    (SELECT id, name, slug, plan, timezone, false AS exact
     FROM organizations
     WHERE (CAST(:pattern AS text) IS NULL
            OR name ILIKE '%' || CAST(:pattern AS text) || '%' ESCAPE '\\'
            OR slug ILIKE '%' || CAST(:pattern AS text) || '%' ESCAPE '\\')
       AND (CAST(:after_name AS text) IS NULL
            OR (name, id) > (CAST(:after_name AS text), CAST(:after_id AS bigint)))
     ORDER BY name, id
     LIMIT :fetch)
    """
)


def search_organizations(
    conn: Connection,
    *,
    query: str | None = None,
    limit: int = 50,
    after: OrganizationCursor | None = None,
) -> OrganizationPage:
    """Organizations whose name or slug contains ``query`` (case-insensitive; ``%`` and
    ``_`` match themselves), by name then id, ``limit`` a page, keyset-paged with
    ``after``; a blank query lists every organization. On the first page, the
    organization whose id or slug is exactly ``query`` comes as ``exact``."""
    limit = check_limit(limit)
    if query is not None and not isinstance(query, str):
        raise InvalidInput("The search must be text.")
    if query is not None and len(query) > MAX_SEARCH:
        raise InvalidInput(f"The search is too long (at most {MAX_SEARCH} characters).")
    if after is not None and not isinstance(after, OrganizationCursor):
        raise InvalidInput("after must be the cursor of a previous page.")
    pattern = like_pattern(query, "search")
    wanted = query.strip() if query else ""
    exact_id: int | None = None
    if wanted.isascii() and wanted.isdigit():
        try:
            exact_id = parse_id(wanted)
        except InvalidInput:
            exact_id = None
    rows = conn.execute(
        _SEARCH,
        {
            "first": after is None and bool(wanted),
            "id": exact_id,
            "slug": wanted.lower(),
            "pattern": pattern,
            "after_name": after.name if after else None,
            "after_id": check_id(after.id, "after.id") if after else None,
            "fetch": limit + 1,
        },
    ).all()
    exact = next(
        (OrganizationRow(r.id, r.name, r.slug, r.plan, r.timezone) for r in rows if r.exact),
        None,
    )
    matches = [
        OrganizationRow(r.id, r.name, r.slug, r.plan, r.timezone) for r in rows if not r.exact
    ]
    cursor = None
    if len(matches) > limit:
        matches = matches[:limit]
        cursor = OrganizationCursor(matches[-1].name, matches[-1].id)
    return OrganizationPage(exact=exact, organizations=tuple(matches), next=cursor)


def any_organizations(conn: Connection) -> bool:
    """Whether the database has at least one organization."""
    return bool(conn.execute(text("SELECT EXISTS (SELECT FROM organizations)")).scalar_one())


def get_organization(conn: Connection, *, organization_id: int) -> OrganizationInfo | None:
    """One organization with its user count and balance, or None if it does not exist."""
    organization_id = check_id(organization_id)
    row = conn.execute(
        text(
            """
            SELECT o.id, o.name, o.slug, o.plan, o.timezone, o.created_at,
                   (SELECT count(*) FROM users u WHERE u.organization_id = o.id) AS users,
                   coalesce(b.balance, 0) AS balance
            FROM organizations o
            LEFT JOIN credit_balances b ON b.organization_id = o.id
            WHERE o.id = :org
            """
        ),
        {"org": organization_id},
    ).one_or_none()
    return OrganizationInfo(**row._mapping) if row else None


def list_users(conn: Connection, *, organization_id: int) -> pd.DataFrame:
    """The organization's users by name.

    Columns: id (int), name, email (str), created_at (datetime, UTC).
    """
    organization_id = check_id(organization_id)
    result = conn.execute(
        text(
            "SELECT id, name, email, created_at FROM users WHERE organization_id = :org "
            "ORDER BY name, id"
        ),
        {"org": organization_id},
    )
    return frame(
        result, {"id": "int64", "name": "str", "email": "str", "created_at": "datetime64[us, UTC]"}
    )


def list_generation_types(conn: Connection) -> pd.DataFrame:
    """The global generation types.

    Columns: type, label (str), default_credits, default_daily_limit (int).
    """
    result = conn.execute(
        text(
            "SELECT type, label, default_credits, default_daily_limit FROM generation_types "
            "ORDER BY type"
        )
    )
    return frame(
        result,
        {"type": "str", "label": "str", "default_credits": "int64", "default_daily_limit": "int64"},
    )
