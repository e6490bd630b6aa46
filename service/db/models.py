"""Typed SQLAlchemy 2 models. The schema itself is owned by the Alembic migrations."""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes stored as UTC on every backend (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


PortableJSON = JSON().with_variant(JSONB(), "postgresql")
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Role(enum.StrEnum):
    """API key roles: admin can do everything, the others one job each."""

    ADMIN = "admin"
    ANALYST = "analyst"
    INGEST = "ingest"
    SCORER = "scorer"


class Source(Base):
    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(50), default="api")
    default_touchpoint: Mapped[str | None] = mapped_column(String(100))
    config: Mapped[dict[str, Any]] = mapped_column(PortableJSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Collectors (kind is a registered source kind such as 'app_store.v1'); API and file sources leave
    # the schedule empty.
    enabled: Mapped[bool] = mapped_column(default=True, server_default=true())
    redact_pii: Mapped[bool] = mapped_column(default=True, server_default=true())
    schedule_interval_seconds: Mapped[int | None] = mapped_column(Integer)
    schedule_cron: Mapped[str | None] = mapped_column(String(100))
    cursor: Mapped[dict[str, Any] | None] = mapped_column(PortableJSON)
    cursor_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    run_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_action: Mapped[str | None] = mapped_column(String(20))
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    deferred_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    items_collected: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ImportAudit(Base):
    """One row per ingestion request (API batch or file import): who sent what, and what became of it."""

    __tablename__ = "imports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    source_name: Mapped[str | None] = mapped_column(String(200))
    filename: Mapped[str | None] = mapped_column(String(500))
    file_format: Mapped[str | None] = mapped_column(String(20))
    encoding: Mapped[str | None] = mapped_column(String(40))
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(200), default="api")
    status: Mapped[str] = mapped_column(String(20), default="running")
    received: Mapped[int] = mapped_column(Integer, default=0)
    stored: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    error_sample: Mapped[list[dict[str, Any]]] = mapped_column(PortableJSON, default=list)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Collector runs: the source, what started the run, pages fetched and how it ended.
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"))
    trigger: Mapped[str | None] = mapped_column(String(20))
    pages: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    malformed: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    near_duplicates: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    redacted: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    error: Mapped[str | None] = mapped_column(Text)
    error_action: Mapped[str | None] = mapped_column(String(20))

    __table_args__ = (
        Index("ix_imports_started_at", "started_at"),
        Index("ix_imports_source_started", "source_id", "started_at"),
    )


