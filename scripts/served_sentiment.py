"""Sentiment as ``POST /v1/score`` serves it, measured on labelled texts.

The texts run through the real pipeline (the analyzer the service builds: normalisation, language
detection, sentence split, encoder, sentiment scorer), not through whole-text embeddings. What the pipeline
produces up to the sentiment head (each text's detected language, its sentences' embeddings and weights) is
kept, so the served label can be recomputed by the scorer itself under other settings (calibration,
abstention, mixed rule) without encoding again; ``run_served`` caches it per encoder and texts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from nlp.analysis import SentimentResult
from nlp.analyzer import PipelineAnalyzer, default_steps
from nlp.datasets import SENTIMENT_DATASETS, SENTIMENT_LABELS, data_root, load_sentiment
from nlp.heads import Head
from nlp.pipeline import make_docs
from nlp.scorers import (
    CALIBRATION_FILE,
    MODELS_DIR,
    NEGATIVE,
    NEUTRAL,
    POSITIVE,
    SentimentCalibration,
    SentimentScorer,
)
from scripts.train_heads import capped, encoder_step

FloatArray = NDArray[np.float32]
SERVED_CACHE_FORMAT = 1


@dataclass(frozen=True)
class ServedRun:
    """Per text: the detected language and its sentences' embeddings and weights, as the pipeline made them."""

    languages: list[str | None]
    sentence_embeddings: FloatArray
    weights: FloatArray
    bounds: NDArray[np.int64]
    """Text ``i``'s sentences are rows ``bounds[i]:bounds[i + 1]``."""

    def __len__(self) -> int:
        return len(self.languages)

    def sentence_counts(self) -> NDArray[np.int64]:
        """How many sentences each text was split into."""
        return np.diff(self.bounds)

    def subset(self, rows: Sequence[int] | NDArray[np.int64]) -> ServedRun:
        """The same run for some of the texts, in the order given."""
        picked = [int(i) for i in rows]
        spans = [np.arange(self.bounds[i], self.bounds[i + 1]) for i in picked]
        sentence_rows = np.concatenate(spans) if spans else np.zeros(0, np.int64)
        counts = np.array([len(s) for s in spans], np.int64)
        return ServedRun(
            languages=[self.languages[i] for i in picked],
            sentence_embeddings=self.sentence_embeddings[sentence_rows],
            weights=self.weights[sentence_rows],
            bounds=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        )


def _pipeline_key(analyzer: PipelineAnalyzer) -> str:
    names = [step if isinstance(step, str) else str(step.get("name", "")) for step in analyzer.steps]
    text_steps = [
        step
        for step, name in zip(analyzer.steps, names, strict=True)
        if not name.startswith(("sentiment", "emotion"))
    ]
    return json.dumps(
        [SERVED_CACHE_FORMAT, analyzer.encoder.head_input_name, text_steps], sort_keys=True, default=repr
    )


def run_served(
    analyzer: PipelineAnalyzer,
    texts: Sequence[str],
    *,
    languages: Sequence[str | None] | None = None,
    cache: Path | None = None,
    label: str = "texts",
    batch_size: int = 256,
) -> ServedRun:
    """Run ``texts`` through the analyzer's pipeline (as ``analyse`` does) and keep what the heads see."""
    given = list(languages) if languages is not None else [None] * len(texts)
    path = None
    if cache is not None:
        digest = hashlib.sha256(
            "\x1e".join([_pipeline_key(analyzer), *texts, *(g or "" for g in given)]).encode()
        ).hexdigest()[:16]
        path = cache / f"{label}-{digest}.npz"
        if path.exists():
            stored = np.load(path)
            return ServedRun(
                languages=[str(x) or None for x in stored["languages"].tolist()],
                sentence_embeddings=np.asarray(stored["sentence_embeddings"], np.float32),
                weights=np.asarray(stored["weights"], np.float32),
                bounds=np.asarray(stored["bounds"], np.int64),
            )
    found: list[str | None] = []
    embeddings: list[FloatArray] = []
    weights: list[float] = []
    counts: list[int] = []
    started = time.perf_counter()
    for start in range(0, len(texts), batch_size):
        items = [
            (str(start + i), text, given[start + i])
            for i, text in enumerate(texts[start : start + batch_size])
        ]
        for doc in analyzer.pipeline(make_docs(items)):
            found.append(doc.language)
            embeddings.extend(s.head_input for s in doc.sentences)
            weights.extend(float(s.weight) for s in doc.sentences)
            counts.append(len(doc.sentences))
        if cache is not None and len(texts) > batch_size:
            done = min(start + batch_size, len(texts))
            rate = done / (time.perf_counter() - started)
            print(f"  served pipeline {label}: {done:,}/{len(texts):,} ({rate:,.1f} texts/s)", flush=True)
    run = ServedRun(
        languages=found,
        sentence_embeddings=np.vstack(embeddings).astype(np.float32)
        if embeddings
        else np.zeros((0, analyzer.encoder.backend.dim), np.float32),
        weights=np.asarray(weights, np.float32),
        bounds=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            path,
            languages=np.array([x or "" for x in run.languages]),
            sentence_embeddings=run.sentence_embeddings,
            weights=run.weights,
            bounds=run.bounds,
        )
    return run


def served_results(scorer: SentimentScorer, run: ServedRun) -> list[SentimentResult]:
    """Each text's review sentiment exactly as the scorer serves it (one head call for every sentence)."""
    logits = scorer.head.logits(run.sentence_embeddings)
    results = []
    for i, language in enumerate(run.languages):
        a, b = int(run.bounds[i]), int(run.bounds[i + 1])
        results.append(scorer.review(logits[a:b], run.weights[a:b], language=language))
    return results


