"""Deterministic, realistic demo data, bulk-loaded with binary COPY.

The shape of the data is what the dashboard's users will see in production: one
large tenant with a big share of the traffic and a long tail of small ones, several
time zones and plans, a weekday/weekend rhythm and growth over the period, some
organizations at or over their daily limit today, and a ledger of grants and
deductions made by named finance staff.

Consistency is by construction:

- ``usage_limits.used``/``credits_used`` are counted from the drawn generations per
  (organization, type, local date in the organization's zone);
- the rollups (``user_daily_usage``, ``quarter_hour_usage``, ``organization_daily_usage``
  with its running totals, ``organization_monthly_usage``) are counted from the
  drawn arrays, chunk by chunk, with the rules of their recounts (``queries.recounts``, the
  expressions ``record_generation`` upserts); a rollup without a numpy path is
  loaded by its recount in SQL. The recount tests hold both to a recount;
- every ledger entry's ``balance_after`` and the final ``credit_balances.balance``
  follow from the ledger and the generations before it, and grants are sized ahead
  of consumption so the balance never dips below zero.

One module per thing it draws, and the load's machinery:

- ``seed``: the entry points, a load's plan and its phases in order;
- ``organizations``: organizations, users and the generation types;
- ``generations``: the generations, drawn in chunks, and what later phases need of them;
- ``rollups``: the rollups counted from the drawn arrays;
- ``quotas``: usage_limits, limit changes (a few lowered today, one raised for a week) and their audit rows;
- ``ledger``: the credit movements and the balances they leave;
- ``binary`` and ``copying``: COPY BINARY tuples from numpy arrays, and sending them;
- ``tables``: the tables a load replaces, their keys rebuilt as steps, the triggers
  lifted meanwhile.

Names with a leading underscore are the package's own, shared by its modules; callers
outside import from here.
"""

from tooling.demo_data.ledger import FINANCE_STAFF
from tooling.demo_data.seed import (
    STAGED_LOAD_LOCK,
    SeedReport,
    seed_demo_data,
    seed_demo_data_staged,
)
from tooling.demo_data.tables import append_only_guard_lifted
from tooling.errors import DemoDataError

__all__ = [
    "FINANCE_STAFF",
    "STAGED_LOAD_LOCK",
    "DemoDataError",
    "SeedReport",
    "append_only_guard_lifted",
    "seed_demo_data",
    "seed_demo_data_staged",
]
