"""Sources and their collectors: list with health (analysts), create, change, pause, run now (admins)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scrapers.registry import source_class
from service.api.deps import AdminDep, ReaderDep, SessionDep, SettingsDep, require_unscoped
from service.api.problems import ProblemError
from service.api.schemas import ImportAuditOut
from service.collectors import (
    CollectorError,
    create_source,
    get_collector,
    health_of,
    is_collector,
    is_webhook,
    known_kinds,
    request_run,
    shown_config,
    update_source,
)
from service.db.models import FeedbackItem, ImportAudit, SchedulerRun, Source
from service.ingest.edits import updated_counts
from service.webhooks import WEBHOOK_KINDS, receive_webhook

router = APIRouter(prefix="/v1", tags=["sources"])


class CollectorHealth(BaseModel):
    state: str = Field(description="new, ok, running, failing, rate_limited or paused.")
    last_run_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_action: str | None = Field(
        description="retry, rate_limited, bad_credentials, not_found or fail."
    )
    last_error_at: datetime | None
    consecutive_failures: int
    items_collected: int
    next_run_at: datetime | None
    deferred_until: datetime | None = Field(description="Rate limited: no run before this time.")
    cursor_updated_at: datetime | None


class SourceOut(BaseModel):
    id: int
    name: str
    kind: str
    default_touchpoint: str | None
    created_at: datetime
    item_count: int
    collector: bool = Field(description="True when a scheduled collector fills this source.")
    enabled: bool
    redact_pii: bool
    interval_seconds: int | None
    cron: str | None
    config: dict[str, Any] = Field(description="Collector settings; literal secrets are masked.")
    health: CollectorHealth | None


class SourceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=r"^[\w.\- ]+$")
    kind: str = Field(description="A source kind from GET /v1/source-kinds, e.g. app_store.v1.")
    config: dict[str, Any] = Field(default_factory=dict, description='Secrets as {"env": "VAR_NAME"}.')
    default_touchpoint: str | None = Field(default=None, max_length=100)
    interval_seconds: int | None = Field(default=None, description="Run every N seconds (default 3600).")
    cron: str | None = Field(default=None, description='Or a UTC crontab line, e.g. "0 */6 * * *".')
    enabled: bool = True
    redact_pii: bool = Field(default=True, description="Redact e-mails, phones and card numbers from text.")


class SourceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] | None = None
    default_touchpoint: str | None = Field(default=None, max_length=100)
    interval_seconds: int | None = None
    cron: str | None = None
    enabled: bool | None = None
    redact_pii: bool | None = None
    reset_cursor: bool = Field(default=False, description="Collect from the beginning on the next run.")


class SourceKindOut(BaseModel):
    kind: str
    channel: str
    description: str
    config_schema: dict[str, Any]


class RunRequested(BaseModel):
    source: str
    requested_at: datetime
    runs: str = Field(description="Where to follow the run.")


class CollectorRunOut(ImportAuditOut):
    source_id: int | None
    trigger: str | None
    pages: int
    malformed: int
    near_duplicates: int
    redacted: int
    error: str | None
    error_action: str | None


class SchedulerRunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    job_id: str
    scheduled_for: datetime
    owner: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    error: str | None


@contextmanager
def _as_problem() -> Iterator[None]:
    try:
        yield
    except CollectorError as exc:
        raise ProblemError(exc.status, str(exc)) from None


def _out(source: Source, item_count: int) -> SourceOut:
    collector = is_collector(source)
    health = None
    if collector or is_webhook(source):
        state = health_of(source)
        health = CollectorHealth(
            state=state.state,
            last_run_at=source.last_run_at,
            last_success_at=source.last_success_at,
            last_error=source.last_error,
            last_error_action=source.last_error_action,
            last_error_at=source.last_error_at,
            consecutive_failures=source.consecutive_failures,
            items_collected=source.items_collected,
            next_run_at=state.next_run_at,
            deferred_until=source.deferred_until,
            cursor_updated_at=source.cursor_updated_at,
        )
    return SourceOut(
        id=source.id,
        name=source.name,
        kind=source.kind,
        default_touchpoint=source.default_touchpoint,
        created_at=source.created_at,
        item_count=item_count,
        collector=collector,
        enabled=source.enabled,
        redact_pii=source.redact_pii,
        interval_seconds=source.schedule_interval_seconds,
        cron=source.schedule_cron,
        config=shown_config(source) if collector or is_webhook(source) else {},
        health=health,
    )


def _item_count(session: Session, source_id: int) -> int:
    return (
        session.scalar(
            select(func.count()).select_from(FeedbackItem).where(FeedbackItem.source_id == source_id)
        )
        or 0
    )


@router.get("/sources", summary="Sources with their item counts and collector health")
def get_sources(session: SessionDep, _caller: ReaderDep) -> list[SourceOut]:
    """Every source: how many items it holds and, for collectors, schedule and health."""
    counts = (
        select(FeedbackItem.source_id, func.count().label("n")).group_by(FeedbackItem.source_id).subquery()
    )
    rows = session.execute(
        select(Source, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.source_id == Source.id)
        .order_by(Source.name)
    )
    return [_out(source, count) for source, count in rows]


@router.get("/source-kinds", summary="The kinds of collector and their settings")
def get_source_kinds(_caller: ReaderDep) -> list[SourceKindOut]:
    """Each source kind with the JSON schema of its config."""
    kinds = []
    for kind in known_kinds():
        if kind in WEBHOOK_KINDS:
            webhook = WEBHOOK_KINDS[kind]
            kinds.append(
                SourceKindOut(
                    kind=kind,
                    channel="survey",
                    description=webhook.description,
                    config_schema=webhook.config_model.model_json_schema(),
                )
            )
            continue
        cls = source_class(kind)
        kinds.append(
            SourceKindOut(
                kind=kind,
                channel=cls.channel,
                description=(cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "",
                config_schema=cls.config_model.model_json_schema(),
            )
        )
    return kinds


@router.get("/sources/{name}", summary="One source with its health")
def get_source(name: str, session: SessionDep, _caller: ReaderDep) -> SourceOut:
    """One source by name."""
    source = session.scalar(select(Source).where(Source.name == name))
    if source is None:
        raise ProblemError(404, f"No source is named {name!r}.")
    return _out(source, _item_count(session, source.id))


@router.post("/sources", status_code=status.HTTP_201_CREATED, summary="Add a collector")
def post_source(body: SourceCreate, session: SessionDep, _caller: AdminDep, response: Response) -> SourceOut:
    """A new collector source; the scheduler runs it within its sync interval, then on its schedule."""
    with _as_problem():
        source = create_source(
            session,
            name=body.name,
            kind=body.kind,
            config=body.config,
            default_touchpoint=body.default_touchpoint,
            interval_seconds=body.interval_seconds,
            cron=body.cron,
            enabled=body.enabled,
            redact_pii=body.redact_pii,
        )
    session.commit()
    response.headers["Location"] = f"/v1/sources/{source.name}"
    return _out(source, 0)


@router.patch("/sources/{name}", summary="Change a collector")
def patch_source(name: str, body: SourceUpdate, session: SessionDep, _caller: AdminDep) -> SourceOut:
    """Change config, schedule, touchpoint, PII handling or enabled; give only what changes."""
    changes = body.model_dump(exclude_unset=True)
    if "interval_seconds" in changes and "cron" not in changes and changes["interval_seconds"] is not None:
        changes["cron"] = None
    if "cron" in changes and "interval_seconds" not in changes and changes["cron"] is not None:
        changes["interval_seconds"] = None
    with _as_problem():
        source = update_source(session, name=name, changes=changes)
    session.commit()
    return _out(source, _item_count(session, source.id))


@router.post("/sources/{name}/pause", summary="Pause a collector")
def pause_source(name: str, session: SessionDep, _caller: AdminDep) -> SourceOut:
    """Stop scheduling it; the cursor is kept."""
    with _as_problem():
        source = update_source(session, name=name, changes={"enabled": False})
    session.commit()
    return _out(source, _item_count(session, source.id))


@router.post("/sources/{name}/resume", summary="Resume a paused collector")
def resume_source(name: str, session: SessionDep, _caller: AdminDep) -> SourceOut:
    """Schedule it again, from where it stopped."""
    with _as_problem():
        source = update_source(session, name=name, changes={"enabled": True, "deferred_until": None})
    session.commit()
    return _out(source, _item_count(session, source.id))


@router.post("/sources/{name}/run", status_code=status.HTTP_202_ACCEPTED, summary="Run a collector now")
def run_source_now(name: str, session: SessionDep, _caller: AdminDep) -> RunRequested:
    """Ask the scheduler to run it now; follow the run under /v1/sources/{name}/runs."""
    with _as_problem():
        source = request_run(session, name=name)
        if not source.enabled:
            raise CollectorError(f"source {name!r} is paused; resume it first", status=409)
    session.commit()
    assert source.run_requested_at is not None
    return RunRequested(source=name, requested_at=source.run_requested_at, runs=f"/v1/sources/{name}/runs")


@router.get("/sources/{name}/runs", summary="A collector's runs, newest first")
def get_source_runs(
    name: str, session: SessionDep, caller: ReaderDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[CollectorRunOut]:
    """Each run: trigger, pages, records stored, duplicates, malformed, and the error if it failed."""
    require_unscoped(caller, what="Collector runs (and their error samples)")
    with _as_problem():
        source = get_collector(session, name=name)
    runs = list(
        session.scalars(
            select(ImportAudit)
            .where(ImportAudit.source_id == source.id)
            .order_by(ImportAudit.id.desc())
            .limit(limit)
        )
    )
    updated = updated_counts(session, import_ids=[run.id for run in runs])
    return [
        CollectorRunOut.model_validate(run, from_attributes=True).model_copy(
            update={"updated": updated.get(run.id, 0)}
        )
        for run in runs
    ]


@router.get("/scheduler/runs", tags=["scheduler"], summary="Recent scheduler job runs")
def get_scheduler_runs(
    session: SessionDep,
    _caller: ReaderDep,
    job: Annotated[
        str | None, Query(description="Only this job, e.g. score or collect:app-store-us.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[SchedulerRunOut]:
    """Which process ran which job for which tick, and how it ended."""
    query = select(SchedulerRun).order_by(SchedulerRun.id.desc()).limit(limit)
    if job is not None:
        query = query.where(SchedulerRun.job_id == job)
    return [SchedulerRunOut.model_validate(run) for run in session.scalars(query)]


class WebhookReceived(BaseModel):
    import_id: int
    received: int
    stored: int
    duplicates: int
    malformed: int
    updated: int = Field(default=0, description="Responses already stored whose text or rating changed.")


@router.post(
    "/webhooks/{name}",
    tags=["webhooks"],
    summary="Receive survey responses pushed by Typeform or Qualtrics",
    responses={401: {"description": "The signature or API-key header does not match."}},
)
async def post_webhook(
    name: str, request: Request, session: SessionDep, settings: SettingsDep
) -> WebhookReceived:
    """No API key: the survey tool proves itself with its signature (Typeform) or a fixed header (Qualtrics).
    Re-sent responses are recognised and stored once."""
    body = await request.body()
    with _as_problem():
        outcome = await run_in_threadpool(
            receive_webhook,
            session,
            name=name,
            body=body,
            headers=request.headers,
            settings=settings,
            source_options=getattr(request.app.state, "source_options", None),
        )
    return WebhookReceived(**outcome.__dict__)
