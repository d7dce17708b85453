"""The schema check every start makes reads the migrations as text and the database with
two SELECTs; it must agree with Alembic, which it no longer imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import text

from queries.db import create_direct_engine
from queries.schema_version import alembic_config, head_revision, revisions, schema_problem
from tests.conftest import PgServer, _recreate
from tooling import schema

ROOT = Path(__file__).resolve().parents[2]


def test_the_revisions_read_as_text_are_alembics() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert head_revision() == script.get_current_head()
    assert revisions() == {rev.revision: rev.down_revision for rev in script.walk_revisions()}


def test_the_check_imports_no_alembic() -> None:
    # What it saves at every start: Alembic, and with it the migration modules, unloaded.
    code = (
        "import sys; from queries.schema_version import head_revision; head_revision(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert found.strip() == "[]"


def test_the_check_names_each_state_of_a_database(test_server: PgServer) -> None:
    _recreate(test_server, "dashboard_test_schema_check")
    url = test_server.url("dashboard_test_schema_check")
    engine = create_direct_engine(url)
    try:
        assert "has no dashboard schema yet" in (schema_problem(engine) or "")
        schema.upgrade(url=url)
        assert schema_problem(engine) is None
        schema.downgrade(revision="0001", url=url)
        behind = schema_problem(engine) or ""
        assert "behind (revision 0001" in behind and f"needs {head_revision()}" in behind
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        assert "revision 9999) is newer" in (schema_problem(engine) or "")
    finally:
        engine.dispose()
