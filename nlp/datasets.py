"""The labelled train/dev data in ``../shared/data``, mapped onto cxmine's sentiment and emotion labels."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Split = Literal["train", "dev"]

SENTIMENT_LABELS: tuple[str, ...] = ("negative", "neutral", "positive")

GOEMOTIONS_LABELS: tuple[str, ...] = (
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion", "curiosity",
    "desire", "disappointment", "disapproval", "disgust", "embarrassment", "excitement", "fear",
    "gratitude", "grief", "joy", "love", "nervousness", "optimism", "pride", "realization", "relief",
    "remorse", "sadness", "surprise", "neutral",
)  # fmt: skip

CX_EMOTION_ROLLUP: Mapping[str, tuple[str, ...]] = {
    "anger": ("anger", "disgust"),
    "frustration": ("annoyance", "disapproval"),
    "disappointment": ("disappointment",),
    "sadness": ("sadness", "grief", "remorse", "embarrassment"),
    "fear": ("fear", "nervousness"),
    "confusion": ("confusion", "curiosity"),
    "surprise": ("surprise", "realization"),
    "joy": ("joy", "amusement", "excitement", "optimism", "relief", "pride", "desire"),
    "gratitude": ("gratitude",),
    "love": ("love", "admiration", "approval", "caring"),
    "neutral": ("neutral",),
}
"""The short CX emotion set, each a group of GoEmotions labels (every GoEmotions label is in one group)."""

DATA_ROOT_ENV = "CXMINE_TRAINING_DATA"


class DatasetLabelError(ValueError):
    """A row carries a label the dataset's mapping does not know: the data changed, or the mapping is wrong."""


@dataclass(frozen=True)
class SentimentDataset:
    """A sentiment data set and how its labels map onto negative / neutral / positive."""

    name: str
    languages: tuple[str, ...]
    label_map: Mapping[str, str]
    licence: str
    commercial_use: bool
    official_metric: Literal["macro_f1", "macro_recall", "accuracy"] = "macro_f1"
    binary: bool = False
    has_train: bool = True
    note: str = ""


SENTIMENT_DATASETS: dict[str, SentimentDataset] = {
    dataset.name: dataset
    for dataset in (
        SentimentDataset(
            name="xlmt_umsab_multilingual_sentiment",
            languages=("ar", "en", "fr", "de", "hi", "it", "pt", "es"),
            label_map={"negative": "negative", "neutral": "neutral", "positive": "positive"},
            licence="Apache-2.0 repo; original datasets' terms and Twitter ToS",
            commercial_use=False,
            note="XLM-T's published macro-F1 across the eight languages averages 69.4",
        ),
        SentimentDataset(
            name="en_tweeteval_sentiment",
            languages=("en",),
            label_map={"negative": "negative", "neutral": "neutral", "positive": "positive"},
            licence="research use (SemEval-2017; Twitter ToS)",
            commercial_use=False,
            official_metric="macro_recall",
            has_train=False,
            note="dev only: the train split is missing from the snapshot",
        ),
        SentimentDataset(
            name="wisesight_sentiment_th",
            languages=("th",),
            label_map={"pos": "positive", "neu": "neutral", "neg": "negative", "q": "neutral"},
            licence="CC0-1.0",
            commercial_use=True,
            official_metric="accuracy",
            note="'q' (question) counts as neutral",
        ),
        SentimentDataset(
            name="persian_deepsentipers",
            languages=("fa",),
            label_map={
                "furious": "negative",
                "angry": "negative",
                "neutral": "neutral",
                "happy": "positive",
                "delighted": "positive",
            },
            licence="none stated (SentiPers: research use)",
            commercial_use=False,
        ),
        SentimentDataset(
            name="persian_parsinlu_sentiment",
            languages=("fa",),
            label_map={
                "very negative": "negative",
                "negative": "negative",
                "neutral": "neutral",
                "no sentiment expressed": "neutral",
                "mixed": "neutral",
                "positive": "positive",
                "very positive": "positive",
            },
            licence="CC BY-NC-SA 4.0 (non-commercial)",
            commercial_use=False,
            note="document-level reviews; 'mixed' counts as neutral",
        ),
        SentimentDataset(
            name="arabic_astd_tweets",
            languages=("ar",),
            label_map={"POS": "positive", "NEG": "negative", "NEUTRAL": "neutral", "OBJ": "neutral"},
            licence="GPL-2.0",
            commercial_use=False,
            note="NEUTRAL (subjective mixed) and OBJ (objective) both count as neutral",
        ),
        SentimentDataset(
            name="arabic_restaurant_reviews_elsahar",
            languages=("ar",),
            label_map={"negative": "negative", "neutral": "neutral", "positive": "positive"},
            licence="none stated",
            commercial_use=False,
            note="labels derived from star ratings, not annotated",
        ),
        SentimentDataset(
            name="en_sst2",
            languages=("en",),
            label_map={"negative": "negative", "positive": "positive"},
            licence="none stated (SST/GLUE research data)",
            commercial_use=False,
            official_metric="accuracy",
            binary=True,
            note="binary: evaluated by comparing the negative and positive probabilities only",
        ),
    )
}

