"""Topics (models, stable topics, lineage, sentence topics), pain-point triage, alert rules and alerts.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)


def _fk(table: str, column: str, target: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"), ondelete=ondelete
    )


def upgrade() -> None:
    with op.batch_alter_table("feedback_items") as batch:
        batch.add_column(sa.Column("topic_model_id", sa.Integer(), nullable=True))
    op.create_index("ix_feedback_items_topic_model_id", "feedback_items", ["topic_model_id", "id"])
    op.create_table(
        "topic_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("embedding_model", sa.String(length=200), nullable=True),
        sa.Column("sentences", sa.Integer(), nullable=False),
        sa.Column("fitted_on", sa.Integer(), nullable=False),
        sa.Column("topics", sa.Integer(), nullable=False),
        sa.Column("outliers", sa.Integer(), nullable=False),
        sa.Column("outliers_reduced", sa.Integer(), nullable=False),
        sa.Column("figures", JSON, nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=True),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("finished_at", TIME, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_topic_models")),
    )
    op.create_table(
        "topics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("label", sa.String(length=300), nullable=False),
        sa.Column("keywords", JSON, nullable=False),
        sa.Column("keyword_weights", JSON, nullable=False),
        sa.Column("representative", sa.Text(), nullable=True),
        sa.Column("representative_sentence_id", BIG_ID, nullable=True),
        sa.Column("sentences", sa.Integer(), nullable=False),
        sa.Column("languages", JSON, nullable=False),
        sa.Column("centroid", sa.LargeBinary(), nullable=False),
        sa.Column("born_model_id", sa.Integer(), nullable=False),
        sa.Column("last_model_id", sa.Integer(), nullable=False),
        sa.Column("merged_into", sa.Integer(), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        _fk("topics", "born_model_id", "topic_models", "CASCADE"),
        _fk("topics", "last_model_id", "topic_models", "CASCADE"),
        _fk("topics", "merged_into", "topics", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_topics")),
    )
    op.create_index("ix_topics_status", "topics", ["status"])
    op.create_table(
        "topic_lineage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=10), nullable=False),
        sa.Column("related_topic_id", sa.Integer(), nullable=True),
        sa.Column("similarity", sa.Float(), nullable=True),
        sa.Column("detail", JSON, nullable=False),
        _fk("topic_lineage", "model_id", "topic_models", "CASCADE"),
        _fk("topic_lineage", "topic_id", "topics", "CASCADE"),
        _fk("topic_lineage", "related_topic_id", "topics", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_topic_lineage")),
    )
    op.create_index("ix_topic_lineage_topic_model", "topic_lineage", ["topic_id", "model_id"])
    op.create_table(
        "sentence_topics",
        sa.Column("sentence_id", BIG_ID, nullable=False),
        sa.Column("item_id", BIG_ID, nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("similarity", sa.Float(), nullable=False),
        sa.Column("origin", sa.String(length=10), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("negative", sa.Boolean(), nullable=False),
        sa.Column("sentiment_score", sa.Float(), nullable=False),
        _fk("sentence_topics", "sentence_id", "feedback_sentences", "CASCADE"),
        _fk("sentence_topics", "item_id", "feedback_items", "CASCADE"),
        _fk("sentence_topics", "topic_id", "topics", "CASCADE"),
        _fk("sentence_topics", "model_id", "topic_models", "CASCADE"),
        sa.PrimaryKeyConstraint("sentence_id", name=op.f("pk_sentence_topics")),
    )
    op.create_index("ix_sentence_topics_topic_created", "sentence_topics", ["topic_id", "created_at"])
    op.create_index(
        "ix_sentence_topics_topic_sentiment", "sentence_topics", ["topic_id", "negative", "sentiment_score"]
    )
    op.create_index("ix_sentence_topics_item", "sentence_topics", ["item_id"])
    op.create_table(
        "pain_point_facts",
        sa.Column("sentence_id", BIG_ID, nullable=False),
        sa.Column("touchpoint", sa.String(length=64), nullable=False),
        sa.Column("origin", sa.String(length=10), nullable=False),
        sa.Column("item_id", BIG_ID, nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("negative", sa.Boolean(), nullable=False),
        sa.Column("sentiment_score", sa.Float(), nullable=False),
        sa.Column("similarity", sa.Float(), nullable=False),
        sa.Column("location", sa.String(length=200), nullable=True),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=True),
        _fk("pain_point_facts", "sentence_id", "feedback_sentences", "CASCADE"),
        _fk("pain_point_facts", "item_id", "feedback_items", "CASCADE"),
        _fk("pain_point_facts", "topic_id", "topics", "CASCADE"),
        sa.PrimaryKeyConstraint("sentence_id", "touchpoint", name=op.f("pk_pain_point_facts")),
    )
    op.create_index(
        "ix_pain_point_facts_period",
        "pain_point_facts",
        ["created_at", "topic_id", "touchpoint", "negative", "sentiment_score"],
    )
    op.create_index("ix_pain_point_facts_topic", "pain_point_facts", ["topic_id", "touchpoint", "created_at"])
    op.create_index("ix_pain_point_facts_item", "pain_point_facts", ["item_id"])
    op.create_table(
        "pain_points",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.Column("touchpoint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=14), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        _fk("pain_points", "topic_id", "topics", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pain_points")),
        sa.UniqueConstraint("topic_id", "touchpoint", name="uq_pain_points_topic_touchpoint"),
    )
    op.create_table(
        "pain_point_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pain_point_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=14), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("from_status", sa.String(length=14), nullable=True),
        sa.Column("to_status", sa.String(length=14), nullable=True),
        sa.Column("at", TIME, nullable=False),
        _fk("pain_point_events", "pain_point_id", "pain_points", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pain_point_events")),
    )
    op.create_index("ix_pain_point_events_pain_point_at", "pain_point_events", ["pain_point_id", "at"])
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("params", JSON, nullable=False),
        sa.Column("webhook_url", sa.String(length=2000), nullable=False),
        sa.Column("webhook_format", sa.String(length=10), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_rules")),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("open_subject", sa.String(length=300), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("fired_at", TIME, nullable=False),
        sa.Column("last_seen_at", TIME, nullable=False),
        sa.Column("closed_at", TIME, nullable=True),
        sa.Column("delivery_status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TIME, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", TIME, nullable=True),
        _fk("alerts", "rule_id", "alert_rules", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("rule_id", "open_subject", name="uq_alerts_rule_open_subject"),
    )
    op.create_index("ix_alerts_fired_at", "alerts", ["fired_at"])
    op.create_index("ix_alerts_delivery_next", "alerts", ["delivery_status", "next_attempt_at"])
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        _fk("alert_deliveries", "alert_id", "alerts", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_deliveries")),
    )
    op.create_index("ix_alert_deliveries_alert", "alert_deliveries", ["alert_id"])


def downgrade() -> None:
    for index, table in (
        ("ix_alert_deliveries_alert", "alert_deliveries"),
        ("ix_alerts_delivery_next", "alerts"),
        ("ix_alerts_fired_at", "alerts"),
        ("ix_pain_point_events_pain_point_at", "pain_point_events"),
        ("ix_pain_point_facts_item", "pain_point_facts"),
        ("ix_pain_point_facts_topic", "pain_point_facts"),
        ("ix_pain_point_facts_period", "pain_point_facts"),
        ("ix_sentence_topics_item", "sentence_topics"),
        ("ix_sentence_topics_topic_sentiment", "sentence_topics"),
        ("ix_sentence_topics_topic_created", "sentence_topics"),
        ("ix_topic_lineage_topic_model", "topic_lineage"),
        ("ix_topics_status", "topics"),
    ):
        op.drop_index(index, table_name=table)
    for table in (
        "alert_deliveries",
        "alerts",
        "alert_rules",
        "pain_point_events",
        "pain_points",
        "pain_point_facts",
        "sentence_topics",
        "topic_lineage",
        "topics",
        "topic_models",
    ):
        op.drop_table(table)
    op.drop_index("ix_feedback_items_topic_model_id", table_name="feedback_items")
    with op.batch_alter_table("feedback_items") as batch:
        batch.drop_column("topic_model_id")
