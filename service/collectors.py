"""Collector sources in the database: configure them, run them exactly once at a time, and report health.

A run claims the source's lease, then drives ``scrapers.runner.collect``; each page's records, the source's
cursor and the run's counts are written in one transaction, and only while the lease is still ours. A run
killed halfway leaves the cursor after its last stored page, and the next run resumes from there.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from scrapers.contract import Malformed, Page, Record
from scrapers.http import ErrorAction, SourceError
from scrapers.pii import redact_pii
from scrapers.registry import (
    SourceConfigError,
    UnknownSourceKindError,
    build_source,
    check_config_shape,
    mask_secrets,
    masked_config,
    source_class,
    source_kinds,
)
from scrapers.runner import CollectResult, collect
from service.config import Settings
from service.db.models import ImportAudit, Source, utcnow
from service.ingest.edits import updated_counts
from service.ingest.schemas import FeedbackItemIn
from service.ingest.service import FeedbackStore, ItemResult, record_results, validate_item

logger = logging.getLogger("cxmine.collectors")

DEFAULT_INTERVAL_SECONDS = 3600
DEFAULT_RATE_LIMIT_WAIT_SECONDS = 900.0
"""How long a rate-limited source waits when the service did not say."""
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
PROCESS_OWNER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class CollectorError(Exception):
    """A request about a source that cannot be honoured; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, *, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


class LeaseLostError(RuntimeError):
    """Another process took over this source's run; this one stops without writing."""


# ------------------------------------------------------------------------------------------ configure


def is_collector(source: Source) -> bool:
    """True for sources a collector fetches (as opposed to API, file or webhook sources)."""
    return source.schedule_interval_seconds is not None or source.schedule_cron is not None


def is_webhook(source: Source) -> bool:
    """True for sources that survey tools push to (``POST /v1/webhooks/{name}``)."""
    from service.webhooks import WEBHOOK_KINDS

    return source.kind in WEBHOOK_KINDS


def validate_schedule(*, interval_seconds: int | None, cron: str | None) -> None:
    """A schedule is an interval of at least a minute, or a five-field crontab line."""
    if interval_seconds is not None and cron is not None:
        raise CollectorError("give either interval_seconds or cron, not both")
    if interval_seconds is not None and not 60 <= interval_seconds <= 31 * 86_400:
        raise CollectorError("interval_seconds must be between 60 (a minute) and 2678400 (31 days)")
    if cron is not None:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(cron, timezone="UTC")
        except ValueError as exc:
            raise CollectorError(f"cron {cron!r} is not a five-field crontab line: {exc}") from None


def create_source(
    session: Session,
    *,
    name: str,
    kind: str,
    config: Mapping[str, Any],
    default_touchpoint: str | None = None,
    interval_seconds: int | None = None,
    cron: str | None = None,
    enabled: bool = True,
    redact_pii: bool = True,
) -> Source:
    """Register a collector or webhook source; its config is validated (secrets may be {"env": NAME})."""
    webhook = _check_kind_and_config(kind, config)
    if webhook:
        if interval_seconds is not None or cron is not None:
            raise CollectorError(
                f"{kind} sources are pushed to, not scheduled: drop interval_seconds and cron"
            )
    elif interval_seconds is None and cron is None:
        interval_seconds = DEFAULT_INTERVAL_SECONDS
    if not webhook:
        validate_schedule(interval_seconds=interval_seconds, cron=cron)
    if session.scalar(select(Source.id).where(Source.name == name)) is not None:
        raise CollectorError(f"a source named {name!r} already exists", status=409)
    _check_touchpoint(session, default_touchpoint)
    source = Source(
        name=name,
        kind=kind,
        config=dict(config),
        default_touchpoint=default_touchpoint,
        schedule_interval_seconds=interval_seconds,
        schedule_cron=cron,
        enabled=enabled,
        redact_pii=redact_pii,
        updated_at=utcnow(),
    )
    session.add(source)
    session.flush()
    return source


