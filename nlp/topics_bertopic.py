"""Topic engines: the hand-written stages of ``nlp.topics``, or the real BERTopic package on cxmine's embeddings.

``TopicConfig.engine`` names the engine (``fit_topics`` dispatches on it):

- ``topics.engine.cxmine.v1`` (the default): ``nlp.topics.fit_topics``' own stages.
- ``topics.engine.bertopic.v1``: ``bertopic.BERTopic`` (``pip install 'cxmine[topics]'``), given

  - cxmine's **precomputed, language-aligned sentence embeddings** (``fit_transform(docs, embeddings)``); no
    embedding model is loaded for them, BERTopic's default sentence-transformers model is never fetched;
  - cxmine's **reducer and clusterer** stage objects (``TopicConfig.reduce`` / ``.cluster``, UMAP and
    HDBSCAN with cxmine's settings), behind the ``fit_transform`` / ``fit`` + ``labels_`` interface BERTopic
    takes from any model;
  - a ``CountVectorizer`` whose tokenizer is cxmine's ``MultilingualTokenizer`` (each sentence with its own
    language: BERTopic joins a topic's sentences into one text, so every sentence carries its language in a
    private-use tag that the tokenizer reads and the embedder strips), and BERTopic's
    ``ClassTfidfTransformer(reduce_frequent_words=True)``;
  - topic merging by cxmine's rule (``merge="cxmine"``: clusters whose centroids are nearly one direction,
    or one theme split by language) applied with ``BERTopic.merge_topics``; or BERTopic's own
    ``nr_topics="auto"``; or none;
  - ``BERTopic.reduce_outliers`` (``strategy="embeddings"`` by default) with cxmine's adaptive threshold
    (the median cosine of a topic's members to it, less ``TopicConfig.assign_deviations`` robust deviations)
    unless ``outlier_threshold`` is given;
  - a representation model for the keywords: ``"ctfidf"`` (BERTopic's c-TF-IDF words), ``"keybert"``
    (``KeyBERTInspired``), ``"mmr"`` (``MaximalMarginalRelevance``), ``"keybert+mmr"``, or ``"pos"``
    (``PartOfSpeech``, needs an installed spaCy pipeline). KeyBERTInspired and MMR embed candidate words
    (and KeyBERTInspired a topic's representative sentences): they need ``encoder``, one of cxmine's own
    encoders (``{"name": "encoder.onnx.v1", "path": ...}``), wrapped as a BERTopic ``BaseEmbedder``.

What BERTopic returns is turned into cxmine's ``TopicFit``: topics renumbered by size, centroids in the
aligned and the raw space, representatives, languages, and a ``TopicSpace`` for online assignment. As in
``fit_topics``, BERTopic fits on at most ``TopicConfig.max_fit_sentences`` sentences (a seeded sample) and
the rest are assigned to the nearest topic centroid, which is also how new feedback is assigned between
refits.

``BERTopic.merge_models`` and ``topics_over_time`` are not used: a refit fits every stored sentence afresh
and ``nlp.topics.match_topics`` carries the topic ids over (merge_models only adds a new model's topics
that are unlike the old ones, with no split/merge lineage), and the weekly trends are counts of sentences
per topic in the database (``service.analytics``), which a refit's BERTopic object does not outlive.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from nlp.topics import (
    OUTLIER,
    FloatArray,
    IntArray,
    MultilingualTokenizer,
    ProgressCallback,
    TopicConfig,
    TopicFit,
    TopicSpace,
    _merge_across_languages,
    _merge_groups,
    create_stage,
    fit_topics,
    found_topic,
    stages,
    unit_rows,
)

EXTRA = "pip install 'cxmine[topics]'"
REPRESENTATIONS = ("ctfidf", "keybert", "mmr", "keybert+mmr", "pos")
OUTLIER_STRATEGIES = ("embeddings", "c-tf-idf", "distributions", "none")
MERGES = ("cxmine", "auto", "none")
# A sentence's language travels with it through BERTopic in a private-use tag: "\ue000en\ue001 text".
_TAG = re.compile(r"\ue000([^\ue001]*)\ue001")

Tokenize = Callable[[str, str | None], list[str]]


def load_bertopic(module: str = "bertopic") -> Any:
    """``bertopic`` (or one of its modules), or an ImportError that names the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"topics.engine.bertopic.v1 needs the bertopic package: {EXTRA} ({exc})") from exc