# --- the dev pool: every labelled dev text as served, and the fitting of the calibration on it -------------


@dataclass(frozen=True)
class DevPool:
    """Labelled texts as the served pipeline saw them: head logits per sentence and what is known per text."""

    logits: FloatArray
    weights: FloatArray
    bounds: NDArray[np.int64]
    detected: list[str | None]
    language: NDArray[np.str_]
    dataset: NDArray[np.str_]
    truth: NDArray[np.int64]
    binary: NDArray[np.bool_]
    seen: NDArray[np.bool_]
    """The text (normalised) is also in a train split: its figures measure memory, not generalisation."""
    gold_mixed: NDArray[np.bool_]
    """The data set's own label says both polarities (ParsiNLU ``mixed``, ASTD ``NEUTRAL``)."""

    def __len__(self) -> int:
        return len(self.detected)

    def subset(self, rows: NDArray[np.int64] | Sequence[int]) -> DevPool:
        """The pool restricted to ``rows`` (in that order)."""
        picked = np.asarray(rows, np.int64)
        spans = [np.arange(self.bounds[i], self.bounds[i + 1]) for i in picked]
        sentence_rows = np.concatenate(spans) if spans else np.zeros(0, np.int64)
        counts = np.array([len(s) for s in spans], np.int64)
        return DevPool(
            logits=self.logits[sentence_rows],
            weights=self.weights[sentence_rows],
            bounds=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            detected=[self.detected[i] for i in picked],
            language=self.language[picked],
            dataset=self.dataset[picked],
            truth=self.truth[picked],
            binary=self.binary[picked],
            seen=self.seen[picked],
            gold_mixed=self.gold_mixed[picked],
        )


@dataclass(frozen=True)
class Reviews:
    """Review-level results for every text of a pool: the served probabilities and label."""

    probabilities: FloatArray
    label: NDArray[np.int64]
    """0 negative, 1 neutral, 2 positive (SENTIMENT_LABELS order), 3 mixed."""
    abstained: NDArray[np.bool_]


MIXED = 3


def pool_reviews(pool: DevPool, calibration: SentimentCalibration) -> Reviews:
    """What ``SentimentScorer.review`` serves for every text of the pool, computed for all texts at once."""
    counts = np.diff(pool.bounds)
    owner = np.repeat(np.arange(len(pool)), counts)
    per_language = {language: calibration.for_language(language) for language in set(pool.detected)}
    temperature = np.array([per_language[x][0] for x in pool.detected], np.float32)
    shift = np.vstack([per_language[x][1] for x in pool.detected]).astype(np.float32)
    scaled = pool.logits / temperature[owner, None] + shift[owner]
    exp = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    sentence = exp / exp.sum(axis=1, keepdims=True)
    starts = pool.bounds[:-1]
    mean = np.add.reduceat(sentence * pool.weights[:, None], starts, axis=0)
    mean /= np.add.reduceat(pool.weights, starts)[:, None]
    threshold = calibration.mixed_threshold
    mixed = (
        (counts > 1)
        & (np.maximum.reduceat(sentence[:, NEGATIVE], starts) >= threshold)
        & (np.maximum.reduceat(sentence[:, POSITIVE], starts) >= threshold)
    )
    label = mean.argmax(axis=1)
    abstained = ~mixed & (mean.max(axis=1) < calibration.abstain_below)
    label[abstained] = NEUTRAL
    label[mixed] = MIXED
    return Reviews(probabilities=mean.astype(np.float32), label=label, abstained=abstained)


def stratified_halves(keys: Sequence[str], *, seed: int = 0) -> NDArray[np.int64]:
    """Fold 0 or 1 per row: every stratum (rows with the same key) is split in half at random."""
    rng = np.random.default_rng(seed)
    folds = np.zeros(len(keys), np.int64)
    strata: dict[str, list[int]] = {}
    for row, key in enumerate(keys):
        strata.setdefault(key, []).append(row)
    for key in sorted(strata):
        rows = np.array(strata[key])
        rng.shuffle(rows)
        half = len(rows) // 2 + (len(rows) % 2) * int(rng.integers(2))
        folds[rows[half:]] = 1
    return folds


def expected_calibration_error(
    probabilities: FloatArray, truth: NDArray[np.int64], *, bins: int = 15
) -> float:
    """Top-label ECE: the mean gap between confidence and accuracy over equal-width confidence bins."""
    if len(truth) == 0:
        return float("nan")
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == truth
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    gap = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            gap += inside.mean() * abs(confidence[inside].mean() - correct[inside].mean())
    return float(gap)


def label_figures(truth: NDArray[np.int64], reviews: Reviews, *, binary: bool) -> dict[str, Any]:
    """Served-label and arg-max figures for one group of texts.

    The served label is scored as a user reads it: ``mixed`` is never one of the gold classes, so it counts
    as wrong (and for a binary data set so does ``neutral``). The arg-max figure takes the most probable of
    the returned probabilities instead (for a binary set: negative vs positive), so ``mixed`` and abstention
    do not enter it. Macro averages run over the gold classes present in the group.
    """
    classes = [NEGATIVE, POSITIVE] if binary else sorted(set(truth.tolist()))
    probabilities = reviews.probabilities
    if binary:
        argmax = np.where(probabilities[:, POSITIVE] >= probabilities[:, NEGATIVE], POSITIVE, NEGATIVE)
    else:
        argmax = probabilities.argmax(axis=1)
    n = len(truth)
    figures: dict[str, Any] = {
        "n": n,
        "served": _single_label(truth, reviews.label, classes),
        "argmax": _single_label(truth, argmax, classes),
        "mixed_rate": float(np.mean(reviews.label == MIXED)) if n else 0.0,
        "abstain_rate": float(np.mean(reviews.abstained)) if n else 0.0,
        "gold": {name: int(np.sum(truth == i)) for i, name in enumerate(SENTIMENT_LABELS)},
        "predicted": {
            name: int(np.sum(reviews.label == i)) for i, name in enumerate((*SENTIMENT_LABELS, "mixed"))
        },
    }
    if not binary:
        figures["ece"] = expected_calibration_error(probabilities, truth)
    return figures


