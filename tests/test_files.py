"""Parsing of uploaded CSV, XLSX and JSONL exports into feedback item dicts."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from scrapers.contract import RatingScale
from scrapers.files import (
    ColumnMapping,
    FileFormatError,
    ParsedRow,
    decode_text,
    detect_format,
    parse_datetime,
    parse_mapping,
    parse_rating_value,
    read_feedback_file,
    recognise_layout,
)
from service.ingest.schemas import FeedbackItemIn


def read_all(data: bytes, **options: Any) -> list[ParsedRow]:
    options.setdefault("source", "survey")
    _decoded, rows = read_feedback_file(data, **options)
    return list(rows)


def items_of(rows: list[ParsedRow]) -> list[dict[str, Any]]:
    assert [row.error for row in rows if row.error] == []
    return [row.item for row in rows if row.item is not None]


def xlsx_bytes(rows: list[list[Any]], *, title: str = "Responses") -> bytes:
    workbook = openpyxl.Workbook()
    worksheet = workbook.active
    worksheet.title = title
    for row in rows:
        worksheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


# --- CSV ------------------------------------------------------------------------------------------


def test_utf8_csv_with_quoted_newlines_and_commas_keeps_cells_intact() -> None:
    data = (
        b'id,comment,date,score\r\n1,"Slow checkout, long queue\nand rude staff",2024-03-01 14:22:05,2\r\n'
        b'2,"She said ""thanks""",2024-03-02,5\r\n'
    )
    mapping = ColumnMapping(text="comment", created_at="date", rating="score", external_id="id")

    decoded, rows = read_feedback_file(
        data, source="kiosk", filename="export.csv", mapping=mapping, rating_scale=RatingScale.STARS
    )
    items = items_of(list(rows))

    assert decoded.format == "csv"
    assert decoded.encoding == "utf-8"
    assert decoded.delimiter == ","
    assert items[0] == {
        "source": "kiosk",
        "text": "Slow checkout, long queue\nand rude staff",
        "external_id": "1",
        "created_at": datetime(2024, 3, 1, 14, 22, 5, tzinfo=UTC),
        "rating": {"value": 2.0, "scale": "stars"},
    }
    assert items[1]["text"] == 'She said "thanks"'
    FeedbackItemIn.model_validate(items[0])


def test_row_numbers_count_spreadsheet_rows_not_physical_lines() -> None:
    data = b'comment,date\n"two\nlines",2024-01-01\n\nthird,not-a-date\n'

    rows = read_all(data, mapping=ColumnMapping(text="comment", created_at="date"))

    assert [row.row_number for row in rows] == [2, 4]
    assert rows[1].error == "row 4: date 'not-a-date' is not a valid date"


def test_cp1256_arabic_csv_is_detected_and_decoded() -> None:
    arabic = "الخدمة ممتازة والموظفون لطفاء جدا"
    data = f"id,comment\n1,{arabic}\n2,التطبيق بطيء\n".encode("cp1256")

    decoded, rows = read_feedback_file(data, source="s", mapping=ColumnMapping(text="comment"))

    assert decoded.encoding in {"cp1256", "windows-1256"}
    assert items_of(list(rows))[0]["text"] == arabic


def test_latin1_french_and_cp1252_german_decode_correctly() -> None:
    french = "Très bon accueil, café délicieux à Genève; le prix était élevé"
    german = "Schöne Grüße, das Essen war größtenteils übel"

    french_text, french_encoding = decode_text(f"id;commentaire\n1;{french}\n".encode("latin-1"))
    german_text, german_encoding = decode_text(f'id,kommentar\n1,"{german}"\n'.encode("cp1252"))

    assert french in french_text
    assert german in german_text
    assert french_encoding in {"cp1252", "latin_1"}
    assert german_encoding in {"cp1252", "latin_1"}


