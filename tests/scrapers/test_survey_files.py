"""Survey export files: real export layouts read from a watched folder or a URL."""

from __future__ import annotations

import io
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pytest

from scrapers.contract import RatingScale, Record
from scrapers.http import MalformedResponseError, NotFoundError, RateLimitedError, TransientError
from scrapers.registry import SourceConfigError, build_source
from scrapers.sources.survey_files import SurveyFilesConfig, SurveyFilesSource
from tests.scrapers.replay import (
    FakeSleep,
    ReplayTransport,
    Route,
    fixture_path,
    load_bytes,
    raw_response,
    run_source,
)

KIND = "survey_files"
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC).timestamp()
HOUR = 3600.0


def make_source(
    transport: ReplayTransport | None = None, sleep: FakeSleep | None = None, now: float = NOW, **config: Any
) -> SurveyFilesSource:
    settings = SurveyFilesConfig.model_validate(config)
    sleep = sleep or FakeSleep()
    return SurveyFilesSource(
        settings, transport=transport, sleep=sleep, clock=sleep.clock, wall_clock=lambda: now
    )


def put(folder: Path, fixture: str, *, name: str | None = None, age_hours: float = 24.0) -> Path:
    """Copy a recorded export into the watched folder, last written ``age_hours`` before NOW."""
    target = folder / (name or fixture)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(fixture_path(KIND, fixture), target)
    age(target, age_hours)
    return target


def age(path: Path, hours: float) -> None:
    stamp = NOW - hours * HOUR
    os.utime(path, (stamp, stamp))


def by_id(records: list[Record]) -> dict[str, Record]:
    return {record.external_id: record for record in records}


@pytest.fixture
def exports(tmp_path: Path) -> Path:
    folder = tmp_path / "exports"
    folder.mkdir()
    put(folder, "qualtrics_export.csv", age_hours=40)
    put(folder, "surveymonkey_export.csv", age_hours=30)
    put(folder, "typeform_export.csv", age_hours=20)
    put(folder, "google_forms_export.csv", age_hours=10)
    put(folder, "notes.txt", age_hours=10)
    return folder


# --- folder mode: the recognised layouts ------------------------------------------------------------


def test_reads_every_recognised_export_in_the_folder(exports: Path) -> None:
    sink, result = run_source(make_source(folder=str(exports)), default_touchpoint="survey")
    assert result.done and result.pages == 4
    records = by_id(sink.records)
    assert set(records) >= {
        "R_1Dq8xYzAbC3dEfG",
        "R_2Hk5mNoPqR7sTuV",
        "114220033801",
        "114220033802",
        "a1b2c3d4e5f60718",
        "b2c3d4e5f6071829",
    }
    assert len(records) == 9
    arabic = records["R_2Hk5mNoPqR7sTuV"]
    assert arabic.text == "لم يصل الطلب في الموعد المحدد والدعم لم يرد على رسائلي."
    assert arabic.created_at == datetime(2026, 3, 1, 11, 23, 41, tzinfo=UTC)
    assert arabic.metadata["file"] == "qualtrics_export.csv"
    assert arabic.metadata["row"] == 5
    assert arabic.touchpoint == "survey"
    french = records["114220033802"]
    assert french.text == "Le site plante au paiement, impossible de commander."
    assert french.created_at == datetime(2026, 3, 2, 10, 33, 17, tzinfo=UTC)
    assert records["a1b2c3d4e5f60718"].text == "ที่จอดรถน้อยเกินไป และลิฟต์ช้ามาก"
    persian = next(record for record in sink.records if record.text == "زمان انتظار خیلی طولانی بود")
    assert persian.external_id.startswith("google_forms_export.csv#")
    assert persian.created_at == datetime(2026, 3, 5, 14, 22, 5, tzinfo=UTC)
    # Oldest file first, one file per page.
    assert [page.records[0].metadata["file"] for page in sink.pages] == [
        "qualtrics_export.csv",
        "surveymonkey_export.csv",
        "typeform_export.csv",
        "google_forms_export.csv",
    ]
    assert sink.cursor is not None
    assert set(sink.cursor["files"]) == {
        "qualtrics_export.csv",
        "surveymonkey_export.csv",
        "typeform_export.csv",
        "google_forms_export.csv",
    }
    entry = sink.cursor["files"]["typeform_export.csv"]
    assert set(entry) == {"size", "mtime", "sha256"} and len(entry["sha256"]) == 64


