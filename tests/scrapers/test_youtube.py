"""YouTube comments: replayed from recorded YouTube Data API v3 responses."""

from __future__ import annotations

from datetime import UTC, datetime

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
from scrapers.sources.youtube import YouTubeConfig, YouTubeSource, seconds_until_quota_reset
from tests.scrapers.replay import (
    FakeSleep,
    ReplayTransport,
    Route,
    json_response,
    load_json,
    raw_response,
    run_source,
)

KIND = "youtube"
THREADS = r"^/youtube/v3/commentThreads$"
CHANNEL = "UCq7AcmeShopOfficial_9Qw"
NO_COMMENTS = "aCm3NoCmt04"
HOW_TO = "aCm3HowTo03"
KEY = "AIzaSyD-secret-test-key-0000000000000"
NEXT = "QURTSl9pMlFqN0tMbVpvcUNfX3V4NjZKc0xQWkxVLXo5VmZPWQ=="


def make_source(
    transport: ReplayTransport, sleep: FakeSleep | None = None, **config: object
) -> YouTubeSource:
    settings = YouTubeConfig.model_validate(
        {
            "api_key": KEY,
            "channel_id": CHANNEL,
            "video_ids": [NO_COMMENTS, HOW_TO],
            "product": "Acme Shop",
            **config,
        }
    )
    sleep = sleep or FakeSleep()
    return YouTubeSource(settings, transport=transport, sleep=sleep, clock=sleep.clock)


