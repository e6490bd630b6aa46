"""Topics, BERTopic's way, on stored sentence embeddings: align → reduce → cluster → merge → represent.

Every stage is one swappable object behind a small interface, named in a registry
(``topics.reduce.pca.v1``...). The defaults need only numpy and scikit-learn:

- **align** ``topics.align.language_centering.v1``: multilingual encoders place a sentence near the other
  sentences of its language as much as near its meaning. Subtracting each language's mean embedding
  (Libovický et al., 2020, "On the language neutrality of pre-trained multilingual representations")
  removes most of that, so "delivery is late" in Thai and in English fall into one cluster.
- **reduce** ``topics.reduce.pca.v1`` (or ``topics.reduce.umap.v1`` with umap-learn installed).
- **cluster** ``topics.cluster.hdbscan.v1`` (scikit-learn's HDBSCAN; -1 marks outliers), or k-means.
- **merge**: clusters whose centroids are nearly the same direction are one theme, whatever their language.
- **outliers** are reduced: an outlier close enough to a topic's centroid joins it; the rest stay
  outliers and are counted, never silently dropped.
- **represent** ``topics.represent.ctfidf.v1``: class-based TF-IDF over words from a tokenizer that
  handles every script (pythainlp for Thai; stop words for English, Arabic, Persian and more).

A fit is made on at most ``max_fit_sentences`` sentences (a seeded sample); the rest, and every
sentence scored later, are assigned to the nearest topic centroid, which is also how new feedback is
assigned online between refits. ``match_topics`` keeps topic ids stable across refits.
"""

from __future__ import annotations

import functools
import io
import math
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from nlp.registry import Registry, UnknownComponentError

FloatArray = NDArray[np.float32]
IntArray = NDArray[np.int64]
OUTLIER = -1


def unit_rows(matrix: FloatArray) -> FloatArray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.asarray(matrix / np.maximum(norms, 1e-12), dtype=np.float32)


# ---------------------------------------------------------------------------------------------- stages


class Aligner(Protocol):
    """Makes embeddings of different languages comparable."""

    def fit(self, embeddings: FloatArray, languages: Sequence[str | None]) -> Aligner: ...
    def transform(self, embeddings: FloatArray, languages: Sequence[str | None]) -> FloatArray: ...
    def state(self) -> dict[str, Any]: ...


class Reducer(Protocol):
    """Reduces embeddings to the few dimensions density clustering works well in."""

    def fit_transform(self, embeddings: FloatArray) -> FloatArray: ...


class Clusterer(Protocol):
    """Groups reduced embeddings; OUTLIER (-1) marks points in no group."""

    def fit_predict(self, points: FloatArray) -> IntArray: ...


# nlp.topics_bertopic registers the engines (topics.engine.*.v1): the hand-written stages and BERTopic.
stages = Registry[Any](builtin_modules=("nlp.topics_bertopic",))


@stages.register("topics.align.language_centering.v1")
class LanguageCentering:
    """Subtract each language's mean embedding (shrunk towards the overall mean for rare languages)."""

    def __init__(self, *, prior_strength: float = 5.0) -> None:
        self.prior_strength = prior_strength
        self.means: dict[str, FloatArray] = {}
        self.overall: FloatArray | None = None

    def fit(self, embeddings: FloatArray, languages: Sequence[str | None]) -> LanguageCentering:
        self.overall = embeddings.mean(axis=0).astype(np.float32)
        groups: dict[str, list[int]] = defaultdict(list)
        for index, language in enumerate(languages):
            groups[language or "und"].append(index)
        for language, rows in groups.items():
            n = len(rows)
            raw = embeddings[rows].mean(axis=0)
            self.means[language] = (
                (n * raw + self.prior_strength * self.overall) / (n + self.prior_strength)
            ).astype(np.float32)
        return self

    def transform(self, embeddings: FloatArray, languages: Sequence[str | None]) -> FloatArray:
        if self.overall is None:
            raise RuntimeError("LanguageCentering.transform before fit")
        means = np.vstack([self.means.get(language or "und", self.overall) for language in languages])
        return unit_rows(embeddings - means)

    def state(self) -> dict[str, Any]:
        return {"means": self.means, "overall": self.overall}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> LanguageCentering:
        aligner = cls()
        aligner.means = dict(state["means"])
        aligner.overall = state["overall"]
        return aligner