def test_bad_rows_are_reported_and_the_rest_kept(exports: Path) -> None:
    _, result = run_source(make_source(folder=str(exports)))
    reasons = {report.where: report.reason for report in result.malformed}
    assert reasons == {
        "qualtrics_export.csv:6": "row 6: date 'not recorded' is not a valid date",
        "qualtrics_export.csv:7": "row 7: the feedback text is empty",
    }


def test_the_next_run_reads_only_new_and_changed_files(exports: Path) -> None:
    sink, _ = run_source(make_source(folder=str(exports)))
    quiet, result = run_source(make_source(folder=str(exports)), cursor=sink.cursor)
    assert result.done and result.pages == 1 and quiet.records == []

    age(exports / "typeform_export.csv", 5)  # touched, same bytes: skipped
    put(exports, "google_forms_reexport.csv", name="google_forms_export.csv", age_hours=4)  # changed
    put(exports, "kiosk_feedback.jsonl", age_hours=3)  # new
    later, result = run_source(make_source(folder=str(exports)), cursor=quiet.cursor)
    assert result.done
    files = [{record.metadata["file"] for record in page.records} for page in later.pages if page.records]
    assert files == [{"google_forms_export.csv"}, {"kiosk_feedback.jsonl"}]
    assert later.cursor is not None
    assert later.cursor["files"]["typeform_export.csv"]["mtime"] == NOW - 5 * HOUR


def test_reordered_rows_of_a_re_exported_file_keep_their_ids(exports: Path) -> None:
    sink, _ = run_source(make_source(folder=str(exports)))
    first = {r.external_id for r in sink.records if r.metadata["file"] == "google_forms_export.csv"}
    put(exports, "google_forms_reexport.csv", name="google_forms_export.csv", age_hours=2)
    later, _ = run_source(make_source(folder=str(exports)), cursor=sink.cursor)
    again = {record.external_id for record in later.records}
    assert first < again and len(again - first) == 1
    assert by_id(later.records)[next(iter(again - first))].text == "Parking was full again"


def test_files_still_being_written_wait_for_the_next_run(exports: Path) -> None:
    put(exports, "kiosk_feedback.jsonl", age_hours=0)  # just now
    sink, result = run_source(make_source(folder=str(exports), settle_seconds=120))
    assert result.done
    assert "kiosk_feedback.jsonl" not in sink.cursor["files"]  # type: ignore[index]
    later, _ = run_source(
        make_source(folder=str(exports), settle_seconds=120, now=NOW + 300), cursor=sink.cursor
    )
    assert {record.metadata["file"] for record in later.records} == {"kiosk_feedback.jsonl"}


# --- folder mode: chunks and resuming ---------------------------------------------------------------


def test_a_big_file_is_read_in_chunks_and_a_killed_run_resumes_after_the_last_chunk(tmp_path: Path) -> None:
    put(tmp_path, "comments_custom.csv")
    config: dict[str, Any] = {
        "folder": str(tmp_path),
        "mapping": "external_id=ticket,text=comment,created_at=date,rating=score,location=store",
        "rating_scale": "stars",
        "chunk_rows": 2,
        "default_timezone": "Europe/Paris",
    }
    sink, result = run_source(make_source(**config), max_pages=1)
    assert not result.done
    assert [record.external_id for record in sink.records] == ["C-1", "C-2"]
    assert sink.cursor is not None and sink.cursor["current"]["offset"] == 2
    assert sink.cursor["files"] == {}

    resumed, result = run_source(make_source(**config), cursor=sink.cursor)
    assert result.done and result.pages == 2
    assert [record.external_id for record in resumed.records] == ["C-3", "C-4", "C-5"]
    nice = resumed.records[-1]
    assert nice.location == "Nice"
    assert nice.rating is not None and (nice.rating.value, nice.rating.scale) == (3.0, RatingScale.STARS)
    assert nice.created_at.utcoffset() is not None and nice.created_at.hour == 11
    assert resumed.cursor is not None and "current" not in resumed.cursor
    assert set(resumed.cursor["files"]) == {"comments_custom.csv"}


