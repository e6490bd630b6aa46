"""Evaluate the shipped heads on every dev split in ../shared/data: macro-F1 per data set and language.

    .venv/bin/python -m scripts.evaluate --encoder onnx:var/models/e5-small-onnx --write-cards
    .venv/bin/python -m scripts.evaluate --only topics [--topic-grid | --reuse-topic-grid]

Sentiment is measured twice: on whole-text embeddings (the head alone) and through the served path
(``scripts/served_sentiment.py``): every dev text runs through the analyzer ``POST /v1/score`` uses
(normalisation, language detection, sentence split, length-weighted mean, the ``mixed`` rule, calibration and
abstention), and the served label is scored as a user reads it (``mixed`` counts as wrong for a 3-class
gold label), beside the arg-max of the served probabilities, mixed and abstention rates, predicted vs gold
label shares and ECE. ``--served-cap N`` takes at most N dev texts per data set (default: all; the served
pipeline's output is cached under var/cache/embeddings, so only the first run encodes).

Also evaluates topic quality (``scripts/eval_topics.py``): NMI / ARI of the topics against BANKING77 intents
and MAMS aspect categories, and how language-neutral topics are on the multilingual demo texts;
``--topic-grid`` adds the tuning grid on the train splits and evaluates its best configs beside the default
(``--reuse-topic-grid`` takes the grid from the existing models/evaluation.json instead).

Prints markdown tables, writes models/evaluation.json (a partial run with --only replaces only its own
sections), and with --write-cards puts the figures into each model card between its EVALUATION markers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from nlp.datasets import (
    GOEMOTIONS_LABELS,
    SENTIMENT_DATASETS,
    SENTIMENT_LABELS,
    data_root,
    load_emotions,
    load_sentiment,
)
from nlp.encoders import EncodeSentences
from nlp.fork import EMOTION_HEAD_FILE, SENTIMENT_HEAD_FILE
from nlp.heads import Head
from nlp.registry import registry
from nlp.touchpoints import Taxonomy, TouchpointClassifier, parse_taxonomy
from scripts.eval_topics import evaluate_topics, grid_configs, topics_markdown
from scripts.served_sentiment import evaluate_served, gap_markdown, served_analyzer, served_markdown
from scripts.train_heads import EmbeddingCache, encoder_step, multi_hot

PUBLISHED = {
    "xlmt_umsab_multilingual_sentiment": "XLM-T (XLM-R base, tweet-adapted, fine-tuned): 69.4 macro-F1 averaged over 8 languages",
    "en_goemotions": "Demszky et al. 2020 (BERT-base fine-tuned): 0.46 macro-F1; later work about 0.50",
    "en_tweeteval_sentiment": "TweetEval: 72.6 macro-recall (RoBERTa-base, Twitter-adapted)",
    "en_tweeteval_emotion": "TweetEval: 79.5 macro-F1 (RoBERTa-base, Twitter-adapted)",
    "en_banking77_intents": "about 93 % accuracy with all training data, fine-tuned (Casanueva et al. 2020)",
}


def f1_scores(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """Per-class F1 for single-label predictions."""
    scores = np.zeros(classes)
    for c in range(classes):
        tp = np.sum((predicted == c) & (truth == c))
        denominator = np.sum(predicted == c) + np.sum(truth == c)
        scores[c] = 2 * tp / denominator if denominator else 0.0
    return scores


def single_label_metrics(truth: np.ndarray, predicted: np.ndarray, classes: list[int]) -> dict[str, float]:
    """Macro-F1 and macro-recall over ``classes``, and accuracy."""
    f1 = f1_scores(truth, predicted, max(classes) + 1)[classes]
    recalls = [np.mean(predicted[truth == c] == c) if np.any(truth == c) else 0.0 for c in classes]
    return {
        "macro_f1": float(np.mean(f1)),
        "macro_recall": float(np.mean(recalls)),
        "accuracy": float(np.mean(truth == predicted)),
        "n": len(truth),
    }


def evaluate_sentiment(cache: EmbeddingCache, head: Head) -> dict[str, Any]:
    """Per data set and per language, on the dev splits."""
    results: dict[str, Any] = {}
    negative, positive = SENTIMENT_LABELS.index("negative"), SENTIMENT_LABELS.index("positive")
    for name, dataset in sorted(SENTIMENT_DATASETS.items()):
        examples = load_sentiment(name, "dev")
        probabilities = head.probabilities(cache.embed(f"{name}-dev", [e.text for e in examples]))
        truth = np.array([e.label for e in examples])
        if dataset.binary:
            predicted = np.where(probabilities[:, positive] >= probabilities[:, negative], positive, negative)
            classes = [negative, positive]
        else:
            predicted = probabilities.argmax(axis=1)
            classes = sorted(set(truth.tolist()))
        languages = np.array([e.language for e in examples])
        per_language = {
            language: single_label_metrics(
                truth[languages == language], predicted[languages == language], classes
            )
            for language in sorted(set(languages.tolist()))
        }
        results[name] = {
            "overall": single_label_metrics(truth, predicted, classes),
            "per_language": per_language,
            "official_metric": dataset.official_metric,
            "binary": dataset.binary,
        }
    return results


def evaluate_emotion(cache: EmbeddingCache, head: Head) -> dict[str, Any]:
    """GoEmotions multi-label macro-F1 with the tuned thresholds; TweetEval emotion as 4-way argmax."""
    results: dict[str, Any] = {}
    dev = load_emotions("en_goemotions", "dev")
    probabilities = head.probabilities(cache.embed("en_goemotions-dev", [e.text for e in dev]))
    truth = multi_hot([e.labels for e in dev]) > 0.5
    thresholds = head.thresholds if head.thresholds is not None else np.full(len(GOEMOTIONS_LABELS), 0.5)
    predicted = probabilities >= thresholds
    tp = (predicted & truth).sum(axis=0)
    per_label = 2 * tp / np.maximum(predicted.sum(axis=0) + truth.sum(axis=0), 1)
    micro = 2 * tp.sum() / max(predicted.sum() + truth.sum(), 1)
    results["en_goemotions"] = {
        "overall": {"macro_f1": float(per_label.mean()), "micro_f1": float(micro), "n": len(dev)},
        "per_label_f1": {
            label: round(float(f), 4) for label, f in zip(GOEMOTIONS_LABELS, per_label, strict=True)
        },
        "official_metric": "macro_f1",
    }
    tweets = load_emotions("en_tweeteval_emotion", "dev")
    four = [GOEMOTIONS_LABELS.index(label) for label in ("anger", "joy", "optimism", "sadness")]
    tweet_probabilities = head.probabilities(
        cache.embed("en_tweeteval_emotion-dev", [e.text for e in tweets])
    )
    tweet_truth = np.array([four.index(e.labels[0]) for e in tweets])
    tweet_predicted = tweet_probabilities[:, four].argmax(axis=1)
    results["en_tweeteval_emotion"] = {
        "overall": single_label_metrics(tweet_truth, tweet_predicted, [0, 1, 2, 3]),
        "official_metric": "macro_f1",
        "note": "zero-shot from the GoEmotions head: argmax over anger, joy, optimism, sadness",
    }
    return results


def label_id(label: str) -> str:
    """A data set's label as a touchpoint id."""
    return re.sub(r"[^a-z0-9_]", "", label.lower())


