"""What every page starts from: the signed-in user, the parsed filters and the API ``Scope`` they make."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from nlp.touchpoints import Taxonomy
from service.analytics import Interval
from service.api.deps import SessionDep
from service.feedback import Scope
from service.touchpoints import active_taxonomy
from service.web.auth import WebSession, WebSessionDep
from service.web.cache import AggregateCache
from service.web.filters import PageFilters
from service.web.templating import render

T = TypeVar("T")

# The dashboard tests the last two weeks against the six before (a spike needs a little time to show).
TREND_TEST: dict[str, Any] = {"interval": "week", "window": 2, "baseline": 6}


@dataclass(frozen=True)
class PageContext:
    """A page request: who asks, for which filters, and the scope and touchpoints those select."""

    web: WebSession
    filters: PageFilters
    scope: Scope
    taxonomy: Taxonomy
    touchpoints: set[str] | None
    now: datetime
    cache: AggregateCache

    def cached(self, session: Session, name: str, compute: Callable[[], T], *key: Hashable) -> T:
        """``compute()``, cached with these filters' scope and touchpoints until the data changes."""
        touchpoints = frozenset(self.touchpoints) if self.touchpoints is not None else None
        return self.cache.get(session, (name, self.scope, touchpoints, *key), compute)

    @property
    def interval(self) -> Interval:
        """Days for periods up to five weeks, weeks beyond."""
        since, until = self.filters.period(now=self.now)
        return "day" if until - since <= (datetime(2000, 2, 5) - datetime(2000, 1, 1)) else "week"

    def feedback_link(self, **extra: Any) -> str:
        """The feedback explorer showing the rows behind a figure (these filters plus ``extra``)."""
        pairs = self.filters.params()
        for key, value in extra.items():
            if value is None:
                continue
            pairs += (
                [(key, str(v)) for v in value] if isinstance(value, (list, tuple)) else [(key, str(value))]
            )
        return "/feedback" + ("?" + urlencode(pairs) if pairs else "")

    def touchpoint_name(self, touchpoint: str) -> str:
        found = self.taxonomy.get(touchpoint)
        return found.name if found else touchpoint


def page_context(request: Request, session: SessionDep, web: WebSessionDep) -> PageContext:
    """Parse the page's filters (422 page when invalid; 403 page for a location beyond the caller's)."""
    filters = PageFilters.from_query(request.query_params)
    # The period ends at the next quarter hour: feedback written now is in it, and views within the quarter
    # share their cached aggregates (new data still shows at once: it moves the cache's watermark).
    clock = datetime.now(UTC)
    now = clock.replace(minute=clock.minute - clock.minute % 15, second=0, microsecond=0) + timedelta(
        minutes=15
    )
    taxonomy = active_taxonomy(session)
    return PageContext(
        web=web,
        filters=filters,
        scope=filters.scope(caller=web.caller, now=now),
        taxonomy=taxonomy,
        touchpoints=filters.touchpoint_ids(taxonomy),
        now=now,
        cache=request.app.state.aggregate_cache,
    )


PageDep = Annotated[PageContext, Depends(page_context)]


def render_page(
    request: Request,
    template: str,
    *,
    ctx: PageContext,
    session: Session,
    page: str,
    filters: PageFilters | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render a page of the frame for ``ctx``: its user, filter bar (``filters`` or the context's) and taxonomy."""
    return render(
        request,
        template,
        web=ctx.web,
        page=page,
        session=session,
        filters=filters or ctx.filters,
        taxonomy=ctx.taxonomy,
        ctx=ctx,
        status_code=status_code,
        **context,
    )
