"""Theme detail: a topic's name (an admin renames it here) and keywords per language, weekly negatives
against the trend test's expected level, touchpoints, locations, languages, lineage, quotes in their own
script, and the triage panel of one touchpoint (the ``focus``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, cast

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from service.access import (
    known_locations,
    public_keywords_by_language,
    public_topic_labels,
    public_topic_text,
    visible_location_rows,
)
from service.api.deps import SessionDep
from service.db.models import PainPointEvent, Topic
from service.painpoint_series import NegativeSeries
from service.painpoints import STEP, PainPoint, PainPointReport, Quote, pain_point_report
from service.topic_text import MAX_NAME_LENGTH, TopicNameError, rename_topic
from service.topics import topic_lineage, topic_location_comparison, topic_timeline
from service.triage import (
    ACTIONS,
    PAST_TENSE,
    Action,
    InvalidTransitionError,
    UnknownPainPointError,
    apply_action,
    triage_history,
)
from service.web.auth import AdminPostSessionDep, PageError, PostSessionDep
from service.web.exports import export_format, export_response
from service.web.filters import PageFilters
from service.web.pages.common import PageContext, PageDep, render_page
from service.web.pages.painpoints import (
    PAGE_LIMIT,
    TREND_BASELINE,
    TREND_INTERVAL,
    TREND_WINDOW,
    PainPointRow,
    explorer_link,
    pain_point_row,
    weekly_negatives,
)
from service.web.templating import SENTIMENT_COLOURS, render

router = APIRouter(include_in_schema=False)
QUOTES = 8
LANGUAGE_NAMES = {"en": "English", "ar": "Arabic", "fa": "Persian", "th": "Thai", "und": "Unknown"}
QUOTE_COLUMNS = (
    "Item id",
    "Sentence id",
    "Quote",
    "Language",
    "Location",
    "Source",
    "Written at",
    "Typicality",
    "Touchpoint",
    "Item",
)


@dataclass(frozen=True)
class ThemeBasics:
    """What the page and its quotes export share: the topic as the caller may see it and its pain points."""

    topic: Topic
    label: str
    keywords: list[str]
    representative: str | None
    report: PainPointReport
    focus: str | None
    focused: PainPoint | None
    keywords_by_language: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    @property
    def quotes(self) -> list[Quote]:
        return self.focused.quotes if self.focused else []


def _topic(session: Session, topic_id: str) -> Topic:
    topic = session.get(Topic, int(topic_id)) if topic_id.isdigit() else None
    if topic is None:
        raise PageError(
            404, f"There is no theme with id {topic_id!r}; it may have been merged away by a refit."
        )
    return topic


def _topic_report(session: Session, *, ctx: PageContext, topic_id: int) -> PainPointReport:
    """The topic's pain points with the trend test of the pain-points page, and their quotes."""
    # Tested among every pain point in scope, as on the pain-points page: a report of this topic alone
    # would shrink towards (and correct for) a different set, and could disagree with the list.
    options: dict[str, Any] = {
        "scope": ctx.scope,
        "touchpoints": ctx.touchpoints,
        "interval": TREND_INTERVAL,
        "window": TREND_WINDOW,
        "baseline": TREND_BASELINE,
        "now": ctx.now,
    }
    report = ctx.cached(
        session,
        "theme_report",
        lambda: pain_point_report(
            session, shown_topic_ids={topic_id}, limit=PAGE_LIMIT, quotes=QUOTES, **options
        ),
        topic_id,
    )
    # Copies: the cached report is shared by every view of the theme.
    return dataclasses.replace(report, pain_points=[dataclasses.replace(p) for p in report.pain_points])


def theme_basics(session: Session, *, ctx: PageContext, topic_id: str, focus: str | None) -> ThemeBasics:
    """The topic (404 page when unknown), its pain points in scope and the touchpoint in focus."""
    topic = _topic(session, topic_id)
    if focus and ctx.taxonomy.get(focus) is None:
        raise PageError(404, f"The taxonomy in force has no touchpoint {focus!r}.")
    allowed = ctx.web.caller.locations
    known = known_locations(session) if allowed else set()
    label, keywords, representative = public_topic_text(
        label=topic.label,
        keywords=list(topic.keywords),
        representative=topic.representative,
        known_locations=known,
        allowed=allowed,
    )
    by_language = public_keywords_by_language(
        dict(topic.keywords_by_language or {}), known_locations=known, allowed=allowed
    )
    report = _topic_report(session, ctx=ctx, topic_id=topic.id)
    points = report.pain_points
    if not focus and points:
        focus = max(points, key=lambda p: (p.negative, p.impact)).touchpoint
    focused = next((p for p in points if p.touchpoint == focus), None)
    return ThemeBasics(topic, label, keywords, representative, report, focus, focused, by_language)


