"""Demo data: realistic in shape, exact in its numbers, the same for the same seed."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from tests.conftest import DEMO_GENERATIONS, DEMO_NOW
from tests.queries.rollups import ROLLUPS, mismatches
from tooling.demo_data import FINANCE_STAFF, DemoDataError, seed_demo_data
from tooling.demo_data.quotas import (
    RAISE_REASON,
    RAISED_DAYS_AFTER,
    RAISED_DAYS_BEFORE,
    SOFT_REASON,
)


def test_balance_equals_ledger_minus_generation_credits_for_every_org(demo_engine: Engine) -> None:
    with demo_engine.connect() as conn:
        rows = conn.execute(
            text(
                """
                SELECT o.id, b.balance,
                       (SELECT coalesce(sum(amount), 0) FROM credit_ledger l
                         WHERE l.organization_id = o.id) AS ledger,
                       (SELECT coalesce(sum(credits), 0) FROM generations g
                         WHERE g.organization_id = o.id) AS consumed
                FROM organizations o JOIN credit_balances b ON b.organization_id = o.id
                """
            )
        ).all()
        assert len(rows) == 30
        for row in rows:
            assert row.balance == row.ledger - row.consumed, row
            assert row.balance >= 0
        assert conn.execute(text("SELECT min(balance_after) FROM credit_ledger")).scalar_one() >= 0


def test_usage_rows_are_the_exact_daily_rollup_in_local_time(demo_engine: Engine) -> None:
    with demo_engine.connect() as conn:
        mismatches = conn.execute(
            text(
                """
                WITH actual AS (
                    SELECT g.organization_id, g.type,
                           (g.created_at AT TIME ZONE o.timezone)::date AS date,
                           count(*) AS used, sum(g.credits) AS credits_used
                    FROM generations g JOIN organizations o ON o.id = g.organization_id
                    GROUP BY 1, 2, 3
                )
                SELECT count(*) FROM actual a
                FULL JOIN usage_limits u USING (organization_id, type, date)
                WHERE a.used IS DISTINCT FROM u.used
                   OR a.credits_used IS DISTINCT FROM u.credits_used
                """
            )
        ).scalar_one()
        assert mismatches == 0
        total = conn.execute(text("SELECT sum(used) FROM usage_limits")).scalar_one()
        assert total == DEMO_GENERATIONS


def test_demo_data_looks_like_a_real_multi_tenant_product(demo_engine: Engine) -> None:
    with demo_engine.connect() as conn:
        shares = (
            conn.execute(
                text(
                    "SELECT count(*)::float8 / sum(count(*)) OVER () FROM generations "
                    "GROUP BY organization_id ORDER BY 1 DESC"
                )
            )
            .scalars()
            .all()
        )
        assert shares[0] > 0.25, "one large tenant carries a big share"
        assert shares[-1] < 0.01, "and a long tail of small ones"
        assert (
            conn.execute(text("SELECT count(DISTINCT timezone) FROM organizations")).scalar_one()
            >= 4
        )
        assert (
            conn.execute(text("SELECT count(DISTINCT plan) FROM organizations")).scalar_one() >= 3
        )
        weekday, weekend = conn.execute(
            text(
                """
                SELECT (avg(n) FILTER (WHERE dow BETWEEN 1 AND 5))::float8, (avg(n) FILTER (WHERE dow IN (0, 6)))::float8
                FROM (SELECT extract(dow FROM date) AS dow, sum(used) AS n FROM usage_limits
                      WHERE organization_id = 1 GROUP BY date) d
                """
            )
        ).one()
        assert weekday > 1.5 * weekend, "weekday/weekend rhythm"
        first, last = conn.execute(
            text(
                """
                SELECT sum(used) FILTER (WHERE date < min_d + 30), sum(used) FILTER (WHERE date >= max_d - 30 AND date < max_d)
                FROM usage_limits, (SELECT min(date) AS min_d, max(date) AS max_d FROM usage_limits) b
                """
            )
        ).one()
        assert last > first, "growth over the period"
        pressured = conn.execute(
            text(
                """
                SELECT count(DISTINCT u.organization_id) FILTER (WHERE u.used >= 0.8 * u.daily_limit),
                       count(DISTINCT u.organization_id) FILTER (WHERE u.used > u.daily_limit)
                FROM usage_limits u JOIN organizations o ON o.id = u.organization_id
                WHERE u.date = (:now AT TIME ZONE o.timezone)::date
                """
            ),
            {"now": DEMO_NOW},
        ).one()
        assert pressured[0] >= 2 and pressured[1] >= 1, "some organizations near or over today"
        actors = set(conn.execute(text("SELECT DISTINCT actor FROM credit_ledger")).scalars())
        # Staff, and the system for what nobody decides by hand: expiries, allowances.
        assert actors <= {*FINANCE_STAFF, "system"} and len(actors - {"system"}) >= 2
        kinds = set(conn.execute(text("SELECT DISTINCT kind FROM credit_ledger")).scalars())
        assert {"grant", "deduct", "refund"} <= kinds
        latest = conn.execute(text("SELECT max(created_at) FROM generations")).scalar_one()
        assert latest < DEMO_NOW, "nothing in the future"


def _fingerprint(conn: Connection) -> tuple[object, ...]:
    return tuple(
        conn.execute(
            text(
                """
                SELECT (SELECT md5(string_agg(concat_ws(',', organization_id, id, user_id, type, credits, created_at), ';' ORDER BY id)) FROM generations),
                       (SELECT md5(string_agg(concat_ws(',', organization_id, amount, balance_after, kind, actor, created_at), ';' ORDER BY id)) FROM credit_ledger),
                       (SELECT md5(string_agg(concat_ws(',', organization_id, type, date, used, daily_limit), ';' ORDER BY organization_id, type, date)) FROM usage_limits)
                """
            )
        ).one()
    )


def test_same_seed_same_rows_and_reset_replaces_data(connection: Connection) -> None:
    now = dt.datetime(2026, 3, 29, 12, tzinfo=dt.UTC)  # a daylight-saving weekend in Europe
    options = {"organizations": 6, "generations": 5_000, "days": 20, "seed": 3, "now": now}
    seed_demo_data(connection, **options)  # type: ignore[arg-type]
    first = _fingerprint(connection)
    with pytest.raises(DemoDataError, match="--reset"):
        seed_demo_data(connection, **options)  # type: ignore[arg-type]
    seed_demo_data(connection, reset=True, **options)  # type: ignore[arg-type]
    assert _fingerprint(connection) == first
    seed_demo_data(connection, reset=True, **{**options, "seed": 4})  # type: ignore[arg-type]
    assert _fingerprint(connection) != first
    # The reset replaced the rollups too, with no row left of the first load.
    assert mismatches(connection) == dict.fromkeys(ROLLUPS, 0)


_GUARD = text(
    "SELECT tgrelid::regclass::text, tgenabled FROM pg_trigger "
    "WHERE tgfoid = CAST('refuse_append_only_change' AS regproc) ORDER BY 1"
)


def test_reset_is_the_way_around_the_append_only_guard_and_puts_it_back(
    connection: Connection,
) -> None:
    options = {"organizations": 3, "generations": 500, "days": 5, "seed": 3}
    seed_demo_data(connection, **options)  # type: ignore[arg-type]
    seed_demo_data(connection, reset=True, **options)  # type: ignore[arg-type]
    # On again, as migration 0003 made it: ALWAYS ('A'), on every append-only table
    # (the plans' history, configuration the load keeps, was never lifted).
    assert connection.execute(_GUARD).all() == [
        ("audit_log", "A"),
        ("credit_ledger", "A"),
        ("generations", "A"),
        ("plan_allowance_changes", "A"),
    ]
    # The plans' allowances are the migration's, not the demo's: a reset keeps them.
    assert connection.execute(text("SELECT count(*) FROM plan_allowances")).scalar_one() == 4
    with pytest.raises(IntegrityError, match="append-only"), connection.begin_nested():
        connection.execute(text("DELETE FROM credit_ledger"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"organizations": 0}, "--orgs"),
        ({"generations": -1}, "--generations"),
        ({"days": 0}, "--days"),
    ],
)
def test_bad_seed_options_are_refused_before_anything_is_written(
    connection: Connection, options: dict[str, int], message: str
) -> None:
    with pytest.raises(DemoDataError, match=message):
        seed_demo_data(connection, **options)  # type: ignore[arg-type]
    assert connection.execute(text("SELECT count(*) FROM organizations")).scalar_one() == 0


def test_rollups_are_the_exact_recount_of_the_loaded_generations(demo_engine: Engine) -> None:
    with demo_engine.connect() as conn:
        assert mismatches(conn) == dict.fromkeys(ROLLUPS, 0)
        loaded = conn.execute(
            text(
                "SELECT (SELECT sum(generations) FROM user_daily_usage), "
                "(SELECT sum(generations) FROM quarter_hour_usage)"
            )
        ).one()
        assert tuple(loaded) == (DEMO_GENERATIONS, DEMO_GENERATIONS)


def test_ledger_ids_follow_time_so_the_books_reconcile_at_any_load_time(
    connection: Connection,
) -> None:
    """The goodwill grant and its reversal are numbered among the other entries by time,
    as writes are numbered under the organization's lock: a load made when a later entry
    fell after them once broke the ledger chain reconciliation checks."""
    from queries.reconciliation import check_books

    now = dt.datetime(2026, 11, 25, 21, 54, 7, tzinfo=dt.UTC)  # such a load time
    seed_demo_data(connection, organizations=20, generations=60_000, days=90, seed=5, now=now)
    out_of_order = connection.execute(
        text(
            "SELECT count(*) FROM (SELECT id, created_at, lag(created_at) OVER "
            "(PARTITION BY organization_id ORDER BY id) AS before FROM credit_ledger) e "
            "WHERE e.created_at < e.before"
        )
    ).scalar_one()
    assert out_of_order == 0
    assert check_books(connection, full=True).drifts == ()


def test_some_organizations_are_near_or_over_their_limit_whenever_the_load_is_made(
    connection: Connection,
) -> None:
    """Customer success must find someone near or over today's limit: the squeezed
    tenants are picked among those with use today, which early in some zones' day a
    small tenant may not have yet (a load at this time once had none)."""
    now = dt.datetime(2026, 11, 25, 22, 12, 10, tzinfo=dt.UTC)
    seed_demo_data(connection, organizations=8, generations=5000, days=30, seed=1, now=now)
    pressed = connection.execute(
        text(
            "SELECT count(*) FROM usage_limits u JOIN organizations o ON o.id = u.organization_id "
            "WHERE u.date = (CAST(:now AS timestamptz) AT TIME ZONE o.timezone)::date "
            "AND u.used >= 0.8 * u.daily_limit"
        ),
        {"now": now},
    ).scalar_one()
    assert pressed > 0


def test_one_limit_is_raised_for_a_week_that_ends_by_itself(demo_engine: Engine) -> None:
    """Customer success's temporary raise, as set_daily_limit leaves it: a change with an
    end, its days' rows at the raised limit, the limit before it once it has ended, and
    an audit row that names the end."""
    with demo_engine.connect() as conn:
        (change,) = conn.execute(
            text("SELECT * FROM limit_changes WHERE until IS NOT NULL")
        ).mappings()
        assert change["until"] - change["effective"] == dt.timedelta(
            days=RAISED_DAYS_BEFORE + RAISED_DAYS_AFTER
        )
        key = {"o": change["organization_id"], "t": change["type"]}
        rows = conn.execute(
            text(
                "SELECT date, daily_limit FROM usage_limits "
                "WHERE organization_id = :o AND type = :t AND date >= :e"
            ),
            {**key, "e": change["effective"]},
        ).all()
        assert rows and {limit for _, limit in rows} == {change["daily_limit"]}
        after = conn.execute(
            text("SELECT daily_limit FROM limit_in_force(:o, :t, :d)"),
            {**key, "d": change["until"] + dt.timedelta(days=1)},
        ).scalar_one()
        assert after * 2 == change["daily_limit"]
        audit = conn.execute(
            text(
                "SELECT reason, details FROM audit_log WHERE action = 'set_daily_limit' "
                "AND organization_id = :o AND details ->> 'until' IS NOT NULL"
            ),
            key,
        ).one()
        assert audit.reason == RAISE_REASON
        assert audit.details == {
            "type": change["type"],
            "effective": change["effective"].isoformat(),
            "until": change["until"].isoformat(),
            "old_limit": after,
            "new_limit": change["daily_limit"],
        }


def test_one_limit_over_today_is_soft_and_its_overage_shows(demo_engine: Engine) -> None:
    """A tenant pushed over its lowered limit is let through instead of refused: a soft
    limit, as set_limit_enforcement leaves it, with today's overage and an audit row."""
    with demo_engine.connect() as conn:
        (soft,) = conn.execute(text("SELECT * FROM limit_enforcement")).mappings()
        assert soft["soft"]
        key = {"o": soft["organization_id"], "t": soft["type"]}
        used, limit = conn.execute(
            text(
                "SELECT u.used, u.daily_limit FROM usage_limits u "
                "JOIN organizations o ON o.id = u.organization_id "
                "WHERE u.organization_id = :o AND u.type = :t "
                "AND u.date = (CAST(:now AS timestamptz) AT TIME ZONE o.timezone)::date"
            ),
            {**key, "now": DEMO_NOW},
        ).one()
        assert used > limit, "its overage is what a soft limit is for"
        audit = conn.execute(
            text(
                "SELECT reason, details FROM audit_log "
                "WHERE action = 'set_limit_enforcement' AND organization_id = :o"
            ),
            key,
        ).one()
        assert audit.reason == SOFT_REASON
        assert audit.details == {"type": soft["type"], "old_mode": "hard", "new_mode": "soft"}


