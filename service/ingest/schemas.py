"""The shape of one incoming feedback item, shared by the batch API, file imports and the demo loader."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from scrapers.contract import RatingScale
from service.config import MAX_TEXT_CHARS

ShortStr = Annotated[str, Field(min_length=1, max_length=200)]


class RatingIn(BaseModel):
    """A score the customer gave, on one of the known scales."""

    model_config = ConfigDict(extra="forbid")

    value: float
    scale: RatingScale

    @model_validator(mode="after")
    def _within_scale(self) -> RatingIn:
        low, high = self.scale.bounds
        if not math.isfinite(self.value) or not low <= self.value <= high:
            raise ValueError(f"{self.scale.value} ratings run from {low:g} to {high:g}; got {self.value:g}")
        return self


class FeedbackItemIn(BaseModel):
    """One piece of customer feedback as clients send it; only ``text`` and ``source`` are required."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    text: str = Field(description=f"The feedback text, 1 to {MAX_TEXT_CHARS} characters (configurable).")
    source: ShortStr = Field(description="Source name; a source named for the first time is created.")
    external_id: Annotated[str, Field(min_length=1, max_length=300)] | None = Field(
        default=None, description="The id in the source system; with source it makes re-sends idempotent."
    )
    created_at: datetime | None = Field(
        default=None, description="When the customer wrote it: ISO 8601 with a UTC offset."
    )
    rating: RatingIn | None = None
    location: ShortStr | None = None
    product: ShortStr | None = None
    channel: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    language: Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")] | None = Field(
        default=None, description="ISO 639-1 code (optionally with a region), when the sender knows it."
    )
    author: Annotated[str, Field(min_length=1, max_length=500)] | None = Field(
        default=None, description="Author handle or e-mail; only a salted hash of it is stored."
    )
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("text")
    @classmethod
    def _usable_text(cls, value: str, info: ValidationInfo) -> str:
        if "\x00" in value:
            raise ValueError("text contains a NUL byte (\\x00); remove it or fix the file's encoding")
        if not value:
            raise ValueError("text is empty")
        limit = (info.context or {}).get("max_text_chars", MAX_TEXT_CHARS)
        if len(value) > limit:
            raise ValueError(f"text is {len(value)} characters long; the limit is {limit}")
        return value

    @field_validator("created_at")
    @classmethod
    def _has_offset(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError("created_at needs a UTC offset, e.g. 2026-03-01T09:30:00+03:30 or ...Z")
        return value

    @field_validator("language")
    @classmethod
    def _lowercase_language(cls, value: str | None) -> str | None:
        return value.lower() if value else value

    @field_validator("metadata")
    @classmethod
    def _small_metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > 50:
            raise ValueError("metadata has more than 50 keys")
        return value
