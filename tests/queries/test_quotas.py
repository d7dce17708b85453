"""Changing a daily limit: from a day on, audited, never for the past."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import Engine, text

from queries.errors import InvalidLimitChange
from queries.generations import record_generation
from queries.quotas import set_daily_limit
from tests.queries.writes import new_org, snapshot


def test_limit_change_applies_from_the_effective_day_and_is_audited(write_engine: Engine) -> None:
    org, (user,) = new_org(write_engine, balance=1000)
    for day in (
        dt.datetime(2030, 3, 1, 9, tzinfo=dt.UTC),
        dt.datetime(2030, 3, 5, 9, tzinfo=dt.UTC),
    ):
        record_generation(write_engine, organization_id=org, user_id=user, type="chat", at=day)
    change = set_daily_limit(
        write_engine,
        organization_id=org,
        type="chat",
        daily_limit=7,
        actor="sam@support.example",
        reason="Customer asked to cap spend",
        effective=dt.date(2030, 3, 3),
    )
    assert (change.old_limit, change.new_limit, change.used_on_effective) == (1000, 7, 0)
    with write_engine.connect() as conn:
        limits: dict[dt.date, int] = dict(
            conn.execute(
                text(
                    "SELECT date, daily_limit FROM usage_limits WHERE organization_id = :o AND type = 'chat'"
                ),
                {"o": org},
            ).all()
        )
        audit = conn.execute(
            text("SELECT actor, reason, details FROM audit_log WHERE organization_id = :o"),
            {"o": org},
        ).one()
    assert limits == {dt.date(2030, 3, 1): 1000, dt.date(2030, 3, 3): 7, dt.date(2030, 3, 5): 7}
    assert audit.actor == "sam@support.example" and audit.reason == "Customer asked to cap spend"
    assert audit.details == {
        "type": "chat",
        "effective": "2030-03-03",
        "old_limit": 1000,
        "new_limit": 7,
    }


def test_default_effective_day_is_the_organizations_today(write_engine: Engine) -> None:
    org, _ = new_org(write_engine, timezone="Pacific/Kiritimati")  # UTC+14
    change = set_daily_limit(
        write_engine, organization_id=org, type="image", daily_limit=50, actor="a@x.com", reason="r"
    )
    with write_engine.connect() as conn:
        today = conn.execute(
            text("SELECT (now() AT TIME ZONE 'Pacific/Kiritimati')::date")
        ).scalar_one()
    assert change.effective == today


BAD_CHANGES: list[tuple[str, dict[str, Any], str]] = [
    ("negative", {"daily_limit": -1}, "whole number from 0"),
    ("float", {"daily_limit": 2.5}, "whole number from 0"),
    ("bool", {"daily_limit": False}, "whole number from 0"),
    ("huge", {"daily_limit": 10_000_001}, "whole number from 0"),
    ("unknown type", {"type": "hologram"}, "Unknown generation type"),
    ("blank reason", {"reason": ""}, "reason cannot be empty"),
    ("blank actor", {"actor": " "}, "actor cannot be empty"),
    ("past day", {"effective": dt.date(2000, 1, 1)}, "in the past"),
    ("datetime effective", {"effective": dt.datetime(2030, 1, 1)}, "must be a date"),
    ("unknown org", {"organization_id": 987_654_321}, "no organization"),
]


@pytest.mark.parametrize(
    ("case", "change", "message"), BAD_CHANGES, ids=[c[0] for c in BAD_CHANGES]
)
def test_bad_limit_changes_are_refused_and_write_nothing(
    write_engine: Engine, case: str, change: dict[str, Any], message: str
) -> None:
    org, _ = new_org(write_engine)
    arguments: dict[str, Any] = {
        "organization_id": org,
        "type": "chat",
        "daily_limit": 10,
        "actor": "a@x.com",
        "reason": "r",
        **change,
    }
    before = snapshot(write_engine, org)
    with pytest.raises(InvalidLimitChange, match=message):
        set_daily_limit(write_engine, **arguments)
    assert snapshot(write_engine, org) == before
