"""Pain-point latency benchmark: GET /v1/pain-points and GET /v1/topics over real HTTP on a large database.

It generates a deterministic (seeded) database of N scored feedback items, spread over the 52 weeks that
end now, as the scorer, the touchpoint labeller and a topic refit would have left it: items, ~2 sentences
each, sentence and item touchpoints, CX emotion tags, one topic model with 120 topics and the sentence
topics, plus one planted spike (one topic at delivery_shipping in one location, in the last week). Rows
go in by bulk insert (SQLite: executemany in one transaction, synchronous=OFF; PostgreSQL: COPY, FK
triggers off for the load), the daily rollups are rebuilt from the facts, then ANALYZE (PostgreSQL: VACUUM
ANALYZE, what autovacuum would reach).

Then it starts `cxmine serve` (uvicorn, scoring off) on that database, creates an analyst key, and times
sequential GET /v1/pain-points requests over a mix of query parameters, and GET /v1/topics.

    .venv/bin/python scripts/bench_pain_points.py --items 20000
    .venv/bin/python scripts/bench_pain_points.py --items 1000000 --backend both --explain
    .venv/bin/python scripts/bench_pain_points.py --backend sqlite --keep --db-dir /tmp/ppbench
    .venv/bin/python scripts/bench_pain_points.py --backend sqlite --reuse --db-dir /tmp/ppbench

PostgreSQL: --postgres-url (default $CXMINE_TEST_POSTGRES_URL, else postgres@127.0.0.1:5432/test); the
data goes to a private schema (--schema, default cxmine_bench), dropped at the end unless --keep.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import os
import platform
import random
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import Engine, event, insert, text, update

from service.db import migrate
from service.db.engine import make_engine, make_session_factory
from service.db.models import Role, Source, Topic, TopicModelRun
from service.feedback import Scope
from service.keys import create_api_key
from service.painpoints import pain_point_report
from service.rollup_upkeep import rebuild_rollups
from service.topics import current_model, topic_stats

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CHUNK_ITEMS = 10_000
WEEKS = 52
MODEL_ID = 1
TAXONOMY_KEY = "retail@1:bench"
SCORE_MODEL = "bench-pipeline@1"
EMBEDDING = bytes(768)  # 384 float16 zeros: the queries under test never read embeddings

TOUCHPOINTS = (
    "website",
    "mobile_app",
    "search_discovery",
    "product_quality",
    "pricing_promotions",
    "checkout_payment",
    "delivery_shipping",
    "returns_refunds",
    "customer_support",
    "store_branch",
    "staff",
    "account_login",
    "communications",
    "loyalty_programme",
)
TOUCHPOINT_WEIGHTS = (6, 7, 3, 8, 5, 6, 12, 7, 8, 9, 8, 4, 3, 3)

# (name, kind, default touchpoint, share of items, channel)
SOURCES = (
    ("Google Reviews", "scraper", None, 20, "review"),
    ("Trustpilot", "scraper", None, 12, "review"),
    ("App Store", "scraper", "mobile_app", 8, "app"),
    ("Google Play", "scraper", "mobile_app", 8, "app"),
    ("NPS survey", "import", None, 15, "survey"),
    ("Post-delivery survey", "import", "delivery_shipping", 10, "survey"),
    ("Store kiosk", "api", "store_branch", 7, "store"),
    ("X mentions", "scraper", None, 8, "social"),
    ("Instagram comments", "scraper", None, 5, "social"),
    ("Support emails", "api", None, 7, "email"),
)
CITIES = (
    ("Dubai", "ar", 240),
    ("Riyadh", "ar", 180),
    ("Tehran", "fa", 210),
    ("Bangkok", "th", 420),
    ("London", "en", 0),
)
LOCATIONS = tuple(f"{city} {n:02d}" for city, _, _ in CITIES for n in range(1, 11))
LANGUAGES = ("en", "ar", "fa", "th")
PRODUCTS = tuple(f"SKU-{n:04d}" for n in range(1, 41))

TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "negative": (
            "Order #{n} arrived four days late.",
            "The app crashed twice at checkout ({n}).",
            "Refund for order {n} still not received.",
            "Staff ignored me at the till, ticket {n}.",
            "Nobody answered my support ticket {n}.",
            "Item {n} was broken when it arrived.",
        ),
        "neutral": ("I ordered item {n} on Tuesday.", "Picked up order {n} at the store."),
        "positive": (
            "Delivery of order {n} was quick.",
            "The staff were very helpful, thanks ({n}).",
            "Great prices on item {n} this week.",
        ),
    },
    "ar": {
        "negative": (
            "الطلب رقم {n} تأخر أربعة أيام.",
            "التطبيق توقف مرتين عند الدفع ({n}).",
            "لم يصلني المبلغ المسترد للطلب {n}.",
            "المنتج {n} وصل مكسوراً.",
        ),
        "neutral": ("طلبت المنتج {n} يوم الثلاثاء.", "استلمت الطلب {n} من الفرع."),
        "positive": ("التوصيل للطلب {n} كان سريعاً.", "الموظفون كانوا لطيفين جداً ({n})."),
    },
    "fa": {
        "negative": (
            "سفارش {n} چهار روز دیر رسید.",
            "اپ موقع پرداخت دو بار بسته شد ({n}).",
            "هنوز پول سفارش {n} برنگشته است.",
            "کالای {n} شکسته به دستم رسید.",
        ),
        "neutral": ("سفارش {n} را سه‌شنبه ثبت کردم.", "سفارش {n} را از فروشگاه گرفتم."),
        "positive": ("ارسال سفارش {n} خیلی سریع بود.", "کارکنان خیلی کمک کردند ({n})."),
    },
    "th": {
        "negative": (
            "คำสั่งซื้อ {n} มาช้าไปสี่วัน",
            "แอปเด้งออกสองครั้งตอนจ่ายเงิน ({n})",
            "ยังไม่ได้รับเงินคืนของคำสั่งซื้อ {n}",
            "สินค้า {n} แตกมาตอนส่งถึง",
        ),
        "neutral": ("สั่งสินค้า {n} เมื่อวันอังคาร", "รับของ {n} ที่สาขา"),
        "positive": ("ส่งของ {n} เร็วมาก", "พนักงานบริการดีมาก ({n})"),
    },
}

# 24 themes x 5 variants = 120 topics; each theme has a home touchpoint.
THEMES = (
    ("late delivery", "delivery_shipping", ("late", "delivery", "days", "waiting", "courier")),
    ("damaged parcel", "delivery_shipping", ("damaged", "parcel", "box", "broken", "packaging")),
    ("courier behaviour", "delivery_shipping", ("courier", "driver", "rude", "door", "call")),
    ("app crashes", "mobile_app", ("app", "crash", "update", "freeze", "closes")),
    ("app login", "account_login", ("login", "password", "otp", "account", "locked")),
    ("slow website", "website", ("website", "slow", "page", "load", "error")),
    ("checkout errors", "checkout_payment", ("checkout", "error", "cart", "basket", "pay")),
    ("card declined", "checkout_payment", ("card", "declined", "payment", "bank", "charged")),
    ("refund delays", "returns_refunds", ("refund", "money", "weeks", "back", "still")),
    ("return process", "returns_refunds", ("return", "label", "pickup", "exchange", "policy")),
    ("support wait", "customer_support", ("support", "hold", "wait", "chat", "ticket")),
    ("helpful support", "customer_support", ("support", "helpful", "solved", "quick", "agent")),
    ("store queues", "store_branch", ("queue", "till", "store", "wait", "cashier")),
    ("store cleanliness", "store_branch", ("clean", "store", "dirty", "shelves", "toilet")),
    ("friendly staff", "staff", ("staff", "friendly", "helpful", "smile", "kind")),
    ("rude staff", "staff", ("staff", "rude", "ignored", "manager", "attitude")),
    ("product quality", "product_quality", ("quality", "cheap", "broke", "material", "fake")),
    ("wrong size", "product_quality", ("size", "small", "fit", "wrong", "chart")),
    ("high prices", "pricing_promotions", ("price", "expensive", "increase", "cost", "value")),
    ("promo codes", "pricing_promotions", ("promo", "code", "discount", "coupon", "sale")),
    ("search results", "search_discovery", ("search", "filter", "find", "results", "category")),
    ("spam emails", "communications", ("email", "spam", "sms", "notifications", "unsubscribe")),
    ("loyalty points", "loyalty_programme", ("points", "loyalty", "rewards", "tier", "expired")),
    ("out of stock", "product_quality", ("stock", "available", "sold", "out", "restock")),
)
TOPICS = len(THEMES) * 5
NEGATIVE_EMOTIONS = ("anger", "frustration", "disappointment")
POSITIVE_EMOTIONS = ("joy", "gratitude", "love")
NEUTRAL_EMOTIONS = ("confusion", "surprise", "neutral")
SENTENCE_EMOTIONS = json.dumps({"detected": [], "cx_detected": [], "top": {}, "cx": {}})
PROBABILITIES = {
    "negative": json.dumps({"negative": 0.82, "neutral": 0.12, "positive": 0.06}),
    "neutral": json.dumps({"negative": 0.15, "neutral": 0.7, "positive": 0.15}),
    "positive": json.dumps({"negative": 0.04, "neutral": 0.1, "positive": 0.86}),
    "mixed": json.dumps({"negative": 0.45, "neutral": 0.1, "positive": 0.45}),
}

ITEM_COLUMNS = (
    "id",
    "source_id",
    "external_id",
    "dedup_key",
    "text",
    "language",
    "created_at",
    "created_at_given",
    "utc_offset_minutes",
    "collected_at",
    "rating_value",
    "rating_scale",
    "location",
    "product",
    "channel",
    "author_hash",
    "metadata",
    "content_hash",
    "import_id",
    "language_confidence",
    "language_given",
    "sentiment_label",
    "sentiment_score",
    "sentiment_probabilities",
    "emotions",
    "scored_at",
    "score_model",
    "touchpoint_taxonomy",
    "topic_model_id",
)
TABLES: dict[str, tuple[str, ...]] = {
    "feedback_items": ITEM_COLUMNS,
    "feedback_sentences": (
        "id",
        "item_id",
        "position",
        "start",
        "end",
        "sentiment_label",
        "sentiment_score",
        "sentiment_probabilities",
        "emotions",
        "embedding",
    ),
    "sentence_touchpoints": ("sentence_id", "touchpoint", "item_id", "score"),
    "item_touchpoints": ("item_id", "touchpoint", "score", "origin"),
    "feedback_emotions": ("item_id", "scheme", "label", "probability"),
    "sentence_topics": (
        "sentence_id",
        "item_id",
        "topic_id",
        "model_id",
        "similarity",
        "origin",
        "created_at",
        "negative",
        "sentiment_score",
    ),
    "pain_point_facts": (
        "sentence_id",
        "touchpoint",
        "origin",
        "item_id",
        "topic_id",
        "created_at",
        "negative",
        "sentiment_score",
        "similarity",
        "location",
        "source_id",
        "language",
    ),
}

Rows = dict[str, list[tuple[Any, ...]]]


@dataclass(frozen=True)
class Plan:
    """What the generator makes: the seed, the size, the clock and the planted spike."""

    items: int
    seed: int
    now: datetime
    spike_topic: int = 37
    spike_touchpoint: str = "delivery_shipping"
    spike_location: str = LOCATIONS[6]
    spike_share: float = 0.6


@dataclass
class LoadStats:
    """Counts and timings of one load."""

    rows: Counter[str] = field(default_factory=Counter)
    insert_s: float = 0.0
    finish_s: float = 0.0
    topic_sentences: Counter[int] = field(default_factory=Counter)
    topic_languages: dict[int, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))


class Generator:
    """Deterministic rows, chunk by chunk: the same seed and clock give the same database."""

    def __init__(self, plan: Plan, *, timestamp: Callable[[int], str]) -> None:
        self.plan = plan
        self.timestamp = timestamp
        self.rng = random.Random(plan.seed)
        rng = random.Random(plan.seed + 1)
        self.end = int(plan.now.timestamp())
        self.start = self.end - WEEKS * 7 * 86400
        self.spike_from = self.end - 7 * 86400
        self.topic_weights = _cumulative(
            [1 / (rank + 4) ** 0.9 for rank in rng.sample(range(TOPICS), TOPICS)]
        )
        self.topic_negative = [rng.uniform(0.08, 0.55) for _ in range(TOPICS)]
        self.topic_touchpoint = [THEMES[k // 5][1] for k in range(TOPICS)]
        self.touchpoint_weights = _cumulative(TOUCHPOINT_WEIGHTS)
        self.source_weights = _cumulative([s[3] for s in SOURCES])
        self.authors = [hashlib.sha256(f"author-{n}".encode()).hexdigest() for n in range(50_000)]
        self.emotion_json: dict[tuple[str, ...], str] = {}
        self.next_sentence = 1

    def chunks(self) -> Iterator[tuple[int, Rows]]:
        """(items so far, rows of each table) for every chunk of CHUNK_ITEMS items."""
        for first in range(1, self.plan.items + 1, CHUNK_ITEMS):
            last = min(first + CHUNK_ITEMS, self.plan.items + 1)
            rows: Rows = {table: [] for table in TABLES}
            for item_id in range(first, last):
                self._item(item_id, rows)
            yield last - 1, rows

    def _item(self, item_id: int, rows: Rows) -> None:
        rng, plan = self.rng, self.plan
        span = self.end - self.start
        if rng.random() < 0.8:  # mostly in arrival order; a fifth backfilled from anywhere in the year
            created = self.start + int((item_id - rng.random()) * span / plan.items)
        else:
            created = self.start + rng.randrange(span)
        created = min(max(created, self.start), self.end - 1)
        created_text = self.timestamp(created)
        source = bisect.bisect(self.source_weights, rng.random() * self.source_weights[-1])
        _, _, default_touchpoint, _, channel = SOURCES[source]
        location_index = rng.randrange(len(LOCATIONS))
        location = LOCATIONS[location_index]
        _, city_language, offset = CITIES[location_index // 10]
        language = city_language if rng.random() < 0.6 else LANGUAGES[rng.randrange(4)]
        spiked = (
            location == plan.spike_location and created >= self.spike_from and rng.random() < plan.spike_share
        )

        count = 1 if rng.random() < 0.25 else (2 if rng.random() < 0.73 else 3)
        pieces: list[str] = []
        sentences: list[tuple[int, int, str, float, int | None, list[str]]] = []
        cursor = 0
        for position in range(count):
            topic: int | None
            if spiked and position == 0:
                topic, negative, touchpoints = plan.spike_topic, True, [plan.spike_touchpoint]
            else:
                topic = None
                if rng.random() < 0.9:
                    topic = 1 + bisect.bisect(self.topic_weights, rng.random() * self.topic_weights[-1])
                negative = rng.random() < (self.topic_negative[topic - 1] if topic else 0.3)
                touchpoints = []
                if rng.random() < 0.8:
                    if topic and rng.random() < 0.7:
                        touchpoints.append(self.topic_touchpoint[topic - 1])
                    else:
                        touchpoints.append(self._touchpoint())
                    if rng.random() < 0.1:
                        extra = self._touchpoint()
                        if extra not in touchpoints:
                            touchpoints.append(extra)
            if negative:
                label, score = "negative", rng.uniform(-0.95, -0.35)
            elif rng.random() < 0.7:
                label, score = "positive", rng.uniform(0.3, 0.95)
            else:
                label, score = "neutral", rng.uniform(-0.25, 0.25)
            choices = TEMPLATES[language][label]
            sentence = choices[rng.randrange(len(choices))].format(n=item_id)
            if pieces:
                cursor += 1
            pieces.append(sentence)
            sentences.append((cursor, cursor + len(sentence), label, score, topic, touchpoints))
            cursor += len(sentence)
        body = " ".join(pieces)

        labels = {s[2] for s in sentences}
        if "negative" in labels and "positive" in labels:
            item_label = "mixed"
        elif "negative" in labels:
            item_label = "negative"
        elif "positive" in labels:
            item_label = "positive"
        else:
            item_label = "neutral"
        item_score = sum(s[3] for s in sentences) / count
        emotions: list[str] = []
        roll = rng.random()
        if item_label in ("negative", "mixed"):
            if roll < 0.75:
                emotions.append(NEGATIVE_EMOTIONS[rng.randrange(3)])
                if rng.random() < 0.2:
                    emotions.append(NEGATIVE_EMOTIONS[rng.randrange(3)])
        elif item_label == "positive":
            if roll < 0.4:
                emotions.append(POSITIVE_EMOTIONS[rng.randrange(3)])
        elif roll < 0.1:
            emotions.append(NEUTRAL_EMOTIONS[rng.randrange(3)])
        emotions = sorted(set(emotions))
        rated = rng.random() < 0.5
        rating = max(1.0, min(5.0, round(3 + 2.2 * item_score + rng.uniform(-0.8, 0.8)))) if rated else None
        collected = self.timestamp(min(created + 3600, self.end))
        rows["feedback_items"].append(
            (
                item_id,
                source + 1,
                f"ext-{item_id}",
                f"bench:{item_id}",
                body,
                language,
                created_text,
                True,
                offset,
                collected,
                rating,
                "stars" if rated else None,
                location,
                PRODUCTS[rng.randrange(len(PRODUCTS))] if rng.random() < 0.6 else None,
                channel,
                self.authors[rng.randrange(len(self.authors))],
                "{}",
                hashlib.sha256(body.encode()).hexdigest(),
                None,
                0.98,
                False,
                item_label,
                round(item_score, 4),
                PROBABILITIES[item_label],
                self._emotions_json(tuple(emotions)),
                collected,
                SCORE_MODEL,
                TAXONOMY_KEY,
                MODEL_ID,
            )
        )
        for label in emotions:
            rows["feedback_emotions"].append((item_id, "cx", label, round(rng.uniform(0.35, 0.95), 4)))

        named: dict[str, float] = {}
        topic_sentences: list[tuple[int, int, bool, float, float, Any]] = []
        for position, (start, end, label, score, topic, touchpoints) in enumerate(sentences):
            sentence_id = self.next_sentence
            self.next_sentence += 1
            rows["feedback_sentences"].append(
                (
                    sentence_id,
                    item_id,
                    position,
                    start,
                    end,
                    label,
                    round(score, 4),
                    PROBABILITIES[label],
                    SENTENCE_EMOTIONS,
                    EMBEDDING,
                )
            )
            for touchpoint in touchpoints:
                tp_score = round(rng.uniform(0.3, 0.8), 4)
                rows["sentence_touchpoints"].append((sentence_id, touchpoint, item_id, tp_score))
                named[touchpoint] = max(named.get(touchpoint, 0.0), tp_score)
            if topic is not None:
                similarity = round(rng.uniform(0.35, 0.9), 4)
                rows["sentence_topics"].append(
                    (
                        sentence_id,
                        item_id,
                        topic,
                        MODEL_ID,
                        similarity,
                        "refit",
                        created_text,
                        label == "negative",
                        round(score, 4),
                    )
                )
                topic_sentences.append(
                    (sentence_id, topic, label == "negative", round(score, 4), similarity, touchpoints)
                )
        if named:
            rows["item_touchpoints"].extend((item_id, t, s, "text") for t, s in named.items())
        elif default_touchpoint is not None:
            rows["item_touchpoints"].append((item_id, default_touchpoint, 0.0, "source"))
        # The facts the service writes with each topic sentence: its named touchpoints, else the source's.
        for sentence_id, topic, negative, score, similarity, touchpoints in topic_sentences:
            found = [(t, "text") for t in touchpoints] or (
                [(default_touchpoint, "source")] if not named and default_touchpoint is not None else []
            )
            rows["pain_point_facts"].extend(
                (
                    sentence_id,
                    t,
                    origin,
                    item_id,
                    topic,
                    created_text,
                    negative,
                    score,
                    similarity,
                    location,
                    source + 1,
                    language,
                )
                for t, origin in found
            )

    def _touchpoint(self) -> str:
        return TOUCHPOINTS[
            bisect.bisect(self.touchpoint_weights, self.rng.random() * self.touchpoint_weights[-1])
        ]

    def _emotions_json(self, labels: tuple[str, ...]) -> str:
        found = self.emotion_json.get(labels)
        if found is None:
            found = json.dumps({"detected": [], "cx_detected": list(labels), "top": {}, "cx": {}})
            self.emotion_json[labels] = found
        return found


def _cumulative(weights: Any) -> list[float]:
    total, out = 0.0, []
    for weight in weights:
        total += weight
        out.append(total)
    return out


def sqlite_timestamp(epoch: int) -> str:
    """How SQLAlchemy stores a UTC datetime in SQLite (naive, microseconds always written)."""
    return time.strftime("%Y-%m-%d %H:%M:%S.000000", time.gmtime(epoch))


def postgres_timestamp(epoch: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(epoch))


# --- databases ---------------------------------------------------------------------------------------


@dataclass
class Target:
    """One database under test."""

    backend: str
    url: str
    schema: str | None = None
    admin_url: str | None = None
    path: Path | None = None

    @property
    def name(self) -> str:
        return "SQLite" if self.backend == "sqlite" else "PostgreSQL"


def postgres_target(base_url: str, schema: str) -> Target:
    separator = "&" if "?" in base_url else "?"
    url = f"{base_url}{separator}options={quote(f'-csearch_path={schema}')}"
    return Target("postgres", url, schema=schema, admin_url=base_url)


def target_exists(target: Target) -> bool:
    if target.backend == "sqlite":
        return target.path is not None and target.path.exists()
    assert target.admin_url is not None
    admin = make_engine(target.admin_url)
    with admin.connect() as connection:
        found = connection.execute(
            text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": target.schema}
        ).first()
    admin.dispose()
    return found is not None


def reset(target: Target) -> None:
    """An empty, migrated database."""
    if target.backend == "sqlite":
        assert target.path is not None
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{target.path}{suffix}").unlink(missing_ok=True)
    else:
        drop(target)
        assert target.admin_url is not None
        admin = make_engine(target.admin_url)
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{target.schema}"'))
        admin.dispose()
    migrate.upgrade(target.url)


def drop(target: Target) -> None:
    if target.backend == "sqlite":
        if target.path is not None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{target.path}{suffix}").unlink(missing_ok=True)
        return
    assert target.admin_url is not None
    admin = make_engine(target.admin_url)
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{target.schema}" CASCADE'))
    admin.dispose()


def load(target: Target, plan: Plan) -> LoadStats:
    """Fill the migrated database at ``target`` with ``plan``'s rows; time the inserts and the ANALYZE."""
    stats = LoadStats()
    engine = make_engine(target.url)
    _small_tables(engine, plan)
    engine.dispose()  # SQLite: no other connection may be open while the journal mode changes
    started = time.perf_counter()
    if target.backend == "sqlite":
        assert target.path is not None
        generator = Generator(plan, timestamp=sqlite_timestamp)
        connection = sqlite3.connect(target.path, isolation_level=None)
        connection.execute("PRAGMA journal_mode=TRUNCATE")  # a fresh file: the rollback journal stays small
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA cache_size=-1048576")
        connection.execute("BEGIN")
        statements = {
            table: f"INSERT INTO {table} ({', '.join(_q(c) for c in columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})"
            for table, columns in TABLES.items()
        }
        for done, rows in generator.chunks():
            for table, batch in rows.items():
                connection.executemany(statements[table], batch)
            _count(stats, rows)
            _progress(done, plan.items, stats, started)
        connection.execute("COMMIT")
        stats.insert_s = time.perf_counter() - started
        finishing = time.perf_counter()
        connection.execute("PRAGMA journal_mode=WAL")
        connection.close()
        _finish_topics(engine, stats)
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.commit()
        stats.finish_s = time.perf_counter() - finishing
    else:
        generator = Generator(plan, timestamp=postgres_timestamp)
        raw = engine.raw_connection()
        pg: Any = raw.driver_connection
        with pg.cursor() as cursor:
            cursor.execute("SET synchronous_commit = off")
            try:
                cursor.execute(
                    "SET session_replication_role = replica"
                )  # skip FK triggers: rows are consistent
            except Exception as exc:  # not a superuser: load with the checks
                pg.rollback()
                print(f"(foreign-key triggers stay on: {exc})")
            pg.commit()
            commands = {
                table: f"COPY {table} ({', '.join(_q(c) for c in columns)}) FROM STDIN"
                for table, columns in TABLES.items()
            }
            for done, rows in generator.chunks():
                for table, batch in rows.items():
                    with cursor.copy(commands[table]) as copy:
                        for row in batch:
                            copy.write_row(row)
                pg.commit()
                _count(stats, rows)
                _progress(done, plan.items, stats, started)
        raw.close()
        stats.insert_s = time.perf_counter() - started
        finishing = time.perf_counter()
        _finish_topics(engine, stats)
        with engine.connect() as conn:
            for table in ("feedback_items", "feedback_sentences", "sources", "topics", "topic_models"):
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                )
            conn.commit()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM (ANALYZE)")
        stats.finish_s = time.perf_counter() - finishing
    engine.dispose()
    return stats


