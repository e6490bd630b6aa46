"""Every touchpoint's location comparison in one query: the touchpoint × location matrix of negative share.

The numbers are those of ``service.analytics.location_comparison`` (the same sentences, the same test in
``compare_locations``), computed for all touchpoints at once instead of one query per touchpoint.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from service.analytics import NEGATIVE_AT_TOUCHPOINT, compare_locations
from service.db.models import FeedbackItem, FeedbackSentence, SentenceTouchpoint
from service.feedback import Scope

_NEGATIVE = func.sum(case((FeedbackSentence.sentiment_label == "negative", 1), else_=0))


def touchpoint_location_matrix(
    session: Session, *, scope: Scope, touchpoints: Collection[str] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Each touchpoint's ``location_comparison`` rows (every location against all the others), in one query."""
    query = (
        select(SentenceTouchpoint.touchpoint, FeedbackItem.location, func.count(), NEGATIVE_AT_TOUCHPOINT)
        .select_from(SentenceTouchpoint)
        .join(FeedbackSentence, FeedbackSentence.id == SentenceTouchpoint.sentence_id)
        .join(FeedbackItem, FeedbackItem.id == SentenceTouchpoint.item_id)
        .where(FeedbackItem.location.is_not(None), *scope.conditions())
        .group_by(SentenceTouchpoint.touchpoint, FeedbackItem.location)
    )
    if touchpoints is not None:
        query = query.where(SentenceTouchpoint.touchpoint.in_(sorted(touchpoints)))
    per_touchpoint: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    for touchpoint, location, total, negative in session.execute(query):
        per_touchpoint[touchpoint].append((location, total, negative))
    return {touchpoint: compare_locations(rows) for touchpoint, rows in sorted(per_touchpoint.items())}


def location_negative_shares(
    session: Session, *, scope: Scope, touchpoints: Collection[str] | None = None
) -> list[dict[str, Any]]:
    """Each location's negative share of its sentences about any (or the given) touchpoints, against the rest."""
    # a sentence about two touchpoints counts once here, unlike in the per-touchpoint matrix
    about = select(SentenceTouchpoint.sentence_id).distinct()
    if touchpoints is not None:
        about = about.where(SentenceTouchpoint.touchpoint.in_(sorted(touchpoints)))
    rows = session.execute(
        select(FeedbackItem.location, func.count(), _NEGATIVE)
        .select_from(FeedbackSentence)
        .join(FeedbackItem, FeedbackItem.id == FeedbackSentence.item_id)
        .where(
            FeedbackSentence.id.in_(about.scalar_subquery()),
            FeedbackItem.location.is_not(None),
            *scope.conditions(),
        )
        .group_by(FeedbackItem.location)
    ).all()
    return compare_locations(rows)