def test_latin1_semicolon_csv_reads_through_the_whole_pipeline() -> None:
    data = "id;commentaire;note\n1;Très déçu, service lent;2,5\n".encode("latin-1")

    decoded, rows = read_feedback_file(
        data,
        source="s",
        mapping=parse_mapping("text=commentaire,rating=note"),
        rating_scale=RatingScale.STARS,
    )

    assert decoded.delimiter == ";"
    item = items_of(list(rows))[0]
    assert item["text"] == "Très déçu, service lent"
    assert item["rating"] == {"value": 2.5, "scale": "stars"}


def test_excel_unicode_text_export_utf16le_tab_delimited() -> None:
    persian = "خیلی\u200cخوب بود، ممنون"
    thai = "บริการดีมาก ขอบคุณครับ"
    table = f"Comment\tStore\r\n{persian}\tتهران\r\n{thai}\tกรุงเทพ\r\n"
    data = b"\xff\xfe" + table.encode("utf-16-le")

    decoded, rows = read_feedback_file(
        data, source="s", filename="responses.txt", mapping=ColumnMapping(text="Comment", location="Store")
    )
    items = items_of(list(rows))

    assert decoded.encoding == "utf-16-le"
    assert decoded.delimiter == "\t"
    assert items[0]["text"] == persian
    assert "\u200c" in items[0]["text"]
    assert items[0]["location"] == "تهران"
    assert items[1]["text"] == thai


def test_bomless_utf16_is_recognised_by_its_nul_pattern() -> None:
    text, encoding = decode_text("comment,score\nfine,5\n".encode("utf-16-le"))

    assert encoding == "utf-16-le"
    assert text == "comment,score\nfine,5\n"


def test_nul_in_a_utf8_cell_passes_through_without_flipping_to_utf16() -> None:
    data = "comment,store\nbroken\x00text,Köln\nok,Bonn\n".encode()

    decoded, rows = read_feedback_file(data, source="s", mapping=ColumnMapping(text="comment"))
    items = items_of(list(rows))

    assert decoded.encoding == "utf-8"
    assert items[0]["text"] == "broken\x00text"
    with pytest.raises(ValueError, match="NUL"):
        FeedbackItemIn.model_validate(items[0])


def test_row_with_extra_non_empty_cells_is_an_error_but_empty_extras_are_ignored() -> None:
    data = b"id,comment\n1,fine,,\n2,unquoted, comma\n3,also fine\n"

    rows = read_all(data, mapping=ColumnMapping(text="comment"))

    assert [row.error for row in rows] == [
        None,
        "row 3 has 3 cells but the header has 2 (an unquoted delimiter inside a value?)",
        None,
    ]
    assert [row.item["text"] for row in rows if row.item] == ["fine", "also fine"]


def test_short_rows_blank_rows_and_empty_text() -> None:
    data = b"comment,store,channel\nonly text\n,,\n,Paris,web\n"

    rows = read_all(data, mapping=ColumnMapping(text="comment", location="store", channel="channel"))

    assert rows[0].item == {"source": "survey", "text": "only text"}
    assert rows[1].row_number == 4
    assert rows[1].error == "row 4: the feedback text is empty"


def test_malformed_quote_becomes_a_row_error_and_following_rows_survive() -> None:
    data = b'comment,n\n"bad"quote,1\ngood,2\n"never closed,3\nlost,4\n'

    rows = read_all(data, mapping=ColumnMapping(text="comment"))

    assert rows[0].error is not None
    assert rows[0].error.startswith("row 2: the CSV is malformed here")
    assert rows[1].item is not None
    assert rows[1].item["text"] == "good"
    assert rows[2].error is not None
    assert "malformed" in rows[2].error


def test_mapping_matches_headers_case_insensitively_and_reports_missing_columns() -> None:
    data = b" Comment , Date \nhello,2024-01-01\n"

    rows = read_all(data, mapping=ColumnMapping(text="comment", created_at="DATE"))
    assert items_of(rows)[0]["text"] == "hello"

    with pytest.raises(FileFormatError) as raised:
        read_feedback_file(data, source="s", mapping=ColumnMapping(text="Comments", product="sku"))
    message = str(raised.value)
    assert "'Comments' (for text)" in message
    assert "'sku' (for product)" in message
    assert "the file's columns are: 'Comment', 'Date'" in message
    assert "did you mean 'Comment'" in message


