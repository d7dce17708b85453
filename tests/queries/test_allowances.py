"""Plan allowances: granted once per organization and local month, expiring at the end of
that month in the organization's zone, with last month's unused part rolled over, capped.

No test reads the wall clock: each takes the database's clock once and passes a fixed
``now`` built from it (months a few weeks ahead, so the grants' expiries are in the
future whatever the date), and makes last month pass with back-dated owner rows, as
``add_due_grant`` does (the write-off itself uses the database's now()).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, text

from queries.allowances import (
    AllowanceReport,
    check_month,
    grant_allowances,
    plan_allowances,
    set_plan_allowance,
)
from queries.credits import adjust_credits
from queries.errors import IdempotencyConflict, InvalidAllowance
from queries.grants import expire_credits
from tests.queries.writes import invariant_holds, new_org, snapshot
from tests.statements import recording

ADMIN = "ada@admin.example"


def _clock(engine: Engine) -> dt.datetime:
    with engine.connect() as conn:
        now: dt.datetime = conn.execute(text("SELECT now()")).scalar_one()
    return now


def _next_march(clock: dt.datetime) -> dt.date:
    """The first 1 March more than a month after ``clock``: a month with a daylight-saving
    change in New York (second Sunday), far enough ahead that its grants expire later."""
    year = clock.year if clock.date() < dt.date(clock.year, 1, 28) else clock.year + 1
    return dt.date(year, 3, 1)


def _start(month: dt.date, zone: str) -> dt.datetime:
    return dt.datetime.combine(month, dt.time(), ZoneInfo(zone)).astimezone(dt.UTC)


def _following(month: dt.date) -> dt.date:
    return (month + dt.timedelta(days=32)).replace(day=1)


def _label(month: dt.date) -> str:
    return f"{month:%Y-%m}"


def _plan(engine: Engine, plan: str, allowance: int, cap: int) -> None:
    set_plan_allowance(
        engine,
        plan=plan,
        monthly_allowance=allowance,
        rollover_cap=cap,
        actor=ADMIN,
        reason="Test prices",
        idempotency_key=f"test-{uuid.uuid4()}",
    )


def _entries(engine: Engine, org: int) -> list[tuple[Any, ...]]:
    """The organization's allowance and rollover entries, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT idempotency_key, amount, actor, reason, grant_expires_at "
                "FROM credit_ledger WHERE organization_id = :org "
                "AND (idempotency_key LIKE 'allowance:%' OR idempotency_key LIKE 'rollover:%') "
                "ORDER BY id"
            ),
            {"org": org},
        ).all()
    return [tuple(r) for r in rows]


def _last_month_grant(
    engine: Engine, org: int, key: str, amount: int, *, used: int = 0, due: bool = True
) -> None:
    """A grant of last month (``allowance:`` or ``rollover:`` key) as the owner may
    back-date it: made two days ago, ``used`` drawn from it while it was live, then (when
    ``due``) past its expiry since yesterday, not yet written off."""
    with engine.begin() as conn:
        entry = conn.execute(
            text(
                "INSERT INTO credit_ledger (organization_id, amount, kind, reason, actor, "
                "idempotency_key, created_at, grant_expires_at) "
                "VALUES (:org, :amount, 'grant', 'Last month', 'system', :key, "
                "now() - interval '2 days', now() + interval '1 hour') RETURNING id"
            ),
            {"org": org, "amount": amount, "key": key},
        ).scalar_one()
    if used:
        adjust_credits(
            engine,
            organization_id=org,
            amount=-used,
            reason="Usage",
            actor="setup@example.com",
            idempotency_key=f"use-{key}",
        )
    if due:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE credit_grants SET expires_at = now() - interval '1 day' "
                    "WHERE organization_id = :org AND ledger_entry_id = :entry"
                ),
                {"org": org, "entry": entry},
            )


# ------------------------------------------------------------------------ the grant


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kathmandu", "America/New_York"])
def test_the_allowance_begins_and_expires_with_the_local_month(
    write_engine: Engine, zone: str
) -> None:
    _plan(write_engine, "starter", 20_000, 10_000)
    org, _ = new_org(write_engine, plan="starter", timezone=zone)
    march = _next_march(_clock(write_engine))
    starts, ends = _start(march, zone), _start(_following(march), zone)

    # A minute before the organization's 1 March: not begun there, nothing granted.
    before = snapshot(write_engine, org)
    ahead = grant_allowances(
        write_engine,
        month=_label(march),
        now=starts - dt.timedelta(minutes=1),
        organization_ids=[org],
    )
    assert (ahead.not_begun, ahead.allowances) == (1, 0)
    assert snapshot(write_engine, org) == before

    report = grant_allowances(write_engine, now=starts, organization_ids=[org])
    assert (report.allowances, report.allowance_credits) == (1, 20_000)
    [entry] = [e for e in _entries(write_engine, org) if e[0] == f"allowance:{_label(march)}"]
    assert entry[1:4] == (20_000, "system", f"Plan allowance for {_label(march)} (starter)")
    assert entry[4] == ends
    assert invariant_holds(write_engine, org)


