"""Concurrent writers of the same batch store every item exactly once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine, func, select

from service.db.engine import make_session_factory
from service.db.models import FeedbackItem
from service.ingest.service import ItemResult, ingest_batch

ITEMS = [
    {"text": f"order {i} arrived late", "source": "race", "external_id": f"r{i}"} for i in range(300)
] + [{"text": f"no id {i}", "source": "race", "author": f"user{i}"} for i in range(100)]


def test_four_writers_racing_the_same_batch(engine: Engine) -> None:
    factory = make_session_factory(engine)

    def send() -> list[ItemResult]:
        with factory() as session:
            _, results = ingest_batch(
                session, raw_items=ITEMS, author_salt=b"s", max_text_chars=10_000, actor="race"
            )
            return results

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(lambda _: send(), range(4)))

    with factory() as session:
        assert session.scalar(select(func.count()).select_from(FeedbackItem)) == len(ITEMS)
    for index in range(len(ITEMS)):
        statuses = [results[index].status for results in outcomes]
        assert statuses.count("stored") == 1, (index, statuses)
        assert statuses.count("duplicate") == 3
        assert len({results[index].id for results in outcomes}) == 1
