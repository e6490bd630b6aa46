"""GET /metrics: HTTP metrics, job counters, gauges read from the database, the settings, and the deploy files."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from service.app import create_app
from service.config import Settings
from service.db.engine import make_engine, make_session_factory
from service.db.models import FeedbackItem, Role, Source, TopicModelRun, utcnow
from service.metrics import DatabaseCollector, JobMetrics, serve_job_metrics
from service.scheduler import JobSpec, Scheduler, pipeline_jobs

Auth = Callable[[Role], dict[str, str]]
DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return _samples(response.text)


def _value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def _ingest(client: TestClient, auth: Auth, count: int) -> None:
    items = [{"text": f"Delivery was late again, order {i}", "source": "web"} for i in range(count)]
    response = client.post("/v1/feedback", json={"items": items}, headers=auth(Role.INGEST))
    assert response.status_code == 200, response.text


def test_http_metrics_count_requests_by_handler(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/no/such/page").status_code == 404
    samples = _scrape(client)
    assert _value(samples, "http_requests_total", handler="/healthz", method="GET", status="2xx") == 1
    assert _value(samples, "http_requests_total", handler="none", method="GET", status="4xx") == 1
    bucket = _value(
        samples, "http_request_duration_seconds_bucket", handler="/healthz", method="GET", le="+Inf"
    )
    assert bucket == 1
    assert not any(labels and dict(labels).get("handler") == "/metrics" for _, labels in samples)
    assert _value(samples, "cxmine_database_up") == 1


def test_backlog_gauges_and_refit_age_follow_the_rows(
    client: TestClient, auth: Auth, session: Session
) -> None:
    _ingest(client, auth, 5)
    before = _scrape(client)
    assert _value(before, "cxmine_scoring_backlog_items") == 5
    assert _value(before, "cxmine_topics_backlog_items") == 0
    assert not any(name == "cxmine_topics_last_refit_age_seconds" for name, _ in before)

    ids = list(session.scalars(select(FeedbackItem.id).order_by(FeedbackItem.id)))
    scored = (
        update(FeedbackItem).where(FeedbackItem.id.in_(ids[:3])).values(scored_at=utcnow(), score_model="m")
    )
    session.execute(scored)
    session.commit()
    samples = _scrape(client)
    assert _value(samples, "cxmine_scoring_backlog_items") == 2
    assert _value(samples, "cxmine_topics_backlog_items") == 3  # no topic model yet: every scored item

    model = TopicModelRun(status="done", config={}, figures={}, finished_at=utcnow() - timedelta(hours=2))
    session.add(model)
    session.flush()
    session.execute(update(FeedbackItem).where(FeedbackItem.id == ids[0]).values(topic_model_id=model.id))
    session.add(TopicModelRun(status="failed", config={}, figures={}, finished_at=utcnow()))
    session.commit()
    samples = _scrape(client)
    assert _value(samples, "cxmine_topics_backlog_items") == 2
    age = _value(samples, "cxmine_topics_last_refit_age_seconds")
    assert age is not None and 7200 <= age < 7300, "the failed refit does not count"


@pytest.mark.slow
def test_the_score_job_counts_what_it_scores(
    scoring_client: TestClient, scoring_settings: Settings, auth: Auth
) -> None:
    _ingest(scoring_client, auth, 5)
    assert _value(_scrape(scoring_client), "cxmine_items_scored_total") == 0
    state = scoring_client.app.state  # type: ignore[attr-defined]
    [score] = [
        job
        for job in pipeline_jobs(
            settings=scoring_settings.model_copy(update={"scoring_enabled": True, "alerts_enabled": False}),
            session_factory=state.session_factory,
            analyzer=state.analyzer,
            webhook_client=None,
            metrics=state.job_metrics,
        )
        if job.id == "score"
    ]
    score.run(threading.Event())
    after = _scrape(scoring_client)
    assert _value(after, "cxmine_items_scored_total") == 5
    assert _value(after, "cxmine_scoring_backlog_items") == 0
    assert _value(after, "cxmine_topics_backlog_items") == 5


def test_collector_health_per_source(client: TestClient, session: Session) -> None:
    succeeded = utcnow() - timedelta(minutes=10)
    session.add_all(
        [
            Source(name="app-store", kind="app_store", schedule_interval_seconds=3600, last_run_at=succeeded,
                   last_success_at=succeeded, items_collected=42),
            Source(name="mastodon", kind="mastodon", schedule_cron="0 * * * *", enabled=False,
                   last_run_at=utcnow(), consecutive_failures=3),
            Source(name="api", kind="api"),  # pushed to, not collected: no collector health
        ]
    )  # fmt: skip
    session.commit()
    samples = _scrape(client)
    last_success = _value(samples, "cxmine_collector_last_success_timestamp_seconds", source="app-store")
    assert last_success == pytest.approx(succeeded.timestamp())
    assert _value(samples, "cxmine_collector_last_success_timestamp_seconds", source="mastodon") is None
    assert _value(samples, "cxmine_collector_consecutive_failures", source="app-store") == 0
    assert _value(samples, "cxmine_collector_consecutive_failures", source="mastodon") == 3
    assert _value(samples, "cxmine_collector_enabled", source="mastodon") == 0
    assert _value(samples, "cxmine_collector_items_total", source="app-store") == 42
    assert not any(dict(labels).get("source") == "api" for _, labels in samples)


def test_job_runs_and_failures_are_counted(engine: Engine, settings: Settings) -> None:
    registry = CollectorRegistry()
    metrics = JobMetrics(registry)
    ran = threading.Event()

    def broken(_stop: threading.Event) -> None:
        raise RuntimeError("boom")

    scheduler = Scheduler(
        settings=settings.model_copy(update={"scheduler_leader_poll_seconds": 0.2}),
        engine=engine,
        session_factory=make_session_factory(engine),
        jobs=[
            JobSpec("broken", broken, interval_seconds=0.5),
            JobSpec("probe", lambda _stop: ran.set(), interval_seconds=0.5),
        ],
        collect=False,
        metrics=metrics,
    )
    scheduler.start()
    try:
        assert ran.wait(10)
        deadline = time.monotonic() + 10
        while not registry.get_sample_value("cxmine_job_failures_total", {"task": "broken"}):
            assert time.monotonic() < deadline, "the failure was not counted"
            time.sleep(0.1)
        assert registry.get_sample_value("cxmine_scheduler_leader") == 1
    finally:
        scheduler.stop()
    assert registry.get_sample_value("cxmine_scheduler_leader") == 0
    assert registry.get_sample_value("cxmine_job_failures_total", {"task": "probe"}) == 0
    runs = registry.get_sample_value("cxmine_job_duration_seconds_count", {"task": "probe"})
    assert runs is not None and runs >= 1


def test_the_in_process_scheduler_reports_to_the_app(settings: Settings) -> None:
    app = create_app(
        settings.model_copy(update={"scheduler_enabled": True, "scheduler_leader_poll_seconds": 0.2})
    )
    with TestClient(app) as client:
        assert app.state.scheduler.metrics is app.state.job_metrics
        deadline = time.monotonic() + 10
        while _value(_scrape(client), "cxmine_scheduler_leader") != 1:
            assert time.monotonic() < deadline, "the scheduler never led"
            time.sleep(0.1)


def test_metrics_can_be_turned_off_or_need_a_token(settings: Settings) -> None:
    off = create_app(settings.model_copy(update={"metrics_enabled": False}))
    with TestClient(off) as client:
        assert client.get("/metrics").status_code == 404
    guarded = create_app(settings.model_copy(update={"metrics_token": SecretStr("scrape-secret")}))
    with TestClient(guarded) as client:
        missing = client.get("/metrics")
        assert missing.status_code == 401
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.headers["www-authenticate"] == "Bearer"
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        good = client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
        assert good.status_code == 200 and "cxmine_database_up 1.0" in good.text
    assert "/metrics" not in create_app(settings).openapi()["paths"]


def test_an_unreachable_database_reports_down(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'missing' / 'nowhere.db'}")
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(lambda: make_session_factory(engine)))
    assert registry.get_sample_value("cxmine_database_up") == 0
    assert registry.get_sample_value("cxmine_scoring_backlog_items") is None
    engine.dispose()


def test_the_standalone_scheduler_serves_its_job_metrics(settings: Settings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    metrics = serve_job_metrics(settings.model_copy(update={"scheduler_metrics_port": port}))
    metrics.job_finished("score", 0.2, failed=True)
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert _value(_samples(text), "cxmine_job_failures_total", task="score") == 1


# ------------------------------------------------------------------------------------------ deploy/


def _exported_names(text: str) -> set[str]:
    suffixes = {
        "counter": ["_total"],
        "histogram": ["_bucket", "_count", "_sum"],
        "summary": ["_count", "_sum"],
    }
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, []))
        names.update(sample.name for sample in family.samples)
    return names


def test_the_dashboard_queries_only_exported_metrics(client: TestClient) -> None:
    client.get("/healthz")
    exported = _exported_names(client.get("/metrics").text) | _exported_names(_job_metrics_text())
    dashboard = json.loads((DEPLOY / "grafana" / "cxmine.json").read_text(encoding="utf-8"))
    assert dashboard["__inputs"][0]["name"] == "DS_PROMETHEUS"
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(exprs) >= 8
    queried = {name for expr in exprs for name in re.findall(r"\b(?:cxmine|http)_[a-z0-9_]+\b", expr)}
    assert queried, exprs
    assert queried <= exported, queried - exported
    assert all(
        panel["datasource"]["uid"] == "${DS_PROMETHEUS}"
        for panel in dashboard["panels"]
        if "targets" in panel
    )


def _job_metrics_text() -> str:
    from prometheus_client import generate_latest

    registry = CollectorRegistry()
    JobMetrics(registry).job_finished("score", 1.0, failed=False)
    return generate_latest(registry).decode()


def test_the_compose_file_runs_the_stack() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert {"postgres", "api", "scheduler", "scheduler-standby", "prometheus", "grafana"} <= set(services)
    assert "serve" in " ".join(services["api"]["command"])
    for name in ("scheduler", "scheduler-standby"):
        assert services[name]["command"][:2] == ["scheduler", "run"]
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text(encoding="utf-8"))
    targets = {
        target
        for job in prometheus["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    assert {"api:8000", "scheduler:9100", "scheduler-standby:9100"} <= targets
    provisioning = DEPLOY / "grafana" / "provisioning"
    for path in provisioning.rglob("*.yml"):
        assert yaml.safe_load(path.read_text(encoding="utf-8"))
