"""The generations: drawn organization by organization in chunks, summed for the later
phases, and COPYed with their numpy rollups."""

from __future__ import annotations

import datetime as dt
import functools
import time
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import psycopg

from queries import recounts
from tooling.demo_data.binary import N_TYPES, PG_EPOCH_US, TEXT, binary_rows
from tooling.demo_data.copying import copy_bytes, in_background
from tooling.demo_data.organizations import GENERATION_TYPES, Org, zone_named
from tooling.demo_data.rollups import PSYCOPG, ROLLUP_COPIES, ROLLUPS, Chunk

# Each type's share of the traffic before each organization's own mix is drawn.
_TYPE_MIX = np.array([0.55, 0.22, 0.08, 0.1, 0.05])


# Generations drawn, summed and sent per chunk: a few hundred MB of arrays at most.
_CHUNK_ROWS = 2_000_000


@functools.lru_cache(maxsize=256)
def _utc_offsets(tz: str, first_day: dt.date, days: int) -> np.ndarray:
    """UTC offset in seconds at local noon of each day (DST-aware).

    Cached: ten thousand organizations share nine zones and one period, and this
    Python loop over the days was most of the draw for small tenants. Read-only.
    """
    zone = zoneinfo.ZoneInfo(tz)
    offsets = np.empty(days, dtype=np.int64)
    for d in range(days):
        day = first_day + dt.timedelta(days=d)
        local_noon = dt.datetime(day.year, day.month, day.day, 12, tzinfo=zone)
        offset = local_noon.utcoffset()
        offsets[d] = int(offset.total_seconds()) if offset else 0
    offsets.flags.writeable = False
    return offsets


@functools.lru_cache(maxsize=256)
def _weekdays(first_day: dt.date, days: int) -> np.ndarray:
    """Weekday (Monday 0) of each day of the period; cached like the offsets."""
    weekdays = np.array([(first_day + dt.timedelta(days=d)).weekday() for d in range(days)])
    weekdays.flags.writeable = False
    return weekdays


# Share of a day's activity by local hour: quiet nights, busy working hours.
_HOURLY = np.array(
    [
        1,
        0.6,
        0.4,
        0.3,
        0.3,
        0.5,
        1.2,
        2.5,
        4.5,
        6.5,
        7,
        7,
        6,
        6.5,
        7,
        7,
        6.5,
        5.5,
        4,
        3.2,
        3,
        2.6,
        2,
        1.5,
    ]
)
_HOURLY = _HOURLY / _HOURLY.sum()


