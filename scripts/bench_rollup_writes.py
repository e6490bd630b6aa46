"""What the rollup triggers cost writers: pain-point facts written and deleted per second, with and without
the triggers of migration 0009, on SQLite and PostgreSQL.

Online topic assignment writes an item's facts in batches (delete the item's old facts, insert the new);
a refit deletes every fact and writes them all again, with the triggers suspended and one set-based
rebuild at the end (``service.rollup_upkeep``). This times these shapes on a fresh, migrated database
with N seeded items (one sentence each, 1-2 facts per sentence, 50 stores, 10 sources, 3 languages).

    .venv/bin/python scripts/bench_rollup_writes.py --items 50000
    .venv/bin/python scripts/bench_rollup_writes.py --items 50000 --backend postgres \
        --postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import platform
import random
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, delete, insert, text

from service.db import migrate
from service.db.engine import make_engine, make_session_factory
from service.db.models import FeedbackItem, FeedbackSentence, PainPointFact, Source, Topic, TopicModelRun
from service.rollup_upkeep import resume_rollups, rollup_drift, suspend_rollups

BATCH_ITEMS = 500
TOUCHPOINTS = ("delivery_shipping", "staff", "mobile_app", "returns_refunds", "store_branch")
TRIGGERS = ("insert", "delete", "update")


@contextmanager
def database(backend: str, postgres_url: str) -> Iterator[str]:
    """A fresh migrated database: a temporary SQLite file or a private PostgreSQL schema."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{Path(folder) / 'writes.db'}"
            migrate.upgrade(url)
            yield url
        return
    schema = "cxmine_bench_writes"
    admin = make_engine(postgres_url)
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE; CREATE SCHEMA "{schema}"'))
    url = f"{postgres_url}{'&' if '?' in postgres_url else '?'}options={quote(f'-csearch_path={schema}')}"
    migrate.upgrade(url)
    try:
        yield url
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def seed(engine: Engine, *, items: int, seed_value: int = 3) -> list[dict[str, Any]]:
    """Items with one sentence each and 24 topics; returns the facts a refit would write for them."""
    rng = random.Random(seed_value)
    now = datetime.now(UTC)
    with make_session_factory(engine)() as session, session.begin():
        source_ids = [
            session.scalars(insert(Source).returning(Source.id), [{"name": f"s{n}", "kind": "api"}]).one()
            for n in range(10)
        ]
        run = TopicModelRun(status="done", config={}, figures={})
        session.add(run)
        session.flush()
        topics = [
            Topic(label=f"t{n}", centroid=b"\x00\x00", born_model_id=run.id, last_model_id=run.id)
            for n in range(24)
        ]
        session.add_all(topics)
        session.flush()
        rows = [
            {
                "source_id": rng.choice(source_ids),
                "external_id": f"x{n}",
                "dedup_key": f"x{n}",
                "text": f"item {n}",
                "language": rng.choice(("en", "ar", None)),
                "created_at": now - timedelta(seconds=rng.randrange(364 * 86400)),
                "location": rng.choice([*(f"store {k}" for k in range(50)), None]),
                "content_hash": f"h{n}",
            }
            for n in range(items)
        ]
        item_ids = list(session.scalars(insert(FeedbackItem).returning(FeedbackItem.id), rows))
        sentences = [
            {
                "item_id": item_id,
                "position": 0,
                "start": 0,
                "end": 4,
                "sentiment_label": "negative",
                "sentiment_score": -0.5,
                "sentiment_probabilities": {},
                "emotions": {},
                "embedding": b"\x00\x00",
            }
            for item_id in item_ids
        ]
        sentence_ids = list(
            session.scalars(insert(FeedbackSentence).returning(FeedbackSentence.id), sentences)
        )
        topic_ids = [topic.id for topic in topics]
    return [
        {
            "sentence_id": sentence_id,
            "touchpoint": touchpoint,
            "origin": "text",
            "item_id": item_id,
            "topic_id": rng.choice(topic_ids),
            "created_at": row["created_at"],
            "negative": rng.random() < 0.5,
            "sentiment_score": rng.uniform(-1, 1),
            "similarity": rng.random(),
            "location": row["location"],
            "source_id": row["source_id"],
            "language": row["language"],
        }
        for sentence_id, item_id, row in zip(sentence_ids, item_ids, rows, strict=True)
        for touchpoint in rng.sample(TOUCHPOINTS, rng.choice((1, 2)))
    ]


