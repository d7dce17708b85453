"""Seeing it coming, for customer success: who will hit a daily limit today, whose use
spikes far above its own habit, and whose balance runs out soon (cross-organization).

Every day and hour is the organization's own local one, through its zone: a local day
has 23, 24 or 25 hours, and a UTC+5:45 organization's hours start at a quarter past.
Intraday use comes from ``quarter_hour_usage`` (UTC quarter-hours, a boundary of every
local hour in every zone), the forecast's usual day from ``usual_days`` (kept per
organization and local date, migration 0017), burn from the prefix sums of
``organization_daily_usage``; no read sums raw generations.
"""

from __future__ import annotations

import datetime as dt
import numbers

import pandas as pd
from sqlalchemy import Connection, text

from queries.checks import check_id, check_timestamp, check_whole
from queries.errors import InvalidInput
from queries.frames import frame

# Before this share of a usual day is done, the projection assumes it is: a first
# generation at 00:05 projects to 10x itself, not to 288x.
SHARE_FLOOR = 0.1
# The usual profile is mixed with a flat day (this much of it): four past days are few,
# and an hour that happened to be idle in all four should not weigh exactly nothing.
FLAT_MIX = 0.1
# The recent window: the last this many hours (from the quarter-hour now is in). Once a
# local day is that far along, the pace is the larger of the day's so far and the
# window's, so a tenant that starts mid-morning at a steady rate is projected at that
# rate, not at its average since midnight (hours late). Two hours are eight
# quarter-hours: long enough that one busy quarter-hour is not the day's pace, short
# enough to catch a new rate within the hour.
RECENT_HOURS = 2
# Status thresholds as on the Quotas page ('near' from 80 %).
NEAR = 0.8

FORECAST_COLUMNS = {
    "organization_id": "int64",
    "name": "str",
    "slug": "str",
    "timezone": "str",
    "type": "str",
    "used": "int64",
    "daily_limit": "int64",
    "projected_used": "float64",
    "hits_limit_at": "datetime64[us, UTC]",
    "status": "str",
    "expected_share_by_now": "float64",
    "basis": "str",
}

