"""The naive answers: what a dashboard without a query layer would do. Load the ORM rows
of the organization and range, then aggregate in pandas.

Each takes a Session and returns what its read function returns, so the benchmark can
check that both answer the same question. They read raw rows, so they take seconds at
1M generations and would take hours at 100M: the benchmark runs them up to a size cap.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from benchmarks.queries.tenants import OrgInfo
from queries.models import (
    CreditBalance,
    CreditLedger,
    Generation,
    GenerationType,
    Organization,
    UsageLimit,
    User,
)
from queries.timelines import PeriodKpis
from queries.usage import Runway


def _utc_bounds(tz: str, start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    zone = ZoneInfo(tz)
    return (
        dt.datetime.combine(start, dt.time(), zone),
        dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), zone),
    )


def _orm_generations(
    session: Session,
    *,
    lower: dt.datetime,
    upper: dt.datetime,
    org: int | None = None,
    user: int | None = None,
) -> pd.DataFrame:
    stmt = select(Generation).where(Generation.created_at >= lower, Generation.created_at < upper)
    if org is not None:
        stmt = stmt.where(Generation.organization_id == org)
    if user is not None:
        stmt = stmt.where(Generation.user_id == user)
    rows = session.scalars(stmt).all()
    return pd.DataFrame(
        {
            "organization_id": pd.Series([g.organization_id for g in rows], dtype="int64"),
            "user_id": pd.Series([g.user_id for g in rows], dtype="int64"),
            "type": pd.Series([g.type for g in rows], dtype="object"),
            "credits": pd.Series([g.credits for g in rows], dtype="int64"),
            "created_at": pd.to_datetime(pd.Series([g.created_at for g in rows]), utc=True),
        }
    )


def _local_day(created_at: pd.Series, tz: str) -> pd.Series:
    """The local calendar day (as midnight, tz-naive) of each UTC timestamp."""
    local: pd.Series = created_at.dt.tz_convert(tz).dt.tz_localize(None).dt.normalize()
    return local


def _local_day_by_org(frame: pd.DataFrame, zones: dict[int, str]) -> pd.Series:
    day = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
    zone_of = frame["organization_id"].map(zones)
    for tz in zone_of.unique():
        rows = zone_of == tz
        day[rows] = _local_day(frame.loc[rows, "created_at"], str(tz))
    return day


def _org_zones(session: Session) -> dict[int, str]:
    return {o.id: o.timezone for o in session.scalars(select(Organization))}


def _ledger_frame(
    session: Session, *, org: int | None, lower: dt.datetime, upper: dt.datetime
) -> pd.DataFrame:
    # An expiry is neither granted nor deducted (issue 18): the reads leave it out.
    stmt = select(CreditLedger).where(
        CreditLedger.created_at >= lower,
        CreditLedger.created_at < upper,
        CreditLedger.kind != "expired",
    )
    if org is not None:
        stmt = stmt.where(CreditLedger.organization_id == org)
    rows = session.scalars(stmt).all()
    return pd.DataFrame(
        {
            "organization_id": pd.Series([r.organization_id for r in rows], dtype="int64"),
            "amount": pd.Series([r.amount for r in rows], dtype="int64"),
            "created_at": pd.to_datetime(pd.Series([r.created_at for r in rows]), utc=True),
        }
    )


def _counts(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return frame.groupby(keys).agg(
        generations=pd.NamedAgg(column="credits", aggfunc="size"),
        credits=pd.NamedAgg(column="credits", aggfunc="sum"),
    )


def naive_timeline(
    session: Session,
    *,
    org: OrgInfo,
    start: dt.date,
    end: dt.date,
    utc: bool,
    by_type: bool,
    user: int | None = None,
) -> pd.DataFrame:
    zone = "UTC" if utc else org.timezone
    lower, upper = _utc_bounds(zone, start, end)
    gens = _orm_generations(session, lower=lower, upper=upper, org=org.id, user=user)
    gens["bucket"] = _local_day(gens["created_at"], zone)
    days = pd.date_range(start, end, freq="D", name="bucket")
    if by_type:
        types = sorted(session.scalars(select(GenerationType.type)).all())
        everything = pd.MultiIndex.from_product([days, types], names=["bucket", "type"])
        return _counts(gens, ["bucket", "type"]).reindex(everything, fill_value=0).reset_index()
    return _counts(gens, ["bucket"]).reindex(days, fill_value=0).reset_index()


def naive_top_users(
    session: Session, *, org: OrgInfo, start: dt.date, end: dt.date, limit: int = 10
) -> pd.DataFrame:
    lower, upper = _utc_bounds(org.timezone, start, end)
    gens = _orm_generations(session, lower=lower, upper=upper, org=org.id)
    users = session.scalars(select(User).where(User.organization_id == org.id)).all()
    people = pd.DataFrame(
        {"name": [u.name for u in users], "email": [u.email for u in users]},
        index=pd.Index([u.id for u in users], name="user_id"),
    )
    ranked = _counts(gens, ["user_id"]).join(people)
    ranked["credit_share"] = ranked["credits"] / ranked["credits"].sum()
    ranked = ranked.reset_index().sort_values(
        ["credits", "generations", "user_id"], ascending=[False, False, True]
    )
    return ranked.head(limit).reset_index(drop=True)


def naive_kpis(
    session: Session,
    *,
    org: OrgInfo,
    start: dt.date,
    end: dt.date,
    utc: bool,
    now: dt.datetime | None = None,
) -> PeriodKpis:
    days = (end - start).days + 1
    previous_start = start - dt.timedelta(days=days)
    zone = "UTC" if utc else org.timezone
    lower, upper = _utc_bounds(zone, start, end)
    previous_lower, _ = _utc_bounds(zone, previous_start, start)
    previous_upper = lower
    through = previous_through = None
    # A period that reaches now: both up to the same local time (the last quarter-hour).
    at = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    cut = at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0)
    if cut < upper:
        upper = max(cut, lower)
        local = upper.astimezone(ZoneInfo(zone)).replace(tzinfo=None) - dt.timedelta(days=days)
        previous_upper = local.replace(tzinfo=ZoneInfo(zone))
        through, previous_through = upper, previous_upper
    gens = _orm_generations(session, lower=previous_lower, upper=upper, org=org.id)
    in_period = gens["created_at"] >= pd.Timestamp(lower)
    in_previous = gens["created_at"] < pd.Timestamp(previous_upper)
    current, before = gens[in_period], gens[in_previous]
    return PeriodKpis(
        start=start,
        end=end,
        generations=len(current),
        credits=int(current["credits"].sum()),
        active_users=int(current["user_id"].nunique()),
        previous_generations=len(before),
        previous_credits=int(before["credits"].sum()),
        previous_active_users=int(before["user_id"].nunique()),
        first_day=_first_day(session, org=org.id, zone=zone),
        through=through,
        previous_through=previous_through,
    )


def _first_day(session: Session, *, org: int, zone: str) -> dt.date | None:
    """The local day of the organization's first generation (its oldest, by time)."""
    first = session.scalars(
        select(Generation.created_at)
        .where(Generation.organization_id == org)
        .order_by(Generation.created_at)
        .limit(1)
    ).first()
    return None if first is None else first.astimezone(ZoneInfo(zone)).date()


