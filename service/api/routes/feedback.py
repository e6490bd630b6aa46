"""Feedback ingestion (batch and file import) and listing."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from sqlalchemy.orm import Session

from nlp.datasets import CX_EMOTION_ROLLUP, GOEMOTIONS_LABELS
from scrapers.contract import RatingScale
from scrapers.files import FileFormat, FileFormatError, parse_mapping
from service.access import can_see_location, public_topic_labels
from service.api.deps import Caller, IngestDep, ReaderDep, SessionDep, SettingsDep, caller_filter
from service.api.problems import ProblemError, require_utc_offsets
from service.api.schemas import (
    BatchResultOut,
    FeedbackBatchIn,
    FeedbackOut,
    FeedbackPage,
    FeedbackVersionOut,
    ImportResultOut,
    ItemResultOut,
    ItemTopicOut,
    RatingOut,
    SentenceTouchpointOut,
    StoredEmotionsOut,
    StoredSentenceOut,
    StoredSentimentOut,
    TouchpointScoreOut,
)
from service.db.models import FeedbackItem, FeedbackItemVersion, FeedbackSentence
from service.errors import FieldError
from service.feedback import (
    FeedbackFilter,
    InvalidCursorError,
    emotion_scheme,
    list_feedback,
    local_created_at,
    sentences_of,
)
from service.ingest.edits import edited_item_ids, versions_of
from service.ingest.imports import ImportOptions, import_file
from service.ingest.service import ItemResult, ingest_batch
from service.topics import ItemTopic, topics_of
from service.touchpoints import sentence_touchpoints_of, touchpoints_of

router = APIRouter(prefix="/v1/feedback", tags=["feedback"])


def _visible_topics(session: Session, caller: Caller, item_ids: list[int]) -> dict[int, list[ItemTopic]]:
    """Each item's topics, labelled as the caller may see them (a scoped key: keywords, not sentences)."""
    found = topics_of(session, item_ids=item_ids)
    if not caller.scoped:
        return found
    ids = {t.topic_id for topics in found.values() for t in topics}
    labels = public_topic_labels(session, topic_ids=ids, allowed=caller.locations)
    return {
        item_id: [
            dataclasses.replace(t, label=labels[t.topic_id][0] if t.topic_id in labels else "")
            for t in topics
        ]
        for item_id, topics in found.items()
    }


def _result_out(result: ItemResult) -> ItemResultOut:
    return ItemResultOut(
        index=result.index,
        status=result.status,
        id=result.id,
        external_id=result.external_id,
        reason=result.reason,
        errors=result.errors or None,
    )


def _rating_out(value: float | None, scale: str | None) -> RatingOut | None:
    return (
        RatingOut(value=value, scale=RatingScale(scale)) if value is not None and scale is not None else None
    )


def _versions_out(versions: list[FeedbackItemVersion]) -> list[FeedbackVersionOut]:
    return [
        FeedbackVersionOut(
            version=v.version,
            text=v.text,
            rating=_rating_out(v.rating_value, v.rating_scale),
            content_hash=v.content_hash,
            seen_at=v.seen_at,
            replaced_at=v.replaced_at,
            change_source=v.change_source,
            import_id=v.import_id,
        )
        for v in versions
    ]


def feedback_out(
    item: FeedbackItem,
    *,
    touchpoints: list[tuple[str, float]] | None = None,
    topics: list[ItemTopic] | None = None,
    sentences: list[FeedbackSentence] | None = None,
    sentence_touchpoints: dict[int, list[tuple[str, float, str | None]]] | None = None,
    edited: bool = False,
    versions: list[FeedbackItemVersion] | None = None,
) -> FeedbackOut:
    """The API view of a stored item (and its sentences with their touchpoints, when given)."""
    sentiment = None
    if item.sentiment_label is not None and item.sentiment_score is not None:
        sentiment = StoredSentimentOut(
            label=item.sentiment_label,
            score=item.sentiment_score,
            probabilities=item.sentiment_probabilities or {},
        )
    rating = _rating_out(item.rating_value, item.rating_scale)
    return FeedbackOut(
        id=item.id,
        source=item.source.name,
        external_id=item.external_id,
        text=item.text,
        language=item.language,
        created_at=local_created_at(item),
        created_at_given=item.created_at_given,
        collected_at=item.collected_at,
        rating=rating,
        location=item.location,
        product=item.product,
        channel=item.channel,
        author_ref=item.author_hash,
        metadata=item.meta,
        content_hash=item.content_hash,
        import_id=item.import_id,
        near_duplicate_of=item.near_duplicate_of,
        language_confidence=item.language_confidence,
        sentiment=sentiment,
        emotions=StoredEmotionsOut.model_validate(item.emotions) if item.emotions else None,
        scored_at=item.scored_at,
        score_model=item.score_model,
        touchpoints=[TouchpointScoreOut(touchpoint=t, score=round(s, 4)) for t, s in touchpoints or []],
        topic=ItemTopicOut(id=topics[0].topic_id, label=topics[0].label, sentences=topics[0].sentences)
        if topics
        else None,
        topics=[ItemTopicOut(id=t.topic_id, label=t.label, sentences=t.sentences) for t in topics or []],
        edited=edited or bool(versions),
        versions=None if versions is None else _versions_out(versions),
        sentences=None
        if sentences is None
        else [
            StoredSentenceOut(
                position=s.position,
                text=item.text[s.start : s.end],
                start=s.start,
                end=s.end,
                sentiment=StoredSentimentOut(
                    label=s.sentiment_label, score=s.sentiment_score, probabilities=s.sentiment_probabilities
                ),
                emotions=StoredEmotionsOut.model_validate(s.emotions),
                touchpoints=[
                    SentenceTouchpointOut(
                        touchpoint=touchpoint,
                        score=round(score, 4),
                        sentiment_label=label or s.sentiment_label,
                        from_clauses=label is not None,
                    )
                    for touchpoint, score, label in (sentence_touchpoints or {}).get(s.id, [])
                ],
            )
            for s in sentences
        ],
    )


