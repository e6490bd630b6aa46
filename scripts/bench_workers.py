"""Scoring throughput with 1 and 2 `cxmine worker` processes (CXMINE_JOB_RUNNER=procrastinate), and what
each scored item costs PostgreSQL.

For each worker count: a fresh schema (migrated, procrastinate's tables), the workers started and their
models loaded, N demo-like texts ingested, then the clock runs from the end of the ingestion until every
item is scored (the workers' score_due tick defers the id ranges, each worker takes ranges). Database load
comes from pg_stat_database (transactions, rows inserted/updated/deleted: database-wide, so other work on
the server is counted too) and the WAL position (pg_current_wal_lsn, server-wide).

.venv/bin/python scripts/bench_workers.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/db \
    --encoder onnx:var/models/e5-small-onnx --items 2000 --workers 1,2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service import tasks  # noqa: E402
from service.db import migrate  # noqa: E402
from service.db.engine import make_engine, make_session_factory  # noqa: E402
from service.ingest.service import ingest_batch  # noqa: E402

STATS_SQL = (
    "SELECT xact_commit + xact_rollback AS transactions, tup_inserted + tup_updated + tup_deleted AS "
    "rows_written, tup_returned + tup_fetched AS rows_read, pg_current_wal_lsn() AS lsn "
    "FROM pg_stat_database WHERE datname = current_database()"
)


def _texts(count: int) -> list[dict[str, Any]]:
    lines = (ROOT / "service" / "demo" / "texts.jsonl").read_text(encoding="utf-8").splitlines()
    demo = [json.loads(line)["text"] for line in lines if line.strip()]
    return [
        {"text": f"{demo[i % len(demo)]} #{i}", "source": "bench", "external_id": str(i)}
        for i in range(count)
    ]


def _schema(base_url: str) -> tuple[str, str]:
    schema = f"cxmine_bench_workers_{uuid.uuid4().hex[:8]}"
    admin = make_engine(base_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    separator = "&" if "?" in base_url else "?"
    return schema, f"{base_url}{separator}options={quote(f'-csearch_path={schema}')}"


def _stats(engine: Engine) -> dict[str, Any]:
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_stat_clear_snapshot()"))
        row = connection.execute(text(STATS_SQL)).one()
    return dict(row._mapping)


def _wal_bytes(engine: Engine, before: str, after: str) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(text("SELECT pg_wal_lsn_diff(:a, :b)"), {"a": after, "b": before}) or 0)


def _count(engine: Engine, sql: str) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(text(sql)) or 0)


def _start_workers(
    url: str, count: int, args: argparse.Namespace, log_dir: Path
) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CXMINE_DATABASE_URL": url,
        "CXMINE_JOB_RUNNER": "procrastinate",
        "CXMINE_ENCODER": args.encoder,
        "CXMINE_SCORING_BATCH_SIZE": str(args.batch_size),
        "CXMINE_SCORING_INTERVAL_SECONDS": "1",
        "CXMINE_ALERTS_ENABLED": "false",
        "CXMINE_TOPICS_BOOTSTRAP_SENTENCES": "100000000",
        "CXMINE_AUTHOR_SALT": "bench",
        "CXMINE_DATA_DIR": str(log_dir),
        "CXMINE_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "service.cli", "worker", "--queues", "score"]
    cores = os.cpu_count() or 1
    return [
        subprocess.Popen(
            [*(["taskset", "-c", str(i % cores)] if args.pin else []), *command, "--name", f"bench{i}"],
            env=env,
            cwd=log_dir,
            stdout=(log_dir / f"worker{i}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for i in range(count)
    ]


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def run(base_url: str, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    """One measurement: ``workers`` processes score ``args.items`` ingested items."""
    schema, url = _schema(base_url)
    engine = make_engine(url)
    log_dir = Path(args.log_dir) / schema
    log_dir.mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        migrate.upgrade(url)
        tasks.install_schema(database_url=url)
        processes = _start_workers(url, workers, args, log_dir)
        _wait(lambda: _count(engine, "SELECT count(*) FROM procrastinate_workers") == workers, 300, "workers")
        items = _texts(args.items)
        with make_session_factory(engine)() as session:
            for start in range(0, len(items), 1000):
                ingest_batch(
                    session,
                    raw_items=items[start : start + 1000],
                    author_salt=b"b",
                    max_text_chars=10_000,
                    actor="b",
                )
        before, started = _stats(engine), time.monotonic()
        scored = "SELECT count(*) FROM feedback_items WHERE scored_at IS NOT NULL"
        _wait(lambda: _count(engine, scored) == args.items, 3600, "scoring")
        elapsed = time.monotonic() - started
        time.sleep(1.0)  # backends report their counters when idle
        after = _stats(engine)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
        wal = _wal_bytes(engine, before["lsn"], after["lsn"]) if "after" in locals() else 0
        engine.dispose()
        admin = make_engine(base_url)
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    per_item = {
        key: (after[key] - before[key]) / args.items for key in ("transactions", "rows_written", "rows_read")
    }
    return {
        "workers": workers,
        "items": args.items,
        "seconds": round(elapsed, 2),
        "items_per_second": round(args.items / elapsed, 1),
        "transactions_per_item": round(per_item["transactions"], 2),
        "rows_written_per_item": round(per_item["rows_written"], 2),
        "rows_read_per_item": round(per_item["rows_read"], 1),
        "wal_bytes_per_item": round(wal / args.items),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=os.environ.get("CXMINE_TEST_POSTGRES_URL"))
    parser.add_argument("--encoder", default=f"onnx:{ROOT / 'var' / 'models' / 'e5-small-onnx'}")
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--pin", action="store_true", help="pin worker i to core i (taskset): one core each")
    parser.add_argument("--log-dir", default="/tmp/cxmine-bench-workers")
    args = parser.parse_args()
    if not args.database_url:
        raise SystemExit("--database-url (or CXMINE_TEST_POSTGRES_URL) is required: a PostgreSQL database")
    results = [run(args.database_url, int(n), args) for n in args.workers.split(",")]
    for result in results:
        print(json.dumps(result))
    if len(results) > 1:
        print(
            f"speed-up {results[0]['workers']} -> {results[-1]['workers']} workers: "
            f"{results[-1]['items_per_second'] / results[0]['items_per_second']:.2f}x"
        )


if __name__ == "__main__":
    main()