@dataclass(frozen=True)
class RenameResult:
    """What the rename form did: a notice, or why it was refused (its HTTP status, what was typed)."""

    done: str | None = None
    error: str | None = None
    status: int = 200
    typed: str = ""


@dataclass(frozen=True)
class ThemeName:
    """The theme's name as the caller may see it, who named it, and the rename form (admins only)."""

    topic_id: int
    label: str
    source: str
    renamed_by: str | None
    renamed_at: datetime | None
    editable: bool
    post_url: str
    max_length: int
    result: RenameResult | None


def theme_name(ctx: PageContext, *, topic: Topic, label: str, result: RenameResult | None) -> ThemeName:
    """The name panel: an admin may rename an active theme or give its name back to the refit."""
    return ThemeName(
        topic_id=topic.id,
        label=label,
        source=topic.label_source,
        renamed_by=topic.renamed_by,
        renamed_at=topic.renamed_at,
        editable=ctx.web.is_admin and topic.status == "active",
        post_url=f"/themes/{topic.id}/name{ctx.filters.query()}",
        max_length=MAX_NAME_LENGTH,
        result=result,
    )


def run_rename(session: Session, *, topic_id: int, name: str | None, actor: str) -> RenameResult:
    """Rename as ``PATCH /v1/topics/{id}`` does (``None``: back to the refit); 409 / 422 become text."""
    typed = name or ""
    try:
        topic = rename_topic(session, topic_id=topic_id, name=name, actor=actor)
    except TopicNameError as exc:
        session.rollback()
        if exc.status == 404:
            raise PageError(404, str(exc)) from exc
        return RenameResult(error=str(exc), status=exc.status, typed=typed)
    session.commit()
    if name is None:
        return RenameResult(done="Naming given back to the refit: the next refit names this theme.")
    return RenameResult(done=f"Renamed to {topic.label!r}.")


# The status buttons each status offers (assign and comment are separate forms).
STATUS_ACTIONS = {"open": ("acknowledge", "resolve"), "acknowledged": ("resolve",), "resolved": ("reopen",)}
MAX_OWNER, MAX_COMMENT = 200, 10_000


@dataclass(frozen=True)
class TriageResult:
    """What a triage form did: a notice, or why it was refused (with what was typed, to keep it)."""

    action: str
    done: str | None = None
    error: str | None = None
    owner: str = ""
    comment: str = ""


@dataclass(frozen=True)
class TriagePanel:
    """A pain point's triage state, history and the actions its status allows."""

    topic_id: int
    touchpoint: str
    touchpoint_name: str
    status: str
    owner: str | None
    updated_at: datetime | None
    history: list[PainPointEvent]
    status_actions: tuple[str, ...]
    can_assign: bool
    post_url: str
    result: TriageResult | None


def triage_panel(
    session: Session, *, ctx: PageContext, topic_id: int, touchpoint: str, result: TriageResult | None
) -> TriagePanel:
    """The panel of (topic, touchpoint): status, owner, the allowed actions and the full history."""
    state, events = triage_history(session, topic_id=topic_id, touchpoint=touchpoint)
    status = state.status if state else "open"
    return TriagePanel(
        topic_id=topic_id,
        touchpoint=touchpoint,
        touchpoint_name=ctx.touchpoint_name(touchpoint),
        status=status,
        owner=state.owner if state else None,
        updated_at=state.updated_at if state else None,
        history=events,
        status_actions=STATUS_ACTIONS.get(status, ()),
        can_assign=status != "resolved",
        post_url=f"/themes/{topic_id}/triage/{touchpoint}{ctx.filters.query()}",
        result=result,
    )


def _triage_input_error(action: str, *, owner: str | None, comment: str | None) -> str | None:
    """Why the form's fields do not fit the action (the API's validation), or None."""
    if action not in ACTIONS:
        return f"Unknown triage action {action!r}."
    if action == "assign" and not owner:
        return "Type the owner (an e-mail, a name or a team) to assign the pain point."
    if action == "comment" and not comment:
        return "Write the comment first."
    if owner and len(owner) > MAX_OWNER:
        return f"The owner is at most {MAX_OWNER} characters."
    if comment and len(comment) > MAX_COMMENT:
        return f"The comment is at most {MAX_COMMENT:,} characters."
    return None


