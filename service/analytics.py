"""Aggregates over stored feedback: per-touchpoint experience metrics and time series.

Every figure comes with the count it was computed from, and the filters that reproduce its rows
through GET /v1/feedback.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from scrapers.contract import RatingScale
from service.db.models import (
    FeedbackItem,
    FeedbackSentence,
    ItemTouchpoint,
    SentenceTopic,
    SentenceTouchpoint,
    Source,
)
from service.feedback import Scope
from service.trending import assess_outlier, assess_trend

AT_TOUCHPOINT_LABEL = func.coalesce(SentenceTouchpoint.sentiment_label, FeedbackSentence.sentiment_label)
"""A sentence's sentiment at one of its touchpoints: its clause's where its clauses disagree, else its own."""
AT_TOUCHPOINT_SCORE = func.coalesce(SentenceTouchpoint.sentiment_score, FeedbackSentence.sentiment_score)
NEGATIVE_AT_TOUCHPOINT = func.sum(case((AT_TOUCHPOINT_LABEL == "negative", 1), else_=0))

Interval = Literal["hour", "day", "week"]
GroupBy = Literal["touchpoint", "topic", "location", "source", "language", "sentiment"]


@dataclass
class RatingMetric:
    """A rating metric as the field defines it, and how many ratings it rests on."""

    value: float | None
    responses: int


@dataclass
class TouchpointMetrics:
    """The experience at one touchpoint."""

    touchpoint: str
    items: int
    sentences: int
    negative_sentences: int
    average_sentiment: float | None
    nps: RatingMetric
    csat: RatingMetric
    ces: RatingMetric
    stars: RatingMetric

    @property
    def negative_share(self) -> float | None:
        """Share of the touchpoint's sentences that are negative."""
        return self.negative_sentences / self.sentences if self.sentences else None


def rating_sum_columns() -> list[Any]:
    """SQL sums behind NPS, CSAT, CES and stars: responses and their tallies, in ``rating_metrics`` order."""
    value, scale = FeedbackItem.rating_value, FeedbackItem.rating_scale

    def among(name: RatingScale, expression: Any) -> Any:
        return func.sum(case((scale == name.value, expression), else_=0))

    return [
        among(RatingScale.NPS, 1),
        among(RatingScale.NPS, case((value >= 9, 1), else_=0)),
        among(RatingScale.NPS, case((value <= 6, 1), else_=0)),
        among(RatingScale.CSAT, 1),
        among(RatingScale.CSAT, case((value >= 4, 1), else_=0)),
        among(RatingScale.CES, 1),
        among(RatingScale.CES, value),
        among(RatingScale.STARS, 1),
        among(RatingScale.STARS, value),
    ]


def rating_metrics(values: Any) -> tuple[RatingMetric, RatingMetric, RatingMetric, RatingMetric]:
    """NPS (promoters minus detractors, %), CSAT (% 4-5), mean CES and mean stars from ``rating_sum_columns``."""
    nps_n, promoters, detractors, csat_n, satisfied, ces_n, ces_sum, stars_n, stars_sum = (
        float(v or 0) for v in values
    )
    return (
        RatingMetric(100 * (promoters - detractors) / nps_n if nps_n else None, int(nps_n)),
        RatingMetric(100 * satisfied / csat_n if csat_n else None, int(csat_n)),
        RatingMetric(ces_sum / ces_n if ces_n else None, int(ces_n)),
        RatingMetric(stars_sum / stars_n if stars_n else None, int(stars_n)),
    )


def touchpoint_metrics(session: Session, *, scope: Scope) -> dict[str, TouchpointMetrics]:
    """Volume, sentiment and NPS / CSAT / CES / stars for every touchpoint with feedback in scope."""
    conditions = scope.conditions()
    sentence_rows = session.execute(
        select(
            SentenceTouchpoint.touchpoint,
            func.count(),
            NEGATIVE_AT_TOUCHPOINT,
            func.avg(AT_TOUCHPOINT_SCORE),
        )
        .join(FeedbackSentence, FeedbackSentence.id == SentenceTouchpoint.sentence_id)
        .join(FeedbackItem, FeedbackItem.id == SentenceTouchpoint.item_id)
        .where(*conditions)
        .group_by(SentenceTouchpoint.touchpoint)
    ).all()
    per_sentence = {row[0]: (int(row[1]), int(row[2] or 0), row[3]) for row in sentence_rows}

    item_rows = session.execute(
        select(ItemTouchpoint.touchpoint, func.count(), *rating_sum_columns())
        .join(FeedbackItem, FeedbackItem.id == ItemTouchpoint.item_id)
        .where(*conditions)
        .group_by(ItemTouchpoint.touchpoint)
    ).all()
    result: dict[str, TouchpointMetrics] = {}
    for row in item_rows:
        touchpoint, items = row[0], int(row[1])
        nps, csat, ces, stars = rating_metrics(row[2:])
        sentences, negative, average = per_sentence.get(touchpoint, (0, 0, None))
        result[touchpoint] = TouchpointMetrics(
            touchpoint=touchpoint,
            items=items,
            sentences=sentences,
            negative_sentences=negative,
            average_sentiment=float(average) if average is not None else None,
            nps=nps,
            csat=csat,
            ces=ces,
            stars=stars,
        )
    return result


def bucket_start(column: Any, *, interval: Interval, dialect: str) -> Any:
    """A SQL expression truncating a UTC timestamp to the start of its hour, day or ISO week (Monday)."""
    if dialect == "postgresql":
        return func.date_trunc(interval, func.timezone("UTC", column))
    formats = {"hour": "%Y-%m-%d %H:00:00", "day": "%Y-%m-%d 00:00:00"}
    if interval == "week":
        # SQLite: the Monday on or before the date ('weekday 1' moves forward to Monday, so step back 6 days first)
        return func.strftime("%Y-%m-%d 00:00:00", func.date(column, "-6 days", "weekday 1"))
    return func.strftime(formats[interval], column)


