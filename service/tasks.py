"""The background work as procrastinate tasks (CXMINE_JOB_RUNNER=procrastinate, PostgreSQL only).

Any number of ``cxmine worker`` processes, on any host, share the jobs the in-process scheduler
(service/scheduler.py) runs in one leader; both call the same functions (service/jobs.py). What replaces
the scheduler's guarantees:

- the leader lock and the ``scheduler_runs`` tick claim: every worker runs procrastinate's periodic
  deferrer, and ``procrastinate_periodic_defers`` (unique per task and tick) defers each tick once; each
  job is fetched by one worker only (``FOR UPDATE SKIP LOCKED``);
- a job never overlapping itself (``max_instances=1``): a ``lock`` per task (per source for collection,
  per id range for scoring; one topics job, so a refit never runs twice at once), and a ``queueing_lock``
  so that at most one more waits (missed ticks coalesce); the dispatchers (collect_due, score_due) defer
  nothing for a lock whose job waits or runs;
- a standby taking over from a dead leader: the others keep working, and the ``retry_stalled`` task puts
  the jobs of a worker without a heartbeat for ``worker_stalled_seconds`` back in the queue.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.engine import make_url

from service import jobs
from service.config import Settings

if TYPE_CHECKING:
    import httpx
    import procrastinate
    from sqlalchemy.orm import Session, sessionmaker

logger = logging.getLogger("cxmine.tasks")

QUEUES = ("collect", "score", "topics", "alerts", "webhooks", "maintenance")
SCORE_TASK_BATCHES = 4
"""A scoring task covers this many scoring batches of ids (``scoring_batch_size`` each)."""
MAX_DEFERS_PER_TICK = 1_000
PRUNE_CRON = "17 4 * * *"


def conninfo(database_url: str) -> str:
    """The libpq URL of a SQLAlchemy ``postgresql+psycopg://`` URL (query options such as search_path kept)."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError("procrastinate needs PostgreSQL")
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def install_schema(*, database_url: str) -> bool:
    """Apply procrastinate's schema (to the connection's current schema) unless it is there; whether it was."""
    import psycopg
    from procrastinate.schema import SchemaManager

    with psycopg.connect(conninfo(database_url)) as connection:
        if schema_installed_on(connection):
            return False
        connection.execute(SchemaManager.get_schema())
    return True


def schema_installed(*, database_url: str) -> bool:
    """Whether procrastinate's tables are in the database."""
    import psycopg

    with psycopg.connect(conninfo(database_url)) as connection:
        return schema_installed_on(connection)


def schema_installed_on(connection: Any) -> bool:
    """Whether procrastinate's tables are visible on this psycopg connection."""
    row = connection.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
    return row is not None and row[0] is not None


def every(seconds: float) -> str:
    """A crontab line (seconds as a sixth field under a minute) firing about every ``seconds``."""
    whole = max(1, round(seconds))
    if whole < 60:
        return f"* * * * * */{whole}"
    minutes = max(1, round(whole / 60))
    if minutes < 60:
        return f"*/{minutes} * * * *"
    hours = max(1, round(minutes / 60))
    return f"0 */{hours} * * *" if hours < 24 else "0 0 * * *"


def retry(*, attempts: int, base: int) -> Any:
    """Exponential backoff: base, base², ... seconds between ``attempts`` tries."""
    from procrastinate import RetryStrategy

    return RetryStrategy(max_attempts=attempts, exponential_wait=base)


