"""Google Play reviews of an app you publish, from the official Google Play Developer API.

``GET {base}/androidpublisher/v3/applications/{packageName}/reviews`` (``maxResults``, ``token``,
``translationLanguage``) lists the app's reviews, most recently created or modified first, with
``tokenPagination.nextPageToken`` for the next page. A run walks the pages until it reaches a review it has
already seen, so every run after the first is short.

Needs OAuth 2 access to the ``https://www.googleapis.com/auth/androidpublisher`` scope for a Google account
that Play Console lets see the app (its "Reply to reviews" permission): best an OAuth client id and secret
with a refresh token of that account, from which the source mints its own access tokens; or an access token
alone, which expires after an hour (e.g. ``gcloud auth application-default print-access-token
--scopes=https://www.googleapis.com/auth/androidpublisher``). A service-account key is not read directly:
signing its JWT needs a crypto library cxmine does not install.

Limits, as Google documents them: only apps the account owns; only reviews created or modified in the last
week (run the source at least daily; older reviews are in Play Console's CSV export); only reviews with a
comment (star-only ratings are not in the API); production track only; 200 GET requests per app per hour,
hence the default of 3 requests a minute. ``lastModified`` is the only time the API gives: it is the
record's ``created_at``, and an edited review keeps its first stored version. The record's language is the
reviewer's device language, which Google warns need not be the language of the review.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from pydantic import Field

from scrapers.contract import Cursor, Page
from scrapers.cursors import listing_page, newest_of, unseen
from scrapers.http import (
    MalformedResponseError,
    SourceError,
)
from scrapers.parsing import Pick, RecordSpec, iso_datetime, lookup, stars, text
from scrapers.registry import register_source
from scrapers.sources._google import (
    GoogleApiSource,
    GoogleAuthConfig,
    get_google_json,
    protobuf_timestamp,
)

logger = logging.getLogger("cxmine.scrapers")

PACKAGE_NAME = r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+$"
API_HISTORY = timedelta(days=7)


class GooglePlayConfig(GoogleAuthConfig):
    """Which app, and how to sign in to read its reviews."""

    package_name: str = Field(
        pattern=PACKAGE_NAME, description="The app's package name (id=... in its Play Store URL)."
    )
    product: str | None = Field(default=None, description="Product name to file the reviews under.")
    translation_language: str | None = Field(
        default=None,
        pattern=r"^[a-z]{2,3}([_-][A-Za-z]{2})?$",
        description="Also fetch Google's translation into this language (kept in metadata).",
    )
    page_size: int = Field(default=100, ge=1, le=100, description="Reviews per request (maxResults).")
    requests_per_minute: float = Field(
        default=3.0, gt=0, le=6000, description="Google allows 200 review requests per app per hour."
    )


USER_COMMENT = "comments.0.userComment"
# With a translation asked for, 'text' is Google's translation and 'originalText' what the customer wrote.
WRITTEN_TEXT = Pick(f"{USER_COMMENT}.originalText", f"{USER_COMMENT}.text")


def _title_and_body(value: Any) -> str:
    """Reviews written with a separate title come as 'title<TAB>body'; a line break reads better."""
    return text(value).replace("\t", "\n", 1).strip()


def _review_title(raw: Any) -> str | None:
    written = WRITTEN_TEXT(raw)
    if written is None:
        return None
    title, tab, _body = text(written).partition("\t")
    return (title.strip() or None) if tab else None


def _translation(raw: Any) -> str | None:
    if lookup(raw, f"{USER_COMMENT}.originalText") is None:
        return None
    translated = lookup(raw, f"{USER_COMMENT}.text")
    return _title_and_body(translated) if translated else None


_LANGUAGE_TAG = re.compile(r"^([a-z]{2,3})(?:[_-]([A-Za-z0-9]{2,8}))?$")


def _language_tag(value: Any) -> str | None:
    """'en', 'pt_BR' or 'pt-BR' as an IETF tag ('pt-BR'); anything else is dropped, not guessed."""
    match = _LANGUAGE_TAG.match(str(value).strip())
    if match is None:
        return None
    primary, region = match.groups()
    return f"{primary}-{region}" if region else primary


def _iso_timestamp(value: Any) -> str:
    return protobuf_timestamp(value).isoformat()


def _review_spec(*, package_name: str, product: str | None) -> RecordSpec:
    return RecordSpec(
        external_id=Pick("reviewId", convert=text),
        text=Pick(f"{USER_COMMENT}.originalText", f"{USER_COMMENT}.text", convert=_title_and_body),
        created_at=Pick(f"{USER_COMMENT}.lastModified", convert=protobuf_timestamp),
        rating=Pick(f"{USER_COMMENT}.starRating", convert=stars),
        author=Pick("authorName"),
        app_version=Pick(f"{USER_COMMENT}.appVersionName", convert=text),
        language=Pick(f"{USER_COMMENT}.reviewerLanguage", convert=_language_tag),
        url=lambda raw: (
            f"https://play.google.com/store/apps/details?id={package_name}&reviewId={raw['reviewId']}"
        ),
        product=(lambda _raw: product) if product else None,
        metadata={
            "package_name": lambda _raw: package_name,
            "title": _review_title,
            "translated_text": _translation,
            "reviewer_language": Pick(f"{USER_COMMENT}.reviewerLanguage"),
            "app_version_code": Pick(f"{USER_COMMENT}.appVersionCode"),
            "device": Pick(f"{USER_COMMENT}.device"),
            "device_model": Pick(f"{USER_COMMENT}.deviceMetadata.productName"),
            "device_manufacturer": Pick(f"{USER_COMMENT}.deviceMetadata.manufacturer"),
            "device_class": Pick(f"{USER_COMMENT}.deviceMetadata.deviceClass"),
            "android_os_version": Pick(f"{USER_COMMENT}.androidOsVersion"),
            "thumbs_up": Pick(f"{USER_COMMENT}.thumbsUpCount"),
            "thumbs_down": Pick(f"{USER_COMMENT}.thumbsDownCount"),
            "developer_reply": Pick("comments.1.developerComment.text"),
            "developer_reply_at": Pick("comments.1.developerComment.lastModified", convert=_iso_timestamp),
        },
    )


@register_source
class GooglePlaySource(GoogleApiSource):
    """Reviews of one app you publish on Google Play, newest first."""

    kind: ClassVar[str] = "google_play.v1"
    config_model = GooglePlayConfig
    channel: ClassVar[str] = "app_store"
    service_name: ClassVar[str] = "the Google Play Developer API"
    default_base_url: ClassVar[str] = "https://androidpublisher.googleapis.com"
    config: GooglePlayConfig

    def fetch_page(self, cursor: Cursor | None) -> Page:
        """One page of reviews; the cursor holds the page token within a run and the newest time between."""
        state = dict(cursor or {})
        since = _parse_time(state.get("since"))
        newest: str | None = state.get("newest")
        token: str | None = state.get("token")
        if token is None and since is not None and datetime.now(UTC) - since > API_HISTORY:
            logger.warning(
                "the newest Google Play review seen is over a week old; if runs were missed, reviews from "
                "the gap are beyond the API's one-week window (Play Console's CSV export has them)",
                extra={"package_name": self.config.package_name},
            )

        try:
            reviews, next_token = self._reviews(token)
        except SourceError as exc:
            if token is None or exc.status != 400:
                raise
            logger.warning(
                "Google Play refused the saved page token; starting again from the newest reviews",
                extra={"package_name": self.config.package_name},
            )
            reviews, next_token = self._reviews(None)
        spec = _review_spec(package_name=self.config.package_name, product=self.config.product)
        records, malformed = spec.parse_all(reviews, where="reviews")
        fresh, reached_seen = unseen(records, since=since)
        newest = newest_of([record.created_at for record in fresh], newest)
        more = bool(next_token and reviews) and not reached_seen
        return listing_page(
            records=fresh,
            malformed=malformed,
            position={"token": next_token} if more else None,
            since=since,
            newest=newest,
        )

    def _reviews(self, token: str | None) -> tuple[list[Any], str | None]:
        url = f"{self.base_url}/androidpublisher/v3/applications/{self.config.package_name}/reviews"
        params: dict[str, str | int] = {"maxResults": self.config.page_size}
        if token:
            params["token"] = token
        if self.config.translation_language:
            params["translationLanguage"] = self.config.translation_language
        body = get_google_json(self.http, self._access, url, params)
        if not isinstance(body, dict):
            raise MalformedResponseError(f"{self.service_name} answered {url} with no JSON object")
        # Google leaves out empty lists: an app with no recent reviews answers {}.
        reviews = body.get("reviews", [])
        if not isinstance(reviews, list):
            raise MalformedResponseError(f"{self.service_name}: 'reviews' is not a list")
        next_token = lookup(body, "tokenPagination.nextPageToken")
        return reviews, str(next_token) if next_token else None


def _parse_time(value: str | None) -> datetime | None:
    return iso_datetime(value) if value else None
