"""X recent search: replayed from recorded API v2 responses."""

from __future__ import annotations

import time

import httpx
import pytest

from scrapers.http import BadCredentialsError, MalformedResponseError, RateLimitedError, TransientError
from scrapers.registry import SourceConfigError, build_source, masked_config
from scrapers.sources.x import XConfig, XSource
from tests.scrapers.replay import (
    FakeSleep,
    ReplayTransport,
    Route,
    json_response,
    load_json,
    raw_response,
    run_source,
)

KIND = "x"
SEARCH = r"^/2/tweets/search/recent$"
TOKEN = "AAAAAAAAAAAAAAAAAAAAAsecret-bearer-token"


def make_source(transport: ReplayTransport, sleep: FakeSleep | None = None, **config: object) -> XSource:
    settings = XConfig.model_validate({"bearer_token": TOKEN, "query": "(acme OR @AcmeHelp)", **config})
    sleep = sleep or FakeSleep()
    return XSource(settings, transport=transport, sleep=sleep, clock=sleep.clock)


def reply(name: str) -> httpx.Response:
    return json_response(load_json(KIND, name))


def full_search() -> ReplayTransport:
    return ReplayTransport(
        Route(
            "GET",
            SEARCH,
            [reply("page2.json")],
            params={"next_token": load_json(KIND, "page1.json")["meta"]["next_token"]},
        ),
        Route("GET", SEARCH, [reply("page1.json")]),
    )


def test_reads_every_page_to_the_end() -> None:
    transport = full_search()
    sink, result = run_source(make_source(transport), default_touchpoint="social")
    assert result.done and result.pages == 2
    records = {record.external_id: record for record in sink.records}
    assert len(records) == 6

    arabic = records["1991000000000000102"]
    assert arabic.text == "تطبيق acme ممتاز لكن التوصيل تأخر ثلاثة أيام ولم يرد أحد على رسائلي"
    assert arabic.language == "ar"
    assert arabic.author == "sara_riyadh"
    assert arabic.location == "الرياض"
    assert arabic.url == "https://x.com/sara_riyadh/status/1991000000000000102"
    assert arabic.created_at.isoformat() == "2026-11-20T12:15:09+00:00"
    assert arabic.rating is None
    assert arabic.touchpoint == "social"
    assert arabic.metadata["like_count"] == 3
    assert arabic.metadata["author_name"] == "سارة"

    long_post = records["1991000000000000101"]
    assert long_post.text.endswith("Otherwise a solid release, thanks team.")
    assert records["1991000000000000104"].language == "de"
    assert records["1991000000000000100"].language is None  # 'zxx': no linguistic content
    assert records["1991000000000000104"].location is None

    first = transport.requests[0]
    assert first.headers["Authorization"] == f"Bearer {TOKEN}"
    assert first.url.params["query"] == "(acme OR @AcmeHelp) -is:retweet"
    assert first.url.params["max_results"] == "100"
    assert "author_id" in first.url.params["expansions"]
    assert "since_id" not in first.url.params
    assert sink.cursor == {"since_id": "1991000000000000105"}


def test_next_run_asks_only_for_newer_posts() -> None:
    sink, _ = run_source(make_source(full_search()))
    later = ReplayTransport(Route("GET", SEARCH, [reply("later.json")]))
    sink2, result = run_source(make_source(later), cursor=sink.cursor)
    assert result.done and result.pages == 1
    assert later.requests[0].url.params["since_id"] == "1991000000000000105"
    assert [record.external_id for record in sink2.records] == ["1991000000000000201"]
    assert sink2.cursor == {"since_id": "1991000000000000201"}

    quiet = ReplayTransport(Route("GET", SEARCH, [reply("empty.json")]))
    sink3, result3 = run_source(make_source(quiet), cursor=sink2.cursor)
    assert result3.done and sink3.records == []
    assert sink3.cursor == {"since_id": "1991000000000000201"}


def test_resumes_from_a_saved_mid_run_cursor() -> None:
    sink, result = run_source(
        make_source(full_search()), max_pages=1, cursor={"since_id": "1991000000000000050"}
    )
    assert not result.done
    assert sink.cursor == {
        "next_token": "b26v89c19zqg8o3fo7gesq314yb9l2l4ptqy8v6j0upb1",
        "since_id": "1991000000000000050",
        "newest_id": "1991000000000000105",
    }
    resumed = ReplayTransport(Route("GET", SEARCH, [reply("page2.json")]))
    sink2, result2 = run_source(make_source(resumed), cursor=sink.cursor)
    assert result2.done
    params = resumed.requests[0].url.params
    assert params["next_token"] == "b26v89c19zqg8o3fo7gesq314yb9l2l4ptqy8v6j0upb1"
    assert params["since_id"] == "1991000000000000050"  # the whole walk keeps the run's since_id
    assert len({record.external_id for record in sink.records + sink2.records}) == 6
    assert sink2.cursor == {"since_id": "1991000000000000105"}


