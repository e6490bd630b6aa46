"""Touchpoints and journey: the journey stages left to right with each touchpoint's volume, sentiment and
scores, and a touchpoint × location heatmap of negative share that marks the outlier stores.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from html import escape
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from nlp.touchpoints import STAGES, Touchpoint
from service.access import visible_location_rows
from service.analytics import TouchpointMetrics, touchpoint_metrics
from service.api.deps import SessionDep
from service.feedback import Scope
from service.location_matrix import touchpoint_location_matrix
from service.web.pages.common import PageContext, PageDep, render_page

router = APIRouter(include_in_schema=False)
MIN_SENTENCES = 5
"""Cells resting on fewer sentences are greyed: their share says little."""
# ColorBrewer "Oranges": one hue from light to dark, readable with every colour-vision deficiency.
SEQUENTIAL = ["#fff5eb", "#fdd0a2", "#fdae6b", "#fd8d3c", "#e6550d", "#a63603", "#7f2704"]
SPARSE_COLOUR = "#e4e7ec"
OTHERS = "all other stores"


def explorer_link(ctx: PageContext, **params: str | None) -> str:
    """The feedback explorer for the page's filters with ``params`` replacing the filter-bar keys they name."""
    if "touchpoint" in params:
        params.setdefault("stage", None)
    return "/feedback" + ctx.filters.query(**params)


def comparison_scope(ctx: PageContext) -> Scope:
    """The page's scope over every location: each store is compared with all the others (anonymised)."""
    return dataclasses.replace(ctx.scope, locations=())


