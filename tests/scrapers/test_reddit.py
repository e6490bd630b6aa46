"""Reddit posts and comments: replayed from recorded OAuth API listings."""

from __future__ import annotations

import base64

import httpx
import pytest

from scrapers.http import (
    BadCredentialsError,
    MalformedResponseError,
    NotFoundError,
    RateLimitedError,
    TransientError,
)
from scrapers.registry import SourceConfigError, build_source
from scrapers.sources.reddit import RedditConfig, RedditSource, listings_of
from tests.scrapers.replay import (
    FakeSleep,
    ReplayTransport,
    Route,
    json_response,
    load_json,
    raw_response,
    run_source,
)

KIND = "reddit"
TOKEN = r"^/api/v1/access_token$"
SEARCH = r"^/r/acme/search$"
COMMENTS = r"^/r/acme/comments$"
SECRET = "s3cr3t-reddit-app-secret"
USER_AGENT = "server:cxmine-test:0.1 (by /u/acme_cx_team)"


def make_source(transport: ReplayTransport, sleep: FakeSleep | None = None, **config: object) -> RedditSource:
    settings = RedditConfig.model_validate(
        {
            "client_id": "p-jcoLKBynTLew",
            "client_secret": SECRET,
            "user_agent": USER_AGENT,
            "subreddits": ["r/acme"],
            "search_terms": ["checkout"],
            "include_comments": True,
            "product": "Acme Shop",
            **config,
        }
    )
    sleep = sleep or FakeSleep()
    return RedditSource(settings, transport=transport, sleep=sleep, clock=sleep.clock)