# The columns each table's load writes, row by row as text, hashed in a fixed order
# (timestamps in UTC). Columns a later migration adds are not pinned: only the draw is.
_TABLE_CHECKSUMS = text(
    """
    SELECT 'generation_types', md5(string_agg(r, ';' ORDER BY r)) FROM (SELECT ROW(type, label, default_credits, default_daily_limit)::text AS r FROM generation_types) t
    UNION ALL SELECT 'organizations', md5(string_agg(r, ';' ORDER BY r)) FROM (SELECT ROW(id, name, slug, timezone, plan, created_at)::text AS r FROM organizations) t
    UNION ALL SELECT 'users', md5(string_agg(r, ';' ORDER BY r)) FROM (SELECT ROW(organization_id, id, email, name, created_at)::text AS r FROM users) t
    UNION ALL SELECT 'generations', md5(string_agg(r, ';' ORDER BY r)) FROM (SELECT ROW(organization_id, id, user_id, type, credits, created_at)::text AS r FROM generations) t
    UNION ALL SELECT 'user_daily_usage', md5(string_agg(r, ';' ORDER BY r)) FROM (SELECT ROW(organization_id, user_id, date, type, generations, credits)::text AS r FROM user_daily_usage) t
    UNION ALL SELECT 'quarter_hour_usage', md5(string_agg(r, ';' ORDER BY r)) FROM (SELECT ROW(organization_id, bucket, type, generations, credits)::text AS r FROM quarter_hour_usage) t
    UNION ALL SELECT 'organization_daily_usage', md5(string_agg(r, ';' ORDER BY r)) FROM (SELECT ROW(organization_id, date, generations, credits, generations_through, credits_through)::text AS r FROM organization_daily_usage) t
    UNION ALL SELECT 'organization_monthly_usage', md5(string_agg(r, ';' ORDER BY r)) FROM (SELECT ROW(month, organization_id, generations, credits)::text AS r FROM organization_monthly_usage) t
    UNION ALL SELECT 'usage_limits', md5(string_agg(r, ';' ORDER BY r)) FROM (SELECT ROW(organization_id, id, type, date, used, credits_used, daily_limit, updated_at)::text AS r FROM usage_limits) t
    UNION ALL SELECT 'credit_ledger', md5(string_agg(r, ';' ORDER BY r)) FROM (SELECT ROW(organization_id, id, amount, balance_after, kind, reason, note, actor, idempotency_key, reverses_id, created_at)::text AS r FROM credit_ledger) t
    UNION ALL SELECT 'credit_balances', md5(string_agg(r, ';' ORDER BY r)) FROM (SELECT ROW(organization_id, balance, updated_at)::text AS r FROM credit_balances) t
    UNION ALL SELECT 'audit_log', md5(string_agg(r, ';' ORDER BY r)) FROM (SELECT ROW(organization_id, id, action, actor, reason, details, created_at)::text AS r FROM audit_log) t
    """
)


