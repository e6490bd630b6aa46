"""The headline figures of a scope: volume, sentiment mix, NPS / CSAT / CES over time, and emotion mix.

Like every aggregate here, each figure carries the count it rests on; ``touchpoints`` narrows the items to
those about any of the given touchpoints.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from service.analytics import Interval, RatingMetric, bucket_start, rating_metrics, rating_sum_columns
from service.db.models import FeedbackEmotion, FeedbackItem, ItemTouchpoint
from service.feedback import Scope

SENTIMENTS = ("negative", "mixed", "neutral", "positive")


@dataclass
class Bucket:
    """One time bucket of a scope: item counts by sentiment and the rating metrics of its answers."""

    start: datetime
    items: int = 0
    sentiments: dict[str, int] = field(default_factory=dict)
    nps: RatingMetric = field(default_factory=lambda: RatingMetric(None, 0))
    csat: RatingMetric = field(default_factory=lambda: RatingMetric(None, 0))
    ces: RatingMetric = field(default_factory=lambda: RatingMetric(None, 0))


@dataclass
class Summary:
    """A scope's totals: items, scored items by sentiment, and the rating metrics."""

    items: int
    scored: int
    sentiments: dict[str, int]
    nps: RatingMetric
    csat: RatingMetric
    ces: RatingMetric
    stars: RatingMetric

    @property
    def negative_share(self) -> float | None:
        """Negative or mixed items over scored items."""
        negative = self.sentiments.get("negative", 0) + self.sentiments.get("mixed", 0)
        return negative / self.scored if self.scored else None


def _conditions(scope: Scope, touchpoints: Collection[str] | None) -> list[ColumnElement[bool]]:
    conditions = scope.conditions()
    if touchpoints is not None:
        conditions.append(
            FeedbackItem.id.in_(
                select(ItemTouchpoint.item_id).where(ItemTouchpoint.touchpoint.in_(touchpoints))
            )
        )
    return conditions


def _sentiment_columns() -> list[Any]:
    return [func.sum(case((FeedbackItem.sentiment_label == label, 1), else_=0)) for label in SENTIMENTS]


def summary(session: Session, *, scope: Scope, touchpoints: Collection[str] | None = None) -> Summary:
    """Items, sentiment mix and NPS / CSAT / CES / stars of the scope, in one pass."""
    row = session.execute(
        select(
            func.count(),
            func.count(FeedbackItem.scored_at),
            *_sentiment_columns(),
            *rating_sum_columns(),
        ).where(*_conditions(scope, touchpoints))
    ).one()
    nps, csat, ces, stars = rating_metrics(row[6:])
    return Summary(
        items=int(row[0]),
        scored=int(row[1]),
        sentiments={label: int(n or 0) for label, n in zip(SENTIMENTS, row[2:6], strict=True)},
        nps=nps,
        csat=csat,
        ces=ces,
        stars=stars,
    )


def timeline(
    session: Session, *, scope: Scope, interval: Interval, touchpoints: Collection[str] | None = None
) -> list[Bucket]:
    """Per bucket (UTC; weeks start on Monday): items by sentiment and NPS / CSAT / CES with their counts."""
    dialect = session.get_bind().dialect.name
    start = bucket_start(FeedbackItem.created_at, interval=interval, dialect=dialect).label("bucket")
    rows = session.execute(
        select(start, func.count(), *_sentiment_columns(), *rating_sum_columns())
        .where(*_conditions(scope, touchpoints))
        .group_by(start)
        .order_by(start)
    ).all()
    buckets = []
    for row in rows:
        raw = row[0] if isinstance(row[0], datetime) else datetime.fromisoformat(str(row[0]))
        nps, csat, ces, _stars = rating_metrics(row[6:])
        buckets.append(
            Bucket(
                start=raw.replace(tzinfo=UTC) if raw.tzinfo is None else raw.astimezone(UTC),
                items=int(row[1]),
                sentiments={label: int(n or 0) for label, n in zip(SENTIMENTS, row[2:6], strict=True)},
                nps=nps,
                csat=csat,
                ces=ces,
            )
        )
    return buckets


def emotion_mix(
    session: Session, *, scope: Scope, touchpoints: Collection[str] | None = None, scheme: str = "cx"
) -> dict[str, int]:
    """Items per detected emotion (the CX rollup by default), most frequent first."""
    rows = session.execute(
        select(FeedbackEmotion.label, func.count())
        .join(FeedbackItem, FeedbackItem.id == FeedbackEmotion.item_id)
        .where(FeedbackEmotion.scheme == scheme, *_conditions(scope, touchpoints))
        .group_by(FeedbackEmotion.label)
    ).all()
    return dict(sorted(((str(label), int(n)) for label, n in rows), key=lambda kv: (-kv[1], kv[0])))
