"""Theme names through the real pipeline: short, unique, free of place names, and an admin's rename stays."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from service.config import Settings
from service.db.engine import make_session_factory
from service.db.models import Role, Topic
from service.topics import refit_topics
from tests.test_topics import TEST_CONFIG, _pipeline, _stream, _topic_of

pytestmark = pytest.mark.slow

Auth = Callable[[Role], dict[str, str]]
PLACE_WORDS = {"riyadh", "olaya", "dubai", "mall", "tehran", "valiasr", "bangkok", "siam"}


def _active(session: Session) -> list[Topic]:
    session.expire_all()
    return list(session.scalars(select(Topic).where(Topic.status == "active")))


def test_names_are_short_unique_and_an_admin_rename_survives_refits(
    engine: Engine, session: Session, scoring_settings: Settings, scoring_client: TestClient, auth: Auth
) -> None:
    _pipeline(engine, scoring_settings, _stream(spike=True))
    factory = make_session_factory(engine)
    refit_topics(factory, config=TEST_CONFIG)
    topics = _active(session)
    assert len(topics) >= 3
    names = [t.label for t in topics]
    assert len({n.casefold() for n in names}) == len(names), names
    for topic in topics:
        assert 1 <= len(topic.label.split()) <= 6 and len(topic.label) <= 60, topic.label
        assert topic.label_source == "generated"
        assert not {w for k in topic.keywords for w in k.split()} & PLACE_WORDS, topic.keywords
        assert set(topic.keywords_by_language) >= {"en"}, topic.keywords_by_language
    late = _topic_of(session, "late-0-1")
    assert late is not None

    admin, analyst = auth(Role.ADMIN), auth(Role.ANALYST)
    other = next(t for t in topics if t.id != late)
    path = f"/v1/topics/{late}"
    assert scoring_client.patch(path, json={"name": "Late parcels"}, headers=analyst).status_code == 403
    assert scoring_client.patch("/v1/topics/999999", json={"name": "x"}, headers=admin).status_code == 404
    clash = scoring_client.patch(path, json={"name": other.label.upper()}, headers=admin)
    assert clash.status_code == 409 and "unique" in clash.json()["detail"]
    assert scoring_client.patch(path, json={"name": "  "}, headers=admin).status_code == 422
    renamed = scoring_client.patch(path, json={"name": "Late  parcels"}, headers=admin)
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["label"] == "Late parcels" and renamed.json()["label_source"] == "admin"

    report = refit_topics(factory, config=TEST_CONFIG)
    assert report.events.get("continued", 0) >= 3
    assert _topic_of(session, "late-0-1") == late
    after = {t.id: t for t in _active(session)}
    assert after[late].label == "Late parcels", "the rename survives the refit"
    assert after[late].label_source == "admin"
    assert "Late parcels" not in [t.label for t in after.values() if t.id != late]
    listed = scoring_client.get("/v1/topics", headers=analyst).json()["topics"]
    assert next(t for t in listed if t["id"] == late)["label"] == "Late parcels"

    unchanged = {t.id: t.label for t in after.values() if t.id != late}
    given_back = scoring_client.patch(path, json={"name": None}, headers=admin)
    assert given_back.status_code == 200 and given_back.json()["label_source"] == "generated"
    refit_topics(factory, config=TEST_CONFIG)
    final = {t.id: t for t in _active(session)}
    assert final[late].label != "Late parcels" and final[late].label_source == "generated"
    assert {i: final[i].label for i in unchanged if i in final} == {
        i: unchanged[i] for i in unchanged if i in final
    }, "continued topics keep their generated names"

    points = scoring_client.get("/v1/pain-points", params={"limit": 50, "quotes": 5}, headers=analyst).json()
    for point in points["pain_points"]:
        texts = [" ".join(q["text"].casefold().split()) for q in point["quotes"]]
        assert len(texts) == len(set(texts)), "quotes are distinct"