class FeedbackItem(Base):
    __tablename__ = "feedback_items"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="RESTRICT"))
    external_id: Mapped[str | None] = mapped_column(String(300))
    dedup_key: Mapped[str] = mapped_column(String(320))
    text: Mapped[str] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at_given: Mapped[bool] = mapped_column(default=True)
    utc_offset_minutes: Mapped[int | None] = mapped_column(SmallInteger)
    collected_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    rating_value: Mapped[float | None] = mapped_column(Float)
    rating_scale: Mapped[str | None] = mapped_column(String(10))
    location: Mapped[str | None] = mapped_column(String(200))
    product: Mapped[str | None] = mapped_column(String(200))
    channel: Mapped[str | None] = mapped_column(String(100))
    author_hash: Mapped[str | None] = mapped_column(String(64))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", PortableJSON, default=dict)
    content_hash: Mapped[str] = mapped_column(String(64))
    import_id: Mapped[int | None] = mapped_column(ForeignKey("imports.id", ondelete="SET NULL"))
    language_confidence: Mapped[float | None] = mapped_column(Float)
    language_given: Mapped[bool | None] = mapped_column()
    sentiment_label: Mapped[str | None] = mapped_column(String(10))
    sentiment_score: Mapped[float | None] = mapped_column(Float)
    sentiment_probabilities: Mapped[dict[str, float] | None] = mapped_column(PortableJSON)
    emotions: Mapped[dict[str, Any] | None] = mapped_column(PortableJSON)
    scored_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    score_model: Mapped[str | None] = mapped_column(String(200))
    touchpoint_taxonomy: Mapped[str | None] = mapped_column(String(120))
    topic_model_id: Mapped[int | None] = mapped_column(Integer)
    text_fingerprint: Mapped[str | None] = mapped_column(String(64))
    near_duplicate_of: Mapped[int | None] = mapped_column(BigId)

    source: Mapped[Source] = relationship(lazy="joined", innerjoin=True)

    __table_args__ = (
        UniqueConstraint("source_id", "dedup_key", name="uq_feedback_items_source_dedup"),
        UniqueConstraint("source_id", "external_id", name="uq_feedback_items_source_external"),
        Index("ix_feedback_items_created_id", "created_at", "id"),
        Index("ix_feedback_items_source_created", "source_id", "created_at"),
        Index("ix_feedback_items_location_created", "location", "created_at"),
        Index("ix_feedback_items_language_created", "language", "created_at"),
        Index("ix_feedback_items_content_hash", "content_hash"),
        Index("ix_feedback_items_import_id", "import_id"),
        Index("ix_feedback_items_sentiment_created", "sentiment_label", "created_at"),
        # Key drivers read the rated items of one scale in a period: the index holds the rating too.
        Index("ix_feedback_items_rating_created", "rating_scale", "created_at", "rating_value"),
        Index("ix_feedback_items_score_model_id", "score_model", "id"),
        Index("ix_feedback_items_touchpoint_taxonomy_id", "touchpoint_taxonomy", "id"),
        Index("ix_feedback_items_topic_model_id", "topic_model_id", "id"),
        Index("ix_feedback_items_text_fingerprint", "text_fingerprint"),
        # Search (`q`) is a case-insensitive substring in any script: trigrams serve ILIKE '%...%' on
        # PostgreSQL; SQLite scans.
        Index(
            "ix_feedback_items_text_trigram",
            "text",
            postgresql_using="gin",
            postgresql_ops={"text": "gin_trgm_ops"},
        ).ddl_if(dialect="postgresql"),
    )


class FeedbackSentence(Base):
    """One sentence of a feedback item with its own scores; offsets index the item's original text."""

    __tablename__ = "feedback_sentences"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(BigId, ForeignKey("feedback_items.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(SmallInteger)
    start: Mapped[int] = mapped_column(Integer)
    end: Mapped[int] = mapped_column(Integer)
    sentiment_label: Mapped[str] = mapped_column(String(10))
    sentiment_score: Mapped[float] = mapped_column(Float)
    sentiment_probabilities: Mapped[dict[str, float]] = mapped_column(PortableJSON)
    emotions: Mapped[dict[str, Any]] = mapped_column(PortableJSON)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = (UniqueConstraint("item_id", "position", name="uq_feedback_sentences_item_position"),)


class FeedbackEmotion(Base):
    """A detected emotion of an item (GoEmotions or the CX rollup), one row each, for filtering and counting."""

    __tablename__ = "feedback_emotions"

    item_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("feedback_items.id", ondelete="CASCADE"), primary_key=True
    )
    scheme: Mapped[str] = mapped_column(String(12), primary_key=True)
    label: Mapped[str] = mapped_column(String(40), primary_key=True)
    probability: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_feedback_emotions_label_item", "scheme", "label", "item_id"),)


class ItemEmbedding(Base):
    """The item-level embedding (float16), kept so that topics never re-encode."""

    __tablename__ = "item_embeddings"

    item_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("feedback_items.id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(String(200))
    dim: Mapped[int] = mapped_column(SmallInteger)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The locations an analyst key may see; None: every location.
    locations: Mapped[list[str] | None] = mapped_column(PortableJSON)


class TaxonomyVersion(Base):
    """A touchpoint taxonomy as an admin set it; the newest row is the one in force."""

    __tablename__ = "taxonomies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(PortableJSON)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ItemTouchpoint(Base):
    """A touchpoint of a feedback item: from its sentences (origin text) or its source's default."""

    __tablename__ = "item_touchpoints"

    item_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("feedback_items.id", ondelete="CASCADE"), primary_key=True
    )
    touchpoint: Mapped[str] = mapped_column(String(64), primary_key=True)
    score: Mapped[float] = mapped_column(Float)
    origin: Mapped[str] = mapped_column(String(10))

    __table_args__ = (Index("ix_item_touchpoints_touchpoint_item", "touchpoint", "item_id"),)


class SentenceTouchpoint(Base):
    """A touchpoint of one sentence (a review may praise the staff and blame the app)."""

    __tablename__ = "sentence_touchpoints"

    sentence_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("feedback_sentences.id", ondelete="CASCADE"), primary_key=True
    )
    touchpoint: Mapped[str] = mapped_column(String(64), primary_key=True)
    item_id: Mapped[int] = mapped_column(BigId, ForeignKey("feedback_items.id", ondelete="CASCADE"))
    score: Mapped[float] = mapped_column(Float)
    # The sentiment at this touchpoint when the sentence's clauses disagree (nlp/aspects.py); NULL: the
    # sentence's own. Read it through service.analytics.AT_TOUCHPOINT_LABEL.
    sentiment_label: Mapped[str | None] = mapped_column(String(10))
    sentiment_score: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (Index("ix_sentence_touchpoints_touchpoint_item", "touchpoint", "item_id"),)