class Runtime:
    """What one worker process's tasks share: the database and the models, made on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop = threading.Event()
        self._lock = threading.Lock()

    @cached_property
    def session_factory(self) -> sessionmaker[Session]:
        from service.db.engine import make_engine, make_session_factory

        return make_session_factory(make_engine(self.settings.effective_database_url))

    @cached_property
    def analyzer(self) -> Any:
        from service.pipeline import load_analyzer

        return load_analyzer(self.settings)

    @cached_property
    def labelers(self) -> Any:
        return jobs.make_labelers(analyzer=self.analyzer)

    @cached_property
    def topics(self) -> Any:
        return jobs.make_topic_maintenance(session_factory=self.session_factory, settings=self.settings)

    @cached_property
    def webhook_client(self) -> httpx.Client:
        from service.alerts import webhook_client

        return webhook_client()

    def get(self, name: str) -> Any:
        """An attribute, made once even when tasks run in threads."""
        with self._lock:
            return getattr(self, name)


def build_app(settings: Settings) -> procrastinate.App:
    """A procrastinate app on the service's PostgreSQL database, with every task and schedule."""
    from procrastinate import App, PsycopgConnector

    connector = PsycopgConnector(conninfo=conninfo(settings.effective_database_url), min_size=1, max_size=8)
    app = App(
        connector=connector,
        worker_defaults={
            "update_heartbeat_interval": settings.worker_heartbeat_seconds,
            "stalled_worker_timeout": settings.worker_stalled_seconds,
        },
    )
    runtime = Runtime(settings)
    _collect_tasks(app, runtime)
    if settings.scoring_enabled:
        _score_tasks(app, runtime)
        _topic_tasks(app, runtime)
    if settings.alerts_enabled:
        _alert_tasks(app, runtime)
    _maintenance_tasks(app, runtime)
    return app


ACTIVE_LOCKS_SQL = (
    "SELECT lock FROM procrastinate_jobs WHERE status IN ('todo', 'doing') AND lock LIKE %(prefix)s"
)


async def active_locks(app: procrastinate.App, *, prefix: str) -> set[str]:
    """The locks of the jobs waiting or running whose lock starts with ``prefix``."""
    rows = await app.connector.execute_query_all_async(query=ACTIVE_LOCKS_SQL, prefix=f"{prefix}%")
    return {row["lock"] for row in rows}


async def _defer(task: Any, *, lock: str, active: set[str], **kwargs: Any) -> bool:
    """Defer ``task`` under ``lock`` unless a job with that lock waits or runs; whether it was deferred.

    No twin is ever queued behind a running job, so a failed job's retry (or a stalled one's) never meets
    one holding its queueing lock."""
    from procrastinate.exceptions import AlreadyEnqueued

    if lock in active:
        return False
    try:
        await task.configure(lock=lock, queueing_lock=lock).defer_async(**kwargs)
    except AlreadyEnqueued:
        return False
    return True


def _periodic(
    app: procrastinate.App,
    body: Any,
    *,
    name: str,
    queue: str,
    cron: str,
    locked: bool = True,
    retry_strategy: Any = None,
) -> None:
    """Register ``body`` as the periodic task ``cxmine.<name>``: at most one waits (queueing lock) and, when
    ``locked``, one runs at a time."""
    task = app.task(
        name=f"cxmine.{name}",
        queue=queue,
        lock=name if locked else None,
        queueing_lock=name,
        retry=retry_strategy if retry_strategy is not None else False,
    )(body)
    app.periodic(cron=cron)(task)


def _collect_tasks(app: procrastinate.App, runtime: Runtime) -> None:
    settings = runtime.settings

    def collect(name: str) -> None:
        factory = runtime.get("session_factory")
        if name in jobs.due_sources(session_factory=factory):  # not already run by an earlier job
            jobs.collect_source(session_factory=factory, settings=settings, name=name, stop=runtime.stop)

    collect_task = app.task(name="cxmine.collect", queue="collect", retry=retry(attempts=3, base=10))(collect)

    async def collect_due(timestamp: int) -> None:
        factory = runtime.get("session_factory")
        active = await active_locks(app, prefix="collect:")
        for name in await asyncio.to_thread(jobs.due_sources, session_factory=factory):
            await _defer(collect_task, lock=f"collect:{name}", active=active, name=name)

    _periodic(
        app, collect_due, name="collect_due", queue="collect", cron=every(settings.scheduler_sync_seconds)
    )


def pending_ranges(*, session_factory: sessionmaker[Session], span: int) -> list[tuple[int, int]]:
    """The id ranges ``(after_id, up_to_id]`` of ``span`` ids that hold unscored feedback, oldest first."""
    from service.db.models import FeedbackItem

    bucket = (FeedbackItem.id - 1) // span
    with session_factory() as session:
        buckets = session.scalars(
            select(bucket)
            .distinct()
            .where(FeedbackItem.scored_at.is_(None))
            .order_by(bucket)
            .limit(MAX_DEFERS_PER_TICK)
        ).all()
    return [(int(b) * span, int(b) * span + span) for b in buckets]


