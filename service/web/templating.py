"""Jinja2 rendering for the dashboard: the page frame, number formats and the filter bar's context."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from sqlalchemy.orm import Session

from nlp.touchpoints import STAGES
from service.touchpoints import active_taxonomy
from service.web.auth import CSRF_FIELD, CSRF_HEADER, WebSession
from service.web.filters import RANGES, PageFilters, filter_options

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
RTL_LANGUAGES = frozenset({"ar", "fa", "he", "ur", "ps", "ckb", "yi", "dv"})
# Okabe-Ito colours: distinguishable with every common colour-vision deficiency.
SENTIMENT_COLOURS = {"negative": "#D55E00", "mixed": "#CC79A7", "neutral": "#999999", "positive": "#0072B2"}


@dataclass(frozen=True)
class NavItem:
    """One entry of the main navigation."""

    page: str
    path: str
    label: str
    admin_only: bool = False


NAV = (
    NavItem("overview", "/", "Overview"),
    NavItem("pain-points", "/pain-points", "Pain points"),
    NavItem("drivers", "/drivers", "Drivers"),
    NavItem("journey", "/journey", "Touchpoints & journey"),
    NavItem("locations", "/locations", "Locations"),
    NavItem("feedback", "/feedback", "Feedback"),
    NavItem("alerts", "/alerts", "Alerts", admin_only=True),
    NavItem("sources", "/sources", "Sources", admin_only=True),
)


def fmt_pct(value: float | None, digits: int = 0) -> str:
    """A share (0-1) as a percentage; a dash when there is nothing to divide."""
    return "–" if value is None else f"{value * 100:.{digits}f} %"


def fmt_num(value: float | int | None, digits: int = 0) -> str:
    """A count or value with thousands separators; a dash for None."""
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def fmt_signed(value: float | None, digits: int = 2) -> str:
    """A score from -1 to 1 with its sign; a dash for None."""
    return "–" if value is None else f"{value:+.{digits}f}"


def fmt_dt(value: datetime | None, with_time: bool = True) -> str:
    """A timestamp as people read it: 3 Dec 2026 14:05 (UTC)."""
    if value is None:
        return "–"
    return value.strftime("%-d %b %Y %H:%M" if with_time else "%-d %b %Y")


def text_dir(language: str | None) -> str:
    """The text direction of a quote in ``language`` (auto when unknown, so the browser decides)."""
    return "rtl" if language in RTL_LANGUAGES else "auto"


def chart_json(option: dict[str, Any]) -> Markup:
    """An ECharts option as an HTML-attribute-safe JSON string (rendered by static/app.js)."""
    return escape(json.dumps(option, ensure_ascii=False, default=str))


def sparkline(values: list[int | float], *, width: int = 96, height: int = 24, label: str = "") -> Markup:
    """A tiny inline SVG line of ``values`` (no script needed), with the last point marked."""
    if not values:
        return Markup("")
    top = max(*values, 1)
    step = width / max(len(values) - 1, 1)
    points = [
        (round(i * step, 1), round(height - 2 - (v / top) * (height - 4), 1)) for i, v in enumerate(values)
    ]
    path = " ".join(f"{x},{y}" for x, y in points)
    last_x, last_y = points[-1]
    title = label or ", ".join(str(v) for v in values)
    # Only numbers and escaped text go into the markup.
    return Markup(  # noqa: S704
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{Markup.escape(title)}"><title>{Markup.escape(title)}</title>'
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{path}"/>'
        f'<circle cx="{last_x}" cy="{last_y}" r="2.5" fill="currentColor"/></svg>'
    )


templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
templates.env.filters.update(
    pct=fmt_pct, num=fmt_num, signed=fmt_signed, dt=fmt_dt, textdir=text_dir, chartjson=chart_json
)
templates.env.globals.update(
    sparkline=sparkline,
    SENTIMENT_COLOURS=SENTIMENT_COLOURS,
    RANGES=RANGES,
    STAGES=STAGES,
    CSRF_FIELD=CSRF_FIELD,
    CSRF_HEADER=CSRF_HEADER,
)


def render(
    request: Request,
    template: str,
    *,
    web: WebSession | None,
    page: str = "",
    session: Session | None = None,
    filters: PageFilters | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render a page (or an HTMX fragment) with the frame's context: user, navigation, filter choices."""
    frame: dict[str, Any] = {"web": web, "page": page, "filters": filters}
    if web is not None:
        frame["nav"] = [n for n in NAV if web.is_admin or not n.admin_only]
    if filters is not None and session is not None and web is not None:
        frame["options"] = filter_options(session, caller=web.caller)
        frame["taxonomy"] = context.pop("taxonomy", None) or active_taxonomy(session)
    return templates.TemplateResponse(request, template, {**frame, **context}, status_code=status_code)