EMOTION_DATASETS: dict[str, str] = {
    "en_goemotions": "Apache-2.0",
    "en_tweeteval_emotion": "research use (SemEval-2018; Twitter ToS)",
}


@dataclass(frozen=True)
class SentimentExample:
    """One labelled text; ``label`` indexes SENTIMENT_LABELS."""

    text: str
    label: int
    language: str
    dataset: str


@dataclass(frozen=True)
class EmotionExample:
    """One text with its emotions; ``labels`` index GOEMOTIONS_LABELS (several, or only ``neutral``)."""

    text: str
    labels: tuple[int, ...]
    language: str
    dataset: str


def data_root() -> Path:
    """Where the labelled data lives: $CXMINE_TRAINING_DATA, else ../shared/data beside the checkout."""
    configured = os.environ.get(DATA_ROOT_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def _rows(root: Path, dataset: str, split: Split) -> Iterator[dict[str, object]]:
    path = root / dataset / f"{split}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; set {DATA_ROOT_ENV} to the folder holding {dataset}/")
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def load_sentiment(name: str, split: Split, *, root: Path | None = None) -> list[SentimentExample]:
    """A sentiment data set's split, with labels mapped onto SENTIMENT_LABELS."""
    dataset = SENTIMENT_DATASETS.get(name)
    if dataset is None:
        raise KeyError(f"unknown sentiment data set {name!r}; known: {', '.join(sorted(SENTIMENT_DATASETS))}")
    if split == "train" and not dataset.has_train:
        return []
    examples = []
    for row in _rows(root or data_root(), name, split):
        raw_label = str(row["label"])
        mapped = dataset.label_map.get(raw_label)
        if mapped is None:
            raise DatasetLabelError(f"{name}/{split}: label {raw_label!r} is not in the mapping")
        examples.append(
            SentimentExample(
                text=str(row["text"]),
                label=SENTIMENT_LABELS.index(mapped),
                language=str(row["lang"]),
                dataset=name,
            )
        )
    return examples


def load_emotions(name: str, split: Split, *, root: Path | None = None) -> list[EmotionExample]:
    """An emotion data set's split, with labels as GoEmotions indices."""
    if name not in EMOTION_DATASETS:
        raise KeyError(f"unknown emotion data set {name!r}; known: {', '.join(sorted(EMOTION_DATASETS))}")
    examples = []
    for row in _rows(root or data_root(), name, split):
        raw = row["labels"] if "labels" in row else [row["label"]]
        assert isinstance(raw, list)
        try:
            labels = tuple(sorted(GOEMOTIONS_LABELS.index(str(label)) for label in raw))
        except ValueError as exc:
            raise DatasetLabelError(f"{name}/{split}: a label of {raw!r} is not a GoEmotions label") from exc
        examples.append(
            EmotionExample(text=str(row["text"]), labels=labels, language=str(row["lang"]), dataset=name)
        )
    return examples
