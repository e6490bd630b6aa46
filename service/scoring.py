"""Scoring stored feedback in the background: batch by batch, each batch one transaction."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import ColumnElement, delete, func, insert, or_, select, true, update
from sqlalchemy.orm import Session, sessionmaker

from nlp.analysis import Analysis, Analyzer, EmotionResult, TextInput
from service.db.models import FeedbackEmotion, FeedbackItem, FeedbackSentence, ItemEmbedding, utcnow

logger = logging.getLogger("cxmine.scoring")

ProgressCallback = Callable[[int], None]


@dataclass
class ScoringRun:
    """What one scoring pass did."""

    scored: int = 0
    skipped: int = 0
    batches: int = 0


def _needs_scoring(version: str, *, rescore: bool) -> ColumnElement[bool]:
    if rescore:
        return or_(FeedbackItem.score_model.is_(None), FeedbackItem.score_model != version)
    return FeedbackItem.scored_at.is_(None)


def count_pending(session: Session, *, version: str, rescore: bool = False) -> int:
    """How many items a scoring pass would score."""
    query = select(func.count()).select_from(FeedbackItem).where(_needs_scoring(version, rescore=rescore))
    return session.scalar(query) or 0


def score_pending(
    session_factory: sessionmaker[Session],
    *,
    analyzer: Analyzer,
    batch_size: int = 64,
    rescore: bool = False,
    max_items: int | None = None,
    on_progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
    after_id: int = 0,
    up_to_id: int | None = None,
) -> ScoringRun:
    """Score every item not yet scored (or, with ``rescore``, scored by another model version).

    Each batch is read, analysed outside any transaction, then written in one transaction that
    only touches items still in the state they were read in: a crash loses at most the batch in
    flight (it is scored on the next pass), and two workers never both write the same item. ``after_id``
    and ``up_to_id`` limit the pass to the ids in between (a procrastinate worker's share).
    """
    run = ScoringRun()
    last_id = after_id
    in_range = FeedbackItem.id <= up_to_id if up_to_id is not None else true()
    while (max_items is None or run.scored + run.skipped < max_items) and not (stop and stop.is_set()):
        limit = batch_size if max_items is None else min(batch_size, max_items - run.scored - run.skipped)
        with session_factory() as session:
            rows = session.execute(
                select(FeedbackItem.id, FeedbackItem.text, FeedbackItem.language, FeedbackItem.content_hash)
                .where(_needs_scoring(analyzer.version, rescore=rescore), FeedbackItem.id > last_id, in_range)
                .order_by(FeedbackItem.id)
                .limit(limit)
            ).all()
        if not rows:
            break
        last_id = rows[-1].id
        analyses = analyzer.analyse([TextInput(str(r.id), r.text, r.language) for r in rows])
        with session_factory() as session, session.begin():
            written = write_scores(
                session,
                item_ids=[r.id for r in rows],
                content_hashes=[r.content_hash for r in rows],
                analyses=analyses,
                version=analyzer.version,
                rescore=rescore,
            )
        run.scored += written
        run.skipped += len(rows) - written
        run.batches += 1
        if on_progress is not None:
            on_progress(len(rows))
    if run.scored:
        logger.info("scored feedback", extra={"scored": run.scored, "skipped": run.skipped})
    return run


def write_scores(
    session: Session,
    *,
    item_ids: Sequence[int],
    content_hashes: Sequence[str],
    analyses: Sequence[Analysis],
    version: str,
    rescore: bool,
) -> int:
    """Store the analyses of items that still need them and still hold the text that was analysed (an
    edit committed meanwhile makes the item wait for the next pass); return how many were written."""
    now = utcnow()
    still_needed = _needs_scoring(version, rescore=rescore)
    claimed: list[tuple[int, Analysis]] = []
    for item_id, content, analysis in zip(item_ids, content_hashes, analyses, strict=True):
        result = session.execute(
            update(FeedbackItem)
            .where(FeedbackItem.id == item_id, FeedbackItem.content_hash == content, still_needed)
            .values(
                language=analysis.language,
                language_confidence=analysis.language_confidence,
                language_given=analysis.language_given,
                sentiment_label=analysis.sentiment.label,
                sentiment_score=analysis.sentiment.score,
                sentiment_probabilities=dict(analysis.sentiment.probabilities),
                emotions=emotions_summary(analysis.emotions),
                scored_at=now,
                score_model=version,
                touchpoint_taxonomy=None,
                topic_model_id=None,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            claimed.append((item_id, analysis))
    if not claimed:
        return 0
    ids = [item_id for item_id, _ in claimed]
    for table in (FeedbackSentence, FeedbackEmotion, ItemEmbedding):
        session.execute(delete(table).where(table.item_id.in_(ids)))
    sentence_rows = [
        {
            "item_id": item_id,
            "position": position,
            "start": sentence.start,
            "end": sentence.end,
            "sentiment_label": sentence.sentiment.label,
            "sentiment_score": sentence.sentiment.score,
            "sentiment_probabilities": dict(sentence.sentiment.probabilities),
            "emotions": emotions_summary(sentence.emotions),
            "embedding": to_float16_bytes(sentence.embedding),
        }
        for item_id, analysis in claimed
        for position, sentence in enumerate(analysis.sentences)
    ]
    if sentence_rows:
        session.execute(insert(FeedbackSentence), sentence_rows)
    emotion_rows = [
        {"item_id": item_id, "scheme": scheme, "label": label, "probability": probabilities[label]}
        for item_id, analysis in claimed
        for scheme, labels, probabilities in (
            ("cx", analysis.emotions.cx_detected, analysis.emotions.cx_probabilities),
            ("goemotions", analysis.emotions.detected, analysis.emotions.probabilities),
        )
        for label in labels
    ]
    if emotion_rows:
        session.execute(insert(FeedbackEmotion), emotion_rows)
    session.execute(
        insert(ItemEmbedding),
        [
            {
                "item_id": item_id,
                "model": version,
                "dim": int(analysis.embedding.shape[0]),
                "vector": to_float16_bytes(analysis.embedding),
            }
            for item_id, analysis in claimed
        ],
    )
    return len(claimed)


def emotions_summary(emotions: EmotionResult, *, top: int = 5) -> dict[str, object]:
    """What is stored per item or sentence: detected labels and the strongest probabilities."""
    strongest = dict(list(emotions.probabilities.items())[:top])
    return {
        "detected": list(emotions.detected),
        "cx_detected": list(emotions.cx_detected),
        "top": {label: round(p, 4) for label, p in strongest.items()},
        "cx": {label: round(p, 4) for label, p in emotions.cx_probabilities.items()},
    }


def to_float16_bytes(vector: np.ndarray) -> bytes:
    """An embedding as little-endian float16 bytes (half the space; cosine similarity is unaffected)."""
    return np.asarray(vector, dtype="<f2").tobytes()


def from_float16_bytes(data: bytes) -> np.ndarray:
    """An embedding back as float32."""
    return np.frombuffer(data, dtype="<f2").astype(np.float32)
