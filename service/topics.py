"""Topics of stored feedback: refits that keep topic ids, and online assignment between refits."""

from __future__ import annotations

import logging
import resource
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, case, delete, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from nlp.representation import TopicText
from nlp.topics import (
    OUTLIER,
    TopicConfig,
    TopicFit,
    TopicSnapshot,
    TopicSpace,
    fit_topics,
    match_topics,
)
from service.analytics import Interval, bucket_start, compare_locations
from service.db.models import (
    FeedbackItem,
    FeedbackSentence,
    ItemTouchpoint,
    PainPointFact,
    SentenceTopic,
    SentenceTouchpoint,
    Topic,
    TopicLineage,
    TopicModelRun,
    utcnow,
)
from service.feedback import Scope
from service.rollup_upkeep import resume_rollups, suspend_rollups
from service.scoring import from_float16_bytes, to_float16_bytes
from service.topic_text import assign_names, current_names, describe_fit, main_touchpoint_names
from service.touchpoints import TouchpointRef

logger = logging.getLogger("cxmine.topics")

NEGATIVE_LABELS = ("negative",)
WRITE_CHUNK = 5_000

StageCallback = Callable[[str, int, int], None]
"""Progress: (stage, done, total)."""


@dataclass
class SentenceTable:
    """Every scored sentence a refit works on, column by column."""

    ids: list[int] = field(default_factory=list)
    item_ids: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    languages: list[str | None] = field(default_factory=list)
    created_at: list[datetime] = field(default_factory=list)
    negative: list[bool] = field(default_factory=list)
    sentiment: list[float] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    locations: list[str | None] = field(default_factory=list)
    source_ids: list[int] = field(default_factory=list)
    touchpoints: list[list[TouchpointRef]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def embeddings(self) -> np.ndarray:
        """The sentence embeddings as one float32 matrix."""
        return np.vstack(self.vectors).astype(np.float32) if self.vectors else np.zeros((0, 0), np.float32)


def touchpoints_for(
    session: Session, *, sentences: Sequence[tuple[int, int]]
) -> dict[int, list[TouchpointRef]]:
    """Each sentence's touchpoints with their origin (named in it, else its item's source default) and the
    sentiment there when its clauses gave one."""
    result: dict[int, list[TouchpointRef]] = defaultdict(list)
    sentence_ids = [sentence_id for sentence_id, _ in sentences]
    for start in range(0, len(sentence_ids), WRITE_CHUNK):
        for sentence_id, touchpoint, label, score in session.execute(
            select(
                SentenceTouchpoint.sentence_id,
                SentenceTouchpoint.touchpoint,
                SentenceTouchpoint.sentiment_label,
                SentenceTouchpoint.sentiment_score,
            ).where(SentenceTouchpoint.sentence_id.in_(sentence_ids[start : start + WRITE_CHUNK]))
        ):
            result[sentence_id].append(TouchpointRef(touchpoint, "text", label, score))
    item_ids = sorted({item_id for _, item_id in sentences})
    defaults: dict[int, list[str]] = defaultdict(list)
    for start in range(0, len(item_ids), WRITE_CHUNK):
        for item_id, touchpoint in session.execute(
            select(ItemTouchpoint.item_id, ItemTouchpoint.touchpoint).where(
                ItemTouchpoint.item_id.in_(item_ids[start : start + WRITE_CHUNK]),
                ItemTouchpoint.origin == "source",
            )
        ):
            defaults[item_id].append(touchpoint)
    for sentence_id, item_id in sentences:
        if sentence_id not in result and item_id in defaults:
            result[sentence_id] = [TouchpointRef(touchpoint, "source") for touchpoint in defaults[item_id]]
    return result


def fact_rows(
    *,
    sentence_id: int,
    item_id: int,
    topic_id: int,
    touchpoints: Sequence[TouchpointRef],
    created_at: datetime,
    negative: bool,
    sentiment_score: float,
    similarity: float,
    location: str | None,
    source_id: int,
    language: str | None,
) -> list[dict[str, Any]]:
    """The pain-point facts of one topic sentence: one row per touchpoint, negative where the sentiment at
    that touchpoint is (its clause's when the sentence's clauses disagree, else ``negative``)."""
    return [
        {
            "sentence_id": sentence_id,
            "touchpoint": ref.touchpoint,
            "origin": ref.origin,
            "item_id": item_id,
            "topic_id": topic_id,
            "created_at": created_at,
            "negative": negative if ref.sentiment_label is None else ref.sentiment_label in NEGATIVE_LABELS,
            "sentiment_score": sentiment_score if ref.sentiment_score is None else ref.sentiment_score,
            "similarity": similarity,
            "location": location,
            "source_id": source_id,
            "language": language,
        }
        for ref in touchpoints
    ]


def load_sentences(
    session_factory: sessionmaker[Session], *, chunk: int = 5_000, on_progress: StageCallback | None = None
) -> SentenceTable:
    """Read every scored sentence with its text, language, time and sentiment, in id order."""
    table = SentenceTable()
    with session_factory() as session:
        total = session.scalar(select(func.count()).select_from(FeedbackSentence)) or 0
    last_id = 0
    while True:
        with session_factory() as session:
            rows = session.execute(
                select(
                    FeedbackSentence.id,
                    FeedbackSentence.item_id,
                    FeedbackSentence.start,
                    FeedbackSentence.end,
                    FeedbackSentence.embedding,
                    FeedbackSentence.sentiment_label,
                    FeedbackSentence.sentiment_score,
                    FeedbackItem.text,
                    FeedbackItem.language,
                    FeedbackItem.created_at,
                    FeedbackItem.location,
                    FeedbackItem.source_id,
                )
                .join(FeedbackItem, FeedbackItem.id == FeedbackSentence.item_id)
                .where(FeedbackSentence.id > last_id)
                .order_by(FeedbackSentence.id)
                .limit(chunk)
            ).all()
            if rows:
                found = touchpoints_for(session, sentences=[(r.id, r.item_id) for r in rows])
        if not rows:
            break
        last_id = rows[-1].id
        for row in rows:
            table.ids.append(row.id)
            table.item_ids.append(row.item_id)
            table.texts.append(row.text[row.start : row.end])
            table.languages.append(row.language)
            table.created_at.append(row.created_at)
            table.negative.append(row.sentiment_label in NEGATIVE_LABELS)
            table.sentiment.append(row.sentiment_score)
            table.vectors.append(from_float16_bytes(row.embedding))
            table.locations.append(row.location)
            table.source_ids.append(row.source_id)
            table.touchpoints.append(found.get(row.id, []))
        if on_progress is not None:
            on_progress("load", len(table), total)
    return table


@dataclass
class RefitReport:
    """What a refit found and what it did to the topic ids."""

    model_id: int
    sentences: int
    fitted_on: int
    topics: int
    outliers: int
    outliers_reduced: int
    events: dict[str, int]
    seconds: float
    peak_rss_mib: float


def current_model(session: Session) -> TopicModelRun | None:
    """The newest finished topic model."""
    return session.scalar(
        select(TopicModelRun).where(TopicModelRun.status == "done").order_by(TopicModelRun.id.desc()).limit(1)
    )


class NothingToFitError(ValueError):
    """A refit was asked for before any feedback was scored."""


def refit_topics(
    session_factory: sessionmaker[Session],
    *,
    config: TopicConfig | None = None,
    on_progress: StageCallback | None = None,
) -> RefitReport:
    """Fit topics on every scored sentence, keep the ids of topics that still exist, and record the lineage."""
    config = config or TopicConfig()
    report = on_progress or (lambda _stage, _done, _total: None)
    started = time.perf_counter()
    with session_factory() as session:
        if session.scalar(select(FeedbackSentence.id).limit(1)) is None:
            raise NothingToFitError("no scored feedback yet: score it first (`cxmine score`), then refit")
    with session_factory() as session, session.begin():
        run = TopicModelRun(status="running", config=config.to_document())
        session.add(run)
        session.flush()
        model_id = run.id
    try:
        table = load_sentences(session_factory, on_progress=report)
        embeddings = table.embeddings()
        fit = fit_topics(
            embeddings,
            table.texts,
            table.languages,
            config=config,
            on_stage=lambda stage: report(stage, 0, 0),
        )
        report("describe", 0, 0)
        with session_factory() as session:
            described = describe_fit(
                session,
                fit=fit,
                texts=table.texts,
                languages=table.languages,
                locations=table.locations,
                negative=table.negative,
            )
            fallback = main_touchpoint_names(
                session, labels=fit.labels, touchpoints=table.touchpoints, topics=len(fit.topics)
            )
        for topic, text in zip(fit.topics, described, strict=True):
            topic.keywords = text.keywords
            topic.representatives = text.representatives or topic.representatives
        report("match", 0, 0)
        with session_factory() as session:
            previous = _previous_snapshots(session)
            names = current_names(session)
        current = [
            TopicSnapshot(
                key=topic.index,
                centroid=topic.raw_centroid,
                vocabulary=dict(topic.keywords),
                members=frozenset(table.ids[i] for i in np.flatnonzero(fit.labels == topic.index).tolist()),
            )
            for topic in fit.topics
        ]
        matching = match_topics(previous, current)
        assign_names(described, kept=matching.kept, current=names, fallback=fallback)
        report("write", 0, len(table))
        events = _write_refit(
            session_factory,
            model_id=model_id,
            table=table,
            fit=fit,
            kept=matching.kept,
            lineage=matching.events,
            described=described,
            embedding_model=None,
            on_progress=report,
        )
    except BaseException as exc:
        with session_factory() as session, session.begin():
            session.execute(
                update(TopicModelRun)
                .where(TopicModelRun.id == model_id)
                .values(status="failed", error=f"{type(exc).__name__}: {exc}", finished_at=utcnow())
            )
        raise
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures = {"seconds": round(seconds, 2), "peak_rss_mib": round(peak, 1), "events": events}
    with session_factory() as session, session.begin():
        session.execute(update(TopicModelRun).where(TopicModelRun.id == model_id).values(figures=figures))
    logger.info("topics refitted", extra={"model_id": model_id, "topics": len(fit.topics), **figures})
    return RefitReport(
        model_id=model_id,
        sentences=len(table),
        fitted_on=fit.fitted_on,
        topics=len(fit.topics),
        outliers=fit.outliers,
        outliers_reduced=fit.outliers_reduced,
        events=events,
        seconds=seconds,
        peak_rss_mib=peak,
    )


def _previous_snapshots(session: Session) -> list[TopicSnapshot]:
    """The active topics with their centroids, vocabularies and current member sentences."""
    topics = session.scalars(select(Topic).where(Topic.status == "active")).all()
    members: dict[int, set[int]] = defaultdict(set)
    for sentence_id, topic_id in session.execute(select(SentenceTopic.sentence_id, SentenceTopic.topic_id)):
        members[topic_id].add(sentence_id)
    return [
        TopicSnapshot(
            key=topic.id,
            centroid=from_float16_bytes(topic.centroid),
            vocabulary=dict(topic.keyword_weights),
            members=frozenset(members.get(topic.id, ())),
        )
        for topic in topics
    ]


def _write_refit(
    session_factory: sessionmaker[Session],
    *,
    model_id: int,
    table: SentenceTable,
    fit: TopicFit,
    kept: dict[int, int],
    lineage: Sequence[Any],
    described: Sequence[TopicText],
    embedding_model: str | None,
    on_progress: StageCallback,
) -> dict[str, int]:
    """Store the refit in one transaction: topics, lineage, every sentence's topic, the model's state."""
    now = utcnow()
    with session_factory() as session, session.begin():
        # An admin may have renamed a topic while the refit ran: that name wins.
        renamed: dict[int, str] = {
            topic_id: label
            for topic_id, label in session.execute(
                select(Topic.id, Topic.label).where(Topic.label_source == "admin")
            )
        }
        ids: dict[int, int] = {}
        for topic in fit.topics:
            representative = topic.representatives[0] if topic.representatives else None
            text = described[topic.index]
            values = {
                "status": "active",
                "label": renamed.get(kept.get(topic.index, -1), text.name),
                "keywords": [word for word, _ in topic.keywords],
                "keyword_weights": dict(topic.keywords),
                "keywords_by_language": text.keywords_by_language,
                "representative": table.texts[representative] if representative is not None else None,
                "representative_sentence_id": table.ids[representative]
                if representative is not None
                else None,
                "sentences": topic.size,
                "languages": topic.languages,
                "centroid": to_float16_bytes(topic.raw_centroid),
                "last_model_id": model_id,
                "merged_into": None,
                "updated_at": now,
            }
            if topic.index in kept:
                ids[topic.index] = kept[topic.index]
                session.execute(update(Topic).where(Topic.id == kept[topic.index]).values(**values))
            else:
                row = Topic(born_model_id=model_id, created_at=now, **values)
                session.add(row)
                session.flush()
                ids[topic.index] = row.id
        counts: Counter[str] = Counter()
        for event in lineage:
            counts[event.event] += 1
            if event.event in ("continued", "born", "split"):
                topic_id = ids[event.current]
                related = event.previous if event.event == "split" else None
            else:
                topic_id = event.previous
                related = ids[event.current] if event.event == "merged" else None
                session.execute(
                    update(Topic)
                    .where(Topic.id == topic_id)
                    .values(
                        status="merged" if event.event == "merged" else "dead",
                        merged_into=related,
                        last_model_id=model_id,
                        updated_at=now,
                    )
                )
            session.add(
                TopicLineage(
                    model_id=model_id,
                    topic_id=topic_id,
                    event=event.event,
                    related_topic_id=related,
                    similarity=event.similarity,
                    detail={},
                )
            )
        suspend_rollups(session)
        session.execute(delete(PainPointFact))
        session.execute(delete(SentenceTopic))
        labelled = np.flatnonzero(fit.labels != OUTLIER).tolist()
        facts = [
            fact
            for i in labelled
            for fact in fact_rows(
                sentence_id=table.ids[i],
                item_id=table.item_ids[i],
                topic_id=ids[int(fit.labels[i])],
                touchpoints=table.touchpoints[i],
                created_at=table.created_at[i],
                negative=table.negative[i],
                sentiment_score=table.sentiment[i],
                similarity=float(fit.similarities[i]),
                location=table.locations[i],
                source_id=table.source_ids[i],
                language=table.languages[i],
            )
        ]
        rows = [
            {
                "sentence_id": table.ids[i],
                "item_id": table.item_ids[i],
                "topic_id": ids[int(fit.labels[i])],
                "model_id": model_id,
                "similarity": float(fit.similarities[i]),
                "origin": "refit",
                "created_at": table.created_at[i],
                "negative": table.negative[i],
                "sentiment_score": table.sentiment[i],
            }
            for i in labelled
        ]
        for start in range(0, len(rows), WRITE_CHUNK):
            session.execute(insert(SentenceTopic), rows[start : start + WRITE_CHUNK])
            on_progress("write", start + len(rows[start : start + WRITE_CHUNK]), len(rows) + len(facts))
        for start in range(0, len(facts), WRITE_CHUNK):
            session.execute(insert(PainPointFact), facts[start : start + WRITE_CHUNK])
            on_progress(
                "write", len(rows) + start + len(facts[start : start + WRITE_CHUNK]), len(rows) + len(facts)
            )
        resume_rollups(session)
        item_ids = sorted(set(table.item_ids))
        for start in range(0, len(item_ids), WRITE_CHUNK):
            session.execute(
                update(FeedbackItem)
                .where(FeedbackItem.id.in_(item_ids[start : start + WRITE_CHUNK]))
                .values(topic_model_id=model_id)
                .execution_options(synchronize_session=False)
            )
        space = TopicSpace(
            aligner=fit.space.aligner,
            centroids=fit.space.centroids,
            topic_keys=[ids[topic.index] for topic in fit.topics],
            assign_similarity=fit.space.assign_similarity,
        )
        session.execute(
            update(TopicModelRun)
            .where(TopicModelRun.id == model_id)
            .values(
                status="done",
                embedding_model=embedding_model,
                sentences=len(table),
                fitted_on=fit.fitted_on,
                topics=len(fit.topics),
                outliers=fit.outliers,
                outliers_reduced=fit.outliers_reduced,
                state=space.to_bytes(),
                finished_at=utcnow(),
            )
        )
    return dict(counts)


# ------------------------------------------------------------------------------------ online assignment


@dataclass
class AssignmentRun:
    """What one online assignment pass did."""

    items: int = 0
    sentences: int = 0
    assigned: int = 0


class TopicAssigner:
    """The current topic model's space, loaded once and reloaded when a refit finishes."""

    def __init__(self) -> None:
        self._model_id: int | None = None
        self._space: TopicSpace | None = None
        self._lock = threading.Lock()

    def space(self, session: Session) -> tuple[int, TopicSpace] | None:
        """The newest finished model's id and space (None before the first refit)."""
        model = session.execute(
            select(TopicModelRun.id)
            .where(TopicModelRun.status == "done")
            .order_by(TopicModelRun.id.desc())
            .limit(1)
        ).scalar()
        if model is None:
            return None
        with self._lock:
            if model != self._model_id:
                state = session.scalar(select(TopicModelRun.state).where(TopicModelRun.id == model))
                if state is None:
                    return None
                self._space = TopicSpace.from_bytes(state)
                self._model_id = model
            assert self._space is not None
            return model, self._space


def _needs_topics(model_id: int) -> ColumnElement[bool]:
    return FeedbackItem.scored_at.is_not(None) & or_(
        FeedbackItem.topic_model_id.is_(None), FeedbackItem.topic_model_id != model_id
    )


def count_unassigned(session: Session, *, model_id: int) -> int:
    """Scored items whose sentences have no topic from this model yet."""
    return session.scalar(select(func.count()).select_from(FeedbackItem).where(_needs_topics(model_id))) or 0


def assign_pending(
    session_factory: sessionmaker[Session],
    *,
    assigner: TopicAssigner,
    batch_size: int = 500,
    stop: threading.Event | None = None,
) -> AssignmentRun:
    """Give the sentences of newly scored items the nearest current topic, batch by batch, crash-safe."""
    run = AssignmentRun()
    last_id = 0
    while not (stop and stop.is_set()):
        with session_factory() as session:
            found = assigner.space(session)
            if found is None:
                return run
            model_id, space = found
            items = session.execute(
                select(
                    FeedbackItem.id,
                    FeedbackItem.language,
                    FeedbackItem.created_at,
                    FeedbackItem.location,
                    FeedbackItem.source_id,
                )
                .where(_needs_topics(model_id), FeedbackItem.id > last_id)
                .order_by(FeedbackItem.id)
                .limit(batch_size)
            ).all()
            if not items:
                return run
            last_id = items[-1].id
            sentences = session.execute(
                select(
                    FeedbackSentence.id,
                    FeedbackSentence.item_id,
                    FeedbackSentence.embedding,
                    FeedbackSentence.sentiment_label,
                    FeedbackSentence.sentiment_score,
                ).where(FeedbackSentence.item_id.in_([item.id for item in items]))
            ).all()
            sentence_touchpoints = touchpoints_for(session, sentences=[(s.id, s.item_id) for s in sentences])
        by_item = {item.id: item for item in items}
        rows: list[dict[str, Any]] = []
        facts: list[dict[str, Any]] = []
        if sentences:
            labels, similarities = space.assign(
                np.vstack([from_float16_bytes(s.embedding) for s in sentences]),
                [by_item[s.item_id].language for s in sentences],
            )
            rows = [
                {
                    "sentence_id": s.id,
                    "item_id": s.item_id,
                    "topic_id": int(label),
                    "model_id": model_id,
                    "similarity": float(similarity),
                    "origin": "online",
                    "created_at": by_item[s.item_id].created_at,
                    "negative": s.sentiment_label in NEGATIVE_LABELS,
                    "sentiment_score": s.sentiment_score,
                }
                for s, label, similarity in zip(
                    sentences, labels.tolist(), similarities.tolist(), strict=True
                )
                if label != OUTLIER
            ]
            facts = [
                fact
                for row in rows
                for fact in fact_rows(
                    sentence_id=row["sentence_id"],
                    item_id=row["item_id"],
                    topic_id=row["topic_id"],
                    touchpoints=sentence_touchpoints.get(row["sentence_id"], []),
                    created_at=row["created_at"],
                    negative=row["negative"],
                    sentiment_score=row["sentiment_score"],
                    similarity=row["similarity"],
                    location=by_item[row["item_id"]].location,
                    source_id=by_item[row["item_id"]].source_id,
                    language=by_item[row["item_id"]].language,
                )
            ]
        with session_factory() as session, session.begin():
            claimed = list(
                session.scalars(
                    update(FeedbackItem)
                    .where(FeedbackItem.id.in_(list(by_item)), _needs_topics(model_id))
                    .values(topic_model_id=model_id)
                    .returning(FeedbackItem.id)
                    .execution_options(synchronize_session=False)
                )
            )
            if claimed:
                kept = set(claimed)
                session.execute(delete(PainPointFact).where(PainPointFact.item_id.in_(claimed)))
                session.execute(delete(SentenceTopic).where(SentenceTopic.item_id.in_(claimed)))
                mine = [row for row in rows if row["item_id"] in kept]
                if mine:
                    session.execute(insert(SentenceTopic), mine)
                mine_facts = [fact for fact in facts if fact["item_id"] in kept]
                if mine_facts:
                    session.execute(insert(PainPointFact), mine_facts)
                run.assigned += len(mine)
        run.items += len(claimed)
        run.sentences += len(sentences)
    return run


class TopicMaintenance:
    """The scheduler's topic job: refit when due (the first once enough is scored, then after each tick of
    ``refit_cron``), then give new sentences their topics. One job, so a refit and an assignment never race."""

    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        assigner: TopicAssigner,
        refit_cron: str,
        bootstrap_sentences: int,
        config: TopicConfig | None = None,
    ) -> None:
        from apscheduler.triggers.cron import CronTrigger

        self.session_factory = session_factory
        self.assigner = assigner
        self.refit_schedule = CronTrigger.from_crontab(refit_cron, timezone="UTC")
        self.bootstrap_sentences = bootstrap_sentences
        self.config = config

    def __call__(self, stop: threading.Event) -> None:
        if self.refit_due():
            refit_topics(self.session_factory, config=self.config)
        assign_pending(self.session_factory, assigner=self.assigner, stop=stop)

    def refit_due(self, *, now: datetime | None = None) -> bool:
        """No model yet and enough sentences scored, or a scheduled refit time has passed since the newest."""
        now = now or utcnow()
        with self.session_factory() as session:
            latest = session.execute(
                select(TopicModelRun.status, TopicModelRun.started_at)
                .order_by(TopicModelRun.id.desc())
                .limit(1)
            ).first()
            if latest is not None:
                next_refit: datetime | None = self.refit_schedule.get_next_fire_time(None, latest.started_at)
                return next_refit is not None and next_refit <= now
            scored = session.scalar(select(func.count()).select_from(FeedbackSentence)) or 0
            pending = session.scalar(
                select(func.count()).select_from(FeedbackItem).where(FeedbackItem.scored_at.is_(None))
            )
            return scored >= self.bootstrap_sentences and not pending