def _single_label(
    truth: NDArray[np.int64], predicted: NDArray[np.int64], classes: list[int]
) -> dict[str, float]:
    f1, recall = [], []
    for c in classes:
        tp = np.sum((predicted == c) & (truth == c))
        denominator = np.sum(predicted == c) + np.sum(truth == c)
        f1.append(2 * tp / denominator if denominator else 0.0)
        recall.append(np.mean(predicted[truth == c] == c) if np.any(truth == c) else 0.0)
    return {
        "macro_f1": float(np.mean(f1)),
        "macro_recall": float(np.mean(recall)),
        "accuracy": float(np.mean(predicted == truth)) if len(truth) else 0.0,
    }


def text_key(text: str) -> str:
    """A text reduced to its casefolded letters and digits, to find the same text in two splits."""
    return re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", text).casefold())


MIXED_GOLD_LABELS = {"persian_parsinlu_sentiment": {"mixed"}, "arabic_astd_tweets": {"NEUTRAL"}}
"""Raw gold labels that mean "both polarities" (they map to neutral for the 3-class figures)."""


def pool_from_run(
    run: ServedRun,
    head: Head,
    *,
    truth: Sequence[int],
    language: Sequence[str],
    dataset: str,
    binary: bool = False,
    seen: Sequence[bool] | None = None,
    gold_mixed: Sequence[bool] | None = None,
) -> DevPool:
    """A pool of labelled texts from one served run and the head's logits for its sentences."""
    n = len(run)
    return DevPool(
        logits=head.logits(run.sentence_embeddings),
        weights=run.weights,
        bounds=run.bounds,
        detected=list(run.languages),
        language=np.array(language, dtype=np.str_),
        dataset=np.array([dataset] * n, dtype=np.str_),
        truth=np.array(truth, np.int64),
        binary=np.full(n, binary),
        seen=np.array(seen if seen is not None else [False] * n, bool),
        gold_mixed=np.array(gold_mixed if gold_mixed is not None else [False] * n, bool),
    )


def concat_pools(pools: Sequence[DevPool]) -> DevPool:
    """One pool of the texts of several."""
    counts = np.concatenate([np.diff(p.bounds) for p in pools])
    return DevPool(
        logits=np.vstack([p.logits for p in pools]).astype(np.float32),
        weights=np.concatenate([p.weights for p in pools]).astype(np.float32),
        bounds=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        detected=[x for p in pools for x in p.detected],
        language=np.concatenate([p.language for p in pools]),
        dataset=np.concatenate([p.dataset for p in pools]),
        truth=np.concatenate([p.truth for p in pools]),
        binary=np.concatenate([p.binary for p in pools]),
        seen=np.concatenate([p.seen for p in pools]),
        gold_mixed=np.concatenate([p.gold_mixed for p in pools]),
    )


def build_pool(
    analyzer: PipelineAnalyzer, *, cache: Path | None, cap: int | None = None, seed: int = 13
) -> DevPool:
    """Every sentiment dev split run through the served pipeline, with the head's logits per sentence.

    ``cap`` keeps at most that many texts per data set (a seeded sample); ``seen`` marks dev texts that are
    also in a train split, or in another data set's dev split that training used for early stopping.
    """
    training_keys: set[str] = set()
    early_stopping_keys: dict[str, set[str]] = {}
    for name, dataset in SENTIMENT_DATASETS.items():
        training_keys |= {text_key(e.text) for e in load_sentiment(name, "train")}
        if dataset.has_train:
            early_stopping_keys[name] = {text_key(e.text) for e in load_sentiment(name, "dev")}
    pools = []
    for name, dataset in sorted(SENTIMENT_DATASETS.items()):
        examples = load_sentiment(name, "dev")
        raw = [str(row["label"]) for row in _raw_rows(name)]
        rows = np.arange(len(examples))
        if cap is not None and len(rows) > cap:
            rows = np.sort(np.random.default_rng(seed).choice(len(rows), size=cap, replace=False))
        picked = [examples[i] for i in rows]
        run = run_served(analyzer, [e.text for e in picked], cache=cache, label=f"{name}-dev")
        other_dev = set().union(*(keys for other, keys in early_stopping_keys.items() if other != name))
        keys = [text_key(e.text) for e in picked]
        pools.append(
            pool_from_run(
                run,
                analyzer.sentiment.head,
                truth=[e.label for e in picked],
                language=[e.language for e in picked],
                dataset=name,
                binary=dataset.binary,
                seen=[key in training_keys or key in other_dev for key in keys],
                gold_mixed=[raw[i] in MIXED_GOLD_LABELS.get(name, set()) for i in rows],
            )
        )
    return concat_pools(pools)


def _raw_rows(name: str) -> list[dict[str, Any]]:
    path = data_root() / name / "dev.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# --- fitting: temperature and prior shift per language, then the mixed and abstention thresholds ----------