def run_triage_action(
    session: Session,
    *,
    topic_id: int,
    touchpoint: str,
    actor: str,
    action: str,
    owner: str | None,
    comment: str | None,
) -> TriageResult:
    """Apply the action as ``POST /v1/pain-points/{topic}/{touchpoint}/actions`` does; refusals become text."""
    owner = ((owner or "").strip() or None) if action == "assign" else None
    comment = (comment or "").strip() or None
    kept = {"owner": owner or "", "comment": comment or ""}
    error = _triage_input_error(action, owner=owner, comment=comment)
    if error is not None:
        return TriageResult(action, error=error, **kept)
    try:
        apply_action(
            session,
            topic_id=topic_id,
            touchpoint=touchpoint,
            action=cast(Action, action),  # checked against ACTIONS above
            actor=actor,
            owner=owner,
            comment=comment,
        )
    except UnknownPainPointError as exc:
        raise PageError(404, str(exc)) from exc
    except InvalidTransitionError as exc:
        session.rollback()
        return TriageResult(action, error=str(exc), **kept)
    session.commit()
    return TriageResult(action, done=f"{PAST_TENSE[action].capitalize()}.")


@dataclass(frozen=True)
class LineageEntry:
    """One refit event of the topic, told from the topic's side."""

    relation: str
    topic_id: int | None
    label: str
    at: datetime
    similarity: float | None


def lineage_entries(session: Session, *, topic_id: int, allowed: tuple[str, ...]) -> list[LineageEntry]:
    """Born, merged from / into, split from / into, died (continued refits are left out)."""
    events = [(e, m) for e, m in topic_lineage(session, topic_id=topic_id) if e.event != "continued"]
    entries: list[tuple[str, int | None, datetime, float | None]] = []
    for event, model in events:
        mine = event.topic_id == topic_id
        if event.event == "merged":
            relation, other = (
                ("Merged into", event.related_topic_id) if mine else ("Merged from", event.topic_id)
            )
        elif event.event == "split":
            relation, other = (
                ("Split from", event.related_topic_id) if mine else ("Split into", event.topic_id)
            )
        else:
            relation, other = event.event.capitalize(), None
        entries.append((relation, other, model.started_at, event.similarity))
    others = {other for _, other, _, _ in entries if other is not None}
    labels = public_topic_labels(session, topic_ids=others, allowed=allowed)
    return [
        LineageEntry(relation, other, labels.get(other, ("", []))[0] if other else "", at, similarity)
        for relation, other, at, similarity in entries
    ]


def _week_label(start: datetime) -> str:
    return start.strftime("%-d %b")


def _week_link(ctx: PageContext, start: datetime, **extra: Any) -> str:
    week = dataclasses.replace(
        ctx.filters, range="custom", since=start.date(), until=(start + timedelta(days=6)).date()
    )
    return explorer_link(dataclasses.replace(ctx, filters=week), **extra)


def _focused_bars(basics: ThemeBasics, *, ctx: PageContext, series: NegativeSeries) -> dict[str, Any]:
    """The focused pain point's weekly negatives, with the weeks the trend test looked at shaded."""
    report, weeks = basics.report, series.starts
    tested_from = report.until - STEP[report.interval] * report.window
    tested = [_week_label(w) for w in weeks if w + timedelta(days=7) > tested_from]
    name = ctx.touchpoint_name(basics.focus) if basics.focus else "touchpoint"
    bars: dict[str, Any] = {
        "name": f"Negative at {name}",
        "type": "bar",
        "itemStyle": {"color": SENTIMENT_COLOURS["negative"]},
        "data": series.of((basics.topic.id, basics.focus or "")),
    }
    if tested:
        bars["markArea"] = {
            "silent": True,
            "itemStyle": {"color": "rgba(230,159,0,0.12)"},
            "label": {"show": True, "position": "insideTop", "color": "#5b6475", "formatter": "tested"},
            "data": [[{"xAxis": tested[0]}, {"xAxis": tested[-1]}]],
        }
    return bars


def _expected_per_week(basics: ThemeBasics, *, weeks: list[datetime]) -> list[float | None]:
    """The trend test's expected weekly level over the weeks it covers (baseline and window), else None."""
    report, point = basics.report, basics.focused
    if point is None:
        return [None] * len(weeks)
    covered_from = report.until - STEP[report.interval] * (report.window + report.baseline)
    per_week = round(point.expected / report.window, 2)
    return [per_week if w + timedelta(days=7) > covered_from else None for w in weeks]


