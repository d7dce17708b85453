"""Small builders for rows the tests need, inserted on the test's own connection."""

from __future__ import annotations

import datetime as dt
import itertools

from sqlalchemy import Connection, insert, select

from queries.models import CreditBalance, GenerationType, Organization, User

_counter = itertools.count(1)

TYPES = (("chat", "Chat", 1, 1000), ("image", "Image", 4, 100), ("video", "Video", 40, 10))


def ensure_types(conn: Connection) -> None:
    existing = set(conn.scalars(select(GenerationType.type)))
    rows = [
        {"type": t, "label": label, "default_credits": c, "default_daily_limit": limit}
        for t, label, c, limit in TYPES
        if t not in existing
    ]
    if rows:
        conn.execute(insert(GenerationType), rows)


def make_org(
    conn: Connection,
    *,
    name: str | None = None,
    timezone: str = "UTC",
    plan: str = "pro",
    balance: int = 0,
    created_at: dt.datetime | None = None,
) -> int:
    n = next(_counter)
    values: dict[str, object] = {
        "name": name or f"Org {n}",
        "slug": f"org-{n}-{dt.datetime.now().microsecond}",
        "timezone": timezone,
        "plan": plan,
    }
    if created_at is not None:
        values["created_at"] = created_at
    org_id = conn.execute(
        insert(Organization).values(**values).returning(Organization.id)
    ).scalar_one()
    conn.execute(insert(CreditBalance).values(organization_id=org_id, balance=balance))
    return int(org_id)


def make_user(conn: Connection, organization_id: int, *, name: str | None = None) -> int:
    n = next(_counter)
    user_id = conn.execute(
        insert(User)
        .values(
            organization_id=organization_id,
            email=f"user{n}.{dt.datetime.now().microsecond}@org{organization_id}.example.com",
            name=name or f"User {n}",
        )
        .returning(User.id)
    ).scalar_one()
    return int(user_id)
