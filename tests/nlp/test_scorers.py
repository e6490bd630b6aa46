"""Review-level aggregation: mixed reviews, weighted sentiment, emotion thresholds and the CX rollup."""

from __future__ import annotations

import numpy as np

from nlp.datasets import CX_EMOTION_ROLLUP, GOEMOTIONS_LABELS
from nlp.heads import Head
from nlp.scorers import aggregate_sentiment, emotion_result

WEIGHTS = np.array([1.0, 1.0], np.float32)


def test_one_positive_and_one_negative_sentence_make_a_mixed_review() -> None:
    sentences = np.array([[0.05, 0.15, 0.80], [0.85, 0.10, 0.05]], np.float32)
    result = aggregate_sentiment(sentences, WEIGHTS, mixed_threshold=0.5)
    assert result.label == "mixed"
    assert abs(sum(result.probabilities.values()) - 1) < 1e-6
    assert result.score == result.probabilities["positive"] - result.probabilities["negative"]


def test_agreeing_or_weak_sentences_are_not_mixed() -> None:
    both_negative = np.array([[0.9, 0.05, 0.05], [0.7, 0.2, 0.1]], np.float32)
    assert aggregate_sentiment(both_negative, WEIGHTS, mixed_threshold=0.5).label == "negative"
    weakly_positive = np.array([[0.1, 0.5, 0.4], [0.6, 0.3, 0.1]], np.float32)
    assert aggregate_sentiment(weakly_positive, WEIGHTS, mixed_threshold=0.5).label != "mixed"
    single = np.array([[0.2, 0.7, 0.1]], np.float32)
    assert aggregate_sentiment(single, np.ones(1, np.float32), mixed_threshold=0.5).label == "neutral"


def test_longer_sentences_weigh_more() -> None:
    sentences = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    result = aggregate_sentiment(sentences, np.array([1.0, 3.0], np.float32), mixed_threshold=0.5)
    assert result.probabilities["positive"] == 0.75 and result.label == "positive"


def _head(thresholds: np.ndarray) -> Head:
    zeros = np.zeros(1, np.float32)
    return Head(
        name="e",
        version="1",
        kind="sigmoid",
        labels=GOEMOTIONS_LABELS,
        encoder="x",
        temperature=1.0,
        tensors={"input_mean": zeros},
        thresholds=thresholds.astype(np.float32),
    )


def test_emotions_pass_their_own_thresholds_and_roll_up() -> None:
    thresholds = np.full(len(GOEMOTIONS_LABELS), 0.5, np.float32)
    thresholds[GOEMOTIONS_LABELS.index("annoyance")] = 0.2
    probabilities = np.full(len(GOEMOTIONS_LABELS), 0.01, np.float32)
    probabilities[GOEMOTIONS_LABELS.index("annoyance")] = 0.3
    probabilities[GOEMOTIONS_LABELS.index("disgust")] = 0.4
    probabilities[GOEMOTIONS_LABELS.index("neutral")] = 0.6
    result = emotion_result(probabilities, _head(thresholds))
    assert result.detected == ("annoyance",)  # neutral yields to a real emotion
    assert result.cx_detected == ("frustration",)
    assert result.cx_probabilities["anger"] == np.float32(0.4)  # disgust, below its threshold, still counts
    assert list(result.probabilities) == sorted(result.probabilities, key=lambda k: -result.probabilities[k])
    assert set(result.cx_probabilities) == set(CX_EMOTION_ROLLUP)


def test_nothing_detected_means_neutral() -> None:
    result = emotion_result(np.full(len(GOEMOTIONS_LABELS), 0.01, np.float32), _head(np.full(28, 0.5)))
    assert result.detected == ("neutral",) and result.cx_detected == ("neutral",)
