"""Parse uploaded survey and review exports (CSV, XLSX, JSONL) into feedback item dicts.

Pure parsing: no database and no web framework. Items come out shaped like
``service.ingest.schemas.FeedbackItemIn`` but unvalidated, so that file imports and the batch API share
one validation path; only what the file itself can tell (row structure, dates, numbers) is checked here.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import functools
import io
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import charset_normalizer

from scrapers.contract import RatingScale

__all__ = [
    "ColumnMapping",
    "DecodedFile",
    "FileFormat",
    "FileFormatError",
    "ParsedRow",
    "decode_text",
    "detect_format",
    "parse_datetime",
    "parse_mapping",
    "parse_rating_value",
    "read_feedback_file",
    "recognise_layout",
]


class FileFormatError(ValueError):
    """A problem with the file as a whole; the message is shown to the user as-is."""


FileFormat = Literal["csv", "xlsx", "jsonl"]

_FORMATS: tuple[str, ...] = get_args(FileFormat)


@dataclass(frozen=True)
class ColumnMapping:
    """Which column of the file feeds which item field; ``metadata`` maps metadata keys to columns."""

    text: str
    created_at: str | None = None
    rating: str | None = None
    location: str | None = None
    product: str | None = None
    channel: str | None = None
    language: str | None = None
    author: str | None = None
    external_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def columns(self) -> list[tuple[str, str]]:
        """(item field, column) pairs for every mapped field, metadata as ``meta.<key>``."""
        pairs = [
            (spec.name, getattr(self, spec.name))
            for spec in fields(self)
            if spec.name != "metadata" and getattr(self, spec.name) is not None
        ]
        pairs.extend((f"meta.{key}", column) for key, column in self.metadata.items())
        return pairs


@dataclass(frozen=True)
class DecodedFile:
    """How the file was read: its format, text encoding and CSV delimiter."""

    format: FileFormat
    encoding: str | None
    delimiter: str | None


@dataclass
class ParsedRow:
    """One data row: an item dict ready for validation, or the reason it could not be read."""

    row_number: int
    item: dict[str, Any] | None
    error: str | None


_ITEM_FIELDS: tuple[str, ...] = tuple(spec.name for spec in fields(ColumnMapping) if spec.name != "metadata")
_TEXT_FIELDS: tuple[str, ...] = ("location", "product", "channel", "language", "author", "external_id")
_VALID_TARGETS_HINT = ", ".join([*_ITEM_FIELDS, "meta.<key>"])

# --------------------------------------------------------------------------------------------------
# Column mapping


def parse_mapping(spec: str) -> ColumnMapping:
    """Parse ``text=comment,created_at=date,meta.segment=Segment`` or the same as a JSON object."""
    stripped = spec.strip()
    if not stripped:
        raise FileFormatError("the column mapping is empty; give at least text=<column>, e.g. text=comment")
    pairs = _mapping_pairs_from_json(stripped) if stripped[0] in "{[" else _mapping_pairs(stripped)

    targets: dict[str, str] = {}
    metadata: dict[str, str] = {}
    for raw_target, raw_column in pairs:
        target = raw_target.strip()
        column = raw_column.strip()
        if not column:
            raise FileFormatError(f"the column mapping gives no column name for '{target}'")
        meta_key = _metadata_key(target)
        if meta_key is not None:
            if not meta_key:
                raise FileFormatError(f"'{target}' needs a metadata key, e.g. meta.segment=Segment")
            if meta_key in metadata:
                raise FileFormatError(f"the column mapping names metadata key '{meta_key}' twice")
            metadata[meta_key] = column
            continue
        field_name = target.lower()
        if field_name not in _ITEM_FIELDS:
            raise FileFormatError(
                f"unknown field '{target}' in the column mapping; valid fields are: {_VALID_TARGETS_HINT}"
            )
        if field_name in targets:
            raise FileFormatError(f"the column mapping names '{field_name}' twice")
        targets[field_name] = column

    if "text" not in targets:
        raise FileFormatError("the column mapping needs text=<column> naming the feedback text column")
    return ColumnMapping(**targets, metadata=metadata)


def _mapping_pairs(spec: str) -> list[tuple[str, str]]:
    pairs = []
    for part in spec.split(","):
        if not part.strip():
            continue
        target, separator, column = part.partition("=")
        if not separator:
            raise FileFormatError(
                f"'{part.strip()}' in the column mapping is not field=column, e.g. text=comment "
                "(for column names containing commas, give the mapping as a JSON object)"
            )
        pairs.append((target, column))
    return pairs


def _mapping_pairs_from_json(spec: str) -> list[tuple[str, str]]:
    try:
        decoded = json.loads(spec)
    except json.JSONDecodeError as error:
        raise FileFormatError(f"the column mapping is not valid JSON: {error}") from None
    if not isinstance(decoded, dict):
        raise FileFormatError('the column mapping must be a JSON object, e.g. {"text": "comment"}')
    pairs: list[tuple[str, str]] = []
    for target, column in decoded.items():
        if target in {"meta", "metadata"} and isinstance(column, dict):
            pairs.extend(
                (f"meta.{key}", _json_column_name(f"meta.{key}", value)) for key, value in column.items()
            )
        else:
            pairs.append((target, _json_column_name(target, column)))
    return pairs


def _json_column_name(target: str, column: object) -> str:
    if not isinstance(column, str):
        raise FileFormatError(f"the column mapping for '{target}' must be a column name (a string)")
    return column


def _metadata_key(target: str) -> str | None:
    for prefix in ("meta.", "metadata."):
        if target.lower().startswith(prefix):
            return target[len(prefix) :].strip()
    return None


# --------------------------------------------------------------------------------------------------
# Format detection and decoding

_EXTENSION_FORMATS: dict[str, FileFormat] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".tab": "csv",
    ".txt": "csv",
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
_UNSUPPORTED_EXTENSIONS = {
    ".xls": "XLS (Excel 97-2003) is not supported; save as XLSX or CSV",
    ".xlsb": "XLSB (Excel binary workbook) is not supported; save as XLSX or CSV",
    ".ods": "ODS (OpenDocument spreadsheet) is not supported; save as XLSX or CSV",
    ".numbers": "Apple Numbers files are not supported; export as XLSX or CSV",
    ".json": "plain JSON is not supported; give JSON Lines (.jsonl): one JSON object per line",
    ".pdf": "PDF is not supported; export the survey responses as CSV, XLSX or JSONL",
    ".doc": "Word documents are not supported; export the survey responses as CSV, XLSX or JSONL",
    ".docx": "Word documents are not supported; export the survey responses as CSV, XLSX or JSONL",
    ".zip": "ZIP archives are not supported; extract the CSV, XLSX or JSONL file and upload that",
    ".gz": "compressed files are not supported; decompress it and upload the CSV, XLSX or JSONL file",
}
_CONTENT_TYPE_FORMATS: dict[str, FileFormat] = {
    "text/csv": "csv",
    "application/csv": "csv",
    "text/tab-separated-values": "csv",
    "text/plain": "csv",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/x-ndjson": "jsonl",
    "application/ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/x-jsonlines": "jsonl",
    "application/jsonlines": "jsonl",
}
_ZIP_MAGIC = b"PK\x03\x04"
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def detect_format(filename: str | None, content_type: str | None, head: bytes) -> FileFormat:
    """Pick the file format from the extension, else the content type, else the first bytes."""
    if filename:
        name = filename.strip().lower()
        dot = name.rfind(".")
        extension = name[dot:] if dot > 0 or (dot == 0 and len(name) > 1) else ""
        if extension in _UNSUPPORTED_EXTENSIONS:
            raise FileFormatError(_UNSUPPORTED_EXTENSIONS[extension])
        if extension in _EXTENSION_FORMATS:
            return _EXTENSION_FORMATS[extension]
    if content_type:
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type in _CONTENT_TYPE_FORMATS:
            return _CONTENT_TYPE_FORMATS[media_type]
    if head.startswith(_ZIP_MAGIC):
        return "xlsx"
    if head.startswith(_OLE2_MAGIC):
        raise FileFormatError(_UNSUPPORTED_EXTENSIONS[".xls"])
    if head.startswith(b"%PDF"):
        raise FileFormatError(_UNSUPPORTED_EXTENSIONS[".pdf"])
    if head.lstrip(b" \t\r\n\xef\xbb\xbf").startswith(b"{"):
        return "jsonl"
    return "csv"


_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Single-byte encodings that survey tools and Excel produce; ties between equally plausible guesses
# (common on short files) go to the earlier one. Multi-byte East Asian codecs are left out: on short
# samples they "successfully" decode almost any Windows code page text into nonsense.
_LEGACY_ENCODINGS: tuple[str, ...] = (
    "cp1252",
    "cp1256",
    "cp1250",
    "cp1251",
    "cp874",
    "cp1253",
    "cp1254",
    "cp1255",
    "cp1257",
    "iso8859_6",
    "koi8_r",
    "latin_1",
)
_DETECTION_SAMPLE_BYTES = 256 * 1024


def decode_text(data: bytes, encoding: str | None = None) -> tuple[str, str]:
    """Decode file bytes, with ``encoding`` if given else by detection; returns (text, encoding name)."""
    if encoding is not None:
        return _decode_strictly(data, encoding), _codec_name(encoding)
    for bom, bom_encoding in _BOMS:
        if data.startswith(bom):
            return _decode_strictly(data[len(bom) :], bom_encoding), bom_encoding
    sample = data[:_DETECTION_SAMPLE_BYTES]
    if b"\x00" in sample:
        utf16 = _bomless_utf16(sample)
        if utf16 is not None:
            try:
                return data.decode(utf16), utf16
            except UnicodeDecodeError:
                pass
    try:
        return _strip_bom(data.decode("utf-8")), "utf-8"
    except UnicodeDecodeError:
        pass
    for guess in _guess_legacy_encodings(sample):
        try:
            return _strip_bom(data.decode(guess)), guess
        except UnicodeDecodeError:
            continue
    raise FileFormatError(
        "could not work out the file's text encoding; save it as UTF-8 or give the encoding (e.g. cp1256)"
    )


def _decode_strictly(data: bytes, encoding: str) -> str:
    try:
        return _strip_bom(data.decode(encoding))
    except LookupError:
        raise FileFormatError(f"unknown text encoding '{encoding}'") from None
    except UnicodeDecodeError as error:
        bad = data[error.start : error.start + 1].hex()
        raise FileFormatError(
            f"the file is not valid {encoding}: byte 0x{bad} at offset {error.start} cannot be decoded; "
            "check the encoding, or leave it out to detect it"
        ) from None


def _codec_name(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        return encoding


def _strip_bom(text: str) -> str:
    return text[1:] if text.startswith("\ufeff") else text


def _bomless_utf16(sample: bytes) -> str | None:
    """UTF-16 text of mostly ASCII-range characters has a NUL in every other byte."""
    pairs = len(sample) // 2
    if pairs < 2:
        return None
    even_nuls = sample[0 : pairs * 2 : 2].count(0)
    odd_nuls = sample[1 : pairs * 2 : 2].count(0)
    if odd_nuls >= pairs * 0.3 and even_nuls <= pairs * 0.02:
        return "utf-16-le"
    if even_nuls >= pairs * 0.3 and odd_nuls <= pairs * 0.02:
        return "utf-16-be"
    return None


def _guess_legacy_encodings(sample: bytes) -> list[str]:
    if len(sample) == _DETECTION_SAMPLE_BYTES:
        # Cut at a line end so the sample never ends inside a multi-byte sequence.
        cut = sample.rfind(b"\n")
        if cut > 0:
            sample = sample[: cut + 1]
    matches = list(charset_normalizer.from_bytes(sample, cp_isolation=list(_LEGACY_ENCODINGS)))
    if not matches:
        return []
    least_chaos = min(match.chaos for match in matches)
    calm = [match for match in matches if match.chaos <= least_chaos + 0.01]
    best_coherence = max(match.coherence for match in calm)
    plausible = {
        encoding
        for match in calm
        if match.coherence >= best_coherence - 0.05
        for encoding in match.could_be_from_charset
    }
    return sorted(
        plausible,
        key=lambda name: (
            _LEGACY_ENCODINGS.index(name) if name in _LEGACY_ENCODINGS else len(_LEGACY_ENCODINGS)
        ),
    )


# --------------------------------------------------------------------------------------------------
# Values: dates and numbers


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> tzinfo:
    if name.upper() in {"UTC", "Z", "ETC/UTC"}:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise FileFormatError(
            f"unknown time zone '{name}'; give an IANA name such as UTC, Europe/Berlin or Asia/Tehran"
        ) from None


_NUMERIC_DATE = re.compile(
    r"(\d{1,4})([/.\-])(\d{1,2})\2(\d{2,4})"
    r"(?:[ T,]+(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,6}))?)?\s*([AaPp]\.?[Mm]\.?)?)?"
)
_EPOCH = re.compile(r"(\d{9,10}|\d{12,13})(?:\.\d+)?")
_TEXTUAL_DATE_FORMATS = (
    "%d %b %Y",
    "%d %B %Y",
    "%b %d, %Y",
    "%B %d, %Y",
    "%d %b %Y %H:%M",
    "%d %B %Y %H:%M",
    "%b %d, %Y %H:%M",
    "%B %d, %Y %H:%M",
    "%b %d, %Y %I:%M %p",
    "%B %d, %Y %I:%M %p",
    "%a, %d %b %Y %H:%M:%S %z",
)
_EXCEL_EPOCH = datetime(1899, 12, 30)  # serial dates count wall-clock days, so no zone
_EXCEL_SERIAL_RANGE = (1.0, 100_000.0)


def parse_datetime(
    value: str | datetime | date | float, *, default_timezone: str, date_format: str | None = None
) -> datetime:
    """Read a date/time cell; naive values get ``default_timezone``. Raises ValueError when unreadable."""
    if isinstance(value, datetime):
        return value if value.utcoffset() is not None else value.replace(tzinfo=_zone(default_timezone))
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=_zone(default_timezone))
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a date")
    if isinstance(value, int | float):
        return _datetime_from_number(float(value), default_timezone)
    return _parse_datetime_text(value.strip(), default_timezone, date_format)


def _datetime_from_number(number: float, default_timezone: str) -> datetime:
    if not math.isfinite(number):
        raise ValueError(f"{number} is not a date")
    try:
        if number >= 1e11:
            return datetime.fromtimestamp(number / 1000, tz=UTC)
        if number >= 1e8:
            return datetime.fromtimestamp(number, tz=UTC)
        low, high = _EXCEL_SERIAL_RANGE
        if low <= number < high:
            # A spreadsheet date cell that lost its date formatting: days since 1899-12-30.
            wall_clock = _EXCEL_EPOCH + timedelta(days=number)
            return wall_clock.replace(tzinfo=_zone(default_timezone))
    except (OverflowError, OSError, ValueError):
        pass
    raise ValueError(f"{number:g} is neither a Unix timestamp nor a spreadsheet date")


@functools.lru_cache(maxsize=8192)
def _parse_datetime_text(text: str, default_timezone: str, date_format: str | None) -> datetime:
    zone = _zone(default_timezone)
    if date_format is not None:
        parsed = datetime.strptime(text, date_format)
        return parsed if parsed.utcoffset() is not None else parsed.replace(tzinfo=zone)
    if len(text) >= 10 and text[4] == "-" and text[:4].isdigit():
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            return parsed if parsed.utcoffset() is not None else parsed.replace(tzinfo=zone)
    if _EPOCH.fullmatch(text):
        return _datetime_from_number(float(text), default_timezone)
    numeric = _NUMERIC_DATE.fullmatch(text)
    if numeric:
        return _numeric_date(numeric).replace(tzinfo=zone)
    for textual_format in _TEXTUAL_DATE_FORMATS:
        try:
            parsed = datetime.strptime(text, textual_format)
        except ValueError:
            continue
        return parsed if parsed.utcoffset() is not None else parsed.replace(tzinfo=zone)
    raise ValueError(f"{text!r} is not a date")


def _numeric_date(match: re.Match[str]) -> datetime:
    first, separator, second, third, hour, minute, second_of_minute, fraction, meridiem = match.groups()
    if len(first) == 4:
        year, month, day = int(first), int(second), int(third)
    elif separator == "." or int(first) > 12:
        day, month, year = int(first), int(second), int(third)
    else:
        # Slash (and dash) dates are US month/day, as SurveyMonkey and Google Forms export them.
        month, day, year = int(first), int(second), int(third)
    if len(third) == 2 and len(first) != 4:
        year += 2000 if year < 69 else 1900
    hours = int(hour) if hour else 0
    if meridiem:
        if not 1 <= hours <= 12:
            raise ValueError(f"hour {hours} with {meridiem}")
        hours = hours % 12 + (12 if meridiem[0] in "Pp" else 0)
    return datetime(
        year,
        month,
        day,
        hours,
        int(minute) if minute else 0,
        int(second_of_minute) if second_of_minute else 0,
        int(fraction.ljust(6, "0")) if fraction else 0,
    )


_LEADING_NUMBER = re.compile(r"[+-]?(?:\d+(?:[.,]\d+)?|[.,]\d+)")
_NOT_ANSWERED = frozenset({"n/a", "na", "-", "--", "—", "none", "null", "not applicable"})


def parse_rating_value(value: object) -> float | None:
    """Read a score cell: ``4``, ``4.5``, ``4,5`` or ``9 - Extremely likely``; None for "N/A"."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a number")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a number")
    text = value.strip()
    if text.lower() in _NOT_ANSWERED:
        return None
    match = _LEADING_NUMBER.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a number")
    rest = text[match.end() :]
    # "4.5.1" or "12abc" are not scores with a label; "9 - Extremely likely" and "4 stars" are.
    if rest and (rest[0].isdigit() or rest[0] in ".," or rest[0].isalpha()):
        raise ValueError(f"{text!r} is not a number")
    return float(match.group().replace(",", "."))


