"""The Credits page's confirm when the connection drops right after COMMIT reached the
server: a real proxy (tests/faults.py) lets the COMMIT through, drops the server's answer
and cuts the connection. The page must report what really happened and a second
confirmation must never apply the grant twice."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine

from tests.conftest import PgServer
from tests.dashboard.apptest import scalar
from tests.dashboard.conftest import FRESH
from tests.dashboard.shown import shown
from tests.dashboard.test_credits_page import (
    PENDING,
    balance,
    button,
    confirm,
    credits_page,
    first_org,
    ledger_rows,
    review,
)
from tests.faults import CommitCutProxy


@pytest.fixture
def proxy(test_server: PgServer, fresh_url: str) -> Iterator[CommitCutProxy]:
    with CommitCutProxy.for_server(test_server, FRESH) as running:
        yield running


@pytest.fixture
def org_via_proxy(
    proxy: CommitCutProxy,
    fresh_engine: Engine,
    use_database: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
) -> int:
    # Through the proxy the database is not the embedded one, so the development
    # identity is the explicit single-user setup.
    monkeypatch.setenv("DASHBOARD_USER", "finance@example.com")
    use_database(proxy.url)
    return first_org(fresh_engine)


def _rows_with_key(engine: Engine, key: str) -> int:
    return int(
        scalar(engine, "SELECT count(*) FROM credit_ledger WHERE idempotency_key = :k", k=key)
    )


def test_a_lost_commit_answer_is_learned_by_the_retry_and_the_grant_applies_once(
    proxy: CommitCutProxy, org_via_proxy: int, fresh_engine: Engine
) -> None:
    org = org_via_proxy
    before, rows = balance(fresh_engine, org), ledger_rows(fresh_engine, org)
    at = review(credits_page(org), amount=321)
    key = at.session_state[PENDING].idempotency_key

    proxy.arm_cut_after_commit()
    at = confirm(at)
    assert proxy.cuts == 1, "the proxy never cut a COMMIT answer"
    assert not at.exception
    # The retry with the same key found the committed entry: the truth is "applied".
    assert any("New balance" in s for s in shown(at, "success")), shown(at, "error")
    assert not [e for e in shown(at, "error") if "Nothing was changed" in e]
    assert _rows_with_key(fresh_engine, key) == 1
    assert ledger_rows(fresh_engine, org) == rows + 1
    assert balance(fresh_engine, org) == before + 321


def test_when_the_answer_cannot_be_learned_the_page_says_so_and_confirming_again_applies_once(
    proxy: CommitCutProxy, org_via_proxy: int, fresh_engine: Engine
) -> None:
    org = org_via_proxy
    before = balance(fresh_engine, org)
    at = review(credits_page(org), amount=654)
    key = at.session_state[PENDING].idempotency_key

    # Every COMMIT answer is lost until the write's time budget runs out.
    proxy.arm_cut_after_commit(times=10_000)
    at = confirm(at)
    proxy.disarm()
    assert not at.exception
    (error,) = shown(at, "error")
    assert "could not be checked whether it was applied" in error
    assert "Nothing was changed" not in error
    # The grant did reach the books once; the page kept the same request and key.
    assert _rows_with_key(fresh_engine, key) == 1
    assert at.session_state[PENDING].idempotency_key == key

    button(at, "Confirm again").click()
    at.run()
    assert any("New balance" in s for s in shown(at, "success")), shown(at, "error")
    assert _rows_with_key(fresh_engine, key) == 1, "confirming again applied it twice"
    assert balance(fresh_engine, org) == before + 654
