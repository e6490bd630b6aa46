"""Daily pain-point rollups, kept by triggers on ``pain_point_facts`` in the facts' own transaction.

``pain_point_days`` sums a day's facts per (topic, touchpoint); ``pain_point_location_days`` the same per
store. Every insert, update and delete of a fact (refit, online assignment, a cascade from a rescored
sentence or a deleted topic) moves the sums, so no writer can forget them. A row whose count reaches zero
is deleted. PostgreSQL uses statement triggers over transition tables (one grouped upsert per statement);
SQLite has row triggers only.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SUMS = ("sentences", "negative", "score_sum", "negative_score")
# (table, the key columns after day) for each rollup
ROLLUPS = (
    ("pain_point_days", ("topic_id", "touchpoint")),
    ("pain_point_location_days", ("location", "topic_id", "touchpoint")),
)


def _create_tables() -> None:
    for table, keys in ROLLUPS:
        key_columns = [
            sa.Column("location", sa.String(200), nullable=False)
            if key == "location"
            else sa.Column("topic_id", sa.Integer(), nullable=False)
            if key == "topic_id"
            else sa.Column("touchpoint", sa.String(64), nullable=False)
            for key in keys
        ]
        op.create_table(
            table,
            sa.Column("day", sa.Date(), nullable=False),
            *key_columns,
            sa.Column("sentences", sa.Integer(), nullable=False),
            sa.Column("negative", sa.Integer(), nullable=False),
            sa.Column("score_sum", sa.Float(), nullable=False),
            sa.Column("negative_score", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("day", *keys, name=op.f(f"pk_{table}")),
        )


def _sqlite_upsert(table: str, keys: tuple[str, ...], row: str, sign: str) -> str:
    day = f"date({row}.created_at)"
    values = ", ".join([day, *(f"{row}.{k}" for k in keys)])
    sums = (
        f"{sign}1, {sign}({row}.negative <> 0), {sign}{row}.sentiment_score, "
        f"{sign}(CASE WHEN {row}.negative <> 0 THEN {row}.sentiment_score ELSE 0 END)"
    )
    where = f"WHERE {row}.location IS NOT NULL" if "location" in keys else "WHERE 1"
    updates = ", ".join(f"{s} = {s} + excluded.{s}" for s in SUMS)
    upsert = (
        f"INSERT INTO {table} (day, {', '.join(keys)}, {', '.join(SUMS)}) SELECT {values}, {sums} {where} "
        f"ON CONFLICT (day, {', '.join(keys)}) DO UPDATE SET {updates};"
    )
    if sign != "-":
        return upsert
    match = " AND ".join([f"day = {day}", *(f"{k} = {row}.{k}" for k in keys)])
    return upsert + f" DELETE FROM {table} WHERE {match} AND sentences <= 0;"


def _sqlite_triggers() -> list[str]:
    def body(parts: list[tuple[str, str]]) -> str:
        return " ".join(
            _sqlite_upsert(table, keys, row, sign) for row, sign in parts for table, keys in ROLLUPS
        )

    return [
        "CREATE TRIGGER pain_point_facts_rollup_insert AFTER INSERT ON pain_point_facts "
        f"BEGIN {body([('NEW', '')])} END",
        "CREATE TRIGGER pain_point_facts_rollup_delete AFTER DELETE ON pain_point_facts "
        f"BEGIN {body([('OLD', '-')])} END",
        "CREATE TRIGGER pain_point_facts_rollup_update AFTER UPDATE ON pain_point_facts "
        f"BEGIN {body([('OLD', '-'), ('NEW', '')])} END",
    ]


def _postgres_upsert(table: str, keys: tuple[str, ...], rows: str, sign: str) -> str:
    key_list = ", ".join(keys)
    where = "WHERE location IS NOT NULL" if "location" in keys else ""
    updates = ", ".join(f"{s} = {table}.{s} + excluded.{s}" for s in SUMS)
    upsert = (
        f"INSERT INTO {table} (day, {key_list}, {', '.join(SUMS)}) "
        f"SELECT (created_at AT TIME ZONE 'UTC')::date, {key_list}, {sign}count(*), "
        f"{sign}count(*) FILTER (WHERE negative), {sign}sum(sentiment_score), "
        f"{sign}coalesce(sum(sentiment_score) FILTER (WHERE negative), 0) "
        f"FROM {rows} {where} GROUP BY 1, {key_list} "
        f"ON CONFLICT (day, {key_list}) DO UPDATE SET {updates};"
    )
    if sign != "-":
        return upsert
    match = " AND ".join(
        [f"{table}.day = (o.created_at AT TIME ZONE 'UTC')::date"] + [f"{table}.{k} = o.{k}" for k in keys]
    )
    return upsert + f" DELETE FROM {table} USING {rows} o WHERE {match} AND {table}.sentences <= 0;"


def _postgres_function() -> str:
    removed = " ".join(_postgres_upsert(table, keys, "old_rows", "-") for table, keys in ROLLUPS)
    added = " ".join(_postgres_upsert(table, keys, "new_rows", "") for table, keys in ROLLUPS)
    return (
        "CREATE FUNCTION pain_point_facts_rollup() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF TG_OP IN ('DELETE', 'UPDATE') THEN {removed} END IF; "
        f"IF TG_OP IN ('INSERT', 'UPDATE') THEN {added} END IF; "
        "RETURN NULL; END $$"
    )


def _postgres_triggers() -> list[str]:
    # A trigger with transition tables takes one event, so each event has its own.
    referencing = {
        "insert": "NEW TABLE AS new_rows",
        "delete": "OLD TABLE AS old_rows",
        "update": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
    }
    return [_postgres_function()] + [
        f"CREATE TRIGGER pain_point_facts_rollup_{event} AFTER {event.upper()} ON pain_point_facts "
        f"REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION pain_point_facts_rollup()"
        for event, tables in referencing.items()
    ]


def _backfill(dialect: str) -> None:
    day = "(created_at AT TIME ZONE 'UTC')::date" if dialect == "postgresql" else "date(created_at)"
    negative = "negative" if dialect == "postgresql" else "negative <> 0"
    for table, keys in ROLLUPS:
        key_list = ", ".join(keys)
        where = "WHERE location IS NOT NULL" if "location" in keys else ""
        op.execute(
            f"INSERT INTO {table} (day, {key_list}, {', '.join(SUMS)}) "
            f"SELECT {day}, {key_list}, count(*), sum(CASE WHEN {negative} THEN 1 ELSE 0 END), "
            f"sum(sentiment_score), sum(CASE WHEN {negative} THEN sentiment_score ELSE 0 END) "
            f"FROM pain_point_facts {where} GROUP BY 1, {key_list}"
        )


def upgrade() -> None:
    _create_tables()
    dialect = op.get_bind().dialect.name
    _backfill(dialect)
    for statement in _postgres_triggers() if dialect == "postgresql" else _sqlite_triggers():
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for event in ("insert", "delete", "update"):
        op.execute(
            f"DROP TRIGGER IF EXISTS pain_point_facts_rollup_{event}"
            + (" ON pain_point_facts" if dialect == "postgresql" else "")
        )
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS pain_point_facts_rollup()")
    for table, _ in ROLLUPS:
        op.drop_table(table)