@stages.register("topics.align.language_standardise.v1")
class LanguageStandardisation(LanguageCentering):
    """Centre each language and scale every dimension by that language's spread (a per-language z-score).

    Centering removes where a language sits; scaling also removes how much it varies along each
    dimension, which centering leaves behind (measured in scripts/evaluate.py, cross-language section).
    """

    def __init__(self, *, prior_strength: float = 5.0, min_sentences: int = 10) -> None:
        super().__init__(prior_strength=prior_strength)
        self.min_sentences = min_sentences
        self.spreads: dict[str, FloatArray] = {}
        self.overall_spread: FloatArray | None = None

    def fit(self, embeddings: FloatArray, languages: Sequence[str | None]) -> LanguageStandardisation:
        super().fit(embeddings, languages)
        groups: dict[str, list[int]] = defaultdict(list)
        for index, language in enumerate(languages):
            groups[language or "und"].append(index)
        centred = embeddings - np.vstack([self.means[language or "und"] for language in languages])
        self.overall_spread = np.asarray(np.sqrt((centred**2).mean(axis=0)) + 1e-3, dtype=np.float32)
        for language, rows in groups.items():
            if len(rows) >= self.min_sentences:
                spread = np.sqrt((centred[rows] ** 2).mean(axis=0)) + 1e-3
                self.spreads[language] = np.asarray(spread, dtype=np.float32)
        return self

    def transform(self, embeddings: FloatArray, languages: Sequence[str | None]) -> FloatArray:
        if self.overall is None or self.overall_spread is None:
            raise RuntimeError("LanguageStandardisation.transform before fit")
        keys = [language or "und" for language in languages]
        means = np.vstack([self.means.get(key, self.overall) for key in keys])
        spreads = np.vstack([self.spreads.get(key, self.overall_spread) for key in keys])
        return unit_rows((embeddings - means) / spreads)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "spreads": self.spreads, "overall_spread": self.overall_spread}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> LanguageStandardisation:
        aligner = cls()
        aligner.means = dict(state["means"])
        aligner.overall = state["overall"]
        aligner.spreads = dict(state.get("spreads", {}))
        aligner.overall_spread = state.get("overall_spread")
        return aligner


@stages.register("topics.align.none.v1")
class NoAlignment:
    """Leave embeddings as the encoder made them (re-normalised)."""

    def fit(self, embeddings: FloatArray, languages: Sequence[str | None]) -> NoAlignment:
        return self

    def transform(self, embeddings: FloatArray, languages: Sequence[str | None]) -> FloatArray:
        return unit_rows(embeddings)

    def state(self) -> dict[str, Any]:
        return {}


# e5 embeddings share one large direction; without any centering everything is one topic.


@stages.register("topics.reduce.pca.v1")
class PCAReducer:
    """Principal components (deterministic, fast, no extra dependency)."""

    def __init__(self, *, dimensions: int = 10, seed: int = 0) -> None:
        self.dimensions = dimensions
        self.seed = seed

    def fit_transform(self, embeddings: FloatArray) -> FloatArray:
        from sklearn.decomposition import PCA

        dims = min(self.dimensions, embeddings.shape[0] - 1, embeddings.shape[1])
        reduced = PCA(n_components=max(dims, 1), random_state=self.seed).fit_transform(embeddings)
        return np.asarray(reduced, dtype=np.float32)


@stages.register("topics.reduce.umap.v1")
class UMAPReducer:
    """UMAP, BERTopic's default reducer (``pip install umap-learn``; slower, often sharper clusters)."""

    def __init__(self, *, dimensions: int = 5, neighbours: int = 15, seed: int = 0) -> None:
        try:
            import umap  # noqa: F401
        except ImportError as exc:
            raise ImportError("topics.reduce.umap.v1 needs umap-learn: pip install umap-learn") from exc
        self.dimensions = dimensions
        self.neighbours = neighbours
        self.seed = seed

    def fit_transform(self, embeddings: FloatArray) -> FloatArray:
        import umap

        model = umap.UMAP(
            n_components=self.dimensions,
            n_neighbors=min(self.neighbours, embeddings.shape[0] - 1),
            metric="cosine",
            min_dist=0.0,
            random_state=self.seed,
        )
        return np.asarray(model.fit_transform(embeddings), dtype=np.float32)


@stages.register("topics.cluster.hdbscan.v1")
class HDBSCANClusterer:
    """Density clustering with outliers; ``min_cluster_size`` is the smallest theme worth a topic."""

    def __init__(
        self, *, min_cluster_size: int = 10, min_samples: int | None = None, selection: str = "eom"
    ) -> None:
        if selection not in ("eom", "leaf"):
            raise ValueError(f"selection must be 'eom' or 'leaf', not {selection!r}")
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.selection = selection

    def fit_predict(self, points: FloatArray) -> IntArray:
        from sklearn.cluster import HDBSCAN

        if points.shape[0] < self.min_cluster_size:
            return np.full(points.shape[0], OUTLIER, dtype=np.int64)
        model = HDBSCAN(
            min_cluster_size=self.min_cluster_size,
            min_samples=self.min_samples,
            cluster_selection_method=self.selection,
            copy=True,
        )
        return np.asarray(model.fit_predict(points), dtype=np.int64)


@stages.register("topics.cluster.kmeans.v1")
class KMeansClusterer:
    """A fixed number of topics, no outliers."""

    def __init__(self, *, topics: int = 20, seed: int = 0) -> None:
        self.topics = topics
        self.seed = seed

    def fit_predict(self, points: FloatArray) -> IntArray:
        from sklearn.cluster import KMeans

        k = min(self.topics, points.shape[0])
        return np.asarray(
            KMeans(n_clusters=k, random_state=self.seed, n_init=3).fit_predict(points), np.int64
        )