# One statement. Per (organization, type) with use today in its local day:
# - usual: the organization's usual day for today (usual_days, migration 0017): its
#   generations (all types: the day's rhythm is the people's, and three types' data make
#   four days less sparse) per local clock hour on the same local weekday of the last 4
#   weeks, as prefix sums over today's real hours (23/24/25 on DST days). The kept row
#   is used while it was computed in the current zone from the current history (its
#   generations_before is the organization's count before today, one index-only probe);
#   otherwise usual_day() computes it here, from quarter_hour_usage, the same way;
# - weight of each of today's hours: (1 - FLAT_MIX) x its usual share + FLAT_MIX x flat,
#   or flat when there is no usual day ('uniform'); they sum to 1 over today;
# - share(t), the share of the day done at instant t: the weights of the hours before
#   t's plus the elapsed part of t's, which the prefix sums give in two array reads.
#   Done by now is share(now); the recent share is share(now) - share(recent_from),
#   recent_from being RECENT_HOURS before the quarter-hour now is in;
# - pace, the day's total at this pace: the larger of use so far / greatest(share done,
#   SHARE_FLOOR) and, once the window lies in today, use in the window / the recent
#   share. Use so far is used minus the quarter-hours at or after now, and the window's
#   use is those before now: one range read of quarter_hour_usage from recent_from. The
#   profile gives the day its shape, the recent hours its level: a tenant that follows
#   its usual day has the same pace both ways, one that starts late or speeds up is
#   paced by its last hours;
# - each remaining hour adds pace x its weight (the current one only its remaining
#   part); projected = used + pace x (1 - done), and the limit is hit in the first hour
#   whose cumulative reaches it, interpolated linearly: only the rows projected to reach
#   their limit walk their hours.
_FORECAST = text(
    """
    WITH clock AS (
        SELECT coalesce(CAST(:now AS timestamptz), now()) AS now
    ),
    today AS (
        SELECT o.id AS organization_id, o.name, o.slug, o.timezone, u.type, u.used,
               u.daily_limit, c.now, u.date AS day,
               date_bin(interval '15 minutes', c.now, timestamptz '2000-01-01 00:00Z')
                   - make_interval(hours => :recent_hours) AS recent_from,
               u.date::timestamp AT TIME ZONE o.timezone AS day_start,
               (u.date + 1)::timestamp AT TIME ZONE o.timezone AS day_end
        FROM clock c
        JOIN usage_limits u
          -- "Today" is one of the UTC date's neighbours in every zone: a range on
          -- ix_usage_limits_date, never the history.
          ON u.date BETWEEN CAST(c.now AT TIME ZONE 'UTC' AS date) - 1
                        AND CAST(c.now AT TIME ZONE 'UTC' AS date) + 1
        JOIN organizations o
          ON o.id = u.organization_id AND u.date = (c.now AT TIME ZONE o.timezone)::date
        -- The limit in force is limit_in_force()'s (migration 0010), whose first rule is
        -- the day's own row: every row here has use, so it has that row. Reading the
        -- column is that rule without a function call per row (0.02 ms each, 0.4 s at
        -- 21,000 rows); a test holds the two equal.
        WHERE u.used > 0
    ),
    orgs AS (
        SELECT DISTINCT organization_id, timezone, day, day_start, day_end, now, recent_from,
               floor(extract(epoch FROM day_end - day_start)::float8 / 3600) AS hours_today
        FROM today
    ),
    usual AS (
        SELECT g.*, k.usual_before AS ub,
               k.usual_before[array_length(k.usual_before, 1)]::float8 AS usual_today
        FROM orgs g
        CROSS JOIN LATERAL (
            SELECT CASE WHEN d.timezone = g.timezone
                         AND d.generations_before = coalesce(b.generations_through, 0)
                        THEN d.usual_before
                        ELSE (SELECT f.usual_before
                              FROM usual_day(g.organization_id, g.day) f) END AS usual_before
            FROM (SELECT) one
            LEFT JOIN usual_days d
              ON d.organization_id = g.organization_id AND d.date = g.day
            LEFT JOIN LATERAL (
                SELECT b.generations_through FROM organization_daily_usage b
                WHERE b.organization_id = g.organization_id AND b.date < g.day
                ORDER BY b.date DESC LIMIT 1
            ) b ON true
        ) k
    ),
    -- Once per organization: inlined into paced, it ran once per (organization, type).
    share AS MATERIALIZED (
        SELECT u.organization_id, u.ub, u.usual_today, u.hours_today,
               u.usual_today > 0 AS profiled, s.done, s.done - s.before_recent AS recent_share
        FROM usual u
        CROSS JOIN LATERAL (
            SELECT max(v.share) FILTER (WHERE e.edge = 0) AS done,
                   max(v.share) FILTER (WHERE e.edge = 1) AS before_recent
            FROM (VALUES (0, u.now), (1, greatest(u.recent_from, u.day_start))) AS e(edge, at)
            -- x: hours since local midnight; i: the 1-based element before t's hour.
            CROSS JOIN LATERAL (
                SELECT x, floor(x)::int + 1 AS i
                FROM (SELECT extract(epoch FROM e.at - u.day_start)::float8 / 3600 AS x) a
            ) p
            CROSS JOIN LATERAL (
                SELECT CASE WHEN u.usual_today > 0
                            THEN (1 - :flat_mix)
                                 * (u.ub[p.i] + (p.x - (p.i - 1)) * (u.ub[p.i + 1] - u.ub[p.i]))
                                 / u.usual_today
                                 + :flat_mix * p.x / u.hours_today
                            ELSE p.x / u.hours_today END AS share
            ) v
        ) s
    ),
    -- One range of quarter_hour_usage per organization, every type: from the recent
    -- window (or midnight) to the day's end.
    recent AS (
        SELECT g.organization_id, r.type, r.after, r.recent
        FROM orgs g
        CROSS JOIN LATERAL (
            SELECT q.type,
                   coalesce(sum(q.generations) FILTER (WHERE q.bucket >= g.now), 0) AS after,
                   coalesce(sum(q.generations) FILTER (WHERE q.bucket < g.now), 0) AS recent
            FROM quarter_hour_usage q
            WHERE q.organization_id = g.organization_id
              AND q.bucket >= greatest(g.recent_from, g.day_start) AND q.bucket < g.day_end
            GROUP BY q.type
        ) r
    ),
    paced AS (
        SELECT t.*, s.done, s.profiled, s.ub, s.usual_today, s.hours_today,
               -- greatest() skips the NULL of a window that starts before today.
               greatest(
                   (t.used - coalesce(r.after, 0))::float8 / greatest(s.done, :floor),
                   CASE WHEN t.recent_from >= t.day_start
                        THEN coalesce(r.recent, 0)::float8 / nullif(s.recent_share, 0) END)
                   AS pace
        FROM today t
        JOIN share s USING (organization_id)
        LEFT JOIN recent r USING (organization_id, type)
    ),
    walk AS (
        SELECT p.organization_id, p.type, p.used, p.daily_limit, w.hour_start,
               w.hour_start + interval '1 hour' AS hour_end,
               greatest(w.hour_start, p.now) AS from_at,
               p.pace * w.weight * w.ahead AS expected,
               p.used + coalesce(sum(p.pace * w.weight * w.ahead) OVER (
                   PARTITION BY p.organization_id, p.type ORDER BY w.hour_start
                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
        FROM paced p
        CROSS JOIN LATERAL (
            SELECT h.hour_start,
                   CASE WHEN p.profiled
                        THEN (1 - :flat_mix) * (p.ub[h.k + 2] - p.ub[h.k + 1]) / p.usual_today
                             + :flat_mix / p.hours_today
                        ELSE 1 / p.hours_today END AS weight,
                   -- The part of the hour still ahead at now (0 for past hours).
                   least(1, greatest(0, extract(epoch FROM
                       h.hour_start + interval '1 hour' - greatest(h.hour_start, p.now))::float8
                       / 3600)) AS ahead
            FROM generate_series(0, array_length(p.ub, 1) - 2) AS g(k)
            CROSS JOIN LATERAL (
                SELECT g.k, p.day_start + make_interval(hours => g.k) AS hour_start
            ) h
        ) w
        -- Only a row still under its limit and projected to reach it has an hour to find.
        WHERE w.ahead > 0
          AND p.used < p.daily_limit AND p.used + p.pace * (1 - p.done) >= p.daily_limit
    ),
    hit AS (
        SELECT DISTINCT ON (w.organization_id, w.type) w.organization_id, w.type,
               w.from_at + (w.hour_end - w.from_at) * ((w.daily_limit - w.before) / w.expected)
                   AS hits_limit_at
        FROM walk w
        WHERE w.expected > 0 AND w.before + w.expected >= w.daily_limit
        ORDER BY w.organization_id, w.type, w.hour_start
    )
    SELECT p.organization_id, p.name, p.slug, p.timezone, p.type, p.used, p.daily_limit,
           p.used + p.pace * (1 - p.done) AS projected_used,
           h.hits_limit_at,
           quota_status(p.used, p.daily_limit, :near) AS status,
           p.done AS expected_share_by_now,
           CASE WHEN p.profiled THEN 'profile' ELSE 'uniform' END AS basis
    FROM paced p
    LEFT JOIN hit h USING (organization_id, type)
    -- A caller that shows only the hits asks for them: the other rows (18,000 of 18,200
    -- at 10,000 organizations) are neither sorted nor sent.
    WHERE NOT CAST(:hits_only AS boolean) OR h.hits_limit_at IS NOT NULL
    ORDER BY h.hits_limit_at NULLS LAST,
             CASE WHEN p.daily_limit > 0 THEN (p.used + p.pace * (1 - p.done)) / p.daily_limit
                  ELSE 'Infinity'::float8 END DESC,
             p.name, p.organization_id, p.type
    """
)


