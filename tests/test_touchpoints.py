"""Touchpoints: the taxonomy, per-sentence assignment in four languages, source defaults, re-labelling."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from nlp.touchpoints import TaxonomyError, load_taxonomy, parse_taxonomy
from service.config import Settings
from service.db.engine import make_session_factory
from service.db.models import FeedbackSentence, Role, Source
from service.ingest.service import ingest_batch
from service.pipeline import load_analyzer
from service.scoring import score_pending
from service.topics import fact_rows, touchpoints_for
from service.touchpoints import TouchpointLabeler, active_taxonomy, label_pending

Auth = Callable[[Role], dict[str, str]]

AIRLINE: dict[str, Any] = {
    "name": "airline",
    "version": 1,
    "touchpoints": [
        {
            "id": "baggage",
            "name": "Baggage",
            "stages": ["experience"],
            "examples": {
                "en": [
                    "my suitcase was lost",
                    "bag arrived damaged",
                    "baggage fees are too high",
                    "waited an hour at the baggage belt",
                ]
            },
        },
        {
            "id": "crew",
            "name": "Cabin crew",
            "stages": ["experience"],
            "examples": {
                "en": [
                    "the flight attendants were rude",
                    "lovely cabin crew",
                    "crew ignored my call button",
                    "stewardess was very kind",
                ]
            },
        },
    ],
}


def test_the_shipped_taxonomy_is_valid_and_multilingual() -> None:
    taxonomy = load_taxonomy()
    ids = {t.id for t in taxonomy.touchpoints}
    assert {"delivery_shipping", "mobile_app", "checkout_payment", "staff", "returns_refunds"} <= ids
    for touchpoint in taxonomy.touchpoints:
        assert {"en", "ar", "fa", "th"} <= set(touchpoint.examples), touchpoint.id
        assert touchpoint.stages


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ({"touchpoints": []}, "non-empty list"),
        (
            {
                "touchpoints": [
                    {"id": "Bad Id", "stages": ["experience"], "examples": {"en": ["a", "b", "c"]}}
                ]
            },
            "snake_case",
        ),
        (
            {"touchpoints": [{"id": "x", "stages": ["boarding"], "examples": {"en": ["a", "b", "c"]}}]},
            "boarding",
        ),
        ({"touchpoints": [{"id": "x", "stages": ["support"], "examples": {"en": ["a"]}}]}, "at least 3"),
        ({"touchpoints": [{"id": "x", "stages": ["support"], "examples": ["a", "b", "c"]}]}, "language"),
        ({**AIRLINE, "touchpoints": [AIRLINE["touchpoints"][0]] * 2}, "used twice"),
    ],
)
def test_invalid_taxonomies_say_what_is_wrong(document: dict[str, Any], fragment: str) -> None:
    with pytest.raises(TaxonomyError, match=fragment):
        parse_taxonomy(document)


def _labelled(engine: Engine, session: Session, settings: Settings, items: list[dict[str, Any]]) -> None:
    ingest_batch(session, raw_items=items, author_salt=b"s", max_text_chars=10_000, actor="test")
    analyzer = load_analyzer(settings)
    factory = make_session_factory(engine)
    score_pending(factory, analyzer=analyzer)
    with factory() as fresh:
        labeler = TouchpointLabeler(
            taxonomy=active_taxonomy(fresh), encoder=analyzer.encoder, sentiment=analyzer.sentiment
        )
    label_pending(factory, labeler=labeler)


def test_sentences_land_on_their_touchpoints_in_four_languages(
    engine: Engine, session: Session, scoring_settings: Settings, scoring_client: TestClient, auth: Auth
) -> None:
    texts = {
        "en-delivery": "My parcel arrived five days late.",
        "ar-delivery": "الطلب وصل متأخر خمسة أيام",
        "fa-delivery": "بسته‌ام پنج روز دیر رسید",
        "th-delivery": "พัสดุมาช้าไปห้าวัน",
        "en-mixed": "The staff at the store were lovely. But the app kept crashing when I tried to pay.",
        "en-refund": "Still waiting for my refund three weeks after returning the jacket.",
    }
    items = [{"text": text, "source": "web", "external_id": key} for key, text in texts.items()]
    _labelled(engine, session, scoring_settings, items)
    headers = auth(Role.ANALYST)
    page = scoring_client.get("/v1/feedback", params={"limit": 50}, headers=headers).json()["items"]
    found = {item["external_id"]: [t["touchpoint"] for t in item["touchpoints"]] for item in page}
    for key in ("en-delivery", "ar-delivery", "fa-delivery", "th-delivery"):
        assert found[key][:1] == ["delivery_shipping"], (key, found[key])
    assert "returns_refunds" in found["en-refund"]
    assert {"staff", "mobile_app"} <= set(found["en-mixed"]) or {"staff", "checkout_payment"} <= set(
        found["en-mixed"]
    )
    delivery = scoring_client.get(
        "/v1/feedback", params={"touchpoint": "delivery_shipping"}, headers=headers
    ).json()
    assert {item["external_id"] for item in delivery["items"]} >= {
        "en-delivery",
        "ar-delivery",
        "fa-delivery",
        "th-delivery",
    }


def test_a_sentence_that_praises_the_staff_and_blames_the_app_counts_at_each_its_own_way(
    engine: Engine, session: Session, scoring_settings: Settings, scoring_client: TestClient, auth: Auth
) -> None:
    items = [
        {
            "text": "The staff at the store were lovely, but the app kept crashing when I tried to pay.",
            "source": "web",
            "external_id": "both",
        },
        {"text": "The app keeps crashing at checkout.", "source": "web", "external_id": "app-only"},
    ]
    _labelled(engine, session, scoring_settings, items)
    headers = auth(Role.ANALYST)
    page = scoring_client.get("/v1/feedback", headers=headers).json()["items"]
    both = next(item for item in page if item["external_id"] == "both")
    detail = scoring_client.get(
        f"/v1/feedback/{both['id']}", params={"sentences": True}, headers=headers
    ).json()
    [sentence] = detail["sentences"]
    sentence_id = session.scalars(
        select(FeedbackSentence.id).where(FeedbackSentence.item_id == both["id"])
    ).one()
    at = {t["touchpoint"]: t for t in sentence["touchpoints"]}
    assert at["staff"]["sentiment_label"] == "positive" and at["staff"]["from_clauses"], at
    app_touchpoint = "mobile_app" if "mobile_app" in at else "checkout_payment"
    app_side = at[app_touchpoint]
    assert app_side["sentiment_label"] == "negative" and app_side["from_clauses"], at
    assert sentence["sentiment"]["label"] != at["staff"]["sentiment_label"] or (
        sentence["sentiment"]["label"] != app_side["sentiment_label"]
    ), "one sentence label cannot be right for both touchpoints"

    touchpoints = {
        t["touchpoint"]: t
        for t in scoring_client.get("/v1/touchpoints", headers=headers).json()["touchpoints"]
    }
    assert touchpoints["staff"]["negative_sentences"] == 0 and touchpoints["staff"]["average_sentiment"] > 0
    assert touchpoints["mobile_app"]["negative_sentences"] >= 1
    refs = touchpoints_for(session, sentences=[(sentence_id, both["id"])])[sentence_id]
    facts = {
        fact["touchpoint"]: fact
        for fact in fact_rows(
            sentence_id=sentence_id,
            item_id=both["id"],
            topic_id=1,
            touchpoints=refs,
            created_at=datetime.now(UTC),
            negative=sentence["sentiment"]["label"] == "negative",
            sentiment_score=sentence["sentiment"]["score"],
            similarity=1.0,
            location=None,
            source_id=1,
            language="en",
        )
    }
    assert not facts["staff"]["negative"] and facts["staff"]["sentiment_score"] > 0, "no pain point at staff"
    assert facts[app_touchpoint]["negative"], "a pain point at the app"
    relabel = TouchpointLabeler(
        taxonomy=active_taxonomy(session), encoder=load_analyzer(scoring_settings).encoder
    )
    assert label_pending(make_session_factory(engine), labeler=relabel).labelled == 2, (
        "labels without the aspect rule are not the same labels: the key differs"
    )


def test_an_app_review_is_about_the_app_unless_it_says_otherwise(
    engine: Engine, session: Session, scoring_settings: Settings, scoring_client: TestClient, auth: Auth
) -> None:
    ingest_batch(
        session,
        raw_items=[{"text": "seed", "source": "app-store"}],
        author_salt=b"s",
        max_text_chars=10_000,
        actor="test",
    )
    source = session.scalar(select(Source).where(Source.name == "app-store"))
    assert source is not None
    source.default_touchpoint = "mobile_app"
    session.commit()
    items = [
        {"text": "Five stars!!!", "source": "app-store", "external_id": "vague"},
        {"text": "My parcel arrived five days late.", "source": "app-store", "external_id": "delivery"},
    ]
    _labelled(engine, session, scoring_settings, items)
    page = scoring_client.get(
        "/v1/feedback", params={"source": "app-store"}, headers=auth(Role.ANALYST)
    ).json()
    found = {item["external_id"]: [t["touchpoint"] for t in item["touchpoints"]] for item in page["items"]}
    assert found["vague"] == ["mobile_app"]
    assert found["delivery"][:1] == ["delivery_shipping"]


def test_a_new_taxonomy_relabels_without_re_encoding(
    engine: Engine,
    session: Session,
    scoring_settings: Settings,
    scoring_client: TestClient,
    auth: Auth,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    items = [
        {"text": "They lost my suitcase on the flight to Dubai.", "source": "web", "external_id": "bag"},
        {"text": "The cabin crew were so kind to my kids.", "source": "web", "external_id": "crew"},
    ]
    _labelled(engine, session, scoring_settings, items)
    analyzer = load_analyzer(scoring_settings)
    embedded: list[int] = []
    original = analyzer.encoder.embed_texts

    def counting(texts: Any) -> Any:
        embedded.append(len(texts))
        return original(texts)

    monkeypatch.setattr(analyzer.encoder, "embed_texts", counting)
    bad = scoring_client.put("/v1/taxonomy", json={"touchpoints": "none"}, headers=auth(Role.ADMIN))
    assert bad.status_code == 422 and bad.json()["type"] == "urn:cxmine:problem:invalid-taxonomy"
    response = scoring_client.put("/v1/taxonomy", json=AIRLINE, headers=auth(Role.ADMIN))
    assert response.status_code == 200, response.text
    assert response.json()["pending_items"] == 2
    assert embedded[:2] == [4, 4] and len(embedded) == 3  # examples and background: no sentence re-encoded
    labeler = scoring_client.app.state.labeler  # type: ignore[attr-defined]
    assert label_pending(make_session_factory(engine), labeler=labeler).labelled == 2
    assert len(embedded) == 3
    taxonomy = scoring_client.get("/v1/taxonomy", headers=auth(Role.ANALYST)).json()
    assert taxonomy["taxonomy"]["name"] == "airline" and taxonomy["pending_items"] == 0
    page = scoring_client.get("/v1/feedback", headers=auth(Role.ANALYST)).json()["items"]
    found = {item["external_id"]: [t["touchpoint"] for t in item["touchpoints"]] for item in page}
    assert found == {"bag": ["baggage"], "crew": ["crew"]}
