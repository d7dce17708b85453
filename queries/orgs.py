"""Organizations, their users and the generation types: the pickers' data."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Connection, text

from queries.checks import check_id
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
