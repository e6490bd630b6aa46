"""Mastodon posts with given hashtags or search terms, from one Mastodon instance's REST API.

- hashtags: ``GET {instance}/api/v1/timelines/tag/{hashtag}`` (public on most instances; an access token
  is used when given, for instances that close their timelines to anonymous readers);
- search terms: ``GET {instance}/api/v2/search?q=...&type=statuses``, which needs an access token (a user
  token with the ``read:search`` scope) and, on Mastodon 4.2 and later, finds only posts whose authors
  opted into search, on an instance with full-text search configured.

Both list posts newest first, 40 a page. Each run walks back from the newest post (following the Link
header's ``rel="next"``, i.e. ``max_id``) to the newest post the previous run saw, which it passes as
``since_id`` (timelines) or ``min_id`` (search); a run killed halfway resumes at the saved ``max_id``. The
first run reads ``first_run_pages`` pages of history per hashtag or term. Boosts are skipped (they repeat a
post), as are posts without text. Instances allow about 300 requests per 5 minutes per token or address.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qs, quote, urlsplit

import httpx
from pydantic import Field, SecretStr, field_validator, model_validator

from scrapers.base import HttpSource, HttpSourceConfig
from scrapers.contract import Cursor, Page, SearchTerms
from scrapers.http import MalformedResponseError
from scrapers.parsing import Join, Pick, RecordSpec, html_to_text, iso_datetime, text
from scrapers.registry import register_source

PAGE_SIZE = 40
"""Mastodon's maximum for both endpoints."""
HASHTAG = re.compile(r"^\w+$")


class MastodonConfig(HttpSourceConfig):
    """Which instance, and which hashtags or terms to follow there."""

    base_url: str = Field(
        pattern=r"^https?://[^/\s]+/?$", description="The instance, e.g. https://mastodon.social."
    )
    hashtags: list[str] = Field(default=[], description="Hashtags, with or without '#'.")
    search_terms: SearchTerms = Field(default=[], description="Full-text search terms (need access_token).")
    access_token: SecretStr | None = Field(
        default=None, description="A user access token with read:statuses and read:search scopes."
    )
    local_only: bool = Field(
        default=False, description="Only this instance's own posts on hashtag timelines."
    )
    first_run_pages: int = Field(
        default=1, ge=1, le=100, description="Pages of history (40 posts each) the first run reads per query."
    )
    product: str | None = Field(default=None, description="Product name to file the posts under.")

    @field_validator("hashtags")
    @classmethod
    def _hashtags(cls, value: list[str]) -> list[str]:
        tags = [tag.strip().removeprefix("#") for tag in value]
        bad = [tag for tag in tags if not HASHTAG.match(tag)]
        if bad:
            raise ValueError(f"not hashtags: {', '.join(bad)}")
        return tags

    @model_validator(mode="after")
    def _something_to_follow(self) -> MastodonConfig:
        if not self.hashtags and not self.search_terms:
            raise ValueError("give at least one hashtag or search term")
        if self.search_terms and self.access_token is None:
            raise ValueError("search_terms need an access_token: Mastodon only searches for signed-in users")
        return self


@dataclass(frozen=True)
class Query:
    """One hashtag timeline or one search; ``key`` names its position in the cursor."""

    key: str
    path: str
    params: dict[str, str]
    lower_bound: str
    """The parameter that asks only for posts newer than an id: since_id (timelines) or min_id (search)."""

    @property
    def is_search(self) -> bool:
        return self.path.endswith("/search")


def queries_of(config: MastodonConfig) -> list[Query]:
    """Every query a run walks, in order."""
    timeline_params = {"local": "true"} if config.local_only else {}
    queries = [
        Query(
            key=f"#{tag.lower()}",
            path=f"/api/v1/timelines/tag/{quote(tag, safe='')}",
            params=timeline_params,
            lower_bound="since_id",
        )
        for tag in config.hashtags
    ]
    queries.extend(
        Query(
            key=f"search:{term}",
            path="/api/v2/search",
            params={"q": term, "type": "statuses", "resolve": "false"},
            lower_bound="min_id",
        )
        for term in config.search_terms
    )
    return queries


def _status_spec(product: str | None) -> RecordSpec:
    return RecordSpec(
        external_id=Pick("id", convert=text),
        # A content warning (spoiler_text) is the author's own summary of the post: keep it with the body.
        text=Join(Pick("spoiler_text"), Pick("content", convert=html_to_text)),
        created_at=Pick("created_at", convert=iso_datetime),
        author=Pick("account.acct"),
        language=Pick("language"),
        url=Pick("url", "uri"),
        product=(lambda _raw: product) if product else None,
        metadata={
            "uri": Pick("uri"),
            "account_id": Pick("account.id"),
            "account_url": Pick("account.url"),
            "in_reply_to_id": Pick("in_reply_to_id"),
            "replies_count": Pick("replies_count"),
            "reblogs_count": Pick("reblogs_count"),
            "favourites_count": Pick("favourites_count"),
            "hashtags": _hashtags_of,
            "application": Pick("application.name"),
            "sensitive": Pick("sensitive"),
        },
    )


