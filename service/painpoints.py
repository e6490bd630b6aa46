"""Pain points: a topic with negative sentences at a touchpoint, and whether it is trending.

A sentence is at a touchpoint when it names it (sentence touchpoints) or, for an item that names none,
when its source's default touchpoint says so. The period under study ends at ``until`` (default: now)
and spans ``baseline + window`` buckets (or starts at ``since``). A pain point is trending when its
negative sentences in the last ``window`` buckets exceed what its ``baseline`` buckets predict, by the
shrunk one-sided Poisson test of ``service.trending`` (Bonferroni over the pain points tested).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar
from urllib.parse import urlencode

from sqlalchemy import Select, and_, case, func, select, tuple_
from sqlalchemy.orm import Session

from service.db.models import (
    FeedbackEmotion,
    FeedbackItem,
    FeedbackSentence,
    PainPointFact,
    PainPointState,
    Source,
    Topic,
)
from service.feedback import Scope
from service.trending import assess_trend

Interval = Literal["hour", "day", "week"]
STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}
Key = tuple[int, str]
SelectT = TypeVar("SelectT", bound="Select[*tuple[Any, ...]]")


@dataclass(frozen=True)
class Quote:
    """A negative sentence that stands for the pain point, and the item it comes from."""

    item_id: int
    sentence_id: int
    text: str
    similarity: float
    created_at: datetime
    location: str | None
    source: str
    language: str | None


@dataclass
class PainPoint:
    """A topic's negative feedback at one touchpoint, over the period under study."""

    topic_id: int
    touchpoint: str
    label: str = ""
    keywords: list[str] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)
    sentences: int = 0
    negative: int = 0
    average_sentiment: float | None = None
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    current: int = 0
    expected: float = 0.0
    growth: float | None = None
    p_value: float = 1.0
    trending: bool = False
    impact: float = 0.0
    emotions: dict[str, int] = field(default_factory=dict)
    locations: dict[str, int] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)
    languages: dict[str, int] = field(default_factory=dict)
    quotes: list[Quote] = field(default_factory=list)
    status: str = "open"
    owner: str | None = None
    feedback_query: str = ""

    @property
    def negative_share(self) -> float | None:
        """Negative sentences over all of the topic's sentences at this touchpoint."""
        return self.negative / self.sentences if self.sentences else None


@dataclass
class PainPointReport:
    """The pain points of a period, with the period and the test's settings."""

    since: datetime
    until: datetime
    interval: Interval
    window: int
    baseline: int
    tested: int
    pain_points: list[PainPoint]


def _in_scope(query: SelectT, scope: Scope, *, since: datetime, until: datetime) -> SelectT:
    """Facts created in [since, until) from the scope's locations, sources and languages."""
    query = query.where(PainPointFact.created_at >= since, PainPointFact.created_at < until)
    if scope.locations:
        query = query.where(PainPointFact.location.in_(scope.locations))
    if scope.sources:
        query = query.where(
            PainPointFact.source_id.in_(select(Source.id).where(Source.name.in_(scope.sources)))
        )
    if scope.languages:
        query = query.where(PainPointFact.language.in_(scope.languages))
    return query


def _trailing_bucket(anchor: datetime, step: timedelta, buckets: int) -> Any:
    """Which bucket before ``anchor`` a fact falls in: 0 for the latest, 1 for the one before...

    Comparisons with precomputed boundaries, not date arithmetic per row: portable, and it keeps the
    scan on the (created_at, ...) index cheap. Older facts fall in bucket ``buckets``.
    """
    return case(
        *((PainPointFact.created_at >= anchor - step * (index + 1), index) for index in range(buckets)),
        else_=buckets,
    )