def test_the_expiry_follows_the_zone_across_daylight_saving(write_engine: Engine) -> None:
    # New York's March starts in EST (UTC-5) and ends in EDT (UTC-4); Kathmandu is +5:45
    # all year.
    march = _next_march(_clock(write_engine))
    april = _following(march)
    assert _start(march, "America/New_York").hour == 5
    assert _start(april, "America/New_York").hour == 4
    assert (_start(april, "Asia/Kathmandu").hour, _start(april, "Asia/Kathmandu").minute) == (
        18,
        15,
    )
    _plan(write_engine, "starter", 20_000, 10_000)
    york, _ = new_org(write_engine, plan="starter", timezone="America/New_York")
    grant_allowances(
        write_engine,
        month=_label(march),
        now=_start(march, "America/New_York") + dt.timedelta(days=20),
        organization_ids=[york],
    )
    [entry] = _entries(write_engine, york)
    assert entry[4] == dt.datetime.combine(april, dt.time(4), dt.UTC)


def test_running_twice_grants_once(write_engine: Engine) -> None:
    _plan(write_engine, "starter", 20_000, 10_000)
    org, _ = new_org(write_engine, plan="starter", timezone="Asia/Kathmandu")
    now = _start(_next_march(_clock(write_engine)), "Asia/Kathmandu") + dt.timedelta(hours=1)
    first = grant_allowances(write_engine, now=now, organization_ids=[org])
    after = snapshot(write_engine, org)
    second = grant_allowances(write_engine, now=now, organization_ids=[org])
    assert (first.allowances, first.already) == (1, 0)
    assert second == AllowanceReport(
        month=None,
        allowances=0,
        allowance_credits=0,
        rollovers=0,
        rollover_credits=0,
        already=1,
        not_begun=0,
        over=0,
        waiting=0,
    )
    assert snapshot(write_engine, org) == after
    # A changed plan later in the month does not grant the month again.
    _plan(write_engine, "starter", 30_000, 10_000)
    assert grant_allowances(write_engine, now=now, organization_ids=[org]).allowances == 0
    assert len(_entries(write_engine, org)) == 1


def test_a_zero_allowance_grants_nothing(write_engine: Engine) -> None:
    _plan(write_engine, "starter", 0, 0)
    org, _ = new_org(write_engine, plan="starter")
    now = _start(_next_march(_clock(write_engine)), "UTC")
    before = snapshot(write_engine, org)
    report = grant_allowances(write_engine, now=now, organization_ids=[org])
    assert (report.allowances, report.already) == (0, 1)
    assert snapshot(write_engine, org) == before


# ------------------------------------------------------------------------ rollover


def test_last_months_unused_allowance_rolls_over_capped_and_expires_with_the_month(
    write_engine: Engine,
) -> None:
    _plan(write_engine, "starter", 20_000, 600)
    org, _ = new_org(write_engine, plan="starter", timezone="America/New_York")
    march = _next_march(_clock(write_engine))
    february = _label(march.replace(month=2))
    _last_month_grant(write_engine, org, f"allowance:{february}", 1_000, used=200)
    _last_month_grant(write_engine, org, f"rollover:{february}", 150)

    report = grant_allowances(
        write_engine, now=_start(march, "America/New_York"), organization_ids=[org]
    )
    assert (report.rollovers, report.rollover_credits, report.allowances) == (1, 600, 1)
    ends = _start(_following(march), "America/New_York")
    rollover = [e for e in _entries(write_engine, org) if e[0].startswith("rollover:")][-1]
    assert rollover == (
        f"rollover:{_label(march)}",
        600,
        "system",
        f"Rollover of {february}'s unused allowance into {_label(march)} (starter): "
        "950 unused, capped at 600",
        ends,
    )
    # Last month's grants were written off first, at their expiry: 800 + 150 expired.
    with write_engine.connect() as conn:
        expired = conn.execute(
            text(
                "SELECT sum(-amount) FROM credit_ledger WHERE organization_id = :org "
                "AND kind = 'expired'"
            ),
            {"org": org},
        ).scalar_one()
    assert expired == 950
    assert invariant_holds(write_engine, org)
    # Again: nothing more.
    again = grant_allowances(
        write_engine, now=_start(march, "America/New_York"), organization_ids=[org]
    )
    assert (again.rollovers, again.allowances, again.already) == (0, 0, 1)


