"""Yelp review excerpts: replayed from recorded Yelp Fusion API answers, two businesses."""

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
from scrapers.sources.yelp import YelpConfig, YelpSource, pacific_time
from tests.scrapers.replay import (
    FakeSleep,
    MemorySink,
    ReplayTransport,
    Reply,
    Route,
    json_response,
    load_json,
    raw_response,
    run_source,
)

KIND = "yelp"
API_KEY = "yelp-secret-api-key-abcdefghijklmnopqrstuvwxyz"
SF = "northwind-coffee-san-francisco"
BERLIN = "northwind-coffee-berlin"
BUSINESSES = [
    {"business_id": SF, "location": "San Francisco – Mission"},
    {"business_id": BERLIN, "location": "Berlin Kreuzberg", "locale": "de_DE"},
]


def make_source(transport: ReplayTransport, sleep: FakeSleep | None = None, **config: object) -> YelpSource:
    settings = YelpConfig.model_validate({"api_key": API_KEY, "businesses": BUSINESSES, **config})
    sleep = sleep or FakeSleep()
    return YelpSource(settings, transport=transport, sleep=sleep, clock=sleep.clock)


def recorded(name: str) -> list[Reply]:
    return [json_response(load_json(KIND, name))]


def business(business_id: str, *replies: Reply, offset: int = 0) -> Route:
    default = {SF: "sf_reviews.json", BERLIN: "berlin_reviews.json"}[business_id]
    return Route(
        "GET",
        rf"^/v3/businesses/{business_id}/reviews$",
        list(replies) or recorded(default),
        params={"offset": str(offset)},
    )


def both_businesses() -> ReplayTransport:
    return ReplayTransport(business(SF), business(BERLIN))


def yelp_error(status: int, code: str, description: str) -> httpx.Response:
    return json_response({"error": {"code": code, "description": description}}, status)


def test_reads_every_business_to_the_end() -> None:
    transport = both_businesses()
    sink, result = run_source(
        make_source(transport, product="Coffee bars"), default_touchpoint="store_branch"
    )
    # The standard plan answers three excerpts of 214 reviews: one request per business.
    assert result.done and result.pages == 2 and len(transport.requests) == 2
    records = sink.records
    assert len(records) == 6

    dana = records[0]
    assert dana.external_id == "kQ9mP2xR7tLw3vYb8nZc1A"
    assert dana.text.startswith("Waited 25 minutes for a pour-over") and dana.text.endswith("...")
    assert dana.rating is not None and dana.rating.value == 2.0 and dana.rating.scale is RatingScale.STARS
    assert dana.created_at == datetime(2026, 11, 20, 16, 15, 42, tzinfo=UTC)  # 08:15:42 PST
    assert dana.author == "u4Hn8Rt2Lm6Qp0Vx3Yk9Bw"
    assert dana.location == "San Francisco – Mission"
    assert dana.product == "Coffee bars"
    assert dana.touchpoint == "store_branch"
    assert dana.language is None
    assert dana.url is not None and dana.url.startswith(f"https://www.yelp.com/biz/{SF}?")
    assert dana.metadata == {"excerpt": True, "business_id": SF}
    assert records[2].created_at == datetime(2026, 7, 4, 19, 0, tzinfo=UTC)  # 12:00 PDT

    katrin = records[3]
    assert katrin.text.startswith("Der Kaffee war kalt")
    assert katrin.language == "de"
    assert katrin.location == "Berlin Kreuzberg"
    assert katrin.metadata["locale"] == "de_DE"

    assert sink.cursor == {"since": {SF: "2026-11-20T08:15:42-08:00", BERLIN: "2026-11-19T23:40:00-08:00"}}
    sf_request, berlin_request = transport.requests
    assert sf_request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert dict(sf_request.url.params) == {"limit": "50", "offset": "0", "sort_by": "newest"}
    assert berlin_request.url.params["locale"] == "de_DE"


def test_next_run_fetches_only_what_is_new_per_business() -> None:
    sink, _ = run_source(make_source(both_businesses()))
    later = ReplayTransport(business(SF, *recorded("sf_later.json")), business(BERLIN))
    sink2, result = run_source(make_source(later), cursor=sink.cursor)
    assert result.done
    assert [record.external_id for record in sink2.records] == [
        "lR0nQ3yS8uMx4wZc9oAd2B",
        "kQ9mP2xR7tLw3vYb8nZc1A",  # at exactly the cursor's time: storage drops it by its id
        "hN6jM9uO4qIt0sVy5kWz8X",
    ]
    assert sink2.cursor == {"since": {SF: "2026-11-21T07:05:00-08:00", BERLIN: "2026-11-19T23:40:00-08:00"}}


