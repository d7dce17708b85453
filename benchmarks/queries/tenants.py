"""The organizations the per-organization reads are measured for."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, text


@dataclass(frozen=True, slots=True)
class OrgInfo:
    """An organization the reads are measured for."""

    label: str  # "largest" or "median"
    id: int
    name: str
    timezone: str
    generations: int
    users: int
    user_id: int  # its most active user
    user_generations: int
    # The reads' "now" (``--now``); None: the wall clock's.
    now: dt.datetime | None = None

    @property
    def today(self) -> dt.date:
        return (self.now or dt.datetime.now(dt.UTC)).astimezone(ZoneInfo(self.timezone)).date()

    def last(self, days: int) -> tuple[dt.date, dt.date]:
        """The last ``days`` local calendar days, today included."""
        return self.today - dt.timedelta(days=days - 1), self.today


_RANKED = text(
    "SELECT organization_id, count(*) AS n FROM generations "
    "GROUP BY organization_id ORDER BY n DESC, organization_id"
)
_ORGANIZATION = text(
    "SELECT o.name, o.timezone, (SELECT count(*) FROM users u "
    "WHERE u.organization_id = o.id) AS users FROM organizations o WHERE o.id = :org"
)
_MOST_ACTIVE_USER = text(
    "SELECT user_id, count(*) AS n FROM generations WHERE organization_id = :org "
    "GROUP BY user_id ORDER BY n DESC, user_id LIMIT 1"
)


def pick_organizations(conn: Connection, now: dt.datetime | None = None) -> list[OrgInfo]:
    """The largest organization and the median one, by generation count, their reads at
    ``now`` (None: the wall clock)."""
    ranked = conn.execute(_RANKED).all()
    if not ranked:
        raise SystemExit("The benchmark database has no generations; use sizes > 0.")
    picked: list[OrgInfo] = []
    for label, row in (("largest", ranked[0]), ("median", ranked[len(ranked) // 2])):
        org = conn.execute(_ORGANIZATION, {"org": row.organization_id}).one()
        user = conn.execute(_MOST_ACTIVE_USER, {"org": row.organization_id}).one()
        picked.append(
            OrgInfo(
                label,
                row.organization_id,
                org.name,
                org.timezone,
                row.n,
                org.users,
                user.user_id,
                user.n,
                now,
            )
        )
    return picked
