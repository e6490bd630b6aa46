"""Topics and pain points on a labelled stream through the real pipeline: a spike, stable ids, a merge."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from nlp.topics import TopicConfig
from service.cli import app as cli_app
from service.config import Settings, get_settings
from service.db.engine import make_session_factory
from service.db.models import (
    FeedbackItem,
    PainPointDay,
    Role,
    SentenceTopic,
    Topic,
    TopicLineage,
    TopicModelRun,
)
from service.ingest.service import ingest_batch
from service.pipeline import load_analyzer
from service.rollup_upkeep import rollup_drift
from service.scoring import score_pending
from service.topics import TopicAssigner, assign_pending, refit_topics
from service.touchpoints import TouchpointLabeler, active_taxonomy, label_pending

pytestmark = pytest.mark.slow

Auth = Callable[[Role], dict[str, str]]
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

# Three complaint themes in four languages; each text is one sentence about one touchpoint.
THEMES: dict[str, list[str]] = {
    "late": [
        "My parcel arrived {n} days late.",
        "Delivery was {n} days late again.",
        "The courier delivered my order {n} days after the promised date.",
        "وصل الطلب متأخر {n} أيام",
        "سفارشم {n} روز دیر رسید",
        "พัสดุมาส่งช้าไป {n} วัน",
    ],
    "rude": [
        "The cashier was rude to me at the till, visit number {n}.",
        "Staff member shouted at my mother, visit {n}.",
        "موظف الكاشير كان وقحا معي للمرة {n}",
        "فروشنده برای بار {n} با من بی‌ادبانه رفتار کرد",
        "พนักงานพูดจาไม่สุภาพกับลูกค้าครั้งที่ {n}",
    ],
    "crash": [
        "The app crashes every time I tap pay, attempt {n}.",
        "App froze at checkout and I lost my basket, try {n}.",
        "التطبيق يتعطل عند الدفع في المحاولة {n}",
        "اپلیکیشن موقع پرداخت برای بار {n} بسته شد",
        "แอปเด้งออกตอนกดชำระเงินครั้งที่ {n}",
    ],
}
LOCATIONS = ("Riyadh Olaya", "Dubai Mall", "Tehran Valiasr", "Bangkok Siam")
TEST_CONFIG = TopicConfig(
    reduce={"name": "topics.reduce.umap.v1", "dimensions": 5, "neighbours": 10},
    cluster={
        "name": "topics.cluster.hdbscan.v1",
        "min_cluster_size": 15,
        "min_samples": 3,
        "selection": "eom",
    },
)


def _item(theme: str, n: int, *, week: int, location: str) -> dict[str, Any]:
    templates = THEMES[theme]
    created = NOW - timedelta(weeks=week, hours=n % 100 + 1)
    return {
        "source": "trustpilot",
        "external_id": f"{theme}-{week}-{n}",
        "text": templates[n % len(templates)].format(n=n),
        "created_at": created.isoformat(),
        "location": location,
    }


def _stream(*, spike: bool, weeks: int = 7) -> list[dict[str, Any]]:
    """Every theme steady (3 a week, all stores) for ``weeks`` weeks; with ``spike``, 15 more late deliveries
    in the latest week, all at Riyadh Olaya."""
    items = []
    n = 0
    for week in range(weeks):
        for theme in THEMES:
            for _ in range(3):
                n += 1
                items.append(_item(theme, n, week=week, location=LOCATIONS[n % len(LOCATIONS)]))
    if spike:
        for _ in range(15):
            n += 1
            items.append(_item("late", n, week=0, location="Riyadh Olaya"))
    return items


def _pipeline(engine: Engine, settings: Settings, items: list[dict[str, Any]]) -> None:
    factory = make_session_factory(engine)
    with factory() as session:
        _, results = ingest_batch(
            session, raw_items=items, author_salt=b"s", max_text_chars=10_000, actor="test"
        )
    assert all(r.status == "stored" for r in results)
    analyzer = load_analyzer(settings)
    score_pending(factory, analyzer=analyzer)
    with factory() as session:
        labeler = TouchpointLabeler(taxonomy=active_taxonomy(session), encoder=analyzer.encoder)
    label_pending(factory, labeler=labeler)


def _topic_of(session: Session, external_id: str) -> int | None:
    return session.scalar(
        select(SentenceTopic.topic_id)
        .join(FeedbackItem, FeedbackItem.id == SentenceTopic.item_id)
        .where(FeedbackItem.external_id == external_id)
    )


def test_a_spike_at_one_store_is_a_trending_pain_point_and_steady_themes_are_not(
    engine: Engine, session: Session, scoring_settings: Settings, scoring_client: TestClient, auth: Auth
) -> None:
    _pipeline(engine, scoring_settings, _stream(spike=True))
    report = refit_topics(make_session_factory(engine), config=TEST_CONFIG)
    assert report.topics >= 3
    late, rude, crash = (
        _topic_of(session, f"{theme}-0-{n}") for theme, n in (("late", 1), ("rude", 4), ("crash", 7))
    )
    assert len({late, rude, crash}) == 3, "each theme is its own topic"
    languages = session.scalar(select(Topic.languages).where(Topic.id == late))
    assert languages is not None
    assert set(languages) >= {"en", "ar", "fa", "th"}, "one pain point is one topic in every language"
    topics = session.scalars(select(Topic).where(Topic.status == "active")).all()
    assert all(len(topic.languages) >= 2 for topic in topics), "no topic is one language's copy of a theme"

    response = scoring_client.get(
        "/v1/pain-points",
        params={"until": (NOW + timedelta(hours=1)).isoformat(), "limit": 50},
        headers=auth(Role.ANALYST),
    )
    assert response.status_code == 200, response.text
    points = response.json()["pain_points"]
    trending = [p for p in points if p["trending"]]
    assert trending, points
    top = trending[0]
    assert top["topic_id"] == late
    assert top["touchpoint"] == "delivery_shipping"
    assert next(iter(top["locations"])) == "Riyadh Olaya"
    assert top["trend"]["current"] >= 5
    assert top["trend"]["current"] > 2 * top["trend"]["expected"]
    assert top["quotes"]
    assert all(q["feedback"].startswith("/v1/feedback/") for q in top["quotes"])
    for point in points:
        if point["topic_id"] in (rude, crash):
            assert not point["trending"], point

    listed = scoring_client.get(top["feedback_query"], headers=auth(Role.ANALYST)).json()["items"]
    assert listed
    assert all(item["external_id"].startswith("late-") for item in listed), (
        "the spike's rows are late deliveries"
    )
    assert any(
        item["external_id"].startswith("late-0-") and item["location"] == "Riyadh Olaya" for item in listed
    )

    overview = scoring_client.get(
        "/v1/touchpoints",
        params={"until": (NOW + timedelta(hours=1)).isoformat()},
        headers=auth(Role.ANALYST),
    ).json()
    delivery = next(t for t in overview["touchpoints"] if t["touchpoint"] == "delivery_shipping")
    assert delivery["top_pain_points"][0]["topic_id"] == late
    assert delivery["top_pain_points"][0]["trending"]

    by_topic = scoring_client.get(
        "/v1/trends", params={"group_by": "topic", "interval": "week"}, headers=auth(Role.ANALYST)
    ).json()["series"]
    late_series = next(series for series in by_topic if series["key"] == str(late))
    assert late_series["total"] == 7 * 3 + 15, "each item counts once per topic"

    stores = scoring_client.get(f"/v1/topics/{top['topic_id']}/locations", headers=auth(Role.ANALYST)).json()
    assert "Riyadh Olaya" in {row["location"] for row in stores["locations"]}


def test_refit_keeps_ids_assigns_new_feedback_online_and_records_a_merge(
    engine: Engine,
    session: Session,
    scoring_settings: Settings,
    scoring_client: TestClient,
    auth: Auth,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    factory = make_session_factory(engine)
    stream = _stream(spike=False)
    _pipeline(engine, scoring_settings, stream)

    # The first refit through the command line, with the test's settings from a JSON file.
    monkeypatch.setenv("CXMINE_DATABASE_URL", database_url)
    monkeypatch.setenv("CXMINE_DATA_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"cluster": {"name": "topics.cluster.nope.v1"}}))
    refused = CliRunner().invoke(cli_app, ["topics", "refit", "--config", str(bad)])
    assert refused.exit_code == 1
    assert "topics.cluster.hdbscan.v1" in refused.output, "an unknown stage lists the known ones"
    settings_file = tmp_path / "topics.json"
    settings_file.write_text(json.dumps(TEST_CONFIG.to_document()))
    result = CliRunner().invoke(cli_app, ["topics", "refit", "--config", str(settings_file)])
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    first = session.scalars(select(TopicModelRun)).one()
    assert f"model {first.id}: 3 topics" in result.output, result.output
    assert "lineage: 3 born" in result.output
    before = {
        theme: _topic_of(session, f"{theme}-0-{n}") for theme, n in (("late", 1), ("rude", 4), ("crash", 7))
    }
    assert len(set(before.values())) == 3

    # 10% new items, assigned online (no refit) to the topics that exist.
    new = [
        _item(theme, 1000 + i, week=0, location="Dubai Mall") for i, theme in enumerate(["late", "rude"] * 3)
    ]
    _pipeline(engine, scoring_settings, new)
    assigned = assign_pending(factory, assigner=TopicAssigner())
    assert assigned.items == len(new)
    session.expire_all()
    assert _topic_of(session, "late-0-1000") == before["late"]
    assert _topic_of(session, "rude-0-1001") == before["rude"]

    second = refit_topics(factory, config=TEST_CONFIG)
    session.expire_all()
    after = {
        theme: _topic_of(session, f"{theme}-0-{n}") for theme, n in (("late", 1), ("rude", 4), ("crash", 7))
    }
    assert after == before, "a refit on the same data plus 10% keeps every unchanged topic's id"
    # Online assignment moved the rollups through the triggers; the refit rebuilt them with the triggers off.
    assert (session.scalar(select(func.count()).select_from(PainPointDay)) or 0) > 0
    assert rollup_drift(session) == []
    events = session.scalars(select(TopicLineage.event).where(TopicLineage.model_id == second.model_id)).all()
    assert events.count("continued") >= 3
    assert first.id < second.model_id

    # A planted merge: a refit told to find two topics must put two themes together, and say so.
    merged = refit_topics(
        factory, config=TopicConfig(cluster={"name": "topics.cluster.kmeans.v1", "topics": 2})
    )
    session.expire_all()
    lineage = session.scalars(select(TopicLineage).where(TopicLineage.model_id == merged.model_id)).all()
    merges = [e for e in lineage if e.event == "merged"]
    assert len(merges) >= 1
    gone = session.get(Topic, merges[0].topic_id)
    assert gone is not None
    assert gone.status == "merged"
    assert gone.merged_into == merges[0].related_topic_id
    survivor = session.get(Topic, merges[0].related_topic_id)
    assert survivor is not None
    assert survivor.status == "active"
    response = scoring_client.get(f"/v1/topics/{gone.id}", headers=auth(Role.ANALYST))
    assert response.status_code == 200, response.text
    detail = response.json()
    assert detail["status"] == "merged"
    assert any(e["event"] == "merged" and e["related_topic_id"] == survivor.id for e in detail["lineage"])
    models = scoring_client.get("/v1/topic-models", headers=auth(Role.ANALYST)).json()
    assert [m["id"] for m in models] == [merged.model_id, second.model_id, first.id]
    assert session.scalar(select(func.count()).select_from(Topic).where(Topic.status == "active")) == 2
