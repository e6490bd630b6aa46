"""File imports (CSV, XLSX, JSONL): parse, validate and store in committed chunks, with progress."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice

from sqlalchemy.orm import Session

from scrapers.contract import RatingScale
from scrapers.files import ColumnMapping, DecodedFile, FileFormat, ParsedRow, read_feedback_file
from service.db.models import ImportAudit
from service.errors import FieldError
from service.ingest.copy import import_connection
from service.ingest.schemas import FeedbackItemIn
from service.ingest.service import (
    FeedbackStore,
    ItemResult,
    finish_import,
    record_results,
    start_import,
    validate_item,
)

ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class ImportOptions:
    """How to read an uploaded file."""

    source: str
    filename: str | None = None
    content_type: str | None = None
    file_format: FileFormat | None = None
    mapping: ColumnMapping | None = None
    encoding: str | None = None
    rating_scale: RatingScale | None = None
    default_timezone: str = "UTC"
    date_format: str | None = None
    sheet: str | None = None


def estimate_rows(data: bytes) -> int:
    """A quick upper estimate of the data rows in a text export, for progress bars."""
    return max(data.count(b"\n"), data.count(b"\n\x00"), 1)


def import_file(
    session: Session,
    *,
    data: bytes,
    options: ImportOptions,
    author_salt: bytes,
    max_text_chars: int,
    chunk_rows: int,
    actor: str,
    api_key_id: int | None = None,
    on_progress: ProgressCallback | None = None,
) -> tuple[ImportAudit, DecodedFile, list[ItemResult]]:
    """Import a whole file; each chunk is committed, so a crash loses nothing already stored.

    Each chunk goes in as one bulk insertion (COPY into a staging table on PostgreSQL, one executemany
    on SQLite: ``service.ingest.copy``).

    File-level problems raise ``FileFormatError`` before anything is written.
    """
    decoded, rows = read_feedback_file(
        data,
        source=options.source,
        filename=options.filename,
        content_type=options.content_type,
        file_format=options.file_format,
        mapping=options.mapping,
        encoding=options.encoding,
        rating_scale=options.rating_scale,
        default_timezone=options.default_timezone,
        date_format=options.date_format,
        sheet=options.sheet,
    )
    audit = start_import(
        session,
        kind="file",
        actor=actor,
        api_key_id=api_key_id,
        source_name=options.source,
        filename=options.filename,
        file_format=decoded.format,
        encoding=decoded.encoding,
    )
    session.commit()
    store = FeedbackStore(session, author_salt=author_salt, change_source="import")
    results: list[ItemResult] = []
    with import_connection(session):
        try:
            while chunk := list(islice(rows, chunk_rows)):
                chunk_results, valid = _validate_chunk(chunk, max_text_chars=max_text_chars)
                for result in store.store(valid, import_id=audit.id):
                    chunk_results[result.index] = result
                ordered = [chunk_results[row.row_number] for row in chunk]
                record_results(audit, ordered, row_label="row")
                session.commit()
                results.extend(ordered)
                if on_progress is not None:
                    on_progress(len(chunk))
        except BaseException:
            session.rollback()
            finish_import(audit, status="failed")
            session.commit()
            raise
        finish_import(audit)
        session.commit()
    return audit, decoded, results


def _validate_chunk(
    chunk: list[ParsedRow], *, max_text_chars: int
) -> tuple[dict[int, ItemResult], list[tuple[int, FeedbackItemIn]]]:
    """The chunk's rejected rows as results, and its valid items by row number."""
    rejected: dict[int, ItemResult] = {}
    valid: list[tuple[int, FeedbackItemIn]] = []
    for row in chunk:
        if row.error is not None or row.item is None:
            error = FieldError(field="(row)", message=row.error or "unreadable row")
            rejected[row.row_number] = ItemResult(row.row_number, "rejected", errors=[error])
            continue
        outcome = validate_item(row.item, max_text_chars=max_text_chars)
        if isinstance(outcome, FeedbackItemIn):
            valid.append((row.row_number, outcome))
        else:
            rejected[row.row_number] = ItemResult(
                row.row_number, "rejected", errors=outcome, external_id=row.item.get("external_id")
            )
    return rejected, valid