# ------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ItemTopic:
    """A topic of a feedback item: how many of its sentences are about it."""

    topic_id: int
    label: str
    sentences: int


def topics_of(session: Session, *, item_ids: Sequence[int]) -> dict[int, list[ItemTopic]]:
    """Each item's topics, the one most of its sentences are about first."""
    result: dict[int, list[ItemTopic]] = defaultdict(list)
    if not item_ids:
        return result
    rows = session.execute(
        select(
            SentenceTopic.item_id,
            SentenceTopic.topic_id,
            Topic.label,
            func.count(),
            func.max(SentenceTopic.similarity),
        )
        .join(Topic, Topic.id == SentenceTopic.topic_id)
        .where(SentenceTopic.item_id.in_(item_ids))
        .group_by(SentenceTopic.item_id, SentenceTopic.topic_id, Topic.label)
    ).all()
    ranked = sorted(rows, key=lambda r: (r[0], -r[3], -r[4], r[1]))
    for item_id, topic_id, label, count, _ in ranked:
        result[item_id].append(ItemTopic(topic_id=topic_id, label=label, sentences=int(count)))
    return result


@dataclass
class TopicStats:
    """A topic's sentences in scope: how many, how many negative, mean sentiment, items."""

    sentences: int = 0
    negative: int = 0
    items: int | None = None
    average_sentiment: float | None = None