def timeline_chart(
    ctx: PageContext, *, basics: ThemeBasics, series: NegativeSeries, topic_weekly: dict[datetime, int]
) -> dict[str, Any]:
    """Weekly negatives at the focused touchpoint (bars), the topic's at every touchpoint, the expected level."""
    weeks = series.starts
    key = (basics.topic.id, basics.focus or "")
    return {
        "aria": {"enabled": True, "decal": {"show": True}},
        "tooltip": {"trigger": "axis"},
        "legend": {"bottom": 0},
        "grid": {"left": 36, "right": 16, "top": 24, "bottom": 64},
        "xAxis": {"type": "category", "data": [_week_label(w) for w in weeks]},
        "yAxis": {"type": "value", "minInterval": 1},
        "series": [
            _focused_bars(basics, ctx=ctx, series=series),
            {
                "name": "Negative, all touchpoints",
                "type": "line",
                "symbol": "circle",
                "itemStyle": {"color": "#5b6475"},
                "lineStyle": {"width": 1.5},
                "data": [topic_weekly.get(w, 0) for w in weeks],
            },
            {
                "name": "Expected (trend test)",
                "type": "line",
                "symbol": "none",
                "connectNulls": False,
                "itemStyle": {"color": "#0072B2"},
                "lineStyle": {"type": "dashed", "width": 2},
                "data": _expected_per_week(basics, weeks=weeks),
            },
        ],
        "_links": [
            [_week_link(ctx, w, pain_point=f"{key[0]}:{key[1]}") for w in weeks],
            [_week_link(ctx, w, topic=key[0], sentiment="negative") for w in weeks],
            [],
        ],
    }


def _location_rows(session: Session, *, ctx: PageContext, topic_id: int) -> list[dict[str, Any]]:
    """Each visible location against all the others (compared over every store, like the API)."""
    everywhere = dataclasses.replace(ctx.scope, locations=())
    rows = ctx.cached(
        session,
        "topic_locations",
        lambda: topic_location_comparison(session, topic_id=topic_id, scope=everywhere),
        topic_id,
    )
    return visible_location_rows(rows, allowed=ctx.scope.locations)


def _touchpoint_rows(basics: ThemeBasics, *, ctx: PageContext, series: NegativeSeries) -> list[PainPointRow]:
    text = (basics.label, basics.keywords)
    return [
        pain_point_row(p, ctx=ctx, text=text, weekly=series.of((p.topic_id, p.touchpoint)))
        for p in sorted(basics.report.pain_points, key=lambda p: (-p.negative, p.touchpoint))
    ]