def _q(column: str) -> str:
    return f'"{column}"'


def _count(stats: LoadStats, rows: Rows) -> None:
    for table, batch in rows.items():
        stats.rows[table] += len(batch)
    for row in rows["sentence_topics"]:
        stats.topic_sentences[row[2]] += 1
    languages = {row[0]: row[5] for row in rows["feedback_items"]}
    for row in rows["sentence_topics"]:
        stats.topic_languages[row[2]][languages[row[1]]] += 1


def _progress(done: int, total: int, stats: LoadStats, started: float) -> None:
    if done % 100_000 and done != total:
        return
    elapsed = time.perf_counter() - started
    rows = sum(stats.rows.values())
    print(
        f"  {done:>9,} / {total:,} items, {rows:>10,} rows, {elapsed:6.1f} s, "
        f"{rows / elapsed:,.0f} rows/s, {done / elapsed:,.0f} items/s",
        flush=True,
    )


def _small_tables(engine: Engine, plan: Plan) -> None:
    """Sources, the topic model and its topics (Core inserts; the big tables come after)."""
    rng = random.Random(plan.seed + 2)
    fitted = plan.now - timedelta(hours=6)
    with engine.begin() as connection:
        connection.execute(
            insert(Source),
            [
                {
                    "id": n + 1,
                    "name": name,
                    "kind": kind,
                    "default_touchpoint": default,
                    "config": {},
                    "created_at": plan.now - timedelta(weeks=WEEKS + 1),
                }
                for n, (name, kind, default, _, _) in enumerate(SOURCES)
            ],
        )
        connection.execute(
            insert(TopicModelRun),
            [
                {
                    "id": MODEL_ID,
                    "status": "done",
                    "config": {"bench": True},
                    "embedding_model": SCORE_MODEL,
                    "topics": TOPICS,
                    "figures": {},
                    "state": None,
                    "started_at": fitted,
                    "finished_at": fitted + timedelta(minutes=12),
                }
            ],
        )
        topics = []
        for k in range(TOPICS):
            theme, _, words = THEMES[k // 5]
            keywords = [*words[k % 5 :], *words[: k % 5], f"kw{k + 1}"]
            topics.append(
                {
                    "id": k + 1,
                    "status": "active",
                    "label": f"{theme} ({k % 5 + 1})",
                    "keywords": keywords,
                    "keyword_weights": {w: round(rng.uniform(0.05, 0.4), 4) for w in keywords},
                    "representative": f"A typical sentence about {theme}.",
                    "centroid": EMBEDDING,
                    "born_model_id": MODEL_ID,
                    "last_model_id": MODEL_ID,
                    "created_at": fitted,
                    "updated_at": fitted,
                }
            )
        connection.execute(insert(Topic), topics)


def _finish_topics(engine: Engine, stats: LoadStats) -> None:
    """The topics' and the model's sentence counts, as a refit would have written them, and the daily
    rollups (PostgreSQL's load runs with triggers off)."""
    with make_session_factory(engine)() as session, session.begin():
        rebuild_rollups(session)
    with engine.begin() as connection:
        for topic_id in range(1, TOPICS + 1):
            connection.execute(
                update(Topic)
                .where(Topic.id == topic_id)
                .values(
                    sentences=stats.topic_sentences[topic_id],
                    languages=dict(stats.topic_languages[topic_id]),
                )
            )
        total = stats.rows["sentence_topics"]
        connection.execute(
            update(TopicModelRun)
            .where(TopicModelRun.id == MODEL_ID)
            .values(
                sentences=stats.rows["feedback_sentences"],
                fitted_on=min(total, 200_000),
                outliers=stats.rows["feedback_sentences"] - total,
            )
        )


def database_size(target: Target) -> tuple[int, list[tuple[str, int, int]]]:
    """(total bytes, [(table, rows, bytes with indexes)]) of the database."""
    if target.backend == "sqlite":
        assert target.path is not None
        total = sum(
            Path(f"{target.path}{s}").stat().st_size
            for s in ("", "-wal")
            if Path(f"{target.path}{s}").exists()
        )
        return total, []
    engine = make_engine(target.url)
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT c.relname, c.reltuples::bigint, pg_total_relation_size(c.oid) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :s AND c.relkind = 'r' "
                "ORDER BY 3 DESC"
            ),
            {"s": target.schema},
        ).all()
    engine.dispose()
    tables = [(str(r[0]), int(r[1]), int(r[2])) for r in rows]
    return sum(t[2] for t in tables), tables


