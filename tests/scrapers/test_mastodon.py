"""Mastodon hashtag timelines and search: replayed from recorded REST API responses."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from scrapers.http import BadCredentialsError, MalformedResponseError, RateLimitedError, TransientError
from scrapers.registry import SourceConfigError, build_source
from scrapers.sources.mastodon import MastodonConfig, MastodonSource
from tests.scrapers.replay import (
    FakeSleep,
    ReplayTransport,
    Route,
    json_response,
    load_json,
    raw_response,
    run_source,
)

KIND = "mastodon"
INSTANCE = "https://mastodon.example"
TAG = r"^/api/v1/timelines/tag/AcmeApp$"
SEARCH = r"^/api/v2/search$"
TOKEN = "ZA-Yj3aBD8U8Cm7lKUp-lm9O9BmDgdhHzDeqsY8tlL0"


def make_source(
    transport: ReplayTransport, sleep: FakeSleep | None = None, **config: object
) -> MastodonSource:
    settings = MastodonConfig.model_validate(
        {
            "base_url": INSTANCE,
            "hashtags": ["#AcmeApp"],
            "search_terms": ["acme checkout"],
            "access_token": TOKEN,
            "first_run_pages": 3,
            "product": "Acme App",
            **config,
        }
    )
    sleep = sleep or FakeSleep()
    return MastodonSource(settings, transport=transport, sleep=sleep, clock=sleep.clock)


def timeline_page(name: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """A tag timeline page with Mastodon's Link header (next: max_id = oldest, prev: min_id = newest)."""
    statuses: list[dict[str, Any]] = load_json(KIND, name)
    all_headers = dict(headers or {})
    if statuses:
        base = f"{INSTANCE}/api/v1/timelines/tag/AcmeApp?limit=40"
        all_headers["Link"] = (
            f'<{base}&max_id={statuses[-1]["id"]}>; rel="next", '
            f'<{base}&min_id={statuses[0]["id"]}>; rel="prev"'
        )
    return json_response(statuses, headers=all_headers)


