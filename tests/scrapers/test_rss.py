"""RSS 2.0, RSS 1.0 and Atom feeds: replayed from recorded feed documents."""

from __future__ import annotations

import httpx
import pytest

from scrapers.http import (
    MalformedResponseError,
    NotFoundError,
    RateLimitedError,
    RobotsDisallowedError,
    TransientError,
)
from scrapers.registry import SourceConfigError, build_source
from scrapers.sources.rss import RssConfig, RssSource, entry_hash
from tests.scrapers.replay import FakeSleep, ReplayTransport, Route, load_bytes, raw_response, run_source

KIND = "rss"
NEWS = "https://news.example.com/feed/"
BLOG = "https://blog.example.de/atom.xml"
ALERTS = "https://www.google.com/alerts/feeds/01234567890123456789/1234567890123456789"
FORUM = "https://forum.example.co.th/rss"
FEEDS = [NEWS, BLOG, ALERTS, FORUM]
NEWS_ETAG = '"5f3a-61c2b9e0"'
NEWS_MODIFIED = "Fri, 20 Nov 2026 11:00:00 GMT"


def make_source(transport: ReplayTransport, sleep: FakeSleep | None = None, **config: object) -> RssSource:
    settings = RssConfig.model_validate({"feed_urls": FEEDS, "product": "Acme Shop", **config})
    sleep = sleep or FakeSleep()
    return RssSource(settings, transport=transport, sleep=sleep, clock=sleep.clock)


def feed(
    name: str, content_type: str = "application/rss+xml; charset=utf-8", **headers: str
) -> httpx.Response:
    return raw_response(load_bytes(KIND, name), content_type=content_type, headers=headers)


def robots(rules: str = "User-agent: *\nDisallow: /wp-admin/\n") -> Route:
    return Route("GET", r"^/robots\.txt$", [raw_response(rules, content_type="text/plain")], repeat_last=True)


def not_modified() -> httpx.Response:
    return httpx.Response(304, headers={"ETag": NEWS_ETAG})


def full_run() -> ReplayTransport:
    return ReplayTransport(
        robots(),
        Route(
            "GET", r"^/feed/$", [feed("news_rss2.xml", ETag=NEWS_ETAG, **{"Last-Modified": NEWS_MODIFIED})]
        ),
        Route("GET", r"^/atom\.xml$", [feed("blog_atom.xml", "application/atom+xml")]),
        Route("GET", r"^/alerts/feeds/", [feed("alerts_atom.xml", "application/atom+xml; charset=utf-8")]),
        Route("GET", r"^/rss$", [feed("forum_rss1.rdf", "application/rdf+xml")]),
    )


def test_reads_every_feed_to_the_end() -> None:
    transport = full_run()
    sink, result = run_source(make_source(transport), default_touchpoint="press")
    assert result.done and result.pages == 4
    assert result.malformed == []
    records = {record.external_id: record for record in sink.records}
    assert len(records) == 8

    news = records["https://news.example.com/?p=48211"]
    assert news.text == (
        "Acme Shop users report checkout failures after 5.2 update\n"
        "Dozens of users say the Acme Shop app freezes at the payment step & charges twice.\n\n"
        "Acme said a fix is \u201crolling out\u201d."
    )
    assert news.author == "Priya Raman"
    assert news.language == "en-us"
    assert news.url == "https://news.example.com/2026/11/20/acme-checkout-failures/"
    assert news.created_at.isoformat() == "2026-11-20T10:15:00+00:00"
    assert news.product == "Acme Shop"
    assert news.touchpoint == "press"
    assert news.metadata["tags"] == ["Apps", "Acme"]
    assert news.metadata["feed_title"] == "Retail Tech Daily"
    assert news.metadata["comments_url"].endswith("#comments")
    # A description that only repeats the title adds nothing.
    assert records["https://news.example.com/?p=48190"].text == "Acme adds dark mode and faster search"
    # No guid: the link identifies the entry.
    assert "https://news.example.com/2026/11/18/grocery-apps-compared/" in records

    german = records["urn:uuid:a1b2c3d4-0001-4000-8000-000000000001"]
    assert german.text.startswith("Acme App im Test: schnell, aber der Checkout hakt\nDie neue Version")
    assert german.language == "de"
    assert german.url == "https://blog.example.de/2026/11/acme-app-test"  # resolved against the feed URL
    assert german.created_at.isoformat() == "2026-11-20T07:30:00+00:00"

    alert = records["tag:google.com,2013:googlealerts/feed:10836521654321987655"]
    assert (
        alert.text
        == "تجربتي مع تطبيق Acme للتسوق\nالتطبيق سهل الاستخدام لكن خيارات الدفع محدودة في السعودية ..."
    )
    assert alert.url == "https://arabic-blog.example.net/acme"  # Google's redirect unwrapped
    assert alert.author is None
    assert alert.metadata["title"] == "تجربتي مع تطبيق Acme للتسوق"

    thai = records["https://forum.example.co.th/t/9921"]
    assert thai.language == "th"
    assert thai.author == "noon_bkk"
    assert thai.created_at.isoformat() == "2026-11-20T08:20:00+00:00"

    robots_requests = [request for request in transport.requests if request.url.path == "/robots.txt"]
    assert len(robots_requests) == 4  # once per site
    first_feed = transport.requests[1]
    assert "rss+xml" in first_feed.headers["Accept"]
    assert "If-None-Match" not in first_feed.headers
    assert sink.cursor is not None
    assert sink.cursor["feeds"][NEWS] == {
        "etag": NEWS_ETAG,
        "last_modified": NEWS_MODIFIED,
        "ids": sorted(entry_hash(entry_id) for entry_id in records if entry_id.startswith("https://news.")),
    }
    assert sink.cursor["feeds"][FORUM] == {"ids": [entry_hash("https://forum.example.co.th/t/9921")]}


