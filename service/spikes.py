"""Touchpoints trending at one store: a store's negative sentences at a touchpoint against its own history.

A chain-wide pain point can hide a spike at one store (ten extra complaints in Riyadh vanish among the
chain's hundreds), so each (touchpoint, location) is tested on its own with the same shrunk Poisson test as
pain points (``service.trending``), Bonferroni over every combination tested. The test does not depend on
how the spike's sentences were clustered (a handful of complaints may land in several topics); each spike
names the themes its negatives belong to, largest first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from service.db.models import PainPointFact
from service.feedback import Scope
from service.painpoints import STEP, Interval, _in_scope
from service.trending import assess_trend


@dataclass
class LocationSpike:
    """A store's negatives at one touchpoint in the window, against what its history predicts."""

    touchpoint: str
    location: str
    current: int
    expected: float
    growth: float | None
    p_value: float
    topics: list[tuple[int, int]] = field(default_factory=list)
    """(topic id, negatives in the window) of the themes behind the spike, largest first."""


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
    """The trending (touchpoint, location) combinations ending at ``scope.until``, most significant first."""
    until = scope.until or now or datetime.now(UTC)
    bounds = [until - STEP[interval] * index for index in range(baseline + window + 1)]
    per_topic = _negatives_per_bucket(session, scope=scope, touchpoints=touchpoints, bounds=bounds)
    if not per_topic:
        return []
    counts = {
        key: [sum(column) for column in zip(*topics.values(), strict=True)]
        for key, topics in per_topic.items()
    }
    prior_rate = sum(sum(c[window:]) for c in counts.values()) / (len(counts) * baseline)
    spikes = []
    for (touchpoint, location), series in counts.items():
        test = assess_trend(
            current=sum(series[:window]),
            history=series[window:],
            prior_rate=prior_rate,
            window=window,
            comparisons=len(counts),
        )
        if not test.trending:
            continue
        themes = [(topic, sum(s[:window])) for topic, s in per_topic[(touchpoint, location)].items()]
        spikes.append(
            LocationSpike(
                touchpoint=touchpoint,
                location=location,
                current=test.current,
                expected=test.expected,
                growth=test.growth,
                p_value=test.p_value,
                topics=sorted((t for t in themes if t[1] > 0), key=lambda t: (-t[1], t[0])),
            )
        )
    spikes.sort(key=lambda s: (s.p_value, -s.current, s.touchpoint, s.location))
    return spikes[:limit]


def _negatives_per_bucket(
    session: Session, *, scope: Scope, touchpoints: Collection[str] | None, bounds: list[datetime]
) -> dict[tuple[str, str], dict[int, list[int]]]:
    """Negative sentences per (touchpoint, location), topic and bucket ([bounds[i+1], bounds[i]), newest first)."""
    created = PainPointFact.created_at
    query = select(
        PainPointFact.topic_id,
        PainPointFact.touchpoint,
        PainPointFact.location,
        *(
            func.sum(case(((created >= bounds[i + 1]) & (created < bounds[i]), 1), else_=0)).label(f"b{i}")
            for i in range(len(bounds) - 1)
        ),
    ).where(PainPointFact.negative, PainPointFact.location.is_not(None))
    query = _in_scope(query, scope, since=bounds[-1], until=bounds[0])
    if touchpoints is not None:
        query = query.where(PainPointFact.touchpoint.in_(touchpoints))
    rows = session.execute(
        query.group_by(PainPointFact.topic_id, PainPointFact.touchpoint, PainPointFact.location)
    ).all()
    per_topic: dict[tuple[str, str], dict[int, list[int]]] = defaultdict(dict)
    for row in rows:
        per_topic[(row[1], row[2])][row[0]] = [int(n or 0) for n in row[3:]]
    return per_topic