def update_source(session: Session, *, name: str, changes: Mapping[str, Any]) -> Source:
    """Change a collector's (or webhook's) config, schedule, touchpoint, PII handling or enabled flag."""
    source = get_collector(session, name=name, webhooks=True)
    config = changes.get("config", source.config)
    if "config" in changes:
        _check_kind_and_config(source.kind, config)
        source.config = dict(config)
    if ("interval_seconds" in changes or "cron" in changes) and is_webhook(source):
        raise CollectorError(f"{source.kind} sources are pushed to, not scheduled")
    if "interval_seconds" in changes or "cron" in changes:
        interval = changes.get("interval_seconds")
        cron = changes.get("cron")
        if interval is None and cron is None:
            raise CollectorError("a collector needs a schedule: interval_seconds or cron")
        validate_schedule(interval_seconds=interval, cron=cron)
        source.schedule_interval_seconds, source.schedule_cron = interval, cron
    if "default_touchpoint" in changes:
        _check_touchpoint(session, changes["default_touchpoint"])
    for field in ("default_touchpoint", "enabled", "redact_pii", "deferred_until"):
        if field in changes:
            setattr(source, field, changes[field])
    if changes.get("reset_cursor"):
        source.cursor = None
        source.cursor_updated_at = utcnow()
    source.updated_at = utcnow()
    session.flush()
    return source


def _check_touchpoint(session: Session, touchpoint: str | None) -> None:
    from service.touchpoints import active_taxonomy

    if touchpoint is None:
        return
    taxonomy = active_taxonomy(session)
    if taxonomy.get(touchpoint) is None:
        known = ", ".join(item.id for item in taxonomy.touchpoints)
        raise CollectorError(f"unknown touchpoint {touchpoint!r}; the taxonomy's touchpoints are: {known}")


def request_run(session: Session, *, name: str) -> Source:
    """Ask the scheduler to run this source as soon as it can (within its sync interval)."""
    source = get_collector(session, name=name)
    source.run_requested_at = utcnow()
    session.flush()
    return source


def get_collector(session: Session, *, name: str, webhooks: bool = False) -> Source:
    """The collector source called ``name`` (or webhook source, if asked), or a 404 error."""
    source = session.scalar(select(Source).where(Source.name == name))
    if source is None:
        raise CollectorError(f"no source is named {name!r}", status=404)
    if webhooks and is_webhook(source):
        return source
    if is_webhook(source):
        raise CollectorError(
            f"source {name!r} is a webhook: survey tools push to it, it is never run", status=409
        )
    if not is_collector(source):
        raise CollectorError(
            f"source {name!r} receives feedback through the API or file imports; it has no collector",
            status=409,
        )
    return source


def shown_config(source: Source) -> dict[str, Any]:
    """The source's config with literal secrets masked."""
    from service.webhooks import WEBHOOK_KINDS

    if source.kind in WEBHOOK_KINDS:
        return mask_secrets(WEBHOOK_KINDS[source.kind].config_model, source.config)
    try:
        return masked_config(source.kind, source.config)
    except UnknownSourceKindError:
        return {key: "********" for key in source.config}


def _check_kind_and_config(kind: str, config: Mapping[str, Any]) -> bool:
    """Check the kind exists and the config fits it; True for a webhook kind."""
    from service.webhooks import WEBHOOK_KINDS, check_webhook_config

    if kind in WEBHOOK_KINDS:
        check_webhook_config(kind, config)
        return True
    try:
        source_class(kind)
    except UnknownSourceKindError:
        raise CollectorError(
            f"unknown source kind {kind!r}; known kinds: {', '.join(known_kinds())}"
        ) from None
    try:
        check_config_shape(kind, config)
    except SourceConfigError as exc:
        raise CollectorError(str(exc)) from None
    return False


def known_kinds() -> list[str]:
    """Every source kind a source can be created with: collectors, then webhooks."""
    from service.webhooks import WEBHOOK_KINDS

    return [*source_kinds(), *sorted(WEBHOOK_KINDS)]


# ----------------------------------------------------------------------------------------------- health


@dataclass(frozen=True)
class SourceHealth:
    """How a collector is doing, for the source list."""

    state: str
    next_run_at: datetime | None


def health_of(source: Source, *, now: datetime | None = None) -> SourceHealth:
    """Its state (paused, running, deferred, failing, ok, new) and when it will run next."""
    now = now or utcnow()
    running = (
        source.lease_owner is not None
        and source.lease_expires_at is not None
        and (source.lease_expires_at > now)
    )
    if not source.enabled:
        state = "paused"
    elif running:
        state = "running"
    elif source.deferred_until is not None and source.deferred_until > now:
        state = "rate_limited"
    elif source.consecutive_failures:
        state = "failing"
    elif source.last_success_at is not None:
        state = "ok"
    else:
        state = "new"
    return SourceHealth(state=state, next_run_at=None if not source.enabled else next_run_at(source, now=now))


