"""Trustpilot service reviews of one business unit, from Trustpilot's public Business Units API.

``GET {base}/v1/business-units/{businessUnitId}/reviews`` with the ``apikey`` header (``perPage`` up to
100, ``page``, ``orderBy=createdat.desc``, optional ``language`` filters) returns the newest reviews first and
a ``links`` list whose ``next-page`` entry says there is more. A run walks the pages until it reaches a review
it has already seen, so every run after the first is short.

Needs the API key of a Trustpilot app (from the Trustpilot Business account's API settings) and the
business unit id (``GET /v1/business-units/find?name=example.com`` returns it). Public reviews only: no
consumer e-mail or order reference (those need the private, OAuth-only endpoint). Product reviews are a
different API. Trustpilot rate-limits API keys; a 429 is waited out or defers the run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pydantic import Field, SecretStr, field_validator

from scrapers.base import HttpSource, HttpSourceConfig
from scrapers.contract import Cursor, Page
from scrapers.cursors import listing_page, newest_of, unseen
from scrapers.http import MalformedResponseError
from scrapers.parsing import Join, Pick, RecordSpec, iso_datetime, stars, text
from scrapers.registry import register_source

REVIEW_PAGE_URL = "https://www.trustpilot.com/reviews/{review_id}"


class TrustpilotConfig(HttpSourceConfig):
    """Which business unit, and the API key to read its reviews with."""

    business_unit_id: str = Field(
        pattern=r"^[0-9a-fA-F]{24}$",
        description="The 24-character business unit id (GET /v1/business-units/find?name=<domain>).",
    )
    api_key: SecretStr = Field(description="The API key of your Trustpilot app, sent as the apikey header.")
    languages: list[str] = Field(
        default=[], description="Only reviews in these languages (ISO 639-1 codes); empty: every language."
    )
    product: str | None = Field(default=None, description="Product name to file the reviews under.")
    location: str | None = Field(
        default=None, description="Brand location for reviews that name none of the business's locations."
    )
    page_size: int = Field(default=100, ge=1, le=100, description="Reviews per request (perPage).")

    @field_validator("languages")
    @classmethod
    def _language_codes(cls, value: list[str]) -> list[str]:
        codes = [code.strip().lower() for code in value]
        bad = [code for code in codes if not (2 <= len(code) <= 3 and code.isalpha())]
        if bad:
            raise ValueError(f"not ISO 639-1 language codes: {', '.join(bad)}")
        return codes


def _review_spec(*, product: str | None, default_location: str | None) -> RecordSpec:
    return RecordSpec(
        external_id=Pick("id", convert=text),
        text=Join(Pick("title"), Pick("text")),
        created_at=Pick("createdAt", convert=iso_datetime),
        rating=Pick("stars", convert=stars),
        # The consumer id is a stable handle; display names ('John D.') are not unique.
        author=Pick("consumer.id", "consumer.displayName"),
        location=lambda raw: Pick("location.name")(raw) or default_location,
        language=Pick("language", convert=text),
        url=lambda raw: REVIEW_PAGE_URL.format(review_id=raw["id"]),
        product=(lambda _raw: product) if product else None,
        metadata={
            "title": Pick("title"),
            "consumer_location": Pick("consumer.displayLocation"),
            "consumer_review_count": Pick("consumer.numberOfReviews"),
            "experienced_at": Pick("experiencedAt"),
            "updated_at": Pick("updatedAt"),
            "is_verified": Pick("isVerified"),
            "verification_level": Pick("reviewVerificationLevel"),
            "likes": Pick("numberOfLikes"),
            "status": Pick("status"),
            "company_reply": Pick("companyReply.text"),
            "company_reply_at": Pick("companyReply.createdAt"),
            "trustpilot_location_id": Pick("location.id"),
        },
    )


@register_source
class TrustpilotSource(HttpSource):
    """Service reviews of one Trustpilot business unit, newest first."""

    kind: ClassVar[str] = "trustpilot.v1"
    config_model = TrustpilotConfig
    channel: ClassVar[str] = "review_site"
    service_name: ClassVar[str] = "the Trustpilot API"
    default_base_url: ClassVar[str] = "https://api.trustpilot.com"
    config: TrustpilotConfig

    def fetch_page(self, cursor: Cursor | None) -> Page:
        """One page of reviews; the cursor holds the page number within a run and the newest time between."""
        state = dict(cursor or {})
        since = _parse_time(state.get("since"))
        newest: str | None = state.get("newest")
        page_number = int(state.get("page", 1))

        reviews, has_next_page = self._reviews(page_number)
        spec = _review_spec(product=self.config.product, default_location=self.config.location)
        records, malformed = spec.parse_all(reviews, where=f"page={page_number}/reviews")
        fresh, reached_seen = unseen(records, since=since)
        newest = newest_of([record.created_at for record in fresh], newest)
        more = bool(has_next_page and reviews) and not reached_seen
        return listing_page(
            records=fresh,
            malformed=malformed,
            position={"page": page_number + 1} if more else None,
            since=since,
            newest=newest,
        )

    def _reviews(self, page_number: int) -> tuple[list[Any], bool]:
        url = f"{self.base_url}/v1/business-units/{self.config.business_unit_id}/reviews"
        params: list[tuple[str, str | int]] = [
            ("perPage", self.config.page_size),
            ("page", page_number),
            ("orderBy", "createdat.desc"),
        ]
        params.extend(("language", code) for code in self.config.languages)
        headers = {"apikey": self.config.api_key.get_secret_value()}
        body = self.http.get_json(url, params=params, headers=headers)
        reviews = body.get("reviews") if isinstance(body, dict) else None
        if not isinstance(reviews, list):
            raise MalformedResponseError(f"{self.service_name} answered {url} without a 'reviews' list")
        links = body.get("links") or []
        has_next_page = any(isinstance(link, dict) and link.get("rel") == "next-page" for link in links)
        return reviews, has_next_page


def _parse_time(value: str | None) -> datetime | None:
    return iso_datetime(value) if value else None
