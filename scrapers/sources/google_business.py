"""Google reviews of each location of a brand, from the Google Business Profile (My Business) API v4.

``GET {base}/v4/accounts/{accountId}/locations/{locationId}/reviews`` (``pageSize`` up to 50, ``pageToken``,
``orderBy=updateTime desc``) returns a location's reviews, most recently updated first, with
``nextPageToken`` for the next page. A run walks the configured locations in turn, each until it reaches a
review already seen (a since-time per location), and files every review under the location's brand name.

Needs OAuth 2 access to the ``https://www.googleapis.com/auth/business.manage`` scope for a Google account
that manages the locations, through a Google Cloud project that Google has approved for the Business Profile
APIs: best an OAuth client id and secret with a refresh token of that account (the source mints its own
access tokens), or an access token alone, which expires after an hour. The account and location ids are in
the Business Profile APIs' ``accounts.list`` and ``accounts.locations.list`` answers.

Limits: only locations the account manages; the API has no per-review URL or language; reviews with a star
rating but no comment are not feedback text and are skipped (logged, not reported as malformed); Google's
own translations ("(Translated by Google) ... (Original) ...") are split, keeping the customer's words.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from scrapers.contract import Cursor, Page, Rating
from scrapers.cursors import newest_of, walk_index, walk_page
from scrapers.http import (
    MalformedResponseError,
    NotFoundError,
    SourceError,
)
from scrapers.parsing import Pick, RecordSpec, iso_datetime, lookup, star_word, text
from scrapers.registry import register_source
from scrapers.sources._google import (
    GoogleApiSource,
    GoogleAuthConfig,
    get_google_json,
)

logger = logging.getLogger("cxmine.scrapers")

TRANSLATED_MARK = "(Translated by Google)"
ORIGINAL_MARK = "(Original)"


def _numeric_id(value: str, prefix: str) -> str:
    """'123' or the resource name 'accounts/123' as '123'."""
    number = value.strip().removeprefix(prefix)
    if not number.isdigit():
        raise ValueError(f"{value!r} is not a numeric id (or '{prefix}<digits>')")
    return number


class BusinessLocation(BaseModel):
    """One location of the brand: its Business Profile id and the name cxmine files its reviews under."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    location_id: str = Field(description="The location's numeric id (or 'locations/<id>').")
    name: str = Field(
        min_length=1, max_length=200, description="The brand location name, e.g. 'Berlin Mitte'."
    )

    @field_validator("location_id")
    @classmethod
    def _location_number(cls, value: str) -> str:
        return _numeric_id(value, "locations/")


class GoogleBusinessConfig(GoogleAuthConfig):
    """Which account and locations, and how to sign in to read their reviews."""

    account_id: str = Field(description="The Business Profile account's numeric id (or 'accounts/<id>').")
    locations: list[BusinessLocation] = Field(min_length=1, description="The brand's locations to collect.")
    product: str | None = Field(default=None, description="Product name to file the reviews under.")
    page_size: int = Field(default=50, ge=1, le=50, description="Reviews per request (pageSize).")

    @field_validator("account_id")
    @classmethod
    def _account_number(cls, value: str) -> str:
        return _numeric_id(value, "accounts/")

    @field_validator("locations")
    @classmethod
    def _distinct_locations(cls, value: list[BusinessLocation]) -> list[BusinessLocation]:
        counts = Counter(item.location_id for item in value)
        repeated = [location_id for location_id, count in counts.items() if count > 1]
        if repeated:
            raise ValueError(f"locations listed twice: {', '.join(sorted(repeated))}")
        return value


def split_google_translation(comment: str) -> tuple[str, str | None]:
    """The customer's own words and Google's translation, from a comment Google translated; else (comment, None)."""
    if ORIGINAL_MARK in comment:
        translated, _, original = comment.partition(ORIGINAL_MARK)
        translation = translated.replace(TRANSLATED_MARK, "", 1).strip()
        return original.strip(), translation or None
    if TRANSLATED_MARK in comment:
        original, _, translated = comment.partition(TRANSLATED_MARK)
        return original.strip(), translated.strip() or None
    return comment.strip(), None


def _customer_words(value: Any) -> str:
    return split_google_translation(text(value))[0]


def _google_translation(value: Any) -> str | None:
    return split_google_translation(text(value))[1]


def _star_rating(value: Any) -> Rating | None:
    return None if value == "STAR_RATING_UNSPECIFIED" else star_word(value)


def _reviewer(raw: Any) -> str | None:
    # Anonymous reviewers come as 'A Google User': not a handle of anyone.
    return None if lookup(raw, "reviewer.isAnonymous") else lookup(raw, "reviewer.displayName")


