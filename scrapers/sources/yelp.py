"""Yelp review excerpts of a brand's businesses, from the Yelp Fusion (Places) API.

``GET {base}/v3/businesses/{id or alias}/reviews`` with a Bearer API key (``limit`` up to 50, ``offset``,
``sort_by=newest``, optional ``locale``) returns ``reviews``, ``total`` and ``possible_languages``. A run walks
the configured businesses in turn, each until it reaches a review already seen (a since-time per business),
and files every review under the business's brand location name.

Needs a Yelp Fusion API key (https://www.yelp.com/developers/v3/manage_app) and each business's Yelp id or
alias (the part after /biz/ in its Yelp URL).

Limits, plainly: Yelp gives API clients excerpts, not reviews. On the standard plans the endpoint returns at
most three reviews per business, each cut to about 160 characters and ending in '...' (every record says so
with ``metadata["excerpt"] = True``); more reviews need Yelp's enhanced plans. ``total`` counts every review on
Yelp, not what the API will return. Daily call limits depend on the plan. Yelp documents ``time_created`` as
Pacific time, for every business wherever it is. ``sort_by=newest`` is what makes runs incremental; a plan
that refuses it can use ``yelp_sort``, and then each run reads every excerpt again (storage drops repeats).
"""

from __future__ import annotations

import functools
from collections import Counter
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, ClassVar, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from scrapers.base import HttpSource, HttpSourceConfig
from scrapers.contract import Cursor, Page
from scrapers.cursors import newest_of, unseen, walk_index, walk_page
from scrapers.http import ErrorAction, MalformedResponseError, NotFoundError
from scrapers.parsing import Pick, RecordSpec, iso_datetime, lookup, stars, text
from scrapers.registry import register_source

YELP_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
ERROR_CODE_ACTIONS = {
    "BUSINESS_NOT_FOUND": ErrorAction.NOT_FOUND,
    "TOKEN_MISSING": ErrorAction.BAD_CREDENTIALS,
    "TOKEN_INVALID": ErrorAction.BAD_CREDENTIALS,
    "UNAUTHORIZED_ACCESS_TOKEN": ErrorAction.BAD_CREDENTIALS,
    "ACCESS_LIMIT_REACHED": ErrorAction.RATE_LIMITED,
    "TOO_MANY_REQUESTS_PER_SECOND": ErrorAction.RATE_LIMITED,
}
"""Yelp's error codes (``{"error": {"code", "description"}}``) that say more than their HTTP status."""


class YelpBusiness(BaseModel):
    """One business of the brand on Yelp, and the brand location name its reviews are filed under."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    business_id: str = Field(
        pattern=r"^[^/\s?#]+$", description="The Yelp business id or alias (after /biz/ in its Yelp URL)."
    )
    location: str = Field(min_length=1, max_length=200, description="The brand location name.")
    locale: str | None = Field(
        default=None,
        pattern=r"^[a-z]{2}_[A-Z]{2}$",
        description="Yelp locale for the excerpts, e.g. de_DE; it also sets the records' language.",
    )


class YelpConfig(HttpSourceConfig):
    """Which businesses, and the API key to read their review excerpts with."""

    api_key: SecretStr = Field(description="Yelp Fusion API key, sent as a Bearer token.")
    businesses: list[YelpBusiness] = Field(min_length=1, description="The brand's businesses on Yelp.")
    sort_by: Literal["newest", "yelp_sort"] = Field(
        default="newest", description="newest makes runs incremental; yelp_sort is Yelp's own order."
    )
    product: str | None = Field(default=None, description="Product name to file the reviews under.")
    page_size: int = Field(default=50, ge=1, le=50, description="Reviews per request (limit).")

    @field_validator("businesses")
    @classmethod
    def _distinct_businesses(cls, value: list[YelpBusiness]) -> list[YelpBusiness]:
        counts = Counter(item.business_id for item in value)
        repeated = [business_id for business_id, count in counts.items() if count > 1]
        if repeated:
            raise ValueError(f"businesses listed twice: {', '.join(sorted(repeated))}")
        return value


@functools.cache
def _pacific() -> tzinfo:
    try:
        return ZoneInfo("America/Los_Angeles")
    except ZoneInfoNotFoundError:  # no time zone database: standard time is the better half of the year
        return timezone(timedelta(hours=-8), "PST")


def pacific_time(value: Any) -> datetime:
    """Yelp's 'YYYY-MM-DD HH:MM:SS', Pacific time (PST or PDT by the date)."""
    try:
        local = datetime.strptime(str(value).strip(), YELP_TIME_FORMAT)
    except ValueError:
        raise ValueError(f"{value!r} is not a Yelp time (YYYY-MM-DD HH:MM:SS)") from None
    return local.replace(tzinfo=_pacific())


