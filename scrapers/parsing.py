"""Declarative record parsing: a source says which path of its payload feeds which record field.

    APP_STORE_REVIEW = RecordSpec(
        external_id=Pick("id.label"),
        text=Join(Pick("title.label"), Pick("content.label")),
        created_at=Pick("updated.label", convert=iso_datetime),
        rating=Pick("im:rating.label", convert=stars),
        author=Pick("author.name.label"),
    )
    records, malformed = APP_STORE_REVIEW.parse_all(entries, where="feed.entry")

Fetching stays in the source; a record that cannot be read becomes a ``Malformed`` report and the rest of
the page is kept.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

from scrapers.contract import Malformed, Rating, RatingScale, Record


class MalformedRecordError(ValueError):
    """One record cannot be read; the message says which field and why."""


Extract = Callable[[Any], Any]
"""Anything that takes one payload item and returns a field's value (None when absent)."""


_MISSING = object()


def lookup(raw: Any, path: str) -> Any:
    """The value at a dotted path ('author.name.label', 'comments.0.userComment.text'), or None."""
    value = raw
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part, _MISSING)
        elif isinstance(value, list | tuple) and part.lstrip("-").isdigit():
            index = int(part)
            value = value[index] if -len(value) <= index < len(value) else _MISSING
        else:
            value = _MISSING
        if value is _MISSING or value is None:
            return None
    return value


@dataclass(frozen=True)
class Pick:
    """The first path with a non-empty value, converted; None when none has one."""

    paths: tuple[str, ...]
    convert: Callable[[Any], Any] | None = None

    def __init__(self, *paths: str, convert: Callable[[Any], Any] | None = None) -> None:
        object.__setattr__(self, "paths", paths)
        object.__setattr__(self, "convert", convert)

    def __call__(self, raw: Any) -> Any:
        for path in self.paths:
            value = lookup(raw, path)
            if value is not None and value != "":
                return self.convert(value) if self.convert else value
        return None


@dataclass(frozen=True)
class Join:
    """Several extracted strings joined (a review's title and body), skipping the empty ones."""

    parts: tuple[Extract, ...]
    separator: str = "\n"

    def __init__(self, *parts: Extract, separator: str = "\n") -> None:
        object.__setattr__(self, "parts", parts)
        object.__setattr__(self, "separator", separator)

    def __call__(self, raw: Any) -> str | None:
        texts = [str(value).strip() for part in self.parts if (value := part(raw)) is not None]
        texts = [text for text in texts if text]
        return self.separator.join(texts) or None


@dataclass(frozen=True)
class Const:
    """A fixed value (a product name from the source's config)."""

    value: Any

    def __call__(self, raw: Any) -> Any:
        return self.value


@dataclass(frozen=True)
class RecordSpec:
    """Where each record field comes from in one payload item."""

    external_id: Extract
    text: Extract
    created_at: Extract
    rating: Extract | None = None
    author: Extract | None = None
    location: Extract | None = None
    product: Extract | None = None
    app_version: Extract | None = None
    language: Extract | None = None
    url: Extract | None = None
    touchpoint: Extract | None = None
    metadata: Mapping[str, Extract] = field(default_factory=dict)

    def parse(self, raw: Any) -> Record:
        """One record, or ``MalformedRecordError`` naming the field that failed."""
        values: dict[str, Any] = {}
        for name in (
            "external_id",
            "text",
            "created_at",
            "rating",
            "author",
            "location",
            "product",
            "app_version",
            "language",
            "url",
            "touchpoint",
        ):
            extract = getattr(self, name)
            if extract is None:
                continue
            try:
                values[name] = extract(raw)
            except (ValueError, TypeError, KeyError) as exc:
                raise MalformedRecordError(f"{name}: {exc}") from None
        for name in ("external_id", "text", "created_at"):
            if values.get(name) in (None, ""):
                raise MalformedRecordError(f"{name} is missing")
        values["external_id"] = str(values["external_id"])
        if not isinstance(values["created_at"], datetime):
            raise MalformedRecordError(f"created_at: {values['created_at']!r} is not a time")
        if not isinstance(values["text"], str) or not values["text"].strip():
            raise MalformedRecordError("text is empty")
        metadata: dict[str, Any] = {}
        for key, extract in self.metadata.items():
            try:
                value = extract(raw)
            except (ValueError, TypeError, KeyError):
                value = None
            if value is not None:
                metadata[key] = value
        try:
            return Record(
                **{key: value for key, value in values.items() if value is not None}, metadata=metadata
            )
        except (ValueError, TypeError) as exc:
            raise MalformedRecordError(str(exc)) from None

    def parse_all(self, items: Iterable[Any], *, where: str) -> tuple[list[Record], list[Malformed]]:
        """Every readable record, and a report for each one that is not."""
        records: list[Record] = []
        malformed: list[Malformed] = []
        for index, raw in enumerate(items):
            try:
                records.append(self.parse(raw))
            except MalformedRecordError as exc:
                external_id = _safe(self.external_id, raw)
                malformed.append(
                    Malformed(
                        where=f"{where}[{index}]",
                        reason=str(exc),
                        external_id=str(external_id) if external_id is not None else None,
                    )
                )
        return records, malformed


def _safe(extract: Extract, raw: Any) -> Any:
    try:
        return extract(raw)
    except Exception:  # a report must not fail on the record it reports
        return None


# ------------------------------------------------------------------------------------------- converters


def iso_datetime(value: Any) -> datetime:
    """An ISO 8601 time ('2024-05-01T10:00:00-07:00', '...Z'); one without an offset is taken as UTC."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an ISO 8601 time")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 time") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def epoch_seconds(value: Any) -> datetime:
    """A Unix time in seconds (int, float or digits)."""
    try:
        return datetime.fromtimestamp(float(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise ValueError(f"{value!r} is not a Unix time") from None


def rating_on(
    scale: RatingScale, *, low: float | None = None, high: float | None = None
) -> Callable[[Any], Rating]:
    """A converter to a rating on ``scale``; ``low``/``high`` rescale linearly from the source's own range."""
    scale_low, scale_high = scale.bounds

    def convert(value: Any) -> Rating:
        number = float(value)
        if low is not None and high is not None:
            number = scale_low + (number - low) * (scale_high - scale_low) / (high - low)
        return Rating(value=number, scale=scale)

    return convert


stars = rating_on(RatingScale.STARS)
"""A 1-5 star rating (digits or a number)."""

_STAR_WORDS = {"ONE": 1, "TWO": 2, "THREE": 3, "FOUR": 4, "FIVE": 5}


def star_word(value: Any) -> Rating:
    """Google's 'ONE'..'FIVE' star ratings."""
    number = _STAR_WORDS.get(str(value).upper())
    if number is None:
        raise ValueError(f"{value!r} is not a star rating")
    return Rating(value=float(number), scale=RatingScale.STARS)


class _TextExtractor(HTMLParser):
    _BLOCKS = frozenset({"p", "br", "div", "li", "tr", "h1", "h2", "h3", "h4", "blockquote"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


_BLANK_LINES = re.compile(r"\n\s*\n+")
_SPACES = re.compile(r"[ \t\r\f\v]+")


def html_to_text(value: Any) -> str:
    """Visible text of an HTML fragment (Mastodon statuses, feed summaries), paragraphs kept as lines."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not text")
    if "<" not in value and "&" not in value:
        return value.strip()
    parser = _TextExtractor()
    parser.feed(value)
    parser.close()
    text = html.unescape("".join(parser.parts))
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def text(value: Any) -> str:
    """A string, stripped; numbers become their digits."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{value!r} is not text")
    return str(value).strip()
