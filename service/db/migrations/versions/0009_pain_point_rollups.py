"""Daily pain-point rollups, kept by triggers on ``pain_point_facts`` in the facts' own transaction.

``pain_point_days`` sums a day's facts per (topic, touchpoint); ``pain_point_dimension_days`` the same per
store, per source and per language (one dimension at a time: crossed, they would hold about as many rows
as the facts). Every insert, update and delete of a fact (refit, online assignment, a cascade from a rescored
sentence or a deleted topic) moves the sums, so no writer can forget them. A row whose count reaches zero
is deleted. PostgreSQL uses statement triggers over transition tables (one grouped upsert per statement);
SQLite has row triggers only. The facts' (topic, touchpoint) index widens to cover what describing the
listed pain points reads.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

# The trigger and backfill SQL is assembled from this file's constants only, never from input.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SUMS = ("sentences", "negative", "score_sum", "negative_score")
TOPIC_KEYS = (("topic_id", "{r}topic_id"), ("touchpoint", "{r}touchpoint"))
# (table, its key columns after day with their value from a fact row "{r}", the facts it counts)
ROLLUPS: tuple[tuple[str, tuple[tuple[str, str], ...], str | None], ...] = (
    ("pain_point_days", TOPIC_KEYS, None),
    (
        "pain_point_dimension_days",
        (("dimension", "'location'"), ("value", "{r}location"), *TOPIC_KEYS),
        "{r}location IS NOT NULL",
    ),
    (
        "pain_point_dimension_days",
        (("dimension", "'source'"), ("value", "CAST({r}source_id AS TEXT)"), *TOPIC_KEYS),
        None,
    ),
    (
        "pain_point_dimension_days",
        (("dimension", "'language'"), ("value", "coalesce({r}language, '')"), *TOPIC_KEYS),
        None,
    ),
)


def _sums_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("sentences", sa.Integer(), nullable=False),
        sa.Column("negative", sa.Integer(), nullable=False),
        sa.Column("score_sum", sa.Float(), nullable=False),
        sa.Column("negative_score", sa.Float(), nullable=False),
    ]


def _topic_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.Column("touchpoint", sa.String(64), nullable=False),
    ]


def _create_tables() -> None:
    op.create_table(
        "pain_point_days",
        sa.Column("day", sa.Date(), nullable=False),
        *_topic_columns(),
        *_sums_columns(),
        sa.PrimaryKeyConstraint("day", "topic_id", "touchpoint", name=op.f("pk_pain_point_days")),
    )
    op.create_table(
        "pain_point_dimension_days",
        sa.Column("dimension", sa.String(10), nullable=False),
        sa.Column("value", sa.String(200), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        *_topic_columns(),
        *_sums_columns(),
        sa.PrimaryKeyConstraint(
            "dimension", "value", "day", "topic_id", "touchpoint", name=op.f("pk_pain_point_dimension_days")
        ),
    )


def _conflict_keys(keys: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(["day", *(name for name, _ in keys)])


def _sqlite_upsert(
    table: str, keys: tuple[tuple[str, str], ...], where: str | None, row: str, sign: str
) -> str:
    r = f"{row}."
    day = f"date({r}created_at)"
    values = ", ".join([day, *(value.format(r=r) for _, value in keys)])
    sums = (
        f"{sign}1, {sign}({r}negative <> 0), {sign}{r}sentiment_score, "
        f"{sign}(CASE WHEN {r}negative <> 0 THEN {r}sentiment_score ELSE 0 END)"
    )
    updates = ", ".join(f"{s} = {s} + excluded.{s}" for s in SUMS)
    upsert = (
        f"INSERT INTO {table} ({_conflict_keys(keys)}, {', '.join(SUMS)}) SELECT {values}, {sums} "
        f"WHERE {where.format(r=r) if where else '1'} "
        f"ON CONFLICT ({_conflict_keys(keys)}) DO UPDATE SET {updates};"
    )
    if sign != "-":
        return upsert
    match = " AND ".join([f"day = {day}", *(f"{name} = {value.format(r=r)}" for name, value in keys)])
    return upsert + f" DELETE FROM {table} WHERE {match} AND sentences <= 0;"


# A missing control row (a wiped table) counts as not suspended.
SQLITE_ACTIVE = "NOT coalesce((SELECT suspended FROM pain_point_rollup_control), 0)"


def _sqlite_triggers() -> list[str]:
    def body(parts: list[tuple[str, str]]) -> str:
        return " ".join(
            _sqlite_upsert(table, keys, where, row, sign)
            for row, sign in parts
            for table, keys, where in ROLLUPS
        )

    return [
        "CREATE TRIGGER pain_point_facts_rollup_insert AFTER INSERT ON pain_point_facts "
        f"WHEN {SQLITE_ACTIVE} BEGIN {body([('NEW', '')])} END",
        "CREATE TRIGGER pain_point_facts_rollup_delete AFTER DELETE ON pain_point_facts "
        f"WHEN {SQLITE_ACTIVE} BEGIN {body([('OLD', '-')])} END",
        "CREATE TRIGGER pain_point_facts_rollup_update AFTER UPDATE ON pain_point_facts "
        f"WHEN {SQLITE_ACTIVE} BEGIN {body([('OLD', '-'), ('NEW', '')])} END",
    ]


def _postgres_upsert(
    table: str, keys: tuple[tuple[str, str], ...], where: str | None, rows: str, sign: str
) -> str:
    values = ", ".join(value.format(r="") for _, value in keys)
    updates = ", ".join(f"{s} = {table}.{s} + excluded.{s}" for s in SUMS)
    groups = ", ".join(str(i + 2) for i in range(len(keys)))
    upsert = (
        f"INSERT INTO {table} ({_conflict_keys(keys)}, {', '.join(SUMS)}) "
        f"SELECT (created_at AT TIME ZONE 'UTC')::date, {values}, {sign}count(*), "
        f"{sign}count(*) FILTER (WHERE negative), {sign}sum(sentiment_score), "
        f"{sign}coalesce(sum(sentiment_score) FILTER (WHERE negative), 0) "
        f"FROM {rows} {'WHERE ' + where.format(r='') if where else ''} GROUP BY 1, {groups} "
        f"ON CONFLICT ({_conflict_keys(keys)}) DO UPDATE SET {updates};"
    )
    if sign != "-":
        return upsert
    match = " AND ".join(
        [f"{table}.day = (o.created_at AT TIME ZONE 'UTC')::date"]
        + [f"{table}.{name} = {value.format(r='o.')}" for name, value in keys]
    )
    return upsert + f" DELETE FROM {table} USING {rows} o WHERE {match} AND {table}.sentences <= 0;"


def _postgres_function() -> str:
    removed = " ".join(_postgres_upsert(t, keys, where, "old_rows", "-") for t, keys, where in ROLLUPS)
    added = " ".join(_postgres_upsert(t, keys, where, "new_rows", "") for t, keys, where in ROLLUPS)
    return (
        "CREATE FUNCTION pain_point_facts_rollup() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF coalesce((SELECT suspended FROM pain_point_rollup_control), false) THEN RETURN NULL; END IF; "
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
    for table, keys, where in ROLLUPS:
        values = ", ".join(value.format(r="") for _, value in keys)
        groups = ", ".join(str(i + 2) for i in range(len(keys)))
        op.execute(
            f"INSERT INTO {table} ({_conflict_keys(keys)}, {', '.join(SUMS)}) "
            f"SELECT {day}, {values}, count(*), sum(CASE WHEN {negative} THEN 1 ELSE 0 END), "
            f"sum(sentiment_score), sum(CASE WHEN {negative} THEN sentiment_score ELSE 0 END) "
            f"FROM pain_point_facts {'WHERE ' + where.format(r='') if where else ''} GROUP BY 1, {groups}"
        )


# The listed pain points are described (stores, sources, languages, emotions, quotes) from this index alone.
DESCRIBE_COLUMNS = [
    "topic_id",
    "touchpoint",
    "negative",
    "created_at",
    "location",
    "source_id",
    "language",
    "item_id",
    "similarity",
    "sentence_id",
]


def upgrade() -> None:
    op.drop_index("ix_pain_point_facts_topic", table_name="pain_point_facts")
    op.create_index("ix_pain_point_facts_topic", "pain_point_facts", DESCRIBE_COLUMNS)
    _create_tables()
    # A refit rewrites every fact: it suspends the triggers inside its own transaction (no other
    # transaction ever sees the flag set) and rebuilds the rollups once, set-based, before committing.
    control = op.create_table(
        "pain_point_rollup_control",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("suspended", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pain_point_rollup_control")),
    )
    op.bulk_insert(control, [{"id": 1, "suspended": False}])
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
    op.drop_table("pain_point_rollup_control")
    op.drop_table("pain_point_dimension_days")
    op.drop_table("pain_point_days")
    op.drop_index("ix_pain_point_facts_topic", table_name="pain_point_facts")
    op.create_index("ix_pain_point_facts_topic", "pain_point_facts", ["topic_id", "touchpoint", "created_at"])