def _review_spec(*, business: YelpBusiness, product: str | None) -> RecordSpec:
    language = business.locale.split("_")[0] if business.locale else None
    return RecordSpec(
        external_id=Pick("id", convert=text),
        text=Pick("text", convert=text),
        created_at=Pick("time_created", convert=pacific_time),
        rating=Pick("rating", convert=stars),
        # The user id is a stable handle; names ('Dori G.') are not unique.
        author=Pick("user.id", "user.name"),
        location=lambda _raw: business.location,
        language=(lambda _raw: language) if language else None,
        url=Pick("url"),
        product=(lambda _raw: product) if product else None,
        metadata={
            "excerpt": lambda _raw: True,
            "business_id": lambda _raw: business.business_id,
            "locale": lambda _raw: business.locale,
        },
    )


@register_source
class YelpSource(HttpSource):
    """Yelp review excerpts of a brand's businesses, business by business, newest first."""

    kind: ClassVar[str] = "yelp.v1"
    config_model = YelpConfig
    channel: ClassVar[str] = "review_site"
    service_name: ClassVar[str] = "the Yelp Fusion API"
    default_base_url: ClassVar[str] = "https://api.yelp.com"
    config: YelpConfig

    def classify(self, response: httpx.Response) -> ErrorAction | None:
        try:
            code = lookup(response.json(), "error.code")
        except ValueError:
            return None
        return ERROR_CODE_ACTIONS.get(str(code)) if code else None

    def fetch_page(self, cursor: Cursor | None) -> Page:
        """One page of one business; the cursor names the business and offset, and a since per business."""
        state = dict(cursor or {})
        since_by_business: dict[str, str] = dict(state.get("since", {}))
        index = walk_index([item.business_id for item in self.config.businesses], state.get("business_id"))
        business = self.config.businesses[index]
        resuming = state.get("business_id") == business.business_id
        offset = int(state.get("offset", 0)) if resuming else 0
        newest: str | None = state.get("newest") if resuming else None
        in_time_order = self.config.sort_by == "newest"
        since = _parse_time(since_by_business.get(business.business_id)) if in_time_order else None

        reviews, total = self._reviews(business, offset)
        records, malformed = _review_spec(business=business, product=self.config.product).parse_all(
            reviews, where=f"{business.business_id}/offset={offset}/reviews"
        )
        fresh, reached_seen = unseen(records, since=since)
        newest = newest_of([record.created_at for record in fresh], newest)
        next_offset = offset + len(reviews)
        more_on_yelp = len(reviews) == self.config.page_size and (total is None or next_offset < total)
        return walk_page(
            records=fresh,
            malformed=malformed,
            key="business_id",
            targets=[item.business_id for item in self.config.businesses],
            index=index,
            since=since_by_business,
            newest=newest,
            position={"offset": next_offset} if more_on_yelp and not reached_seen else None,
        )

    def _reviews(self, business: YelpBusiness, offset: int) -> tuple[list[Any], int | None]:
        url = f"{self.base_url}/v3/businesses/{quote(business.business_id, safe='')}/reviews"
        params: dict[str, str | int] = {
            "limit": self.config.page_size,
            "offset": offset,
            "sort_by": self.config.sort_by,
        }
        if business.locale:
            params["locale"] = business.locale
        headers = {"Authorization": f"Bearer {self.config.api_key.get_secret_value()}"}
        try:
            body = self.http.get_json(url, params=params, headers=headers)
        except NotFoundError as exc:
            raise NotFoundError(
                f"{exc} (business {business.business_id!r}, {business.location})", status=exc.status
            ) from None
        reviews = body.get("reviews") if isinstance(body, dict) else None
        if not isinstance(reviews, list):
            raise MalformedResponseError(f"{self.service_name} answered {url} without a 'reviews' list")
        total = body.get("total")
        return reviews, total if isinstance(total, int) else None


def _parse_time(value: str | None) -> datetime | None:
    return iso_datetime(value) if value else None