def bertopic_available() -> bool:
    """Whether the ``topics`` extra is installed."""
    return importlib.util.find_spec("bertopic") is not None


@stages.register("topics.engine.cxmine.v1")
class HandWrittenEngine:
    """The hand-written stages of ``nlp.topics`` (align, reduce, cluster, merge, assign, represent)."""

    def fit(
        self,
        embeddings: FloatArray,
        texts: Sequence[str],
        languages: Sequence[str | None],
        *,
        config: TopicConfig,
        tokenizer: Tokenize | None = None,
        on_stage: ProgressCallback | None = None,
    ) -> TopicFit:
        """``nlp.topics.fit_topics`` with this engine."""
        config = replace(config, engine={"name": "topics.engine.cxmine.v1"})
        return fit_topics(embeddings, texts, languages, config=config, tokenizer=tokenizer, on_stage=on_stage)


# ------------------------------------------------------------------------------------------- adapters


def tagged(text: str, language: str | None) -> str:
    """``text`` with its language in front, in a tag that the tokenizer reads and the embedder strips."""
    return f"\ue000{language or ''}\ue001 {text}"


def untagged(text: str) -> str:
    """``text`` without any language tags."""
    return _TAG.sub(" ", text).strip()


class TaggedTokenizer:
    """A CountVectorizer tokenizer: cxmine's tokenizer over each tagged sentence, with that sentence's language.

    Tokens of a sentence are memoised: BERTopic tokenizes every sentence again for representative documents.
    """

    def __init__(self, tokenize: Tokenize) -> None:
        self.tokenize = tokenize
        self._memo: dict[tuple[str, str | None], list[str]] = {}

    def __call__(self, text: str) -> list[str]:
        parts = _TAG.split(text)
        words: list[str] = []
        if parts[0].strip():
            words.extend(self._words(parts[0], None))
        for index in range(1, len(parts) - 1, 2):
            segment = parts[index + 1]
            if segment.strip():
                words.extend(self._words(segment, parts[index] or None))
        return words

    def _words(self, text: str, language: str | None) -> list[str]:
        key = (text.strip(), language)
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = self.tokenize(key[0], language)
        return found


class StageReducer:
    """A cxmine reducer stage as BERTopic's ``umap_model`` (it calls ``fit_transform``)."""

    def __init__(self, stage: Any, report: ProgressCallback) -> None:
        self.stage = stage
        self.report = report

    def fit_transform(self, embeddings: FloatArray, y: Any = None) -> FloatArray:
        self.report("reduce")
        return np.asarray(self.stage.fit_transform(np.asarray(embeddings, np.float32)), np.float32)

    def transform(self, embeddings: FloatArray) -> FloatArray:
        raise NotImplementedError(
            "cxmine assigns sentences outside the fit by topic centroid (TopicSpace.assign), not by BERTopic.transform"
        )


class StageClusterer:
    """A cxmine clusterer stage as BERTopic's ``hdbscan_model`` (``fit`` then ``labels_``)."""

    def __init__(self, stage: Any, report: ProgressCallback) -> None:
        self.stage = stage
        self.report = report
        self.labels_: IntArray = np.zeros(0, np.int64)

    def fit(self, points: FloatArray, y: Any = None) -> StageClusterer:
        self.report("cluster")
        self.labels_ = np.asarray(self.stage.fit_predict(np.asarray(points, np.float32)), np.int64)
        return self

    def predict(self, points: FloatArray) -> IntArray:
        raise NotImplementedError("cxmine assigns new sentences by topic centroid (TopicSpace.assign)")


