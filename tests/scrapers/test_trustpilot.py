"""Trustpilot reviews: replayed from recorded Business Units API pages."""

from __future__ import annotations

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
from scrapers.registry import build_source
from scrapers.sources.trustpilot import TrustpilotConfig, TrustpilotSource
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

KIND = "trustpilot"
API_KEY = "tp-secret-api-key-0123456789"
BUSINESS_UNIT = "5f8a1c2b3d4e5f6a7b8c9d0e"
REVIEWS = rf"^/v1/business-units/{BUSINESS_UNIT}/reviews$"


def make_source(
    transport: ReplayTransport, sleep: FakeSleep | None = None, **config: object
) -> TrustpilotSource:
    settings = TrustpilotConfig.model_validate(
        {"business_unit_id": BUSINESS_UNIT, "api_key": API_KEY, "location": "Online shop", **config}
    )
    sleep = sleep or FakeSleep()
    return TrustpilotSource(settings, transport=transport, sleep=sleep, clock=sleep.clock)


def page(number: int, *replies: Reply) -> Route:
    """The route of one page number: its recorded replies, by default the recorded page itself."""
    recorded: list[Reply] = list(replies) or [json_response(load_json(KIND, f"page{number}.json"))]
    return Route("GET", REVIEWS, recorded, params={"page": str(number)})


def full_listing() -> ReplayTransport:
    return ReplayTransport(page(1), page(2))


def test_reads_every_page_to_the_end() -> None:
    transport = full_listing()
    sink, result = run_source(make_source(transport, product="Northwind Shop"), default_touchpoint="delivery")
    assert result.done and result.pages == 2
    records = sink.records
    assert len(records) == 5

    arabic = records[0]
    assert arabic.external_id == "6745f1a2b3c4d5e6f7a8b901"
    assert arabic.text == (
        "التوصيل متأخر\nطلبت يوم الأحد ووصل الطلب بعد أسبوع كامل، وخدمة العملاء لم ترد على رسائلي."
    )
    assert arabic.rating is not None and arabic.rating.value == 2.0
    assert arabic.rating.scale is RatingScale.STARS
    assert arabic.created_at == datetime(2026, 11, 20, 16, 45, 12, tzinfo=UTC)
    assert arabic.author == "5c3e1a2b3c4d5e6f7a8b9c01"
    assert arabic.language == "ar"
    assert arabic.location == "Northwind Dubai Mall"
    assert arabic.product == "Northwind Shop"
    assert arabic.url == "https://www.trustpilot.com/reviews/6745f1a2b3c4d5e6f7a8b901"
    assert arabic.touchpoint == "delivery"
    assert arabic.metadata["consumer_location"] == "Dubai, AE"
    assert arabic.metadata["company_reply"].startswith("We are sorry, Fatima.")
    assert arabic.metadata["verification_level"] == "invited"
    assert records[1].location == "Online shop"  # a review of no particular location: the configured one
    assert records[2].metadata["is_verified"] is False

    assert sink.cursor == {"since": "2026-11-20T16:45:12+00:00"}
    request = transport.requests[0]
    assert request.headers["apikey"] == API_KEY
    assert request.url.params["orderBy"] == "createdat.desc"
    assert request.url.params["perPage"] == "100"


def test_next_run_stops_at_the_first_review_already_seen() -> None:
    sink, _ = run_source(make_source(full_listing()))
    later = ReplayTransport(page(1, json_response(load_json(KIND, "page1_later.json"))))
    sink2, result = run_source(make_source(later), cursor=sink.cursor)
    assert result.done and result.pages == 1
    assert [record.external_id for record in sink2.records] == [
        "67460a1b2c3d4e5f6a7b8c20",
        "6745f1a2b3c4d5e6f7a8b901",  # stored already, at exactly the cursor's time: storage drops it
    ]
    assert sink2.cursor == {"since": "2026-11-21T11:20:00+00:00"}


def test_resumes_from_a_saved_mid_run_cursor() -> None:
    sink, result = run_source(make_source(full_listing()), max_pages=1)
    assert not result.done
    assert sink.cursor == {"page": 2, "newest": "2026-11-20T16:45:12+00:00"}
    resumed = ReplayTransport(page(2))
    sink2, result2 = run_source(make_source(resumed), cursor=sink.cursor)
    assert result2.done and len(resumed.requests) == 1
    assert len({record.external_id for record in sink.records + sink2.records}) == 5
    assert sink2.cursor == {"since": "2026-11-20T16:45:12+00:00"}


def test_language_filters_are_sent() -> None:
    transport = ReplayTransport(page(1, json_response(load_json(KIND, "page2.json"))))
    run_source(make_source(transport, languages=["EN", "ar"], page_size=20))
    params = transport.requests[0].url.params
    assert params.get_list("language") == ["en", "ar"]
    assert params["perPage"] == "20"