def reply(name: str, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    return json_response(load_json(KIND, name), status, headers)


def token_route() -> Route:
    return Route("POST", TOKEN, [reply("token.json")], repeat_last=True)


def full_run() -> ReplayTransport:
    return ReplayTransport(
        token_route(),
        Route("GET", SEARCH, [reply("search_page2.json")], params={"after": "t3_1gx0003"}),
        Route("GET", SEARCH, [reply("search_page1.json")]),
        Route("GET", COMMENTS, [reply("comments.json")]),
    )


def test_reads_every_listing_to_the_end() -> None:
    transport = full_run()
    sink, result = run_source(make_source(transport), default_touchpoint="community")
    assert result.done and result.pages == 3
    records = {record.external_id: record for record in sink.records}
    assert set(records) == {
        "t3_1gx0005",
        "t3_1gx0004",
        "t3_1gx0003",
        "t3_1gx0002",
        "t3_1gx0001",
        "t1_lq90004",
        "t1_lq90002",
    }  # the comment without 'checkout' and the deleted one are left out

    german = records["t3_1gx0002"]
    assert german.text == (
        "Bezahlvorgang bricht ab\nSeit dem Update bricht der Checkout bei PayPal immer ab. Bitte um Hilfe!"
    )
    assert german.author == "kaffeeholiker"
    assert german.created_at.isoformat() == "2026-11-19T18:30:00+00:00"
    assert german.url == "https://www.reddit.com/r/acme/comments/1gx0002/bezahlvorgang_bricht_ab/"
    assert german.product == "Acme Shop"
    assert german.touchpoint == "community"
    assert german.metadata["subreddit"] == "acme"
    assert german.metadata["flair"] == "Bug"
    assert german.metadata["kind"] == "post"

    assert records["t3_1gx0003"].author is None  # '[deleted]'
    assert records["t3_1gx0001"].text == "Checkout question"  # a removed body leaves the title
    thai = records["t1_lq90002"]
    assert thai.text == "แอปนี้ใช้งานง่ายมาก แต่ checkout ช้ามากตอนกลางคืน"
    assert thai.metadata["kind"] == "comment"
    assert thai.metadata["post_title"] == "Checkout is finally fast"
    assert thai.url == "https://www.reddit.com/r/acme/comments/1gx0004/x/lq90002/"

    token_request = transport.requests[0]
    assert token_request.method == "POST"
    assert token_request.content == b"grant_type=client_credentials"
    expected_basic = base64.b64encode(f"p-jcoLKBynTLew:{SECRET}".encode()).decode()
    assert token_request.headers["Authorization"] == f"Basic {expected_basic}"
    first_listing = transport.requests[1]
    assert first_listing.headers["Authorization"].startswith("bearer eyJ")
    assert first_listing.headers["User-Agent"] == USER_AGENT
    assert dict(first_listing.url.params) == {
        "q": "checkout",
        "restrict_sr": "1",
        "sort": "new",
        "type": "link",
        "limit": "100",
        "raw_json": "1",
    }
    assert transport.requests[2].url.params["after"] == "t3_1gx0003"
    assert len([request for request in transport.requests if request.method == "POST"]) == 1
    assert sink.cursor == {
        "since": {
            "r/acme/search?q=checkout": {"created_utc": 1795169700.0, "name": "t3_1gx0005"},
            "r/acme/comments": {"created_utc": 1795170600.0, "name": "t1_lq90004"},
        }
    }


def test_next_run_stops_at_the_first_item_already_seen() -> None:
    sink, _ = run_source(make_source(full_run()))
    later = ReplayTransport(
        token_route(),
        Route("GET", SEARCH, [reply("search_later.json")]),
        Route("GET", COMMENTS, [reply("comments_later.json")]),
    )
    sink2, result = run_source(make_source(later), cursor=sink.cursor)
    assert result.done and result.pages == 2
    assert [record.external_id for record in sink2.records] == ["t3_1gx0006", "t1_lq90005"]
    assert not any("after" in request.url.params for request in later.requests)
    assert sink2.cursor is not None
    assert sink2.cursor["since"]["r/acme/search?q=checkout"]["name"] == "t3_1gx0006"
    assert sink2.cursor["since"]["r/acme/comments"]["name"] == "t1_lq90005"


def test_resumes_from_a_saved_mid_run_cursor() -> None:
    sink, result = run_source(make_source(full_run()), max_pages=1)
    assert not result.done
    assert sink.cursor == {
        "since": {},
        "listing_index": 0,
        "after": "t3_1gx0003",
        "newest": {"created_utc": 1795169700.0, "name": "t3_1gx0005"},
    }
    resumed = ReplayTransport(
        token_route(),
        Route("GET", SEARCH, [reply("search_page2.json")], params={"after": "t3_1gx0003"}),
        Route("GET", COMMENTS, [reply("comments.json")]),
    )
    sink2, result2 = run_source(make_source(resumed), cursor=sink.cursor)
    assert result2.done
    assert len({record.external_id for record in sink.records + sink2.records}) == 7
    assert sink2.cursor is not None
    assert sink2.cursor["since"]["r/acme/search?q=checkout"]["name"] == "t3_1gx0005"


def test_waits_out_a_429_with_retry_after() -> None:
    sleep = FakeSleep()
    transport = full_run()
    transport.routes[2].replies.insert(0, reply("error_429.json", 429, {"Retry-After": "7"}))
    sink, result = run_source(make_source(transport, sleep))
    assert result.done and len(sink.records) == 7
    assert 7.0 in sleep.waits


def test_a_long_rate_limit_defers_the_run() -> None:
    transport = ReplayTransport(
        token_route(),
        Route(
            "GET",
            SEARCH,
            [reply("error_429.json", 429, {"x-ratelimit-reset": "540", "x-ratelimit-remaining": "0"})],
        ),
    )
    with pytest.raises(RateLimitedError) as caught:
        run_source(make_source(transport))
    assert caught.value.retry_after == 540


def test_waits_when_the_request_budget_is_used_up() -> None:
    sleep = FakeSleep()
    transport = full_run()
    spent = {"x-ratelimit-used": "100", "x-ratelimit-remaining": "0.0", "x-ratelimit-reset": "42"}
    transport.routes[2].replies[0] = reply("search_page1.json", headers=spent)
    sink, result = run_source(make_source(transport, sleep))
    assert result.done and len(sink.records) == 7
    assert 42.0 in sleep.waits


def test_retries_a_5xx_then_succeeds() -> None:
    sleep = FakeSleep()
    transport = full_run()
    transport.routes[1].replies.insert(
        0, raw_response("<html>upstream connect error</html>", 503, content_type="text/html")
    )
    sink, result = run_source(make_source(transport, sleep))
    assert result.done and len(sink.records) == 7
    assert len([request for request in transport.requests if "after" in request.url.params]) == 2


def test_a_timeout_is_retried_and_then_reported() -> None:
    transport = ReplayTransport(
        token_route(), Route("GET", SEARCH, [httpx.ConnectTimeout("timed out") for _ in range(4)])
    )
    with pytest.raises(TransientError, match="Reddit did not answer within 20 s"):
        run_source(make_source(transport))
    assert len(transport.requests) == 5


def test_malformed_items_are_reported_and_the_rest_kept() -> None:
    transport = ReplayTransport(
        token_route(),
        Route("GET", SEARCH, [reply("malformed.json")]),
        Route("GET", COMMENTS, [reply("empty.json")]),
    )
    sink, result = run_source(make_source(transport))
    assert [record.external_id for record in sink.records] == ["t3_1gx0013"]
    reasons = {report.external_id: report.reason for report in result.malformed}
    assert "is not a Unix time" in reasons["t3_1gx0012"]
    assert reasons["t3_1gx0011"] == "text is missing"
    assert any(report.reason == "not a Reddit thing" for report in result.malformed)


def test_a_body_that_is_not_json_fails_clearly() -> None:
    transport = ReplayTransport(
        token_route(),
        Route(
            "GET",
            SEARCH,
            [
                raw_response(
                    "<!doctype html><title>reddit.com: over capacity</title>", 200, content_type="text/html"
                )
            ],
        ),
    )
    with pytest.raises(MalformedResponseError, match="not JSON"):
        run_source(make_source(transport))


def test_a_body_that_is_not_a_listing_fails_clearly() -> None:
    transport = ReplayTransport(
        token_route(), Route("GET", SEARCH, [json_response({"kind": "t5", "data": {}})])
    )
    with pytest.raises(MalformedResponseError, match="not a Listing"):
        run_source(make_source(transport))


def test_bad_app_credentials_are_a_clear_error_without_the_secret() -> None:
    transport = ReplayTransport(Route("POST", TOKEN, [reply("error_401.json", 401)]))
    with pytest.raises(BadCredentialsError, match="Check client_id and client_secret") as caught:
        run_source(make_source(transport))
    assert SECRET not in str(caught.value)
    assert len(transport.requests) == 1


def test_a_token_answer_without_a_token_is_a_clear_error() -> None:
    transport = ReplayTransport(Route("POST", TOKEN, [json_response({"error": "unsupported_grant_type"})]))
    with pytest.raises(BadCredentialsError, match="unsupported_grant_type"):
        run_source(make_source(transport))


def test_an_expired_token_is_renewed_once() -> None:
    transport = full_run()
    transport.routes[2].replies.insert(0, reply("error_401.json", 401))
    sink, result = run_source(make_source(transport))
    assert result.done and len(sink.records) == 7
    assert len([request for request in transport.requests if request.method == "POST"]) == 2


def test_a_private_subreddit_is_a_clear_error() -> None:
    transport = ReplayTransport(token_route(), Route("GET", SEARCH, [reply("error_403_private.json", 403)]))
    with pytest.raises(NotFoundError, match=r"r/acme cannot be read \(private\)"):
        run_source(make_source(transport))


def test_an_unknown_subreddit_is_a_clear_error() -> None:
    redirect = httpx.Response(302, headers={"location": "https://oauth.reddit.com/subreddits/search?q=acme"})
    transport = ReplayTransport(
        token_route(),
        Route("GET", SEARCH, [redirect]),
        Route("GET", r"^/subreddits/search$", [reply("unknown_subreddit.json")]),
    )
    with pytest.raises(NotFoundError, match="r/acme does not exist"):
        run_source(make_source(transport))


def test_listings_follow_the_configuration() -> None:
    site_wide = RedditConfig.model_validate(
        {"client_id": "id", "client_secret": "s", "search_terms": ["acme app"]}
    )
    assert [(listing.path, listing.params.get("q")) for listing in listings_of(site_wide)] == [
        ("/search", "acme app")
    ]
    subreddits_only = RedditConfig.model_validate(
        {
            "client_id": "id",
            "client_secret": "s",
            "subreddits": ["acme", "/r/AcmeHelp/"],
            "include_comments": True,
        }
    )
    assert [listing.key for listing in listings_of(subreddits_only)] == [
        "r/acme/new",
        "r/AcmeHelp/new",
        "r/acme/comments",
        "r/AcmeHelp/comments",
    ]


def test_config_is_validated_through_the_registry() -> None:
    base = {"client_id": "id", "client_secret": {"env": "REDDIT_SECRET"}}
    with pytest.raises(SourceConfigError, match="give at least one subreddit or search term"):
        build_source("reddit.v1", base, environ={"REDDIT_SECRET": SECRET})
    with pytest.raises(SourceConfigError, match="a search term is empty"):
        build_source("reddit.v1", {**base, "search_terms": ["acme", "  "]}, environ={"REDDIT_SECRET": SECRET})
    with pytest.raises(SourceConfigError, match="not subreddit names: acme fans"):
        build_source("reddit.v1", {**base, "subreddits": ["acme fans"]}, environ={"REDDIT_SECRET": SECRET})
    with pytest.raises(SourceConfigError, match="include_comments needs at least one subreddit"):
        build_source(
            "reddit.v1",
            {**base, "search_terms": ["acme"], "include_comments": True},
            environ={"REDDIT_SECRET": SECRET},
        )
    with pytest.raises(SourceConfigError, match="client_id: Field required"):
        build_source("reddit.v1", {"client_secret": "s", "subreddits": ["acme"]}, environ={})
    source = build_source("reddit.v1", {**base, "subreddits": ["acme"]}, environ={"REDDIT_SECRET": SECRET})
    assert isinstance(source, RedditSource)
    assert SECRET not in repr(source.config)