# --------------------------------------------------------------------------------------------------
# Known survey export layouts

_TEXT_COLUMN_HINTS = (
    "comment",
    "feedback",
    "why",
    "suggest",
    "improve",
    "tell us",
    "describe",
    "explain",
    "anything else",
    "review",
    "reason",
    "kommentar",
    "commentaire",
    "comentario",
    "ملاحظات",
    "نظر",
)
_ID_SUFFIXES = (" id", "_id", "-id")


def recognise_layout(headers: list[str]) -> ColumnMapping | None:
    """A default mapping for Qualtrics, SurveyMonkey, Typeform or Google Forms headers, else None."""
    by_name = {_normalise_header(header): header for header in reversed(headers) if header.strip()}

    def pick(*names: str) -> str | None:
        return next((by_name[name] for name in names if name in by_name), None)

    if "responseid" in by_name:
        created_at = pick("recordeddate", "enddate", "startdate")
        external_id = pick("responseid")
    elif "respondent id" in by_name and ("start date" in by_name or "end date" in by_name):
        created_at = pick("end date", "start date")
        external_id = pick("respondent id")
    elif "submitted at" in by_name and ("#" in by_name or "network id" in by_name):
        created_at = pick("submitted at")
        external_id = pick("#")
    elif headers and _normalise_header(headers[0]) in {"timestamp", "horodateur", "zeitstempel"}:
        created_at = headers[0]
        external_id = None
    else:
        return None

    taken = {created_at, external_id}
    text_column = _free_text_column([header for header in headers if header not in taken])
    if text_column is None:
        return None
    return ColumnMapping(text=text_column, created_at=created_at, external_id=external_id)