def reply(name: str, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    return json_response(load_json(KIND, name), status, headers)


def channel_route(name: str, page_token: str | None = None) -> Route:
    params = {"allThreadsRelatedToChannelId": CHANNEL}
    if page_token:
        params["pageToken"] = page_token
    return Route("GET", THREADS, [reply(name)], params=params)


def full_run() -> ReplayTransport:
    return ReplayTransport(
        channel_route("channel_page2.json", NEXT),
        channel_route("channel_page1.json"),
        Route("GET", THREADS, [reply("error_comments_disabled.json", 403)], params={"videoId": NO_COMMENTS}),
        Route("GET", THREADS, [reply("video_page.json")], params={"videoId": HOW_TO}),
    )


def test_reads_every_page_and_skips_a_video_without_comments() -> None:
    transport = full_run()
    sink, result = run_source(make_source(transport), default_touchpoint="video")
    assert result.done and result.pages == 4
    assert result.malformed == []
    records = {record.external_id: record for record in sink.records}
    assert len(records) == 6

    thai = records["Ugw000000000000001034AaABAg"]
    assert thai.text == "แอปใหม่สวยมากค่ะ แต่ตอนจ่ายเงินด้วย PromptPay ค้างบ่อยมาก"
    assert thai.author == "@ploy.bkk"
    assert thai.created_at.isoformat() == "2026-11-19T22:40:00+00:00"
    assert thai.url == "https://www.youtube.com/watch?v=aCm3Sh0pV01&lc=Ugw000000000000001034AaABAg"
    assert thai.product == "Acme Shop"
    assert thai.touchpoint == "video"
    assert thai.rating is None
    assert thai.metadata == {
        "video_id": "aCm3Sh0pV01",
        "channel_id": CHANNEL,
        "author_channel_id": "UCpl0yBangkokVlogs00000b",
        "like_count": 5,
        "reply_count": 1,
        "updated_at": "2026-11-19T22:40:00Z",
    }
    assert records["Ugw000000000000003014AaABAg"].metadata["video_id"] == HOW_TO

    first = transport.requests[0]
    assert first.headers["X-Goog-Api-Key"] == KEY
    assert KEY not in str(first.url)  # the key never appears in a URL
    assert dict(first.url.params) == {
        "part": "snippet",
        "allThreadsRelatedToChannelId": CHANNEL,
        "maxResults": "100",
        "order": "time",
        "textFormat": "plainText",
    }
    assert sink.cursor == {
        "since": {
            f"channel:{CHANNEL}": "2026-11-20T10:15:00+00:00",
            f"video:{HOW_TO}": "2026-11-17T12:00:00+00:00",
        }
    }


def test_next_run_stops_at_the_first_comment_already_seen() -> None:
    sink, _ = run_source(make_source(full_run()))
    later = ReplayTransport(
        channel_route("channel_later.json"),
        Route("GET", THREADS, [reply("error_comments_disabled.json", 403)], params={"videoId": NO_COMMENTS}),
        Route("GET", THREADS, [reply("video_page.json")], params={"videoId": HOW_TO}),
    )
    sink2, result = run_source(make_source(later), cursor=sink.cursor)
    assert result.done and result.pages == 3
    # The newest comment seen before is kept (same time): storage drops it by its id.
    assert [record.external_id for record in sink2.records] == [
        "Ugw000000000000001064AaABAg",
        "Ugw000000000000001054AaABAg",
        "Ugw000000000000003014AaABAg",
    ]
    assert not any("pageToken" in request.url.params for request in later.requests)
    assert sink2.cursor is not None
    assert sink2.cursor["since"][f"channel:{CHANNEL}"] == "2026-11-21T08:00:00+00:00"


def test_resumes_from_a_saved_mid_run_cursor() -> None:
    sink, result = run_source(make_source(full_run()), max_pages=1)
    assert not result.done
    assert sink.cursor == {
        "since": {},
        "target_index": 0,
        "page_token": NEXT,
        "newest": "2026-11-20T10:15:00+00:00",
    }
    resumed = full_run()
    resumed.routes[1].replies.clear()  # the first page must not be fetched again
    sink2, result2 = run_source(make_source(resumed), cursor=sink.cursor)
    assert result2.done
    assert len({record.external_id for record in sink.records + sink2.records}) == 6
    assert sink2.cursor is not None
    assert sink2.cursor["since"][f"channel:{CHANNEL}"] == "2026-11-20T10:15:00+00:00"


def test_waits_out_a_429_with_retry_after() -> None:
    sleep = FakeSleep()
    transport = full_run()
    transport.routes[1].replies.insert(
        0, json_response({"error": {"code": 429, "message": "Too Many Requests"}}, 429, {"Retry-After": "5"})
    )
    sink, result = run_source(make_source(transport, sleep))
    assert result.done and len(sink.records) == 6
    assert 5.0 in sleep.waits


def test_a_short_rate_limit_403_is_retried() -> None:
    sleep = FakeSleep()
    transport = full_run()
    transport.routes[1].replies.insert(0, reply("error_rate.json", 403))
    sink, result = run_source(make_source(transport, sleep))
    assert result.done and len(sink.records) == 6
    assert len(sleep.waits) >= 1


def test_a_spent_daily_quota_defers_the_run_to_midnight_pacific() -> None:
    transport = ReplayTransport(Route("GET", THREADS, [reply("error_quota.json", 403)], repeat_last=True))
    with pytest.raises(RateLimitedError, match=r"quota .* is used up for today") as caught:
        run_source(make_source(transport))
    assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= 25 * 3600
    assert len(transport.requests) == 1  # no retries: the quota only comes back at the reset


def test_quota_resets_at_midnight_in_california() -> None:
    winter = datetime(2026, 1, 15, 20, 0, tzinfo=UTC)  # 12:00 PST
    assert seconds_until_quota_reset(winter) == 12 * 3600
    summer = datetime(2026, 7, 15, 6, 30, tzinfo=UTC)  # 23:30 PDT
    assert seconds_until_quota_reset(summer) == 30 * 60


def test_retries_a_5xx_then_succeeds() -> None:
    sleep = FakeSleep()
    transport = full_run()
    transport.routes[0].replies.insert(0, reply("error_backend.json", 503))
    sink, result = run_source(make_source(transport, sleep))
    assert result.done and len(sink.records) == 6
    assert len(sleep.waits) >= 1


def test_a_timeout_is_retried_and_then_reported() -> None:
    transport = ReplayTransport(Route("GET", THREADS, [httpx.ReadTimeout("timed out") for _ in range(4)]))
    with pytest.raises(TransientError, match="did not answer within 20 s"):
        run_source(make_source(transport))
    assert len(transport.requests) == 4


def test_malformed_comments_are_reported_and_the_rest_kept() -> None:
    transport = ReplayTransport(Route("GET", THREADS, [reply("malformed.json")]))
    sink, result = run_source(make_source(transport, video_ids=[]))
    assert [record.external_id for record in sink.records] == ["Ugw000000000000002044AaABAg"]
    reasons = {report.external_id: report.reason for report in result.malformed}
    assert "is not an ISO 8601 time" in reasons["Ugw000000000000002034AaABAg"]
    assert reasons["Ugw000000000000002024AaABAg"] == "text is missing"
    assert reasons["Ugw000000000000002014AaABAg"] == "text is missing"


def test_a_body_that_is_not_json_fails_clearly() -> None:
    transport = ReplayTransport(
        Route("GET", THREADS, [raw_response("<html>Error 502</html>", 200, content_type="text/html")])
    )
    with pytest.raises(MalformedResponseError, match="not JSON"):
        run_source(make_source(transport))


def test_a_body_without_items_fails_clearly() -> None:
    transport = ReplayTransport(
        Route("GET", THREADS, [json_response({"kind": "youtube#commentThreadListResponse"})])
    )
    with pytest.raises(MalformedResponseError, match="without an 'items' list"):
        run_source(make_source(transport))


def test_an_invalid_key_is_a_clear_error_without_the_key() -> None:
    transport = ReplayTransport(Route("GET", THREADS, [reply("error_key_invalid.json", 400)]))
    with pytest.raises(BadCredentialsError, match="API key not valid") as caught:
        run_source(make_source(transport))
    assert KEY not in str(caught.value)
    assert len(transport.requests) == 1


def test_an_unknown_video_is_a_clear_error() -> None:
    transport = ReplayTransport(Route("GET", THREADS, [reply("error_video_not_found.json", 404)]))
    with pytest.raises(NotFoundError, match=f"YouTube has no video {HOW_TO}"):
        run_source(make_source(transport, channel_id=None, video_ids=[HOW_TO]))


def test_config_is_validated_through_the_registry() -> None:
    with pytest.raises(SourceConfigError, match="give a channel_id or at least one video id"):
        build_source("youtube.v1", {"api_key": "k"}, environ={})
    with pytest.raises(SourceConfigError, match="channel_id: String should match pattern"):
        build_source("youtube.v1", {"api_key": "k", "channel_id": "acmeshop"}, environ={})
    with pytest.raises(SourceConfigError, match=r"not YouTube video ids: https://youtu\.be/x"):
        build_source("youtube.v1", {"api_key": "k", "video_ids": ["https://youtu.be/x"]}, environ={})
    with pytest.raises(SourceConfigError, match="api_key: Field required"):
        build_source("youtube.v1", {"channel_id": CHANNEL}, environ={})
    source = build_source(
        "youtube.v1",
        {"api_key": {"env": "YOUTUBE_API_KEY"}, "channel_id": CHANNEL},
        environ={"YOUTUBE_API_KEY": KEY},
    )
    assert isinstance(source, YouTubeSource)
    assert KEY not in repr(source.config)
