"""Alembic migrations go up and down on both databases, and match the models exactly."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import inspect

from service.app import create_app
from service.config import Settings
from service.db import migrate
from service.db.engine import make_engine
from service.db.models import Base
from tests.conftest import BACKENDS, ScratchDatabase

TABLES = {
    "scheduler_runs",
    "sources",
    "feedback_items",
    "feedback_item_versions",
    "api_keys",
    "imports",
    "alembic_version",
    "feedback_sentences",
    "feedback_emotions",
    "item_embeddings",
    "taxonomies",
    "item_touchpoints",
    "sentence_touchpoints",
    "topic_models",
    "topics",
    "topic_lineage",
    "sentence_topics",
    "pain_point_facts",
    "pain_point_days",
    "pain_point_dimension_days",
    "pain_point_rollup_control",
    "pain_points",
    "pain_point_events",
    "alert_rules",
    "alerts",
    "alert_deliveries",
}


@pytest.mark.parametrize("backend", BACKENDS)
def test_upgrade_downgrade_upgrade(backend: str, scratch_database: Callable[[str], ScratchDatabase]) -> None:
    database = scratch_database(backend)
    engine = make_engine(database.url)
    try:
        migrate.upgrade(database.url)
        assert set(inspect(engine).get_table_names()) == TABLES
        assert migrate.is_at_head(engine)
        migrate.downgrade(database.url, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        assert migrate.current_revision(engine) is None
        migrate.upgrade(database.url)
        assert migrate.is_at_head(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"include_object": migrate.objects_on(connection.dialect.name)}
            )
            diff = compare_metadata(context, Base.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_readyz_is_503_until_migrated(
    backend: str, scratch_database: Callable[[str], ScratchDatabase], tmp_path: object
) -> None:
    database = scratch_database(backend)
    settings = Settings(database_url=database.url)
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert "cxmine db upgrade" in response.json()["detail"]
        migrate.upgrade(database.url)
        assert client.get("/readyz").status_code == 200
