"""Feedback explorer: search and filter the stored feedback, each item with its sentences, sentiment,
emotions, touchpoints and themes; cursor pagination, CSV/XLSX export and one item's page.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from nlp.datasets import CX_EMOTION_ROLLUP
from scrapers.contract import RatingScale
from service.access import LocationForbiddenError, can_see_location, public_topic_labels, restrict_filter
from service.api.deps import SessionDep
from service.db.models import FeedbackItem, FeedbackItemVersion, FeedbackSentence
from service.feedback import (
    SENTIMENT_FILTER_LABELS,
    FeedbackFilter,
    InvalidCursorError,
    emotion_scheme,
    list_feedback,
    local_created_at,
    sentences_of_items,
)
from service.ingest.edits import edited_item_ids, versions_of
from service.topics import ItemTopic, topics_of
from service.touchpoints import sentence_touchpoints_of, touchpoints_of
from service.web.auth import PageError
from service.web.exports import export_format, export_response
from service.web.pages.common import PageContext, PageDep, render_page
from service.web.templating import render

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 25
EXPORT_LIMIT = 10_000
EXPORT_PAGE = 500
PAIN_POINT = re.compile(r"^([0-9]+):([a-z][a-z0-9_]*)$")
RATING_SCALES = tuple(scale.value for scale in RatingScale)
EXTRA_KEYS = ("q", "sentiment", "emotion", "topic", "pain_point", "rating_scale")


@dataclass(frozen=True)
class Search:
    """The explorer's own narrowing, beyond the filter bar: text, sentiment, emotion, theme, rating scale."""

    q: str | None = None
    sentiments: tuple[str, ...] = ()
    emotions: tuple[str, ...] = ()
    topics: tuple[int, ...] = ()
    pain_point: tuple[int, str] | None = None
    rating_scales: tuple[str, ...] = ()

    @classmethod
    def from_query(cls, params: Any) -> Search:
        """Parse ``q``, ``sentiment``, ``emotion``, ``topic``, ``pain_point``, ``rating_scale`` (422 page on nonsense)."""
        q = (params.get("q") or "").strip() or None
        if q is not None and len(q) > 200:
            raise PageError(422, "Search for at most 200 characters.")
        sentiments = _values(params, "sentiment", SENTIMENT_FILTER_LABELS)
        rating_scales = _values(params, "rating_scale", RATING_SCALES)
        emotions = tuple(v for v in params.getlist("emotion") if v)
        unknown = [e for e in emotions if emotion_scheme(e) is None]
        if unknown:
            raise PageError(
                422, f"Unknown emotion {unknown[0]!r}; try one of {', '.join(CX_EMOTION_ROLLUP)}."
            )
        try:
            topics = tuple(int(v) for v in params.getlist("topic") if v)
        except ValueError as exc:
            raise PageError(422, "A theme (topic) is a number.") from exc
        pain_point = None
        if params.get("pain_point"):
            match = PAIN_POINT.match(params["pain_point"])
            if match is None:
                raise PageError(422, "A pain point is THEME:TOUCHPOINT, like 12:delivery_shipping.")
            pain_point = (int(match.group(1)), match.group(2))
        return cls(q, sentiments, emotions, topics, pain_point, rating_scales)

    def params(self) -> list[tuple[str, str]]:
        """The query parameters that reproduce this search."""
        pairs = [("q", self.q)] if self.q else []
        pairs += [("sentiment", v) for v in self.sentiments] + [("emotion", v) for v in self.emotions]
        pairs += [("topic", str(v)) for v in self.topics]
        if self.pain_point is not None:
            pairs.append(("pain_point", f"{self.pain_point[0]}:{self.pain_point[1]}"))
        return pairs + [("rating_scale", v) for v in self.rating_scales]