def _months(start: dt.date, end: dt.date) -> pd.DatetimeIndex:
    return pd.date_range(start.replace(day=1), end.replace(day=1), freq="MS", name="bucket")


def naive_granted_vs_consumed(
    session: Session, *, org: OrgInfo, start: dt.date, end: dt.date
) -> pd.DataFrame:
    lower, upper = _utc_bounds(org.timezone, start, end)
    gens = _orm_generations(session, lower=lower, upper=upper, org=org.id)
    ledger = _ledger_frame(session, org=org.id, lower=lower, upper=upper)
    gens["bucket"] = _local_day(gens["created_at"], org.timezone).dt.to_period("M").dt.start_time
    ledger["bucket"] = (
        _local_day(ledger["created_at"], org.timezone).dt.to_period("M").dt.start_time
    )
    ledger["granted"] = ledger["amount"].clip(lower=0)
    ledger["deducted"] = -ledger["amount"].clip(upper=0)
    months = _months(start, end)
    consumed = gens.groupby("bucket")["credits"].sum().reindex(months, fill_value=0)
    moved = ledger.groupby("bucket")[["granted", "deducted"]].sum().reindex(months, fill_value=0)
    return pd.DataFrame(
        {
            "credits_granted": moved["granted"],
            "credits_deducted": moved["deducted"],
            "credits_consumed": consumed,
        }
    ).reset_index()


def naive_runway(
    session: Session, *, org: OrgInfo, now: dt.datetime, burn_days: int = 30
) -> Runway:
    today = now.astimezone(ZoneInfo(org.timezone)).date()
    lower, _ = _utc_bounds(org.timezone, today - dt.timedelta(days=burn_days), today)
    upper, _ = _utc_bounds(org.timezone, today, today)
    gens = _orm_generations(session, lower=lower, upper=upper, org=org.id)
    balance = session.get(CreditBalance, org.id)
    return Runway(
        organization_id=org.id,
        balance=balance.balance if balance else 0,
        today=today,
        burn_days=burn_days,
        credits_burned=int(gens["credits"].sum()),
    )


def naive_quota_history(
    session: Session, *, org: OrgInfo, start: dt.date, end: dt.date
) -> pd.DataFrame:
    lower, upper = _utc_bounds(org.timezone, start, end)
    gens = _orm_generations(session, lower=lower, upper=upper, org=org.id)
    gens["date"] = _local_day(gens["created_at"], org.timezone)
    used = gens.groupby(["date", "type"]).size().rename("used")
    limits = session.scalars(
        select(UsageLimit).where(
            UsageLimit.organization_id == org.id, UsageLimit.date.between(start, end)
        )
    ).all()
    limit = pd.Series(
        [u.daily_limit for u in limits],
        index=pd.MultiIndex.from_arrays(
            [pd.to_datetime([u.date for u in limits]), [u.type for u in limits]],
            names=["date", "type"],
        ),
        name="daily_limit",
        dtype="Int64",
    )
    types = sorted(set(gens["type"]) | {u.type for u in limits})
    days = pd.date_range(start, end, freq="D", name="date")
    everything = pd.MultiIndex.from_product([days, types], names=["date", "type"])
    history = pd.DataFrame(
        {"used": used.reindex(everything, fill_value=0), "daily_limit": limit.reindex(everything)}
    )
    history["utilization"] = history["used"] / history["daily_limit"].astype("float64")
    return history.reset_index()


