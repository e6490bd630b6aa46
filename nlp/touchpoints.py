"""Touchpoints: a configurable taxonomy, and sentences assigned to it by embedding similarity.

A taxonomy lists touchpoints (name, journey stages, description, example phrases in several languages)
and, optionally, background phrases: feedback about no touchpoint in particular ("Great!", "ممتاز").
A sentence's score for a touchpoint is the mean cosine of its embedding to the touchpoint's three nearest
examples. e5 cosines are compressed (a vague "Five stars!!!" scores as high as a specific complaint), so
the decision is relative: a sentence closest to the background gets no touchpoint; otherwise it gets its
best touchpoint and any within ``margin`` of it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

STAGES = ("awareness", "discovery", "evaluation", "conversion", "experience", "support", "loyalty")
DEFAULT_TAXONOMY = Path(__file__).resolve().parent / "taxonomies" / "retail.yaml"
DEFAULT_BACKGROUND: Mapping[str, tuple[str, ...]] = {
    "en": (
        "Great!",
        "Five stars",
        "ok",
        "thanks",
        "Terrible.",
        "worst ever",
        "I love it",
        "not bad",
        "meh",
        "amazing!!!",
        "very disappointed",
        "10/10",
        "good",
        "bad experience",
        "recommended",
    ),
    "ar": ("ممتاز", "رائع جدا", "سيء", "شكرا", "أسوأ تجربة", "جيد", "لا بأس", "تجربة سيئة", "أنصح به"),
    "fa": ("عالی", "خیلی خوب", "بد بود", "ممنون", "افتضاح", "معمولی", "تجربه بدی بود", "پیشنهاد می‌کنم"),
    "th": ("ดีมาก", "แย่มาก", "ขอบคุณค่ะ", "เฉยๆ", "ประทับใจ", "ไม่โอเค", "แนะนำเลย"),
}
"""Generic praise and complaints: what a sentence about no touchpoint looks like, in four languages."""

_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

FloatArray = NDArray[np.float32]


class TaxonomyError(ValueError):
    """The taxonomy document is not valid; the message says where."""


@dataclass(frozen=True)
class Touchpoint:
    """Where the customer meets the business."""

    id: str
    name: str
    stages: tuple[str, ...]
    description: str
    examples: Mapping[str, tuple[str, ...]]

    @property
    def all_examples(self) -> list[str]:
        """Every example phrase, all languages."""
        return [phrase for phrases in self.examples.values() for phrase in phrases]


@dataclass(frozen=True)
class Taxonomy:
    """A named, versioned set of touchpoints."""

    name: str
    version: int
    description: str
    touchpoints: tuple[Touchpoint, ...]
    background: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_BACKGROUND))

    @property
    def background_phrases(self) -> list[str]:
        """Every background phrase, all languages."""
        return [phrase for phrases in self.background.values() for phrase in phrases]

    def get(self, touchpoint_id: str) -> Touchpoint | None:
        """The touchpoint with this id, if any."""
        return next((t for t in self.touchpoints if t.id == touchpoint_id), None)

    def to_document(self) -> dict[str, Any]:
        """The taxonomy as a plain document (the YAML/JSON form)."""
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "background": {language: list(phrases) for language, phrases in self.background.items()},
            "touchpoints": [
                {
                    "id": t.id,
                    "name": t.name,
                    "stages": list(t.stages),
                    "description": t.description,
                    "examples": {language: list(phrases) for language, phrases in t.examples.items()},
                }
                for t in self.touchpoints
            ],
        }


def parse_taxonomy(document: Any) -> Taxonomy:
    """A validated taxonomy from a YAML/JSON document; TaxonomyError says what is wrong and where."""
    if not isinstance(document, dict):
        raise TaxonomyError("a taxonomy must be an object with name, version and touchpoints")
    touchpoints_raw = document.get("touchpoints")
    if not isinstance(touchpoints_raw, list) or not touchpoints_raw:
        raise TaxonomyError("touchpoints: a non-empty list is required")
    touchpoints: list[Touchpoint] = []
    for index, raw in enumerate(touchpoints_raw):
        where = f"touchpoints[{index}]"
        if not isinstance(raw, dict):
            raise TaxonomyError(f"{where}: must be an object")
        touchpoint_id = raw.get("id")
        if not isinstance(touchpoint_id, str) or not _ID.match(touchpoint_id):
            raise TaxonomyError(f"{where}.id: a snake_case identifier is required, got {touchpoint_id!r}")
        where = f"touchpoints[{index}] ({touchpoint_id})"
        if any(t.id == touchpoint_id for t in touchpoints):
            raise TaxonomyError(f"{where}: the id is used twice")
        stages = raw.get("stages") or []
        unknown = [s for s in stages if s not in STAGES] if isinstance(stages, list) else [stages]
        if not stages or unknown:
            raise TaxonomyError(f"{where}.stages: one or more of {', '.join(STAGES)} (unknown: {unknown})")
        examples = _phrases_by_language(raw.get("examples"), where=f"{where}.examples")
        if not examples:
            raise TaxonomyError(f"{where}.examples: an object of language -> list of phrases is required")
        if sum(len(p) for p in examples.values()) < 3:
            raise TaxonomyError(f"{where}.examples: at least 3 phrases are needed to recognise a touchpoint")
        touchpoints.append(
            Touchpoint(
                id=touchpoint_id,
                name=str(raw.get("name") or touchpoint_id.replace("_", " ").capitalize()),
                stages=tuple(stages),
                description=str(raw.get("description") or ""),
                examples=examples,
            )
        )
    background = _phrases_by_language(document.get("background"), where="background") or DEFAULT_BACKGROUND
    version = document.get("version", 1)
    if not isinstance(version, int) or version < 1:
        raise TaxonomyError(f"version: a positive integer is required, got {version!r}")
    return Taxonomy(
        name=str(document.get("name") or "custom"),
        version=version,
        description=str(document.get("description") or ""),
        touchpoints=tuple(touchpoints),
        background=background,
    )


def _phrases_by_language(raw: Any, *, where: str) -> dict[str, tuple[str, ...]]:
    """``{language: [phrases]}`` checked; empty when ``raw`` is missing."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise TaxonomyError(f"{where}: an object of language -> list of phrases is required")
    result: dict[str, tuple[str, ...]] = {}
    for language, phrases in raw.items():
        if not isinstance(phrases, list) or not all(isinstance(p, str) and p.strip() for p in phrases):
            raise TaxonomyError(f"{where}.{language}: a list of non-empty phrases is required")
        result[str(language)] = tuple(p.strip() for p in phrases)
    return result


