"""Sentiment and emotion components: score each sentence with a head, then aggregate to the review."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from nlp.analysis import EmotionResult, SentimentResult
from nlp.datasets import CX_EMOTION_ROLLUP, SENTIMENT_LABELS
from nlp.heads import FloatArray, Head
from nlp.registry import registry
from nlp.types import Doc

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_SENTIMENT_HEAD = MODELS_DIR / "sentiment-e5-small" / "head.safetensors"
DEFAULT_EMOTION_HEAD = MODELS_DIR / "emotion-e5-small" / "head.safetensors"
CALIBRATION_FILE = "calibration.json"
"""A sentiment head's calibration and decision rules, read from beside its head file when present."""

NEGATIVE, NEUTRAL, POSITIVE = (SENTIMENT_LABELS.index(name) for name in ("negative", "neutral", "positive"))


def _sentiment(
    probabilities: FloatArray, *, label: str | None = None, abstain_below: float = 0.0
) -> SentimentResult:
    values = {name: float(p) for name, p in zip(SENTIMENT_LABELS, probabilities, strict=True)}
    abstained = label is None and float(np.max(probabilities)) < abstain_below
    chosen = label or ("neutral" if abstained else SENTIMENT_LABELS[int(np.argmax(probabilities))])
    return SentimentResult(
        label=chosen,
        score=values["positive"] - values["negative"],
        probabilities=values,
        abstained=abstained,
    )


def aggregate_sentiment(
    sentence_probabilities: FloatArray,
    weights: FloatArray,
    *,
    mixed_threshold: float,
    abstain_below: float = 0.0,
) -> SentimentResult:
    """A review's sentiment: the length-weighted mean of its sentences, ``mixed`` when they pull both ways.

    ``mixed`` needs two sentences or more, one at least ``mixed_threshold`` negative and another at least
    ``mixed_threshold`` positive. Otherwise the label is the mean's most probable one, or ``neutral``
    (marked abstained) when that probability is below ``abstain_below``.
    """
    mean = (sentence_probabilities * weights[:, None]).sum(axis=0) / weights.sum()
    is_mixed = (
        len(sentence_probabilities) > 1
        and sentence_probabilities[:, NEGATIVE].max() >= mixed_threshold
        and sentence_probabilities[:, POSITIVE].max() >= mixed_threshold
    )
    return _sentiment(mean, label="mixed" if is_mixed else None, abstain_below=abstain_below)


def _softmax(scaled: FloatArray) -> FloatArray:
    shifted = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True), dtype=np.float32)


@dataclass(frozen=True)
class SentimentCalibration:
    """How the sentiment head's logits become served probabilities and labels.

    Per language (the doc's language, detected or given) a temperature divides the logits and a log-prior
    shift is added to them (a prior correction: the head was trained class-balanced); a language without its
    own values uses the defaults. Then the review rules: ``mixed_threshold`` (see ``aggregate_sentiment``)
    and ``abstain_below``, the confidence under which a sentence or review is labelled ``neutral`` and marked
    abstained. ``fitted`` records how the values were chosen (scripts/served_sentiment.py).
    """

    temperature: float = 1.0
    log_prior: tuple[float, ...] = (0.0, 0.0, 0.0)
    temperatures: Mapping[str, float] = field(default_factory=dict)
    log_priors: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    mixed_threshold: float = 0.5
    abstain_below: float = 0.0
    fitted: Mapping[str, Any] = field(default_factory=dict)

    def for_language(self, language: str | None) -> tuple[float, FloatArray]:
        """The temperature and log-prior shift used for texts in ``language`` (defaults when not listed)."""
        key = language or ""
        temperature = self.temperatures.get(key, self.temperature)
        shift = self.log_priors.get(key, self.log_prior)
        return float(temperature), np.asarray(shift, np.float32)

    def probabilities(self, logits: FloatArray, language: str | None) -> FloatArray:
        """Calibrated probabilities for rows of head logits of texts in ``language``."""
        temperature, shift = self.for_language(language)
        return _softmax(np.asarray(logits / np.float32(temperature) + shift, dtype=np.float32))

    def to_dict(self) -> dict[str, Any]:
        """The calibration as JSON-ready data."""
        return {
            "temperature": self.temperature,
            "log_prior": list(self.log_prior),
            "temperatures": dict(self.temperatures),
            "log_priors": {k: list(v) for k, v in self.log_priors.items()},
            "mixed_threshold": self.mixed_threshold,
            "abstain_below": self.abstain_below,
            "fitted": dict(self.fitted),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SentimentCalibration:
        """Read what ``to_dict`` wrote."""
        return cls(
            temperature=float(data.get("temperature", 1.0)),
            log_prior=tuple(float(x) for x in data.get("log_prior", (0.0, 0.0, 0.0))),
            temperatures={str(k): float(v) for k, v in data.get("temperatures", {}).items()},
            log_priors={str(k): tuple(float(x) for x in v) for k, v in data.get("log_priors", {}).items()},
            mixed_threshold=float(data.get("mixed_threshold", 0.5)),
            abstain_below=float(data.get("abstain_below", 0.0)),
            fitted=dict(data.get("fitted", {})),
        )

    @classmethod
    def load(cls, path: Path) -> SentimentCalibration:
        """Read a calibration file."""
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def save(self, path: Path) -> None:
        """Write a calibration file."""
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    @property
    def digest(self) -> str:
        """A short hash of the values that change labels (not the provenance)."""
        values = {k: v for k, v in self.to_dict().items() if k != "fitted"}
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:6]


