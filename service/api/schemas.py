"""Response and request bodies of the v1 API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from scrapers.contract import RatingScale
from service.db.models import Role
from service.errors import FieldError
from service.ingest.schemas import FeedbackItemIn, RatingIn

ItemSchema = WithJsonSchema(
    {
        "type": "object",
        "description": "A feedback item; see the FeedbackItemIn schema.",
        "$ref": "#/components/schemas/FeedbackItemIn",
    }
)


class FeedbackBatchIn(BaseModel):
    """A batch of feedback items. Items are validated one by one, so one bad item never sinks the rest."""

    items: list[Annotated[Any, ItemSchema]] = Field(description="Up to 1,000 items (configurable).")


class ItemResultOut(BaseModel):
    index: int = Field(description="Position in the batch (0-based), or the row number in an imported file.")
    status: Literal["stored", "updated", "duplicate", "rejected"] = Field(
        description="updated: an item already stored under this external id had another text or rating; "
        "it now has this one and keeps the old one as a version."
    )
    id: int | None = Field(
        default=None, description="The stored item's id (for duplicates and updates: the earlier copy)."
    )
    external_id: str | None = None
    reason: str | None = None
    errors: list[FieldError] | None = None


class IngestSummary(BaseModel):
    import_id: int
    received: int
    stored: int
    duplicates: int
    rejected: int
    updated: int = Field(default=0, description="Items already stored whose text or rating changed.")


class BatchResultOut(IngestSummary):
    items: list[ItemResultOut]


class ImportResultOut(IngestSummary):
    filename: str | None
    format: str
    encoding: str | None
    delimiter: str | None
    rows: list[ItemResultOut] = Field(
        description="Per row: every row, or only the problems with report=problems."
    )


class RatingOut(BaseModel):
    value: float
    scale: RatingScale


class FeedbackOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    source: str
    external_id: str | None
    text: str
    language: str | None
    created_at: datetime = Field(description="When the customer wrote it, in the offset it was given with.")
    created_at_given: bool = Field(
        description="False when no time was given and the collection time was used."
    )
    collected_at: datetime
    rating: RatingOut | None
    location: str | None
    product: str | None
    channel: str | None
    author_ref: str | None = Field(description="Salted hash of the author handle.")
    metadata: dict[str, Any]
    content_hash: str
    import_id: int | None
    near_duplicate_of: int | None = Field(
        default=None, description="An earlier item from another source with the same words (cross-posts)."
    )
    language_confidence: float | None = Field(default=None, description="1.0 when the sender gave it.")
    sentiment: StoredSentimentOut | None = Field(default=None, description="Null until scored.")
    emotions: StoredEmotionsOut | None = None
    scored_at: datetime | None = None
    score_model: str | None = Field(default=None, description="The pipeline version that scored it.")
    sentences: list[StoredSentenceOut] | None = Field(default=None, description="With sentences=true.")
    touchpoints: list[TouchpointScoreOut] = Field(
        default_factory=list, description="Touchpoints the item is about, strongest first."
    )
    topic: ItemTopicOut | None = Field(
        default=None, description="The topic most of its sentences are about (null before the first refit)."
    )
    topics: list[ItemTopicOut] = Field(default_factory=list, description="Every topic of its sentences.")
    edited: bool = Field(
        default=False, description="True when its source changed its text or rating after it was stored."
    )
    versions: list[FeedbackVersionOut] | None = Field(
        default=None,
        description="One item only: its earlier texts and ratings, oldest first (empty if none).",
    )


class FeedbackVersionOut(BaseModel):
    version: int = Field(description="1 for the text first stored; the item itself holds the current one.")
    text: str
    rating: RatingOut | None
    content_hash: str
    seen_at: datetime = Field(description="When this version was first stored.")
    replaced_at: datetime = Field(description="When the change that replaced it was seen.")
    change_source: str = Field(description="How the change came in: api, import, collector or webhook.")
    import_id: int | None = Field(description="The import, collector run or webhook push that changed it.")


class ItemTopicOut(BaseModel):
    id: int
    label: str
    sentences: int = Field(description="How many of the item's sentences are about it.")


class TouchpointScoreOut(BaseModel):
    touchpoint: str
    score: float


class StoredSentimentOut(BaseModel):
    label: str
    score: float
    probabilities: dict[str, float]


class StoredEmotionsOut(BaseModel):
    detected: list[str] = Field(description="GoEmotions labels that pass their thresholds.")
    cx_detected: list[str] = Field(description="The CX rollup labels detected.")
    top: dict[str, float] = Field(description="The five strongest GoEmotions probabilities.")
    cx: dict[str, float] = Field(description="Every CX rollup label's probability.")


class SentenceTouchpointOut(BaseModel):
    touchpoint: str
    score: float
    sentiment_label: str = Field(
        description="The sentiment at this touchpoint: its clause's when the sentence's clauses disagree "
        "('the staff were lovely but the app kept crashing'), else the sentence's own."
    )
    from_clauses: bool = Field(description="True when the label comes from the sentence's clauses.")


class StoredSentenceOut(BaseModel):
    position: int
    text: str
    start: int
    end: int
    sentiment: StoredSentimentOut
    emotions: StoredEmotionsOut
    touchpoints: list[SentenceTouchpointOut] = Field(default_factory=list)


class FeedbackPage(BaseModel):
    items: list[FeedbackOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class ImportAuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    source_name: str | None
    filename: str | None
    file_format: str | None
    encoding: str | None
    actor: str
    status: str
    received: int
    stored: int
    duplicates: int
    rejected: int
    updated: int = Field(default=0, description="Items already stored whose text or rating it changed.")
    error_sample: list[dict[str, Any]]
    started_at: datetime
    finished_at: datetime | None


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    role: Role
    locations: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list,
        max_length=500,
        description="Limit an analyst key to these locations (a store manager's key); empty: every location.",
    )


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    role: Role
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    locations: list[str] | None = Field(
        default=None, description="The locations the key may see; null: every location."
    )


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The key itself. Shown only in this response; store it now.")


__all__ = ["FeedbackItemIn", "RatingIn"]
