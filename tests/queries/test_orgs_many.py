"""The cross-organization tables on 2,000 organizations: filters, sorting and pages are
answered in SQL, one statement and at most one page of rows per call."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator

import pandas as pd
import pytest
from sqlalchemy import Connection, Engine, text

from queries import quotas, usage
from tests.factories import ensure_types
from tests.statements import recording

MANY = 2_000
DAY = dt.date(2026, 11, 20)


@pytest.fixture(scope="module")
def _loaded(engine: Engine) -> Iterator[Connection]:
    """2,000 organizations with usage on DAY for two types, loaded once for the module
    (its tests only read) and rolled back after it. Organization i used i % 120 of a
    limit of 100 images and i % 7 of 10 videos, so every status occurs and utilizations
    tie."""
    with engine.connect() as connection:
        transaction = connection.begin()
        try:
            _load(connection)
            yield connection
        finally:
            transaction.rollback()


@pytest.fixture
def many(_loaded: Connection) -> Iterator[Connection]:
    """The loaded organizations, each test in a savepoint: one that fails (or writes)
    leaves the next test the rows as loaded."""
    savepoint = _loaded.begin_nested()
    try:
        yield _loaded
    finally:
        savepoint.rollback()


def _load(connection: Connection) -> None:
    ensure_types(connection)
    connection.execute(
        text(
            """
            INSERT INTO organizations (name, slug, plan, timezone)
            SELECT 'Many ' || lpad(i::text, 5, '0'), 'many-' || i,
                   (ARRAY['free', 'starter', 'pro', 'enterprise'])[1 + i % 4], 'UTC'
            FROM generate_series(1, :n) AS i
            """
        ),
        {"n": MANY},
    )
    connection.execute(
        text(
            """
            INSERT INTO usage_limits (organization_id, type, date, used, credits_used,
                                      daily_limit)
            SELECT o.id, t.type, CAST(:day AS date),
                   CASE t.type WHEN 'image' THEN n % 120 ELSE n % 7 END,
                   CASE t.type WHEN 'image' THEN n % 120 ELSE 5 * (n % 7) END,
                   CASE t.type WHEN 'image' THEN 100 ELSE 10 END
            FROM (SELECT id, substr(slug, 6)::int AS n FROM organizations
                  WHERE slug LIKE 'many-%') AS o
            CROSS JOIN (VALUES ('image'), ('video')) AS t(type)
            """
        ),
        {"day": DAY},
    )
    # The cross-organization rollups of that day, as record_generation keeps them.
    connection.execute(
        text(
            """
            INSERT INTO organization_daily_usage (organization_id, date, generations, credits,
                                                  generations_through, credits_through)
            SELECT organization_id, date, sum(used), sum(credits_used), sum(used),
                   sum(credits_used)
            FROM usage_limits u JOIN organizations o ON o.id = u.organization_id
            WHERE o.slug LIKE 'many-%' AND u.used > 0
            GROUP BY 1, 2
            """
        )
    )
    connection.execute(
        text(
            """
            INSERT INTO organization_monthly_usage (organization_id, month, generations, credits)
            SELECT organization_id, date_trunc('month', date)::date, generations, credits
            FROM organization_daily_usage d JOIN organizations o ON o.id = d.organization_id
            WHERE o.slug LIKE 'many-%'
            """
        )
    )
    connection.execute(
        text(
            "ANALYZE organizations; ANALYZE usage_limits; ANALYZE organization_daily_usage; "
            "ANALYZE organization_monthly_usage"
        )
    )


def _walk_usage(conn: Connection, **filters: object) -> tuple[pd.DataFrame, int]:
    frames, cursor, calls = [], None, 0
    while True:
        with recording(conn) as recorded:
            page = usage.all_orgs_usage_page(
                conn,
                start=DAY,
                end=DAY,
                limit=300,
                after=cursor,
                **filters,  # type: ignore[arg-type]
            )
        assert recorded.count == 1
        assert len(page.rows) <= 300
        frames.append(page.rows)
        calls += 1
        if page.next is None:
            return pd.concat(frames, ignore_index=True), calls
        cursor = page.next


def test_usage_pages_are_the_whole_ranking_in_order(many: Connection) -> None:
    everything = usage.all_orgs_usage(many, start=DAY, end=DAY)
    walked, calls = _walk_usage(many)
    assert calls == math.ceil(len(everything) / 300)
    pd.testing.assert_frame_equal(
        walked.sort_values("organization_id").reset_index(drop=True),
        everything.sort_values("organization_id").reset_index(drop=True),
    )
    assert walked["credits_consumed"].is_monotonic_decreasing
    assert walked["credits_consumed"].nunique() > 100, "the ranking has real consumption to sort"


def test_usage_filters_by_plan_and_search_in_sql(many: Connection) -> None:
    everything = usage.all_orgs_usage(many, start=DAY, end=DAY)
    expected = everything[
        everything["plan"].isin(["pro", "enterprise"])
        & everything["name"].str.contains("Many 01", regex=False)
    ]
    page = usage.all_orgs_usage_page(
        many, start=DAY, end=DAY, plans=["pro", "enterprise"], search="many 01", limit=50
    )
    assert len(page.rows) == 50 and page.next is not None
    assert page.totals.organizations == len(expected)
    assert page.totals.credits_consumed == expected["credits_consumed"].sum()
    assert page.totals.generations == expected["generations"].sum()
    assert set(page.rows["plan"]) <= {"pro", "enterprise"}
    # Rank and share stay those among all organizations.
    first = page.rows.iloc[0]
    assert (
        first["rank"]
        == everything.set_index("organization_id").loc[first["organization_id"], "rank"]
    )


def test_usage_search_that_matches_nothing_is_an_empty_page(many: Connection) -> None:
    page = usage.all_orgs_usage_page(many, start=DAY, end=DAY, search="nothing like it")
    assert page.rows.empty and page.next is None
    assert page.totals == usage.UsageTotals(0, 0, 0, 0)


def test_quota_pages_are_every_row_of_the_day_fullest_first(many: Connection) -> None:
    everything = quotas.all_orgs_quota_utilization(many, day=DAY)
    frames, cursor = [], None
    while True:
        with recording(many) as recorded:
            page = quotas.all_orgs_quota_utilization_page(many, day=DAY, limit=500, after=cursor)
        assert recorded.count == 1 and len(page.rows) <= 500
        assert page.total == len(everything) == page.matching
        frames.append(page.rows)
        if page.next is None:
            break
        cursor = page.next
    walked = pd.concat(frames, ignore_index=True)
    assert len(walked) == len(everything)
    assert not walked.duplicated(["organization_id", "type"]).any()
    assert walked["utilization"].is_monotonic_decreasing


@pytest.mark.parametrize(
    "filters",
    [
        {"statuses": ["over"]},
        {"statuses": ["near", "at limit"], "types": ["image"]},
        {"plans": ["free"], "search": "many 00"},
        {"types": ["video"], "statuses": ["ok"], "plans": ["pro", "starter"]},
    ],
)
def test_quota_filters_match_the_same_filters_in_pandas(
    many: Connection, filters: dict[str, object]
) -> None:
    everything = quotas.all_orgs_quota_utilization(many, day=DAY)
    keep = pd.Series(True, index=everything.index)
    for column, key in (("status", "statuses"), ("type", "types"), ("plan", "plans")):
        if key in filters:
            keep &= everything[column].isin(filters[key])  # type: ignore[arg-type]
    if "search" in filters:
        keep &= everything["name"].str.lower().str.contains(str(filters["search"]), regex=False)
    expected = everything[keep]
    page = quotas.all_orgs_quota_utilization_page(many, day=DAY, limit=100, **filters)  # type: ignore[arg-type]
    assert page.matching == len(expected)
    assert len(page.rows) == min(100, len(expected))
    assert set(zip(page.rows["organization_id"], page.rows["type"], strict=True)) <= set(
        zip(expected["organization_id"], expected["type"], strict=True)
    )


def test_the_heatmap_has_the_top_organizations_and_counts_the_rest(many: Connection) -> None:
    with recording(many) as recorded:
        rows, total = quotas.all_orgs_quota_heatmap(many, day=DAY, top=25)
    assert recorded.count == 1
    assert total == MANY
    assert rows["organization_id"].nunique() == 25
    everything = quotas.all_orgs_quota_utilization(many, day=DAY)
    fullest = everything.groupby("organization_id")["utilization"].max()
    assert rows.groupby("organization_id")["utilization"].max().min() >= fullest.nlargest(25).min()