def next_run_at(source: Source, *, now: datetime) -> datetime | None:
    """When the scheduler will next run this source (a run requested now, or its schedule)."""
    if source.run_requested_at is not None:
        return now
    if source.schedule_cron is not None:
        from apscheduler.triggers.cron import CronTrigger

        fire: datetime | None = CronTrigger.from_crontab(
            source.schedule_cron, timezone="UTC"
        ).get_next_fire_time(None, now)
        candidate = fire
    elif source.schedule_interval_seconds is not None:
        interval = timedelta(seconds=source.schedule_interval_seconds)
        candidate = aligned_next(now, interval)
    else:
        return None
    if source.deferred_until is not None and candidate is not None and source.deferred_until > candidate:
        return source.deferred_until
    return candidate


SCHEDULE_EPOCH = datetime(2026, 1, 1, tzinfo=utcnow().tzinfo)
"""Interval jobs fire at EPOCH + k * interval in every process, so every process agrees on the ticks."""


def aligned_next(now: datetime, interval: timedelta) -> datetime:
    """The first tick of ``interval`` after ``now``, counted from ``SCHEDULE_EPOCH``."""
    elapsed = (now - SCHEDULE_EPOCH) // interval
    return SCHEDULE_EPOCH + (elapsed + 1) * interval


# ------------------------------------------------------------------------------------------------- runs


@dataclass
class RunOutcome:
    """How a collector run ended."""

    run_id: int
    status: str
    pages: int
    received: int
    stored: int
    duplicates: int
    malformed: int
    error: str | None
    updated: int = 0


class SourceBusyError(CollectorError):
    def __init__(self, name: str) -> None:
        super().__init__(f"source {name!r} is already being collected by another run", status=409)


def run_collector(
    session_factory: sessionmaker[Session],
    *,
    name: str,
    settings: Settings,
    trigger: str,
    actor: str = "scheduler",
    environ: Mapping[str, str] | None = None,
    source_options: Mapping[str, Any] | None = None,
    max_pages: int | None = None,
    stop: threading.Event | None = None,
    on_page: Callable[[ImportAudit], None] | None = None,
    owner: str | None = None,
) -> RunOutcome:
    """Run one collector from its saved cursor until it is done (or ``max_pages``), page by page."""
    owner = owner or f"{PROCESS_OWNER}:{uuid.uuid4().hex[:6]}"
    lease = timedelta(seconds=settings.collector_lease_seconds)
    with session_factory() as session, session.begin():
        source = _claim(session, name=name, owner=owner, lease=lease)
        run = ImportAudit(
            kind="collect",
            actor=actor,
            source_name=source.name,
            source_id=source.id,
            trigger=trigger,
            status="running",
            error_sample=[],
        )
        session.add(run)
        session.flush()
        run_id, source_id, kind = run.id, source.id, source.kind
        config, cursor = dict(source.config), source.cursor
        touchpoint, redact = source.default_touchpoint, source.redact_pii

    status, error, action = "completed", None, None
    retry_after: float | None = None
    try:
        collector = build_source(
            kind, config, environ=os.environ if environ is None else environ, **dict(source_options or {})
        )
    except (SourceConfigError, UnknownSourceKindError) as exc:
        status, error, action = "failed", str(exc), ErrorAction.FAIL.value
    else:
        sink = CollectorSink(
            session_factory,
            source_id=source_id,
            source_name=name,
            run_id=run_id,
            owner=owner,
            lease=lease,
            channel=type(collector).channel,
            author_salt=settings.author_salt_bytes(),
            redact=redact,
            max_text_chars=settings.max_text_chars,
            on_page=on_page,
        )
        keeper = LeaseKeeper(session_factory, source_id=source_id, owner=owner, lease=lease)
        keeper.start()
        try:
            result: CollectResult = collect(
                collector,
                cursor=cursor,
                sink=sink,
                default_touchpoint=touchpoint,
                max_pages=max_pages,
                should_stop=lambda: keeper.lost.is_set() or (stop is not None and stop.is_set()),
            )
            if result.stopped:
                status = "interrupted"
        except SourceError as exc:
            status = "rate_limited" if exc.action is ErrorAction.RATE_LIMITED else "failed"
            error, action = str(exc), exc.action.value
            if exc.action is ErrorAction.RATE_LIMITED:
                retry_after = (
                    exc.retry_after if exc.retry_after is not None else DEFAULT_RATE_LIMIT_WAIT_SECONDS
                )
        except LeaseLostError as exc:
            status, error = "interrupted", str(exc)
        except Exception as exc:  # a bug in one source must not take the scheduler down
            logger.exception("collector crashed", extra={"source": name})
            status, error, action = "failed", f"internal error: {type(exc).__name__}: {exc}", "fail"
        finally:
            keeper.stop()
            collector.close()

    with session_factory() as session, session.begin():
        run_row = session.get(ImportAudit, run_id)
        assert run_row is not None
        run_row.status = status
        run_row.error = error
        run_row.error_action = action
        run_row.finished_at = utcnow()
        _finish_source(
            session,
            source_id=source_id,
            owner=owner,
            status=status,
            error=error,
            action=action,
            retry_after=retry_after,
        )
        outcome = RunOutcome(
            run_id=run_id,
            status=status,
            pages=run_row.pages,
            received=run_row.received,
            stored=run_row.stored,
            duplicates=run_row.duplicates,
            malformed=run_row.malformed,
            error=error,
            updated=updated_counts(session, import_ids=[run_id]).get(run_id, 0),
        )
    log = logger.warning if status == "failed" else logger.info
    log("collector run finished", extra={"source": name, **outcome.__dict__})
    return outcome


