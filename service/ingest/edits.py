"""Edited feedback: an item seen again under its external id with another text or rating.

The earlier text and rating become a version (``feedback_item_versions``) and the item takes the new ones.
A changed text also clears everything derived from the old one (scores, sentences, emotions, embeddings,
touchpoints, topics and pain-point facts; the daily rollups follow the facts by their triggers), so the
scoring, labelling and topic jobs treat the item as new. A changed rating alone keeps the scores: no
model reads it. Items without an external id are known by their content, so an edit of one is a new item.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from service.db.models import (
    FeedbackEmotion,
    FeedbackItem,
    FeedbackItemVersion,
    FeedbackSentence,
    ItemEmbedding,
    ItemTouchpoint,
    PainPointFact,
    SentenceTopic,
    SentenceTouchpoint,
)

CHANGE_SOURCES = ("api", "import", "collector", "webhook")
LOOKUP_BATCH = 500
# Rows derived from an item's text, children first (pain-point facts before the sentences they cite).
DERIVED = (PainPointFact, SentenceTopic, SentenceTouchpoint, ItemTouchpoint, FeedbackEmotion, ItemEmbedding)
_CLEARED_SCORES: dict[str, Any] = {
    "language_confidence": None,
    "language_given": None,
    "sentiment_label": None,
    "sentiment_score": None,
    "sentiment_probabilities": None,
    "emotions": None,
    "scored_at": None,
    "score_model": None,
    "touchpoint_taxonomy": None,
    "topic_model_id": None,
    "near_duplicate_of": None,
}


@dataclass(frozen=True)
class Edit:
    """A stored item and the row that changes it."""

    item_id: int
    row: Mapping[str, Any]
    text_changed: bool
    old_fingerprint: str | None


def find_edits(session: Session, *, candidates: Mapping[int, Mapping[str, Any]]) -> list[Edit]:
    """The stored items (by id) whose text or rating the candidate rows change, locked until commit.

    Only rows with an external id count; a row without a rating leaves the stored rating alone.
    """
    ids = sorted(item_id for item_id, row in candidates.items() if row["external_id"] is not None)
    edits: list[Edit] = []
    for start in range(0, len(ids), LOOKUP_BATCH):
        query = select(
            FeedbackItem.id,
            FeedbackItem.content_hash,
            FeedbackItem.rating_value,
            FeedbackItem.rating_scale,
            FeedbackItem.text_fingerprint,
        ).where(FeedbackItem.id.in_(ids[start : start + LOOKUP_BATCH]))
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(of=FeedbackItem)  # a concurrent edit waits, then sees this one
        for item_id, stored_hash, value, scale, fingerprint in session.execute(query):
            row = candidates[item_id]
            text_changed = row["content_hash"] != stored_hash
            if text_changed or _rating_changed(row, value, scale):
                edits.append(Edit(item_id, row, text_changed, fingerprint))
    return edits


def _rating_changed(row: Mapping[str, Any], value: float | None, scale: str | None) -> bool:
    if row["rating_value"] is None:
        return False
    if value is None or scale != row["rating_scale"]:
        return True
    return not math.isclose(row["rating_value"], value, rel_tol=1e-9, abs_tol=1e-9)


def apply_edits(
    session: Session, *, edits: Sequence[Edit], change_source: str, import_id: int | None, now: datetime
) -> None:
    """Keep each item's current text and rating as its next version, then give it the new ones."""
    if not edits:
        return
    ids = [edit.item_id for edit in edits]
    _save_versions(session, ids=ids, change_source=change_source, import_id=import_id, now=now)
    for edit in edits:
        values: dict[str, Any] = {}
        if edit.row["rating_value"] is not None:
            values.update(rating_value=edit.row["rating_value"], rating_scale=edit.row["rating_scale"])
        if edit.text_changed:
            values.update(
                _CLEARED_SCORES,
                text=edit.row["text"],
                content_hash=edit.row["content_hash"],
                text_fingerprint=edit.row["text_fingerprint"],
                language=edit.row["language"],
                meta=edit.row["metadata"],
            )
        if values:
            session.execute(
                update(FeedbackItem)
                .where(FeedbackItem.id == edit.item_id)
                .values(values)
                .execution_options(synchronize_session=False)
            )
    rescored = [edit.item_id for edit in edits if edit.text_changed]
    if rescored:
        for table in DERIVED:
            session.execute(delete(table).where(table.item_id.in_(rescored)))
        session.execute(delete(FeedbackSentence).where(FeedbackSentence.item_id.in_(rescored)))


def _save_versions(
    session: Session, *, ids: list[int], change_source: str, import_id: int | None, now: datetime
) -> None:
    """One version row per item: its stored text and rating, numbered after its earlier versions."""
    latest = {
        item_id: (version, replaced)
        for item_id, version, replaced in session.execute(
            select(
                FeedbackItemVersion.item_id,
                func.max(FeedbackItemVersion.version),
                func.max(FeedbackItemVersion.replaced_at),
            )
            .where(FeedbackItemVersion.item_id.in_(ids))
            .group_by(FeedbackItemVersion.item_id)
        )
    }
    current = session.execute(
        select(
            FeedbackItem.id,
            FeedbackItem.text,
            FeedbackItem.rating_value,
            FeedbackItem.rating_scale,
            FeedbackItem.content_hash,
            FeedbackItem.collected_at,
        ).where(FeedbackItem.id.in_(ids))
    ).all()
    rows = []
    for item in current:
        version, replaced = latest.get(item.id, (0, None))
        rows.append(
            {
                "item_id": item.id,
                "version": version + 1,
                "text": item.text,
                "rating_value": item.rating_value,
                "rating_scale": item.rating_scale,
                "content_hash": item.content_hash,
                "seen_at": replaced or item.collected_at,
                "replaced_at": now,
                "change_source": change_source,
                "import_id": import_id,
            }
        )
    session.execute(insert(FeedbackItemVersion), rows)


def edited_item_ids(session: Session, *, item_ids: Iterable[int]) -> set[int]:
    """Which of the items have an earlier version."""
    ids = list(item_ids)
    if not ids:
        return set()
    query = select(FeedbackItemVersion.item_id).where(FeedbackItemVersion.item_id.in_(ids)).distinct()
    return set(session.scalars(query))


def versions_of(session: Session, *, item_id: int) -> list[FeedbackItemVersion]:
    """An item's earlier versions, oldest first."""
    query = (
        select(FeedbackItemVersion)
        .where(FeedbackItemVersion.item_id == item_id)
        .order_by(FeedbackItemVersion.version)
    )
    return list(session.scalars(query))


def updated_counts(session: Session, *, import_ids: Iterable[int]) -> dict[int, int]:
    """How many items each import, collector run or webhook push changed (the versions it made)."""
    ids = list(import_ids)
    if not ids:
        return {}
    query = (
        select(FeedbackItemVersion.import_id, func.count())
        .where(FeedbackItemVersion.import_id.in_(ids))
        .group_by(FeedbackItemVersion.import_id)
    )
    return {import_id: count for import_id, count in session.execute(query) if import_id is not None}
