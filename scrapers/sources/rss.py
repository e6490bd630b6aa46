"""Entries of RSS 2.0, RSS 1.0 and Atom feeds: news, blogs, forums, Google Alerts feeds.

Each configured feed URL is fetched with a conditional GET (``If-None-Match``/``If-Modified-Since`` from the
previous run), so an unchanged feed costs one short 304 answer, and parsed with ``feedparser``. A feed only
shows its latest entries (often 10-50), so a source that runs less often than the feed fills up misses the
entries that scrolled off in between. The cursor keeps a short hash of every entry id of each feed's last
version, and only entries that were not in it are returned: entries that appear late with an older date are
not lost, as a newest-date cursor would lose them. Feeds are web pages to the site that serves them:
robots.txt is honoured. Nothing is needed but the URLs.
"""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import feedparser
from pydantic import Field, field_validator

from scrapers.base import HttpSource, HttpSourceConfig
from scrapers.contract import Cursor, Malformed, Page, Record
from scrapers.http import MalformedResponseError, NotFoundError
from scrapers.parsing import Join, Pick, RecordSpec, html_to_text, text
from scrapers.registry import register_source

NOT_MODIFIED = 304
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.5"
)


class RssConfig(HttpSourceConfig):
    """Which feeds to read."""

    feed_urls: list[str] = Field(min_length=1, description="Feed URLs (RSS 2.0, RSS 1.0 or Atom).")
    language: str | None = Field(
        default=None, description="Language of the entries when the feeds do not say (e.g. 'de')."
    )
    product: str | None = Field(default=None, description="Product name to file the entries under.")

    @field_validator("feed_urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        urls = [url.strip() for url in value]
        bad = [
            url for url in urls if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc
        ]
        if bad:
            raise ValueError(f"not http(s) URLs: {', '.join(bad)}")
        if len(set(urls)) != len(urls):
            raise ValueError("a feed URL is listed twice")
        return urls


def entry_hash(external_id: str) -> str:
    """A short, stable stand-in for an entry id in the cursor (feed ids are often long URLs)."""
    return hashlib.sha256(external_id.encode()).hexdigest()[:16]


def _entry_ids(entries: Any) -> list[str]:
    """The ids of a feed's entries, as the records' external ids spell them."""
    extract = Pick("id", "link")
    ids = [extract(entry) for entry in entries]
    return [
        str(entry_id).strip() for entry_id in ids if isinstance(entry_id, str | int) and str(entry_id).strip()
    ]


def struct_time_utc(value: Any) -> datetime:
    """feedparser's parsed dates (time.struct_time, always UTC) as aware datetimes."""
    try:
        year, month, day, hour, minute, second = value[:6]
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a time") from None


def _entry_body(raw: Any) -> str | None:
    """The entry's content (or summary) as text, unless it only repeats the title."""
    body = Pick("content.0.value", "summary", convert=html_to_text)(raw)
    title = Pick("title", convert=html_to_text)(raw)
    return None if body and title and body == title else body


def _entry_url(raw: Any) -> str | None:
    """The entry's link; a Google Alerts redirect (google.com/url?url=...) becomes the page it points to."""
    link = Pick("link")(raw)
    if not isinstance(link, str):
        return None
    parts = urlsplit(link)
    if parts.netloc.endswith("google.com") and parts.path == "/url":
        target = parse_qs(parts.query).get("url")
        if target:
            return target[0]
    return link


def _tags(raw: Any) -> list[str] | None:
    tags = raw.get("tags") if isinstance(raw, dict) else None
    if not isinstance(tags, list):
        return None
    terms = [str(tag["term"]) for tag in tags if isinstance(tag, dict) and tag.get("term")]
    return terms or None


def _entry_spec(
    *, feed_url: str, feed: dict[str, Any], language: str | None, product: str | None
) -> RecordSpec:
    feed_language = Pick("language")(feed) or language
    feed_updated = Pick("updated_parsed", convert=struct_time_utc)(feed)
    entry_time = Pick("published_parsed", "updated_parsed", "created_parsed", convert=struct_time_utc)
    entry_language = Pick("content.0.language", "summary_detail.language", "title_detail.language")

    def created_at(raw: Any) -> Any:
        return entry_time(raw) or feed_updated

    def language_of(raw: Any) -> Any:
        return entry_language(raw) or feed_language

    return RecordSpec(
        external_id=Pick("id", "link", convert=text),
        text=Join(Pick("title", convert=html_to_text), _entry_body),
        created_at=created_at,
        author=Pick("author", "author_detail.name"),
        language=language_of,
        url=_entry_url,
        product=(lambda _raw: product) if product else None,
        metadata={
            "feed_url": lambda _raw: feed_url,
            "feed_title": lambda _raw: feed.get("title"),
            "title": Pick("title", convert=html_to_text),
            "tags": _tags,
            "comments_url": Pick("comments"),
            "source": Pick("source.title"),
        },
    )


@register_source
class RssSource(HttpSource):
    """Entries of one or more RSS or Atom feeds."""

    kind: ClassVar[str] = "rss.v1"
    config_model = RssConfig
    channel: ClassVar[str] = "web"
    service_name: ClassVar[str] = "the feed's site"
    respect_robots: ClassVar[bool] = True
    config: RssConfig

    def fetch_page(self, cursor: Cursor | None) -> Page:
        """One feed; the cursor walks the feeds in order and keeps each one's validators and newest entry."""
        state = dict(cursor or {})
        feeds: dict[str, dict[str, Any]] = {url: dict(seen) for url, seen in state.get("feeds", {}).items()}
        index = int(state.get("feed_index", 0))
        if index >= len(self.config.feed_urls):  # the configuration changed since the cursor was saved
            index = 0
        url = self.config.feed_urls[index]
        seen = feeds.get(url, {})

        records: list[Record] = []
        malformed: list[Malformed] = []
        parsed = self._fetch(url, seen)
        if parsed is not None:
            document, validators = parsed
            feed: dict[str, Any] = document.get("feed", {})
            spec = _entry_spec(
                feed_url=url, feed=feed, language=self.config.language, product=self.config.product
            )
            records, malformed = spec.parse_all(document.get("entries", []), where=f"{url} entries")
            previous = set(seen.get("ids", []))
            records = [record for record in records if entry_hash(record.external_id) not in previous]
            # An unreadable entry is reported once, not again each time the feed changes around it.
            malformed = [
                report
                for report in malformed
                if report.external_id is None or entry_hash(report.external_id) not in previous
            ]
            current = {entry_hash(entry_id) for entry_id in _entry_ids(document.get("entries", []))}
            feeds[url] = {**validators, "ids": sorted(current)}

        if index + 1 < len(self.config.feed_urls):
            return Page(
                records=records,
                cursor={"feeds": feeds, "feed_index": index + 1},
                done=False,
                malformed=malformed,
            )
        return Page(records=records, cursor={"feeds": feeds}, done=True, malformed=malformed)

    def _fetch(self, url: str, seen: dict[str, Any]) -> tuple[Any, dict[str, str]] | None:
        """The parsed feed and its new cache validators, or None when it has not changed since last time."""
        headers = {"Accept": ACCEPT}
        if "etag" in seen:
            headers["If-None-Match"] = seen["etag"]
        if "last_modified" in seen:
            headers["If-Modified-Since"] = seen["last_modified"]
        try:
            response = self.http.get(url, headers=headers)
        except NotFoundError as exc:
            raise NotFoundError(
                f"there is no feed at {url} (HTTP {exc.status}). Check the feed URL.", status=exc.status
            ) from None
        if response.status_code == NOT_MODIFIED:
            return None
        document = feedparser.parse(
            io.BytesIO(response.content),
            response_headers={
                "content-type": response.headers.get("content-type", ""),
                "content-location": str(response.url),
            },
            resolve_relative_uris=True,
        )
        if not document.get("version") and not document.get("entries"):
            problem = document.get("bozo_exception")
            raise MalformedResponseError(
                f"{url} is not an RSS or Atom feed" + (f" ({problem})" if problem else "")
            )
        validators = {}
        if etag := response.headers.get("etag"):
            validators["etag"] = etag
        if last_modified := response.headers.get("last-modified"):
            validators["last_modified"] = last_modified
        return document, validators