def _check_now(now: object) -> dt.datetime | None:
    if now is None:
        return None
    return check_timestamp(now, "time now")


def quota_forecast(
    conn: Connection, *, now: dt.datetime | None = None, hits_only: bool = False
) -> pd.DataFrame:
    """Every (organization, type) with use today in the organization's local day, with
    where today ends at the current pace, soonest hit first (cross-organization); with
    ``hits_only``, only those that reach their limit later today (the rows with a
    ``hits_limit_at``, what the Quotas page and the alerts show). One statement.

    Columns: organization_id, name, slug, timezone, type, used, daily_limit,
    projected_used (generations at the end of the local day: used + the rest of a usual
    day at today's pace, the larger of the pace since local midnight and that of the
    last ``RECENT_HOURS`` hours; never below used), hits_limit_at (UTC; when the limit
    is reached today at that pace, NaT if not today or if already at/over it), status ('over',
    'at limit', 'near' from 80 %, 'ok'), expected_share_by_now (share of a usual day
    done by now), basis ('profile': the organization's same weekday of the last 4 weeks,
    all types; 'uniform': no such history, a flat day). ``now`` (aware) defaults to the
    database's now().
    """
    if not isinstance(hits_only, bool):
        raise InvalidInput(f"hits_only must be True or False, not {hits_only!r}.")
    params = {
        "now": _check_now(now),
        "hits_only": hits_only,
        "floor": SHARE_FLOOR,
        "flat_mix": FLAT_MIX,
        "recent_hours": RECENT_HOURS,
        "near": NEAR,
    }
    return frame(conn.execute(_FORECAST, params), FORECAST_COLUMNS)