TEMPERATURE_GRID = np.exp(np.linspace(np.log(0.4), np.log(6.0), 55))
MIXED_GRID = (0.5, 0.6, 0.7, 0.8, 0.9, 1.01)
ABSTAIN_GRID = (0.0, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)
MIN_LANGUAGE_ROWS = 150
TRAIN_CAP, TRAIN_SEED = 15_000, 13  # as the head was trained (training.json)
PRIOR_MODES = ("none", "train-global", "train-language", "dev-language")


@dataclass(frozen=True)
class FitSettings:
    """How a calibration is chosen from labelled texts (recorded in the calibration's ``fitted``)."""

    per_language: bool = True
    prior: str = "train-global"
    """One of PRIOR_MODES, or ``choose`` to take the best of them on the fitting texts. ``train-global`` had
    the best cross-fitted objective on dev among the modes (see ABLATION)."""
    mixed: str = "choose"
    """``choose``: the lowest threshold whose firing rate on single-polarity texts is at most ``mixed_budget``."""
    mixed_budget: float = 0.02
    abstain: str = "0.4"
    """A threshold; ``off``: none; ``choose``: the highest threshold of ABSTAIN_GRID that costs at most
    ``abstain_tolerance`` of the objective on the fitting texts. 0.4 is the highest fixed threshold whose
    cross-fitted objective on dev was not below no abstention's (choosing per half was unstable: 0.5 on one
    half, 0 on the other); see ABLATION."""
    abstain_tolerance: float = 0.0


def review_nll(pool: DevPool, calibration: SentimentCalibration) -> float:
    """Mean negative log-likelihood of the gold labels under the served review probabilities."""
    probabilities = pool_reviews(pool, calibration).probabilities
    picked = probabilities[np.arange(len(pool)), pool.truth]
    return float(-np.mean(np.log(np.maximum(picked, 1e-7))))


def objective(pool: DevPool, calibration: SentimentCalibration) -> float:
    """The served-label macro-F1 averaged over data sets (a multilingual one: over its languages).

    Texts also seen in training are left out.
    """
    return _objective_from(pool, pool_reviews(pool, calibration))


def _languages(pool: DevPool, min_rows: int) -> list[str]:
    counts: dict[str, int] = {}
    for language, seen in zip(pool.detected, pool.seen, strict=True):
        if language and not seen:
            counts[language] = counts.get(language, 0) + 1
    return sorted(language for language, n in counts.items() if n >= min_rows)


def _by_language(pool: DevPool, language: str | None) -> DevPool:
    rows = [
        i for i, x in enumerate(pool.detected) if (language is None or x == language) and not pool.seen[i]
    ]
    return pool.subset(rows)


def fit_temperatures(
    pool: DevPool, base: SentimentCalibration, *, per_language: bool
) -> SentimentCalibration:
    """The temperature minimising review NLL, overall and for every language with enough texts."""

    def best(part: DevPool) -> float:
        losses = [
            review_nll(part, replace(base, temperature=float(t), temperatures={})) for t in TEMPERATURE_GRID
        ]
        return float(TEMPERATURE_GRID[int(np.argmin(losses))])

    default = best(_by_language(pool, None))
    languages = _languages(pool, MIN_LANGUAGE_ROWS) if per_language else []
    return replace(
        base, temperature=default, temperatures={x: best(_by_language(pool, x)) for x in languages}
    )


def train_prior_shifts() -> tuple[tuple[float, ...], dict[str, tuple[float, ...]]]:
    """log(train class frequency) - log(class share the head was trained with), overall and per language.

    The head was trained with classes balanced inside each data set (scripts/train_heads.py), so its
    implicit prior is nearly uniform; the train splits' own frequencies are what real streams look like more
    closely (e.g. Thai and Arabic tweets are mostly neutral). Three-class data sets only: a binary set says
    nothing about how often neutral is.
    """
    raw: dict[str, NDArray[np.float64]] = {}
    effective: dict[str, NDArray[np.float64]] = {}
    for name, dataset in sorted(SENTIMENT_DATASETS.items()):
        if dataset.binary or not dataset.has_train:
            continue
        examples = capped(load_sentiment(name, "train"), TRAIN_CAP, TRAIN_SEED)
        labels = np.array([e.label for e in examples])
        totals = np.bincount(labels, minlength=3).astype(np.float64)
        # scripts/train_heads.py: a row weighs sqrt(N) / (classes present * rows of its class)
        per_row = np.sqrt(len(labels)) / (np.count_nonzero(totals) * np.maximum(totals, 1.0))
        for language in [*sorted({e.language for e in examples}), "*"]:
            mask = np.array([language in ("*", e.language) for e in examples])
            counts = np.bincount(labels[mask], minlength=3).astype(np.float64)
            weights = counts * per_row
            raw[language] = raw.get(language, np.zeros(3)) + counts
            effective[language] = effective.get(language, np.zeros(3)) + weights

    def shift(language: str) -> tuple[float, ...]:
        p, q = raw[language] / raw[language].sum(), effective[language] / effective[language].sum()
        values = np.log(np.maximum(p, 1e-3)) - np.log(np.maximum(q, 1e-3))
        return tuple(round(float(v - values.mean()), 4) for v in values)

    return shift("*"), {language: shift(language) for language in raw if language != "*"}


def _fit_dev_shift(part: DevPool, base: SentimentCalibration) -> tuple[float, ...]:
    """The (negative, 0, positive) log-prior shift minimising review NLL: a coarse grid, then a fine one."""

    def loss(negative: float, positive: float) -> float:
        return review_nll(part, replace(base, log_prior=(negative, 0.0, positive), log_priors={}))

    best = (0.0, 0.0)
    for step, radius in ((0.25, 2.0), (0.05, 0.25)):
        offsets = np.arange(-radius, radius + step / 2, step)
        grid = [(best[0] + a, best[1] + b) for a in offsets for b in offsets]
        best = min(grid, key=lambda point: loss(*point))
    return (round(float(best[0]), 4), 0.0, round(float(best[1]), 4))


