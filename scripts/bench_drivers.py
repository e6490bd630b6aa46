"""Key-driver latency: ``service.drivers.key_drivers`` on the kept 1,000,000-item benchmark database.

Load it once with ``scripts/bench_pain_points.py --items 1000000 --backend postgres --keep`` (schema
``cxmine_bench``; its items are rated on the stars scale, half of them), then:

    .venv/bin/python -m scripts.bench_drivers --requests 10
    .venv/bin/python -m scripts.bench_drivers --metric stars --explain

Each kind (themes or touchpoints; all time, the last 8 weeks, one store) runs once to warm up, then
``--requests`` times; it prints p50 / p95 and, with ``--explain``, each statement's time and the plan of
the slowest.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, timedelta
from typing import Any

from sqlalchemy import event, func, select

from scripts.bench_pain_points import DEFAULT_POSTGRES_URL, percentile, postgres_target
from service.db.engine import make_engine, make_session_factory
from service.db.models import FeedbackItem
from service.drivers import METRIC_NAMES, key_drivers
from service.feedback import Scope


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--postgres-url", default=os.environ.get("CXMINE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    )
    parser.add_argument("--schema", default="cxmine_bench")
    parser.add_argument("--metric", choices=METRIC_NAMES, default="stars")
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--explain", action="store_true", help="Time each statement; plan the slowest.")
    args = parser.parse_args()

    engine = make_engine(postgres_target(args.postgres_url, args.schema).url)
    session = make_session_factory(engine)()
    items, latest = session.execute(select(func.count(), func.max(FeedbackItem.created_at))).one()
    if not items:
        raise SystemExit(f"schema {args.schema} has no feedback; load it with bench_pain_points.py --keep")
    store = session.scalar(
        select(FeedbackItem.location)
        .where(FeedbackItem.location.is_not(None))
        .group_by(FeedbackItem.location)
        .order_by(func.count().desc())
        .limit(1)
    )
    until = latest.astimezone(UTC) + timedelta(seconds=1)
    weeks = Scope(since=until - timedelta(weeks=8), until=until)
    kinds: list[tuple[str, str, Scope]] = [
        ("themes, all time", "theme", Scope()),
        ("themes, 8 weeks", "theme", weeks),
        (
            "themes, one store, 8 weeks",
            "theme",
            Scope(since=weeks.since, until=until, locations=(store,) if store else ()),
        ),
        ("touchpoints, all time", "touchpoint", Scope()),
        ("touchpoints, 8 weeks", "touchpoint", weeks),
    ]
    print(f"{items:,} items to {latest:%Y-%m-%d}; metric {args.metric}; store {store!r}")
    print("| kind | responses | drivers | significant | p50 ms | p95 ms |\n|---|---|---|---|---|---|")
    for name, by, scope in kinds:
        report = key_drivers(session, scope=scope, metric=args.metric, by=by)  # type: ignore[arg-type]
        timings = []
        for _ in range(args.requests):
            started = time.perf_counter()
            key_drivers(session, scope=scope, metric=args.metric, by=by)  # type: ignore[arg-type]
            timings.append((time.perf_counter() - started) * 1000)
            session.rollback()
        significant = sum(d.significant for d in report.drivers)
        print(
            f"| {name} | {report.responses:,} | {len(report.drivers)} | {significant} | "
            f"{statistics.median(timings):,.0f} | {percentile(timings, 95):,.0f} |"
        )
    if args.explain:
        explain(engine, session, metric=args.metric, scope=weeks)


def explain(engine: Any, session: Any, *, metric: str, scope: Scope) -> None:
    """Each statement of one theme request, timed, and the plan of the slowest."""
    seen: list[tuple[float, str, Any]] = []
    starts: dict[int, float] = {}

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        starts[id(cursor)] = time.perf_counter()

    def after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        seen.append(((time.perf_counter() - starts.pop(id(cursor))) * 1000, statement, parameters))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    key_drivers(session, scope=scope, metric=metric, by="theme")  # type: ignore[arg-type]
    event.remove(engine, "before_cursor_execute", before)
    event.remove(engine, "after_cursor_execute", after)
    for ms, statement, _ in seen:
        print(f"{ms:8.1f} ms  {' '.join(statement.split())[:140]}")
    ms, statement, parameters = max(seen, key=lambda s: s[0])
    with engine.connect() as connection:
        raw = connection.connection.driver_connection
        with raw.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            print("\n".join(row[0] for row in cursor.fetchall()))


if __name__ == "__main__":
    main()