def _hashtags_of(raw: Any) -> list[str] | None:
    tags = raw.get("tags") if isinstance(raw, dict) else None
    if not isinstance(tags, list):
        return None
    names = [str(tag["name"]) for tag in tags if isinstance(tag, dict) and tag.get("name")]
    return names or None


def _has_text(status: dict[str, Any]) -> bool:
    for field in ("content", "spoiler_text"):
        value = status.get(field)
        if isinstance(value, str) and html_to_text(value):
            return True
    return "content" not in status  # let the spec report a status that lacks its content entirely


@register_source
class MastodonSource(HttpSource):
    """Posts from hashtag timelines and searches on one Mastodon instance."""

    kind: ClassVar[str] = "mastodon.v1"
    config_model = MastodonConfig
    channel: ClassVar[str] = "social"
    service_name: ClassVar[str] = "the Mastodon instance"
    config: MastodonConfig

    def fetch_page(self, cursor: Cursor | None) -> Page:
        """One page of one query, newest first; the cursor walks the queries in order."""
        queries = queries_of(self.config)
        state = dict(cursor or {})
        since: dict[str, str] = dict(state.get("since", {}))
        index = int(state.get("query_index", 0))
        max_id: str | None = state.get("max_id")
        newest: str | None = state.get("newest")
        pages = int(state.get("pages", 0))
        if index >= len(queries):  # the configuration changed since the cursor was saved
            index, max_id, newest, pages = 0, None, None, 0
        query = queries[index]
        previous = since.get(query.key)

        params = {**query.params, "limit": str(PAGE_SIZE)}
        if previous:
            params[query.lower_bound] = previous
        if max_id:
            params["max_id"] = max_id
        response = self.http.get(f"{self.base_url}{query.path}", params=params, headers=self._headers())
        statuses = self._statuses_of(response, query)

        # Search bounds min_id by time, not by id: drop what the previous run already saw.
        unseen = [status for status in statuses if not _seen(status, previous)]
        reached_seen = len(unseen) < len(statuses)
        originals = [
            status
            for status in unseen
            if not (isinstance(status, dict) and (status.get("reblog") or not _has_text(status)))
        ]
        records, malformed = _status_spec(self.config.product).parse_all(originals, where=query.key)
        ids = [str(status["id"]) for status in unseen if isinstance(status, dict) and status.get("id")]
        for status_id in ids:
            if newest is None or _id_order(status_id) > _id_order(newest):
                newest = status_id
        pages += 1

        next_max_id = _next_max_id(response) or (min(ids, key=_id_order) if ids else None)
        first_run_done = previous is None and pages >= self.config.first_run_pages
        if statuses and not reached_seen and not first_run_done and next_max_id:
            next_state: Cursor = {"since": since, "query_index": index, "max_id": next_max_id, "pages": pages}
            if newest is not None:
                next_state["newest"] = newest
            return Page(records=records, cursor=next_state, done=False, malformed=malformed)

        if newest is not None:
            since[query.key] = newest
        if index + 1 < len(queries):
            return Page(
                records=records,
                cursor={"since": since, "query_index": index + 1},
                done=False,
                malformed=malformed,
            )
        return Page(records=records, cursor={"since": since}, done=True, malformed=malformed)

    def _headers(self) -> dict[str, str]:
        token = self.config.access_token
        return {"Authorization": f"Bearer {token.get_secret_value()}"} if token is not None else {}

    def _statuses_of(self, response: httpx.Response, query: Query) -> list[Any]:
        body = self.http.json_of(response)
        statuses: Any = body.get("statuses") if query.is_search and isinstance(body, dict) else body
        if not isinstance(statuses, list):
            raise MalformedResponseError(
                f"{self.service_name} answered {query.path} without a list of statuses"
            )
        return statuses


def _seen(status: Any, previous: str | None) -> bool:
    if previous is None or not isinstance(status, dict) or not status.get("id"):
        return False  # a status without an id is reported by the spec, not silently dropped
    return _id_order(status["id"]) <= _id_order(previous)


def _id_order(value: Any) -> tuple[int, str]:
    """Mastodon ids are decimal strings of growing length: compare by length, then digits."""
    as_text = str(value)
    return len(as_text), as_text


def _next_max_id(response: httpx.Response) -> str | None:
    link = response.links.get("next", {}).get("url")
    if not link:
        return None
    values = parse_qs(urlsplit(link).query).get("max_id")
    return values[0] if values else None
