"""Pain points: the ranked list with trend test, share, emotions, places, triage, a weekly sparkline and
each theme's NPS impact (its key-driver figure, ``service.drivers``).

The page and its CSV/XLSX export are built from the same rows (``pain_point_table``), so a download
holds exactly the page's numbers, scoped like the page.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from service.access import public_topic_labels
from service.api.deps import SessionDep
from service.drivers import Driver, key_drivers
from service.painpoint_series import NegativeSeries, pain_point_negatives
from service.painpoints import Interval, PainPoint, PainPointReport, pain_point_report
from service.web.exports import export_format, export_response
from service.web.pages.common import PageContext, PageDep, render_page
from service.web.pages.drivers import rated_link

router = APIRouter(include_in_schema=False)

# The dashboard tests the last 2 weeks against the 6 weeks before (the API's default window is 1).
TREND_INTERVAL: Interval = "week"
TREND_WINDOW = 2
TREND_BASELINE = 6
PAGE_LIMIT = 50
TOP_BREAKDOWN = 3
EXPORT_COLUMNS = (
    "Topic id",
    "Theme",
    "Keywords",
    "Touchpoint id",
    "Touchpoint",
    "Trending",
    f"Negative, last {TREND_WINDOW} weeks",
    f"Expected, last {TREND_WINDOW} weeks",
    "Growth (x expected)",
    "p-value",
    "Significance",
    "Negative mentions",
    "Mentions",
    "Negative share (%)",
    "Top emotions",
    "Top locations",
    "Status",
    "Owner",
    "Negatives per week",
    "NPS points lost",
)


def significance_text(p_value: float) -> str:
    """A p-value as people read it: ``p < 0.001``, ``p = 0.004``, ``p = 0.27``."""
    if p_value < 0.001:
        return "p < 0.001"
    if p_value < 0.01:
        return f"p = {p_value:.3f}"
    return f"p = {p_value:.2f}"


def expected_value(expected: float) -> float:
    """The expected count as shown: two decimals below 1 (0.02, not 0.0), one above."""
    return round(expected, 2) if expected < 1 else round(expected, 1)


def growth_value(growth: float | None) -> float | None:
    """The growth factor as shown: one decimal below 10, whole above (153, not 153.0)."""
    if growth is None:
        return None
    return round(growth, 1) if growth < 10 else float(round(growth))


def explorer_link(ctx: PageContext, *, locations: tuple[str, ...] | None = None, **extra: Any) -> str:
    """The feedback explorer for these filters, with the locations replaced (not added) when given."""
    filters = ctx.filters if locations is None else dataclasses.replace(ctx.filters, locations=locations)
    pairs = filters.params()
    for key, value in extra.items():
        if value is not None:
            pairs += (
                [(key, str(v)) for v in value] if isinstance(value, (list, tuple)) else [(key, str(value))]
            )
    return "/feedback" + ("?" + urlencode(pairs) if pairs else "")


@dataclass(frozen=True)
class PainPointRow:
    """One pain point as the page and its export show it (numbers rounded as displayed)."""

    topic_id: int
    touchpoint: str
    touchpoint_name: str
    label: str
    keywords: list[str]
    trending: bool
    current: int
    expected: float
    growth: float | None
    p_value: float
    negative: int
    sentences: int
    share_pct: float | None
    emotions: dict[str, int]
    locations: dict[str, int]
    status: str
    owner: str | None
    weekly: list[int]
    nps_impact: float | None = None
    nps_responses: int | None = None

    @property
    def key(self) -> str:
        return f"{self.topic_id}:{self.touchpoint}"

    @property
    def significance(self) -> str:
        return significance_text(self.p_value)

    def export_cells(self) -> list[Any]:
        """The row's cells in ``EXPORT_COLUMNS`` order."""
        return [
            self.topic_id,
            self.label,
            ", ".join(self.keywords),
            self.touchpoint,
            self.touchpoint_name,
            "yes" if self.trending else "no",
            self.current,
            self.expected,
            self.growth,
            self.p_value,
            self.significance,
            self.negative,
            self.sentences,
            self.share_pct,
            self.emotions,
            self.locations,
            self.status,
            self.owner or "",
            self.weekly,
            self.nps_impact,
        ]


@dataclass(frozen=True)
class PainPointTable:
    """The rows of the page, the report they come from and the weeks of their sparklines."""

    report: PainPointReport
    rows: list[PainPointRow]
    weeks: list[datetime]
    trending_only: bool


