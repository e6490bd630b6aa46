"""File imports through HTTP and the CLI: every format, legacy encodings, bad rows and re-imports."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from service.cli import app as cli_app
from service.config import Settings, get_settings
from service.db.models import FeedbackItem, ImportAudit, Role

Auth = Callable[[Role], dict[str, str]]

ARABIC = "الموظفين كانوا لطيفين لكن التطبيق توقف عند الدفع"
PERSIAN = "سفارش‌ها همیشه دیر می‌رسند"
THAI = "ส่งของช้ามากกก รอสามวันแล้วค่ะ"


def _upload(
    client: TestClient, auth: Auth, *, name: str, data: bytes, fields: dict[str, str], **params: str
) -> Any:
    return client.post(
        "/v1/feedback/import",
        files={"file": (name, data, "application/octet-stream")},
        data=fields,
        params=params,
        headers=auth(Role.INGEST),
    )


def _count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(FeedbackItem)) or 0


def _texts(session: Session) -> list[str]:
    return list(session.scalars(select(FeedbackItem.text).order_by(FeedbackItem.id)))


def test_cp1256_arabic_csv(client: TestClient, auth: Auth, session: Session) -> None:
    csv_text = f"comment,date,stars,store\r\n{ARABIC},2026-10-01 09:30,2,Riyadh Olaya\r\nممتاز,2026-10-02 10:00,5,Dubai Mall\r\n"
    response = _upload(
        client,
        auth,
        name="export.csv",
        data=csv_text.encode("cp1256"),
        fields={
            "source": "csat-survey",
            "mapping": "text=comment,created_at=date,rating=stars,location=store",
            "rating_scale": "stars",
            "timezone": "Asia/Riyadh",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["encoding"].replace("windows-", "cp") == "cp1256"
    assert (body["received"], body["stored"], body["rejected"]) == (2, 2, 0)
    assert _texts(session) == [ARABIC, "ممتاز"]
    item = client.get(f"/v1/feedback/{body['rows'][0]['id']}", headers=auth(Role.ANALYST)).json()
    assert item["created_at"] == "2026-10-01T09:30:00+03:00"
    assert item["rating"] == {"value": 2.0, "scale": "stars"}
    assert item["location"] == "Riyadh Olaya"


def test_utf16_unicode_text_export_from_excel(client: TestClient, auth: Auth, session: Session) -> None:
    rows = ["Comment\tSubmitted\tNPS", f"{PERSIAN}\t2026-10-03T08:00:00+03:30\t3", f"{THAI}\t2026-10-04\t2"]
    data = "\r\n".join(rows).encode("utf-16")  # with BOM, as Excel's "Unicode Text" writes it
    response = _upload(
        client,
        auth,
        name="responses.txt",
        data=data,
        fields={
            "source": "nps-survey",
            "mapping": "text=Comment,created_at=Submitted,rating=NPS",
            "rating_scale": "nps",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["encoding"].startswith("utf-16") and body["delimiter"] == "\t"
    assert body["stored"] == 2
    assert _texts(session) == [PERSIAN, THAI]
    assert "\u200c" in _texts(session)[0]


def test_xlsx_with_dates_numbers_and_metadata(client: TestClient, auth: Auth, session: Session) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["Response ID", "When", "Score", "Why?", "Segment"])
    sheet.append(["R1", datetime(2026, 10, 5, 14, 0), 9, "Fast delivery, thanks!", "gold"])
    sheet.append(["R2", datetime(2026, 10, 6, 9, 15), 2, "Refund still not here after 3 weeks", "new"])
    sheet.append(["R3", datetime(2026, 10, 6, 9, 16), 7, "", "new"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    response = _upload(
        client,
        auth,
        name="survey.xlsx",
        data=buffer.getvalue(),
        fields={
            "source": "nps-survey",
            "rating_scale": "nps",
            "mapping": "text=Why?,created_at=When,rating=Score,external_id=Response ID,meta.segment=Segment",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["format"] == "xlsx"
    assert [row["status"] for row in body["rows"]] == ["stored", "stored", "rejected"]
    assert body["rows"][2]["index"] == 4 and "empty" in body["rows"][2]["reason"]
    stored = session.scalars(select(FeedbackItem).order_by(FeedbackItem.id)).all()
    assert [item.external_id for item in stored] == ["R1", "R2"]
    assert stored[0].meta == {"segment": "gold"} and stored[0].rating_value == 9


def test_jsonl_with_a_broken_line_keeps_the_rest(client: TestClient, auth: Auth, session: Session) -> None:
    lines = [
        json.dumps(
            {"text": "App crashes at checkout", "external_id": "a1", "created_at": "2026-10-01T10:00:00Z"}
        ),
        '{"text": "broken line", ',
        json.dumps({"text": "Love the new loyalty points", "external_id": "a2", "language": "en"}),
        json.dumps(["not", "an", "object"]),
    ]
    response = _upload(
        client, auth, name="mentions.jsonl", data="\n".join(lines).encode(), fields={"source": "reddit"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [row["status"] for row in body["rows"]] == ["stored", "rejected", "stored", "rejected"]
    assert [row["index"] for row in body["rows"]] == [1, 2, 3, 4]
    assert _count(session) == 2


def test_reimporting_a_file_stores_nothing_twice(client: TestClient, auth: Auth, session: Session) -> None:
    csv_bytes = b"text,when,who\nGreat!,2026-10-01T10:00:00Z,ann\nGreat!,2026-10-01T10:00:00Z,bob\nSlow,,\n"
    fields = {"source": "web-survey", "mapping": "text=text,created_at=when,author=who"}
    first = _upload(client, auth, name="a.csv", data=csv_bytes, fields=fields).json()
    second = _upload(client, auth, name="a.csv", data=csv_bytes, fields=fields).json()
    assert (first["stored"], first["duplicates"]) == (3, 0)
    assert (second["stored"], second["duplicates"]) == (0, 3)
    assert [row["id"] for row in second["rows"]] == [row["id"] for row in first["rows"]]
    assert _count(session) == 3
    audits = session.scalars(select(ImportAudit).order_by(ImportAudit.id)).all()
    assert [(a.kind, a.status, a.stored, a.duplicates) for a in audits] == [
        ("file", "completed", 3, 0),
        ("file", "completed", 0, 3),
    ]


def test_bad_rows_get_reasons_and_good_rows_are_kept(
    client: TestClient, auth: Auth, session: Session
) -> None:
    long_text = "x" * 10_001
    csv_text = (
        "comment,date,score\n"
        "good one,2026-10-01,5\n"
        ",2026-10-01,4\n"
        f"{long_text},2026-10-01,3\n"
        "nul \x00 inside,2026-10-01,3\n"
        "bad date,31/31/2026,3\n"
        "bad score,2026-10-01,lots\n"
        "score out of range,2026-10-01,9\n"
        "another good one,2026-10-02,1\n"
    )
    response = _upload(
        client,
        auth,
        name="mixed.csv",
        data=csv_text.encode(),
        report="problems",
        fields={
            "source": "csat-survey",
            "mapping": "text=comment,created_at=date,rating=score",
            "rating_scale": "csat",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["received"], body["stored"], body["rejected"]) == (8, 2, 6)
    assert [row["index"] for row in body["rows"]] == [3, 4, 5, 6, 7, 8]
    reasons = {row["index"]: row["reason"] for row in body["rows"]}
    assert "empty" in reasons[3]
    assert "10000" in reasons[4]
    assert "NUL" in reasons[5]
    assert "31/31/2026" in reasons[6]
    assert "lots" in reasons[7]
    assert "csat ratings run from 1 to 5" in reasons[8]
    assert _texts(session) == ["good one", "another good one"]


@pytest.mark.parametrize(
    ("name", "data", "fields", "fragment"),
    [
        ("survey.xlsx", b"this is not a workbook", {"mapping": "text=a"}, "XLSX"),
        ("old.xls", b"\xd0\xcf\x11\xe0", {"mapping": "text=a"}, "XLS"),
        ("a.csv", b"comment,date\nhello,2026-10-01\n", {"mapping": "text=feedback"}, "comment"),
        ("a.csv", b"comment\nhello\n", {"mapping": "txt=comment"}, "text"),
        ("a.csv", b"", {"mapping": "text=comment"}, "empty"),
    ],
)
def test_unreadable_files_are_422_problems(
    client: TestClient,
    auth: Auth,
    session: Session,
    name: str,
    data: bytes,
    fields: dict[str, str],
    fragment: str,
) -> None:
    response = _upload(client, auth, name=name, data=data, fields={"source": "s", **fields})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "urn:cxmine:problem:unreadable-file"
    assert fragment.lower() in body["detail"].lower()
    assert _count(session) == 0


def test_missing_form_fields_are_validation_problems(client: TestClient, auth: Auth) -> None:
    response = client.post("/v1/feedback/import", data={"source": "s"}, headers=auth(Role.INGEST))
    assert response.status_code == 422
    assert any(error["field"] == "body.file" for error in response.json()["errors"])


def test_upload_over_the_limit_is_413(settings: Settings, api_keys: dict[Role, str]) -> None:
    from service.app import create_app

    small = settings.model_copy(update={"max_upload_bytes": 2048})
    with TestClient(create_app(small)) as client:
        response = client.post(
            "/v1/feedback/import",
            files={"file": ("big.csv", b"text\n" + b"a" * 5000, "text/csv")},
            data={"source": "s", "mapping": "text=text"},
            headers={"Authorization": f"Bearer {api_keys[Role.INGEST]}"},
        )
    assert response.status_code == 413
    assert response.json()["status"] == 413


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CXMINE_DATABASE_URL", database_url)
    monkeypatch.setenv("CXMINE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CXMINE_AUTHOR_SALT", "cli-salt")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_cli_import_reports_progress_and_results(cli_env: None, tmp_path: Path, session: Session) -> None:
    path = tmp_path / "survey.csv"
    path.write_bytes(f"comment;date\n{ARABIC};2026-10-01\n;2026-10-02\nok;2026-10-03\n".encode("cp1256"))
    result = CliRunner().invoke(
        cli_app, ["import", str(path), "--source", "survey", "--map", "text=comment,created_at=date"]
    )
    assert result.exit_code == 0, result.output
    assert "3 rows" in result.output and "2 stored" in result.output and "1 rejected" in result.output
    assert "row 3:" in result.output
    assert "importing" in result.output
    assert _texts(session) == [ARABIC, "ok"]


def test_cli_import_explains_a_bad_mapping(cli_env: None, tmp_path: Path) -> None:
    path = tmp_path / "survey.csv"
    path.write_text("comment\nhello\n")
    result = CliRunner().invoke(cli_app, ["import", str(path), "--source", "s", "--map", "text=feedback"])
    assert result.exit_code == 1
    assert "error:" in result.output and "comment" in result.output


def test_cli_keys_create_prints_a_working_key(cli_env: None, session: Session) -> None:
    result = CliRunner().invoke(
        cli_app, ["keys", "create", "--role", "analyst", "--name", "CX team", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert key.startswith("cxm_")
    check = CliRunner().invoke(cli_app, ["keys", "check", key])
    assert check.exit_code == 0 and "analyst" in check.output
    bad = CliRunner().invoke(cli_app, ["keys", "create", "--role", "root", "--name", "x"])
    assert bad.exit_code == 2 and "root" in bad.output


def test_cli_names_the_variable_of_an_invalid_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXMINE_DATABASE_URL", "mysql://somewhere/db")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli_app, ["db", "current"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert "CXMINE_DATABASE_URL" in result.output and "postgresql+psycopg" in result.output