def prior_candidates(
    pool: DevPool, base: SentimentCalibration, *, per_language: bool, modes: Sequence[str] = PRIOR_MODES
) -> dict[str, SentimentCalibration]:
    """The calibration under each prior-correction mode (temperatures as in ``base``).

    ``none``: no shift. ``train-global`` / ``train-language``: the shift from train class frequencies
    (``train_prior_shifts``), one for all languages / per language. ``dev-language``: the shift minimising
    the review NLL on ``pool`` itself, per language (it learns the pool's own class balance).
    """
    languages = _languages(pool, MIN_LANGUAGE_ROWS) if per_language else []
    candidates = {}
    if "none" in modes:
        candidates["none"] = replace(base, log_prior=(0.0, 0.0, 0.0), log_priors={})
    if "train-global" in modes or "train-language" in modes:
        overall, by_language = train_prior_shifts()
        if "train-global" in modes:
            candidates["train-global"] = replace(base, log_prior=overall, log_priors={})
        if "train-language" in modes:
            candidates["train-language"] = replace(
                base, log_prior=overall, log_priors={x: v for x, v in by_language.items() if x in languages}
            )
    if "dev-language" in modes:
        candidates["dev-language"] = replace(
            base,
            log_prior=_fit_dev_shift(_by_language(pool, None), base),
            log_priors={x: _fit_dev_shift(_by_language(pool, x), base) for x in languages},
        )
    return candidates


def mixed_firing(pool: DevPool, calibration: SentimentCalibration) -> dict[str, float]:
    """How often ``mixed`` fires on single-polarity texts, on texts of several sentences, and on gold-mixed ones."""
    reviews = pool_reviews(pool, calibration)
    fired = reviews.label == MIXED
    single = ~pool.gold_mixed & ~pool.seen
    several = single & (np.diff(pool.bounds) > 1)
    return {
        "single_polarity": float(fired[single].mean()) if single.any() else 0.0,
        "single_polarity_several_sentences": float(fired[several].mean()) if several.any() else 0.0,
        "gold_mixed": float(fired[pool.gold_mixed].mean()) if pool.gold_mixed.any() else 0.0,
    }


def fit_calibration(pool: DevPool, base: SentimentCalibration, settings: FitSettings) -> SentimentCalibration:
    """Choose temperatures, prior shift, mixed threshold and abstention threshold on ``pool`` (in that order)."""
    calibration = replace(base, abstain_below=0.0, mixed_threshold=0.5)
    calibration = fit_temperatures(pool, calibration, per_language=settings.per_language)
    modes = PRIOR_MODES if settings.prior == "choose" else (settings.prior,)
    candidates = prior_candidates(pool, calibration, per_language=settings.per_language, modes=modes)
    prior = max(candidates, key=lambda mode: objective(pool, candidates[mode]))
    calibration = candidates[prior]
    if prior.startswith("train-"):
        # a fixed shift (not fitted here): the temperatures are fitted again with it in place
        calibration = fit_temperatures(pool, calibration, per_language=settings.per_language)
    if settings.mixed == "choose":
        allowed = [
            t
            for t in MIXED_GRID
            if mixed_firing(pool, replace(calibration, mixed_threshold=t))["single_polarity"]
            <= settings.mixed_budget
        ]
        calibration = replace(calibration, mixed_threshold=min(allowed) if allowed else MIXED_GRID[-1])
    else:
        calibration = replace(calibration, mixed_threshold=float(settings.mixed))
    if settings.abstain == "choose":
        scores = {t: objective(pool, replace(calibration, abstain_below=t)) for t in ABSTAIN_GRID}
        free = [t for t in ABSTAIN_GRID if scores[t] >= scores[0.0] - settings.abstain_tolerance]
        calibration = replace(calibration, abstain_below=max(free))
    elif settings.abstain != "off":
        calibration = replace(calibration, abstain_below=float(settings.abstain))
    return replace(
        calibration, fitted={**dict(calibration.fitted), "prior": prior, "settings": settings.__dict__}
    )


def cross_fit(
    pool: DevPool, base: SentimentCalibration, settings: FitSettings, *, seed: int = 13
) -> tuple[Reviews, list[SentimentCalibration]]:
    """Out-of-fold served reviews: fit on one stratified half of the pool, predict the other, and back."""
    folds = stratified_halves(
        [f"{d}|{x}|{t}" for d, x, t in zip(pool.dataset, pool.language, pool.truth, strict=True)], seed=seed
    )
    probabilities = np.zeros((len(pool), 3), np.float32)
    label = np.zeros(len(pool), np.int64)
    abstained = np.zeros(len(pool), bool)
    fitted = []
    for fold in (0, 1):
        fit_rows, test_rows = np.flatnonzero(folds == fold), np.flatnonzero(folds != fold)
        calibration = fit_calibration(pool.subset(fit_rows), base, settings)
        reviews = pool_reviews(pool.subset(test_rows), calibration)
        probabilities[test_rows], label[test_rows], abstained[test_rows] = (
            reviews.probabilities,
            reviews.label,
            reviews.abstained,
        )
        fitted.append(calibration)
    return Reviews(probabilities=probabilities, label=label, abstained=abstained), fitted


# --- reporting -------------------------------------------------------------------------------------------


def _take(reviews: Reviews, rows: NDArray[np.bool_] | NDArray[np.int64]) -> Reviews:
    return Reviews(
        probabilities=reviews.probabilities[rows],
        label=reviews.label[rows],
        abstained=reviews.abstained[rows],
    )


