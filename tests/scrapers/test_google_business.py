"""Google Business Profile reviews: replayed from recorded My Business API v4 pages, two locations."""

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
from scrapers.registry import build_source
from scrapers.sources.google_business import (
    GoogleBusinessConfig,
    GoogleBusinessSource,
    split_google_translation,
)
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

KIND = "google_business"
TOKEN = "ya29.a0-business-secret-token"
ACCOUNT = "104938257165294730215"
BERLIN = "5728391047263819450"
DUBAI = "1837465920183746502"
PAGE2_TOKEN = "ABHRLXX0tX3bRPF1g5mRZ4o4tW9n8dC2Lq7m"
LOCATIONS = [
    {"location_id": BERLIN, "name": "Berlin Mitte"},
    {"location_id": f"locations/{DUBAI}", "name": "Dubai Mall"},
]


def reviews_path(location_id: str) -> str:
    return rf"^/v4/accounts/{ACCOUNT}/locations/{location_id}/reviews$"


def make_source(
    transport: ReplayTransport, sleep: FakeSleep | None = None, **config: object
) -> GoogleBusinessSource:
    settings = GoogleBusinessConfig.model_validate(
        {"account_id": f"accounts/{ACCOUNT}", "locations": LOCATIONS, "access_token": TOKEN, **config}
    )
    sleep = sleep or FakeSleep()
    return GoogleBusinessSource(settings, transport=transport, sleep=sleep, clock=sleep.clock)


def recorded(name: str) -> list[Reply]:
    return [json_response(load_json(KIND, name))]


def berlin_first(*replies: Reply) -> Route:
    return Route("GET", reviews_path(BERLIN), list(replies) or recorded("berlin_page1.json"))


def berlin_second(*replies: Reply) -> Route:
    return Route(
        "GET",
        reviews_path(BERLIN),
        list(replies) or recorded("berlin_page2.json"),
        params={"pageToken": PAGE2_TOKEN},
    )


def dubai(*replies: Reply) -> Route:
    return Route("GET", reviews_path(DUBAI), list(replies) or recorded("dubai_page1.json"))


def every_location() -> ReplayTransport:
    # The token route comes first: a request without a token does not match its params.
    return ReplayTransport(berlin_second(), berlin_first(), dubai())


def google_error(status: int, message: str, google_status: str) -> httpx.Response:
    return json_response({"error": {"code": status, "message": message, "status": google_status}}, status)


def test_walks_every_location_to_the_end(caplog: pytest.LogCaptureFixture) -> None:
    transport = every_location()
    with caplog.at_level(logging.INFO, logger="cxmine.scrapers"):
        sink, result = run_source(make_source(transport, product="Stores"), default_touchpoint="store_branch")
    assert result.done and result.pages == 3
    assert result.malformed == []
    records = sink.records
    # The rating-only review (Jan Peters, four stars, no comment) is not feedback text: skipped, not malformed.
    assert [record.external_id for record in records] == [
        "AbFvOqmW1jK3v0Y2xQp7rT9s8uV6w4zA",
        "AbFvOqoY3lM5x2A4zSr9tV1u0wX8y6bC",
        "AbFvOqpZ4mN6y3B5aTs0uW2v1xY9z7cD",
        "AbFvOqqA5nO7z4C6bUt1vX3w2yZ0a8dE",
        "AbFvOqrB6oP8a5D7cVu2wY4x3zA1b9eF",
        "AbFvOqsC7pQ9b6E8dWv3xZ5y4aB2c0fG",
    ]
    assert "rating and no comment" in caplog.text

    lena = records[0]
    assert lena.text.startswith("Super freundliche Beratung")
    assert lena.rating is not None and lena.rating.value == 5.0 and lena.rating.scale is RatingScale.STARS
    assert lena.created_at == datetime(2026, 11, 20, 14, 3, 27, 519000, tzinfo=UTC)
    assert lena.author == "Lena Hoffmann"
    assert lena.location == "Berlin Mitte"
    assert lena.product == "Stores"
    assert lena.touchpoint == "store_branch"
    assert lena.metadata["location_id"] == BERLIN
    assert lena.metadata["owner_reply"].startswith("Vielen Dank, Lena!")
    assert lena.metadata["review_name"] == (
        f"accounts/{ACCOUNT}/locations/{BERLIN}/reviews/AbFvOqmW1jK3v0Y2xQp7rT9s8uV6w4zA"
    )
    assert records[1].metadata["updated_at"] == "2026-11-19T18:45:10.250Z"
    anonymous = records[2]
    assert anonymous.author is None and anonymous.metadata["reviewer_anonymous"] is True

    omar = records[4]
    assert omar.location == "Dubai Mall"
    assert omar.text == "كان الموظفون متعاونين جداً واستغرق الاستبدال دقيقتين."
    assert omar.metadata["translated_text"] == (
        "The staff were very helpful and the exchange took two minutes."
    )

    assert sink.cursor == {
        "since": {BERLIN: "2026-11-20T14:03:27.519000+00:00", DUBAI: "2026-11-20T19:40:00+00:00"}
    }
    request = transport.requests[0]
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert dict(request.url.params) == {"pageSize": "50", "orderBy": "updateTime desc"}