SPIKE_COLUMNS = {
    "organization_id": "int64",
    "name": "str",
    "slug": "str",
    "timezone": "str",
    "recent_credits": "int64",
    "baseline_credits": "float64",
    "factor": "float64",
}

# Volume below which a spike is not news: 100 credits is 100 chats, 25 images or about
# two videos in the window. A tenant going from 2 to 9 credits is 4.5x and nobody's
# business; a flapping alert for it would teach people to ignore the list.
MIN_SPIKE_CREDITS = 100
MAX_SPIKE_HOURS = 24

# One statement. Candidates are the organizations with credits on a local date the
# window touches (today or yesterday in their zone: the window is at most 24 h), one
# EXISTS probe of usage_limits per organization (a join made DISTINCT sorted all their
# quota rows, 42,000 at 10,000 organizations); each is then read on
# quarter_hour_usage's primary key: the
# window, the same local wall-clock window 1..4 weeks before (through the zone, so a DST
# change in between keeps the local hours), and its first bucket. A past week counts
# (as 0 when it had no use) only if it ends after the organization's first use.
_SPIKES = text(
    """
    WITH clock AS (
        SELECT coalesce(CAST(:now AS timestamptz), now()) AS now
    ),
    -- Organizations with use today or yesterday (their own days). Recent use above a
    -- positive minimum already implies it (the window lies in those two days), and the
    -- recent probe below is one probe per organization as this one is: so only a zero
    -- minimum asks (an organization with no recent use is then a spike of 0 only if it
    -- has use on those days), and the page's reads skip 10,000 probes.
    candidates AS (
        SELECT o.id AS organization_id, o.name, o.slug, o.timezone, c.now
        FROM clock c
        CROSS JOIN organizations o
        WHERE CAST(:min_credits AS bigint) > 0 OR EXISTS (
            SELECT FROM usage_limits u
            WHERE u.organization_id = o.id
              AND u.date BETWEEN (c.now AT TIME ZONE o.timezone)::date - 1
                             AND (c.now AT TIME ZONE o.timezone)::date
              AND u.credits_used > 0
        )
    ),
    recent AS (
        SELECT c.*, r.credits AS recent_credits, f.first_use
        FROM candidates c
        CROSS JOIN LATERAL (
            SELECT coalesce(sum(q.credits), 0) AS credits FROM quarter_hour_usage q
            WHERE q.organization_id = c.organization_id
              AND q.bucket >= c.now - make_interval(hours => :hours) AND q.bucket < c.now
        ) r
        CROSS JOIN LATERAL (
            SELECT min(q.bucket) AS first_use FROM quarter_hour_usage q
            WHERE q.organization_id = c.organization_id
        ) f
        WHERE r.credits >= :min_credits
    ),
    weeks AS (
        SELECT r.organization_id, w.window_end, b.credits
        FROM recent r
        CROSS JOIN generate_series(1, 4) AS k(weeks)
        CROSS JOIN LATERAL (
            SELECT (r.now AT TIME ZONE r.timezone - make_interval(days => 7 * k.weeks))
                       AT TIME ZONE r.timezone AS window_end
        ) w
        CROSS JOIN LATERAL (
            SELECT coalesce(sum(q.credits), 0) AS credits FROM quarter_hour_usage q
            WHERE q.organization_id = r.organization_id
              AND q.bucket >= w.window_end - make_interval(hours => :hours)
              AND q.bucket < w.window_end
        ) b
        WHERE w.window_end > r.first_use
    ),
    baseline AS (
        SELECT organization_id, avg(credits)::float8 AS baseline_credits
        FROM weeks GROUP BY organization_id
    ),
    scored AS (
        SELECT r.organization_id, r.name, r.slug, r.timezone, r.recent_credits,
               coalesce(b.baseline_credits, 0) AS baseline_credits,
               CASE WHEN coalesce(b.baseline_credits, 0) > 0
                    THEN r.recent_credits / b.baseline_credits
                    ELSE 'Infinity'::float8 END AS factor
        FROM recent r LEFT JOIN baseline b USING (organization_id)
    )
    SELECT * FROM scored
    WHERE factor >= :factor
    ORDER BY factor DESC, recent_credits DESC, name, organization_id
    """
)


