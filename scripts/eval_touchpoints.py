"""Touchpoint detection on the hand-labelled demo texts (service/demo/texts.jsonl), per language.

Each text is assigned touchpoints exactly as the service assigns a sentence; micro precision, recall and F1
against the text's labelled touchpoints, top-1 accuracy, and how many vague texts ("Five stars!!!") wrongly
get a touchpoint. With --grid it also searches the two margins (the shipped defaults were chosen this way,
so these demo figures are in-sample; MAMS/BANKING77 figures come with the topics issue).

    .venv/bin/python scripts/eval_touchpoints.py --encoder onnx:var/models/e5-small-onnx [--grid]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from importlib.resources import files
from typing import Any

import numpy as np

from nlp.encoders import EncodeSentences
from nlp.registry import registry
from nlp.text.normalise import normalise_text
from nlp.touchpoints import TouchpointClassifier, load_taxonomy
from scripts.train_heads import encoder_step

VAGUE = [
    "Five stars!!!", "ok thanks", "meh...", "Great app", "ممتاز جدا", "عالیه", "ดีมากกก", "hello", "5 stars",
    "I love it so much", "worst ever!!", "خیلی بد بود", "سيء جدا جدا", "แย่มากๆ", "so so",
]  # fmt: skip


def evaluate(
    classifier: TouchpointClassifier, vectors: np.ndarray, rows: list[dict[str, Any]], vague: np.ndarray
) -> dict[str, dict[str, float]]:
    """Micro P/R/F1 and top-1 accuracy per language and overall."""
    counts: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for row, chosen in zip(rows, classifier.assign(vectors), strict=True):
        gold = set(row["touchpoints"])
        predicted = {c.touchpoint for c in chosen}
        for key in (str(row["language"]), "all"):
            tally = counts[key]
            tally[0] += len(predicted & gold)
            tally[1] += len(predicted - gold)
            tally[2] += len(gold - predicted)
            tally[3] += bool(chosen) and chosen[0].touchpoint in gold
            tally[4] += 1
    result = {}
    for key, (tp, fp, fn, top1, n) in counts.items():
        result[key] = {
            "precision": tp / max(tp + fp, 1),
            "recall": tp / max(tp + fn, 1),
            "f1": 2 * tp / max(2 * tp + fp + fn, 1),
            "top1": top1 / n,
            "n": n,
        }
    result["all"]["vague_labelled"] = sum(bool(c) for c in classifier.assign(vague))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--encoder", default="onnx:var/models/e5-small-onnx")
    parser.add_argument("--grid", action="store_true", help="search margin and background margin")
    args = parser.parse_args()
    step = encoder_step(args.encoder)
    encoder = registry.create(step.pop("name"), **step)
    assert isinstance(encoder, EncodeSentences)

    def embed(texts: list[str]) -> np.ndarray:
        return encoder.embed_texts([normalise_text(text)[0] for text in texts])

    taxonomy = load_taxonomy()
    examples = [embed(t.all_examples) for t in taxonomy.touchpoints]
    background = embed(taxonomy.background_phrases)
    text = files("service.demo").joinpath("texts.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    vectors, vague = embed([str(r["text"]) for r in rows]), embed(VAGUE)

    def run(margin: float, background_margin: float) -> dict[str, dict[str, float]]:
        classifier = TouchpointClassifier(
            taxonomy=taxonomy,
            example_embeddings=examples,
            background_embeddings=background,
            margin=margin,
            background_margin=background_margin,
        )
        return evaluate(classifier, vectors, rows, vague)

    if args.grid:
        grid = [(m, b) for m in (0.0, 0.0025, 0.005, 0.01) for b in (0.0, 0.005, 0.01)]
        for margin, background_margin in grid:
            overall = run(margin, background_margin)["all"]
            print(
                f"margin {margin:.4f} background {background_margin:.3f}: F1 {overall['f1']:.3f} "
                f"P {overall['precision']:.3f} R {overall['recall']:.3f} vague {overall['vague_labelled']}/15"
            )
    defaults = TouchpointClassifier.__init__.__kwdefaults__ or {}
    figures = run(defaults["margin"], defaults["background_margin"])
    print(f"\nencoder {encoder.name}; taxonomy {taxonomy.name} v{taxonomy.version}; shipped margins\n")
    print("| language | texts | precision | recall | F1 | top-1 |\n|---|---|---|---|---|---|")
    for key in sorted(figures, key=lambda k: (k == "all", k)):
        f = figures[key]
        print(
            f"| {key} | {f['n']:.0f} | {f['precision']:.2f} | {f['recall']:.2f} | {f['f1']:.2f} | {f['top1']:.2f} |"
        )
    print(f"\nvague texts given a touchpoint: {figures['all']['vague_labelled']:.0f} of {len(VAGUE)}")


if __name__ == "__main__":
    main()
