"""Sentiment as served: calibration per language, abstention, the mixed rule, and the served-path evaluation."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from nlp.analysis import TextInput
from nlp.analyzer import PipelineAnalyzer
from nlp.datasets import GOEMOTIONS_LABELS, SENTIMENT_LABELS
from nlp.encoders import EncodeSentences, FloatArray
from nlp.heads import Head
from nlp.pipeline import DEFAULT_TEXT_STEPS
from nlp.registry import registry
from nlp.scorers import (
    CALIBRATION_FILE,
    EmotionScorer,
    SentimentCalibration,
    SentimentScorer,
    aggregate_sentiment,
)
from nlp.types import Doc, Sentence
from scripts.served_sentiment import (
    MIXED,
    ServedRun,
    expected_calibration_error,
    label_figures,
    pool_from_run,
    pool_reviews,
    run_served,
    served_results,
    stratified_halves,
)

POSITIVE_WORDS = {"great", "lovely", "friendly", "fast"}
NEGATIVE_WORDS = {"awful", "terrible", "rude", "slow", "crashed"}


class WordCounts:
    """A stand-in encoder: (positive words, negative words, 1), L2-normalised."""

    name, dim = "wordcounts@test", 3

    def embed(self, texts: Sequence[str]) -> FloatArray:
        rows = []
        for text in texts:
            words = re.findall(r"\w+", text.lower())
            rows.append(
                [sum(w in POSITIVE_WORDS for w in words), sum(w in NEGATIVE_WORDS for w in words), 1.0]
            )
        matrix = np.array(rows, np.float32)
        return np.asarray(matrix / np.linalg.norm(matrix, axis=1, keepdims=True), np.float32)


def sentiment_head(*, temperature: float = 1.0) -> Head:
    """negative from the second input, positive from the first, neutral from the constant."""
    hidden = np.eye(3, dtype=np.float32) * 4
    out = np.array([[0, 1, 0], [0, 0, 0.5], [1, 0, 0]], np.float32)  # rows: negative, neutral, positive
    return Head(
        name="sentiment-test",
        version="1",
        kind="softmax",
        labels=SENTIMENT_LABELS,
        encoder=WordCounts.name,
        temperature=temperature,
        tensors={
            "input_mean": np.zeros(3, np.float32),
            "input_scale": np.ones(3, np.float32),
            "fc1.weight": hidden,
            "fc1.bias": np.zeros(3, np.float32),
            "fc2.weight": out,
            "fc2.bias": np.zeros(3, np.float32),
        },
    )


def emotion_head() -> Head:
    labels = len(GOEMOTIONS_LABELS)
    return Head(
        name="emotion-test",
        version="1",
        kind="sigmoid",
        labels=GOEMOTIONS_LABELS,
        encoder=WordCounts.name,
        temperature=1.0,
        tensors={
            "input_mean": np.zeros(3, np.float32),
            "input_scale": np.ones(3, np.float32),
            "fc1.weight": np.eye(3, dtype=np.float32),
            "fc1.bias": np.zeros(3, np.float32),
            "fc2.weight": np.zeros((labels, 3), np.float32),
            "fc2.bias": np.zeros(labels, np.float32),
        },
    )


@registry.register("encoder.testwordcounts.v1")
def _make_test_encoder() -> EncodeSentences:
    return EncodeSentences(backend=WordCounts())


@registry.register("sentiment.testhead.v1")
def _make_test_sentiment(*, abstain_below: float = 0.0) -> SentimentScorer:
    calibration = SentimentCalibration(temperature=1.0, abstain_below=abstain_below)
    return SentimentScorer(head=sentiment_head(), calibration=calibration)


@registry.register("emotion.testhead.v1")
def _make_test_emotion() -> EmotionScorer:
    return EmotionScorer(head=emotion_head())


def make_sentiment_scorer(**config: str | float) -> SentimentScorer:
    scorer = registry.get("sentiment.e5head.v1")(**config)
    assert isinstance(scorer, SentimentScorer)
    return scorer


def logits_for(*rows: Sequence[float]) -> FloatArray:
    return np.log(np.array(rows, np.float32))


def test_a_low_confidence_review_abstains_as_neutral() -> None:
    unsure = np.array([[0.45, 0.2, 0.35]], np.float32)
    result = aggregate_sentiment(unsure, np.ones(1, np.float32), mixed_threshold=0.5, abstain_below=0.5)
    assert result.label == "neutral" and result.abstained
    assert result.probabilities["negative"] == pytest.approx(0.45)  # probabilities are reported unchanged
    assert result.score == pytest.approx(0.35 - 0.45)
    sure = np.array([[0.7, 0.2, 0.1]], np.float32)
    kept = aggregate_sentiment(sure, np.ones(1, np.float32), mixed_threshold=0.5, abstain_below=0.5)
    assert kept.label == "negative" and not kept.abstained
    # without a threshold nothing abstains (the default, and the old behaviour)
    assert aggregate_sentiment(unsure, np.ones(1, np.float32), mixed_threshold=0.5).label == "negative"


def test_the_scorer_abstains_for_reviews_and_sentences() -> None:
    scorer = SentimentScorer(
        head=sentiment_head(), calibration=SentimentCalibration(temperature=1.0, abstain_below=0.9)
    )
    doc = Doc.new(id="1", text="x", language="en")
    doc.sentences = [
        Sentence(text="x", start=0, end=1, model_text="x", embedding=WordCounts().embed(["great"])[0])
    ]
    (scored,) = scorer([doc])
    # "great" alone is about 0.77 positive: below 0.9, so the review and its sentence abstain
    assert scored.sentiment.label == "neutral" and scored.sentiment.abstained
    assert scored.sentences[0].sentiment.abstained
    assert scored.sentiment.probabilities["positive"] > 0.7


def test_calibration_applies_a_known_languages_values_and_falls_back_for_others() -> None:
    calibration = SentimentCalibration(
        temperature=1.0,
        log_prior=(0.0, 0.0, 0.0),
        temperatures={"th": 4.0},
        log_priors={"th": (0.0, 1.0, 0.0)},
    )
    logits = logits_for([0.7, 0.2, 0.1])
    np.testing.assert_allclose(calibration.probabilities(logits, "en"), [[0.7, 0.2, 0.1]], rtol=1e-5)
    np.testing.assert_allclose(calibration.probabilities(logits, None), [[0.7, 0.2, 0.1]], rtol=1e-5)
    np.testing.assert_allclose(calibration.probabilities(logits, "xx"), [[0.7, 0.2, 0.1]], rtol=1e-5)
    scaled = np.log([0.7, 0.2, 0.1]) / 4.0 + np.array([0.0, 1.0, 0.0])
    expected = np.exp(scaled) / np.exp(scaled).sum()
    np.testing.assert_allclose(calibration.probabilities(logits, "th")[0], expected, rtol=1e-5)
    assert calibration.for_language("th")[0] == 4.0 and calibration.for_language("de")[0] == 1.0


def test_the_scorer_uses_the_docs_language(tmp_path: Path) -> None:
    head = sentiment_head()
    calibration = SentimentCalibration(temperature=1.0, temperatures={"th": 50.0})
    scorer = SentimentScorer(head=head, calibration=calibration)
    embedding = WordCounts().embed(["terrible"])[0]
    docs = []
    for language in ("th", "en", None):
        doc = Doc.new(id=str(language), text="terrible", language=language)
        doc.sentences = [
            Sentence(text="terrible", start=0, end=8, model_text="terrible", embedding=embedding)
        ]
        docs.append(doc)
    thai, english, unknown = scorer(docs)
    assert english.sentiment.probabilities == unknown.sentiment.probabilities
    assert thai.sentiment.probabilities["negative"] < 0.4 < english.sentiment.probabilities["negative"]


def test_a_calibration_file_beside_the_head_is_loaded_and_versions_the_scorer(tmp_path: Path) -> None:
    head_path = tmp_path / "head.safetensors"
    sentiment_head(temperature=1.7).save(head_path)
    plain = make_sentiment_scorer(path=str(head_path))
    assert not plain.calibrated and plain.calibration.temperature == pytest.approx(1.7)
    assert plain.version == "1" and plain.mixed_threshold == 0.5
    SentimentCalibration(temperature=2.0, mixed_threshold=0.8, abstain_below=0.5).save(
        tmp_path / CALIBRATION_FILE
    )
    calibrated = make_sentiment_scorer(path=str(head_path))
    assert calibrated.calibrated and calibrated.mixed_threshold == 0.8
    assert calibrated.version.startswith("1+cal.")
    assert make_sentiment_scorer(path=str(head_path), mixed_threshold=0.6).mixed_threshold == 0.6
    assert not make_sentiment_scorer(path=str(head_path), calibration="none").calibrated
    again = SentimentCalibration.load(tmp_path / CALIBRATION_FILE)
    assert again == SentimentCalibration(temperature=2.0, mixed_threshold=0.8, abstain_below=0.5)


def test_the_mixed_rule_follows_its_threshold() -> None:
    weights = np.ones(2, np.float32)
    pulls = np.array([[0.85, 0.05, 0.10], [0.15, 0.10, 0.75]], np.float32)
    assert aggregate_sentiment(pulls, weights, mixed_threshold=0.7).label == "mixed"
    assert aggregate_sentiment(pulls, weights, mixed_threshold=0.8).label == "negative"
    # mixed is a finding, not a doubt: it never abstains
    mixed = aggregate_sentiment(pulls, weights, mixed_threshold=0.7, abstain_below=0.9)
    assert mixed.label == "mixed" and not mixed.abstained


def test_metrics_score_mixed_as_wrong_and_report_the_argmax_too() -> None:
    from scripts.served_sentiment import Reviews

    truth = np.array([0, 1, 2, 2])
    probabilities = np.array([[0.8, 0.1, 0.1], [0.2, 0.6, 0.2], [0.1, 0.2, 0.7], [0.3, 0.1, 0.6]], np.float32)
    reviews = Reviews(
        probabilities=probabilities,
        label=np.array([0, 1, 2, MIXED]),
        abstained=np.zeros(4, bool),
    )
    figures = label_figures(truth, reviews, binary=False)
    assert figures["served"]["accuracy"] == 0.75 and figures["argmax"]["accuracy"] == 1.0
    assert figures["mixed_rate"] == 0.25 and figures["predicted"]["mixed"] == 1
    assert figures["gold"] == {"negative": 1, "neutral": 1, "positive": 2}
    polar = np.array([[0.3, 0.6, 0.1], [0.1, 0.2, 0.7]], np.float32)
    binary = label_figures(np.array([0, 2]), Reviews(polar, np.array([1, 2]), np.zeros(2, bool)), binary=True)
    assert binary["served"]["accuracy"] == 0.5  # neutral is wrong for a binary gold label
    assert binary["argmax"]["accuracy"] == 1.0  # the arg-max of a binary set compares negative and positive


def test_expected_calibration_error() -> None:
    truth = np.array([0, 0, 0, 0])
    confident_right = np.tile(np.array([[1.0, 0.0, 0.0]], np.float32), (4, 1))
    assert expected_calibration_error(confident_right, truth) == pytest.approx(0.0)
    half = np.tile(np.array([[0.6, 0.3, 0.1]], np.float32), (4, 1))
    assert expected_calibration_error(half, np.array([0, 0, 1, 1])) == pytest.approx(0.1)


def test_halves_split_every_stratum() -> None:
    keys = ["a"] * 10 + ["b"] * 7
    folds = stratified_halves(keys, seed=1)
    assert folds[:10].sum() == 5 and folds[10:].sum() in (3, 4)


@pytest.fixture(scope="module")
def analyzer() -> PipelineAnalyzer:
    return PipelineAnalyzer(
        steps=[
            *DEFAULT_TEXT_STEPS,
            {"name": "encoder.testwordcounts.v1"},
            {"name": "sentiment.testhead.v1"},
            {"name": "emotion.testhead.v1"},
        ]
    )


TINY = [
    ("The staff were lovely and friendly.", 2),
    ("The app crashed and support was rude.", 0),
    ("The staff were great. But the app crashed, awful and slow.", 0),
    ("The shop opens at nine.", 1),
    ("Fast delivery, great price.", 2),
]


def test_served_path_evaluation_on_a_tiny_data_set(analyzer: PipelineAnalyzer, tmp_path: Path) -> None:
    texts = [text for text, _ in TINY]
    run = run_served(analyzer, texts, cache=tmp_path, label="tiny")
    assert run.sentence_counts().tolist() == [1, 1, 2, 1, 1]
    served = [
        a.sentiment for a in analyzer.analyse([TextInput(id=str(i), text=t) for i, t in enumerate(texts)])
    ]
    assert served_results(analyzer.sentiment, run) == served  # re-scoring a run is exactly what is served
    assert [r.label for r in served] == ["positive", "negative", "mixed", "neutral", "positive"]
    cached = run_served(analyzer, texts, cache=tmp_path, label="tiny")
    np.testing.assert_array_equal(cached.sentence_embeddings, run.sentence_embeddings)
    assert cached.languages == run.languages and len(list(tmp_path.glob("tiny-*.npz"))) == 1

    pool = pool_from_run(
        run, analyzer.sentiment.head, truth=[y for _, y in TINY], language=["en"] * 5, dataset="tiny"
    )
    reviews = pool_reviews(pool, analyzer.sentiment.calibration)
    assert [(*SENTIMENT_LABELS, "mixed")[i] for i in reviews.label] == [r.label for r in served]
    np.testing.assert_allclose(
        reviews.probabilities, [list(r.probabilities.values()) for r in served], rtol=1e-5, atol=1e-6
    )
    figures = label_figures(pool.truth, reviews, binary=False)
    assert figures["served"]["accuracy"] == pytest.approx(0.8)  # the mixed review counts as wrong
    assert figures["argmax"]["accuracy"] == pytest.approx(1.0)
    assert figures["mixed_rate"] == pytest.approx(0.2)
    assert figures["predicted"] == {"negative": 1, "neutral": 1, "positive": 2, "mixed": 1}

    only_two = run.subset([2, 0])
    assert isinstance(only_two, ServedRun) and only_two.sentence_counts().tolist() == [2, 1]
    assert served_results(analyzer.sentiment, only_two) == [served[2], served[0]]


def test_served_training_loss_is_on_what_the_scorer_serves() -> None:
    pytest.importorskip("torch")
    import torch

    from nlp.training.torch_heads import MLPHead, ServedTexts, _served_log_probabilities, to_head

    rng = np.random.default_rng(0)
    sentences = rng.normal(size=(7, 3)).astype(np.float32)
    weights = np.array([3, 1, 2, 5, 1, 1, 4], np.float32)
    texts = ServedTexts(sentences=sentences, weights=weights, bounds=np.array([0, 2, 3, 7]))
    torch.manual_seed(0)
    module = MLPHead(
        input_mean=np.zeros(3, np.float32),
        input_scale=np.ones(3, np.float32),
        hidden=8,
        outputs=3,
        dropout=0.0,
    )
    module.eval()
    with torch.no_grad():
        trained = _served_log_probabilities(module, texts, np.arange(3)).exp().numpy()
    head = to_head(
        module, name="s", version="1", kind="softmax", labels=SENTIMENT_LABELS, encoder="x", temperature=1.0
    )
    scorer = SentimentScorer(head=head, calibration=SentimentCalibration(temperature=1.0))
    logits = head.logits(sentences)
    for i in range(3):
        a, b = int(texts.bounds[i]), int(texts.bounds[i + 1])
        served = scorer.review(logits[a:b], weights[a:b], language=None).probabilities
        np.testing.assert_allclose(trained[i], list(served.values()), rtol=1e-5, atol=1e-6)