def test_next_run_uses_conditional_gets_and_skips_what_it_saw() -> None:
    sink, _ = run_source(make_source(full_run()))
    later = ReplayTransport(
        robots(),
        Route("GET", r"^/feed/$", [feed("news_rss2_later.xml", ETag='"5f3a-61c2ffff"')]),
        Route("GET", r"^/atom\.xml$", [not_modified()]),
        Route("GET", r"^/alerts/feeds/", [not_modified()]),
        Route("GET", r"^/rss$", [feed("forum_rss1.rdf", "application/rdf+xml")]),
    )
    sink2, result = run_source(make_source(later), cursor=sink.cursor)
    assert result.done and result.pages == 4
    # Only the entry that was not in the feed last time; the unchanged forum feed adds nothing.
    assert [record.external_id for record in sink2.records] == ["https://news.example.com/?p=48240"]
    news_request = next(request for request in later.requests if request.url.path == "/feed/")
    assert news_request.headers["If-None-Match"] == NEWS_ETAG
    assert news_request.headers["If-Modified-Since"] == NEWS_MODIFIED
    assert sink2.cursor is not None
    assert sink2.cursor["feeds"][NEWS] == {
        "etag": '"5f3a-61c2ffff"',
        "ids": sorted(
            entry_hash(f"https://news.example.com/?p={post}") for post in ("48240", "48211", "48190")
        ),
    }
    assert sink2.cursor["feeds"][BLOG] == sink.cursor["feeds"][BLOG]  # type: ignore[index]


def test_resumes_from_a_saved_mid_run_cursor() -> None:
    sink, result = run_source(make_source(full_run()), max_pages=2)
    assert not result.done
    assert sink.cursor is not None and sink.cursor["feed_index"] == 2
    resumed = full_run()
    resumed.routes[1].replies.clear()  # feeds already read must not be fetched again
    resumed.routes[2].replies.clear()
    sink2, result2 = run_source(make_source(resumed), cursor=sink.cursor)
    assert result2.done and result2.pages == 2
    assert len({record.external_id for record in sink.records + sink2.records}) == 8
    assert sink2.cursor is not None and set(sink2.cursor["feeds"]) == set(FEEDS)


def test_waits_out_a_429_with_retry_after() -> None:
    sleep = FakeSleep()
    transport = full_run()
    transport.routes[1].replies.insert(
        0, raw_response("slow down", 429, content_type="text/plain", headers={"Retry-After": "11"})
    )
    sink, result = run_source(make_source(transport, sleep))
    assert result.done and len(sink.records) == 8
    assert 11.0 in sleep.waits


def test_a_long_retry_after_defers_the_run() -> None:
    transport = ReplayTransport(
        robots(),
        Route(
            "GET",
            r"^/feed/$",
            [raw_response("slow down", 429, content_type="text/plain", headers={"Retry-After": "7200"})],
        ),
    )
    with pytest.raises(RateLimitedError) as caught:
        run_source(make_source(transport))
    assert caught.value.retry_after == 7200


