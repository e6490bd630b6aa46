"""Zendesk: replayed from recorded incremental ticket and ticket-event exports."""

from __future__ import annotations

import base64

import httpx
import pytest

from scrapers.contract import RatingScale
from scrapers.http import BadCredentialsError, NotFoundError, RateLimitedError, TransientError
from scrapers.registry import SourceConfigError, build_source, masked_config
from scrapers.sources.zendesk import ZendeskConfig, ZendeskSource
from tests.scrapers.replay import (
    FakeSleep,
    ReplayTransport,
    Route,
    json_response,
    load_json,
    raw_response,
    run_source,
)

KIND = "zendesk"
TICKETS = r"/api/v2/incremental/tickets/cursor\.json$"
EVENTS = r"/api/v2/incremental/ticket_events\.json$"
SHOW_MANY = r"/api/v2/tickets/show_many\.json$"
START = "1772323200"  # 2026-03-01T00:00:00Z
FIRST_CURSOR = "MTc3MjUyODQwMC4wfHwxMjAzfA=="
END_CURSOR = "MTc3Mjk1MzkwMC4wfHwxMjA2fA=="
TOKEN = "zd-api-token-0f9e8d7c"


def make_source(
    transport: ReplayTransport, sleep: FakeSleep | None = None, **config: object
) -> ZendeskSource:
    settings = ZendeskConfig.model_validate(
        {
            "subdomain": "acme",
            "email": "admin@acme-shop.example",
            "api_token": TOKEN,
            "start_date": "2026-03-01",
            **config,
        }
    )
    sleep = sleep or FakeSleep()
    return ZendeskSource(settings, transport=transport, sleep=sleep, clock=sleep.clock)


def tickets_route(*names: str, **params: str) -> Route:
    return Route("GET", TICKETS, [json_response(load_json(KIND, name)) for name in names], params=params)


def full_export() -> ReplayTransport:
    return ReplayTransport(
        tickets_route("tickets_page1.json", start_time=START, exclude_deleted="true"),
        tickets_route("tickets_page2.json", cursor=FIRST_CURSOR),
        Route(
            "GET",
            EVENTS,
            [json_response(load_json(KIND, "ticket_events_page1.json"))],
            params={"start_time": START, "include": "comment_events"},
        ),
        Route(
            "GET",
            EVENTS,
            [json_response(load_json(KIND, "ticket_events_page2.json"))],
            params={"start_time": "1772622660"},
        ),
        Route(
            "GET",
            SHOW_MANY,
            [json_response(load_json(KIND, "show_many_page1.json"))],
            params={"ids": "1201,1203,1205"},
        ),
        Route(
            "GET", SHOW_MANY, [json_response(load_json(KIND, "show_many_page2.json"))], params={"ids": "1203"}
        ),
    )


def test_exports_tickets_then_customer_comments_to_the_end() -> None:
    transport = full_export()
    sink, result = run_source(make_source(transport), default_touchpoint="support")
    assert result.done and result.pages == 4
    ids = [record.external_id for record in sink.records]
    assert ids == [
        "ticket/1201",
        "ticket/1203",
        "satisfaction/360077770001",
        "ticket/1204",
        "ticket/1206",
        "satisfaction/360077770002",
        "comment/91007",
        "comment/91011",
    ]
    by_id = {record.external_id: record for record in sink.records}
    german = by_id["ticket/1201"]
    assert german.text.startswith("Bestellung nicht angekommen\nHallo, meine Bestellung #55812")
    assert german.author == "381200004001"
    assert german.url == "https://acme.zendesk.com/agent/tickets/1201"
    assert german.created_at.utcoffset() is not None
    assert german.touchpoint == "support"
    assert german.metadata["tags"] == ["lieferung", "de"]
    assert german.metadata["via_channel"] == "email"
    assert german.metadata["brand_id"] == 360001234567
    assert german.metadata["satisfaction"] == "unoffered"
    good = by_id["satisfaction/360077770001"]
    assert good.text == "Fixed within a day, thank you!"
    assert good.rating is not None and (good.rating.value, good.rating.scale) == (5.0, RatingScale.CSAT)
    assert good.metadata["satisfaction_reason"] == "Issue resolved quickly"
    bad = by_id["satisfaction/360077770002"]
    assert bad.text == "هنوز جوابی نگرفتم" and bad.rating is not None and bad.rating.value == 1.0
    follow_up = by_id["comment/91007"]
    assert follow_up.text == "Immer noch nichts. Ich möchte mein Geld zurück."
    assert follow_up.metadata["ticket_id"] == 1201 and follow_up.metadata["audit_id"] == 90004
    thai = by_id["comment/91011"]
    assert thai.text == "ตอนนี้แอปยังปิดเองอยู่เลย ช่วยด่วนค่ะ"  # read from html_body
    assert thai.url == "https://acme.zendesk.com/agent/tickets/1203"
    assert sink.cursor == {"phase": "tickets", "tickets_cursor": END_CURSOR, "events_start": 1772625600}


