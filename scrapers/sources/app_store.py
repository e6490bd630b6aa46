"""Apple App Store customer reviews, from Apple's public customer-reviews feed (JSON), per country.

``GET {base}/{country}/rss/customerreviews/page={n}/id={app_id}/sortby=mostrecent/json`` returns up to 50
reviews a page, newest first, and at most 10 pages (500 reviews) per country: Apple's own limit. A run walks
each country's pages until it reaches a review it has already seen, so every run after the first is short.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
from pydantic import Field, field_validator

from scrapers.base import HttpSource, HttpSourceConfig
from scrapers.contract import Cursor, Page
from scrapers.cursors import newest_of, unseen, walk_index, walk_page
from scrapers.http import ErrorAction, MalformedResponseError
from scrapers.parsing import Join, Pick, RecordSpec, iso_datetime, stars, text
from scrapers.registry import register_source

MAX_PAGES = 10


class AppStoreConfig(HttpSourceConfig):
    """Which app, in which App Store countries."""

    app_id: str = Field(
        pattern=r"^\d{5,12}$", description="The numeric App Store id (id123456789 in the URL)."
    )
    countries: list[str] = Field(default=["us"], min_length=1, description="Two-letter store country codes.")
    product: str | None = Field(default=None, description="Product name to file the reviews under.")

    @field_validator("countries")
    @classmethod
    def _country_codes(cls, value: list[str]) -> list[str]:
        codes = [code.strip().lower() for code in value]
        bad = [code for code in codes if len(code) != 2 or not code.isalpha()]
        if bad:
            raise ValueError(f"not two-letter country codes: {', '.join(bad)}")
        return codes


def _review_spec(*, country: str, product: str | None) -> RecordSpec:
    return RecordSpec(
        external_id=Pick("id.label", convert=text),
        text=Join(Pick("title.label"), Pick("content.label")),
        created_at=Pick("updated.label", convert=iso_datetime),
        rating=Pick("im:rating.label", convert=stars),
        author=Pick("author.name.label"),
        app_version=Pick("im:version.label", convert=text),
        url=Pick("author.uri.label"),
        product=(lambda _raw: product) if product else None,
        metadata={
            "country": lambda _raw: country,
            "title": Pick("title.label"),
            "vote_sum": Pick("im:voteSum.label"),
            "vote_count": Pick("im:voteCount.label"),
        },
    )


@register_source
class AppStoreSource(HttpSource):
    """Customer reviews of one app in one or more App Store countries."""

    kind: ClassVar[str] = "app_store.v1"
    config_model = AppStoreConfig
    channel: ClassVar[str] = "app_store"
    service_name: ClassVar[str] = "the App Store reviews feed"
    default_base_url: ClassVar[str] = "https://itunes.apple.com"
    config: AppStoreConfig

    def classify(self, response: httpx.Response) -> ErrorAction | None:
        # Apple answers an unknown app id with 400 or 404 (and an HTML page).
        if response.status_code in (400, 404):
            return ErrorAction.NOT_FOUND
        return None

    def fetch_page(self, cursor: Cursor | None) -> Page:
        """One page of one country; the cursor walks countries in order, then pages, newest first."""
        state = dict(cursor or {})
        since: dict[str, str] = dict(state.get("since", {}))
        countries = self.config.countries
        index = walk_index(countries, state.get("country"))
        country = countries[index]
        resuming = state.get("country") == country
        page_number = int(state.get("page", 1)) if resuming else 1
        newest: str | None = state.get("newest") if resuming else None

        url = (
            f"{self.base_url}/{country}/rss/customerreviews/page={page_number}/id={self.config.app_id}"
            "/sortby=mostrecent/json"
        )
        body = self.http.get_json(url)
        feed = body.get("feed") if isinstance(body, dict) else None
        if not isinstance(feed, dict):
            raise MalformedResponseError(f"{self.service_name} answered {url} without a 'feed' object")
        entries: Any = feed.get("entry", [])
        if isinstance(entries, dict):  # a page with one review has it as an object, not a list
            entries = [entries]
        if not isinstance(entries, list):
            raise MalformedResponseError(f"{self.service_name}: 'feed.entry' is not a list")
        # Older feeds start with an entry describing the app itself; it has no rating and no content.
        reviews = [entry for entry in entries if not _describes_the_app(entry)]
        records, malformed = _review_spec(country=country, product=self.config.product).parse_all(
            reviews, where=f"{country}/page={page_number}/feed.entry"
        )
        previous = since.get(country)
        fresh, reached_seen = unseen(records, since=iso_datetime(previous) if previous else None)
        newest = newest_of([record.created_at for record in fresh], newest)
        more = bool(entries) and not reached_seen and page_number < MAX_PAGES
        return walk_page(
            records=fresh,
            malformed=malformed,
            key="country",
            targets=countries,
            index=index,
            since=since,
            newest=newest,
            position={"page": page_number + 1} if more else None,
        )


def _describes_the_app(entry: Any) -> bool:
    return isinstance(entry, dict) and "im:name" in entry and "im:rating" not in entry