def test_next_run_fetches_only_what_is_new_per_location() -> None:
    sink, _ = run_source(make_source(every_location()))
    later = ReplayTransport(
        berlin_first(*recorded("berlin_later.json")),
        dubai(*recorded("dubai_page1.json")),
    )
    sink2, result = run_source(make_source(later), cursor=sink.cursor)
    assert result.done and result.pages == 2
    assert [record.external_id for record in sink2.records] == [
        "AbFvOqtD8qR0c7F9eXw4yA6z5bC3d1gH",
        "AbFvOqmW1jK3v0Y2xQp7rT9s8uV6w4zA",  # at exactly the cursor's time: storage drops it by its id
        "AbFvOqrB6oP8a5D7cVu2wY4x3zA1b9eF",
    ]
    assert sink2.cursor == {
        "since": {BERLIN: "2026-11-21T09:30:00+00:00", DUBAI: "2026-11-20T19:40:00+00:00"}
    }
    assert len(later.requests) == 2  # Berlin's next page token was not followed


def test_resumes_from_a_saved_mid_run_cursor() -> None:
    sink, result = run_source(make_source(every_location()), max_pages=1)
    assert not result.done
    assert sink.cursor == {
        "since": {},
        "location_id": BERLIN,
        "page_token": PAGE2_TOKEN,
        "newest": "2026-11-20T14:03:27.519000+00:00",
    }
    resumed = ReplayTransport(berlin_second(), dubai())
    sink2, result2 = run_source(make_source(resumed), cursor=sink.cursor)
    assert result2.done and len(resumed.requests) == 2
    assert len({record.external_id for record in sink.records + sink2.records}) == 6
    assert sink2.cursor == {
        "since": {BERLIN: "2026-11-20T14:03:27.519000+00:00", DUBAI: "2026-11-20T19:40:00+00:00"}
    }


def test_a_location_removed_from_the_config_restarts_the_walk() -> None:
    transport = ReplayTransport(berlin_second(), berlin_first(), dubai())
    cursor = {"since": {}, "location_id": "999", "page_token": "stale"}
    sink, result = run_source(make_source(transport), cursor=cursor)
    assert result.done and len(sink.records) == 6
    assert "pageToken" not in transport.requests[0].url.params


def test_a_refused_page_token_restarts_the_location_from_its_newest_reviews() -> None:
    stale = google_error(400, "Request contains an invalid argument.", "INVALID_ARGUMENT")
    transport = ReplayTransport(berlin_second(stale), berlin_first(*recorded("berlin_page2.json")), dubai())
    cursor = {"since": {}, "location_id": BERLIN, "page_token": PAGE2_TOKEN}
    sink, result = run_source(make_source(transport), cursor=cursor)
    assert result.done and len(sink.records) == 4
    assert ["pageToken" in request.url.params for request in transport.requests] == [True, False, False]


def test_a_location_without_reviews_is_an_empty_page() -> None:
    transport = ReplayTransport(berlin_first(json_response({})), dubai(json_response({})))
    sink, result = run_source(make_source(transport))
    assert result.done and sink.records == [] and sink.cursor == {"since": {}}


def test_waits_out_a_429_with_retry_after() -> None:
    sleep = FakeSleep()
    quota = {"error": {"code": 429, "message": "Quota exceeded.", "status": "RESOURCE_EXHAUSTED"}}
    transport = ReplayTransport(
        berlin_second(),
        berlin_first(),
        dubai(json_response(quota, 429, {"Retry-After": "20"}), *recorded("dubai_page1.json")),
    )
    sink, result = run_source(make_source(transport, sleep))
    assert result.done and len(sink.records) == 6
    assert 20.0 in sleep.waits


def test_a_long_retry_after_defers_the_run_after_keeping_earlier_pages() -> None:
    transport = ReplayTransport(
        berlin_second(), berlin_first(), dubai(json_response({}, 429, {"Retry-After": "7200"}))
    )
    sink = MemorySink()
    with pytest.raises(RateLimitedError) as caught:
        run_source(make_source(transport), sink=sink)
    assert caught.value.retry_after == 7200
    assert len(sink.records) == 4  # Berlin's pages were stored with a cursor that resumes at Dubai
    assert sink.cursor is not None and sink.cursor["location_id"] == DUBAI


def test_retries_a_5xx_then_succeeds() -> None:
    sleep = FakeSleep()
    transport = ReplayTransport(
        berlin_second(
            google_error(500, "Internal error encountered.", "INTERNAL"),
            *recorded("berlin_page2.json"),
        ),
        berlin_first(),
        dubai(),
    )
    sink, result = run_source(make_source(transport, sleep))
    assert result.done and len(sink.records) == 6
    assert len(transport.requests) == 4
    assert len(sleep.waits) >= 1


