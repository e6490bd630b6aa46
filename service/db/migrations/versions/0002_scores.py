"""Scores: item sentiment and emotions, sentences with their scores and embeddings, emotion tags.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("feedback_items") as batch:
        batch.add_column(sa.Column("language_confidence", sa.Float(), nullable=True))
        batch.add_column(sa.Column("language_given", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("sentiment_label", sa.String(length=10), nullable=True))
        batch.add_column(sa.Column("sentiment_score", sa.Float(), nullable=True))
        batch.add_column(sa.Column("sentiment_probabilities", JSON, nullable=True))
        batch.add_column(sa.Column("emotions", JSON, nullable=True))
        batch.add_column(sa.Column("scored_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("score_model", sa.String(length=200), nullable=True))
    op.create_index("ix_feedback_items_sentiment_created", "feedback_items", ["sentiment_label", "created_at"])
    op.create_index("ix_feedback_items_score_model_id", "feedback_items", ["score_model", "id"])
    op.create_table(
        "feedback_sentences",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("item_id", BIG_ID, nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("start", sa.Integer(), nullable=False),
        sa.Column("end", sa.Integer(), nullable=False),
        sa.Column("sentiment_label", sa.String(length=10), nullable=False),
        sa.Column("sentiment_score", sa.Float(), nullable=False),
        sa.Column("sentiment_probabilities", JSON, nullable=False),
        sa.Column("emotions", JSON, nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"], ["feedback_items.id"], name=op.f("fk_feedback_sentences_item_id_feedback_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_sentences")),
        sa.UniqueConstraint("item_id", "position", name="uq_feedback_sentences_item_position"),
    )
    op.create_table(
        "feedback_emotions",
        sa.Column("item_id", BIG_ID, nullable=False),
        sa.Column("scheme", sa.String(length=12), nullable=False),
        sa.Column("label", sa.String(length=40), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"], ["feedback_items.id"], name=op.f("fk_feedback_emotions_item_id_feedback_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("item_id", "scheme", "label", name=op.f("pk_feedback_emotions")),
    )
    op.create_index("ix_feedback_emotions_label_item", "feedback_emotions", ["scheme", "label", "item_id"])
    op.create_table(
        "item_embeddings",
        sa.Column("item_id", BIG_ID, nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("dim", sa.SmallInteger(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"], ["feedback_items.id"], name=op.f("fk_item_embeddings_item_id_feedback_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("item_id", name=op.f("pk_item_embeddings")),
    )


def downgrade() -> None:
    op.drop_table("item_embeddings")
    op.drop_index("ix_feedback_emotions_label_item", table_name="feedback_emotions")
    op.drop_table("feedback_emotions")
    op.drop_table("feedback_sentences")
    op.drop_index("ix_feedback_items_score_model_id", table_name="feedback_items")
    op.drop_index("ix_feedback_items_sentiment_created", table_name="feedback_items")
    with op.batch_alter_table("feedback_items") as batch:
        for column in (
            "score_model", "scored_at", "emotions", "sentiment_probabilities", "sentiment_score",
            "sentiment_label", "language_given", "language_confidence",
        ):
            batch.drop_column(column)
