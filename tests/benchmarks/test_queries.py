"""The query benchmark runs end to end on tiny data, so the script cannot rot unnoticed.

Two tiny sizes, one repeat, one short write round: what is checked is that every
registered read is measured at each size, the growth table puts the sizes side by side
with the naive baselines only up to their cap, the naive answers agree with the
functions', and the write benchmark leaves the load as it found it.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import text

from benchmarks.queries.main import main
from benchmarks.queries.writes import BENCH_LIMIT
from queries.db import create_direct_engine
from tests.conftest import PgServer, _recreate
from tests.queries.read_functions import public_read_functions
from tests.queries.rollups import ROLLUPS, mismatches

DATABASE = "dashboard_test_bench"


@pytest.fixture
def bench_url(test_server: PgServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    _recreate(test_server, DATABASE)
    url = test_server.url(DATABASE)
    monkeypatch.setenv("BENCH_DATABASE_URL", url)
    yield url
    with psycopg.connect(test_server.admin_conninfo(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE))
        )


def test_benchmark_measures_every_read_at_each_size_and_restores_the_load(
    bench_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    main(
        [
            "--sizes", "2000,1000",
            "--orgs", "3",
            "--days", "7",
            "--repeat", "1",
            "--warmup", "0",
            "--naive-repeat", "1",
            "--naive-max", "1000",
            "--seconds", "0.5",
            "--rounds", "1",
            "--explain",
            "--drop",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out

    assert "not benchmarked" not in out
    growth = out[out.index("## Growth") : out.index("## Writes")]
    for function in public_read_functions():
        assert f"`{function}`" in growth, function
    # Sizes in ascending order, a column each; naive baselines only up to the cap.
    assert "| p95 ms at 1k | p95 ms at 2k | naive p50 ms at 1k | target p95 | met at 2k |" in growth
    assert "naive p50 ms at 2k" not in growth
    assert "would take hours at 2k" in growth
    assert "Missed at 2k:" in growth
    checked = [line for line in out.splitlines() if line.startswith("Naive answers checked")]
    assert len(checked) == 1  # the 1k size only
    agreed, _, total = checked[0].split(": ")[1].split(" agree")[0].partition(" of ")
    differs = [line for line in out.splitlines() if line.startswith("  differs: ")]
    assert agreed == total and int(total) > 10, differs
    assert "EXPLAIN (ANALYZE, BUFFERS)" in out
    assert "| one organization (id" in out and "| spread over" in out
    # --drop drops only databases of the embedded server it made, not BENCH_DATABASE_URL's.
    assert "--drop leaves the database of BENCH_DATABASE_URL in place." in out

    # The write benchmark's generations are gone, and the rollups count what is left, so
    # the next run reuses the load as it was made.
    engine = create_direct_engine(bench_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM generations")).scalar_one() == 2000
            assert (
                conn.execute(
                    text("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'benchmark_saved%'")
                ).scalar_one()
                == 0
            )
            assert mismatches(conn) == dict.fromkeys(ROLLUPS, 0)
            # The limit changes it lifted out of the way are back as they were.
            lifted = conn.execute(
                text("SELECT count(*) FROM limit_changes WHERE daily_limit = :limit"),
                {"limit": BENCH_LIMIT},
            ).scalar_one()
            assert lifted == 0
    finally:
        engine.dispose()
