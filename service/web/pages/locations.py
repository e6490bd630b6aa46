"""Locations: one store against the others at every touchpoint (the API's outlier test), and a ranking of
the stores by negative share. A location-scoped user picks among their own stores and sees the rest only
as "all other stores".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from service.analytics import TouchpointMetrics, touchpoint_metrics
from service.api.deps import SessionDep
from service.location_matrix import location_negative_shares
from service.overview import summary
from service.web.auth import PageError
from service.web.filters import filter_options
from service.web.pages.common import PageContext, PageDep, render_page
from service.web.pages.journey import (
    OTHERS,
    comparison_scope,
    explorer_link,
    journey_touchpoints,
    location_comparisons,
    shown_rows,
)
from service.web.templating import SENTIMENT_COLOURS

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class TouchpointRow:
    """The chosen store at one touchpoint: its comparison with the other stores and its own figures."""

    touchpoint: str
    name: str
    comparison: dict[str, Any] | None
    metrics: TouchpointMetrics | None
    link: str


def choose_store(
    ctx: PageContext, requested: str | None, ranked: list[str], known: list[str]
) -> tuple[str | None, list[str]]:
    """The store to show and the stores to offer: 403 for a store outside a scoped caller's, 404 for none."""
    allowed = ctx.web.caller.locations
    if requested and allowed and requested not in allowed:
        raise PageError(403, f"This key may only see the locations {', '.join(allowed)}; not {requested!r}.")
    if requested and not allowed and requested not in known:
        raise PageError(404, f"No feedback names the location {requested!r}.")
    choices = list(ctx.scope.locations) or ranked + sorted(set(known) - set(ranked))
    if requested in choices:
        return requested, choices
    return (choices[0] if choices else None), choices


def store_rows(
    ctx: PageContext,
    store: str,
    comparisons: dict[str, list[dict[str, Any]]],
    metrics: dict[str, TouchpointMetrics],
) -> list[TouchpointRow]:
    """Each touchpoint the store has feedback about, most negative (shrunk share) first."""
    rows = []
    for touchpoint in journey_touchpoints(ctx):
        found = next((r for r in comparisons.get(touchpoint.id, []) if r["location"] == store), None)
        if found is None and touchpoint.id not in metrics:
            continue
        link = explorer_link(ctx, touchpoint=touchpoint.id, location=store)
        rows.append(TouchpointRow(touchpoint.id, touchpoint.name, found, metrics.get(touchpoint.id), link))
    return sorted(rows, key=lambda r: (-(r.comparison["shrunk_share"] if r.comparison else -1.0), r.name))


def comparison_chart(store: str, rows: list[TouchpointRow]) -> dict[str, Any]:
    """Horizontal bars: the store's negative share at each touchpoint next to all the other stores'."""
    compared = [r for r in rows if r.comparison][::-1]
    names = [r.name + (" !" if r.comparison and r.comparison["outlier"] else "") for r in compared]

    def bars(key: str) -> list[int]:
        return [round(r.comparison[key] * 100) if r.comparison else 0 for r in compared]

    return {
        "aria": {"enabled": True, "decal": {"show": True}},
        "tooltip": {"trigger": "axis", "axisPointer": {"type": "shadow"}, "valueFormatter": "{value} %"},
        "legend": {"top": 0},
        "grid": {"left": 8, "right": 48, "top": 32, "bottom": 8, "containLabel": True},
        "xAxis": {"type": "value", "max": 100, "axisLabel": {"formatter": "{value} %"}},
        "yAxis": {"type": "category", "data": names, "axisLabel": {"width": 150, "overflow": "truncate"}},
        "series": [
            {
                "name": OTHERS.capitalize(),
                "type": "bar",
                "itemStyle": {"color": SENTIMENT_COLOURS["neutral"]},
                "data": bars("others_share"),
            },
            {
                "name": store,
                "type": "bar",
                "itemStyle": {"color": SENTIMENT_COLOURS["negative"]},
                "data": bars("share"),
                "label": {"show": True, "position": "right", "formatter": "{c} %"},
            },
        ],
        "_links": [[], [r.link for r in compared]],
    }


def store_options(
    session: Session, ctx: PageContext, ranking: list[dict[str, Any]]
) -> tuple[list[str], list[str]]:
    """(stores ranked by sentences, every location the caller may pick)."""
    ranked = [r["location"] for r in sorted(ranking, key=lambda r: (-r["total"], r["location"]))]
    known = filter_options(session, caller=ctx.web.caller).locations
    allowed = set(ctx.web.caller.locations)
    return [loc for loc in ranked if not allowed or loc in allowed], known


@router.get("/locations", response_class=HTMLResponse)
def locations(
    request: Request,
    session: SessionDep,
    ctx: PageDep,
    store: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    """One store against all the others, touchpoint by touchpoint, and the stores ranked by negative share."""
    everywhere = comparison_scope(ctx)
    ranking = ctx.cached(
        session,
        "location-shares",
        lambda: location_negative_shares(session, scope=everywhere, touchpoints=ctx.touchpoints),
    )
    ranked, known = store_options(session, ctx, ranking)
    chosen, choices = choose_store(ctx, store or None, ranked, known)
    context: dict[str, Any] = {"store": chosen, "choices": choices, "ranking": shown_rows(ctx, ranking)}
    if chosen is not None:
        store_scope = dataclasses.replace(ctx.scope, locations=(chosen,))
        metrics = ctx.cached(
            session,
            "store-touchpoint-metrics",
            lambda: touchpoint_metrics(session, scope=store_scope),
            chosen,
        )
        rows = store_rows(ctx, chosen, location_comparisons(session, ctx), metrics)
        context.update(
            rows=rows,
            totals=ctx.cached(
                session,
                "store-summary",
                lambda: summary(session, scope=store_scope, touchpoints=ctx.touchpoints),
                chosen,
            ),
            overall=next((r for r in ranking if r["location"] == chosen), None),
            chart=comparison_chart(chosen, rows),
            chart_height=90 + 34 * max(len([r for r in rows if r.comparison]), 1),
            outliers=[r for r in rows if r.comparison and r.comparison["outlier"]],
        )
    filters = dataclasses.replace(ctx.filters, extra=(("store", chosen),) if chosen else ())
    return render_page(
        request,
        "pages/locations.html",
        ctx=ctx,
        session=session,
        page="locations",
        filters=filters,
        scoped=bool(ctx.web.caller.locations),
        others=OTHERS,
        explorer_link=explorer_link,
        **context,
    )