def test_metadata_columns_collect_non_empty_values() -> None:
    data = b"comment,Segment,Tier\nhi,enterprise,\n"

    rows = read_all(data, mapping=parse_mapping("text=comment,meta.segment=Segment,meta.tier=Tier"))

    assert items_of(rows)[0]["metadata"] == {"segment": "enterprise"}


def test_file_level_problems_raise_before_iteration() -> None:
    mapping = ColumnMapping(text="comment")
    with pytest.raises(FileFormatError, match="empty"):
        read_feedback_file(b"  \n", source="s", filename="a.csv", mapping=mapping)
    with pytest.raises(FileFormatError, match="column mapping is required"):
        read_feedback_file(b"a,b\n1,2\n", source="s", filename="a.csv")
    with pytest.raises(FileFormatError, match="--rating-scale"):
        read_feedback_file(
            b"comment,score\nx,1\n", source="s", mapping=ColumnMapping(text="comment", rating="score")
        )
    with pytest.raises(FileFormatError, match="unknown time zone 'Mars/Olympus'"):
        read_feedback_file(b"comment\nx\n", source="s", mapping=mapping, default_timezone="Mars/Olympus")
    with pytest.raises(FileFormatError, match=r"not valid utf-8: byte 0xe9 at offset 11"):
        read_feedback_file(
            "comment\ncaf\u00e9\n".encode("latin-1"), source="s", mapping=mapping, encoding="utf-8"
        )


def test_large_csv_parses_lazily_and_quickly() -> None:
    lines = ["id,comment,created,score"]
    lines.extend(
        f"{n},Comment number {n} about the store,2024-03-01 10:{n % 60:02d}:00,{n % 5 + 1}"
        for n in range(20_000)
    )
    data = "\n".join(lines).encode()
    mapping = ColumnMapping(text="comment", created_at="created", rating="score", external_id="id")

    _decoded, rows = read_feedback_file(data, source="s", mapping=mapping, rating_scale=RatingScale.CSAT)
    first = next(rows)
    remaining = sum(1 for row in rows if row.item is not None)

    assert first.item is not None
    assert first.item["external_id"] == "0"
    assert remaining == 19_999


# --- XLSX -----------------------------------------------------------------------------------------


def test_xlsx_with_datetime_and_numeric_cells() -> None:
    data = xlsx_bytes(
        [
            [None, None, None],
            ["Response", "Submitted", "NPS", "Branch", "Visits"],
            ["Great coffee", datetime(2024, 3, 1, 9, 30), 9, "Tehran", 3],
            [None, None, None, None, None],
            ["Too noisy", "2024-03-02T10:00:00+03:30", "7 - Likely", None, 1.5],
        ]
    )
    mapping = parse_mapping(
        '{"text": "Response", "created_at": "Submitted", "rating": "NPS", "location": "Branch", '
        '"meta": {"visits": "Visits"}}'
    )

    decoded, rows_iterator = read_feedback_file(
        data,
        source="s",
        filename="export.xlsx",
        mapping=mapping,
        rating_scale=RatingScale.NPS,
        default_timezone="Asia/Tehran",
    )
    rows = list(rows_iterator)

    assert decoded.format == "xlsx"
    assert decoded.encoding is None
    assert [row.row_number for row in rows] == [3, 5]
    first, second = items_of(rows)
    assert first["created_at"] == datetime(2024, 3, 1, 9, 30, tzinfo=ZoneInfo("Asia/Tehran"))
    assert first["rating"] == {"value": 9.0, "scale": "nps"}
    assert first["metadata"] == {"visits": 3}
    assert second["created_at"].utcoffset() == timedelta(hours=3, minutes=30)
    assert second["rating"]["value"] == 7.0
    assert second["metadata"] == {"visits": 1.5}
    FeedbackItemIn.model_validate(first)


