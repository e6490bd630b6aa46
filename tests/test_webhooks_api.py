"""Survey webhooks over HTTP: signed pushes stored once, bad signatures and bodies refused with problems."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import FeedbackItem, ImportAudit, Role, Source
from tests.scrapers.replay import FakeSleep, ReplayTransport, Route, json_response, load_bytes, load_json

Auth = Callable[[Role], dict[str, str]]
SECRET = "tf-webhook-secret-7d1e"


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


@pytest.fixture
def typeform(client: TestClient, auth: Auth, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CXMINE_TEST_TYPEFORM_SECRET", SECRET)
    created = client.post(
        "/v1/sources",
        json={
            "name": "nps-typeform",
            "kind": "typeform.webhook.v1",
            "config": {"secret": {"env": "CXMINE_TEST_TYPEFORM_SECRET"}},
            "default_touchpoint": "store_branch",
        },
        headers=auth(Role.ADMIN),
    )
    assert created.status_code == 201, created.text
    assert created.json()["config"] == {"secret": {"env": "CXMINE_TEST_TYPEFORM_SECRET"}}
    return "/v1/webhooks/nps-typeform"


def test_a_signed_typeform_push_is_stored_once(
    client: TestClient, typeform: str, session: Session, auth: Auth
) -> None:
    body = load_bytes("webhooks", "typeform_form_response.json")
    first = client.post(typeform, content=body, headers={"Typeform-Signature": sign(body)})
    assert first.status_code == 200, first.text
    assert first.json()["stored"] == 1 and first.json()["malformed"] == 0
    again = client.post(typeform, content=body, headers={"Typeform-Signature": sign(body)})
    assert again.json()["stored"] == 0 and again.json()["duplicates"] == 1
    (item,) = session.scalars(select(FeedbackItem)).all()
    assert item.channel == "survey" and item.meta["touchpoint"] == "store_branch"
    audit = session.get(ImportAudit, first.json()["import_id"])
    assert audit is not None and audit.kind == "webhook" and audit.source_name == "nps-typeform"
    health = client.get("/v1/sources/nps-typeform", headers=auth(Role.ANALYST)).json()["health"]
    assert health["state"] == "ok" and health["items_collected"] == 1 and health["next_run_at"] is None
    assert health["last_success_at"] is not None


def test_a_bad_signature_is_refused(client: TestClient, typeform: str, session: Session) -> None:
    body = load_bytes("webhooks", "typeform_form_response.json")
    forged = client.post(typeform, content=body, headers={"Typeform-Signature": sign(body, "guess")})
    assert forged.status_code == 401
    assert forged.headers["content-type"] == "application/problem+json"
    assert "does not match" in forged.json()["detail"] and SECRET not in forged.text
    unsigned = client.post(typeform, content=body)
    assert unsigned.status_code == 401 and "no Typeform-Signature header" in unsigned.json()["detail"]
    assert session.scalar(select(FeedbackItem.id).limit(1)) is None


def test_bad_bodies_and_unknown_hooks(client: TestClient, typeform: str, auth: Auth) -> None:
    junk = b"{not json"
    assert client.post(typeform, content=junk, headers={"Typeform-Signature": sign(junk)}).status_code == 400
    other = b'{"event_type": "form_deleted"}'
    refused = client.post(typeform, content=other, headers={"Typeform-Signature": sign(other)})
    assert refused.status_code == 422 and "form_response" in refused.json()["detail"]
    assert client.post("/v1/webhooks/nope", content=b"{}").status_code == 404
    run = client.post("/v1/sources/nps-typeform/run", headers=auth(Role.ADMIN))
    assert run.status_code == 409 and "webhook" in run.json()["detail"]
    scheduled = client.patch(
        "/v1/sources/nps-typeform", json={"interval_seconds": 600}, headers=auth(Role.ADMIN)
    )
    assert scheduled.status_code == 422


def test_a_misconfigured_hook_says_so(
    client: TestClient, typeform: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CXMINE_TEST_TYPEFORM_SECRET")
    body = load_bytes("webhooks", "typeform_form_response.json")
    response = client.post(typeform, content=body, headers={"Typeform-Signature": sign(body)})
    assert response.status_code == 503
    assert "CXMINE_TEST_TYPEFORM_SECRET is not set" in response.json()["detail"]


def test_a_paused_hook_refuses_pushes(client: TestClient, typeform: str, auth: Auth) -> None:
    client.post("/v1/sources/nps-typeform/pause", headers=auth(Role.ADMIN))
    body = load_bytes("webhooks", "typeform_form_response.json")
    assert client.post(typeform, content=body, headers={"Typeform-Signature": sign(body)}).status_code == 409


def test_a_qualtrics_workflow_post_with_its_key(client: TestClient, auth: Auth, session: Session) -> None:
    created = client.post(
        "/v1/sources",
        json={"name": "qualtrics-nps", "kind": "qualtrics.workflow.v1", "config": {"token": "qx-token-1"}},
        headers=auth(Role.ADMIN),
    )
    assert created.status_code == 201, created.text
    assert created.json()["config"]["token"] == "********"
    body = load_bytes("webhooks", "qualtrics_workflow.json")
    assert client.post("/v1/webhooks/qualtrics-nps", content=body).status_code == 401
    stored = client.post("/v1/webhooks/qualtrics-nps", content=body, headers={"X-API-Key": "qx-token-1"})
    assert stored.status_code == 200, stored.text
    assert stored.json()["stored"] >= 1
    source = session.scalar(select(Source).where(Source.name == "qualtrics-nps"))
    assert source is not None and source.items_collected == stored.json()["stored"]
    kinds = {kind["kind"] for kind in client.get("/v1/source-kinds", headers=auth(Role.ANALYST)).json()}
    assert {"typeform.webhook.v1", "qualtrics.workflow.v1", "app_store.v1"} <= kinds


def _qualtrics_event(shared_key: str) -> bytes:
    message = json.dumps(
        {
            "Status": "Complete",
            "SurveyID": "SV_3kLmN8pQrS2tUvW",
            "ResponseID": "R_1a2B3c4D5e6F7g8",
            "CompletedDate": "2026-03-14 09:15:02",
            "BrandID": "acmeretail",
        }
    )
    signature = hmac.new(shared_key.encode(), message.encode(), hashlib.sha512).hexdigest()
    return urlencode(
        {"Topic": "surveyengine.completedResponse.SV_3kLmN8pQrS2tUvW", "MSG": message, "HMAC": signature}
    ).encode()


def test_a_signed_qualtrics_event_fetches_and_stores_the_response(
    client: TestClient, auth: Auth, session: Session
) -> None:
    created = client.post(
        "/v1/sources",
        json={
            "name": "qualtrics-events",
            "kind": "qualtrics.event.v1",
            "config": {
                "shared_key": "sk-1",
                "api_token": "qx-api-token",
                "datacenter": "fra1",
                "fields": {"text": ["QID2_TEXT"], "rating": "QID1", "location": "labels.QID3"},
            },
            "default_touchpoint": "delivery_shipping",
        },
        headers=auth(Role.ADMIN),
    )
    assert created.status_code == 201, created.text
    api = ReplayTransport(
        Route(
            "GET",
            r"/API/v3/surveys/SV_3kLmN8pQrS2tUvW/responses/R_1a2B3c4D5e6F7g8$",
            [json_response(load_json("qualtrics_api", "response.json"))],
            repeat_last=True,
        )
    )
    client.app.state.source_options = {"transport": api, "sleep": FakeSleep()}  # type: ignore[attr-defined]
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    forged = client.post("/v1/webhooks/qualtrics-events", content=_qualtrics_event("guess"), headers=headers)
    assert forged.status_code == 401 and api.requests == []
    stored = client.post("/v1/webhooks/qualtrics-events", content=_qualtrics_event("sk-1"), headers=headers)
    assert stored.status_code == 200, stored.text
    assert stored.json()["stored"] == 1
    again = client.post("/v1/webhooks/qualtrics-events", content=_qualtrics_event("sk-1"), headers=headers)
    assert again.json()["duplicates"] == 1
    item = session.scalar(select(FeedbackItem).where(FeedbackItem.external_id == "R_1a2B3c4D5e6F7g8"))
    assert item is not None and item.location == "Riyadh Olaya" and item.rating_scale == "nps"
    assert item.text.endswith("رقمي [phone]"), "personal data is redacted on the way in"


def test_a_qualtrics_event_whose_response_cannot_be_read_asks_for_a_retry(
    client: TestClient, auth: Auth
) -> None:
    client.post(
        "/v1/sources",
        json={
            "name": "qualtrics-events",
            "kind": "qualtrics.event.v1",
            "config": {"shared_key": "sk-1", "api_token": "wrong", "datacenter": "fra1"},
        },
        headers=auth(Role.ADMIN),
    )
    api = ReplayTransport(
        Route("GET", r"/responses/", [json_response(load_json("qualtrics_api", "bad_token.json"), 401)])
    )
    client.app.state.source_options = {"transport": api, "sleep": FakeSleep()}  # type: ignore[attr-defined]
    response = client.post(
        "/v1/webhooks/qualtrics-events",
        content=_qualtrics_event("sk-1"),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 502
    assert "Invalid API token." in response.json()["detail"] and "wrong" not in response.json()["detail"]