def _generation_chunks(
    rng: np.random.Generator,
    orgs: list[Org],
    users: dict[str, np.ndarray],
    total: int,
    days: int,
    now: dt.datetime,
    *,
    chunk_rows: int = _CHUNK_ROWS,
) -> Iterator[dict[str, np.ndarray]]:
    """The generations, whole organizations at a time, in chunks of about ``chunk_rows``.

    Sorted by organization, then time; ids count on across chunks. The draws are the
    same, in the same order, whatever the chunk size: the same seed gives the same rows,
    and 100M rows never sit in memory at once (one organization at most, plus a chunk).
    """
    costs = np.array([t[2] for t in GENERATION_TYPES], dtype=np.int32)
    per_org = rng.multinomial(total, np.array([o.weight for o in orgs]))
    user_org = users["org"]
    keys = ("org", "user", "type", "credits", "ts")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    buffered = 0
    next_id = 1

    def flush() -> dict[str, np.ndarray]:
        nonlocal buffered, next_id
        out = {k: np.concatenate(v) for k, v in parts.items()}
        out["id"] = np.arange(next_id, next_id + len(out["org"]), dtype=np.int64)
        next_id += len(out["org"])
        buffered = 0
        for v in parts.values():
            v.clear()
        return out

    for org, n in zip(orgs, per_org, strict=True):
        if n == 0:
            continue
        zone = zone_named(org.timezone)
        local_now = now.astimezone(zone)
        first_day = local_now.date() - dt.timedelta(days=days - 1)
        offsets = _utc_offsets(org.timezone, first_day, days)
        weekdays = _weekdays(first_day, days)
        weekend = 0.3 if org.plan in ("pro", "enterprise") else 0.55
        growth = np.linspace(0.6, 1.4, days) * rng.uniform(0.85, 1.15, days)
        day_weight = growth * np.where(weekdays >= 5, weekend, 1.0)
        elapsed_today = (
            local_now - local_now.replace(hour=0, minute=0, second=0, microsecond=0)
        ).total_seconds()
        hours_done = int(elapsed_today // 3600)
        day_weight[-1] *= (
            _HOURLY[:hours_done].sum() + _HOURLY[hours_done] * (elapsed_today % 3600) / 3600
        )
        day = rng.choice(days, size=n, p=day_weight / day_weight.sum())
        seconds = (rng.choice(24, size=n, p=_HOURLY) * 3600 + rng.uniform(0, 3600, n)).astype(
            np.int64
        )
        today = day == days - 1
        seconds[today] = rng.uniform(0, max(elapsed_today, 1.0), int(today.sum())).astype(np.int64)
        micros = rng.integers(0, 1_000_000, n)
        local_midnight_utc = int(
            dt.datetime(first_day.year, first_day.month, first_day.day, tzinfo=dt.UTC).timestamp()
        )
        ts = (local_midnight_utc + day * 86_400 + seconds - offsets[day]) * 1_000_000 + micros
        ts = np.minimum(ts, int(now.timestamp() * 1_000_000) - 1)

        org_users = np.flatnonzero(user_org == org.id)
        activity = rng.pareto(1.2, len(org_users)) + 0.05  # a few heavy users
        user = users["id"][org_users][
            rng.choice(len(org_users), size=n, p=activity / activity.sum())
        ]
        mix = rng.dirichlet(_TYPE_MIX * 40)
        kind = rng.choice(len(GENERATION_TYPES), size=n, p=mix).astype(np.int8)
        credits = costs[kind].copy()
        video = kind == 4
        credits[video] *= rng.choice([1, 2, 3], size=int(video.sum()), p=[0.6, 0.3, 0.1]).astype(
            np.int32
        )
        order = np.argsort(ts, kind="stable")
        parts["org"].append(np.full(n, org.id, dtype=np.int64))
        parts["user"].append(user[order])
        parts["type"].append(kind[order])
        parts["credits"].append(credits[order])
        parts["ts"].append(ts[order])
        buffered += n
        if buffered >= chunk_rows:
            yield flush()
    if buffered:
        yield flush()


def _binary_generation_rows(gens: dict[str, np.ndarray]) -> bytes:
    """COPY BINARY tuples for ``gens``, in their order (see ``_COPY_GENERATIONS``)."""
    return binary_rows(
        (
            (">i8", gens["org"]),
            (">i8", gens["id"]),
            (">i8", gens["user"]),
            (TEXT, gens["type"]),
            (">i4", gens["credits"]),
            (">i8", gens["ts"] - PG_EPOCH_US),
        ),
        gens["type"],
    )


_COPY_GENERATIONS = (
    "COPY generations (organization_id, id, user_id, type, credits, created_at) "
    "FROM STDIN (FORMAT BINARY)"
)


@dataclass(slots=True)
class OrgTotals:
    """What the later stages need of one organization's generations (kept per chunk).

    ``cells`` are its nonzero (type, local day) usage cells in type, then day order;
    ``ts`` and ``cum`` answer the ledger's "credits consumed before t".
    """

    kind: np.ndarray
    day: np.ndarray
    used: np.ndarray
    spent: np.ndarray
    last: np.ndarray
    peak: np.ndarray  # busiest day's count, per type
    ts: np.ndarray
    cum: np.ndarray  # credits consumed before each row, then in all (len(ts) + 1)


def _summarize(
    orgs: list[Org], gens: dict[str, np.ndarray], window: tuple[int, int]
) -> tuple[dict[int, OrgTotals], np.ndarray]:
    """Per organization of the chunk its totals, and each row's local day."""
    local_day = np.empty(len(gens["org"]), dtype=np.int64)
    present = np.unique(gens["org"])
    bounds = np.searchsorted(gens["org"], np.append(present, present[-1] + 1))
    totals: dict[int, OrgTotals] = {}
    for k, org_id in enumerate(present.tolist()):
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        org = orgs[org_id - 1]
        ts, kind, credits = gens["ts"][lo:hi], gens["type"][lo:hi], gens["credits"][lo:hi]
        day = _local_days(org.timezone, ts, window)
        local_day[lo:hi] = day
        first_day = int(day.min())
        span = int(day.max()) - first_day + 1
        key = kind.astype(np.int64) * span + (day - first_day)
        used = np.bincount(key, minlength=N_TYPES * span).reshape(N_TYPES, span)
        spent = np.bincount(key, weights=credits, minlength=N_TYPES * span).reshape(N_TYPES, span)
        # ts is sorted, so the last row of each key is its latest generation.
        last_flat = np.zeros(N_TYPES * span, dtype=np.int64)
        last_flat[key] = ts
        last = last_flat.reshape(N_TYPES, span)
        t_idx, d_idx = np.nonzero(used)
        totals[org_id] = OrgTotals(
            kind=t_idx,
            day=d_idx + first_day,
            used=used[t_idx, d_idx],
            spent=spent[t_idx, d_idx].astype(np.int64),
            last=last[t_idx, d_idx],
            peak=used.max(axis=1),
            ts=ts.copy(),
            cum=np.concatenate([[0], np.cumsum(credits, dtype=np.int64)]),
        )
    return totals, local_day


@dataclass(slots=True)
class _Prepared:
    """One chunk, drawn and encoded by the drawing thread, ready to COPY."""

    rows: int
    generations: list[bytes]  # COPY tuples in slices of at most _CHUNK_ROWS rows
    rollups: dict[str, bytes]
    totals: dict[int, OrgTotals]


def _prepare_chunks(
    rng: np.random.Generator,
    orgs: list[Org],
    users: dict[str, np.ndarray],
    total: int,
    days: int,
    now: dt.datetime,
) -> Iterator[_Prepared]:
    """Each chunk summed and encoded for COPY, while the next one is drawn in a thread."""
    now_day = int(now.timestamp()) // 86_400
    window = (now_day - days - 2, now_day + 2)
    drawn = _generation_chunks(rng, orgs, users, total, days, now, chunk_rows=_CHUNK_ROWS)
    for gens in in_background(drawn, name="demo-draw"):
        totals, local_day = _summarize(orgs, gens, window)
        chunk = Chunk(gens, local_day, users["org"], window[0], window[1] - window[0])
        yield _Prepared(
            rows=len(gens["org"]),
            # In slices: the largest tenant is one chunk (a third of 100M rows), and
            # its fixed-width records and mask would be several GB at once.
            generations=[
                _binary_generation_rows({k: v[i : i + _CHUNK_ROWS] for k, v in gens.items()})
                for i in range(0, len(gens["org"]), _CHUNK_ROWS)
            ],
            rollups={table: rows(chunk) for table, (_, rows) in ROLLUP_COPIES.items()},
            totals=totals,
        )


def load_generations(
    conn: psycopg.Connection,
    rng: np.random.Generator,
    orgs: list[Org],
    users: dict[str, np.ndarray],
    options: tuple[int, int, dt.datetime],
    lap: Callable[[str], None],
    rollups: Callable[[dict[str, bytes]], None] | None,
) -> tuple[int, dict[int, OrgTotals]]:
    """COPY the generations and the numpy rollups chunk by chunk (the rollups handed
    to ``rollups`` when given); the other rollups by their statements. Returns the
    rows loaded and every organization's totals."""
    total, days, now = options
    loaded = 0
    totals: dict[int, OrgTotals] = {}
    copying = 0.0
    for prepared in in_background(
        _prepare_chunks(rng, orgs, users, total, days, now), name="demo-encode"
    ):
        started = time.perf_counter()
        if rollups is not None:
            rollups(prepared.rollups)
        for rows in prepared.generations:
            copy_bytes(conn, _COPY_GENERATIONS, rows)
        if rollups is None:
            for table, tuples in prepared.rollups.items():
                copy_bytes(conn, ROLLUP_COPIES[table][0], tuples)
        copying += time.perf_counter() - started
        loaded += prepared.rows
        totals.update(prepared.totals)
    lap(f"draw + COPY generations and rollups (COPY {copying:.1f}s of it)")
    for table in ROLLUPS:
        if table not in ROLLUP_COPIES:
            conn.execute(str(recounts.insert_recount(table).compile(dialect=PSYCOPG)))
            lap(f"recount {table}")
    return loaded, totals


def _local_days(tz: str, ts_us: np.ndarray, window: tuple[int, int]) -> np.ndarray:
    """Local calendar day (days since 1970-01-01) of each UTC timestamp in zone ``tz``.

    Offsets are looked up per UTC hour, which is exact for every zone the demo uses
    (their daylight-saving transitions fall on whole UTC hours).
    """
    if len(ts_us) == 0:
        return np.array([], dtype=np.int64)
    hours = ts_us // 3_600_000_000
    first, offsets = _hourly_offsets(tz, *window)
    days: np.ndarray = (ts_us // 1_000_000 + offsets[hours - first]) // 86_400
    return days


@functools.lru_cache(maxsize=64)
def _hourly_offsets(tz: str, first_day: int, end_day: int) -> tuple[int, np.ndarray]:
    """UTC offset in seconds of every UTC hour from ``first_day`` (days since epoch)."""
    zone = zoneinfo.ZoneInfo(tz)
    first = first_day * 24
    offsets = np.array(
        [
            int(
                (
                    dt.datetime.fromtimestamp(h * 3600, zone).utcoffset() or dt.timedelta()
                ).total_seconds()
            )
            for h in range(first, end_day * 24)
        ],
        dtype=np.int64,
    )
    return first, offsets