def test_xlsx_sheet_selection() -> None:
    data = xlsx_bytes([["comment"], ["hello"]], title="Data")

    rows = read_all(data, file_format="xlsx", mapping=ColumnMapping(text="comment"), sheet="data")
    assert items_of(rows)[0]["text"] == "hello"

    with pytest.raises(FileFormatError, match="sheet 'Other' not found; the workbook's sheets are: 'Data'"):
        read_feedback_file(
            data, source="s", file_format="xlsx", mapping=ColumnMapping(text="comment"), sheet="Other"
        )


def test_bytes_that_are_not_a_workbook_named_xlsx_raise_file_format_error() -> None:
    with pytest.raises(FileFormatError, match="not a valid XLSX workbook"):
        read_feedback_file(
            b"comment\nhello\n", source="s", filename="export.xlsx", mapping=ColumnMapping(text="c")
        )
    with pytest.raises(FileFormatError, match="not a valid XLSX workbook"):
        read_feedback_file(
            b"PK\x03\x04garbage", source="s", filename="export.xlsx", mapping=ColumnMapping(text="c")
        )


# --- JSONL ----------------------------------------------------------------------------------------


def test_jsonl_keeps_good_lines_and_reports_the_broken_one_by_line_number() -> None:
    lines = [
        json.dumps({"text": "first", "created_at": "2024-03-01T10:00:00Z"}),
        '{"text": "broken", ',
        "",
        json.dumps({"text": "third", "source": "app-store", "rating": {"value": 4, "scale": "stars"}}),
        "[1, 2]",
    ]
    data = ("\ufeff" + "\n".join(lines) + "\n").encode()

    decoded, rows_iterator = read_feedback_file(data, source="upload", filename="items.jsonl")
    rows = list(rows_iterator)

    assert decoded.format == "jsonl"
    assert [row.row_number for row in rows] == [1, 2, 4, 5]
    assert rows[0].item == {
        "text": "first",
        "source": "upload",
        "created_at": datetime(2024, 3, 1, 10, tzinfo=UTC),
    }
    assert rows[1].error is not None
    assert rows[1].error.startswith("line 2: not valid JSON")
    assert rows[2].item is not None
    assert rows[2].item["source"] == "app-store"
    assert rows[3].error == "line 5: expected a JSON object, got list"


def test_jsonl_with_a_mapping_reads_keys_like_columns() -> None:
    data = b'{"body": "nice", "stars": "4,5", "seg": "vip"}\n'

    rows = read_all(
        data,
        file_format="jsonl",
        mapping=parse_mapping("text=body,rating=stars,meta.segment=seg"),
        rating_scale=RatingScale.STARS,
    )

    assert items_of(rows) == [
        {
            "source": "survey",
            "text": "nice",
            "rating": {"value": 4.5, "scale": "stars"},
            "metadata": {"segment": "vip"},
        }
    ]


# --- format detection and mapping syntax ----------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "content_type", "head", "expected"),
    [
        ("a.CSV", None, b"", "csv"),
        ("a.tsv", None, b"", "csv"),
        ("a.xlsx", None, b"", "xlsx"),
        ("a.ndjson", None, b"", "jsonl"),
        (None, "text/csv; charset=utf-8", b"{", "csv"),
        (None, "application/octet-stream", b"PK\x03\x04rest", "xlsx"),
        (None, None, b'  \n{"text": "x"}', "jsonl"),
        ("upload", None, b"comment\nx", "csv"),
    ],
)
def test_detect_format(filename: str | None, content_type: str | None, head: bytes, expected: str) -> None:
    assert detect_format(filename, content_type, head) == expected


