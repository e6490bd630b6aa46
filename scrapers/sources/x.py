"""Posts on X (formerly Twitter) that match a search, from the X API v2 recent-search endpoint.

``GET {base}/2/tweets/search/recent?query=...&since_id=...&next_token=...`` returns up to 100 posts a page
from the last 7 days, newest first, with each author expanded (``includes.users``). It needs an app
Bearer token on a paid X API plan (recent search is not in the free tier) and counts every post read
against the plan's monthly cap. The first run walks back through the 7-day window; every later run asks
only for posts newer than the newest one stored (``since_id``). A run stopped halfway resumes from X's
``next_token`` with the same ``since_id``. A ``since_id`` that has aged out of the 7-day window is dropped
and the whole window is read again. A 429 waits until ``x-rate-limit-reset`` or defers the run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx
from pydantic import Field, SecretStr, field_validator

from scrapers.base import HttpSource, HttpSourceConfig
from scrapers.contract import Cursor, Page
from scrapers.http import ErrorAction, MalformedResponseError, SourceError
from scrapers.parsing import Extract, Pick, RecordSpec, iso_datetime, text
from scrapers.registry import register_source

logger = logging.getLogger("cxmine.scrapers")

SEARCH_PATH = "/2/tweets/search/recent"
TWEET_FIELDS = "created_at,lang,author_id,public_metrics,conversation_id,note_tweet"
USER_FIELDS = "username,name,location"
UNDETERMINED_LANGUAGES = frozenset({"und", "zxx", "qam", "qct", "qht", "qme", "qst"})
"""X's codes for 'no language': undetermined, no linguistic content, mentions/cashtags/hashtags/media only."""


class XConfig(HttpSourceConfig):
    """Which posts to collect, with whose token."""

    bearer_token: SecretStr = Field(description="An X API app Bearer token (paid plan with recent search).")
    query: str = Field(
        min_length=1,
        max_length=4096,
        description="An X search query, e.g. '(acme OR @acme) lang:en'; up to 512 characters on Basic plans.",
    )
    exclude_retweets: bool = Field(
        default=True, description="Add '-is:retweet': a repost repeats text already collected."
    )
    max_results: int = Field(default=100, ge=10, le=100, description="Posts a page (X allows 10-100).")
    product: str | None = Field(default=None, description="Product name to file the posts under.")

    @field_validator("query")
    @classmethod
    def _strip(cls, value: str) -> str:
        stripped = value.strip()
        if not stripped:
            raise ValueError("query is empty")
        return stripped


def _language(value: Any) -> str | None:
    code = text(value)
    return None if code in UNDETERMINED_LANGUAGES else code


def _post_spec(*, users: Mapping[str, Mapping[str, Any]], product: str | None) -> RecordSpec:
    def author_field(name: str) -> Extract:
        def extract(raw: Any) -> Any:
            return users.get(str(raw.get("author_id")), {}).get(name) or None

        return extract

    def post_url(raw: Any) -> str:
        username = users.get(str(raw.get("author_id")), {}).get("username")
        return f"https://x.com/{username or 'i/web'}/status/{raw.get('id')}"

    return RecordSpec(
        external_id=Pick("id", convert=text),
        # Posts over 280 characters carry their full text in note_tweet; 'text' is then truncated.
        text=Pick("note_tweet.text", "text"),
        created_at=Pick("created_at", convert=iso_datetime),
        author=author_field("username"),
        location=author_field("location"),
        language=Pick("lang", convert=_language),
        url=post_url,
        product=(lambda _raw: product) if product else None,
        metadata={
            "author_id": Pick("author_id"),
            "author_name": author_field("name"),
            "conversation_id": Pick("conversation_id"),
            "like_count": Pick("public_metrics.like_count"),
            "reply_count": Pick("public_metrics.reply_count"),
            "repost_count": Pick("public_metrics.retweet_count"),
            "quote_count": Pick("public_metrics.quote_count"),
        },
    )


