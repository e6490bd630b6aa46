"""Prometheus metrics: HTTP (prometheus-fastapi-instrumentator), the jobs this process runs, and gauges read
from the database when Prometheus scrapes.

Every app (and every ``cxmine scheduler run``) has a registry of its own, so that many apps in one process
(the tests) never collide in prometheus_client's global registry. Counters live in the process that runs the
jobs; the database gauges (backlogs, collector health, refit age) are one cheap query each at scrape time, so
every API process reports the same values whichever process does the work.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from fastapi import Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from service.collectors import is_collector
from service.db.models import FeedbackItem, Source, TopicModelRun, utcnow

if TYPE_CHECKING:
    from fastapi import FastAPI

    from service.config import Settings
    from service.scheduler import Scheduler

logger = logging.getLogger("cxmine.metrics")

HTTP_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
JOB_LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
# Not timed as requests: the scrape itself and the dashboard's live feed (a stream that lasts minutes).
UNTIMED_HANDLERS = ["^/metrics$", "^/events$"]

SessionFactoryGetter = Callable[[], "sessionmaker[Session] | None"]


class JobMetrics:
    """The counters of the scheduled jobs this process runs; the scheduler's job wrapper feeds them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            "cxmine_job_duration_seconds",
            "How long each scheduled job run took, by task (score, topics, collect:<source>, ...).",
            ["task"],
            buckets=JOB_LATENCY_BUCKETS,
            registry=registry,
        )
        self.failures = Counter(
            "cxmine_job_failures", "Scheduled job runs that raised, by task.", ["task"], registry=registry
        )
        self.items_scored = Counter(
            "cxmine_items_scored",
            "Feedback items the score job has analysed; rate() is items per second.",
            registry=registry,
        )
        self.leader = Gauge(
            "cxmine_scheduler_leader",
            "1 while this process holds the scheduler's leader lock and runs the jobs.",
            registry=registry,
        )

    def job_finished(self, task: str, seconds: float, *, failed: bool) -> None:
        """Record one job run (the failure series starts at zero, so rate() works from the first run)."""
        self.duration.labels(task).observe(seconds)
        failures = self.failures.labels(task)
        if failed:
            failures.inc()

    def watch(self, scheduler: Scheduler) -> None:
        """Report whether this scheduler leads at each scrape."""
        self.leader.set_function(lambda: float(scheduler.is_leader))


class DatabaseCollector(Collector):
    """Gauges read from the database at scrape time: backlogs, the last refit's age, collector health."""

    def __init__(self, session_factory: SessionFactoryGetter) -> None:
        self._session_factory = session_factory

    def describe(self) -> list[Metric]:
        return []  # the registry need not query the database at registration

    def collect(self) -> Iterator[Metric]:
        factory = self._session_factory()
        if factory is None:  # before the lifespan opened the database
            return
        up = GaugeMetricFamily("cxmine_database_up", "1 when the metrics' database queries succeeded.")
        try:
            with factory() as session:
                families = [*_backlogs(session), *_refit_age(session), *_collector_health(session)]
        except SQLAlchemyError as exc:
            logger.warning("metrics could not read the database", extra={"error": type(exc).__name__})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families