class TopicModelRun(Base):
    """One topic-model fit (a refit): its settings, figures and the state online assignment needs."""

    __tablename__ = "topic_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(12), default="running")
    config: Mapped[dict[str, Any]] = mapped_column(PortableJSON, default=dict)
    embedding_model: Mapped[str | None] = mapped_column(String(200))
    sentences: Mapped[int] = mapped_column(Integer, default=0)
    fitted_on: Mapped[int] = mapped_column(Integer, default=0)
    topics: Mapped[int] = mapped_column(Integer, default=0)
    outliers: Mapped[int] = mapped_column(Integer, default=0)
    outliers_reduced: Mapped[int] = mapped_column(Integer, default=0)
    figures: Mapped[dict[str, Any]] = mapped_column(PortableJSON, default=dict)
    state: Mapped[bytes | None] = mapped_column(LargeBinary)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)


class Topic(Base):
    """A theme of feedback; its id survives refits for as long as the theme exists."""

    __tablename__ = "topics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(10), default="active")
    label: Mapped[str] = mapped_column(String(300))
    label_source: Mapped[str] = mapped_column(String(10), default="generated", server_default="generated")
    """``generated`` by each refit, or ``admin`` once renamed (a refit then keeps it)."""
    renamed_by: Mapped[str | None] = mapped_column(String(200))
    renamed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    keywords: Mapped[list[str]] = mapped_column(PortableJSON, default=list)
    keywords_by_language: Mapped[dict[str, list[str]]] = mapped_column(
        PortableJSON, default=dict, server_default="{}"
    )
    keyword_weights: Mapped[dict[str, float]] = mapped_column(PortableJSON, default=dict)
    representative: Mapped[str | None] = mapped_column(Text)
    representative_sentence_id: Mapped[int | None] = mapped_column(BigId)
    sentences: Mapped[int] = mapped_column(Integer, default=0)
    languages: Mapped[dict[str, int]] = mapped_column(PortableJSON, default=dict)
    centroid: Mapped[bytes] = mapped_column(LargeBinary)
    born_model_id: Mapped[int] = mapped_column(ForeignKey("topic_models.id", ondelete="CASCADE"))
    last_model_id: Mapped[int] = mapped_column(ForeignKey("topic_models.id", ondelete="CASCADE"))
    merged_into: Mapped[int | None] = mapped_column(ForeignKey("topics.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_topics_status", "status"),)