def few_shot_taxonomy(name: str, examples: dict[str, list[str]]) -> Taxonomy:
    """A taxonomy with one touchpoint per label: the label's name and a few training sentences as examples."""
    return parse_taxonomy(
        {
            "name": name,
            "version": 1,
            "touchpoints": [
                {
                    "id": label_id(label),
                    "name": label,
                    "stages": ["experience"],
                    "examples": {"en": [label.replace("_", " "), *phrases]},
                }
                for label, phrases in examples.items()
            ],
        }
    )


def evaluate_touchpoints(cache: EmbeddingCache, *, shots: int, seed: int = 13) -> dict[str, Any]:
    """Touchpoint (aspect / intent) detection with taxonomies built from label names and ``shots`` examples."""
    rng = random.Random(seed)
    root = data_root()

    def rows(dataset: str, split: str) -> list[dict[str, Any]]:
        text = (root / dataset / f"{split}.jsonl").read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def classifier_for(taxonomy: Taxonomy) -> TouchpointClassifier:
        return TouchpointClassifier(
            taxonomy=taxonomy,
            example_embeddings=[cache.embed(f"tax-{t.id}", t.all_examples) for t in taxonomy.touchpoints],
            background_embeddings=cache.embed("tax-background", taxonomy.background_phrases),
        )

    results: dict[str, Any] = {}
    train = rows("en_mams_acsa", "train")
    by_category: dict[str, list[str]] = defaultdict(list)
    for row in sorted(train, key=lambda r: (len(r["aspect_categories"]), rng.random())):
        for aspect in row["aspect_categories"]:
            if len(by_category[aspect["category"]]) < shots:
                by_category[aspect["category"]].append(row["text"])
    classifier = classifier_for(few_shot_taxonomy("mams", dict(by_category)))
    dev = rows("en_mams_acsa", "dev")
    assigned = classifier.assign(cache.embed("en_mams_acsa-dev", [r["text"] for r in dev]))
    tp = fp = fn = top1 = 0
    per_label: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for row, chosen in zip(dev, assigned, strict=True):
        gold = {a["category"] for a in row["aspect_categories"]}
        predicted = {c.touchpoint for c in chosen}
        tp, fp, fn = tp + len(predicted & gold), fp + len(predicted - gold), fn + len(gold - predicted)
        top1 += bool(chosen) and chosen[0].touchpoint in gold
        for label in gold | predicted:
            counts = per_label[label]
            counts[0] += label in gold and label in predicted
            counts[1] += label in predicted and label not in gold
            counts[2] += label in gold and label not in predicted
    macro = np.mean([2 * a / max(2 * a + b + c, 1) for a, b, c in per_label.values()])
    results["en_mams_acsa"] = {
        "overall": {
            "macro_f1": float(macro),
            "micro_f1": 2 * tp / max(2 * tp + fp + fn, 1),
            "top1_in_gold": top1 / len(dev),
            "n": len(dev),
        },
        "official_metric": "micro_f1",
        "note": f"aspect-category detection, {shots} examples per category; sentences have 2-5 categories",
    }
    train = rows("en_banking77_intents", "train")
    rng.shuffle(train)
    by_intent: dict[str, list[str]] = defaultdict(list)
    for row in train:
        if len(by_intent[row["label"]]) < shots:
            by_intent[row["label"]].append(row["text"])
    taxonomy = few_shot_taxonomy("banking77", dict(sorted(by_intent.items())))
    classifier = classifier_for(taxonomy)
    dev = rows("en_banking77_intents", "dev")
    scores = classifier.scores(cache.embed("en_banking77_intents-dev", [r["text"] for r in dev]))[:, :-1]
    labels = [t.id for t in taxonomy.touchpoints]
    truth = np.array([labels.index(label_id(r["label"])) for r in dev])
    results["en_banking77_intents"] = {
        "overall": single_label_metrics(truth, scores.argmax(axis=1), list(range(len(labels)))),
        "official_metric": "accuracy",
        "note": f"intent = nearest touchpoint, {shots} examples per intent",
    }
    return results


