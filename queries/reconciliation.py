"""Reconciliation: do the books close? Every invariant the project relies on, per
organization, checked in SQL from the raw rows, and the verified checkpoints that let a
nightly run check only what changed.

The invariants:

- ``balance``: ``credit_balances.balance`` = sum(ledger amounts) - sum(generations'
  credits).
- ``ledger``: every ledger entry's ``balance_after`` is one the history can produce (see
  below).
- the rollups, each against a recount of the generations it summarises:
  ``usage_limits`` (used, credits_used per local day and type), ``user_daily_usage``,
  ``quarter_hour_usage``, ``organization_daily_usage`` (the day's counts, and its running
  totals ``generations_through``/``credits_through``) and ``organization_monthly_usage``.
- ``usual_days``: each usual day the forecast keeps and would read (its stamp is
  current) against ``usual_day()``, its one definition (migration 0017).
- ``usage_edges``: each organization's use before every kept edge (migration 0025)
  against ``recounts.RECOUNT_USAGE_EDGES``, from its generations; an incremental run
  checks the edges after an organization's changed days against ``usage_before()``, the
  rollups it checks in the same run.
- the credit grants (migration 0021), the balance as finance sees it:
  ``grants``: each grant's ``remaining`` = amount - drawn - expired - reversed (a CHECK
  guards it too; an owner can still drop it); ``grants.balance``: the balance = the sum
  of the organization's grants' remaining amounts; ``grants.expiry``: every ``expired``
  entry names a grant that exists, takes off what the grant records as expired, takes
  effect at its ``expires_at`` and marks it written off, and every grant with expired
  credits has its entry; ``grants.ledger``: every grant but the 'opening' one was made
  by a positive entry of its amount, and every positive entry after the one the opening
  grant covers made a grant; ``grants.marks``: the two marks on the balance row
  (migration 0023) agree with the grants: ``next_expiry`` is the soonest expiry not
  written off, and ``head_grant_id``, if it points at a grant that can still be drawn,
  points at the one first in line (one that ran dry or expired only sends the next
  draw the long way, so it is no drift).

**The balance_after chain.** Generations between two ledger entries consume credits, so
entry *i*'s ``balance_after`` = sum(ledger amounts up to *i*, by id) - C(*i*), where C(*i*)
is what the generations applied before *i* consumed. Every change of an organization's
balance happens under its balance-row lock, so per organization the ledger ids and the
generation ids each follow the order the writes were applied (each is drawn from its
sequence under the lock). But the two sequences cannot be compared with each other, and
``created_at`` is the transaction's start (or a back-dated time), not the order under
the lock: nothing stored says which generations came before an entry. What *is* known
is the order within each: so C(*i*) must be one of the prefix sums of the organization's
generations' credits in id order (0, c1, c1+c2, ...), and C must never decrease from one
entry to the next. Both hold for every history the writes can produce, and together
they are exactly "there is an interleaving of the generations, in their order, with the
entries, in theirs, that gives every ``balance_after``": the check never reports a false
drift, and it reports every ``balance_after`` that no interleaving explains. What it
cannot see: a ``balance_after`` altered by exactly the credits of a run of neighbouring
generations (another interleaving explains it); the balance check still catches a
balance moved that way.

**Incremental runs.** A run writes a checkpoint per (organization, local day) for every
organization all of whose checks held, carrying the organization's greatest generation
and ledger ids it counted and its zone. Only the reconciler writes them (the
``dashboard_auditor`` role of migration 0014; the app may only read them). The next
incremental run checks:

- the checkpoints themselves (``checkpoint``): one dated after the organization's local
  day at ``now``, or claiming a generation or ledger id past the organization's newest,
  was not written by a verifying run. It is a drift, said in a sentence, and the
  organization's checkpoints count for nothing: everything of it is checked, and the
  run deletes them. (A generation recorded with a time in the future makes the
  checkpoint of its day such a drift until that day comes: worth a look either way.)
- the balance of every organization (from the ledger and the running total of its latest
  day: one index probe each);
- the ledger chain of each organization with generations or ledger entries past its
  checkpoint, or none, or a changed zone;
- the rollups of the local days that have generations past the checkpoint, and of the
  newest day of every rollup of every organization (the newest day of
  ``organization_daily_usage``, ``usage_limits``, ``user_daily_usage`` and
  ``quarter_hour_usage``): a count or running total edited on the latest day, where a
  balance moved by hand would hide, is found by the next run;
- the running totals and months of every organization with a day checked (so, every
  organization with rollups): the small rollups, read whole;
- every grant of every organization (grants are few: one per positive entry), each
  against its entries by their keys; the ledger's side (an ``expired`` or positive entry
  without its grant) for the organizations whose ledger chain is checked.

A run that finds drift in an organization deletes its checkpoints, so the drift is
checked again until it is mended: a checkpoint is written only for what verified.
``full=True`` checks everything from the raw rows. An incremental run trusts that a
verified day's rows change only through new generations; a row edited by hand on a
verified day is found by the next full run.

**Recorded runs.** A run that records its checkpoints records what it found too, in the
same transaction (``reconciliation_runs``, migration 0024): its instant, scope and
drifts, and the database login that ran it. The Reconciliation page shows the latest
(:func:`last_run`) on a session's first visit and checks only when asked; its own checks
record nothing, as the app's role may write neither.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import CTE, Connection, Engine, Row, column, text

from queries import recounts
from queries.errors import InvalidInput
from queries.transactions import run_in_transaction

# The invariants, in the order a report lists them.
CHECKS: tuple[str, ...] = (
    "checkpoint",
    "balance",
    "ledger",
    "grants",
    "grants.balance",
    "grants.expiry",
    "grants.ledger",
    "grants.marks",
    "usage_limits",
    "user_daily_usage",
    "quarter_hour_usage",
    "organization_daily_usage",
    "organization_daily_usage.through",
    "organization_monthly_usage",
    "usual_days",
    "usage_edges",
)
# Above this many changed days an incremental run checks everything instead: at 10M
# generations, 1.4M days by index ranges took 155 s, one full pass 93 s.
FULL_ABOVE_DAYS = 200_000
# A full check at scale runs for minutes, not the 10 s of a page's write; the
# checkpoints it writes are one statement per kind.
CHECKPOINT_BUDGET_SECONDS = 120.0


@dataclass(frozen=True, slots=True)
class Drift:
    """One invariant that does not hold for one organization.

    ``first_entry`` (the ledger id) or ``first_date`` (the local day, or the month's
    first day) is where it first appears; ``where`` says the same in words, with the
    key of the first drifted row (type, user, quarter-hour). ``what`` is the quantity
    that differs there, ``expected`` the value the raw rows give and ``found`` the value
    stored. ``rows`` counts the drifted entries or rows of this check."""

    organization_id: int
    slug: str
    check: str
    what: str
    first_entry: int | None
    first_date: dt.date | None
    where: str
    expected: int
    found: int
    rows: int


@dataclass(frozen=True, slots=True)
class Verified:
    """What a clean organization's checkpoints record (its greatest ids counted)."""

    organization_id: int
    generation_id: int
    ledger_id: int
    timezone: str


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """The result of one run: every drift, ordered by organization and check, and the
    scope it covered (``days_checked`` is None for a full run: every day). An
    incremental run with more than ``FULL_ABOVE_DAYS`` changed days is run in full, and
    says so (``full``)."""

    full: bool
    drifts: tuple[Drift, ...]
    organizations_checked: int
    days_checked: int | None
    checked_at: dt.datetime
    # For the checkpoints: the clean organizations and the (organization, day) pairs
    # checked; a full run checkpoints every day of a clean organization.
    verified: tuple[Verified, ...] = ()
    day_organizations: tuple[int, ...] = ()
    days: tuple[dt.date, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.drifts


@dataclass(frozen=True, slots=True)
class RecordedRun:
    """A run ``reconcile`` recorded (``reconciliation_runs``, migration 0024): what it
    found (``result``: its scope, instant and drifts; not the checkpoints' part) and who
    ran it (``ran_by``: the database login, as the database recorded it)."""

    id: int
    ran_by: str
    result: Reconciliation


# What changed since the checkpoints: (organization, local day) of every generation past
# the organization's checkpointed id and of the newest day of each rollup, and
# (organization, NULL) for every organization whose ledger chain to check (those with
# generations or ledger entries past its checkpoint, without checkpoints, whose zone
# changed since, or with a checkpoint no verifying run wrote: see _CHECKPOINTS).
# Generations are read on their primary key from the checkpointed id up, and the newest
# days are one index probe per rollup, so a quiet night reads almost nothing.
_SCOPE = text(
    """
    -- Materialized: inlined, each organization's newest ids were looked up again for
    -- every one of its checkpoint rows (3.3M at 100M, 40 s).
    WITH newest AS MATERIALIZED (
        SELECT o.id AS organization_id, o.timezone,
               (CAST(:now AS timestamptz) AT TIME ZONE o.timezone)::date AS today,
               coalesce((SELECT max(g.id) FROM generations g WHERE g.organization_id = o.id),
                        0) AS generation_id,
               coalesce((SELECT max(l.id) FROM credit_ledger l WHERE l.organization_id = o.id),
                        0) AS ledger_id
        FROM organizations o
        WHERE EXISTS (SELECT FROM reconciliation_checkpoints c WHERE c.organization_id = o.id)
    ),
    marks AS (
        SELECT n.organization_id,
               CASE WHEN bool_and(c.timezone = n.timezone AND c.date <= n.today
                                  AND c.generation_id <= n.generation_id
                                  AND c.ledger_id <= n.ledger_id)
                    THEN max(c.generation_id) END AS generation_id,
               CASE WHEN bool_and(c.timezone = n.timezone AND c.date <= n.today
                                  AND c.generation_id <= n.generation_id
                                  AND c.ledger_id <= n.ledger_id)
                    THEN max(c.ledger_id) END AS ledger_id
        FROM newest n
        JOIN reconciliation_checkpoints c ON c.organization_id = n.organization_id
        GROUP BY n.organization_id
    ),
    -- Per organization, so each reads only the generations past its mark on
    -- pk_generations: as one join the planner cannot know how few there are, and at
    -- 100M it scanned the whole table (100 s) to keep none of it.
    days AS (
        SELECT o.id AS organization_id, d.date
        FROM organizations o
        LEFT JOIN marks m ON m.organization_id = o.id
        CROSS JOIN LATERAL (
            SELECT DISTINCT (g.created_at AT TIME ZONE o.timezone)::date AS date
            FROM generations g
            WHERE g.organization_id = o.id AND g.id > coalesce(m.generation_id, 0)
        ) AS d
    ),
    latest AS (
        SELECT o.id AS organization_id, x.date
        FROM organizations o
        CROSS JOIN LATERAL (
            VALUES
                ((SELECT max(d.date) FROM organization_daily_usage d
                  WHERE d.organization_id = o.id)),
                ((SELECT max(u.date) FROM usage_limits u WHERE u.organization_id = o.id)),
                ((SELECT max(r.date) FROM user_daily_usage r WHERE r.organization_id = o.id)),
                ((SELECT (max(q.bucket) AT TIME ZONE o.timezone)::date
                  FROM quarter_hour_usage q WHERE q.organization_id = o.id))
        ) AS x(date)
        WHERE x.date IS NOT NULL
    ),
    orgs AS (
        SELECT organization_id FROM days
        UNION
        SELECT o.id
        FROM organizations o
        LEFT JOIN marks m ON m.organization_id = o.id
        WHERE m.ledger_id IS NULL
           OR EXISTS (SELECT FROM credit_ledger l
                      WHERE l.organization_id = o.id AND l.id > m.ledger_id)
    )
    (SELECT organization_id, date FROM days
     UNION
     SELECT organization_id, date FROM latest)
    UNION ALL
    SELECT organization_id, NULL FROM orgs
    ORDER BY 1, 2
    """
)

# Checkpoints that no verifying run can have written: dated after the organization's
# local day at :now, or claiming a generation or ledger id past its newest (ids only
# grow, and the history is append-only). One drift per organization, at its latest such
# checkpoint, with the reason in a sentence. A checkpoint of another zone (left by a
# zone change) is not dated against today: the next clean run replaces it.
_CHECKPOINTS = text(
    """
    -- Materialized: inlined, each organization's newest ids were looked up again for
    -- every one of its checkpoint rows (3.3M at 100M, 40 s).
    WITH newest AS MATERIALIZED (
        SELECT o.id AS organization_id, o.slug, o.timezone,
               (CAST(:now AS timestamptz) AT TIME ZONE o.timezone)::date AS today,
               coalesce((SELECT max(g.id) FROM generations g WHERE g.organization_id = o.id),
                        0) AS generation_id,
               coalesce((SELECT max(l.id) FROM credit_ledger l WHERE l.organization_id = o.id),
                        0) AS ledger_id
        FROM organizations o
        WHERE EXISTS (SELECT FROM reconciliation_checkpoints c WHERE c.organization_id = o.id)
    ),
    poisoned AS (
        SELECT n.organization_id, n.slug, c.date,
               c.timezone = n.timezone AND c.date > n.today AS future,
               c.generation_id > n.generation_id AS past_generations,
               c.generation_id, c.ledger_id, n.today,
               n.generation_id AS newest_generation, n.ledger_id AS newest_ledger,
               count(*) OVER (PARTITION BY n.organization_id) AS rows,
               row_number() OVER (PARTITION BY n.organization_id ORDER BY c.date DESC) AS n
        FROM newest n
        JOIN reconciliation_checkpoints c ON c.organization_id = n.organization_id
        WHERE (c.timezone = n.timezone AND c.date > n.today)
           OR c.generation_id > n.generation_id
           OR c.ledger_id > n.ledger_id
    )
    SELECT p.organization_id, p.slug, 'checkpoint' AS check,
           CASE WHEN p.future THEN 'days after today'
                WHEN p.past_generations THEN 'generation_id'
                ELSE 'ledger_id' END AS what,
           NULL::bigint AS first_entry, p.date AS first_date,
           CASE WHEN p.future
                THEN 'the checkpoint of ' || to_char(p.date, 'YYYY-MM-DD')
                     || ' is in the future (today is ' || to_char(p.today, 'YYYY-MM-DD')
                     || ' there): no run verified it'
                WHEN p.past_generations
                THEN 'the checkpoint of ' || to_char(p.date, 'YYYY-MM-DD')
                     || ' claims generations up to id ' || p.generation_id
                     || ', past the newest (' || p.newest_generation || '): no run verified it'
                ELSE 'the checkpoint of ' || to_char(p.date, 'YYYY-MM-DD')
                     || ' claims ledger entries up to id ' || p.ledger_id
                     || ', past the newest (' || p.newest_ledger || '): no run verified it'
           END AS "where",
           CASE WHEN p.future THEN 0
                WHEN p.past_generations THEN p.newest_generation
                ELSE p.newest_ledger END AS expected,
           CASE WHEN p.future THEN p.date - p.today
                WHEN p.past_generations THEN p.generation_id
                ELSE p.ledger_id END AS found,
           p.rows
    FROM poisoned p
    WHERE p.n = 1
    ORDER BY p.organization_id
    """
)

# The organizations checked, with their greatest ids and zone in this snapshot.
_MARKS = text(
    """
    SELECT o.id AS organization_id, o.timezone,
           coalesce((SELECT max(g.id) FROM generations g WHERE g.organization_id = o.id), 0)
               AS generation_id,
           coalesce((SELECT max(l.id) FROM credit_ledger l WHERE l.organization_id = o.id), 0)
               AS ledger_id
    FROM organizations o
    WHERE CAST(:full AS boolean) OR o.id = ANY(CAST(:orgs AS bigint[]))
    ORDER BY o.id
    """
)

# Every organization's balance. A full run sums the generations; an incremental one
# takes the running total of the organization's latest day (the rollups of the days
# that changed are checked in the same snapshot, the others were verified before).
_BALANCE = text(
    """
    WITH ledger AS (
        SELECT organization_id, sum(amount) AS total FROM credit_ledger GROUP BY 1
    ),
    consumed_full AS (
        SELECT organization_id, sum(credits) AS total
        FROM generations
        WHERE CAST(:full AS boolean)
        GROUP BY 1
    ),
    checked AS (
        SELECT b.organization_id, b.balance AS found,
               coalesce(l.total, 0) - coalesce(
                   CASE WHEN CAST(:full AS boolean) THEN f.total
                        ELSE (SELECT d.credits_through FROM organization_daily_usage d
                              WHERE d.organization_id = b.organization_id
                              ORDER BY d.date DESC LIMIT 1)
                   END, 0) AS expected
        FROM credit_balances b
        LEFT JOIN ledger l ON l.organization_id = b.organization_id
        LEFT JOIN consumed_full f ON f.organization_id = b.organization_id
    )
    SELECT c.organization_id, o.slug, 'balance' AS check, 'balance' AS what,
           NULL::bigint AS first_entry, NULL::date AS first_date, 'the balance' AS "where",
           c.expected, c.found, 1 AS rows
    FROM checked c JOIN organizations o ON o.id = c.organization_id
    WHERE c.expected <> c.found
    ORDER BY c.organization_id
    """
)

# The balance_after chain (see the module's docstring). consumed = what the generations
# applied before the entry must have consumed; it must be a prefix sum of the
# generations' credits in id order (a hash join against the entries' values, so the
# generations are read once, in primary-key order, and never sorted) and must not
# decrease. For each organization's first drifted entry, "expected" is the balance_after
# of the nearest consistent consumption: the greatest prefix sum from the previous
# entry's consumption up to this one's.
_LEDGER = text(
    """
    WITH orgs AS (
        SELECT id AS organization_id FROM organizations WHERE CAST(:full AS boolean)
        UNION ALL
        SELECT unnest(CAST(:orgs AS bigint[])) WHERE NOT CAST(:full AS boolean)
    ),
    running AS (
        SELECT l.organization_id, l.id, l.balance_after,
               sum(l.amount) OVER w AS through,
               sum(l.amount) OVER w - l.balance_after AS consumed
        FROM orgs JOIN credit_ledger l ON l.organization_id = orgs.organization_id
        WINDOW w AS (PARTITION BY l.organization_id ORDER BY l.id)
    ),
    entries AS (
        SELECT r.*,
               coalesce(lag(r.consumed) OVER (PARTITION BY r.organization_id ORDER BY r.id), 0)
                   AS previous
        FROM running r
    ),
    prefix AS MATERIALIZED (
        SELECT g.organization_id,
               sum(g.credits) OVER (PARTITION BY g.organization_id ORDER BY g.id) AS consumed
        FROM orgs JOIN generations g ON g.organization_id = orgs.organization_id
    ),
    reachable AS (
        SELECT DISTINCT p.organization_id, p.consumed
        FROM prefix p
        JOIN entries e ON e.organization_id = p.organization_id AND e.consumed = p.consumed
    ),
    drifted AS (
        SELECT e.*, count(*) OVER (PARTITION BY e.organization_id) AS rows,
               row_number() OVER (PARTITION BY e.organization_id ORDER BY e.id) AS n
        FROM entries e
        WHERE e.consumed < e.previous
           OR (e.consumed <> 0 AND NOT EXISTS (
                   SELECT FROM reachable r
                   WHERE r.organization_id = e.organization_id AND r.consumed = e.consumed))
    )
    SELECT d.organization_id, o.slug, 'ledger' AS check, 'balance_after' AS what,
           d.id AS first_entry, NULL::date AS first_date,
           'ledger entry ' || d.id AS "where",
           d.through - coalesce(
               (SELECT max(p.consumed) FROM prefix p
                WHERE p.organization_id = d.organization_id
                  AND p.consumed BETWEEN d.previous AND d.consumed),
               d.previous) AS expected,
           d.balance_after AS found, d.rows
    FROM drifted d JOIN organizations o ON o.id = d.organization_id
    WHERE d.n = 1
    ORDER BY d.organization_id
    """
)


# The credit grants (see the module's docstring). The grants' side reads every grant, and
# each one's entries by key (the grant's entry on the ledger's primary key, its expiry
# on (organization_id, idempotency_key)); the ledger's side, which must read entries to
# find one without its grant, only the organizations whose chain is checked. One row per
# organization and check: its first drifted grant or entry.
_GRANTS = text(
    """
    WITH ledger_orgs AS (
        SELECT id AS organization_id FROM organizations WHERE CAST(:full AS boolean)
        UNION ALL
        SELECT unnest(CAST(:orgs AS bigint[])) WHERE NOT CAST(:full AS boolean)
    ),
    covered AS (
        SELECT g.organization_id, max(coalesce(g.ledger_entry_id, 0)) AS through
        FROM credit_grants g WHERE g.source = 'opening' GROUP BY 1
    ),
    drift AS (
        SELECT g.organization_id, 'grants' AS check, 'remaining' AS what,
               g.ledger_entry_id AS first_entry, g.id AS key,
               'grant ' || g.id || ': remaining should be amount ' || g.amount
                   || ' - drawn ' || g.drawn || ' - expired ' || g.expired
                   || ' - reversed ' || g.reversed AS "where",
               g.amount - g.drawn - g.expired - g.reversed AS expected, g.remaining AS found
        FROM credit_grants g
        WHERE g.remaining <> g.amount - g.drawn - g.expired - g.reversed
        UNION ALL
        SELECT b.organization_id, 'grants.balance', 'balance', NULL, 0,
               'the balance against the sum of the grants'' remaining amounts',
               coalesce(s.remaining, 0), b.balance
        FROM credit_balances b
        LEFT JOIN (SELECT g.organization_id, sum(g.remaining) AS remaining
                   FROM credit_grants g GROUP BY 1) s ON s.organization_id = b.organization_id
        WHERE b.balance <> coalesce(s.remaining, 0)
        UNION ALL
        SELECT g.organization_id, 'grants.expiry',
               CASE WHEN l.id IS NULL OR -l.amount <> g.expired THEN 'expired'
                    WHEN l.effective_at IS DISTINCT FROM g.expires_at THEN 'effective_at'
                    ELSE 'written_off_at' END,
               l.id, g.id,
               CASE WHEN l.id IS NULL
                    THEN 'grant ' || g.id || ' expired ' || g.expired
                         || ' credits, but the ledger has no expiry entry for it'
                    WHEN -l.amount <> g.expired
                    THEN 'ledger entry ' || l.id || ' expired ' || -l.amount
                         || ' credits of grant ' || g.id || ', which records '
                         || g.expired || ' as expired'
                    WHEN l.effective_at IS DISTINCT FROM g.expires_at
                    THEN 'ledger entry ' || l.id || ' takes effect at '
                         || coalesce(to_char(l.effective_at AT TIME ZONE 'UTC',
                                             'YYYY-MM-DD HH24:MI:SS "UTC"'), 'no time')
                         || ', but grant ' || g.id || ' expires at '
                         || coalesce(to_char(g.expires_at AT TIME ZONE 'UTC',
                                             'YYYY-MM-DD HH24:MI:SS "UTC"'), 'no time')
                    ELSE 'grant ' || g.id || ' is not marked written off, but ledger entry '
                         || l.id || ' wrote it off'
               END,
               CASE WHEN l.id IS NULL OR -l.amount <> g.expired THEN coalesce(-l.amount, 0)
                    WHEN l.effective_at IS DISTINCT FROM g.expires_at
                    THEN coalesce(extract(epoch FROM g.expires_at)::bigint, 0)
                    ELSE 1 END,
               CASE WHEN l.id IS NULL OR -l.amount <> g.expired THEN g.expired
                    WHEN l.effective_at IS DISTINCT FROM g.expires_at
                    THEN coalesce(extract(epoch FROM l.effective_at)::bigint, 0)
                    ELSE 0 END
        FROM credit_grants g
        LEFT JOIN credit_ledger l
          ON l.organization_id = g.organization_id AND l.idempotency_key = 'expiry:' || g.id
        WHERE (g.expired > 0 OR l.id IS NOT NULL)
          AND (l.id IS NULL OR -l.amount <> g.expired
               OR l.effective_at IS DISTINCT FROM g.expires_at OR g.written_off_at IS NULL)
        UNION ALL
        SELECT l.organization_id, 'grants.expiry', 'expired', l.id, l.grant_id,
               'ledger entry ' || l.id || ' expired ' || -l.amount || ' credits of grant '
                   || coalesce(l.grant_id::text, '(none)') || ', which does not exist',
               0, -l.amount
        FROM ledger_orgs o
        JOIN credit_ledger l ON l.organization_id = o.organization_id
        WHERE l.kind = 'expired'
          AND NOT EXISTS (SELECT FROM credit_grants g
                          WHERE g.organization_id = l.organization_id AND g.id = l.grant_id)
        UNION ALL
        SELECT g.organization_id, 'grants.ledger', 'amount', g.ledger_entry_id, g.id,
               CASE WHEN l.id IS NULL
                    THEN 'grant ' || g.id || ' (' || g.source || ') was made by ledger entry '
                         || coalesce(g.ledger_entry_id::text, '(none)')
                         || ', which does not exist'
                    ELSE 'grant ' || g.id || ' holds ' || g.amount || ' credits, but ledger '
                         || 'entry ' || l.id || ' that made it moved ' || l.amount
               END,
               coalesce(l.amount, 0), g.amount
        FROM credit_grants g
        LEFT JOIN credit_ledger l
          ON l.organization_id = g.organization_id AND l.id = g.ledger_entry_id
        WHERE g.source <> 'opening' AND (l.id IS NULL OR l.amount <> g.amount)
        UNION ALL
        SELECT l.organization_id, 'grants.ledger', 'grants', l.id, l.id,
               'ledger entry ' || l.id || ' granted ' || l.amount
                   || ' credits, but made no grant',
               l.amount, 0
        FROM ledger_orgs o
        JOIN credit_ledger l ON l.organization_id = o.organization_id
        LEFT JOIN covered c ON c.organization_id = l.organization_id
        WHERE l.amount > 0 AND l.id > coalesce(c.through, 0)
          AND NOT EXISTS (SELECT FROM credit_grants g
                          WHERE g.organization_id = l.organization_id
                            AND g.ledger_entry_id = l.id)
        UNION ALL
        SELECT b.organization_id, 'grants.marks',
               CASE WHEN b.next_expiry IS DISTINCT FROM m.next_expiry THEN 'next_expiry'
                    ELSE 'head_grant_id' END,
               NULL, 0,
               CASE WHEN b.next_expiry IS DISTINCT FROM m.next_expiry
                    THEN 'the balance row''s next expiry against the soonest expiry of the '
                         || 'grants not written off (seconds since 1970)'
                    ELSE 'the balance row''s first grant in line against the grants'' '
                         || 'draw order'
               END,
               CASE WHEN b.next_expiry IS DISTINCT FROM m.next_expiry
                    THEN coalesce(extract(epoch FROM m.next_expiry)::bigint, 0)
                    ELSE coalesce(h.id, 0) END,
               CASE WHEN b.next_expiry IS DISTINCT FROM m.next_expiry
                    THEN coalesce(extract(epoch FROM b.next_expiry)::bigint, 0)
                    ELSE b.head_grant_id END
        FROM credit_balances b
        LEFT JOIN (SELECT g.organization_id, min(g.expires_at) AS next_expiry
                   FROM credit_grants g WHERE g.written_off_at IS NULL
                   GROUP BY 1) m ON m.organization_id = b.organization_id
        LEFT JOIN LATERAL (
            SELECT g.id FROM credit_grants g
            WHERE g.organization_id = b.organization_id AND g.remaining > 0
              AND g.written_off_at IS NULL
              AND (g.expires_at IS NULL OR g.expires_at > now())
            ORDER BY g.priority, g.expires_at NULLS LAST, g.id
            LIMIT 1
        ) h ON b.head_grant_id IS NOT NULL
        WHERE b.next_expiry IS DISTINCT FROM m.next_expiry
           OR (b.head_grant_id IS NOT NULL
               AND b.head_grant_id IS DISTINCT FROM h.id
               AND EXISTS (SELECT FROM credit_grants g
                           WHERE g.organization_id = b.organization_id
                             AND g.id = b.head_grant_id AND g.remaining > 0
                             AND g.written_off_at IS NULL
                             AND (g.expires_at IS NULL OR g.expires_at > now())))
    ),
    ranked AS (
        SELECT d.*, count(*) OVER (PARTITION BY d.organization_id, d.check) AS rows,
               row_number() OVER (PARTITION BY d.organization_id, d.check
                                  ORDER BY d.key, d.first_entry) AS n
        FROM drift d
    )
    SELECT r.organization_id, o.slug, r.check, r.what, r.first_entry,
           NULL::date AS first_date, r."where", r.expected, r.found, r.rows
    FROM ranked r JOIN organizations o ON o.id = r.organization_id
    WHERE r.n = 1
    ORDER BY r.organization_id, r.check
    """
)


# Every rollup against its recount (queries/recounts.py) from the generations of the
# days in scope (a full run: every day). ``gens`` is the generations of those days: all
# of them read once in a full run, else each (organization, day) read as a range of the
# (organization_id, created_at) index. The constant :full prunes the branch not taken at
# planning time. The running totals and the months are checked over every day of the
# organizations in scope (in an incremental run: the ledger's and those with a day in
# scope, which the newest days make every organization with rollups), against the
# recount where it was made and the rollup (verified before) elsewhere. It is one
# statement, one WITH: the scope, the stored rows and the drift are text, the recounts
# the shared Core over ``gens``.
def _cte(name: str, sql: str, *columns: str) -> CTE:
    """A WITH entry written as text, with the columns the Core parts read of it."""
    return text(sql).columns(*(column(c) for c in columns)).cte(name)


_SCOPE_DAYS = _cte(
    "scope",
    """
    -- The local day's instants, widened by a few hours: where midnight falls in a DST
    -- gap or overlap the local date decides, exactly as the rollups keyed it.
    SELECT s.organization_id, s.date, o.timezone,
           (s.date::timestamp AT TIME ZONE o.timezone) - interval '3 hours' AS lo,
           ((s.date + 1)::timestamp AT TIME ZONE o.timezone) + interval '3 hours' AS hi
    FROM unnest(CAST(:day_orgs AS bigint[]), CAST(:days AS date[])) AS s(organization_id, date)
    JOIN organizations o ON o.id = s.organization_id
    WHERE NOT CAST(:full AS boolean)
    """,
)
_SCOPE_ORGS = _cte(
    "orgs",
    """
    SELECT id AS organization_id, timezone FROM organizations WHERE CAST(:full AS boolean)
    UNION ALL
    SELECT o.id, o.timezone
    FROM organizations o
    WHERE NOT CAST(:full AS boolean)
      AND (o.id = ANY(CAST(:orgs AS bigint[])) OR o.id = ANY(CAST(:day_orgs AS bigint[])))
    """,
)
_GENS = _cte(
    "gens",
    """
    SELECT g.organization_id, g.user_id, g.type, g.credits, g.created_at,
           (g.created_at AT TIME ZONE o.timezone)::date AS date
    FROM generations g JOIN organizations o ON o.id = g.organization_id
    WHERE CAST(:full AS boolean)
    UNION ALL
    SELECT g.organization_id, g.user_id, g.type, g.credits, g.created_at, s.date
    FROM scope s
    -- One index range per day in scope: OFFSET 0 keeps the subquery from being
    -- flattened into a join, which at 10,000 days in scope (each organization's
    -- today) the planner made a merge join over all 100M generations, sorted (90 s).
    CROSS JOIN LATERAL (
        SELECT g.organization_id, g.user_id, g.type, g.credits, g.created_at
        FROM generations g
        WHERE g.organization_id = s.organization_id
          AND g.created_at >= s.lo AND g.created_at < s.hi
          AND (g.created_at AT TIME ZONE s.timezone)::date = s.date
        OFFSET 0
    ) AS g
    """,
    "organization_id",
    "user_id",
    "type",
    "credits",
    "created_at",
    "date",
).prefix_with("MATERIALIZED")
_RECOUNT_DAYS = recounts.days(_GENS).cte("recount_days")
# The stored rows of the days in scope.
_STORED = (
    _cte(
        "usage_rows",
        """
        SELECT u.organization_id, u.date, u.type, u.used, u.credits_used
        FROM usage_limits u WHERE CAST(:full AS boolean)
        UNION ALL
        SELECT u.organization_id, u.date, u.type, u.used, u.credits_used
        FROM scope s
        JOIN usage_limits u ON u.organization_id = s.organization_id AND u.date = s.date
        """,
    ),
    _cte(
        "user_rows",
        """
        SELECT r.organization_id, r.user_id, r.date, r.type, r.generations, r.credits
        FROM user_daily_usage r WHERE CAST(:full AS boolean)
        UNION ALL
        SELECT r.organization_id, r.user_id, r.date, r.type, r.generations, r.credits
        FROM scope s
        JOIN user_daily_usage r ON r.organization_id = s.organization_id AND r.date = s.date
        """,
    ),
    _cte(
        "quarter_rows",
        """
        SELECT r.organization_id, r.bucket, r.type, r.generations, r.credits,
               (r.bucket AT TIME ZONE o.timezone)::date AS date
        FROM quarter_hour_usage r JOIN organizations o ON o.id = r.organization_id
        WHERE CAST(:full AS boolean)
        UNION ALL
        SELECT r.organization_id, r.bucket, r.type, r.generations, r.credits, s.date
        FROM scope s
        JOIN quarter_hour_usage r
          ON r.organization_id = s.organization_id AND r.bucket >= s.lo AND r.bucket < s.hi
         AND (r.bucket AT TIME ZONE s.timezone)::date = s.date
        """,
    ),
    _cte(
        "day_rows",
        """
        SELECT d.organization_id, d.date, d.generations, d.credits
        FROM organization_daily_usage d WHERE CAST(:full AS boolean)
        UNION ALL
        SELECT d.organization_id, d.date, d.generations, d.credits
        FROM scope s
        JOIN organization_daily_usage d
          ON d.organization_id = s.organization_id AND d.date = s.date
        """,
    ),
)
# Every day of the organizations in scope: recounted where it was in scope, the (earlier
# verified) rollup elsewhere.
_TRUTH_DAYS = _cte(
    "truth_days",
    """
    SELECT organization_id, date, generations, credits FROM recount_days
    UNION ALL
    SELECT d.organization_id, d.date, d.generations, d.credits
    FROM orgs
    JOIN organization_daily_usage d ON d.organization_id = orgs.organization_id
    WHERE NOT CAST(:full AS boolean)
      AND NOT EXISTS (SELECT FROM scope s
                      WHERE s.organization_id = d.organization_id AND s.date = d.date)
    """,
    "organization_id",
    "date",
    "generations",
    "credits",
)
_RECOUNTS = (
    recounts.recount("usage_limits", _GENS).cte("by_type"),
    recounts.recount("user_daily_usage", _GENS).cte("by_user"),
    recounts.recount("quarter_hour_usage", _GENS).cte("by_quarter"),
    recounts.running_totals(_TRUTH_DAYS).cte("truth_through"),
    recounts.months(_TRUTH_DAYS).cte("truth_months"),
)
_DRIFT = _cte(
    "drift",
    """
    SELECT coalesce(r.organization_id, c.organization_id) AS organization_id,
           'usage_limits' AS check, coalesce(r.date, c.date) AS date,
           'type ' || coalesce(r.type, c.type) AS key,
           coalesce(c.used, 0) AS expected_generations,
           coalesce(r.used, 0) AS found_generations,
           coalesce(c.credits_used, 0) AS expected_credits,
           coalesce(r.credits_used, 0) AS found_credits
    FROM usage_rows r
    FULL JOIN by_type c
      ON c.organization_id = r.organization_id AND c.date = r.date AND c.type = r.type
    WHERE (coalesce(c.used, 0), coalesce(c.credits_used, 0))
          <> (coalesce(r.used, 0), coalesce(r.credits_used, 0))
    UNION ALL
    SELECT coalesce(r.organization_id, c.organization_id), 'user_daily_usage',
           coalesce(r.date, c.date),
           'user ' || coalesce(r.user_id, c.user_id) || ', type ' || coalesce(r.type, c.type),
           coalesce(c.generations, 0), coalesce(r.generations, 0),
           coalesce(c.credits, 0), coalesce(r.credits, 0)
    FROM user_rows r
    FULL JOIN by_user c
      ON c.organization_id = r.organization_id AND c.user_id = r.user_id
     AND c.date = r.date AND c.type = r.type
    WHERE (coalesce(c.generations, 0), coalesce(c.credits, 0))
          <> (coalesce(r.generations, 0), coalesce(r.credits, 0))
    UNION ALL
    -- A quarter-hour's local date: every local midnight is on a quarter-hour boundary.
    SELECT coalesce(r.organization_id, c.organization_id), 'quarter_hour_usage',
           coalesce(r.date, (c.bucket AT TIME ZONE (SELECT o.timezone FROM organizations o
                                                    WHERE o.id = c.organization_id))::date),
           to_char(coalesce(r.bucket, c.bucket) AT TIME ZONE 'UTC', 'HH24:MI "UTC"')
               || ', type ' || coalesce(r.type, c.type),
           coalesce(c.generations, 0), coalesce(r.generations, 0),
           coalesce(c.credits, 0), coalesce(r.credits, 0)
    FROM quarter_rows r
    FULL JOIN by_quarter c
      ON c.organization_id = r.organization_id AND c.bucket = r.bucket AND c.type = r.type
    WHERE (coalesce(c.generations, 0), coalesce(c.credits, 0))
          <> (coalesce(r.generations, 0), coalesce(r.credits, 0))
    UNION ALL
    SELECT coalesce(r.organization_id, c.organization_id), 'organization_daily_usage',
           coalesce(r.date, c.date), 'the day',
           coalesce(c.generations, 0), coalesce(r.generations, 0),
           coalesce(c.credits, 0), coalesce(r.credits, 0)
    FROM day_rows r
    FULL JOIN recount_days c ON c.organization_id = r.organization_id AND c.date = r.date
    WHERE (coalesce(c.generations, 0), coalesce(c.credits, 0))
          <> (coalesce(r.generations, 0), coalesce(r.credits, 0))
    UNION ALL
    SELECT d.organization_id, 'organization_daily_usage.through', d.date,
           'the running totals',
           coalesce(t.generations_through, 0), d.generations_through,
           coalesce(t.credits_through, 0), d.credits_through
    FROM orgs
    JOIN organization_daily_usage d ON d.organization_id = orgs.organization_id
    LEFT JOIN truth_through t ON t.organization_id = d.organization_id AND t.date = d.date
    WHERE (coalesce(t.generations_through, 0), coalesce(t.credits_through, 0))
          <> (d.generations_through, d.credits_through)
    UNION ALL
    SELECT coalesce(r.organization_id, c.organization_id), 'organization_monthly_usage',
           coalesce(r.month, c.month), 'the month',
           coalesce(c.generations, 0), coalesce(r.generations, 0),
           coalesce(c.credits, 0), coalesce(r.credits, 0)
    FROM (SELECT m.organization_id, m.month, m.generations, m.credits
          FROM orgs
          JOIN organization_monthly_usage m ON m.organization_id = orgs.organization_id) r
    FULL JOIN truth_months c ON c.organization_id = r.organization_id AND c.month = r.month
    WHERE (coalesce(c.generations, 0), coalesce(c.credits, 0))
          <> (coalesce(r.generations, 0), coalesce(r.credits, 0))
    """,
)
_RANKED = _cte(
    "ranked",
    """
    SELECT d.*,
           count(*) OVER (PARTITION BY d.organization_id, d.check) AS rows,
           row_number() OVER (PARTITION BY d.organization_id, d.check
                              ORDER BY d.date, d.key) AS n
    FROM drift d
    """,
)
_ROLLUPS = (
    text(
        """
        SELECT r.organization_id, o.slug, r.check,
               CASE WHEN r.expected_generations <> r.found_generations
                    THEN 'generations' ELSE 'credits' END AS what,
               NULL::bigint AS first_entry, r.date AS first_date,
               r.date || ', ' || r.key AS "where",
               CASE WHEN r.expected_generations <> r.found_generations
                    THEN r.expected_generations ELSE r.expected_credits END AS expected,
               CASE WHEN r.expected_generations <> r.found_generations
                    THEN r.found_generations ELSE r.found_credits END AS found,
               r.rows
        FROM ranked r JOIN organizations o ON o.id = r.organization_id
        WHERE r.n = 1
        ORDER BY r.organization_id, r.check
        """
    )
    .columns()
    .add_cte(
        _SCOPE_DAYS,
        _SCOPE_ORGS,
        _GENS,
        _RECOUNT_DAYS,
        *_STORED,
        _TRUTH_DAYS,
        *_RECOUNTS,
        _DRIFT,
        _RANKED,
    )
)


# The forecast's kept usual days (migration 0017) of the organizations in scope, each
# against usual_day(), its one definition: only a row still current (its zone and its
# count of generations before the day are the organization's), as the forecast reads
# only those; a stale row is recomputed at the next day's first generation. A table of a
# day or two per organization, so the whole of each organization's is read.
_USUAL_DAYS = text(
    """
    WITH kept AS (
        SELECT d.organization_id, o.slug, d.date, d.usual_before, f.usual_before AS recount
        FROM usual_days d
        JOIN organizations o ON o.id = d.organization_id
        CROSS JOIN LATERAL (
            SELECT coalesce((SELECT b.generations_through FROM organization_daily_usage b
                             WHERE b.organization_id = d.organization_id AND b.date < d.date
                             ORDER BY b.date DESC LIMIT 1), 0) AS generations_before
        ) s
        CROSS JOIN LATERAL usual_day(d.organization_id, d.date) f
        WHERE (CAST(:full AS boolean)
               OR d.organization_id = ANY(CAST(:orgs AS bigint[]))
               OR d.organization_id = ANY(CAST(:day_orgs AS bigint[])))
          AND d.timezone = o.timezone AND d.generations_before = s.generations_before
    ),
    drift AS (
        -- The first hour whose prefix sum differs (past the recount's end: the hour after).
        SELECT k.organization_id, k.slug, k.date,
               coalesce(x.i, cardinality(k.recount) + 1) AS i,
               coalesce(x.expected, 0) AS expected,
               coalesce(x.found, k.usual_before[cardinality(k.recount) + 1]) AS found,
               count(*) OVER (PARTITION BY k.organization_id) AS rows,
               row_number() OVER (PARTITION BY k.organization_id ORDER BY k.date) AS n
        FROM kept k
        LEFT JOIN LATERAL (
            SELECT e.i, e.v AS expected, k.usual_before[e.i] AS found
            FROM unnest(k.recount) WITH ORDINALITY AS e(v, i)
            WHERE e.v IS DISTINCT FROM k.usual_before[e.i]
            ORDER BY e.i LIMIT 1
        ) x ON true
        WHERE k.usual_before IS DISTINCT FROM k.recount
    )
    SELECT organization_id, slug, 'usual_days' AS check, 'generations' AS what,
           NULL::bigint AS first_entry, date AS first_date,
           date || ', the usual generations before hour ' || (i - 1) AS "where",
           expected, coalesce(found, 0) AS found, rows
    FROM drift WHERE n = 1
    ORDER BY organization_id
    """
)


# The kept usage edges (migration 0025), compared with what they must hold. An edge's rows
# are read only while it is kept, so only those are checked. The edges' select and the
# comparison are shared; what they are compared with is one of two recounts.
_EDGE_COLUMNS = ("edge", "organization_id", "generations", "credits")
_EDGES_SELECT = """
    SELECT r.organization_id, o.slug, 'usage_edges' AS check,
           CASE WHEN r.expected_generations <> r.found_generations
                THEN 'generations' ELSE 'credits' END AS what,
           NULL::bigint AS first_entry, (r.edge AT TIME ZONE 'UTC')::date AS first_date,
           'the use before ' || to_char(r.edge AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"')
               AS "where",
           CASE WHEN r.expected_generations <> r.found_generations
                THEN r.expected_generations ELSE r.expected_credits END AS expected,
           CASE WHEN r.expected_generations <> r.found_generations
                THEN r.found_generations ELSE r.found_credits END AS found,
           r.rows
    FROM edges_ranked r JOIN organizations o ON o.id = r.organization_id
    WHERE r.n = 1
    ORDER BY r.organization_id
"""
_EDGES_RANKED = _cte(
    "edges_ranked",
    """
    SELECT d.*, count(*) OVER (PARTITION BY d.organization_id) AS rows,
           row_number() OVER (PARTITION BY d.organization_id ORDER BY d.edge) AS n
    FROM (
        SELECT coalesce(s.organization_id, r.organization_id) AS organization_id,
               coalesce(s.edge, r.edge) AS edge,
               coalesce(r.generations, 0) AS expected_generations,
               coalesce(s.generations, 0) AS found_generations,
               coalesce(r.credits, 0) AS expected_credits,
               coalesce(s.credits, 0) AS found_credits
        FROM edges_stored s
        FULL JOIN edges_recount r
          ON r.edge = s.edge AND r.organization_id = s.organization_id
        WHERE (coalesce(r.generations, 0), coalesce(r.credits, 0))
              <> (coalesce(s.generations, 0), coalesce(s.credits, 0))
    ) d
    """,
)

# Every kept edge against the one recount from the generations (a full run). A running
# total, so it reads every organization's whole history.
_USAGE_EDGES = (
    text(_EDGES_SELECT)
    .columns()
    .add_cte(
        recounts.RECOUNT_USAGE_EDGES.columns(*(column(c) for c in _EDGE_COLUMNS)).cte(
            "edges_recount"
        ),
        _cte(
            "edges_stored",
            """
            SELECT u.edge, u.organization_id, u.generations, u.credits
            FROM usage_edges u JOIN kept_usage_edges k ON k.edge = u.edge
            WHERE CAST(:organization_ids AS bigint[]) IS NULL
               OR u.organization_id = ANY(CAST(:organization_ids AS bigint[]))
            """,
            *_EDGE_COLUMNS,
        ),
        _EDGES_RANKED,
    )
)

# An incremental run: only the kept edges after the start of an organization's earliest
# changed local day can have moved (all of its days, without a checkpoint), each compared with
# usage_before() (migration 0015), the rollups' answer, whose days this same run checks
# against the generations (and earlier runs did up to the checkpoints). Recounting the
# edges from the generations read every such organization's whole history: 219 s at
# 100M, when nearly every organization has a new day each night.
_CHANGED_EDGES = _cte(
    "changed_edges",
    """
    SELECT k.edge, c.organization_id, o.timezone
    FROM (
        SELECT s.organization_id, min(s.date) AS date
        FROM unnest(CAST(:day_orgs AS bigint[]), CAST(:days AS date[]))
            AS s(organization_id, date)
        GROUP BY s.organization_id
    ) c
    JOIN organizations o ON o.id = c.organization_id
    -- Widened by a few hours, as the days' scope is, where midnight falls in a DST gap.
    JOIN kept_usage_edges k
      ON k.edge > (c.date::timestamp AT TIME ZONE o.timezone) - interval '3 hours'
    """,
    "edge",
    "organization_id",
    "timezone",
)
_USAGE_EDGES_CHANGED = (
    text(_EDGES_SELECT)
    .columns()
    .add_cte(
        _CHANGED_EDGES,
        _cte(
            "edges_recount",
            """
            SELECT c.edge, c.organization_id, b.generations, b.credits
            FROM changed_edges c
            CROSS JOIN LATERAL usage_before(c.organization_id, c.timezone, c.edge) b
            WHERE b.generations > 0
            """,
            *_EDGE_COLUMNS,
        ),
        _cte(
            "edges_stored",
            """
            SELECT u.edge, u.organization_id, u.generations, u.credits
            FROM changed_edges c
            JOIN usage_edges u ON u.edge = c.edge AND u.organization_id = c.organization_id
            """,
            *_EDGE_COLUMNS,
        ),
        _EDGES_RANKED,
    )
)


def _drift(row: Row[Any]) -> Drift:
    return Drift(
        organization_id=int(row.organization_id),
        slug=str(row.slug),
        check=str(row.check),
        what=str(row.what),
        first_entry=None if row.first_entry is None else int(row.first_entry),
        first_date=row.first_date,
        where=str(row._mapping["where"]),
        expected=int(row.expected),
        found=int(row.found),
        rows=int(row.rows),
    )


def _instant(now: dt.datetime | None) -> dt.datetime:
    """``now`` (default: the current time), checked to be an aware datetime."""
    if now is None:
        return dt.datetime.now(dt.UTC)
    if not isinstance(now, dt.datetime) or now.utcoffset() is None:
        raise InvalidInput(f"now must be a date and time with a time zone, not {now!r}.")
    return now


def check_books(
    conn: Connection, *, full: bool = False, now: dt.datetime | None = None
) -> Reconciliation:
    """Every drift of the books, per organization, from the raw rows: all organizations
    and days with ``full``, else what changed since the verified checkpoints and the
    newest day of every rollup (the checkpoints themselves and the balances of all
    organizations are always checked; a checkpoint dated after the local day at ``now``,
    default the current time, is a drift). Reads only; run it in one snapshot
    (``reconcile`` does) so a write committing meanwhile is seen whole or not at all. At
    most ten statements, whatever the number of organizations or days."""
    if not isinstance(full, bool):
        raise InvalidInput(f"full must be True or False, not {full!r}.")
    now = _instant(now)
    day_orgs: list[int] = []
    days: list[dt.date] = []
    orgs: list[int] = []
    if not full:
        for org, date in conn.execute(_SCOPE, {"now": now}):
            if date is None:
                orgs.append(int(org))
            else:
                day_orgs.append(int(org))
                days.append(date)
        if len(days) > FULL_ABOVE_DAYS:
            # The first run, or after a long pause: one pass over everything is cheaper
            # than this many per-day index ranges (and checks a superset).
            full, orgs, day_orgs, days = True, [], [], []
    params = {"full": full, "orgs": orgs, "day_orgs": day_orgs, "days": days}
    marks = conn.execute(_MARKS, params).all()
    drifts = [_drift(row) for row in conn.execute(_CHECKPOINTS, {"now": now})]
    drifts += [_drift(row) for row in conn.execute(_BALANCE, params)]
    drifts += [_drift(row) for row in conn.execute(_LEDGER, params)]
    drifts += [_drift(row) for row in conn.execute(_GRANTS, params)]
    drifts += [_drift(row) for row in conn.execute(_ROLLUPS, params)]
    drifts += [_drift(row) for row in conn.execute(_USUAL_DAYS, params)]
    if full:
        drifts += [_drift(row) for row in conn.execute(_USAGE_EDGES, {"organization_ids": None})]
    elif day_orgs:
        drifts += [_drift(row) for row in conn.execute(_USAGE_EDGES_CHANGED, params)]
    order = {check: n for n, check in enumerate(CHECKS)}
    drifts.sort(key=lambda d: (d.slug, d.organization_id, order.get(d.check, len(order))))
    drifted = {d.organization_id for d in drifts}
    verified = tuple(
        Verified(
            organization_id=int(m.organization_id),
            generation_id=int(m.generation_id),
            ledger_id=int(m.ledger_id),
            timezone=str(m.timezone),
        )
        for m in marks
        if int(m.organization_id) not in drifted
    )
    return Reconciliation(
        full=full,
        drifts=tuple(drifts),
        organizations_checked=len(marks),
        days_checked=None if full else len(days),
        checked_at=now.astimezone(dt.UTC),
        verified=verified,
        day_organizations=tuple(day_orgs),
        days=tuple(days),
    )


# The checkpoints a run leaves. Drifted organizations lose theirs (checked in full again
# next time); a clean organization's rows of another zone go, the rest take its new
# ids, and each day checked (a full run: each day of the organization) gets a row.
_FORGET = text(
    "DELETE FROM reconciliation_checkpoints WHERE organization_id = ANY(CAST(:orgs AS bigint[]))"
)
_REZONE = text(
    """
    DELETE FROM reconciliation_checkpoints c
    USING unnest(CAST(:orgs AS bigint[]), CAST(:zones AS text[])) AS m(organization_id, timezone)
    WHERE c.organization_id = m.organization_id AND c.timezone <> m.timezone
    """
)
_ADVANCE = text(
    """
    UPDATE reconciliation_checkpoints c
    SET generation_id = m.generation_id, ledger_id = m.ledger_id, verified_at = now()
    FROM unnest(CAST(:orgs AS bigint[]), CAST(:generation_ids AS bigint[]),
                CAST(:ledger_ids AS bigint[])) AS m(organization_id, generation_id, ledger_id)
    WHERE c.organization_id = m.organization_id
    """
)
_VERIFY_DAYS = text(
    """
    INSERT INTO reconciliation_checkpoints
        (organization_id, date, generation_id, ledger_id, timezone)
    SELECT d.organization_id, d.date, m.generation_id, m.ledger_id, m.timezone
    FROM unnest(CAST(:orgs AS bigint[]), CAST(:generation_ids AS bigint[]),
                CAST(:ledger_ids AS bigint[]), CAST(:zones AS text[]))
         AS m(organization_id, generation_id, ledger_id, timezone)
    JOIN organization_daily_usage d ON d.organization_id = m.organization_id
    WHERE CAST(:full AS boolean)
       OR (d.organization_id, d.date) IN (
              SELECT * FROM unnest(CAST(:day_orgs AS bigint[]), CAST(:days AS date[])))
    ON CONFLICT (organization_id, date) DO UPDATE
        SET generation_id = excluded.generation_id, ledger_id = excluded.ledger_id,
            timezone = excluded.timezone, verified_at = now()
    """
)


# What a run found, recorded with its checkpoints (the database sets id and ran_by).
_RECORD_RUN = text(
    """
    INSERT INTO reconciliation_runs
        (checked_at, full_check, organizations_checked, days_checked, drifts)
    VALUES (:checked_at, :full, :organizations_checked, :days_checked, CAST(:drifts AS jsonb))
    """
)
# The newest run (of a full check, with :full): one probe of (checked_at, id).
_LAST_RUN = text(
    """
    SELECT id, checked_at, full_check, organizations_checked, days_checked, drifts, ran_by
    FROM reconciliation_runs
    WHERE full_check OR NOT CAST(:full AS boolean)
    ORDER BY checked_at DESC, id DESC
    LIMIT 1
    """
)


def _drift_json(drifts: Sequence[Drift]) -> str:
    return json.dumps(
        [
            dataclasses.asdict(d)
            | {"first_date": None if d.first_date is None else d.first_date.isoformat()}
            for d in drifts
        ]
    )


def _drift_from_json(item: dict[str, Any]) -> Drift:
    day = item["first_date"]
    return Drift(**(item | {"first_date": None if day is None else dt.date.fromisoformat(day)}))


def last_run(conn: Connection, *, full: bool = False) -> RecordedRun | None:
    """The newest run ``reconcile`` recorded (by the instant it checked as of), or None
    if none was; with ``full``, the newest full check. One statement."""
    if not isinstance(full, bool):
        raise InvalidInput(f"full must be True or False, not {full!r}.")
    row = conn.execute(_LAST_RUN, {"full": full}).one_or_none()
    if row is None:
        return None
    return RecordedRun(
        id=int(row.id),
        ran_by=str(row.ran_by),
        result=Reconciliation(
            full=bool(row.full_check),
            drifts=tuple(_drift_from_json(item) for item in row.drifts),
            organizations_checked=int(row.organizations_checked),
            days_checked=None if row.days_checked is None else int(row.days_checked),
            checked_at=row.checked_at.astimezone(dt.UTC),
        ),
    )


def _record_checkpoints(engine: Engine, result: Reconciliation) -> None:
    """Write the checkpoints ``result`` earned (only what verified) and the run's record,
    in one transaction."""
    clean: Sequence[Verified] = result.verified
    params = {
        "full": result.full,
        "orgs": [v.organization_id for v in clean],
        "generation_ids": [v.generation_id for v in clean],
        "ledger_ids": [v.ledger_id for v in clean],
        "zones": [v.timezone for v in clean],
        "day_orgs": list(result.day_organizations),
        "days": list(result.days),
    }
    drifted = sorted({d.organization_id for d in result.drifts})

    def body(conn: Connection) -> None:
        if drifted:
            conn.execute(_FORGET, {"orgs": drifted})
        if clean:
            conn.execute(_REZONE, params)
            conn.execute(_ADVANCE, params)
            conn.execute(_VERIFY_DAYS, params)
        conn.execute(
            _RECORD_RUN,
            {
                "checked_at": result.checked_at,
                "full": result.full,
                "organizations_checked": result.organizations_checked,
                "days_checked": result.days_checked,
                "drifts": _drift_json(result.drifts),
            },
        )

    run_in_transaction(engine, body, budget=CHECKPOINT_BUDGET_SECONDS)


def reconcile(
    engine: Engine,
    *,
    full: bool = False,
    checkpoint: bool = True,
    now: dt.datetime | None = None,
) -> Reconciliation:
    """Check the books in one consistent snapshot (``check_books``), then record the
    checkpoints of what verified and what the run found (``reconciliation_runs``, read
    back by :func:`last_run`), unless ``checkpoint`` is False. Recording needs a
    ``dashboard_auditor`` login (``RECONCILE_URL``); the app's role may only check."""
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            # A full check reads every row: no statement_timeout of the role cuts it
            # short (local to this read-only transaction).
            conn.execute(text("SET TRANSACTION READ ONLY"))
            conn.execute(text("SET LOCAL statement_timeout = 0"))
            result = check_books(conn, full=full, now=now)
    if checkpoint:
        _record_checkpoints(engine, result)
    return result
