"""Bulk imports on both databases: COPY on PostgreSQL, executemany on SQLite, with today's guarantees."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import service.ingest.service as ingest_service
from service.db.models import FeedbackItem, ImportAudit
from service.ingest import copy as bulk
from service.ingest import near_duplicates
from service.ingest.edits import updated_counts
from service.ingest.imports import ImportOptions, import_file
from service.ingest.near_duplicates import NearDuplicateFlagger
from service.ingest.service import ItemResult, ingest_batch

AWKWARD = [
    "tab\there, tab at the end\t",
    "line one\nline two\r\nline three",
    'a "quoted" word, a \'single\' one and ""doubled"" quotes',
    "back\\slash, \\N, \\t and \\\\ literally",
    "الموظفين كانوا لطيفين لكن التطبيق توقف عند الدفع",
    "ส่งของช้ามากกก รอสามวันแล้วค่ะ",
    "great 👍🏽 but 😡😡 family 👨‍👩‍👧 flag 🇦🇪",
    'mixed\t"\\\n العربية ไทย 🎉 \\.',
]


def _jsonl(items: list[dict[str, Any]]) -> bytes:
    return "\n".join(json.dumps(item, ensure_ascii=False) for item in items).encode()


def _import(
    session: Session, data: bytes, *, source: str = "survey", chunk_rows: int = 4
) -> tuple[ImportAudit, list[ItemResult]]:
    audit, _, results = import_file(
        session,
        data=data,
        options=ImportOptions(source=source, filename="feedback.jsonl"),
        author_salt=b"salt",
        max_text_chars=10_000,
        chunk_rows=chunk_rows,
        actor="test",
    )
    return audit, results


def _count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(FeedbackItem)) or 0


def _items(n: int, *, prefix: str = "r") -> list[dict[str, Any]]:
    return [
        {"text": f"review number {i} about the delivery", "external_id": f"{prefix}{i}"} for i in range(n)
    ]


def test_the_bulk_path_of_each_database_runs(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"copy": 0, "sqlite": 0, "copy_statements": 0}

    def spy(name: str, real: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(ingest_service, "copy_insert", spy("copy", bulk.copy_insert))
    monkeypatch.setattr(ingest_service, "sqlite_insert", spy("sqlite", bulk.sqlite_insert))
    if session.get_bind().dialect.name == "postgresql":
        import psycopg

        real_copy = psycopg.Cursor.copy

        def copy(self: psycopg.Cursor[Any], statement: Any, *args: Any, **kwargs: Any) -> Any:
            assert str(statement).startswith(f"COPY {bulk.STAGING} ")
            calls["copy_statements"] += 1
            return real_copy(self, statement, *args, **kwargs)

        monkeypatch.setattr(psycopg.Cursor, "copy", copy)
    audit, _ = _import(session, _jsonl(_items(10)))
    assert audit.stored == 10
    if session.get_bind().dialect.name == "postgresql":
        assert calls == {"copy": 3, "sqlite": 0, "copy_statements": 3}
    else:
        assert calls == {"copy": 0, "sqlite": 3, "copy_statements": 0}


def test_a_reimport_stores_nothing_and_counts_every_row_a_duplicate(session: Session) -> None:
    data = _jsonl([*_items(9), {"text": "no id, hashed identity", "author": "ann"}])
    first, first_results = _import(session, data)
    second, second_results = _import(session, data)
    assert (first.received, first.stored, first.duplicates, first.rejected) == (10, 10, 0, 0)
    assert (second.received, second.stored, second.duplicates, second.rejected) == (10, 0, 10, 0)
    assert [r.status for r in second_results] == ["duplicate"] * 10
    assert [r.id for r in second_results] == [r.id for r in first_results]
    assert all(r.id is not None for r in second_results)
    assert _count(session) == 10
    assert second.status == "completed" and second.error_sample == []


def test_duplicates_inside_the_file_and_rows_already_stored(session: Session) -> None:
    earlier, _ = _import(session, _jsonl(_items(3, prefix="old")))
    assert earlier.stored == 3
    before = {item.external_id: item.id for item in session.scalars(select(FeedbackItem))}
    rows = [
        {"text": "first new one", "external_id": "n1"},
        {"text": "review number 1 about the delivery", "external_id": "old1"},
        {"text": "first new one", "external_id": "n1"},
        {"text": "second new one", "external_id": "n2"},
        {"text": ""},
        {"text": "review number 2 about the delivery, edited", "external_id": "old2"},
        {"text": "second new one", "external_id": "n2"},
        {"text": "same hashed identity", "author": "bob"},
        {"text": "same hashed identity", "author": "bob"},
    ]
    audit, results = _import(session, _jsonl(rows), chunk_rows=3)
    assert [r.status for r in results] == [
        "stored",
        "duplicate",
        "duplicate",
        "stored",
        "rejected",
        "updated",
        "duplicate",
        "stored",
        "duplicate",
    ]
    assert [r.index for r in results] == list(range(1, 10))
    assert results[1].id == before["old1"] and results[5].id == before["old2"]
    assert results[2].id == results[0].id and results[6].id == results[3].id
    assert results[8].id == results[7].id
    assert (audit.received, audit.stored, audit.duplicates, audit.rejected) == (9, 3, 4, 1)
    assert updated_counts(session, import_ids=[audit.id]) == {audit.id: 1}
    assert audit.error_sample == [{"row": 5, "reason": results[4].reason}]
    assert _count(session) == 6
    texts = session.scalars(select(FeedbackItem.text).where(FeedbackItem.external_id == "n1")).all()
    assert texts == ["first new one"]


def test_awkward_texts_round_trip_exactly(session: Session) -> None:
    metadata = {"note": 'tab\t newline\n quote" backslash\\ عربي ไทย 🎉', "n": 1.5, "ok": True, "none": None}
    rows = [
        {
            "text": text,
            "external_id": f"k{i}\t\\{i}",
            "location": "Dubai\tMall \\ دبي",
            "metadata": metadata,
            "created_at": "2026-10-01T10:00:00+04:00",
        }
        for i, text in enumerate(AWKWARD)
    ]
    audit, results = _import(session, _jsonl(rows), chunk_rows=3)
    assert audit.stored == len(AWKWARD)
    session.expire_all()
    stored = session.scalars(select(FeedbackItem).order_by(FeedbackItem.id)).all()
    # Validation trims the ends of a text (as on every path); everything inside is kept as sent.
    assert [item.text for item in stored] == [text.strip() for text in AWKWARD]
    assert [item.id for item in stored] == [r.id for r in results]
    assert [item.external_id for item in stored] == [f"k{i}\t\\{i}" for i in range(len(AWKWARD))]
    assert {item.location for item in stored} == {"Dubai\tMall \\ دبي"}
    assert all(item.meta == metadata for item in stored)
    assert {(item.created_at.isoformat(), item.utc_offset_minutes) for item in stored} == {
        ("2026-10-01T06:00:00+00:00", 240)
    }
    again, _ = _import(session, _jsonl(rows), chunk_rows=3)
    assert (again.stored, again.duplicates) == (0, len(AWKWARD))


def test_a_failure_mid_import_keeps_committed_chunks_and_no_partial_one(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_flag = NearDuplicateFlagger.flag
    chunks = {"n": 0}

    def flag_then_fail(self: NearDuplicateFlagger, stored: Any) -> int:
        # The third chunk fails after its rows were inserted, before its commit.
        chunks["n"] += 1
        flagged = real_flag(self, stored)
        if chunks["n"] == 3:
            raise RuntimeError("disk on fire")
        return flagged

    monkeypatch.setattr(NearDuplicateFlagger, "flag", flag_then_fail)
    data = _jsonl(_items(20))
    with pytest.raises(RuntimeError, match="disk on fire"):
        _import(session, data)
    monkeypatch.setattr(NearDuplicateFlagger, "flag", real_flag)
    assert _count(session) == 8
    assert sorted(str(x) for x in session.scalars(select(FeedbackItem.external_id))) == sorted(
        f"r{i}" for i in range(8)
    )
    failed = session.scalars(select(ImportAudit)).one()
    assert (failed.status, failed.received, failed.stored) == ("failed", 8, 8)
    audit, results = _import(session, data)
    assert (audit.status, audit.stored, audit.duplicates) == ("completed", 12, 8)
    assert [r.status for r in results] == ["duplicate"] * 8 + ["stored"] * 12
    assert _count(session) == 20


@pytest.mark.parametrize("memory", [50_000, 1], ids=["remembered", "forgotten"])
def test_near_duplicates_across_sources_over_many_chunks(
    session: Session, monkeypatch: pytest.MonkeyPatch, memory: int
) -> None:
    monkeypatch.setattr(near_duplicates, "MEMORY_LIMIT", memory)
    words = [f"the parcel came {n} days late and the courier never called back" for n in range(6)]
    _import(session, _jsonl([{"text": words[i % 3], "external_id": f"a{i}"} for i in range(7)]), source="a")
    _, b_results = _import(
        session,
        _jsonl([{"text": words[i % 6].upper() + "!!", "external_id": f"b{i}"} for i in range(13)]),
        source="b",
        chunk_rows=2,
    )
    ingest_batch(
        session,
        raw_items=[
            {"text": w, "source": s, "external_id": f"c{i}"}
            for i, (w, s) in enumerate([(words[4], "c"), (words[0], "c"), (words[5], "a")])
        ],
        author_salt=b"salt",
        max_text_chars=10_000,
        actor="test",
    )
    items = session.scalars(select(FeedbackItem).order_by(FeedbackItem.id)).all()
    for item in items:
        expected = min(
            (
                o.id
                for o in items
                if o.text_fingerprint == item.text_fingerprint
                and o.source_id != item.source_id
                and o.id < item.id
            ),
            default=None,
        )
        assert item.near_duplicate_of == expected, item.text
    assert sum(item.near_duplicate_of is not None for item in items) == 7 + 3
    assert b_results[0].status == "stored"


def test_a_sqlite_import_enlarges_the_page_cache_only_while_it_runs(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    if session.get_bind().dialect.name != "sqlite":
        pytest.skip("a SQLite setting")

    def cache_size() -> int:
        driver = session.connection().connection.driver_connection
        assert driver is not None
        return int(driver.execute("PRAGMA cache_size").fetchone()[0])

    default = cache_size()
    seen: list[int] = []
    real = bulk.sqlite_insert

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(cache_size())
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest_service, "sqlite_insert", spy)
    _import(session, _jsonl(_items(6)))
    assert seen == [bulk.IMPORT_CACHE_KIB] * 2
    assert cache_size() == default != bulk.IMPORT_CACHE_KIB
