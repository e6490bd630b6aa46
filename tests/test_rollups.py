"""Daily pain-point rollups: the triggers keep them equal to the facts through every kind of write, and
pain-point figures read from them equal those read from the facts, to the second, for any period."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.orm import Session

from service.db.models import (
    FeedbackItem,
    FeedbackSentence,
    PainPointDay,
    PainPointDimensionDay,
    PainPointFact,
    PainPointRollupControl,
    Source,
    Topic,
    TopicModelRun,
)
from service.feedback import Scope
from service.painpoints import pain_point_report, period_rows_from_facts, period_rows_from_rollups
from service.rollup_upkeep import rebuild_rollups, resume_rollups, rollup_drift, suspend_rollups
from service.rollups import day_plan, segments

NOW = datetime(2026, 11, 30, 15, 37, 12, tzinfo=UTC)
STORES = ("Dubai Mall", "Riyadh Olaya", "Bangkok Siam", None)
TOUCHPOINTS = ("delivery_shipping", "staff", "mobile_app")


def _seed(session: Session, *, items: int = 400, seed: int = 7) -> list[int]:
    """``items`` items over the 10 weeks before NOW, one sentence each, 1-2 facts per sentence, 3 topics."""
    rng = random.Random(seed)
    session.add(Source(name="bench", kind="api"))
    run = TopicModelRun(status="done", config={}, figures={})
    session.add(run)
    session.flush()
    source_id = session.scalars(select(Source.id)).one()
    topics = [
        Topic(label=f"topic {n}", centroid=b"\x00\x00", born_model_id=run.id, last_model_id=run.id)
        for n in range(3)
    ]
    session.add_all(topics)
    session.flush()
    rows = []
    for n in range(items):
        created = NOW - timedelta(seconds=rng.randrange(70 * 86400))
        rows.append(
            {
                "source_id": source_id,
                "external_id": f"x{n}",
                "dedup_key": f"x{n}",
                "text": f"item {n}",
                "language": rng.choice(("en", "ar", None)),
                "created_at": created,
                "location": rng.choice(STORES),
                "content_hash": f"h{n}",
            }
        )
    item_ids = list(session.scalars(insert(FeedbackItem).returning(FeedbackItem.id), rows))
    sentence_ids = list(
        session.scalars(
            insert(FeedbackSentence).returning(FeedbackSentence.id),
            [
                {
                    "item_id": item_id,
                    "position": 0,
                    "start": 0,
                    "end": 6,
                    "sentiment_label": "negative",
                    "sentiment_score": 0.0,
                    "sentiment_probabilities": {},
                    "emotions": {},
                    "embedding": b"\x00\x00",
                }
                for item_id in item_ids
            ],
        )
    )
    facts = []
    for sentence_id, item_id, row in zip(sentence_ids, item_ids, rows, strict=True):
        topic = rng.choice(topics).id
        for touchpoint in rng.sample(TOUCHPOINTS, rng.choice((1, 2))):
            negative = rng.random() < 0.6
            facts.append(
                {
                    "sentence_id": sentence_id,
                    "touchpoint": touchpoint,
                    "origin": "text",
                    "item_id": item_id,
                    "topic_id": topic,
                    "created_at": row["created_at"],
                    "negative": negative,
                    "sentiment_score": round(-rng.random() if negative else rng.random(), 3),
                    "similarity": rng.random(),
                    "location": row["location"],
                    "source_id": source_id,
                    "language": row["language"],
                }
            )
    session.execute(insert(PainPointFact), facts)
    session.commit()
    return item_ids


def test_the_triggers_keep_the_rollups_equal_to_the_facts(session: Session) -> None:
    item_ids = _seed(session)
    assert rollup_drift(session) == []
    total = session.scalar(select(func.sum(PainPointDay.sentences)))
    assert total == session.scalar(select(func.count()).select_from(PainPointFact))
    stores = select(func.sum(PainPointDimensionDay.sentences)).where(
        PainPointDimensionDay.dimension == "location"
    )
    assert session.scalar(stores) == session.scalar(
        select(func.count()).select_from(PainPointFact).where(PainPointFact.location.is_not(None))
    )
    for dimension in ("source", "language"):
        rows = select(func.sum(PainPointDimensionDay.sentences)).where(
            PainPointDimensionDay.dimension == dimension
        )
        assert session.scalar(rows) == total
    # Online assignment rewrites an item's facts; a rescored item's sentences cascade to its facts.
    session.execute(delete(PainPointFact).where(PainPointFact.item_id.in_(item_ids[:50])))
    session.execute(delete(FeedbackSentence).where(FeedbackSentence.item_id.in_(item_ids[50:80])))
    session.execute(
        update(PainPointFact)
        .where(PainPointFact.item_id.in_(item_ids[80:120]))
        .values(negative=True, created_at=NOW - timedelta(days=3), location="Dubai Mall")
    )
    session.commit()
    assert rollup_drift(session) == []
    # A refit deletes every fact and writes them again; a deleted topic takes its facts with it.
    doomed = session.scalars(select(Topic.id).order_by(Topic.id)).first()
    session.execute(delete(Topic).where(Topic.id == doomed))
    session.commit()
    assert rollup_drift(session) == []
    assert session.scalar(select(func.count()).where(PainPointDay.topic_id == doomed)) == 0
    session.execute(delete(PainPointFact))
    session.commit()
    assert session.scalar(select(func.count()).select_from(PainPointDay)) == 0
    assert session.scalar(select(func.count()).select_from(PainPointDimensionDay)) == 0


def test_a_rolled_back_write_leaves_the_rollups_alone(session: Session) -> None:
    _seed(session, items=60)
    before = session.execute(select(PainPointDay).order_by(PainPointDay.day)).scalars().all()
    snapshot = [(r.day, r.topic_id, r.touchpoint, r.sentences) for r in before]
    session.execute(delete(PainPointFact))
    session.rollback()
    after = session.execute(select(PainPointDay).order_by(PainPointDay.day)).scalars().all()
    assert [(r.day, r.topic_id, r.touchpoint, r.sentences) for r in after] == snapshot


def test_rebuild_recomputes_what_a_bulk_load_left_out(session: Session) -> None:
    _seed(session, items=80)
    session.execute(delete(PainPointDay))
    session.execute(update(PainPointDimensionDay).values(sentences=PainPointDimensionDay.sentences + 5))
    session.commit()
    assert rollup_drift(session)
    rebuild_rollups(session)
    session.commit()
    assert rollup_drift(session) == []


def _normalised(rows: Sequence[Sequence[Any]]) -> dict[tuple[int, str], tuple[float, ...]]:
    figures = {}
    for row in rows:
        if row[2] or any(row[6:]):
            sums = (round(float(row[4] or 0), 6), round(float(row[5] or 0), 6))
            figures[(row[0], row[1])] = (int(row[2] or 0), int(row[3] or 0), *sums, *map(int, row[6:]))
    return figures


@pytest.mark.parametrize(
    ("interval", "window", "baseline"), [("week", 1, 6), ("day", 1, 14), ("day", 3, 9), ("week", 2, 4)]
)
def test_rollup_figures_equal_fact_figures_for_any_period(
    session: Session, interval: str, window: int, baseline: int
) -> None:
    _seed(session)
    rng = random.Random(11)
    step = timedelta(weeks=1) if interval == "week" else timedelta(days=1)
    for trial in range(12):
        until = NOW - timedelta(seconds=rng.randrange(14 * 86400))
        if trial % 4 == 0:
            until = until.replace(hour=0, minute=0, second=0)  # a cut at midnight
        start = until - step * (baseline + window)
        since = start + timedelta(seconds=rng.randrange(-5 * 86400, 5 * 86400)) if trial % 3 else start
        bounds = [until - step * i for i in range(baseline + window + 1)]
        narrowed: list[dict[str, Any]] = [
            {},
            {"locations": ("Dubai Mall", "Riyadh Olaya")},
            {"languages": ("ar",)},
            {"sources": ("bench",)},
        ]
        scope = Scope(since=since, until=until, **narrowed[trial % 4])
        touchpoints = ("staff", "mobile_app") if trial % 5 == 1 else None
        read = {"facts": period_rows_from_facts, "rollups": period_rows_from_rollups}
        figures = {
            name: _normalised(
                function(
                    session, since=since, bounds=bounds, scope=scope, touchpoints=touchpoints, topic_ids=()
                )
            )
            for name, function in read.items()
        }
        assert figures["rollups"] == figures["facts"], (trial, since, until)


def test_a_day_split_by_a_cut_reads_only_the_smaller_part_from_the_facts() -> None:
    until = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)
    bounds = [until - timedelta(weeks=i) for i in range(3)]
    parts = segments(since=bounds[-1], bounds=bounds)
    assert [p.bucket for p in parts] == [1, 0]
    assigned, moves = day_plan(parts)
    # Each cut falls at 20:00, so each split day is credited to the segment before its cut and only its
    # last four hours are read from the facts; the first day is mostly before the period.
    assert all(
        piece.end - piece.start <= timedelta(hours=4) for piece, _ in moves if piece.segment is not None
    )
    day = datetime(2026, 11, 16).date()
    assert day not in assigned
    assert assigned[day + timedelta(days=1)] == 0 and assigned[day + timedelta(days=7)] == 0
    assert assigned[day + timedelta(days=8)] == 1 and assigned[day + timedelta(days=14)] == 1


def test_the_report_reads_the_rollups_and_agrees_with_the_facts(session: Session) -> None:
    _seed(session)
    until = NOW - timedelta(hours=5, minutes=13)
    # Unnarrowed, the list comes from the topic rollup; narrowed to the one source every item has, from the
    # source rollup; narrowed by a source and languages together, from the facts: the figures must agree.
    scopes = {
        "rollups": Scope(since=None, until=until),
        "source": Scope(since=None, until=until, sources=("bench",)),
        "facts": Scope(since=None, until=until, sources=("bench",), languages=("en", "ar")),
    }
    reports = {
        name: pain_point_report(session, scope=scope, limit=100, quotes=0) for name, scope in scopes.items()
    }
    unknown_language = {
        (p.topic_id, p.touchpoint): p.languages.get("und", 0) for p in reports["rollups"].pain_points
    }
    assert any(unknown_language.values())

    def described(name: str, *, known_languages_only: bool = False) -> list[tuple[Any, ...]]:
        rows = []
        for p in reports[name].pain_points:
            languages = {k: v for k, v in p.languages.items() if not (known_languages_only and k == "und")}
            rows.append((p.topic_id, p.touchpoint, p.negative, p.current, p.locations, p.sources, languages))
        return rows

    assert reports["rollups"].pain_points and reports["rollups"].tested == reports["source"].tested
    assert described("rollups") == described("source")
    by_key = {(row[0], row[1]): row for row in described("rollups", known_languages_only=True)}
    for row in described("facts"):
        assert row[-1] == by_key[(row[0], row[1])][-1]


def test_a_suspended_rewrite_is_invisible_to_others_and_rebuilt_on_resume(
    session: Session, engine: Engine
) -> None:
    _seed(session, items=120)
    before = session.scalar(select(func.sum(PainPointDay.sentences)))
    suspend_rollups(session)
    session.execute(
        delete(PainPointFact).where(PainPointFact.topic_id == select(func.min(Topic.id)).scalar_subquery())
    )
    assert session.scalar(select(func.sum(PainPointDay.sentences))) == before, "the triggers are off"
    with Session(engine) as other:
        assert not other.scalar(select(PainPointRollupControl.suspended)), "no one else sees them off"
    resume_rollups(session)
    session.commit()
    assert rollup_drift(session) == []
    assert (session.scalar(select(func.sum(PainPointDay.sentences))) or 0) < (before or 0)
    assert session.scalar(select(PainPointRollupControl.suspended)) is False