class TopicLineage(Base):
    """What a refit did to a topic: born, continued, merged into another, split off, died."""

    __tablename__ = "topic_lineage"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("topic_models.id", ondelete="CASCADE"))
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(10))
    related_topic_id: Mapped[int | None] = mapped_column(ForeignKey("topics.id", ondelete="SET NULL"))
    similarity: Mapped[float | None] = mapped_column(Float)
    detail: Mapped[dict[str, Any]] = mapped_column(PortableJSON, default=dict)

    __table_args__ = (Index("ix_topic_lineage_topic_model", "topic_id", "model_id"),)


class SentenceTopic(Base):
    """The topic of one sentence, with the facts pain-point aggregates need (no join to the sentence)."""

    __tablename__ = "sentence_topics"

    sentence_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("feedback_sentences.id", ondelete="CASCADE"), primary_key=True
    )
    item_id: Mapped[int] = mapped_column(BigId, ForeignKey("feedback_items.id", ondelete="CASCADE"))
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id", ondelete="CASCADE"))
    model_id: Mapped[int] = mapped_column(ForeignKey("topic_models.id", ondelete="CASCADE"))
    similarity: Mapped[float] = mapped_column(Float)
    origin: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    negative: Mapped[bool] = mapped_column()
    sentiment_score: Mapped[float] = mapped_column(Float)

    __table_args__ = (
        Index("ix_sentence_topics_topic_created", "topic_id", "created_at"),
        Index("ix_sentence_topics_topic_sentiment", "topic_id", "negative", "sentiment_score"),
        Index("ix_sentence_topics_item", "item_id"),
    )


class PainPointFact(Base):
    """A topic sentence at one of its touchpoints, with everything pain-point aggregates filter and sum.

    Written with the sentence's topic (refit or online assignment) and rewritten when the item is
    relabelled, so that listing pain points is one index range scan with no join.
    """

    __tablename__ = "pain_point_facts"

    sentence_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("feedback_sentences.id", ondelete="CASCADE"), primary_key=True
    )
    touchpoint: Mapped[str] = mapped_column(String(64), primary_key=True)
    origin: Mapped[str] = mapped_column(String(10))
    item_id: Mapped[int] = mapped_column(BigId, ForeignKey("feedback_items.id", ondelete="CASCADE"))
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    negative: Mapped[bool] = mapped_column()
    sentiment_score: Mapped[float] = mapped_column(Float)
    similarity: Mapped[float] = mapped_column(Float)
    location: Mapped[str | None] = mapped_column(String(200))
    source_id: Mapped[int] = mapped_column(Integer)
    language: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (
        Index(
            "ix_pain_point_facts_period",
            "created_at",
            "topic_id",
            "touchpoint",
            "negative",
            "sentiment_score",
        ),
        # Describing the listed pain points (stores, sources, languages, emotions, quotes) reads only this.
        Index(
            "ix_pain_point_facts_topic",
            "topic_id",
            "touchpoint",
            "negative",
            "created_at",
            "location",
            "source_id",
            "language",
            "item_id",
            "similarity",
            "sentence_id",
        ),
        Index("ix_pain_point_facts_item", "item_id"),
    )


class _DaySums:
    """What a daily rollup row sums: sentences, negatives, sentiment scores and the negatives' scores."""

    sentences: Mapped[int] = mapped_column(Integer)
    negative: Mapped[int] = mapped_column(Integer)
    score_sum: Mapped[float] = mapped_column(Float)
    negative_score: Mapped[float] = mapped_column(Float)


class PainPointDay(_DaySums, Base):
    """One day's pain-point facts of a topic at a touchpoint, summed; kept by triggers on the facts."""

    __tablename__ = "pain_point_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    topic_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    touchpoint: Mapped[str] = mapped_column(String(64), primary_key=True)