def test_agent_replies_private_notes_cc_comments_and_agent_opened_tickets_are_skipped() -> None:
    sink, _ = run_source(make_source(full_export()))
    ids = {record.external_id for record in sink.records}
    assert "ticket/1202" not in ids  # opened by an agent in the agent interface
    assert "ticket/1205" not in ids  # deleted
    assert "comment/91001" not in ids  # the description again, from the creation audit
    assert "comment/91004" not in ids  # public agent reply
    assert "comment/91006" not in ids  # private note
    assert "comment/91009" not in ids  # its ticket was deleted (not in show_many)
    assert "comment/91010" not in ids  # a CC'd user, not the requester


def test_sends_the_api_token_as_basic_auth_and_oauth_as_bearer() -> None:
    transport = full_export()
    run_source(make_source(transport))
    expected = base64.b64encode(f"admin@acme-shop.example/token:{TOKEN}".encode()).decode()
    assert {request.headers["authorization"] for request in transport.requests} == {f"Basic {expected}"}

    oauth = full_export()
    run_source(make_source(oauth, email=None, api_token=None, oauth_token="oauth-abc"))
    assert {request.headers["authorization"] for request in oauth.requests} == {"Bearer oauth-abc"}


def test_the_next_run_only_fetches_what_changed() -> None:
    sink, _ = run_source(make_source(full_export()))
    later = ReplayTransport(
        tickets_route("tickets_later.json", cursor=END_CURSOR),
        Route(
            "GET",
            EVENTS,
            [json_response(load_json(KIND, "ticket_events_later.json"))],
            params={"start_time": "1772625600"},
        ),
        Route(
            "GET", SHOW_MANY, [json_response(load_json(KIND, "show_many_later.json"))], params={"ids": "1204"}
        ),
    )
    sink2, result = run_source(make_source(later), cursor=sink.cursor)
    assert result.done and result.pages == 2
    assert [record.external_id for record in sink2.records] == ["ticket/1207", "comment/91012"]
    assert sink2.records[1].text == "أرجو الرد بسرعة، هذا غير مقبول."
    assert "start_time" not in later.requests[0].url.params
    assert sink2.cursor == {
        "phase": "tickets",
        "tickets_cursor": "MTc3MzE2NzIwMC4wfHwxMjA3fA==",
        "events_start": 1773169200,
    }


def test_resumes_from_a_saved_mid_run_cursor() -> None:
    sink, result = run_source(make_source(full_export()), max_pages=1)
    assert not result.done
    assert sink.cursor == {"phase": "tickets", "tickets_cursor": FIRST_CURSOR, "events_start": 1772323200}
    resumed = full_export()
    resumed.routes.pop(0)
    sink2, result2 = run_source(make_source(resumed), cursor=sink.cursor)
    assert result2.done
    assert len(sink.records) + len(sink2.records) == 8
    assert "start_time" not in resumed.requests[0].url.params

    mid_comments = {"phase": "comments", "tickets_cursor": END_CURSOR, "events_start": 1772622660}
    events_only = full_export()
    sink3, result3 = run_source(make_source(events_only), cursor=mid_comments)
    assert result3.done
    assert [record.external_id for record in sink3.records] == ["comment/91011"]


def test_the_first_run_starts_backfill_days_ago_without_a_start_date() -> None:
    transport = ReplayTransport(
        tickets_route("tickets_later.json"),
        Route("GET", EVENTS, [json_response(load_json(KIND, "ticket_events_later.json"))]),
        Route("GET", SHOW_MANY, [json_response(load_json(KIND, "show_many_later.json"))]),
    )
    settings = ZendeskConfig.model_validate(
        {"subdomain": "https://Acme.zendesk.com/", "oauth_token": "t", "backfill_days": 7}
    )
    source = ZendeskSource(settings, transport=transport, sleep=FakeSleep(), wall_clock=lambda: 1773446400.0)
    run_source(source)
    assert transport.requests[0].url.params["start_time"] == str(1773446400 - 7 * 86400)
    assert transport.requests[0].url.host == "acme.zendesk.com"


def test_waits_out_a_429_with_retry_after() -> None:
    sleep = FakeSleep()
    transport = full_export()
    transport.routes[0].replies.insert(
        0,
        raw_response(
            "Number of allowed incremental export API requests per minute exceeded",
            429,
            content_type="text/plain",
            headers={"Retry-After": "23"},
        ),
    )
    sink, result = run_source(make_source(transport, sleep))
    assert result.done and len(sink.records) == 8
    assert 23.0 in sleep.waits


