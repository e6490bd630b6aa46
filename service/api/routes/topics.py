"""Topics, their lineage across refits, and the trending pain points per touchpoint."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from service.access import known_locations, public_topic_labels, public_topic_text, visible_location_rows
from service.api.deps import ReaderDep, SessionDep
from service.api.problems import ProblemError
from service.api.routes.analytics import (
    CallerScopeDep,
    Languages,
    LocationOut,
    LocationsOut,
    Since,
    Sources,
    Until,
    _scope,
)
from service.api.routes.drivers import DriverFiguresOut, theme_impacts
from service.db.models import Topic, TopicModelRun
from service.drivers import Metric
from service.feedback import Scope
from service.painpoints import Interval, pain_point_report
from service.topics import (
    TopicStats,
    current_model,
    topic_lineage,
    topic_location_comparison,
    topic_stats,
    topic_timeline,
    topic_touchpoints,
)
from service.touchpoints import active_taxonomy

router = APIRouter(prefix="/v1", tags=["topics"])


class QuoteOut(BaseModel):
    item_id: int
    sentence_id: int
    text: str = Field(description="The sentence, as the customer wrote it.")
    similarity: float = Field(description="Cosine to the topic's centroid: how typical the sentence is.")
    created_at: datetime
    location: str | None
    source: str
    language: str | None
    feedback: str = Field(description="The item: GET this path.")


class TrendTestOut(BaseModel):
    current: int = Field(description="Negative sentences in the window under test (the latest buckets).")
    expected: float = Field(description="Its own baseline rate, shrunk towards the typical pain point's.")
    growth: float | None = Field(description="current / expected.")
    p_value: float = Field(description="One-sided Poisson test, P(X >= current).")
    trending: bool = Field(
        description="p below 0.01 / pain points tested, at least 5 negatives, growth 1.5x."
    )


class PainPointOut(BaseModel):
    topic_id: int
    touchpoint: str
    touchpoint_name: str
    stages: list[str]
    label: str
    keywords: list[str]
    negative: int = Field(description="Negative sentences of the topic at the touchpoint in the period.")
    sentences: int = Field(description="All of the topic's sentences at the touchpoint in the period.")
    negative_share: float | None
    average_sentiment: float | None = Field(description="Mean sentence sentiment, -1 to 1.")
    impact: float = Field(description="Negative sentences weighted by how negative they are: the sort key.")
    trend: TrendTestOut
    trending: bool
    emotions: dict[str, int] = Field(description="CX emotions of the negative items, most frequent first.")
    first_seen: datetime | None = Field(description="The first negative sentence in the period.")
    last_seen: datetime | None
    locations: dict[str, int] = Field(description="Negative sentences per location.")
    sources: dict[str, int]
    languages: dict[str, int]
    quotes: list[QuoteOut] = Field(description="The most typical negative sentences.")
    status: str = Field(description="Triage: open, acknowledged or resolved.")
    owner: str | None
    feedback_query: str = Field(description="The GET /v1/feedback call that lists the items behind it.")
    topic: str = Field(description="GET this path for the topic's timeline and lineage.")
    rating_impact: DriverFiguresOut | None = Field(
        default=None,
        description="With impact_on: its theme's key-driver figures on that metric over the period "
        "(see GET /v1/drivers); null without impact_on or with under 10 rated responses.",
    )


class PainPointsOut(BaseModel):
    since: datetime
    until: datetime
    interval: str
    window: int
    baseline: int
    tested: int = Field(description="Pain points tested for a trend (the Bonferroni denominator).")
    pain_points: list[PainPointOut]


Interval_ = Annotated[Interval, Query(description="Bucket size of the trend test.")]
Window = Annotated[int, Query(ge=1, le=52, description="Latest buckets tested for a trend.")]
Baseline = Annotated[int, Query(ge=1, le=104, description="Buckets before the window that set the baseline.")]


@router.get(
    "/pain-points", summary="Pain points: topics with negative feedback at a touchpoint, trending first"
)
def get_pain_points(
    session: SessionDep,
    caller: ReaderDep,
    scope: CallerScopeDep,
    touchpoint: Annotated[list[str] | None, Query(description="Touchpoint id; repeat for several.")] = None,
    stage: Annotated[list[str] | None, Query(description="Journey stage; repeat for several.")] = None,
    topic: Annotated[list[int] | None, Query(description="Topic id; repeat for several.")] = None,
    interval: Interval_ = "week",
    window: Window = 1,
    baseline: Baseline = 6,
    trending: Annotated[
        bool | None, Query(description="Only trending (true) or not trending (false).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    impact_on: Annotated[
        Metric | None, Query(description="nps, csat, ces or stars: add each theme's key-driver figures.")
    ] = None,
) -> PainPointsOut:
    """Pain points by impact; the period ends at `until` (default now) and spans baseline + window buckets."""
    taxonomy = active_taxonomy(session)
    wanted = set(touchpoint or ())
    unknown = [t for t in wanted if taxonomy.get(t) is None]
    if unknown:
        raise ProblemError(
            422,
            f"The taxonomy in force has no touchpoint {unknown[0]!r}; see GET /v1/taxonomy.",
            slug="validation-error",
        )
    if stage:
        at_stage = {t.id for t in taxonomy.touchpoints if set(t.stages) & set(stage)}
        wanted = wanted & at_stage if wanted else at_stage
    report = pain_point_report(
        session,
        scope=scope,
        touchpoints=wanted if touchpoint or stage else None,
        topic_ids=topic or (),
        interval=interval,
        window=window,
        baseline=baseline,
        limit=limit if trending is None else 10_000,
    )
    points = [p for p in report.pain_points if trending is None or p.trending == trending][:limit]
    texts = (
        public_topic_labels(session, topic_ids={p.topic_id for p in points}, allowed=caller.locations)
        if caller.scoped
        else {}
    )
    period = Scope(
        since=report.since,
        until=report.until,
        locations=scope.locations,
        sources=scope.sources,
        languages=scope.languages,
    )
    impacts = (
        theme_impacts(session, scope=period, metric=impact_on, topic_ids={p.topic_id for p in points})
        if impact_on is not None
        else {}
    )
    out = []
    for p in points:
        meta = taxonomy.get(p.touchpoint)
        label, keywords = texts.get(p.topic_id, (p.label, p.keywords))
        out.append(
            PainPointOut(
                topic_id=p.topic_id,
                touchpoint=p.touchpoint,
                touchpoint_name=meta.name if meta else p.touchpoint,
                stages=list(meta.stages) if meta else [],
                label=label,
                keywords=keywords,
                negative=p.negative,
                sentences=p.sentences,
                negative_share=p.negative_share,
                average_sentiment=p.average_sentiment,
                impact=p.impact,
                trend=TrendTestOut(
                    current=p.current,
                    expected=p.expected,
                    growth=p.growth,
                    p_value=p.p_value,
                    trending=p.trending,
                ),
                trending=p.trending,
                emotions=p.emotions,
                first_seen=p.first_seen,
                last_seen=p.last_seen,
                locations=p.locations,
                sources=p.sources,
                languages=p.languages,
                quotes=[QuoteOut(**q.__dict__, feedback=f"/v1/feedback/{q.item_id}") for q in p.quotes],
                status=p.status,
                owner=p.owner,
                feedback_query=p.feedback_query,
                topic=f"/v1/topics/{p.topic_id}",
                rating_impact=impacts.get(p.topic_id),
            )
        )
    return PainPointsOut(
        since=report.since,
        until=report.until,
        interval=report.interval,
        window=report.window,
        baseline=report.baseline,
        tested=report.tested,
        pain_points=out,
    )


class TopicOut(BaseModel):
    id: int
    status: str = Field(description="active, merged (see merged_into) or dead.")
    label: str = Field(
        description="The theme's short name: generated by each refit from its phrases, or an admin's."
    )
    label_source: str = Field(description="generated, or admin (renamed; kept across refits).")
    keywords: list[str] = Field(
        description="Words and phrases about the problem (no place, brand or product names), strongest first."
    )
    keywords_by_language: dict[str, list[str]] = Field(
        description="The top keywords of each language with enough of the theme's sentences."
    )
    languages: dict[str, int] = Field(description="Sentences per language at the last refit.")
    merged_into: int | None
    sentences: int = Field(description="Sentences in scope.")
    items: int | None = Field(
        description="Feedback items in scope with a sentence about it (in GET /v1/topics/{id}; null in lists)."
    )
    negative: int = Field(description="Negative sentences in scope.")
    negative_share: float | None
    average_sentiment: float | None
    created_at: datetime
    updated_at: datetime
    feedback_query: str


class ModelOut(BaseModel):
    id: int
    status: str
    sentences: int
    fitted_on: int = Field(
        description="Sentences the clustering ran on (a seeded sample when there are many)."
    )
    topics: int
    outliers: int = Field(description="Sentences left in no topic after outlier reduction.")
    outliers_reduced: int = Field(description="Outliers that joined their nearest topic.")
    outlier_share: float | None
    config: dict[str, object]
    figures: dict[str, object]
    started_at: datetime
    finished_at: datetime | None
    error: str | None


class TopicsOut(BaseModel):
    model: ModelOut | None = Field(description="The refit in force; null before the first refit.")
    topics: list[TopicOut]


def _model_out(model: TopicModelRun) -> ModelOut:
    return ModelOut(
        id=model.id,
        status=model.status,
        sentences=model.sentences,
        fitted_on=model.fitted_on,
        topics=model.topics,
        outliers=model.outliers,
        outliers_reduced=model.outliers_reduced,
        outlier_share=model.outliers / model.sentences if model.sentences else None,
        config=model.config,
        figures=model.figures,
        started_at=model.started_at,
        finished_at=model.finished_at,
        error=model.error,
    )


def _topic_out(
    topic: Topic,
    stats: TopicStats | None,
    filters: list[tuple[str, str]],
    text: tuple[str, list[str]] | None = None,
) -> TopicOut:
    stats = stats or TopicStats()
    sentences, negative = stats.sentences, stats.negative
    label, keywords = text or (topic.label, topic.keywords)
    return TopicOut(
        id=topic.id,
        status=topic.status,
        label=label,
        label_source=topic.label_source,
        keywords=keywords,
        keywords_by_language=topic.keywords_by_language if text is None or keywords == topic.keywords else {},
        languages=topic.languages,
        merged_into=topic.merged_into,
        sentences=sentences,
        items=stats.items,
        negative=negative,
        negative_share=negative / sentences if sentences else None,
        average_sentiment=stats.average_sentiment,
        created_at=topic.created_at,
        updated_at=topic.updated_at,
        feedback_query="/v1/feedback?" + urlencode([("topic", str(topic.id)), *filters]),
    )


@router.get("/topics", summary="Topics, largest first")
def get_topics(
    session: SessionDep,
    caller: ReaderDep,
    scope: CallerScopeDep,
    status: Annotated[Literal["active", "merged", "dead", "all"], Query()] = "active",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> TopicsOut:
    """Every topic with its volume and sentiment in scope, and the refit in force."""
    query = select(Topic)
    if status != "all":
        query = query.where(Topic.status == status)
    topics = list(session.scalars(query))
    stats = topic_stats(session, scope=scope)
    filters = scope.query_params()
    ranked = sorted(
        topics, key=lambda t: (-(stats[t.id].sentences if t.id in stats else 0), -t.sentences, t.id)
    )
    ranked = ranked[:limit]
    texts = (
        public_topic_labels(session, topic_ids=[t.id for t in ranked], allowed=caller.locations)
        if caller.scoped
        else {}
    )
    model = current_model(session)
    return TopicsOut(
        model=_model_out(model) if model else None,
        topics=[_topic_out(t, stats.get(t.id), filters, texts.get(t.id)) for t in ranked],
    )


@router.get("/topic-models", summary="Topic refits, newest first, with their figures")
def get_topic_models(
    session: SessionDep, _caller: ReaderDep, limit: Annotated[int, Query(ge=1, le=200)] = 20
) -> list[ModelOut]:
    """Every refit: sentences, topics, outliers, time and memory, and its settings."""
    models = session.scalars(select(TopicModelRun).order_by(TopicModelRun.id.desc()).limit(limit))
    return [_model_out(m) for m in models]


class LineageOut(BaseModel):
    model_id: int
    at: datetime
    event: str = Field(description="born, continued, split, merged or died.")
    topic_id: int
    related_topic_id: int | None = Field(description="split: the parent; merged: the topic it merged into.")
    similarity: float | None = Field(description="Share of sentences shared, or centroid cosine.")


class BucketOut(BaseModel):
    start: datetime
    sentences: int
    negative: int


class TouchpointCountOut(BaseModel):
    touchpoint: str
    sentences: int
    negative: int


class TopicDetailOut(TopicOut):
    representative: str | None
    keyword_weights: dict[str, float]
    timeline: list[BucketOut]
    touchpoints: list[TouchpointCountOut]
    lineage: list[LineageOut]
    examples: list[QuoteOut] = Field(description="Its most typical negative sentences.")


@router.get("/topics/{topic_id}", summary="One topic: timeline, touchpoints, lineage and examples")
def get_topic(
    topic_id: int,
    session: SessionDep,
    caller: ReaderDep,
    scope: CallerScopeDep,
    interval: Annotated[Literal["hour", "day", "week"], Query()] = "week",
) -> TopicDetailOut:
    """A topic, also when it merged or died (its lineage says into what)."""
    topic = session.get(Topic, topic_id)
    if topic is None:
        raise ProblemError(404, f"No topic has id {topic_id}; see GET /v1/topics.")
    stats = topic_stats(session, scope=scope, topic_ids=[topic_id], items=True).get(topic_id)
    label, keywords, representative = public_topic_text(
        label=topic.label,
        keywords=list(topic.keywords),
        representative=topic.representative,
        known_locations=known_locations(session) if caller.scoped else (),
        allowed=caller.locations,
    )
    base = _topic_out(topic, stats, scope.query_params(), (label, keywords))
    report = pain_point_report(session, scope=scope, topic_ids=[topic_id], limit=1, quotes=5, now=scope.until)
    examples = report.pain_points[0].quotes if report.pain_points else []
    return TopicDetailOut(
        **base.model_dump(),
        representative=representative,
        keyword_weights={k: w for k, w in topic.keyword_weights.items() if k in keywords}
        if caller.scoped
        else topic.keyword_weights,
        timeline=[
            BucketOut(start=s, sentences=n, negative=neg)
            for s, n, neg in topic_timeline(session, topic_id=topic_id, scope=scope, interval=interval)
        ],
        touchpoints=[
            TouchpointCountOut(touchpoint=t, sentences=n, negative=neg)
            for t, (n, neg) in sorted(
                topic_touchpoints(session, topic_id=topic_id, scope=scope).items(), key=lambda kv: -kv[1][1]
            )
        ],
        lineage=[
            LineageOut(
                model_id=event.model_id,
                at=model.started_at,
                event=event.event,
                topic_id=event.topic_id,
                related_topic_id=event.related_topic_id,
                similarity=event.similarity,
            )
            for event, model in topic_lineage(session, topic_id=topic_id)
        ],
        examples=[QuoteOut(**q.__dict__, feedback=f"/v1/feedback/{q.item_id}") for q in examples],
    )


@router.get(
    "/topics/{topic_id}/locations", summary="Compare locations within a topic: find the outlier store"
)
def get_topic_locations(
    topic_id: int,
    session: SessionDep,
    caller: ReaderDep,
    since: Since = None,
    until: Until = None,
    source: Sources = None,
    language: Languages = None,
) -> LocationsOut:
    """Each location's negative share within the topic against the other locations', most negative first."""
    if session.get(Topic, topic_id) is None:
        raise ProblemError(404, f"No topic has id {topic_id}; see GET /v1/topics.")
    scope = _scope(since, until, None, source, language)
    rows = visible_location_rows(
        topic_location_comparison(session, topic_id=topic_id, scope=scope), allowed=caller.locations
    )
    return LocationsOut(touchpoint=f"topic:{topic_id}", locations=[LocationOut(**row) for row in rows])
