"""Idempotent storage of feedback: validation, de-duplication and the import audit."""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import Insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from service.db.models import FeedbackItem, ImportAudit, Source, utcnow
from service.errors import FieldError, field_errors_from_pydantic
from service.ingest.copy import copy_insert, sqlite_insert
from service.ingest.edits import apply_edits, find_edits
from service.ingest.near_duplicates import NearDuplicateFlagger
from service.ingest.schemas import FeedbackItemIn

ItemStatus = Literal["stored", "updated", "duplicate", "rejected"]
ERROR_SAMPLE_SIZE = 50
_WHITESPACE = re.compile(r"\s+")


@dataclass
class ItemResult:
    """What became of one incoming item."""

    index: int
    status: ItemStatus
    id: int | None = None
    external_id: str | None = None
    errors: list[FieldError] = field(default_factory=list)

    @property
    def reason(self) -> str | None:
        """The rejection reasons as one line."""
        if not self.errors:
            return None
        return "; ".join(f"{e.field}: {e.message}" if e.field != "(root)" else e.message for e in self.errors)


@dataclass
class IngestTally:
    """Running counts of an ingestion."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    updated: int = 0

    def add(self, results: Iterable[ItemResult]) -> None:
        """Count a chunk of results."""
        for result in results:
            self.received += 1
            if result.status == "stored":
                self.stored += 1
            elif result.status == "duplicate":
                self.duplicates += 1
            elif result.status == "updated":
                self.updated += 1
            else:
                self.rejected += 1


def hash_author(author: str, *, salt: bytes) -> str:
    """A salted, keyed hash of an author handle: stable per deployment, not reversible without the salt."""
    normalised = unicodedata.normalize("NFKC", author.strip()).casefold()
    return hmac.new(salt, normalised.encode(), hashlib.sha256).hexdigest()


def content_hash(text: str) -> str:
    """A hash of the text alone, insensitive to case and spacing, for spotting copies across sources."""
    normalised = _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()
    return hashlib.sha256(normalised.encode()).hexdigest()


_URL = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
_HANDLE = re.compile(r"(?<!\w)[@#]\w+")
NEAR_DUPLICATE_MIN_CHARS = 24


def normalised_words(text: str) -> str:
    """The words of a text alone: no case, punctuation, links, @handles or emoji, single-spaced."""
    normalised = unicodedata.normalize("NFKC", _HANDLE.sub(" ", _URL.sub(" ", text))).casefold()
    return " ".join(normalised.translate(_WORD_CHARS).split())


class _WordChars(dict[int, int]):
    """A str.translate table that keeps letters, numbers and marks and blanks the rest, filled as met."""

    def __missing__(self, code: int) -> int:
        kept = code if unicodedata.category(chr(code))[0] in "LNM" else ord(" ")
        self[code] = kept
        return kept


_WORD_CHARS = _WordChars()


def text_fingerprint(text: str) -> str | None:
    """A hash of the words alone, for near-copies across sources (scripts/eval_near_duplicates.py); None for
    texts too short to call a copy ("great app!" is not one review pasted twice)."""
    words = normalised_words(text)
    if len(words) < NEAR_DUPLICATE_MIN_CHARS:
        return None
    return hashlib.sha256(words.encode()).hexdigest()[:32]


def dedup_key(item: FeedbackItemIn, *, author_hash: str | None) -> str:
    """The per-source identity of an item: its external id, else a hash of source, text, time and author."""
    if item.external_id is not None:
        return "x:" + item.external_id
    created = item.created_at.isoformat() if item.created_at else ""
    identity = "\x1f".join((item.source, item.text, created, author_hash or ""))
    return "h:" + hashlib.sha256(identity.encode()).hexdigest()


def validate_item(raw: Any, *, max_text_chars: int) -> FeedbackItemIn | list[FieldError]:
    """The item parsed and checked, or the reasons it cannot be accepted."""
    if not isinstance(raw, dict):
        return [
            FieldError(field="(root)", message=f"an item must be a JSON object, not {type(raw).__name__}")
        ]
    try:
        return FeedbackItemIn.model_validate(raw, context={"max_text_chars": max_text_chars})
    except ValidationError as exc:
        return field_errors_from_pydantic(exc.errors())


class FeedbackStore:
    """Stores validated items exactly once per (source, identity), creating sources on first sight; an item
    seen again under its external id with another text or rating is updated and its old one kept as a
    version (``service.ingest.edits``), ``change_source`` saying how the change came in."""

    def __init__(self, session: Session, *, author_salt: bytes, change_source: str = "api") -> None:
        self.session = session
        self.author_salt = author_salt
        self.change_source = change_source
        self._source_ids: dict[str, int] = {}
        self._flagger = NearDuplicateFlagger(session)
        self.near_duplicates = 0

    def source_id(self, name: str) -> int:
        """The id of source ``name``, created if this is the first time it is named."""
        cached = self._source_ids.get(name)
        if cached is not None:
            return cached
        self.session.execute(
            self._insert(Source)
            .values(name=name, kind="api", config={}, created_at=utcnow())
            .on_conflict_do_nothing(index_elements=["name"])
        )
        source_id = self.session.scalar(select(Source.id).where(Source.name == name))
        assert source_id is not None
        self._source_ids[name] = source_id
        return source_id

    def store(
        self, items: Sequence[tuple[int, FeedbackItemIn]], *, import_id: int | None
    ) -> list[ItemResult]:
        """Insert the items that are new, update the changed ones; report the others as duplicates (of rows
        or of each other).

        An external id sent again in the same batch with another text or rating is a later edit: each
        change starts a round of its own, stored after the round before, so every change makes a version.
        """
        rounds: list[list[tuple[int, FeedbackItemIn]]] = []
        last: dict[tuple[str, str], tuple[int, tuple[str, float | None, str | None]]] = {}
        for index, item in items:
            position = 0
            if item.external_id is not None:
                rating = (item.rating.value, item.rating.scale.value) if item.rating else (None, None)
                signature = (content_hash(item.text), *rating)
                position, seen = last.get((item.source, item.external_id), (-1, None))
                position += seen != signature
                last[(item.source, item.external_id)] = (position, signature)
            if position == len(rounds):
                rounds.append([])
            rounds[position].append((index, item))
        results = [result for batch in rounds for result in self._store_round(batch, import_id=import_id)]
        return sorted(results, key=lambda result: result.index)

    def _store_round(
        self, items: Sequence[tuple[int, FeedbackItemIn]], *, import_id: int | None
    ) -> list[ItemResult]:
        now = utcnow()
        pending: dict[tuple[int, str], dict[str, Any]] = {}
        key_of_index: dict[int, tuple[int, str]] = {}
        for index, item in items:
            author_hash = hash_author(item.author, salt=self.author_salt) if item.author else None
            key = (self.source_id(item.source), dedup_key(item, author_hash=author_hash))
            key_of_index[index] = key
            if key not in pending:
                pending[key] = self._row(
                    item,
                    source_id=key[0],
                    dedup=key[1],
                    author_hash=author_hash,
                    now=now,
                    import_id=import_id,
                )

        # Insert first and look up only what was not inserted: new rows cost one statement, and a
        # concurrent writer that wins a race simply makes our copy a duplicate of its row.
        ids: dict[tuple[int, str], int] = {}
        inserted: set[tuple[int, str]] = set()
        for row_id, source_id, dedup, is_new in self._insert_new(list(pending.values())):
            ids[(source_id, dedup)] = row_id
            if is_new:
                inserted.add((source_id, dedup))
        missing = [key for key in pending if key not in ids]
        if missing:
            ids.update(self._existing_ids(missing))
        edited, rewritten = self._apply_edits(pending, ids, inserted, now=now, import_id=import_id)
        self.near_duplicates += self._flagger.flag(
            (ids[key], key[0], pending[key]["text_fingerprint"]) for key in inserted | rewritten
        )

        results: list[ItemResult] = []
        for index, item in items:
            key = key_of_index[index]
            status: ItemStatus = "stored" if key in inserted else "updated" if key in edited else "duplicate"
            inserted.discard(key)
            edited.discard(key)
            results.append(
                ItemResult(
                    index=index,
                    status=status,
                    id=ids.get(key),
                    external_id=item.external_id,
                )
            )
        return results

    def _apply_edits(
        self,
        pending: dict[tuple[int, str], dict[str, Any]],
        ids: dict[tuple[int, str], int],
        inserted: set[tuple[int, str]],
        *,
        now: datetime,
        import_id: int | None,
    ) -> tuple[set[tuple[int, str]], set[tuple[int, str]]]:
        """Update the stored items the pending rows change; return the keys of those changed and of those
        whose text changed (to be flagged as near-duplicates again)."""
        key_of_id = {ids[key]: key for key in pending if key in ids and key not in inserted}
        edits = find_edits(
            self.session, candidates={item_id: pending[key] for item_id, key in key_of_id.items()}
        )
        apply_edits(self.session, edits=edits, change_source=self.change_source, import_id=import_id, now=now)
        self._flagger.forget(edit.old_fingerprint for edit in edits if edit.text_changed)
        edited = {key_of_id[edit.item_id] for edit in edits}
        return edited, {key_of_id[edit.item_id] for edit in edits if edit.text_changed}

    def _insert_new(self, rows: list[dict[str, Any]]) -> list[tuple[int, int, str, bool]]:
        """Insert rows whose (source, dedup key) is new: (id, source_id, dedup_key, inserted) of those inserted
        and of any already stored rows the insertion saw (PostgreSQL); the others are looked up after."""
        if not rows:
            return []
        if self.session.get_bind().dialect.name == "postgresql":
            return copy_insert(self.session, rows)
        return sqlite_insert(self.session, rows)

    def _existing_ids(self, keys: Iterable[tuple[int, str]]) -> dict[tuple[int, str], int]:
        by_source: dict[int, list[str]] = {}
        for source_id, dedup in keys:
            by_source.setdefault(source_id, []).append(dedup)
        found: dict[tuple[int, str], int] = {}
        for source_id, dedups in by_source.items():
            for start in range(0, len(dedups), 500):
                rows = self.session.execute(
                    select(FeedbackItem.id, FeedbackItem.dedup_key).where(
                        FeedbackItem.source_id == source_id,
                        FeedbackItem.dedup_key.in_(dedups[start : start + 500]),
                    )
                )
                for row_id, dedup in rows:
                    found[(source_id, dedup)] = row_id
        return found

    def _row(
        self,
        item: FeedbackItemIn,
        *,
        source_id: int,
        dedup: str,
        author_hash: str | None,
        now: datetime,
        import_id: int | None,
    ) -> dict[str, Any]:
        created = item.created_at or now
        offset = created.utcoffset()
        return {
            "source_id": source_id,
            "external_id": item.external_id,
            "dedup_key": dedup,
            "text": item.text,
            "language": item.language,
            "created_at": created,
            "created_at_given": item.created_at is not None,
            "utc_offset_minutes": int(offset.total_seconds() // 60) if offset is not None else None,
            "collected_at": now,
            "rating_value": item.rating.value if item.rating else None,
            "rating_scale": item.rating.scale.value if item.rating else None,
            "location": item.location,
            "product": item.product,
            "channel": item.channel,
            "author_hash": author_hash,
            "metadata": item.metadata,
            "content_hash": content_hash(item.text),
            "import_id": import_id,
            "text_fingerprint": text_fingerprint(item.text),
        }

    def _insert(self, target: Any) -> Any:
        dialect = self.session.get_bind().dialect.name
        insert: Callable[[Any], Insert] = postgresql.insert if dialect == "postgresql" else sqlite.insert
        return insert(target)


def start_import(
    session: Session,
    *,
    kind: str,
    actor: str,
    api_key_id: int | None = None,
    source_name: str | None = None,
    filename: str | None = None,
    file_format: str | None = None,
    encoding: str | None = None,
) -> ImportAudit:
    """Open an audit row for an ingestion, so that every stored item can be traced to it."""
    audit = ImportAudit(
        kind=kind,
        actor=actor,
        api_key_id=api_key_id,
        source_name=source_name,
        filename=filename,
        file_format=file_format,
        encoding=encoding,
        status="running",
        error_sample=[],
    )
    session.add(audit)
    session.flush()
    return audit


def record_results(audit: ImportAudit, results: Sequence[ItemResult], *, row_label: str = "item") -> None:
    """Add a chunk's counts and a sample of its rejections to the audit row."""
    tally = IngestTally(audit.received, audit.stored, audit.duplicates, audit.rejected)
    tally.add(results)
    audit.received, audit.stored = tally.received, tally.stored
    audit.duplicates, audit.rejected = tally.duplicates, tally.rejected
    room = ERROR_SAMPLE_SIZE - len(audit.error_sample)
    if room > 0:
        sample = [{row_label: r.index, "reason": r.reason} for r in results if r.status == "rejected"][:room]
        if sample:
            audit.error_sample = [*audit.error_sample, *sample]