GROUP_COLUMNS: dict[str, Any] = {
    "touchpoint": ItemTouchpoint.touchpoint,
    "source": Source.name,
    "location": FeedbackItem.location,
    "language": FeedbackItem.language,
    "sentiment": FeedbackItem.sentiment_label,
}


def trends(
    session: Session,
    *,
    scope: Scope,
    group_by: GroupBy,
    interval: Interval,
    limit_groups: int = 20,
    baseline_buckets: int = 6,
    window: int = 1,
) -> list[dict[str, Any]]:
    """Item counts per time bucket and group, with negative counts and average sentiment."""
    dialect = session.get_bind().dialect.name
    # an item counts once per topic however many of its sentences are about it
    item_topics = select(SentenceTopic.item_id, SentenceTopic.topic_id).distinct().subquery()
    key = item_topics.c.topic_id if group_by == "topic" else GROUP_COLUMNS[group_by]
    start = bucket_start(FeedbackItem.created_at, interval=interval, dialect=dialect).label("bucket")
    query = (
        select(
            key.label("key"),
            start,
            func.count().label("items"),
            func.sum(case((FeedbackItem.sentiment_label.in_(("negative", "mixed")), 1), else_=0)).label(
                "negative"
            ),
            func.avg(FeedbackItem.sentiment_score).label("average_sentiment"),
        )
        .select_from(FeedbackItem)
        .where(*scope.conditions())
    )
    if group_by == "touchpoint":
        query = query.join(ItemTouchpoint, ItemTouchpoint.item_id == FeedbackItem.id)
    if group_by == "topic":
        query = query.join(item_topics, item_topics.c.item_id == FeedbackItem.id)
    if group_by == "source":
        query = query.join(Source, Source.id == FeedbackItem.source_id)
    rows = session.execute(query.group_by(key, start).order_by(key, start)).all()
    series: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        bucket = row.bucket if isinstance(row.bucket, datetime) else datetime.fromisoformat(str(row.bucket))
        series[row.key].append(
            {
                "start": bucket.replace(tzinfo=UTC) if bucket.tzinfo is None else bucket.astimezone(UTC),
                "items": int(row.items),
                "negative": int(row.negative or 0),
                "average_sentiment": float(row.average_sentiment)
                if row.average_sentiment is not None
                else None,
            }
        )
    ranked = sorted(series.items(), key=lambda kv: -sum(b["items"] for b in kv[1]))[:limit_groups]
    result = [
        {"key": k, "total": sum(b["items"] for b in buckets), "buckets": buckets} for k, buckets in ranked
    ]
    _attach_trend_tests(result, interval=interval, baseline_buckets=baseline_buckets, window=window)
    return result


STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}


def _attach_trend_tests(
    series: list[dict[str, Any]], *, interval: Interval, baseline_buckets: int, window: int
) -> None:
    """Test each series' last ``window`` buckets of negatives against the ``baseline_buckets`` before them."""
    starts = sorted({b["start"] for s in series for b in s["buckets"]})
    if len(starts) < 2:
        return
    grid = [starts[-1] - STEP[interval] * i for i in range(baseline_buckets + window - 1, -1, -1)]
    baseline, current = grid[:baseline_buckets], grid[baseline_buckets:]
    negatives = [{b["start"]: b["negative"] for b in s["buckets"]} for s in series]
    histories = [[counts.get(start, 0) for start in baseline] for counts in negatives]
    prior_rate = sum(map(sum, histories)) / (len(histories) * len(baseline))
    for entry, counts, history in zip(series, negatives, histories, strict=True):
        test = assess_trend(
            current=sum(counts.get(start, 0) for start in current),
            history=history,
            prior_rate=prior_rate,
            window=window,
            comparisons=len(series),
        )
        entry["trend"] = {
            "bucket": current[0],
            "window": window,
            "baseline_buckets": len(baseline),
            **test.__dict__,
        }


def location_comparison(session: Session, *, touchpoint: str, scope: Scope) -> list[dict[str, Any]]:
    """Each location's negative share at a touchpoint against the other locations', most negative first."""
    rows = session.execute(
        select(
            FeedbackItem.location,
            func.count(),
            NEGATIVE_AT_TOUCHPOINT,
        )
        .select_from(SentenceTouchpoint)
        .join(FeedbackSentence, FeedbackSentence.id == SentenceTouchpoint.sentence_id)
        .join(FeedbackItem, FeedbackItem.id == SentenceTouchpoint.item_id)
        .where(
            SentenceTouchpoint.touchpoint == touchpoint,
            FeedbackItem.location.is_not(None),
            *scope.conditions(),
        )
        .group_by(FeedbackItem.location)
    ).all()
    return compare_locations(rows)


def compare_locations(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """Each location's negative share against all the other locations' (rows: location, total, negative)."""
    counts = {location: (int(total), int(negative or 0)) for location, total, negative in rows}
    all_total = sum(total for total, _ in counts.values())
    all_negative = sum(negative for _, negative in counts.values())
    result = []
    for location, (total, negative) in counts.items():
        test = assess_outlier(
            negative=negative,
            total=total,
            others_negative=all_negative - negative,
            others_total=all_total - total,
            comparisons=len(counts),
        )
        result.append({"location": location, **test.__dict__})
    return sorted(result, key=lambda r: (-r["shrunk_share"], r["location"]))