def test_pages_through_an_enhanced_plan_and_resumes_mid_business() -> None:
    def enhanced() -> ReplayTransport:
        return ReplayTransport(
            business(SF, *recorded("sf_enhanced_offset0.json")),
            business(SF, *recorded("sf_enhanced_offset3.json"), offset=3),
            business(BERLIN),
            # Three excerpts of 41 fill a page of three: one more request finds the end.
            business(
                BERLIN, json_response({"reviews": [], "total": 41, "possible_languages": ["de"]}), offset=3
            ),
        )

    sink, result = run_source(make_source(enhanced(), page_size=3), max_pages=1)
    assert not result.done
    assert sink.cursor == {"since": {}, "business_id": SF, "offset": 3, "newest": "2026-11-20T08:15:42-08:00"}
    resumed = enhanced()
    resumed.routes.pop(0)
    sink2, result2 = run_source(make_source(resumed, page_size=3), cursor=sink.cursor)
    assert result2.done and result2.pages == 3
    assert len({record.external_id for record in sink.records + sink2.records}) == 8
    assert sink2.cursor == {"since": {SF: "2026-11-20T08:15:42-08:00", BERLIN: "2026-11-19T23:40:00-08:00"}}


def test_yelp_sort_reads_every_excerpt_each_run() -> None:
    sink, _ = run_source(make_source(both_businesses(), sort_by="yelp_sort"))
    again = both_businesses()
    sink2, _ = run_source(make_source(again, sort_by="yelp_sort"), cursor=sink.cursor)
    assert len(sink2.records) == 6
    assert again.requests[0].url.params["sort_by"] == "yelp_sort"


def test_waits_out_a_429_with_retry_after() -> None:
    sleep = FakeSleep()
    too_fast = yelp_error(
        429, "TOO_MANY_REQUESTS_PER_SECOND", "You have exceeded the queries-per-second limit."
    )
    transport = ReplayTransport(
        business(SF, json_response(too_fast.json(), 429, {"Retry-After": "2"}), *recorded("sf_reviews.json")),
        business(BERLIN),
    )
    sink, result = run_source(make_source(transport, sleep))
    assert result.done and len(sink.records) == 6
    assert 2.0 in sleep.waits


def test_a_long_retry_after_defers_the_run_after_keeping_earlier_businesses() -> None:
    limit = {"error": {"code": "ACCESS_LIMIT_REACHED", "description": "You've reached the access limit."}}
    transport = ReplayTransport(
        business(SF), business(BERLIN, json_response(limit, 429, {"Retry-After": "40000"}))
    )
    sink = MemorySink()
    with pytest.raises(RateLimitedError) as caught:
        run_source(make_source(transport), sink=sink)
    assert caught.value.retry_after == 40000
    assert len(sink.records) == 3 and sink.cursor is not None and sink.cursor["business_id"] == BERLIN


def test_retries_a_5xx_then_succeeds() -> None:
    sleep = FakeSleep()
    transport = ReplayTransport(
        business(SF),
        business(
            BERLIN,
            yelp_error(
                500, "INTERNAL_ERROR", "Something went wrong internally, please try your request again"
            ),
            yelp_error(503, "SERVICE_UNAVAILABLE", "Service unavailable."),
            *recorded("berlin_reviews.json"),
        ),
    )
    sink, result = run_source(make_source(transport, sleep))
    assert result.done and len(sink.records) == 6
    assert len(transport.requests) == 4
    assert len(sleep.waits) >= 2


def test_a_timeout_is_retried_and_then_reported() -> None:
    transport = ReplayTransport(business(SF, *[httpx.ReadTimeout("timed out") for _ in range(4)]))
    with pytest.raises(TransientError, match="did not answer within 20 s"):
        run_source(make_source(transport))
    assert len(transport.requests) == 4


