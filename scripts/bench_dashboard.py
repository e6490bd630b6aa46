"""Dashboard latency benchmark: each page's HTML over real HTTP, signed in as an admin, p50 / p95 per page.

Two databases:

- the demo (default): a fresh data directory with the demo loaded, scored and topic-modelled by the real
  CLI (or ``--data-dir`` of one already made), served on SQLite as ``./scripts/run.sh`` would;
- the 1,000,000-item benchmark database of ``scripts/bench_pain_points.py`` kept on PostgreSQL
  (``bench_pain_points.py --items 1000000 --backend postgres --keep``), with ``--postgres``.

    .venv/bin/python -m scripts.bench_dashboard                       # demo, SQLite
    .venv/bin/python -m scripts.bench_dashboard --postgres --requests 20

Each page is timed twice: repeated views of the same URL ("warm": its aggregates are cached until the data
changes) and views of a period one day longer each time ("cold": computed from the database).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from scripts.bench_pain_points import DEFAULT_POSTGRES_URL, percentile, postgres_target

CLI = Path(sys.executable).with_name("cxmine")
PAGES = (
    "/",
    "/pain-points",
    "/themes/{topic}",
    "/journey",
    "/locations",
    "/feedback",
    "/feedback/{item}",
    "/alerts",
    "/sources",
)


def cli(env: dict[str, str], *args: str) -> str:
    """Run ``cxmine ARGS``; its stdout (exit on failure)."""
    done = subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"cxmine {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def demo_environment(data_dir: Path | None, tmp: Path) -> dict[str, str]:
    """The environment of a server on the demo; builds the demo when no data directory is given."""
    env = {**os.environ, "CXMINE_LOG_LEVEL": "WARNING"}
    if data_dir is not None:
        env["CXMINE_DATA_DIR"] = str(data_dir)
        return env
    env["CXMINE_DATA_DIR"] = str(tmp / "var")
    for step in (("db", "upgrade"), ("models", "build"), ("demo",), ("score",), ("topics", "refit")):
        print(f"  cxmine {' '.join(step)}", flush=True)
        cli(env, *step)
    return env


def sign_in(client: httpx.Client, key: str) -> None:
    """Sign in through the real form (its CSRF token included)."""
    form = client.get("/signin")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    if token is None:
        raise SystemExit("the sign-in form has no CSRF token")
    answer = client.post("/signin", data={"api_key": key, "csrf_token": token.group(1), "next": "/"})
    if answer.status_code != 303:
        raise SystemExit(f"sign-in failed: {answer.status_code}")


def page_paths(client: httpx.Client, key: str) -> list[str]:
    """The pages to time, with a real theme and item id filled in."""
    headers = {"Authorization": f"Bearer {key}"}
    points = client.get("/v1/pain-points", params={"limit": 1}, headers=headers).json()["pain_points"]
    items = client.get("/v1/feedback", params={"limit": 1}, headers=headers).json()["items"]
    topic = str(points[0]["topic_id"]) if points else "1"
    item = str(items[0]["id"]) if items else "1"
    return [p.format(topic=topic, item=item) for p in PAGES]


def serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``cxmine serve`` (no scheduler) on a free port; the process and its base URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [str(CLI), "serve", "--host", "127.0.0.1", "--port", str(port), "--no-scheduler"],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"cxmine serve exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(base + "/readyz", timeout=5).status_code == 200:
                return server, base
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise SystemExit("cxmine serve was not ready within 180 s")


def _timed(client: httpx.Client, path: str) -> tuple[float, int]:
    began = time.perf_counter()
    response = client.get(path)
    elapsed = (time.perf_counter() - began) * 1000
    if response.status_code != 200:
        raise SystemExit(f"GET {path}: {response.status_code} {response.text[:300]}")
    return elapsed, len(response.content)


def time_pages(base: str, key: str, *, requests: int, warmups: int) -> list[dict[str, object]]:
    """Per page: repeated views (warm: aggregates cached) and views of a new period each (cold)."""
    results = []
    today = datetime.now(UTC).date()
    with httpx.Client(base_url=base, timeout=600, follow_redirects=False) as client:
        sign_in(client, key)
        for path in page_paths(client, key):
            for _ in range(warmups):
                client.get(path)
            warm = [_timed(client, path) for _ in range(requests)]
            separator = "&" if "?" in path else "?"
            # A period starting one day earlier each time: nothing of it is cached yet.
            cold = [
                _timed(
                    client, f"{path}{separator}since={(today - timedelta(weeks=8, days=n + 1)).isoformat()}"
                )
                for n in range(requests)
            ]
            row = {
                "page": path,
                "warm_p50_ms": round(percentile([t for t, _ in warm], 50), 1),
                "warm_p95_ms": round(percentile([t for t, _ in warm], 95), 1),
                "cold_p50_ms": round(percentile([t for t, _ in cold], 50), 1),
                "cold_p95_ms": round(percentile([t for t, _ in cold], 95), 1),
                "bytes": warm[-1][1],
            }
            print(
                f"  {path:<20} warm p50 {row['warm_p50_ms']:>8,.1f}  p95 {row['warm_p95_ms']:>8,.1f} ms"
                f"   cold p50 {row['cold_p50_ms']:>8,.1f}  p95 {row['cold_p95_ms']:>8,.1f} ms  {row['bytes']:>9,} B",
                flush=True,
            )
            results.append(row)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--postgres", action="store_true", help="The kept 1 M-item PostgreSQL benchmark database."
    )
    parser.add_argument(
        "--postgres-url", default=os.environ.get("CXMINE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    )
    parser.add_argument("--schema", default="cxmine_bench")
    parser.add_argument(
        "--data-dir", type=Path, help="A demo data directory already scored (default: build one)."
    )
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--warmups", type=int, default=2)
    parser.add_argument("--out", type=Path, help="Write the figures as JSON here.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.postgres:
            target = postgres_target(args.postgres_url, args.schema)
            env = {
                **os.environ,
                "CXMINE_DATABASE_URL": target.url,
                "CXMINE_DATA_DIR": str(tmp / "var"),
                "CXMINE_LOG_LEVEL": "WARNING",
                "CXMINE_SCORING_ENABLED": "false",
            }
            database = f"PostgreSQL, schema {args.schema}"
        else:
            env = demo_environment(args.data_dir, tmp)
            database = "SQLite demo"
        cli(env, "db", "upgrade")
        key = cli(env, "keys", "create", "--role", "admin", "--name", "bench", "--quiet").strip()
        server, base = serve(env, tmp / "server.log")
        try:
            print(f"{database}: {args.requests} sequential requests per page", flush=True)
            rows = time_pages(base, key, requests=args.requests, warmups=args.warmups)
        finally:
            server.terminate()
            server.wait(timeout=30)
    report = {
        "database": database,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "requests": args.requests,
        "pages": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
