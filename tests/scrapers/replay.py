"""Offline replay of recorded HTTP responses for source tests: no test touches the network."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from scrapers.contract import Cursor, Page, Record, Source
from scrapers.runner import CollectResult, collect

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sources"


def fixture_path(kind: str, name: str) -> Path:
    """Path of a recorded payload under tests/fixtures/sources/<kind>/<name>."""
    return FIXTURES / kind / name


def load_json(kind: str, name: str) -> Any:
    """A recorded JSON payload."""
    return json.loads(fixture_path(kind, name).read_text(encoding="utf-8"))


def load_bytes(kind: str, name: str) -> bytes:
    """A recorded payload as bytes (feeds, e-mails, files)."""
    return fixture_path(kind, name).read_bytes()


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> httpx.Response:
    """A JSON response as the service sends it."""
    return httpx.Response(status, json=body, headers=dict(headers or {}))


def raw_response(
    content: bytes | str,
    status: int = 200,
    *,
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """A response with a literal body (malformed JSON, XML feeds, HTML error pages)."""
    all_headers = {"content-type": content_type, **dict(headers or {})}
    data = content.encode() if isinstance(content, str) else content
    return httpx.Response(status, content=data, headers=all_headers)


Reply = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


@dataclass
class Route:
    """Requests matching method, path (a regex searched in the URL path) and params get the replies in order."""

    method: str
    path: str
    replies: list[Reply]
    params: Mapping[str, str] = field(default_factory=dict)
    repeat_last: bool = False

    def matches(self, request: httpx.Request) -> bool:
        if request.method != self.method or not re.search(self.path, request.url.path):
            return False
        query = dict(request.url.params)
        return all(query.get(key) == value for key, value in self.params.items())


class ReplayTransport(httpx.BaseTransport):
    """Serves the routes' recorded replies in order and keeps every request for assertions."""

    def __init__(self, *routes: Route) -> None:
        self.routes = list(routes)
        self.requests: list[httpx.Request] = []

    def add(self, route: Route) -> None:
        self.routes.append(route)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        for route in self.routes:
            if not route.matches(request):
                continue
            if not route.replies:
                continue
            reply = (
                route.replies[0] if (route.repeat_last and len(route.replies) == 1) else route.replies.pop(0)
            )
            if isinstance(reply, Exception):
                raise reply
            if callable(reply) and not isinstance(reply, httpx.Response):
                return reply(request)
            response = reply
            return httpx.Response(
                response.status_code, headers=response.headers, content=response.content, request=request
            )
        raise AssertionError(f"unexpected request (no recorded reply left): {request.method} {request.url}")

    def urls(self) -> list[str]:
        return [str(request.url) for request in self.requests]


class FakeSleep:
    """Records every wait instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.now = 0.0

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


class MemorySink:
    """Keeps pages the way the database would: records and cursor together."""

    def __init__(self) -> None:
        self.pages: list[Page] = []

    def write(self, page: Page) -> None:
        self.pages.append(page)

    @property
    def records(self) -> list[Record]:
        return [record for page in self.pages for record in page.records]

    @property
    def cursor(self) -> Cursor | None:
        return self.pages[-1].cursor if self.pages else None


def run_source(
    source: Source,
    *,
    cursor: Cursor | None = None,
    max_pages: int = 100,
    sink: MemorySink | None = None,
    default_touchpoint: str | None = None,
) -> tuple[MemorySink, CollectResult]:
    """Drive the source with the real runner into memory."""
    sink = sink or MemorySink()
    result = collect(
        source, cursor=cursor, sink=sink, max_pages=max_pages, default_touchpoint=default_touchpoint
    )
    return sink, result