def pain_point_report(
    session: Session,
    *,
    scope: Scope,
    touchpoints: Sequence[str] = (),
    topic_ids: Sequence[int] = (),
    interval: Interval = "week",
    window: int = 1,
    baseline: int = 6,
    limit: int = 50,
    quotes: int = 3,
    now: datetime | None = None,
) -> PainPointReport:
    """The pain points in scope, by impact (negative sentences times their mean negativity)."""
    until = scope.until or now or datetime.now(UTC)
    step = STEP[interval]
    trend_start = until - step * (baseline + window)
    since = scope.since or trend_start
    bucket = _trailing_bucket(until, step, baseline + window).label("bucket")
    in_period = (PainPointFact.created_at >= since).label("in_period")
    negative = case((PainPointFact.negative, 1), else_=0)
    query = select(
        PainPointFact.topic_id,
        PainPointFact.touchpoint,
        bucket,
        in_period,
        func.count().label("sentences"),
        func.sum(negative).label("negative"),
        func.sum(PainPointFact.sentiment_score).label("score_sum"),
        func.sum(case((PainPointFact.negative, PainPointFact.sentiment_score), else_=0.0)).label(
            "negative_score"
        ),
        func.min(case((PainPointFact.negative, PainPointFact.created_at))).label("first"),
        func.max(case((PainPointFact.negative, PainPointFact.created_at))).label("last"),
    )
    query = _in_scope(query, scope, since=min(since, trend_start), until=until)
    if touchpoints:
        query = query.where(PainPointFact.touchpoint.in_(touchpoints))
    if topic_ids:
        query = query.where(PainPointFact.topic_id.in_(topic_ids))
    rows = session.execute(
        query.group_by(PainPointFact.topic_id, PainPointFact.touchpoint, "bucket", "in_period")
    ).all()

    totals: dict[Key, PainPoint] = {}
    sums: dict[Key, list[float]] = defaultdict(lambda: [0.0, 0.0])
    counts: dict[Key, Counter[int]] = defaultdict(Counter)
    for row in rows:
        key = (row.topic_id, row.touchpoint)
        if int(row.bucket) < baseline + window:
            counts[key][int(row.bucket)] += int(row.negative or 0)
        if not row.in_period:
            continue
        point = totals.setdefault(key, PainPoint(topic_id=key[0], touchpoint=key[1]))
        point.sentences += int(row.sentences)
        point.negative += int(row.negative or 0)
        sums[key][0] += float(row.score_sum or 0.0)
        sums[key][1] += float(row.negative_score or 0.0)
        point.first_seen = _earliest(point.first_seen, row.first)
        point.last_seen = _latest(point.last_seen, row.last)
    candidates = {key: point for key, point in totals.items() if point.negative > 0}
    histories = {key: [counts[key].get(window + i, 0) for i in range(baseline)] for key in candidates}
    prior_rate = sum(map(sum, histories.values())) / max(len(histories) * baseline, 1)
    for key, point in candidates.items():
        test = assess_trend(
            current=sum(counts[key].get(i, 0) for i in range(window)),
            history=histories[key],
            prior_rate=prior_rate,
            window=window,
            comparisons=len(candidates),
        )
        point.current, point.expected, point.growth = test.current, test.expected, test.growth
        point.p_value, point.trending = test.p_value, test.trending
        point.average_sentiment = sums[key][0] / point.sentences if point.sentences else None
        point.impact = round(-sums[key][1], 4)
    ranked = sorted(candidates.values(), key=lambda p: (-p.impact, -p.negative, p.topic_id, p.touchpoint))
    selected = ranked[:limit]
    _describe(session, selected, scope=scope, since=since, until=until, quotes=quotes)
    return PainPointReport(
        since=since,
        until=until,
        interval=interval,
        window=window,
        baseline=baseline,
        tested=len(candidates),
        pain_points=selected,
    )


def list_pain_points(session: Session, *, scope: Scope, **options: Any) -> list[PainPoint]:
    """The pain points in scope, by impact (see ``pain_point_report`` for the options)."""
    return pain_point_report(session, scope=scope, **options).pain_points