def shown_rows(ctx: PageContext, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The comparison rows of the locations the page is about (a scoped caller's own, or those filtered)."""
    rows = visible_location_rows(rows, allowed=ctx.web.caller.locations)
    wanted = set(ctx.scope.locations)
    return [row for row in rows if not wanted or row["location"] in wanted]


def journey_touchpoints(ctx: PageContext) -> list[Touchpoint]:
    """The taxonomy's touchpoints the filters select, in journey order (by their first stage)."""
    chosen = [t for t in ctx.taxonomy.touchpoints if ctx.touchpoints is None or t.id in ctx.touchpoints]
    return sorted(
        chosen, key=lambda t: min((STAGES.index(s) for s in t.stages if s in STAGES), default=len(STAGES))
    )


@dataclass(frozen=True)
class TouchpointCard:
    """One touchpoint under a journey stage, with its figures (None: no feedback in scope)."""

    touchpoint: Touchpoint
    metrics: TouchpointMetrics | None
    link: str

    def rating_link(self, ctx: PageContext, scale: str) -> str:
        return explorer_link(ctx, touchpoint=self.touchpoint.id, rating_scale=scale)


def journey_stages(
    ctx: PageContext, metrics: dict[str, TouchpointMetrics]
) -> list[tuple[str, list[TouchpointCard]]]:
    """Each selected journey stage with the cards of its touchpoints (a touchpoint shows under each stage)."""
    touchpoints = journey_touchpoints(ctx)
    stages = [s for s in STAGES if not ctx.filters.stages or s in ctx.filters.stages]
    columns = []
    for stage in stages:
        cards = [
            TouchpointCard(t, metrics.get(t.id), explorer_link(ctx, touchpoint=t.id))
            for t in touchpoints
            if stage in t.stages
        ]
        if cards:
            columns.append((stage, cards))
    return columns


@dataclass(frozen=True)
class Cell:
    """One store at one touchpoint: its comparison row and the explorer link behind it."""

    touchpoint: str
    name: str
    row: dict[str, Any]
    link: str

    @property
    def sparse(self) -> bool:
        return int(self.row["total"]) < MIN_SENTENCES

    def describe(self, *, others: str = OTHERS) -> str:
        """The cell in words (tooltip, table and outlier list)."""
        r = self.row
        return (
            f"{r['share'] * 100:.0f} % negative ({r['negative']} of {r['total']} sentences) "
            f"vs {r['others_share'] * 100:.0f} % at {others}, p = {r['p_value']:.2g}"
        )


@dataclass(frozen=True)
class Matrix:
    """The heatmap's cells: locations (rows) by touchpoints (columns)."""

    touchpoints: list[Touchpoint]
    locations: list[str]
    cells: dict[tuple[str, str], Cell]

    @property
    def outliers(self) -> list[Cell]:
        found = [c for c in self.cells.values() if c.row["outlier"]]
        return sorted(found, key=lambda c: (c.row["p_value"], c.row["location"]))

    def cell(self, location: str, touchpoint: str) -> Cell | None:
        return self.cells.get((location, touchpoint))


def location_matrix(ctx: PageContext, comparisons: dict[str, list[dict[str, Any]]]) -> Matrix:
    """The cells the caller may see, locations ordered by how many sentences they hold."""
    touchpoints = [t for t in journey_touchpoints(ctx) if comparisons.get(t.id)]
    cells: dict[tuple[str, str], Cell] = {}
    volume: dict[str, int] = {}
    for touchpoint in touchpoints:
        for row in shown_rows(ctx, comparisons[touchpoint.id]):
            location = str(row["location"])
            link = explorer_link(ctx, touchpoint=touchpoint.id, location=location)
            cells[(location, touchpoint.id)] = Cell(touchpoint.id, touchpoint.name, row, link)
            volume[location] = volume.get(location, 0) + int(row["total"])
    locations = sorted(volume, key=lambda loc: (-volume[loc], loc))
    used = {tp for _, tp in cells}
    return Matrix([t for t in touchpoints if t.id in used], locations, cells)


def _tooltip(cell: Cell, location: str) -> str:
    flag = "<br><b>! Outlier</b>: above the other stores beyond chance" if cell.row["outlier"] else ""
    sparse = "<br>Few sentences: read with care" if cell.sparse else ""
    text = escape(f"{location} · {cell.name}").replace("{", "(").replace("}", ")")
    return f"<b>{text}</b><br>{escape(cell.describe())}{flag}{sparse}<br><i>Click to read them</i>"


def _heatmap_points(matrix: Matrix) -> dict[str, tuple[list[dict[str, Any]], list[str]]]:
    """The cells as ECharts points with their links, grouped: dense, sparse, and outliers (drawn last)."""
    groups: dict[str, tuple[list[dict[str, Any]], list[str]]] = {
        k: ([], []) for k in ("dense", "sparse", "outlier")
    }
    for y, location in enumerate(matrix.locations):
        for x, touchpoint in enumerate(matrix.touchpoints):
            cell = matrix.cell(location, touchpoint.id)
            if cell is None:
                continue
            share = round(cell.row["share"] * 100, 1)
            point: dict[str, Any] = {
                "value": [x, y, share],
                "label": {"show": True, "formatter": f"{share:.0f}"},
                "tooltip": {"formatter": _tooltip(cell, location)},
            }
            group = "outlier" if cell.row["outlier"] else ("sparse" if cell.sparse else "dense")
            if group == "outlier":
                point["label"].update(formatter=f"{share:.0f} !", fontWeight="bold", fontSize=13)
            groups[group][0].append(point)
            groups[group][1].append(cell.link)
    return groups


def heatmap_chart(matrix: Matrix) -> dict[str, Any]:
    """The touchpoint × location heatmap: share in each cell, sparse cells hatched, outliers outlined with "!"."""
    groups = _heatmap_points(matrix)
    border = {"borderColor": "#ffffff", "borderWidth": 1}
    hatch = {
        "symbol": "rect",
        "color": "rgba(60, 70, 90, 0.28)",
        "dashArrayX": [1, 0],
        "dashArrayY": [2, 5],
        "rotation": 0.785,
    }
    return {
        "aria": {"enabled": True},
        "tooltip": {"trigger": "item", "confine": True},
        "grid": {"left": 8, "right": 16, "top": 8, "bottom": 64, "containLabel": True},
        "xAxis": {
            "type": "category",
            "position": "top",
            "data": [t.name for t in matrix.touchpoints],
            "axisLabel": {"interval": 0, "rotate": 35, "fontSize": 11},
        },
        "yAxis": {
            "type": "category",
            "inverse": True,
            "data": matrix.locations,
            "axisLabel": {"interval": 0},
        },
        "visualMap": {
            "type": "continuous",
            "seriesIndex": [0, 2],
            "min": 0,
            "max": 100,
            "orient": "horizontal",
            "left": "center",
            "bottom": 0,
            "itemHeight": 220,
            "text": ["100 % negative", "0 %"],
            "inRange": {"color": SEQUENTIAL},
        },
        "series": [
            {
                "name": "Negative share",
                "type": "heatmap",
                "data": groups["dense"][0],
                "itemStyle": border,
                "label": {"show": True, "fontSize": 11},
            },
            {
                "name": f"Fewer than {MIN_SENTENCES} sentences",
                "type": "heatmap",
                "data": groups["sparse"][0],
                "itemStyle": {**border, "color": SPARSE_COLOUR, "decal": hatch},
                "label": {"show": True, "fontSize": 10, "color": "#5b6475"},
            },
            {
                "name": "Outliers",
                "type": "heatmap",
                "data": groups["outlier"][0],
                "itemStyle": {"borderColor": "#000000", "borderWidth": 3},
                "label": {"show": True},
            },
        ],
        "_links": [links for _, links in groups.values()],
    }


def heatmap_height(matrix: Matrix) -> int:
    """Pixels for the heatmap: a row per location plus the axis and the scale."""
    return 170 + 30 * max(len(matrix.locations), 1)


def location_comparisons(session: Session, ctx: PageContext) -> dict[str, list[dict[str, Any]]]:
    """Every touchpoint's comparison of all the stores (cached until the data changes)."""
    return ctx.cached(
        session,
        "location-matrix",
        lambda: touchpoint_location_matrix(session, scope=comparison_scope(ctx), touchpoints=ctx.touchpoints),
    )


@router.get("/journey", response_class=HTMLResponse)
def journey(request: Request, session: SessionDep, ctx: PageDep) -> HTMLResponse:
    """The journey page: stages, touchpoint figures, and the store heatmap with its outliers."""
    metrics = ctx.cached(session, "touchpoint-metrics", lambda: touchpoint_metrics(session, scope=ctx.scope))
    comparisons = location_comparisons(session, ctx)
    matrix = location_matrix(ctx, comparisons)
    return render_page(
        request,
        "pages/journey.html",
        ctx=ctx,
        session=session,
        page="journey",
        stages=journey_stages(ctx, metrics),
        matrix=matrix,
        heatmap=heatmap_chart(matrix),
        heatmap_height=heatmap_height(matrix),
        scoped=bool(ctx.web.caller.locations),
        min_sentences=MIN_SENTENCES,
        others=OTHERS,
        explorer_link=explorer_link,
        has_data=any(m.items for m in metrics.values()),
    )
