"""Touchpoints of stored feedback: the taxonomy in force, and labelling from the stored sentence embeddings."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import ColumnElement, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from nlp.analysis import SentimentResult
from nlp.aspects import ClauseAspects
from nlp.encoders import EncodeSentences
from nlp.scorers import SentimentScorer
from nlp.text.normalise import normalise_text
from nlp.touchpoints import FloatArray, Taxonomy, TouchpointClassifier, load_taxonomy, parse_taxonomy
from service.db.models import (
    FeedbackItem,
    FeedbackSentence,
    ItemTouchpoint,
    SentenceTouchpoint,
    Source,
    TaxonomyVersion,
)
from service.scoring import from_float16_bytes

logger = logging.getLogger("cxmine.touchpoints")


def active_taxonomy(session: Session) -> Taxonomy:
    """The taxonomy in force: the newest one an admin set, else the shipped retail taxonomy."""
    latest = session.scalar(select(TaxonomyVersion).order_by(TaxonomyVersion.id.desc()).limit(1))
    return parse_taxonomy(latest.document) if latest is not None else shipped_taxonomy()


@functools.cache
def shipped_taxonomy() -> Taxonomy:
    """The retail taxonomy that ships with cxmine, read once per process (YAML parsing takes ~0.1 s)."""
    return load_taxonomy()


def save_taxonomy(session: Session, *, taxonomy: Taxonomy, actor: str) -> TaxonomyVersion:
    """Put a new taxonomy in force (the old versions stay, for the record)."""
    row = TaxonomyVersion(
        name=taxonomy.name, version=taxonomy.version, document=taxonomy.to_document(), created_by=actor
    )
    session.add(row)
    session.flush()
    return row


def taxonomy_key(taxonomy: Taxonomy) -> str:
    """Names the exact taxonomy an item was labelled with (a changed document gets a new key)."""
    digest = hashlib.sha256(json.dumps(taxonomy.to_document(), sort_keys=True).encode()).hexdigest()[:10]
    return f"{taxonomy.name}@{taxonomy.version}:{digest}"


ASPECTS_VERSION = "aspects.clauses.v1"


class TouchpointRef(NamedTuple):
    """A touchpoint of a sentence, where it came from (``text`` or the source's default, ``source``), and
    the sentiment there when the sentence's clauses gave it one (None: the sentence's own)."""

    touchpoint: str
    origin: str
    sentiment_label: str | None = None
    sentiment_score: float | None = None


def labelling_key(taxonomy: Taxonomy, *, aspects: bool) -> str:
    """What an item records it was labelled with: the taxonomy's key, and the aspect rule when applied."""
    return taxonomy_key(taxonomy) + (f"+{ASPECTS_VERSION}" if aspects else "")


class TouchpointLabeler:
    """A taxonomy with its examples embedded once, ready to label sentence embeddings.

    With a sentiment scorer, a sentence whose clauses disagree ("the staff were lovely but the app kept
    crashing") gets each touchpoint's own sentiment (``nlp.aspects``): its clauses are encoded and scored,
    the only text encoding labelling does. The key then names the aspect rule too, so items labelled
    without it are labelled again.
    """

    def __init__(
        self, *, taxonomy: Taxonomy, encoder: EncodeSentences, sentiment: SentimentScorer | None = None
    ) -> None:
        self.taxonomy = taxonomy

        def embed(phrases: list[str]) -> FloatArray:
            return encoder.embed_texts([normalise_text(phrase)[0] for phrase in phrases])

        self.classifier = TouchpointClassifier(
            taxonomy=taxonomy,
            example_embeddings=[embed(touchpoint.all_examples) for touchpoint in taxonomy.touchpoints],
            background_embeddings=embed(taxonomy.background_phrases),
        )
        self.aspects = (
            ClauseAspects(
                encoder=encoder,
                classifier=self.classifier,
                head=sentiment.head,
                calibrate=sentiment.calibration.probabilities,
                abstain_below=sentiment.calibration.abstain_below,
            )
            if sentiment is not None
            else None
        )
        self.key = labelling_key(taxonomy, aspects=self.aspects is not None)

    def sentence_rows(self, sentences: Any, texts: dict[int, tuple[str, str | None]]) -> list[dict[str, Any]]:
        """One row per touchpoint of each stored sentence; ``texts`` is item id -> (text, language)."""
        if not sentences:
            return []
        embeddings = np.vstack([from_float16_bytes(s.embedding) for s in sentences])
        if self.aspects is None:
            return [
                {
                    "sentence_id": s.id,
                    "item_id": s.item_id,
                    "touchpoint": c.touchpoint,
                    "score": c.score,
                    "sentiment_label": None,
                    "sentiment_score": None,
                }
                for s, chosen in zip(sentences, self.classifier.assign(embeddings), strict=True)
                for c in chosen
            ]
        # A sentence that does not split keeps its own sentiment at every touchpoint (source "sentence").
        analysed = self.aspects.analyse(
            [texts[s.item_id][0][s.start : s.end] for s in sentences],
            embeddings=embeddings,
            sentiments=[_stored_sentiment(s) for s in sentences],
            languages=[texts[s.item_id][1] for s in sentences],
        )
        return [
            {
                "sentence_id": s.id,
                "item_id": s.item_id,
                "touchpoint": t.touchpoint,
                "score": t.score,
                "sentiment_label": t.sentiment.label if t.source == "clauses" else None,
                "sentiment_score": round(t.sentiment.score, 4) if t.source == "clauses" else None,
            }
            for s, aspects in zip(sentences, analysed, strict=True)
            for t in aspects.touchpoints
        ]