def create_stage(spec: Mapping[str, Any]) -> Any:
    """A fresh stage object from ``{"name": ..., **config}`` (stages are stateful: never shared)."""
    config = dict(spec)
    name = config.pop("name")
    factory = stages.get(name)
    try:
        return factory(**config)
    except TypeError as exc:
        raise ValueError(f"bad config for topic stage {name!r}: {exc}") from exc


# ------------------------------------------------------------------------------------------ tokenizer

_WORD = re.compile(r"[^\W\d_](?:[\w\u200c\u200d'’-]*[^\W_])?", re.UNICODE)
_THAI = re.compile(r"[\u0e00-\u0e7f]")
_SEPARATOR = re.compile(r"[^\s'’\u200c\u200d-]")
# pythainlp's list also drops content words (ส่ง "send", ช้า "slow"); topics need only the function words.
_THAI_STOP_WORDS = frozenset(
    [
        "ค่ะ",
        "ครับ",
        "คะ",
        "นะ",
        "จ้ะ",
        "จ้า",
        "จ้ะ",
        "มาก",
        "ที่",
        "และ",
        "ของ",
        "ใน",
        "ได้",
        "ให้",
        "ไป",
        "มา",
        "แล้ว",
        "ก็",
        "ว่า",
        "ไม่",
        "เป็น",
        "มี",
        "กับ",
        "จะ",
        "คือ",
        "นี้",
        "นั้น",
        "เลย",
        "อยู่",
        "ฉัน",
        "ผม",
        "เรา",
        "เขา",
        "คุณ",
        "หนู",
        "ด้วย",
        "แต่",
        "หรือ",
        "ถ้า",
        "เพราะ",
        "ยัง",
        "อีก",
        "ทุก",
        "ๆ",
        "การ",
        "ความ",
        "โดย",
        "ซึ่ง",
        "อย่าง",
        "เมื่อ",
        "จาก",
        "ถึง",
        "ดิฉัน",
        "เค้า",
        "มัน",
        "ค่า",
        "ครั้ง",
        "ตอน",
        "แค่",
        "เอง",
        "ละ",
        "สิ",
        "ซะ",
        "เนี่ย",
    ]
)
_SPACY_STOP_LANGUAGES = ("en", "ar", "fa", "de", "fr", "es", "it", "pt", "nl", "tr", "ru", "id", "hi", "ur")
_EXTRA_STOP_WORDS = {
    # Feedback filler the stop lists miss, and the masks the normaliser puts in place of URLs and handles.
    "en": {
        "http",
        "user",
        "email",
        "really",
        "also",
        "get",
        "got",
        "would",
        "could",
        "one",
        "even",
        "im",
        "ive",
    },
    "ar": {"http", "user", "email", "ال", "يا", "اللي", "انا", "والله", "جدا"},
    "fa": {"http", "user", "email", "خیلی", "هم", "رو", "اینکه", "میشه", "بود", "هست", "کنید", "کردم"},
}


class MultilingualTokenizer:
    """Words of a sentence in any language, lower-cased, without stop words, numbers or punctuation."""

    def __init__(self) -> None:
        self._stop_words: dict[str, frozenset[str]] = {}
        self._thai: Callable[[str], list[str]] | None = None
        self._lock = threading.Lock()

    def __call__(self, text: str, language: str | None) -> list[str]:
        return [word for run in self.runs(text, language) for word in run]

    def runs(self, text: str, language: str | None) -> list[list[str]]:
        """The content words of a sentence in runs: a stop word, number or punctuation ends a run."""
        from nlp.text.normalise import normalise_text

        text = normalise_text(text)[0].lower()
        stop = self.stop_words(language)
        runs: list[list[str]] = [[]]
        for raw in self._pieces(text):
            word = raw.strip("'’-\u200c")
            if language == "ar" and word.startswith("ال") and len(word) > 4:
                word = word[2:]  # the definite article: التوصيل and توصيل are one word for a topic
            if raw and len(word) > 1 and word not in stop and not word.isdigit():
                runs[-1].append(word)
            elif runs[-1]:
                runs.append([])
        return [run for run in runs if run]

    def _pieces(self, text: str) -> list[str]:
        """Words in order, with an empty string wherever punctuation or a number separates two words."""
        pieces: list[str] = []
        for chunk in re.split(r"([\u0e00-\u0e7f]+)", text):
            if _THAI.search(chunk):
                pieces.extend(w for w in self._thai_tokenizer()(chunk) if _THAI.search(w))
                continue
            position = 0
            for match in _WORD.finditer(chunk):
                if _SEPARATOR.search(chunk[position : match.start()]):
                    pieces.append("")
                pieces.append(match.group())
                position = match.end()
            if (chunk and not chunk.strip()) or _SEPARATOR.search(chunk[position:]):
                pieces.append("")  # Thai writes a space where other languages put a comma
        return pieces

    def stop_words(self, language: str | None) -> frozenset[str]:
        """Stop words for a language (every known list when the language is unknown)."""
        key = language or "*"
        with self._lock:
            if key not in self._stop_words:
                languages = (*_SPACY_STOP_LANGUAGES, "th") if language is None else (language,)
                words: set[str] = set()
                for code in languages:
                    words |= _load_stop_words(code)
                self._stop_words[key] = frozenset(words)
            return self._stop_words[key]

    def _thai_tokenizer(self) -> Callable[[str], list[str]]:
        if self._thai is None:
            from pythainlp.tokenize import word_tokenize

            words = _thai_dictionary()
            self._thai = lambda t: word_tokenize(t, engine="newmm", keep_whitespace=False, custom_dict=words)
        return self._thai


