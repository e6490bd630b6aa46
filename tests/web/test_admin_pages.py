"""The admin pages: alerts (rules, evaluate now, enable/disable, new rule, recent alerts) and sources
(health, run now, pause/resume, last runs), admins only, every POST behind the CSRF token."""

from __future__ import annotations

import re
import socket
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.db.models import Source
from service.web.pages.sources import STATES
from tests.web.conftest import CSRF_HEADER_JSON, DemoKeys, sign_in

COLLECTOR = "survey-inbox"
SECRET = "s3cr3t-token"


def api(demo_keys: DemoKeys) -> dict[str, str]:
    return {"Authorization": f"Bearer {demo_keys.admin}"}


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def make_rule(web: TestClient, demo_keys: DemoKeys, **overrides: Any) -> dict[str, Any]:
    """A negative-share rule on the demo's delivery touchpoint that holds now, posting to a closed port."""
    body: dict[str, Any] = {
        "name": "Delivery negatives",
        "kind": "negative_share",
        "webhook_url": f"http://127.0.0.1:{closed_port()}/hooks/{SECRET}",
        "params": {
            "touchpoint": "delivery_shipping",
            "threshold": 0.05,
            "min_sentences": 1,
            "window_days": 60,
        },
        **overrides,
    }
    created = web.post("/v1/alert-rules", json=body, headers=api(demo_keys))
    assert created.status_code == 201, created.text
    rule: dict[str, Any] = created.json()
    return rule


def source_api(web: TestClient, demo_keys: DemoKeys, name: str = COLLECTOR) -> dict[str, Any]:
    answer = web.get(f"/v1/sources/{name}", headers=api(demo_keys))
    assert answer.status_code == 200, answer.text
    source: dict[str, Any] = answer.json()
    return source


def csrf(token: str) -> dict[str, str]:
    return {"X-CSRF-Token": token, "HX-Request": "true"}


def test_admin_sees_both_pages_with_the_apis_figures(web: TestClient, demo_keys: DemoKeys) -> None:
    rule = make_rule(web, demo_keys)
    sign_in(web, demo_keys.admin)

    alerts = web.get("/alerts")
    assert alerts.status_code == 200
    assert f'id="rule-{rule["id"]}"' in alerts.text
    assert "Negative share of sentences about Delivery and shipping reaches 5%" in alerts.text
    assert SECRET not in alerts.text, "the webhook's path (its secret) is masked"
    assert 'aria-current="page"' in alerts.text and 'sse-connect="/events"' in alerts.text
    assert 'hx-trigger="sse:alert, alerts-changed from:body"' in alerts.text

    page = web.get("/sources")
    assert page.status_code == 200
    listed = web.get("/v1/sources", headers=api(demo_keys)).json()
    for source in listed:
        row = re.search(rf'id="source-{re.escape(source["name"])}"(.*?)(</article>|</tr>)', page.text, re.S)
        assert row, f"no row for {source['name']}"
        items = re.search(r"data-items>([\d,]+)<", row.group(1))
        assert items and int(items.group(1).replace(",", "")) == source["item_count"]
    collector = re.search(rf'id="source-{COLLECTOR}".*?</article>', page.text, re.S)
    state = source_api(web, demo_keys)["health"]["state"]
    assert collector and f'data-state="{state}"' in collector.group(0)
    marker, word = STATES[state]
    assert f"{marker}</span> {word}" in collector.group(0), (
        "the health has a marker and a word, not only a colour"
    )
    assert (
        "Run now" in collector.group(0) and "Pause" in collector.group(0) and "<details" in collector.group(0)
    )


@pytest.mark.parametrize("who", ["analyst", "scoped"])
def test_analysts_get_403_on_the_pages_and_every_post(web: TestClient, demo_keys: DemoKeys, who: str) -> None:
    rule = make_rule(web, demo_keys)
    token = sign_in(web, getattr(demo_keys, who))
    for path in ("/alerts", "/sources"):
        answer = web.get(path)
        assert answer.status_code == 403, path
        assert "administrators" in answer.text
    posts = [
        (f"/alerts/rules/{rule['id']}/evaluate", {}),
        (f"/alerts/rules/{rule['id']}/toggle", {"enabled": "false"}),
        ("/alerts/rules", {"name": "x", "kind": "angry_item", "webhook_url": "http://127.0.0.1:9/x"}),
        (f"/sources/{COLLECTOR}/run", {}),
        (f"/sources/{COLLECTOR}/pause", {}),
        (f"/sources/{COLLECTOR}/resume", {}),
    ]
    for path, form in posts:
        assert web.post(path, data=form, headers=csrf(token)).status_code == 403, path
    assert web.get(f"/v1/alert-rules/{rule['id']}", headers=api(demo_keys)).json()["enabled"] is True
    assert len(web.get("/v1/alert-rules", headers=api(demo_keys)).json()) == 1
    assert web.get(f"/v1/alerts?rule_id={rule['id']}", headers=api(demo_keys)).json() == []
    assert source_api(web, demo_keys)["enabled"] is True


