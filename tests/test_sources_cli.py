"""`cxmine sources ...` and the demo's survey inbox collector, through the real CLI."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from service.cli import app as cli_app
from service.config import get_settings
from service.db.models import FeedbackItem, Source
from tests.scrapers.replay import fixture_path


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("CXMINE_DATABASE_URL", database_url)
    monkeypatch.setenv("CXMINE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CXMINE_AUTHOR_SALT", "cli-test")
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_add_list_run_pause_resume(cli: CliRunner, tmp_path: Path, session: Session) -> None:
    inbox = tmp_path / "exports"
    inbox.mkdir()
    shutil.copyfile(fixture_path("survey_files", "qualtrics_export.csv"), inbox / "march.csv")
    added = cli.invoke(
        cli_app,
        [
            "sources",
            "add",
            "qualtrics-drop",
            "--kind",
            "survey_files.v1",
            "--every",
            "15m",
            "--touchpoint",
            "store_branch",
            "--config",
            f'{{"folder": "{inbox}", "settle_seconds": 0}}',
        ],
    )
    assert added.exit_code == 0, added.output
    assert "added source qualtrics-drop (survey_files.v1), every 900 s" in added.output

    ran = cli.invoke(cli_app, ["sources", "run", "qualtrics-drop"])
    assert ran.exit_code == 0, ran.output
    assert "page 1:" in ran.output and "completed" in ran.output
    stored = session.scalars(select(FeedbackItem).join(Source).where(Source.name == "qualtrics-drop")).all()
    assert stored and all(item.external_id and item.external_id.startswith("R_") for item in stored)

    again = cli.invoke(cli_app, ["sources", "run", "qualtrics-drop"])
    assert again.exit_code == 0 and "0 stored" in again.output

    listed = cli.invoke(cli_app, ["sources", "list"], env={"COLUMNS": "200"})
    assert "qualtrics-drop" in listed.output and " ok " in listed.output

    assert cli.invoke(cli_app, ["sources", "pause", "qualtrics-drop"]).exit_code == 0
    listed = cli.invoke(cli_app, ["sources", "list"], env={"COLUMNS": "200"})
    assert "paused" in listed.output
    assert cli.invoke(cli_app, ["sources", "resume", "qualtrics-drop"]).exit_code == 0
    assert "survey_files.v1" in cli.invoke(cli_app, ["sources", "kinds"]).output


def test_clear_cli_errors(cli: CliRunner) -> None:
    unknown = cli.invoke(cli_app, ["sources", "add", "x", "--kind", "friendster.v1"])
    assert unknown.exit_code == 1 and "unknown source kind 'friendster.v1'" in unknown.output
    bad_json = cli.invoke(cli_app, ["sources", "add", "x", "--kind", "app_store.v1", "--config", "{app_id"])
    assert bad_json.exit_code == 1 and "--config is not valid JSON" in bad_json.output
    bad_every = cli.invoke(
        cli_app,
        [
            "sources",
            "add",
            "x",
            "--kind",
            "app_store.v1",
            "--config",
            '{"app_id": "1234567"}',
            "--every",
            "soon",
        ],
    )
    assert bad_every.exit_code == 1 and "is not a duration" in bad_every.output
    missing = cli.invoke(cli_app, ["sources", "run", "nope"])
    assert missing.exit_code == 1 and "no source is named 'nope'" in missing.output


def test_a_failing_run_exits_non_zero_with_the_reason(cli: CliRunner, tmp_path: Path) -> None:
    cli.invoke(
        cli_app,
        [
            "sources",
            "add",
            "gone",
            "--kind",
            "survey_files.v1",
            "--config",
            f'{{"folder": "{tmp_path / "missing"}"}}',
        ],
    )
    failed = cli.invoke(cli_app, ["sources", "run", "gone"])
    assert failed.exit_code == 1
    assert "missing" in failed.output


def test_the_demo_collects_its_survey_inbox(cli: CliRunner, session: Session) -> None:
    loaded = cli.invoke(cli_app, ["demo", "--count", "20"])
    assert loaded.exit_code == 0, loaded.output
    ran = cli.invoke(cli_app, ["sources", "run", "survey-inbox"])
    assert ran.exit_code == 0, ran.output
    items = session.scalars(select(FeedbackItem).join(Source).where(Source.name == "survey-inbox")).all()
    assert len(items) == 8
    assert {item.language for item in items} == {"en", "ar", "fa", "th"}
    assert all(item.rating_scale == "nps" for item in items)
    refund = next(item for item in items if item.external_id == "R_demoInbox0008")
    assert refund.text.endswith("email me at [email]") and refund.location == "Dubai Mall"
    assert cli.invoke(cli_app, ["demo", "--if-empty"]).exit_code == 0
    assert len(session.scalars(select(Source).where(Source.name == "survey-inbox")).all()) == 1


def test_a_refit_before_anything_is_scored_says_what_to_do(cli: CliRunner, session: Session) -> None:
    result = cli.invoke(cli_app, ["topics", "refit"], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "no scored feedback yet" in result.output and "cxmine score" in result.output
    assert "Traceback" not in result.output
