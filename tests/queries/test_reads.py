"""What the read functions answer, on small hand-made data whose answers we know."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

import pandas as pd
import pytest
from sqlalchemy import Connection, text

from queries import audit, generations, orgs, quotas, timelines, usage
from queries.errors import InvalidInput
from tests.factories import add_generations, add_ledger, ensure_types, make_org, make_user

UTC = dt.UTC
D = dt.date


@pytest.fixture
def tokyo(connection: Connection) -> dict[str, Any]:
    """An organization in Asia/Tokyo (UTC+9) with two users and known generations."""
    ensure_types(connection)
    org = make_org(connection, name="Tokyo Studio", timezone="Asia/Tokyo", balance=0)
    ana, ben = make_user(connection, org, name="Ana"), make_user(connection, org, name="Ben")
    add_ledger(connection, org, [(1000, "grant", "Plan", dt.datetime(2026, 10, 1, tzinfo=UTC))])
    add_generations(
        connection,
        org,
        [
            # 2026-11-02 20:00 UTC is 2026-11-03 05:00 in Tokyo.
            (ana, "chat", 1, dt.datetime(2026, 11, 2, 20, tzinfo=UTC)),
            (ana, "image", 4, dt.datetime(2026, 11, 3, 1, tzinfo=UTC)),
            (ben, "image", 4, dt.datetime(2026, 11, 5, 3, tzinfo=UTC)),
            (ben, "video", 40, dt.datetime(2026, 11, 10, 3, tzinfo=UTC)),
            # Previous period (Oct 27 - Nov 2 local): one generation by Ana.
            (ana, "chat", 1, dt.datetime(2026, 10, 30, 3, tzinfo=UTC)),
        ],
    )
    return {"org": org, "ana": ana, "ben": ben}


def test_daily_timeline_is_bucketed_in_local_time_and_zero_filled(
    connection: Connection, tokyo: dict[str, Any]
) -> None:
    df = timelines.generation_timeline(
        connection, organization_id=tokyo["org"], start=D(2026, 11, 2), end=D(2026, 11, 5)
    )
    assert [(b.date(), g, c) for b, g, c in df.itertuples(index=False)] == [
        (D(2026, 11, 2), 0, 0),
        (D(2026, 11, 3), 2, 5),  # 20:00 UTC on the 2nd counts for the 3rd in Tokyo
        (D(2026, 11, 4), 0, 0),
        (D(2026, 11, 5), 1, 4),
    ]
    utc = timelines.generation_timeline(
        connection, organization_id=tokyo["org"], start=D(2026, 11, 2), end=D(2026, 11, 5), utc=True
    )
    assert list(utc["generations"]) == [1, 1, 0, 1]


def test_timeline_by_type_week_and_month(connection: Connection, tokyo: dict[str, Any]) -> None:
    weekly = timelines.generation_timeline(
        connection,
        organization_id=tokyo["org"],
        start=D(2026, 11, 1),
        end=D(2026, 11, 14),
        granularity="week",
        by_type=True,
    )
    # Weeks start on Monday: Oct 26, Nov 2, Nov 9; three types each, zero-filled.
    assert sorted({b.date() for b in weekly["bucket"]}) == [
        D(2026, 10, 26),
        D(2026, 11, 2),
        D(2026, 11, 9),
    ]
    assert len(weekly) == 9
    week2 = weekly[weekly["bucket"] == "2026-11-02"].set_index("type")["credits"].to_dict()
    assert week2 == {"chat": 1, "image": 8, "video": 0}
    monthly = timelines.generation_timeline(
        connection,
        organization_id=tokyo["org"],
        start=D(2026, 10, 1),
        end=D(2026, 11, 30),
        granularity="month",
    )
    assert list(monthly["generations"]) == [1, 4] and list(monthly["credits"]) == [1, 49]


def test_user_timeline_and_top_users(connection: Connection, tokyo: dict[str, Any]) -> None:
    ben = timelines.user_timeline(
        connection,
        organization_id=tokyo["org"],
        user_id=tokyo["ben"],
        start=D(2026, 11, 1),
        end=D(2026, 11, 30),
        granularity="month",
    )
    assert list(ben["generations"]) == [2] and list(ben["credits"]) == [44]
    top = timelines.top_users(
        connection, organization_id=tokyo["org"], start=D(2026, 11, 1), end=D(2026, 11, 30)
    )
    assert list(top["name"]) == ["Ben", "Ana"]
    assert list(top["credits"]) == [44, 5]
    assert top["credit_share"].sum() == pytest.approx(1.0)


def test_kpis_compare_with_the_previous_period_of_equal_length(
    connection: Connection, tokyo: dict[str, Any]
) -> None:
    kpis = timelines.period_kpis(
        connection, organization_id=tokyo["org"], start=D(2026, 11, 3), end=D(2026, 11, 9)
    )
    assert (kpis.generations, kpis.credits, kpis.active_users) == (3, 9, 2)
    assert (kpis.previous_generations, kpis.previous_credits, kpis.previous_active_users) == (
        1,
        1,
        1,
    )
    assert kpis.generations_change == pytest.approx(2.0)
    assert kpis.active_users_change == pytest.approx(1.0)
    in_utc = timelines.period_kpis(
        connection, organization_id=tokyo["org"], start=D(2026, 11, 3), end=D(2026, 11, 9), utc=True
    )
    # In UTC, 2026-11-02 20:00 belongs to the previous period.
    assert (in_utc.generations, in_utc.credits) == (2, 8)
    assert (in_utc.previous_generations, in_utc.previous_credits) == (2, 2)
    empty = timelines.period_kpis(
        connection, organization_id=tokyo["org"], start=D(2025, 1, 1), end=D(2025, 1, 7)
    )
    assert empty.generations == 0 and empty.generations_change is None


def test_kpis_say_how_much_of_the_previous_period_has_data(
    connection: Connection, tokyo: dict[str, Any]
) -> None:
    # Tokyo's first generation is on 30 Oct (local and UTC): of the previous period
    # 27 Oct - 2 Nov, only 30 Oct - 2 Nov has data.
    for utc in (False, True):
        kpis = timelines.period_kpis(
            connection,
            organization_id=tokyo["org"],
            start=D(2026, 11, 3),
            end=D(2026, 11, 9),
            utc=utc,
        )
        assert kpis.first_day == D(2026, 10, 30)
        assert (kpis.previous_days_with_data, kpis.previous_days) == (4, 7)
        assert kpis.previous_partly_covered
    whole = timelines.period_kpis(
        connection, organization_id=tokyo["org"], start=D(2026, 11, 10), end=D(2026, 11, 11)
    )
    assert (whole.previous_days_with_data, whole.previous_partly_covered) == (2, False)
    before = timelines.period_kpis(
        connection, organization_id=tokyo["org"], start=D(2026, 10, 1), end=D(2026, 10, 7)
    )
    assert (before.previous_days_with_data, before.previous_partly_covered) == (0, True)

    # First used inside the previous period, in a +5:45 zone: 20:00 UTC on 1 Nov is
    # 2 Nov 01:45 in Kathmandu, so one day of seven has data (in UTC: two).
    ensure_types(connection)
    new = make_org(connection, timezone="Asia/Kathmandu", balance=10)
    user = make_user(connection, new)
    add_generations(connection, new, [(user, "chat", 1, dt.datetime(2026, 11, 1, 20, tzinfo=UTC))])
    kpis = timelines.period_kpis(
        connection, organization_id=new, start=D(2026, 11, 3), end=D(2026, 11, 9)
    )
    assert (kpis.first_day, kpis.previous_days_with_data) == (D(2026, 11, 2), 1)
    kpis = timelines.period_kpis(
        connection, organization_id=new, start=D(2026, 11, 3), end=D(2026, 11, 9), utc=True
    )
    assert (kpis.first_day, kpis.previous_days_with_data) == (D(2026, 11, 1), 2)


def test_finance_usage_ranking_and_monthly_trend(
    connection: Connection, tokyo: dict[str, Any]
) -> None:
    small = make_org(connection, name="Small Co", timezone="UTC")
    user = make_user(connection, small)
    add_ledger(connection, small, [(100, "grant", "Plan", dt.datetime(2026, 11, 1, tzinfo=UTC))])
    add_generations(connection, small, [(user, "chat", 1, dt.datetime(2026, 11, 4, tzinfo=UTC))])
    ranked = usage.all_orgs_usage(connection, start=D(2026, 11, 1), end=D(2026, 11, 30))
    mine = ranked[ranked["organization_id"].isin([tokyo["org"], small])]
    assert list(mine["name"]) == ["Tokyo Studio", "Small Co"]
    assert list(mine["credits_consumed"]) == [49, 1]
    assert list(mine["credits_granted"]) == [0, 100]
    assert list(mine["balance"]) == [1000 - 50, 99]
    monthly = usage.all_orgs_monthly_credits(connection, start=D(2026, 10, 1), end=D(2026, 11, 30))
    assert list(monthly["month"].dt.date) == [D(2026, 10, 1), D(2026, 11, 1)]


def test_granted_vs_consumed_and_runway(connection: Connection, tokyo: dict[str, Any]) -> None:
    df = usage.credits_granted_vs_consumed(
        connection, organization_id=tokyo["org"], start=D(2026, 10, 1), end=D(2026, 11, 30)
    )
    assert list(df["credits_granted"]) == [1000, 0]
    assert list(df["credits_consumed"]) == [1, 49]
    runway = usage.balance_and_runway(connection, organization_id=tokyo["org"])
    assert runway is not None and runway.balance == 950
    assert usage.balance_and_runway(connection, organization_id=987_654_321) is None


def test_runway_is_balance_over_average_daily_burn(connection: Connection) -> None:
    ensure_types(connection)
    org = make_org(connection, timezone="UTC", balance=0)
    user = make_user(connection, org)
    add_ledger(connection, org, [(3000, "grant", "Plan", dt.datetime(2026, 1, 1, tzinfo=UTC))])
    today = connection.execute(text("SELECT (now() AT TIME ZONE 'UTC')::date")).scalar_one()
    rows = [
        (user, "video", 40, dt.datetime.combine(today - dt.timedelta(days=d), dt.time(12), UTC))
        for d in range(1, 31)
    ]
    rows.append(
        (user, "video", 40, dt.datetime.combine(today, dt.time(0, 1), UTC))
    )  # today: not in the burn
    add_generations(connection, org, rows)
    runway = usage.balance_and_runway(connection, organization_id=org)
    assert runway is not None
    assert runway.balance == 3000 - 31 * 40
    assert runway.daily_burn == pytest.approx(40)
    assert runway.runway_days == pytest.approx((3000 - 31 * 40) / 40)


def test_ledger_filters_and_keyset_pages(connection: Connection) -> None:
    ensure_types(connection)
    org = make_org(connection, timezone="UTC", balance=0)
    entries = [
        (10 * (i + 1), "grant", f"Grant {i}", dt.datetime(2026, 11, 1 + i, tzinfo=UTC))
        for i in range(7)
    ]
    add_ledger(connection, org, entries, actor="maria@finance.example")
    add_ledger(
        connection,
        org,
        [(-5, "deduct", "Fix", dt.datetime(2026, 11, 9, tzinfo=UTC))],
        actor="tom_o@finance.example",
    )
    seen: list[int] = []
    page = usage.ledger_page(connection, organization_id=org, limit=3)
    while True:
        seen += list(page.entries["amount"])
        if page.next_cursor is None:
            break
        page = usage.ledger_page(connection, organization_id=org, limit=3, after=page.next_cursor)
    assert seen == [-5, 70, 60, 50, 40, 30, 20, 10]
    deducts = usage.ledger_page(connection, organization_id=org, kinds=["deduct"])
    assert list(deducts.entries["reason"]) == ["Fix"]
    by_actor = usage.ledger_page(connection, organization_id=org, actor="TOM_")
    assert list(by_actor.entries["amount"]) == [-5]
    assert usage.ledger_page(connection, organization_id=org, actor="%").entries.empty  # literal %
    ranged = usage.ledger_page(
        connection, organization_id=org, start=D(2026, 11, 2), end=D(2026, 11, 3)
    )
    assert list(ranged.entries["amount"]) == [30, 20]


def test_one_ledger_entry_is_read_on_its_organizations_key_only(connection: Connection) -> None:
    ensure_types(connection)
    mine = make_org(connection, timezone="UTC", balance=0)
    theirs = make_org(connection, timezone="UTC", balance=0)
    add_ledger(connection, mine, [(40, "grant", "Plan", dt.datetime(2026, 11, 1, tzinfo=UTC))])
    add_ledger(connection, theirs, [(90, "grant", "Plan", dt.datetime(2026, 11, 2, tzinfo=UTC))])
    add_ledger(
        connection,
        mine,
        [(-5, "deduct", "Fix", dt.datetime(2026, 11, 3, tzinfo=UTC))],
        actor="tom@finance.example",
    )
    deduct, grant = (
        int(i) for i in usage.ledger_page(connection, organization_id=mine).entries["id"]
    )
    # The deduction reversed: the entry read names the entry that reversed it.
    reversal = connection.execute(
        text(
            "INSERT INTO credit_ledger (organization_id, amount, kind, reason, actor, "
            "idempotency_key, reverses_id, created_at) VALUES (:org, 5, 'reversal', 'Undo', "
            "'tom@finance.example', 'reversal:' || CAST(:entry AS text), :entry, '2026-11-04Z') "
            "RETURNING id"
        ),
        {"org": mine, "entry": deduct},
    ).scalar_one()
    ledger = usage.ledger_page(connection, organization_id=mine).entries
    their_entry = int(usage.ledger_page(connection, organization_id=theirs).entries["id"][0])

    found = usage.ledger_entry(connection, organization_id=mine, entry_id=deduct)
    # The row the ledger shows for it, column for column.
    pd.testing.assert_frame_equal(found, ledger[ledger["id"] == deduct].reset_index(drop=True))
    assert (found["amount"][0], found["actor"][0]) == (-5, "tom@finance.example")
    assert found["reversed_by_id"][0] == reversal
    undo = usage.ledger_entry(connection, organization_id=mine, entry_id=reversal)
    assert undo["reverses_id"][0] == deduct and pd.isna(undo["reversed_by_id"][0])

    # Another organization's entry is not found, as one that does not exist: no row, the
    # same columns.
    for organization_id, entry_id in [(mine, their_entry), (theirs, grant), (mine, 2**62)]:
        missing = usage.ledger_entry(connection, organization_id=organization_id, entry_id=entry_id)
        assert missing.empty and list(missing.columns) == list(usage.LEDGER_COLUMNS)


def test_quota_utilization_alerts_and_history(connection: Connection) -> None:
    ensure_types(connection)
    org = make_org(connection, name="Quota Co", timezone="UTC")
    rows = [
        ("chat", 85, 100),
        ("image", 100, 100),
        ("video", 12, 10),
    ]
    for type_, used, limit in rows:
        connection.execute(
            text(
                "INSERT INTO usage_limits (organization_id, type, date, used, daily_limit) VALUES (:o, :t, :d, :u, :l)"
            ),
            {"o": org, "t": type_, "d": D(2030, 1, 5), "u": used, "l": limit},
        )
    connection.execute(
        text(
            "INSERT INTO usage_limits (organization_id, type, date, used, daily_limit) VALUES (:o, 'chat', :d, 10, 100)"
        ),
        {"o": org, "d": D(2030, 1, 3)},
    )
    util = quotas.all_orgs_quota_utilization(connection, day=D(2030, 1, 5))
    mine = util[util["organization_id"] == org]
    assert list(mine["type"]) == ["video", "image", "chat"]
    assert list(mine["status"]) == ["over", "at limit", "near"]
    alerts = quotas.all_orgs_quota_alerts(connection, day=D(2030, 1, 5), threshold=0.9)
    assert list(alerts[alerts["organization_id"] == org]["type"]) == ["video", "image"]
    history = quotas.quota_history(
        connection, organization_id=org, start=D(2030, 1, 3), end=D(2030, 1, 5), type="chat"
    )
    assert list(history["used"]) == [10, 0, 85]
    assert history["daily_limit"].isna().tolist() == [False, True, False]


def test_recent_generations_pages_by_keyset_without_gaps_or_repeats(connection: Connection) -> None:
    ensure_types(connection)
    org = make_org(connection)
    a, b = make_user(connection, org), make_user(connection, org)
    add_ledger(connection, org, [(100, "grant", "Plan", dt.datetime(2026, 11, 1, tzinfo=UTC))])
    same_instant = dt.datetime(2026, 11, 5, 12, tzinfo=UTC)
    add_generations(
        connection,
        org,
        [(a if i % 2 else b, "chat", 1, same_instant) for i in range(5)]
        + [(a, "image", 4, same_instant + dt.timedelta(minutes=i)) for i in range(1, 6)],
    )
    ids: list[int] = []
    page = generations.recent_generations(connection, organization_id=org, limit=3)
    while True:
        ids += list(page.rows["id"])
        if page.next_cursor is None:
            break
        page = generations.recent_generations(
            connection, organization_id=org, limit=3, before=page.next_cursor
        )
    everything = (
        connection.execute(
            text(
                "SELECT id FROM generations WHERE organization_id = :o ORDER BY created_at DESC, id DESC"
            ),
            {"o": org},
        )
        .scalars()
        .all()
    )
    assert ids == everything
    only_b = generations.recent_generations(connection, organization_id=org, user_id=b, limit=50)
    assert set(only_b.rows["user_id"]) == {b} and len(only_b.rows) == 3


def test_audit_trail_lists_credit_and_limit_changes(connection: Connection) -> None:
    ensure_types(connection)
    org = make_org(connection, name="Audited")
    add_ledger(
        connection,
        org,
        [(50, "grant", "Promo", dt.datetime(2030, 6, 1, 9, tzinfo=UTC))],
        actor="maria@x.com",
    )
    connection.execute(
        text(
            "INSERT INTO audit_log (organization_id, action, actor, reason, details, created_at) VALUES "
            '(:o, \'set_daily_limit\', \'sam@x.com\', \'Cap\', \'{"type": "chat", "old_limit": 5, "new_limit": 9, "effective": "2030-06-02"}\', :at)'
        ),
        {"o": org, "at": dt.datetime(2030, 6, 2, 9, tzinfo=UTC)},
    )
    trail = audit.all_orgs_audit_trail(
        connection, start=D(2030, 6, 1), end=D(2030, 6, 2), organization_id=org
    )
    assert list(trail["action"]) == ["set_daily_limit", "grant"]
    assert "limit 5 → 9" in trail.iloc[0]["details"]
    assert list(
        audit.all_orgs_audit_trail(
            connection, start=D(2030, 6, 1), end=D(2030, 6, 2), actor="MARIA"
        )["action"]
    ) == ["grant"]


def test_audit_trail_names_the_ledger_entry_of_each_credit_change(connection: Connection) -> None:
    ensure_types(connection)
    org = make_org(connection, name="Entries in the trail")
    add_ledger(connection, org, [(50, "grant", "Promo", dt.datetime(2030, 6, 1, 9, tzinfo=UTC))])
    (grant,) = usage.ledger_page(connection, organization_id=org).entries["id"]
    # An approval names the entry it booked; a limit change none; and a value in the JSON
    # that is no entry number is no entry (never an error).
    for hour, action, details in [
        (10, "approve_adjustment", f'{{"request_id": 3, "ledger_entry_id": {grant}}}'),
        (11, "set_daily_limit", '{"type": "chat", "old_limit": 5, "new_limit": 9}'),
        (12, "approve_adjustment", '{"request_id": 4, "ledger_entry_id": "12; DROP"}'),
    ]:
        connection.execute(
            text(
                "INSERT INTO audit_log (organization_id, action, actor, reason, details, "
                "created_at) VALUES (:o, :action, 'sam@x.com', 'Test', CAST(:details AS jsonb), "
                ":at)"
            ),
            {
                "o": org,
                "action": action,
                "details": details,
                "at": dt.datetime(2030, 6, 1, hour, tzinfo=UTC),
            },
        )
    trail = audit.all_orgs_audit_trail(
        connection, start=D(2030, 6, 1), end=D(2030, 6, 1), organization_id=org, sort="oldest"
    )
    assert trail["ledger_entry_id"].dtype == "Int64"
    assert [
        (action, None if pd.isna(entry) else int(entry))
        for action, entry in zip(trail["action"], trail["ledger_entry_id"], strict=True)
    ] == [
        ("grant", grant),
        ("approve_adjustment", grant),
        ("set_daily_limit", None),
        ("approve_adjustment", None),
    ]


def test_audit_trail_days_are_those_of_the_zone_asked_for(connection: Connection) -> None:
    """A change at 23:30 UTC on 1 June is on 2 June in Kolkata (+5:30) and on 1 June in
    New York (-4): the range's day boundaries are the zone's local midnights."""
    ensure_types(connection)
    org = make_org(connection, name="Zoned trail")
    late = dt.datetime(2030, 6, 1, 23, 30, tzinfo=UTC)
    add_ledger(connection, org, [(7, "grant", "Late", late)], actor="z@x.com")

    def on(day: dt.date, zone: str) -> int:
        trail = audit.all_orgs_audit_trail(
            connection, start=day, end=day, organization_id=org, timezone=zone
        )
        return len(trail)

    assert (on(D(2030, 6, 1), "UTC"), on(D(2030, 6, 2), "UTC")) == (1, 0)
    assert (on(D(2030, 6, 1), "Asia/Kolkata"), on(D(2030, 6, 2), "Asia/Kolkata")) == (0, 1)
    assert (on(D(2030, 6, 1), "America/New_York"), on(D(2030, 6, 2), "America/New_York")) == (
        1,
        0,
    )
    with pytest.raises(InvalidInput):
        audit.all_orgs_audit_trail(
            connection, start=D(2030, 6, 1), end=D(2030, 6, 1), timezone="Mars/Base"
        )


def test_audit_trail_pages_by_keyset_without_gaps_or_repeats(connection: Connection) -> None:
    """Ledger entries and limit changes at the very same instants, in two organizations:
    the pages (of 3) together are the whole trail, in its order, each row once."""
    ensure_types(connection)
    orgs_ = [make_org(connection, name=f"Paged {i}") for i in range(2)]
    instants = [dt.datetime(2030, 7, 1, 9, tzinfo=UTC), dt.datetime(2030, 7, 1, 10, tzinfo=UTC)]
    for org in orgs_:
        for at in instants:
            add_ledger(connection, org, [(5, "grant", "Same time", at)] * 2, actor="a@x.com")
            connection.execute(
                text(
                    "INSERT INTO audit_log (organization_id, action, actor, reason, created_at) "
                    "VALUES (:o, 'set_daily_limit', 'b@x.com', 'Same time', :at)"
                ),
                {"o": org, "at": at},
            )
    day = D(2030, 7, 1)
    whole = audit.all_orgs_audit_trail(connection, start=day, end=day, limit=100)
    assert len(whole) == 12
    seen: list[pd.DataFrame] = []
    page = audit.all_orgs_audit_page(connection, start=day, end=day, limit=3)
    seen.append(page.rows)
    while page.next_cursor is not None:
        page = audit.all_orgs_audit_page(
            connection, start=day, end=day, limit=3, after=page.next_cursor
        )
        seen.append(page.rows)
    assert [len(rows) for rows in seen] == [3, 3, 3, 3]
    pd.testing.assert_frame_equal(pd.concat(seen, ignore_index=True), whole)
    assert list(whole["at"]) == sorted(whole["at"], reverse=True)


def test_org_pickers(connection: Connection, tokyo: dict[str, Any]) -> None:
    info = orgs.get_organization(connection, organization_id=tokyo["org"])
    assert info is not None and (info.name, info.timezone, info.users, info.balance) == (
        "Tokyo Studio",
        "Asia/Tokyo",
        2,
        950,
    )
    assert orgs.get_organization(connection, organization_id=987_654_321) is None
    assert "Tokyo Studio" in set(orgs.list_organizations(connection)["name"])
    assert list(orgs.list_users(connection, organization_id=tokyo["org"])["name"]) == ["Ana", "Ben"]


BAD_READS = [
    (
        "start after end",
        lambda c: timelines.generation_timeline(
            c, organization_id=1, start=D(2026, 2, 1), end=D(2026, 1, 1)
        ),
        "is after the end date",
    ),
    (
        "datetime as date",
        lambda c: timelines.top_users(
            c, organization_id=1, start=dt.datetime(2026, 1, 1), end=D(2026, 1, 2)
        ),
        "must be a date",
    ),
    (
        "text date",
        lambda c: usage.all_orgs_usage(c, start=cast(Any, "2026-01-01"), end=D(2026, 1, 2)),
        "must be a date",
    ),
    (
        "huge range",
        lambda c: usage.all_orgs_usage(c, start=D(2000, 1, 1), end=D(2026, 1, 2)),
        "at most",
    ),
    (
        "bad granularity",
        lambda c: timelines.generation_timeline(
            c, organization_id=1, start=D(2026, 1, 1), end=D(2026, 1, 2), granularity="hour"
        ),
        "Granularity",
    ),
    (
        "org id zero",
        lambda c: timelines.period_kpis(
            c, organization_id=0, start=D(2026, 1, 1), end=D(2026, 1, 2)
        ),
        "organization_id",
    ),
    (
        "org id text",
        lambda c: orgs.list_users(c, organization_id=cast(Any, "1")),
        "organization_id",
    ),
    (
        "unknown kind",
        lambda c: usage.ledger_page(c, organization_id=1, kinds=["gift"]),
        "Unknown ledger kind",
    ),
    (
        "page size 0",
        lambda c: generations.recent_generations(c, organization_id=1, limit=0),
        "Page size",
    ),
    ("page size huge", lambda c: usage.ledger_page(c, organization_id=1, limit=10**6), "Page size"),
    ("entry id zero", lambda c: usage.ledger_entry(c, organization_id=1, entry_id=0), "entry_id"),
    (
        "entry id negative",
        lambda c: usage.ledger_entry(c, organization_id=1, entry_id=-3),
        "entry_id",
    ),
    (
        "entry id text",
        lambda c: usage.ledger_entry(c, organization_id=1, entry_id=cast(Any, "7")),
        "entry_id",
    ),
    ("bad threshold", lambda c: quotas.all_orgs_quota_alerts(c, threshold=80), "fraction"),
    (
        "bad audit action",
        lambda c: audit.all_orgs_audit_trail(
            c, start=D(2026, 1, 1), end=D(2026, 1, 2), action="drop"
        ),
        "Unknown action",
    ),
    (
        "bad cursor",
        lambda c: generations.recent_generations(
            c, organization_id=1, before=cast(Any, "yesterday")
        ),
        "next_cursor",
    ),
]


@pytest.mark.parametrize(("case", "call", "message"), BAD_READS, ids=[c[0] for c in BAD_READS])
def test_bad_read_arguments_get_a_sentence(
    connection: Connection, case: str, call: Any, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        call(connection)