def test_posts_without_the_csrf_token_are_refused_and_change_nothing(
    web: TestClient, demo_keys: DemoKeys
) -> None:
    rule = make_rule(web, demo_keys)
    sign_in(web, demo_keys.admin)
    for headers in ({}, {"X-CSRF-Token": "forged"}):
        for path in (f"/sources/{COLLECTOR}/pause", f"/sources/{COLLECTOR}/run"):
            assert web.post(path, headers=headers).status_code == 403
        assert (
            web.post(
                f"/alerts/rules/{rule['id']}/toggle", data={"enabled": "false"}, headers=headers
            ).status_code
            == 403
        )
        assert web.post(f"/alerts/rules/{rule['id']}/evaluate", headers=headers).status_code == 403
    assert source_api(web, demo_keys)["enabled"] is True
    with web.app.state.session_factory() as session:  # type: ignore[attr-defined]
        assert session.scalar(select(Source.run_requested_at).where(Source.name == COLLECTOR)) is None
    assert web.get(f"/v1/alert-rules/{rule['id']}", headers=api(demo_keys)).json()["enabled"] is True
    assert web.get(f"/v1/alerts?rule_id={rule['id']}", headers=api(demo_keys)).json() == []


def test_pause_resume_and_run_now(web: TestClient, demo_keys: DemoKeys) -> None:
    token = sign_in(web, demo_keys.admin)

    paused = web.post(f"/sources/{COLLECTOR}/pause", headers=csrf(token))
    assert paused.status_code == 200
    assert f'id="source-{COLLECTOR}"' in paused.text and 'data-state="paused"' in paused.text
    assert ">Resume<" in paused.text and "Paused" in paused.text
    source = source_api(web, demo_keys)
    assert source["enabled"] is False and source["health"]["state"] == "paused"

    refused = web.post(f"/sources/{COLLECTOR}/run", headers=csrf(token))
    assert refused.status_code == 200 and "resume it before running it" in refused.text

    resumed = web.post(f"/sources/{COLLECTOR}/resume", headers=csrf(token))
    assert resumed.status_code == 200 and ">Pause<" in resumed.text
    assert source_api(web, demo_keys)["enabled"] is True

    queued = web.post(f"/sources/{COLLECTOR}/run", headers=csrf(token))
    assert queued.status_code == 200 and "Run queued" in queued.text
    with web.app.state.session_factory() as session:  # type: ignore[attr-defined]
        assert session.scalar(select(Source.run_requested_at).where(Source.name == COLLECTOR)) is not None
    assert "Run queued since" in web.get("/sources").text

    assert web.post("/sources/nope/pause", headers=csrf(token)).status_code == 404
    assert web.post("/sources/app-store/run", headers=csrf(token)).status_code == 409, (
        "an API source has no collector"
    )


def test_last_runs_are_the_apis(web: TestClient, demo_keys: DemoKeys) -> None:
    sign_in(web, demo_keys.admin)
    runs = web.get(f"/v1/sources/{COLLECTOR}/runs?limit=5", headers=api(demo_keys)).json()
    page = web.get("/sources").text
    assert re.findall(r'data-run="(\d+)"', page) == [str(run["id"]) for run in runs]


def test_evaluate_now_fires_delivers_and_shows_the_alert(web: TestClient, demo_keys: DemoKeys) -> None:
    rule = make_rule(web, demo_keys)
    token = sign_in(web, demo_keys.admin)

    evaluated = web.post(f"/alerts/rules/{rule['id']}/evaluate", headers=csrf(token))
    assert evaluated.status_code == 200, evaluated.text
    assert evaluated.headers.get("HX-Trigger") == "alerts-changed"
    assert f'id="rule-{rule["id"]}"' in evaluated.text and "1 fired" in evaluated.text
    alerts = web.get(f"/v1/alerts?rule_id={rule['id']}", headers=api(demo_keys)).json()
    assert len(alerts) == 1
    alert = alerts[0]
    assert f'data-fired="{alert["id"]}"' in evaluated.text
    attempt = alert["deliveries"][0]
    assert attempt["status_code"] is None and attempt["error"], "the closed port's refusal is recorded"

    page = web.get("/alerts").text
    item = re.search(rf'id="alert-{alert["id"]}".*?</li>', page, re.S)
    assert item, "the fired alert is listed"
    shown = item.group(0)
    assert 'data-status="firing"' in shown and "Delivery and shipping" in shown
    assert "/feedback?touchpoint=delivery_shipping" in shown and "sentiment=negative" in shown
    assert alert["last_error"][:30] in shown and "<details" in shown

    again = web.post(f"/alerts/rules/{rule['id']}/evaluate", headers=csrf(token))
    assert "0 fired" in again.text and "1 still firing" in again.text
    assert "HX-Trigger" not in again.headers

    assert f'data-alert="{alert["id"]}"' in web.get(f"/alerts?rule={rule['id']}&status=firing").text
    assert 'data-alert="' not in web.get("/alerts?status=resolved").text
    assert web.get("/alerts?status=open").status_code == 422
    assert web.get("/alerts?rule=999").status_code == 404


