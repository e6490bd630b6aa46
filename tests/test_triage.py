"""Triage of pain points: the lifecycle with its history, invalid transitions, unknown pain points."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import PainPointEvent, Role, Topic, TopicModelRun
from service.triage import InvalidTransitionError, apply_action, triage_states

Auth = Callable[[Role], dict[str, str]]


def make_topic(session: Session, label: str = "late delivery", keywords: tuple[str, ...] = ("late",)) -> int:
    """A topic (with the model run it needs), committed; its id."""
    run = TopicModelRun(status="done", config={}, figures={})
    session.add(run)
    session.flush()
    topic = Topic(
        label=label,
        keywords=list(keywords),
        keyword_weights={},
        languages={},
        centroid=b"\x00\x00",
        born_model_id=run.id,
        last_model_id=run.id,
    )
    session.add(topic)
    session.commit()
    return topic.id


def _act(client: TestClient, headers: dict[str, str], url: str, **body: str) -> dict[str, object]:
    response = client.post(f"{url}/actions", json=body, headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


def test_full_lifecycle_keeps_the_history(client: TestClient, session: Session, auth: Auth) -> None:
    topic_id = make_topic(session)
    url = f"/v1/pain-points/{topic_id}/delivery_shipping"
    fresh = client.get(f"{url}/triage", headers=auth(Role.ANALYST))
    assert fresh.status_code == 200, fresh.text
    assert fresh.json() == {
        "topic_id": topic_id,
        "touchpoint": "delivery_shipping",
        "status": "open",
        "owner": None,
        "updated_at": None,
        "history": [],
    }
    analyst, admin = auth(Role.ANALYST), auth(Role.ADMIN)
    assert _act(client, analyst, url, action="acknowledge")["status"] == "acknowledged"
    assigned = _act(client, admin, url, action="assign", owner="  logistics@example.com ")
    assert assigned["status"] == "acknowledged" and assigned["owner"] == "logistics@example.com"
    _act(client, analyst, url, action="comment", comment="Courier changed in October.")
    resolved = _act(client, analyst, url, action="resolve", comment="New courier since Nov 3.")
    assert resolved["status"] == "resolved"
    reopened = _act(client, admin, url, action="reopen", comment="Late again in Riyadh.")
    assert reopened["status"] == "open" and reopened["owner"] == "logistics@example.com"

    body = client.get(f"{url}/triage", headers=analyst).json()
    assert body["status"] == "open" and body["updated_at"]
    history = [
        (e["action"], e["actor"], e["from_status"], e["to_status"], e["owner"], e["comment"])
        for e in body["history"]
    ]
    assert history == [
        ("acknowledged", "key:test analyst", "open", "acknowledged", None, None),
        ("assigned", "key:test admin", "acknowledged", "acknowledged", "logistics@example.com", None),
        (
            "commented",
            "key:test analyst",
            "acknowledged",
            "acknowledged",
            None,
            "Courier changed in October.",
        ),
        ("resolved", "key:test analyst", "acknowledged", "resolved", None, "New courier since Nov 3."),
        ("reopened", "key:test admin", "resolved", "open", None, "Late again in Riyadh."),
    ]
    other = client.get(f"/v1/pain-points/{topic_id}/mobile_app/triage", headers=analyst).json()
    assert other["status"] == "open" and other["history"] == []


def test_assigning_an_open_pain_point_acknowledges_it(
    client: TestClient, session: Session, auth: Auth
) -> None:
    url = f"/v1/pain-points/{make_topic(session)}/staff"
    body = _act(client, auth(Role.ANALYST), url, action="assign", owner="Store ops")
    assert (body["status"], body["owner"]) == ("acknowledged", "Store ops")
    resolved = _act(client, auth(Role.ANALYST), url, action="resolve")
    assert resolved["status"] == "resolved"
    assert resolved["history"][-1]["comment"] is None  # type: ignore[index]


@pytest.mark.parametrize(
    ("steps", "refused", "reason"),
    [
        (["acknowledge"], {"action": "acknowledge"}, "already acknowledged"),
        (["resolve"], {"action": "resolve"}, "reopen it"),
        (["resolve"], {"action": "acknowledge"}, "reopen it"),
        (["resolve"], {"action": "assign", "owner": "x"}, "reopen it"),
        ([], {"action": "reopen"}, "Only a resolved pain point"),
        (["acknowledge"], {"action": "reopen"}, "this one is acknowledged"),
    ],
)
def test_invalid_transitions_are_409_saying_why(
    client: TestClient,
    session: Session,
    auth: Auth,
    steps: list[str],
    refused: dict[str, str],
    reason: str,
) -> None:
    url = f"/v1/pain-points/{make_topic(session)}/delivery_shipping"
    for step in steps:
        _act(client, auth(Role.ANALYST), url, action=step)
    response = client.post(f"{url}/actions", json=refused, headers=auth(Role.ANALYST))
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:cxmine:problem:invalid-transition"
    assert reason in problem["detail"]
    history = client.get(f"{url}/triage", headers=auth(Role.ANALYST)).json()["history"]
    assert len(history) == len(steps)


def test_reassigning_to_the_same_owner_is_409(client: TestClient, session: Session, auth: Auth) -> None:
    url = f"/v1/pain-points/{make_topic(session)}/delivery_shipping"
    _act(client, auth(Role.ANALYST), url, action="assign", owner="ops")
    again = client.post(
        f"{url}/actions", json={"action": "assign", "owner": "ops"}, headers=auth(Role.ANALYST)
    )
    assert again.status_code == 409 and "already assigned" in again.json()["detail"]
    assert _act(client, auth(Role.ANALYST), url, action="assign", owner="cx")["owner"] == "cx"


def test_unknown_topic_or_touchpoint_is_404(client: TestClient, session: Session, auth: Auth) -> None:
    topic_id = make_topic(session)
    for url in ("/v1/pain-points/999999/delivery_shipping", f"/v1/pain-points/{topic_id}/teleportation"):
        for response in (
            client.get(f"{url}/triage", headers=auth(Role.ANALYST)),
            client.post(f"{url}/actions", json={"action": "acknowledge"}, headers=auth(Role.ANALYST)),
        ):
            assert response.status_code == 404, response.text
            assert response.headers["content-type"] == "application/problem+json"
    problem = client.get(
        f"/v1/pain-points/{topic_id}/teleportation/triage", headers=auth(Role.ANALYST)
    ).json()
    assert "GET /v1/taxonomy" in problem["detail"]
    assert session.scalars(select(PainPointEvent)).all() == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"action": "assign"}, "assign needs an owner"),
        ({"action": "assign", "owner": "   "}, "assign needs an owner"),
        ({"action": "comment"}, "comment needs a comment"),
        ({"action": "acknowledge", "owner": "ops"}, "owner is only for assign"),
        ({"action": "escalate"}, "Input should be"),
    ],
)
def test_bad_action_bodies_are_422(
    client: TestClient, session: Session, auth: Auth, body: dict[str, str], message: str
) -> None:
    url = f"/v1/pain-points/{make_topic(session)}/delivery_shipping/actions"
    response = client.post(url, json=body, headers=auth(Role.ANALYST))
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"] == "urn:cxmine:problem:validation-error"
    assert any(message in error["message"] for error in problem["errors"]), problem


def test_triage_states_for_the_pain_point_list(session: Session) -> None:
    first, second = make_topic(session), make_topic(session, "rude staff")
    apply_action(session, topic_id=first, touchpoint="delivery_shipping", action="acknowledge", actor="t")
    apply_action(session, topic_id=second, touchpoint="staff", action="assign", actor="t", owner="hr")
    session.commit()
    states = triage_states(session)
    assert {key: (s.status, s.owner) for key, s in states.items()} == {
        (first, "delivery_shipping"): ("acknowledged", None),
        (second, "staff"): ("acknowledged", "hr"),
    }
    subset = triage_states(session, keys=[(second, "staff"), (first, "mobile_app")])
    assert list(subset) == [(second, "staff")]
    assert triage_states(session, keys=[]) == {}
    with pytest.raises(InvalidTransitionError):
        apply_action(session, topic_id=first, touchpoint="delivery_shipping", action="acknowledge", actor="t")
