"""Collectors: source schedules, cursors, leases and health; collector runs in the import audit; near-duplicate
flags on feedback; one row per scheduler job tick.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)

SOURCE_COLUMNS = (
    ("enabled", sa.Boolean(), sa.true()),
    ("redact_pii", sa.Boolean(), sa.true()),
    ("schedule_interval_seconds", sa.Integer(), None),
    ("schedule_cron", sa.String(length=100), None),
    ("cursor", JSON, None),
    ("cursor_updated_at", TIME, None),
    ("run_requested_at", TIME, None),
    ("lease_owner", sa.String(length=200), None),
    ("lease_expires_at", TIME, None),
    ("last_run_at", TIME, None),
    ("last_success_at", TIME, None),
    ("last_error", sa.Text(), None),
    ("last_error_action", sa.String(length=20), None),
    ("last_error_at", TIME, None),
    ("consecutive_failures", sa.Integer(), sa.text("0")),
    ("deferred_until", TIME, None),
    ("items_collected", sa.BigInteger(), sa.text("0")),
    ("updated_at", TIME, None),
)
IMPORT_COLUMNS = (
    ("trigger", sa.String(length=20), None),
    ("pages", sa.Integer(), sa.text("0")),
    ("malformed", sa.Integer(), sa.text("0")),
    ("near_duplicates", sa.Integer(), sa.text("0")),
    ("redacted", sa.Integer(), sa.text("0")),
    ("error", sa.Text(), None),
    ("error_action", sa.String(length=20), None),
)


def upgrade() -> None:
    with op.batch_alter_table("sources") as batch:
        for name, type_, default in SOURCE_COLUMNS:
            batch.add_column(
                sa.Column(name, type_, nullable=default is None, server_default=default)
            )
    with op.batch_alter_table("imports") as batch:
        batch.add_column(sa.Column("source_id", sa.Integer(), nullable=True))
        for name, type_, default in IMPORT_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=default is None, server_default=default))
        batch.create_foreign_key(
            op.f("fk_imports_source_id_sources"), "sources", ["source_id"], ["id"], ondelete="SET NULL"
        )
    op.create_index("ix_imports_source_started", "imports", ["source_id", "started_at"])
    with op.batch_alter_table("feedback_items") as batch:
        batch.add_column(sa.Column("text_fingerprint", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("near_duplicate_of", BIG_ID, nullable=True))
    op.create_index("ix_feedback_items_text_fingerprint", "feedback_items", ["text_fingerprint"])
    op.create_table(
        "scheduler_runs",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("job_id", sa.String(length=200), nullable=False),
        sa.Column("scheduled_for", TIME, nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("finished_at", TIME, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduler_runs")),
        sa.UniqueConstraint("job_id", "scheduled_for", name="uq_scheduler_runs_job_tick"),
    )
    op.create_index("ix_scheduler_runs_started_at", "scheduler_runs", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_scheduler_runs_started_at", table_name="scheduler_runs")
    op.drop_table("scheduler_runs")
    op.drop_index("ix_feedback_items_text_fingerprint", table_name="feedback_items")
    with op.batch_alter_table("feedback_items") as batch:
        batch.drop_column("near_duplicate_of")
        batch.drop_column("text_fingerprint")
    op.drop_index("ix_imports_source_started", table_name="imports")
    with op.batch_alter_table("imports") as batch:
        batch.drop_constraint(op.f("fk_imports_source_id_sources"), type_="foreignkey")
        for name, _type, _default in reversed(IMPORT_COLUMNS):
            batch.drop_column(name)
        batch.drop_column("source_id")
    with op.batch_alter_table("sources") as batch:
        for name, _type, _default in reversed(SOURCE_COLUMNS):
            batch.drop_column(name)
