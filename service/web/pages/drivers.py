"""Key drivers: the themes or touchpoints that pull NPS, CSAT, CES or stars down (``service.drivers``).

Each row is ``key_drivers``' figures for the page's scope: the rated responses that mention the theme (or
are about the touchpoint) against the rest, the difference with its 95% interval and the points it costs.
The touchpoint and stage filters narrow the touchpoints listed "by touchpoint"; themes are compared over
every rated response in scope, so their links leave those two filters out.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, cast

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup
from sqlalchemy.orm import Session

from service.access import public_topic_labels
from service.api.deps import SessionDep
from service.drivers import METRIC_NAMES, METRICS, MIN_RESPONSES, By, DriverReport, Metric, key_drivers
from service.overview import summary
from service.web.auth import PageError
from service.web.pages.common import PageContext, PageDep, render_page

router = APIRouter(include_in_schema=False)
METRIC_LABELS: dict[str, str] = {"nps": "NPS", "csat": "CSAT", "ces": "CES", "stars": "Stars"}
METRIC_PHRASES: dict[str, str] = {"nps": "NPS", "csat": "CSAT", "ces": "CES", "stars": "the star rating"}
BY_LABELS: dict[str, str] = {"theme": "By theme", "touchpoint": "By touchpoint"}
# NPS and CSAT are points from -100 / 0 to 100; CES (1-7) and stars (1-5) are means that move in hundredths.
DIGITS: dict[str, int] = {"nps": 1, "csat": 1, "ces": 2, "stars": 2}


@dataclass(frozen=True)
class DriverRow:
    """One theme or touchpoint as the page shows it, with the explorer link to its rated responses."""

    key: str
    name: str
    keywords: list[str]
    responses_with: int
    responses_without: int
    share_with: float
    score_with: float
    score_without: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    significant: bool
    impact: float | None
    link: str
    page_link: str | None


@dataclass(frozen=True)
class DriverTable:
    """The page: the metric and grouping chosen, each metric's rated responses, and the ranked drivers."""

    metric: Metric
    by: By
    report: DriverReport
    responses: dict[str, int]
    rows: list[DriverRow]
    all_link: str
    axis: float

    @property
    def digits(self) -> int:
        return DIGITS[self.metric]

    @property
    def metric_label(self) -> str:
        return METRIC_LABELS[self.metric]

    @property
    def metric_phrase(self) -> str:
        return METRIC_PHRASES[self.metric]


def rated_responses(session: Session, ctx: PageContext) -> dict[str, int]:
    """Rated responses of each metric in scope (the metric switch's counts; cached)."""
    totals = ctx.cached(session, "driver_rated", lambda: summary(session, scope=ctx.scope))
    return {name: getattr(totals, name).responses for name in METRIC_NAMES}


def choose_metric(requested: str | None, responses: dict[str, int]) -> Metric:
    """The metric asked for (422 page for an unknown one), else NPS or the first metric with responses."""
    if requested:
        if requested not in METRICS:
            raise PageError(422, f"Unknown metric {requested!r}; use one of {', '.join(METRIC_NAMES)}.")
        return cast(Metric, requested)
    return next((name for name in METRIC_NAMES if responses.get(name)), "nps")


def choose_by(requested: str | None) -> By:
    """``theme`` (the default) or ``touchpoint``; 422 page otherwise."""
    if requested in (None, "", "theme"):
        return "theme"
    if requested == "touchpoint":
        return "touchpoint"
    raise PageError(422, f"Drivers are by theme or by touchpoint, not {requested!r}.")


def rated_link(ctx: PageContext, *, scale: str, **extra: str | int) -> str:
    """The explorer listing rated responses of ``scale`` in scope (without the touchpoint and stage filters)."""
    wide = dataclasses.replace(ctx.filters, touchpoints=(), stages=())
    return dataclasses.replace(ctx, filters=wide).feedback_link(**extra, rating_scale=scale)


