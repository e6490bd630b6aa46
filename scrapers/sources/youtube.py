"""YouTube comments on a channel's videos, or on given videos, from the YouTube Data API v3.

``GET {base}/commentThreads?part=snippet&allThreadsRelatedToChannelId={channel}&order=time`` lists the
top-level comments on every video of a channel (``videoId={video}`` for one video), newest first, 100 a
page with ``nextPageToken``. Replies are not collected. It needs an API key from a Google Cloud project with
the YouTube Data API v3 enabled; the key travels in the ``X-Goog-Api-Key`` header (Google's equivalent of
the ``key`` parameter) so that it never appears in a URL or a request log. Each page costs quota (10,000
units a day by default, reset at midnight Pacific time); when the quota is spent the run is deferred to the
reset. Each run walks back to the newest comment the previous run saw, so later runs read only what is new.
A video with comments turned off is skipped.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, timezone, tzinfo
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from pydantic import Field, SecretStr, field_validator, model_validator

from scrapers.base import HttpSource, HttpSourceConfig
from scrapers.contract import Cursor, Page
from scrapers.http import ErrorAction, MalformedResponseError, NotFoundError, RateLimitedError, SourceError
from scrapers.parsing import Pick, RecordSpec, iso_datetime, text
from scrapers.registry import register_source

logger = logging.getLogger("cxmine.scrapers")

PAGE_SIZE = 100
CHANNEL_ID = r"^UC[0-9A-Za-z_-]{22}$"
VIDEO_ID = re.compile(r"^[0-9A-Za-z_-]{11}$")
QUOTA_REASONS = frozenset({"quotaExceeded", "dailyLimitExceeded"})
RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
KEY_REASONS = frozenset({"keyInvalid", "keyExpired", "API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED"})


def _pacific() -> tzinfo:
    try:
        return ZoneInfo("America/Los_Angeles")
    except ZoneInfoNotFoundError:  # no tz database on this machine: standard time is off by an hour at most
        return timezone(timedelta(hours=-8))


def seconds_until_quota_reset(now: datetime) -> float:
    """Seconds from ``now`` to the next midnight in California, when YouTube's daily quota resets."""
    pacific = _pacific()
    tomorrow = now.astimezone(pacific).date() + timedelta(days=1)
    return (datetime.combine(tomorrow, time(0), tzinfo=pacific) - now).total_seconds()


class YouTubeConfig(HttpSourceConfig):
    """Whose comments, with which API key."""

    api_key: SecretStr = Field(description="A Google Cloud API key with the YouTube Data API v3 enabled.")
    channel_id: str | None = Field(
        default=None, pattern=CHANNEL_ID, description="A channel id ('UC' + 22 characters): all its videos."
    )
    video_ids: list[str] = Field(default=[], description="Video ids (11 characters, from ?v= in the URL).")
    product: str | None = Field(default=None, description="Product name to file the comments under.")

    @field_validator("video_ids")
    @classmethod
    def _video_ids(cls, value: list[str]) -> list[str]:
        ids = [video.strip() for video in value]
        bad = [video for video in ids if not VIDEO_ID.match(video)]
        if bad:
            raise ValueError(f"not YouTube video ids: {', '.join(bad)}")
        return ids

    @model_validator(mode="after")
    def _something_to_follow(self) -> YouTubeConfig:
        if self.channel_id is None and not self.video_ids:
            raise ValueError("give a channel_id or at least one video id")
        return self


@dataclass(frozen=True)
class Target:
    """A channel or a video whose comment threads a run walks; ``key`` names it in the cursor."""

    filter_name: str
    """'allThreadsRelatedToChannelId' or 'videoId'."""
    value: str

    @property
    def key(self) -> str:
        return f"{'channel' if self.filter_name != 'videoId' else 'video'}:{self.value}"


def targets_of(config: YouTubeConfig) -> list[Target]:
    """The channel (if any), then each video, in order."""
    targets = [Target("allThreadsRelatedToChannelId", config.channel_id)] if config.channel_id else []
    targets.extend(Target("videoId", video) for video in config.video_ids)
    return targets


def _comment_url(raw: Any) -> str | None:
    snippet = raw.get("snippet", {}) if isinstance(raw, dict) else {}
    video = snippet.get("videoId") if isinstance(snippet, dict) else None
    comment = Pick("snippet.topLevelComment.id", "id")(raw)
    return f"https://www.youtube.com/watch?v={video}&lc={comment}" if video and comment else None


COMMENT = "snippet.topLevelComment.snippet"


def _thread_spec(product: str | None) -> RecordSpec:
    return RecordSpec(
        external_id=Pick("snippet.topLevelComment.id", "id", convert=text),
        text=Pick(f"{COMMENT}.textOriginal", f"{COMMENT}.textDisplay"),
        created_at=Pick(f"{COMMENT}.publishedAt", convert=iso_datetime),
        author=Pick(f"{COMMENT}.authorDisplayName"),
        url=_comment_url,
        product=(lambda _raw: product) if product else None,
        metadata={
            "video_id": Pick("snippet.videoId", f"{COMMENT}.videoId"),
            "channel_id": Pick("snippet.channelId"),
            "author_channel_id": Pick(f"{COMMENT}.authorChannelId.value"),
            "like_count": Pick(f"{COMMENT}.likeCount"),
            "reply_count": Pick("snippet.totalReplyCount"),
            "updated_at": Pick(f"{COMMENT}.updatedAt"),
        },
    )


