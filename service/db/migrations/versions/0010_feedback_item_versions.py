"""Edited reviews: the earlier text and rating of an item that its source changed (same external id).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "feedback_item_versions",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("item_id", BIG_ID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("rating_value", sa.Float(), nullable=True),
        sa.Column("rating_scale", sa.String(length=10), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("seen_at", TIMESTAMP, nullable=False),
        sa.Column("replaced_at", TIMESTAMP, nullable=False),
        sa.Column("change_source", sa.String(length=20), nullable=False),
        sa.Column("import_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["feedback_items.id"],
            name=op.f("fk_feedback_item_versions_item_id_feedback_items"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["imports.id"],
            name=op.f("fk_feedback_item_versions_import_id_imports"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_item_versions")),
        sa.UniqueConstraint("item_id", "version", name="uq_feedback_item_versions_item_version"),
    )
    op.create_index("ix_feedback_item_versions_import_id", "feedback_item_versions", ["import_id"])


def downgrade() -> None:
    op.drop_index("ix_feedback_item_versions_import_id", table_name="feedback_item_versions")
    op.drop_table("feedback_item_versions")
