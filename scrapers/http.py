"""Polite HTTP for collectors: timeouts, retries with backoff and jitter, Retry-After, a rate limit per
source, robots.txt for web pages, and one table that maps errors to actions."""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
import urllib.robotparser
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

logger = logging.getLogger("cxmine.scrapers")

USER_AGENT = "cxmine/0.1 (+https://github.com/cxmine/cxmine; self-hosted feedback collector)"


class ErrorAction(enum.StrEnum):
    """What the collector does about a failed request."""

    RETRY = "retry"
    """Transient (timeouts, 5xx, connection resets): back off with jitter and try again."""
    RATE_LIMITED = "rate_limited"
    """The service asked us to slow down: wait Retry-After (or back off), or defer the source's next run."""
    BAD_CREDENTIALS = "bad_credentials"
    """Fail the run with a clear message: the key or token is missing, wrong or expired."""
    NOT_FOUND = "not_found"
    """Fail the run: the configured app id, business or page does not exist."""
    FAIL = "fail"
    """Fail the run: the request itself is wrong and retrying cannot help."""


ERROR_ACTIONS: Mapping[int, ErrorAction] = {
    400: ErrorAction.FAIL,
    401: ErrorAction.BAD_CREDENTIALS,
    403: ErrorAction.BAD_CREDENTIALS,
    404: ErrorAction.NOT_FOUND,
    408: ErrorAction.RETRY,
    410: ErrorAction.NOT_FOUND,
    422: ErrorAction.FAIL,
    425: ErrorAction.RETRY,
    429: ErrorAction.RATE_LIMITED,
    500: ErrorAction.RETRY,
    502: ErrorAction.RETRY,
    503: ErrorAction.RETRY,
    504: ErrorAction.RETRY,
}
"""Status code to action; any other 5xx retries and any other 4xx fails. Sources refine it (a 403 that
means 'quota exceeded' is rate limiting on YouTube) with their own ``classify``."""


def default_action(status: int) -> ErrorAction:
    """The action for an HTTP error status, from ``ERROR_ACTIONS``."""
    action = ERROR_ACTIONS.get(status)
    if action is not None:
        return action
    return ErrorAction.RETRY if status >= 500 else ErrorAction.FAIL


class SourceError(Exception):
    """A collector failure with the action it calls for; the message is shown to the user as-is."""

    action: ErrorAction = ErrorAction.FAIL

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class BadCredentialsError(SourceError):
    action = ErrorAction.BAD_CREDENTIALS


class NotFoundError(SourceError):
    action = ErrorAction.NOT_FOUND


class RateLimitedError(SourceError):
    """Still rate limited after waiting as long as the policy allows; ``retry_after`` says when to return."""

    action = ErrorAction.RATE_LIMITED


class TransientError(SourceError):
    """Retries exhausted on timeouts, connection errors or 5xx answers; the next scheduled run tries again."""

    action = ErrorAction.RETRY


class MalformedResponseError(SourceError):
    """The response as a whole could not be read (not JSON, not a feed, missing its list of records)."""

    action = ErrorAction.FAIL


class RobotsDisallowedError(SourceError):
    action = ErrorAction.FAIL


_ERROR_CLASSES: Mapping[ErrorAction, type[SourceError]] = {
    ErrorAction.BAD_CREDENTIALS: BadCredentialsError,
    ErrorAction.NOT_FOUND: NotFoundError,
    ErrorAction.RATE_LIMITED: RateLimitedError,
    ErrorAction.RETRY: TransientError,
    ErrorAction.FAIL: SourceError,
}


@dataclass(frozen=True)
class HttpPolicy:
    """How politely one source talks to its service."""

    timeout_seconds: float = 20.0
    max_attempts: int = 4
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 60.0
    max_wait_seconds: float = 120.0
    """Longest Retry-After we sleep through inside a run; longer ones defer the source's next run."""
    requests_per_minute: float = 60.0
    respect_robots: bool = False
    """Check robots.txt before fetching: on for web pages and feeds, off for documented APIs."""
    user_agent: str = USER_AGENT


Classifier = Callable[[httpx.Response], ErrorAction | None]
"""A source's refinement of the error table: the action for a response, or None for the default."""