def test_a_since_id_older_than_the_search_window_reads_the_whole_window() -> None:
    transport = ReplayTransport(
        Route(
            "GET",
            SEARCH,
            [json_response(load_json(KIND, "error_400_stale_since_id.json"), 400)],
            params={"since_id": "1980000000000000000"},
        ),
        Route("GET", SEARCH, [reply("later.json")]),
    )
    sink, result = run_source(make_source(transport), cursor={"since_id": "1980000000000000000"})
    assert result.done
    assert "since_id" not in transport.requests[1].url.params
    assert sink.cursor == {"since_id": "1991000000000000201"}


def test_waits_until_the_rate_limit_resets() -> None:
    sleep = FakeSleep()
    reset = str(int(time.time()) + 30)
    transport = full_search()
    transport.routes[1].replies.insert(
        0,
        json_response(
            load_json(KIND, "error_429.json"),
            429,
            {"x-rate-limit-reset": reset, "x-rate-limit-remaining": "0"},
        ),
    )
    sink, result = run_source(make_source(transport, sleep))
    assert result.done and len(sink.records) == 6
    assert any(25 <= wait <= 31 for wait in sleep.waits)


def test_a_long_rate_limit_defers_the_run() -> None:
    reset = str(int(time.time()) + 900)
    transport = ReplayTransport(
        Route(
            "GET",
            SEARCH,
            [json_response(load_json(KIND, "error_429.json"), 429, {"x-rate-limit-reset": reset})],
        )
    )
    with pytest.raises(RateLimitedError) as caught:
        run_source(make_source(transport))
    assert caught.value.retry_after is not None and 880 <= caught.value.retry_after <= 900
    assert len(transport.requests) == 1


def test_retries_a_5xx_then_succeeds() -> None:
    sleep = FakeSleep()
    transport = full_search()
    transport.routes[1].replies.insert(0, json_response({"title": "Service Unavailable", "status": 503}, 503))
    sink, result = run_source(make_source(transport, sleep))
    assert result.done and len(sink.records) == 6
    assert len(transport.requests) == 3 and len(sleep.waits) >= 1


def test_a_timeout_is_retried_and_then_reported() -> None:
    transport = ReplayTransport(Route("GET", SEARCH, [httpx.ReadTimeout("timed out") for _ in range(4)]))
    with pytest.raises(TransientError, match="did not answer within 20 s"):
        run_source(make_source(transport))
    assert len(transport.requests) == 4


def test_malformed_posts_are_reported_and_the_rest_kept() -> None:
    transport = ReplayTransport(Route("GET", SEARCH, [reply("malformed.json")]))
    sink, result = run_source(make_source(transport))
    assert [record.external_id for record in sink.records] == ["1991000000000000303"]
    reasons = {report.external_id: report.reason for report in result.malformed}
    assert reasons["1991000000000000302"] == "created_at is missing"
    assert "is not an ISO 8601 time" in reasons["1991000000000000301"]
    assert reasons["1991000000000000300"] == "text is empty"
    assert sink.cursor == {"since_id": "1991000000000000303"}


def test_a_body_that_is_not_json_fails_clearly() -> None:
    transport = ReplayTransport(
        Route("GET", SEARCH, [raw_response("<html>Over capacity</html>", 200, content_type="text/html")])
    )
    with pytest.raises(MalformedResponseError, match="not JSON"):
        run_source(make_source(transport))


def test_a_body_without_meta_fails_clearly() -> None:
    transport = ReplayTransport(Route("GET", SEARCH, [json_response({"data": []})]))
    with pytest.raises(MalformedResponseError, match="without a 'meta' object"):
        run_source(make_source(transport))


def test_a_bad_token_is_a_clear_error_without_the_secret() -> None:
    transport = ReplayTransport(Route("GET", SEARCH, [json_response(load_json(KIND, "error_401.json"), 401)]))
    with pytest.raises(BadCredentialsError, match="Check the source's key or token") as caught:
        run_source(make_source(transport))
    assert TOKEN not in str(caught.value)
    assert len(transport.requests) == 1


def test_config_is_validated_through_the_registry() -> None:
    with pytest.raises(SourceConfigError, match="query: Field required"):
        build_source("x.v1", {"bearer_token": "t"}, environ={})
    with pytest.raises(SourceConfigError, match="bearer_token: Field required"):
        build_source("x.v1", {"query": "acme"}, environ={})
    with pytest.raises(SourceConfigError, match="query"):
        build_source("x.v1", {"query": "   ", "bearer_token": "t"}, environ={})
    with pytest.raises(SourceConfigError, match="X_BEARER is not set"):
        build_source("x.v1", {"query": "acme", "bearer_token": {"env": "X_BEARER"}}, environ={})
    source = build_source(
        "x.v1", {"query": "acme", "bearer_token": {"env": "X_BEARER"}}, environ={"X_BEARER": TOKEN}
    )
    assert isinstance(source, XSource)
    assert TOKEN not in repr(source.config)
    assert masked_config("x.v1", {"query": "acme", "bearer_token": TOKEN})["bearer_token"] == "********"


def test_reposts_stay_in_when_the_query_asks_for_them() -> None:
    settings = XConfig.model_validate({"bearer_token": TOKEN, "query": "acme is:retweet"})
    assert XSource(settings).search_query == "acme is:retweet"
    settings = XConfig.model_validate({"bearer_token": TOKEN, "query": "acme", "exclude_retweets": False})
    assert XSource(settings).search_query == "acme"
