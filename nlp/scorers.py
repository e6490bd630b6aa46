"""Sentiment and emotion components: score each sentence with a head, then aggregate to the review."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from nlp.analysis import EmotionResult, SentimentResult
from nlp.datasets import CX_EMOTION_ROLLUP, SENTIMENT_LABELS
from nlp.heads import FloatArray, Head
from nlp.registry import registry
from nlp.types import Doc

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_SENTIMENT_HEAD = MODELS_DIR / "sentiment-e5-small" / "head.safetensors"
DEFAULT_EMOTION_HEAD = MODELS_DIR / "emotion-e5-small" / "head.safetensors"


def _sentiment(probabilities: FloatArray, *, label: str | None = None) -> SentimentResult:
    values = {name: float(p) for name, p in zip(SENTIMENT_LABELS, probabilities, strict=True)}
    chosen = label or SENTIMENT_LABELS[int(np.argmax(probabilities))]
    return SentimentResult(label=chosen, score=values["positive"] - values["negative"], probabilities=values)


def aggregate_sentiment(
    sentence_probabilities: FloatArray, weights: FloatArray, *, mixed_threshold: float
) -> SentimentResult:
    """A review's sentiment: the length-weighted mean of its sentences, ``mixed`` when they pull both ways."""
    mean = (sentence_probabilities * weights[:, None]).sum(axis=0) / weights.sum()
    negative, positive = SENTIMENT_LABELS.index("negative"), SENTIMENT_LABELS.index("positive")
    is_mixed = (
        len(sentence_probabilities) > 1
        and sentence_probabilities[:, negative].max() >= mixed_threshold
        and sentence_probabilities[:, positive].max() >= mixed_threshold
    )
    return _sentiment(mean, label="mixed" if is_mixed else None)


def sentence_probabilities(docs: list[Doc], head: Head) -> Iterator[tuple[Doc, FloatArray]]:
    """Each doc with the head's probabilities for its sentences (one head call for the whole batch)."""
    sentences = [s for doc in docs for s in doc.sentences]
    if not sentences:
        return
    probabilities = head.probabilities(np.vstack([s.embedding for s in sentences]))
    cursor = 0
    for doc in docs:
        yield doc, probabilities[cursor : cursor + len(doc.sentences)]
        cursor += len(doc.sentences)


class SentimentScorer:
    """negative / neutral / positive per sentence, and a review label that can be ``mixed``."""

    def __init__(self, *, head: Head, mixed_threshold: float = 0.5) -> None:
        if tuple(head.labels) != SENTIMENT_LABELS:
            raise ValueError(f"a sentiment head needs labels {SENTIMENT_LABELS}, not {head.labels}")
        self.head = head
        self.mixed_threshold = mixed_threshold

    def __call__(self, docs: list[Doc]) -> list[Doc]:
        for doc, block in sentence_probabilities(docs, self.head):
            for sentence, row in zip(doc.sentences, block, strict=True):
                sentence.sentiment = _sentiment(row)
            weights = np.array([s.weight for s in doc.sentences], np.float32)
            doc.sentiment = aggregate_sentiment(block, weights, mixed_threshold=self.mixed_threshold)
        return docs


def emotion_result(probabilities: FloatArray, head: Head) -> EmotionResult:
    """Every GoEmotions label with its probability (highest first), the detected ones, and the CX rollup."""
    thresholds = head.thresholds if head.thresholds is not None else np.full(len(head.labels), 0.5)
    values = {label: float(p) for label, p in zip(head.labels, probabilities, strict=True)}
    detected = [label for label, p, t in zip(head.labels, probabilities, thresholds, strict=True) if p >= t]
    if not detected:
        detected = ["neutral"]
    cx_values = {cx: max(values[member] for member in members) for cx, members in CX_EMOTION_ROLLUP.items()}
    cx_detected = [cx for cx, members in CX_EMOTION_ROLLUP.items() if any(m in detected for m in members)]
    if len(detected) > 1 and "neutral" in detected:
        detected.remove("neutral")
        cx_detected = [cx for cx in cx_detected if cx != "neutral"]
    return EmotionResult(
        probabilities=_sorted(values),
        detected=tuple(sorted(detected, key=lambda label: -values[label])),
        cx_probabilities=_sorted(cx_values),
        cx_detected=tuple(sorted(cx_detected, key=lambda label: -cx_values[label])),
    )


def _sorted(values: Mapping[str, float]) -> dict[str, float]:
    return dict(sorted(values.items(), key=lambda item: -item[1]))


class EmotionScorer:
    """GoEmotions probabilities per sentence; a review shows an emotion when any of its sentences does."""

    def __init__(self, *, head: Head) -> None:
        if head.kind != "sigmoid":
            raise ValueError("an emotion head must be multi-label (sigmoid)")
        self.head = head

    def __call__(self, docs: list[Doc]) -> list[Doc]:
        for doc, block in sentence_probabilities(docs, self.head):
            for sentence, row in zip(doc.sentences, block, strict=True):
                sentence.emotions = emotion_result(row, self.head)
            doc.emotions = emotion_result(block.max(axis=0), self.head)
        return docs


@registry.register("sentiment.e5head.v1")
def make_sentiment_scorer(
    *, path: str | None = None, encoder: str | None = None, mixed_threshold: float = 0.5
) -> SentimentScorer:
    """The sentiment head trained by scripts/train_heads.py (default: the one shipped in models/)."""
    head = Head.load(Path(path) if path else DEFAULT_SENTIMENT_HEAD, expected_encoder=encoder)
    return SentimentScorer(head=head, mixed_threshold=mixed_threshold)


@registry.register("emotion.e5head.v1")
def make_emotion_scorer(*, path: str | None = None, encoder: str | None = None) -> EmotionScorer:
    """The GoEmotions head trained by scripts/train_heads.py (default: the one shipped in models/)."""
    return EmotionScorer(
        head=Head.load(Path(path) if path else DEFAULT_EMOTION_HEAD, expected_encoder=encoder)
    )
