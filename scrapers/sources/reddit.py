"""Reddit posts and comments that mention a product, from Reddit's OAuth API with an app-only token.

The source asks ``POST {auth}/api/v1/access_token`` (``grant_type=client_credentials``, HTTP basic auth with
the app's client id and secret) for a bearer token, then reads listings from ``{base}``
(https://oauth.reddit.com), newest first, 100 items a page:

- search terms in given subreddits: ``/r/{subreddit}/search?q=...&restrict_sr=1&sort=new``;
- search terms across Reddit when no subreddit is given: ``/search?q=...&sort=new``;
- every new post of a subreddit when no term is given: ``/r/{subreddit}/new``;
- optionally the newest comments of each subreddit: ``/r/{subreddit}/comments`` (the API cannot search
  comments, so with search terms only comments containing one of them are kept).

It needs a Reddit app (reddit.com/prefs/apps, type 'script' or 'web app') and a unique, descriptive
User-Agent, as Reddit's API rules require. Reddit serves at most about 1,000 items of any listing, and
allows about 100 requests a minute per app (``X-Ratelimit-Remaining``/``X-Ratelimit-Reset``); the source
waits for the window to reset when it runs out. Each run walks every listing with ``after`` until it
reaches an item it has already seen, so later runs only read what is new.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
from pydantic import Field, SecretStr, field_validator, model_validator

from scrapers.base import HttpSource, HttpSourceConfig
from scrapers.contract import Cursor, Malformed, Page, Record, SearchTerms
from scrapers.http import (
    BadCredentialsError,
    ErrorAction,
    MalformedResponseError,
    NotFoundError,
    RateLimitedError,
)
from scrapers.parsing import Join, Pick, RecordSpec, epoch_seconds, text
from scrapers.registry import register_source

logger = logging.getLogger("cxmine.scrapers")

DEFAULT_USER_AGENT = "server:cxmine:0.1 (self-hosted customer-feedback collector)"
SUBREDDIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]{1,20}$")
INACCESSIBLE_REASONS = frozenset({"private", "banned", "quarantined", "gold_only", "gated"})
REMOVED_TEXTS = frozenset({"[deleted]", "[removed]"})
TOKEN_REFRESH_MARGIN_SECONDS = 60.0
PAGE_SIZE = 100


class RedditConfig(HttpSourceConfig):
    """Which subreddits and terms to follow, with which Reddit app."""

    client_id: str = Field(min_length=1, description="The Reddit app's client id (under its name).")
    client_secret: SecretStr = Field(description="The Reddit app's secret.")
    user_agent: str = Field(
        default=DEFAULT_USER_AGENT,
        min_length=10,
        description="Reddit wants '<platform>:<app id>:<version> (by /u/<your reddit username>)'.",
    )
    subreddits: list[str] = Field(default=[], description="Subreddit names, without 'r/'.")
    search_terms: SearchTerms = Field(default=[], description="Search terms (Reddit search syntax).")
    include_comments: bool = Field(default=False, description="Also collect each subreddit's new comments.")
    product: str | None = Field(default=None, description="Product name to file the posts under.")
    auth_base_url: str = Field(
        default="https://www.reddit.com", description="Where access tokens come from; override for a proxy."
    )

    @field_validator("subreddits")
    @classmethod
    def _subreddit_names(cls, value: list[str]) -> list[str]:
        names = [name.strip().removeprefix("/").removeprefix("r/").strip("/") for name in value]
        bad = [name for name in names if not SUBREDDIT_NAME.match(name)]
        if bad:
            raise ValueError(f"not subreddit names: {', '.join(bad)}")
        return names

    @model_validator(mode="after")
    def _something_to_follow(self) -> RedditConfig:
        if not self.subreddits and not self.search_terms:
            raise ValueError("give at least one subreddit or search term")
        if self.include_comments and not self.subreddits:
            raise ValueError("include_comments needs at least one subreddit")
        return self


@dataclass(frozen=True)
class Listing:
    """One Reddit listing the source walks: where it is, and what its items are."""

    key: str
    path: str
    kind: str
    """'t3' (posts) or 't1' (comments)."""
    subreddit: str | None = None
    params: dict[str, str] = field(default_factory=dict)


def listings_of(config: RedditConfig) -> list[Listing]:
    """Every listing a run walks, in order; ``key`` names each one's position in the cursor."""
    listings: list[Listing] = []
    for term in config.search_terms:
        if config.subreddits:
            listings.extend(
                Listing(
                    key=f"r/{subreddit}/search?q={term}",
                    path=f"/r/{subreddit}/search",
                    kind="t3",
                    subreddit=subreddit,
                    params={"q": term, "restrict_sr": "1", "sort": "new", "type": "link"},
                )
                for subreddit in config.subreddits
            )
        else:
            listings.append(
                Listing(
                    key=f"search?q={term}",
                    path="/search",
                    kind="t3",
                    params={"q": term, "sort": "new", "type": "link"},
                )
            )
    if not config.search_terms:
        listings.extend(
            Listing(key=f"r/{name}/new", path=f"/r/{name}/new", kind="t3", subreddit=name)
            for name in config.subreddits
        )
    if config.include_comments:
        listings.extend(
            Listing(key=f"r/{name}/comments", path=f"/r/{name}/comments", kind="t1", subreddit=name)
            for name in config.subreddits
        )
    return listings


