"""Key drivers: how much each theme or touchpoint moves NPS, CSAT, CES or stars.

A response is one feedback item rated on the metric's scale, in scope. It mentions a theme when any of its
sentences is in that (active) topic, and a touchpoint when the item is about it (``item_touchpoints``: a
touchpoint its text names, or its source's default), each item counted once. Every response gets a score
(NPS: +100 promoter 9-10, 0 passive, -100 detractor 0-6; CSAT: 100 for 4-5, else 0; CES 1-7 and stars
1-5: the rating), so each metric is the mean score of its responses, as ``service.analytics`` computes it.

For each driver: the score of the responses that mention it against those that do not, the difference
(with - without), and its confidence interval by the normal approximation with Welch's standard error,
``difference +- z * sqrt(s_with^2 / n_with + s_without^2 / n_without)``, ``s^2`` the sample variance of the
scores (for NPS that is ``(p_promoter + p_detractor - nps^2) * n / (n - 1)`` in points). It is ``significant``
when the interval excludes 0 (no correction for the many drivers compared). ``impact`` is the points the
overall score would gain if the mentioning responses scored like the rest, ``share_with * (score_without -
score_with)``, with the sign turned where lower is better, so a positive impact always drags the score down.

Everything is summed in the database: the overall responses, score sum and sum of squares in one query,
and the same per theme or touchpoint in another; "without" is the overall minus "with".
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Literal

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from scrapers.contract import RatingScale
from service.db.models import FeedbackItem, ItemTouchpoint, SentenceTopic, Topic
from service.feedback import Scope
from service.touchpoints import active_taxonomy

Metric = Literal["nps", "csat", "ces", "stars"]
By = Literal["theme", "touchpoint"]
METRIC_NAMES: tuple[Metric, ...] = ("nps", "csat", "ces", "stars")
CONFIDENCE = 0.95
MIN_RESPONSES = 10


@dataclass(frozen=True)
class MetricDefinition:
    """A rating metric: its scale, what it means and which way is better."""

    name: Metric
    scale: RatingScale
    description: str
    # CES here is agreement with "it was easy" (1-7, higher is easier), as the dashboard and
    # GET /v1/touchpoints read it; flip this to make a lower CES the better one.
    higher_is_better: bool = True


METRICS: dict[str, MetricDefinition] = {
    "nps": MetricDefinition(
        "nps",
        RatingScale.NPS,
        "Net Promoter Score: % promoters (9-10) minus % detractors (0-6), -100 to 100.",
    ),
    "csat": MetricDefinition(
        "csat", RatingScale.CSAT, "CSAT: % of answers that are 4 or 5 (of 1-5), 0 to 100."
    ),
    "ces": MetricDefinition("ces", RatingScale.CES, "Customer effort score: mean of 1-7, higher is easier."),
    "stars": MetricDefinition("stars", RatingScale.STARS, "Mean star rating, 1 to 5."),
}


def response_score(metric: MetricDefinition) -> Any:
    """The SQL score of one response, whose mean over responses is the metric."""
    value = FeedbackItem.rating_value
    if metric.name == "nps":
        return case((value >= 9, 100), (value <= 6, -100), else_=0)
    if metric.name == "csat":
        return case((value >= 4, 100), else_=0)
    return value


@dataclass(frozen=True)
class Moments:
    """Responses, the sum of their scores and the sum of the squared scores."""

    n: int = 0
    total: float = 0.0
    squares: float = 0.0

    def __sub__(self, other: Moments) -> Moments:
        return Moments(self.n - other.n, self.total - other.total, self.squares - other.squares)

    @property
    def mean(self) -> float | None:
        """The metric over these responses."""
        return self.total / self.n if self.n else None

    @property
    def variance(self) -> float | None:
        """The sample variance of the scores (n - 1 in the denominator)."""
        if self.n < 2:
            return None
        return max(self.squares - self.total * self.total / self.n, 0.0) / (self.n - 1)


@dataclass
class Driver:
    """A theme's or touchpoint's responses against the rest, and how much it moves the score."""

    kind: Literal["theme", "touchpoint"]
    id: str
    label: str
    responses_with: int
    responses_without: int
    score_with: float
    score_without: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    significant: bool
    share_with: float
    impact: float | None
    topic_id: int | None = None
    touchpoint: str | None = None


@dataclass
class DriverReport:
    """The drivers of one metric in scope, the most harmful first, with the overall score."""

    metric: MetricDefinition
    by: By
    responses: int
    score: float | None
    min_responses: int
    confidence: float
    drivers: list[Driver] = field(default_factory=list)


def compare(
    mentioning: Moments, overall: Moments, *, higher_is_better: bool = True, confidence: float = CONFIDENCE
) -> dict[str, Any]:
    """The figures of responses that mention a driver against the rest (see the module's docstring)."""
    rest = overall - mentioning
    score_with, score_without = mentioning.mean, rest.mean
    assert score_with is not None
    share = mentioning.n / overall.n
    figures: dict[str, Any] = {
        "responses_with": mentioning.n,
        "responses_without": rest.n,
        "score_with": score_with,
        "score_without": score_without,
        "share_with": share,
        "difference": None,
        "ci_low": None,
        "ci_high": None,
        "p_value": None,
        "significant": False,
        "impact": None,
    }
    if score_without is None:
        return figures
    difference = score_with - score_without
    figures["difference"] = difference
    figures["impact"] = share * -difference if higher_is_better else share * difference
    var_with, var_without = mentioning.variance, rest.variance
    if var_with is None or var_without is None:
        return figures
    error = math.sqrt(var_with / mentioning.n + var_without / rest.n)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    figures["ci_low"], figures["ci_high"] = difference - z * error, difference + z * error
    if error > 0:
        figures["p_value"] = 2 * (1 - NormalDist().cdf(abs(difference) / error))
    else:
        figures["p_value"] = 0.0 if difference else 1.0
    figures["significant"] = figures["ci_low"] > 0 or figures["ci_high"] < 0
    return figures


def _moments(row: Any) -> Moments:
    return Moments(int(row[0] or 0), float(row[1] or 0.0), float(row[2] or 0.0))


def key_drivers(
    session: Session,
    *,
    scope: Scope,
    metric: Metric,
    by: By = "theme",
    min_responses: int = MIN_RESPONSES,
    topic_ids: Collection[int] | None = None,
    touchpoints: Collection[str] | None = None,
    confidence: float = CONFIDENCE,
) -> DriverReport:
    """Every theme (or touchpoint) with ``min_responses`` rated responses in scope, the largest drag first."""
    definition = METRICS[metric]
    score = response_score(definition)
    rated: list[ColumnElement[bool]] = [
        FeedbackItem.rating_scale == definition.scale.value,
        FeedbackItem.rating_value.is_not(None),
        *scope.conditions(),
    ]
    overall = _moments(
        session.execute(
            select(func.count(), func.sum(score), func.sum(score * score))
            .select_from(FeedbackItem)
            .where(*rated)
        ).one()
    )
    report = DriverReport(
        metric=definition,
        by=by,
        responses=overall.n,
        score=overall.mean,
        min_responses=min_responses,
        confidence=confidence,
    )
    if overall.n == 0:
        return report

    if by == "theme":
        active = select(Topic.id).where(Topic.status == "active")
        if topic_ids is not None:
            active = active.where(Topic.id.in_(sorted(set(topic_ids))))
        # one row per (topic, rated item) however many of its sentences are in the topic
        pairs = (
            select(SentenceTopic.topic_id.label("key"), FeedbackItem.id, score.label("score"))
            .join(FeedbackItem, FeedbackItem.id == SentenceTopic.item_id)
            .where(*rated, SentenceTopic.topic_id.in_(active))
        )
        # the sentence's copy of the item's time narrows the topic rows before the join
        if scope.since is not None:
            pairs = pairs.where(SentenceTopic.created_at >= scope.since)
        if scope.until is not None:
            pairs = pairs.where(SentenceTopic.created_at < scope.until)
        per_item = pairs.distinct().subquery()
        query = select(
            per_item.c.key,
            func.count(),
            func.sum(per_item.c.score),
            func.sum(per_item.c.score * per_item.c.score),
        ).group_by(per_item.c.key)
    else:
        query = (
            select(ItemTouchpoint.touchpoint, func.count(), func.sum(score), func.sum(score * score))
            .join(FeedbackItem, FeedbackItem.id == ItemTouchpoint.item_id)
            .where(*rated)
            .group_by(ItemTouchpoint.touchpoint)
        )
        if touchpoints is not None:
            query = query.where(ItemTouchpoint.touchpoint.in_(sorted(set(touchpoints))))
    groups = {
        row[0]: moments for row in session.execute(query) if (moments := _moments(row[1:])).n >= min_responses
    }
    labels = _labels(session, by=by, keys=groups)
    for key, moments in groups.items():
        figures = compare(
            moments, overall, higher_is_better=definition.higher_is_better, confidence=confidence
        )
        report.drivers.append(
            Driver(
                kind=by,
                id=str(key),
                label=labels.get(key, str(key)),
                topic_id=key if by == "theme" else None,
                touchpoint=key if by == "touchpoint" else None,
                **figures,
            )
        )
    report.drivers.sort(
        key=lambda d: (-(d.impact if d.impact is not None else -math.inf), -d.responses_with, d.id)
    )
    return report


def _labels(session: Session, *, by: By, keys: Collection[Any]) -> dict[Any, str]:
    """Each theme's label, or each touchpoint's name in the taxonomy in force."""
    if not keys:
        return {}
    if by == "theme":
        return dict(session.execute(select(Topic.id, Topic.label).where(Topic.id.in_(sorted(keys)))).all())
    taxonomy = active_taxonomy(session)
    return {key: touchpoint.name for key in keys if (touchpoint := taxonomy.get(key)) is not None}
