"""Aspect-category sentiment (touchpoint-level sentiment) on SemEval-2014 restaurants and MAMS-ACSA dev.

For each (sentence, gold category) pair the polarity at that category is predicted three ways, all with the
shipped sentiment head and no aspect-level training:

- ``sentence``: the whole sentence's sentiment (what cxmine serves today for every touchpoint of a sentence);
- ``clauses_labels``: ``nlp.aspects`` with ``attribution="labels"``: the sentence is cut into clauses, the
  touchpoint classifier labels each, and a category mentioned with another gets its own clauses' sentiment;
  a category the classifier does not report keeps the sentence's sentiment;
- ``clauses_soft``: ``attribution="soft"`` (the component's default): every split sentence gives the category
  the sentiment of its clauses weighted by how much each clause is about the category
  (``nlp.aspects.soft_clause_weights``); no labeller threshold is involved.

Every method gets the gold category as its query (the ACSA setting); none sees gold polarities, aspect terms
or dev labels. The soft variant and its temperature were chosen on the TRAIN splits. A linear head trained on
the train split (the soft clause embedding plus the category) is reported as a supervised reference.
``conflict`` pairs (SemEval only) are excluded from the polarity metrics, as is common in the literature
(3-way accuracy and macro-F1 over positive/negative/neutral); they count for category detection.
Category detection: the classifier's touchpoints of each sentence (none = the catch-all category) against
the gold category set, micro precision/recall/F1.

Writes the key ``aspects`` of models/evaluation.json (the file is re-read just before, other keys kept) and
prints markdown tables.

    .venv/bin/python -m scripts.eval_aspects [--encoder onnx:var/models/e5-small-onnx] [--split dev]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nlp.aspects import (
    SOFT_TEMPERATURE,
    ClauseAspects,
    sentiment_result,
    soft_clause_weights,
    split_clauses,
)
from nlp.datasets import SENTIMENT_LABELS, data_root
from nlp.encoders import EncodeSentences
from nlp.heads import FloatArray
from nlp.registry import registry
from nlp.scorers import SentimentScorer, make_sentiment_scorer
from nlp.text.normalise import normalise_text
from nlp.touchpoints import Taxonomy, TouchpointClassifier, load_taxonomy
from scripts.train_heads import EmbeddingCache, encoder_step

TAXONOMIES = Path(__file__).resolve().parent.parent / "nlp" / "taxonomies"
POLARITIES = ("negative", "neutral", "positive")
METHODS = ("sentence", "clauses_labels", "clauses_soft")
LANGUAGE = "en"


@dataclass(frozen=True)
class AcsaSet:
    """An aspect-category data set and the taxonomy of its categories."""

    name: str
    taxonomy: Path
    catch_all: str
    """The category a sentence about no touchpoint gets (every gold sentence has one category at least)."""

    def touchpoint(self, category: str) -> str:
        """A gold category as a touchpoint id ("anecdotes/miscellaneous" -> "anecdotes_miscellaneous")."""
        return category.replace("/", "_")


DATASETS = (
    AcsaSet(
        "en_semeval2014_absa_restaurants",
        TAXONOMIES / "semeval14_restaurants.yaml",
        "anecdotes_miscellaneous",
    ),
    AcsaSet("en_mams_acsa", TAXONOMIES / "mams_restaurants.yaml", "miscellaneous"),
)

REFERENCES: dict[str, list[dict[str, Any]]] = {
    "en_semeval2014_absa_restaurants": [
        {
            "system": "NRC-Canada (best of SemEval-2014 Task 4, subtask 4: aspect category polarity)",
            "metric": "accuracy, 4 classes incl. conflict",
            "value": 82.92,
            "setting": "official TEST set (973 categories), supervised on the train set; Kiritchenko et al. 2014",
        },
        {
            "system": "NRC-Canada (best of subtask 3: aspect category detection)",
            "metric": "micro-F1",
            "value": 88.58,
            "setting": "official TEST set, supervised; Kiritchenko et al. 2014",
        },
        {
            "system": "BERT-pair-QA-B (Sun et al., NAACL 2019)",
            "metric": "accuracy, 3 classes (conflict excluded)",
            "value": 89.9,
            "setting": "official TEST set, BERT-base fine-tuned on the train set (4-way 85.9; detection F1 92.18)",
        },
    ],
    "en_mams_acsa": [
        {
            "system": "CapsNet-BERT (Jiang et al., EMNLP 2019, who released MAMS)",
            "metric": "accuracy, 3 classes",
            "value": 79.46,
            "setting": "official TEST set, fine-tuned on MAMS-ACSA train (their plain BERT baseline: about 72)",
        }
    ],
}


class CachedEncoder:
    """The clause encoder for ``ClauseAspects``, through the embedding cache (one label per data set)."""

    def __init__(self, cache: EmbeddingCache, label: str) -> None:
        self.cache = cache
        self.label = label

    def embed_texts(self, texts: Sequence[str]) -> FloatArray:
        return np.asarray(self.cache.embed(self.label, list(texts)), dtype=np.float32)


def machine() -> str:
    """A short description of the machine (as scripts/evaluate.py writes it)."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [
        line.split(":", 1)[1].strip()
        for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
        if line.startswith("model name")
    ]
    return f"{names[0] if names else platform.processor() or 'unknown CPU'}, {os.cpu_count()} cores"


