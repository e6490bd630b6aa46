"""Aspect-level sentiment: a sentence's sentiment at each of its touchpoints, when its clauses disagree
("the staff were lovely but the app kept crashing"); NULL where the sentence's own sentiment holds.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sentence_touchpoints") as batch:
        batch.add_column(sa.Column("sentiment_label", sa.String(10), nullable=True))
        batch.add_column(sa.Column("sentiment_score", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sentence_touchpoints") as batch:
        batch.drop_column("sentiment_score")
        batch.drop_column("sentiment_label")
