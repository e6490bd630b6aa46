"""Dashboard sign-in: API key for a signed session cookie, CSRF on every POST, roles, expiry and sign-out."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from service.web.auth import SESSION_COOKIE
from tests.web.conftest import CSRF_INPUT, DemoKeys, sign_in


def _signin_token(client: TestClient) -> str:
    match = CSRF_INPUT.search(client.get("/signin").text)
    assert match
    return match.group(1)


def test_pages_redirect_to_signin_and_back(web: TestClient, demo_keys: DemoKeys) -> None:
    answer = web.get("/pain-points?range=4w")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/signin?next=%2Fpain-points%3Frange%3D4w"
    token = _signin_token(web)
    signed = web.post(
        "/signin", data={"api_key": demo_keys.analyst, "csrf_token": token, "next": "/pain-points?range=4w"}
    )
    assert signed.status_code == 303 and signed.headers["location"] == "/pain-points?range=4w"
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert demo_keys.analyst not in cookie  # the key itself never travels in the cookie
    assert web.get("/").status_code == 200


def test_htmx_requests_without_session_get_a_redirect_header(web: TestClient) -> None:
    answer = web.get("/", headers={"HX-Request": "true"})
    assert answer.status_code == 401 and answer.headers["HX-Redirect"].startswith("/signin")


@pytest.mark.parametrize(
    ("key_name", "status", "message"),
    [("unknown", 401, "unknown or revoked"), ("ingest", 403, "cannot use the dashboard")],
)
def test_bad_keys_are_refused_with_a_reason(
    web: TestClient, demo_keys: DemoKeys, key_name: str, status: int, message: str
) -> None:
    key = "cxm_not_a_real_key" if key_name == "unknown" else demo_keys.ingest
    answer = web.post("/signin", data={"api_key": key, "csrf_token": _signin_token(web)})
    assert answer.status_code == status and message in answer.text
    assert SESSION_COOKIE not in answer.cookies
    assert web.get("/").status_code == 303


def test_signin_without_its_csrf_token_is_refused(web: TestClient, demo_keys: DemoKeys) -> None:
    _signin_token(web)
    answer = web.post("/signin", data={"api_key": demo_keys.admin, "csrf_token": "forged"})
    assert answer.status_code == 403 and "security token" in answer.text


def test_next_never_leaves_the_site(web: TestClient, demo_keys: DemoKeys) -> None:
    token = _signin_token(web)
    answer = web.post(
        "/signin", data={"api_key": demo_keys.admin, "csrf_token": token, "next": "//evil.example/x"}
    )
    assert answer.headers["location"] == "/"


def test_signout_needs_the_csrf_token_then_ends_the_session(web: TestClient, demo_keys: DemoKeys) -> None:
    csrf = sign_in(web, demo_keys.analyst)
    assert web.post("/signout").status_code == 403
    assert web.get("/").status_code == 200
    answer = web.post("/signout", headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 303
    web.cookies.clear()
    assert web.get("/").status_code == 303


def test_a_tampered_or_expired_cookie_is_no_session(
    web: TestClient, demo_keys: DemoKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    sign_in(web, demo_keys.analyst)
    cookie = web.cookies[SESSION_COOKIE]
    web.cookies.clear()
    web.cookies.set(SESSION_COOKIE, cookie[:-3] + ("AAA" if not cookie.endswith("AAA") else "BBB"))
    assert web.get("/").status_code == 303
    web.cookies.clear()
    web.cookies.set(SESSION_COOKIE, cookie)
    assert web.get("/").status_code == 200
    later = time.time() + 9 * 3600  # past the default 8-hour sign-in
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: later)
    assert web.get("/").status_code == 303


def test_revoking_the_key_ends_its_sessions(web: TestClient, demo_keys: DemoKeys) -> None:
    sign_in(web, demo_keys.analyst)
    assert web.get("/").status_code == 200
    admin = {"Authorization": f"Bearer {demo_keys.admin}"}
    keys = web.get("/v1/keys", headers=admin).json()
    key_id = next(
        k["id"] for k in (keys["keys"] if isinstance(keys, dict) else keys) if k["name"] == "Marketing"
    )
    assert web.delete(f"/v1/keys/{key_id}", headers=admin).status_code in (200, 204)
    assert web.get("/").status_code == 303


def test_analysts_do_not_see_admin_pages(web: TestClient, demo_keys: DemoKeys) -> None:
    sign_in(web, demo_keys.analyst)
    page = web.get("/")
    assert 'href="/alerts' not in page.text and 'href="/sources"' not in page.text
    assert web.get("/alerts").status_code == 403
    assert web.get("/sources").status_code == 403


def test_bad_filters_get_an_error_page(web: TestClient, demo_keys: DemoKeys) -> None:
    sign_in(web, demo_keys.analyst)
    assert web.get("/?range=forever").status_code == 422
    assert web.get("/?since=yesterday").status_code == 422
    assert web.get("/?stage=nirvana").status_code == 422
    assert web.get("/?touchpoint=teleport").status_code == 422