def _stored_sentiment(sentence: Any) -> SentimentResult:
    return SentimentResult(
        label=sentence.sentiment_label,
        score=sentence.sentiment_score,
        probabilities=sentence.sentiment_probabilities or {},
    )


class LabelerCache:
    """The labeler for the taxonomy in force, rebuilt only when an admin sets a new taxonomy version."""

    def __init__(self, *, encoder: EncodeSentences, sentiment: SentimentScorer | None = None) -> None:
        self.encoder = encoder
        self.sentiment = sentiment
        self._version: int | None = None
        self._labeler: TouchpointLabeler | None = None
        self._lock = threading.Lock()

    def current(self, session_factory: sessionmaker[Session]) -> TouchpointLabeler:
        """The labeler of the newest taxonomy version (the shipped taxonomy when none was set)."""
        with session_factory() as session:
            version = session.scalar(select(func.max(TaxonomyVersion.id)))
            with self._lock:
                if self._labeler is None or version != self._version:
                    self._labeler = TouchpointLabeler(
                        taxonomy=active_taxonomy(session), encoder=self.encoder, sentiment=self.sentiment
                    )
                    self._version = version
                return self._labeler


@dataclass
class LabellingRun:
    """What one labelling pass did."""

    labelled: int = 0
    batches: int = 0


def _needs_labelling(key: str) -> ColumnElement[bool]:
    return FeedbackItem.scored_at.is_not(None) & or_(
        FeedbackItem.touchpoint_taxonomy.is_(None), FeedbackItem.touchpoint_taxonomy != key
    )


def count_unlabelled(session: Session, *, key: str) -> int:
    """How many scored items are not labelled with this taxonomy yet."""
    return session.scalar(select(func.count()).select_from(FeedbackItem).where(_needs_labelling(key))) or 0


