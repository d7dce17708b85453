"""Small builders for rows the tests need, inserted on the test's own connection."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid

from sqlalchemy import Connection, insert, select, text

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
        "slug": f"org-{n}-{uuid.uuid4().hex[:8]}",
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
            email=f"user{n}.{uuid.uuid4().hex[:8]}@org{organization_id}.example.com",
            name=name or f"User {n}",
        )
        .returning(User.id)
    ).scalar_one()
    return int(user_id)


def add_generations(
    conn: Connection,
    organization_id: int,
    rows: list[tuple[int, str, int, dt.datetime]],
) -> None:
    """Insert generations (user_id, type, credits, created_at) and keep usage_limits and
    the generation rollups exact, as record_generation would."""
    conn.execute(
        text(
            "INSERT INTO generations (organization_id, user_id, type, credits, created_at) "
            "VALUES (:org, :user, :type, :credits, :at)"
        ),
        [
            {"org": organization_id, "user": u, "type": t, "credits": c, "at": at}
            for u, t, c, at in rows
        ],
    )
    conn.execute(
        text(
            """
            INSERT INTO usage_limits (organization_id, type, date, used, credits_used, daily_limit)
            SELECT g.organization_id, g.type, (g.created_at AT TIME ZONE o.timezone)::date,
                   count(*), sum(g.credits), 100
            FROM generations g JOIN organizations o ON o.id = g.organization_id
            WHERE g.organization_id = :org
            GROUP BY 1, 2, 3
            ON CONFLICT (organization_id, type, date) DO UPDATE
                SET used = excluded.used, credits_used = excluded.credits_used
            """
        ),
        {"org": organization_id},
    )
    # The generation rollups, recounted for the organization as the demo loader does.
    conn.execute(
        text(
            """
            INSERT INTO user_daily_usage (organization_id, user_id, date, type, generations,
                                          credits)
            SELECT g.organization_id, g.user_id, (g.created_at AT TIME ZONE o.timezone)::date,
                   g.type, count(*), sum(g.credits)
            FROM generations g JOIN organizations o ON o.id = g.organization_id
            WHERE g.organization_id = :org
            GROUP BY 1, 2, 3, 4
            ON CONFLICT (organization_id, user_id, date, type) DO UPDATE
                SET generations = excluded.generations, credits = excluded.credits
            """
        ),
        {"org": organization_id},
    )
    conn.execute(
        text(
            """
            INSERT INTO quarter_hour_usage (organization_id, bucket, type, generations, credits)
            SELECT g.organization_id,
                   date_bin('15 minutes', g.created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
                   g.type, count(*), sum(g.credits)
            FROM generations g
            WHERE g.organization_id = :org
            GROUP BY 1, 2, 3
            ON CONFLICT (organization_id, bucket, type) DO UPDATE
                SET generations = excluded.generations, credits = excluded.credits
            """
        ),
        {"org": organization_id},
    )
    # The per-organization days (prefix sums) and months, rebuilt for the organization.
    for statement in (
        "DELETE FROM organization_daily_usage WHERE organization_id = :org",
        """
        INSERT INTO organization_daily_usage
            (organization_id, date, generations, credits, generations_through, credits_through)
        SELECT :org, d.date, d.generations, d.credits,
               sum(d.generations) OVER w, sum(d.credits) OVER w
        FROM (
            SELECT (g.created_at AT TIME ZONE o.timezone)::date AS date,
                   count(*) AS generations, sum(g.credits) AS credits
            FROM generations g JOIN organizations o ON o.id = g.organization_id
            WHERE g.organization_id = :org
            GROUP BY 1
        ) d
        WINDOW w AS (ORDER BY d.date)
        """,
        "DELETE FROM organization_monthly_usage WHERE organization_id = :org",
        """
        INSERT INTO organization_monthly_usage (month, organization_id, generations, credits)
        SELECT date_trunc('month', date)::date, :org, sum(generations), sum(credits)
        FROM organization_daily_usage WHERE organization_id = :org
        GROUP BY 1
        """,
    ):
        conn.execute(text(statement), {"org": organization_id})


def add_ledger(
    conn: Connection,
    organization_id: int,
    entries: list[tuple[int, str, str, dt.datetime]],
    *,
    actor: str = "finance@example.com",
) -> None:
    """Insert ledger entries (amount, kind, reason, created_at), back-dated as the owner
    may; the database moves the balance and sets ``balance_after`` (migration 0013)."""
    for amount, kind, reason, at in entries:
        conn.execute(
            text(
                "INSERT INTO credit_ledger (organization_id, amount, kind, reason, "
                "actor, idempotency_key, created_at) "
                "VALUES (:org, :amount, :kind, :reason, :actor, :key, :at)"
            ),
            {
                "org": organization_id,
                "amount": amount,
                "kind": kind,
                "reason": reason,
                "actor": actor,
                "key": f"test-{next(_counter)}",
                "at": at,
            },
        )
