"""The organization picker's search on thousands of organizations: found on the server,
by name or slug, exact id or slug first, one statement and one page of rows a call."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, text

from queries import orgs
from queries.errors import InvalidInput
from tests.statements import recording

MANY = 2_000


@pytest.fixture
def many(connection: Connection) -> Iterator[Connection]:
    """2,000 organizations (in the rolled-back test transaction), plus a few whose
    names look like LIKE patterns or ids."""
    connection.execute(
        text(
            """
            INSERT INTO organizations (name, slug, plan, timezone)
            SELECT 'Org ' || lpad(i::text, 5, '0'), 'org-' || i,
                   (ARRAY['free', 'starter', 'pro', 'enterprise'])[1 + i % 4], 'UTC'
            FROM generate_series(1, :n) AS i
            """
        ),
        {"n": MANY},
    )
    connection.execute(
        text(
            "INSERT INTO organizations (name, slug) VALUES "
            "('100% Organic', 'organic'), ('Under_score Ltd', 'underscore'), "
            "('Zeta 42', 'zeta-42')"
        )
    )
    connection.execute(text("ANALYZE organizations"))
    yield connection


def _names(page: orgs.OrganizationPage) -> list[str]:
    return [o.name for o in page.organizations]


def test_an_empty_search_is_the_first_page_by_name_in_one_statement(many: Connection) -> None:
    with recording(many) as recorded:
        page = orgs.search_organizations(many, limit=50)
    assert recorded.count == 1
    assert page.exact is None
    first = many.execute(text("SELECT name FROM organizations ORDER BY name, id LIMIT 50"))
    assert _names(page) == list(first.scalars())
    last = page.organizations[-1]
    assert page.next == orgs.OrganizationCursor(last.name, last.id)


def test_keyset_pages_walk_every_organization_once(many: Connection) -> None:
    seen: list[int] = []
    cursor: orgs.OrganizationCursor | None = None
    pages = 0
    while True:
        page = orgs.search_organizations(many, limit=1000, after=cursor)
        seen.extend(o.id for o in page.organizations)
        pages += 1
        if page.next is None:
            break
        cursor = page.next
    total = many.execute(text("SELECT count(*) FROM organizations")).scalar_one()
    assert len(seen) == len(set(seen)) == total
    assert pages == -(-total // 1000)


def test_search_matches_name_or_slug_case_insensitively(many: Connection) -> None:
    assert _names(orgs.search_organizations(many, query="ORG 0199")) == [
        f"Org 0199{i}" for i in range(10)
    ]
    # "org-1999" is a slug; the name is "Org 01999".
    page = orgs.search_organizations(many, query="org-1999")
    assert _names(page) == ["Org 01999"]
    assert page.exact is not None and page.exact.slug == "org-1999"


def test_percent_and_underscore_match_themselves(many: Connection) -> None:
    assert _names(orgs.search_organizations(many, query="100%")) == ["100% Organic"]
    assert _names(orgs.search_organizations(many, query="r_s")) == ["Under_score Ltd"]
    assert _names(orgs.search_organizations(many, query="%")) == ["100% Organic"]


def test_an_exact_id_comes_first_whatever_its_name(many: Connection) -> None:
    zeta = many.execute(text("SELECT id FROM organizations WHERE slug = 'zeta-42'")).scalar_one()
    page = orgs.search_organizations(many, query=str(zeta), limit=5)
    assert page.exact is not None and page.exact.id == zeta
    assert "zeta" not in str(zeta)  # found by its id, not by its name
    # The exact match is on the first page only; later pages are the keyset pages.
    later = orgs.search_organizations(
        many, query=str(zeta), limit=5, after=orgs.OrganizationCursor("A", 1)
    )
    assert later.exact is None
    assert orgs.search_organizations(many, query="ZETA-42").exact == page.exact


def test_a_search_with_no_match_is_an_empty_page(many: Connection) -> None:
    page = orgs.search_organizations(many, query="no such organization")
    assert page == orgs.OrganizationPage(exact=None, organizations=(), next=None)


@pytest.mark.parametrize(
    "bad", [{"limit": 0}, {"limit": 5000}, {"query": "x" * 201}, {"query": 5}, {"after": 3}]
)
def test_bad_arguments_are_refused(many: Connection, bad: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        orgs.search_organizations(many, **bad)  # type: ignore[arg-type]


def test_any_organizations(many: Connection) -> None:
    assert orgs.any_organizations(many)


def test_the_first_page_reads_the_name_index_not_the_table(many: Connection) -> None:
    """An empty search (every page load of the picker) walks ix_organizations_name_id
    and stops after one page, instead of sorting thousands of organizations."""
    many.execute(text("SET LOCAL enable_seqscan = off"))  # tiny test tables; what is usable
    with recording(many) as recorded:
        orgs.search_organizations(many, limit=50)
        orgs.search_organizations(many, limit=50, after=orgs.OrganizationCursor("Org 01000", 1))
    many.execute(text("RESET enable_seqscan"))
    for statement, params in recorded.statements:
        plan = many.exec_driver_sql(
            "EXPLAIN (FORMAT JSON, ANALYZE) " + statement, params
        ).scalar_one()
        dumped = json.dumps(plan)
        assert "ix_organizations_name_id" in dumped
        assert '"Node Type": "Sort"' not in dumped


def test_a_substring_search_reads_the_trigram_indexes(many: Connection) -> None:
    """ILIKE '%...%' on name or slug is served by the pg_trgm GIN indexes (at 10,000
    organizations: under 1 ms, against 8-20 ms for the sequential scan)."""
    # On 2,000 freshly inserted rows (GIN pending list not yet merged by autovacuum) the
    # planner may walk the name index instead; this asks whether the statement *can* use
    # the trigram indexes, with plain scans off.
    many.execute(text("SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = off"))
    with recording(many) as recorded:
        orgs.search_organizations(many, query="org 0199")
    (statement, params), *_ = recorded.statements
    plan = json.dumps(
        many.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, params).scalar_one()
    )
    many.execute(text("RESET enable_seqscan; RESET enable_indexscan"))
    assert "ix_organizations_name_trgm" in plan and "ix_organizations_slug_trgm" in plan
