"""What the pipeline returns for one text: typed results that cross the nlp -> service boundary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

Embedding = NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class SentimentResult:
    """negative / neutral / positive probabilities, a label (``mixed`` too, for reviews) and a score in [-1, 1].

    ``abstained`` is true when the model was too unsure to call a polarity: the label is then ``neutral``
    whatever the probabilities lean to (they are reported unchanged).
    """

    label: str
    score: float
    probabilities: Mapping[str, float]
    abstained: bool = False


@dataclass(frozen=True, slots=True)
class EmotionResult:
    """Every emotion's probability (highest first) and the ones that pass their tuned thresholds."""

    probabilities: Mapping[str, float]
    detected: tuple[str, ...]
    cx_probabilities: Mapping[str, float]
    cx_detected: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SentenceAnalysis:
    """One sentence, with character offsets into the original text."""

    text: str
    start: int
    end: int
    sentiment: SentimentResult
    emotions: EmotionResult
    embedding: Embedding = field(repr=False)


@dataclass(frozen=True, slots=True)
class Analysis:
    """The whole result for one text."""

    id: str
    language: str | None
    language_confidence: float
    language_given: bool
    sentiment: SentimentResult
    emotions: EmotionResult
    sentences: Sequence[SentenceAnalysis]
    embedding: Embedding = field(repr=False)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """Name and version of one model in the pipeline, reported with every score."""

    role: str
    name: str
    version: str


@dataclass(frozen=True, slots=True)
class TextInput:
    """A text to analyse; a given language wins over detection."""

    id: str
    text: str
    language: str | None = None


class Analyzer(Protocol):
    """The whole pipeline as the service sees it: texts in, analyses out, in the same order."""

    @property
    def version(self) -> str:
        """One string naming every model and its version; stored with each score."""
        ...

    @property
    def models(self) -> Sequence[ModelInfo]:
        """The models in the pipeline."""
        ...

    def analyse(self, inputs: Sequence[TextInput]) -> list[Analysis]:
        """Analyse a batch; the result has one Analysis per input, in order."""
        ...
