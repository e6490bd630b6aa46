"""Survey exports (CSV, XLSX, JSON Lines) from a watched folder or from one URL.

Rows are read by ``scrapers.files``: Qualtrics, SurveyMonkey, Typeform and Google Forms exports are
recognised by their headers; any other layout needs a column mapping (``text=comment,created_at=date``).

Folder mode
    Files matching ``patterns`` in ``folder`` are read oldest first, in pages of ``chunk_rows`` rows. The
    cursor remembers each fully read file (name, size, mtime, SHA-256) and, while a file is being read, how
    many of its rows are stored, so a run killed mid-file resumes after the last stored chunk. A file whose
    content changed (new SHA-256) is read again; one that was only touched is skipped. Files modified less
    than ``settle_seconds`` ago are left for the next run, so half-copied exports are never read.

URL mode
    ``url`` is fetched with the polite HTTP client (robots.txt respected) as a conditional GET: the ETag and
    Last-Modified of the last read are in the cursor, and an unchanged export (304, or the same SHA-256) costs
    one request and stores nothing.

Each row with an id column (Qualtrics ResponseId, SurveyMonkey Respondent ID, Typeform #) keeps it as its
external id; a row without one gets ``<file name>#<hash of its content>``, so re-exporting a file with rows
in another order does not duplicate them (identical rows in one file collapse into one). A row without a
date takes the file's modification time. Nothing needs a key; the folder must be readable by the service.
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from pydantic import Field, field_validator, model_validator

from scrapers.base import HttpSource
from scrapers.contract import Cursor, Malformed, Page, Rating, RatingScale, Record, SourceConfig
from scrapers.files import ColumnMapping, FileFormatError, ParsedRow, parse_mapping, read_feedback_file
from scrapers.http import MalformedResponseError, NotFoundError, SourceError
from scrapers.parsing import iso_datetime
from scrapers.registry import register_source

SUPPORTED_PATTERNS = ["*.csv", "*.tsv", "*.xlsx", "*.jsonl", "*.ndjson"]
NOT_MODIFIED = 304


class SurveyFilesConfig(SourceConfig):
    """Where the exports are and how to read them."""

    folder: str | None = Field(default=None, description="A folder the service watches for exports.")
    url: str | None = Field(default=None, description="Or one export's http(s) URL, re-read when it changes.")
    patterns: list[str] = Field(
        default=SUPPORTED_PATTERNS, min_length=1, description="Glob patterns of the files to read."
    )
    recursive: bool = Field(default=False, description="Also read files in sub-folders.")
    mapping: str | None = Field(
        default=None,
        description="Column mapping for layouts that are not recognised, e.g. text=comment,created_at=date.",
    )
    rating_scale: RatingScale | None = Field(default=None, description="Scale of the mapped rating column.")
    default_timezone: str = Field(default="UTC", description="Zone of dates written without an offset.")
    date_format: str | None = Field(default=None, description="strptime format when dates are ambiguous.")
    encoding: str | None = Field(default=None, description="Text encoding; detected when not given.")
    sheet: str | None = Field(default=None, description="XLSX worksheet; the first one when not given.")
    settle_seconds: float = Field(
        default=60.0, ge=0, le=86_400, description="Leave files modified more recently than this."
    )
    chunk_rows: int = Field(default=500, ge=1, le=100_000, description="Rows per page.")
    max_file_mb: float = Field(
        default=200.0, gt=0, le=10_000, description="Larger files are reported, not read."
    )
    product: str | None = Field(default=None, description="Product for rows that name none.")
    location: str | None = Field(default=None, description="Location for rows that name none.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("url must start with http:// or https://")
        return value

    @field_validator("mapping")
    @classmethod
    def _readable_mapping(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_mapping(value)
            except FileFormatError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value.upper() not in {"UTC", "Z", "ETC/UTC"}:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"unknown time zone {value!r}; give an IANA name such as Europe/Berlin"
                ) from None
        return value

    @model_validator(mode="after")
    def _one_place(self) -> SurveyFilesConfig:
        if (self.folder is None) == (self.url is None):
            raise ValueError("give either folder or url")
        if (
            self.mapping is not None
            and parse_mapping(self.mapping).rating is not None
            and not self.rating_scale
        ):
            raise ValueError("the mapping has a rating column; give rating_scale (stars, nps, csat, ces)")
        return self

    def column_mapping(self) -> ColumnMapping | None:
        return parse_mapping(self.mapping) if self.mapping is not None else None


@dataclass(frozen=True)
class _Candidate:
    name: str
    path: Path
    size: int
    mtime: float


@dataclass
class _OpenFile:
    """Rows of the file being read, kept between the pages of one run."""

    key: tuple[str, str]  # (name, sha256)
    offset: int
    rows: Iterator[ParsedRow]


@register_source
class SurveyFilesSource(HttpSource):
    """Survey export files from a folder or a URL."""

    kind: ClassVar[str] = "survey_files.v1"
    config_model = SurveyFilesConfig
    channel: ClassVar[str] = "survey"
    service_name: ClassVar[str] = "the survey export server"
    respect_robots: ClassVar[bool] = True
    config: SurveyFilesConfig

    def __init__(self, config: SourceConfig, **options: Any) -> None:
        super().__init__(config, **options)
        self._open: _OpenFile | None = None
        self._download: tuple[str, bytes, datetime] | None = None  # (sha256, body, file time)

    def fetch_page(self, cursor: Cursor | None) -> Page:
        """One chunk of one file; the cursor says which files are read and where the current one stands."""
        if self.config.url is not None:
            return self._url_page(self.config.url, dict(cursor or {}))
        assert self.config.folder is not None  # the config validator guarantees one of the two
        return self._folder_page(Path(self.config.folder).expanduser(), dict(cursor or {}))

    # ------------------------------------------------------------------------------------------ folder

    def _folder_page(self, root: Path, state: Cursor) -> Page:
        if not root.is_dir():
            raise NotFoundError(
                f"the survey export folder {str(root)!r} does not exist or is not a folder; "
                "check the source's folder setting and that the service can read it"
            )
        present = self._matching_files(root)
        settled_before = self.wall_clock() - self.config.settle_seconds
        candidates = {name: item for name, item in present.items() if item.mtime <= settled_before}
        # Files deleted from the folder are forgotten; files still being written keep their entry.
        finished: dict[str, dict[str, Any]] = {
            name: entry for name, entry in dict(state.get("files", {})).items() if name in present
        }
        current: dict[str, Any] | None = state.get("current")
        data: bytes | None = None
        if current is not None:
            candidate = candidates.get(current["name"])
            if candidate is None:
                current = None
            elif not self._is_open(current, candidate):
                data = self._read(candidate)
                sha = hashlib.sha256(data).hexdigest()
                if sha != current["sha256"]:  # rewritten while we were reading it: start it over
                    current = {"name": candidate.name, **_file_entry(candidate, sha), "offset": 0}
        if current is None:
            found = self._next_pending(candidates, finished)
            if found is None:
                return Page(records=[], cursor={"files": finished}, done=True)
            candidate, data, sha = found
            current = {"name": candidate.name, **_file_entry(candidate, sha), "offset": 0}
        candidate = candidates[current["name"]]
        records, malformed, offset, exhausted = self._read_chunk(
            data,
            name=candidate.name,
            sha=current["sha256"],
            offset=int(current["offset"]),
            file_time=datetime.fromtimestamp(candidate.mtime, tz=UTC),
            url=None,
        )
        if exhausted:
            finished[candidate.name] = _file_entry(candidate, current["sha256"])
            next_state: Cursor = {"files": finished}
            more = any(_looks_changed(item, finished.get(name)) for name, item in candidates.items())
        else:
            next_state = {"files": finished, "current": {**current, "offset": offset}}
            more = True
        return Page(records=records, cursor=next_state, done=not more, malformed=malformed)

    def _is_open(self, current: Mapping[str, Any], candidate: _Candidate) -> bool:
        """Whether this run already has the file's rows open at the cursor's offset, unchanged on disk."""
        return (
            self._open is not None
            and self._open.key == (candidate.name, current["sha256"])
            and self._open.offset == current["offset"]
            and not _looks_changed(candidate, current)
        )

    def _matching_files(self, root: Path) -> dict[str, _Candidate]:
        """Files matching the patterns, oldest first; hidden files and Office lock files are left out."""
        walk = root.rglob("*") if self.config.recursive else root.glob("*")
        found = []
        for path in walk:
            if path.name.startswith((".", "~$")) or not any(
                fnmatch.fnmatch(path.name.lower(), pattern.lower()) for pattern in self.config.patterns
            ):
                continue
            try:
                if not path.is_file():
                    continue
                stat = path.stat()
            except OSError:
                continue
            name = path.relative_to(root).as_posix()
            found.append(_Candidate(name=name, path=path, size=stat.st_size, mtime=stat.st_mtime))
        found.sort(key=lambda candidate: (candidate.mtime, candidate.name))
        return {candidate.name: candidate for candidate in found}

    def _next_pending(
        self, candidates: Mapping[str, _Candidate], finished: dict[str, dict[str, Any]]
    ) -> tuple[_Candidate, bytes, str] | None:
        """The oldest new or changed file; files only touched get their new mtime recorded."""
        for candidate in candidates.values():
            known = finished.get(candidate.name)
            if not _looks_changed(candidate, known):
                continue
            data = self._read(candidate)
            sha = hashlib.sha256(data).hexdigest()
            if known is not None and known.get("sha256") == sha:
                finished[candidate.name] = _file_entry(candidate, sha)
                continue
            return candidate, data, sha
        return None

    def _read(self, candidate: _Candidate) -> bytes:
        try:
            return candidate.path.read_bytes()
        except OSError as exc:
            raise SourceError(
                f"could not read survey export {candidate.name!r}: {exc.strerror or exc}"
            ) from None

    # --------------------------------------------------------------------------------------------- URL

    def _url_page(self, url: str, state: Cursor) -> Page:
        offset = int(state.get("offset", 0))
        name = PurePosixPath(urlsplit(url).path).name or urlsplit(url).netloc
        if offset and self._download is not None and self._download[0] == state.get("sha256"):
            sha, data, file_time = self._download
        else:
            conditional = {} if offset else _conditional_headers(state)
            response = self.http.get(url, headers=conditional)
            if response.status_code == NOT_MODIFIED:
                return Page(records=[], cursor=_validators_only(state), done=True)
            data = response.content
            sha = hashlib.sha256(data).hexdigest()
            file_time = _last_modified(response.headers) or datetime.fromtimestamp(self.wall_clock(), tz=UTC)
            self._download = (sha, data, file_time)
            state = {
                **state,
                "etag": response.headers.get("etag"),
                "last_modified": response.headers.get("last-modified"),
            }
            if sha != state.get("sha256"):
                offset = 0
            elif not offset:  # served again without validators, but the same bytes
                return Page(records=[], cursor=_validators_only(state), done=True)
        try:
            records, malformed, offset, exhausted = self._read_chunk(
                data, name=name, sha=sha, offset=offset, file_time=file_time, url=url, strict=True
            )
        except FileFormatError as exc:
            raise MalformedResponseError(f"{url} is not a readable survey export: {exc}") from None
        next_state = _validators_only({**state, "sha256": sha})
        if exhausted:
            return Page(records=records, cursor=next_state, done=True, malformed=malformed)
        return Page(records=records, cursor={**next_state, "offset": offset}, done=False, malformed=malformed)

    # ------------------------------------------------------------------------------------------- rows

    def _read_chunk(
        self,
        data: bytes | None,
        *,
        name: str,
        sha: str,
        offset: int,
        file_time: datetime,
        url: str | None,
        strict: bool = False,
    ) -> tuple[list[Record], list[Malformed], int, bool]:
        """Rows ``offset`` to ``offset + chunk_rows`` as records; the new offset; whether the file is done.

        A file that cannot be read at all is one ``Malformed`` report (folder mode: the other files go on)
        or, with ``strict``, a ``FileFormatError``.
        """
        try:
            if data is not None and len(data) > self.config.max_file_mb * 1024 * 1024:
                raise FileFormatError(
                    f"the file is {len(data) / 1024 / 1024:.0f} MB, over max_file_mb ({self.config.max_file_mb:g})"
                )
            rows = self._rows(data, name=name, sha=sha, offset=offset)
        except FileFormatError as exc:
            if strict:
                raise
            return [], [Malformed(where=name, reason=str(exc))], offset, True
        chunk = list(itertools.islice(rows, self.config.chunk_rows))
        exhausted = len(chunk) < self.config.chunk_rows
        if not exhausted:
            try:
                following = next(rows)
            except StopIteration:
                exhausted = True
            else:
                rows = itertools.chain([following], rows)
        new_offset = offset + len(chunk)
        self._open = None if exhausted else _OpenFile(key=(name, sha), offset=new_offset, rows=rows)
        records: list[Record] = []
        malformed: list[Malformed] = []
        for row in chunk:
            where = f"{name}:{row.row_number}"
            if row.item is None:
                malformed.append(Malformed(where=where, reason=row.error or "unreadable row"))
                continue
            try:
                records.append(
                    record_from_item(
                        row.item,
                        file_name=name,
                        row_number=row.row_number,
                        file_time=file_time,
                        product=self.config.product,
                        location=self.config.location,
                        url=url,
                    )
                )
            except ValueError as exc:
                external_id = row.item.get("external_id")
                malformed.append(
                    Malformed(
                        where=where, reason=str(exc), external_id=str(external_id) if external_id else None
                    )
                )
        return records, malformed, new_offset, exhausted

    def _rows(self, data: bytes | None, *, name: str, sha: str, offset: int) -> Iterator[ParsedRow]:
        """The file's parsed rows from ``offset`` on, continuing the open file's iterator when it is there."""
        if self._open is not None and self._open.key == (name, sha) and self._open.offset == offset:
            return self._open.rows
        if data is None:
            raise FileFormatError("the file's rows are no longer open; it is read again on the next run")
        _decoded, rows = read_feedback_file(
            data,
            source=self.kind,
            filename=name,
            mapping=self.config.column_mapping(),
            encoding=self.config.encoding,
            rating_scale=self.config.rating_scale,
            default_timezone=self.config.default_timezone,
            date_format=self.config.date_format,
            sheet=self.config.sheet,
        )
        return itertools.islice(rows, offset, None)


def record_from_item(
    item: Mapping[str, Any],
    *,
    file_name: str,
    row_number: int,
    file_time: datetime,
    product: str | None = None,
    location: str | None = None,
    url: str | None = None,
) -> Record:
    """A record from one item dict of ``scrapers.files``; raises ``ValueError`` saying what is wrong."""
    text = item.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the feedback text is empty")
    created_at = item.get("created_at")
    metadata: dict[str, Any] = dict(item["metadata"]) if isinstance(item.get("metadata"), Mapping) else {}
    if created_at is None:
        created_at = file_time
        metadata["created_at_from"] = "file_time"
    elif isinstance(created_at, str):
        created_at = iso_datetime(created_at)
    if not isinstance(created_at, datetime):
        raise ValueError(f"created_at {created_at!r} is not a time")
    if created_at.utcoffset() is None:
        created_at = created_at.replace(tzinfo=UTC)
    rating = _rating(item.get("rating"))
    if item.get("channel"):
        metadata["channel"] = item["channel"]
    metadata.update({"file": file_name, "row": row_number})
    external_id = item.get("external_id")
    if external_id in (None, ""):
        external_id = f"{file_name}#{_content_hash(item)}"
    return Record(
        external_id=str(external_id),
        text=text.strip(),
        created_at=created_at,
        rating=rating,
        author=_text_or_none(item.get("author")),
        location=_text_or_none(item.get("location")) or location,
        product=_text_or_none(item.get("product")) or product,
        language=_text_or_none(item.get("language")),
        url=url,
        metadata=metadata,
    )


def _rating(value: Any) -> Rating | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"rating {value!r} has no scale; set the source's rating_scale")
    try:
        scale = RatingScale(str(value.get("scale")))
    except ValueError:
        raise ValueError(f"rating scale {value.get('scale')!r} is not one of stars, nps, csat, ces") from None
    number = value.get("value")
    if isinstance(number, bool) or not isinstance(number, int | float):
        raise ValueError(f"rating value {number!r} is not a number")
    return Rating(value=float(number), scale=scale)


def _content_hash(item: Mapping[str, Any]) -> str:
    """A hash of what the respondent gave, not of where the row sits in the file."""
    content = {key: value for key, value in item.items() if key != "source"}
    canonical = json.dumps(content, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _file_entry(candidate: _Candidate, sha: str) -> dict[str, Any]:
    return {"size": candidate.size, "mtime": candidate.mtime, "sha256": sha}


def _looks_changed(candidate: _Candidate, known: Mapping[str, Any] | None) -> bool:
    return known is None or known.get("size") != candidate.size or known.get("mtime") != candidate.mtime


def _conditional_headers(state: Cursor) -> dict[str, str]:
    headers = {}
    if state.get("etag"):
        headers["If-None-Match"] = str(state["etag"])
    if state.get("last_modified"):
        headers["If-Modified-Since"] = str(state["last_modified"])
    return headers


def _validators_only(state: Cursor) -> Cursor:
    return {key: state[key] for key in ("etag", "last_modified", "sha256") if state.get(key)}


def _last_modified(headers: httpx.Headers) -> datetime | None:
    value = headers.get("last-modified")
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