def test_detect_format_rejects_unsupported_files() -> None:
    with pytest.raises(FileFormatError, match=r"XLS \(Excel 97-2003\) is not supported; save as XLSX or CSV"):
        detect_format("old.xls", None, b"")
    with pytest.raises(FileFormatError, match="PDF is not supported"):
        detect_format("report.pdf", None, b"%PDF-1.7")
    with pytest.raises(FileFormatError, match="XLS"):
        detect_format(None, None, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")


def test_parse_mapping_comma_and_json_forms() -> None:
    expected = ColumnMapping(
        text="Your comment",
        created_at="date",
        rating="score",
        location="Store",
        metadata={"segment": "Segment"},
    )

    assert (
        parse_mapping(
            " text = Your comment , created_at=date,rating=score,location=Store,meta.segment=Segment,"
        )
        == expected
    )
    assert (
        parse_mapping(
            '{"text": "Your comment", "created_at": "date", "rating": "score", "location": "Store", '
            '"meta.segment": "Segment"}'
        )
        == expected
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("created_at=date", "needs text=<column>"),
        ("text=comment,stars=score", "unknown field 'stars'.*valid fields are: text, created_at, rating"),
        ("text=comment,comment", "is not field=column"),
        ("text=", "no column name for 'text'"),
        ("text=a,text=b", "names 'text' twice"),
        ('{"text": ', "not valid JSON"),
        ('["text"]', "must be a JSON object"),
        ("", "empty"),
    ],
)
def test_parse_mapping_errors(spec: str, message: str) -> None:
    with pytest.raises(FileFormatError, match=message):
        parse_mapping(spec)


# --- dates and ratings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "2024-03-01T14:22:05+03:30",
            datetime(2024, 3, 1, 14, 22, 5, tzinfo=timezone(timedelta(hours=3, minutes=30))),
        ),
        ("2024-03-01T14:22:05Z", datetime(2024, 3, 1, 14, 22, 5, tzinfo=UTC)),
        ("2024-03-01 14:22:05", datetime(2024, 3, 1, 14, 22, 5, tzinfo=UTC)),
        ("2024-03-01", datetime(2024, 3, 1, tzinfo=UTC)),
        ("03/01/2024 14:22", datetime(2024, 3, 1, 14, 22, tzinfo=UTC)),
        ("3/1/2024 2:22:05 PM", datetime(2024, 3, 1, 14, 22, 5, tzinfo=UTC)),
        ("25/12/2023", datetime(2023, 12, 25, tzinfo=UTC)),
        ("01.03.2024", datetime(2024, 3, 1, tzinfo=UTC)),
        ("1709302925", datetime(2024, 3, 1, 14, 22, 5, tzinfo=UTC)),
        (1709302925.0, datetime(2024, 3, 1, 14, 22, 5, tzinfo=UTC)),
        ("Mar 1, 2024", datetime(2024, 3, 1, tzinfo=UTC)),
    ],
)
def test_parse_datetime_formats(value: str | float, expected: datetime) -> None:
    parsed = parse_datetime(value, default_timezone="UTC", date_format=None)

    assert parsed == expected
    assert parsed.utcoffset() == expected.utcoffset()


def test_parse_datetime_attaches_the_default_timezone_only_to_naive_values() -> None:
    tehran = ZoneInfo("Asia/Tehran")

    naive = parse_datetime("2024-03-01 09:00", default_timezone="Asia/Tehran")
    aware = parse_datetime("2024-03-01T09:00:00-05:00", default_timezone="Asia/Tehran")

    assert naive == datetime(2024, 3, 1, 9, tzinfo=tehran)
    assert aware.utcoffset() == timedelta(hours=-5)


def test_parse_datetime_with_explicit_format_resolves_day_month_ambiguity() -> None:
    assert parse_datetime("03/01/2024", default_timezone="UTC") == datetime(2024, 3, 1, tzinfo=UTC)
    assert parse_datetime("03/01/2024", default_timezone="UTC", date_format="%d/%m/%Y") == datetime(
        2024, 1, 3, tzinfo=UTC
    )


@pytest.mark.parametrize("value", ["31/02/2024", "13/13/2024", "yesterday", "2024-02-30", "12345"])
def test_parse_datetime_rejects_invalid_dates(value: str) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        parse_datetime(value, default_timezone="UTC")