def _score_tasks(app: procrastinate.App, runtime: Runtime) -> None:
    settings = runtime.settings
    span = settings.scoring_batch_size * SCORE_TASK_BATCHES

    def score_batch(after_id: int, up_to_id: int) -> None:
        jobs.score_new(
            session_factory=runtime.get("session_factory"),
            analyzer=runtime.get("analyzer"),
            settings=settings,
            stop=runtime.stop,
            after_id=after_id,
            up_to_id=up_to_id,
        )

    batch_task = app.task(name="cxmine.score_batch", queue="score", retry=retry(attempts=5, base=2))(
        score_batch
    )

    async def score_due(timestamp: int) -> None:
        factory = runtime.get("session_factory")
        active = await active_locks(app, prefix="score:")
        for after_id, up_to_id in await asyncio.to_thread(pending_ranges, session_factory=factory, span=span):
            await _defer(
                batch_task, lock=f"score:{after_id}", active=active, after_id=after_id, up_to_id=up_to_id
            )

    _periodic(app, score_due, name="score_due", queue="score", cron=every(settings.scoring_interval_seconds))

    def label(timestamp: int) -> None:
        jobs.label_new(
            session_factory=runtime.get("session_factory"),
            labelers=runtime.get("labelers"),
            stop=runtime.stop,
        )

    _periodic(app, label, name="label", queue="score", cron=every(settings.scoring_interval_seconds))


def _topic_tasks(app: procrastinate.App, runtime: Runtime) -> None:
    def topics(timestamp: int) -> None:
        runtime.get("topics")(runtime.stop)

    cron = every(runtime.settings.topics_assign_interval_seconds)
    _periodic(app, topics, name="topics", queue="topics", cron=cron, retry_strategy=retry(attempts=3, base=5))


def _alert_tasks(app: procrastinate.App, runtime: Runtime) -> None:
    settings = runtime.settings

    def evaluate(timestamp: int) -> None:
        jobs.evaluate_alerts(session_factory=runtime.get("session_factory"))

    cron = every(settings.alert_evaluation_interval_seconds)
    _periodic(app, evaluate, name="alerts_evaluate", queue="alerts", cron=cron)

    def deliver(timestamp: int) -> None:
        jobs.deliver_alerts(
            session_factory=runtime.get("session_factory"),
            client=runtime.get("webhook_client"),
            settings=settings,
            stop=runtime.stop,
        )

    _periodic(
        app,
        deliver,
        name="alerts_deliver",
        queue="webhooks",
        cron=every(min(15.0, settings.alert_evaluation_interval_seconds)),
        retry_strategy=retry(attempts=3, base=5),
    )


async def retry_stalled_job(app: procrastinate.App, job: Any) -> None:
    """Queue a dead worker's job again; when a twin already waits (same queueing lock), end it as failed
    instead, which frees its lock for the twin (every task is safe to run again)."""
    from procrastinate.exceptions import UniqueViolation
    from procrastinate.jobs import Status

    try:
        await app.job_manager.retry_job(job)
    except UniqueViolation:
        logger.warning("a stalled job's twin is queued; failing the stalled one", extra={"job": job.id})
        await app.job_manager.finish_job(job, status=Status.FAILED, delete_job=False)
        return
    logger.warning("retrying a job of a stalled worker", extra={"job": job.id, "task": job.task_name})


def _maintenance_tasks(app: procrastinate.App, runtime: Runtime) -> None:
    settings = runtime.settings

    async def retry_stalled(timestamp: int) -> None:
        stalled = await app.job_manager.get_stalled_jobs(
            seconds_since_heartbeat=settings.worker_stalled_seconds
        )
        for job in stalled:
            await retry_stalled_job(app, job)

    cron = every(settings.worker_maintenance_interval_seconds)
    _periodic(app, retry_stalled, name="retry_stalled", queue="maintenance", cron=cron, locked=False)

    async def prune_jobs(timestamp: int) -> None:
        await app.job_manager.delete_old_jobs(
            nb_hours=settings.worker_job_retention_hours, include_failed=True, include_cancelled=True
        )

    _periodic(app, prune_jobs, name="prune_jobs", queue="maintenance", cron=PRUNE_CRON, locked=False)