def pain_point_row(
    point: PainPoint,
    *,
    ctx: PageContext,
    text: tuple[str, list[str]],
    weekly: list[int],
    nps: Driver | None = None,
) -> PainPointRow:
    """A pain point of the report as a row (label and keywords as the caller may see them)."""
    share = point.negative_share
    return PainPointRow(
        topic_id=point.topic_id,
        touchpoint=point.touchpoint,
        touchpoint_name=ctx.touchpoint_name(point.touchpoint),
        label=text[0],
        keywords=text[1][:6],
        trending=point.trending,
        current=point.current,
        expected=expected_value(point.expected),
        growth=growth_value(point.growth),
        p_value=float(f"{point.p_value:.3g}"),
        negative=point.negative,
        sentences=point.sentences,
        share_pct=round(share * 100, 1) if share is not None else None,
        emotions=dict(list(point.emotions.items())[:TOP_BREAKDOWN]),
        locations=dict(list(point.locations.items())[:TOP_BREAKDOWN]),
        status=point.status,
        owner=point.owner,
        weekly=weekly,
        nps_impact=round(nps.impact, 1) if nps is not None and nps.impact is not None else None,
        nps_responses=nps.responses_with if nps is not None else None,
    )


def weekly_negatives(
    session: Session, *, ctx: PageContext, report: PainPointReport, points: list[PainPoint]
) -> NegativeSeries:
    """The weekly negatives of ``points`` over the report's period, for their sparklines (cached)."""
    keys = [(p.topic_id, p.touchpoint) for p in points]
    return ctx.cached(
        session,
        "pain_point_series",
        lambda: pain_point_negatives(
            session,
            keys=keys,
            scope=ctx.scope,
            since=report.since,
            until=report.until,
            interval=TREND_INTERVAL,
        ),
        tuple(keys),
    )


def nps_impacts(session: Session, *, ctx: PageContext, topic_ids: set[int]) -> dict[int, Driver]:
    """Each theme's NPS key-driver figures in the page's scope (one query for all; absent: < 10 responses)."""
    if not topic_ids:
        return {}
    ids = tuple(sorted(topic_ids))
    report = ctx.cached(
        session,
        "pain_point_nps",
        lambda: key_drivers(session, scope=ctx.scope, metric="nps", by="theme", topic_ids=ids),
        ids,
    )
    return {d.topic_id: d for d in report.drivers if d.topic_id is not None}


def nps_link(ctx: PageContext, topic_id: int) -> str:
    """The explorer listing the theme's NPS responses in scope (all touchpoints, as the driver counts them)."""
    return rated_link(ctx, scale="nps", topic=topic_id)


def pain_point_table(session: Session, *, ctx: PageContext, trending_only: bool) -> PainPointTable:
    """The page's pain points (as ``GET /v1/pain-points?window=2&limit=50`` ranks them), ready to show."""
    report = ctx.cached(
        session,
        "pain_point_table",
        lambda: pain_point_report(
            session,
            scope=ctx.scope,
            touchpoints=ctx.touchpoints,
            interval=TREND_INTERVAL,
            window=TREND_WINDOW,
            baseline=TREND_BASELINE,
            limit=10_000 if trending_only else PAGE_LIMIT,
            quotes=0,
            now=ctx.now,
        ),
        trending_only,
    )
    points = [p for p in report.pain_points if p.trending or not trending_only][:PAGE_LIMIT]
    # The names as they are now (an admin may have renamed a theme since the report was cached).
    texts = public_topic_labels(
        session, topic_ids={p.topic_id for p in points}, allowed=ctx.web.caller.locations
    )
    series = weekly_negatives(session, ctx=ctx, report=report, points=points)
    nps = nps_impacts(session, ctx=ctx, topic_ids={p.topic_id for p in points})
    rows = [
        pain_point_row(
            p,
            ctx=ctx,
            text=texts.get(p.topic_id, (p.label, p.keywords)),
            weekly=series.of((p.topic_id, p.touchpoint)),
            nps=nps.get(p.topic_id),
        )
        for p in points
    ]
    return PainPointTable(report=report, rows=rows, weeks=series.starts, trending_only=trending_only)


TrendingParam = Annotated[str | None, Query(description="1: only the trending pain points.")]


def _trending(value: str | None) -> bool:
    return (value or "").lower() in {"1", "true", "yes", "on"}


@router.get("/pain-points", response_class=HTMLResponse)
def pain_points_page(
    request: Request, session: SessionDep, ctx: PageDep, trending: TrendingParam = None
) -> HTMLResponse:
    """The ranked pain points (also re-rendered for live updates)."""
    only = _trending(trending)
    table = pain_point_table(session, ctx=ctx, trending_only=only)
    filters = dataclasses.replace(ctx.filters, extra=(("trending", "1"),) if only else ())
    return render_page(
        request,
        "pages/painpoints.html",
        ctx=ctx,
        session=session,
        page="pain-points",
        filters=filters,
        table=table,
        page_query=ctx.filters.query(trending="1" if only else None),
        explorer_link=explorer_link,
        nps_link=nps_link,
        show_nps=any(r.nps_impact is not None for r in table.rows),
    )


@router.get("/pain-points/export")
def pain_points_export(
    session: SessionDep, ctx: PageDep, trending: TrendingParam = None, format: str = "csv"
) -> Response:
    """The page's rows as CSV or XLSX."""
    fmt = export_format(format)
    table = pain_point_table(session, ctx=ctx, trending_only=_trending(trending))
    return export_response(
        fmt=fmt,
        name="pain-points",
        columns=EXPORT_COLUMNS,
        rows=[row.export_cells() for row in table.rows],
    )