def topic_stats(
    session: Session, *, scope: Scope, topic_ids: Sequence[int] | None = None, items: bool = False
) -> dict[int, TopicStats]:
    """Per-topic volume and sentiment of the sentences in scope; with ``items``, distinct items too."""
    query = select(
        SentenceTopic.topic_id,
        func.count(),
        func.sum(case((SentenceTopic.negative, 1), else_=0)),
        func.count(func.distinct(SentenceTopic.item_id)) if items else literal(0),
        func.avg(SentenceTopic.sentiment_score),
    )
    if scope.locations or scope.sources or scope.languages:
        query = query.join(FeedbackItem, FeedbackItem.id == SentenceTopic.item_id).where(
            *Scope(locations=scope.locations, sources=scope.sources, languages=scope.languages).conditions()
        )
    if scope.since is not None:
        query = query.where(SentenceTopic.created_at >= scope.since)
    if scope.until is not None:
        query = query.where(SentenceTopic.created_at < scope.until)
    if topic_ids is not None:
        query = query.where(SentenceTopic.topic_id.in_(topic_ids))
    rows = session.execute(query.group_by(SentenceTopic.topic_id)).all()
    return {
        row[0]: TopicStats(
            sentences=int(row[1]),
            negative=int(row[2] or 0),
            items=int(row[3]) if items else None,
            average_sentiment=float(row[4]) if row[4] is not None else None,
        )
        for row in rows
    }


