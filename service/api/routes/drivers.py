"""Key drivers: which themes and touchpoints move NPS, CSAT, CES and stars (see ``service.drivers``)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from service.access import public_topic_labels
from service.api.deps import ReaderDep, SessionDep
from service.api.routes.analytics import CallerScopeDep
from service.drivers import MIN_RESPONSES, By, Driver, Metric, key_drivers
from service.feedback import Scope

router = APIRouter(prefix="/v1", tags=["analytics"])

METHOD = (
    "difference +- z * sqrt(s_with^2/n_with + s_without^2/n_without): normal approximation with Welch's "
    "standard error over per-response scores (NPS +100/0/-100, CSAT 100/0, CES and stars the rating)"
)


class DriverFiguresOut(BaseModel):
    responses_with: int = Field(description="Rated responses (items) in scope that mention it.")
    responses_without: int = Field(description="Rated responses in scope that do not.")
    score_with: float = Field(description="The metric over the responses that mention it.")
    score_without: float | None = Field(description="The metric over the rest; null when there is none.")
    difference: float | None = Field(description="score_with - score_without.")
    ci_low: float | None = Field(description="Lower bound of the 95% confidence interval of the difference.")
    ci_high: float | None = Field(description="Upper bound of the 95% confidence interval of the difference.")
    p_value: float | None = Field(description="Two-sided p-value of the difference (normal approximation).")
    significant: bool = Field(
        description="The confidence interval excludes 0 (no multiple-comparison correction)."
    )
    share_with: float = Field(description="responses_with / all rated responses in scope.")
    impact: float | None = Field(
        description="Points the overall score would gain if the mentioning responses scored like the rest: "
        "share_with * (score_without - score_with), sign turned where lower is better; positive drags it down."
    )
    feedback_query: str = Field(description="The GET /v1/feedback call that lists the responses_with.")


class DriverOut(DriverFiguresOut):
    id: str = Field(description="The topic id (theme) or touchpoint id.")
    kind: str = Field(description="theme or touchpoint.")
    label: str = Field(description="The theme's label or the touchpoint's name.")


class DriversOut(BaseModel):
    metric: str
    description: str = Field(description="What the metric is.")
    direction: str = Field(description="higher_is_better or lower_is_better.")
    by: str = Field(description="theme or touchpoint.")
    responses: int = Field(description="Rated responses of the metric's scale in scope.")
    score: float | None = Field(description="The metric over every rated response in scope.")
    min_responses: int = Field(description="Drivers need at least this many rated responses mentioning them.")
    confidence: float
    method: str = Field(description="How the confidence interval is computed.")
    feedback_query: str = Field(description="The GET /v1/feedback call that lists every rated response.")
    drivers: list[DriverOut] = Field(description="The largest impact (drag on the score) first.")


def driver_feedback_query(driver: Driver, *, scale: str, scope: Scope) -> str:
    """The GET /v1/feedback call that lists a driver's rated responses in scope."""
    key = ("topic", str(driver.topic_id)) if driver.kind == "theme" else ("touchpoint", driver.id)
    return "/v1/feedback?" + urlencode([key, ("rating_scale", scale), *scope.query_params()])


def driver_figures(driver: Driver, *, scale: str, scope: Scope) -> DriverFiguresOut:
    """A driver's figures and the GET /v1/feedback call behind them."""
    return DriverFiguresOut(
        responses_with=driver.responses_with,
        responses_without=driver.responses_without,
        score_with=driver.score_with,
        score_without=driver.score_without,
        difference=driver.difference,
        ci_low=driver.ci_low,
        ci_high=driver.ci_high,
        p_value=driver.p_value,
        significant=driver.significant,
        share_with=driver.share_with,
        impact=driver.impact,
        feedback_query=driver_feedback_query(driver, scale=scale, scope=scope),
    )


@router.get("/drivers", summary="Key drivers: the themes or touchpoints that move NPS, CSAT, CES or stars")
def get_drivers(
    session: SessionDep,
    caller: ReaderDep,
    scope: CallerScopeDep,
    metric: Annotated[Metric, Query(description="nps, csat, ces or stars.")] = "nps",
    by: Annotated[By, Query(description="theme (active topics) or touchpoint.")] = "theme",
    min_responses: Annotated[
        int, Query(ge=2, le=1_000_000, description="Rated responses a driver needs to be listed.")
    ] = MIN_RESPONSES,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DriversOut:
    """Each driver's score with and without it, the difference with its 95% interval, and its impact."""
    report = key_drivers(session, scope=scope, metric=metric, by=by, min_responses=min_responses)
    drivers = report.drivers[:limit]
    labels = (
        public_topic_labels(
            session,
            topic_ids={d.topic_id for d in drivers if d.topic_id is not None},
            allowed=caller.locations,
        )
        if caller.scoped and by == "theme"
        else {}
    )
    scale = report.metric.scale.value
    return DriversOut(
        metric=metric,
        description=report.metric.description,
        direction="higher_is_better" if report.metric.higher_is_better else "lower_is_better",
        by=by,
        responses=report.responses,
        score=report.score,
        min_responses=min_responses,
        confidence=report.confidence,
        method=METHOD,
        feedback_query="/v1/feedback?" + urlencode([("rating_scale", scale), *scope.query_params()]),
        drivers=[
            DriverOut(
                id=d.id,
                kind=d.kind,
                label=labels[d.topic_id][0] if d.topic_id in labels else d.label,
                **driver_figures(d, scale=scale, scope=scope).model_dump(),
            )
            for d in drivers
        ],
    )


def theme_impacts(
    session: Session, *, scope: Scope, metric: Metric, topic_ids: set[int]
) -> dict[int, DriverFiguresOut]:
    """The driver figures of each of these themes (one query for all; absent: too few rated responses)."""
    if not topic_ids:
        return {}
    report = key_drivers(session, scope=scope, metric=metric, by="theme", topic_ids=topic_ids)
    scale = report.metric.scale.value
    return {
        d.topic_id: driver_figures(d, scale=scale, scope=scope)
        for d in report.drivers
        if d.topic_id is not None
    }