@router.post("", summary="Store a batch of feedback items (idempotent)")
def post_feedback(
    batch: FeedbackBatchIn, session: SessionDep, settings: SettingsDep, caller: IngestDep
) -> BatchResultOut:
    """Store up to 1,000 items; re-sending the same items stores nothing twice."""
    if len(batch.items) > settings.max_batch_items:
        raise ProblemError(
            413,
            f"A batch holds at most {settings.max_batch_items} items; this one has {len(batch.items)}.",
            slug="batch-too-large",
        )
    audit, results = ingest_batch(
        session,
        raw_items=batch.items,
        author_salt=settings.author_salt_bytes(),
        max_text_chars=settings.max_text_chars,
        actor=f"key:{caller.name}",
        api_key_id=caller.key_id,
    )
    return BatchResultOut(
        import_id=audit.id,
        received=audit.received,
        stored=audit.stored,
        duplicates=audit.duplicates,
        rejected=audit.rejected,
        updated=sum(1 for r in results if r.status == "updated"),
        items=[_result_out(r) for r in results],
    )


@router.post("/import", summary="Import a CSV, XLSX or JSONL export with a column mapping")
def import_feedback_file(
    session: SessionDep,
    settings: SettingsDep,
    caller: IngestDep,
    file: Annotated[UploadFile, File(description="CSV/TSV, XLSX or JSONL file.")],
    source: Annotated[str, Form(min_length=1, max_length=200, description="Source name for every row.")],
    mapping: Annotated[
        str | None,
        Form(
            description="Columns to fields, e.g. `text=comment,created_at=date,rating=score,location=store`. "
            "Optional for JSONL and for recognised survey exports."
        ),
    ] = None,
    file_format: Annotated[FileFormat | None, Form(alias="format")] = None,
    encoding: Annotated[str | None, Form(description="Text encoding; detected when omitted.")] = None,
    rating_scale: Annotated[RatingScale | None, Form()] = None,
    timezone: Annotated[str, Form(description="IANA zone for dates without an offset.")] = "UTC",
    date_format: Annotated[str | None, Form(description="strptime format, e.g. %d/%m/%Y %H:%M.")] = None,
    sheet: Annotated[str | None, Form(description="XLSX sheet name; the first sheet when omitted.")] = None,
    report: Annotated[Literal["all", "problems"], Query(description="Which rows to list.")] = "all",
) -> ImportResultOut:
    """Import every good row; bad rows are listed with their reasons and never block the others."""
    try:
        options = ImportOptions(
            source=source,
            filename=file.filename,
            content_type=file.content_type,
            file_format=file_format,
            mapping=parse_mapping(mapping) if mapping else None,
            encoding=encoding,
            rating_scale=rating_scale,
            default_timezone=timezone,
            date_format=date_format,
            sheet=sheet,
        )
        audit, decoded, results = import_file(
            session,
            data=file.file.read(),
            options=options,
            author_salt=settings.author_salt_bytes(),
            max_text_chars=settings.max_text_chars,
            chunk_rows=settings.import_chunk_rows,
            actor=f"key:{caller.name}",
            api_key_id=caller.key_id,
        )
    except FileFormatError as exc:
        raise ProblemError(
            422,
            str(exc),
            slug="unreadable-file",
            title="The file cannot be imported",
            errors=[FieldError(field="file", message=str(exc))],
        ) from exc
    rows = results if report == "all" else [r for r in results if r.status != "stored"]
    return ImportResultOut(
        import_id=audit.id,
        received=audit.received,
        stored=audit.stored,
        duplicates=audit.duplicates,
        rejected=audit.rejected,
        updated=sum(1 for r in results if r.status == "updated"),
        filename=file.filename,
        format=decoded.format,
        encoding=decoded.encoding,
        delimiter=decoded.delimiter,
        rows=[_result_out(r) for r in rows],
    )