def test_what_remained_rolls_over_whole_under_the_cap(write_engine: Engine) -> None:
    _plan(write_engine, "starter", 20_000, 10_000)
    org, _ = new_org(write_engine, plan="starter")
    march = _next_march(_clock(write_engine))
    _last_month_grant(write_engine, org, f"allowance:{march:%Y}-02", 1_000, used=300)
    report = grant_allowances(write_engine, now=_start(march, "UTC"), organization_ids=[org])
    assert (report.rollovers, report.rollover_credits) == (1, 700)
    assert _entries(write_engine, org)[-2][3].endswith("(starter): 700 unused")


def test_no_rollover_when_last_months_allowance_was_used_up(write_engine: Engine) -> None:
    _plan(write_engine, "starter", 20_000, 10_000)
    org, _ = new_org(write_engine, plan="starter")
    march = _next_march(_clock(write_engine))
    _last_month_grant(write_engine, org, f"allowance:{march:%Y}-02", 1_000, used=1_000)
    report = grant_allowances(write_engine, now=_start(march, "UTC"), organization_ids=[org])
    assert (report.rollovers, report.allowances) == (0, 1)
    assert [e[0] for e in _entries(write_engine, org)] == [
        f"allowance:{march:%Y}-02",
        f"allowance:{_label(march)}",
    ]
    # The used-up grant was marked written off: a second run does not look again.
    again = grant_allowances(write_engine, now=_start(march, "UTC"), organization_ids=[org])
    assert (again.rollovers, again.waiting, again.already) == (0, 0, 1)


def test_a_rollover_waits_until_last_months_grants_are_written_off(write_engine: Engine) -> None:
    _plan(write_engine, "starter", 20_000, 10_000)
    org, _ = new_org(write_engine, plan="starter")
    march = _next_march(_clock(write_engine))
    # Not yet past its expiry by the database's clock: nothing to know the rollover from.
    _last_month_grant(write_engine, org, f"allowance:{march:%Y}-02", 1_000, due=False)
    report = grant_allowances(write_engine, now=_start(march, "UTC"), organization_ids=[org])
    assert (report.waiting, report.rollovers, report.allowances) == (1, 0, 1)
    assert invariant_holds(write_engine, org)


# ------------------------------------------------------------------------ refusals


@pytest.mark.parametrize("month", ["2026-13", "26-12", "2026-1", "", "2026-12-01", "next"])
def test_a_month_not_written_yyyy_mm_is_refused_with_a_sentence(
    write_engine: Engine, month: str
) -> None:
    org, _ = new_org(write_engine, plan="starter")
    before = snapshot(write_engine, org)
    with pytest.raises(InvalidAllowance, match=r"^The month must be written YYYY-MM.*granted\.$"):
        grant_allowances(write_engine, month=month, organization_ids=[org])
    assert snapshot(write_engine, org) == before


def test_a_month_over_in_every_zone_is_refused(write_engine: Engine) -> None:
    org, _ = new_org(write_engine, plan="starter", timezone="Pacific/Kiritimati")
    before = snapshot(write_engine, org)
    now = dt.datetime(2027, 2, 1, 12, tzinfo=dt.UTC)
    with pytest.raises(InvalidAllowance, match="2027-01 is over in every time zone"):
        grant_allowances(write_engine, month="2027-01", now=now, organization_ids=[org])
    assert snapshot(write_engine, org) == before
    assert check_month(" 2027-01 ") == dt.date(2027, 1, 1)


def test_a_month_over_for_one_organization_is_skipped_for_it(write_engine: Engine) -> None:
    _plan(write_engine, "starter", 20_000, 10_000)
    march = _next_march(_clock(write_engine))
    # 1 April 02:00 UTC: March is over in UTC, still under way in New York.
    now = dt.datetime.combine(_following(march), dt.time(2), dt.UTC)
    utc, _ = new_org(write_engine, plan="starter")
    york, _ = new_org(write_engine, plan="starter", timezone="America/New_York")
    report = grant_allowances(
        write_engine, month=_label(march), now=now, organization_ids=[utc, york]
    )
    assert (report.over, report.allowances) == (1, 1)
    assert _entries(write_engine, utc) == []


# ------------------------------------------------------------------ plan allowances