def test_waits_out_a_429_with_retry_after() -> None:
    sleep = FakeSleep()
    transport = ReplayTransport(
        page(
            1,
            json_response({"message": "Too many requests"}, 429, {"Retry-After": "12"}),
            json_response(load_json(KIND, "page1.json")),
        ),
        page(2),
    )
    sink, result = run_source(make_source(transport, sleep))
    assert result.done and len(sink.records) == 5
    assert 12.0 in sleep.waits


def test_a_long_retry_after_defers_the_run() -> None:
    transport = ReplayTransport(page(1, json_response({}, 429, {"Retry-After": "900"})))
    with pytest.raises(RateLimitedError) as caught:
        run_source(make_source(transport))
    assert caught.value.retry_after == 900


def test_retries_a_5xx_then_succeeds() -> None:
    sleep = FakeSleep()
    transport = ReplayTransport(
        page(1),
        page(
            2,
            raw_response("<html><body>502 Bad Gateway</body></html>", 502, content_type="text/html"),
            json_response(load_json(KIND, "page2.json")),
        ),
    )
    sink, result = run_source(make_source(transport, sleep))
    assert result.done and len(sink.records) == 5
    assert len(transport.requests) == 3
    assert len(sleep.waits) >= 1


def test_a_timeout_is_retried_and_then_reported() -> None:
    transport = ReplayTransport(page(1, *[httpx.ConnectTimeout("timed out") for _ in range(4)]))
    with pytest.raises(TransientError, match="did not answer within 20 s"):
        run_source(make_source(transport))
    assert len(transport.requests) == 4


def test_malformed_reviews_are_reported_and_the_rest_kept() -> None:
    transport = ReplayTransport(page(1, json_response(load_json(KIND, "page_malformed.json"))))
    sink, result = run_source(make_source(transport))
    assert [record.external_id for record in sink.records] == ["6745b7d8e9f0a1b2c3d4e505"]
    reasons = {report.external_id: report.reason for report in result.malformed}
    assert "stars ratings run from 1 to 5; got 0" in reasons["6745a6c7d8e9f0a1b2c3d499"]
    assert reasons["6745a6c7d8e9f0a1b2c3d498"] == "created_at is missing"
    assert reasons["6745a6c7d8e9f0a1b2c3d497"] == "text is missing"
    assert result.malformed[0].where == "page=1/reviews[1]"


def test_a_body_that_is_not_json_fails_clearly() -> None:
    transport = ReplayTransport(page(1, raw_response("<html>Down for maintenance</html>", 200)))
    with pytest.raises(MalformedResponseError, match="not JSON"):
        run_source(make_source(transport))


def test_a_body_without_reviews_fails_clearly() -> None:
    transport = ReplayTransport(page(1, json_response({"links": []})))
    with pytest.raises(MalformedResponseError, match="without a 'reviews' list"):
        run_source(make_source(transport))


def test_a_wrong_api_key_is_a_clear_error_without_the_key() -> None:
    invalid = json_response(
        {"fault": {"faultstring": "Invalid ApiKey", "detail": {"errorcode": "oauth.v2.InvalidApiKey"}}}, 401
    )
    transport = ReplayTransport(page(1, invalid))
    with pytest.raises(BadCredentialsError) as caught:
        run_source(make_source(transport))
    message = str(caught.value)
    assert "Trustpilot API refused the credentials (HTTP 401)" in message
    assert "Invalid ApiKey" in message
    assert API_KEY not in message


def test_an_unknown_business_unit_is_not_found() -> None:
    missing = json_response({"message": "Business unit not found", "errorCode": 0}, 404)
    transport = ReplayTransport(page(1, missing))
    with pytest.raises(NotFoundError, match=r"Business unit not found\. Check the configured id"):
        run_source(make_source(transport))
    assert len(transport.requests) == 1


def test_config_is_validated_through_the_registry() -> None:
    with pytest.raises(ValueError, match="business_unit_id"):
        build_source("trustpilot.v1", {"api_key": "x"}, environ={})
    with pytest.raises(ValueError, match="business_unit_id"):
        build_source("trustpilot.v1", {"business_unit_id": "northwind-shop.com", "api_key": "x"}, environ={})
    with pytest.raises(ValueError, match="api_key"):
        build_source("trustpilot.v1", {"business_unit_id": BUSINESS_UNIT}, environ={})
    with pytest.raises(ValueError, match="not ISO 639-1 language codes: english"):
        build_source(
            "trustpilot.v1",
            {"business_unit_id": BUSINESS_UNIT, "api_key": "x", "languages": ["english"]},
            environ={},
        )
    source = build_source(
        "trustpilot.v1",
        {"business_unit_id": BUSINESS_UNIT, "api_key": {"env": "TRUSTPILOT_API_KEY"}},
        environ={"TRUSTPILOT_API_KEY": API_KEY},
    )
    assert isinstance(source, TrustpilotSource)
    assert API_KEY not in repr(source.config)
