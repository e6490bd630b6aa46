"""Pain-point sums over a period from the daily rollups, exact to the second.

The period ``[start, until)`` is cut into segments (the trend buckets, and whether a moment is inside the
period under study). A day inside one segment is read from its rollup row. A day that a cut splits is read
from its rollup row too, credited to the segment that covers most of the day, and the facts of the rest of
that day move to their own segments: so only a few hours of facts are read per cut, whatever the period.
The rollups themselves are kept by triggers on ``pain_point_facts`` (migration 0009).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Date, and_, case, cast, delete, func, or_, select
from sqlalchemy.orm import Session

from service.db.models import PainPointDay, PainPointFact, PainPointLocationDay

ONE_DAY = timedelta(days=1)
SUMS = ("sentences", "negative", "score_sum", "negative_score")
Key = tuple[int, str]
Sums = list[float]


@dataclass(frozen=True)
class Segment:
    """Part of the period with one trend bucket (0 = the latest; None before the buckets) and one side of
    ``since``."""

    start: datetime
    end: datetime
    bucket: int | None
    in_period: bool


@dataclass(frozen=True)
class Piece:
    """The part of one day inside one segment (``segment`` None: outside the period)."""

    start: datetime
    end: datetime
    segment: int | None


def segments(*, since: datetime, bounds: Sequence[datetime]) -> list[Segment]:
    """The period cut at every trend bound (``bounds[0]`` is ``until``, descending) and at ``since``."""
    until, start = bounds[0], min(since, bounds[-1])
    cuts = sorted({cut for cut in (*bounds, since) if start <= cut <= until})
    result = []
    for begin, end in itertools.pairwise(cuts):
        bucket = next((i for i in range(len(bounds) - 1) if bounds[i + 1] <= begin < bounds[i]), None)
        result.append(Segment(start=begin, end=end, bucket=bucket, in_period=begin >= since))
    return result


def day_plan(parts: Sequence[Segment]) -> tuple[dict[date, int], list[tuple[Piece, int | None]]]:
    """Each day's segment for its rollup row, and the pieces of facts to move: (piece, the day's segment)."""
    assigned: dict[date, int] = {}
    moves: list[tuple[Piece, int | None]] = []
    first, last = parts[0].start, parts[-1].end
    day = first.date()
    while datetime.combine(day, time(), UTC) < last:
        begin = datetime.combine(day, time(), UTC)
        pieces = _pieces(parts, begin=begin, end=begin + ONE_DAY)
        largest = max(pieces, key=lambda p: (p.end - p.start, p.segment is not None))
        if largest.segment is not None:
            assigned[day] = largest.segment
        moves += [(piece, largest.segment) for piece in pieces if piece is not largest]
        day += ONE_DAY
    return assigned, moves


def _pieces(parts: Sequence[Segment], *, begin: datetime, end: datetime) -> list[Piece]:
    """``[begin, end)`` cut by the segments; the parts outside every segment have segment None."""
    pieces, cursor = [], begin
    for index, part in enumerate(parts):
        low, high = max(part.start, begin), min(part.end, end)
        if low >= high:
            continue
        if cursor < low:
            pieces.append(Piece(cursor, low, None))
        pieces.append(Piece(low, high, index))
        cursor = high
    if cursor < end:
        pieces.append(Piece(cursor, end, None))
    return pieces


def segment_sums(
    session: Session,
    *,
    parts: Sequence[Segment],
    locations: Collection[str] = (),
    touchpoints: Collection[str] | None = None,
    topic_ids: Collection[int] = (),
) -> dict[Key, dict[int, Sums]]:
    """Per (topic, touchpoint) and segment: sentences, negatives, the sum of scores, the negatives' sum."""
    assigned, moves = day_plan(parts)
    result: dict[Key, dict[int, Sums]] = defaultdict(lambda: defaultdict(lambda: [0.0] * len(SUMS)))
    if assigned:
        rollup = _rollup_query(assigned, locations=locations, touchpoints=touchpoints, topic_ids=topic_ids)
        for row in session.execute(rollup):
            if row.segment is not None:
                _add(result[(row.topic_id, row.touchpoint)][int(row.segment)], row[3:], 1)
    moving = [(piece, day_segment) for piece, day_segment in moves if day_segment != piece.segment]
    if moving:
        facts = _moved_facts_query(moving, locations=locations, touchpoints=touchpoints, topic_ids=topic_ids)
        for row in session.execute(facts):
            piece, day_segment = moving[int(row.piece)]
            sums = result[(row.topic_id, row.touchpoint)]
            if piece.segment is not None:
                _add(sums[piece.segment], row[3:], 1)
            if day_segment is not None:
                _add(sums[day_segment], row[3:], -1)
    return result


