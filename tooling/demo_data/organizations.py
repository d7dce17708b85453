"""The organizations and their users, and the generation types they use."""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from dataclasses import dataclass

import numpy as np
import psycopg

from tooling.demo_data.copying import copy_rows

GENERATION_TYPES: tuple[tuple[str, str, int, int], ...] = (
    # type, label, default credits, default daily limit (pro plan)
    ("chat", "Chat completion", 1, 5000),
    ("image", "Image", 4, 800),
    ("image_hd", "Image (HD)", 10, 200),
    ("voice", "Voice clip", 3, 400),
    ("video", "Video clip", 40, 40),
)


TIMEZONES = (
    "UTC",
    "Europe/Berlin",
    "Europe/London",
    "America/New_York",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Australia/Sydney",
)


# fmt: off
_ADJECTIVES = (
    "Northwind", "Acme", "Blue", "Bright", "Cedar", "Copper", "Delta", "Ember", "Falcon",
    "Granite", "Harbor", "Indigo", "Juniper", "Kestrel", "Lumen", "Maple", "Nimbus", "Orbit",
    "Pioneer", "Quartz", "Raven", "Summit", "Tidal", "Umber", "Vertex", "Willow", "Zephyr",
    "Atlas", "Beacon", "Cobalt",
)
# fmt: on
# fmt: off
_NOUNS = (
    "Media", "Labs", "Studio", "Analytics", "Health", "Robotics", "Logistics", "Games",
    "Legal", "Bank", "Retail", "Travel", "Foods", "Energy", "Design", "Learning", "Insurance",
    "Motors", "Records", "Capital",
)
# fmt: on
# fmt: off
_FIRST = (
    "Ana", "Ben", "Chloe", "David", "Emma", "Farid", "Grace", "Hugo", "Iris", "Jonas", "Kira",
    "Liam", "Mia", "Noah", "Olga", "Paul", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera",
    "Wei", "Yara", "Zoe",
)
# fmt: on
# fmt: off
_LAST = (
    "Adams", "Brown", "Chen", "Dubois", "Evans", "Fischer", "Garcia", "Hansen", "Ito",
    "Jensen", "Kowalski", "Lopez", "Muller", "Nakamura", "Okafor", "Petrov", "Rossi", "Silva",
    "Tanaka", "Novak", "Weber", "Young",
)


@dataclass(slots=True)
class Org:
    id: int
    name: str
    slug: str
    timezone: str
    plan: str
    created_at: dt.datetime
    weight: float


def make_organizations(
    rng: np.random.Generator, count: int, days: int, now: dt.datetime
) -> list[Org]:
    # Zipf-like sizes: the first tenant carries roughly a third of the traffic.
    ranks = np.arange(1, count + 1)
    weights = 1.0 / ranks**1.1
    weights[0] *= 1.6
    weights /= weights.sum()
    orgs: list[Org] = []
    used: set[str] = set()
    for i in range(count):
        adjective = _ADJECTIVES[i % len(_ADJECTIVES)]
        noun = _NOUNS[(i * 7 + i // len(_ADJECTIVES)) % len(_NOUNS)]
        name = f"{adjective} {noun}"
        slug = name.lower().replace(" ", "-")
        if slug in used:
            name, slug = f"{name} {i}", f"{slug}-{i}"
        used.add(slug)
        share = weights[i]
        plan = (
            "enterprise"
            if share > 0.08
            else "pro"
            if share > 0.02
            else str(rng.choice(["starter", "free"], p=[0.7, 0.3]))
        )
        tz = TIMEZONES[i % len(TIMEZONES)] if i else "America/New_York"
        created = now - dt.timedelta(days=days + int(rng.integers(1, 60)))
        orgs.append(Org(i + 1, name, slug, tz, plan, created, float(share)))
    return orgs


def make_users(
    rng: np.random.Generator, orgs: list[Org], generations: int
) -> dict[str, np.ndarray]:
    org_ids: list[int] = []
    names: list[str] = []
    emails: list[str] = []
    for org in orgs:
        n = int(np.clip(round(org.weight * 600), 2, 400))
        for j in range(n):
            first = _FIRST[int(rng.integers(len(_FIRST)))]
            last = _LAST[int(rng.integers(len(_LAST)))]
            org_ids.append(org.id)
            names.append(f"{first} {last}")
            emails.append(f"{first.lower()}.{last.lower()}.{j + 1}@{org.slug}.example.com")
    return {
        "org": np.array(org_ids, dtype=np.int64),
        "id": np.arange(1, len(org_ids) + 1, dtype=np.int64),
        "name": np.array(names, dtype=object),
        "email": np.array(emails, dtype=object),
    }


@functools.lru_cache(maxsize=64)
def zone_named(tz: str) -> zoneinfo.ZoneInfo:
    """The zone, held: ZoneInfo's own cache keeps 8 strongly, and the demo has 9 zones,
    so without this every organization re-read its tzdata file."""
    return zoneinfo.ZoneInfo(tz)


def load_lookup_and_tenants(
    conn: psycopg.Connection, orgs: list[Org], users: dict[str, np.ndarray]
) -> None:
    copy_rows(
        conn,
        "COPY generation_types (type, label, default_credits, default_daily_limit) FROM STDIN",
        list(GENERATION_TYPES),
    )
    copy_rows(
        conn,
        "COPY organizations (id, name, slug, timezone, plan, created_at) FROM STDIN",
        [(o.id, o.name, o.slug, o.timezone, o.plan, o.created_at) for o in orgs],
    )
    copy_rows(
        conn,
        "COPY users (organization_id, id, email, name, created_at) FROM STDIN",
        [
            (int(org), int(uid), email, name, orgs[int(org) - 1].created_at)
            for org, uid, email, name in zip(
                users["org"], users["id"], users["email"], users["name"], strict=True
            )
        ],
    )
