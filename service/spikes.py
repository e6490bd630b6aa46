"""Pain points trending at one store: a location's negatives of a theme against its own history.

A chain-wide pain point can hide a spike at one store (ten extra complaints in Riyadh vanish among the
chain's hundreds), so each (topic, touchpoint, location) is tested on its own with the same shrunk Poisson
test as pain points (``service.trending``), Bonferroni over every combination tested.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from service.db.models import PainPointFact
from service.feedback import Scope
from service.painpoints import STEP, Interval, _in_scope
from service.trending import assess_trend


@dataclass
class LocationSpike:
    """A theme's negatives at one touchpoint and store in the window, against what its history predicts."""

    topic_id: int
    touchpoint: str
    location: str
    current: int
    expected: float
    growth: float | None
    p_value: float
    trending: bool

    @property
    def pain_point(self) -> str:
        """The ``topic:touchpoint`` key the feedback explorer filters by."""
        return f"{self.topic_id}:{self.touchpoint}"


def location_spikes(
    session: Session,
    *,
    scope: Scope,
    touchpoints: Collection[str] | None = None,
    interval: Interval = "week",
    window: int = 2,
    baseline: int = 6,
    now: datetime | None = None,
    limit: int = 10,
) -> list[LocationSpike]:
    """The trending (topic, touchpoint, location) combinations ending at ``scope.until``, most significant first."""
    until = scope.until or now or datetime.now(UTC)
    step = STEP[interval]
    buckets = baseline + window
    bounds = [until - step * index for index in range(buckets + 1)]
    created = PainPointFact.created_at
    query = select(
        PainPointFact.topic_id,
        PainPointFact.touchpoint,
        PainPointFact.location,
        *(
            func.sum(case(((created >= bounds[i + 1]) & (created < bounds[i]), 1), else_=0)).label(f"b{i}")
            for i in range(buckets)
        ),
    ).where(PainPointFact.negative, PainPointFact.location.is_not(None))
    query = _in_scope(query, scope, since=bounds[-1], until=until)
    if touchpoints is not None:
        query = query.where(PainPointFact.touchpoint.in_(touchpoints))
    rows = session.execute(
        query.group_by(PainPointFact.topic_id, PainPointFact.touchpoint, PainPointFact.location)
    ).all()
    counts = {(r[0], r[1], r[2]): [int(n or 0) for n in r[3:]] for r in rows}
    if not counts:
        return []
    prior_rate = sum(sum(c[window:]) for c in counts.values()) / (len(counts) * baseline)
    spikes = []
    for (topic_id, touchpoint, location), series in counts.items():
        test = assess_trend(
            current=sum(series[:window]),
            history=series[window:],
            prior_rate=prior_rate,
            window=window,
            comparisons=len(counts),
        )
        if test.trending:
            spikes.append(
                LocationSpike(
                    topic_id=topic_id,
                    touchpoint=touchpoint,
                    location=location,
                    current=test.current,
                    expected=test.expected,
                    growth=test.growth,
                    p_value=test.p_value,
                    trending=True,
                )
            )
    spikes.sort(key=lambda s: (s.p_value, -s.current, s.topic_id, s.touchpoint, s.location))
    return spikes[:limit]