def served_figures(pool: DevPool, reviews: Reviews) -> dict[str, Any]:
    """Per data set (all texts; texts unseen in training where some were seen; per language) and overall."""
    results: dict[str, Any] = {}
    for name in sorted(set(pool.dataset.tolist())):
        in_set = pool.dataset == name
        binary = bool(pool.binary[in_set][0])
        entry: dict[str, Any] = {
            "all": label_figures(pool.truth[in_set], _take(reviews, in_set), binary=binary),
            "official_metric": SENTIMENT_DATASETS[name].official_metric
            if name in SENTIMENT_DATASETS
            else "macro_f1",
        }
        if (in_set & pool.seen).any():
            unseen = in_set & ~pool.seen
            entry["unseen"] = label_figures(pool.truth[unseen], _take(reviews, unseen), binary=binary)
        languages = sorted(set(pool.language[in_set].tolist()))
        if len(languages) > 1:
            entry["per_language"] = {
                x: label_figures(
                    pool.truth[in_set & (pool.language == x)],
                    _take(reviews, in_set & (pool.language == x)),
                    binary=binary,
                )
                for x in languages
            }
            for kind in ("served", "argmax"):
                entry[f"{kind}_language_mean_macro_f1"] = float(
                    np.mean([f[kind]["macro_f1"] for f in entry["per_language"].values()])
                )
        results[name] = entry
    three_class = ~pool.binary & ~pool.seen
    ece_by_language = {
        x: expected_calibration_error(
            reviews.probabilities[three_class & (pool.language == x)],
            pool.truth[three_class & (pool.language == x)],
        )
        for x in sorted(set(pool.language[three_class].tolist()))
    }
    return {
        "data_sets": results,
        "ece_by_language": ece_by_language,
        "ece_all": expected_calibration_error(reviews.probabilities[three_class], pool.truth[three_class]),
        "objective": _objective_from(pool, reviews),
    }


def _objective_from(pool: DevPool, reviews: Reviews) -> float:
    scores = []
    for name in sorted(set(pool.dataset.tolist())):
        in_set = (pool.dataset == name) & ~pool.seen
        per_language = []
        for language in sorted(set(pool.language[in_set].tolist())):
            rows = np.flatnonzero(in_set & (pool.language == language))
            truth = pool.truth[rows]
            classes = [NEGATIVE, POSITIVE] if pool.binary[rows[0]] else sorted(set(truth.tolist()))
            per_language.append(_single_label(pool.truth[rows], reviews.label[rows], classes)["macro_f1"])
        if per_language:
            scores.append(float(np.mean(per_language)))
    return float(np.mean(scores))


def _percent(counts: dict[str, int], names: Sequence[str]) -> str:
    total = max(sum(counts.values()), 1)
    return "/".join(f"{100 * counts.get(name, 0) / total:.0f}" for name in names)