def server_version(target: Target) -> str:
    if target.backend == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}"
    engine = make_engine(target.url)
    with engine.connect() as connection:
        version = connection.exec_driver_sql("SHOW server_version").scalar()
        settings = {
            name: connection.exec_driver_sql(f"SHOW {name}").scalar()
            for name in (
                "shared_buffers",
                "work_mem",
                "effective_cache_size",
                "max_parallel_workers_per_gather",
            )
        }
    engine.dispose()
    return f"PostgreSQL {version} ({', '.join(f'{k}={v}' for k, v in settings.items())})"


# --- queries -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """One kind of request: its HTTP parameters, and the same call in-process (for --explain)."""

    name: str
    path: str
    since: datetime | None = None
    until: datetime | None = None
    locations: tuple[str, ...] = ()
    touchpoints: tuple[str, ...] = ()
    interval: str = "week"
    window: int = 1
    trending: bool = False

    @property
    def params(self) -> tuple[tuple[str, str], ...]:
        params = [("touchpoint", t) for t in self.touchpoints] + [("location", v) for v in self.locations]
        if self.interval != "week" or self.window != 1:
            params += [("interval", self.interval), ("window", str(self.window))]
        params += [("trending", "true")] if self.trending else []
        params += [("since", self.since.isoformat())] if self.since else []
        params += [("until", self.until.isoformat())] if self.until else []
        return tuple(params)

    def run(self, session: Any) -> None:
        scope = Scope(since=self.since, until=self.until, locations=self.locations)
        if self.path == "/v1/topics":
            topic_stats(session, scope=scope)
            current_model(session)
        else:
            pain_point_report(
                session,
                scope=scope,
                touchpoints=self.touchpoints,
                interval=self.interval,  # type: ignore[arg-type]
                window=self.window,
                limit=10_000 if self.trending else 20,
            )


