"""Changing a daily limit: from a day on, audited, never for the past."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import Engine, text

from queries.errors import IdempotencyConflict, InvalidLimitChange
from queries.generations import record_generation
from queries.quotas import check_daily_limit, set_daily_limit
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
    ("negative", {"daily_limit": -1}, "from 0 to 10,000,000, not -1"),
    ("float", {"daily_limit": 2.5}, "must be a whole number, not 2.5"),
    ("bool", {"daily_limit": False}, "must be a whole number, not False"),
    ("huge", {"daily_limit": 10_000_001}, "from 0 to 10,000,000, not 10,000,001"),
    ("unknown type", {"type": "hologram"}, "Unknown generation type"),
    ("blank reason", {"reason": ""}, "reason cannot be empty"),
    ("blank actor", {"actor": " "}, "actor cannot be empty"),
    # A NUL reached the database as a DataError before; it is refused with a sentence.
    ("NUL in reason", {"reason": "Customer\x00 request"}, "reason contains a NUL"),
    ("line break in reason", {"reason": "a\nb"}, "reason contains a control character"),
    ("long reason", {"reason": "r" * 321}, "reason is too long"),
    ("NUL in type", {"type": "chat\x00"}, "generation type contains a NUL"),
    ("NUL in key", {"idempotency_key": "k\x00"}, "idempotency key contains a NUL"),
    ("blank key", {"idempotency_key": " "}, "idempotency key cannot be empty"),
    ("year 9999", {"effective": dt.date(9999, 12, 31)}, "outside the years 2000–2100"),
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


def test_the_same_limit_change_key_applies_once_and_returns_the_first_change(
    write_engine: Engine,
) -> None:
    org, _ = new_org(write_engine)
    request: dict[str, Any] = {
        "organization_id": org,
        "type": "image",
        "daily_limit": 12,
        "actor": "sam@support.example",
        "reason": "Launch week",
        "idempotency_key": "limit-form-1",
    }
    first = set_daily_limit(write_engine, **request)
    before = snapshot(write_engine, org)
    # A retry after a lost answer, even one that no longer names the day.
    assert set_daily_limit(write_engine, **request) == first
    assert set_daily_limit(write_engine, **request, effective=first.effective) == first
    assert snapshot(write_engine, org) == before
    with write_engine.connect() as conn:
        keys = conn.execute(
            text("SELECT idempotency_key FROM audit_log WHERE organization_id = :o"), {"o": org}
        ).all()
    assert keys == [("limit-form-1",)]


@pytest.mark.parametrize(
    "change",
    [
        {"daily_limit": 13},
        {"type": "chat"},
        {"reason": "Another reason"},
        {"actor": "kim@support.example"},
        {"effective": dt.date(2099, 1, 1)},
    ],
    ids=["limit", "type", "reason", "actor", "effective"],
)
def test_the_same_limit_change_key_with_other_details_is_a_conflict(
    write_engine: Engine, change: dict[str, Any]
) -> None:
    org, _ = new_org(write_engine)
    request: dict[str, Any] = {
        "organization_id": org,
        "type": "image",
        "daily_limit": 12,
        "actor": "sam@support.example",
        "reason": "Launch week",
        "idempotency_key": "limit-form-2",
    }
    set_daily_limit(write_engine, **request)
    before = snapshot(write_engine, org)
    with pytest.raises(IdempotencyConflict, match="already submitted with different details"):
        set_daily_limit(write_engine, **{**request, **change})
    assert snapshot(write_engine, org) == before


def test_a_limit_change_key_belongs_to_its_organization(write_engine: Engine) -> None:
    first, _ = new_org(write_engine)
    second, _ = new_org(write_engine)
    request: dict[str, Any] = {
        "type": "image",
        "daily_limit": 12,
        "actor": "a@x.com",
        "reason": "r",
        "idempotency_key": "shared-key",
    }
    one = set_daily_limit(write_engine, organization_id=first, **request)
    other = set_daily_limit(write_engine, organization_id=second, **request)
    assert one.audit_id != other.audit_id


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, None),
        (10_000_000, None),
        (-1, "from 0 to 10,000,000"),
        (2.5, "whole number"),
        ("12", "whole number"),
        (True, "whole number"),
        (None, "whole number"),
    ],
)
def test_check_daily_limit_is_the_one_rule_for_limits(value: object, message: str | None) -> None:
    if message is None:
        assert check_daily_limit(value) == value
    else:
        with pytest.raises(InvalidLimitChange, match=message):
            check_daily_limit(value)
