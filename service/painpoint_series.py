"""Time series of several pain points at once: their negative sentences per hour, day or ISO week.

The dashboard draws one sparkline per pain point; one grouped query answers all of a page's rows.
Buckets are calendar buckets (``service.analytics.bucket_start``: UTC, weeks start on Monday), listed
densely from the bucket holding ``since`` to the one holding the last moment before ``until``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from service.analytics import Interval, bucket_start
from service.db.models import PainPointFact
from service.feedback import Scope
from service.painpoints import STEP, Key, _in_scope


@dataclass(frozen=True)
class NegativeSeries:
    """Bucket starts, and for each pain point its negative sentences in each bucket (0 where none)."""

    starts: list[datetime]
    counts: dict[Key, list[int]] = field(default_factory=dict)

    def of(self, key: Key) -> list[int]:
        """The series of one pain point (zeros when it had no negative sentence in the period)."""
        return self.counts.get(key, [0] * len(self.starts))


def floor_to_bucket(moment: datetime, *, interval: Interval) -> datetime:
    """The start of the UTC hour, day or ISO week (Monday) holding ``moment``."""
    moment = moment.astimezone(UTC)
    if interval == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if interval == "day" else day - timedelta(days=day.weekday())


def bucket_starts(*, since: datetime, until: datetime, interval: Interval) -> list[datetime]:
    """Every bucket start from the bucket holding ``since`` up to the one holding the moment before ``until``."""
    starts = []
    start = floor_to_bucket(since, interval=interval)
    while start < until:
        starts.append(start)
        start += STEP[interval]
    return starts


def _as_utc(value: object) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def pain_point_negatives(
    session: Session,
    *,
    keys: Collection[Key],
    scope: Scope,
    since: datetime,
    until: datetime,
    interval: Interval = "week",
) -> NegativeSeries:
    """Negative sentences per bucket in [since, until) of each (topic id, touchpoint), in one query."""
    starts = bucket_starts(since=since, until=until, interval=interval)
    wanted = sorted(set(keys))
    if not wanted:
        return NegativeSeries(starts=starts)
    dialect = session.get_bind().dialect.name
    bucket = bucket_start(PainPointFact.created_at, interval=interval, dialect=dialect).label("bucket")
    query = _in_scope(
        select(PainPointFact.topic_id, PainPointFact.touchpoint, bucket, func.count()),
        scope,
        since=since,
        until=until,
    ).where(
        PainPointFact.negative,
        # The topic_id IN (...) lets the database seek the (topic, touchpoint, time) index.
        PainPointFact.topic_id.in_(sorted({topic_id for topic_id, _ in wanted})),
        tuple_(PainPointFact.topic_id, PainPointFact.touchpoint).in_(wanted),
    )
    index = {start: position for position, start in enumerate(starts)}
    counts: dict[Key, list[int]] = {}
    for topic_id, touchpoint, start, count in session.execute(
        query.group_by(PainPointFact.topic_id, PainPointFact.touchpoint, bucket)
    ):
        position = index.get(_as_utc(start))
        if position is not None:
            counts.setdefault((topic_id, touchpoint), [0] * len(starts))[position] += int(count)
    return NegativeSeries(starts=starts, counts=counts)