class PainPointDimensionDay(_DaySums, Base):
    """``PainPointDay`` per store, per source and per language, one dimension at a time (crossed, they would
    hold about as many rows as the facts); facts without a store are not in the store rows, and a fact
    without a language is under the value ``''``."""

    __tablename__ = "pain_point_dimension_days"

    dimension: Mapped[str] = mapped_column(String(10), primary_key=True)
    value: Mapped[str] = mapped_column(String(200), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    topic_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    touchpoint: Mapped[str] = mapped_column(String(64), primary_key=True)


class PainPointRollupControl(Base):
    """One row: whether the rollup triggers are suspended (only ever inside a refit's own transaction)."""

    __tablename__ = "pain_point_rollup_control"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    suspended: Mapped[bool] = mapped_column()


class PainPointState(Base):
    """Triage of one pain point (a topic at a touchpoint): status and owner; events keep the history."""

    __tablename__ = "pain_points"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id", ondelete="CASCADE"))
    touchpoint: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(14), default="open")
    owner: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("topic_id", "touchpoint", name="uq_pain_points_topic_touchpoint"),)


class PainPointEvent(Base):
    """One triage action on a pain point: acknowledged, assigned, commented, resolved, reopened."""

    __tablename__ = "pain_point_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pain_point_id: Mapped[int] = mapped_column(ForeignKey("pain_points.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(14))
    actor: Mapped[str] = mapped_column(String(200))
    owner: Mapped[str | None] = mapped_column(String(200))
    comment: Mapped[str | None] = mapped_column(Text)
    from_status: Mapped[str | None] = mapped_column(String(14))
    to_status: Mapped[str | None] = mapped_column(String(14))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_pain_point_events_pain_point_at", "pain_point_id", "at"),)


class AlertRule(Base):
    """An admin-defined condition that fires to a webhook once per episode."""

    __tablename__ = "alert_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    params: Mapped[dict[str, Any]] = mapped_column(PortableJSON, default=dict)
    webhook_url: Mapped[str] = mapped_column(String(2000))
    webhook_format: Mapped[str] = mapped_column(String(10), default="json")
    enabled: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Alert(Base):
    """One episode of a rule's condition holding for one subject: fired once, closed when it stops holding."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(300))
    open_subject: Mapped[str | None] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(10), default="firing")
    payload: Mapped[dict[str, Any]] = mapped_column(PortableJSON, default=dict)
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivery_status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        # At most one open episode per rule and subject: open_subject is NULL once the episode closes.
        UniqueConstraint("rule_id", "open_subject", name="uq_alerts_rule_open_subject"),
        Index("ix_alerts_fired_at", "fired_at"),
        Index("ix_alerts_delivery_next", "delivery_status", "next_attempt_at"),
    )


class AlertDelivery(Base):
    """One attempt to deliver an alert to its webhook, successful or not."""

    __tablename__ = "alert_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (Index("ix_alert_deliveries_alert", "alert_id"),)


class SchedulerRun(Base):
    """One run of a scheduler job for one tick; the unique key makes each tick run once across processes."""

    __tablename__ = "scheduler_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(200))
    scheduled_for: Mapped[datetime] = mapped_column(UTCDateTime)
    owner: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(12))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("job_id", "scheduled_for", name="uq_scheduler_runs_job_tick"),
        Index("ix_scheduler_runs_started_at", "started_at"),
    )


class FeedbackItemVersion(Base):
    """An earlier text and rating of an item its source changed (same source and external id), oldest
    first by ``version``; the item itself holds the current one."""

    __tablename__ = "feedback_item_versions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(BigId, ForeignKey("feedback_items.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    rating_value: Mapped[float | None] = mapped_column(Float)
    rating_scale: Mapped[str | None] = mapped_column(String(10))
    content_hash: Mapped[str] = mapped_column(String(64))
    # When this version was first seen (the item's collection, or the change before), and when the change
    # that replaced it was seen, by what ('api', 'import', 'collector', 'webhook') and which import or run.
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    replaced_at: Mapped[datetime] = mapped_column(UTCDateTime)
    change_source: Mapped[str] = mapped_column(String(20))
    import_id: Mapped[int | None] = mapped_column(ForeignKey("imports.id", ondelete="SET NULL"))

    __table_args__ = (
        UniqueConstraint("item_id", "version", name="uq_feedback_item_versions_item_version"),
        Index("ix_feedback_item_versions_import_id", "import_id"),
    )
