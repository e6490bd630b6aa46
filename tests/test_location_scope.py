"""Location-scoped keys: a store manager's key sees only their stores, through every /v1 route."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from service.access import (
    LocationForbiddenError,
    can_see_location,
    known_locations,
    public_topic_text,
    restrict_filter,
    restrict_scope,
    visible_location_rows,
)
from service.api.deps import Caller
from service.cli import app as cli_app
from service.config import get_settings
from service.db.models import (
    ApiKey,
    FeedbackItem,
    FeedbackSentence,
    ItemTouchpoint,
    PainPointFact,
    Role,
    SentenceTopic,
    SentenceTouchpoint,
    Topic,
    TopicModelRun,
)
from service.feedback import FeedbackFilter, Scope
from service.ingest.service import ingest_batch
from service.keys import create_api_key
from service.topics import fact_rows
from service.touchpoints import TouchpointRef

Auth = Callable[[Role], dict[str, str]]

RIYADH, DUBAI, JEDDAH = "Riyadh Olaya", "Dubai Mall", "Jeddah Corniche"
OTHERS = ("Dubai", "Mall", "Jeddah", "Corniche")  # what a Riyadh key must never read
# (negative, positive) delivery sentences per store; None: online feedback with no store.
# Dubai's sentences come first, so they are the topic's most typical (its quotes, unless scoped).
PLAN: dict[str | None, tuple[int, int]] = {DUBAI: (6, 0), RIYADH: (4, 1), JEDDAH: (1, 2), None: (1, 0)}
# The topic's label and representative are a Dubai customer's sentence; its keywords name stores too.
TOPIC_LABEL = "Dubai Mall courier never came"
TOPIC_KEYWORDS = ["courier", "Dubai", "late", "dubai mall", "olaya", "never", "came"]


@dataclass
class Seeded:
    topic_id: int
    items: dict[str | None, list[int]]


def _add(
    session: Session, *, n: int, location: str | None, negative: bool, topic_id: int, model_id: int
) -> int:
    created = datetime.now(UTC) - timedelta(days=1 + n % 20, hours=n)
    where = location or "online"
    text = f"{where} order {n}: the courier was {'late' if negative else 'lovely'}."
    raw = {
        "text": text,
        "source": "trustpilot",
        "external_id": f"o-{n}",
        "created_at": created.isoformat(),
        "location": location,
    }
    _, results = ingest_batch(session, raw_items=[raw], author_salt=b"s", max_text_chars=10_000, actor="test")
    item_id = results[0].id
    assert item_id is not None
    label, score = ("negative", -0.8) if negative else ("positive", 0.8)
    session.execute(
        update(FeedbackItem)
        .where(FeedbackItem.id == item_id)
        .values(sentiment_label=label, sentiment_score=score, scored_at=datetime.now(UTC))
    )
    sentence_id = session.execute(
        insert(FeedbackSentence).returning(FeedbackSentence.id),
        [
            {
                "item_id": item_id,
                "position": 0,
                "start": 0,
                "end": len(text),
                "sentiment_label": label,
                "sentiment_score": score,
                "sentiment_probabilities": {},
                "emotions": {},
                "embedding": b"\x00\x00",
            }
        ],
    ).scalar_one()
    session.execute(
        insert(ItemTouchpoint),
        [{"item_id": item_id, "touchpoint": "delivery_shipping", "score": 0.9, "origin": "text"}],
    )
    session.execute(
        insert(SentenceTouchpoint),
        [{"sentence_id": sentence_id, "item_id": item_id, "touchpoint": "delivery_shipping", "score": 0.9}],
    )
    similarity = 0.9 - n / 1000
    facts: dict[str, Any] = {
        "created_at": created,
        "negative": negative,
        "sentiment_score": score,
        "similarity": similarity,
    }
    session.execute(
        insert(SentenceTopic),
        [
            {
                "sentence_id": sentence_id,
                "item_id": item_id,
                "topic_id": topic_id,
                "model_id": model_id,
                "origin": "fit",
                **facts,
            }
        ],
    )
    item = session.get_one(FeedbackItem, item_id)
    session.execute(
        insert(PainPointFact),
        fact_rows(
            sentence_id=sentence_id,
            item_id=item_id,
            topic_id=topic_id,
            touchpoints=[TouchpointRef("delivery_shipping", "text")],
            created_at=created,
            negative=negative,
            sentiment_score=score,
            similarity=similarity,
            location=location,
            source_id=item.source_id,
            language=item.language,
        ),
    )
    return item_id


def _seed(session: Session) -> Seeded:
    """Delivery feedback at three stores and online, every sentence in one topic."""
    run = TopicModelRun(status="done", config={}, figures={})
    session.add(run)
    session.flush()
    topic = Topic(
        label=TOPIC_LABEL,
        keywords=TOPIC_KEYWORDS,
        keyword_weights={k: 1.0 - i / 10 for i, k in enumerate(TOPIC_KEYWORDS)},
        representative="At Dubai Mall the courier never came.",
        languages={"en": 14},
        centroid=b"\x00\x00",
        born_model_id=run.id,
        last_model_id=run.id,
    )
    session.add(topic)
    session.flush()
    items: dict[str | None, list[int]] = {}
    n = 0
    for location, (negative, positive) in PLAN.items():
        for index in range(negative + positive):
            n += 1
            items.setdefault(location, []).append(
                _add(
                    session,
                    n=n,
                    location=location,
                    negative=index < negative,
                    topic_id=topic.id,
                    model_id=run.id,
                )
            )
    session.commit()
    return Seeded(topic_id=topic.id, items=items)


@pytest.fixture
def seeded(session: Session) -> Seeded:
    return _seed(session)


def _headers(session: Session, *locations: str) -> dict[str, str]:
    _, plaintext = create_api_key(
        session, name=f"manager {locations}", role=Role.ANALYST, locations=locations
    )
    session.commit()
    return {"Authorization": f"Bearer {plaintext}"}


@pytest.fixture
def riyadh(session: Session) -> dict[str, str]:
    """A Riyadh Olaya store manager's key."""
    return _headers(session, RIYADH)