def test_retries_a_5xx_then_succeeds() -> None:
    sleep = FakeSleep()
    transport = full_run()
    transport.routes[3].replies.insert(
        0, raw_response("<html>Service Unavailable</html>", 503, content_type="text/html")
    )
    sink, result = run_source(make_source(transport, sleep))
    assert result.done and len(sink.records) == 8
    assert len(sleep.waits) >= 1


def test_a_timeout_is_retried_and_then_reported() -> None:
    transport = ReplayTransport(
        robots(), Route("GET", r"^/feed/$", [httpx.ReadTimeout("timed out") for _ in range(4)])
    )
    with pytest.raises(TransientError, match="did not answer within 20 s"):
        run_source(make_source(transport))


def test_malformed_entries_are_reported_and_the_rest_kept() -> None:
    transport = ReplayTransport(robots(), Route("GET", r"^/feed/$", [feed("malformed_rss2.xml")]))
    sink, result = run_source(make_source(transport, feed_urls=[NEWS]))
    assert [record.external_id for record in sink.records] == [
        "https://news.example.com/2026/11/22/acme-apple-pay/"
    ]
    reasons = {report.external_id: report.reason for report in result.malformed}
    assert reasons["https://news.example.com/2026/11/22/undated/"] == "created_at is missing"
    assert reasons["https://news.example.com/2026/11/22/no-text/"] == "text is missing"
    assert reasons[None] == "external_id is missing"

    again = ReplayTransport(robots(), Route("GET", r"^/feed/$", [feed("malformed_rss2.xml")]))
    sink2, result2 = run_source(make_source(again, feed_urls=[NEWS]), cursor=sink.cursor)
    assert sink2.records == []
    assert [report.reason for report in result2.malformed] == ["external_id is missing"]  # no id to remember


def test_an_entry_that_appears_late_with_an_older_date_is_not_lost() -> None:
    sink, _ = run_source(make_source(full_run(), feed_urls=[NEWS]))
    backdated = load_bytes(KIND, "news_rss2.xml").replace(
        b"<item>",
        b"<item><title>Acme press release from last week</title><link>https://news.example.com/pr/</link>"
        b"<pubDate>Fri, 13 Nov 2026 09:00:00 +0000</pubDate><guid>https://news.example.com/?p=47000</guid>"
        b"</item><item>",
        1,
    )
    later = ReplayTransport(
        robots(), Route("GET", r"^/feed/$", [raw_response(backdated, content_type="application/rss+xml")])
    )
    sink2, _ = run_source(make_source(later, feed_urls=[NEWS]), cursor=sink.cursor)
    assert [record.external_id for record in sink2.records] == ["https://news.example.com/?p=47000"]


def test_a_page_that_is_not_a_feed_fails_clearly() -> None:
    transport = ReplayTransport(robots(), Route("GET", r"^/feed/$", [feed("not_a_feed.html", "text/html")]))
    with pytest.raises(
        MalformedResponseError, match=r"https://news\.example\.com/feed/ is not an RSS or Atom feed"
    ):
        run_source(make_source(transport))


def test_a_missing_feed_is_a_clear_error() -> None:
    transport = ReplayTransport(
        robots(),
        Route("GET", r"^/feed/$", [raw_response("<html>Not Found</html>", 404, content_type="text/html")]),
    )
    with pytest.raises(
        NotFoundError, match=r"there is no feed at https://news\.example\.com/feed/ \(HTTP 404\)"
    ):
        run_source(make_source(transport))


def test_robots_txt_is_honoured() -> None:
    transport = ReplayTransport(
        robots("User-agent: *\nDisallow: /feed/\n"), Route("GET", r"^/feed/$", [feed("news_rss2.xml")])
    )
    with pytest.raises(RobotsDisallowedError, match="does not allow fetching /feed/"):
        run_source(make_source(transport))
    assert [request.url.path for request in transport.requests] == ["/robots.txt"]


def test_config_is_validated_through_the_registry() -> None:
    with pytest.raises(SourceConfigError, match="feed_urls: Field required"):
        build_source("rss.v1", {}, environ={})
    with pytest.raises(SourceConfigError, match="feed_urls: List should have at least 1 item"):
        build_source("rss.v1", {"feed_urls": []}, environ={})
    with pytest.raises(SourceConfigError, match=r"not http\(s\) URLs: news\.example\.com/feed"):
        build_source("rss.v1", {"feed_urls": ["news.example.com/feed"]}, environ={})
    with pytest.raises(SourceConfigError, match="listed twice"):
        build_source("rss.v1", {"feed_urls": [NEWS, NEWS]}, environ={})
    assert isinstance(build_source("rss.v1", {"feed_urls": FEEDS}, environ={}), RssSource)
