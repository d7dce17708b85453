"""The instant the pages take as "now": what today is, in any zone.

One function, so that AppTests can fix it (``monkeypatch.setattr(clock, "now", ...)``)
and check the first minutes of a month, 31 December or a DST day whatever the wall
clock says. The queries take ``now`` as an argument; the pages pass this."""

from __future__ import annotations

import datetime as dt


def now() -> dt.datetime:
    """The current instant, in UTC."""
    return dt.datetime.now(dt.UTC)


def quarter_hour(at: dt.datetime | None = None) -> dt.datetime:
    """``at`` (default :func:`now`) down to its quarter-hour: the finest step the
    rollups count in, and a cache key that changes four times an hour, not every run."""
    at = (at or now()).astimezone(dt.UTC)
    return at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0)


def minute(at: dt.datetime | None = None) -> dt.datetime:
    """``at`` (default :func:`now`) down to its minute: the "now" of the live reads
    (forecasts, runway), a cache key that changes no faster than their one-minute ttl."""
    return (at or now()).astimezone(dt.UTC).replace(second=0, microsecond=0)