def _describe(
    session: Session,
    pain_points: list[PainPoint],
    *,
    scope: Scope,
    since: datetime,
    until: datetime,
    quotes: int,
) -> None:
    """Labels, triage, emotions, where it comes from and quotes, for the selected pain points."""
    if not pain_points:
        return
    by_key = {(p.topic_id, p.touchpoint): p for p in pain_points}
    topic_ids = sorted({p.topic_id for p in pain_points})
    topics = {t.id: t for t in session.scalars(select(Topic).where(Topic.id.in_(topic_ids)))}
    states = {
        (s.topic_id, s.touchpoint): s
        for s in session.scalars(select(PainPointState).where(PainPointState.topic_id.in_(topic_ids)))
    }
    for key, point in by_key.items():
        topic = topics.get(point.topic_id)
        if topic is not None:
            point.label, point.keywords = topic.label, list(topic.keywords)
        state = states.get(key)
        if state is not None:
            point.status, point.owner = state.status, state.owner
        filters = [("pain_point", f"{point.topic_id}:{point.touchpoint}")]
        filters += [("since", since.isoformat()), ("until", until.isoformat())]
        filters += [("location", v) for v in scope.locations] + [("source", v) for v in scope.sources]
        filters += [("language", v) for v in scope.languages]
        point.feedback_query = "/v1/feedback?" + urlencode(filters)

    pairs = list(by_key)
    # The topic_id IN (...) lets the database seek the (topic, touchpoint, time) index.
    selected = [
        PainPointFact.negative,
        PainPointFact.topic_id.in_(topic_ids),
        tuple_(PainPointFact.topic_id, PainPointFact.touchpoint).in_(pairs),
    ]
    sources = {source_id: name for source_id, name in session.execute(select(Source.id, Source.name))}
    breakdown = _in_scope(
        select(
            PainPointFact.topic_id,
            PainPointFact.touchpoint,
            PainPointFact.location,
            PainPointFact.source_id,
            PainPointFact.language,
            func.count().label("n"),
        ),
        scope,
        since=since,
        until=until,
    ).where(*selected)
    for row in session.execute(
        breakdown.group_by(
            PainPointFact.topic_id,
            PainPointFact.touchpoint,
            PainPointFact.location,
            PainPointFact.source_id,
            PainPointFact.language,
        )
    ):
        point = by_key[(row.topic_id, row.touchpoint)]
        if row.location:
            point.locations[row.location] = point.locations.get(row.location, 0) + row.n
        source = sources.get(row.source_id, str(row.source_id))
        point.sources[source] = point.sources.get(source, 0) + row.n
        language = row.language or "und"
        point.languages[language] = point.languages.get(language, 0) + row.n

    emotions = _in_scope(
        select(
            PainPointFact.topic_id,
            PainPointFact.touchpoint,
            FeedbackEmotion.label.label("emotion"),
            func.count(func.distinct(PainPointFact.item_id)).label("n"),
        ).join(
            FeedbackEmotion,
            and_(FeedbackEmotion.item_id == PainPointFact.item_id, FeedbackEmotion.scheme == "cx"),
        ),
        scope,
        since=since,
        until=until,
    ).where(*selected)
    for emotion_row in session.execute(
        emotions.group_by(PainPointFact.topic_id, PainPointFact.touchpoint, FeedbackEmotion.label)
    ):
        by_key[(emotion_row.topic_id, emotion_row.touchpoint)].emotions[emotion_row.emotion] = emotion_row.n

    if quotes:
        ranked = (
            _in_scope(
                select(
                    PainPointFact.topic_id,
                    PainPointFact.touchpoint,
                    PainPointFact.sentence_id,
                    PainPointFact.similarity,
                    func.row_number()
                    .over(
                        partition_by=(PainPointFact.topic_id, PainPointFact.touchpoint),
                        order_by=(PainPointFact.similarity.desc(), PainPointFact.sentence_id.desc()),
                    )
                    .label("rank"),
                ),
                scope,
                since=since,
                until=until,
            )
            .where(*selected)
            .subquery()
        )
        for row in session.execute(
            select(
                ranked.c.topic_id,
                ranked.c.touchpoint,
                ranked.c.similarity,
                FeedbackSentence.id,
                FeedbackSentence.start,
                FeedbackSentence.end,
                FeedbackItem.id.label("item_id"),
                FeedbackItem.text,
                FeedbackItem.created_at,
                FeedbackItem.location,
                FeedbackItem.language,
                Source.name.label("source"),
            )
            .join(FeedbackSentence, FeedbackSentence.id == ranked.c.sentence_id)
            .join(FeedbackItem, FeedbackItem.id == FeedbackSentence.item_id)
            .join(Source, Source.id == FeedbackItem.source_id)
            .where(ranked.c.rank <= quotes)
            .order_by(ranked.c.topic_id, ranked.c.touchpoint, ranked.c.rank)
        ):
            by_key[(row.topic_id, row.touchpoint)].quotes.append(
                Quote(
                    item_id=row.item_id,
                    sentence_id=row.id,
                    text=row.text[row.start : row.end],
                    similarity=round(float(row.similarity), 4),
                    created_at=row.created_at,
                    location=row.location,
                    source=row.source,
                    language=row.language,
                )
            )
    for point in pain_points:
        point.emotions = dict(sorted(point.emotions.items(), key=lambda kv: (-kv[1], kv[0])))
        point.locations = dict(sorted(point.locations.items(), key=lambda kv: (-kv[1], kv[0])))
        point.sources = dict(sorted(point.sources.items(), key=lambda kv: (-kv[1], kv[0])))
        point.languages = dict(sorted(point.languages.items(), key=lambda kv: (-kv[1], kv[0])))


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _earliest(a: Any, b: Any) -> Any:
    values = [v for v in (_aware(a), _aware(b)) if v is not None]
    return min(values) if values else None


def _latest(a: Any, b: Any) -> Any:
    values = [v for v in (_aware(a), _aware(b)) if v is not None]
    return max(values) if values else None