def test_a_file_rewritten_mid_read_is_read_again_from_the_start(tmp_path: Path) -> None:
    target = put(tmp_path, "comments_custom.csv")
    config: dict[str, Any] = {
        "folder": str(tmp_path),
        "mapping": "external_id=ticket,text=comment,created_at=date",
        "chunk_rows": 2,
    }
    sink, _ = run_source(make_source(**config), max_pages=1)
    target.write_text(target.read_text().replace("Friendly cashier", "Very friendly cashier"))
    age(target, 1)
    resumed, result = run_source(make_source(**config), cursor=sink.cursor)
    assert result.done
    assert [record.external_id for record in resumed.records] == ["C-1", "C-2", "C-3", "C-4", "C-5"]
    assert resumed.records[0].text == "Very friendly cashier"


# --- folder mode: other formats ---------------------------------------------------------------------


def test_jsonl_items_keep_their_fields_and_report_bad_lines(tmp_path: Path) -> None:
    put(tmp_path, "kiosk_feedback.jsonl", age_hours=2)
    sink, result = run_source(make_source(folder=str(tmp_path)))
    records = by_id(sink.records)
    kiosk = records["kiosk-0001"]
    assert kiosk.rating is not None and (kiosk.rating.value, kiosk.rating.scale) == (2.0, RatingScale.CSAT)
    assert (kiosk.author, kiosk.location, kiosk.language, kiosk.product) == (
        "member-5521",
        "Wien",
        "de",
        "Fitness Club",
    )
    assert kiosk.metadata["device"] == "kiosk-3"
    assert kiosk.created_at.utcoffset() is not None
    undated = next(record for record in sink.records if record.text == "No date on this one")
    assert undated.created_at == datetime.fromtimestamp(NOW - 2 * HOUR, tz=UTC)
    assert undated.metadata["created_at_from"] == "file_time"
    rowing = next(record for record in sink.records if record.text == "Great new rowing machines")
    assert rowing.metadata["channel"] == "kiosk"
    reasons = {report.where: report.reason for report in result.malformed}
    assert reasons["kiosk_feedback.jsonl:3"].startswith("line 3: not valid JSON")
    assert reasons["kiosk_feedback.jsonl:4"] == "the feedback text is empty"
    assert reasons["kiosk_feedback.jsonl:5"] == "stars ratings run from 1 to 5; got 9"
    assert len(sink.records) == 3


def xlsx_export(rows: list[list[Any]]) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "Responses"
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def test_an_xlsx_export_with_a_mapping(tmp_path: Path) -> None:
    data = xlsx_export(
        [
            ["Response", "Submitted", "NPS", "Branch"],
            ["غذا سرد بود", datetime(2026, 3, 2, 19, 30), 4, "Mashhad"],
            ["Lovely terrace", "2026-03-02T20:00:00+03:30", "9 - Likely", "Shiraz"],
            ["Score out of range", datetime(2026, 3, 2, 21, 0), 12, "Shiraz"],
        ]
    )
    target = tmp_path / "nps_march.xlsx"
    target.write_bytes(data)
    age(target, 1)
    config: dict[str, Any] = {
        "folder": str(tmp_path),
        "mapping": '{"text": "Response", "created_at": "Submitted", "rating": "NPS", "location": "Branch"}',
        "rating_scale": "nps",
        "default_timezone": "Asia/Tehran",
        "product": "Restaurant",
    }
    sink, result = run_source(make_source(**config))
    first, second = sink.records
    assert first.text == "غذا سرد بود" and first.location == "Mashhad" and first.product == "Restaurant"
    assert first.rating is not None and first.rating.scale is RatingScale.NPS
    assert first.created_at.utcoffset() is not None and first.created_at.utcoffset().total_seconds() == 12600  # type: ignore[union-attr]
    assert second.rating is not None and second.rating.value == 9.0
    assert [report.reason for report in result.malformed] == ["nps ratings run from 0 to 10; got 12"]