def theme_response(
    request: Request,
    session: Session,
    *,
    ctx: PageContext,
    topic_id: str,
    focus: str | None,
    triage_result: TriageResult | None = None,
    rename_result: RenameResult | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """Render the theme page (also after a triage or rename form posted without HTMX)."""
    basics = theme_basics(session, ctx=ctx, topic_id=topic_id, focus=focus)
    topic_id_int, report = basics.topic.id, basics.report
    series = weekly_negatives(session, ctx=ctx, report=report, points=report.pain_points)
    timeline = ctx.cached(
        session,
        "topic_timeline",
        lambda: topic_timeline(session, topic_id=topic_id_int, scope=ctx.scope, interval=TREND_INTERVAL),
        topic_id_int,
    )
    rows = _touchpoint_rows(basics, ctx=ctx, series=series)
    filters: PageFilters = dataclasses.replace(
        ctx.filters, extra=(("focus", basics.focus),) if basics.focus else ()
    )
    panel = (
        triage_panel(session, ctx=ctx, topic_id=topic_id_int, touchpoint=basics.focus, result=triage_result)
        if basics.focus
        else None
    )
    return render_page(
        request,
        "pages/theme.html",
        ctx=ctx,
        session=session,
        page="pain-points",
        filters=filters,
        basics=basics,
        name=theme_name(ctx, topic=basics.topic, label=basics.label, result=rename_result),
        report=report,
        touchpoint_rows=rows,
        focus_row=next((r for r in rows if r.touchpoint == basics.focus), None),
        chart=timeline_chart(
            ctx, basics=basics, series=series, topic_weekly={start: neg for start, _, neg in timeline}
        ),
        locations=_location_rows(session, ctx=ctx, topic_id=topic_id_int),
        lineage=lineage_entries(session, topic_id=topic_id_int, allowed=ctx.web.caller.locations),
        panel=panel,
        explorer_link=explorer_link,
        language_names=LANGUAGE_NAMES,
        status_code=status_code,
    )


FocusParam = Annotated[str | None, Query(description="The touchpoint whose triage panel is shown.")]


@router.get("/themes/{topic_id}", response_class=HTMLResponse)
def theme_page(
    topic_id: str, request: Request, session: SessionDep, ctx: PageDep, focus: FocusParam = None
) -> HTMLResponse:
    """One theme: timeline against the expected level, where it comes from, quotes and triage."""
    return theme_response(request, session, ctx=ctx, topic_id=topic_id, focus=focus)


@router.get("/themes/{topic_id}/quotes/export")
def theme_quotes_export(
    topic_id: str, session: SessionDep, ctx: PageDep, focus: FocusParam = None, format: str = "csv"
) -> Response:
    """The quotes the theme page shows, as CSV or XLSX."""
    fmt = export_format(format)
    basics = theme_basics(session, ctx=ctx, topic_id=topic_id, focus=focus)
    rows = [
        [
            q.item_id,
            q.sentence_id,
            q.text,
            q.language or "",
            q.location or "",
            q.source,
            q.created_at,
            q.similarity,
            basics.focus or "",
            f"/feedback/{q.item_id}",
        ]
        for q in basics.quotes
    ]
    return export_response(fmt=fmt, name=f"theme-{basics.topic.id}-quotes", columns=QUOTE_COLUMNS, rows=rows)


@router.post("/themes/{topic_id}/triage/{touchpoint}", response_class=HTMLResponse)
def theme_triage(
    topic_id: str,
    touchpoint: str,
    request: Request,
    session: SessionDep,
    web: PostSessionDep,
    ctx: PageDep,
    action: Annotated[str, Form()] = "",
    owner: Annotated[str | None, Form()] = None,
    comment: Annotated[str | None, Form()] = None,
) -> Response:
    """Apply a triage action from the panel; HTMX gets the panel back, a plain form the page."""
    topic = _topic(session, topic_id)
    if ctx.taxonomy.get(touchpoint) is None:
        raise PageError(404, f"The taxonomy in force has no touchpoint {touchpoint!r}.")
    result = run_triage_action(
        session,
        topic_id=topic.id,
        touchpoint=touchpoint,
        actor=f"key:{web.caller.name}",
        action=action,
        owner=owner,
        comment=comment,
    )
    if request.headers.get("HX-Request"):
        panel = triage_panel(session, ctx=ctx, topic_id=topic.id, touchpoint=touchpoint, result=result)
        return render(request, "partials/theme_triage.html", web=ctx.web, ctx=ctx, panel=panel)
    if result.error is None:
        target = f"/themes/{topic.id}{ctx.filters.query(focus=touchpoint)}#triage-panel"
        return RedirectResponse(target, status_code=303)
    return theme_response(
        request, session, ctx=ctx, topic_id=topic_id, focus=touchpoint, triage_result=result, status_code=409
    )


@router.post("/themes/{topic_id}/name", response_class=HTMLResponse)
def theme_rename(
    topic_id: str,
    request: Request,
    session: SessionDep,
    web: AdminPostSessionDep,
    ctx: PageDep,
    name: Annotated[str, Form()] = "",
    action: Annotated[str, Form()] = "rename",
) -> Response:
    """Rename the theme (admins); ``action=reset`` gives naming back. HTMX gets the title back, a form the page."""
    topic = _topic(session, topic_id)
    if action not in ("rename", "reset"):
        raise PageError(422, f"Unknown action {action!r}; rename or reset.")
    result = run_rename(
        session, topic_id=topic.id, name=None if action == "reset" else name, actor=web.caller.name
    )
    if request.headers.get("HX-Request"):
        session.refresh(topic)
        labels = public_topic_labels(session, topic_ids={topic.id}, allowed=ctx.web.caller.locations)
        panel = theme_name(ctx, topic=topic, label=labels[topic.id][0], result=result)
        return render(
            request, "partials/theme_name.html", web=ctx.web, ctx=ctx, name=panel, status_code=result.status
        )
    if result.error is None:
        return RedirectResponse(f"/themes/{topic.id}{ctx.filters.query()}", status_code=303)
    return theme_response(
        request,
        session,
        ctx=ctx,
        topic_id=topic_id,
        focus=None,
        rename_result=result,
        status_code=result.status,
    )