def time_writes(engine: Engine, facts: list[dict[str, Any]], *, triggers: bool) -> dict[str, float]:
    """Facts per second: online batches (insert, then delete-and-rewrite), and a refit's delete-all + insert-all."""
    factory = make_session_factory(engine)
    by_item: dict[int, list[dict[str, Any]]] = {}
    for fact in facts:
        by_item.setdefault(fact["item_id"], []).append(fact)
    items = sorted(by_item)
    batches = [items[i : i + BATCH_ITEMS] for i in range(0, len(items), BATCH_ITEMS)]
    rates: dict[str, float] = {}
    started = time.perf_counter()
    for batch in batches:
        with factory() as session, session.begin():
            session.execute(insert(PainPointFact), [f for item in batch for f in by_item[item]])
    rates["online insert"] = len(facts) / (time.perf_counter() - started)
    started = time.perf_counter()
    for batch in batches:
        with factory() as session, session.begin():
            session.execute(delete(PainPointFact).where(PainPointFact.item_id.in_(batch)))
            session.execute(insert(PainPointFact), [f for item in batch for f in by_item[item]])
    rates["online rewrite"] = len(facts) / (time.perf_counter() - started)
    started = time.perf_counter()
    with factory() as session, session.begin():
        session.execute(delete(PainPointFact))
        for start in range(0, len(facts), 5000):
            session.execute(insert(PainPointFact), facts[start : start + 5000])
    rates["refit rewrite"] = len(facts) / (time.perf_counter() - started)
    if not triggers:
        return rates
    started = time.perf_counter()
    with factory() as session, session.begin():
        suspend_rollups(session)  # what a refit does
        session.execute(delete(PainPointFact))
        for start in range(0, len(facts), 5000):
            session.execute(insert(PainPointFact), facts[start : start + 5000])
        resume_rollups(session)
    rates["refit suspended"] = len(facts) / (time.perf_counter() - started)
    with factory() as session:
        rates["drift rows"] = float(len(rollup_drift(session)))
    return rates


def drop_triggers(engine: Engine) -> None:
    """The facts without their rollup triggers: what writing cost before migration 0009."""
    with engine.begin() as connection:
        for event in TRIGGERS:
            suffix = " ON pain_point_facts" if engine.dialect.name == "postgresql" else ""
            connection.execute(text(f"DROP TRIGGER pain_point_facts_rollup_{event}{suffix}"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="sqlite")
    parser.add_argument("--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(
        "| database | triggers | facts | online insert facts/s | online rewrite facts/s | refit rewrite facts/s "
        "| refit with triggers suspended + one rebuild, facts/s |"
    )
    print("|---|---|---|---|---|---|---|")
    for backend in ("sqlite", "postgres") if args.backend == "both" else (args.backend,):
        for triggers in (True, False):
            with database(backend, args.postgres_url) as url:
                engine = make_engine(url)
                facts = seed(engine, items=args.items)
                if not triggers:
                    drop_triggers(engine)
                rates = time_writes(engine, facts, triggers=triggers)
                engine.dispose()
            drift = "" if not triggers else f" (rollup rows off: {rates['drift rows']:.0f})"
            suspended = f"{rates['refit suspended']:,.0f}" if triggers else "n/a"
            print(
                f"| {backend} | {'on' if triggers else 'off'}{drift} | {len(facts):,} | "
                f"{rates['online insert']:,.0f} | {rates['online rewrite']:,.0f} | "
                f"{rates['refit rewrite']:,.0f} | {suspended} |"
            )


if __name__ == "__main__":
    main()