def make_embedder(encoder: Any) -> Any:
    """cxmine's encoder (``EncodeSentences`` or a backend with ``embed``) as a BERTopic ``BaseEmbedder``."""
    backend_module = load_bertopic("bertopic.backend")

    class CxmineEmbedder(backend_module.BaseEmbedder):  # type: ignore[misc,name-defined]
        """Sentences and words through cxmine's encoder (language tags stripped first)."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def embed(self, documents: list[str], verbose: bool = False) -> FloatArray:
            texts = [untagged(str(d)) for d in documents]
            rows = [i for i, text in enumerate(texts) if text]
            embed = getattr(self.encoder, "embed_texts", None) or self.encoder.embed
            found = np.asarray(embed([texts[i] for i in rows]), np.float32) if rows else None
            # BERTopic pads a topic's candidate words with "": a zero vector, similar to nothing.
            result = np.zeros((len(texts), found.shape[1] if found is not None else 1), np.float32)
            if found is not None:
                result[rows] = found
            return result

    return CxmineEmbedder()


# --------------------------------------------------------------------------------------------- engine


@stages.register("topics.engine.bertopic.v1")
class BERTopicEngine:
    """Topics fitted by ``bertopic.BERTopic`` on cxmine's embeddings, stages and tokenizer (module docstring)."""

    def __init__(
        self,
        *,
        representation: str = "ctfidf",
        merge: str = "cxmine",
        outliers: str = "embeddings",
        outlier_threshold: float | None = None,
        top_words: int = 10,
        mmr_diversity: float = 0.3,
        encoder: Mapping[str, Any] | None = None,
        pos_model: str = "en_core_web_sm",
        verbose: bool = False,
    ) -> None:
        if representation not in REPRESENTATIONS:
            raise ValueError(f"representation must be one of {REPRESENTATIONS}, not {representation!r}")
        if merge not in MERGES:
            raise ValueError(f"merge must be one of {MERGES}, not {merge!r}")
        if outliers not in OUTLIER_STRATEGIES:
            raise ValueError(f"outliers must be one of {OUTLIER_STRATEGIES}, not {outliers!r}")
        if representation in ("keybert", "mmr", "keybert+mmr") and encoder is None:
            raise ValueError(
                f"representation {representation!r} embeds words: give an encoder, "
                'e.g. {"name": "encoder.onnx.v1", "path": "var/models/e5-small-onnx"}'
            )
        self.representation = representation
        self.merge = merge
        self.outliers = outliers
        self.outlier_threshold = outlier_threshold
        self.top_words = top_words
        self.mmr_diversity = mmr_diversity
        self.encoder_spec = dict(encoder) if encoder is not None else None
        self.pos_model = pos_model
        self.verbose = verbose
        self.encoder: Any = None
        self.model: Any = None
        """The fitted ``BERTopic`` of the last fit (for inspection; cxmine keeps only the ``TopicFit``)."""

    def representation_model(self) -> Any:
        """The BERTopic representation model(s) for ``self.representation`` (None: c-TF-IDF words)."""
        if self.representation == "ctfidf":
            return None
        rep = load_bertopic("bertopic.representation")
        # A list, even of one: given KeyBERTInspired alone, BERTopic 0.17 hands it the fit's precomputed
        # embeddings (cxmine's aligned ones, not the encoder's space the words are embedded in) and picks
        # their rows by the representative sentences' position in its own flat list, not by document.
        models: list[Any] = []
        if self.representation in ("keybert", "keybert+mmr"):
            models.append(
                rep.KeyBERTInspired(
                    top_n_words=max(self.top_words, 30) if "mmr" in self.representation else self.top_words
                )
            )
        if self.representation in ("mmr", "keybert+mmr"):
            models.append(
                rep.MaximalMarginalRelevance(diversity=self.mmr_diversity, top_n_words=self.top_words)
            )
        if self.representation == "pos":
            models.append(rep.PartOfSpeech(self.pos_model, top_n_words=self.top_words))
        return models

    def fit(
        self,
        embeddings: FloatArray,
        texts: Sequence[str],
        languages: Sequence[str | None],
        *,
        config: TopicConfig,
        tokenizer: Tokenize | None = None,
        on_stage: ProgressCallback | None = None,
    ) -> TopicFit:
        """Fit topics with BERTopic on the sentence embeddings (one row per text); assign every sentence."""
        bertopic = load_bertopic()
        vectorizers = load_bertopic("bertopic.vectorizers")
        from sklearn.feature_extraction.text import CountVectorizer

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
        aligner = create_stage(config.align).fit(embeddings[fit_rows], fit_languages)
        aligned = aligner.transform(embeddings, languages)
        fit_aligned = aligned[fit_rows]
        docs = [tagged(texts[i], languages[i]) for i in fit_rows.tolist()]
        tokenize = TaggedTokenizer(tokenizer or MultilingualTokenizer())
        if self.encoder is None and self.encoder_spec is not None:
            from nlp.registry import registry

            spec = dict(self.encoder_spec)
            self.encoder = registry.create(spec.pop("name"), **spec)
        embedder = make_embedder(self.encoder) if self.encoder is not None else None

        clusterer = StageClusterer(create_stage(config.cluster), report)
        model = bertopic.BERTopic(
            language="multilingual",  # not "english": BERTopic would strip every non-ASCII letter
            top_n_words=self.top_words,
            nr_topics="auto" if self.merge == "auto" else None,
            embedding_model=embedder,
            umap_model=StageReducer(create_stage(config.reduce), report),
            hdbscan_model=clusterer,
            vectorizer_model=CountVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None),
            ctfidf_model=vectorizers.ClassTfidfTransformer(reduce_frequent_words=True),
            representation_model=None,  # once, at the end (update_topics), on the final assignment
            verbose=self.verbose,
        )
        self.model = model
        raw_clusters = len(set(clusterer.labels_.tolist()) - {OUTLIER})
        if len(fit_rows) > 2:
            topics = np.asarray(model.fit_transform(docs, embeddings=fit_aligned)[0], np.int64)
            raw_clusters = len(set(clusterer.labels_.tolist()) - {OUTLIER})
        else:
            topics = np.full(len(fit_rows), OUTLIER, np.int64)
        original = clusterer.labels_ if len(clusterer.labels_) == len(fit_rows) else topics

        report("merge")
        if self.merge == "cxmine" and (topics != OUTLIER).any():
            topics = self._merge(model, docs, topics, fit_aligned, fit_languages, config)
        outliers_before = int((topics == OUTLIER).sum())

        report("assign")
        keys = sorted(set(topics.tolist()) - {OUTLIER})
        threshold = self._threshold(fit_aligned, topics, keys, config) if keys else 1.0
        if keys and self.outliers != "none" and outliers_before:
            reduce_threshold = self.outlier_threshold
            if reduce_threshold is None:
                reduce_threshold = threshold if self.outliers == "embeddings" else 0.0
            # BERTopic keeps an outlier whose similarities above the threshold sum to <= 0: below 0 it misleads.
            reduce_threshold = max(reduce_threshold, 0.0)
            topics = np.asarray(
                model.reduce_outliers(
                    docs,
                    topics.tolist(),
                    strategy=self.outliers,
                    embeddings=fit_aligned,
                    threshold=reduce_threshold,
                ),
                np.int64,
            )
        outliers_reduced = outliers_before - int((topics == OUTLIER).sum())

        report("represent")
        keywords: dict[int, list[tuple[str, float]]] = {}
        if keys:
            log = logging.getLogger("BERTopic")
            level = log.level
            if not self.verbose:  # it warns that given topics are "the last step", which they are
                log.setLevel(logging.ERROR)
            try:
                model.update_topics(
                    docs,
                    topics=topics.tolist(),
                    top_n_words=self.top_words,
                    vectorizer_model=model.vectorizer_model,
                    ctfidf_model=model.ctfidf_model,
                    representation_model=self.representation_model(),
                )
            finally:
                log.setLevel(level)
            for key in keys:
                words = model.get_topic(key) or []
                keywords[key] = [(str(w), round(float(s), 5)) for w, s in words if w][: self.top_words]
        return self._topic_fit(
            embeddings=embeddings,
            aligned=aligned,
            languages=languages,
            aligner=aligner,
            fit_rows=fit_rows,
            fit_topics=topics,
            original=original,
            keywords=keywords,
            threshold=threshold,
            outliers_before=outliers_before,
            outliers_reduced=outliers_reduced,
            clusters_before_merge=raw_clusters,
        )

    def _merge(
        self,
        model: Any,
        docs: list[str],
        topics: IntArray,
        aligned: FloatArray,
        languages: Sequence[str | None],
        config: TopicConfig,
    ) -> IntArray:
        """cxmine's merge rule (near-parallel centroids; one theme split by language), applied by BERTopic."""
        clusters = sorted(set(topics.tolist()) - {OUTLIER})
        centroids = unit_rows(np.vstack([aligned[topics == c].mean(axis=0) for c in clusters]))
        groups = _merge_groups(centroids, config.merge_similarity)
        if len(groups) > 1 and config.cross_language_similarity < 1.0:
            groups = _merge_across_languages(
                groups,
                aligned=aligned,
                labels=topics,
                clusters=clusters,
                languages=languages,
                min_similarity=config.cross_language_similarity,
                max_overlap=config.cross_language_overlap,
            )
        to_merge = [[clusters[m] for m in group] for group in groups if len(group) > 1]
        if not to_merge:
            return topics
        model.merge_topics(docs, to_merge)
        return np.asarray(model.topics_, np.int64)

    @staticmethod
    def _threshold(aligned: FloatArray, topics: IntArray, keys: list[int], config: TopicConfig) -> float:
        """cxmine's membership cosine: the members' median cosine to their topic, less k robust deviations."""
        centroids = unit_rows(np.vstack([aligned[topics == k].mean(axis=0) for k in keys]))
        position = {k: i for i, k in enumerate(keys)}
        members = np.flatnonzero(topics != OUTLIER)
        own = (aligned[members] * centroids[[position[int(t)] for t in topics[members]]]).sum(axis=1)
        median = float(np.median(own))
        spread = 1.4826 * float(np.median(np.abs(own - median)))
        return median - config.assign_deviations * spread

    def _topic_fit(
        self,
        *,
        embeddings: FloatArray,
        aligned: FloatArray,
        languages: Sequence[str | None],
        aligner: Any,
        fit_rows: IntArray,
        fit_topics: IntArray,
        original: IntArray,
        keywords: Mapping[int, list[tuple[str, float]]],
        threshold: float,
        outliers_before: int,
        outliers_reduced: int,
        clusters_before_merge: int,
    ) -> TopicFit:
        """BERTopic's assignment of the fit sample as cxmine's TopicFit; every other sentence by centroid."""
        n = embeddings.shape[0]
        sizes = Counter(int(t) for t in fit_topics.tolist() if t != OUTLIER)
        order = sorted(sizes, key=lambda k: (-sizes[k], k))
        renumber = {old: new for new, old in enumerate(order)}
        labels = np.full(n, OUTLIER, dtype=np.int64)
        labels[fit_rows] = [renumber.get(int(t), OUTLIER) for t in fit_topics.tolist()]
        dim = aligned.shape[1]
        centroids = (
            unit_rows(np.vstack([aligned[labels == k].mean(axis=0) for k in range(len(order))]))
            if order
            else np.zeros((0, dim), np.float32)
        )
        similarities = np.zeros(n, np.float32)
        if order:
            rest = np.ones(n, bool)
            rest[fit_rows] = False
            similarity = aligned @ centroids.T
            nearest = similarity.argmax(axis=1)
            nearest_similarity = similarity[np.arange(n), nearest]
            assign = rest & (nearest_similarity >= threshold)
            labels[assign] = nearest[assign]
            similarities = np.where(
                labels == OUTLIER, nearest_similarity, similarity[np.arange(n), np.maximum(labels, 0)]
            ).astype(np.float32)
        topics = []
        for new, old in enumerate(order):
            members = np.flatnonzero(labels == new)
            fit_members = fit_topics == old
            sources = set(original[fit_members].tolist()) - {OUTLIER}
            topics.append(
                found_topic(
                    index=new,
                    members=members,
                    centroid=centroids[new],
                    aligned=aligned,
                    embeddings=embeddings,
                    languages=languages,
                    keywords=list(keywords.get(old, [])),
                    merged_from=max(len(sources), 1),
                )
            )
        space = TopicSpace(
            aligner=aligner,
            centroids=centroids,
            topic_keys=list(range(len(topics))),
            assign_similarity=threshold,
        )
        return TopicFit(
            labels=labels,
            similarities=similarities,
            topics=topics,
            space=space,
            fitted_on=len(fit_rows),
            outliers_before_reduction=outliers_before,
            outliers_reduced=outliers_reduced,
            clusters_before_merge=clusters_before_merge,
        )
