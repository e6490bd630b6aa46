"""Sources (admins): every source with its collector's health, "run now", pause/resume and its last runs.

The rows are the API's own answers (``GET /v1/sources``, ``/v1/sources/{name}/runs``) and the buttons call the
same service functions as ``POST /v1/sources/{name}/run|pause|resume``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.api.deps import SessionDep
from service.api.problems import ProblemError
from service.api.routes.sources import CollectorRunOut, SourceOut, get_source, get_source_runs, get_sources
from service.collectors import CollectorError, get_collector, request_run, update_source
from service.db.models import Source
from service.touchpoints import active_taxonomy
from service.web.auth import AdminPostSessionDep, AdminSessionDep, PageError, WebSession
from service.web.templating import render

router = APIRouter(include_in_schema=False)
RUNS_SHOWN = 5
STATES = {
    "ok": ("✓", "OK"),
    "running": ("↻", "Running"),
    "rate_limited": ("◔", "Rate limited"),
    "failing": ("✕", "Failing"),
    "paused": ("❚❚", "Paused"),
    "new": ("✦", "New"),
}
ERROR_ACTIONS = {
    "retry": "retried on the next run",
    "rate_limited": "waits for the rate limit",
    "bad_credentials": "check its credentials",
    "not_found": "check its address or ids",
    "fail": "needs a fix before it runs again",
}


@dataclass(frozen=True)
class SourceRow:
    """A source as the page shows it: the API's view, when a run was asked for, and its last runs."""

    source: SourceOut
    run_requested_at: datetime | None
    runs: list[CollectorRunOut]

    @property
    def state(self) -> str:
        return self.source.health.state if self.source.health else "api"

    @property
    def marker(self) -> str:
        return STATES.get(self.state, ("", ""))[0]

    @property
    def state_text(self) -> str:
        if self.state == "new":
            return "New: not run yet" if self.source.collector else "New: nothing received yet"
        return STATES.get(self.state, ("", self.state))[1]

    @property
    def schedule(self) -> str:
        """Its schedule in words (webhooks are pushed to, never scheduled)."""
        if self.source.cron:
            return f"cron “{self.source.cron}” (UTC)"
        seconds = self.source.interval_seconds
        if seconds is None:
            return "pushed by the survey tool"
        if seconds % 86_400 == 0:
            return _every(seconds // 86_400, "day")
        if seconds % 3600 == 0:
            return _every(seconds // 3600, "hour")
        return _every(seconds // 60, "minute") if seconds % 60 == 0 else _every(seconds, "second")

    @property
    def error_action(self) -> str | None:
        action = self.source.health.last_error_action if self.source.health else None
        return ERROR_ACTIONS.get(action, action) if action else None


def _every(count: int, unit: str) -> str:
    return f"every {unit}" if count == 1 else f"every {count} {unit}s"


def _runs(session: Session, web: WebSession, source: SourceOut) -> list[CollectorRunOut]:
    if not source.collector:
        return []
    return get_source_runs(source.name, session, web.caller, limit=RUNS_SHOWN)


def _run_requests(session: Session) -> dict[str, datetime | None]:
    return {name: when for name, when in session.execute(select(Source.name, Source.run_requested_at))}


def source_row(session: Session, web: WebSession, name: str) -> SourceRow:
    """One source's row, as ``GET /v1/sources/{name}`` and ``/runs`` give it."""
    try:
        source = get_source(name, session, web.caller)
    except ProblemError as exc:
        raise PageError(exc.status, exc.detail) from None
    return SourceRow(
        source=source, run_requested_at=_run_requests(session).get(name), runs=_runs(session, web, source)
    )


@router.get("/sources", response_class=HTMLResponse)
def sources_page(request: Request, session: SessionDep, web: AdminSessionDep) -> HTMLResponse:
    """Collectors and webhooks with their health and actions; API sources with their item counts."""
    requested = _run_requests(session)
    rows = [
        SourceRow(source=s, run_requested_at=requested.get(s.name), runs=_runs(session, web, s))
        for s in get_sources(session, web.caller)
    ]
    managed = [row for row in rows if row.source.health is not None]
    states: dict[str, int] = {}
    for row in managed:
        states[row.state] = states.get(row.state, 0) + 1
    return render(
        request,
        "pages/sources.html",
        web=web,
        page="sources",
        managed=managed,
        plain=[row for row in rows if row.source.health is None],
        states=states,
        STATES=STATES,
        touchpoint_names={t.id: t.name for t in active_taxonomy(session).touchpoints},
        total_items=sum(row.source.item_count for row in rows),
    )


def _row_response(
    request: Request, session: Session, web: WebSession, name: str, **context: Any
) -> HTMLResponse:
    return render(
        request, "partials/sources_row.html", web=web, row=source_row(session, web, name), **context
    )


def _change(session: Session, name: str, changes: dict[str, Any]) -> None:
    try:
        update_source(session, name=name, changes=changes)
    except CollectorError as exc:
        raise PageError(exc.status, str(exc)) from None
    session.commit()


@router.post("/sources/{name}/pause", response_class=HTMLResponse)
def pause(name: str, request: Request, session: SessionDep, web: AdminPostSessionDep) -> HTMLResponse:
    """Stop scheduling the source (``POST /v1/sources/{name}/pause``); its cursor is kept."""
    _change(session, name, {"enabled": False})
    return _row_response(
        request, session, web, name, notice="Paused: the scheduler skips it until you resume it."
    )


@router.post("/sources/{name}/resume", response_class=HTMLResponse)
def resume(name: str, request: Request, session: SessionDep, web: AdminPostSessionDep) -> HTMLResponse:
    """Schedule the source again from where it stopped (``POST /v1/sources/{name}/resume``)."""
    _change(session, name, {"enabled": True, "deferred_until": None})
    return _row_response(request, session, web, name, notice="Resumed: it runs again on its schedule.")


@router.post("/sources/{name}/run", response_class=HTMLResponse)
def run_now(name: str, request: Request, session: SessionDep, web: AdminPostSessionDep) -> HTMLResponse:
    """Ask the scheduler to run the collector now (``POST /v1/sources/{name}/run``)."""
    try:
        source = get_collector(session, name=name)
        if not source.enabled:
            return _row_response(request, session, web, name, notice="Paused: resume it before running it.")
        request_run(session, name=name)
    except CollectorError as exc:
        raise PageError(exc.status, str(exc)) from None
    session.commit()
    settings = request.app.state.settings
    when = (
        f"the scheduler starts it within {settings.scheduler_sync_seconds:.0f} s"
        if settings.scheduler_enabled
        else "this server runs no scheduler, so it starts when one runs (cxmine scheduler run)"
    )
    stamp = datetime.now(UTC).strftime("%H:%M:%S")
    return _row_response(request, session, web, name, notice=f"Run queued at {stamp} UTC: {when}.")