def test_a_seed_draws_the_very_same_rows_as_before(connection: Connection) -> None:
    """The draw is pinned: what a small load writes to each table, hashed (computed on
    the loader before it was split into modules). A change that means to alter the demo
    data (a new draw, another order of draws) updates these on purpose; a refactoring
    that changes one of them has changed what users of the demo see."""
    now = dt.datetime(2026, 3, 29, 12, tzinfo=dt.UTC)  # a daylight-saving weekend in Europe
    seed_demo_data(connection, organizations=6, generations=5_000, days=20, seed=3, now=now)
    connection.execute(text("SET LOCAL TimeZone = 'UTC'"))
    checksums = {str(table): str(md5) for table, md5 in connection.execute(_TABLE_CHECKSUMS)}
    assert checksums == {
        "generation_types": "f6219d2fd9400ccccc3cbc3f09fa04ef",
        "organizations": "6313f8d3459011a53930297e418df867",
        "users": "32e5cc1168fdd7cbd4b5834061b718c4",
        "generations": "3100b5c1f8c2130a2a7cadc72c207224",
        "user_daily_usage": "7780e74c2bd04607e091324d34447ab0",
        "quarter_hour_usage": "cbe4c9b7711fe06cac1fc31426742145",
        "organization_daily_usage": "4d6e1b2ab915c5a8377eee6caa79b7b7",
        "organization_monthly_usage": "6a8302db99c4b551bb28581947504a78",
        "usage_limits": "ddda90feb1bc5e08d9af86c6070f411f",
        "credit_ledger": "b8a3a1b1945e5a2d235418a234374d7c",
        "credit_balances": "31b0f309499b0f183b5aa5739bf01cfe",
        "audit_log": "58f466ecde9184bfb76d5d3246948810",
    }