def sentence_probabilities(docs: list[Doc], head: Head) -> Iterator[tuple[Doc, FloatArray]]:
    """Each doc with the head's probabilities for its sentences (one head call for the whole batch)."""
    sentences = [s for doc in docs for s in doc.sentences]
    if not sentences:
        return
    probabilities = head.probabilities(np.vstack([s.head_input for s in sentences]))
    cursor = 0
    for doc in docs:
        yield doc, probabilities[cursor : cursor + len(doc.sentences)]
        cursor += len(doc.sentences)


class SentimentScorer:
    """negative / neutral / positive per sentence, and a review label that can be ``mixed``.

    Without a calibration the head's own (single) temperature is used, nothing abstains and the mixed
    threshold is 0.5; ``mixed_threshold`` overrides the calibration's.
    """

    def __init__(
        self,
        *,
        head: Head,
        mixed_threshold: float | None = None,
        calibration: SentimentCalibration | None = None,
    ) -> None:
        if tuple(head.labels) != SENTIMENT_LABELS:
            raise ValueError(f"a sentiment head needs labels {SENTIMENT_LABELS}, not {head.labels}")
        self.head = head
        self.calibrated = calibration is not None
        calibration = calibration or SentimentCalibration(temperature=head.temperature)
        if mixed_threshold is not None:
            calibration = replace(calibration, mixed_threshold=mixed_threshold)
        self.calibration = calibration

    @property
    def mixed_threshold(self) -> float:
        """A review is mixed when one sentence is at least this negative and another this positive."""
        return self.calibration.mixed_threshold

    @property
    def version(self) -> str:
        """The head's version, with the calibration's digest when one is applied."""
        return f"{self.head.version}+cal.{self.calibration.digest}" if self.calibrated else self.head.version

    def review(self, logits: FloatArray, weights: FloatArray, *, language: str | None) -> SentimentResult:
        """A review's sentiment from its sentences' head logits and weights."""
        probabilities = self.calibration.probabilities(logits, language)
        return aggregate_sentiment(
            probabilities,
            weights,
            mixed_threshold=self.calibration.mixed_threshold,
            abstain_below=self.calibration.abstain_below,
        )

    def __call__(self, docs: list[Doc]) -> list[Doc]:
        sentences = [s for doc in docs for s in doc.sentences]
        if not sentences:
            return docs
        logits = self.head.logits(np.vstack([s.head_input for s in sentences]))
        cursor = 0
        for doc in docs:
            block = logits[cursor : cursor + len(doc.sentences)]
            cursor += len(doc.sentences)
            probabilities = self.calibration.probabilities(block, doc.language)
            for sentence, row in zip(doc.sentences, probabilities, strict=True):
                sentence.sentiment = _sentiment(row, abstain_below=self.calibration.abstain_below)
            weights = np.array([s.weight for s in doc.sentences], np.float32)
            doc.sentiment = self.review(block, weights, language=doc.language)
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
    *,
    path: str | None = None,
    encoder: str | None = None,
    mixed_threshold: float | None = None,
    calibration: str | None = None,
) -> SentimentScorer:
    """The sentiment head trained by scripts/train_heads.py (default: the one shipped in models/).

    ``calibration`` is a calibration file (default: ``calibration.json`` beside the head, when present);
    ``"none"`` serves the head uncalibrated.
    """
    head_path = Path(path) if path else DEFAULT_SENTIMENT_HEAD
    head = Head.load(head_path, expected_encoder=encoder)
    calibration_path = Path(calibration) if calibration else head_path.parent / CALIBRATION_FILE
    loaded = (
        SentimentCalibration.load(calibration_path)
        if calibration != "none" and calibration_path.exists()
        else None
    )
    return SentimentScorer(head=head, mixed_threshold=mixed_threshold, calibration=loaded)


@registry.register("emotion.e5head.v1")
def make_emotion_scorer(*, path: str | None = None, encoder: str | None = None) -> EmotionScorer:
    """The GoEmotions head trained by scripts/train_heads.py (default: the one shipped in models/)."""
    return EmotionScorer(
        head=Head.load(Path(path) if path else DEFAULT_EMOTION_HEAD, expected_encoder=encoder)
    )