def label_pending(
    session_factory: sessionmaker[Session],
    *,
    labeler: TouchpointLabeler,
    batch_size: int = 500,
    stop: threading.Event | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> LabellingRun:
    """Label every scored item not labelled with this taxonomy, from its stored embeddings (no encoding)."""
    run = LabellingRun()
    last_id = 0
    while not (stop and stop.is_set()):
        with session_factory() as session:
            items = session.execute(
                select(
                    FeedbackItem.id,
                    FeedbackItem.text,
                    FeedbackItem.language,
                    # A collector may know the touchpoint of one record better than its source's default.
                    func.coalesce(
                        FeedbackItem.meta["touchpoint"].as_string(), Source.default_touchpoint
                    ).label("default_touchpoint"),
                )
                .join(Source, Source.id == FeedbackItem.source_id)
                .where(_needs_labelling(labeler.key), FeedbackItem.id > last_id)
                .order_by(FeedbackItem.id)
                .limit(batch_size)
            ).all()
            if not items:
                break
            last_id = items[-1].id
            sentences = session.execute(
                select(
                    FeedbackSentence.id,
                    FeedbackSentence.item_id,
                    FeedbackSentence.embedding,
                    FeedbackSentence.start,
                    FeedbackSentence.end,
                    FeedbackSentence.sentiment_label,
                    FeedbackSentence.sentiment_score,
                    FeedbackSentence.sentiment_probabilities,
                ).where(FeedbackSentence.item_id.in_([item.id for item in items]))
            ).all()
        sentence_rows = labeler.sentence_rows(
            sentences, {item.id: (item.text, item.language) for item in items}
        )
        item_rows = _item_touchpoints(items, sentence_rows, labeler)
        with session_factory() as session, session.begin():
            claimed = list(
                session.scalars(
                    update(FeedbackItem)
                    .where(FeedbackItem.id.in_([item.id for item in items]), _needs_labelling(labeler.key))
                    # Its pain-point facts carry touchpoints: re-assigning the topic rewrites them.
                    .values(touchpoint_taxonomy=labeler.key, topic_model_id=None)
                    .returning(FeedbackItem.id)
                    .execution_options(synchronize_session=False)
                )
            )
            if claimed:
                session.execute(delete(SentenceTouchpoint).where(SentenceTouchpoint.item_id.in_(claimed)))
                session.execute(delete(ItemTouchpoint).where(ItemTouchpoint.item_id.in_(claimed)))
                kept = set(claimed)
                rows = [r for r in sentence_rows if r["item_id"] in kept]
                if rows:
                    session.execute(insert(SentenceTouchpoint), rows)
                rows = [r for r in item_rows if r["item_id"] in kept]
                if rows:
                    session.execute(insert(ItemTouchpoint), rows)
        run.labelled += len(claimed)
        run.batches += 1
        if on_progress is not None:
            on_progress(len(items))
    return run


def _item_touchpoints(
    items: Any, sentence_rows: list[dict[str, Any]], labeler: TouchpointLabeler
) -> list[dict[str, Any]]:
    """An item is about each touchpoint one of its sentences is about; if none, its source's default."""
    best: dict[int, dict[str, float]] = defaultdict(dict)
    for row in sentence_rows:
        scores = best[row["item_id"]]
        scores[row["touchpoint"]] = max(scores.get(row["touchpoint"], 0.0), row["score"])
    result: list[dict[str, Any]] = []
    for item in items:
        found = best.get(item.id)
        if found:
            result.extend(
                {"item_id": item.id, "touchpoint": t, "score": s, "origin": "text"} for t, s in found.items()
            )
        elif item.default_touchpoint and labeler.taxonomy.get(item.default_touchpoint) is not None:
            result.append(
                {
                    "item_id": item.id,
                    "touchpoint": item.default_touchpoint,
                    "score": 0.0,
                    "origin": "source",
                }
            )
    return result


def sentence_touchpoints_of(
    session: Session, *, sentence_ids: list[int]
) -> dict[int, list[tuple[str, float, str | None]]]:
    """Each sentence's touchpoints, strongest first, with the sentiment there when its clauses gave one."""
    result: dict[int, list[tuple[str, float, str | None]]] = defaultdict(list)
    if sentence_ids:
        rows = session.execute(
            select(
                SentenceTouchpoint.sentence_id,
                SentenceTouchpoint.touchpoint,
                SentenceTouchpoint.score,
                SentenceTouchpoint.sentiment_label,
            )
            .where(SentenceTouchpoint.sentence_id.in_(sentence_ids))
            .order_by(SentenceTouchpoint.sentence_id, SentenceTouchpoint.score.desc())
        )
        for sentence_id, touchpoint, score, label in rows:
            result[sentence_id].append((touchpoint, score, label))
    return result


def touchpoints_of(session: Session, *, item_ids: list[int]) -> dict[int, list[tuple[str, float]]]:
    """Each item's touchpoints, strongest first."""
    result: dict[int, list[tuple[str, float]]] = defaultdict(list)
    if item_ids:
        rows = session.execute(
            select(ItemTouchpoint.item_id, ItemTouchpoint.touchpoint, ItemTouchpoint.score)
            .where(ItemTouchpoint.item_id.in_(item_ids))
            .order_by(ItemTouchpoint.item_id, ItemTouchpoint.score.desc())
        )
        for item_id, touchpoint, score in rows:
            result[item_id].append((touchpoint, score))
    return result
