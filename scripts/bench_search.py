"""Feedback search latency: ``GET /v1/feedback?q=...`` (``service.feedback.list_feedback``, the first page of
50, newest first) on a kept database of ``bench_pain_points.py``, for common and rare words in several
scripts, alone and with a store filter.

    .venv/bin/python scripts/bench_search.py --url "postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dcxmine_bench"
    .venv/bin/python scripts/bench_search.py --url sqlite:////tmp/ppbench/bench.db

``--without-index`` drops the trigram index for the run (PostgreSQL) and puts it back afterwards, to compare.
"""

from __future__ import annotations

import argparse
import statistics
import time

from sqlalchemy import text

from service.db.engine import make_engine, make_session_factory
from service.feedback import FeedbackFilter, list_feedback

QUERIES = (
    ("common English word", "late", ()),
    ("rare English phrase", "ticket 4242", ()),
    ("Arabic", "المبلغ المسترد", ()),
    ("Thai", "เงินคืน", ()),
    ("word that is nowhere", "zzqxj", ()),
    ("common word at one store", "broken", ("Dubai 07",)),
)
INDEX = "ix_feedback_items_text_trigram"


def time_queries(url: str, *, repeats: int) -> list[tuple[str, int, float, float]]:
    """Per query: items on the first page, p50 and p95 in ms over ``repeats`` runs (after one warm-up)."""
    factory = make_session_factory(make_engine(url))
    results = []
    for name, words, locations in QUERIES:
        timings, found = [], 0
        for attempt in range(repeats + 1):
            with factory() as session:
                started = time.perf_counter()
                items, _ = list_feedback(
                    session, filters=FeedbackFilter(text_contains=words, locations=locations), limit=50
                )
                elapsed = (time.perf_counter() - started) * 1000
            found = len(items)
            if attempt:
                timings.append(elapsed)
        timings.sort()
        p95 = timings[min(len(timings) - 1, round(0.95 * (len(timings) - 1)))]
        results.append((name, found, statistics.median(timings), p95))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--without-index", action="store_true")
    args = parser.parse_args()
    engine = make_engine(args.url)
    if args.without_index:
        with engine.begin() as connection:
            connection.execute(text(f"DROP INDEX IF EXISTS {INDEX}"))
    try:
        print("| query | first page | p50 ms | p95 ms |\n|---|---|---|---|")
        for name, found, p50, p95 in time_queries(args.url, repeats=args.repeats):
            print(f"| {name} | {found} | {p50:,.0f} | {p95:,.0f} |")
    finally:
        if args.without_index:
            with engine.begin() as connection:
                connection.execute(
                    text(
                        f"CREATE INDEX IF NOT EXISTS {INDEX} ON feedback_items USING gin (text gin_trgm_ops)"
                    )
                )


if __name__ == "__main__":
    main()