def _review_spec(*, location: BusinessLocation, product: str | None) -> RecordSpec:
    return RecordSpec(
        external_id=Pick("reviewId", convert=text),
        text=Pick("comment", convert=_customer_words),
        created_at=Pick("createTime", convert=iso_datetime),
        rating=Pick("starRating", convert=_star_rating),
        author=_reviewer,
        location=lambda _raw: location.name,
        product=(lambda _raw: product) if product else None,
        metadata={
            "location_id": lambda _raw: location.location_id,
            "review_name": Pick("name"),
            "updated_at": Pick("updateTime"),
            "translated_text": Pick("comment", convert=_google_translation),
            "reviewer_anonymous": Pick("reviewer.isAnonymous"),
            "owner_reply": Pick("reviewReply.comment"),
            "owner_reply_at": Pick("reviewReply.updateTime"),
        },
    )


@register_source
class GoogleBusinessSource(GoogleApiSource):
    """Google reviews of a brand's locations, location by location, newest update first."""

    kind: ClassVar[str] = "google_business.v1"
    config_model = GoogleBusinessConfig
    channel: ClassVar[str] = "maps"
    service_name: ClassVar[str] = "the Google Business Profile API"
    default_base_url: ClassVar[str] = "https://mybusiness.googleapis.com"
    config: GoogleBusinessConfig

    def fetch_page(self, cursor: Cursor | None) -> Page:
        """One page of one location; the cursor names the location and page token, and a since per location."""
        state = dict(cursor or {})
        since_by_location: dict[str, str] = dict(state.get("since", {}))
        index = walk_index([item.location_id for item in self.config.locations], state.get("location_id"))
        location = self.config.locations[index]
        resuming = state.get("location_id") == location.location_id
        page_token: str | None = state.get("page_token") if resuming else None
        newest: str | None = state.get("newest") if resuming else None
        since = _parse_time(since_by_location.get(location.location_id))

        try:
            reviews, next_token = self._reviews(location, page_token)
        except SourceError as exc:
            if page_token is None or exc.status != 400:
                raise
            logger.warning(
                "Google refused the saved page token; starting the location again from its newest reviews",
                extra={"location_id": location.location_id},
            )
            reviews, next_token = self._reviews(location, None)
        # Equal times are kept: storage drops the ones already stored by their review id.
        fresh = [review for review in reviews if not _updated_before(review, since)]
        newest = newest_of(
            [updated for review in fresh if (updated := _update_time(review)) is not None], newest
        )
        commented = [review for review in fresh if str(review.get("comment") or "").strip()]
        if len(commented) < len(fresh):
            logger.info(
                "skipped Google reviews with a rating and no comment",
                extra={"location_id": location.location_id, "skipped": len(fresh) - len(commented)},
            )
        records, malformed = _review_spec(location=location, product=self.config.product).parse_all(
            commented, where=f"locations/{location.location_id}/reviews"
        )

        return walk_page(
            records=records,
            malformed=malformed,
            key="location_id",
            targets=[item.location_id for item in self.config.locations],
            index=index,
            since=since_by_location,
            newest=newest,
            position={"page_token": next_token}
            if next_token and reviews and len(fresh) == len(reviews)
            else None,
        )

    def _reviews(self, location: BusinessLocation, page_token: str | None) -> tuple[list[Any], str | None]:
        url = f"{self.base_url}/v4/accounts/{self.config.account_id}/locations/{location.location_id}/reviews"
        params: dict[str, str | int] = {"pageSize": self.config.page_size, "orderBy": "updateTime desc"}
        if page_token:
            params["pageToken"] = page_token
        try:
            body = get_google_json(self.http, self._access, url, params)
        except NotFoundError as exc:
            raise NotFoundError(
                f"{exc} (location {location.name!r}, id {location.location_id}, "
                f"account {self.config.account_id})",
                status=exc.status,
            ) from None
        if not isinstance(body, dict):
            raise MalformedResponseError(f"{self.service_name} answered {url} with no JSON object")
        # Google leaves out empty lists: a location without reviews answers with totals only.
        reviews = body.get("reviews", [])
        if not isinstance(reviews, list):
            raise MalformedResponseError(f"{self.service_name}: 'reviews' is not a list")
        next_token = body.get("nextPageToken")
        return reviews, str(next_token) if next_token else None


def _update_time(review: Any) -> datetime | None:
    value = lookup(review, "updateTime") or lookup(review, "createTime")
    try:
        return iso_datetime(value)
    except ValueError:
        return None


def _updated_before(review: Any, since: datetime | None) -> bool:
    updated = _update_time(review)
    return since is not None and updated is not None and updated < since


def _parse_time(value: str | None) -> datetime | None:
    return iso_datetime(value) if value else None