def queries(plan: Plan, *, trending: bool = False) -> tuple[list[Query], Query]:
    """The pain-point mix, and the topics list."""
    until = datetime.now(UTC).replace(microsecond=0)
    mix = [
        Query("default (7 weeks)", "/v1/pain-points"),
        Query("touchpoint=delivery_shipping", "/v1/pain-points", touchpoints=("delivery_shipping",)),
        Query(f"location={plan.spike_location}", "/v1/pain-points", locations=(plan.spike_location,)),
        Query("interval=day&window=2", "/v1/pain-points", interval="day", window=2),
        Query("since/until: last 4 weeks", "/v1/pain-points", since=until - timedelta(weeks=4), until=until),
    ]
    if trending:
        mix.append(Query("trending=true", "/v1/pain-points", trending=True))
    return mix, Query("GET /v1/topics", "/v1/topics")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@dataclass
class Timing:
    name: str
    ms: list[float] = field(default_factory=list)
    points: int = 0
    trending: int = 0
    tested: int = 0
    size: int = 0
    top: str = ""


def bench_http(
    target: Target, plan: Plan, *, requests: int, topic_requests: int, warmups: int, trending: bool
) -> list[Timing]:
    """Start `cxmine serve` on ``target`` and time the requests."""
    engine = make_engine(target.url)
    with make_session_factory(engine)() as session:
        _, key = create_api_key(session, name="bench", role=Role.ANALYST)
        session.commit()
    engine.dispose()
    mix, topics = queries(plan, trending=trending)
    cli = Path(sys.executable).with_name("cxmine")
    command = [str(cli)] if cli.exists() else [sys.executable, "-m", "service.cli"]
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        env = {
            **os.environ,
            "CXMINE_DATABASE_URL": target.url,
            "CXMINE_SCORING_ENABLED": "false",
            "CXMINE_ALERTS_ENABLED": "false",
            "CXMINE_DATA_DIR": str(Path(tmp) / "var"),
            "CXMINE_LOG_LEVEL": "WARNING",
        }
        log = (Path(tmp) / "server.log").open("w")
        server = subprocess.Popen(
            [*command, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=600) as client:
                _wait_ready(client, server, Path(tmp) / "server.log")
                results = {q.name: Timing(q.name) for q in [*mix, topics]}
                for n in range(warmups):
                    _get(client, mix[n % len(mix)])
                _get(client, topics)
                for n in range(requests + topic_requests):
                    query = mix[n % len(mix)] if n < requests else topics
                    elapsed, body, size = _get(client, query)
                    _record(results[query.name], elapsed, body, size)
                    print(f"  request {n + 1}: {query.name}: {elapsed:,.0f} ms", flush=True)
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            log.close()
    return list(results.values())


def _wait_ready(client: httpx.Client, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"cxmine serve exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"cxmine serve not ready after 180 s:\n{log.read_text()[-3000:]}")


def _get(client: httpx.Client, query: Query) -> tuple[float, Any, int]:
    began = time.perf_counter()
    response = client.get(query.path, params=query.params)
    elapsed = (time.perf_counter() - began) * 1000
    if response.status_code != 200:
        raise SystemExit(f"GET {query.path} {query.params}: {response.status_code} {response.text[:500]}")
    return elapsed, response.json(), len(response.content)


def _record(timing: Timing, elapsed: float, body: Any, size: int) -> None:
    timing.ms.append(elapsed)
    timing.size = size
    if "pain_points" in body:
        points = body["pain_points"]
        timing.points, timing.tested = len(points), body["tested"]
        timing.trending = sum(1 for p in points if p["trending"])
        hot = [p for p in points if p["trending"]]
        if hot:
            p = hot[0]
            timing.top = (
                f"topic {p['topic_id']} @ {p['touchpoint']}: {p['trend']['current']} vs "
                f"{p['trend']['expected']:.1f} expected, top location {next(iter(p['locations']), '-')}"
            )
    else:
        timing.points = len(body["topics"])


def print_timings(name: str, timings: list[Timing]) -> None:
    print(f"\n{name}: latency over HTTP (sequential, ms)\n")
    print("| query | n | p50 | p95 | max | pain points (tested) | trending | response |")
    print("|---|---|---|---|---|---|---|---|")
    pain = [t for t in timings if t.name != "GET /v1/topics"]
    for t in timings:
        if not t.ms:
            continue
        if t.name == "GET /v1/topics":
            overall = [ms for p in pain for ms in p.ms]
            if overall:
                print(
                    f"| **all pain-point requests** | {len(overall)} | {statistics.median(overall):,.0f} | "
                    f"{percentile(overall, 95):,.0f} | {max(overall):,.0f} | | | |"
                )
            detail = f"{t.points} topics"
        else:
            detail = f"{t.points} ({t.tested:,})"
        print(
            f"| {t.name} | {len(t.ms)} | {statistics.median(t.ms):,.0f} | {percentile(t.ms, 95):,.0f} | "
            f"{max(t.ms):,.0f} | {detail} | {t.trending if t.name != 'GET /v1/topics' else ''} | "
            f"{t.size / 1024:,.0f} KiB |"
        )
    for t in pain:
        if t.top:
            print(f"- trending in `{t.name}`: {t.top}")


# --- explain -----------------------------------------------------------------------------------------


def _statement_name(sql: str) -> str:
    kind = " (text)" if "sentence_touchpoints" in sql else (" (source)" if "item_touchpoints" in sql else "")
    if "row_number()" in sql.lower():
        return "quotes" + kind
    if "feedback_emotions" in sql:
        return "emotions" + kind
    if "JOIN sources" in sql and "GROUP BY" in sql:
        return "locations/sources/languages" + kind
    if "AS bucket" in sql:
        return "trend buckets" + kind
    if "GROUP BY" in sql and "sentence_touchpoints" not in sql and "item_touchpoints" not in sql:
        return "topic stats"
    if "GROUP BY" in sql:
        return "totals" + kind
    return "lookup: " + " ".join(sql.split())[:60]


def explain(target: Target, plan: Plan, *, slow_ms: float, trending: bool) -> None:
    """Each query in-process, statement by statement, with the plan of every statement over ``slow_ms``."""
    engine = make_engine(target.url)
    records: list[tuple[float, str, Any]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        conn.info["bench_t0"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        records.append(((time.perf_counter() - conn.info.pop("bench_t0")) * 1000, statement, parameters))

    mix, topics = queries(plan, trending=trending)
    factory = make_session_factory(engine)
    print(f"\n{target.name}: in-process, statement by statement (second run of each query)\n")
    for query in [*mix, topics]:
        with factory() as session:
            query.run(session)  # warm
        records.clear()
        began = time.perf_counter()
        with factory() as session:
            query.run(session)
        total = (time.perf_counter() - began) * 1000
        print(f"### {query.name} {query.params or ''}: {total:,.0f} ms in all")
        seen: set[str] = set()
        for ms, sql, parameters in sorted(records, key=lambda r: -r[0]):
            name = _statement_name(sql)
            print(f"- {ms:8,.0f} ms  {name}")
            if ms >= slow_ms and sql not in seen:
                seen.add(sql)
                _print_plan(engine, target, sql, parameters)
        print()
    engine.dispose()


def _print_plan(engine: Engine, target: Target, sql: str, parameters: Any) -> None:
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if target.backend == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + sql, parameters)
            depth: dict[int, int] = {0: 0}
            lines = []
            for node, parent, _, detail in cursor.fetchall():
                depth[node] = depth.get(parent, 0) + 1
                lines.append("  " * depth[node] + str(detail))
        else:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, parameters)
            lines = [str(row[0]) for row in cursor.fetchall()]
        cursor.close()
    finally:
        raw.close()
    short = re.sub(
        r"(\((?:%\(param_[\d_]+\)s|\?), (?:%\(param_[\d_]+\)s|\?)\), ){3,}", "(...), ", sql.strip()
    )
    plan = "\n".join(line if len(line) < 300 else line[:300] + " ..." for line in lines)
    print(f"\n```sql\n{short}\n```\n```\n{plan}\n```\n")


# --- main --------------------------------------------------------------------------------------------


def machine() -> str:
    """A one-line description of this machine (CPU, cores, RAM, Python, SQLite)."""
    model, ram = "unknown CPU", "RAM unknown"
    cpuinfo, meminfo = Path("/proc/cpuinfo"), Path("/proc/meminfo")
    if cpuinfo.exists():
        model = next(
            (
                line.split(":", 1)[1].strip()
                for line in cpuinfo.read_text().splitlines()
                if line.startswith("model name")
            ),
            model,
        )
    if meminfo.exists():
        total = next(line for line in meminfo.read_text().splitlines() if line.startswith("MemTotal"))
        ram = f"{int(total.split()[1]) / 1024**2:.1f} GiB RAM"
    return (
        f"{model}, {os.cpu_count()} cores, {ram}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument(
        "--requests", type=int, default=50, help="Pain-point requests (round-robin over the mix)."
    )
    parser.add_argument("--topic-requests", type=int, default=20, help="GET /v1/topics requests.")
    parser.add_argument("--warmups", type=int, default=3)
    parser.add_argument(
        "--trending", action="store_true", help="Add trending=true (every candidate described) to the mix."
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--db-dir", type=Path, default=None, help="Where the SQLite file goes (default: a temp dir)."
    )
    parser.add_argument(
        "--postgres-url", default=os.environ.get("CXMINE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    )
    parser.add_argument("--schema", default="cxmine_bench", help="PostgreSQL schema for the data.")
    parser.add_argument("--keep", action="store_true", help="Keep the databases (for --reuse).")
    parser.add_argument(
        "--reuse", action="store_true", help="Benchmark a kept database instead of loading one."
    )
    parser.add_argument("--explain", action="store_true", help="Time each SQL statement, plan the slow ones.")
    parser.add_argument(
        "--slow-ms", type=float, default=200.0, help="--explain plans statements slower than this."
    )
    args = parser.parse_args()

    plan = Plan(items=args.items, seed=args.seed, now=datetime.now(UTC).replace(microsecond=0))
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    db_dir: Path = args.db_dir or Path(tempfile.mkdtemp(prefix="cxmine-bench-"))
    db_dir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}")
    print(f"data: {plan.items:,} items over {WEEKS} weeks to {plan.now:%Y-%m-%d %H:%M} UTC, seed {plan.seed}")
    summary: list[str] = []
    try:
        for backend in backends:
            if backend == "sqlite":
                target = Target("sqlite", f"sqlite:///{db_dir / 'bench.db'}", path=db_dir / "bench.db")
            else:
                target = postgres_target(args.postgres_url, args.schema)
            print(f"\n## {target.name}")
            load_line = "reused"
            try:
                if args.reuse and target_exists(target):
                    print(f"reusing the kept database; {server_version(target)}")
                    migrate.upgrade(target.url)  # a database kept by an older cxmine gains the new tables
                else:
                    reset(target)
                    print(server_version(target))
                    stats = load(target, plan)
                    rows = sum(stats.rows.values())
                    print("rows: " + ", ".join(f"{t} {n:,}" for t, n in stats.rows.items()))
                    load_line = (
                        f"{stats.insert_s:,.0f} s inserts ({rows / stats.insert_s:,.0f} rows/s) + "
                        f"{stats.finish_s:,.0f} s {'ANALYZE' if backend == 'sqlite' else 'VACUUM ANALYZE'}"
                    )
                    print(f"load: {load_line}")
                size, tables = database_size(target)
                print(f"size: {size / 1024**3:.2f} GiB")
                if tables:
                    print("| table | rows | size with indexes |\n|---|---|---|")
                    for table, count, nbytes in tables:
                        if nbytes > 1024**2:
                            print(f"| {table} | {count:,} | {nbytes / 1024**2:,.0f} MiB |")
                timings = bench_http(
                    target,
                    plan,
                    requests=args.requests,
                    topic_requests=args.topic_requests,
                    warmups=args.warmups,
                    trending=args.trending,
                )
                print_timings(target.name, timings)
                pain = [ms for t in timings if t.name != "GET /v1/topics" for ms in t.ms]
                topics = next(t for t in timings if t.name == "GET /v1/topics").ms
                summary.append(
                    f"| {target.name} | {plan.items:,} | {load_line} | {size / 1024**3:.2f} GiB | "
                    f"{statistics.median(pain):,.0f} / {percentile(pain, 95):,.0f} | "
                    f"{statistics.median(topics):,.0f} / {percentile(topics, 95):,.0f} |"
                )
                if args.explain:
                    explain(target, plan, slow_ms=args.slow_ms, trending=args.trending)
            finally:
                if not args.keep:
                    drop(target)
    finally:
        if args.db_dir is None and not args.keep:
            shutil.rmtree(db_dir, ignore_errors=True)
        elif "sqlite" in backends and args.keep:
            print(f"\nkept: {db_dir / 'bench.db'}")
    print("\n| database | items | load | size | pain points p50 / p95 ms | topics p50 / p95 ms |")
    print("|---|---|---|---|---|---|")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