# Loanwords of customer feedback that pythainlp's dictionary lacks: without them "แอป" (app) splits into
# "แอ" + "ป" and a keyword list shows the fragment "แอ".
THAI_CX_WORDS = frozenset(
    [
        "แอป",
        "แครช",
        "รีฟันด์",
        "โอทีพี",
        "เช็คเอาท์",
        "เช็คเอาต์",
        "แอพพลิเคชั่น",
        "โปรโมโค้ด",
        "ล็อคอิน",
        "รีวิว",
        "พรีออเดอร์",
        "แทร็กกิ้ง",
        "แทรคกิ้ง",
        "อัปเดต",
        "อัพเดท",
    ]
)


@functools.cache
def _thai_dictionary() -> Any:
    """pythainlp's word list with the feedback loanwords, as the trie newmm reads (built once, ~1 s)."""
    from pythainlp.corpus.common import thai_words
    from pythainlp.util import dict_trie

    return dict_trie(set(thai_words()) | THAI_CX_WORDS)


def _load_stop_words(language: str) -> set[str]:
    from nlp.text.normalise import LETTER_MAP

    # Text is compared after normalisation (Arabic ي and ك become ی and ک), so the lists must be too.
    return {word.translate(LETTER_MAP) for word in _raw_stop_words(language)}


def _raw_stop_words(language: str) -> set[str]:
    words = set(_EXTRA_STOP_WORDS.get(language, set()))
    if language == "th":
        return words | _THAI_STOP_WORDS
    if language in _SPACY_STOP_LANGUAGES:
        import importlib

        module = importlib.import_module(f"spacy.lang.{language}.stop_words")
        words |= {w.lower() for w in module.STOP_WORDS}
        if language == "fa":
            words |= {w.replace("\u200c", "") for w in module.STOP_WORDS}
    return words


# ------------------------------------------------------------------------------------- representation


@stages.register("topics.represent.ctfidf.v1")
class ClassTfidf:
    """BERTopic's c-TF-IDF: a word weighs tf(word, topic) · log(1 + A / f(word)), A the mean topic length."""

    def __init__(self, *, top_words: int = 10, min_count: int = 2) -> None:
        self.top_words = top_words
        self.min_count = min_count

    def keywords(
        self, documents: Mapping[int, Sequence[Sequence[str]]]
    ) -> dict[int, list[tuple[str, float]]]:
        """The top words of each topic with their weights, from each topic's tokenised sentences."""
        counts = {topic: Counter(w for doc in docs for w in doc) for topic, docs in documents.items()}
        total = Counter[str]()
        for counter in counts.values():
            total.update(counter)
        if not counts:
            return {}
        average_length = sum(total.values()) / len(counts)
        result: dict[int, list[tuple[str, float]]] = {}
        for topic, counter in counts.items():
            size = sum(counter.values()) or 1
            weights = {
                word: (n / size) * math.log(1 + average_length / total[word])
                for word, n in counter.items()
                if n >= self.min_count or len(counter) < self.top_words
            }
            ranked = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[: self.top_words]
            result[topic] = [(word, round(weight, 5)) for word, weight in ranked]
        return result