def markdown(results: dict[str, Any]) -> str:
    """The figures as markdown tables (percentages)."""
    lines = [
        "| data set | language | n | macro-F1 | official metric | published |",
        "|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        overall = result["overall"]
        official = result.get("official_metric", "macro_f1")
        official_value = f"{official} {100 * overall.get(official, overall['macro_f1']):.1f}"
        lines.append(
            f"| {name} | all | {overall['n']} | **{100 * overall['macro_f1']:.1f}** | {official_value} | "
            f"{PUBLISHED.get(name, '')} |"
        )
        for language, figures in result.get("per_language", {}).items():
            if len(result["per_language"]) > 1:
                lines.append(f"| | {language} | {figures['n']} | {100 * figures['macro_f1']:.1f} | | |")
    return "\n".join(lines)


def machine() -> str:
    """A short description of the machine."""
    model = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor() or "unknown CPU",
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    return f"{model}, {os.cpu_count()} cores"


def write_card(card: Path, table: str, *, encoder: str) -> None:
    """Replace the figures between the card's EVALUATION markers."""
    text = card.read_text()
    stamp = f"Measured {datetime.now(UTC):%Y-%m-%d} by `scripts/evaluate.py` with encoder `{encoder}` on {machine()}."
    block = f"<!-- EVALUATION:START -->\n{stamp}\n\n{table}\n<!-- EVALUATION:END -->"
    text = re.sub(r"<!-- EVALUATION:START -->.*<!-- EVALUATION:END -->", lambda _: block, text, flags=re.S)
    card.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--encoder", default="onnx:var/models/e5-small-onnx")
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--cache", type=Path, default=Path("var/cache/embeddings"))
    parser.add_argument(
        "--fork",
        type=Path,
        default=None,
        help="evaluate a forked top (its folder) and the heads in it; figures go under 'fork' and its card",
    )
    parser.add_argument("--write-cards", action="store_true")
    parser.add_argument(
        "--shots", type=int, default=8, help="examples per label in the touchpoint taxonomies"
    )
    parser.add_argument(
        "--served-cap", type=int, default=None, help="most dev texts per data set on the served path"
    )
    parser.add_argument(
        "--only",
        choices=["heads", "topics"],
        help="run only the heads (sentiment, emotion, touchpoints) or only the topic evaluation",
    )
    parser.add_argument(
        "--topic-grid",
        action="store_true",
        help="also run the topic tuning grid on the train splits (minutes)",
    )
    parser.add_argument(
        "--reuse-topic-grid",
        action="store_true",
        help="take the tuning grid from the existing evaluation.json instead of running it again",
    )
    parser.add_argument(
        "--topic-candidate",
        action="append",
        default=[],
        choices=sorted(grid_configs()),
        metavar="GRID_ROW",
        help="also evaluate this grid config (e.g. umap5/mcs8/ms3/eom) on the dev splits; repeatable",
    )
    args = parser.parse_args()

    step = encoder_step(args.encoder)
    if args.fork is not None:
        step["fork"] = str(args.fork)
    encoder = registry.create(step.pop("name"), **step)
    assert isinstance(encoder, EncodeSentences)
    cache = EmbeddingCache(encoder=encoder, folder=args.cache)
    print(f"encoder: {encoder.head_input_name}\nmachine: {machine()}\n")
    summary: dict[str, Any] = {"encoder": encoder.name, "machine": machine()}
    if args.fork is not None:
        fork = evaluate_heads(cache, args, encoder_name=encoder.head_input_name)
        summary = {"fork": {"encoder": encoder.head_input_name, "machine": machine(), **fork}}
        path = args.models / "evaluation.json"
        if path.exists():
            summary = {**json.loads(path.read_text()), **summary}
        path.write_text(json.dumps(summary, indent=2, default=float) + "\n")
        return
    if args.only != "topics":
        summary |= evaluate_heads(cache, args, encoder_name=encoder.name)
    if args.only != "heads":
        previous = args.models / "evaluation.json"
        previous_grid = (
            json.loads(previous.read_text()).get("topics", {}).get("grid")
            if args.reuse_topic_grid and previous.exists()
            else None
        )
        candidates = {name: grid_configs()[name] for name in args.topic_candidate}
        topics = evaluate_topics(
            cache, grid=args.topic_grid, previous_grid=previous_grid, candidates=candidates
        )
        print(f"## Topics (dev; NMI, ARI and shares in %)\n\n{topics_markdown(topics)}\n")
        summary["topics"] = {"encoder": encoder.name, **topics}
    path = args.models / "evaluation.json"
    if args.only and path.exists():
        summary = {**json.loads(path.read_text()), **summary}
    path.write_text(json.dumps(summary, indent=2, default=float) + "\n")


def evaluate_heads(cache: EmbeddingCache, args: argparse.Namespace, *, encoder_name: str) -> dict[str, Any]:
    """Sentiment, emotion and touchpoint figures (printed; model cards written with --write-cards).

    With ``--fork`` the heads are the fork's, scored on its affect embeddings, and the card is the fork's.
    """
    fork: Path | None = args.fork
    heads = (
        {"sentiment": fork / SENTIMENT_HEAD_FILE, "emotion": fork / EMOTION_HEAD_FILE}
        if fork is not None
        else {
            "sentiment": args.models / "sentiment-e5-small" / "head.safetensors",
            "emotion": args.models / "emotion-e5-small" / "head.safetensors",
        }
    )
    sentiment_head = Head.load(heads["sentiment"], expected_encoder=encoder_name)
    emotion_head = Head.load(heads["emotion"], expected_encoder=encoder_name)
    head_cache = (
        EmbeddingCache(encoder=cache.encoder, folder=cache.folder.parent, affect=True) if fork else cache
    )

    sentiment = evaluate_sentiment(head_cache, sentiment_head)
    analyzer = served_analyzer(args.encoder, args.models, fork=fork)
    served = evaluate_served(analyzer, cache=head_cache.folder / "served", cap=args.served_cap)
    served_tables = (
        f"### Whole-text embeddings vs the served path\n\n{gap_markdown(sentiment, served)}\n\n"
        f"### Served path, before calibration (the head alone; mixed at 0.5, no abstention)\n\n"
        f"{served_markdown(served['before'])}\n\n"
        f"### Served path, after: calibration cross-fitted on dev halves\n\n"
        f"{served_markdown(served['cross_fitted'])}\n\n"
        f"mixed fires on single-polarity texts: before {100 * served['mixed_firing_before']['single_polarity']:.1f} %"
        + (
            f", shipped {100 * served['mixed_firing_shipped']['single_polarity']:.1f} % "
            f"(on gold-mixed texts: before {100 * served['mixed_firing_before']['gold_mixed']:.1f} %, "
            f"shipped {100 * served['mixed_firing_shipped']['gold_mixed']:.1f} %)"
            if "mixed_firing_shipped" in served
            else ""
        )
        + f". {served['texts']} dev texts, {served['seen_in_training']} of them also in a train split "
        f"(cap per data set: {served['cap_per_data_set'] or 'none'})."
    )
    print(f"## Sentiment, served path (dev)\n\n{served_tables}\n")
    emotion = evaluate_emotion(head_cache, emotion_head)
    sentiment_table, emotion_table = markdown(sentiment), markdown(emotion)
    xlmt = sentiment["xlmt_umsab_multilingual_sentiment"]["per_language"]
    xlmt_mean = float(np.mean([figures["macro_f1"] for figures in xlmt.values()]))
    print(f"## Sentiment (dev)\n\n{sentiment_table}\n")
    print(f"XLM-T eight-language mean macro-F1: {100 * xlmt_mean:.1f} (published XLM-T: 69.4)\n")
    print(f"## Emotion (dev)\n\n{emotion_table}\n")
    summary: dict[str, Any] = {
        "sentiment": sentiment,
        "sentiment_served": served,
        "emotion": emotion,
        "xlmt_mean_macro_f1": xlmt_mean,
    }
    if fork is None:  # touchpoints read the frozen encoder's embeddings: a fork does not change them
        touchpoints = evaluate_touchpoints(cache, shots=args.shots)
        print(
            f"## Touchpoint / aspect detection (dev, {args.shots} examples per label)\n\n"
            f"{markdown(touchpoints)}\n"
        )
        mams = touchpoints["en_mams_acsa"]["overall"]
        print(
            f"MAMS: micro-F1 {100 * mams['micro_f1']:.1f}, top-1 in gold {100 * mams['top1_in_gold']:.1f}\n"
        )
        summary["touchpoints"] = touchpoints
    if args.write_cards and fork is not None:
        write_card(
            fork / "MODEL_CARD.md",
            "### Sentiment, whole-text affect embeddings\n\n"
            + sentiment_table
            + f"\n\nXLM-T eight-language mean macro-F1: **{100 * xlmt_mean:.1f}** (published XLM-T: 69.4).\n\n"
            + served_tables
            + f"\n\n### Emotion (GoEmotions dev)\n\n{emotion_table}",
            encoder=encoder_name,
        )
    elif args.write_cards:
        write_card(
            args.models / "sentiment-e5-small" / "MODEL_CARD.md",
            "### Whole-text embeddings (the head alone)\n\n"
            + sentiment_table
            + f"\n\nXLM-T eight-language mean macro-F1: **{100 * xlmt_mean:.1f}** "
            "(published XLM-T: 69.4).\n\n" + served_tables,
            encoder=encoder_name,
        )
        write_card(args.models / "emotion-e5-small" / "MODEL_CARD.md", emotion_table, encoder=encoder_name)
    by_language: dict[str, list[float]] = defaultdict(list)
    for result in sentiment.values():
        for language, figures in result["per_language"].items():
            by_language[language].append(figures["macro_f1"])
    print(
        "Sentiment macro-F1 by language (mean over data sets): "
        + ", ".join(
            f"{language} {100 * np.mean(values):.1f}" for language, values in sorted(by_language.items())
        )
    )
    return summary


if __name__ == "__main__":
    main()