def _author(value: Any) -> str | None:
    name = text(value)
    return None if name in REMOVED_TEXTS else name


def _body(value: Any) -> str | None:
    body = text(value)
    return None if body in REMOVED_TEXTS else body


def _permalink(value: Any) -> str:
    return f"https://www.reddit.com{text(value)}"


_COMMON_METADATA = {
    "fullname": Pick("name"),
    "subreddit": Pick("subreddit"),
    "score": Pick("score"),
    "author_flair": Pick("author_flair_text"),
}


def _item_spec(kind: str, product: str | None) -> RecordSpec:
    product_of = (lambda _raw: product) if product else None
    if kind == "t1":
        return RecordSpec(
            external_id=Pick("name", convert=text),
            text=Pick("body", convert=_body),
            created_at=Pick("created_utc", convert=epoch_seconds),
            author=Pick("author", convert=_author),
            url=Pick("permalink", convert=_permalink),
            product=product_of,
            metadata={
                **_COMMON_METADATA,
                "kind": lambda _raw: "comment",
                "post_id": Pick("link_id"),
                "post_title": Pick("link_title"),
                "parent_id": Pick("parent_id"),
            },
        )
    return RecordSpec(
        external_id=Pick("name", convert=text),
        text=Join(Pick("title"), Pick("selftext", convert=_body)),
        created_at=Pick("created_utc", convert=epoch_seconds),
        author=Pick("author", convert=_author),
        url=Pick("permalink", convert=_permalink),
        product=product_of,
        metadata={
            **_COMMON_METADATA,
            "kind": lambda _raw: "post",
            "title": Pick("title"),
            "flair": Pick("link_flair_text"),
            "num_comments": Pick("num_comments"),
            "upvote_ratio": Pick("upvote_ratio"),
            "link_url": Pick("url_overridden_by_dest"),
            "over_18": Pick("over_18"),
        },
    )


