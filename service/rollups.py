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
from types import SimpleNamespace
from typing import Any, Literal

from sqlalchemy import case, column, false, func, select, text
from sqlalchemy.orm import Session

from service.db.models import PainPointDay, PainPointDimensionDay, PainPointFact

ONE_DAY = timedelta(days=1)
SUMS = ("sentences", "negative", "score_sum", "negative_score")
Key = tuple[int, str]


@dataclass(frozen=True)
class Segment:
    """Part of the period with one trend bucket (0 = the latest; None before the buckets) and one side of
    ``since``."""

    start: datetime
    end: datetime
    bucket: int | None
    in_period: bool


Dimension = Literal["location", "source", "language"]
FACT_DIMENSION: dict[Dimension, Any] = {
    "location": PainPointFact.location,
    "source": PainPointFact.source_id,
    "language": PainPointFact.language,
}


@dataclass(frozen=True)
class Filters:
    """What narrows the sums: at most one dimension's values (stores, source ids or languages), touchpoints
    and topics (empty or None: all)."""

    dimension: Dimension | None = None
    values: Collection[str] = ()
    touchpoints: Collection[str] | None = None
    topic_ids: Collection[int] = ()

    @property
    def table(self) -> Any:
        """The rollup these filters read: the dimension rollup when a dimension narrows them."""
        return PainPointDimensionDay if self.dimension else PainPointDay

    def apply(self, query: Any, table: Any) -> Any:
        """``query`` over ``table`` (a rollup, or the facts' columns) narrowed by these filters."""
        if self.dimension and table is PainPointDimensionDay:
            query = query.where(table.dimension == self.dimension, table.value.in_(self.values))
        elif self.dimension:
            column = getattr(table, "source_id" if self.dimension == "source" else self.dimension)
            values = [int(v) for v in self.values] if self.dimension == "source" else self.values
            query = query.where(column.in_(values))
        if self.touchpoints is not None:
            query = query.where(table.touchpoint.in_(self.touchpoints))
        if self.topic_ids:
            query = query.where(table.topic_id.in_(self.topic_ids))
        return query


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


def period_figures(
    session: Session,
    *,
    parts: Sequence[Segment],
    buckets: int,
    filters: Filters,
) -> dict[Key, list[float]]:
    """Per (topic, touchpoint): the period's sentences, negatives, sum of scores and the negatives' sum,
    then the negatives of each trend bucket (0 = the latest)."""
    assigned, moves = day_plan(parts)
    result: dict[Key, list[float]] = defaultdict(lambda: [0.0] * (len(SUMS) + buckets))
    connection = session.connection()
    if assigned:
        for row in connection.execute(_rollup_query(assigned, parts=parts, buckets=buckets, filters=filters)):
            result[(row[0], row[1])] = [float(value or 0) for value in row[2:]]
    # One range scan per piece: an OR of ranges would make SQLite scan every fact.
    for piece, day_segment in moves:
        if day_segment == piece.segment:
            continue
        query = _piece_facts_query(piece, filters=filters, sqlite=connection.dialect.name == "sqlite")
        for row in connection.execute(query):
            figures = result[(row[0], row[1])]
            _credit(figures, parts, piece.segment, row[2:], 1)
            _credit(figures, parts, day_segment, row[2:], -1)
    return result


def _credit(
    figures: list[float], parts: Sequence[Segment], segment: int | None, sums: Any, sign: int
) -> None:
    """Add (or take away) one piece's sums where its segment counts: the period totals, its bucket."""
    if segment is None:
        return
    part = parts[segment]
    if part.in_period:
        for index, value in enumerate(sums):
            figures[index] += sign * float(value or 0)
    if part.bucket is not None:
        figures[len(SUMS) + part.bucket] += sign * float(sums[1] or 0)


def _rollup_query(
    assigned: dict[date, int],
    *,
    parts: Sequence[Segment],
    buckets: int,
    filters: Filters,
) -> Any:
    table = filters.table
    in_period = _on_days(table.day, [d for d, i in assigned.items() if parts[i].in_period])
    by_bucket = [
        _on_days(table.day, [d for d, i in assigned.items() if parts[i].bucket == b]) for b in range(buckets)
    ]
    query = select(
        table.topic_id,
        table.touchpoint,
        *(func.sum(case((in_period, getattr(table, name)), else_=0)) for name in SUMS),
        *(func.sum(case((days, table.negative), else_=0)) for days in by_bucket),
    ).where(table.day.between(min(assigned), max(assigned)))
    return filters.apply(query, table).group_by(table.topic_id, table.touchpoint)


def _on_days(column: Any, days: Sequence[date]) -> Any:
    """``column`` is one of ``days``: a BETWEEN when they are consecutive, as they are but for odd cuts."""
    if not days:
        return false()
    first, last = min(days), max(days)
    if (last - first).days + 1 == len(set(days)):
        return column.between(first, last)
    return column.in_(sorted(set(days)))


def fact_sums(facts: Any) -> list[Any]:
    """The aggregates a rollup row holds (``SUMS``), over the facts' columns."""
    negative = facts.negative
    return [
        func.count(),
        func.sum(case((negative, 1), else_=0)),
        func.sum(facts.sentiment_score),
        func.sum(case((negative, facts.sentiment_score), else_=0)),
    ]


def _piece_facts_query(piece: Piece, *, filters: Filters, sqlite: bool) -> Any:
    """The facts of one piece summed per (topic, touchpoint), by a range scan of the period index."""
    facts: Any = PainPointFact
    if sqlite:
        # SQLite's planner would rather skip-scan the (topic, touchpoint, ...) index for every pair.
        facts = SimpleNamespace(**{name: column(name, type_) for name, type_ in _FACT_COLUMNS.items()})
    query = select(
        facts.topic_id,
        facts.touchpoint,
        *fact_sums(facts),
    ).where(facts.created_at >= piece.start, facts.created_at < piece.end)
    if sqlite:
        query = query.select_from(text("pain_point_facts INDEXED BY ix_pain_point_facts_period"))
    return filters.apply(query, facts).group_by(facts.topic_id, facts.touchpoint)


_FACT_COLUMNS = {
    column.name: column.type
    for column in PainPointFact.__table__.columns
    if column.name in {"topic_id", "touchpoint", "negative", "sentiment_score", "created_at"}
    or column.name in {"location", "source_id", "language"}
}
