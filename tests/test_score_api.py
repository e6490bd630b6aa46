"""POST /v1/score with the real pipeline: the contract, per-item errors, and sane answers in four languages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from nlp.datasets import CX_EMOTION_ROLLUP, GOEMOTIONS_LABELS
from nlp.scorers import CALIBRATION_FILE, DEFAULT_SENTIMENT_HEAD, SentimentCalibration
from service.db.models import Role

Auth = Callable[[Role], dict[str, str]]


def _score(client: TestClient, auth: Auth, items: list[Any], *, sentences: bool = True) -> dict[str, Any]:
    response = client.post(
        "/v1/score", json={"items": items, "sentences": sentences}, headers=auth(Role.SCORER)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_contract_with_sentences_and_offsets(scoring_client: TestClient, auth: Auth) -> None:
    text = "Staff were lovely!  But the app crashed at payment, twice.\nNever again."
    body = _score(scoring_client, auth, [{"id": "r1", "text": text}])
    assert {m["role"] for m in body["models"]} == {"encoder", "sentiment", "emotion"}
    assert body["pipeline_version"]
    item = body["items"][0]
    assert item["id"] == "r1" and item["language"] == "en" and 0 < item["language_confidence"] <= 1
    sentiment = item["sentiment"]
    assert set(sentiment["probabilities"]) == {"negative", "neutral", "positive"}
    assert abs(sum(sentiment["probabilities"].values()) - 1) < 1e-3
    assert -1 <= sentiment["score"] <= 1
    abstain_below = SentimentCalibration.load(DEFAULT_SENTIMENT_HEAD.parent / CALIBRATION_FILE).abstain_below
    assert sentiment["abstained"] is (max(sentiment["probabilities"].values()) < abstain_below)
    assert all(
        not s["sentiment"]["abstained"] or s["sentiment"]["label"] == "neutral" for s in item["sentences"]
    )
    emotions = item["emotions"]
    probabilities = [entry["probability"] for entry in emotions["probabilities"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert {entry["label"] for entry in emotions["probabilities"]} == set(GOEMOTIONS_LABELS)
    assert set(emotions["detected"]) <= set(GOEMOTIONS_LABELS) and emotions["detected"]
    assert {entry["label"] for entry in emotions["cx"]} == set(CX_EMOTION_ROLLUP)
    assert len(item["sentences"]) == 3
    for sentence in item["sentences"]:
        assert text[sentence["start"] : sentence["end"]] == sentence["text"]
        assert sentence["sentiment"]["label"] in ("negative", "neutral", "positive")


def test_clear_cases_in_four_languages(scoring_client: TestClient, auth: Auth) -> None:
    negative = [
        "Terrible service, the order arrived broken and nobody answered my calls.",
        "خدمة سيئة جدا، الطلب وصل مكسور ولا أحد يرد على الهاتف",
        "خیلی بد بود، سفارشم خراب رسید و هیچ‌کس جواب نمی‌دهد",
        "แย่มาก ของมาพัง โทรไปก็ไม่มีใครรับสาย",
    ]
    positive = [
        "Absolutely love this shop, friendly staff and fast delivery!",
        "أحببت هذا المتجر، الموظفون لطفاء والتوصيل سريع",
        "عاشق این فروشگاه هستم، کارکنان مهربان و ارسال سریع",
        "ชอบร้านนี้มาก พนักงานน่ารัก ส่งของไวมากค่ะ",
    ]
    items = [{"id": f"n{i}", "text": t} for i, t in enumerate(negative)]
    items += [{"id": f"p{i}", "text": t} for i, t in enumerate(positive)]
    body = _score(scoring_client, auth, items, sentences=False)
    labels = {item["id"]: item["sentiment"]["label"] for item in body["items"]}
    assert [labels[f"n{i}"] for i in range(4)] == ["negative"] * 4
    assert [labels[f"p{i}"] for i in range(4)] == ["positive"] * 4
    languages = [item["language"] for item in body["items"]]
    assert languages == ["en", "ar", "fa", "th"] * 2
    assert all(item["sentences"] is None for item in body["items"])


def test_a_mixed_review_is_mixed_not_neutral(scoring_client: TestClient, auth: Auth) -> None:
    body = _score(
        scoring_client,
        auth,
        [
            {
                "text": "The staff were lovely and so helpful. But the app crashed at payment and I lost my order."
            }
        ],
    )
    item = body["items"][0]
    assert item["sentiment"]["label"] == "mixed"
    assert [s["sentiment"]["label"] for s in item["sentences"]] == ["positive", "negative"]


def test_anger_is_detected(scoring_client: TestClient, auth: Auth) -> None:
    body = _score(
        scoring_client, auth, [{"text": "I am furious. This is the third time you lost my parcel!!"}]
    )
    assert "anger" in body["items"][0]["emotions"]["cx_detected"]


def test_bad_items_get_their_own_errors(scoring_client: TestClient, auth: Auth) -> None:
    items: list[Any] = [
        {"id": "ok1", "text": "Great app"},
        {"id": "empty", "text": "   "},
        {"id": "long", "text": "x" * 10_001},
        {"id": "number", "text": 42},
        {"id": "nul", "text": "a\x00b"},
        {"id": "lang", "text": "hello", "language": "English"},
        "not an object",
        {"id": "ok2", "text": "شكرا", "language": "ar"},
    ]
    body = _score(scoring_client, auth, items, sentences=False)
    results = body["items"]
    assert [r["id"] for r in results] == ["ok1", "empty", "long", "number", "nul", "lang", "6", "ok2"]
    assert results[0]["sentiment"] and results[-1]["sentiment"]
    assert results[-1]["language"] == "ar" and results[-1]["language_confidence"] == 1.0
    for bad in results[1:7]:
        assert bad["sentiment"] is None and bad["errors"]
    assert "empty" in results[1]["errors"][0]["message"]
    assert "10000" in results[2]["errors"][0]["message"]
    assert results[3]["errors"][0]["field"] == "text"
    assert "NUL" in results[4]["errors"][0]["message"]
    assert results[5]["errors"][0]["field"] == "language"


def test_too_many_items_is_413(scoring_client: TestClient, auth: Auth) -> None:
    response = scoring_client.post(
        "/v1/score", json={"items": [{"text": "x"}] * 257}, headers=auth(Role.SCORER)
    )
    assert response.status_code == 413


def test_without_built_models_score_is_503_but_ingestion_works(client: TestClient, auth: Auth) -> None:
    response = client.post("/v1/score", json={"items": [{"text": "hi"}]}, headers=auth(Role.SCORER))
    assert response.status_code == 503
    assert "cxmine models build" in response.json()["detail"]
    stored = client.post(
        "/v1/feedback", json={"items": [{"text": "hi", "source": "s"}]}, headers=auth(Role.INGEST)
    )
    assert stored.json()["stored"] == 1
