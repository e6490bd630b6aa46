"""Per-touchpoint metrics and trends: figures computed by hand from the rows behind them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.orm import Session

from service.db.engine import make_session_factory
from service.db.models import FeedbackItem, FeedbackSentence, ItemTouchpoint, Role, SentenceTouchpoint
from service.ingest.service import ingest_batch

Auth = Callable[[Role], dict[str, str]]


def _seed(session: Session, rows: list[tuple[str, str, str, dict[str, Any], str | None, str]]) -> None:
    """rows: (external id, created_at, touchpoint, rating, location, sentence sentiment)."""
    items = [
        {
            "text": f"text {ext}",
            "source": "s",
            "external_id": ext,
            "created_at": created,
            "location": location,
            **({"rating": rating} if rating else {}),
        }
        for ext, created, _, rating, location, _ in rows
    ]
    ingest_batch(session, raw_items=items, author_salt=b"s", max_text_chars=10_000, actor="test")
    ids = dict(session.execute(select(FeedbackItem.external_id, FeedbackItem.id)).all())
    for ext, _, touchpoint, _, _, sentiment in rows:
        item_id = ids[ext]
        score = {"negative": -0.8, "positive": 0.8, "neutral": 0.0}[sentiment]
        label = sentiment
        session.execute(
            update(FeedbackItem)
            .where(FeedbackItem.id == item_id)
            .values(sentiment_label=label, sentiment_score=score)
        )
        sentence_id = session.execute(
            insert(FeedbackSentence).returning(FeedbackSentence.id),
            [
                {
                    "item_id": item_id,
                    "position": 0,
                    "start": 0,
                    "end": 4,
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
            [{"item_id": item_id, "touchpoint": touchpoint, "score": 0.9, "origin": "text"}],
        )
        session.execute(
            insert(SentenceTouchpoint),
            [{"sentence_id": sentence_id, "item_id": item_id, "touchpoint": touchpoint, "score": 0.9}],
        )
    session.commit()


ROWS: list[tuple[str, str, str, dict[str, Any], str | None, str]] = [
    (
        "d1",
        "2026-10-05T10:00:00+03:00",
        "delivery_shipping",
        {"value": 10, "scale": "nps"},
        "Riyadh Olaya",
        "negative",
    ),
    (
        "d2",
        "2026-10-06T10:00:00+03:00",
        "delivery_shipping",
        {"value": 9, "scale": "nps"},
        "Riyadh Olaya",
        "negative",
    ),
    (
        "d3",
        "2026-10-13T10:00:00+03:00",
        "delivery_shipping",
        {"value": 3, "scale": "nps"},
        "Riyadh Olaya",
        "negative",
    ),
    (
        "d4",
        "2026-10-14T10:00:00+03:00",
        "delivery_shipping",
        {"value": 7, "scale": "nps"},
        "Dubai Mall",
        "positive",
    ),
    ("c1", "2026-10-07T10:00:00Z", "customer_support", {"value": 5, "scale": "csat"}, None, "positive"),
    ("c2", "2026-10-08T10:00:00Z", "customer_support", {"value": 2, "scale": "csat"}, None, "negative"),
    ("p1", "2026-10-09T10:00:00Z", "checkout_payment", {"value": 6, "scale": "ces"}, None, "neutral"),
    ("p2", "2026-10-10T10:00:00Z", "checkout_payment", {"value": 2, "scale": "ces"}, None, "negative"),
    ("s1", "2026-10-11T23:30:00Z", "staff", {"value": 5, "scale": "stars"}, "Dubai Mall", "positive"),
    ("s2", "2026-10-12T00:30:00Z", "staff", {"value": 1, "scale": "stars"}, "Dubai Mall", "negative"),
]


def test_touchpoint_metrics_follow_the_field_definitions(
    session: Session, client: TestClient, auth: Auth
) -> None:
    _seed(session, ROWS)
    body = client.get("/v1/touchpoints", headers=auth(Role.ANALYST)).json()
    assert body["taxonomy"].startswith("retail@")
    by_id = {t["touchpoint"]: t for t in body["touchpoints"]}
    delivery = by_id["delivery_shipping"]
    assert (delivery["items"], delivery["sentences"], delivery["negative_sentences"]) == (4, 4, 3)
    assert delivery["negative_share"] == 0.75
    assert delivery["nps"] == {"value": 25.0, "responses": 4}  # promoters 10, 9; detractor 3; passive 7
    assert by_id["customer_support"]["csat"] == {"value": 50.0, "responses": 2}
    assert by_id["checkout_payment"]["ces"] == {"value": 4.0, "responses": 2}
    assert by_id["staff"]["stars"] == {"value": 3.0, "responses": 2}
    assert by_id["website"]["items"] == 0 and by_id["website"]["nps"]["value"] is None
    assert body["touchpoints"][0]["touchpoint"] == "delivery_shipping"  # the most negative first
    listed = client.get(delivery["feedback_query"], headers=auth(Role.ANALYST)).json()["items"]
    assert len(listed) == delivery["items"]


def test_touchpoint_metrics_respect_the_scope(session: Session, client: TestClient, auth: Auth) -> None:
    _seed(session, ROWS)
    params: dict[str, Any] = {"location": "Riyadh Olaya", "until": "2026-10-13T00:00:00+03:00"}
    body = client.get("/v1/touchpoints", params=params, headers=auth(Role.ANALYST)).json()
    delivery = next(t for t in body["touchpoints"] if t["touchpoint"] == "delivery_shipping")
    assert (delivery["items"], delivery["nps"]["value"]) == (2, 100.0)
    assert "location=Riyadh+Olaya" in delivery["feedback_query"]
    listed = client.get(delivery["feedback_query"], headers=auth(Role.ANALYST)).json()["items"]
    assert {item["external_id"] for item in listed} == {"d1", "d2"}


def test_weekly_and_daily_trends(session: Session, client: TestClient, auth: Auth) -> None:
    _seed(session, ROWS)
    headers = auth(Role.ANALYST)
    weekly = client.get("/v1/trends", params={"group_by": "touchpoint"}, headers=headers).json()
    series = {s["key"]: s for s in weekly["series"]}
    delivery = series["delivery_shipping"]
    assert delivery["total"] == 4
    starts = [datetime.fromisoformat(b["start"]) for b in delivery["buckets"]]
    assert [s.date().isoformat() for s in starts] == ["2026-10-05", "2026-10-12"]
    assert all(s.weekday() == 0 and s.utcoffset() is not None for s in starts)  # Mondays, in UTC
    assert [(b["items"], b["negative"]) for b in delivery["buckets"]] == [(2, 2), (2, 1)]
    daily = client.get(
        "/v1/trends", params={"group_by": "location", "interval": "day"}, headers=headers
    ).json()
    dubai = next(s for s in daily["series"] if s["key"] == "Dubai Mall")
    assert [b["start"][:10] for b in dubai["buckets"]] == ["2026-10-11", "2026-10-12", "2026-10-14"]
    bad = client.get("/v1/trends", params={"group_by": "weather"}, headers=headers)
    assert bad.status_code == 422


def test_touchpoints_on_the_demo_through_the_real_pipeline(
    engine: Engine, session: Session, scoring_settings: Any, scoring_client: TestClient, auth: Auth
) -> None:
    from service.demo import demo_items
    from service.pipeline import load_analyzer
    from service.scoring import score_pending
    from service.touchpoints import TouchpointLabeler, active_taxonomy, label_pending

    ingest_batch(
        session, raw_items=demo_items(count=120), author_salt=b"s", max_text_chars=10_000, actor="demo"
    )
    analyzer = load_analyzer(scoring_settings)
    factory = make_session_factory(engine)
    score_pending(factory, analyzer=analyzer)
    label_pending(
        factory, labeler=TouchpointLabeler(taxonomy=active_taxonomy(session), encoder=analyzer.encoder)
    )
    body = scoring_client.get("/v1/touchpoints", headers=auth(Role.ANALYST)).json()
    with_feedback = [t for t in body["touchpoints"] if t["items"]]
    assert len(with_feedback) >= 8
    assert sum(t["items"] for t in with_feedback) >= 100
    assert any(t["nps"]["responses"] for t in with_feedback)


def test_trends_flag_the_spiking_store_only(session: Session, client: TestClient, auth: Auth) -> None:
    rows: list[tuple[str, str, str, dict[str, Any], str | None, str]] = []
    mondays = [
        f"2026-{m:02d}-{d:02d}" for m, d in ((9, 7), (9, 14), (9, 21), (9, 28), (10, 5), (10, 12), (10, 19))
    ]
    plan = {"Steady": [2, 2, 2, 2, 2, 2, 2], "Spiking": [1, 1, 1, 1, 1, 1, 9], "Tiny": [0, 0, 0, 0, 0, 0, 3]}
    for store, counts in plan.items():
        for week, count in zip(mondays, counts, strict=True):
            for n in range(count):
                rows.append(
                    (
                        f"{store}-{week}-{n}",
                        f"{week}T1{n % 10}:00:00Z",
                        "delivery_shipping",
                        {},
                        store,
                        "negative",
                    )
                )
    _seed(session, rows)
    body = client.get("/v1/trends", params={"group_by": "location"}, headers=auth(Role.ANALYST)).json()
    trend = {s["key"]: s["trend"] for s in body["series"]}
    assert trend["Spiking"]["trending"] and trend["Spiking"]["current"] == 9
    assert trend["Spiking"]["bucket"].startswith("2026-10-19")
    assert not trend["Steady"]["trending"] and not trend["Tiny"]["trending"]
    assert trend["Tiny"]["expected"] > 0  # shrunk towards the typical store, not zero
    two_weeks = client.get(
        "/v1/trends", params={"group_by": "location", "window": 2, "baseline": 5}, headers=auth(Role.ANALYST)
    ).json()
    spiking = next(s["trend"] for s in two_weeks["series"] if s["key"] == "Spiking")
    assert spiking["window"] == 2 and spiking["current"] == 10 and spiking["bucket"].startswith("2026-10-12")
    assert spiking["trending"]


def test_the_store_with_a_delivery_problem_the_others_do_not_have(
    session: Session, client: TestClient, auth: Auth
) -> None:
    rows: list[tuple[str, str, str, dict[str, Any], str | None, str]] = []
    plan = {"Outlier": (9, 1), "Calm A": (2, 8), "Calm B": (2, 8), "Calm C": (1, 9), "Tiny": (2, 0)}
    for store, (negative, positive) in plan.items():
        for n in range(negative + positive):
            sentiment = "negative" if n < negative else "positive"
            rows.append(
                (f"{store}-{n}", f"2026-10-{1 + n:02d}T10:00:00Z", "delivery_shipping", {}, store, sentiment)
            )
    _seed(session, rows)
    body = client.get("/v1/touchpoints/delivery_shipping/locations", headers=auth(Role.ANALYST)).json()
    by_store = {r["location"]: r for r in body["locations"]}
    assert body["locations"][0]["location"] == "Outlier" and by_store["Outlier"]["outlier"]
    assert (by_store["Outlier"]["negative"], by_store["Outlier"]["total"]) == (9, 10)
    assert not any(by_store[s]["outlier"] for s in ("Calm A", "Calm B", "Calm C", "Tiny"))
    assert by_store["Tiny"]["share"] == 1.0 and by_store["Tiny"]["shrunk_share"] < 0.5
    missing = client.get("/v1/touchpoints/baggage/locations", headers=auth(Role.ANALYST))
    assert missing.status_code == 404 and "baggage" in missing.json()["detail"]