def read_rows(dataset: str, split: str) -> list[dict[str, Any]]:
    path = data_root() / dataset / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def classifier_for(cache: EmbeddingCache, taxonomy: Taxonomy) -> TouchpointClassifier:
    return TouchpointClassifier(
        taxonomy=taxonomy,
        example_embeddings=[cache.embed(f"tax-{t.id}", list(t.all_examples)) for t in taxonomy.touchpoints],
        background_embeddings=cache.embed("tax-background", taxonomy.background_phrases),
    )


def polarity_metrics(gold: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
    """Accuracy and macro-F1 over negative/neutral/positive."""
    truth, guess = np.array(gold), np.array(predicted)
    f1 = {}
    for label in POLARITIES:
        tp = float(((guess == label) & (truth == label)).sum())
        f1[label] = 2 * tp / max(float((guess == label).sum() + (truth == label).sum()), 1.0)
    return {
        "accuracy": float((truth == guess).mean()) if len(truth) else 0.0,
        "macro_f1": float(np.mean(list(f1.values()))),
        **{f"f1_{label}": value for label, value in f1.items()},
        "n": len(truth),
    }


def versus_sentence(gold: Sequence[str], sentence: Sequence[str], method: Sequence[str]) -> dict[str, Any]:
    """Pairs a method gets right that the sentence gets wrong (wins) and the reverse, and a paired bootstrap
    95% interval of its accuracy minus the sentence's, in points."""
    truth = np.array(gold)
    base, other = np.array(sentence) == truth, np.array(method) == truth
    draws = np.random.default_rng(13).integers(0, len(truth), size=(2000, len(truth)))
    differences = 100 * (other[draws].mean(axis=1) - base[draws].mean(axis=1))
    low, high = np.percentile(differences, [2.5, 97.5])
    return {
        "wins": int((other & ~base).sum()),
        "losses": int((base & ~other).sum()),
        "accuracy_difference_ci95": [round(float(low), 2), round(float(high), 2)],
    }


def detection_metrics(gold: Sequence[set[str]], predicted: Sequence[set[str]]) -> dict[str, float]:
    """Micro precision/recall/F1 of predicted category sets."""
    tp = sum(len(g & p) for g, p in zip(gold, predicted, strict=True))
    fp = sum(len(p - g) for g, p in zip(gold, predicted, strict=True))
    fn = sum(len(g - p) for g, p in zip(gold, predicted, strict=True))
    return {
        "precision": tp / max(tp + fp, 1),
        "recall": tp / max(tp + fn, 1),
        "f1": 2 * tp / max(2 * tp + fp + fn, 1),
        "n": len(gold),
    }


@dataclass
class Prepared:
    """A split with everything the methods need."""

    rows: list[dict[str, Any]]
    ids: list[str]
    sentence_vectors: FloatArray
    sentence_probabilities: FloatArray
    clause_texts: list[list[str]]
    clause_vectors: list[FloatArray]
    clause_probabilities: list[FloatArray]
    clause_scores: list[FloatArray]
    clause_weights: list[FloatArray]
    aspects: dict[str, list[Any]]
    sentence_touchpoints: list[set[str]]


def prepare(
    cache: EmbeddingCache, scorer: SentimentScorer, spec: AcsaSet, split: str, *, min_chars: int
) -> Prepared:
    """Embed a split's sentences and clauses; score, label and run the component both ways."""
    rows = read_rows(spec.name, split)
    taxonomy = load_taxonomy(spec.taxonomy)
    classifier = classifier_for(cache, taxonomy)
    ids = [t.id for t in taxonomy.touchpoints]
    texts = [str(r["text"]) for r in rows]
    sentences = cache.embed(f"{spec.name}-{split}", texts)

    def probabilities(vectors: FloatArray) -> FloatArray:
        return scorer.calibration.probabilities(scorer.head.logits(vectors), LANGUAGE)

    clauses = [[c.text for c in split_clauses(t, min_chars=min_chars)] for t in texts]
    encoder = CachedEncoder(cache, f"{spec.name}-{split}-clauses{min_chars}")
    flat = [normalise_text(c)[0] for cs in clauses if len(cs) > 1 for c in cs]
    vectors = encoder.embed_texts(flat) if flat else np.zeros((0, sentences.shape[1]), np.float32)
    per_sentence: list[FloatArray] = []
    cursor = 0
    for i, cs in enumerate(clauses):
        if len(cs) > 1:
            per_sentence.append(vectors[cursor : cursor + len(cs)])
            cursor += len(cs)
        else:
            per_sentence.append(sentences[i : i + 1])
    aspects: dict[str, list[Any]] = {}
    for attribution in ("labels", "soft"):
        component = ClauseAspects(
            encoder=encoder,
            classifier=classifier,
            head=scorer.head,
            calibrate=scorer.calibration.probabilities,
            abstain_below=scorer.calibration.abstain_below,
            min_chars=min_chars,
            attribution=attribution,
        )
        aspects[attribution] = component.analyse(
            texts, embeddings=sentences, languages=[LANGUAGE] * len(texts)
        )
    return Prepared(
        rows=rows,
        ids=ids,
        sentence_vectors=sentences,
        sentence_probabilities=probabilities(sentences),
        clause_texts=clauses,
        clause_vectors=per_sentence,
        clause_probabilities=[probabilities(v) for v in per_sentence],
        clause_scores=[classifier.scores(v)[:, :-1] for v in per_sentence],
        clause_weights=[
            np.array([max(sum(ch.isalnum() for ch in c), 1) for c in cs], np.float32) for cs in clauses
        ],
        aspects=aspects,
        sentence_touchpoints=[{t.touchpoint for t in found} for found in classifier.assign(sentences)],
    )


def soft_embedding(data: Prepared, i: int, column: int) -> FloatArray:
    """The sentence's clauses averaged by their soft weights for a category (the sentence when unsplit)."""
    if len(data.clause_texts[i]) < 2:
        return np.asarray(data.sentence_vectors[i], dtype=np.float32)
    weights = soft_clause_weights(data.clause_scores[i], column, data.clause_weights[i])
    return np.asarray(weights @ data.clause_vectors[i], dtype=np.float32)


def pairs(data: Prepared, spec: AcsaSet) -> list[tuple[int, int, str]]:
    """(sentence index, category column, gold polarity) for every non-conflict pair."""
    return [
        (i, data.ids.index(spec.touchpoint(a["category"])), str(a["polarity"]))
        for i, row in enumerate(data.rows)
        for a in row["aspect_categories"]
        if a["polarity"] != "conflict"
    ]


def predict(data: Prepared, spec: AcsaSet, abstain_below: float) -> dict[str, list[str]]:
    """Each method's polarity for every pair."""
    result: dict[str, list[str]] = {method: [] for method in METHODS}
    for i, column, _ in pairs(data, spec):
        sentence = sentiment_result(data.sentence_probabilities[i], abstain_below=abstain_below).label
        result["sentence"].append(sentence)
        found = data.aspects["labels"][i].get(data.ids[column])
        result["clauses_labels"].append(found.sentiment.label if found else sentence)
        if len(data.clause_texts[i]) < 2:
            result["clauses_soft"].append(sentence)
            continue
        weights = soft_clause_weights(data.clause_scores[i], column, data.clause_weights[i])
        mixed = np.asarray(weights @ data.clause_probabilities[i], dtype=np.float32)
        result["clauses_soft"].append(sentiment_result(mixed, abstain_below=abstain_below).label)
    return result


def supervised_reference(train: Prepared, dev: Prepared, spec: AcsaSet) -> list[str]:
    """A logistic-regression head on [soft clause embedding for the category, category one-hot], fit on train."""
    from sklearn.linear_model import LogisticRegression

    def features(data: Prepared) -> tuple[np.ndarray, list[str]]:
        rows, labels = [], []
        for i, column, polarity in pairs(data, spec):
            onehot = np.zeros(len(data.ids), np.float32)
            onehot[column] = 1.0
            rows.append(np.concatenate([soft_embedding(data, i, column), onehot]))
            labels.append(polarity)
        return np.vstack(rows), labels

    x_train, y_train = features(train)
    x_dev, _ = features(dev)
    model = LogisticRegression(C=1.0, max_iter=3000)
    model.fit(x_train, y_train)
    return [str(label) for label in model.predict(x_dev)]


def evaluate_set(
    cache: EmbeddingCache,
    scorer: SentimentScorer,
    spec: AcsaSet,
    *,
    split: str,
    min_chars: int,
    supervised: bool,
) -> dict[str, Any]:
    """Polarity per method (all pairs, and pairs of sentences whose categories differ in polarity) and
    category detection, for one data set."""
    data = prepare(cache, scorer, spec, split, min_chars=min_chars)
    gold_pairs = pairs(data, spec)
    gold = [polarity for _, _, polarity in gold_pairs]
    polarities_by_sentence = [{str(a["polarity"]) for a in row["aspect_categories"]} for row in data.rows]
    mixed = [len(polarities_by_sentence[i]) > 1 for i, _, _ in gold_pairs]
    split_pairs = [len(data.clause_texts[i]) > 1 for i, _, _ in gold_pairs]
    predictions = predict(data, spec, scorer.calibration.abstain_below)
    if supervised:
        train = prepare(cache, scorer, spec, "train", min_chars=min_chars)
        predictions["supervised_reference"] = supervised_reference(train, data, spec)

    def subset(values: list[str], keep: list[bool]) -> list[str]:
        return [v for v, k in zip(values, keep, strict=True) if k]

    polarity = {
        method: {
            "all": polarity_metrics(gold, predicted),
            "mixed_polarity_sentences": polarity_metrics(subset(gold, mixed), subset(predicted, mixed)),
            "split_sentences": polarity_metrics(subset(gold, split_pairs), subset(predicted, split_pairs)),
            "versus_sentence": versus_sentence(gold, predictions["sentence"], predicted),
        }
        for method, predicted in predictions.items()
    }
    gold_sets = [{spec.touchpoint(str(a["category"])) for a in row["aspect_categories"]} for row in data.rows]
    sentence_sets = [found or {spec.catch_all} for found in data.sentence_touchpoints]
    component_sets = [
        {t.touchpoint for t in a.touchpoints} or {spec.catch_all} for a in data.aspects["labels"]
    ]
    reported = [data.ids[column] in component_sets[i] for i, column, _ in gold_pairs]
    return {
        "split": split,
        "sentences": len(data.rows),
        "pairs": len(gold),
        "conflict_pairs_excluded": sum(
            a["polarity"] == "conflict" for row in data.rows for a in row["aspect_categories"]
        ),
        "gold_polarity_counts": {label: gold.count(label) for label in POLARITIES},
        "sentences_split": sum(len(c) > 1 for c in data.clause_texts),
        "pairs_in_split_sentences": sum(split_pairs),
        "pairs_in_mixed_polarity_sentences": sum(mixed),
        "pairs_whose_category_the_classifier_reports": sum(reported),
        "taxonomy": spec.taxonomy.name,
        "polarity": polarity,
        "detection": {
            "sentence_labeller": detection_metrics(gold_sets, sentence_sets),
            "sentence_and_clause_labeller": detection_metrics(gold_sets, component_sets),
        },
        "references": REFERENCES.get(spec.name, []),
    }


def markdown(results: dict[str, Any]) -> str:
    """Polarity and detection tables."""
    lines = [
        "| data set | method | pairs | accuracy | macro-F1 | acc. on mixed-polarity sentences (n) "
        "| acc. on split sentences (n) | vs sentence: wins/losses, Δacc 95% CI |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        for method, figures in result["polarity"].items():
            everything, mixed, split, versus = (
                figures["all"],
                figures["mixed_polarity_sentences"],
                figures["split_sentences"],
                figures["versus_sentence"],
            )
            lines.append(
                f"| {name} | {method} | {everything['n']} | {100 * everything['accuracy']:.1f} | "
                f"{100 * everything['macro_f1']:.1f} | {100 * mixed['accuracy']:.1f} ({mixed['n']}) | "
                f"{100 * split['accuracy']:.1f} ({split['n']}) | {versus['wins']}/{versus['losses']}, "
                f"[{versus['accuracy_difference_ci95'][0]:+.1f}, {versus['accuracy_difference_ci95'][1]:+.1f}] |"
            )
    lines += ["", "| data set | category detection | precision | recall | F1 |", "|---|---|---|---|---|"]
    for name, result in results.items():
        for labeller, figures in result["detection"].items():
            lines.append(
                f"| {name} | {labeller} | {100 * figures['precision']:.1f} | {100 * figures['recall']:.1f} | "
                f"{100 * figures['f1']:.1f} |"
            )
    lines += ["", "| data set | published reference | metric | value | setting |", "|---|---|---|---|---|"]
    for name, result in results.items():
        for ref in result["references"]:
            lines.append(
                f"| {name} | {ref['system']} | {ref['metric']} | {ref['value']} | {ref['setting']} |"
            )
    return "\n".join(lines)


def write_results(path: Path, aspects: dict[str, Any]) -> None:
    """Set the ``aspects`` key of evaluation.json, re-reading the file first so other keys stay as they are."""
    document = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    document["aspects"] = aspects
    path.write_text(json.dumps(document, indent=2, default=float) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--encoder", default="onnx:var/models/e5-small-onnx")
    parser.add_argument("--cache", type=Path, default=Path("var/cache/embeddings"))
    parser.add_argument("--split", default="dev", choices=("dev", "train"))
    parser.add_argument("--min-chars", type=int, default=8, help="letters/digits each side of a clause cut")
    parser.add_argument(
        "--no-supervised", action="store_true", help="skip the supervised reference (embeds the train splits)"
    )
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--no-write", action="store_true", help="print only; leave models/evaluation.json")
    args = parser.parse_args()
    step = encoder_step(args.encoder)
    encoder = registry.create(step.pop("name"), **step)
    assert isinstance(encoder, EncodeSentences)
    cache = EmbeddingCache(encoder=encoder, folder=args.cache)
    scorer = make_sentiment_scorer(encoder=encoder.name)
    assert isinstance(scorer, SentimentScorer)
    results = {
        spec.name: evaluate_set(
            cache,
            scorer,
            spec,
            split=args.split,
            min_chars=args.min_chars,
            supervised=not args.no_supervised and args.split != "train",
        )
        for spec in DATASETS
    }
    summary = {
        "encoder": encoder.name,
        "sentiment": scorer.version,
        "machine": machine(),
        "split": args.split,
        "min_clause_chars": args.min_chars,
        "soft_temperature": SOFT_TEMPERATURE,
        "labels": list(SENTIMENT_LABELS),
        "conflict": "excluded from polarity metrics (3-way accuracy / macro-F1); kept for category detection",
        "command": f"python -m scripts.eval_aspects --encoder {args.encoder} --split {args.split}",
        "datasets": results,
    }
    print(f"encoder {encoder.name}; sentiment {scorer.version}; split {args.split}\n")
    print(markdown(results))
    if not args.no_write and args.split == "dev":
        write_results(args.models / "evaluation.json", summary)
        print(f"\nwrote the 'aspects' key of {args.models / 'evaluation.json'}")


if __name__ == "__main__":
    main()