def usage_spikes(
    conn: Connection,
    *,
    now: dt.datetime | None = None,
    hours: int = 3,
    factor: float = 3.0,
    min_credits: int = MIN_SPIKE_CREDITS,
) -> pd.DataFrame:
    """Organizations whose credits in the last ``hours`` hours are at least ``factor`` x
    their baseline (the average of the same local weekday and hours over the previous 4
    weeks, those since their first use) and at least ``min_credits``, highest factor
    first (cross-organization). One statement.

    Columns: organization_id, name, slug, timezone, recent_credits, baseline_credits,
    factor (recent / baseline; inf when the baseline is 0).
    """
    hours = check_whole(hours, "number of hours", minimum=1, maximum=MAX_SPIKE_HOURS)
    if (
        isinstance(factor, bool)
        or not isinstance(factor, numbers.Real)
        or not 1 <= float(factor) <= 1000
    ):
        raise InvalidInput(f"The spike factor must be a number from 1 to 1000, not {factor!r}.")
    min_credits = check_whole(min_credits, "minimum credits", minimum=0, maximum=10**12)
    params = {
        "now": _check_now(now),
        "hours": hours,
        "factor": float(factor),
        "min_credits": min_credits,
    }
    return frame(conn.execute(_SPIKES, params), SPIKE_COLUMNS)


RUNWAY_COLUMNS = {
    "organization_id": "int64",
    "name": "str",
    "slug": "str",
    "timezone": "str",
    "plan": "str",
    "balance": "int64",
    "daily_burn": "float64",
    "runway_days": "float64",
    "runs_out_on": "object",
    "runs_out_at": "datetime64[us, UTC]",
    "cause": "str",
    "expiring_unused": "int64",
    "expiring_then": "int64",
}