def _free_text_column(headers: list[str]) -> str | None:
    for hint in _TEXT_COLUMN_HINTS:
        for header in headers:
            name = _normalise_header(header)
            if hint in name and name != "id" and not name.endswith(_ID_SUFFIXES):
                return header
    return None


def _normalise_header(header: str) -> str:
    return " ".join(header.split()).casefold()


# --------------------------------------------------------------------------------------------------
# Rows to items


@dataclass(frozen=True)
class _Columns:
    """Resolved positions (CSV/XLSX) or keys (JSONL) of the mapped fields."""

    fields: tuple[tuple[str, str, Any], ...]  # (item field, column name as mapped, index or key)
    metadata: tuple[tuple[str, str, Any], ...]  # (metadata key, column name, index or key)


@dataclass(frozen=True)
class _ItemBuilder:
    source: str
    rating_scale: RatingScale | None
    default_timezone: str
    date_format: str | None
    row_label: str

    def build(self, number: int, values: Mapping[str, Any], metadata: dict[str, Any]) -> ParsedRow:
        problems: list[str] = []
        item: dict[str, Any] = {"source": self.source}
        text = values.get("text")
        if text is None:
            problems.append("the feedback text is empty")
        else:
            item["text"] = _as_text(text)
        for name in _TEXT_FIELDS:
            value = values.get(name)
            if value is not None:
                item[name] = _as_text(value)
        created_at = values.get("created_at")
        if created_at is not None:
            problem = self.add_created_at(item, created_at)
            if problem:
                problems.append(problem)
        rating = values.get("rating")
        if rating is not None:
            problem = self.add_rating(item, rating)
            if problem:
                problems.append(problem)
        if metadata:
            item["metadata"] = metadata
        if problems:
            return ParsedRow(number, None, f"{self.row_label} {number}: {'; '.join(problems)}")
        return ParsedRow(number, item, None)

    def add_created_at(self, item: dict[str, Any], value: Any) -> str | None:
        if not isinstance(value, str | datetime | date | int | float):
            return f"date {_quote(value)} is not a valid date"
        try:
            item["created_at"] = parse_datetime(
                value, default_timezone=self.default_timezone, date_format=self.date_format
            )
        except ValueError:
            if self.date_format is not None:
                return f"date {_quote(value)} does not match the date format '{self.date_format}'"
            return f"date {_quote(value)} is not a valid date"
        return None

    def add_rating(self, item: dict[str, Any], value: Any) -> str | None:
        try:
            number = parse_rating_value(value)
        except ValueError:
            return f"rating {_quote(value)} is not a number"
        if number is not None and self.rating_scale is not None:
            item["rating"] = {"value": number, "scale": self.rating_scale.value}
        return None


