"""App Store customer reviews: replayed from recorded feed pages."""

from __future__ import annotations

import httpx
import pytest

from scrapers.contract import RatingScale
from scrapers.http import NotFoundError, RateLimitedError, TransientError
from scrapers.registry import build_source
from scrapers.sources.app_store import AppStoreConfig, AppStoreSource
from tests.scrapers.replay import (
    FakeSleep,
    ReplayTransport,
    Route,
    json_response,
    load_json,
    raw_response,
    run_source,
)

KIND = "app_store"
PAGE = r"/us/rss/customerreviews/page={}/id=1234567890/sortby=mostrecent/json"


def page(number: int) -> str:
    return PAGE.format(number)


def make_source(
    transport: ReplayTransport, sleep: FakeSleep | None = None, **config: object
) -> AppStoreSource:
    settings = AppStoreConfig.model_validate({"app_id": "1234567890", **config})
    sleep = sleep or FakeSleep()
    return AppStoreSource(settings, transport=transport, sleep=sleep, clock=sleep.clock)


def full_feed() -> ReplayTransport:
    return ReplayTransport(
        Route("GET", page(1), [json_response(load_json(KIND, "page1.json"))]),
        Route("GET", page(2), [json_response(load_json(KIND, "page2.json"))]),
        Route("GET", page(3), [json_response(load_json(KIND, "page3_empty.json"))]),
    )


def test_reads_every_page_to_the_end() -> None:
    transport = full_feed()
    sink, result = run_source(make_source(transport), default_touchpoint="mobile_app")
    assert result.done and result.pages == 3
    records = sink.records
    assert len(records) == 7
    assert len({record.external_id for record in records}) == 7
    german = next(record for record in records if record.external_id == "11000000003")
    assert (
        german.text == "Kann nicht bezahlen\nSeit dem Update stürzt die App beim Bezahlen ab. Bitte beheben!"
    )
    assert (
        german.rating is not None and german.rating.value == 1.0 and german.rating.scale is RatingScale.STARS
    )
    assert german.app_version == "5.2.1"
    assert german.author == "user3"
    assert german.created_at.utcoffset() is not None
    assert german.metadata["country"] == "us"
    assert german.touchpoint == "mobile_app"
    assert sink.cursor == {"since": {"us": "2026-11-20T12:15:00-07:00"}}


def test_next_run_stops_at_the_first_review_already_seen() -> None:
    sink, _ = run_source(make_source(full_feed()))
    later = ReplayTransport(Route("GET", page(1), [json_response(load_json(KIND, "page1_later.json"))]))
    sink2, result = run_source(make_source(later), cursor=sink.cursor)
    assert result.done and result.pages == 1
    assert [record.external_id for record in sink2.records] == ["11000000020"]
    assert sink2.cursor == {"since": {"us": "2026-11-21T12:00:00-07:00"}}


def test_resumes_from_a_saved_mid_run_cursor() -> None:
    first = full_feed()
    sink, result = run_source(make_source(first), max_pages=1)
    assert not result.done and sink.cursor is not None and sink.cursor["page"] == 2
    resumed = ReplayTransport(
        Route("GET", page(2), [json_response(load_json(KIND, "page2.json"))]),
        Route("GET", page(3), [json_response(load_json(KIND, "page3_empty.json"))]),
    )
    sink2, result2 = run_source(make_source(resumed), cursor=sink.cursor)
    assert result2.done
    assert {record.external_id for record in sink.records + sink2.records} == {
        f"1100000000{i}" for i in range(7)
    }
    assert not any("page=1/" in url for url in resumed.urls())
    assert sink2.cursor == {"since": {"us": "2026-11-20T12:15:00-07:00"}}


def test_waits_out_a_429_with_retry_after() -> None:
    sleep = FakeSleep()
    transport = full_feed()
    transport.routes[0].replies.insert(0, json_response({}, 429, {"Retry-After": "7"}))
    sink, result = run_source(make_source(transport, sleep))
    assert result.done and len(sink.records) == 7
    assert 7.0 in sleep.waits


def test_a_long_retry_after_defers_the_run() -> None:
    transport = ReplayTransport(Route("GET", page(1), [json_response({}, 429, {"Retry-After": "3600"})]))
    with pytest.raises(RateLimitedError) as caught:
        run_source(make_source(transport))
    assert caught.value.retry_after == 3600


def test_retries_a_5xx_then_succeeds() -> None:
    sleep = FakeSleep()
    transport = full_feed()
    transport.routes[1].replies.insert(
        0, raw_response("<html>Bad Gateway</html>", 502, content_type="text/html")
    )
    transport.routes[1].replies.insert(0, raw_response("", 503))
    sink, result = run_source(make_source(transport, sleep))
    assert result.done and len(sink.records) == 7
    assert len([url for url in transport.urls() if "page=2/" in url]) == 3
    assert len(sleep.waits) >= 2


def test_a_timeout_is_retried_and_then_reported() -> None:
    transport = ReplayTransport(
        Route("GET", page(1), [httpx.ReadTimeout("timed out") for _ in range(4)]),
    )
    with pytest.raises(TransientError, match="did not answer within 20 s"):
        run_source(make_source(transport))
    assert len(transport.requests) == 4


def test_malformed_reviews_are_reported_and_the_rest_kept() -> None:
    transport = ReplayTransport(
        Route("GET", page(1), [json_response(load_json(KIND, "page2_malformed.json"))]),
        Route("GET", page(2), [json_response(load_json(KIND, "page3_empty.json"))]),
    )
    sink, result = run_source(make_source(transport))
    assert [record.external_id for record in sink.records] == ["11000000004"]
    reasons = {report.external_id: report.reason for report in result.malformed}
    assert "stars ratings run from 1 to 5" in reasons["11000000099"]
    assert reasons["11000000098"] == "created_at is missing"


def test_a_body_that_is_not_json_fails_clearly() -> None:
    transport = ReplayTransport(Route("GET", page(1), [raw_response("<html>maintenance</html>", 200)]))
    with pytest.raises(Exception, match="not JSON"):
        run_source(make_source(transport))


def test_an_unknown_app_id_is_a_clear_error() -> None:
    transport = ReplayTransport(
        Route("GET", page(1), [raw_response("<html>Not Found</html>", 404, content_type="text/html")])
    )
    with pytest.raises(NotFoundError, match="Check the configured id"):
        run_source(make_source(transport))
    assert len(transport.requests) == 1


def test_config_is_validated_through_the_registry() -> None:
    with pytest.raises(ValueError, match="app_id"):
        build_source("app_store.v1", {"app_id": "not-a-number"}, environ={})
    with pytest.raises(ValueError, match="not two-letter country codes: usa"):
        build_source("app_store.v1", {"app_id": "1234567890", "countries": ["usa"]}, environ={})


def test_walks_each_country_in_turn() -> None:
    uk_page = load_json(KIND, "page2.json")
    transport = ReplayTransport(
        Route("GET", page(1), [json_response(load_json(KIND, "page1.json"))]),
        Route("GET", page(2), [json_response(load_json(KIND, "page3_empty.json"))]),
        Route("GET", r"/gb/rss/customerreviews/page=1/", [json_response(uk_page)]),
        Route(
            "GET", r"/gb/rss/customerreviews/page=2/", [json_response(load_json(KIND, "page3_empty.json"))]
        ),
    )
    sink, result = run_source(make_source(transport, countries=["us", "GB"]))
    assert result.done
    assert {record.metadata["country"] for record in sink.records} == {"us", "gb"}
    assert set(sink.cursor["since"]) == {"us", "gb"}  # type: ignore[index]