def topic_lineage(session: Session, *, topic_id: int) -> list[tuple[TopicLineage, TopicModelRun]]:
    """Every lineage event that names the topic (as itself or as the related topic), oldest first."""
    return [
        (event, model)
        for event, model in session.execute(
            select(TopicLineage, TopicModelRun)
            .join(TopicModelRun, TopicModelRun.id == TopicLineage.model_id)
            .where(or_(TopicLineage.topic_id == topic_id, TopicLineage.related_topic_id == topic_id))
            .order_by(TopicLineage.model_id, TopicLineage.id)
        ).all()
    ]


def topic_touchpoints(session: Session, *, topic_id: int, scope: Scope) -> dict[str, tuple[int, int]]:
    """A topic's sentences per touchpoint named in the text: (sentences, negative)."""
    query = (
        select(
            SentenceTouchpoint.touchpoint,
            func.count(),
            func.sum(case((SentenceTopic.negative, 1), else_=0)),
        )
        .select_from(SentenceTopic)
        .join(SentenceTouchpoint, SentenceTouchpoint.sentence_id == SentenceTopic.sentence_id)
        .join(FeedbackItem, FeedbackItem.id == SentenceTopic.item_id)
        .where(SentenceTopic.topic_id == topic_id, *scope.conditions())
        .group_by(SentenceTouchpoint.touchpoint)
    )
    return {row[0]: (int(row[1]), int(row[2] or 0)) for row in session.execute(query)}