def reply(name: str, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    return json_response(load_json(KIND, name), status, headers)


def full_run() -> ReplayTransport:
    return ReplayTransport(
        Route("GET", TAG, [timeline_page("tag_page2.json")], params={"max_id": "113500000000000005"}),
        Route("GET", TAG, [timeline_page("empty.json")], params={"max_id": "113500000000000002"}),
        Route("GET", TAG, [timeline_page("tag_page1.json")]),
        Route("GET", SEARCH, [reply("search_empty.json")], params={"max_id": "113500000000000010"}),
        Route("GET", SEARCH, [reply("search_page1.json")]),
    )


def test_reads_every_page_of_every_query_to_the_end() -> None:
    transport = full_run()
    sink, result = run_source(make_source(transport), default_touchpoint="social")
    assert result.done and result.pages == 5
    records = {record.external_id: record for record in sink.records}
    assert set(records) == {
        "113500000000000008",
        "113500000000000007",
        "113500000000000005",
        "113500000000000003",
        "113500000000000011",
        "113500000000000010",
    }  # the boost (…06) and the post without text (…02) are skipped

    first = records["113500000000000008"]
    assert first.text == (
        "The new #AcmeApp checkout keeps timing out on my phone & the retry button does nothing."
        "\n\nAnyone else?"
    )
    assert first.author == "alice"
    assert first.language == "en"
    assert first.url == "https://mastodon.example/@alice/113500000000000008"
    assert first.created_at.isoformat() == "2026-11-20T10:15:00+00:00"
    assert first.product == "Acme App"
    assert first.touchpoint == "social"
    assert first.metadata["hashtags"] == ["acmeapp"]
    assert first.metadata["replies_count"] == 2
    assert first.metadata["application"] == "Ivory"

    persian = records["113500000000000007"]
    assert persian.language == "fa"
    assert persian.author == "sara@persiansphere.ir"
    assert persian.text.startswith("#AcmeApp اپلیکیشن خوبیه")
    assert records["113500000000000005"].text.startswith("Acme App Kritik\nEhrliches Feedback")

    tag_requests = [request for request in transport.requests if "timelines" in request.url.path]
    assert [request.url.params.get("max_id") for request in tag_requests] == [
        None,
        "113500000000000005",
        "113500000000000002",
    ]
    assert all(request.headers["Authorization"] == f"Bearer {TOKEN}" for request in transport.requests)
    search_request = next(request for request in transport.requests if request.url.path == "/api/v2/search")
    assert dict(search_request.url.params) == {
        "q": "acme checkout",
        "type": "statuses",
        "resolve": "false",
        "limit": "40",
    }
    assert sink.cursor == {
        "since": {"#acmeapp": "113500000000000008", "search:acme checkout": "113500000000000011"}
    }


def test_next_run_asks_only_for_newer_posts() -> None:
    sink, _ = run_source(make_source(full_run()))
    later = ReplayTransport(
        Route("GET", TAG, [timeline_page("empty.json")], params={"max_id": "113510000000000001"}),
        Route("GET", TAG, [timeline_page("tag_later.json")]),
        Route("GET", SEARCH, [reply("search_page1.json")]),
    )
    sink2, result = run_source(make_source(later), cursor=sink.cursor)
    assert result.done
    assert [record.external_id for record in sink2.records] == ["113510000000000001"]
    assert later.requests[0].url.params["since_id"] == "113500000000000008"
    assert later.requests[2].url.params["min_id"] == "113500000000000011"
    # The search answered posts the previous run saw (min_id is a time bound there): they are dropped.
    assert sink2.cursor == {
        "since": {"#acmeapp": "113510000000000001", "search:acme checkout": "113500000000000011"}
    }


def test_first_run_reads_only_the_configured_history() -> None:
    transport = ReplayTransport(
        Route("GET", TAG, [timeline_page("tag_page1.json")]),
        Route("GET", SEARCH, [reply("search_page1.json")]),
    )
    sink, result = run_source(make_source(transport, first_run_pages=1))
    assert result.done and result.pages == 2
    assert sink.cursor == {
        "since": {"#acmeapp": "113500000000000008", "search:acme checkout": "113500000000000011"}
    }


def test_resumes_from_a_saved_mid_run_cursor() -> None:
    sink, result = run_source(make_source(full_run()), max_pages=1)
    assert not result.done
    assert sink.cursor == {
        "since": {},
        "query_index": 0,
        "max_id": "113500000000000005",
        "pages": 1,
        "newest": "113500000000000008",
    }
    resumed = full_run()
    resumed.routes[2].replies.clear()  # the first page must not be fetched again
    sink2, result2 = run_source(make_source(resumed), cursor=sink.cursor)
    assert result2.done
    assert len({record.external_id for record in sink.records + sink2.records}) == 6
    assert sink2.cursor == {
        "since": {"#acmeapp": "113500000000000008", "search:acme checkout": "113500000000000011"}
    }


def test_waits_out_a_429_with_retry_after() -> None:
    sleep = FakeSleep()
    transport = full_run()
    transport.routes[2].replies.insert(0, reply("error_429.json", 429, {"Retry-After": "9"}))
    sink, result = run_source(make_source(transport, sleep))
    assert result.done and len(sink.records) == 6
    assert 9.0 in sleep.waits


def test_a_429_with_mastodons_own_headers_backs_off_then_succeeds() -> None:
    sleep = FakeSleep()
    transport = full_run()
    throttled = {
        "X-RateLimit-Limit": "300",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "2026-11-20T10:20:00.000000Z",
    }
    transport.routes[2].replies.insert(0, reply("error_429.json", 429, throttled))
    sink, result = run_source(make_source(transport, sleep))
    assert result.done and len(sink.records) == 6
    assert len(sleep.waits) >= 1


def test_a_long_retry_after_defers_the_run() -> None:
    transport = ReplayTransport(Route("GET", TAG, [reply("error_429.json", 429, {"Retry-After": "300"})]))
    with pytest.raises(RateLimitedError) as caught:
        run_source(make_source(transport))
    assert caught.value.retry_after == 300


def test_retries_a_5xx_then_succeeds() -> None:
    sleep = FakeSleep()
    transport = full_run()
    transport.routes[0].replies.insert(
        0, raw_response("<html>502 Bad Gateway</html>", 502, content_type="text/html")
    )
    sink, result = run_source(make_source(transport, sleep))
    assert result.done and len(sink.records) == 6
    assert len(sleep.waits) >= 1


def test_a_timeout_is_retried_and_then_reported() -> None:
    transport = ReplayTransport(Route("GET", TAG, [httpx.ReadTimeout("timed out") for _ in range(4)]))
    with pytest.raises(TransientError, match="did not answer within 20 s"):
        run_source(make_source(transport))
    assert len(transport.requests) == 4


def test_malformed_statuses_are_reported_and_the_rest_kept() -> None:
    transport = ReplayTransport(Route("GET", TAG, [reply("malformed.json")]))
    sink, result = run_source(make_source(transport, search_terms=[], first_run_pages=1))
    assert [record.external_id for record in sink.records] == ["113500000000000022", "113500000000000020"]
    assert sink.records[1].author is None
    reasons = {report.external_id: report.reason for report in result.malformed}
    assert "is not an ISO 8601 time" in reasons["113500000000000021"]
    assert reasons["113500000000000019"] == "text is missing"
    assert reasons[None] == "external_id is missing"


def test_a_body_that_is_not_json_fails_clearly() -> None:
    transport = ReplayTransport(
        Route(
            "GET",
            TAG,
            [
                raw_response(
                    "<html>We're sorry, but something went wrong.</html>", 200, content_type="text/html"
                )
            ],
        )
    )
    with pytest.raises(MalformedResponseError, match="not JSON"):
        run_source(make_source(transport))


def test_a_search_answer_without_statuses_fails_clearly() -> None:
    transport = ReplayTransport(
        Route("GET", TAG, [timeline_page("empty.json")]),
        Route("GET", SEARCH, [json_response({"accounts": [], "hashtags": []})]),
    )
    with pytest.raises(MalformedResponseError, match="without a list of statuses"):
        run_source(make_source(transport))


def test_a_bad_token_is_a_clear_error_without_the_secret() -> None:
    transport = ReplayTransport(Route("GET", TAG, [reply("error_401.json", 401)]))
    with pytest.raises(BadCredentialsError, match="The access token is invalid") as caught:
        run_source(make_source(transport))
    assert TOKEN not in str(caught.value)


def test_hashtags_are_read_without_a_token() -> None:
    transport = ReplayTransport(Route("GET", TAG, [timeline_page("tag_page1.json")]))
    sink, result = run_source(make_source(transport, search_terms=[], access_token=None, first_run_pages=1))
    assert result.done and len(sink.records) == 3
    assert "Authorization" not in transport.requests[0].headers


def test_config_is_validated_through_the_registry() -> None:
    with pytest.raises(SourceConfigError, match="base_url: Field required"):
        build_source("mastodon.v1", {"hashtags": ["acme"]}, environ={})
    with pytest.raises(SourceConfigError, match="base_url: String should match pattern"):
        build_source("mastodon.v1", {"base_url": "mastodon.social", "hashtags": ["acme"]}, environ={})
    with pytest.raises(SourceConfigError, match="give at least one hashtag or search term"):
        build_source("mastodon.v1", {"base_url": INSTANCE}, environ={})
    with pytest.raises(SourceConfigError, match="a search term is empty"):
        build_source(
            "mastodon.v1", {"base_url": INSTANCE, "search_terms": [""], "access_token": "t"}, environ={}
        )
    with pytest.raises(SourceConfigError, match="search_terms need an access_token"):
        build_source("mastodon.v1", {"base_url": INSTANCE, "search_terms": ["acme"]}, environ={})
    with pytest.raises(SourceConfigError, match="not hashtags: acme app"):
        build_source("mastodon.v1", {"base_url": INSTANCE, "hashtags": ["acme app"]}, environ={})
    source = build_source(
        "mastodon.v1",
        {"base_url": INSTANCE, "search_terms": ["acme"], "access_token": {"env": "MASTODON_TOKEN"}},
        environ={"MASTODON_TOKEN": TOKEN},
    )
    assert isinstance(source, MastodonSource)
    assert TOKEN not in repr(source.config)
