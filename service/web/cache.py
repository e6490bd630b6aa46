"""Page aggregates cached until the data they read changes.

A dashboard is read far more often than its data changes, and at a million items an aggregate takes
seconds. Each cached value is keyed by what it was computed from (the function, its scope and options) and
by the data's watermark: the newest scored sentence, pain-point fact, topic refit, taxonomy, triage event
and alert. Every one is a primary-key maximum, read at most once per ``max_age`` seconds for the whole
process, so a cached page is served without scanning anything, and the first view after new data arrives
recomputes it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.db.models import (
    Alert,
    FeedbackSentence,
    PainPointEvent,
    PainPointFact,
    TaxonomyVersion,
    TopicModelRun,
)

T = TypeVar("T")


@dataclass(frozen=True)
class DataWatermark:
    """The newest row of every table the dashboard's aggregates read (None: the table is empty)."""

    sentence: int | None
    fact: int | None
    topic_model: int | None
    topic_model_done: int | None
    taxonomy: int | None
    triage_event: int | None
    alert: int | None


def read_watermark(session: Session) -> DataWatermark:
    """Seven primary-key maxima in one round trip."""
    row = session.execute(
        select(
            select(func.max(FeedbackSentence.id)).scalar_subquery(),
            select(func.max(PainPointFact.sentence_id)).scalar_subquery(),
            select(func.max(TopicModelRun.id)).scalar_subquery(),
            select(func.max(TopicModelRun.id))
            .where(TopicModelRun.finished_at.is_not(None))
            .scalar_subquery(),
            select(func.max(TaxonomyVersion.id)).scalar_subquery(),
            select(func.max(PainPointEvent.id)).scalar_subquery(),
            select(func.max(Alert.id)).scalar_subquery(),
        )
    ).one()
    return DataWatermark(*row)


class AggregateCache:
    """A bounded LRU of aggregates, valid while the data watermark stays where it was."""

    def __init__(self, *, max_entries: int = 512, watermark_max_age: float = 2.0) -> None:
        self._max_entries = max_entries
        self._max_age = watermark_max_age
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._watermark: DataWatermark | None = None
        self._watermark_read_at = float("-inf")
        self.hits = 0
        self.misses = 0

    def watermark(self, session: Session) -> DataWatermark:
        """The data watermark, re-read at most every ``max_age`` seconds; a move empties the cache."""
        with self._lock:
            if time.monotonic() - self._watermark_read_at < self._max_age and self._watermark is not None:
                return self._watermark
        current = read_watermark(session)
        with self._lock:
            if current != self._watermark:
                self._entries.clear()
                self._watermark = current
            self._watermark_read_at = time.monotonic()
        return current

    def get(self, session: Session, key: Hashable, compute: Callable[[], T]) -> T:
        """The cached value of ``key``, computing (and keeping) it when the data moved or it is new."""
        watermark = self.watermark(session)
        full_key = (watermark, key)
        with self._lock:
            if full_key in self._entries:
                self._entries.move_to_end(full_key)
                self.hits += 1
                return self._entries[full_key]  # type: ignore[no-any-return]
        value = compute()
        with self._lock:
            self.misses += 1
            self._entries[full_key] = value
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return value

    def expire_watermark(self) -> None:
        """Re-read the watermark on the next look-up (after a write of this process, so it shows at once)."""
        with self._lock:
            self._watermark_read_at = float("-inf")