def test_the_demo_has_grants_of_each_kind_and_their_books_close(demo_engine: Engine) -> None:
    """Promotions that expire (one within the next 30 days, one already written off at
    its expiry), a plan allowance with a rollover for the current month, and every
    grant's parts adding up to a balance that is the sum of what remains (issue 18)."""
    from queries import forecast, grants

    with demo_engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT g.*, o.timezone FROM credit_grants g "
                "JOIN organizations o ON o.id = g.organization_id WHERE g.source <> 'opening'"
            )
        ).all()
        live_promotions = [
            g for g in rows
            if g.source == "manual" and g.written_off_at is None and g.remaining > 0
            and DEMO_NOW < g.expires_at <= DEMO_NOW + dt.timedelta(days=30)
        ]  # fmt: skip
        assert live_promotions, "a promotion that expires within the next 30 days"
        expired = [g for g in rows if g.source == "manual" and g.expired > 0]
        assert len(expired) == 1 and expired[0].written_off_at == expired[0].expires_at
        entry = conn.execute(
            text(
                "SELECT amount, created_at, effective_at, idempotency_key, actor "
                "FROM credit_ledger WHERE organization_id = :org AND grant_id = :id"
            ),
            {"org": expired[0].organization_id, "id": expired[0].id},
        ).one()
        assert entry.amount == -expired[0].expired
        assert entry.effective_at == entry.created_at == expired[0].expires_at
        assert (entry.idempotency_key, entry.actor) == (f"expiry:{expired[0].id}", "system")
        for source in ("allowance", "rollover"):
            current = [
                g for g in rows
                if g.source == source and g.written_off_at is None and g.expires_at > DEMO_NOW
            ]  # fmt: skip
            assert current, f"a {source} for the current month"
            for g in current:
                # It ends with the organization's local month.
                local = g.expires_at.astimezone(ZoneInfo(g.timezone))
                assert (local.day, local.hour, local.minute) == (1, 0, 0)
                key = conn.execute(
                    text(
                        "SELECT idempotency_key FROM credit_ledger "
                        "WHERE organization_id = :org AND id = :id"
                    ),
                    {"org": g.organization_id, "id": g.ledger_entry_id},
                ).scalar_one()
                month = (local - dt.timedelta(days=1)).strftime("%Y-%m")
                assert key == f"{source}:{month}"
        # The books: each grant's parts add up (its table's checks), and every balance
        # is what remains of its grants.
        drift = conn.execute(
            text(
                "SELECT count(*) FROM credit_balances b WHERE b.balance <> "
                "(SELECT coalesce(sum(g.remaining), 0) FROM credit_grants g "
                " WHERE g.organization_id = b.organization_id)"
            )
        ).scalar_one()
        assert drift == 0
        # What the pages read of them.
        org = live_promotions[0].organization_id
        listed = grants.credit_grants(conn, organization_id=org, at=DEMO_NOW)
        assert any(g.status == "live" and g.expires_at for g in listed)
        runway = forecast.low_runway(conn, within_days=3660, now=DEMO_NOW)
        assert (runway["expiring_unused"] > 0).any(), "some promotion expires unused"
