"""The role matrix: every /v1 route x every role, no key, a wrong key and a revoked key."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.app import create_app
from service.config import Settings
from service.db.models import ApiKey, Role
from service.keys import create_api_key, revoke_api_key

READ = {Role.ADMIN, Role.ANALYST}
WRITE = {Role.ADMIN, Role.INGEST}
ADMIN = {Role.ADMIN}
SCORE = {Role.ADMIN, Role.SCORER}

EXPECTED_ROLES: dict[tuple[str, str], set[Role]] = {
    ("POST", "/v1/feedback"): WRITE,
    ("POST", "/v1/feedback/import"): WRITE,
    ("GET", "/v1/feedback"): READ,
    ("GET", "/v1/feedback/{item_id}"): READ,
    ("GET", "/v1/sources"): READ,
    ("GET", "/v1/imports"): READ,
    ("GET", "/v1/imports/{import_id}"): READ,
    ("GET", "/v1/keys"): ADMIN,
    ("POST", "/v1/keys"): ADMIN,
    ("DELETE", "/v1/keys/{key_id}"): ADMIN,
    ("POST", "/v1/score"): SCORE,
    ("GET", "/v1/taxonomy"): READ,
    ("PUT", "/v1/taxonomy"): ADMIN,
    ("GET", "/v1/touchpoints"): READ,
    ("GET", "/v1/trends"): READ,
    ("GET", "/v1/drivers"): READ,
    ("GET", "/v1/touchpoints/{touchpoint}/locations"): READ,
    ("GET", "/v1/pain-points"): READ,
    ("GET", "/v1/topics"): READ,
    ("GET", "/v1/topics/{topic_id}"): READ,
    ("PATCH", "/v1/topics/{topic_id}"): ADMIN,
    ("GET", "/v1/topics/{topic_id}/locations"): READ,
    ("GET", "/v1/topic-models"): READ,
    ("GET", "/v1/pain-points/{topic_id}/{touchpoint}/triage"): READ,
    ("POST", "/v1/pain-points/{topic_id}/{touchpoint}/actions"): READ,
    ("POST", "/v1/alert-rules"): ADMIN,
    ("GET", "/v1/alert-rules"): ADMIN,
    ("GET", "/v1/alert-rules/{rule_id}"): ADMIN,
    ("PATCH", "/v1/alert-rules/{rule_id}"): ADMIN,
    ("DELETE", "/v1/alert-rules/{rule_id}"): ADMIN,
    ("POST", "/v1/alert-rules/{rule_id}/evaluate"): ADMIN,
    ("GET", "/v1/alerts"): READ,
    ("POST", "/v1/sources"): ADMIN,
    ("GET", "/v1/sources/{name}"): READ,
    ("PATCH", "/v1/sources/{name}"): ADMIN,
    ("POST", "/v1/sources/{name}/pause"): ADMIN,
    ("POST", "/v1/sources/{name}/resume"): ADMIN,
    ("POST", "/v1/sources/{name}/run"): ADMIN,
    ("GET", "/v1/sources/{name}/runs"): READ,
    ("GET", "/v1/source-kinds"): READ,
    ("GET", "/v1/scheduler/runs"): READ,
}
# A location-scoped analyst key (a store manager's) may do what an analyst may, except read alerts, imports and
# collector runs (their error samples may quote any store): they
# span every location (tests/test_location_scope.py checks what it sees).
SCOPED_REFUSED = {
    ("GET", "/v1/alerts"),
    ("GET", "/v1/imports"),
    ("GET", "/v1/imports/{import_id}"),
    ("GET", "/v1/sources/{name}/runs"),
}
# Survey tools push here without an API key; the signature is their credential (tests/test_webhooks_api.py).
SIGNED_ROUTES = {("POST", "/v1/webhooks/{name}")}


def _v1_routes() -> list[tuple[str, str]]:
    paths = create_app(Settings()).openapi()["paths"]
    return sorted(
        (method.upper(), path) for path, ops in paths.items() if path.startswith("/v1") for method in ops
    )


def test_every_v1_route_is_in_the_matrix() -> None:
    assert set(_v1_routes()) == set(EXPECTED_ROLES) | SIGNED_ROUTES


def _concrete(path: str) -> str:
    return (
        path.replace("{item_id}", "1")
        .replace("{import_id}", "1")
        .replace("{key_id}", "999999")
        .replace("{touchpoint}", "delivery_shipping")
        .replace("{topic_id}", "1")
        .replace("{rule_id}", "999999")
        .replace("{name}", "no-such-source")
    )


@pytest.mark.parametrize(("method", "path"), sorted(EXPECTED_ROLES))
def test_role_matrix(
    method: str,
    path: str,
    client: TestClient,
    auth: Callable[[Role], dict[str, str]],
    session: Session,
) -> None:
    url = _concrete(path)
    no_key = client.request(method, url)
    assert no_key.status_code == 401, no_key.text
    assert no_key.headers["www-authenticate"] == "Bearer"
    assert no_key.headers["content-type"] == "application/problem+json"
    wrong_key = client.request(method, url, headers={"Authorization": "Bearer cxm_not-a-real-key"})
    assert wrong_key.status_code == 401
    for role in Role:
        response = client.request(method, url, headers=auth(role))
        if role in EXPECTED_ROLES[(method, path)]:
            assert response.status_code not in (401, 403), (
                f"{role} refused on {method} {path}: {response.text}"
            )
        else:
            assert response.status_code == 403, f"{role} admitted on {method} {path}"
            assert role.value in response.json()["detail"]
    _, scoped_key = create_api_key(
        session, name="store manager", role=Role.ANALYST, locations=["Riyadh Olaya"]
    )
    session.commit()
    scoped = client.request(method, url, headers={"Authorization": f"Bearer {scoped_key}"})
    if Role.ANALYST in EXPECTED_ROLES[(method, path)] and (method, path) not in SCOPED_REFUSED:
        assert scoped.status_code not in (401, 403), (
            f"scoped analyst refused on {method} {path}: {scoped.text}"
        )
    else:
        assert scoped.status_code == 403, f"scoped analyst admitted on {method} {path}"
        detail = scoped.json()["detail"]
        assert ("analyst" in detail) if (method, path) not in SCOPED_REFUSED else ("Riyadh Olaya" in detail)


def test_x_api_key_header_works_too(client: TestClient, api_keys: dict[Role, str]) -> None:
    assert client.get("/v1/sources", headers={"X-API-Key": api_keys[Role.ANALYST]}).status_code == 200


def test_revoked_key_is_refused(client: TestClient, session: Session) -> None:
    key, plaintext = create_api_key(session, name="temp", role=Role.ANALYST)
    session.commit()
    headers = {"Authorization": f"Bearer {plaintext}"}
    assert client.get("/v1/sources", headers=headers).status_code == 200
    revoke_api_key(session, key_id=key.id)
    session.commit()
    assert client.get("/v1/sources", headers=headers).status_code == 401


def test_keys_api_creates_shows_once_and_revokes(
    client: TestClient, auth: Callable[[Role], dict[str, str]], session: Session
) -> None:
    created = client.post("/v1/keys", json={"name": "CRM", "role": "scorer"}, headers=auth(Role.ADMIN))
    assert created.status_code == 201
    body = created.json()
    assert body["key"].startswith("cxm_") and body["role"] == "scorer"
    listed = client.get("/v1/keys", headers=auth(Role.ADMIN)).json()
    assert all("key" not in entry for entry in listed)
    assert any(entry["id"] == body["id"] and body["key"].startswith(entry["prefix"]) for entry in listed)
    bad_role = client.post("/v1/keys", json={"name": "x", "role": "superuser"}, headers=auth(Role.ADMIN))
    assert bad_role.status_code == 422
    revoked = client.delete(f"/v1/keys/{body['id']}", headers=auth(Role.ADMIN))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    stored = " ".join(f"{k.key_hash} {k.prefix}" for k in session.scalars(select(ApiKey)))
    assert body["key"] not in stored
