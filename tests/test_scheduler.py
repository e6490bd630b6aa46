"""The scheduler: one leader per database, each job once per tick, a standby taking over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from service.app import create_app
from service.config import Settings
from service.db.engine import make_session_factory
from service.db.models import FeedbackItem, Role, SchedulerRun, Source
from service.scheduler import CURRENT_TICK, FileLeaderLock, JobSpec, Scheduler, leader_lock_for

ROOT = Path(__file__).resolve().parent.parent


def test_one_file_lock_holder_at_a_time(tmp_path: Path) -> None:
    first, second = FileLeaderLock(tmp_path / "s.lock"), FileLeaderLock(tmp_path / "s.lock")
    assert first.acquire()
    assert not second.acquire()
    first.release()
    assert second.acquire() and second.still_held()
    second.release()


def test_the_lock_fits_the_database(engine: Engine, settings: Settings) -> None:
    lock = leader_lock_for(engine, settings)
    assert type(lock).__name__ == (
        "PostgresLeaderLock" if engine.dialect.name == "postgresql" else "FileLeaderLock"
    )
    other = leader_lock_for(engine, settings)
    assert lock.acquire()
    try:
        assert not other.acquire()
    finally:
        lock.release()
    assert other.acquire()
    other.release()


def _ticks(session: Session) -> list[SchedulerRun]:
    session.expire_all()
    return list(
        session.scalars(
            select(SchedulerRun).where(SchedulerRun.job_id == "probe").order_by(SchedulerRun.scheduled_for)
        )
    )


def test_a_standby_takes_over_and_no_tick_runs_twice(
    engine: Engine, settings: Settings, session: Session
) -> None:
    settings = settings.model_copy(update={"scheduler_leader_poll_seconds": 0.2})
    seen: list[tuple[str, datetime]] = []
    lock = threading.Lock()

    def make(owner: str) -> Scheduler:
        def probe(_stop: threading.Event) -> None:
            tick = CURRENT_TICK.get()
            assert tick is not None
            with lock:
                seen.append((owner, tick))

        return Scheduler(
            settings=settings,
            engine=engine,
            session_factory=make_session_factory(engine),
            jobs=[JobSpec("probe", probe, interval_seconds=0.5)],
            collect=False,
            owner=owner,
        )

    first, second = make("first"), make("second")
    first.start()
    deadline = time.monotonic() + 10
    while not first.is_leader and time.monotonic() < deadline:
        time.sleep(0.05)
    second.start()

    def runs_by(owner: str) -> int:
        with lock:
            return sum(1 for who, _ in seen if who == owner)

    deadline = time.monotonic() + 20
    while runs_by("first") < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert first.is_leader and not second.is_leader
    first.stop()
    deadline = time.monotonic() + 20
    while runs_by("second") < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert second.is_leader
    second.stop()

    owners = Counter(owner for owner, _ in seen)
    assert owners["first"] >= 3 and owners["second"] >= 3
    ticks = [tick for _, tick in seen]
    assert len(ticks) == len(set(ticks)), "a tick ran twice"
    assert all(tick.microsecond in (0, 500_000) for tick in ticks), "ticks are aligned to the interval"
    rows = _ticks(session)
    assert {(row.owner, row.scheduled_for) for row in rows} == set(seen)
    assert all(row.status == "completed" and row.finished_at is not None for row in rows)


def test_a_failing_job_is_recorded_and_the_others_go_on(
    engine: Engine, settings: Settings, session: Session, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = threading.Event()

    def broken(_stop: threading.Event) -> None:
        raise RuntimeError("boom")

    def fine(_stop: threading.Event) -> None:
        ran.set()

    scheduler = Scheduler(
        settings=settings.model_copy(update={"scheduler_leader_poll_seconds": 0.2}),
        engine=engine,
        session_factory=make_session_factory(engine),
        jobs=[JobSpec("broken", broken, interval_seconds=0.5), JobSpec("probe", fine, interval_seconds=0.5)],
        collect=False,
    )
    scheduler.start()
    assert ran.wait(10)
    time.sleep(1.0)
    scheduler.stop()
    failures = session.scalars(select(SchedulerRun).where(SchedulerRun.job_id == "broken")).all()
    assert failures and all(row.status == "failed" and row.error == "RuntimeError: boom" for row in failures)

    from typer.testing import CliRunner

    from service.cli import app as cli_app
    from service.config import get_settings

    monkeypatch.setenv("CXMINE_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        status = CliRunner().invoke(cli_app, ["scheduler", "status"], env={"COLUMNS": "200"})
    finally:
        get_settings.cache_clear()
    assert status.exit_code == 0, status.output
    lines = {line.split()[1]: line for line in status.output.splitlines() if line.startswith("│ ")}
    assert "failed" in lines["broken"] and "RuntimeError: boom" in lines["broken"]
    assert "completed" in lines["probe"]


@pytest.mark.slow
def test_two_scheduler_processes_run_each_tick_once(
    database_url: str, tmp_path: Path, session: Session
) -> None:
    out = tmp_path / "ticks.txt"
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}

    def spawn() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.scheduler_probe", database_url, str(tmp_path / "var"), str(out)],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    processes = [spawn(), spawn()]
    try:
        for process in processes:
            assert process.stdout is not None and process.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(_lines(out)) < 4:
            time.sleep(0.2)
        leaders = {pid for pid, _ in _lines(out)}
        assert len(leaders) == 1, "both processes ran the job"
        leader = next(process for process in processes if process.pid in leaders)
        leader.send_signal(signal.SIGKILL)
        leader.wait(10)
        killed_at = len(_lines(out))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(_lines(out)) < killed_at + 4:
            time.sleep(0.2)
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(20)

    lines = _lines(out)
    ticks = [tick for _, tick in lines]
    assert len(ticks) == len(set(ticks)), "a tick ran twice"
    assert len({pid for pid, _ in lines}) == 2, "the standby never took over"
    gaps = [later - earlier for earlier, later in zip(sorted(ticks), sorted(ticks)[1:], strict=False)]
    assert max(gaps) <= timedelta(seconds=15), "the handover took too long"
    rows = _ticks(session)
    assert len(rows) == len({row.scheduled_for for row in rows}) >= len(ticks)


def _lines(path: Path) -> list[tuple[int, datetime]]:
    if not path.exists():
        return []
    result = []
    for line in path.read_text(encoding="utf-8").splitlines():
        pid, _, tick = line.partition(" ")
        if tick:
            result.append((int(pid), datetime.fromisoformat(tick)))
    return result


def test_a_job_never_overlaps_itself_and_missed_ticks_coalesce(
    engine: Engine, settings: Settings, session: Session
) -> None:
    running, most, runs = 0, 0, 0
    lock = threading.Lock()

    def slow(_stop: threading.Event) -> None:
        nonlocal running, most, runs
        with lock:
            running += 1
            runs += 1
            most = max(most, running)
        time.sleep(1.0)
        with lock:
            running -= 1

    scheduler = Scheduler(
        settings=settings.model_copy(update={"scheduler_leader_poll_seconds": 0.2}),
        engine=engine,
        session_factory=make_session_factory(engine),
        jobs=[JobSpec("probe", slow, interval_seconds=0.25)],
        collect=False,
    )
    scheduler.start()
    time.sleep(3.5)
    scheduler.stop()
    assert most == 1, "the job ran twice at once"
    assert 2 <= runs <= 4, f"{runs} runs of a 1 s job in 3.5 s: missed ticks must coalesce, not queue"


def test_when_a_collector_is_due_at_start() -> None:
    from service.db.models import utcnow
    from service.scheduler import _overdue

    now = utcnow()
    never = Source(name="a", kind="app_store.v1", schedule_interval_seconds=3600)
    assert _overdue(never, now=now)
    recent = Source(
        name="b", kind="app_store.v1", schedule_interval_seconds=3600, last_run_at=now - timedelta(minutes=10)
    )
    assert not _overdue(recent, now=now)
    missed = Source(
        name="c", kind="app_store.v1", schedule_interval_seconds=3600, last_run_at=now - timedelta(hours=5)
    )
    assert _overdue(missed, now=now)
    cut_short = Source(
        name="d",
        kind="app_store.v1",
        schedule_interval_seconds=3600,
        last_run_at=now - timedelta(minutes=1),
        lease_owner="host:1:x",
    )
    assert _overdue(cut_short, now=now)
    nightly = Source(name="e", kind="app_store.v1", schedule_cron="0 3 * * *")
    at_four = now.replace(hour=4, minute=0, second=0, microsecond=0)
    nightly.last_run_at = at_four - timedelta(days=1, minutes=50)
    assert _overdue(nightly, now=at_four)
    nightly.last_run_at = at_four - timedelta(minutes=50)
    assert not _overdue(nightly, now=at_four)


def test_run_now_through_the_api_is_picked_up_by_the_scheduler(
    settings: Settings, tmp_path: Path, auth: Callable[[Role], dict[str, str]], session: Session
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "week1.jsonl").write_text(
        '{"text": "Queue at the tills was far too long", "external_id": "w1-1"}\n'
    )
    live = settings.model_copy(
        update={
            "scheduler_enabled": True,
            "scheduler_sync_seconds": 0.3,
            "scheduler_leader_poll_seconds": 0.2,
        }
    )
    with TestClient(create_app(live)) as client:
        admin = auth(Role.ADMIN)
        created = client.post(
            "/v1/sources",
            json={
                "name": "inbox",
                "kind": "survey_files.v1",
                "config": {"folder": str(inbox), "settle_seconds": 0},
            },
            headers=admin,
        )
        assert created.status_code == 201, created.text

        def runs() -> list[dict[str, object]]:
            listed: list[dict[str, object]] = client.get(
                "/v1/sources/inbox/runs", headers=auth(Role.ANALYST)
            ).json()
            return listed

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(run["status"] == "completed" for run in runs()):
            time.sleep(0.2)
        assert [run["trigger"] for run in runs()] == ["schedule"], "a new collector runs at once"
        (inbox / "week2.jsonl").write_text('{"text": "Staff were lovely and fast", "external_id": "w2-1"}\n')
        assert client.post("/v1/sources/inbox/run", headers=admin).status_code == 202
        deadline = time.monotonic() + 30
        while (
            time.monotonic() < deadline and len([run for run in runs() if run["status"] == "completed"]) < 2
        ):
            time.sleep(0.2)
        assert [run["trigger"] for run in runs()] == ["manual", "schedule"]
        health = client.get("/v1/sources/inbox", headers=auth(Role.ANALYST)).json()["health"]
        assert health["state"] == "ok" and health["items_collected"] == 2
        collected = client.get(
            "/v1/scheduler/runs", params={"job": "collect:inbox"}, headers=auth(Role.ANALYST)
        ).json()
        assert len(collected) == 2 and {run["status"] for run in collected} == {"completed"}
    stored = session.scalars(select(FeedbackItem.external_id).order_by(FeedbackItem.external_id)).all()
    assert stored == ["w1-1", "w2-1"]


def test_topics_are_refitted_after_each_scheduled_time_and_first_when_enough_is_scored(
    engine: Engine, session: Session
) -> None:
    from service.db.models import TopicModelRun
    from service.topics import TopicAssigner, TopicMaintenance

    maintenance = TopicMaintenance(
        session_factory=make_session_factory(engine),
        assigner=TopicAssigner(),
        refit_cron="0 3 * * *",
        bootstrap_sentences=1,
    )
    assert not maintenance.refit_due(), "nothing scored yet: no first refit"
    session.add(
        TopicModelRun(status="completed", config={}, started_at=datetime(2026, 11, 29, 3, 0, 30, tzinfo=UTC))
    )
    session.commit()
    assert not maintenance.refit_due(now=datetime(2026, 11, 30, 2, 59, tzinfo=UTC))
    assert maintenance.refit_due(now=datetime(2026, 11, 30, 3, 0, 1, tzinfo=UTC))
    assert maintenance.refit_due(now=datetime(2026, 12, 2, 12, 0, tzinfo=UTC)), (
        "missed nights: refit once, now"
    )
