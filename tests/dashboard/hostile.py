"""Customer and staff text written to look like formulas, Markdown and HTML, put into a
test database as a customer or a careless colleague could: organization names, ledger
reasons, notes and actors, audit entries and plan allowance changes."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import Engine, text

# Spreadsheet formulas (OWASP's list of leading characters).
FORMULAS = (
    '=HYPERLINK("http://127.0.0.1:9/x","click")',
    "+1+1",
    "-2+3",
    "@SUM(A1:A9)",
    "\t=1+2",
    "\r=3+4",
)
# Markdown, Streamlit's Markdown extras and HTML.
MARKUP = ":red[x] **bold** <b>x</b> :material/home: $x^2$ :smile: www.example.com"

# The database books it: the balance and balance_after (migration 0013).
_GRANT = text(
    """
    INSERT INTO credit_ledger (organization_id, amount, kind, reason, note, actor,
                               idempotency_key)
    VALUES (:org, :amount, 'grant', :reason, :note, :actor, :key)
    """
)
_AUDIT = text(
    "INSERT INTO audit_log (organization_id, action, actor, reason, details) "
    "VALUES (:org, 'set_daily_limit', :actor, :reason, CAST(:details AS jsonb))"
)

# A change that leaves the plan's values as they are: only its words are hostile.
_PLAN_CHANGE = text(
    "INSERT INTO plan_allowance_changes (plan, monthly_allowance, rollover_cap, "
    "old_monthly_allowance, old_rollover_cap, actor, reason, idempotency_key) "
    "VALUES ('pro', 100000, 50000, 100000, 50000, :actor, :reason, :key)"
)


def rename(engine: Engine, organization_id: int, name: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE organizations SET name = :name WHERE id = :org"),
            {"name": name, "org": organization_id},
        )


def add_hostile_books(engine: Engine, organization_id: int) -> None:
    """One grant and one limit change per formula, the formula as reason, note and
    actor (the database accepts them; only the pages' and queries' checks refuse
    control characters in new input)."""
    with engine.begin() as conn:
        for number, formula in enumerate(FORMULAS, start=1):
            conn.execute(
                _GRANT,
                {
                    "org": organization_id,
                    "amount": number,
                    "reason": formula,
                    "note": formula,
                    "actor": formula,
                    "key": f"hostile:{uuid.uuid4()}",
                },
            )
            conn.execute(
                _AUDIT,
                {
                    "org": organization_id,
                    "actor": formula,
                    "reason": formula,
                    "details": json.dumps(
                        {"type": "chat", "old_limit": 1, "new_limit": 2, "effective": "2026-11-20"}
                    ),
                },
            )


def add_hostile_plan_changes(engine: Engine) -> None:
    """One plan allowance change per formula, the formula as reason and actor (plans
    belong to no organization: every organization's audit trail lists them)."""
    with engine.begin() as conn:
        for formula in FORMULAS:
            conn.execute(
                _PLAN_CHANGE,
                {"actor": formula, "reason": formula, "key": f"hostile:{uuid.uuid4()}"},
            )