@register_source
class XSource(HttpSource):
    """Recent posts on X matching one search query."""

    kind: ClassVar[str] = "x.v1"
    config_model = XConfig
    channel: ClassVar[str] = "social"
    service_name: ClassVar[str] = "the X API"
    default_base_url: ClassVar[str] = "https://api.twitter.com"
    config: XConfig

    _rejected_parameters: frozenset[str] = frozenset()

    def classify(self, response: httpx.Response) -> ErrorAction | None:
        # X names the parameters it rejected in errors[].parameters; a stale since_id is recoverable.
        self._rejected_parameters = _rejected_parameters(response)
        return None

    @property
    def search_query(self) -> str:
        """The query as sent: reposts excluded unless the query itself says otherwise."""
        query = self.config.query
        if self.config.exclude_retweets and "is:retweet" not in query:
            query = f"{query} -is:retweet"
        return query

    def fetch_page(self, cursor: Cursor | None) -> Page:
        """One page of results; the cursor keeps the run's since_id, X's next_token and the newest id."""
        state = dict(cursor or {})
        since_id: str | None = state.get("since_id")
        next_token: str | None = state.get("next_token")
        newest_id: str | None = state.get("newest_id")

        params = {
            "query": self.search_query,
            "max_results": str(self.config.max_results),
            "tweet.fields": TWEET_FIELDS,
            "expansions": "author_id",
            "user.fields": USER_FIELDS,
        }
        if since_id:
            params["since_id"] = since_id
        if next_token:
            params["next_token"] = next_token
        headers = {"Authorization": f"Bearer {self.config.bearer_token.get_secret_value()}"}
        self._rejected_parameters = frozenset()
        try:
            body = self.http.get_json(f"{self.base_url}{SEARCH_PATH}", params=params, headers=headers)
        except SourceError as exc:
            if since_id and exc.status == 400 and "since_id" in self._rejected_parameters:
                # Recent search only accepts ids from the last 7 days: everything newer is the whole window.
                logger.info(
                    "since_id is older than the 7-day search window; reading the whole window",
                    extra={"service": self.service_name},
                )
                return self.fetch_page(None)
            raise

        if not isinstance(body, dict) or not isinstance(body.get("meta"), dict):
            raise MalformedResponseError(f"{self.service_name} answered the search without a 'meta' object")
        meta: dict[str, Any] = body["meta"]
        posts: Any = body.get("data", [])
        if not isinstance(posts, list):
            raise MalformedResponseError(f"{self.service_name}: 'data' is not a list of posts")
        users = _users_by_id(body.get("includes"))
        records, malformed = _post_spec(users=users, product=self.config.product).parse_all(
            posts, where="data"
        )
        # Pages run newest to oldest, so the first page's newest_id is the newest of the whole walk.
        newest_id = newest_id or meta.get("newest_id") or since_id

        token = meta.get("next_token")
        if isinstance(token, str) and token:
            next_state: Cursor = {"next_token": token}
            if since_id:
                next_state["since_id"] = since_id
            if newest_id:
                next_state["newest_id"] = newest_id
            return Page(records=records, cursor=next_state, done=False, malformed=malformed)
        return Page(
            records=records,
            cursor={"since_id": newest_id} if newest_id else {},
            done=True,
            malformed=malformed,
        )


def _users_by_id(includes: Any) -> dict[str, Mapping[str, Any]]:
    users = includes.get("users", []) if isinstance(includes, dict) else []
    if not isinstance(users, list):
        return {}
    return {str(user["id"]): user for user in users if isinstance(user, dict) and "id" in user}


def _rejected_parameters(response: httpx.Response) -> frozenset[str]:
    try:
        body = response.json()
    except ValueError:
        return frozenset()
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return frozenset()
    names: set[str] = set()
    for error in errors:
        parameters = error.get("parameters") if isinstance(error, dict) else None
        if isinstance(parameters, dict):
            names.update(str(name) for name in parameters)
    return frozenset(names)
