"""Alert rules: episodes, one-shot items, webhook bodies, retries, and the API (real HTTP on loopback)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from service.alerts import (
    backoff_seconds,
    deliver_pending,
    evaluate_rules,
    retry_after_seconds,
    webhook_client,
)
from service.cli import app as cli_app
from service.config import Settings, get_settings
from service.db.engine import make_session_factory
from service.db.models import (
    Alert,
    AlertDelivery,
    AlertRule,
    FeedbackEmotion,
    FeedbackItem,
    FeedbackSentence,
    ItemTouchpoint,
    PainPointFact,
    Role,
    SentenceTopic,
    SentenceTouchpoint,
    Topic,
    utcnow,
)
from service.ingest.service import ingest_batch
from service.scheduler import pipeline_jobs
from service.topics import fact_rows
from service.touchpoints import TouchpointRef
from tests.test_triage import make_topic

Auth = Callable[[Role], dict[str, str]]


@dataclass
class Hook:
    """A webhook receiver on 127.0.0.1: records what it is sent and answers from a script."""

    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)

    def answer(self, *responses: int | tuple[int, dict[str, str]]) -> None:
        """Answer the next requests with these statuses (then 200)."""
        self.script.extend(r if isinstance(r, tuple) else (r, {}) for r in responses)


@pytest.fixture
def hook() -> Iterator[Hook]:
    state = Hook(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                state.received.append(json.loads(body))
                state.headers.append({k.lower(): v for k, v in self.headers.items()})
                status, headers = state.script.pop(0) if state.script else (200, {})
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/cx"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with webhook_client() as client:
        yield client


_counter = iter(range(1, 1_000_000))


def add_item(
    session: Session,
    *,
    sentiments: Sequence[str] = (),
    touchpoint: str = "delivery_shipping",
    location: str | None = None,
    metadata: dict[str, Any] | None = None,
    emotions: tuple[str, ...] = (),
    created_at: datetime | None = None,
    scored_at: datetime | None = None,
    text: str | None = None,
) -> int:
    """A stored, scored item with one sentence per sentiment label at ``touchpoint``; its id."""
    n = next(_counter)
    created = created_at or utcnow() - timedelta(days=1)
    raw = {
        "text": text or f"feedback number {n}",
        "source": "trustpilot",
        "external_id": f"x-{n}",
        "created_at": created.isoformat(),
        "location": location,
        "metadata": metadata or {},
    }
    _, results = ingest_batch(session, raw_items=[raw], author_salt=b"s", max_text_chars=10_000, actor="test")
    item_id = results[0].id
    assert item_id is not None
    label = "negative" if "negative" in sentiments else "positive"
    session.execute(
        update(FeedbackItem)
        .where(FeedbackItem.id == item_id)
        .values(sentiment_label=label, sentiment_score=-0.8, scored_at=scored_at or utcnow())
    )
    if sentiments:
        session.execute(
            insert(ItemTouchpoint),
            [{"item_id": item_id, "touchpoint": touchpoint, "score": 0.9, "origin": "text"}],
        )
    for position, sentiment in enumerate(sentiments):
        sentence_id = session.execute(
            insert(FeedbackSentence).returning(FeedbackSentence.id),
            [
                {
                    "item_id": item_id,
                    "position": position,
                    "start": 0,
                    "end": 4,
                    "sentiment_label": sentiment,
                    "sentiment_score": -0.8 if sentiment == "negative" else 0.8,
                    "sentiment_probabilities": {},
                    "emotions": {},
                    "embedding": b"\x00\x00",
                }
            ],
        ).scalar_one()
        session.execute(
            insert(SentenceTouchpoint),
            [{"sentence_id": sentence_id, "item_id": item_id, "touchpoint": touchpoint, "score": 0.9}],
        )
    for emotion in emotions:
        session.add(FeedbackEmotion(item_id=item_id, scheme="cx", label=emotion, probability=0.9))
    session.commit()
    return item_id


def create_rule(client: TestClient, auth: Auth, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/alert-rules", json={"name": "rule", **body}, headers=auth(Role.ADMIN))
    assert response.status_code == 201, response.text
    rule: dict[str, Any] = response.json()
    return rule


def negative_share_rule(client: TestClient, auth: Auth, hook: Hook, **params: Any) -> dict[str, Any]:
    return create_rule(
        client,
        auth,
        name="Delivery complaints",
        kind="negative_share",
        webhook_url=hook.url,
        params={"touchpoint": "delivery_shipping", "threshold": 0.5, "min_sentences": 4, **params},
    )


def alerts_of(session: Session, rule_id: int) -> list[Alert]:
    session.expire_all()
    return list(session.scalars(select(Alert).where(Alert.rule_id == rule_id).order_by(Alert.id)))


def test_negative_share_fires_once_per_episode(
    client: TestClient,
    session: Session,
    factory: sessionmaker[Session],
    http: httpx.Client,
    hook: Hook,
    auth: Auth,
) -> None:
    rule = negative_share_rule(client, auth, hook)
    add_item(session, sentiments=["negative", "negative", "positive"])
    add_item(session, sentiments=["negative"])
    add_item(session, sentiments=["negative"] * 5, created_at=utcnow() - timedelta(days=30))  # out of window

    first = evaluate_rules(factory)
    second = evaluate_rules(factory)
    assert len(first.fired) == 1 and second.fired == [] and second.rules[0].ongoing == 1
    assert deliver_pending(factory, client=http).delivered == 1
    assert deliver_pending(factory, client=http).attempted == 0
    [alert] = alerts_of(session, rule["id"])
    assert alert.status == "firing" and alert.subject == alert.open_subject == "touchpoint:delivery_shipping"
    assert (
        alert.delivery_status == "delivered" and alert.attempts == 1 and alert.last_seen_at > alert.fired_at
    )

    [body] = hook.received
    assert body["type"] == "cxmine.alert" and body["alert_id"] == alert.id and body["status"] == "firing"
    assert body["rule"] == {"id": rule["id"], "name": "Delivery complaints", "kind": "negative_share"}
    assert body["subject"] == "touchpoint:delivery_shipping"
    assert body["details"]["negative_share"] == 0.75 and body["details"]["sentences"] == 4
    assert "75% of 4 sentences about" in body["summary"]
    assert body["links"]["feedback"].startswith("/v1/feedback?touchpoint=delivery_shipping&since=")
    assert datetime.fromisoformat(body["fired_at"]) == alert.fired_at
    assert hook.headers[0]["x-cxmine-alert-id"] == str(alert.id)

    add_item(session, sentiments=["positive"] * 3)  # 3 of 7 negative: below 50 %
    ended = evaluate_rules(factory)
    assert ended.resolved == [alert.id] and ended.fired == []
    [closed] = alerts_of(session, rule["id"])
    assert closed.status == "resolved" and closed.open_subject is None and closed.closed_at is not None

    add_item(session, sentiments=["negative"] * 6)  # 9 of 13
    again = evaluate_rules(factory)
    assert len(again.fired) == 1 and again.fired != [alert.id]
    assert deliver_pending(factory, client=http).delivered == 1
    assert len(hook.received) == 2 and hook.received[1]["alert_id"] == again.fired[0]

    listed = client.get("/v1/alerts", params={"rule_id": rule["id"]}, headers=auth(Role.ANALYST)).json()
    assert [a["id"] for a in listed] == [again.fired[0], alert.id]
    assert [a["status"] for a in listed] == ["firing", "resolved"]
    assert listed[1]["deliveries"][0]["status_code"] == 200 and listed[1]["delivery_status"] == "delivered"
    rule_now = client.get(f"/v1/alert-rules/{rule['id']}", headers=auth(Role.ADMIN)).json()
    assert rule_now["firing"] == 1


def test_min_sentences_and_location_scope(
    client: TestClient, session: Session, factory: sessionmaker[Session], hook: Hook, auth: Auth
) -> None:
    rule = negative_share_rule(client, auth, hook, location="Riyadh Olaya", min_sentences=3)
    add_item(session, sentiments=["negative", "negative"], location="Riyadh Olaya")
    add_item(session, sentiments=["negative"] * 5, location="Dubai Mall")
    assert evaluate_rules(factory).fired == []  # only two sentences in Riyadh
    add_item(session, sentiments=["negative"], location="Riyadh Olaya")
    [alert_id] = evaluate_rules(factory).fired
    [alert] = alerts_of(session, rule["id"])
    assert alert.id == alert_id and alert.payload["details"]["location"] == "Riyadh Olaya"
    assert "location=Riyadh+Olaya" in alert.payload["links"]["feedback"]


def test_angry_vip_items_fire_once_each(
    client: TestClient,
    session: Session,
    factory: sessionmaker[Session],
    http: httpx.Client,
    hook: Hook,
    auth: Auth,
) -> None:
    before = utcnow() - timedelta(hours=1)
    old = add_item(session, metadata={"tier": "vip"}, emotions=("anger",), scored_at=before)
    rule = create_rule(
        client,
        auth,
        name="Angry VIPs",
        kind="angry_item",
        webhook_url=hook.url,
        params={"metadata_key": "tier", "metadata_value": "vip"},
    )
    assert rule["params"]["emotion"] == "anger"
    vip = add_item(
        session, metadata={"tier": "vip", "n": 3}, emotions=("anger", "frustration"), text="Never again!"
    )
    add_item(session, metadata={"tier": "regular"}, emotions=("anger",))
    add_item(session, emotions=("anger",))
    add_item(session, metadata={"tier": "vip"}, emotions=("joy",))
    assert old != vip

    first = evaluate_rules(factory)
    assert len(first.fired) == 1
    [alert] = alerts_of(session, rule["id"])
    assert alert.subject == f"item:{vip}" and alert.status == "resolved" and alert.closed_at is not None
    assert alert.payload["details"]["text"] == "Never again!"
    assert alert.payload["links"] == {"item": f"/v1/feedback/{vip}"}
    assert evaluate_rules(factory).fired == []

    later = add_item(session, metadata={"tier": "vip"}, emotions=("anger",))
    assert len(evaluate_rules(factory).fired) == 1
    assert [a.subject for a in alerts_of(session, rule["id"])] == [f"item:{vip}", f"item:{later}"]
    assert deliver_pending(factory, client=http).delivered == 2
    assert {b["subject"] for b in hook.received} == {f"item:{vip}", f"item:{later}"}
    assert evaluate_rules(factory).fired == [] and deliver_pending(factory, client=http).attempted == 0


def test_slack_body_shape(
    client: TestClient,
    session: Session,
    factory: sessionmaker[Session],
    http: httpx.Client,
    hook: Hook,
    auth: Auth,
) -> None:
    create_rule(
        client,
        auth,
        name="Angry <customers> & more",
        kind="angry_item",
        webhook_url=hook.url,
        webhook_format="slack",
    )
    item_id = add_item(session, emotions=("anger",), text="The courier threw my parcel <again>")
    evaluate_rules(factory)
    deliver_pending(factory, client=http, public_url="https://cx.example.com/")
    [body] = hook.received
    assert set(body) == {"text", "blocks"}
    assert body["text"].startswith("cxmine alert: Angry <customers> & more: Anger feedback from trustpilot")
    section, context, links = body["blocks"]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert "*Angry &lt;customers&gt; &amp; more*" in section["text"]["text"]
    assert "parcel &lt;again&gt;" in section["text"]["text"]
    assert context["type"] == "context" and f"`item:{item_id}`" in context["elements"][0]["text"]
    assert links["text"]["text"] == f"<https://cx.example.com/v1/feedback/{item_id}|item>"


def _one_alert(
    client: TestClient, session: Session, factory: sessionmaker[Session], auth: Auth, url: str
) -> int:
    create_rule(client, auth, kind="angry_item", webhook_url=url)
    add_item(session, emotions=("anger",))
    [alert_id] = evaluate_rules(factory).fired
    return alert_id


def _deliveries(session: Session, alert_id: int) -> list[tuple[int, int | None]]:
    session.expire_all()
    rows = session.execute(
        select(AlertDelivery.attempt, AlertDelivery.status_code)
        .where(AlertDelivery.alert_id == alert_id)
        .order_by(AlertDelivery.attempt)
    )
    return [(attempt, code) for attempt, code in rows]


def test_a_500_is_retried_with_backoff_then_delivered(
    client: TestClient,
    session: Session,
    factory: sessionmaker[Session],
    http: httpx.Client,
    hook: Hook,
    auth: Auth,
) -> None:
    alert_id = _one_alert(client, session, factory, auth, hook.url)
    hook.answer(500)
    t0 = utcnow()
    assert deliver_pending(factory, client=http, now=t0).retrying == 1
    alert = session.get_one(Alert, alert_id)
    assert (alert.delivery_status, alert.attempts) == ("pending", 1)
    assert alert.last_error is not None and alert.last_error.startswith("HTTP 500")
    assert alert.next_attempt_at is not None
    assert t0 + timedelta(seconds=22) <= alert.next_attempt_at <= t0 + timedelta(seconds=38)
    assert deliver_pending(factory, client=http, now=t0 + timedelta(seconds=20)).attempted == 0
    assert deliver_pending(factory, client=http, now=t0 + timedelta(seconds=40)).delivered == 1
    assert _deliveries(session, alert_id) == [(1, 500), (2, 200)]
    session.expire_all()
    alert = session.get_one(Alert, alert_id)
    assert (alert.delivery_status, alert.attempts, alert.last_error) == ("delivered", 2, None)
    assert [h["x-cxmine-delivery-attempt"] for h in hook.headers] == ["1", "2"]
    assert hook.received[0] == hook.received[1]
    listed = client.get("/v1/alerts", headers=auth(Role.ANALYST)).json()
    assert [(d["attempt"], d["status_code"]) for d in listed[0]["deliveries"]] == [(1, 500), (2, 200)]
    assert listed[0]["deliveries"][0]["error"].startswith("HTTP 500")


def test_429_honours_retry_after(
    client: TestClient,
    session: Session,
    factory: sessionmaker[Session],
    http: httpx.Client,
    hook: Hook,
    auth: Auth,
) -> None:
    alert_id = _one_alert(client, session, factory, auth, hook.url)
    hook.answer((429, {"Retry-After": "120"}))
    t0 = utcnow()
    assert deliver_pending(factory, client=http, now=t0).retrying == 1
    assert session.get_one(Alert, alert_id).next_attempt_at == t0 + timedelta(seconds=120)
    assert deliver_pending(factory, client=http, now=t0 + timedelta(seconds=100)).attempted == 0
    assert deliver_pending(factory, client=http, now=t0 + timedelta(seconds=121)).delivered == 1
    assert _deliveries(session, alert_id) == [(1, 429), (2, 200)]


def test_a_404_fails_at_once(
    client: TestClient,
    session: Session,
    factory: sessionmaker[Session],
    http: httpx.Client,
    hook: Hook,
    auth: Auth,
) -> None:
    alert_id = _one_alert(client, session, factory, auth, hook.url)
    hook.answer(404)
    assert deliver_pending(factory, client=http).failed == 1
    alert = session.get_one(Alert, alert_id)
    assert (alert.delivery_status, alert.attempts, alert.next_attempt_at) == ("failed", 1, None)
    assert alert.last_error is not None and "HTTP 404" in alert.last_error
    later = utcnow() + timedelta(days=1)
    assert deliver_pending(factory, client=http, now=later).attempted == 0
    listed = client.get("/v1/alerts", params={"delivery": "failed"}, headers=auth(Role.ANALYST)).json()
    assert [a["id"] for a in listed] == [alert_id]


def test_unreachable_webhook_is_retried_until_max_attempts(
    client: TestClient, session: Session, factory: sessionmaker[Session], http: httpx.Client, auth: Auth
) -> None:
    alert_id = _one_alert(client, session, factory, auth, "http://127.0.0.1:9/nothing-listens-here")
    now = utcnow()
    for _ in range(3):
        report = deliver_pending(factory, client=http, now=now, max_attempts=3, timeout_seconds=2)
        assert report.attempted == 1
        now += timedelta(hours=2)
    assert (report.retrying, report.failed) == (0, 1)
    alert = session.get_one(Alert, alert_id)
    assert (alert.delivery_status, alert.attempts) == ("failed", 3)
    assert _deliveries(session, alert_id) == [(1, None), (2, None), (3, None)]
    assert alert.last_error is not None and "Connect" in alert.last_error


def test_backoff_and_retry_after_parsing() -> None:
    for attempt, centre in ((1, 30), (2, 60), (3, 120), (10, 3600)):
        assert 0.75 * centre <= backoff_seconds(attempt, base=30, cap=3600) <= 1.25 * centre
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("90", now=now) == 90
    assert retry_after_seconds("Fri, 20 Nov 2026 12:05:00 GMT", now=now) == 300
    assert retry_after_seconds("soon", now=now) is None and retry_after_seconds(None, now=now) is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"kind": "negative_share", "params": {"touchpoint": "delivery_shipping", "threshold": 1.5}},
            "threshold",
        ),
        ({"kind": "negative_share", "params": {"threshold": 0.5}}, "touchpoint"),
        (
            {"kind": "negative_share", "params": {"touchpoint": "teleportation", "threshold": 0.5}},
            "touchpoint",
        ),
        ({"kind": "negative_share", "params": {"touchpoint": "staff", "threshold": 0.5, "x": 1}}, "x"),
        ({"kind": "angry_item", "params": {"emotion": "rage"}}, "params"),
        ({"kind": "angry_item", "params": {"metadata_key": "tier"}}, "params"),
        ({"kind": "pain_point_trending", "params": {"interval": "month"}}, "interval"),
        ({"kind": "pain_point_trending", "params": {"topic_id": 999999}}, "topic_id"),
        ({"kind": "sometimes", "params": {}}, "body"),
        ({"kind": "angry_item", "webhook_url": "ftp://example.com/x"}, "webhook_url"),
        ({"kind": "angry_item", "webhook_url": "not a url"}, "webhook_url"),
        ({"kind": "angry_item", "webhook_format": "teams"}, "webhook_format"),
    ],
)
def test_bad_rules_are_422_with_field_errors(
    client: TestClient, auth: Auth, body: dict[str, Any], field: str
) -> None:
    payload = {"name": "bad", "webhook_url": "https://hooks.example.com/x", **body}
    response = client.post("/v1/alert-rules", json=payload, headers=auth(Role.ADMIN))
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"] == "urn:cxmine:problem:validation-error"
    assert problem["errors"] and any(field in error["field"] for error in problem["errors"]), problem
    assert client.get("/v1/alert-rules", headers=auth(Role.ADMIN)).json() == []


def test_rules_crud_and_patch_merges_params(client: TestClient, hook: Hook, auth: Auth) -> None:
    rule = negative_share_rule(client, auth, hook)
    assert rule["params"] == {
        "touchpoint": "delivery_shipping",
        "threshold": 0.5,
        "min_sentences": 4,
        "window_days": 7,
        "location": None,
    }
    assert rule["created_by"] == "key:test admin" and rule["enabled"] and rule["firing"] == 0
    url = f"/v1/alert-rules/{rule['id']}"
    patched = client.patch(
        url,
        json={"name": "Renamed", "enabled": False, "params": {"threshold": 0.3}, "webhook_format": "slack"},
        headers=auth(Role.ADMIN),
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["name"], body["enabled"], body["webhook_format"]) == ("Renamed", False, "slack")
    assert body["params"]["threshold"] == 0.3 and body["params"]["min_sentences"] == 4
    bad = client.patch(url, json={"params": {"threshold": 0}}, headers=auth(Role.ADMIN))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.params.threshold"
    bad_url = client.patch(url, json={"webhook_url": "gopher://x"}, headers=auth(Role.ADMIN))
    assert bad_url.status_code == 422
    assert [r["name"] for r in client.get("/v1/alert-rules", headers=auth(Role.ADMIN)).json()] == ["Renamed"]
    disabled = client.post(f"{url}/evaluate", headers=auth(Role.ADMIN))
    assert disabled.status_code == 409
    assert client.delete(url, headers=auth(Role.ADMIN)).status_code == 204
    assert client.get(url, headers=auth(Role.ADMIN)).status_code == 404
    assert client.delete(url, headers=auth(Role.ADMIN)).status_code == 404


def test_disabled_rules_neither_evaluate_nor_deliver(
    client: TestClient,
    session: Session,
    factory: sessionmaker[Session],
    http: httpx.Client,
    hook: Hook,
    auth: Auth,
) -> None:
    rule = create_rule(client, auth, kind="angry_item", webhook_url=hook.url)
    add_item(session, emotions=("anger",))
    assert len(evaluate_rules(factory).fired) == 1
    client.patch(f"/v1/alert-rules/{rule['id']}", json={"enabled": False}, headers=auth(Role.ADMIN))
    add_item(session, emotions=("anger",))
    assert evaluate_rules(factory).rules == []
    assert deliver_pending(factory, client=http).attempted == 0
    client.patch(f"/v1/alert-rules/{rule['id']}", json={"enabled": True}, headers=auth(Role.ADMIN))
    assert len(evaluate_rules(factory).fired) == 1
    assert deliver_pending(factory, client=http).delivered == 2


def test_evaluate_route_fires_and_delivers(
    client: TestClient, session: Session, hook: Hook, auth: Auth
) -> None:
    rule = negative_share_rule(client, auth, hook)
    add_item(session, sentiments=["negative"] * 4)
    response = client.post(f"/v1/alert-rules/{rule['id']}/evaluate", headers=auth(Role.ADMIN))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["delivered"] == 1 and body["ongoing"] == 0 and body["resolved"] == []
    [fired] = body["fired"]
    assert fired["subject"] == "touchpoint:delivery_shipping" and fired["rule_name"] == "Delivery complaints"
    assert fired["delivery_status"] == "delivered" and len(fired["deliveries"]) == 1
    assert len(hook.received) == 1
    again = client.post(f"/v1/alert-rules/{rule['id']}/evaluate", headers=auth(Role.ADMIN)).json()
    assert again["fired"] == [] and again["ongoing"] == 1 and again["delivered"] == 0
    assert client.post("/v1/alert-rules/999999/evaluate", headers=auth(Role.ADMIN)).status_code == 404


def test_list_alerts_filters(
    client: TestClient, session: Session, factory: sessionmaker[Session], hook: Hook, auth: Auth
) -> None:
    share = negative_share_rule(client, auth, hook)
    angry = create_rule(client, auth, kind="angry_item", webhook_url=hook.url)
    add_item(session, sentiments=["negative"] * 4, emotions=("anger",))
    add_item(session, emotions=("anger",))
    t0 = utcnow()
    evaluate_rules(factory, now=t0 - timedelta(hours=2))
    add_item(session, emotions=("anger",))
    evaluate_rules(factory, now=t0)
    reader = auth(Role.ANALYST)

    def ids(**params: Any) -> list[int]:
        response = client.get("/v1/alerts", params=params, headers=reader)
        assert response.status_code == 200, response.text
        return [a["id"] for a in response.json()]

    everything = ids()
    assert len(everything) == 4
    assert len(ids(rule_id=angry["id"])) == 3 and len(ids(rule_id=share["id"])) == 1
    assert ids(status="firing") == ids(rule_id=share["id"])
    assert len(ids(status="resolved")) == 3
    assert len(ids(since=(t0 - timedelta(hours=1)).isoformat())) == 1
    assert ids(limit=2) == everything[:2]
    assert ids(delivery="pending") == everything
    assert (
        client.get("/v1/alerts", params={"since": "2026-01-01T00:00:00"}, headers=reader).status_code == 422
    )
    assert client.get("/v1/alerts", params={"status": "open"}, headers=reader).status_code == 422


def test_a_broken_rule_does_not_stop_the_others(
    client: TestClient, session: Session, factory: sessionmaker[Session], hook: Hook, auth: Auth
) -> None:
    broken = create_rule(client, auth, kind="angry_item", webhook_url=hook.url)
    session.execute(update(AlertRule).where(AlertRule.id == broken["id"]).values(params={"emotion": 1}))
    session.commit()
    negative_share_rule(client, auth, hook)
    add_item(session, sentiments=["negative"] * 4)
    report = evaluate_rules(factory)
    assert list(report.errors) == [broken["id"]] and len(report.fired) == 1


def test_the_scheduler_jobs_evaluate_and_deliver(
    client: TestClient,
    session: Session,
    factory: sessionmaker[Session],
    http: httpx.Client,
    hook: Hook,
    auth: Auth,
    settings: Settings,
) -> None:
    jobs = {
        job.id: job
        for job in pipeline_jobs(
            settings=settings, session_factory=factory, analyzer=None, webhook_client=http
        )
    }
    assert set(jobs) == {"alerts.evaluate", "alerts.deliver"}
    assert jobs["alerts.evaluate"].interval_seconds == settings.alert_evaluation_interval_seconds
    negative_share_rule(client, auth, hook)
    add_item(session, sentiments=["negative"] * 4)
    jobs["alerts.evaluate"].run(threading.Event())
    assert hook.received == []  # evaluation queues the delivery; the delivery job sends it
    jobs["alerts.deliver"].run(threading.Event())
    assert len(hook.received) == 1
    add_item(session, emotions=("anger",))
    create_rule(client, auth, kind="angry_item", webhook_url=hook.url)
    add_item(session, emotions=("anger",))
    jobs["alerts.deliver"].run(threading.Event())
    assert len(hook.received) == 1  # not evaluated yet
    jobs["alerts.evaluate"].run(threading.Event())
    jobs["alerts.deliver"].run(threading.Event())
    assert len(hook.received) == 2 and hook.received[1]["rule"]["kind"] == "angry_item"


def _trending_fixture(session: Session, *, now: datetime) -> int:
    """A topic at delivery with one negative sentence a week for six weeks, then twelve in the latest week."""
    topic_id = make_topic(session, "courier never came", ("courier", "never"))
    model_id = session.get_one(Topic, topic_id).born_model_id
    weeks = [(now - timedelta(weeks=w, hours=1), 1) for w in range(1, 7)] + [(now - timedelta(hours=2), 12)]
    for created, count in weeks:
        for _ in range(count):
            item_id = add_item(session, sentiments=["negative"], created_at=created, location="Riyadh Olaya")
            sentence_id = session.execute(
                select(FeedbackSentence.id).where(FeedbackSentence.item_id == item_id)
            ).scalar_one()
            session.execute(
                insert(SentenceTopic),
                [
                    {
                        "sentence_id": sentence_id,
                        "item_id": item_id,
                        "topic_id": topic_id,
                        "model_id": model_id,
                        "similarity": 0.9,
                        "origin": "fit",
                        "created_at": created,
                        "negative": True,
                        "sentiment_score": -0.8,
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
                    negative=True,
                    sentiment_score=-0.8,
                    similarity=0.9,
                    location=item.location,
                    source_id=item.source_id,
                    language=item.language,
                ),
            )
    session.commit()
    return topic_id


def test_pain_point_trending_fires_per_pain_point(
    client: TestClient,
    session: Session,
    factory: sessionmaker[Session],
    http: httpx.Client,
    hook: Hook,
    auth: Auth,
) -> None:
    now = utcnow()
    topic_id = _trending_fixture(session, now=now)
    rule = create_rule(
        client,
        auth,
        name="Trending",
        kind="pain_point_trending",
        webhook_url=hook.url,
        params={"touchpoint": "delivery_shipping", "location": "Riyadh Olaya"},
    )
    report = evaluate_rules(factory, now=now)
    assert report.errors == {}
    [alert] = alerts_of(session, rule["id"])
    assert alert.subject == f"topic:{topic_id}@delivery_shipping@loc:Riyadh Olaya"
    details = alert.payload["details"]
    assert details["topic_id"] == topic_id and details["label"] == "courier never came"
    assert alert.payload["links"]["triage"] == f"/v1/pain-points/{topic_id}/delivery_shipping/triage"
    assert alert.payload["links"]["pain_point"].startswith(f"/v1/pain-points?topic={topic_id}&touchpoint=")
    assert evaluate_rules(factory, now=now).fired == []
    assert deliver_pending(factory, client=http).delivered == 1
    assert hook.received[0]["subject"] == alert.subject


def test_concurrent_evaluators_open_one_episode_per_subject(
    client: TestClient, session: Session, factory: sessionmaker[Session], hook: Hook, auth: Auth
) -> None:
    share = negative_share_rule(client, auth, hook)
    angry = create_rule(client, auth, kind="angry_item", webhook_url=hook.url)
    add_item(session, sentiments=["negative"] * 4, emotions=("anger",))
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def evaluate() -> None:
        try:
            barrier.wait()
            report = evaluate_rules(factory)
            assert report.errors == {}
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=evaluate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(alerts_of(session, share["id"])) == 1
    assert len(alerts_of(session, angry["id"])) == 1


def test_cli_alerts_evaluate(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    client: TestClient,
    session: Session,
    hook: Hook,
    auth: Auth,
) -> None:
    monkeypatch.setenv("CXMINE_DATABASE_URL", database_url)
    monkeypatch.setenv("CXMINE_DATA_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    try:
        negative_share_rule(client, auth, hook)
        add_item(session, sentiments=["negative"] * 4)
        result = CliRunner().invoke(cli_app, ["alerts", "evaluate"])
        assert result.exit_code == 0, result.output
        assert "fired alert #" in result.output and "touchpoint:delivery_shipping" in result.output
        assert "1 delivered" in result.output
        assert len(hook.received) == 1
        again = CliRunner().invoke(cli_app, ["alerts", "evaluate", "--no-deliver"])
        assert again.exit_code == 0 and "fired alert" not in again.output
    finally:
        get_settings.cache_clear()