@router.get("", summary="List feedback, newest first, with filters and cursor pagination")
def get_feedback(
    session: SessionDep,
    caller: ReaderDep,
    since: Annotated[
        datetime | None, Query(description="Created at or after (ISO 8601 with offset).")
    ] = None,
    until: Annotated[datetime | None, Query(description="Created before (ISO 8601 with offset).")] = None,
    source: Annotated[list[str] | None, Query(description="Source name; repeat for several.")] = None,
    location: Annotated[list[str] | None, Query(description="Location; repeat for several.")] = None,
    language: Annotated[list[str] | None, Query(description="ISO 639-1 code; repeat for several.")] = None,
    q: Annotated[
        str | None, Query(min_length=1, max_length=200, description="Text contains (any case).")
    ] = None,
    sentiment: Annotated[
        list[Literal["negative", "neutral", "positive", "mixed"]] | None,
        Query(description="Review sentiment; repeat for several."),
    ] = None,
    emotion: Annotated[
        list[str] | None,
        Query(
            description="A CX emotion (anger, frustration, ...) or a GoEmotions label; repeat for several."
        ),
    ] = None,
    scored: Annotated[bool | None, Query(description="Only scored (true) or unscored (false) items.")] = None,
    touchpoint: Annotated[list[str] | None, Query(description="Touchpoint id; repeat for several.")] = None,
    topic: Annotated[list[int] | None, Query(description="Topic id; repeat for several.")] = None,
    pain_point: Annotated[
        str | None,
        Query(
            pattern=r"^[0-9]+:[a-z][a-z0-9_]*$",
            description="`TOPIC:TOUCHPOINT`: items with a negative sentence of that topic at that touchpoint.",
        ),
    ] = None,
    import_id: Annotated[
        int | None, Query(description="Only what one import, collector run or webhook push stored.")
    ] = None,
    near_duplicate: Annotated[
        bool | None, Query(description="Only copies of an earlier item from another source (true), or none.")
    ] = None,
    rating_scale: Annotated[
        list[RatingScale] | None, Query(description="Only items rated on this scale; repeat for several.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> FeedbackPage:
    """A page of stored feedback and the cursor of the next page."""
    require_utc_offsets(since=since, until=until)
    unknown = [label for label in emotion or () if emotion_scheme(label) is None]
    if unknown:
        known = ", ".join([*CX_EMOTION_ROLLUP, *(g for g in GOEMOTIONS_LABELS if g not in CX_EMOTION_ROLLUP)])
        raise ProblemError(
            422,
            f"unknown emotion {unknown[0]!r}; known: {known}",
            slug="validation-error",
            errors=[FieldError(field="query.emotion", message=f"unknown emotion {unknown[0]!r}")],
        )
    filters = FeedbackFilter(
        since=since,
        until=until,
        sources=tuple(source or ()),
        locations=tuple(location or ()),
        languages=tuple(code.lower() for code in language or ()),
        text_contains=q,
        sentiments=tuple(sentiment or ()),
        emotions=tuple(emotion or ()),
        scored=scored,
        touchpoints=tuple(touchpoint or ()),
        topics=tuple(topic or ()),
        pain_point=(int(pain_point.split(":")[0]), pain_point.split(":")[1]) if pain_point else None,
        import_id=import_id,
        near_duplicate=near_duplicate,
        rating_scales=tuple(scale.value for scale in rating_scale or ()),
    )
    filters = caller_filter(caller, filters)
    try:
        items, next_cursor = list_feedback(session, filters=filters, limit=limit, cursor=cursor)
    except InvalidCursorError as exc:
        raise ProblemError(
            400, str(exc), slug="invalid-cursor", errors=[FieldError(field="query.cursor", message=str(exc))]
        ) from exc
    ids = [item.id for item in items]
    found, item_topics = touchpoints_of(session, item_ids=ids), _visible_topics(session, caller, ids)
    edited = edited_item_ids(session, item_ids=ids)
    return FeedbackPage(
        items=[
            feedback_out(
                item,
                touchpoints=found.get(item.id),
                topics=item_topics.get(item.id),
                edited=item.id in edited,
            )
            for item in items
        ],
        next_cursor=next_cursor,
    )


@router.get("/{item_id}", summary="One feedback item")
def get_feedback_item(
    item_id: int,
    session: SessionDep,
    caller: ReaderDep,
    sentences: Annotated[bool, Query(description="Include the scored sentences.")] = False,
) -> FeedbackOut:
    """A stored item by id, optionally with its sentences and their scores."""
    item = session.get(FeedbackItem, item_id)
    if item is None or not can_see_location(item.location, allowed=caller.locations):
        raise ProblemError(404, f"No feedback item has id {item_id}.")
    stored = sentences_of(session, item_id=item_id) if sentences else None
    return feedback_out(
        item,
        touchpoints=touchpoints_of(session, item_ids=[item_id]).get(item_id),
        topics=_visible_topics(session, caller, [item_id]).get(item_id),
        sentences=stored,
        sentence_touchpoints=sentence_touchpoints_of(session, sentence_ids=[s.id for s in stored or []]),
        versions=versions_of(session, item_id=item_id),
    )
