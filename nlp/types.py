"""Typed objects that cross the nlp boundary."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias


@dataclass(slots=True, frozen=True)
class Span:
    """Half-open character range [start, end) into the original text."""

    start: int
    end: int


@dataclass(slots=True)
class OffsetMap:
    """Maps each model_text character to the original-text range it came from.

    ``starts[i]``/``ends[i]`` give the original range of model character ``i``: a kept character maps to
    itself, a placeholder or collapsed whitespace maps every one of its characters to the whole replaced
    range, and characters deleted from the model text are absorbed into the preceding kept character.
    """

    starts: list[int]
    ends: list[int]
    original_length: int

    def to_original(self, start: int, end: int) -> Span:
        """Return the original span covered by model_text[start:end]."""
        size = len(self.starts)
        if start >= size:
            return Span(self.original_length, self.original_length)
        if end <= start:
            return Span(self.starts[start], self.starts[start])
        return Span(self.starts[start], self.ends[min(end, size) - 1])


@dataclass(slots=True)
class Sentence:
    """A sentence of a doc; start/end index the original (not normalised) text."""

    text: str
    start: int
    end: int
    model_text: str = ""
    embedding: Any = None
    affect_embedding: Any = None
    """What the sentiment and emotion heads read: a forked top's embedding, or ``embedding`` itself."""
    sentiment: Any = None
    emotions: Any = None
    aspects: Any = None

    @property
    def head_input(self) -> Any:
        """The vector the sentiment and emotion heads score."""
        return self.embedding if self.affect_embedding is None else self.affect_embedding

    @property
    def weight(self) -> int:
        """How much the sentence counts in its review's aggregates: its length."""
        return max(len(self.model_text or self.text), 1)


@dataclass(slots=True)
class Doc:
    """One feedback text as it moves through the pipeline."""

    id: str
    text: str
    model_text: str
    offsets: OffsetMap | None = None
    language: str | None = None
    language_confidence: float | None = None
    language_given: bool = False
    sentences: list[Sentence] = field(default_factory=list)
    embedding: Any = None
    sentiment: Any = None
    emotions: Any = None

    @classmethod
    def new(cls, *, id: str, text: str, language: str | None = None) -> Doc:
        """Build a doc whose model text is, until normalised, the original text."""
        given = bool(language)
        return cls(
            id=id,
            text=text,
            model_text=text,
            language=language or None,
            language_confidence=1.0 if given else None,
            language_given=given,
        )

    def to_original(self, start: int, end: int) -> Span:
        """Map a model_text range to the original text; identity until normalised."""
        if self.offsets is None:
            return Span(start, end)
        return self.offsets.to_original(start, end)


Batch: TypeAlias = list[Doc]
Component: TypeAlias = Callable[[list[Doc]], list[Doc]]