def _backlogs(session: Session) -> list[Metric]:
    # score_model and scored_at are written together; score_model is indexed (ix_feedback_items_score_model_id).
    unscored = session.scalar(select(func.count()).where(FeedbackItem.score_model.is_(None))) or 0
    # As service.topics.count_unassigned: scored items with no topic from the newest finished model (before
    # the first refit, every scored item).
    newest_model = (
        select(TopicModelRun.id)
        .where(TopicModelRun.status == "done")
        .order_by(TopicModelRun.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    unassigned = session.scalar(
        select(func.count()).where(
            FeedbackItem.scored_at.is_not(None),
            or_(FeedbackItem.topic_model_id.is_(None), FeedbackItem.topic_model_id != newest_model),
        )
    )
    scoring = GaugeMetricFamily("cxmine_scoring_backlog_items", "Stored feedback items not scored yet.")
    scoring.add_metric([], unscored)
    topics = GaugeMetricFamily(
        "cxmine_topics_backlog_items", "Scored feedback items without a topic from the current topic model."
    )
    topics.add_metric([], unassigned or 0)
    return [scoring, topics]


def _refit_age(session: Session) -> list[Metric]:
    finished = session.scalar(
        select(func.max(TopicModelRun.finished_at)).where(TopicModelRun.status == "done")
    )
    age = GaugeMetricFamily(
        "cxmine_topics_last_refit_age_seconds", "Seconds since the newest successful topic refit finished."
    )
    if finished is not None:  # no sample before the first refit
        age.add_metric([], (utcnow() - finished).total_seconds())
    return [age]


def _collector_health(session: Session) -> list[Metric]:
    sources = [
        source for source in session.scalars(select(Source).order_by(Source.name)) if is_collector(source)
    ]
    families: dict[str, Any] = {
        "last_success": GaugeMetricFamily(
            "cxmine_collector_last_success_timestamp_seconds",
            "When the source's collector last succeeded (Unix time).",
            labels=["source"],
        ),
        "last_run": GaugeMetricFamily(
            "cxmine_collector_last_run_timestamp_seconds",
            "When the source's collector last ran (Unix time).",
            labels=["source"],
        ),
        "failures": GaugeMetricFamily(
            "cxmine_collector_consecutive_failures",
            "Failed collector runs since the source's last success.",
            labels=["source"],
        ),
        "enabled": GaugeMetricFamily(
            "cxmine_collector_enabled", "1 unless the source is paused.", labels=["source"]
        ),
        "items": CounterMetricFamily(
            "cxmine_collector_items", "Items the source's collector has stored.", labels=["source"]
        ),
    }
    for source in sources:
        labels = [source.name]
        for key, moment in (("last_success", source.last_success_at), ("last_run", source.last_run_at)):
            if moment is not None:
                families[key].add_metric(labels, moment.timestamp())
        families["failures"].add_metric(labels, source.consecutive_failures)
        families["enabled"].add_metric(labels, 1.0 if source.enabled else 0.0)
        families["items"].add_metric(labels, source.items_collected)
    return list(families.values())


# ------------------------------------------------------------------------------------------ the app


def install_metrics(app: FastAPI, settings: Settings) -> JobMetrics:
    """Give the app its registry and job metrics; serve them, with HTTP metrics, at GET /metrics if enabled."""
    registry = CollectorRegistry()
    job_metrics = JobMetrics(registry)
    app.state.metrics_registry = registry
    app.state.job_metrics = job_metrics
    if not settings.metrics_enabled:
        return job_metrics
    from prometheus_fastapi_instrumentator import Instrumentator

    Instrumentator(excluded_handlers=UNTIMED_HANDLERS, registry=registry).instrument(
        app, latency_lowr_buckets=HTTP_LATENCY_BUCKETS
    )
    registry.register(DatabaseCollector(lambda: getattr(app.state, "session_factory", None)))
    app.add_api_route(
        "/metrics", _metrics_endpoint(registry, settings), methods=["GET"], include_in_schema=False
    )
    return job_metrics


def _metrics_endpoint(registry: CollectorRegistry, settings: Settings) -> Callable[..., Any]:
    from prometheus_client.exposition import choose_encoder

    from service.api.problems import ProblemError

    token = settings.metrics_token.get_secret_value() if settings.metrics_token else ""

    def metrics(request: Request) -> Response:
        """Prometheus text exposition (a sync route: the database gauges query in the thread pool)."""
        given = request.headers.get("authorization", "")
        if token and not secrets.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise ProblemError(
                401,
                "GET /metrics needs `Authorization: Bearer <CXMINE_METRICS_TOKEN>`.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        encode, content_type = choose_encoder(request.headers.get("accept", ""))  # as Prometheus asks
        return Response(encode(registry), media_type=content_type)

    return metrics


def serve_job_metrics(settings: Settings) -> JobMetrics:
    """The standalone scheduler's metrics at http://CXMINE_HOST:CXMINE_SCHEDULER_METRICS_PORT/metrics."""
    registry = CollectorRegistry()
    job_metrics = JobMetrics(registry)
    if settings.scheduler_metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(settings.scheduler_metrics_port, addr=settings.host, registry=registry)
    return job_metrics
