"""The background work itself, as plain functions: the APScheduler jobs (service/scheduler.py) and the
procrastinate tasks (service/tasks.py) both call these, so the two job runners share one code path."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from service.collectors import SourceBusyError, is_collector, run_collector
from service.config import Settings
from service.db.models import SchedulerRun, Source, utcnow

logger = logging.getLogger("cxmine.jobs")

RUN_HISTORY_DAYS = 7


def score_new(
    *,
    session_factory: sessionmaker[Session],
    analyzer: Any,
    settings: Settings,
    stop: threading.Event,
    on_progress: Callable[[int], None] | None = None,
    after_id: int = 0,
    up_to_id: int | None = None,
) -> int:
    """Score feedback not yet scored (only ids in (after_id, up_to_id] when given); return how many."""
    from service.scoring import score_pending

    run = score_pending(
        session_factory,
        analyzer=analyzer,
        batch_size=settings.scoring_batch_size,
        stop=stop,
        on_progress=on_progress,
        after_id=after_id,
        up_to_id=up_to_id,
    )
    return run.scored


def label_new(*, session_factory: sessionmaker[Session], labelers: Any, stop: threading.Event) -> None:
    """Label the touchpoints of scored items not labelled with the taxonomy in force."""
    from service.touchpoints import label_pending

    labeler = labelers.current(session_factory)
    if labeler is not None and not stop.is_set():
        label_pending(session_factory, labeler=labeler, stop=stop)


def make_labelers(*, analyzer: Any) -> Any:
    """The touchpoint labeller cache for an analyzer (rebuilt when the taxonomy changes)."""
    from service.touchpoints import LabelerCache

    return LabelerCache(encoder=analyzer.encoder, sentiment=analyzer.sentiment)


def make_topic_maintenance(*, session_factory: sessionmaker[Session], settings: Settings) -> Any:
    """The topic job: the refit when due, then topics for new sentences."""
    from service.topics import TopicAssigner, TopicMaintenance

    return TopicMaintenance(
        session_factory=session_factory,
        assigner=TopicAssigner(),
        refit_cron=settings.topics_refit_cron,
        bootstrap_sentences=settings.topics_bootstrap_sentences,
    )


def evaluate_alerts(*, session_factory: sessionmaker[Session]) -> None:
    """Evaluate every alert rule and store the alerts they raise."""
    from service.alerts import evaluate_rules

    evaluate_rules(session_factory)


def deliver_alerts(
    *, session_factory: sessionmaker[Session], client: httpx.Client, settings: Settings, stop: threading.Event
) -> None:
    """Post the alerts whose webhook delivery is due."""
    from service.alerts import deliver_pending, delivery_options

    deliver_pending(session_factory, client=client, stop=stop, **delivery_options(settings))


def collect_source(
    *, session_factory: sessionmaker[Session], settings: Settings, name: str, stop: threading.Event
) -> None:
    """One scheduled run of a collector, unless it is paused, deferred or already running."""
    with session_factory() as session:
        source = session.scalar(select(Source).where(Source.name == name))
        if source is None or not source.enabled:
            return
        if source.deferred_until is not None and source.deferred_until > utcnow():
            logger.info("collector deferred by rate limiting", extra={"source": name})
            return
        trigger = "manual" if source.run_requested_at is not None else "schedule"
    try:
        run_collector(session_factory, name=name, settings=settings, trigger=trigger, stop=stop)
    except SourceBusyError:
        logger.info("collector still running from an earlier run", extra={"source": name})


def enabled_collectors(*, session_factory: sessionmaker[Session]) -> list[Source]:
    """Every enabled source that has a collector."""
    with session_factory() as session:
        return [s for s in session.scalars(select(Source)) if is_collector(s) and s.enabled]


def due_sources(*, session_factory: sessionmaker[Session], now: datetime | None = None) -> list[str]:
    """The collectors to run now: asked for, never run, cut short, or due by their schedule."""
    now = now or utcnow()
    return [
        s.name
        for s in enabled_collectors(session_factory=session_factory)
        if s.run_requested_at is not None or overdue(s, now=now)
    ]


def overdue(source: Source, *, now: datetime) -> bool:
    """Never run, cut short by a stopped process, or due while nothing ran it (missed runs make one)."""
    if source.last_run_at is None or source.lease_owner is not None:
        return True
    if source.schedule_cron is not None:
        from apscheduler.triggers.cron import CronTrigger

        due = CronTrigger.from_crontab(source.schedule_cron, timezone=UTC).get_next_fire_time(
            None, source.last_run_at
        )
        return due is not None and due <= now
    assert source.schedule_interval_seconds is not None
    return source.last_run_at + timedelta(seconds=source.schedule_interval_seconds) <= now


def prune_run_history(*, session_factory: sessionmaker[Session]) -> None:
    """Forget scheduler runs older than a week."""
    with session_factory() as session, session.begin():
        session.execute(
            delete(SchedulerRun).where(SchedulerRun.started_at < utcnow() - timedelta(days=RUN_HISTORY_DAYS))
        )