def _add(target: Sums, values: Sequence[Any], sign: int) -> None:
    for index, value in enumerate(values):
        target[index] += sign * float(value or 0)


def _rollup_query(
    assigned: dict[date, int],
    *,
    locations: Collection[str],
    touchpoints: Collection[str] | None,
    topic_ids: Collection[int],
) -> Any:
    table: Any = PainPointLocationDay if locations else PainPointDay
    ranges: dict[int, list[date]] = defaultdict(list)
    for day, index in assigned.items():
        ranges[index].append(day)
    segment = case(
        *((table.day.between(min(days), max(days)), index) for index, days in ranges.items()), else_=None
    )
    query = select(
        table.topic_id,
        table.touchpoint,
        segment.label("segment"),
        *(func.sum(getattr(table, name)) for name in SUMS),
    ).where(table.day.between(min(assigned), max(assigned)))
    if locations:
        query = query.where(table.location.in_(locations))
    if touchpoints is not None:
        query = query.where(table.touchpoint.in_(touchpoints))
    if topic_ids:
        query = query.where(table.topic_id.in_(topic_ids))
    return query.group_by(table.topic_id, table.touchpoint, segment)


def _moved_facts_query(
    moving: Sequence[tuple[Piece, int | None]],
    *,
    locations: Collection[str],
    touchpoints: Collection[str] | None,
    topic_ids: Collection[int],
) -> Any:
    created, negative = PainPointFact.created_at, PainPointFact.negative
    inside = [and_(created >= piece.start, created < piece.end) for piece, _ in moving]
    piece = case(*((condition, index) for index, condition in enumerate(inside)), else_=None)
    query = select(
        PainPointFact.topic_id,
        PainPointFact.touchpoint,
        piece.label("piece"),
        func.count(),
        func.sum(case((negative, 1), else_=0)),
        func.sum(PainPointFact.sentiment_score),
        func.sum(case((negative, PainPointFact.sentiment_score), else_=0)),
    ).where(or_(*inside))
    if locations:
        query = query.where(PainPointFact.location.in_(locations))
    if touchpoints is not None:
        query = query.where(PainPointFact.touchpoint.in_(touchpoints))
    if topic_ids:
        query = query.where(PainPointFact.topic_id.in_(topic_ids))
    return query.group_by(PainPointFact.topic_id, PainPointFact.touchpoint, piece)


ROLLUPS: tuple[tuple[Any, tuple[str, ...]], ...] = (
    (PainPointDay, ("topic_id", "touchpoint")),
    (PainPointLocationDay, ("location", "topic_id", "touchpoint")),
)


def _grouped_facts(session: Session, keys: Sequence[str]) -> Any:
    """The facts summed per UTC day and ``keys``, as the triggers keep them."""
    postgres = session.get_bind().dialect.name == "postgresql"
    created, negative = PainPointFact.created_at, PainPointFact.negative
    day = cast(func.timezone("UTC", created), Date) if postgres else func.date(created)
    columns = [getattr(PainPointFact, key) for key in keys]
    query = select(
        day,
        *columns,
        func.count(),
        func.sum(case((negative, 1), else_=0)),
        func.sum(PainPointFact.sentiment_score),
        func.sum(case((negative, PainPointFact.sentiment_score), else_=0)),
    ).group_by(day, *columns)
    return query.where(PainPointFact.location.is_not(None)) if "location" in keys else query


def rebuild_rollups(session: Session) -> None:
    """Recompute both rollups from the facts (after a load that bypassed the triggers)."""
    for table, keys in ROLLUPS:
        session.execute(delete(table))
        session.execute(
            table.__table__.insert().from_select(["day", *keys, *SUMS], _grouped_facts(session, keys))
        )


def rollup_drift(session: Session) -> list[tuple[Any, ...]]:
    """The (table, day, key...) rollup rows that disagree with the facts; empty while the triggers hold."""
    drift: list[tuple[Any, ...]] = []
    for table, keys in ROLLUPS:
        source = _grouped_facts(session, keys)
        stored = {
            (_as_date(row[0]), *row[1:-4]): tuple(row[-4:])
            for row in session.execute(
                select(table.day, *(getattr(table, k) for k in keys), *_columns(table))
            )
        }
        computed = {(_as_date(row[0]), *row[1:-4]): tuple(row[-4:]) for row in session.execute(source)}
        for key in stored.keys() | computed.keys():
            have, want = stored.get(key), computed.get(key)
            if have is None or want is None or not _close(have, want):
                drift.append((table.__tablename__, *key))
    return drift


def _columns(table: Any) -> list[Any]:
    return [getattr(table, name) for name in SUMS]


def _close(have: Sequence[Any], want: Sequence[Any]) -> bool:
    return all(abs(float(a or 0) - float(b or 0)) <= 1e-6 for a, b in zip(have, want, strict=True))


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))