@dataclass
class PoliteClient:
    """An httpx client that waits between requests, retries what is transient and explains what is not.

    ``sleep``, ``clock`` and ``jitter`` are injectable so that tests replay recorded responses instantly.
    """

    policy: HttpPolicy = field(default_factory=HttpPolicy)
    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    jitter: Callable[[], float] = random.random
    classify: Classifier | None = None
    service_name: str = "the service"

    def __post_init__(self) -> None:
        self._client = httpx.Client(
            transport=self.transport,
            timeout=self.policy.timeout_seconds,
            headers={"User-Agent": self.policy.user_agent},
            follow_redirects=True,
        )
        self._next_request_at = 0.0
        self._lock = threading.Lock()
        self._robots: dict[str, urllib.robotparser.RobotFileParser | None] = {}
        self.requests_sent = 0

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        """GET with the policy applied (a 304 is returned as is); raises a ``SourceError`` when it cannot succeed."""
        return self.request("GET", url, **kwargs)

    def get_json(self, url: str, **kwargs: Any) -> Any:
        """GET and decode JSON; a body that is not JSON is a ``MalformedResponseError``."""
        response = self.get(url, **kwargs)
        return self.json_of(response)

    def json_of(self, response: httpx.Response) -> Any:
        """The JSON body of a response, or a ``MalformedResponseError`` saying what came instead."""
        try:
            return response.json()
        except ValueError:
            snippet = response.text[:120].replace("\n", " ")
            raise MalformedResponseError(
                f"{self.service_name} answered {response.request.url.path} with something that is not JSON: "
                f"{snippet!r}",
                status=response.status_code,
            ) from None

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send one request, retrying transient failures; the final failure raises a ``SourceError``."""
        if self.policy.respect_robots:
            self._check_robots(url)
        attempt = 0
        while True:
            attempt += 1
            self._wait_for_rate_limit()
            try:
                response = self._client.request(method, url, **kwargs)
            except httpx.TimeoutException:
                failure: SourceError = TransientError(
                    f"{self.service_name} did not answer within {self.policy.timeout_seconds:g} s "
                    f"({attempt} attempts)"
                )
                wait = self._backoff(attempt)
            except httpx.TransportError as exc:
                failure = TransientError(f"could not reach {self.service_name}: {exc} ({attempt} attempts)")
                wait = self._backoff(attempt)
            else:
                # 304 answers a conditional request (If-None-Match / If-Modified-Since): nothing changed.
                if response.is_success or response.status_code == 304:
                    return response
                failure, wait = self._failure_of(response, attempt)
                if failure.action not in (ErrorAction.RETRY, ErrorAction.RATE_LIMITED):
                    raise failure
                if failure.action is ErrorAction.RATE_LIMITED and wait > self.policy.max_wait_seconds:
                    raise failure
            if attempt >= self.policy.max_attempts:
                raise failure
            logger.info(
                "request failed; retrying",
                extra={
                    "service": self.service_name,
                    "attempt": attempt,
                    "wait_s": round(wait, 2),
                    "reason": str(failure),
                },
            )
            self.sleep(wait)

    def _failure_of(self, response: httpx.Response, attempt: int) -> tuple[SourceError, float]:
        action = (self.classify(response) if self.classify else None) or default_action(response.status_code)
        retry_after = retry_after_seconds(response.headers, now=datetime.now(UTC))
        detail = _error_detail(response)
        status = response.status_code
        messages = {
            ErrorAction.BAD_CREDENTIALS: f"{self.service_name} refused the credentials (HTTP {status}): {detail}. "
            "Check the source's key or token.",
            ErrorAction.NOT_FOUND: f"{self.service_name} has no such resource (HTTP {status}): {detail}. "
            "Check the configured id.",
            ErrorAction.RATE_LIMITED: f"{self.service_name} is rate limiting us (HTTP {status})"
            + (f"; retry after {retry_after:g} s" if retry_after is not None else ""),
            ErrorAction.RETRY: f"{self.service_name} failed (HTTP {status}) after {attempt} attempts: {detail}",
            ErrorAction.FAIL: f"{self.service_name} rejected the request (HTTP {status}): {detail}",
        }
        error_class = _ERROR_CLASSES[action]
        # Some services send reset headers on every answer (Reddit): only a 429 or an explicit Retry-After
        # sets the wait; a 5xx otherwise backs off.
        explicit = action is ErrorAction.RATE_LIMITED or "retry-after" in response.headers
        wait = retry_after if retry_after is not None and explicit else self._backoff(attempt)
        return error_class(messages[action], status=status, retry_after=retry_after), wait

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter: uniform in [0, min(max, base * 2^(attempt-1))]."""
        ceiling = min(
            self.policy.backoff_max_seconds, self.policy.backoff_base_seconds * 2.0 ** (attempt - 1)
        )
        return float(ceiling * self.jitter())

    def _wait_for_rate_limit(self) -> None:
        interval = 60.0 / self.policy.requests_per_minute
        with self._lock:
            now = self.clock()
            wait = self._next_request_at - now
            self._next_request_at = max(now, self._next_request_at) + interval
            self.requests_sent += 1
        if wait > 0:
            self.sleep(wait)

    def _check_robots(self, url: str) -> None:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._robots:
            self._robots[origin] = self._fetch_robots(origin)
        parser = self._robots[origin]
        if parser is not None and not parser.can_fetch(self.policy.user_agent, url):
            raise RobotsDisallowedError(f"{origin}/robots.txt does not allow fetching {parts.path or '/'}")

    def _fetch_robots(self, origin: str) -> urllib.robotparser.RobotFileParser | None:
        """The site's robots.txt rules; none when it has none (404) or cannot be read (allow, as crawlers do)."""
        self._wait_for_rate_limit()
        try:
            response = self._client.get(f"{origin}/robots.txt")
        except httpx.HTTPError:
            return None
        parser = urllib.robotparser.RobotFileParser()
        if response.status_code in (401, 403):
            parser.parse(["User-agent: *", "Disallow: /"])
            return parser
        if not response.is_success:
            return None
        parser.parse(response.text.splitlines())
        return parser


