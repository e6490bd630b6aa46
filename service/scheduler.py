"""The scheduler: APScheduler 3 runs collection, scoring, topics and alerts, in exactly one process.

Every API worker and every ``cxmine scheduler run`` starts one of these; only the holder of the leader lock
(a file lock beside a SQLite database, an advisory lock on PostgreSQL) runs jobs, and a standby takes over
within ``scheduler_leader_poll_seconds`` when the leader goes. Each job run first claims its tick in
``scheduler_runs`` (unique per job and tick), so even a handover mid-tick cannot run a tick twice. Jobs do
not overlap themselves (one instance each) and missed runs coalesce into one.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx
from sqlalchemy import Connection, Engine, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from service import jobs
from service.collectors import PROCESS_OWNER, SCHEDULE_EPOCH
from service.config import Settings
from service.db.models import SchedulerRun, Source, utcnow
from service.jobs import RUN_HISTORY_DAYS, overdue

if TYPE_CHECKING:
    from service.metrics import JobMetrics

logger = logging.getLogger("cxmine.scheduler")

# One lock per schema, so that deployments sharing a PostgreSQL database in separate schemas do not contend.
_LOCK_KEY_SQL = "hashtext('cxmine.scheduler.' || current_schema())"
__all__ = ["RUN_HISTORY_DAYS", "JobSpec", "Scheduler", "pipeline_jobs"]

JobFunction = Callable[[threading.Event], None]
CURRENT_TICK: contextvars.ContextVar[datetime | None] = contextvars.ContextVar("cxmine_tick", default=None)
"""The tick the running job was scheduled for (set while a job runs)."""


# ------------------------------------------------------------------------------------------- the lock


class LeaderLock(Protocol):
    def acquire(self) -> bool: ...

    def still_held(self) -> bool: ...

    def release(self) -> None: ...


class FileLeaderLock:
    """An exclusive lock file beside the SQLite database: one scheduler per database on this host."""

    def __init__(self, path: Path) -> None:
        from filelock import FileLock

        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = FileLock(str(path), timeout=0)

    def acquire(self) -> bool:
        from filelock import Timeout

        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return False
        return True

    def still_held(self) -> bool:
        return bool(self._lock.is_locked)

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release(force=True)


class PostgresLeaderLock:
    """A session-level advisory lock held on a connection of its own; it goes when the connection does."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._connection: Connection | None = None

    def acquire(self) -> bool:
        connection = self.engine.connect()
        try:
            got = bool(connection.scalar(text(f"SELECT pg_try_advisory_lock({_LOCK_KEY_SQL})")))
            connection.commit()
        except Exception:
            connection.close()
            raise
        if not got:
            connection.close()
            return False
        self._connection = connection
        return True

    def still_held(self) -> bool:
        if self._connection is None:
            return False
        try:
            self._connection.scalar(text("SELECT 1"))
            self._connection.commit()
        except Exception:
            logger.warning("lost the scheduler's database connection; giving up leadership")
            self._connection = None
            return False
        return True

    def release(self) -> None:
        if self._connection is None:
            return
        try:
            self._connection.scalar(text(f"SELECT pg_advisory_unlock({_LOCK_KEY_SQL})"))
            self._connection.commit()
        except Exception:
            logger.debug("advisory unlock failed; closing the connection releases it", exc_info=True)
        finally:
            self._connection.close()
            self._connection = None


def leader_lock_for(engine: Engine, settings: Settings) -> LeaderLock:
    """The lock that elects one scheduler for this database."""
    if engine.dialect.name == "postgresql":
        return PostgresLeaderLock(engine)
    database = engine.url.database
    if database and database != ":memory:":
        return FileLeaderLock(Path(database).with_name(Path(database).name + ".scheduler.lock"))
    return FileLeaderLock(settings.data_dir / "scheduler.lock")


# -------------------------------------------------------------------------------------------- the jobs


@dataclass(frozen=True)
class JobSpec:
    """One scheduled job: an id, what it runs, and when (seconds between runs or a crontab line)."""

    id: str
    run: JobFunction
    interval_seconds: float | None = None
    cron: str | None = None

    def trigger(self) -> Any:
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        if self.cron is not None:
            return CronTrigger.from_crontab(self.cron, timezone=UTC)
        assert self.interval_seconds is not None
        return IntervalTrigger(seconds=self.interval_seconds, start_date=SCHEDULE_EPOCH, timezone=UTC)


