"""Readable themes: who named a topic (generated or an admin), when, and its keywords per language;
an index for key drivers (rated items of one scale in a period).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("topics") as batch:
        batch.add_column(sa.Column("label_source", sa.String(10), nullable=False, server_default="generated"))
        batch.add_column(sa.Column("renamed_by", sa.String(200), nullable=True))
        batch.add_column(sa.Column("renamed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("keywords_by_language", JSON, nullable=False, server_default="{}"))
    op.create_index(
        "ix_feedback_items_rating_created", "feedback_items", ["rating_scale", "created_at", "rating_value"]
    )


def downgrade() -> None:
    op.drop_index("ix_feedback_items_rating_created", table_name="feedback_items")
    with op.batch_alter_table("topics") as batch:
        batch.drop_column("keywords_by_language")
        batch.drop_column("renamed_at")
        batch.drop_column("renamed_by")
        batch.drop_column("label_source")