@register_source
class YouTubeSource(HttpSource):
    """Top-level comments on a channel's videos and on given videos, newest first."""

    kind: ClassVar[str] = "youtube.v1"
    config_model = YouTubeConfig
    channel: ClassVar[str] = "social"
    service_name: ClassVar[str] = "the YouTube Data API"
    default_base_url: ClassVar[str] = "https://www.googleapis.com/youtube/v3"
    config: YouTubeConfig

    _error_reason: str | None = None

    def classify(self, response: httpx.Response) -> ErrorAction | None:
        # Google answers many different faults with 403 (or 400); its error 'reason' tells them apart.
        self._error_reason = google_error_reason(response)
        reason = self._error_reason
        if reason in QUOTA_REASONS:
            return ErrorAction.FAIL  # retrying before the daily reset cannot help; fetch defers the run
        if reason in RATE_REASONS:
            return ErrorAction.RATE_LIMITED
        if reason in KEY_REASONS:
            return ErrorAction.BAD_CREDENTIALS
        if reason == "commentsDisabled":
            return ErrorAction.FAIL
        if reason in ("videoNotFound", "channelNotFound"):
            return ErrorAction.NOT_FOUND
        return None

    def fetch_page(self, cursor: Cursor | None) -> Page:
        """One page of one channel's or video's comment threads; the cursor walks the targets in order."""
        targets = targets_of(self.config)
        state = dict(cursor or {})
        since: dict[str, str] = dict(state.get("since", {}))
        index = int(state.get("target_index", 0))
        page_token: str | None = state.get("page_token")
        newest: str | None = state.get("newest")
        if index >= len(targets):  # the configuration changed since the cursor was saved
            index, page_token, newest = 0, None, None
        target = targets[index]

        body = self._comment_threads(target, page_token)
        if body is None:  # comments are turned off on this video
            threads: list[Any] = []
            next_token: Any = None
        else:
            threads = body["items"]
            next_token = body.get("nextPageToken")
        records, malformed = _thread_spec(self.config.product).parse_all(threads, where=f"{target.key}/items")

        previous = iso_datetime(since[target.key]) if target.key in since else None
        # Equal times are kept: storage drops the ones already stored by their comment id.
        fresh = [record for record in records if previous is None or record.created_at >= previous]
        reached_seen = len(fresh) < len(records)
        for record in fresh:
            if newest is None or record.created_at > iso_datetime(newest):
                newest = record.created_at.isoformat()

        if not reached_seen and isinstance(next_token, str) and next_token:
            next_state: Cursor = {"since": since, "target_index": index, "page_token": next_token}
            if newest is not None:
                next_state["newest"] = newest
            return Page(records=fresh, cursor=next_state, done=False, malformed=malformed)

        if newest is not None:
            since[target.key] = newest
        if index + 1 < len(targets):
            return Page(
                records=fresh,
                cursor={"since": since, "target_index": index + 1},
                done=False,
                malformed=malformed,
            )
        return Page(records=fresh, cursor={"since": since}, done=True, malformed=malformed)

    def _comment_threads(self, target: Target, page_token: str | None) -> dict[str, Any] | None:
        """One page of comment threads, or None when the video has its comments turned off."""
        params = {
            "part": "snippet",
            target.filter_name: target.value,
            "maxResults": str(PAGE_SIZE),
            "order": "time",
            "textFormat": "plainText",
        }
        if page_token:
            params["pageToken"] = page_token
        headers = {"X-Goog-Api-Key": self.config.api_key.get_secret_value()}
        self._error_reason = None
        try:
            body = self.http.get_json(f"{self.base_url}/commentThreads", params=params, headers=headers)
        except SourceError as exc:
            if self._error_reason in QUOTA_REASONS:
                wait = seconds_until_quota_reset(datetime.now(UTC))
                raise RateLimitedError(
                    "the YouTube Data API quota of this key's project is used up for today; it resets at "
                    f"midnight Pacific time, in {wait / 3600:.1f} h. "
                    "Ask Google for more quota or collect less.",
                    status=exc.status,
                    retry_after=wait,
                ) from None
            if self._error_reason == "commentsDisabled" and target.filter_name == "videoId":
                logger.info(
                    "comments are turned off on this video; skipping it",
                    extra={"service": self.service_name, "video_id": target.value},
                )
                return None
            if isinstance(exc, NotFoundError):
                raise NotFoundError(
                    f"YouTube has no {target.key.replace(':', ' ')} (HTTP {exc.status}). "
                    "Check the configured id.",
                    status=exc.status,
                ) from None
            raise
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise MalformedResponseError(
                f"{self.service_name} answered commentThreads without an 'items' list"
            )
        return body


def google_error_reason(response: httpx.Response) -> str | None:
    """The 'reason' of a Google API error: error.errors[0].reason, or error.details[].reason (ErrorInfo)."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    details = error.get("details")
    if isinstance(details, list):
        for detail in details:
            if isinstance(detail, dict) and detail.get("reason") in KEY_REASONS:
                return str(detail["reason"])
    errors = error.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        reason = errors[0].get("reason")
        if isinstance(reason, str):
            return reason
    return None