def test_malformed_reviews_are_reported_and_the_rest_kept() -> None:
    transport = ReplayTransport(business(SF, *recorded("sf_malformed.json")), business(BERLIN))
    sink, result = run_source(make_source(transport))
    kept = [record.external_id for record in sink.records]
    assert kept == [
        "iO7kN0vP5rJu1tWz6lXa9Y",
        "hN6jM9uO4qIt0sVy5kWz8X",
        "gM5iL8tN3pHs9rUx4jVy7W",
        "fL4hK7sM2oGr8qTw3iUx6V",
    ]
    reasons = {report.external_id: report.reason for report in result.malformed}
    assert reasons == {
        "cI1eH4pJ9lDo5nQt0fRu3S": "rating: stars ratings run from 1 to 5; got 10",
        "bH0dG3oI8kCn4mPs9eQt2R": "created_at: '20/11/2026 10:00' is not a Yelp time (YYYY-MM-DD HH:MM:SS)",
        "aG9cF2nH7jBm3lOr8dPs1Q": "text is missing",
    }
    assert result.malformed[0].where == f"{SF}/offset=0/reviews[1]"


def test_a_body_that_is_not_json_fails_clearly() -> None:
    transport = ReplayTransport(business(SF, raw_response("<!DOCTYPE html><html>Yelp</html>", 200)))
    with pytest.raises(MalformedResponseError, match="not JSON"):
        run_source(make_source(transport))


def test_a_wrong_api_key_is_a_clear_error_without_the_key() -> None:
    invalid = yelp_error(401, "TOKEN_INVALID", "Invalid access token or authorization header.")
    transport = ReplayTransport(business(SF, invalid))
    with pytest.raises(BadCredentialsError) as caught:
        run_source(make_source(transport))
    message = str(caught.value)
    assert "Yelp Fusion API refused the credentials (HTTP 401)" in message
    assert "Invalid access token" in message
    assert API_KEY not in message
    assert len(transport.requests) == 1


def test_a_missing_token_reported_as_400_is_bad_credentials_too() -> None:
    missing = yelp_error(
        400, "TOKEN_MISSING", "An access token must be supplied in order to use this endpoint."
    )
    transport = ReplayTransport(business(SF, missing))
    with pytest.raises(BadCredentialsError, match="access token must be supplied"):
        run_source(make_source(transport))


def test_an_unknown_business_names_the_business() -> None:
    transport = ReplayTransport(
        business(SF, yelp_error(404, "BUSINESS_NOT_FOUND", "The requested business could not be found."))
    )
    with pytest.raises(NotFoundError) as caught:
        run_source(make_source(transport))
    message = str(caught.value)
    assert "The requested business could not be found." in message
    assert f"business '{SF}', San Francisco – Mission" in message


def test_config_is_validated_through_the_registry() -> None:
    with pytest.raises(ValueError, match="businesses"):
        build_source("yelp.v1", {"api_key": "x"}, environ={})
    with pytest.raises(ValueError, match="api_key"):
        build_source("yelp.v1", {"businesses": BUSINESSES}, environ={})
    with pytest.raises(ValueError, match=r"businesses\.0\.location"):
        build_source("yelp.v1", {"api_key": "x", "businesses": [{"business_id": SF}]}, environ={})
    with pytest.raises(ValueError, match=r"businesses\.0\.business_id"):
        build_source(
            "yelp.v1",
            {"api_key": "x", "businesses": [{"business_id": "https://www.yelp.com/biz/x", "location": "X"}]},
            environ={},
        )
    with pytest.raises(ValueError, match=r"businesses\.0\.locale"):
        build_source(
            "yelp.v1",
            {"api_key": "x", "businesses": [{"business_id": SF, "location": "X", "locale": "german"}]},
            environ={},
        )
    with pytest.raises(ValueError, match=f"businesses listed twice: {SF}"):
        build_source("yelp.v1", {"api_key": "x", "businesses": [BUSINESSES[0], BUSINESSES[0]]}, environ={})
    source = build_source(
        "yelp.v1",
        {"api_key": {"env": "YELP_API_KEY"}, "businesses": BUSINESSES},
        environ={"YELP_API_KEY": API_KEY},
    )
    assert isinstance(source, YelpSource)
    assert API_KEY not in repr(source.config)


def test_pacific_time_follows_daylight_saving() -> None:
    assert pacific_time("2026-01-15 09:00:00").utcoffset() is not None
    assert pacific_time("2026-01-15 09:00:00").astimezone(UTC).hour == 17
    assert pacific_time("2026-08-15 09:00:00").astimezone(UTC).hour == 16