def _get(client: TestClient, url: str, headers: dict[str, str], **params: Any) -> Any:
    response = client.get(url, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _names_no_other_store(response_text: str) -> None:
    leaked = [name for name in OTHERS if name.casefold() in response_text.casefold()]
    assert not leaked, f"another store's name in the response: {leaked}"


# ------------------------------------------------------------------------------------------ pure rules


def test_restrict_scope_and_filter() -> None:
    scope = Scope(sources=("s",))
    assert restrict_scope(scope, allowed=()) is scope
    assert restrict_scope(scope, allowed=[RIYADH, DUBAI]).locations == (RIYADH, DUBAI)
    assert restrict_scope(Scope(locations=(DUBAI,)), allowed=[RIYADH, DUBAI]).locations == (DUBAI,)
    with pytest.raises(LocationForbiddenError, match="Jeddah Corniche") as raised:
        restrict_scope(Scope(locations=(RIYADH, JEDDAH)), allowed=[RIYADH])
    assert isinstance(raised.value, PermissionError)
    filters = FeedbackFilter(text_contains="late", locations=(RIYADH,))
    assert restrict_filter(filters, allowed=[RIYADH]) == filters
    assert restrict_filter(FeedbackFilter(), allowed=[RIYADH, JEDDAH]).locations == (RIYADH, JEDDAH)
    with pytest.raises(LocationForbiddenError, match="Dubai Mall"):
        restrict_filter(FeedbackFilter(locations=(DUBAI,)), allowed=[RIYADH])
    assert restrict_filter(filters, allowed=()) is filters


def test_what_a_scoped_caller_can_see() -> None:
    assert can_see_location(None, allowed=()) and can_see_location(DUBAI, allowed=())
    assert can_see_location(RIYADH, allowed=[RIYADH])
    assert not can_see_location(DUBAI, allowed=[RIYADH]) and not can_see_location(None, allowed=[RIYADH])
    rows = [{"location": DUBAI, "others_share": 0.2}, {"location": RIYADH, "others_share": 0.6}]
    assert visible_location_rows(rows, allowed=()) == rows
    assert visible_location_rows(rows, allowed=[RIYADH]) == [rows[1]]
    assert Caller(key_id=1, name="m", role=Role.ANALYST, locations=(RIYADH,)).scoped
    assert not Caller(key_id=1, name="a", role=Role.ANALYST).scoped


def test_public_topic_text_hides_sentences_and_store_names() -> None:
    known = {RIYADH, DUBAI, JEDDAH}
    unchanged = public_topic_text(
        label=TOPIC_LABEL, keywords=TOPIC_KEYWORDS, representative="r", known_locations=known, allowed=()
    )
    assert unchanged == (TOPIC_LABEL, TOPIC_KEYWORDS, "r")
    label, keywords, representative = public_topic_text(
        label=TOPIC_LABEL,
        keywords=TOPIC_KEYWORDS,
        representative="r",
        known_locations=known,
        allowed=[RIYADH],
    )
    # "Dubai" (any case), "dubai mall" (a name) and "olaya" (a word of one) go; the rest keep their order
    assert keywords == ["courier", "late", "never", "came"]
    assert label == "courier, late, never" and representative is None


# ------------------------------------------------------------------------------------------ the API


def test_feedback_list_and_items_are_limited_to_the_key_s_stores(
    client: TestClient, session: Session, seeded: Seeded, riyadh: dict[str, str], auth: Auth
) -> None:
    listed = client.get("/v1/feedback", params={"limit": 500}, headers=riyadh)
    assert listed.status_code == 200
    items = listed.json()["items"]
    assert {i["location"] for i in items} == {RIYADH} and len(items) == sum(PLAN[RIYADH])
    _names_no_other_store(listed.text)  # topic labels included
    assert items[0]["topic"]["label"] == "courier, late, never"
    own = _get(client, "/v1/feedback", riyadh, location=RIYADH, sentiment="negative")["items"]
    assert len(own) == PLAN[RIYADH][0]
    everything = _get(client, "/v1/feedback", auth(Role.ANALYST), limit=500)["items"]
    assert len(everything) == sum(sum(counts) for counts in PLAN.values())

    forbidden = client.get("/v1/feedback", params={"location": [RIYADH, DUBAI]}, headers=riyadh)
    assert forbidden.status_code == 403
    assert forbidden.headers["content-type"] == "application/problem+json"
    assert DUBAI in forbidden.json()["detail"]

    assert client.get(f"/v1/feedback/{seeded.items[RIYADH][0]}", headers=riyadh).status_code == 200
    for other in (seeded.items[DUBAI][0], seeded.items[None][0]):
        hidden = client.get(f"/v1/feedback/{other}", headers=riyadh)
        unknown = client.get("/v1/feedback/99999999", headers=riyadh)
        assert hidden.status_code == unknown.status_code == 404
        assert hidden.json()["detail"] == f"No feedback item has id {other}."
        assert client.get(f"/v1/feedback/{other}", headers=auth(Role.ANALYST)).status_code == 200


def test_touchpoints_and_trends_count_only_the_key_s_stores(
    client: TestClient, session: Session, seeded: Seeded, riyadh: dict[str, str], auth: Auth
) -> None:
    def delivery(headers: dict[str, str]) -> dict[str, Any]:
        body = _get(client, "/v1/touchpoints", headers)
        found: dict[str, Any] = next(t for t in body["touchpoints"] if t["touchpoint"] == "delivery_shipping")
        return found

    mine = delivery(riyadh)
    assert (mine["items"], mine["negative_sentences"]) == (sum(PLAN[RIYADH]), PLAN[RIYADH][0])
    assert "location=Riyadh+Olaya" in mine["feedback_query"]
    assert mine["top_pain_points"][0]["label"] == "courier, late, never"
    assert len(_get(client, mine["feedback_query"], riyadh)["items"]) == mine["items"]
    assert delivery(auth(Role.ANALYST))["items"] == sum(sum(counts) for counts in PLAN.values())
    response = client.get("/v1/touchpoints", headers=riyadh)
    _names_no_other_store(response.text)

    by_location = _get(client, "/v1/trends", riyadh, group_by="location", interval="day")
    assert {s["key"] for s in by_location["series"]} == {RIYADH}
    assert sum(s["total"] for s in by_location["series"]) == sum(PLAN[RIYADH])
    two = _headers(session, RIYADH, JEDDAH)
    assert {s["key"] for s in _get(client, "/v1/trends", two, group_by="location")["series"]} == {
        RIYADH,
        JEDDAH,
    }
    assert {
        s["key"] for s in _get(client, "/v1/trends", auth(Role.ANALYST), group_by="location")["series"]
    } == {
        RIYADH,
        DUBAI,
        JEDDAH,
        None,
    }
    by_touchpoint = _get(client, "/v1/trends", riyadh, group_by="touchpoint")
    assert by_touchpoint["series"][0]["total"] == sum(PLAN[RIYADH])


@pytest.mark.parametrize(
    "url", ["/v1/touchpoints", "/v1/trends", "/v1/pain-points", "/v1/topics", "/v1/topics/{topic}"]
)
def test_asking_for_another_store_is_403(
    url: str, client: TestClient, seeded: Seeded, riyadh: dict[str, str], session: Session
) -> None:
    url = url.format(topic=seeded.topic_id)
    response = client.get(url, params={"location": DUBAI}, headers=riyadh)
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert DUBAI in response.json()["detail"] and response.json()["type"].endswith("location-forbidden")
    assert client.get(url, params={"location": RIYADH}, headers=riyadh).status_code == 200
    two = _headers(session, RIYADH, DUBAI)
    assert client.get(url, params={"location": DUBAI}, headers=two).status_code == 200


def test_pain_points_come_from_the_key_s_stores(
    client: TestClient, seeded: Seeded, riyadh: dict[str, str], auth: Auth
) -> None:
    response = client.get("/v1/pain-points", params={"limit": 50}, headers=riyadh)
    assert response.status_code == 200
    (point,) = response.json()["pain_points"]
    assert point["locations"] == {RIYADH: PLAN[RIYADH][0]} and point["negative"] == PLAN[RIYADH][0]
    assert point["quotes"] and {q["location"] for q in point["quotes"]} == {RIYADH}
    assert all(q["text"].startswith(RIYADH) for q in point["quotes"])
    assert point["label"] == "courier, late, never" and point["keywords"] == [
        "courier",
        "late",
        "never",
        "came",
    ]
    _names_no_other_store(response.text)

    (everyone,) = _get(client, "/v1/pain-points", auth(Role.ANALYST))["pain_points"]
    assert set(everyone["locations"]) == {RIYADH, DUBAI, JEDDAH} and everyone["label"] == TOPIC_LABEL
    # unscoped: the most typical first, then spread over the other stores
    assert everyone["quotes"][0]["location"] == DUBAI
    assert len({q["location"] for q in everyone["quotes"]}) == len(everyone["quotes"])


def test_topics_show_keywords_not_other_stores_sentences(
    client: TestClient, seeded: Seeded, riyadh: dict[str, str], auth: Auth
) -> None:
    listed = client.get("/v1/topics", headers=riyadh)
    assert listed.status_code == 200
    (topic,) = listed.json()["topics"]
    assert topic["label"] == "courier, late, never" and topic["sentences"] == sum(PLAN[RIYADH])
    _names_no_other_store(listed.text)

    detail = client.get(f"/v1/topics/{seeded.topic_id}", headers=riyadh)
    assert detail.status_code == 200, detail.text
    body = detail.json()
    assert body["label"] == "courier, late, never" and body["representative"] is None
    assert body["keywords"] == ["courier", "late", "never", "came"]
    assert set(body["keyword_weights"]) == set(body["keywords"])
    assert body["examples"] and {e["location"] for e in body["examples"]} == {RIYADH}
    assert body["items"] == sum(PLAN[RIYADH])
    assert sum(b["sentences"] for b in body["timeline"]) == sum(PLAN[RIYADH])
    _names_no_other_store(detail.text)
    assert RIYADH in detail.text  # its own examples keep their store

    unscoped = _get(client, f"/v1/topics/{seeded.topic_id}", auth(Role.ANALYST))
    assert unscoped["label"] == TOPIC_LABEL and unscoped["representative"].startswith("At Dubai Mall")
    assert unscoped["keywords"] == TOPIC_KEYWORDS


def test_location_comparisons_show_only_the_key_s_rows_against_every_store(
    client: TestClient, session: Session, seeded: Seeded, riyadh: dict[str, str], auth: Auth
) -> None:
    for url in ("/v1/touchpoints/delivery_shipping/locations", f"/v1/topics/{seeded.topic_id}/locations"):
        everyone = {r["location"]: r for r in _get(client, url, auth(Role.ANALYST))["locations"]}
        assert set(everyone) == {RIYADH, DUBAI, JEDDAH}
        response = client.get(url, headers=riyadh)
        assert response.status_code == 200
        (mine,) = response.json()["locations"]
        assert mine == everyone[RIYADH]  # still compared with every other store
        assert mine["others_share"] == pytest.approx(7 / 9)  # Dubai 6/6 and Jeddah 1/3 together
        _names_no_other_store(response.text)
        two = {r["location"] for r in _get(client, url, _headers(session, RIYADH, JEDDAH))["locations"]}
        assert two == {RIYADH, JEDDAH}


def test_a_scoped_key_may_triage_but_not_read_alerts(
    client: TestClient, seeded: Seeded, riyadh: dict[str, str]
) -> None:
    url = f"/v1/pain-points/{seeded.topic_id}/delivery_shipping"
    acted = client.post(f"{url}/actions", json={"action": "acknowledge"}, headers=riyadh)
    assert acted.status_code == 200 and acted.json()["status"] == "acknowledged"
    assert client.get(f"{url}/triage", headers=riyadh).json()["history"][0]["actor"].startswith("key:manager")
    alerts = client.get("/v1/alerts", headers=riyadh)
    assert alerts.status_code == 403 and alerts.headers["content-type"] == "application/problem+json"
    assert RIYADH in alerts.json()["detail"]


def test_known_locations(session: Session, seeded: Seeded) -> None:
    assert known_locations(session) == {RIYADH, DUBAI, JEDDAH}


# ------------------------------------------------------------------------------------------ the keys


def test_keys_api_creates_scoped_analyst_keys_only(client: TestClient, auth: Auth, session: Session) -> None:
    admin = auth(Role.ADMIN)
    created = client.post(
        "/v1/keys",
        json={
            "name": "Olaya manager",
            "role": "analyst",
            "locations": [" Riyadh Olaya", "Riyadh Olaya", "Dubai Mall"],
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["locations"] == [RIYADH, DUBAI]
    listed = {k["id"]: k for k in _get(client, "/v1/keys", admin)}
    assert listed[body["id"]]["locations"] == [RIYADH, DUBAI]
    assert all(k["locations"] is None for i, k in listed.items() if i != body["id"])
    scoped = {"Authorization": f"Bearer {body['key']}"}
    assert client.get("/v1/feedback", params={"location": JEDDAH}, headers=scoped).status_code == 403

    for role in ("admin", "ingest", "scorer"):
        refused = client.post(
            "/v1/keys", json={"name": "x", "role": role, "locations": [RIYADH]}, headers=admin
        )
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert (
            "analyst" in refused.json()["detail"] and refused.json()["errors"][0]["field"] == "body.locations"
        )
    unscoped = client.post("/v1/keys", json={"name": "y", "role": "admin", "locations": []}, headers=admin)
    assert unscoped.status_code == 201 and unscoped.json()["locations"] is None
    assert (
        client.post(
            "/v1/keys", json={"name": "z", "role": "analyst", "locations": [""]}, headers=admin
        ).status_code
        == 422
    )
    assert session.scalar(select(ApiKey.locations).where(ApiKey.name == "x")) is None


def test_create_api_key_strips_and_refuses(session: Session) -> None:
    key, _ = create_api_key(session, name="m", role=Role.ANALYST, locations=[" A ", "B", "A", " "])
    assert key.locations == ["A", "B"]
    assert create_api_key(session, name="all", role=Role.ANALYST)[0].locations is None
    with pytest.raises(ValueError, match="blank"):
        create_api_key(session, name="blank", role=Role.ANALYST, locations=[" "])
    with pytest.raises(ValueError, match="analyst"):
        create_api_key(session, name="m", role=Role.INGEST, locations=["A"])


@pytest.fixture
def cli_env(database_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CXMINE_DATABASE_URL", database_url)
    monkeypatch.setenv("CXMINE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CXMINE_AUTHOR_SALT", "cli-salt")
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _cli(args: Sequence[str]) -> Any:
    return CliRunner().invoke(cli_app, list(args))


def test_cli_creates_and_lists_scoped_keys(cli_env: None, session: Session) -> None:
    made = _cli(
        ["keys", "create", "--role", "analyst", "--name", "Olaya", "--locations", "Riyadh Olaya, Dubai Mall,"]
    )
    assert made.exit_code == 0, made.output
    assert "limited to Riyadh Olaya, Dubai Mall" in made.output
    assert session.scalar(select(ApiKey.locations).where(ApiKey.name == "Olaya")) == [RIYADH, DUBAI]
    assert _cli(["keys", "create", "--role", "analyst", "--name", "All"]).exit_code == 0
    listed = _cli(["keys", "list"])
    assert listed.exit_code == 0, listed.output
    rows = {line.split("│")[2].strip(): line for line in listed.stdout.splitlines() if line.count("│") > 3}
    assert "Riyadh Olaya, Dubai Mall" in rows["Olaya"] and " all " in rows["All"]
    refused = _cli(["keys", "create", "--role", "ingest", "--name", "x", "--locations", RIYADH])
    assert refused.exit_code == 1 and "analyst" in refused.output
    assert session.scalar(select(ApiKey).where(ApiKey.name == "x")) is None