def _quote(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    return repr(text[:80] + "…") if len(text) > 80 else repr(text)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        stripped = value.strip()
        return stripped or None
    return value


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


def _metadata_value(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


def _resolve_columns(headers: list[str], mapping: ColumnMapping) -> _Columns:
    exact: dict[str, int] = {}
    loose: dict[str, int] = {}
    duplicated: set[str] = set()
    for index, header in enumerate(headers):
        if header in exact:
            duplicated.add(header)
        exact.setdefault(header, index)
        loose.setdefault(_normalise_header(header), index)

    missing: list[str] = []
    resolved: list[tuple[str, str, int]] = []
    for target, column in mapping.columns():
        if column in duplicated:
            raise FileFormatError(f"column '{column}' (for {target}) appears more than once in the header")
        position = exact.get(column)
        if position is None:
            position = loose.get(_normalise_header(column))
        if position is None:
            missing.append(f"'{column}' (for {target})")
        else:
            resolved.append((target, column, position))
    if missing:
        raise FileFormatError(_missing_columns_message(missing, headers, mapping))
    return _Columns(
        fields=tuple(entry for entry in resolved if not entry[0].startswith("meta.")),
        metadata=tuple(
            (target.removeprefix("meta."), column, index)
            for target, column, index in resolved
            if target.startswith("meta.")
        ),
    )


def _missing_columns_message(missing: list[str], headers: list[str], mapping: ColumnMapping) -> str:
    shown = [f"'{header}'" for header in headers[:60]]
    if len(headers) > 60:
        shown.append(f"... and {len(headers) - 60} more")
    message = (
        f"column{'s' if len(missing) > 1 else ''} {', '.join(missing)} not found in the header; "
        f"the file's columns are: {', '.join(shown)}"
    )
    suggestions = []
    for _target, column in mapping.columns():
        if column not in headers:
            close = difflib.get_close_matches(column, headers, n=1, cutoff=0.6)
            if close:
                suggestions.append(f"'{close[0]}' for '{column}'")
    if suggestions:
        message += f" (did you mean {', '.join(suggestions)}?)"
    return message


def _row_values(columns: _Columns, cell: Callable[[Any], Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    values = {target: _clean(cell(key)) for target, _column, key in columns.fields}
    metadata: dict[str, Any] = {}
    for meta_key, _column, key in columns.metadata:
        value = _clean(cell(key))
        if value is not None:
            metadata[meta_key] = _metadata_value(value)
    return values, metadata


def _padded(cells: list[Any], width: int) -> list[Any]:
    return cells if len(cells) >= width else cells + [None] * (width - len(cells))


def _preamble_detector(headers: list[str]) -> Callable[[int, list[Any]], bool]:
    """Recognise the extra header rows Qualtrics and SurveyMonkey put under the real header."""
    normalised = [_normalise_header(header) for header in headers]
    if "responseid" in normalised:
        qualtrics_id = normalised.index("responseid")

        def is_qualtrics_preamble(_data_row: int, cells: list[Any]) -> bool:
            value = cells[qualtrics_id] if qualtrics_id < len(cells) else None
            return isinstance(value, str) and (
                value.strip() in {"Response ID", "ResponseId", "ResponseID"}
                or value.startswith('{"ImportId"')
            )

        return is_qualtrics_preamble
    if "respondent id" in normalised:
        monkey_id = normalised.index("respondent id")

        def is_surveymonkey_preamble(data_row: int, cells: list[Any]) -> bool:
            return data_row == 1 and (monkey_id >= len(cells) or _clean(cells[monkey_id]) is None)

        return is_surveymonkey_preamble
    return lambda _data_row, _cells: False


# --------------------------------------------------------------------------------------------------
# Reading files


def read_feedback_file(
    data: bytes,
    *,
    source: str,
    filename: str | None = None,
    content_type: str | None = None,
    file_format: FileFormat | None = None,
    mapping: ColumnMapping | None = None,
    encoding: str | None = None,
    rating_scale: RatingScale | None = None,
    default_timezone: str = "UTC",
    date_format: str | None = None,
    sheet: str | None = None,
) -> tuple[DecodedFile, Iterator[ParsedRow]]:
    """Check the file eagerly, then return how it was read and a lazy iterator over its data rows."""
    _zone(default_timezone)
    if file_format is not None and file_format not in _FORMATS:
        raise FileFormatError(f"unknown file format '{file_format}'; use one of: {', '.join(_FORMATS)}")
    detected = file_format or detect_format(filename, content_type, data[:4096])
    if not data or data.isspace():
        raise FileFormatError("the file is empty")
    if mapping is not None and mapping.rating is not None and rating_scale is None:
        raise FileFormatError("give --rating-scale (stars, nps, csat, ces) for the rating column")
    builder = _ItemBuilder(
        source=source,
        rating_scale=rating_scale,
        default_timezone=default_timezone,
        date_format=date_format,
        row_label="line" if detected == "jsonl" else "row",
    )
    if detected == "csv":
        return _read_csv(data, encoding=encoding, mapping=mapping, builder=builder)
    if detected == "xlsx":
        return _read_xlsx(data, sheet=sheet, mapping=mapping, builder=builder)
    return _read_jsonl(data, encoding=encoding, mapping=mapping, builder=builder)


def _mapping_for(headers: list[str], mapping: ColumnMapping | None, builder: _ItemBuilder) -> ColumnMapping:
    if mapping is None:
        mapping = recognise_layout(headers)
        if mapping is None:
            raise FileFormatError(
                "a column mapping is required for CSV/XLSX, e.g. --map text=comment,created_at=date; "
                f"the file's columns are: {', '.join(repr(header) for header in headers[:60])}"
            )
    if mapping.rating is not None and builder.rating_scale is None:
        raise FileFormatError("give --rating-scale (stars, nps, csat, ces) for the rating column")
    return mapping


_DELIMITERS = (",", ";", "\t", "|")


def _sniff_delimiter(text: str) -> str:
    sample = text[:65536]
    if len(text) > len(sample):
        sample = sample[: sample.rfind("\n") + 1] or sample
    best, best_score = ",", (False, -1.0, 0)
    for delimiter in _DELIMITERS:
        try:
            rows = [row for row in csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter) if row]
        except csv.Error:
            continue
        if not rows:
            continue
        width = len(rows[0])
        body = rows[1:50]
        consistency = sum(len(row) == width for row in body) / len(body) if body else 0.0
        score = (width > 1, consistency, width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _read_csv(
    data: bytes, *, encoding: str | None, mapping: ColumnMapping | None, builder: _ItemBuilder
) -> tuple[DecodedFile, Iterator[ParsedRow]]:
    if data.startswith(_ZIP_MAGIC):
        raise FileFormatError(
            "this file is a ZIP archive (probably an XLSX workbook), not CSV text; upload it as .xlsx"
        )
    if data.startswith(_OLE2_MAGIC):
        raise FileFormatError(_UNSUPPORTED_EXTENSIONS[".xls"])
    text, used_encoding = decode_text(data, encoding)
    if not text.strip():
        raise FileFormatError("the file is empty")
    delimiter = _sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)

    row_number = 0
    headers: list[str] | None = None
    while headers is None:
        try:
            cells = next(reader)
        except StopIteration:
            raise FileFormatError("the file is empty") from None
        except csv.Error as error:
            raise FileFormatError(f"could not read the header row (row {row_number + 1}): {error}") from None
        row_number += 1
        if any(cell.strip() for cell in cells):
            headers = [cell.strip() for cell in cells]
    resolved_mapping = _mapping_for(headers, mapping, builder)
    columns = _resolve_columns(headers, resolved_mapping)
    decoded = DecodedFile(format="csv", encoding=used_encoding, delimiter=delimiter)
    return decoded, _iter_csv_rows(reader, row_number, headers, columns, builder)


def _iter_csv_rows(
    reader: Iterator[list[str]], header_row: int, headers: list[str], columns: _Columns, builder: _ItemBuilder
) -> Iterator[ParsedRow]:
    width = len(headers)
    is_preamble = _preamble_detector(headers)
    row_number = header_row
    data_rows = 0
    while True:
        row_number += 1
        try:
            cells: list[str] = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield ParsedRow(row_number, None, f"row {row_number}: the CSV is malformed here ({error})")
            continue
        if not any(cell.strip() for cell in cells):
            continue
        data_rows += 1
        if is_preamble(data_rows, cells):
            continue
        if len(cells) > width and any(cell.strip() for cell in cells[width:]):
            yield ParsedRow(
                row_number,
                None,
                f"row {row_number} has {len(cells)} cells but the header has {width} "
                "(an unquoted delimiter inside a value?)",
            )
            continue
        values, metadata = _row_values(columns, _padded(cells, width).__getitem__)
        yield builder.build(row_number, values, metadata)


def _read_xlsx(
    data: bytes, *, sheet: str | None, mapping: ColumnMapping | None, builder: _ItemBuilder
) -> tuple[DecodedFile, Iterator[ParsedRow]]:
    if data.startswith(_OLE2_MAGIC):
        raise FileFormatError(_UNSUPPORTED_EXTENSIONS[".xls"])
    if not data.startswith(_ZIP_MAGIC):
        raise FileFormatError(
            "the file is not a valid XLSX workbook (it is not a ZIP archive); "
            "if it is CSV text, upload it with a .csv name"
        )
    import openpyxl

    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    # openpyxl raises many kinds of errors on damaged archives; all mean the same thing to the user.
    except Exception as error:
        raise FileFormatError(
            f"the file is not a valid XLSX workbook ({type(error).__name__}: {error})"
        ) from None
    try:
        worksheet = _pick_sheet(workbook, sheet)
        worksheet.reset_dimensions()  # exporters often write wrong dimensions; read what is there
        rows = enumerate(worksheet.iter_rows(values_only=True), start=1)
        header_row, headers = _xlsx_header(rows)
        resolved_mapping = _mapping_for(headers, mapping, builder)
        columns = _resolve_columns(headers, resolved_mapping)
    except Exception:
        workbook.close()
        raise
    decoded = DecodedFile(format="xlsx", encoding=None, delimiter=None)
    return decoded, _iter_xlsx_rows(
        workbook=workbook, rows=rows, header_row=header_row, headers=headers, columns=columns, builder=builder
    )


def _pick_sheet(workbook: Any, sheet: str | None) -> Any:
    if sheet is None:
        if not workbook.worksheets:
            raise FileFormatError("the workbook has no worksheets")
        return workbook.worksheets[0]
    names: list[str] = list(workbook.sheetnames)
    name = (
        sheet
        if sheet in names
        else next((n for n in names if n.strip().casefold() == sheet.strip().casefold()), None)
    )
    if name is None:
        raise FileFormatError(
            f"sheet '{sheet}' not found; the workbook's sheets are: {', '.join(map(repr, names))}"
        )
    chosen = workbook[name]
    if not hasattr(chosen, "iter_rows"):
        raise FileFormatError(f"sheet '{name}' is a chart, not a worksheet")
    return chosen


def _xlsx_header(rows: Iterator[tuple[int, tuple[Any, ...]]]) -> tuple[int, list[str]]:
    try:
        for row_number, cells in rows:
            if any(_clean(cell) is not None for cell in cells):
                headers = [("" if cell is None else _as_text(cell)).strip() for cell in cells]
                while headers and not headers[-1]:
                    headers.pop()
                return row_number, headers
    except FileFormatError:
        raise
    except Exception as error:
        raise FileFormatError(f"could not read the worksheet ({type(error).__name__}: {error})") from None
    raise FileFormatError("the worksheet is empty")


def _iter_xlsx_rows(
    *,
    workbook: Any,
    rows: Iterator[tuple[int, tuple[Any, ...]]],
    header_row: int,
    headers: list[str],
    columns: _Columns,
    builder: _ItemBuilder,
) -> Iterator[ParsedRow]:
    is_preamble = _preamble_detector(headers)
    width = len(headers)
    row_number = header_row
    data_rows = 0
    try:
        while True:
            try:
                row_number, cells = next(rows)
            except StopIteration:
                return
            # A damaged sheet can fail part-way; keep the rows read so far and say where it stopped.
            except Exception as error:
                yield ParsedRow(
                    row_number + 1,
                    None,
                    f"row {row_number + 1}: could not read the worksheet from here on "
                    f"({type(error).__name__})",
                )
                return
            if not any(_clean(cell) is not None for cell in cells):
                continue
            data_rows += 1
            row = list(cells)
            if is_preamble(data_rows, row):
                continue
            values, metadata = _row_values(columns, _padded(row, width).__getitem__)
            yield builder.build(row_number, values, metadata)
    finally:
        workbook.close()


def _read_jsonl(
    data: bytes, *, encoding: str | None, mapping: ColumnMapping | None, builder: _ItemBuilder
) -> tuple[DecodedFile, Iterator[ParsedRow]]:
    text, used_encoding = decode_text(data, encoding)
    if not text.strip():
        raise FileFormatError("the file is empty")
    columns = None
    if mapping is not None:
        mapped = mapping.columns()
        columns = _Columns(
            fields=tuple((target, key, key) for target, key in mapped if not target.startswith("meta.")),
            metadata=tuple(
                (target.removeprefix("meta."), key, key)
                for target, key in mapped
                if target.startswith("meta.")
            ),
        )
    decoded = DecodedFile(format="jsonl", encoding=used_encoding, delimiter=None)
    return decoded, _iter_jsonl_rows(text, columns, builder)


def _iter_jsonl_rows(text: str, columns: _Columns | None, builder: _ItemBuilder) -> Iterator[ParsedRow]:
    # Split on "\n" only: str.splitlines() would also break on U+2028 inside JSON strings.
    for line_number, line in enumerate(io.StringIO(text, newline="\n"), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        try:
            decoded = json.loads(stripped)
        except json.JSONDecodeError as error:
            yield ParsedRow(line_number, None, f"line {line_number}: not valid JSON ({error})")
            continue
        if not isinstance(decoded, dict):
            kind = type(decoded).__name__ if decoded is not None else "null"
            yield ParsedRow(line_number, None, f"line {line_number}: expected a JSON object, got {kind}")
            continue
        if columns is not None:
            values, metadata = _row_values(columns, decoded.get)
            yield builder.build(line_number, values, metadata)
        else:
            yield _item_shaped(line_number, decoded, builder)


def _item_shaped(line_number: int, item: dict[str, Any], builder: _ItemBuilder) -> ParsedRow:
    if item.get("source") in (None, ""):
        item["source"] = builder.source
    problems = []
    created_at = item.get("created_at")
    if created_at == "":
        del item["created_at"]
    elif isinstance(created_at, str | int | float) and not isinstance(created_at, bool):
        problem = builder.add_created_at(item, created_at)
        if problem:
            problems.append(problem)
    rating = item.get("rating")
    if isinstance(rating, int | float | str) and not isinstance(rating, bool) and builder.rating_scale:
        problem = builder.add_rating(item, rating)
        if problem:
            problems.append(problem)
    if problems:
        return ParsedRow(line_number, None, f"line {line_number}: {'; '.join(problems)}")
    return ParsedRow(line_number, item, None)
