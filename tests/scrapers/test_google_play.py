"""Google Play reviews: replayed from recorded Google Play Developer API pages."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import httpx
import pytest

from scrapers.contract import RatingScale
from scrapers.http import (
    BadCredentialsError,
    MalformedResponseError,
    NotFoundError,
    RateLimitedError,
    TransientError,
)
from scrapers.registry import build_source, masked_config
from scrapers.sources.google_play import GooglePlayConfig, GooglePlaySource
from tests.scrapers.replay import (
    FakeSleep,
    ReplayTransport,
    Reply,
    Route,
    json_response,
    load_json,
    raw_response,
    run_source,
)

KIND = "google_play"
TOKEN = "ya29.a0-secret-access-token"
REVIEWS = r"^/androidpublisher/v3/applications/com\.example\.shop/reviews$"
PAGE2_TOKEN = "CpsBCpgBChQKEG9yZGVyX3RpbWVzdGFtcBIAEhQ"


def make_source(
    transport: ReplayTransport, sleep: FakeSleep | None = None, **config: object
) -> GooglePlaySource:
    settings = GooglePlayConfig.model_validate(
        {"package_name": "com.example.shop", "access_token": TOKEN, "product": "Shop app", **config}
    )
    sleep = sleep or FakeSleep()
    return GooglePlaySource(settings, transport=transport, sleep=sleep, clock=sleep.clock)


def first_page(*replies: Reply) -> Route:
    return Route("GET", REVIEWS, list(replies) or [json_response(load_json(KIND, "page1.json"))])


def second_page(*replies: Reply) -> Route:
    return Route(
        "GET",
        REVIEWS,
        list(replies) or [json_response(load_json(KIND, "page2.json"))],
        params={"token": PAGE2_TOKEN},
    )


def full_listing() -> ReplayTransport:
    # The token route comes first: a request without a token does not match its params.
    return ReplayTransport(second_page(), first_page())


def google_error(status: int, message: str, google_status: str, **extra: object) -> httpx.Response:
    return json_response(
        {"error": {"code": status, "message": message, "status": google_status, **extra}}, status
    )


def test_reads_every_page_to_the_end() -> None:
    transport = full_listing()
    sink, result = run_source(make_source(transport), default_touchpoint="mobile_app")
    assert result.done and result.pages == 2
    records = sink.records
    assert [record.external_id for record in records] == [f"gp:AOqpTOF1aQ7vE2x000{i}" for i in range(1, 6)]

    checkout = records[0]
    assert checkout.rating is not None and checkout.rating.value == 1.0
    assert checkout.rating.scale is RatingScale.STARS
    assert checkout.created_at == datetime(2026, 11, 20, 18, 42, 5, 713000, tzinfo=UTC)
    assert checkout.author == "Maria Jensen"
    assert checkout.app_version == "7.4.0"
    assert checkout.language == "en"
    assert checkout.product == "Shop app"
    assert checkout.touchpoint == "mobile_app"
    assert checkout.url == (
        "https://play.google.com/store/apps/details?id=com.example.shop&reviewId=gp:AOqpTOF1aQ7vE2x0001"
    )
    assert checkout.metadata["device_model"] == "Galaxy S23 (SM-S911B)"
    assert checkout.metadata["android_os_version"] == 34
    assert checkout.metadata["thumbs_up"] == 12
    assert checkout.metadata["developer_reply"].startswith("Sorry about this, Maria!")
    assert checkout.metadata["developer_reply_at"] == "2026-11-20T20:10:00+00:00"

    german = records[1]
    assert german.text == (
        "Lieferung zu spät\nDie Bestellung kam zwei Tage zu spät und der Support hat nicht geantwortet."
    )
    assert german.metadata["title"] == "Lieferung zu spät"
    assert german.language == "de-DE"
    assert records[2].text.startswith("التطبيق ممتاز")
    assert records[3].language == "th"

    assert sink.cursor == {"since": "2026-11-20T18:42:05.713000+00:00"}
    first_request = transport.requests[0]
    assert first_request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert dict(first_request.url.params) == {"maxResults": "100"}


def test_next_run_stops_at_the_first_review_already_seen() -> None:
    sink, _ = run_source(make_source(full_listing()))
    later = ReplayTransport(first_page(json_response(load_json(KIND, "page1_later.json"))))
    sink2, result = run_source(make_source(later), cursor=sink.cursor)
    assert result.done and result.pages == 1
    # The review already seen at exactly the stored time comes back; storage drops it by its id.
    assert [record.external_id for record in sink2.records] == [
        "gp:AOqpTOF1aQ7vE2x0020",
        "gp:AOqpTOF1aQ7vE2x0001",
    ]
    assert sink2.cursor == {"since": "2026-11-21T10:05:00+00:00"}
    assert len(later.requests) == 1


def test_resumes_from_a_saved_mid_run_cursor() -> None:
    sink, result = run_source(make_source(full_listing()), max_pages=1)
    assert not result.done
    assert sink.cursor == {"token": PAGE2_TOKEN, "newest": "2026-11-20T18:42:05.713000+00:00"}
    resumed = ReplayTransport(second_page())
    sink2, result2 = run_source(make_source(resumed), cursor=sink.cursor)
    assert result2.done and len(resumed.requests) == 1
    assert {record.external_id for record in sink.records + sink2.records} == {
        f"gp:AOqpTOF1aQ7vE2x000{i}" for i in range(1, 6)
    }
    assert sink2.cursor == {"since": "2026-11-20T18:42:05.713000+00:00"}


def test_warns_when_the_last_run_is_beyond_the_apis_week(caplog: pytest.LogCaptureFixture) -> None:
    transport = ReplayTransport(first_page(json_response({})))
    with caplog.at_level(logging.WARNING, logger="cxmine.scrapers"):
        sink, _ = run_source(make_source(transport), cursor={"since": "2020-01-01T00:00:00+00:00"})
    assert "over a week old" in caplog.text
    assert sink.cursor == {"since": "2020-01-01T00:00:00+00:00"}


def test_a_refused_page_token_starts_again_from_the_newest_reviews() -> None:
    stale = google_error(400, "Request contains an invalid argument.", "INVALID_ARGUMENT")
    transport = ReplayTransport(
        second_page(stale), first_page(*[json_response(load_json(KIND, "page2.json"))])
    )
    sink, result = run_source(make_source(transport), cursor={"token": PAGE2_TOKEN})
    assert result.done and len(sink.records) == 2
    assert ["token" in request.url.params for request in transport.requests] == [True, False]


def test_translations_keep_the_customers_own_words() -> None:
    transport = ReplayTransport(first_page(json_response(load_json(KIND, "page_translated.json"))))
    sink, _ = run_source(make_source(transport, translation_language="en"))
    (persian,) = sink.records
    assert persian.text == "ارسال سریع بود ولی بسته آسیب دیده بود."
    assert persian.language == "fa"
    assert persian.metadata["translated_text"] == "The delivery was fast but the package was damaged."
    assert transport.requests[0].url.params["translationLanguage"] == "en"


def test_waits_out_a_429_with_retry_after() -> None:
    sleep = FakeSleep()
    transport = ReplayTransport(
        second_page(),
        first_page(
            json_response({}, 429, {"Retry-After": "30"}), json_response(load_json(KIND, "page1.json"))
        ),
    )
    sink, result = run_source(make_source(transport, sleep))
    assert result.done and len(sink.records) == 5
    assert 30.0 in sleep.waits


def test_a_long_retry_after_defers_the_run() -> None:
    quota = {"error": {"code": 429, "message": "Quota exceeded.", "status": "RESOURCE_EXHAUSTED"}}
    transport = ReplayTransport(first_page(json_response(quota, 429, {"Retry-After": "3600"})))
    with pytest.raises(RateLimitedError) as caught:
        run_source(make_source(transport))
    assert caught.value.retry_after == 3600


def test_a_403_quota_error_is_rate_limiting_not_bad_credentials() -> None:
    quota = google_error(
        403,
        "Queries per hour quota exceeded.",
        "PERMISSION_DENIED",
        errors=[{"reason": "rateLimitExceeded", "domain": "usageLimits", "message": "Rate Limit Exceeded"}],
    )
    transport = ReplayTransport(first_page(*[quota for _ in range(4)]))
    with pytest.raises(RateLimitedError):
        run_source(make_source(transport))
    assert len(transport.requests) == 4


def test_retries_a_5xx_then_succeeds() -> None:
    sleep = FakeSleep()
    transport = ReplayTransport(
        second_page(
            google_error(503, "The service is currently unavailable.", "UNAVAILABLE"),
            raw_response("<html>Bad Gateway</html>", 502, content_type="text/html"),
            json_response(load_json(KIND, "page2.json")),
        ),
        first_page(),
    )
    sink, result = run_source(make_source(transport, sleep))
    assert result.done and len(sink.records) == 5
    assert len([request for request in transport.requests if "token" in request.url.params]) == 3
    assert len(sleep.waits) >= 2


def test_a_timeout_is_retried_and_then_reported() -> None:
    transport = ReplayTransport(first_page(*[httpx.ReadTimeout("timed out") for _ in range(4)]))
    with pytest.raises(TransientError, match="did not answer within 20 s"):
        run_source(make_source(transport))
    assert len(transport.requests) == 4


def test_malformed_reviews_are_reported_and_the_rest_kept() -> None:
    transport = ReplayTransport(first_page(json_response(load_json(KIND, "page_malformed.json"))))
    sink, result = run_source(make_source(transport))
    assert [record.external_id for record in sink.records] == ["gp:AOqpTOF1aQ7vE2x0006"]
    reasons = {report.external_id: report.reason for report in result.malformed}
    assert "stars ratings run from 1 to 5" in reasons["gp:AOqpTOF1aQ7vE2x0099"]
    assert reasons["gp:AOqpTOF1aQ7vE2x0098"] == "text is missing"
    assert "is not a timestamp" in reasons["gp:AOqpTOF1aQ7vE2x0097"]
    assert result.malformed[0].where == "reviews[1]"


def test_an_app_without_recent_reviews_is_an_empty_page() -> None:
    transport = ReplayTransport(first_page(json_response({})))
    sink, result = run_source(make_source(transport))
    assert result.done and sink.records == [] and sink.cursor == {}


def test_a_body_that_is_not_json_fails_clearly() -> None:
    transport = ReplayTransport(first_page(raw_response("<html>Service maintenance</html>", 200)))
    with pytest.raises(MalformedResponseError, match="not JSON"):
        run_source(make_source(transport))


def test_an_expired_token_is_a_clear_error_without_the_token() -> None:
    expired = google_error(
        401,
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
        "other valid authentication credential.",
        "UNAUTHENTICATED",
    )
    transport = ReplayTransport(first_page(expired))
    with pytest.raises(BadCredentialsError) as caught:
        run_source(make_source(transport))
    message = str(caught.value)
    assert "HTTP 401" in message and "expire after an hour" in message
    assert TOKEN not in message
    assert len(transport.requests) == 1


REFRESH = {
    "client_id": "1234-abc.apps.googleusercontent.com",
    "client_secret": "GOCSPX-secret",
    "refresh_token": "1//0g-refresh-secret",
}


def minted(token: str, lifetime: int = 3599) -> httpx.Response:
    scope = "https://www.googleapis.com/auth/androidpublisher"
    return json_response(
        {"access_token": token, "expires_in": lifetime, "scope": scope, "token_type": "Bearer"}
    )


def refreshing_source(transport: ReplayTransport, sleep: FakeSleep | None = None) -> GooglePlaySource:
    settings = GooglePlayConfig.model_validate({"package_name": "com.example.shop", **REFRESH})
    sleep = sleep or FakeSleep()
    return GooglePlaySource(settings, transport=transport, sleep=sleep, clock=sleep.clock)


def test_mints_its_own_access_token_from_a_refresh_token() -> None:
    transport = ReplayTransport(
        Route("POST", r"^/token$", [minted("ya29.minted-1")]), second_page(), first_page()
    )
    sink, result = run_source(refreshing_source(transport))
    assert result.done and len(sink.records) == 5
    token_request, *api_requests = transport.requests
    assert str(token_request.url) == "https://oauth2.googleapis.com/token"
    assert dict(httpx.QueryParams(token_request.content.decode())) == {
        "grant_type": "refresh_token",
        **REFRESH,
    }
    assert [request.headers["Authorization"] for request in api_requests] == ["Bearer ya29.minted-1"] * 2


def test_a_minted_token_is_renewed_when_it_expires_or_is_refused() -> None:
    refused = google_error(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED")
    transport = ReplayTransport(
        Route(
            "POST",
            r"^/token$",
            [minted("ya29.minted-1"), minted("ya29.minted-2", lifetime=70), minted("ya29.minted-3")],
        ),
        second_page(),
        first_page(refused, json_response(load_json(KIND, "page1.json"))),
    )
    # Three requests a minute: every request waits 20 s, so a 70 s token is stale by the second page.
    sink, result = run_source(refreshing_source(transport))
    assert result.done and len(sink.records) == 5
    sent = [request.headers.get("Authorization") for request in transport.requests if request.method == "GET"]
    assert sent == ["Bearer ya29.minted-1", "Bearer ya29.minted-2", "Bearer ya29.minted-3"]


def test_a_revoked_refresh_token_is_a_clear_error_without_secrets() -> None:
    revoked = json_response(
        {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}, 400
    )
    transport = ReplayTransport(Route("POST", r"^/token$", [revoked]))
    with pytest.raises(BadCredentialsError) as caught:
        run_source(refreshing_source(transport))
    message = str(caught.value)
    assert "Token has been expired or revoked." in message
    assert "refresh token is still valid" in message
    assert not any(secret in message for secret in ("GOCSPX-secret", "1//0g-refresh-secret"))
    assert len(transport.requests) == 1


def test_an_app_the_account_cannot_see_is_not_found() -> None:
    missing = google_error(404, "No application was found for the given package name.", "NOT_FOUND")
    transport = ReplayTransport(first_page(missing))
    with pytest.raises(NotFoundError, match="No application was found"):
        run_source(make_source(transport))


def test_config_is_validated_through_the_registry() -> None:
    with pytest.raises(ValueError, match="package_name"):
        build_source("google_play.v1", {"access_token": "x"}, environ={})
    with pytest.raises(ValueError, match="package_name"):
        build_source("google_play.v1", {"package_name": "shop", "access_token": "x"}, environ={})
    with pytest.raises(ValueError, match="access_token"):
        build_source("google_play.v1", {"package_name": "com.example.shop"}, environ={})
    with pytest.raises(ValueError, match="environment variable PLAY_TOKEN is not set"):
        build_source(
            "google_play.v1",
            {"package_name": "com.example.shop", "access_token": {"env": "PLAY_TOKEN"}},
            environ={},
        )
    with pytest.raises(ValueError, match="not both"):
        build_source(
            "google_play.v1", {"package_name": "com.example.shop", "access_token": "x", **REFRESH}, environ={}
        )
    with pytest.raises(ValueError, match="client_id, client_secret and refresh_token"):
        build_source("google_play.v1", {"package_name": "com.example.shop", "refresh_token": "x"}, environ={})
    masked = masked_config("google_play.v1", {"package_name": "com.example.shop", **REFRESH})
    assert masked["client_secret"] == masked["refresh_token"] == "********"
    assert masked["client_id"] == REFRESH["client_id"]
    raw = {"package_name": "com.example.shop", "access_token": {"env": "PLAY_TOKEN"}}
    source = build_source("google_play.v1", raw, environ={"PLAY_TOKEN": TOKEN})
    assert isinstance(source, GooglePlaySource)
    assert TOKEN not in repr(source.config)
    assert source.config.requests_per_minute == 3.0
    assert masked_config("google_play.v1", {**raw, "access_token": TOKEN})["access_token"] == "********"
