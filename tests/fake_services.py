"""A local HTTP server on 127.0.0.1 that answers like the App Store reviews feed and a Mastodon instance.

It serves generated data in the services' real formats, logs every request, and can hold chosen requests
until released, so that a test can kill a collector in the middle of a run.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

APP_ID = "1234567890"
APP_STORE_PAGE = re.compile(
    r"^/(?P<country>[a-z]{2})/rss/customerreviews/page=(?P<page>\d+)/id=(?P<app>\d+)/sortby=mostrecent/json$"
)
TAG_TIMELINE = re.compile(r"^/api/v1/timelines/tag/(?P<tag>\w+)$")

REVIEW_TEXTS = [
    "Checkout keeps crashing when I pay with Apple Pay",
    "Delivery was two days late and nobody answered the chat",
    "Love the new search, finds everything instantly",
    "The app logs me out every time I open it",
    "Refund still not processed after three weeks",
    "Great prices and the courier was very polite",
    "التطبيق بطيء جدا عند الدفع",
    "Die Lieferung kam beschädigt an",
]
POST_TEXTS = [
    '<p>Waited 40 minutes in the queue at the <a href="https://x">#acmeshop</a> store today</p>',
    "<p>Staff at #acmeshop Riyadh were super helpful, thanks!</p>",
    "<p>#acmeshop app crashed during checkout again 😡</p>",
    "<p>پشتیبانی #acmeshop هیچ پاسخی نداد</p>",
    "<p>Parcel from #acmeshop arrived early, well packed</p>",
]


def app_store_reviews(count: int) -> list[dict[str, Any]]:
    """``count`` reviews in the feed's entry format, newest first."""
    start = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    entries = []
    for index in range(count):
        when = start - timedelta(hours=index)
        entries.append(
            {
                "author": {
                    "uri": {"label": f"https://itunes.apple.com/us/reviews/id{700 + index}"},
                    "name": {"label": f"reviewer{index}"},
                    "label": "",
                },
                "im:version": {"label": "6.1.0"},
                "im:rating": {"label": str(1 + index % 5)},
                "id": {"label": str(12_000_000_000 + index)},
                "title": {"label": f"Review number {index}"},
                "content": {
                    "label": f"{REVIEW_TEXTS[index % len(REVIEW_TEXTS)]} (order {index})",
                    "attributes": {"type": "text"},
                },
                "im:voteSum": {"label": "0"},
                "im:voteCount": {"label": "0"},
                "updated": {"label": when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S-00:00")},
            }
        )
    return entries


def mastodon_statuses(count: int, *, base_url: str) -> list[dict[str, Any]]:
    """``count`` statuses in Mastodon's Status format, newest (largest id) first."""
    start = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    statuses = []
    for index in range(count):
        status_id = str(113_000_000_000_000_000 + count - index)
        statuses.append(
            {
                "id": status_id,
                "created_at": (start - timedelta(minutes=7 * index)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "in_reply_to_id": None,
                "sensitive": False,
                "spoiler_text": "",
                "visibility": "public",
                "language": None,
                "uri": f"{base_url}/users/fan{index}/statuses/{status_id}",
                "url": f"{base_url}/@fan{index}/{status_id}",
                "replies_count": 0,
                "reblogs_count": 0,
                "favourites_count": index % 3,
                "content": POST_TEXTS[index % len(POST_TEXTS)].replace("</p>", f" ({index})</p>"),
                "reblog": None,
                "account": {
                    "id": str(9000 + index),
                    "username": f"fan{index}",
                    "acct": f"fan{index}@example.social",
                    "url": f"https://example.social/@fan{index}",
                },
                "media_attachments": [],
                "mentions": [],
                "tags": [{"name": "acmeshop", "url": f"{base_url}/tags/acmeshop"}],
                "emojis": [],
            }
        )
    return statuses


class FakeServices:
    """The server's state: the data it serves, the requests it saw, and the requests it holds."""

    def __init__(self, *, reviews: int, reviews_per_page: int, statuses: int) -> None:
        self.reviews = app_store_reviews(reviews)
        self.reviews_per_page = reviews_per_page
        self.statuses_count = statuses
        self.statuses: list[dict[str, Any]] = []
        self.requests: list[str] = []
        self.hold_patterns: list[str] = []
        self.held = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.base_url = ""

    def requested(self, fragment: str) -> int:
        with self.lock:
            return sum(1 for path in self.requests if fragment in path)

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        with self.lock:
            self.requests.append(handler.path)
        if any(pattern in handler.path for pattern in self.hold_patterns) and not self.release.is_set():
            self.held.set()
            self.release.wait(120)
        if parts.path == "/robots.txt":
            return _send(handler, 404, b"", "text/plain")
        page = APP_STORE_PAGE.match(parts.path)
        if page:
            number = int(page["page"])
            start = (number - 1) * self.reviews_per_page
            entries = self.reviews[start : start + self.reviews_per_page]
            feed: dict[str, Any] = {
                "author": {"name": {"label": "iTunes Store"}},
                "updated": {"label": "2026-11-20T12:00:00-07:00"},
            }
            if entries:
                feed["entry"] = entries
            return _send_json(handler, {"feed": feed})
        timeline = TAG_TIMELINE.match(parts.path)
        if timeline:
            query = {key: values[0] for key, values in parse_qs(parts.query).items()}
            chosen = [
                status
                for status in self.statuses
                if ("max_id" not in query or int(status["id"]) < int(query["max_id"]))
                and ("since_id" not in query or int(status["id"]) > int(query["since_id"]))
            ][: int(query.get("limit", "20"))]
            headers = {}
            if chosen:
                path = f"{self.base_url}{parts.path}"
                headers["Link"] = (
                    f'<{path}?{urlencode({"max_id": chosen[-1]["id"]})}>; rel="next", '
                    f'<{path}?{urlencode({"min_id": chosen[0]["id"]})}>; rel="prev"'
                )
            return _send_json(handler, chosen, headers=headers)
        return _send_json(handler, {"error": "Record not found"}, status=404)


def _send_json(
    handler: BaseHTTPRequestHandler, body: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> None:
    _send(
        handler,
        status,
        json.dumps(body, ensure_ascii=False).encode(),
        "application/json; charset=utf-8",
        headers,
    )


def _send(
    handler: BaseHTTPRequestHandler,
    status: int,
    data: bytes,
    content_type: str,
    headers: dict[str, str] | None = None,
) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(data)


@contextmanager
def serve_fake_services(*, reviews: int, reviews_per_page: int, statuses: int) -> Iterator[FakeServices]:
    """Run the fake services on 127.0.0.1 on a free port for the duration of the block."""
    services = FakeServices(reviews=reviews, reviews_per_page=reviews_per_page, statuses=statuses)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            services.answer(self)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    services.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    services.statuses = mastodon_statuses(statuses, base_url=services.base_url)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield services
    finally:
        services.release.set()
        server.shutdown()
        server.server_close()