def test_disable_and_enable_a_rule(web: TestClient, demo_keys: DemoKeys) -> None:
    rule = make_rule(web, demo_keys)
    token = sign_in(web, demo_keys.admin)
    off = web.post(f"/alerts/rules/{rule['id']}/toggle", data={"enabled": "false"}, headers=csrf(token))
    assert off.status_code == 200 and "Disabled" in off.text and ">Enable<" in off.text
    assert web.get(f"/v1/alert-rules/{rule['id']}", headers=api(demo_keys)).json()["enabled"] is False

    blocked = web.post(f"/alerts/rules/{rule['id']}/evaluate", headers=csrf(token))
    assert blocked.status_code == 200 and "disabled" in blocked.text
    assert web.get(f"/v1/alerts?rule_id={rule['id']}", headers=api(demo_keys)).json() == []

    on = web.post(f"/alerts/rules/{rule['id']}/toggle", data={"enabled": "true"}, headers=csrf(token))
    assert on.status_code == 200 and ">Disable<" in on.text
    assert web.get(f"/v1/alert-rules/{rule['id']}", headers=api(demo_keys)).json()["enabled"] is True
    assert (
        web.post("/alerts/rules/999/toggle", data={"enabled": "true"}, headers=csrf(token)).status_code == 404
    )


def test_the_new_rule_form_creates_rules_like_the_api(web: TestClient, demo_keys: DemoKeys) -> None:
    sign_in(web, demo_keys.admin)
    token = CSRF_HEADER_JSON.search(web.get("/alerts").text)
    assert token
    form = {
        "csrf_token": token.group(1),
        "name": "Riyadh delivery",
        "kind": "negative_share",
        "webhook_url": "https://hooks.example.com/cx",
        "touchpoint": "delivery_shipping",
        "threshold": "35",
        "window_days": "14",
        "min_sentences": "10",
        "location": "Riyadh Olaya",
        "emotion": "anger",  # another kind's field: ignored
    }
    created = web.post("/alerts/rules", data=form)
    assert created.status_code == 303 and created.headers["location"].startswith("/alerts?created=")
    assert "Rule created" in web.get(created.headers["location"]).text
    rules = web.get("/v1/alert-rules", headers=api(demo_keys)).json()
    assert [r["name"] for r in rules] == ["Riyadh delivery"]
    assert rules[0]["params"] == {
        "touchpoint": "delivery_shipping", "threshold": 0.35, "window_days": 14, "min_sentences": 10,
        "location": "Riyadh Olaya",
    }  # fmt: skip

    invalid = web.post("/alerts/rules", data={**form, "touchpoint": "", "webhook_url": "ftp://x"})
    assert invalid.status_code == 422
    assert "The rule was not created" in invalid.text and "touchpoint" in invalid.text
    assert 'value="Riyadh delivery"' in invalid.text, "the form keeps what was typed"
    partial = web.post("/alerts/rules", data={**form, "threshold": "lots"}, headers={"HX-Request": "true"})
    assert partial.status_code == 200 and 'id="rule-form"' in partial.text and "<html" not in partial.text
    assert len(web.get("/v1/alert-rules", headers=api(demo_keys)).json()) == 1

    angry = web.post(
        "/alerts/rules", data={**form, "kind": "angry_item", "name": "Angry"}, headers={"HX-Request": "true"}
    )
    assert angry.status_code == 204 and angry.headers["HX-Redirect"].startswith("/alerts?created=")
    made = web.get("/v1/alert-rules", headers=api(demo_keys)).json()[-1]
    assert made["kind"] == "angry_item" and made["params"]["emotion"] == "anger"
    assert made["params"]["location"] == "Riyadh Olaya"


def test_signed_out_visitors_are_sent_to_sign_in(web: TestClient) -> None:
    for path in ("/alerts", "/sources"):
        answer = web.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/signin")