def _values(params: Any, key: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    values = tuple(v for v in params.getlist(key) if v)
    wrong = [v for v in values if v not in allowed]
    if wrong:
        raise PageError(422, f"Unknown {key.replace('_', ' ')} {wrong[0]!r}; use {', '.join(allowed)}.")
    return values


def feedback_filter(ctx: PageContext, search: Search) -> FeedbackFilter | None:
    """The service's filter for the page's filters and search (None: the filters select no touchpoint)."""
    if ctx.touchpoints is not None and not ctx.touchpoints:
        return None
    filters = FeedbackFilter(
        since=ctx.scope.since,
        until=ctx.scope.until,
        sources=ctx.scope.sources,
        locations=ctx.filters.locations,
        languages=ctx.scope.languages,
        text_contains=search.q,
        sentiments=search.sentiments,
        emotions=search.emotions,
        touchpoints=tuple(sorted(ctx.touchpoints or ())),
        topics=search.topics,
        pain_point=search.pain_point,
        rating_scales=search.rating_scales,
    )
    try:
        return restrict_filter(filters, allowed=ctx.web.caller.locations)
    except LocationForbiddenError as exc:
        raise PageError(403, str(exc)) from exc


def page_of(
    session: Session, filters: FeedbackFilter | None, *, limit: int, cursor: str | None
) -> tuple[list[FeedbackItem], str | None]:
    """One page of items, newest first, and the next page's cursor (422 page for a bad cursor)."""
    if filters is None:
        return [], None
    try:
        return list_feedback(session, filters=filters, limit=limit, cursor=cursor)
    except InvalidCursorError as exc:
        raise PageError(422, "This page link is broken or out of date; start again from the newest.") from exc


@dataclass(frozen=True)
class ItemView:
    """An item as the explorer shows it: its time in the customer's zone, touchpoints, themes, sentences."""

    item: FeedbackItem
    created_at: datetime
    touchpoints: list[tuple[str, str, float]]
    topics: list[ItemTopic]
    sentences: list[tuple[str, FeedbackSentence]]
    at_touchpoints: dict[int, list[tuple[str, str, str | None]]] = dataclasses.field(default_factory=dict)
    """Sentence id -> its touchpoints (id, name, the sentiment there when its clauses gave one)."""
    edited: bool = False
    versions: list[FeedbackItemVersion] = dataclasses.field(default_factory=list)
    """On the item page: its earlier texts and ratings, oldest first."""

    @property
    def emotions(self) -> list[str]:
        detected = (self.item.emotions or {}).get("cx_detected") or []
        return [str(e) for e in detected if e != "neutral"]

    @property
    def rating(self) -> str:
        return rating_label(self.item.rating_value, self.item.rating_scale)

    @property
    def first_rating(self) -> str:
        """The rating the item was first stored with (its current one if never edited)."""
        if not self.versions:
            return self.rating
        return rating_label(self.versions[0].rating_value, self.versions[0].rating_scale)


def rating_label(value: float | None, scale: str | None) -> str:
    """A rating as shown: '4 stars', '1 star', '9 NPS'; empty when there is none."""
    if value is None or scale is None:
        return ""
    if scale == "stars":
        return f"{value:g} {'star' if value == 1 else 'stars'}"
    return f"{value:g} {scale.upper()}"


def visible_topics(session: Session, ctx: PageContext, item_ids: list[int]) -> dict[int, list[ItemTopic]]:
    """Each item's themes, labelled as the caller may see them (a scoped key: keywords, not sentences)."""
    found = topics_of(session, item_ids=item_ids)
    if not ctx.web.caller.locations:
        return found
    ids = {t.topic_id for topics in found.values() for t in topics}
    labels = public_topic_labels(session, topic_ids=ids, allowed=ctx.web.caller.locations)
    return {
        item_id: [
            dataclasses.replace(t, label=labels[t.topic_id][0] if t.topic_id in labels else "")
            for t in topics
        ]
        for item_id, topics in found.items()
    }


def item_views(session: Session, ctx: PageContext, items: list[FeedbackItem]) -> list[ItemView]:
    """The page's items with their touchpoints, themes and scored sentences."""
    ids = [item.id for item in items]
    touchpoints, topics = touchpoints_of(session, item_ids=ids), visible_topics(session, ctx, ids)
    sentences = sentences_of_items(session, item_ids=ids)
    edited = edited_item_ids(session, item_ids=ids)
    at = sentence_touchpoints_of(session, sentence_ids=[s.id for found in sentences.values() for s in found])
    return [
        ItemView(
            item=item,
            created_at=local_created_at(item),
            touchpoints=[(t, ctx.touchpoint_name(t), s) for t, s in touchpoints.get(item.id, [])],
            topics=topics.get(item.id, []),
            sentences=[(item.text[s.start : s.end], s) for s in sentences[item.id]],
            at_touchpoints={
                s.id: [(t, ctx.touchpoint_name(t), label) for t, _, label in at.get(s.id, [])]
                for s in sentences[item.id]
            },
            edited=item.id in edited,
        )
        for item in items
    ]


CHIP_NAMES = {
    "q": "Text",
    "sentiment": "Sentiment",
    "emotion": "Emotion",
    "topic": "Theme",
    "pain_point": "Pain point",
    "rating_scale": "Rating",
}


def chips(session: Session, ctx: PageContext, search: Search) -> list[tuple[str, str, str]]:
    """(name, value, link without it) for each active search term, so each can be removed on its own."""
    themes = {*search.topics, *([search.pain_point[0]] if search.pain_point else [])}
    names = public_topic_labels(session, topic_ids=themes, allowed=ctx.web.caller.locations)
    base, pairs = ctx.filters.params(), search.params()
    result = []
    for index, (key, value) in enumerate(pairs):
        shown = f"“{value}”" if key == "q" else value
        if key == "topic":
            shown = names.get(int(value), (f"theme {value}", []))[0]
        if key == "pain_point" and search.pain_point is not None:
            theme = names.get(search.pain_point[0], (f"theme {search.pain_point[0]}", []))[0]
            shown = f"{theme} at {ctx.touchpoint_name(search.pain_point[1])}"
        rest = base + pairs[:index] + pairs[index + 1 :]
        result.append((CHIP_NAMES[key], shown, _link("/feedback", rest)))
    return result


def _link(path: str, pairs: list[tuple[str, str]]) -> str:
    return path + ("?" + urlencode(pairs) if pairs else "")


@router.get("/feedback", response_class=HTMLResponse)
def explorer(
    request: Request,
    session: SessionDep,
    ctx: PageDep,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> HTMLResponse:
    """A page of feedback for the filters and search, newest first, with a link to the older ones."""
    search = Search.from_query(request.query_params)
    items, next_cursor = page_of(session, feedback_filter(ctx, search), limit=PAGE_SIZE, cursor=cursor)
    query = ctx.filters.params() + search.params()
    return render_page(
        request,
        "pages/explorer.html",
        ctx=ctx,
        session=session,
        page="feedback",
        filters=dataclasses.replace(ctx.filters, extra=tuple(search.params())),
        search=search,
        items=item_views(session, ctx, items),
        chips=chips(session, ctx, search),
        first_page=cursor is None,
        newest_link=_link("/feedback", query),
        older_link=_link("/feedback", [*query, ("cursor", next_cursor)]) if next_cursor else None,
        export_link=lambda fmt: _link("/feedback/export", [("format", fmt), *query]),
        sentiments=SENTIMENT_FILTER_LABELS,
        emotions=[e for e in CX_EMOTION_ROLLUP if e != "neutral"],
        rating_scales=RATING_SCALES,
        page_size=PAGE_SIZE,
        export_limit=EXPORT_LIMIT,
    )


EXPORT_COLUMNS = (
    "id",
    "created_at",
    "source",
    "location",
    "language",
    "rating",
    "rating_scale",
    "sentiment",
    "sentiment_score",
    "emotions",
    "touchpoints",
    "themes",
    "text",
    "sentences",
)


def export_rows(session: Session, ctx: PageContext, filters: FeedbackFilter | None) -> Iterator[list[Any]]:
    """Every item of the filter (up to EXPORT_LIMIT), as rows of EXPORT_COLUMNS; a last row says when cut."""
    cursor: str | None = None
    exported = 0
    while exported < EXPORT_LIMIT:
        items, cursor = page_of(
            session, filters, limit=min(EXPORT_PAGE, EXPORT_LIMIT - exported), cursor=cursor
        )
        for view in item_views(session, ctx, items):
            item = view.item
            yield [
                item.id,
                view.created_at,
                item.source.name,
                item.location,
                item.language,
                item.rating_value,
                item.rating_scale,
                item.sentiment_label,
                None if item.sentiment_score is None else round(item.sentiment_score, 3),
                view.emotions,
                [name for _, name, _ in view.touchpoints],
                [t.label for t in view.topics],
                item.text,
                " | ".join(f"[{s.sentiment_label}] {text}" for text, s in view.sentences),
            ]
        exported += len(items)
        if cursor is None:
            return
    yield [f"(cut at {EXPORT_LIMIT:,} items: narrow the filters to export the rest)"] + [None] * (
        len(EXPORT_COLUMNS) - 1
    )


@router.get("/feedback/export")
def explorer_export(
    request: Request,
    session: SessionDep,
    ctx: PageDep,
    fmt: Annotated[str, Query(alias="format")] = "csv",
) -> Response:
    """Every item of the explorer's current filter (up to 10,000) as CSV or XLSX, scoped like the page."""
    chosen = export_format(fmt)
    search = Search.from_query(request.query_params)
    rows = list(export_rows(session, ctx, feedback_filter(ctx, search)))
    response = export_response(fmt=chosen, name="feedback", columns=EXPORT_COLUMNS, rows=rows)
    if rows and isinstance(rows[-1][0], str):
        response.headers["X-Export-Truncated"] = str(EXPORT_LIMIT)
    return response


@router.get("/feedback/{item_id}", response_class=HTMLResponse)
def feedback_item(request: Request, session: SessionDep, ctx: PageDep, item_id: int) -> HTMLResponse:
    """One item in full: text, ratings, scores, touchpoints, themes and every sentence (404 outside scope)."""
    item = session.get(FeedbackItem, item_id)
    if item is None or not can_see_location(item.location, allowed=ctx.web.caller.locations):
        raise PageError(404, f"No feedback item has id {item_id}.")
    view = dataclasses.replace(
        item_views(session, ctx, [item])[0], versions=versions_of(session, item_id=item_id)
    )
    return render(
        request,
        "pages/feedback_item.html",
        web=ctx.web,
        page="feedback",
        ctx=ctx,
        view=view,
        rating_label=rating_label,
        back_link=_link("/feedback", ctx.filters.params()),
    )