def retry_after_seconds(headers: Mapping[str, str], *, now: datetime) -> float | None:
    """Seconds to wait from Retry-After (delta-seconds or an HTTP date), RateLimit-ResetTime (Yelp) or
    X-RateLimit-Reset (X: an epoch time; Reddit: seconds from now; Mastodon: an ISO 8601 time)."""
    value = headers.get("retry-after")
    if value:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - now).total_seconds())
    reset_time = headers.get("ratelimit-resettime")  # Yelp: an ISO 8601 time
    if reset_time:
        reset_at: datetime | None
        try:
            reset_at = datetime.fromisoformat(reset_time.strip().replace("Z", "+00:00"))
        except ValueError:
            reset_at = None
        if reset_at is not None:
            if reset_at.tzinfo is None:
                reset_at = reset_at.replace(tzinfo=UTC)
            return max(0.0, (reset_at - now).total_seconds())
    reset = headers.get("x-rate-limit-reset") or headers.get("x-ratelimit-reset")
    if reset and not reset.strip().isdigit():  # Mastodon: an ISO 8601 time
        try:
            reset_at = datetime.fromisoformat(reset.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        if reset_at.tzinfo is None:
            reset_at = reset_at.replace(tzinfo=UTC)
        return max(0.0, (reset_at - now).total_seconds())
    if reset and reset.strip().isdigit():
        number = float(reset)
        # An epoch timestamp (X) or seconds from now (Reddit).
        return max(0.0, number - now.timestamp()) if number > 1_000_000_000 else number
    return None


def _error_detail(response: httpx.Response) -> str:
    """The service's own words about an error, from the usual JSON error shapes, else the body's start."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason_phrase
    value: Any
    for path in (
        ("error", "message"),
        ("error_description",),
        ("message",),
        ("detail",),
        ("title",),
        ("errors", 0, "message"),
        ("error", "description"),
        ("error",),
    ):
        value = body
        for key in path:
            if isinstance(key, int):
                value = value[key] if isinstance(value, list) and len(value) > key else None
            else:
                value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str) and value:
            return value
    return str(body)[:200]