def test_invalid_date_and_rating_are_row_errors_quoting_the_values() -> None:
    data = b"comment,date,score\nok,31/02/2024,great\nfine,2024-01-01,5\n"
    mapping = ColumnMapping(text="comment", created_at="date", rating="score")

    rows = read_all(data, mapping=mapping, rating_scale=RatingScale.STARS)

    assert rows[0].error == "row 2: date '31/02/2024' is not a valid date; rating 'great' is not a number"
    assert rows[1].item is not None


def test_date_format_mismatch_names_the_format() -> None:
    rows = read_all(
        b"comment,date\nok,2024-01-31\n",
        mapping=ColumnMapping(text="comment", created_at="date"),
        date_format="%d/%m/%Y",
    )

    assert rows[0].error == "row 2: date '2024-01-31' does not match the date format '%d/%m/%Y'"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("4", 4.0),
        ("4.0", 4.0),
        ("4,5", 4.5),
        ("9 - Extremely likely", 9.0),
        ("10 (Extremely likely)", 10.0),
        (3, 3.0),
        ("N/A", None),
    ],
)
def test_parse_rating_value(value: object, expected: float | None) -> None:
    assert parse_rating_value(value) == expected


@pytest.mark.parametrize("value", ["great", "Extremely likely", "4.5.1", "12abc", True])
def test_parse_rating_value_rejects_non_numbers(value: object) -> None:
    with pytest.raises(ValueError, match="not a number"):
        parse_rating_value(value)


# --- known survey layouts -------------------------------------------------------------------------


def test_qualtrics_export_is_recognised_and_its_description_rows_skipped() -> None:
    headers = ["StartDate", "EndDate", "RecordedDate", "ResponseId", "Q1", "Q2 - Comments"]
    assert recognise_layout(headers) == ColumnMapping(
        text="Q2 - Comments", created_at="RecordedDate", external_id="ResponseId"
    )

    data = (
        b"StartDate,EndDate,RecordedDate,ResponseId,Q1,Q2 - Comments\n"
        b"Start Date,End Date,Recorded Date,Response ID,How likely...,Any comments?\n"
        b'"{""ImportId"":""startDate""}","{""ImportId"":""endDate""}","{""ImportId"":""recordedDate""}",'
        b'"{""ImportId"":""_recordId""}","{""ImportId"":""QID1""}","{""ImportId"":""QID2_TEXT""}"\n'
        b"2024-03-01 10:00:00,2024-03-01 10:05:00,2024-03-01 10:05:01,R_abc,9,Loved the staff\n"
    )

    rows = read_all(data)

    assert items_of(rows) == [
        {
            "source": "survey",
            "text": "Loved the staff",
            "external_id": "R_abc",
            "created_at": datetime(2024, 3, 1, 10, 5, 1, tzinfo=UTC),
        }
    ]
    assert rows[0].row_number == 4


def test_google_forms_export_is_recognised() -> None:
    data = b"Timestamp,How satisfied are you?,Any other feedback?\n3/1/2024 14:22:05,5,Quick service\n"

    rows = read_all(data, filename="Form responses 1.csv")

    assert items_of(rows) == [
        {
            "source": "survey",
            "text": "Quick service",
            "created_at": datetime(2024, 3, 1, 14, 22, 5, tzinfo=UTC),
        }
    ]


def test_surveymonkey_and_typeform_layouts() -> None:
    monkey = recognise_layout(
        ["Respondent ID", "Collector ID", "Start Date", "End Date", "Why did you give this score?"]
    )
    typeform = recognise_layout(["#", "What could we improve?", "Submitted At", "Network ID"])

    assert monkey == ColumnMapping(
        text="Why did you give this score?", created_at="End Date", external_id="Respondent ID"
    )
    assert typeform == ColumnMapping(
        text="What could we improve?", created_at="Submitted At", external_id="#"
    )


def test_unknown_or_textless_layouts_are_not_guessed() -> None:
    assert recognise_layout(["id", "comment"]) is None
    assert recognise_layout(["Timestamp", "Score", "Email"]) is None