# ---------------------------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class TopicConfig:
    """Which stage does each step, and the knobs of the steps between them."""

    align: Mapping[str, Any] = field(default_factory=lambda: {"name": "topics.align.language_standardise.v1"})
    # Chosen on the BANKING77 and MAMS train splits (scripts/evaluate.py --only topics --topic-grid).
    reduce: Mapping[str, Any] = field(
        default_factory=lambda: {"name": "topics.reduce.umap.v1", "dimensions": 5, "neighbours": 15}
    )
    cluster: Mapping[str, Any] = field(
        default_factory=lambda: {
            "name": "topics.cluster.hdbscan.v1",
            "min_cluster_size": 8,
            "min_samples": 3,
            "selection": "eom",
        }
    )
    represent: Mapping[str, Any] = field(default_factory=lambda: {"name": "topics.represent.ctfidf.v1"})
    # Who runs the steps: these hand-written stages, or topics.engine.bertopic.v1 (nlp/topics_bertopic.py).
    engine: Mapping[str, Any] = field(default_factory=lambda: {"name": "topics.engine.cxmine.v1"})
    merge_similarity: float = 0.9
    cross_language_similarity: float = 0.25
    cross_language_overlap: float = 0.2
    assign_deviations: float = 3.0
    max_fit_sentences: int = 20_000
    seed: int = 0

    def to_document(self) -> dict[str, Any]:
        """The config as plain JSON."""
        return {
            "align": dict(self.align),
            "reduce": dict(self.reduce),
            "cluster": dict(self.cluster),
            "represent": dict(self.represent),
            "engine": dict(self.engine),
            "merge_similarity": self.merge_similarity,
            "cross_language_similarity": self.cross_language_similarity,
            "cross_language_overlap": self.cross_language_overlap,
            "assign_deviations": self.assign_deviations,
            "max_fit_sentences": self.max_fit_sentences,
            "seed": self.seed,
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> TopicConfig:
        """A config from plain JSON; unknown stage names fail listing the known ones."""
        known = {"align", "reduce", "cluster", "represent", "merge_similarity", "assign_deviations"}
        known |= {"cross_language_similarity", "cross_language_overlap"}
        known |= {"max_fit_sentences", "seed", "engine"}
        unknown = set(document) - known
        if unknown:
            raise ValueError(f"unknown topic settings {sorted(unknown)}; known: {sorted(known)}")
        config = cls(**{**cls().to_document(), **document})
        for step in ("align", "reduce", "cluster", "represent", "engine"):
            spec = getattr(config, step)
            if not isinstance(spec, Mapping) or "name" not in spec:
                raise ValueError(f"topic setting {step!r} needs a stage name")
            name = spec["name"]
            if not str(name).startswith(f"topics.{step}."):
                raise ValueError(f"{name!r} is not a {step} stage")
            try:
                stages.get(name)
            except UnknownComponentError as exc:
                raise ValueError(str(exc)) from exc
        return config


@dataclass
class TopicSpace:
    """What online assignment needs: the aligner's state and each topic's unit centroid."""

    aligner: Aligner
    centroids: FloatArray
    topic_keys: list[int]
    assign_similarity: float

    def assign(self, embeddings: FloatArray, languages: Sequence[str | None]) -> tuple[IntArray, FloatArray]:
        """Each embedding's nearest topic key (OUTLIER when below ``assign_similarity``) and its cosine."""
        if embeddings.shape[0] == 0 or not self.topic_keys:
            return np.full(embeddings.shape[0], OUTLIER, dtype=np.int64), np.zeros(
                embeddings.shape[0], np.float32
            )
        aligned = self.aligner.transform(embeddings, languages)
        similarity = aligned @ self.centroids.T
        best = similarity.argmax(axis=1)
        best_similarity = similarity[np.arange(len(best)), best].astype(np.float32)
        keys = np.asarray(self.topic_keys, dtype=np.int64)[best]
        return np.where(best_similarity >= self.assign_similarity, keys, OUTLIER), best_similarity

    def to_bytes(self) -> bytes:
        """A portable serialisation (numpy .npz, no pickle)."""
        state = self.aligner.state()
        arrays: dict[str, Any] = {
            "centroids": self.centroids,
            "topic_keys": np.asarray(self.topic_keys, dtype=np.int64),
            "assign_similarity": np.float32(self.assign_similarity),
            "aligner": np.asarray(type(self.aligner).__name__),
        }
        for name in ("means", "spreads"):
            table = state.get(name) or {}
            arrays[f"{name}_languages"] = np.asarray(sorted(table), dtype=str)
            arrays[name] = (
                np.vstack([table[k] for k in sorted(table)]) if table else np.zeros((0, 0), np.float32)
            )
        for name in ("overall", "overall_spread"):
            arrays[name] = np.asarray(state[name] if state.get(name) is not None else [], np.float32)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TopicSpace:
        """Read back what ``to_bytes`` wrote."""
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:

            def table(name: str) -> dict[str, FloatArray]:
                return {
                    str(k): v.astype(np.float32)
                    for k, v in zip(arrays[f"{name}_languages"], arrays[name], strict=True)
                }

            kind = str(arrays["aligner"])
            aligner: Aligner
            if kind == "NoAlignment":
                aligner = NoAlignment()
            else:
                state = {
                    "means": table("means"),
                    "overall": arrays["overall"].astype(np.float32),
                    "spreads": table("spreads"),
                    "overall_spread": arrays["overall_spread"].astype(np.float32)
                    if arrays["overall_spread"].size
                    else None,
                }
                factory = LanguageStandardisation if kind == "LanguageStandardisation" else LanguageCentering
                aligner = factory.from_state(state)
            return cls(
                aligner=aligner,
                centroids=arrays["centroids"].astype(np.float32),
                topic_keys=[int(k) for k in arrays["topic_keys"]],
                assign_similarity=float(arrays["assign_similarity"]),
            )


@dataclass
class FoundTopic:
    """One topic of a fit, numbered 0..k-1 by size."""

    index: int
    size: int
    centroid: FloatArray
    raw_centroid: FloatArray
    keywords: list[tuple[str, float]]
    representatives: list[int]
    languages: dict[str, int]
    merged_from: int = 1


@dataclass
class TopicFit:
    """The outcome of a fit: a topic per sentence (OUTLIER for none) and the topics."""

    labels: IntArray
    similarities: FloatArray
    topics: list[FoundTopic]
    space: TopicSpace
    fitted_on: int
    outliers_before_reduction: int
    """Outliers of the clustered sample before reduction (HDBSCAN's, and members too far from their topic)."""
    outliers_reduced: int
    """Of those, how many joined their nearest topic (sentences outside the sample are simply assigned)."""
    clusters_before_merge: int

    @property
    def outliers(self) -> int:
        """Sentences left in no topic."""
        return int((self.labels == OUTLIER).sum())


ProgressCallback = Callable[[str], None]


def fit_topics(
    embeddings: FloatArray,
    texts: Sequence[str],
    languages: Sequence[str | None],
    *,
    config: TopicConfig | None = None,
    tokenizer: Callable[[str, str | None], list[str]] | None = None,
    on_stage: ProgressCallback | None = None,
) -> TopicFit:
    """Fit topics on sentence embeddings (one row per text) and assign every sentence."""
    config = config or TopicConfig()
    if config.engine["name"] != "topics.engine.cxmine.v1":
        engine = create_stage(config.engine)
        fit: TopicFit = engine.fit(
            embeddings, texts, languages, config=config, tokenizer=tokenizer, on_stage=on_stage
        )
        return fit
    report = on_stage or (lambda _stage: None)
    n = embeddings.shape[0]
    embeddings = unit_rows(np.asarray(embeddings, dtype=np.float32))
    rng = np.random.default_rng(config.seed)
    fit_rows = (
        np.sort(rng.choice(n, size=config.max_fit_sentences, replace=False))
        if n > config.max_fit_sentences
        else np.arange(n)
    )
    fit_languages = [languages[i] for i in fit_rows]

    report("align")
    aligner: Aligner = create_stage(config.align).fit(embeddings[fit_rows], fit_languages)
    aligned = aligner.transform(embeddings, languages)
    report("reduce")
    reduced = (
        create_stage(config.reduce).fit_transform(aligned[fit_rows])
        if len(fit_rows) > 2
        else aligned[fit_rows]
    )
    report("cluster")
    fit_labels = (
        create_stage(config.cluster).fit_predict(reduced)
        if len(fit_rows) > 2
        else np.full(len(fit_rows), OUTLIER)
    )
    clusters = sorted(set(fit_labels.tolist()) - {OUTLIER})
    outliers_in_fit = int((fit_labels == OUTLIER).sum())
    outliers_reduced = 0

    report("merge")
    centroids = (
        np.vstack([aligned[fit_rows][fit_labels == c].mean(axis=0) for c in clusters])
        if clusters
        else np.zeros((0, aligned.shape[1]), np.float32)
    )
    groups = _merge_groups(unit_rows(centroids), config.merge_similarity) if clusters else []
    if len(groups) > 1 and config.cross_language_similarity < 1.0:
        groups = _merge_across_languages(
            groups,
            aligned=aligned[fit_rows],
            labels=fit_labels,
            clusters=clusters,
            languages=fit_languages,
            min_similarity=config.cross_language_similarity,
            max_overlap=config.cross_language_overlap,
        )
    cluster_to_group = {clusters[member]: g for g, group in enumerate(groups) for member in group}

    report("assign")
    merged_centroids = (
        unit_rows(
            np.vstack(
                [
                    aligned[fit_rows][np.isin(fit_labels, [clusters[m] for m in group])].mean(axis=0)
                    for group in groups
                ]
            )
        )
        if groups
        else np.zeros((0, aligned.shape[1]), np.float32)
    )
    labels = np.full(n, OUTLIER, dtype=np.int64)
    labels[fit_rows] = [cluster_to_group.get(int(c), OUTLIER) for c in fit_labels]
    assign_similarity = 1.0
    if groups:
        similarity = aligned @ merged_centroids.T
        nearest = similarity.argmax(axis=1)
        nearest_similarity = similarity[np.arange(n), nearest].astype(np.float32)
        member = labels != OUTLIER
        # Membership is decided in the full aligned space: a sentence belongs to its nearest topic when it
        # is about as close as that topic's members usually are (median - k robust deviations). So an
        # outlier close to a topic joins it, and a point that the reduced space misplaced leaves it.
        own = similarity[np.flatnonzero(member), labels[member]]
        if own.size:
            median = float(np.median(own))
            spread = 1.4826 * float(np.median(np.abs(own - median)))
            assign_similarity = median - config.assign_deviations * spread
        misplaced = member & (similarity[np.arange(n), np.maximum(labels, 0)] < assign_similarity)
        labels[misplaced] = OUTLIER
        outliers_in_fit = int((labels[fit_rows] == OUTLIER).sum())
        reducible = (labels == OUTLIER) & (nearest_similarity >= assign_similarity)
        outliers_reduced = int(reducible[fit_rows].sum())
        labels[reducible] = nearest[reducible]
        similarities = np.where(
            labels == OUTLIER, nearest_similarity, similarity[np.arange(n), np.maximum(labels, 0)]
        )
    else:
        similarities = np.zeros(n, np.float32)

    # Renumber by size, largest first, and recompute centroids over every member.
    order = sorted(range(len(groups)), key=lambda g: (-int((labels == g).sum()), g))
    order = [g for g in order if (labels == g).any()]
    renumber = {old: new for new, old in enumerate(order)}
    labels = np.asarray([renumber.get(int(label), OUTLIER) for label in labels], dtype=np.int64)

    report("represent")
    tokenize = tokenizer or MultilingualTokenizer()
    documents: dict[int, list[list[str]]] = defaultdict(list)
    for index in np.flatnonzero(labels != OUTLIER).tolist():
        documents[int(labels[index])].append(tokenize(texts[index], languages[index]))
    keywords = create_stage(config.represent).keywords(documents)
    topics = []
    for new, old in enumerate(order):
        members = np.flatnonzero(labels == new)
        topics.append(
            found_topic(
                index=new,
                members=members,
                centroid=unit_rows(aligned[members].mean(axis=0, keepdims=True))[0],
                aligned=aligned,
                embeddings=embeddings,
                languages=languages,
                keywords=keywords.get(new, []),
                merged_from=len(groups[old]),
            )
        )
    final_centroids = (
        np.vstack([t.centroid for t in topics]) if topics else np.zeros((0, aligned.shape[1]), np.float32)
    )
    if topics:
        similarities = np.where(
            labels == OUTLIER, similarities, (aligned * final_centroids[np.maximum(labels, 0)]).sum(axis=1)
        ).astype(np.float32)
    space = TopicSpace(
        aligner=aligner,
        centroids=final_centroids,
        topic_keys=list(range(len(topics))),
        assign_similarity=assign_similarity,
    )
    return TopicFit(
        labels=labels,
        similarities=similarities,
        topics=topics,
        space=space,
        fitted_on=len(fit_rows),
        outliers_before_reduction=outliers_in_fit,
        outliers_reduced=outliers_reduced,
        clusters_before_merge=len(clusters),
    )


def found_topic(
    *,
    index: int,
    members: IntArray,
    centroid: FloatArray,
    aligned: FloatArray,
    embeddings: FloatArray,
    languages: Sequence[str | None],
    keywords: list[tuple[str, float]],
    merged_from: int,
) -> FoundTopic:
    """A fitted topic's record: size, centroids (aligned and raw), its five most central members, languages."""
    closeness = aligned[members] @ centroid
    return FoundTopic(
        index=index,
        size=len(members),
        centroid=centroid,
        raw_centroid=unit_rows(embeddings[members].mean(axis=0, keepdims=True))[0],
        keywords=keywords,
        representatives=[int(members[i]) for i in np.argsort(-closeness)[:5]],
        languages=dict(Counter(languages[i] or "und" for i in members.tolist()).most_common()),
        merged_from=merged_from,
    )


def _merge_across_languages(
    groups: list[list[int]],
    *,
    aligned: FloatArray,
    labels: IntArray,
    clusters: list[int],
    languages: Sequence[str | None],
    min_similarity: float,
    max_overlap: float,
) -> list[list[int]]:
    """Join groups split by language: mutual nearest neighbours whose languages barely overlap.

    A theme that the aligner did not fully bring together shows up as two clusters that are each other's
    nearest (cosine ≥ ``min_similarity``) while written in different languages (the shares of their
    language mixes overlap by at most ``max_overlap``). Repeated until nothing changes.
    """
    language_list = [language or "und" for language in languages]
    for _ in range(len(groups)):
        members = [np.flatnonzero(np.isin(labels, [clusters[m] for m in group])) for group in groups]
        centroids = unit_rows(np.vstack([aligned[rows].mean(axis=0) for rows in members]))
        mixes = []
        for rows in members:
            counts = Counter(language_list[i] for i in rows.tolist())
            mixes.append({language: n / len(rows) for language, n in counts.items()})
        similarity = centroids @ centroids.T
        np.fill_diagonal(similarity, -np.inf)
        nearest = similarity.argmax(axis=1)
        joined: set[int] = set()
        merged: list[list[int]] = []
        for a, b in enumerate(nearest.tolist()):
            if a >= b or nearest[b] != a or a in joined or b in joined:
                continue
            overlap = sum(min(share, mixes[b].get(language, 0.0)) for language, share in mixes[a].items())
            if similarity[a, b] >= min_similarity and overlap <= max_overlap:
                merged.append(groups[a] + groups[b])
                joined |= {a, b}
        if not merged:
            return groups
        groups = sorted(merged + [g for i, g in enumerate(groups) if i not in joined], key=min)
    return groups


def _merge_groups(centroids: FloatArray, threshold: float) -> list[list[int]]:
    """Clusters joined (single linkage) while their centroids' cosine reaches ``threshold``."""
    parent = list(range(len(centroids)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    similarity = centroids @ centroids.T
    upper_i, upper_j = np.triu_indices(len(centroids), k=1)
    for a, b in zip(upper_i.tolist(), upper_j.tolist(), strict=True):
        if similarity[a, b] >= threshold:
            parent[root(a)] = root(b)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(centroids)):
        groups[root(i)].append(i)
    return sorted(groups.values(), key=lambda g: g[0])


# ----------------------------------------------------------------------------------- stable topic ids


@dataclass(frozen=True)
class TopicSnapshot:
    """A topic as a refit sees it: centroid (raw embedding space), vocabulary and member sentences."""

    key: int
    centroid: FloatArray
    vocabulary: Mapping[str, float]
    members: frozenset[int] = frozenset()


@dataclass(frozen=True)
class LineageEvent:
    """What a refit did: ``current`` is a new topic's key, ``previous`` an old topic's id.

    continued (current keeps previous's id), born (current, no previous), split (current split off
    previous), merged (previous merged into current), died (previous, no current).
    """

    event: str
    current: int | None
    previous: int | None
    similarity: float | None


@dataclass
class Matching:
    """New topic key → the previous id it keeps (absent: it gets a new id), and the lineage events."""

    kept: dict[int, int]
    events: list[LineageEvent]


def vocabulary_similarity(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Cosine of two keyword-weight vectors."""
    dot = sum(weight * b.get(word, 0.0) for word, weight in a.items())
    norm = math.sqrt(sum(w * w for w in a.values())) * math.sqrt(sum(w * w for w in b.values()))
    return dot / norm if norm else 0.0


def match_topics(
    previous: Sequence[TopicSnapshot],
    current: Sequence[TopicSnapshot],
    *,
    min_overlap: float = 0.3,
    min_centroid: float = 0.9,
    min_vocabulary: float = 0.2,
) -> Matching:
    """Carry topic ids over a refit.

    A previous topic T and a new topic C are linked when at least ``min_overlap`` of T's sentences that
    the refit saw went to C, or of C's sentences came from T; or, when they share no sentence, when both
    their centroids and their vocabularies agree (cosines ≥ ``min_centroid`` and ≥ ``min_vocabulary``).
    Links are taken strongest first, and the first link of two unmatched topics carries T's id to C. A
    new topic left without an id split off its strongest parent, or was born; a previous topic left
    without a successor merged into its strongest linked child, or died.
    """
    seen = frozenset().union(*(c.members for c in current)) if current else frozenset()
    strength: dict[tuple[int, int], float] = {}
    similarity: dict[tuple[int, int], float] = {}
    for t in previous:
        t_seen = len(t.members & seen)
        for c in current:
            shared = len(t.members & c.members)
            overlap = max(shared / t_seen if t_seen else 0.0, shared / len(c.members) if c.members else 0.0)
            if overlap >= min_overlap:
                strength[(t.key, c.key)] = 1.0 + overlap
                similarity[(t.key, c.key)] = overlap
                continue
            if shared:
                continue
            centroid = float(t.centroid @ c.centroid)
            vocabulary = (
                vocabulary_similarity(t.vocabulary, c.vocabulary) if centroid >= min_centroid else 0.0
            )
            if centroid >= min_centroid and vocabulary >= min_vocabulary:
                strength[(t.key, c.key)] = centroid * vocabulary
                similarity[(t.key, c.key)] = centroid
    kept: dict[int, int] = {}
    taken: set[int] = set()
    for (t_key, c_key), _ in sorted(strength.items(), key=lambda kv: (-kv[1], kv[0])):
        if t_key not in taken and c_key not in kept:
            kept[c_key] = t_key
            taken.add(t_key)
    events: list[LineageEvent] = []
    for c in current:
        if c.key in kept:
            events.append(LineageEvent("continued", c.key, kept[c.key], similarity[(kept[c.key], c.key)]))
            continue
        parents = sorted(((w, t) for (t, ck), w in strength.items() if ck == c.key), reverse=True)
        if parents:
            events.append(LineageEvent("split", c.key, parents[0][1], similarity[(parents[0][1], c.key)]))
        else:
            events.append(LineageEvent("born", c.key, None, None))
    for t in previous:
        if t.key in taken:
            continue
        children = sorted(((w, ck) for (tk, ck), w in strength.items() if tk == t.key), reverse=True)
        if children:
            events.append(LineageEvent("merged", children[0][1], t.key, similarity[(t.key, children[0][1])]))
        else:
            events.append(LineageEvent("died", None, t.key, None))
    return Matching(kept=kept, events=events)
