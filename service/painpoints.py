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
from typing import Any, Literal
from urllib.parse import urlencode

from sqlalchemy import Integer, Select, and_, case, cast, func, literal, select, tuple_
from sqlalchemy.orm import Session

from service.db.models import (
    FeedbackEmotion,
    FeedbackItem,
    FeedbackSentence,
    ItemTouchpoint,
    PainPointState,
    SentenceTopic,
    SentenceTouchpoint,
    Source,
    Topic,
)
from service.feedback import Scope
from service.trending import assess_trend

Interval = Literal["hour", "day", "week"]
STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}
Key = tuple[int, str]


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


def _facts(kind: str, columns: Sequence[Any], scope: Scope) -> Select[Any]:
    """Sentence topics joined with their touchpoints (named in the text, or the source's default)."""
    if kind == "text":
        query = select(*columns, SentenceTouchpoint.touchpoint.label("touchpoint")).join(
            SentenceTouchpoint, SentenceTouchpoint.sentence_id == SentenceTopic.sentence_id
        )
    else:
        query = select(*columns, ItemTouchpoint.touchpoint.label("touchpoint")).join(
            ItemTouchpoint,
            and_(ItemTouchpoint.item_id == SentenceTopic.item_id, ItemTouchpoint.origin == "source"),
        )
    if scope.locations or scope.sources or scope.languages:
        query = query.join(FeedbackItem, FeedbackItem.id == SentenceTopic.item_id).where(
            *Scope(locations=scope.locations, sources=scope.sources, languages=scope.languages).conditions()
        )
    if scope.since is not None:
        query = query.where(SentenceTopic.created_at >= scope.since)
    if scope.until is not None:
        query = query.where(SentenceTopic.created_at < scope.until)
    return query


def _trailing_bucket(anchor: datetime, step: timedelta, dialect: str) -> Any:
    """Which bucket before ``anchor`` a sentence falls in: 0 for the latest, 1 for the one before..."""
    seconds = step.total_seconds()
    age: Any
    if dialect == "postgresql":
        age = func.extract("epoch", literal(anchor) - SentenceTopic.created_at)
    else:
        age = (
            func.julianday(anchor.astimezone(UTC).replace(tzinfo=None))
            - func.julianday(SentenceTopic.created_at)
        ) * 86400.0
    return cast(age / seconds, Integer)


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
    period = Scope(
        since=since, until=until, locations=scope.locations, sources=scope.sources, languages=scope.languages
    )
    wanted_touchpoints = set(touchpoints)
    wanted_topics = set(topic_ids)

    totals: dict[Key, list[Any]] = {}
    for kind in ("text", "source"):
        rows = session.execute(
            _facts(
                kind,
                [
                    SentenceTopic.topic_id,
                    func.count().label("sentences"),
                    func.sum(case((SentenceTopic.negative, 1), else_=0)).label("negative"),
                    func.sum(SentenceTopic.sentiment_score).label("score_sum"),
                    func.sum(case((SentenceTopic.negative, SentenceTopic.sentiment_score), else_=0.0)).label(
                        "negative_score_sum"
                    ),
                    func.min(case((SentenceTopic.negative, SentenceTopic.created_at))).label("first"),
                    func.max(case((SentenceTopic.negative, SentenceTopic.created_at))).label("last"),
                ],
                period,
            ).group_by(SentenceTopic.topic_id, "touchpoint")
        ).all()
        for row in rows:
            key = (row.topic_id, row.touchpoint)
            if (wanted_touchpoints and row.touchpoint not in wanted_touchpoints) or (
                wanted_topics and row.topic_id not in wanted_topics
            ):
                continue
            entry = totals.setdefault(key, [0, 0, 0.0, 0.0, None, None])
            entry[0] += row.sentences
            entry[1] += int(row.negative or 0)
            entry[2] += float(row.score_sum or 0.0)
            entry[3] += float(row.negative_score_sum or 0.0)
            entry[4] = _earliest(entry[4], row.first)
            entry[5] = _latest(entry[5], row.last)
    candidates = {key: entry for key, entry in totals.items() if entry[1] > 0}

    dialect = session.get_bind().dialect.name
    bucket = _trailing_bucket(until, step, dialect).label("bucket")
    counts: dict[Key, Counter[int]] = defaultdict(Counter)
    trend_scope = Scope(
        since=trend_start,
        until=until,
        locations=scope.locations,
        sources=scope.sources,
        languages=scope.languages,
    )
    for kind in ("text", "source"):
        rows = session.execute(
            _facts(kind, [SentenceTopic.topic_id, bucket, func.count().label("n")], trend_scope)
            .where(SentenceTopic.negative)
            .group_by(SentenceTopic.topic_id, "touchpoint", "bucket")
        ).all()
        for row in rows:
            key = (row.topic_id, row.touchpoint)
            if key in candidates:
                counts[key][int(row.bucket)] += int(row.n)
    histories = {key: [counts[key].get(window + i, 0) for i in range(baseline)] for key in candidates}
    prior_rate = sum(map(sum, histories.values())) / max(len(histories) * baseline, 1)

    pain_points = []
    for key, (sentences, negative, score_sum, negative_score_sum, first, last) in candidates.items():
        test = assess_trend(
            current=sum(counts[key].get(i, 0) for i in range(window)),
            history=histories[key],
            prior_rate=prior_rate,
            window=window,
            comparisons=len(candidates),
        )
        pain_points.append(
            PainPoint(
                topic_id=key[0],
                touchpoint=key[1],
                sentences=sentences,
                negative=negative,
                average_sentiment=score_sum / sentences if sentences else None,
                first_seen=_aware(first),
                last_seen=_aware(last),
                current=test.current,
                expected=test.expected,
                growth=test.growth,
                p_value=test.p_value,
                trending=test.trending,
                impact=round(-negative_score_sum, 4),
            )
        )
    pain_points.sort(key=lambda p: (-p.impact, -p.negative, p.topic_id, p.touchpoint))
    selected = pain_points[:limit]
    _describe(session, selected, scope=period, quotes=quotes)
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


