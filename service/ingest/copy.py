"""Bulk insertion of feedback rows: COPY into a staging table on PostgreSQL, executemany on SQLite."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from service.db.models import FeedbackItem

# The columns a stored item is given, with their PostgreSQL types (the staging table's).
COLUMN_TYPES = {
    "source_id": "integer",
    "external_id": "text",
    "dedup_key": "text",
    "text": "text",
    "language": "text",
    "created_at": "timestamptz",
    "created_at_given": "boolean",
    "utc_offset_minutes": "smallint",
    "collected_at": "timestamptz",
    "rating_value": "float8",
    "rating_scale": "text",
    "location": "text",
    "product": "text",
    "channel": "text",
    "author_hash": "text",
    "metadata": "jsonb",
    "content_hash": "text",
    "import_id": "integer",
    "text_fingerprint": "text",
}
COLUMNS = list(COLUMN_TYPES)
STAGING = "cxmine_import_staging"
IMPORT_CACHE_KIB = -65_536
_COLUMN_LIST = ", ".join(COLUMNS)
_STAGING_COLUMNS = ", ".join(f"{column} {sql_type}" for column, sql_type in COLUMN_TYPES.items())
# All statements below are built from the constant column table above, never from input.
_CREATE_STAGING = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING} (position integer, {_STAGING_COLUMNS}) "
    "ON COMMIT DELETE ROWS"
)
_COPY_STAGING = f"COPY {STAGING} (position, {_COLUMN_LIST}) FROM STDIN"
# The staged rows are taken out (the DELETE) and inserted in arrival order in one statement, so the
# staging table is empty again whether the transaction goes on or commits. The join names the rows
# already stored before the statement began (it cannot see the rows the statement inserts), so a
# re-import needs no second look-up; rows a concurrent writer committed meanwhile are in neither part.
_INSERT_FROM_STAGING = text(
    f"WITH staged AS (DELETE FROM {STAGING} RETURNING *), "  # noqa: S608
    f"inserted AS (INSERT INTO feedback_items ({_COLUMN_LIST}) "
    f"SELECT {_COLUMN_LIST} FROM staged ORDER BY position "
    "ON CONFLICT (source_id, dedup_key) DO NOTHING RETURNING id, source_id, dedup_key) "
    "SELECT id, source_id, dedup_key, true FROM inserted UNION ALL "
    "SELECT stored.id, stored.source_id, stored.dedup_key, false FROM staged "
    "JOIN feedback_items AS stored "
    "ON stored.source_id = staged.source_id AND stored.dedup_key = staged.dedup_key"
)
_SQLITE_INSERT = (
    f"INSERT INTO feedback_items ({_COLUMN_LIST}) VALUES ({', '.join('?' for _ in COLUMNS)}) "  # noqa: S608
    "ON CONFLICT (source_id, dedup_key) DO NOTHING"
)


def copy_insert(session: Session, rows: Sequence[dict[str, Any]]) -> list[tuple[int, int, str, bool]]:
    """Insert the rows whose (source, dedup key) is new through COPY into a staging table.

    Returns (id, source_id, dedup_key, inserted) for the rows inserted and the rows already stored.
    """
    session.execute(text(_CREATE_STAGING))
    driver = session.connection().connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(_COPY_STAGING) as copy:
        for position, row in enumerate(rows):
            copy.write_row(
                (
                    position,
                    *(row[column] for column in COLUMNS[:15]),
                    json.dumps(row["metadata"], ensure_ascii=False),
                    row["content_hash"],
                    row["import_id"],
                    row["text_fingerprint"],
                )
            )
    return [
        (row_id, source_id, dedup, is_new)
        for row_id, source_id, dedup, is_new in session.execute(_INSERT_FROM_STAGING)
    ]


@contextmanager
def import_connection(session: Session) -> Iterator[None]:
    """Tune the session's connection for a long import, and put it back after.

    On SQLite the page cache grows to 64 MiB (the default 2 MiB thrashes on the item indexes of a large
    table); durability settings are left alone. PostgreSQL needs nothing.
    """
    if session.get_bind().dialect.name != "sqlite":
        yield
        return
    driver = session.connection().connection.driver_connection
    assert driver is not None
    previous = driver.execute("PRAGMA cache_size").fetchone()[0]
    driver.execute(f"PRAGMA cache_size={IMPORT_CACHE_KIB}")
    try:
        yield
    finally:
        # The import may have ended on any connection of the pool; reset the one it is on now.
        driver = session.connection().connection.driver_connection
        assert driver is not None
        driver.execute(f"PRAGMA cache_size={int(previous)}")


def sqlite_insert(session: Session, rows: Sequence[dict[str, Any]]) -> list[tuple[int, int, str, bool]]:
    """Insert the rows whose (source, dedup key) is new with one executemany; return those inserted as
    (id, source_id, dedup_key, True).

    SQLite has one writer at a time and numbers new rows above every existing one, so the rows this
    statement inserted are exactly those above the highest id read after taking the write lock.
    """
    driver = session.connection().connection.driver_connection
    assert driver is not None
    cursor = driver.cursor()
    try:
        # A no-op write takes the write lock first, so no other writer can add rows between the two reads.
        cursor.execute("DELETE FROM feedback_items WHERE 0")
        before = cursor.execute("SELECT coalesce(max(id), 0) FROM feedback_items").fetchone()[0]
        processors = _sqlite_processors(session)
        cursor.executemany(
            _SQLITE_INSERT,
            [
                tuple(
                    value if process is None else process(value)
                    for process, value in zip(processors, values, strict=True)
                )
                for values in ([row[column] for column in COLUMNS] for row in rows)
            ],
        )
        inserted = cursor.execute(
            "SELECT id, source_id, dedup_key FROM feedback_items WHERE id > ? ORDER BY id", (before,)
        ).fetchall()
    finally:
        cursor.close()
    return [(row_id, source_id, dedup, True) for row_id, source_id, dedup in inserted]


def _sqlite_processors(session: Session) -> list[Callable[[Any], Any] | None]:
    """Each column's conversion to what SQLite stores, exactly as SQLAlchemy's own inserts do it."""
    dialect = session.get_bind().dialect
    table = FeedbackItem.__table__
    return [table.c[column].type.dialect_impl(dialect).bind_processor(dialect) for column in COLUMNS]