# One statement. The burn of the last burn_days complete local days (today excluded, as
# in queries.usage.balance_and_runway) is cum(<= yesterday) - cum(< today - burn_days)
# of organization_daily_usage: for an organization with use on the day before each edge,
# its row on that date, from ranges of the date-first index (migration 0026); for the
# others, an index-only probe by organization. The balance is the live one at now: what
# is due by then and not yet written off is gone (due_credits).
#
# Expiry (issue 18), only for the organizations with a live grant expiring within the
# window (found on ix_credit_grants_due): at a constant burn r from now, the burn draws
# the live grants in the order the database does (priority, soonest expiry, id). When a
# grant k expires at T_k, the burn has consumed floor(r x (T_k - now)) in all; what it
# took from the grants before k in that order is at most what they could give: their
# remaining, less what those of them expired unused earlier (the walk's running arrays).
# So k's unused part is remaining_k - clamp(consumed - that, 0, remaining_k), and it
# depends only on earlier expiries: a recursive walk in time order, one step per
# expiring grant, every organization at once. After U_k credits have expired unused by
# T_k, the balance is gone at now + (balance - U_k) / r if that is after T_k, else at
# T_k (the expiry took the last of it): the organization runs out at the earliest of
# those over k = 0 (no expiry yet) .. n. Expiries after the window cannot move a run-out
# within it.
#
# Idle organizations (r = 0: nothing burned) take part only when the grants expiring
# within the window hold all of their balance, so they come from the same index range,
# never from a scan of every grant. Nothing is consumed, every expiring grant expires
# whole, and the balance runs out at the expiry that takes the last credits (cause
# 'expiry'). One that keeps credits that never expire (or expire after the window) is
# not listed: at its pace it never runs out (docs/design.md).
_LOW_RUNWAY = text(
    """
    WITH RECURSIVE clock AS (
        SELECT coalesce(CAST(:now AS timestamptz), now()) AS now
    ),
    -- The local dates that are "today" somewhere: one per date the zones in use are on
    -- (two or three).
    todays AS MATERIALIZED (
        SELECT DISTINCT (c.now AT TIME ZONE z.timezone)::date AS today
        FROM clock c
        CROSS JOIN (
            SELECT DISTINCT timezone FROM organizations
            WHERE CAST(:org AS bigint) IS NULL OR id = CAST(:org AS bigint)
        ) z
    ),
    -- An organization with use on the day before its today has its running total before
    -- today on that date, and the same for the day before the burn window: ranges of
    -- the date-first index (migration 0026), not a probe per organization. MATERIALIZED:
    -- inlined, the planner probes the date-first index once per organization.
    -- The dates as one array: a row is found once even where one today's day before
    -- the window is another today's day before (a burn of one day); joined to the
    -- todays, it was found twice.
    edge_days AS MATERIALIZED (
        SELECT d.organization_id, d.date, d.credits_through
        FROM organization_daily_usage d
        WHERE d.date = ANY (ARRAY(
                SELECT e.date
                FROM todays t
                CROSS JOIN LATERAL (VALUES (t.today - 1), (t.today - 1 - :days)) e(date)
              ))
          AND (CAST(:org AS bigint) IS NULL OR d.organization_id = CAST(:org AS bigint))
    ),
    burn AS (
        SELECT o.id AS organization_id, o.name, o.slug, o.timezone, o.plan,
               b.balance - coalesce(d.due, 0) AS balance, z.today,
               coalesce(h.credits_through, hp.credits_through, 0)
                   - coalesce(l.credits_through, lp.credits_through, 0) AS burned
        FROM clock c
        CROSS JOIN organizations o
        JOIN credit_balances b ON b.organization_id = o.id
        -- Grants due but not yet written off are gone already (migration 0021). Given
        -- the clock's expression, not the CTE's column, so the planner knows the bound
        -- and reads the few due grants on ix_credit_grants_due instead of every grant.
        LEFT JOIN due_credits(coalesce(CAST(:now AS timestamptz), now())) d
               ON d.organization_id = o.id
        CROSS JOIN LATERAL (SELECT (c.now AT TIME ZONE o.timezone)::date AS today) z
        LEFT JOIN edge_days h ON h.organization_id = o.id AND h.date = z.today - 1
        LEFT JOIN edge_days l ON l.organization_id = o.id AND l.date = z.today - 1 - :days
        -- The others: the latest day before, probed only when the day before has no row
        -- (the condition on h or l alone gates the probe).
        LEFT JOIN LATERAL (
            SELECT d.credits_through FROM organization_daily_usage d
            WHERE h.organization_id IS NULL AND d.organization_id = o.id AND d.date < z.today
            ORDER BY d.date DESC LIMIT 1
        ) hp ON true
        LEFT JOIN LATERAL (
            SELECT d.credits_through FROM organization_daily_usage d
            WHERE l.organization_id IS NULL
              AND d.organization_id = o.id AND d.date < z.today - :days
            ORDER BY d.date DESC LIMIT 1
        ) lp ON true
        WHERE CAST(:org AS bigint) IS NULL OR o.id = CAST(:org AS bigint)
    ),
    -- A range of ix_credit_grants_due: the clock's expression itself (the same instant:
    -- now() is the transaction's), so the planner knows the window and it is the index
    -- condition; joined to the clock, the whole index was read and filtered.
    expiring_orgs AS (
        SELECT g.organization_id, sum(g.remaining) AS expiring
        FROM credit_grants g
        WHERE g.expires_at IS NOT NULL AND g.written_off_at IS NULL AND g.remaining > 0
          AND g.expires_at > coalesce(CAST(:now AS timestamptz), now())
          AND g.expires_at <= coalesce(CAST(:now AS timestamptz), now())
                              + make_interval(days => :within)
          AND (CAST(:org AS bigint) IS NULL OR g.organization_id = CAST(:org AS bigint))
        GROUP BY g.organization_id
    ),
    -- Those that burned, and those that burned nothing whose every live credit expires
    -- within the window (at a zero pace only that can end a balance; the walk finds the
    -- expiry that takes the last). Idle ones that keep some credit are not walked.
    runway AS (
        SELECT b.*, b.burned::float8 / :days AS daily_burn
        FROM burn b
        LEFT JOIN expiring_orgs e ON e.organization_id = b.organization_id
        WHERE (b.burned > 0 OR e.expiring >= b.balance)
          -- With no expiry in the window only the burn ends a balance (step 0 below,
          -- the same expression): one that outlasts the window is not walked.
          AND (e.organization_id IS NOT NULL
               OR b.balance / nullif(b.burned::float8 / :days, 0) <= :within)
    ),
    live AS (
        SELECT g.organization_id, g.remaining, g.expires_at,
               row_number() OVER w AS draw,
               (sum(g.remaining) OVER w - g.remaining)::bigint AS before
        FROM clock c
        CROSS JOIN runway r
        JOIN expiring_orgs e ON e.organization_id = r.organization_id
        JOIN credit_grants g ON g.organization_id = r.organization_id
        WHERE g.remaining > 0 AND g.written_off_at IS NULL
          AND (g.expires_at IS NULL OR g.expires_at > c.now)
        WINDOW w AS (PARTITION BY g.organization_id
                     ORDER BY g.priority, g.expires_at NULLS LAST, g.id)
    ),
    expiring AS (
        SELECT l.organization_id, l.remaining, l.expires_at, l.draw, l.before,
               row_number() OVER (PARTITION BY l.organization_id
                                  ORDER BY l.expires_at, l.draw) AS step,
               floor(r.daily_burn * extract(epoch FROM l.expires_at - c.now) / 86400)::bigint
                   AS consumed
        FROM clock c
        CROSS JOIN live l
        JOIN runway r ON r.organization_id = l.organization_id
        WHERE l.expires_at <= c.now + make_interval(days => :within)
    ),
    walk (organization_id, step, expires_at, draws, unuseds, unused, gone) AS (
        SELECT e.organization_id, 0::bigint, NULL::timestamptz, ARRAY[]::bigint[],
               ARRAY[]::bigint[], 0::bigint, 0::bigint
        FROM expiring_orgs e JOIN runway r ON r.organization_id = e.organization_id
        UNION ALL
        SELECT w.organization_id, x.step, x.expires_at, w.draws || x.draw,
               w.unuseds || u.unused, u.unused, w.gone + u.unused
        FROM walk w
        JOIN expiring x ON x.organization_id = w.organization_id AND x.step = w.step + 1
        CROSS JOIN LATERAL (
            SELECT coalesce(sum(p.unused), 0)::bigint AS gone
            FROM unnest(w.draws, w.unuseds) AS p(draw, unused)
            WHERE p.draw < x.draw
        ) earlier
        CROSS JOIN LATERAL (
            SELECT x.remaining
                   - least(x.remaining, greatest(0, x.consumed - (x.before - earlier.gone)))
                   ::bigint AS unused
        ) u
    ),
    ends AS (
        SELECT r.organization_id, 0::bigint AS step, c.now AS at, 0::bigint AS gone
        FROM clock c CROSS JOIN runway r
        UNION ALL
        SELECT w.organization_id, w.step, w.expires_at, w.gone FROM walk w WHERE w.step > 0
    ),
    -- Each step's candidate: the balance left after its expiries lasts burn_days more
    -- (capped past the window, where an interval could overflow), unless its expiry
    -- comes later; the earliest candidate wins, ties to the earlier step.
    ended AS (
        SELECT DISTINCT ON (e.organization_id) e.organization_id, t.days,
               CASE WHEN t.burn_days > t.expiry_days
                    THEN c.now + least(t.burn_days, :within + 1) * interval '86400 seconds'
                    ELSE e.at END AS runs_out_at
        FROM clock c
        CROSS JOIN ends e
        JOIN runway r ON r.organization_id = e.organization_id
        CROSS JOIN LATERAL (
            -- At a zero pace what is left lasts for ever, or ends with the expiry
            -- that took the last of it.
            SELECT CASE WHEN r.daily_burn > 0 THEN (r.balance - e.gone) / r.daily_burn
                        WHEN r.balance - e.gone > 0 THEN 'Infinity'::float8
                        ELSE 0 END AS burn_days,
                   extract(epoch FROM e.at - c.now)::float8 / 86400 AS expiry_days
        ) t0
        CROSS JOIN LATERAL (
            SELECT t0.burn_days, t0.expiry_days,
                   CASE WHEN t0.burn_days > t0.expiry_days THEN t0.burn_days
                        ELSE t0.expiry_days END AS days
        ) t
        ORDER BY e.organization_id, t.days, e.step
    ),
    expired AS (
        SELECT n.organization_id,
               coalesce(sum(w.unused) FILTER (WHERE w.expires_at <= n.runs_out_at), 0)
                   AS expiring_unused,
               coalesce(sum(w.unused) FILTER (WHERE w.expires_at = n.runs_out_at), 0)
                   AS expiring_then
        FROM ended n
        LEFT JOIN walk w ON w.organization_id = n.organization_id AND w.step > 0
        GROUP BY n.organization_id
    ),
    out AS (
        SELECT r.organization_id, r.name, r.slug, r.timezone, r.plan, r.balance,
               r.daily_burn, r.today, n.runs_out_at, n.days AS runway_days,
               x.expiring_unused, x.expiring_then,
               CASE WHEN x.expiring_then > 0 THEN 'expiry' ELSE 'burn' END AS cause
        FROM runway r
        JOIN ended n ON n.organization_id = r.organization_id
        JOIN expired x ON x.organization_id = r.organization_id
    )
    SELECT organization_id, name, slug, timezone, plan, balance, daily_burn, runway_days,
           CASE WHEN cause = 'expiry' THEN (runs_out_at AT TIME ZONE timezone)::date
                ELSE today + floor(greatest(runway_days, 0))::int END AS runs_out_on,
           runs_out_at, cause, expiring_unused, expiring_then
    FROM out
    WHERE runway_days <= :within
    ORDER BY runway_days, name, organization_id
    """
)