def test_a_timeout_is_retried_and_then_reported() -> None:
    transport = ReplayTransport(berlin_first(*[httpx.ReadTimeout("timed out") for _ in range(4)]))
    with pytest.raises(TransientError, match="did not answer within 20 s"):
        run_source(make_source(transport))
    assert len(transport.requests) == 4


def test_malformed_reviews_are_reported_and_the_rest_kept() -> None:
    transport = ReplayTransport(berlin_first(*recorded("berlin_malformed.json")), dubai(json_response({})))
    sink, result = run_source(make_source(transport))
    assert [record.external_id for record in sink.records] == [
        "AbFvOqqA5nO7z4C6bUt1vX3w2yZ0a8dE",
        "AbFvOqwG1tU3f0I2hAz7bD9c8eF6g4jK",
    ]
    assert sink.records[1].rating is None  # STAR_RATING_UNSPECIFIED: no rating, still feedback
    reasons = {report.external_id: report.reason for report in result.malformed}
    assert reasons == {
        "AbFvOquE9rS1d8G0fYx5zB7a6cD4e2hI": "rating: 'SIX' is not a star rating",
        "AbFvOqvF0sT2e9H1gZy6aC8b7dE5f3iJ": "created_at is missing",
    }
    assert result.malformed[0].where == f"locations/{BERLIN}/reviews[1]"


def test_a_body_that_is_not_json_fails_clearly() -> None:
    transport = ReplayTransport(berlin_first(raw_response("<html><title>Error 502</title></html>", 200)))
    with pytest.raises(MalformedResponseError, match="not JSON"):
        run_source(make_source(transport))


def test_an_expired_token_is_a_clear_error_without_the_token() -> None:
    transport = ReplayTransport(
        berlin_first(google_error(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED"))
    )
    with pytest.raises(BadCredentialsError) as caught:
        run_source(make_source(transport))
    message = str(caught.value)
    assert "Google Business Profile API refused the credentials (HTTP 401)" in message
    assert "expire after an hour" in message
    assert TOKEN not in message


def test_signs_in_with_a_refresh_token() -> None:
    token = {"access_token": "ya29.minted", "expires_in": 3599, "token_type": "Bearer"}
    transport = ReplayTransport(Route("POST", r"^/token$", [json_response(token)]), *every_location().routes)
    refresh = {"client_id": "1234-abc.apps.googleusercontent.com", "client_secret": "s", "refresh_token": "r"}
    settings = GoogleBusinessConfig.model_validate({"account_id": ACCOUNT, "locations": LOCATIONS, **refresh})
    sink, result = run_source(GoogleBusinessSource(settings, transport=transport, sleep=FakeSleep()))
    assert result.done and len(sink.records) == 6
    assert {request.headers.get("Authorization") for request in transport.requests[1:]} == {
        "Bearer ya29.minted"
    }


def test_an_unknown_location_names_the_location() -> None:
    transport = ReplayTransport(
        berlin_first(google_error(404, "Requested entity was not found.", "NOT_FOUND"))
    )
    with pytest.raises(NotFoundError) as caught:
        run_source(make_source(transport))
    assert f"location 'Berlin Mitte', id {BERLIN}, account {ACCOUNT}" in str(caught.value)


def test_config_is_validated_through_the_registry() -> None:
    with pytest.raises(ValueError, match="locations"):
        build_source("google_business.v1", {"account_id": ACCOUNT, "access_token": "x"}, environ={})
    with pytest.raises(ValueError, match="account_id"):
        build_source(
            "google_business.v1",
            {"account_id": "my-brand", "locations": LOCATIONS, "access_token": "x"},
            environ={},
        )
    with pytest.raises(ValueError, match=r"locations\.0\.name"):
        build_source(
            "google_business.v1",
            {"account_id": ACCOUNT, "locations": [{"location_id": BERLIN}], "access_token": "x"},
            environ={},
        )
    with pytest.raises(ValueError, match=f"locations listed twice: {BERLIN}"):
        build_source(
            "google_business.v1",
            {"account_id": ACCOUNT, "locations": [LOCATIONS[0], LOCATIONS[0]], "access_token": "x"},
            environ={},
        )
    source = build_source(
        "google_business.v1",
        {"account_id": ACCOUNT, "locations": LOCATIONS, "access_token": {"env": "GBP_TOKEN"}},
        environ={"GBP_TOKEN": TOKEN},
    )
    assert isinstance(source, GoogleBusinessSource)
    assert [location.location_id for location in source.config.locations] == [BERLIN, DUBAI]
    assert TOKEN not in repr(source.config)


@pytest.mark.parametrize(
    ("comment", "expected"),
    [
        ("Plain review.", ("Plain review.", None)),
        ("(Translated by Google) Good\n\n(Original)\nGut", ("Gut", "Good")),
        ("Gut\n\n(Translated by Google)\nGood", ("Gut", "Good")),
    ],
)
def test_google_translations_are_split(comment: str, expected: tuple[str, str | None]) -> None:
    assert split_google_translation(comment) == expected
