"""Cursors of newest-first listings and of walks over several listings."""

from __future__ import annotations

from datetime import UTC, datetime

from scrapers.contract import Record
from scrapers.cursors import listing_page, newest_of, unseen, walk_index, walk_page


def record(external_id: str, hour: int) -> Record:
    return Record(external_id=external_id, text="text", created_at=datetime(2026, 11, 30, hour, tzinfo=UTC))


def test_unseen_keeps_equal_times_and_says_when_the_walk_is_over() -> None:
    records = [record("c", 12), record("b", 10), record("a", 9)]
    fresh, over = unseen(records, since=datetime(2026, 11, 30, 10, tzinfo=UTC))
    assert [r.external_id for r in fresh] == ["c", "b"] and over
    fresh, over = unseen(records, since=None)
    assert len(fresh) == 3 and not over
    assert newest_of([r.created_at for r in records], None) == "2026-11-30T12:00:00+00:00"
    assert (
        newest_of([r.created_at for r in records], "2026-11-30T13:00:00+00:00") == "2026-11-30T13:00:00+00:00"
    )


def test_a_listing_page_continues_or_ends_at_its_newest() -> None:
    since = datetime(2026, 11, 29, tzinfo=UTC)
    going = listing_page(records=[], malformed=[], position={"page": 3}, since=since, newest="N")
    assert going.cursor == {"page": 3, "since": since.isoformat(), "newest": "N"} and not going.done
    ended = listing_page(records=[], malformed=[], position=None, since=since, newest="N")
    assert ended.cursor == {"since": "N"} and ended.done
    quiet = listing_page(records=[], malformed=[], position=None, since=since, newest=None)
    assert quiet.cursor == {"since": since.isoformat()}
    first_and_empty = listing_page(records=[], malformed=[], position=None, since=None, newest=None)
    assert first_and_empty.cursor == {} and first_and_empty.done


def test_a_walk_moves_through_its_targets_keeping_a_mark_each() -> None:
    targets = ["riyadh", "dubai"]
    mid = walk_page(
        records=[],
        malformed=[],
        key="location",
        targets=targets,
        index=0,
        since={},
        newest="T1",
        position={"token": "x"},
    )
    assert mid.cursor == {"since": {}, "location": "riyadh", "token": "x", "newest": "T1"} and not mid.done
    next_target = walk_page(
        records=[],
        malformed=[],
        key="location",
        targets=targets,
        index=0,
        since={},
        newest="T1",
        position=None,
    )
    assert next_target.cursor == {"since": {"riyadh": "T1"}, "location": "dubai"} and not next_target.done
    last = walk_page(
        records=[],
        malformed=[],
        key="location",
        targets=targets,
        index=1,
        since={"riyadh": "T1"},
        newest=None,
        position=None,
    )
    assert last.cursor == {"since": {"riyadh": "T1"}} and last.done
    assert walk_index(targets, "dubai") == 1
    assert walk_index(targets, "cairo") == 0  # removed from the config: start the walk again
    assert walk_index(targets, None) == 0