def test_unreadable_files_are_reported_once_and_do_not_block_the_others(tmp_path: Path) -> None:
    put(tmp_path, "comments_custom.csv", age_hours=5)  # no recognised layout, no mapping
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"PK\x03\x04 not really a workbook")
    age(broken, 4)
    put(tmp_path, "typeform_export.csv", age_hours=3)
    sink, result = run_source(make_source(folder=str(tmp_path)))
    assert result.done and len(sink.records) == 2
    reasons = {report.where: report.reason for report in result.malformed}
    assert reasons["comments_custom.csv"].startswith("a column mapping is required")
    assert reasons["broken.xlsx"].startswith("the file is not a valid XLSX workbook")
    again, _ = run_source(make_source(folder=str(tmp_path)), cursor=sink.cursor)
    assert again.records == [] and all(not page.malformed for page in again.pages)


def test_a_missing_folder_is_a_not_found_error(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist or is not a folder"):
        run_source(make_source(folder=str(tmp_path / "nowhere")))


def test_recursive_folders_and_patterns(tmp_path: Path) -> None:
    put(tmp_path, "typeform_export.csv", name="2026/03/typeform_export.csv")
    put(tmp_path, "google_forms_export.csv", name="top.csv")
    sink, _ = run_source(make_source(folder=str(tmp_path), patterns=["typeform*.csv"], recursive=True))
    assert {record.metadata["file"] for record in sink.records} == {"2026/03/typeform_export.csv"}


# --- URL mode ---------------------------------------------------------------------------------------

URL = "https://exports.example.com/surveys/typeform_export.csv"
EXPORT_PATH = r"^/surveys/typeform_export\.csv$"
ROBOTS = Route("GET", r"^/robots\.txt$", [raw_response("", 404, content_type="text/plain")], repeat_last=True)


def csv_reply(name: str = "typeform_export.csv", **headers: str) -> httpx.Response:
    return raw_response(load_bytes(KIND, name), content_type="text/csv", headers=headers)


def url_transport(*replies: Any) -> ReplayTransport:
    return ReplayTransport(ROBOTS, Route("GET", EXPORT_PATH, list(replies)))


def test_a_url_export_is_fetched_conditionally(tmp_path: Path) -> None:
    validators = {"ETag": '"v1-5f2a"', "Last-Modified": "Wed, 04 Mar 2026 08:00:00 GMT"}
    transport = url_transport(csv_reply(**validators))
    sink, result = run_source(make_source(transport, url=URL))
    assert result.done and len(sink.records) == 2
    thai = sink.records[0]
    assert thai.url == URL and thai.metadata["file"] == "typeform_export.csv"
    assert sink.cursor is not None
    assert sink.cursor["etag"] == '"v1-5f2a"' and "offset" not in sink.cursor

    unchanged = url_transport(raw_response(b"", 304, content_type="text/csv"))
    later, result = run_source(make_source(unchanged, url=URL), cursor=sink.cursor)
    assert result.done and later.records == []
    request = unchanged.requests[-1]
    assert request.headers["if-none-match"] == '"v1-5f2a"'
    assert request.headers["if-modified-since"] == "Wed, 04 Mar 2026 08:00:00 GMT"
    assert later.cursor == sink.cursor


def test_a_changed_url_export_is_read_again_and_same_bytes_are_not(tmp_path: Path) -> None:
    sink, _ = run_source(make_source(url_transport(csv_reply()), url=URL))
    same, _ = run_source(make_source(url_transport(csv_reply()), url=URL), cursor=sink.cursor)
    assert same.records == []
    changed = url_transport(csv_reply("google_forms_export.csv"))
    later, _ = run_source(make_source(changed, url=URL), cursor=sink.cursor)
    assert len(later.records) == 3


def test_a_url_export_resumes_mid_file_after_a_killed_run() -> None:
    sink, result = run_source(
        make_source(url_transport(csv_reply(ETag='"v2"')), url=URL, chunk_rows=1), max_pages=1
    )
    assert not result.done and sink.cursor is not None and sink.cursor["offset"] == 1
    resumed_transport = url_transport(csv_reply(ETag='"v2"'))
    resumed, result = run_source(make_source(resumed_transport, url=URL, chunk_rows=1), cursor=sink.cursor)
    assert result.done
    assert [record.external_id for record in resumed.records] == ["b2c3d4e5f6071829"]
    assert "if-none-match" not in resumed_transport.requests[-1].headers


def test_url_mode_waits_out_a_429_and_retries_a_5xx() -> None:
    sleep = FakeSleep()
    transport = url_transport(
        raw_response("slow down", 429, content_type="text/plain", headers={"Retry-After": "12"}),
        raw_response("<html>Bad Gateway</html>", 502, content_type="text/html"),
        csv_reply(),
    )
    sink, result = run_source(make_source(transport, sleep, url=URL))
    assert result.done and len(sink.records) == 2
    assert 12.0 in sleep.waits and len(sleep.waits) >= 2


def test_url_mode_defers_a_long_retry_after() -> None:
    transport = url_transport(
        raw_response("", 429, content_type="text/plain", headers={"Retry-After": "7200"})
    )
    with pytest.raises(RateLimitedError):
        run_source(make_source(transport, url=URL))


def test_url_mode_timeouts_are_retried_then_reported() -> None:
    transport = url_transport(*[httpx.ConnectTimeout("timed out") for _ in range(4)])
    with pytest.raises(TransientError, match="did not answer within 20 s"):
        run_source(make_source(transport, url=URL))


def test_url_mode_a_missing_export_or_an_html_page_is_a_clear_error() -> None:
    missing = url_transport(raw_response("<html>Not Found</html>", 404, content_type="text/html"))
    with pytest.raises(NotFoundError, match="HTTP 404"):
        run_source(make_source(missing, url=URL))
    login_page = url_transport(
        raw_response("<html><body>Please sign in</body></html>", content_type="text/html")
    )
    with pytest.raises(
        MalformedResponseError, match="is not a readable survey export: a column mapping is required"
    ):
        run_source(make_source(login_page, url=URL))


def test_url_mode_respects_robots_txt() -> None:
    transport = ReplayTransport(
        Route(
            "GET",
            r"^/robots\.txt$",
            [raw_response("User-agent: *\nDisallow: /surveys/", content_type="text/plain")],
        )
    )
    with pytest.raises(Exception, match=r"robots\.txt does not allow fetching /surveys/typeform_export\.csv"):
        run_source(make_source(transport, url=URL))


# --- config -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "give either folder or url"),
        ({"folder": "/data", "url": URL}, "give either folder or url"),
        ({"url": "ftp://exports.example.com/a.csv"}, "url must start with http"),
        ({"folder": "/data", "mapping": "comment"}, "is not field=column"),
        ({"folder": "/data", "mapping": "text=comment,rating=score"}, "give rating_scale"),
        ({"folder": "/data", "default_timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"folder": "/data", "chunk_rows": 0}, "chunk_rows"),
        ({"folder": "/data", "unknown": 1}, "Extra inputs are not permitted"),
    ],
)
def test_config_is_validated_through_the_registry(config: dict[str, Any], message: str) -> None:
    with pytest.raises(SourceConfigError, match=message):
        build_source("survey_files.v1", config, environ={})