def finish_import(audit: ImportAudit, *, status: str = "completed") -> None:
    """Close the audit row."""
    audit.status = status
    audit.finished_at = utcnow()


def ingest_batch(
    session: Session,
    *,
    raw_items: Sequence[Any],
    author_salt: bytes,
    max_text_chars: int,
    actor: str,
    api_key_id: int | None = None,
) -> tuple[ImportAudit, list[ItemResult]]:
    """Validate and store one batch in a single transaction; each item gets its own result."""
    audit = start_import(session, kind="batch", actor=actor, api_key_id=api_key_id)
    store = FeedbackStore(session, author_salt=author_salt)
    results: dict[int, ItemResult] = {}
    valid: list[tuple[int, FeedbackItemIn]] = []
    for index, raw in enumerate(raw_items):
        outcome = validate_item(raw, max_text_chars=max_text_chars)
        if isinstance(outcome, FeedbackItemIn):
            valid.append((index, outcome))
        else:
            external_id = raw.get("external_id") if isinstance(raw, dict) else None
            results[index] = ItemResult(
                index=index,
                status="rejected",
                errors=outcome,
                external_id=external_id if isinstance(external_id, str) else None,
            )
    for result in store.store(valid, import_id=audit.id):
        results[result.index] = result
    ordered = [results[index] for index in range(len(raw_items))]
    sources = {item.source for _, item in valid}
    audit.source_name = next(iter(sources)) if len(sources) == 1 else None
    record_results(audit, ordered)
    finish_import(audit)
    session.commit()
    return audit, ordered