def _describe(session: Session, pain_points: list[PainPoint], *, scope: Scope, quotes: int) -> None:
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
        filters = [
            ("topic", str(point.topic_id)),
            ("touchpoint", point.touchpoint),
            ("sentiment", "negative"),
        ]
        filters += [("since", scope.since.isoformat())] if scope.since else []
        filters += [("until", scope.until.isoformat())] if scope.until else []
        filters += [("location", v) for v in scope.locations] + [("source", v) for v in scope.sources]
        filters += [("language", v) for v in scope.languages]
        point.feedback_query = "/v1/feedback?" + urlencode(filters)

    pairs = list(by_key)
    for kind in ("text", "source"):
        base = _facts(
            kind,
            [
                SentenceTopic.topic_id,
                FeedbackItem.location,
                Source.name.label("source"),
                FeedbackItem.language,
                func.count().label("n"),
            ],
            Scope(since=scope.since, until=scope.until),
        )
        rows = session.execute(
            base.join(FeedbackItem, FeedbackItem.id == SentenceTopic.item_id)
            .join(Source, Source.id == FeedbackItem.source_id)
            .where(
                SentenceTopic.negative,
                tuple_(SentenceTopic.topic_id, base.selected_columns.touchpoint).in_(pairs),
                *Scope(
                    locations=scope.locations, sources=scope.sources, languages=scope.languages
                ).conditions(),
            )
            .group_by(
                SentenceTopic.topic_id,
                "touchpoint",
                FeedbackItem.location,
                Source.name,
                FeedbackItem.language,
            )
        ).all()
        for row in rows:
            point = by_key[(row.topic_id, row.touchpoint)]
            if row.location:
                point.locations[row.location] = point.locations.get(row.location, 0) + row.n
            point.sources[row.source] = point.sources.get(row.source, 0) + row.n
            language = row.language or "und"
            point.languages[language] = point.languages.get(language, 0) + row.n

        emotion_base = _facts(
            kind,
            [
                SentenceTopic.topic_id,
                FeedbackEmotion.label.label("emotion"),
                func.count(func.distinct(SentenceTopic.item_id)).label("n"),
            ],
            scope,
        )
        rows = session.execute(
            emotion_base.join(
                FeedbackEmotion,
                and_(FeedbackEmotion.item_id == SentenceTopic.item_id, FeedbackEmotion.scheme == "cx"),
            )
            .where(
                SentenceTopic.negative,
                tuple_(SentenceTopic.topic_id, emotion_base.selected_columns.touchpoint).in_(pairs),
            )
            .group_by(SentenceTopic.topic_id, "touchpoint", FeedbackEmotion.label)
        ).all()
        for row in rows:
            point = by_key[(row.topic_id, row.touchpoint)]
            point.emotions[row.emotion] = point.emotions.get(row.emotion, 0) + row.n

        if quotes:
            quote_base = _facts(
                kind, [SentenceTopic.topic_id, SentenceTopic.sentence_id, SentenceTopic.similarity], scope
            )
            ranked = (
                quote_base.add_columns(
                    func.row_number()
                    .over(
                        partition_by=(SentenceTopic.topic_id, quote_base.selected_columns.touchpoint),
                        order_by=(SentenceTopic.similarity.desc(), SentenceTopic.sentence_id.desc()),
                    )
                    .label("rank")
                )
                .where(
                    SentenceTopic.negative,
                    tuple_(SentenceTopic.topic_id, quote_base.selected_columns.touchpoint).in_(pairs),
                )
                .subquery()
            )
            rows = session.execute(
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
            ).all()
            for row in rows:
                point = by_key[(row.topic_id, row.touchpoint)]
                if len(point.quotes) < quotes:
                    point.quotes.append(
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
