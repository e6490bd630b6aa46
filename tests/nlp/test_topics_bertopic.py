"""The BERTopic engine (nlp/topics_bertopic.py) against cxmine's TopicFit contract, on small synthetic data."""

from __future__ import annotations

import importlib
import sys
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from nlp.topics import OUTLIER, MultilingualTokenizer, TopicConfig, TopicSpace, fit_topics, stages, unit_rows
from nlp.topics_bertopic import BERTopicEngine, TaggedTokenizer, load_bertopic, tagged, untagged

WORDS = {
    0: ["delivery", "courier", "parcel", "late", "shipping"],
    1: ["refund", "money", "charge", "card", "payment"],
    2: ["staff", "rude", "waiter", "service", "manager"],
    3: ["pizza", "pasta", "taste", "cheese", "dessert"],
}
PER_TOPIC = 24
FRINGE = 4  # per topic: as close to their topic as its members, but left out by the clusterer
NOISE = 8  # far from every topic
ENGLISH_STOP = MultilingualTokenizer().stop_words("en")


@stages.register("topics.cluster.given_test.v1")
class GivenClusters:
    """Tests only: the clusterer answers the labels it was configured with."""

    def __init__(self, *, labels: Sequence[int]) -> None:
        self.labels = list(labels)

    def fit_predict(self, points: np.ndarray) -> np.ndarray:
        assert len(points) == len(self.labels)
        return np.asarray(self.labels, np.int64)


def synthetic(seed: int = 0) -> tuple[np.ndarray, list[str], list[int], list[int]]:
    """Embeddings, texts, the true topic (-1 for noise) and the clusterer's labels (fringe left out)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(WORDS), 64))
    rows, texts, truth, given = [], [], [], []
    for topic, words in WORDS.items():
        for i in range(PER_TOPIC + FRINGE):
            fringe = i >= PER_TOPIC
            rows.append(centres[topic] + 0.25 * rng.standard_normal(64))
            a, b, c = rng.choice(words, size=3, replace=False)
            texts.append(f"The {a} was {b} and the {c} is what I got.")
            truth.append(topic)
            given.append(OUTLIER if fringe else topic)
    for _ in range(NOISE):
        rows.append(rng.standard_normal(64) * 2)
        texts.append("It was just so so and I have nothing else to say.")
        truth.append(OUTLIER)
        given.append(OUTLIER)
    return np.asarray(rows, np.float32), texts, truth, given


def config(given: list[int], **engine: Any) -> TopicConfig:
    return TopicConfig(
        reduce={"name": "topics.reduce.pca.v1", "dimensions": 5},
        cluster={"name": "topics.cluster.given_test.v1", "labels": given},
        engine={"name": "topics.engine.bertopic.v1", **engine},
    )


class HashEncoder:
    """A stand-in for cxmine's encoder: a text is the sum of fixed random vectors of its words."""

    dim = 32

    def __init__(self) -> None:
        self.calls = 0

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                seed = zlib.crc32(word.strip(".,").encode())
                out[row] += np.random.default_rng(seed).standard_normal(self.dim)
        return np.asarray(out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9), np.float32)


@pytest.fixture(scope="module")
def bertopic() -> Any:
    return pytest.importorskip("bertopic")


# ------------------------------------------------------------------------ without the extra installed