def test_a_long_retry_after_defers_the_run() -> None:
    transport = ReplayTransport(
        Route("GET", TICKETS, [json_response({"error": "APIRateLimitExceeded"}, 429, {"Retry-After": "900"})])
    )
    with pytest.raises(RateLimitedError) as caught:
        run_source(make_source(transport))
    assert caught.value.retry_after == 900


def test_retries_a_5xx_then_succeeds() -> None:
    sleep = FakeSleep()
    transport = full_export()
    transport.routes[2].replies.insert(
        0, raw_response("<html>502 Bad Gateway</html>", 502, content_type="text/html")
    )
    transport.routes[2].replies.insert(0, json_response({"error": "ServiceUnavailable"}, 503))
    sink, result = run_source(make_source(transport, sleep))
    assert result.done and len(sink.records) == 8
    assert len([request for request in transport.requests if "ticket_events" in request.url.path]) == 4
    assert len(sleep.waits) >= 2


def test_a_timeout_is_retried_and_then_reported() -> None:
    transport = ReplayTransport(Route("GET", TICKETS, [httpx.ReadTimeout("timed out") for _ in range(4)]))
    with pytest.raises(TransientError, match="Zendesk did not answer within 20 s"):
        run_source(make_source(transport))
    assert len(transport.requests) == 4


def test_malformed_tickets_are_reported_and_the_rest_kept() -> None:
    transport = ReplayTransport(
        tickets_route("tickets_malformed.json"),
        Route(
            "GET",
            EVENTS,
            [json_response({"ticket_events": [], "end_of_stream": True, "end_time": 1773057600})],
        ),
    )
    sink, result = run_source(make_source(transport))
    assert [record.external_id for record in sink.records] == ["ticket/1303"]
    reasons = {report.external_id: report.reason for report in result.malformed}
    assert reasons == {"ticket/1301": "created_at is missing", "ticket/1302": "text is missing"}
    assert result.malformed[0].where == "tickets[0]"


def test_a_body_that_is_not_json_or_lacks_its_list_fails_clearly() -> None:
    transport = ReplayTransport(
        Route("GET", TICKETS, [raw_response("<html>Maintenance</html>", 200, content_type="text/html")])
    )
    with pytest.raises(
        Exception,
        match=r"Zendesk answered /api/v2/incremental/tickets/cursor\.json with something that is not JSON",
    ):
        run_source(make_source(transport))
    transport = ReplayTransport(Route("GET", TICKETS, [json_response({"end_of_stream": True})]))
    with pytest.raises(Exception, match="without a 'tickets' list"):
        run_source(make_source(transport))


def test_bad_credentials_are_a_clear_error_without_the_token() -> None:
    transport = ReplayTransport(
        Route("GET", TICKETS, [json_response({"error": "Couldn't authenticate you"}, 401)])
    )
    with pytest.raises(
        BadCredentialsError, match=r"Zendesk refused the credentials .*Couldn.t authenticate you"
    ) as caught:
        run_source(make_source(transport))
    assert TOKEN not in str(caught.value)
    assert len(transport.requests) == 1


def test_an_unknown_subdomain_is_a_not_found_error() -> None:
    body = {
        "error": {
            "title": "No help desk at acmee.zendesk.com",
            "message": "There is no help desk configured at this address. This means that the address is available.",
        }
    }
    transport = ReplayTransport(Route("GET", TICKETS, [json_response(body, 404)]))
    with pytest.raises(NotFoundError, match="no help desk configured at this address"):
        run_source(make_source(transport))


def test_config_is_validated_through_the_registry() -> None:
    with pytest.raises(SourceConfigError, match="subdomain: Field required"):
        build_source("zendesk.v1", {"oauth_token": "x"}, environ={})
    with pytest.raises(SourceConfigError, match="give api_token \\(with email\\) or oauth_token"):
        build_source("zendesk.v1", {"subdomain": "acme"}, environ={})
    with pytest.raises(SourceConfigError, match="api_token needs the email"):
        build_source("zendesk.v1", {"subdomain": "acme", "api_token": "x"}, environ={})
    with pytest.raises(SourceConfigError, match="not both"):
        build_source(
            "zendesk.v1",
            {"subdomain": "acme", "api_token": "x", "email": "a@b.c", "oauth_token": "y"},
            environ={},
        )
    with pytest.raises(SourceConfigError, match="subdomain: String should match pattern"):
        build_source("zendesk.v1", {"subdomain": "ac me", "oauth_token": "x"}, environ={})
    raw = {"subdomain": "acme", "email": "a@b.c", "api_token": {"env": "ZENDESK_TOKEN"}}
    source = build_source("zendesk.v1", raw, environ={"ZENDESK_TOKEN": TOKEN})
    assert isinstance(source, ZendeskSource)
    assert TOKEN not in repr(source.config)
    assert masked_config("zendesk.v1", {**raw, "api_token": TOKEN})["api_token"] == "********"