@register_source
class RedditSource(HttpSource):
    """Posts (and optionally comments) from subreddits and searches, newest first."""

    kind: ClassVar[str] = "reddit.v1"
    config_model = RedditConfig
    channel: ClassVar[str] = "social"
    service_name: ClassVar[str] = "Reddit"
    default_base_url: ClassVar[str] = "https://oauth.reddit.com"
    config: RedditConfig

    _access_token: str | None = None
    _token_expires_at: float = 0.0
    _error_reason: str | None = None

    def classify(self, response: httpx.Response) -> ErrorAction | None:
        # A private, banned or quarantined subreddit answers 403/404 with a 'reason': not a credentials fault.
        self._error_reason = _reddit_reason(response)
        if response.status_code in (403, 404) and self._error_reason in INACCESSIBLE_REASONS:
            return ErrorAction.NOT_FOUND
        return None

    def fetch_page(self, cursor: Cursor | None) -> Page:
        """One page of one listing; the cursor walks the listings in order, each back to the last item seen."""
        listings = listings_of(self.config)
        state = dict(cursor or {})
        since: dict[str, dict[str, Any]] = dict(state.get("since", {}))
        index = int(state.get("listing_index", 0))
        after: str | None = state.get("after")
        newest: dict[str, Any] | None = state.get("newest")
        if index >= len(listings):  # the configuration changed since the cursor was saved
            index, after, newest = 0, None, None
        listing = listings[index]

        params = {**listing.params, "limit": str(PAGE_SIZE), "raw_json": "1"}
        if after:
            params["after"] = after
        data = self._listing_data(listing, params)
        items, malformed = _items_of(data, listing)
        records, unreadable = _item_spec(listing.kind, self.config.product).parse_all(
            items, where=f"{listing.key}/data.children"
        )
        malformed.extend(unreadable)

        previous = since.get(listing.key)
        fresh = [record for record in records if not _already_seen(record, previous)]
        reached_seen = len(fresh) < len(records)
        for record in fresh:
            if newest is None or record.created_at.timestamp() > float(newest["created_utc"]):
                newest = {"created_utc": record.created_at.timestamp(), "name": record.external_id}
        kept = self._mentions(fresh) if listing.kind == "t1" else fresh

        next_after = data.get("after")
        if not reached_seen and isinstance(next_after, str) and next_after and items:
            next_state: Cursor = {"since": since, "listing_index": index, "after": next_after}
            if newest is not None:
                next_state["newest"] = newest
            return Page(records=kept, cursor=next_state, done=False, malformed=malformed)

        if newest is not None:
            since[listing.key] = newest
        if index + 1 < len(listings):
            return Page(
                records=kept,
                cursor={"since": since, "listing_index": index + 1},
                done=False,
                malformed=malformed,
            )
        return Page(records=kept, cursor={"since": since}, done=True, malformed=malformed)

    def _mentions(self, comments: list[Record]) -> list[Record]:
        """The comments that mention a search term (all of them when there are no terms)."""
        terms = [term.casefold() for term in self.config.search_terms]
        if not terms:
            return comments
        return [record for record in comments if any(term in record.text.casefold() for term in terms)]

    def _listing_data(self, listing: Listing, params: dict[str, str]) -> dict[str, Any]:
        url = f"{self.base_url}{listing.path}"
        try:
            response = self._authorized_get(url, params)
        except NotFoundError as exc:
            if listing.subreddit is None:
                raise
            raise NotFoundError(
                f"r/{listing.subreddit} cannot be read ({self._error_reason or f'HTTP {exc.status}'}): it is "
                "private, banned, quarantined or does not exist. Check the subreddit name.",
                status=exc.status,
            ) from None
        if listing.subreddit is not None and response.url.path.startswith("/subreddits/search"):
            # Reddit redirects an unknown subreddit to a subreddit search instead of answering 404.
            raise NotFoundError(f"r/{listing.subreddit} does not exist. Check the subreddit name.")
        self._respect_rate_budget(response)
        body = self.http.json_of(response)
        if (
            not isinstance(body, dict)
            or body.get("kind") != "Listing"
            or not isinstance(body.get("data"), dict)
        ):
            raise MalformedResponseError(
                f"Reddit answered {listing.path} with something that is not a Listing"
            )
        data: dict[str, Any] = body["data"]
        if not isinstance(data.get("children"), list):
            raise MalformedResponseError(f"Reddit: 'data.children' of {listing.path} is not a list")
        return data

    def _authorized_get(self, url: str, params: dict[str, str]) -> httpx.Response:
        headers = self._headers()
        try:
            return self.http.get(url, params=params, headers=headers)
        except BadCredentialsError as exc:
            if exc.status != 401:
                raise
        self._access_token = None  # expired or revoked: one fresh token, then a 401 is final
        return self.http.get(url, params=params, headers=self._headers())

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"bearer {self._token()}", "User-Agent": self.config.user_agent}

    def _token(self) -> str:
        if self._access_token is not None and self.http.clock() < self._token_expires_at:
            return self._access_token
        try:
            response = self.http.request(
                "POST",
                f"{self.config.auth_base_url.rstrip('/')}/api/v1/access_token",
                data={"grant_type": "client_credentials"},
                auth=(self.config.client_id, self.config.client_secret.get_secret_value()),
                headers={"User-Agent": self.config.user_agent},
            )
        except BadCredentialsError as exc:
            raise BadCredentialsError(
                f"Reddit refused the app credentials (HTTP {exc.status}) when asked for an access token. "
                "Check client_id and client_secret at reddit.com/prefs/apps.",
                status=exc.status,
            ) from None
        body = self.http.json_of(response)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            error = body.get("error") if isinstance(body, dict) else None
            raise BadCredentialsError(
                f"Reddit issued no access token ({error or 'no access_token in its answer'}). "
                "Check client_id and client_secret, and that the app is of type 'script' or 'web app'."
            )
        expires_in = body.get("expires_in", 3600)
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 3600.0
        self._access_token = token
        self._token_expires_at = self.http.clock() + max(0.0, lifetime - TOKEN_REFRESH_MARGIN_SECONDS)
        return token

    def _respect_rate_budget(self, response: httpx.Response) -> None:
        """Wait for Reddit's rate window to reset when this response used up the last request in it."""
        remaining = _number(response.headers.get("x-ratelimit-remaining"))
        reset = _number(response.headers.get("x-ratelimit-reset"))
        if remaining is None or reset is None or remaining >= 1:
            return
        if reset > self.http.policy.max_wait_seconds:
            raise RateLimitedError(
                f"Reddit's request budget is used up; it resets in {reset:g} s", retry_after=reset
            )
        logger.info("Reddit request budget used up; waiting", extra={"service": "Reddit", "wait_s": reset})
        self.http.sleep(reset)


def _items_of(data: dict[str, Any], listing: Listing) -> tuple[list[dict[str, Any]], list[Malformed]]:
    """The listing's items of the listing's kind (deleted comments dropped), and reports for broken ones."""
    items: list[dict[str, Any]] = []
    malformed: list[Malformed] = []
    for position, child in enumerate(data["children"]):
        if not isinstance(child, dict) or not isinstance(child.get("data"), dict):
            malformed.append(
                Malformed(where=f"{listing.key}/data.children[{position}]", reason="not a Reddit thing")
            )
            continue
        if child.get("kind") != listing.kind:
            continue
        item: dict[str, Any] = child["data"]
        if listing.kind == "t1" and item.get("body") in REMOVED_TEXTS:
            continue
        items.append(item)
    return items, malformed


def _already_seen(record: Record, previous: dict[str, Any] | None) -> bool:
    if previous is None:
        return False
    if record.external_id == previous.get("name"):
        return True
    return record.created_at.timestamp() < float(previous["created_utc"])


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _reddit_reason(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    reason = body.get("reason") if isinstance(body, dict) else None
    return reason if isinstance(reason, str) else None
