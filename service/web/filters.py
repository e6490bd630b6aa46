"""The dashboard's filter bar: time range, touchpoint, journey stage, location, source and language.

Filters live in the URL, so a view can be bookmarked and shared; they become the same ``Scope`` the API
uses, restricted to the caller's locations.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from threading import Lock
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session

from nlp.touchpoints import STAGES, Taxonomy
from service.access import LocationForbiddenError, restrict_scope
from service.api.deps import Caller
from service.db.models import FeedbackItem, Source
from service.feedback import Scope
from service.web.auth import PageError

RANGES: dict[str, tuple[str, timedelta]] = {
    "7d": ("Last 7 days", timedelta(days=7)),
    "4w": ("Last 4 weeks", timedelta(weeks=4)),
    "8w": ("Last 8 weeks", timedelta(weeks=8)),
    "13w": ("Last quarter", timedelta(weeks=13)),
    "52w": ("Last 12 months", timedelta(weeks=52)),
}
DEFAULT_RANGE = "8w"
MULTI_KEYS = ("touchpoint", "stage", "location", "source", "language")


@dataclass(frozen=True)
class PageFilters:
    """What a page shows: a period (a named range or custom dates) and the narrowing selections."""

    range: str = DEFAULT_RANGE
    since: date | None = None
    until: date | None = None
    touchpoints: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()
    locations: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    extra: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    @classmethod
    def from_query(cls, params: Any) -> PageFilters:
        """Parse a request's query parameters (a Starlette ``QueryParams``); 422 page on nonsense."""
        chosen = params.get("range") or DEFAULT_RANGE
        since, until = _date(params, "since"), _date(params, "until")
        if since or until:
            chosen = "custom"
        elif chosen not in RANGES:
            raise PageError(
                422, f"Unknown time range {chosen!r}; use one of {', '.join(RANGES)} or since/until dates."
            )
        if since and until and since > until:
            raise PageError(422, "The start date is after the end date.")
        values = {key: tuple(v for v in params.getlist(key) if v) for key in MULTI_KEYS}
        unknown_stages = [s for s in values["stage"] if s not in STAGES]
        if unknown_stages:
            raise PageError(
                422, f"Unknown journey stage {unknown_stages[0]!r}; stages are {', '.join(STAGES)}."
            )
        return cls(
            range=chosen,
            since=since,
            until=until,
            touchpoints=values["touchpoint"],
            stages=values["stage"],
            locations=values["location"],
            sources=values["source"],
            languages=values["language"],
        )

    def period(self, *, now: datetime | None = None) -> tuple[datetime, datetime]:
        """The [since, until) the filters select, in UTC."""
        now = now or datetime.now(UTC)
        if self.range == "custom":
            until = datetime.combine(self.until, day_time(), UTC) + timedelta(days=1) if self.until else now
            since = (
                datetime.combine(self.since, day_time(), UTC)
                if self.since
                else until - RANGES[DEFAULT_RANGE][1]
            )
            return since, until
        return now - RANGES[self.range][1], now

    @property
    def range_label(self) -> str:
        if self.range == "custom":
            return f"{self.since or '…'} to {self.until or 'now'}"
        return RANGES[self.range][0]

    def scope(self, *, caller: Caller, now: datetime | None = None) -> Scope:
        """The API's ``Scope`` for these filters, limited to the caller's locations (403 page beyond them)."""
        since, until = self.period(now=now)
        scope = Scope(
            since=since, until=until, locations=self.locations, sources=self.sources, languages=self.languages
        )
        try:
            return restrict_scope(scope, allowed=caller.locations)
        except LocationForbiddenError as exc:
            raise PageError(403, str(exc)) from exc

    def touchpoint_ids(self, taxonomy: Taxonomy) -> set[str] | None:
        """The touchpoints selected by touchpoint and stage (None: all)."""
        if not self.touchpoints and not self.stages:
            return None
        known = {t.id for t in taxonomy.touchpoints}
        unknown = [t for t in self.touchpoints if t not in known]
        if unknown:
            raise PageError(422, f"The taxonomy in force has no touchpoint {unknown[0]!r}.")
        wanted = set(self.touchpoints) or known
        if self.stages:
            wanted &= {t.id for t in taxonomy.touchpoints if set(t.stages) & set(self.stages)}
        return wanted

    def params(self) -> list[tuple[str, str]]:
        """The query parameters that reproduce these filters."""
        pairs: list[tuple[str, str]] = []
        if self.range == "custom":
            pairs += [(k, v.isoformat()) for k, v in (("since", self.since), ("until", self.until)) if v]
        elif self.range != DEFAULT_RANGE:
            pairs.append(("range", self.range))
        for key, values in zip(
            MULTI_KEYS,
            (self.touchpoints, self.stages, self.locations, self.sources, self.languages),
            strict=True,
        ):
            pairs += [(key, v) for v in values]
        return pairs

    def query(self, **overrides: str | Iterable[str] | None) -> str:
        """``?a=b&...`` for these filters with some keys replaced (None drops a key)."""
        pairs = [(k, v) for k, v in self.params() if k not in overrides]
        for key, value in overrides.items():
            if value is None:
                continue
            pairs += [(key, value)] if isinstance(value, str) else [(key, v) for v in value]
        return "?" + urlencode(pairs) if pairs else ""


def _date(params: Any, name: str) -> date | None:
    raw = params.get(name)
    if not raw:
        return None
    try:
        return date.fromisoformat(raw[:10])
    except ValueError as exc:
        raise PageError(422, f"{name} must be a date like 2026-11-01, not {raw!r}.") from exc


@dataclass(frozen=True)
class FilterOptions:
    """The values the filter bar offers."""

    locations: list[str]
    sources: list[str]
    languages: list[str]


class _OptionCache:
    """Distinct locations, sources and languages, recomputed at most once a minute (they change rarely)."""

    def __init__(self, ttl_seconds: float = 60.0) -> None:
        self._ttl = ttl_seconds
        self._lock = Lock()
        self._cached: dict[str, tuple[float, FilterOptions]] = {}

    def get(self, session: Session) -> FilterOptions:
        bind = str(session.get_bind().engine.url)
        with self._lock:
            hit = self._cached.get(bind)
            if hit and time.monotonic() - hit[0] < self._ttl:
                return hit[1]
        options = FilterOptions(
            locations=_distinct(session, FeedbackItem.location),
            sources=sorted(n for n in session.scalars(select(Source.name)) if n),
            languages=_distinct(session, FeedbackItem.language),
        )
        with self._lock:
            self._cached[bind] = (time.monotonic(), options)
        return options

    def clear(self) -> None:
        with self._lock:
            self._cached.clear()


def _distinct(session: Session, column: Any) -> list[str]:
    return sorted(v for v in session.scalars(select(column).where(column.is_not(None)).distinct()) if v)


option_cache = _OptionCache()


def filter_options(session: Session, *, caller: Caller) -> FilterOptions:
    """The filter bar's choices; a location-scoped caller is offered only their own locations."""
    options = option_cache.get(session)
    if caller.locations:
        allowed = set(caller.locations)
        return replace(options, locations=[loc for loc in options.locations if loc in allowed])
    return options
