"""The limit in force: one rule in the database (``limit_in_force``, migration 0010),
and every writer and reader of a day's limit agrees with it.

The rule: a day's own ``usage_limits`` row's limit, else the latest earlier day's, else
the type's default times the plan's factor (rounded down).
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from fractions import Fraction

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, text

from queries.generations import record_generation
from queries.models import PLAN_LIMIT_FACTOR, PLANS
from queries.orgs import set_timezone
from queries.quotas import limits_in_force, set_daily_limit
from tests.factories import TYPES, ensure_types, make_org
from tests.queries.writes import new_org

DEFAULTS = {t: limit for t, _, _, limit in TYPES}
DAY0 = dt.date(2031, 1, 1)


def test_every_plan_has_one_factor_and_python_mirrors_the_databases(
    connection: Connection,
) -> None:
    assert set(PLAN_LIMIT_FACTOR) == set(PLANS)
    factors: dict[str, Decimal] = dict(
        connection.execute(
            text("SELECT p, plan_limit_factor(p) FROM unnest(CAST(:plans AS text[])) AS p"),
            {"plans": list(PLANS)},
        ).all()
    )
    assert factors == {plan: Decimal(str(PLAN_LIMIT_FACTOR[plan])) for plan in PLANS}


def _rule(
    history: dict[tuple[str, int], int], plan: str, type: str, day: int
) -> tuple[int, int | None]:
    """The limit in force, and the day of the row it comes from, as the issue states it."""
    days = [d for (t, d) in history if t == type and d <= day]
    if days:
        return history[(type, max(days))], max(days)
    return math.floor(DEFAULTS[type] * Fraction(str(PLAN_LIMIT_FACTOR[plan]))), None


def _expected(
    history: dict[tuple[str, int], int], plan: str, type: str, day: int
) -> tuple[str, int, str, dt.date | None]:
    limit, since = _rule(history, plan, type, day)
    if since is None:
        return type, limit, f"{plan} plan default", None
    on = DAY0 + dt.timedelta(days=since)
    return type, limit, f"set for {on}", on


def _plain(rows: pd.DataFrame) -> list[tuple[str, int, str, dt.date | None]]:
    return [
        (
            r["type"],
            int(r["daily_limit"]),
            r["source"],
            None if pd.isna(r["since"]) else r["since"].date(),
        )
        for r in rows.to_dict("records")
    ]


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    plan=st.sampled_from(PLANS),
    history=st.dictionaries(
        st.tuples(st.sampled_from(sorted(DEFAULTS)), st.integers(0, 20)),
        st.integers(0, 10_000_000),
        max_size=12,
    ),
    days=st.lists(st.integers(-2, 23), min_size=1, max_size=4),
)
def test_the_limit_in_force_is_the_days_row_else_the_latest_earlier_else_the_plan_default(
    connection: Connection, plan: str, history: dict[tuple[str, int], int], days: list[int]
) -> None:
    ensure_types(connection)
    with connection.begin_nested() as example:
        org = make_org(connection, plan=plan)
        if history:
            connection.execute(
                text(
                    "INSERT INTO usage_limits "
                    "(organization_id, type, date, used, credits_used, daily_limit) "
                    "VALUES (:org, :type, :date, 0, 0, :limit)"
                ),
                [
                    {"org": org, "type": t, "date": DAY0 + dt.timedelta(days=d), "limit": limit}
                    for (t, d), limit in history.items()
                ],
            )
        for day in days:
            got = limits_in_force(
                connection, organization_id=org, day=DAY0 + dt.timedelta(days=day)
            )
            assert _plain(got) == [_expected(history, plan, t, day) for t in sorted(DEFAULTS)]
        example.rollback()


def test_an_unknown_organization_or_type_has_no_limit(connection: Connection) -> None:
    ensure_types(connection)
    org = make_org(connection)
    assert limits_in_force(connection, organization_id=10**12).empty
    unknown = connection.execute(
        text("SELECT daily_limit, since FROM limit_in_force(:org, 'no such type', :day)"),
        {"org": org, "day": DAY0},
    ).one()
    assert tuple(unknown) == (None, None)


@pytest.mark.parametrize("plan", ["free", "starter", "enterprise"])
def test_writes_and_the_page_use_the_same_limit(write_engine: Engine, plan: str) -> None:
    org, (user,) = new_org(write_engine, balance=10_000, plan=plan)
    default = math.floor(DEFAULTS["image"] * Fraction(str(PLAN_LIMIT_FACTOR[plan])))

    def shown(day: dt.date) -> tuple[int, str]:
        with write_engine.connect() as conn:
            rows = _plain(limits_in_force(conn, organization_id=org, day=day))
        return next((limit, source) for t, limit, source, _ in rows if t == "image")

    first = dt.datetime(2031, 5, 1, 9, tzinfo=dt.UTC)
    assert shown(first.date()) == (default, f"{plan} plan default")
    # A generation on a day without a row starts it with the limit the page showed.
    made = record_generation(
        write_engine, organization_id=org, user_id=user, type="image", at=first
    )
    assert made.daily_limit == default
    # A change reports the limit it replaced as the one the page showed.
    later = dt.date(2031, 5, 10)
    change = set_daily_limit(
        write_engine,
        organization_id=org,
        type="image",
        daily_limit=default + 3,
        actor="cs@example.com",
        reason="r",
        effective=later,
    )
    assert change.old_limit == shown(later)[0] - 3 == default
    assert shown(later) == (default + 3, f"set for {later}")
    assert shown(later - dt.timedelta(days=1)) == (default, "set for 2031-05-01")
    # The days between and after take the limit in force on them.
    between = record_generation(
        write_engine,
        organization_id=org,
        user_id=user,
        type="image",
        at=dt.datetime(2031, 5, 5, 9, tzinfo=dt.UTC),
    )
    after = record_generation(
        write_engine,
        organization_id=org,
        user_id=user,
        type="image",
        at=dt.datetime(2031, 5, 12, 9, tzinfo=dt.UTC),
    )
    assert (between.daily_limit, after.daily_limit) == (default, default + 3)


def test_a_new_local_day_after_a_zone_change_gets_the_limit_in_force(
    write_engine: Engine,
) -> None:
    org, (user,) = new_org(write_engine, balance=10_000, plan="starter")
    set_daily_limit(
        write_engine,
        organization_id=org,
        type="chat",
        daily_limit=77,
        actor="cs@example.com",
        reason="r",
        effective=dt.date(2031, 6, 2),
    )
    # 23:30 UTC on June 2 is June 3 in Berlin: a local day that has no row yet.
    record_generation(
        write_engine,
        organization_id=org,
        user_id=user,
        type="chat",
        at=dt.datetime(2031, 6, 2, 23, 30, tzinfo=dt.UTC),
    )
    set_timezone(
        write_engine, organization_id=org, timezone="Europe/Berlin", actor="a@x.com", reason="r"
    )
    with write_engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT used, daily_limit FROM usage_limits "
                "WHERE organization_id = :org AND type = 'chat' AND date = '2031-06-03'"
            ),
            {"org": org},
        ).one()
    assert tuple(row) == (1, 77)


def test_the_demo_audit_trail_names_the_limits_the_rule_finds(demo_engine: Engine) -> None:
    """The demo loader writes limits with numpy; each lowered limit it audits replaced
    the limit in force the day before, and is the one in force on its day."""
    with demo_engine.connect() as conn:
        rows = conn.execute(
            text(
                """
                SELECT a.organization_id, a.details,
                       before.daily_limit AS before, after.daily_limit AS after
                FROM audit_log a
                CROSS JOIN LATERAL limit_in_force(
                    a.organization_id, a.details ->> 'type',
                    CAST(a.details ->> 'effective' AS date) - 1) AS before
                CROSS JOIN LATERAL limit_in_force(
                    a.organization_id, a.details ->> 'type',
                    CAST(a.details ->> 'effective' AS date)) AS after
                WHERE a.action = 'set_daily_limit'
                """
            )
        ).all()
    assert rows, "the demo lowers some limits"
    for row in rows:
        assert (row.details["old_limit"], row.details["new_limit"]) == (row.before, row.after)


def test_the_lookup_is_one_index_probe_per_type_never_a_scan(demo_engine: Engine) -> None:
    """limit_in_force runs its own plan (it is not inlined, so the plan tests of the
    reads cannot see inside it): the transaction's own scan counters show what it read."""
    # The counters also hold the backend's counts not yet reported: compare before/after.
    counters = text(
        "SELECT seq_scan, pg_stat_get_xact_numscans("
        "'uq_usage_limits_organization_id_type_date'::regclass) "
        "FROM pg_stat_xact_user_tables WHERE relname = 'usage_limits'"
    )
    with demo_engine.connect() as conn:
        org = conn.execute(
            text(
                "SELECT organization_id FROM usage_limits GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
            )
        ).scalar_one()
        before = conn.execute(counters).one()
        rows = limits_in_force(conn, organization_id=org)
        after = conn.execute(counters).one()
    assert len(rows) == 5
    assert (after[0] - before[0], after[1] - before[1]) == (0, len(rows))
