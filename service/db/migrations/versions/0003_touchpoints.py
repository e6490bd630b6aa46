"""Touchpoints: taxonomy versions, item and sentence touchpoints, the taxonomy each item was labelled with.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("feedback_items") as batch:
        batch.add_column(sa.Column("touchpoint_taxonomy", sa.String(length=120), nullable=True))
    op.create_index(
        "ix_feedback_items_touchpoint_taxonomy_id", "feedback_items", ["touchpoint_taxonomy", "id"]
    )
    op.create_table(
        "taxonomies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", JSON, nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_taxonomies")),
    )
    op.create_table(
        "item_touchpoints",
        sa.Column("item_id", BIG_ID, nullable=False),
        sa.Column("touchpoint", sa.String(length=64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("origin", sa.String(length=10), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"], ["feedback_items.id"], name=op.f("fk_item_touchpoints_item_id_feedback_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("item_id", "touchpoint", name=op.f("pk_item_touchpoints")),
    )
    op.create_index("ix_item_touchpoints_touchpoint_item", "item_touchpoints", ["touchpoint", "item_id"])
    op.create_table(
        "sentence_touchpoints",
        sa.Column("sentence_id", BIG_ID, nullable=False),
        sa.Column("touchpoint", sa.String(length=64), nullable=False),
        sa.Column("item_id", BIG_ID, nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["sentence_id"], ["feedback_sentences.id"],
            name=op.f("fk_sentence_touchpoints_sentence_id_feedback_sentences"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["item_id"], ["feedback_items.id"], name=op.f("fk_sentence_touchpoints_item_id_feedback_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sentence_id", "touchpoint", name=op.f("pk_sentence_touchpoints")),
    )
    op.create_index(
        "ix_sentence_touchpoints_touchpoint_item", "sentence_touchpoints", ["touchpoint", "item_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_sentence_touchpoints_touchpoint_item", table_name="sentence_touchpoints")
    op.drop_table("sentence_touchpoints")
    op.drop_index("ix_item_touchpoints_touchpoint_item", table_name="item_touchpoints")
    op.drop_table("item_touchpoints")
    op.drop_table("taxonomies")
    op.drop_index("ix_feedback_items_touchpoint_taxonomy_id", table_name="feedback_items")
    with op.batch_alter_table("feedback_items") as batch:
        batch.drop_column("touchpoint_taxonomy")