def naive_all_orgs_usage(session: Session, *, start: dt.date, end: dt.date) -> pd.DataFrame:
    zones = _org_zones(session)
    lower, upper = _utc_bounds("UTC", start - dt.timedelta(days=1), end + dt.timedelta(days=1))
    gens = _orm_generations(session, lower=lower, upper=upper)
    ledger = _ledger_frame(session, org=None, lower=lower, upper=upper)
    first, last = pd.Timestamp(start), pd.Timestamp(end)
    # Days of the company zone (UTC, the reads' default), whatever each organization's.
    gens = gens[_local_day(gens["created_at"], "UTC").between(first, last)]
    ledger = ledger[_local_day(ledger["created_at"], "UTC").between(first, last)]
    consumed = _counts(gens, ["organization_id"]).rename(columns={"credits": "credits_consumed"})
    ledger["credits_granted"] = ledger["amount"].clip(lower=0)
    ledger["credits_deducted"] = -ledger["amount"].clip(upper=0)
    moved = ledger.groupby("organization_id")[["credits_granted", "credits_deducted"]].sum()
    balances = pd.Series(
        {b.organization_id: b.balance for b in session.scalars(select(CreditBalance))},
        name="balance",
    )
    table = (
        pd.DataFrame(index=pd.Index(sorted(zones), name="organization_id"))
        .join(consumed)
        .join(moved)
        .join(balances)
        .fillna(0)
        .astype("int64")
    )
    table["share"] = table["credits_consumed"] / table["credits_consumed"].sum()
    table["rank"] = table["credits_consumed"].rank(method="min", ascending=False).astype("int64")
    return table.sort_values("rank").reset_index()


def naive_monthly_credits(session: Session, *, start: dt.date, end: dt.date) -> pd.DataFrame:
    lower, upper = _utc_bounds("UTC", start - dt.timedelta(days=1), end + dt.timedelta(days=1))
    gens = _orm_generations(session, lower=lower, upper=upper)
    ledger = _ledger_frame(session, org=None, lower=lower, upper=upper)
    first, last = pd.Timestamp(start), pd.Timestamp(end)
    # Months of the company zone (UTC, the reads' default), whatever each organization's.
    gens["day"] = _local_day(gens["created_at"], "UTC")
    ledger["day"] = _local_day(ledger["created_at"], "UTC")
    gens = gens[gens["day"].between(first, last)]
    ledger = ledger[ledger["day"].between(first, last) & (ledger["amount"] > 0)]
    gens["bucket"] = gens["day"].dt.to_period("M").dt.start_time
    ledger["bucket"] = ledger["day"].dt.to_period("M").dt.start_time
    months = _months(start, end)
    # Every month of the range first: a month with grants but no generations keeps them.
    per_month = (
        gens.groupby("bucket")
        .agg(
            generations=pd.NamedAgg(column="credits", aggfunc="size"),
            credits_consumed=pd.NamedAgg(column="credits", aggfunc="sum"),
            active_organizations=pd.NamedAgg(column="organization_id", aggfunc="nunique"),
        )
        .reindex(months)
    )
    per_month["credits_granted"] = ledger.groupby("bucket")["amount"].sum().reindex(months)
    return per_month.fillna(0).astype("int64").reset_index()


def naive_quota_utilization(session: Session, *, now: dt.datetime) -> pd.DataFrame:
    zones = _org_zones(session)
    gens = _orm_generations(session, lower=now - dt.timedelta(days=2), upper=now)
    today = {org: pd.Timestamp(now.astimezone(ZoneInfo(tz)).date()) for org, tz in zones.items()}
    gens = gens[_local_day_by_org(gens, zones) == gens["organization_id"].map(today)]
    used = gens.groupby(["organization_id", "type"]).size().rename("used")
    limits = [
        u
        for u in session.scalars(
            select(UsageLimit).where(
                UsageLimit.date.between(
                    now.date() - dt.timedelta(days=1), now.date() + dt.timedelta(days=1)
                )
            )
        )
        if pd.Timestamp(u.date) == today[u.organization_id]
    ]
    table = pd.DataFrame(
        {"daily_limit": [u.daily_limit for u in limits]},
        index=pd.MultiIndex.from_arrays(
            [[u.organization_id for u in limits], [u.type for u in limits]],
            names=["organization_id", "type"],
        ),
    ).join(used)
    table["used"] = table["used"].fillna(0).astype("int64")
    table["utilization"] = table["used"] / table["daily_limit"]
    return table.sort_values("utilization", ascending=False).reset_index()
