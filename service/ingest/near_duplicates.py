"""Near-duplicate flags across sources, with a per-store memory so that a long import does not re-read
every earlier copy of a text for each chunk."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from service.db.models import FeedbackItem

# The two earliest items of a fingerprint from two different sources, as (id, source_id), earliest first:
# enough to name, for any source, the earliest item of another source.
Earliest = list[tuple[int, int]]
LOOKUP_BATCH = 500
MEMORY_LIMIT = 50_000


def fold(earliest: Earliest, item_id: int, source_id: int) -> None:
    """Take one item into the two earliest items of distinct sources."""
    for position, (other_id, other_source) in enumerate(earliest):
        if other_source == source_id:
            if item_id < other_id:
                earliest[position] = (item_id, source_id)
                earliest.sort()
            return
    earliest.append((item_id, source_id))
    earliest.sort()
    del earliest[2:]


def original_of(earliest: Earliest, item_id: int, source_id: int) -> int | None:
    """The earliest item of another source that precedes ``item_id``, if any."""
    other = next((other_id for other_id, other_source in earliest if other_source != source_id), None)
    return other if other is not None and other < item_id else None


class NearDuplicateFlagger:
    """Points each new item at the earliest item of another source with the same words.

    It remembers what it has read: fingerprints seen before are brought up to date from the rows added
    since (by id), so a chunk costs a read of the new rows rather than of every copy stored so far. What it
    remembers assumes the session's transactions commit, like the store's source ids; a row of another
    writer committed after a later-numbered row was read is seen only by a later store.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self._earliest: dict[str, Earliest] = {}
        self._high_water: int | None = None

    def flag(self, stored: Iterable[tuple[int, int, str | None]]) -> int:
        """Flag the newly stored (id, source_id, fingerprint) items; return how many were flagged."""
        new_items = [(item_id, source_id, fp) for item_id, source_id, fp in stored if fp is not None]
        if not new_items:
            return 0
        if self._high_water is None:
            self._high_water = self.session.scalar(select(func.max(FeedbackItem.id))) or 0
        unknown = sorted({fp for _, _, fp in new_items if fp not in self._earliest})
        self._read_fingerprints(unknown)
        self._read_since_high_water()
        flags = []
        for item_id, source_id, fingerprint in new_items:
            original = original_of(self._earliest.get(fingerprint, []), item_id, source_id)
            if original is not None:
                flags.append({"id": item_id, "near_duplicate_of": original})
        if flags:
            self.session.execute(update(FeedbackItem).execution_options(synchronize_session=False), flags)
        self._forget_oldest()
        return len(flags)

    def forget(self, fingerprints: Iterable[str | None]) -> None:
        """Drop what is remembered of these fingerprints (an edited item left them); read again when met."""
        for fingerprint in fingerprints:
            if fingerprint is not None:
                self._earliest.pop(fingerprint, None)

    def _read_fingerprints(self, fingerprints: list[str]) -> None:
        for start in range(0, len(fingerprints), LOOKUP_BATCH):
            batch = fingerprints[start : start + LOOKUP_BATCH]
            self._earliest.update((fingerprint, []) for fingerprint in batch)
            rows = self.session.execute(
                select(FeedbackItem.text_fingerprint, FeedbackItem.source_id, func.min(FeedbackItem.id))
                .where(FeedbackItem.text_fingerprint.in_(batch))
                .group_by(FeedbackItem.text_fingerprint, FeedbackItem.source_id)
            )
            for found, source_id, item_id in rows:
                if found is not None:
                    fold(self._earliest[found], item_id, source_id)

    def _read_since_high_water(self) -> None:
        """Bring every remembered fingerprint up to date with the rows added since the last read."""
        rows = self.session.execute(
            select(FeedbackItem.id, FeedbackItem.source_id, FeedbackItem.text_fingerprint).where(
                FeedbackItem.id > self._high_water
            )
        )
        for item_id, source_id, fingerprint in rows:
            self._high_water = max(self._high_water or 0, item_id)
            earliest = self._earliest.get(fingerprint) if fingerprint is not None else None
            if earliest is not None:
                fold(earliest, item_id, source_id)

    def _forget_oldest(self) -> None:
        excess = len(self._earliest) - MEMORY_LIMIT
        for fingerprint in list(self._earliest)[: max(excess, 0)]:
            del self._earliest[fingerprint]
