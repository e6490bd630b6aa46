"""Collector throughput: how fast one collector run stores records, end to end, on SQLite and PostgreSQL.

A local fake Mastodon instance on 127.0.0.1 (tests/fake_services.py: real Status objects, Link-header
pagination, 40 posts a page) serves N posts; `run_collector` fetches every page over real HTTP, parses the
statuses, redacts personal data, validates, stores each page with its cursor in one transaction, flags
near-duplicates and updates the run's counts. Then a second run measures an incremental pass with nothing
new (one request). The rate limit is at its maximum (60,000 requests a minute: 1 ms a page), so the figure
is cxmine's own cost plus the local fake server's.

    .venv/bin/python scripts/bench_collect.py --posts 4000 --backend both
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.collectors import create_source, run_collector
from service.config import Settings
from service.db import migrate
from service.db.engine import make_engine, make_session_factory
from service.db.models import FeedbackItem
from tests.fake_services import serve_fake_services


def bench(database_url: str, *, posts: int, data_dir: Path) -> dict[str, Any]:
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    settings = Settings(database_url=database_url, data_dir=data_dir, author_salt="bench")
    with serve_fake_services(reviews=0, reviews_per_page=50, statuses=posts) as fake, factory() as session:
        create_source(
            session,
            name="mastodon-bench",
            kind="mastodon.v1",
            config={
                "base_url": fake.base_url,
                "hashtags": ["acmeshop"],
                "first_run_pages": 100,
                "requests_per_minute": 60_000,
            },
        )
        session.commit()
        started = time.perf_counter()
        first = run_collector(
            factory, name="mastodon-bench", settings=settings, trigger="bench", max_pages=100_000
        )
        first_seconds = time.perf_counter() - started
        started = time.perf_counter()
        second = run_collector(
            factory, name="mastodon-bench", settings=settings, trigger="bench", max_pages=100_000
        )
        second_seconds = time.perf_counter() - started
        stored = session.scalar(select(func.count()).select_from(FeedbackItem))
    engine.dispose()
    return {
        "posts": posts,
        "first_run": {
            "status": first.status,
            "pages": first.pages,
            "stored": first.stored,
            "seconds": round(first_seconds, 2),
            "records_per_second": round(first.stored / first_seconds, 1),
            "pages_per_second": round(first.pages / first_seconds, 1),
        },
        "incremental_run": {
            "status": second.status,
            "pages": second.pages,
            "stored": second.stored,
            "ms": round(second_seconds * 1000),
        },
        "rows_in_database": stored,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--posts", type=int, default=4000, help="At most 4000: a first run reads 100 pages.")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "CXMINE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    with tempfile.TemporaryDirectory() as scratch:
        if args.backend in ("sqlite", "both"):
            results["sqlite"] = bench(
                f"sqlite:///{scratch}/bench.db", posts=args.posts, data_dir=Path(scratch)
            )
        if args.backend in ("postgres", "both"):
            schema = f"cxmine_bench_{uuid.uuid4().hex[:8]}"
            admin = make_engine(args.postgres_url)
            with admin.begin() as connection:
                connection.execute(text(f'CREATE SCHEMA "{schema}"'))
            separator = "&" if "?" in args.postgres_url else "?"
            url = f"{args.postgres_url}{separator}options={quote(f'-csearch_path={schema}')}"
            try:
                results["postgres"] = bench(url, posts=args.posts, data_dir=Path(scratch))
            finally:
                with admin.begin() as connection:
                    connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