def served_markdown(figures: dict[str, Any]) -> str:
    """One row per data set (and unseen subset, and language): served and arg-max figures, label shares, ECE."""
    lines = [
        "| data set | subset | n | served macro-F1 | served official | arg-max macro-F1 | mixed % | abstained % "
        "| gold neg/neu/pos % | served neg/neu/pos/mixed % | ECE % |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def row(name: str, subset: str, f: dict[str, Any], official: str) -> str:
        ece = f"{100 * f['ece']:.1f}" if "ece" in f else ""
        return (
            f"| {name} | {subset} | {f['n']} | {100 * f['served']['macro_f1']:.1f} | "
            f"{official} {100 * f['served'][official]:.1f} | {100 * f['argmax']['macro_f1']:.1f} | "
            f"{100 * f['mixed_rate']:.1f} | {100 * f['abstain_rate']:.1f} | "
            f"{_percent(f['gold'], SENTIMENT_LABELS)} | {_percent(f['predicted'], (*SENTIMENT_LABELS, 'mixed'))} | {ece} |"
        )

    for name, entry in figures["data_sets"].items():
        official = entry["official_metric"]
        lines.append(row(name, "all", entry["all"], official))
        if "unseen" in entry:
            lines.append(row("", "unseen in training", entry["unseen"], official))
        for language, f in entry.get("per_language", {}).items():
            lines.append(row("", language, f, official))
    ece = ", ".join(f"{x} {100 * v:.1f}" for x, v in figures["ece_by_language"].items())
    lines.append("")
    lines.append(
        f"ECE by language (3-class sets, texts unseen in training, %): {ece}; all {100 * figures['ece_all']:.1f}."
    )
    return "\n".join(lines)


# --- the whole evaluation, and the command line ----------------------------------------------------------


def served_analyzer(encoder: str, models: Path, *, fork: Path | None = None) -> PipelineAnalyzer:
    """The analyzer ``/v1/score`` builds (service.pipeline.load_analyzer), with the heads from ``models``, or
    with a forked top and the heads in its folder."""
    step = encoder_step(encoder)
    if fork is not None:
        step["fork"] = str(fork)
    steps = default_steps(encoder=step)
    if fork is None and models.resolve() != MODELS_DIR:
        for i, head_step in enumerate(steps):
            if isinstance(head_step, dict) and head_step["name"] in (
                "sentiment.e5head.v1",
                "emotion.e5head.v1",
            ):
                folder = (
                    "sentiment-e5-small" if head_step["name"].startswith("sentiment") else "emotion-e5-small"
                )
                steps[i] = {**head_step, "path": str(models / folder / "head.safetensors")}
    return PipelineAnalyzer(steps=steps)


def evaluate_served(
    analyzer: PipelineAnalyzer, *, cache: Path | None, cap: int | None = None
) -> dict[str, Any]:
    """Served-path figures on every sentiment dev split: before calibration, and cross-fitted after it.

    "before" is the head served alone (its single temperature, mixed at 0.5, no abstention), as cxmine served
    it before calibration.json. "cross_fitted" refits the calibration the way the shipped one was fitted,
    on one stratified half of the dev texts, and scores the other half (and the other way round), so no text
    is scored with values fitted on it. "shipped_in_sample" scores every text with the shipped calibration,
    which was fitted on all of them: optimistic, for reference only.
    """
    pool = build_pool(analyzer, cache=cache, cap=cap)
    scorer = analyzer.sentiment
    before = SentimentCalibration(temperature=scorer.head.temperature)
    settings = (
        FitSettings(**scorer.calibration.fitted.get("settings", {})) if scorer.calibrated else FitSettings()
    )
    out_of_fold, folds = cross_fit(pool, before, settings)
    result: dict[str, Any] = {
        "texts": len(pool),
        "cap_per_data_set": cap,
        "seen_in_training": int(pool.seen.sum()),
        "before": served_figures(pool, pool_reviews(pool, before)),
        "cross_fitted": served_figures(pool, out_of_fold),
        "mixed_firing_before": mixed_firing(pool, before),
        "fold_calibrations": [c.to_dict() for c in folds],
        "fit_settings": settings.__dict__,
    }
    if scorer.calibrated:
        result["shipped_in_sample"] = served_figures(pool, pool_reviews(pool, scorer.calibration))
        result["mixed_firing_shipped"] = mixed_firing(pool, scorer.calibration)
    return result


ABLATION: dict[str, FitSettings] = {
    "one temperature, no prior, mixed kept at 0.5": FitSettings(
        per_language=False, prior="none", mixed="0.5", abstain="off"
    ),
    "one temperature, no prior": FitSettings(per_language=False, prior="none", abstain="off"),
    "per-language temperature, no prior": FitSettings(prior="none", abstain="off"),
    "per-language temperature, train prior (one for all languages)": FitSettings(abstain="off"),
    "per-language temperature, train prior per language": FitSettings(prior="train-language", abstain="off"),
    "per-language temperature, prior fitted on dev per language": FitSettings(
        prior="dev-language", abstain="off"
    ),
    "per-language temperature, prior chosen on the fitting half": FitSettings(prior="choose", abstain="off"),
    **{
        f"per-language temperature, train prior, abstain below {t:g}": FitSettings(abstain=str(t))
        for t in (0.35, 0.4, 0.45, 0.5)
    },
    "per-language temperature, train prior, abstention chosen on the fitting half": FitSettings(
        abstain="choose"
    ),
}
"""The fitting procedures compared (each cross-fitted); the shipped one is FitSettings()."""


def ablation_markdown(pool: DevPool, base: SentimentCalibration) -> str:
    """Each fitting procedure of ABLATION, cross-fitted: objective, ECE, label shares, what the folds chose."""
    lines = [
        "| procedure | objective | ECE mean / max % | mixed % | abstained % | served neg share % (gold) "
        "| negative precision % | folds chose (prior, mixed, abstain) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    three = ~pool.binary & ~pool.seen
    gold_negative = 100 * np.mean(pool.truth[three] == NEGATIVE)
    for name, settings in ABLATION.items():
        reviews, folds = cross_fit(pool, base, settings)
        figures = served_figures(pool, reviews)
        ece = list(figures["ece_by_language"].values())
        label = reviews.label[three]
        precision = 100 * np.mean(pool.truth[three][label == NEGATIVE] == NEGATIVE)
        chosen = "; ".join(f"{c.fitted['prior']}, {c.mixed_threshold:g}, {c.abstain_below:g}" for c in folds)
        lines.append(
            f"| {name} | {100 * figures['objective']:.2f} | {100 * np.mean(ece):.1f} / {100 * max(ece):.1f} | "
            f"{100 * np.mean(reviews.label == MIXED):.1f} | {100 * np.mean(reviews.abstained):.1f} | "
            f"{100 * np.mean(label == NEGATIVE):.1f} ({gold_negative:.1f}) | {precision:.1f} | {chosen} |"
        )
    before = pool_reviews(pool, base)
    figures = served_figures(pool, before)
    ece = list(figures["ece_by_language"].values())
    label = before.label[three]
    lines.insert(
        2,
        f"| before: the head alone (not fitted) | {100 * figures['objective']:.2f} | "
        f"{100 * np.mean(ece):.1f} / {100 * max(ece):.1f} | {100 * np.mean(before.label == MIXED):.1f} | 0.0 | "
        f"{100 * np.mean(label == NEGATIVE):.1f} ({gold_negative:.1f}) | "
        f"{100 * np.mean(pool.truth[three][label == NEGATIVE] == NEGATIVE):.1f} | |",
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--encoder", default="onnx:var/models/e5-small-onnx")
    parser.add_argument("--models", type=Path, default=MODELS_DIR)
    parser.add_argument(
        "--fork", type=Path, default=None, help="a forked top's folder (its heads; --fit writes there)"
    )
    parser.add_argument("--cache", type=Path, default=Path("var/cache/embeddings"))
    parser.add_argument("--cap", type=int, default=None, help="most dev texts taken from one data set")
    parser.add_argument(
        "--fit", action="store_true", help="fit the calibration on all dev texts and write calibration.json"
    )
    parser.add_argument("--prior", default=FitSettings.prior, choices=["choose", *PRIOR_MODES])
    parser.add_argument("--abstain", default=FitSettings.abstain, help="a threshold, off, or choose")
    parser.add_argument("--mixed", default="choose", help="choose, or a threshold")
    parser.add_argument("--mixed-budget", type=float, default=FitSettings.mixed_budget)
    parser.add_argument("--abstain-tolerance", type=float, default=FitSettings.abstain_tolerance)
    parser.add_argument("--ablation", action="store_true", help="also compare the fitting procedures")
    args = parser.parse_args()

    analyzer = served_analyzer(args.encoder, args.models, fork=args.fork)
    folder = (
        args.cache / hashlib.sha256(analyzer.encoder.head_input_name.encode()).hexdigest()[:12] / "served"
    )
    pool = build_pool(analyzer, cache=folder, cap=args.cap)
    head = analyzer.sentiment.head
    before = SentimentCalibration(temperature=head.temperature)
    settings = FitSettings(
        prior=args.prior,
        abstain=args.abstain,
        abstain_tolerance=args.abstain_tolerance,
        mixed=args.mixed,
        mixed_budget=args.mixed_budget,
    )
    print(f"{len(pool)} dev texts ({int(pool.seen.sum())} also seen in training)\n")
    print(
        f"## Before (the head alone)\n\n{served_markdown(served_figures(pool, pool_reviews(pool, before)))}\n"
    )
    print(f"mixed firing before: {mixed_firing(pool, before)}\n")
    out_of_fold, folds = cross_fit(pool, before, settings)
    print(
        f"## Cross-fitted calibration ({settings})\n\n{served_markdown(served_figures(pool, out_of_fold))}\n"
    )
    for i, calibration in enumerate(folds):
        print(f"fold {i}: {json.dumps(calibration.to_dict())}")
    if args.ablation:
        print(f"\n## Fitting procedures compared (cross-fitted)\n\n{ablation_markdown(pool, before)}\n")
    if args.fit:
        calibration = fit_calibration(pool, before, settings)
        calibration = replace(
            calibration,
            fitted={
                **dict(calibration.fitted),
                "on": f"served pipeline, all {len(pool)} dev texts of the sentiment data sets "
                "(texts also seen in training left out)",
                "by": "python -m scripts.served_sentiment --fit",
                "encoder": analyzer.encoder.head_input_name,
                "head": f"{head.name}-{head.version}",
                "date": f"{datetime.now(UTC):%Y-%m-%d}",
                "cross_fitted_objective": served_figures(pool, out_of_fold)["objective"],
                "mixed_firing": mixed_firing(pool, calibration),
            },
        )
        print(
            "\n## Abstention thresholds with the fitted calibration (in-sample: all dev texts)\n\n"
            f"{abstention_markdown(pool, calibration)}\n"
        )
        target = (args.fork or args.models / "sentiment-e5-small") / CALIBRATION_FILE
        calibration.save(target)
        print(f"\nwrote {target}: {json.dumps(calibration.to_dict())}")


def gap_markdown(embedding: dict[str, Any], served: dict[str, Any]) -> str:
    """Whole-text embeddings against the served path, per data set, in each data set's official metric."""
    lines = [
        "| data set | metric | whole-text embedding | served arg-max (before) | served label (before) "
        "| served label (after, cross-fitted) | after, texts unseen in training |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, entry in served["before"]["data_sets"].items():
        after = served["cross_fitted"]["data_sets"][name]
        official = entry["official_metric"]
        whole = embedding.get(name, {}).get("overall", {}).get(official)
        unseen = after.get("unseen", after["all"])["served"][official]
        lines.append(
            f"| {name} | {official} | {'' if whole is None else f'{100 * whole:.1f}'} | "
            f"{100 * entry['all']['argmax'][official]:.1f} | {100 * entry['all']['served'][official]:.1f} | "
            f"**{100 * after['all']['served'][official]:.1f}** | {100 * unseen:.1f} |"
        )
    before, after = served["before"]["data_sets"], served["cross_fitted"]["data_sets"]
    xlmt = "xlmt_umsab_multilingual_sentiment"
    if xlmt in before:
        lines.append("")
        lines.append(
            f"XLM-T eight-language mean macro-F1, served label: before {100 * before[xlmt]['served_language_mean_macro_f1']:.1f}, "
            f"after (cross-fitted) **{100 * after[xlmt]['served_language_mean_macro_f1']:.1f}**; "
            f"arg-max of the served probabilities: before {100 * before[xlmt]['argmax_language_mean_macro_f1']:.1f}, "
            f"after {100 * after[xlmt]['argmax_language_mean_macro_f1']:.1f}."
        )
    return "\n".join(lines)


def abstention_markdown(pool: DevPool, calibration: SentimentCalibration) -> str:
    """What each abstention threshold costs and buys with ``calibration`` (applied as is, not refitted)."""
    lines = [
        "| abstain below | abstained % | objective | polar labels correct % | negative labels correct % "
        "| negative recall % |",
        "|---|---|---|---|---|---|",
    ]
    three = ~pool.binary & ~pool.seen
    truth = pool.truth[three]
    for threshold in ABSTAIN_GRID:
        reviews = pool_reviews(pool, replace(calibration, abstain_below=threshold))
        label = reviews.label[three]
        polar = (label == NEGATIVE) | (label == POSITIVE)
        lines.append(
            f"| {threshold:g} | {100 * reviews.abstained[three].mean():.1f} | "
            f"{100 * _objective_from(pool, reviews):.2f} | {100 * np.mean(truth[polar] == label[polar]):.1f} | "
            f"{100 * np.mean(truth[label == NEGATIVE] == NEGATIVE):.1f} | "
            f"{100 * np.mean(label[truth == NEGATIVE] == NEGATIVE):.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