class LeaseKeeper(threading.Thread):
    """Renews a running collector's lease every third of its length, so that a run on a host that dies is
    taken over within one lease, however long a page takes; ``lost`` is set when another run took it."""

    def __init__(
        self, session_factory: sessionmaker[Session], *, source_id: int, owner: str, lease: timedelta
    ) -> None:
        super().__init__(name=f"cxmine-lease-{source_id}", daemon=True)
        self.session_factory = session_factory
        self.source_id = source_id
        self.owner = owner
        self.lease = lease
        self.lost = threading.Event()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.lease.total_seconds() / 3):
            try:
                with self.session_factory() as session, session.begin():
                    renewed = session.execute(
                        update(Source)
                        .where(Source.id == self.source_id, Source.lease_owner == self.owner)
                        .values(lease_expires_at=utcnow() + self.lease)
                        .execution_options(synchronize_session=False)
                    )
            except Exception:  # a database hiccup: the page writes renew the lease too
                logger.warning("could not renew a collector's lease", exc_info=True)
                continue
            if renewed.rowcount != 1:  # type: ignore[attr-defined]
                self.lost.set()
                return

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=10)


def _claim(session: Session, *, name: str, owner: str, lease: timedelta) -> Source:
    """Take the source's lease (free, expired, or held by a dead process on this host) or fail."""
    source = get_collector(session, name=name)
    now = utcnow()
    holder = source.lease_owner
    free = holder is None or source.lease_expires_at is None or source.lease_expires_at <= now
    if not free and holder is not None and _holder_is_dead(holder):
        free = True
    if not free:
        raise SourceBusyError(name)
    claimed = session.execute(
        update(Source)
        .where(
            Source.id == source.id,
            or_(Source.lease_owner.is_(None), Source.lease_owner == holder)
            if holder is not None
            else Source.lease_owner.is_(None),
        )
        .values(
            lease_owner=owner,
            lease_expires_at=now + lease,
            run_requested_at=None,
            last_run_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise SourceBusyError(name)
    # Runs that died with their process are over: say so instead of leaving them "running".
    session.execute(
        update(ImportAudit)
        .where(ImportAudit.source_id == source.id, ImportAudit.status == "running")
        .values(status="interrupted", finished_at=now, error="the process running it stopped")
        .execution_options(synchronize_session=False)
    )
    session.refresh(source)
    return source


def _holder_is_dead(owner: str) -> bool:
    """True when the lease holder is a process on this host that no longer exists."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _finish_source(
    session: Session,
    *,
    source_id: int,
    owner: str,
    status: str,
    error: str | None,
    action: str | None,
    retry_after: float | None,
) -> None:
    source = session.get(Source, source_id)
    assert source is not None
    now = utcnow()
    if status == "completed":
        source.last_success_at = now
        source.consecutive_failures = 0
        source.last_error = None
        source.last_error_action = None
    elif status in ("failed", "rate_limited"):
        source.last_error = error
        source.last_error_action = action
        source.last_error_at = now
        source.consecutive_failures = (source.consecutive_failures or 0) + 1
    if retry_after is not None:
        source.deferred_until = now + timedelta(seconds=retry_after)
    if source.lease_owner == owner:
        source.lease_owner = None
        source.lease_expires_at = None


@dataclass
class CollectorSink:
    """Writes each page's records, the source's cursor and the run's counts in one transaction."""

    session_factory: sessionmaker[Session]
    source_id: int
    source_name: str
    run_id: int
    owner: str
    lease: timedelta
    channel: str
    author_salt: bytes
    redact: bool
    max_text_chars: int
    on_page: Callable[[ImportAudit], None] | None = None

    def write(self, page: Page) -> None:
        """Store the page and move the cursor, or neither (a lost lease rolls the page back)."""
        with self.session_factory() as session, session.begin():
            now = utcnow()
            run = session.get(ImportAudit, self.run_id)
            assert run is not None
            stored = store_records(
                session,
                run=run,
                records=page.records,
                malformed=page.malformed,
                source_name=self.source_name,
                channel=self.channel,
                author_salt=self.author_salt,
                redact=self.redact,
                max_text_chars=self.max_text_chars,
            )
            moved = session.execute(
                update(Source)
                .where(Source.id == self.source_id, Source.lease_owner == self.owner)
                .values(
                    cursor=page.cursor,
                    cursor_updated_at=now,
                    lease_expires_at=now + self.lease,
                    items_collected=Source.items_collected + stored,
                )
                .execution_options(synchronize_session=False)
            )
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                raise LeaseLostError(
                    f"source {self.source_name!r} was taken over by another run; this page was not stored"
                )
            run.pages += 1
            session.flush()
            if self.on_page is not None:
                self.on_page(run)


def store_records(
    session: Session,
    *,
    run: ImportAudit,
    records: Sequence[Record],
    malformed: Sequence[Malformed],
    source_name: str,
    channel: str,
    author_salt: bytes,
    redact: bool,
    max_text_chars: int,
    change_source: str = "collector",
) -> int:
    """Validate and store records in the caller's transaction, counting them on the run; returns how many
    were new (changed ones are versioned and counted by ``updated_counts``)."""
    results: list[ItemResult] = []
    valid: list[tuple[int, FeedbackItemIn]] = []
    redacted = 0
    for index, record in enumerate(records):
        raw, changed = record_to_item(record, source_name=source_name, channel=channel, redact=redact)
        redacted += changed
        outcome = validate_item(raw, max_text_chars=max_text_chars)
        if isinstance(outcome, FeedbackItemIn):
            valid.append((index, outcome))
        else:
            results.append(
                ItemResult(index=index, status="rejected", errors=outcome, external_id=record.external_id)
            )
    store = FeedbackStore(session, author_salt=author_salt, change_source=change_source)
    results.extend(store.store(valid, import_id=run.id))
    results.sort(key=lambda result: result.index)
    record_results(run, results, row_label="record")
    run.redacted += redacted
    run.near_duplicates += store.near_duplicates
    run.malformed += len(malformed) + sum(1 for result in results if result.status == "rejected")
    room = 50 - len(run.error_sample)
    if room > 0 and malformed:
        run.error_sample = [
            *run.error_sample,
            *(
                {"record": report.where, "external_id": report.external_id, "reason": report.reason}
                for report in malformed[:room]
            ),
        ]
    return sum(1 for result in results if result.status == "stored")


def record_to_item(
    record: Record, *, source_name: str, channel: str, redact: bool
) -> tuple[dict[str, Any], int]:
    """The record as a feedback item for validation, its text redacted unless the source keeps it raw;
    and how many pieces of personal data were removed."""
    text = record.text
    redactions = 0
    metadata: dict[str, Any] = _json_safe(dict(record.metadata))
    if redact:
        redaction = redact_pii(text)
        text = redaction.text
        if redaction.changed:
            redactions = sum(redaction.counts.values())
            metadata["pii_redacted"] = redaction.counts
    for key in ("app_version", "url", "touchpoint"):
        value = getattr(record, key)
        if value is not None:
            metadata[key] = value
    if len(metadata) > 50:
        metadata = dict(list(metadata.items())[:50])
    item: dict[str, Any] = {
        "text": text,
        "source": source_name,
        "external_id": record.external_id[:300],
        "created_at": record.created_at,
        "channel": channel,
        "metadata": metadata,
    }
    if record.rating is not None:
        item["rating"] = {"value": record.rating.value, "scale": record.rating.scale.value}
    for key in ("location", "product"):
        value = getattr(record, key)
        if value:
            item[key] = value[:200]
    if record.author:
        item["author"] = record.author[:500]
    if record.language and _LANGUAGE.match(record.language.lower()):
        item["language"] = record.language.lower()
    return item, redactions


def _json_safe(value: dict[str, Any]) -> dict[str, Any]:
    safe: dict[str, Any] = json.loads(json.dumps(value, default=str, ensure_ascii=False))
    return safe