def test_a_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def no_bertopic(name: str, package: str | None = None) -> Any:
        if name.startswith("bertopic"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", no_bertopic)
    with pytest.raises(ImportError, match=r"cxmine\[topics\]"):
        load_bertopic()


def test_the_engine_is_a_config_setting() -> None:
    default = TopicConfig()
    assert default.engine == {"name": "topics.engine.cxmine.v1"}
    document = {"engine": {"name": "topics.engine.bertopic.v1", "representation": "ctfidf"}}
    loaded = TopicConfig.from_document(document)
    assert loaded.engine["name"] == "topics.engine.bertopic.v1"
    assert TopicConfig.from_document(loaded.to_document()) == loaded
    assert TopicConfig.from_document({}).engine == default.engine  # documents stored before the setting
    with pytest.raises(ValueError, match="not a engine stage"):
        TopicConfig.from_document({"engine": {"name": "topics.cluster.kmeans.v1"}})
    with pytest.raises(ValueError, match="representation"):
        BERTopicEngine(representation="llm")
    with pytest.raises(ValueError, match="encoder"):
        BERTopicEngine(representation="keybert")


def test_the_tokenizer_reads_each_sentences_language() -> None:
    cxmine = MultilingualTokenizer()
    tokenize = TaggedTokenizer(cxmine)
    arabic = "التوصيل متأخر جدا"
    words = tokenize(" ".join([tagged("The delivery was late", "en"), tagged(arabic, "ar")]))
    assert words == ["delivery", "late", *cxmine(arabic, "ar")]
    assert cxmine(arabic, "ar") != cxmine(arabic, None)  # the Arabic article goes only for Arabic
    assert untagged(tagged("Late again", "en")) == "Late again"


# --------------------------------------------------------------------------------------------- fits


@pytest.mark.slow
def test_a_fit_keeps_the_topic_fit_contract(bertopic: Any) -> None:
    embeddings, texts, truth, given = synthetic()
    fit = fit_topics(embeddings, texts, ["en"] * len(texts), config=config(given))
    n = len(texts)
    assert fit.labels.shape == (n,) and fit.similarities.shape == (n,)
    assert len(fit.topics) == len(WORDS)
    assert [t.size for t in fit.topics] == sorted((t.size for t in fit.topics), reverse=True)
    for topic in fit.topics:
        members = np.flatnonzero(fit.labels == topic.index)
        assert topic.size == len(members)
        (source,) = {truth[i] for i in members.tolist()}  # every member from one true topic
        words = [w for w, _ in topic.keywords]
        assert words and set(words) <= set(WORDS[source])  # no stop word, nothing from another topic
        assert not set(words) & ENGLISH_STOP
        assert set(topic.representatives) <= set(members.tolist())
        assert topic.languages == {"en": topic.size}
        assert np.isclose(np.linalg.norm(topic.centroid), 1.0)
        assert np.isclose(np.linalg.norm(topic.raw_centroid), 1.0)
    # The fringe joined its topic (reduce_outliers); the noise, far from every topic, stayed out.
    assert fit.clusters_before_merge == len(WORDS)
    assert fit.outliers_before_reduction == len(WORDS) * FRINGE + NOISE
    assert fit.outliers_reduced == len(WORDS) * FRINGE
    assert fit.outliers == NOISE
    assert all(fit.labels[i] == OUTLIER for i, t in enumerate(truth) if t == OUTLIER)
    # Online assignment agrees with the fit and survives serialisation.
    space = TopicSpace.from_bytes(fit.space.to_bytes())
    assigned, _ = space.assign(unit_rows(embeddings), ["en"] * n)  # stored embeddings are unit rows
    assert (assigned == fit.labels).mean() > 0.95


@pytest.mark.slow
def test_a_fit_is_deterministic_and_outlier_reduction_can_be_off(bertopic: Any) -> None:
    embeddings, texts, _, given = synthetic(seed=3)
    languages = ["en"] * len(texts)
    first = fit_topics(embeddings, texts, languages, config=config(given))
    again = fit_topics(embeddings, texts, languages, config=config(given))
    assert np.array_equal(first.labels, again.labels)
    assert [t.keywords for t in first.topics] == [t.keywords for t in again.topics]
    kept = fit_topics(embeddings, texts, languages, config=config(given, outliers="none"))
    assert kept.outliers_reduced == 0 and kept.outliers == len(WORDS) * FRINGE + NOISE
    everything = fit_topics(embeddings, texts, languages, config=config(given, outlier_threshold=0.0))
    assert everything.outliers == 0


@pytest.mark.slow
def test_merging_by_cxmines_rule_goes_through_merge_topics(bertopic: Any) -> None:
    embeddings, texts, _, given = synthetic(seed=5)
    split = [5 if label == 0 and i % 2 else label for i, label in enumerate(given)]  # topic 0 as two
    fit = fit_topics(embeddings, texts, ["en"] * len(texts), config=config(split))
    assert fit.clusters_before_merge == len(WORDS) + 1
    assert len(fit.topics) == len(WORDS)
    assert sorted(t.merged_from for t in fit.topics) == [1, 1, 1, 2]
    unmerged = fit_topics(embeddings, texts, ["en"] * len(texts), config=config(split, merge="none"))
    assert len(unmerged.topics) == len(WORDS) + 1


@pytest.mark.slow
def test_keybert_and_mmr_use_cxmines_encoder_offline(bertopic: Any) -> None:
    embeddings, texts, truth, given = synthetic(seed=1)
    engine = BERTopicEngine(
        representation="keybert+mmr", encoder={"name": "encoder.onnx.v1", "path": "unused"}
    )
    encoder = HashEncoder()
    engine.encoder = encoder  # what the spec would build, without an ONNX model on disk
    fit = engine.fit(embeddings, texts, ["en"] * len(texts), config=config(given))
    assert encoder.calls > 0
    assert "sentence_transformers" not in sys.modules  # no model of BERTopic's own was loaded
    for topic in fit.topics:
        (source,) = {truth[i] for i in np.flatnonzero(fit.labels == topic.index).tolist()}
        words = [w for w, _ in topic.keywords]
        assert words and set(words) <= set(WORDS[source])
