"""Search of feedback text at scale: a trigram GIN index (pg_trgm) on PostgreSQL, which serves the
case-insensitive substring search ``q`` in every script (Arabic, Thai, ...) without a language's stemmer.
SQLite keeps scanning.

The index is built inside the migration's transaction, which blocks writes to ``feedback_items`` while it
builds (about a minute per million items on the 2-core test machine); a large deployment can create it
first with ``CREATE INDEX CONCURRENTLY`` under the same name.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # In public, never in cxmine's own schema: dropping a schema drops the extensions in it, and with them
    # every index that uses their operator classes, in any schema.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")
    schema = op.get_bind().scalar(
        sa.text("SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_trgm'")
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_feedback_items_text_trigram ON feedback_items "
        f'USING gin (text "{schema}".gin_trgm_ops)'
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_feedback_items_text_trigram")