def low_runway(
    conn: Connection,
    *,
    within_days: int = 14,
    burn_days: int = 30,
    now: dt.datetime | None = None,
    organization_id: int | None = None,
) -> pd.DataFrame:
    """Organizations whose live balance runs out within ``within_days`` at their average
    burn of the last ``burn_days`` complete local days (as ``usage.balance_and_runway``),
    counting the grants that expire before the burn could use them, soonest first
    (cross-organization, or one: ``organization_id``). One statement.

    Columns: organization_id, name, slug, timezone, plan, balance (live: what is due is
    gone), daily_burn (credits per day), runway_days (days from now to runs_out_at; 0
    when the balance is spent), runs_out_on (the local date it runs out: today + whole
    days of runway when the burn empties it, the expiry's local date when an expiry
    does), runs_out_at (UTC), cause ('burn' or 'expiry': an expiry took the last
    credits), expiring_unused (credits that expire unused before then at this pace),
    expiring_then (of those, what expires at runs_out_at: 0 when the burn empties it).
    An organization that burned nothing (daily_burn 0) is listed only when every credit
    it holds expires within the window: it runs out at the expiry that takes the last
    of them (cause 'expiry', expiring_unused its whole balance); otherwise it never runs
    out and is not listed.
    """
    within_days = check_whole(within_days, "number of days", minimum=0, maximum=3660)
    burn_days = check_whole(burn_days, "number of burn days", minimum=1, maximum=366)
    org = None if organization_id is None else check_id(organization_id)
    params = {"now": _check_now(now), "within": within_days, "days": burn_days, "org": org}
    return frame(conn.execute(_LOW_RUNWAY, params), RUNWAY_COLUMNS)


def runway_reason(
    *,
    balance: int,
    cause: str,
    runs_out_on: dt.date | None,
    expiring_unused: int,
    expiring_then: int,
) -> str:
    """Why and when a low-runway row runs out, as a phrase: "runs out on 14 Dec, when
    8,000 credits expire", "...; 2,000 credits will expire unused at today's pace".

    ``runs_out_on`` is the organization's local date (a row's ``runs_out_on``).
    """
    if balance <= 0:
        return "no credits left"
    when = "" if runs_out_on is None else f" on {runs_out_on.day} {runs_out_on:%b}"
    if cause == "expiry":
        text_ = f"runs out{when}, when {expiring_then:,} credits expire"
        rest = expiring_unused - expiring_then
        if rest > 0:
            text_ += f"; {rest:,} more expire unused before"
        return text_
    text_ = f"runs out{when}"
    if expiring_unused > 0:
        text_ += f"; {expiring_unused:,} credits will expire unused at today's pace"
    return text_
