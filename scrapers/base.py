"""The base class of sources that talk HTTP: one polite client per source, built from its config."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar

import httpx
from pydantic import Field

from scrapers.contract import Source, SourceConfig
from scrapers.http import ErrorAction, HttpPolicy, PoliteClient


class HttpSourceConfig(SourceConfig):
    """Settings every HTTP source shares; ``base_url`` points at the real service unless overridden."""

    base_url: str = Field(
        default="", description="The service's API root; override for a proxy or a test server."
    )


class HttpSource(Source):
    """A source that fetches over HTTP with the shared politeness policy."""

    service_name: ClassVar[str] = "the service"
    default_base_url: ClassVar[str] = ""
    respect_robots: ClassVar[bool] = False
    """True for web pages and feeds; documented APIs are governed by their terms and rate limits instead."""

    def __init__(
        self,
        config: SourceConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.wall_clock = wall_clock
        """Seconds since the epoch: 'now' for backfill windows and file ages (injectable for tests)."""
        self.http = PoliteClient(
            policy=HttpPolicy(
                timeout_seconds=config.timeout_seconds,
                requests_per_minute=config.requests_per_minute,
                respect_robots=self.respect_robots,
            ),
            transport=transport,
            sleep=sleep,
            clock=clock,
            classify=self.classify,
            service_name=self.service_name,
        )

    @property
    def base_url(self) -> str:
        """The API root in force, without a trailing slash."""
        configured = getattr(self.config, "base_url", "") or self.default_base_url
        return configured.rstrip("/")

    def classify(self, response: httpx.Response) -> ErrorAction | None:
        """Refine the error table for this service (None keeps the default action for the status)."""
        return None

    def close(self) -> None:
        self.http.close()