def _tick_executor(max_workers: int) -> Any:
    """A thread pool that remembers which tick each submission is for (APScheduler does not pass it on)."""
    from apscheduler.executors.pool import ThreadPoolExecutor

    class TickExecutor(ThreadPoolExecutor):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(max_workers)
            self.ticks: dict[str, datetime] = {}
            self.ticks_lock = threading.Lock()

        def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
            with self.ticks_lock:
                self.ticks[job.id] = run_times[-1]
            super()._do_submit_job(job, run_times)

        def take_tick(self, job_id: str) -> datetime | None:
            with self.ticks_lock:
                return self.ticks.pop(job_id, None)

    return TickExecutor()


class Scheduler:
    """Leader election plus an APScheduler ``BackgroundScheduler`` that runs only while we lead."""

    def __init__(
        self,
        *,
        settings: Settings,
        engine: Engine,
        session_factory: sessionmaker[Session],
        jobs: list[JobSpec],
        collect: bool = True,
        owner: str = PROCESS_OWNER,
        metrics: JobMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.session_factory = session_factory
        self.jobs = jobs
        self.collect = collect
        self.owner = owner
        self.metrics = metrics
        if metrics is not None:
            metrics.watch(self)
        self.lock = leader_lock_for(engine, settings)
        self._stop = threading.Event()
        self._leading = threading.Event()
        self._aps: Any = None
        self._executor: Any = None
        self._thread = threading.Thread(target=self._lead_when_possible, name="cxmine-scheduler", daemon=True)
        self._collect_jobs: dict[str, tuple[int | None, str | None]] = {}

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    def start(self) -> None:
        """Start competing for leadership in the background."""
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop running jobs (the ones in flight finish) and give up the lock."""
        self._stop.set()
        self._thread.join(timeout)

    def stop_soon(self) -> None:
        """Ask the scheduler to stop (safe from a signal handler); ``wait`` returns once it has."""
        self._stop.set()

    def wait(self) -> None:
        """Block until ``stop`` is called (the standalone ``cxmine scheduler run``)."""
        while not self._stop.wait(1.0):
            pass
        self._thread.join()

    def _lead_when_possible(self) -> None:
        poll = self.settings.scheduler_leader_poll_seconds
        try:
            while not self._stop.is_set():
                if not self.is_leader:
                    try:
                        if self.lock.acquire():
                            self._become_leader()
                    except Exception:
                        logger.exception("could not try the scheduler lock; retrying")
                elif not self.lock.still_held():
                    self._step_down()
                self._stop.wait(poll)
        finally:
            if self.is_leader:
                self._step_down()

    def _become_leader(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        logger.info("this process now runs the scheduler", extra={"owner": self.owner})
        self._executor = _tick_executor(self.settings.scheduler_max_workers)
        self._aps = BackgroundScheduler(
            executors={"default": self._executor},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
            timezone=UTC,
        )
        for spec in self.jobs:
            self._add(spec)
        if self.collect:
            self._add(
                JobSpec(
                    "sources.sync", self._sync_sources, interval_seconds=self.settings.scheduler_sync_seconds
                )
            )
        self._add(JobSpec("scheduler.prune", self._prune_history, cron="17 4 * * *"))
        self._leading.set()
        self._aps.start()
        if self.collect:
            self._sync_sources(self._stop)

    def _step_down(self) -> None:
        logger.info("this process stops running the scheduler", extra={"owner": self.owner})
        self._leading.clear()
        if self._aps is not None:
            self._aps.shutdown(wait=True)
            self._aps = None
        self._collect_jobs.clear()
        self.lock.release()

    def _add(self, spec: JobSpec, *, next_run_time: datetime | None = None) -> None:
        options: dict[str, Any] = {}
        if next_run_time is not None:
            options["next_run_time"] = next_run_time
        self._aps.add_job(
            self._run_once_per_tick,
            trigger=spec.trigger(),
            args=(spec.id, spec.run),
            id=spec.id,
            name=spec.id,
            replace_existing=True,
            **options,
        )

    def _run_once_per_tick(self, job_id: str, run: JobFunction) -> None:
        tick = (self._executor.take_tick(job_id) if self._executor is not None else None) or utcnow()
        if not self.is_leader or self._stop.is_set():
            return
        run_id = self._claim_tick(job_id, tick)
        if run_id is None:
            logger.info(
                "tick already run by another scheduler", extra={"job": job_id, "tick": tick.isoformat()}
            )
            return
        status, error = "completed", None
        token = CURRENT_TICK.set(tick)
        started = time.monotonic()
        try:
            run(self._stop)
        except Exception as exc:  # one failing job must not stop the others
            logger.exception("scheduled job failed", extra={"job": job_id})
            status, error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            CURRENT_TICK.reset(token)
        if self.metrics is not None:
            self.metrics.job_finished(job_id, time.monotonic() - started, failed=status == "failed")
        with self.session_factory() as session, session.begin():
            session.execute(
                update(SchedulerRun)
                .where(SchedulerRun.id == run_id)
                .values(status=status, error=error, finished_at=utcnow())
                .execution_options(synchronize_session=False)
            )

    def _claim_tick(self, job_id: str, tick: datetime) -> int | None:
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        with self.session_factory() as session, session.begin():
            return session.scalar(
                insert(SchedulerRun)
                .values(
                    job_id=job_id,
                    scheduled_for=tick.astimezone(UTC),
                    owner=self.owner,
                    status="running",
                    started_at=utcnow(),
                )
                .on_conflict_do_nothing(index_elements=["job_id", "scheduled_for"])
                .returning(SchedulerRun.id)
            )

    def _prune_history(self, _stop: threading.Event) -> None:
        jobs.prune_run_history(session_factory=self.session_factory)

    # ------------------------------------------------------------------------------ collector jobs

    def _sync_sources(self, _stop: threading.Event) -> None:
        """Match the collect jobs to the sources table, and start the runs someone asked for."""
        if self._aps is None:
            return
        sources = jobs.enabled_collectors(session_factory=self.session_factory)
        wanted: dict[str, Source] = {source.name: source for source in sources}
        for name in list(self._collect_jobs):
            if name not in wanted:
                self._aps.remove_job(f"collect:{name}")
                del self._collect_jobs[name]
        now = utcnow()
        for name, source in wanted.items():
            schedule = (source.schedule_interval_seconds, source.schedule_cron)
            requested = source.run_requested_at is not None
            if self._collect_jobs.get(name) != schedule:
                spec = JobSpec(
                    f"collect:{name}",
                    _collect_job(self, name),
                    interval_seconds=source.schedule_interval_seconds,
                    cron=source.schedule_cron,
                )
                first_run = now if (requested or overdue(source, now=now)) else None
                self._add(spec, next_run_time=first_run)
                self._collect_jobs[name] = schedule
            elif requested:
                self._aps.modify_job(f"collect:{name}", next_run_time=now)

    def run_collect(self, name: str, stop: threading.Event) -> None:
        """One scheduled run of a collector, unless it is paused, deferred or already running."""
        jobs.collect_source(
            session_factory=self.session_factory, settings=self.settings, name=name, stop=stop
        )


_overdue = overdue  # the scheduler's name for it, kept for callers


def _collect_job(scheduler: Scheduler, name: str) -> JobFunction:
    def collect(stop: threading.Event) -> None:
        scheduler.run_collect(name, stop)

    return collect


# ----------------------------------------------------------------------------------- standard jobs


def pipeline_jobs(
    *,
    settings: Settings,
    session_factory: sessionmaker[Session],
    analyzer: Any,
    webhook_client: httpx.Client | None,
    metrics: JobMetrics | None = None,
) -> list[JobSpec]:
    """Scoring (with touchpoint labelling), topics (the nightly refit, then assignment), and alerts."""
    specs: list[JobSpec] = []
    if analyzer is not None and settings.scoring_enabled:
        specs.append(_score_spec(settings, session_factory, analyzer, metrics))
        maintenance = jobs.make_topic_maintenance(session_factory=session_factory, settings=settings)
        specs.append(JobSpec("topics", maintenance, interval_seconds=settings.topics_assign_interval_seconds))
    if settings.alerts_enabled:

        def evaluate(_stop: threading.Event) -> None:
            jobs.evaluate_alerts(session_factory=session_factory)

        interval = settings.alert_evaluation_interval_seconds
        specs.append(JobSpec("alerts.evaluate", evaluate, interval_seconds=interval))
        if webhook_client is not None:
            client = webhook_client

            def deliver(stop: threading.Event) -> None:
                jobs.deliver_alerts(
                    session_factory=session_factory, client=client, settings=settings, stop=stop
                )

            specs.append(JobSpec("alerts.deliver", deliver, interval_seconds=min(15.0, interval)))
    return specs


def _score_spec(
    settings: Settings, session_factory: sessionmaker[Session], analyzer: Any, metrics: JobMetrics | None
) -> JobSpec:
    labelers = jobs.make_labelers(analyzer=analyzer)
    on_progress = metrics.items_scored.inc if metrics is not None else None

    def score(stop: threading.Event) -> None:
        jobs.score_new(
            session_factory=session_factory,
            analyzer=analyzer,
            settings=settings,
            stop=stop,
            on_progress=on_progress,
        )
        jobs.label_new(session_factory=session_factory, labelers=labelers, stop=stop)

    return JobSpec("score", score, interval_seconds=settings.scoring_interval_seconds)
