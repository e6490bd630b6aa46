"""The polite HTTP client: the error table, Retry-After in its forms, backoff, the rate limit, robots.txt."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from scrapers.http import (
    BadCredentialsError,
    ErrorAction,
    HttpPolicy,
    NotFoundError,
    PoliteClient,
    RateLimitedError,
    RobotsDisallowedError,
    SourceError,
    TransientError,
    default_action,
    retry_after_seconds,
)
from tests.scrapers.replay import FakeSleep, ReplayTransport, Route, json_response, raw_response

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def client(transport: ReplayTransport, sleep: FakeSleep, **policy: object) -> PoliteClient:
    return PoliteClient(
        policy=HttpPolicy(**policy),  # type: ignore[arg-type]
        transport=transport,
        sleep=sleep,
        clock=sleep.clock,
        jitter=lambda: 0.5,
        service_name="Example",
    )


@pytest.mark.parametrize(
    ("status", "action"),
    [
        (400, ErrorAction.FAIL),
        (401, ErrorAction.BAD_CREDENTIALS),
        (403, ErrorAction.BAD_CREDENTIALS),
        (404, ErrorAction.NOT_FOUND),
        (418, ErrorAction.FAIL),
        (429, ErrorAction.RATE_LIMITED),
        (500, ErrorAction.RETRY),
        (503, ErrorAction.RETRY),
        (599, ErrorAction.RETRY),
    ],
)
def test_the_error_table(status: int, action: ErrorAction) -> None:
    assert default_action(status) is action


def test_retry_after_in_every_form() -> None:
    assert retry_after_seconds({"retry-after": "120"}, now=NOW) == 120
    assert retry_after_seconds({"retry-after": "Mon, 30 Nov 2026 12:01:30 GMT"}, now=NOW) == 90
    assert retry_after_seconds({"ratelimit-resettime": "2026-11-30T12:10:00+00:00"}, now=NOW) == 600
    assert retry_after_seconds({"x-rate-limit-reset": str(int(NOW.timestamp()) + 45)}, now=NOW) == 45
    assert retry_after_seconds({"x-ratelimit-reset": "30"}, now=NOW) == 30
    assert retry_after_seconds({"x-ratelimit-reset": "2026-11-30T12:05:00.000Z"}, now=NOW) == 300
    assert retry_after_seconds({"retry-after": "soon"}, now=NOW) is None
    assert retry_after_seconds({}, now=NOW) is None


def test_backoff_doubles_with_jitter_and_gives_up() -> None:
    sleep = FakeSleep()
    transport = ReplayTransport(Route("GET", "/x", [raw_response("", 503) for _ in range(4)]))
    with pytest.raises(TransientError, match=r"Example failed \(HTTP 503\) after 4 attempts"):
        client(transport, sleep, requests_per_minute=6000).get("https://api.example.com/x")
    backoffs = [wait for wait in sleep.waits if wait > 0.02]
    assert backoffs == [0.5, 1.0, 2.0]


def test_a_5xx_backs_off_even_when_reset_headers_say_otherwise() -> None:
    sleep = FakeSleep()
    transport = ReplayTransport(
        Route("GET", "/x", [raw_response("", 503, headers={"x-ratelimit-reset": "600"}), json_response({})])
    )
    client(transport, sleep, requests_per_minute=6000).get("https://oauth.reddit.com/x")
    assert max(sleep.waits) == 0.5


def test_requests_are_spaced_by_the_rate_limit() -> None:
    sleep = FakeSleep()
    transport = ReplayTransport(Route("GET", "/x", [json_response({})], repeat_last=True))
    polite = client(transport, sleep, requests_per_minute=30)
    for _ in range(3):
        polite.get("https://api.example.com/x")
    assert sleep.waits == [2.0, 2.0]


def test_bad_credentials_and_missing_ids_fail_at_once_without_the_secret() -> None:
    sleep = FakeSleep()
    transport = ReplayTransport(
        Route("GET", "/key", [json_response({"error": {"message": "API key not valid"}}, 401)]),
        Route("GET", "/gone", [json_response({"message": "Business not found"}, 404)]),
    )
    polite = client(transport, sleep)
    with pytest.raises(BadCredentialsError) as caught:
        polite.get("https://api.example.com/key", headers={"Authorization": "Bearer sk-very-secret"})
    assert "API key not valid" in str(caught.value) and "sk-very-secret" not in str(caught.value)
    with pytest.raises(NotFoundError, match="Business not found"):
        polite.get("https://api.example.com/gone")
    assert len(transport.requests) == 2


def test_a_429_within_the_wait_limit_is_waited_out() -> None:
    sleep = FakeSleep()
    transport = ReplayTransport(
        Route("GET", "/x", [json_response({}, 429, {"Retry-After": "30"}), json_response({"ok": True})])
    )
    assert client(transport, sleep).get_json("https://api.example.com/x") == {"ok": True}
    assert 30.0 in sleep.waits
    long = ReplayTransport(Route("GET", "/x", [json_response({}, 429, {"Retry-After": "600"})]))
    with pytest.raises(RateLimitedError) as caught:
        client(long, FakeSleep()).get("https://api.example.com/x")
    assert caught.value.retry_after == 600


def test_robots_txt_is_respected_for_web_pages() -> None:
    sleep = FakeSleep()
    transport = ReplayTransport(
        Route(
            "GET",
            "^/robots.txt$",
            [raw_response("User-agent: *\nDisallow: /private/\n", content_type="text/plain")],
        ),
        Route("GET", "/public/feed.xml", [raw_response("<rss/>", content_type="application/rss+xml")]),
    )
    polite = client(transport, sleep, respect_robots=True)
    assert polite.get("https://blog.example.com/public/feed.xml").status_code == 200
    with pytest.raises(
        RobotsDisallowedError, match=r"robots\.txt does not allow fetching /private/feed\.xml"
    ):
        polite.get("https://blog.example.com/private/feed.xml")
    assert [request.url.path for request in transport.requests] == ["/robots.txt", "/public/feed.xml"]


def test_a_missing_robots_txt_allows_everything() -> None:
    transport = ReplayTransport(
        Route("GET", "^/robots.txt$", [raw_response("not here", 404, content_type="text/plain")]),
        Route("GET", "/feed", [raw_response("<rss/>")]),
    )
    assert (
        client(transport, FakeSleep(), respect_robots=True).get("https://x.example.com/feed").status_code
        == 200
    )


def test_a_source_can_refine_the_table() -> None:
    transport = ReplayTransport(
        Route("GET", "/x", [json_response({"error": {"errors": [{"reason": "quotaExceeded"}]}}, 403)])
    )
    polite = PoliteClient(
        transport=transport,
        sleep=FakeSleep(),
        classify=lambda response: ErrorAction.RATE_LIMITED if response.status_code == 403 else None,
        policy=HttpPolicy(max_wait_seconds=0),
    )
    with pytest.raises(RateLimitedError):
        polite.get("https://api.example.com/x")


def test_connection_errors_are_transient() -> None:
    transport = ReplayTransport(Route("GET", "/x", [httpx.ConnectError("refused") for _ in range(4)]))
    with pytest.raises(TransientError, match="could not reach Example"):
        client(transport, FakeSleep()).get("https://api.example.com/x")
    assert issubclass(TransientError, SourceError)


def test_a_304_to_a_conditional_request_is_an_answer_not_an_error() -> None:
    transport = ReplayTransport(Route("GET", "/feed", [raw_response(b"", 304, content_type="text/xml")]))
    response = client(transport, FakeSleep()).get(
        "https://blog.example.com/feed", headers={"If-None-Match": '"v1"'}
    )
    assert response.status_code == 304 and len(transport.requests) == 1