def load_taxonomy(path: Path = DEFAULT_TAXONOMY) -> Taxonomy:
    """A taxonomy from a YAML file (the shipped retail one by default)."""
    import yaml

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TaxonomyError(f"{path}: not valid YAML: {exc}") from exc
    return parse_taxonomy(document)


@dataclass(frozen=True)
class TouchpointScore:
    """One touchpoint of a sentence and how strongly the sentence is about it (cosine, 0-1)."""

    touchpoint: str
    score: float


class TouchpointClassifier:
    """Assigns sentences to touchpoints by similarity to the touchpoints' embedded examples."""

    def __init__(
        self,
        *,
        taxonomy: Taxonomy,
        example_embeddings: Sequence[FloatArray],
        background_embeddings: FloatArray,
        margin: float = 0.0025,
        background_margin: float = 0.01,
        nearest: int = 3,
    ) -> None:
        if len(example_embeddings) != len(taxonomy.touchpoints):
            raise ValueError("one example matrix per touchpoint is needed")
        self.taxonomy = taxonomy
        self.examples = [np.asarray(m, np.float32) for m in example_embeddings]
        self.background = np.asarray(background_embeddings, np.float32)
        self.margin = margin
        self.background_margin = background_margin
        self.nearest = nearest

    def scores(self, embeddings: FloatArray) -> FloatArray:
        """(n sentences, n touchpoints + 1): mean cosine to each touchpoint's nearest examples; background last."""
        columns = []
        for matrix in [*self.examples, self.background]:
            similarities = embeddings @ matrix.T
            k = min(self.nearest, matrix.shape[0])
            top = np.partition(similarities, similarities.shape[1] - k, axis=1)[:, -k:]
            columns.append(top.mean(axis=1))
        return np.stack(columns, axis=1).astype(np.float32)

    def assign(self, embeddings: FloatArray) -> list[list[TouchpointScore]]:
        """For each sentence, its touchpoints, strongest first (possibly none)."""
        if len(embeddings) == 0:
            return []
        scores = self.scores(embeddings)
        result: list[list[TouchpointScore]] = []
        for row in scores:
            touchpoints, background = row[:-1], float(row[-1])
            best = float(touchpoints.max())
            if background >= best - self.background_margin:
                result.append([])
                continue
            result.append(
                [
                    TouchpointScore(self.taxonomy.touchpoints[j].id, round(float(touchpoints[j]), 4))
                    for j in np.argsort(-touchpoints)
                    if touchpoints[j] >= best - self.margin
                ]
            )
        return result
