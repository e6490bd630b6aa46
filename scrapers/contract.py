"""The one contract every collector follows: a configured source fetches a page from a cursor.

A source is built from a validated config (credentials resolved from the environment, never logged), and
``fetch_page(cursor)`` returns the records of one page plus the cursor to continue from. The runner in
``scrapers.runner`` drives every source with the same loop; the caller stores each page's records and its
cursor in one transaction, so a run that dies halfway resumes exactly where it stopped.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, ClassVar, TypeAlias

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

Cursor: TypeAlias = dict[str, Any]
"""A source's position, JSON-serialisable: a since-id, a timestamp, a page token, an IMAP UID..."""


class RatingScale(enum.StrEnum):
    """Rating scales cxmine understands, with their valid ranges."""

    STARS = "stars"
    NPS = "nps"
    CSAT = "csat"
    CES = "ces"

    @property
    def bounds(self) -> tuple[float, float]:
        return {
            RatingScale.STARS: (1.0, 5.0),
            RatingScale.NPS: (0.0, 10.0),
            RatingScale.CSAT: (1.0, 5.0),
            RatingScale.CES: (1.0, 7.0),
        }[self]


@dataclass(frozen=True, slots=True)
class Rating:
    """A score the customer gave, on a known scale."""

    value: float
    scale: RatingScale

    def __post_init__(self) -> None:
        low, high = self.scale.bounds
        if not low <= self.value <= high:
            raise ValueError(f"{self.scale.value} ratings run from {low:g} to {high:g}; got {self.value:g}")


@dataclass(frozen=True, slots=True)
class Record:
    """One piece of feedback as a collector found it: the foundation's feedback fields, nothing stored yet.

    ``author`` is the raw handle; the service keeps only a salted hash of it. ``touchpoint`` is filled from
    the source's default touchpoint by the runner when the source itself cannot tell.
    """

    external_id: str
    text: str
    created_at: datetime
    rating: Rating | None = None
    author: str | None = None
    location: str | None = None
    product: str | None = None
    app_version: str | None = None
    language: str | None = None
    url: str | None = None
    touchpoint: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.external_id:
            raise ValueError("external_id is empty")
        if not self.text.strip():
            raise ValueError("text is empty")
        if self.created_at.utcoffset() is None:
            raise ValueError("created_at has no timezone")


@dataclass(frozen=True, slots=True)
class Malformed:
    """A record the source returned that could not be read: reported, while the rest of the page is kept."""

    where: str
    reason: str
    external_id: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """What one fetch returned.

    ``cursor`` is where the next fetch starts; it is saved with the page's records. When ``done`` is true
    there is nothing more to fetch now, and ``cursor`` is where the next scheduled run starts.
    """

    records: list[Record]
    cursor: Cursor
    done: bool
    malformed: list[Malformed] = field(default_factory=list)


def _stripped_terms(value: list[str]) -> list[str]:
    terms = [term.strip() for term in value]
    if any(not term for term in terms):
        raise ValueError("a search term is empty")
    return terms


SearchTerms = Annotated[list[str], AfterValidator(_stripped_terms)]
"""Search terms in a source's config: stripped, none empty."""


class SourceConfig(BaseModel):
    """The settings of one source kind. Secret fields are ``SecretStr``: masked in every output."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_pages_per_run: int = Field(
        default=50, ge=1, le=100_000, description="Stop a run after this many pages."
    )
    requests_per_minute: float = Field(
        default=60.0, gt=0, le=60_000, description="This source's rate limit (requests a minute)."
    )
    timeout_seconds: float = Field(default=20.0, gt=0, le=300)


class Source(ABC):
    """A configured collector. Subclasses set ``kind``, ``config_model`` and implement ``fetch_page``."""

    kind: ClassVar[str]
    """Registry name, '<service>.v<N>' (e.g. 'app_store.v1')."""
    config_model: ClassVar[type[SourceConfig]]
    channel: ClassVar[str]
    """What kind of place the feedback comes from: 'app_store', 'social', 'survey', 'support', ..."""
    config: SourceConfig

    @abstractmethod
    def fetch_page(self, cursor: Cursor | None) -> Page:
        """Fetch the page that starts at ``cursor`` (None: the very first run)."""

    def close(self) -> None:  # noqa: B027 - most sources hold only the shared HTTP client
        """Release connections the source opened itself."""