def driver_table(session: Session, *, ctx: PageContext, metric: Metric, by: By) -> DriverTable:
    """The drivers of ``metric`` in the page's scope, the largest drag first, ready to show."""
    responses = rated_responses(session, ctx)
    touchpoints = ctx.touchpoints if by == "touchpoint" else None
    least = MIN_RESPONSES  # read at each call, as GET /v1/drivers's default
    report = ctx.cached(
        session,
        "drivers",
        lambda: key_drivers(
            session, scope=ctx.scope, metric=metric, by=by, touchpoints=touchpoints, min_responses=least
        ),
        metric,
        by,
        least,
    )
    scale = report.metric.scale.value
    texts = (
        public_topic_labels(
            session,
            topic_ids={d.topic_id for d in report.drivers if d.topic_id is not None},
            allowed=ctx.web.caller.locations,
        )
        if by == "theme"
        else {}
    )
    rows = []
    for d in report.drivers:
        if d.topic_id is not None:
            name, keywords = texts.get(d.topic_id, (d.label, []))
            link = rated_link(ctx, scale=scale, topic=d.topic_id)
            page_link: str | None = f"/themes/{d.topic_id}{ctx.filters.query()}"
        else:
            name, keywords = d.label, []
            link = rated_link(ctx, scale=scale, touchpoint=d.id)
            page_link = None
        rows.append(
            DriverRow(
                key=d.id,
                name=name or f"Theme {d.id}",
                keywords=keywords[:4],
                responses_with=d.responses_with,
                responses_without=d.responses_without,
                share_with=d.share_with,
                score_with=d.score_with,
                score_without=d.score_without,
                difference=d.difference,
                ci_low=d.ci_low,
                ci_high=d.ci_high,
                p_value=d.p_value,
                significant=d.significant,
                impact=d.impact,
                link=link,
                page_link=page_link,
            )
        )
    bounds = [abs(v) for r in rows for v in (r.ci_low, r.ci_high, r.difference) if v is not None]
    return DriverTable(
        metric=metric,
        by=by,
        report=report,
        responses=responses,
        rows=rows,
        all_link=rated_link(ctx, scale=scale),
        axis=max(bounds, default=1.0) or 1.0,
    )


def interval_bar(row: DriverRow, *, axis: float, digits: int, width: int = 140, height: int = 22) -> Markup:
    """The difference and its 95% interval on a shared axis (-axis to +axis) around a zero line, as SVG."""
    if row.difference is None:
        return Markup("")

    def x(value: float) -> float:
        return round(width / 2 + (value / axis) * (width / 2 - 4), 1)

    low = row.ci_low if row.ci_low is not None else row.difference
    high = row.ci_high if row.ci_high is not None else row.difference
    # Okabe-Ito: vermillion for a significant drag, blue for a significant lift, grey when the interval holds 0.
    colour = "#999999" if not row.significant else ("#D55E00" if (row.impact or 0) > 0 else "#0072B2")
    middle = height / 2
    title = f"Difference {row.difference:+.{digits}f}" + (
        f", 95% interval {low:+.{digits}f} to {high:+.{digits}f}"
        if row.ci_low is not None
        else " (too few responses for an interval)"
    )
    # Only numbers and escaped text go into the markup.
    return Markup(  # noqa: S704
        f'<svg class="ci-bar" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{Markup.escape(title)}"><title>{Markup.escape(title)}</title>'
        f'<line x1="{x(0)}" y1="1" x2="{x(0)}" y2="{height - 1}" stroke="#5b6475" stroke-width="1" '
        f'stroke-dasharray="2 2"/>'
        f'<line x1="{x(low)}" y1="{middle}" x2="{x(high)}" y2="{middle}" stroke="{colour}" stroke-width="3" '
        f'stroke-linecap="round"/>'
        f'<circle cx="{x(row.difference)}" cy="{middle}" r="4" fill="{colour}" stroke="#fff" stroke-width="1"/>'
        f"</svg>"
    )


MetricParam = Annotated[str | None, Query(description="nps, csat, ces or stars.")]
ByParam = Annotated[str | None, Query(description="theme (default) or touchpoint.")]


@router.get("/drivers", response_class=HTMLResponse)
def drivers_page(
    request: Request, session: SessionDep, ctx: PageDep, metric: MetricParam = None, by: ByParam = None
) -> HTMLResponse:
    """The themes (or touchpoints) that pull a rating metric down most, with their 95% intervals."""
    chosen_by = choose_by(by)
    chosen = choose_metric(metric, rated_responses(session, ctx))
    table = driver_table(session, ctx=ctx, metric=chosen, by=chosen_by)
    kept = ((("metric", chosen),) if metric else ()) + ((("by", chosen_by),) if by else ())
    return render_page(
        request,
        "pages/drivers.html",
        ctx=ctx,
        session=session,
        page="drivers",
        filters=dataclasses.replace(ctx.filters, extra=kept),
        table=table,
        metrics=METRIC_NAMES,
        metric_labels=METRIC_LABELS,
        by_labels=BY_LABELS,
        interval_bar=interval_bar,
    )
