"""End to end: the scheduler collects a review source and a social source from local fake services, is
killed mid-run, restarts, and every record ends up stored exactly once and scored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.collectors import create_source
from service.db import migrate
from service.db.engine import make_engine, make_session_factory
from service.db.models import FeedbackItem, ImportAudit, Source
from tests.conftest import ScratchDatabase
from tests.fake_services import APP_ID, serve_fake_services

ROOT = Path(__file__).resolve().parent.parent
REVIEWS, REVIEWS_PER_PAGE, STATUSES = 80, 20, 100

pytestmark = pytest.mark.slow


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_killed_collector_resumes_and_stores_every_record_once_scored(
    backend: str, tmp_path: Path, scoring_encoder: str, scratch_database: Callable[[str], ScratchDatabase]
) -> None:
    url = scratch_database(backend).url
    migrate.upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CXMINE_DATABASE_URL": url,
        "CXMINE_DATA_DIR": str(tmp_path / "var"),
        "CXMINE_AUTHOR_SALT": "e2e",
        "CXMINE_ENCODER": scoring_encoder,
        "CXMINE_SCHEDULER_SYNC_SECONDS": "0.5",
        "CXMINE_SCHEDULER_LEADER_POLL_SECONDS": "0.5",
        "CXMINE_SCORING_INTERVAL_SECONDS": "0.5",
        "CXMINE_ALERTS_ENABLED": "false",
        "CXMINE_TOPICS_BOOTSTRAP_SENTENCES": "1000000",
        "CXMINE_LOG_FORMAT": "console",
        "CXMINE_LOG_LEVEL": "WARNING",
    }

    def start_scheduler(log_name: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / log_name).open("wb")
        return subprocess.Popen(
            [sys.executable, "-m", "service.cli", "scheduler", "run"],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def count(session: Session, *conditions: object) -> int:
        session.expire_all()
        return session.scalar(select(func.count()).select_from(FeedbackItem).where(*conditions)) or 0  # type: ignore[arg-type]

    def completed(session: Session) -> int:
        session.expire_all()
        return len(session.scalars(select(Source.id).where(Source.last_success_at.is_not(None))).all())

    with (
        serve_fake_services(reviews=REVIEWS, reviews_per_page=REVIEWS_PER_PAGE, statuses=STATUSES) as fake,
        factory() as session,
    ):
        create_source(
            session,
            name="app-store",
            kind="app_store.v1",
            config={"app_id": APP_ID, "base_url": fake.base_url, "requests_per_minute": 6000},
            default_touchpoint="mobile_app",
        )
        create_source(
            session,
            name="mastodon",
            kind="mastodon.v1",
            config={
                "base_url": fake.base_url,
                "hashtags": ["acmeshop"],
                "first_run_pages": 100,
                "requests_per_minute": 6000,
            },
        )
        session.commit()
        # Hold the App Store's third page and Mastodon's second page: the kill lands mid-run for both.
        fake.hold_patterns = ["page=3/", "max_id="]
        first = start_scheduler("first.log")
        try:
            wait_for(
                lambda: fake.requested("page=3/") >= 1 and fake.requested("max_id=") >= 1,
                timeout=120,
                what="both collectors to reach their held page",
            )
            wait_for(
                lambda: count(session) == 2 * REVIEWS_PER_PAGE + 40,
                timeout=30,
                what="the pages before the held ones to be stored",
            )
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(30)
        stored_before_kill = count(session)
        fake.release.set()
        seen_before_restart = len(fake.requests)

        second = start_scheduler("second.log")
        try:
            wait_for(
                lambda: count(session, FeedbackItem.scored_at.is_not(None)) == REVIEWS + STATUSES,
                timeout=300,
                what="every record to be stored and scored",
            )
            wait_for(lambda: completed(session) == 2, timeout=30, what="both runs to complete")
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(60)

        assert stored_before_kill == 2 * REVIEWS_PER_PAGE + 40
        rows = session.execute(select(Source.name, FeedbackItem.external_id).join(Source)).all()
        per_source = Counter(name for name, _ in rows)
        assert per_source == {"app-store": REVIEWS, "mastodon": STATUSES}
        assert len({(name, external_id) for name, external_id in rows}) == len(rows)
        assert {external_id for name, external_id in rows if name == "app-store"} == {
            str(12_000_000_000 + i) for i in range(REVIEWS)
        }
        assert count(session, FeedbackItem.sentiment_label.is_(None)) == 0

        after_restart = fake.requests[seen_before_restart:]
        assert not any("page=1/" in path or "page=2/" in path for path in after_restart), (
            "the App Store run started over"
        )
        assert any("page=3/" in path for path in after_restart)
        assert sum(1 for path in after_restart if "/timelines/tag/" in path and "max_id=" not in path) == 0, (
            "the Mastodon run started over instead of resuming at its saved max_id"
        )
        statuses = {
            name: [
                status
                for (status,) in session.execute(
                    select(ImportAudit.status).where(ImportAudit.source_name == name).order_by(ImportAudit.id)
                )
            ]
            for name in ("app-store", "mastodon")
        }
        assert statuses == {
            "app-store": ["interrupted", "completed"],
            "mastodon": ["interrupted", "completed"],
        }
    engine.dispose()