def test_set_plan_allowance_records_who_why_and_what_it_was(write_engine: Engine) -> None:
    _plan(write_engine, "enterprise", 1_000_000, 500_000)
    key = f"k-{uuid.uuid4()}"
    change = set_plan_allowance(
        write_engine,
        plan="enterprise",
        monthly_allowance=1_200_000,
        rollover_cap=600_000,
        actor=" Ada@Admin.example ",
        reason="2027 price list",
        idempotency_key=key,
    )
    assert (change.old_monthly_allowance, change.old_rollover_cap) == (1_000_000, 500_000)
    assert (change.monthly_allowance, change.rollover_cap) == (1_200_000, 600_000)
    assert (change.actor, change.reason) == ("ada@admin.example", "2027 price list")
    with write_engine.connect() as conn:
        [enterprise] = [a for a in plan_allowances(conn) if a.plan == "enterprise"]
        assert [a.plan for a in plan_allowances(conn)] == ["free", "starter", "pro", "enterprise"]
        audit = conn.execute(
            text("SELECT actor, reason FROM plan_allowance_changes WHERE idempotency_key = :k"),
            {"k": key},
        ).one()
    assert (enterprise.monthly_allowance, enterprise.rollover_cap) == (1_200_000, 600_000)
    assert enterprise.updated_by == "ada@admin.example"
    assert tuple(audit) == ("ada@admin.example", "2027 price list")

    # The same key again: the first answer, nothing new; different details: refused.
    again = set_plan_allowance(
        write_engine,
        plan="enterprise",
        monthly_allowance=1_200_000,
        rollover_cap=600_000,
        actor="ada@admin.example",
        reason="2027 price list",
        idempotency_key=key,
    )
    assert again == change
    with pytest.raises(IdempotencyConflict):
        set_plan_allowance(
            write_engine,
            plan="enterprise",
            monthly_allowance=5,
            rollover_cap=600_000,
            actor="ada@admin.example",
            reason="2027 price list",
            idempotency_key=key,
        )


@pytest.mark.parametrize(
    ("changes", "sentence"),
    [
        ({"plan": "gold"}, "The plan must be one of free, starter, pro, enterprise"),
        ({"monthly_allowance": -1}, "The monthly allowance must be from 0 to 1,000,000,000"),
        ({"rollover_cap": 1.5}, "The rollover cap must be a whole number"),
        ({"reason": "  "}, "The reason cannot be empty"),
        ({"idempotency_key": "allowance:2026-12"}, "may not start with 'allowance'"),
    ],
)
def test_a_bad_plan_allowance_is_refused_and_nothing_is_written(
    write_engine: Engine, changes: dict[str, object], sentence: str
) -> None:
    with write_engine.connect() as conn:
        before = plan_allowances(conn)
        count = conn.execute(text("SELECT count(*) FROM plan_allowance_changes")).scalar_one()
    values: dict[str, object] = {
        "plan": "pro",
        "monthly_allowance": 1,
        "rollover_cap": 1,
        "actor": ADMIN,
        "reason": "Typo",
        "idempotency_key": f"k-{uuid.uuid4()}",
        **changes,
    }
    with pytest.raises(InvalidAllowance, match=sentence):
        set_plan_allowance(write_engine, **values)  # type: ignore[arg-type]
    with write_engine.connect() as conn:
        assert plan_allowances(conn) == before
        assert (
            conn.execute(text("SELECT count(*) FROM plan_allowance_changes")).scalar_one() == count
        )


def test_plan_allowance_changes_are_append_only(write_engine: Engine) -> None:
    _plan(write_engine, "free", 1_000, 0)
    with pytest.raises(Exception, match="append-only"), write_engine.begin() as conn:
        conn.execute(text("DELETE FROM plan_allowance_changes"))


def test_a_run_with_nothing_left_to_grant_reads_once_and_writes_nothing(
    write_engine: Engine,
) -> None:
    _plan(write_engine, "starter", 20_000, 10_000)
    orgs = [new_org(write_engine, plan="starter", timezone=z)[0] for z in ("UTC", "Asia/Tokyo")]
    now = _start(_next_march(_clock(write_engine)), "Asia/Tokyo") + dt.timedelta(days=2)
    assert grant_allowances(write_engine, now=now, organization_ids=orgs).allowances == 2
    with recording(write_engine) as sent:
        again = grant_allowances(write_engine, now=now, organization_ids=orgs)
    assert again.already == 2
    # The clock and one statement for the batch of candidates; no transaction at all.
    assert sent.count == 2, [s for s, _ in sent.statements]


def test_a_rollover_is_the_same_after_expire_credits_ran_first(write_engine: Engine) -> None:
    _plan(write_engine, "starter", 20_000, 10_000)
    org, _ = new_org(write_engine, plan="starter")
    march = _next_march(_clock(write_engine))
    _last_month_grant(write_engine, org, f"allowance:{march:%Y}-02", 1_000, used=400)
    assert expire_credits(write_engine, organization_ids=[org]).credits == 600
    report = grant_allowances(write_engine, now=_start(march, "UTC"), organization_ids=[org])
    assert (report.rollovers, report.rollover_credits) == (1, 600)
