"""Reading stored feedback: filters and keyset (cursor) pagination."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from nlp.datasets import CX_EMOTION_ROLLUP, GOEMOTIONS_LABELS
from service.db.models import (
    FeedbackEmotion,
    FeedbackItem,
    FeedbackSentence,
    ItemTouchpoint,
    PainPointFact,
    SentenceTopic,
    Source,
)


class InvalidCursorError(ValueError):
    """The cursor was not produced by this API (or was altered)."""


@dataclass(frozen=True)
class Scope:
    """Which feedback an aggregate covers (by the customer's own time)."""

    since: datetime | None = None
    until: datetime | None = None
    locations: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()

    def query_params(self) -> list[tuple[str, str]]:
        """The GET /v1/feedback query parameters that select the same feedback."""
        params = [
            (k, v.isoformat()) for k, v in (("since", self.since), ("until", self.until)) if v is not None
        ]
        params += [("location", v) for v in self.locations] + [("source", v) for v in self.sources]
        return params + [("language", v) for v in self.languages]

    def conditions(self) -> list[ColumnElement[bool]]:
        """SQL conditions on FeedbackItem for this scope."""
        conditions: list[ColumnElement[bool]] = []
        if self.since is not None:
            conditions.append(FeedbackItem.created_at >= self.since)
        if self.until is not None:
            conditions.append(FeedbackItem.created_at < self.until)
        if self.locations:
            conditions.append(FeedbackItem.location.in_(self.locations))
        if self.sources:
            conditions.append(
                FeedbackItem.source_id.in_(select(Source.id).where(Source.name.in_(self.sources)))
            )
        if self.languages:
            conditions.append(FeedbackItem.language.in_(self.languages))
        return conditions


@dataclass(frozen=True)
class FeedbackFilter:
    """Which feedback to list; every field narrows the selection."""

    since: datetime | None = None
    until: datetime | None = None
    sources: tuple[str, ...] = ()
    locations: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    text_contains: str | None = None
    sentiments: tuple[str, ...] = ()
    emotions: tuple[str, ...] = ()
    scored: bool | None = None
    touchpoints: tuple[str, ...] = ()
    topics: tuple[int, ...] = ()
    pain_point: tuple[int, str] | None = None
    import_id: int | None = None
    near_duplicate: bool | None = None
    rating_scales: tuple[str, ...] = ()

    @property
    def scope(self) -> Scope:
        """The part of the filter that aggregates share: time, source, location, language."""
        return Scope(
            since=self.since,
            until=self.until,
            sources=self.sources,
            locations=self.locations,
            languages=self.languages,
        )


SENTIMENT_FILTER_LABELS = ("negative", "neutral", "positive", "mixed")


def emotion_scheme(label: str) -> str | None:
    """Which stored scheme a label belongs to: the CX rollup first (its names are what CX teams use)."""
    if label in CX_EMOTION_ROLLUP:
        return "cx"
    if label in GOEMOTIONS_LABELS:
        return "goemotions"
    return None


def encode_cursor(item: FeedbackItem) -> str:
    """An opaque cursor pointing just after ``item`` in newest-first order."""
    raw = json.dumps({"t": item.created_at.astimezone(UTC).isoformat(), "i": item.id})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The (created_at, id) position a cursor points after."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        created = datetime.fromisoformat(data["t"])
        item_id = int(data["i"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidCursorError("the cursor is not valid; start again without one") from exc
    if created.tzinfo is None:
        raise InvalidCursorError("the cursor is not valid; start again without one")
    return created, item_id


def list_feedback(
    session: Session, *, filters: FeedbackFilter, limit: int, cursor: str | None = None
) -> tuple[list[FeedbackItem], str | None]:
    """One page of feedback, newest first (by the customer's own time), and the cursor of the next."""
    query = select(FeedbackItem).where(*filters.scope.conditions())
    if filters.text_contains:
        query = query.where(FeedbackItem.text.icontains(filters.text_contains, autoescape=True))
    if filters.sentiments:
        query = query.where(FeedbackItem.sentiment_label.in_(filters.sentiments))
    if filters.emotions:
        matches = [
            and_(FeedbackEmotion.scheme == emotion_scheme(label), FeedbackEmotion.label == label)
            for label in filters.emotions
        ]
        query = query.where(FeedbackItem.id.in_(select(FeedbackEmotion.item_id).where(or_(*matches))))
    if filters.touchpoints:
        query = query.where(
            FeedbackItem.id.in_(
                select(ItemTouchpoint.item_id).where(ItemTouchpoint.touchpoint.in_(filters.touchpoints))
            )
        )
    if filters.topics:
        query = query.where(
            FeedbackItem.id.in_(
                select(SentenceTopic.item_id).where(SentenceTopic.topic_id.in_(filters.topics))
            )
        )
    if filters.pain_point is not None:
        topic_id, touchpoint = filters.pain_point
        query = query.where(
            FeedbackItem.id.in_(
                select(PainPointFact.item_id).where(
                    PainPointFact.topic_id == topic_id,
                    PainPointFact.touchpoint == touchpoint,
                    PainPointFact.negative,
                )
            )
        )
    if filters.rating_scales:
        query = query.where(FeedbackItem.rating_scale.in_(filters.rating_scales))
    if filters.import_id is not None:
        query = query.where(FeedbackItem.import_id == filters.import_id)
    if filters.near_duplicate is not None:
        query = query.where(
            FeedbackItem.near_duplicate_of.is_not(None)
            if filters.near_duplicate
            else FeedbackItem.near_duplicate_of.is_(None)
        )
    if filters.scored is not None:
        query = query.where(
            FeedbackItem.scored_at.is_not(None) if filters.scored else FeedbackItem.scored_at.is_(None)
        )
    if cursor is not None:
        created, item_id = decode_cursor(cursor)
        query = query.where(
            or_(
                FeedbackItem.created_at < created,
                and_(FeedbackItem.created_at == created, FeedbackItem.id < item_id),
            )
        )
    query = query.order_by(FeedbackItem.created_at.desc(), FeedbackItem.id.desc()).limit(limit + 1)
    items = list(session.scalars(query))
    next_cursor = encode_cursor(items[limit - 1]) if len(items) > limit else None
    return items[:limit], next_cursor


def local_created_at(item: FeedbackItem) -> datetime:
    """The item's time in the UTC offset it was written in."""
    if item.utc_offset_minutes is None:
        return item.created_at
    return item.created_at.astimezone(timezone(timedelta(minutes=item.utc_offset_minutes)))


def sentences_of(session: Session, *, item_id: int) -> list[FeedbackSentence]:
    """An item's scored sentences, in order."""
    return list(
        session.scalars(
            select(FeedbackSentence)
            .where(FeedbackSentence.item_id == item_id)
            .order_by(FeedbackSentence.position)
        )
    )


def sentences_of_items(session: Session, *, item_ids: Sequence[int]) -> dict[int, list[FeedbackSentence]]:
    """The scored sentences of many items in one query, each item's in order."""
    found: dict[int, list[FeedbackSentence]] = {item_id: [] for item_id in item_ids}
    for chunk_start in range(0, len(item_ids), 1000):
        chunk = item_ids[chunk_start : chunk_start + 1000]
        for sentence in session.scalars(
            select(FeedbackSentence)
            .where(FeedbackSentence.item_id.in_(chunk))
            .order_by(FeedbackSentence.item_id, FeedbackSentence.position)
        ):
            found[sentence.item_id].append(sentence)
    return found
