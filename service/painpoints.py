"""Pain points: a topic with negative sentences at a touchpoint, and whether it is trending.

A sentence is at a touchpoint when it names it (sentence touchpoints) or, for an item that names none,
when its source's default touchpoint says so. The period under study ends at ``until`` (default: now)
and spans ``baseline + window`` buckets (or starts at ``since``). A pain point is trending when its
negative sentences in the last ``window`` buckets exceed what its ``baseline`` buckets predict, by the
shrunk one-sided Poisson test of ``service.trending`` (Bonferroni over the pain points tested).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar
from urllib.parse import urlencode

from sqlalchemy import Select, and_, case, func, select, tuple_
from sqlalchemy.orm import Session

from nlp.representation import QuoteCandidate, distinct_quotes
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
from service.rollups import FACT_DIMENSION, Dimension, Filters, period_figures, segments
from service.trending import assess_trend

Interval = Literal["hour", "day", "week"]
QUOTE_POOL = 6
"""Quotes are picked from this many times as many candidates, so that duplicates can be passed over."""
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


def pain_point_report(
    session: Session,
    *,
    scope: Scope,
    touchpoints: Collection[str] | None = None,
    topic_ids: Sequence[int] = (),
    shown_topic_ids: Collection[int] = (),
    interval: Interval = "week",
    window: int = 1,
    baseline: int = 6,
    limit: int = 50,
    quotes: int = 3,
    now: datetime | None = None,
) -> PainPointReport:
    """The pain points in scope, by impact (negative sentences times their mean negativity).

    ``topic_ids`` narrows what is tested; ``shown_topic_ids`` keeps every pain point in the trend test (so its
    figures agree with the full list) but describes and returns only those topics' pain points.
    """
    until = scope.until or now or datetime.now(UTC)
    step = STEP[interval]
    trend_start = until - step * (baseline + window)
    since = scope.since or trend_start
    buckets = baseline + window
    bounds = [until - step * index for index in range(buckets + 1)]
    # Hourly buckets and scopes narrowed in two dimensions (a store and a source) read the facts; the rest
    # reads the daily rollups.
    period_rows = (
        period_rows_from_facts
        if interval == "hour" or rollup_dimension(scope) is False
        else period_rows_from_rollups
    )
    rows = period_rows(
        session, since=since, bounds=bounds, scope=scope, touchpoints=touchpoints, topic_ids=topic_ids
    )

    totals: dict[Key, PainPoint] = {}
    sums: dict[Key, tuple[float, float]] = {}
    counts: dict[Key, list[int]] = {}
    for row in rows:
        key = (row[0], row[1])
        counts[key] = [int(n or 0) for n in row[6:]]
        if not row[2]:
            continue
        totals[key] = PainPoint(
            topic_id=key[0], touchpoint=key[1], sentences=int(row[2]), negative=int(row[3] or 0)
        )
        sums[key] = (float(row[4] or 0.0), float(row[5] or 0.0))
    candidates = {key: point for key, point in totals.items() if point.negative > 0}
    histories = {key: counts[key][window:] for key in candidates}
    prior_rate = sum(map(sum, histories.values())) / max(len(histories) * baseline, 1)
    for key, point in candidates.items():
        test = assess_trend(
            current=sum(counts[key][:window]),
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
    if shown_topic_ids:
        ranked = [p for p in ranked if p.topic_id in shown_topic_ids]
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


def period_rows_from_facts(
    session: Session,
    *,
    since: datetime,
    bounds: Sequence[datetime],
    scope: Scope,
    touchpoints: Collection[str] | None,
    topic_ids: Sequence[int],
) -> list[Sequence[Any]]:
    """Per (topic, touchpoint): the period's totals and the negatives of each trailing bucket (0 = the
    latest), aggregated by the database over the facts."""
    created, negative = PainPointFact.created_at, PainPointFact.negative
    in_period = created >= since

    def total(condition: Any, value: Any = 1) -> Any:
        return func.sum(case((condition, value), else_=0))

    query = select(
        PainPointFact.topic_id,
        PainPointFact.touchpoint,
        total(in_period).label("sentences"),
        total(in_period & negative).label("negative"),
        total(in_period, PainPointFact.sentiment_score).label("score_sum"),
        total(in_period & negative, PainPointFact.sentiment_score).label("negative_score"),
        *(
            total(negative & (created >= bounds[index + 1]) & (created < bounds[index])).label(f"b{index}")
            for index in range(len(bounds) - 1)
        ),
    )
    query = _in_scope(query, scope, since=min(since, bounds[-1]), until=bounds[0])
    if touchpoints is not None:
        query = query.where(PainPointFact.touchpoint.in_(touchpoints))
    if topic_ids:
        query = query.where(PainPointFact.topic_id.in_(topic_ids))
    return list(
        session.connection().execute(query.group_by(PainPointFact.topic_id, PainPointFact.touchpoint))
    )


def rollup_dimension(scope: Scope) -> Dimension | Literal[False] | None:
    """The one dimension that narrows ``scope`` (None: none does; False: more than one does)."""
    by_dimension: dict[Dimension, Collection[str]] = {
        "location": scope.locations,
        "source": scope.sources,
        "language": scope.languages,
    }
    narrowed = [name for name, values in by_dimension.items() if values]
    if len(narrowed) > 1:
        return False
    return narrowed[0] if narrowed else None


def period_rows_from_rollups(
    session: Session,
    *,
    since: datetime,
    bounds: Sequence[datetime],
    scope: Scope,
    touchpoints: Collection[str] | None,
    topic_ids: Sequence[int],
) -> list[Sequence[Any]]:
    """The rows of ``period_rows_from_facts`` from the daily rollups (for a scope narrowed in at most one
    dimension), exact to the second."""
    dimension = rollup_dimension(scope)
    if dimension is False:
        raise ValueError("a scope narrowed in two dimensions reads the facts")
    values: Collection[str] = ()
    if dimension == "location":
        values = scope.locations
    elif dimension == "language":
        values = scope.languages
    elif dimension == "source":
        names = select(Source.id).where(Source.name.in_(scope.sources))
        values = [str(source_id) for source_id in session.scalars(names)] or ["none"]
    filters = Filters(dimension=dimension, values=values, touchpoints=touchpoints, topic_ids=topic_ids)
    parts = segments(since=since, bounds=bounds)
    figures = period_figures(session, parts=parts, buckets=len(bounds) - 1, filters=filters)
    return [
        (*key, round(sums[0]), round(sums[1]), sums[2], sums[3], *(round(n) for n in sums[4:]))
        for key, sums in figures.items()
    ]


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
        period = Scope(
            since=since,
            until=until,
            locations=scope.locations,
            sources=scope.sources,
            languages=scope.languages,
        )
        filters = [("pain_point", f"{point.topic_id}:{point.touchpoint}"), *period.query_params()]
        point.feedback_query = "/v1/feedback?" + urlencode(filters)

    pairs = list(by_key)
    # The topic_id IN (...) lets the database seek the (topic, touchpoint, time) index.
    selected = [
        PainPointFact.negative,
        PainPointFact.topic_id.in_(topic_ids),
        tuple_(PainPointFact.topic_id, PainPointFact.touchpoint).in_(pairs),
    ]
    sources = {source_id: name for source_id, name in session.execute(select(Source.id, Source.name))}
    seen = _in_scope(
        select(
            PainPointFact.topic_id,
            PainPointFact.touchpoint,
            func.min(PainPointFact.created_at).label("first"),
            func.max(PainPointFact.created_at).label("last"),
        ),
        scope,
        since=since,
        until=until,
    ).where(*selected)
    for seen_row in session.execute(seen.group_by(PainPointFact.topic_id, PainPointFact.touchpoint)):
        point = by_key[(seen_row.topic_id, seen_row.touchpoint)]
        point.first_seen, point.last_seen = _aware(seen_row.first), _aware(seen_row.last)
    counts = _breakdown(session, scope=scope, since=since, until=until, selected=selected)
    for ((topic_id, touchpoint), dimension), values in counts.items():
        point = by_key[(topic_id, touchpoint)]
        for value, n in values.items():
            if n <= 0:
                continue
            if dimension == "location" and value:
                point.locations[value] = n
            elif dimension == "source":
                point.sources[sources.get(int(value), value)] = n
            elif dimension == "language":
                point.languages[value or "und"] = n

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
        pools: dict[tuple[int, str], list[Quote]] = defaultdict(list)
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
            .where(ranked.c.rank <= quotes * QUOTE_POOL)
            .order_by(ranked.c.topic_id, ranked.c.touchpoint, ranked.c.rank)
        ):
            pools[(row.topic_id, row.touchpoint)].append(
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
        for key, pool in pools.items():
            by_key[key].quotes = pick_quotes(pool, quotes)
    for point in pain_points:
        point.emotions = dict(sorted(point.emotions.items(), key=lambda kv: (-kv[1], kv[0])))
        point.locations = dict(sorted(point.locations.items(), key=lambda kv: (-kv[1], kv[0])))
        point.sources = dict(sorted(point.sources.items(), key=lambda kv: (-kv[1], kv[0])))
        point.languages = dict(sorted(point.languages.items(), key=lambda kv: (-kv[1], kv[0])))


def _breakdown(
    session: Session,
    *,
    scope: Scope,
    since: datetime,
    until: datetime,
    selected: list[Any],
) -> dict[tuple[Key, str], dict[str, int]]:
    """Negative sentences of each pain point per store, source id and language, from the facts' covering
    (topic, touchpoint, negative, time, ...) index, one grouping per dimension: all three at once would
    return a row per combination (12,000 rows for 20 pain points at a million items). The dimension
    rollups are no faster here: one store's day holds about one fact per pain point at a million items."""
    counts: dict[tuple[Key, str], dict[str, int]] = defaultdict(dict)
    connection = session.connection()
    for dimension, column in FACT_DIMENSION.items():
        grouped = _in_scope(
            select(PainPointFact.topic_id, PainPointFact.touchpoint, column, func.count()),
            scope,
            since=since,
            until=until,
        ).where(*selected)
        query = grouped.group_by(PainPointFact.topic_id, PainPointFact.touchpoint, column)
        for topic_id, touchpoint, value, n in connection.execute(query):
            counts[((topic_id, touchpoint), dimension)]["" if value is None else str(value)] = n
    return counts


def pick_quotes(pool: Sequence[Quote], count: int) -> list[Quote]:
    """The ``count`` quotes to show from a pool, most representative first: distinct, from several stores."""
    candidates = [
        QuoteCandidate(text=q.text, score=q.similarity, location=q.location, language=q.language)
        for q in pool
    ]
    return [pool[i] for i in distinct_quotes(candidates, count)]


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
