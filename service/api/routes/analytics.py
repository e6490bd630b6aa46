"""Experience metrics per touchpoint and trends over time."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from service.access import public_topic_labels, visible_location_rows
from service.analytics import GroupBy, Interval, location_comparison, touchpoint_metrics, trends
from service.api.deps import ReaderDep, SessionDep, caller_scope
from service.api.problems import ProblemError, require_utc_offsets
from service.feedback import Scope
from service.painpoints import pain_point_report
from service.touchpoints import active_taxonomy, taxonomy_key

router = APIRouter(prefix="/v1", tags=["analytics"])


class RatingMetricOut(BaseModel):
    value: float | None = Field(description="Null when no rating of this scale is in scope.")
    responses: int = Field(description="How many ratings the value rests on.")


class TopPainPointOut(BaseModel):
    topic_id: int
    label: str
    negative: int = Field(description="Negative sentences of the topic at this touchpoint.")
    trending: bool
    growth: float | None
    feedback_query: str


class TouchpointOut(BaseModel):
    touchpoint: str
    name: str
    stages: list[str]
    items: int = Field(description="Feedback items about this touchpoint.")
    sentences: int
    negative_sentences: int
    negative_share: float | None
    average_sentiment: float | None = Field(description="Mean sentence sentiment score, -1 to 1.")
    nps: RatingMetricOut = Field(description="% promoters (9-10) minus % detractors (0-6), -100 to 100.")
    csat: RatingMetricOut = Field(description="% of CSAT answers that are 4 or 5.")
    ces: RatingMetricOut = Field(description="Mean customer effort score, 1-7 (higher is easier).")
    stars: RatingMetricOut = Field(description="Mean star rating, 1-5.")
    feedback_query: str = Field(
        description="The GET /v1/feedback call that lists the items behind these figures."
    )
    top_pain_points: list[TopPainPointOut] = Field(
        default_factory=list,
        description="Its 3 pain points with the most impact in scope (default: the last 7 weeks); see GET /v1/pain-points.",
    )


class TouchpointsOut(BaseModel):
    taxonomy: str
    touchpoints: list[TouchpointOut]


class LocationOut(BaseModel):
    location: str
    total: int = Field(description="Sentences about the touchpoint at this location.")
    negative: int
    share: float = Field(description="negative / total.")
    shrunk_share: float = Field(
        description="The share shrunk towards the other locations' (worth 10 sentences)."
    )
    others_share: float = Field(description="The negative share at every other location together.")
    p_value: float = Field(description="One-sided exact binomial test against the others' share.")
    outlier: bool = Field(description="p below 0.01 / number of locations and shrunk share 15 points above.")


class LocationsOut(BaseModel):
    touchpoint: str
    locations: list[LocationOut]


class BucketOut(BaseModel):
    start: datetime
    items: int
    negative: int = Field(description="Items whose sentiment is negative or mixed.")
    average_sentiment: float | None


class TrendOut(BaseModel):
    bucket: datetime = Field(description="The first bucket of the window under test (the latest buckets).")
    window: int = Field(description="How many buckets the window under test spans.")
    baseline_buckets: int
    current: int = Field(description="Negative items in the window.")
    expected: float = Field(description="Its own baseline rate, shrunk towards the typical group's rate.")
    growth: float | None = Field(description="current / expected.")
    p_value: float = Field(description="One-sided Poisson test, P(X >= current).")
    trending: bool = Field(description="p below 0.01 / number of series, at least 5 negatives, growth 1.5x.")


class SeriesOut(BaseModel):
    key: str | None
    total: int
    buckets: list[BucketOut]
    trend: TrendOut | None = Field(
        default=None, description="Is the latest bucket beyond what history explains?"
    )


class TrendsOut(BaseModel):
    group_by: str
    interval: str
    series: list[SeriesOut]


def _scope(
    since: datetime | None,
    until: datetime | None,
    location: list[str] | None,
    source: list[str] | None,
    language: list[str] | None,
) -> Scope:
    require_utc_offsets(since=since, until=until)
    return Scope(
        since=since,
        until=until,
        locations=tuple(location or ()),
        sources=tuple(source or ()),
        languages=tuple(language or ()),
    )


Since = Annotated[datetime | None, Query(description="Created at or after (ISO 8601 with offset).")]
Until = Annotated[datetime | None, Query(description="Created before (ISO 8601 with offset).")]
Locations = Annotated[list[str] | None, Query(description="Location; repeat for several.")]
Sources = Annotated[list[str] | None, Query(description="Source name; repeat for several.")]
Languages = Annotated[list[str] | None, Query(description="ISO 639-1 code; repeat for several.")]


def scope_from_query(
    since: Since = None,
    until: Until = None,
    location: Locations = None,
    source: Sources = None,
    language: Languages = None,
) -> Scope:
    """The feedback an aggregate covers, from the query string (offsets required on times)."""
    return _scope(since, until, location, source, language)


ScopeDep = Annotated[Scope, Depends(scope_from_query)]


def caller_scope_from_query(caller: ReaderDep, scope: ScopeDep) -> Scope:
    """The query's scope limited to the caller's locations (403 when it names a location outside them)."""
    return caller_scope(caller, scope)


CallerScopeDep = Annotated[Scope, Depends(caller_scope_from_query)]


@router.get("/touchpoints", summary="Volume, sentiment and NPS/CSAT/CES per touchpoint")
def get_touchpoints(
    session: SessionDep,
    caller: ReaderDep,
    scope: CallerScopeDep,
) -> TouchpointsOut:
    """Every touchpoint of the taxonomy in force, the most negative first."""
    taxonomy = active_taxonomy(session)
    metrics = touchpoint_metrics(session, scope=scope)
    top: dict[str, list[TopPainPointOut]] = {}
    points = pain_point_report(session, scope=scope, limit=200, quotes=0).pain_points
    labels = (
        public_topic_labels(session, topic_ids={p.topic_id for p in points}, allowed=caller.locations)
        if caller.scoped
        else {}
    )
    for point in points:
        listed = top.setdefault(point.touchpoint, [])
        if len(listed) < 3:
            listed.append(
                TopPainPointOut(
                    topic_id=point.topic_id,
                    label=labels[point.topic_id][0] if point.topic_id in labels else point.label,
                    negative=point.negative,
                    trending=point.trending,
                    growth=point.growth,
                    feedback_query=point.feedback_query,
                )
            )
    filters = scope.query_params()
    result = []
    for touchpoint in taxonomy.touchpoints:
        m = metrics.get(touchpoint.id)
        result.append(
            TouchpointOut(
                touchpoint=touchpoint.id,
                name=touchpoint.name,
                stages=list(touchpoint.stages),
                items=m.items if m else 0,
                sentences=m.sentences if m else 0,
                negative_sentences=m.negative_sentences if m else 0,
                negative_share=m.negative_share if m else None,
                average_sentiment=m.average_sentiment if m else None,
                nps=RatingMetricOut(value=m.nps.value if m else None, responses=m.nps.responses if m else 0),
                csat=RatingMetricOut(
                    value=m.csat.value if m else None, responses=m.csat.responses if m else 0
                ),
                ces=RatingMetricOut(value=m.ces.value if m else None, responses=m.ces.responses if m else 0),
                stars=RatingMetricOut(
                    value=m.stars.value if m else None, responses=m.stars.responses if m else 0
                ),
                feedback_query="/v1/feedback?" + urlencode([("touchpoint", touchpoint.id), *filters]),
                top_pain_points=top.get(touchpoint.id, []),
            )
        )
    result.sort(key=lambda t: (-t.negative_sentences, -t.items, t.touchpoint))
    return TouchpointsOut(taxonomy=taxonomy_key(taxonomy), touchpoints=result)


@router.get(
    "/trends",
    summary="Feedback volume over time, by touchpoint, topic, location, source, language or sentiment",
)
def get_trends(
    session: SessionDep,
    _caller: ReaderDep,
    scope: CallerScopeDep,
    group_by: Annotated[GroupBy, Query()] = "touchpoint",
    interval: Annotated[Interval, Query()] = "week",
    limit_groups: Annotated[int, Query(ge=1, le=200)] = 20,
    window: Annotated[int, Query(ge=1, le=52, description="Latest buckets tested for a trend.")] = 1,
    baseline: Annotated[
        int, Query(ge=1, le=104, description="Buckets before the window that set the baseline.")
    ] = 6,
) -> TrendsOut:
    """Items per time bucket (the customer's own time, UTC buckets; weeks start on Monday) for the largest groups."""
    series = trends(
        session,
        scope=scope,
        group_by=group_by,
        interval=interval,
        limit_groups=limit_groups,
        baseline_buckets=baseline,
        window=window,
    )
    return TrendsOut(
        group_by=group_by,
        interval=interval,
        series=[
            SeriesOut(
                key=None if s["key"] is None else str(s["key"]),
                total=s["total"],
                buckets=[BucketOut(**b) for b in s["buckets"]],
                trend=TrendOut(**s["trend"]) if "trend" in s else None,
            )
            for s in series
        ],
    )


@router.get(
    "/touchpoints/{touchpoint}/locations",
    summary="Compare locations at one touchpoint: find the outlier store",
)
def get_touchpoint_locations(
    touchpoint: str,
    session: SessionDep,
    caller: ReaderDep,
    since: Since = None,
    until: Until = None,
    source: Sources = None,
    language: Languages = None,
) -> LocationsOut:
    """Each location's negative share at this touchpoint against the other locations', most negative first."""
    # A key limited to some locations gets only its own rows (still compared with every other store).
    if active_taxonomy(session).get(touchpoint) is None:
        raise ProblemError(
            404, f"The taxonomy in force has no touchpoint {touchpoint!r}; see GET /v1/taxonomy."
        )
    scope = _scope(since, until, None, source, language)
    rows = visible_location_rows(
        location_comparison(session, touchpoint=touchpoint, scope=scope), allowed=caller.locations
    )
    return LocationsOut(touchpoint=touchpoint, locations=[LocationOut(**row) for row in rows])