def topic_timeline(
    session: Session, *, topic_id: int, scope: Scope, interval: Interval
) -> list[tuple[datetime, int, int]]:
    """A topic's sentences and negative sentences per time bucket."""
    dialect = session.get_bind().dialect.name
    start = bucket_start(FeedbackItem.created_at, interval=interval, dialect=dialect).label("bucket")
    rows = session.execute(
        select(start, func.count(), func.sum(case((SentenceTopic.negative, 1), else_=0)))
        .select_from(SentenceTopic)
        .join(FeedbackItem, FeedbackItem.id == SentenceTopic.item_id)
        .where(SentenceTopic.topic_id == topic_id, *scope.conditions())
        .group_by(start)
        .order_by(start)
    ).all()
    result = []
    for bucket, count, negative in rows:
        moment = bucket if isinstance(bucket, datetime) else datetime.fromisoformat(str(bucket))
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        result.append((moment, int(count), int(negative or 0)))
    return result


def topic_location_comparison(session: Session, *, topic_id: int, scope: Scope) -> list[dict[str, Any]]:
    """Each location's negative share within a topic against the other locations': the outlier store."""
    rows = session.execute(
        select(FeedbackItem.location, func.count(), func.sum(case((SentenceTopic.negative, 1), else_=0)))
        .select_from(SentenceTopic)
        .join(FeedbackItem, FeedbackItem.id == SentenceTopic.item_id)
        .where(SentenceTopic.topic_id == topic_id, FeedbackItem.location.is_not(None), *scope.conditions())
        .group_by(FeedbackItem.location)
    ).all()
    return compare_locations(rows)
