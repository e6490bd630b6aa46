"""Overview: volume, sentiment mix, NPS / CSAT / CES over time, the top pain points, emotions, source health."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.access import public_topic_labels
from service.api.deps import SessionDep
from service.collectors import health_of, is_collector, is_webhook
from service.db.models import Source
from service.overview import SENTIMENTS, Bucket, emotion_mix, summary, timeline
from service.painpoints import PainPointReport, pain_point_report
from service.spikes import LocationSpike, location_spikes
from service.web.pages.common import TREND_TEST, PageContext, PageDep, render_page
from service.web.templating import SENTIMENT_COLOURS

router = APIRouter(include_in_schema=False)
TOP_PAIN_POINTS = 6


def volume_chart(buckets: list[Bucket], ctx: PageContext) -> dict[str, Any]:
    """Stacked bars of items per bucket by sentiment; a click opens those items."""
    labels = [b.start.strftime("%-d %b") for b in buckets]
    links = [
        [
            ctx.feedback_link(sentiment=label, since=b.start.date().isoformat(), until=_bucket_end(b, ctx))
            for b in buckets
        ]
        for label in SENTIMENTS
    ]
    return {
        "aria": {"enabled": True, "decal": {"show": True}},
        "tooltip": {"trigger": "axis"},
        "legend": {"top": 0},
        "grid": {"left": 40, "right": 12, "top": 36, "bottom": 28},
        "xAxis": {"type": "category", "data": labels},
        "yAxis": {"type": "value", "name": "items"},
        "series": [
            {
                "name": label,
                "type": "bar",
                "stack": "sentiment",
                "itemStyle": {"color": SENTIMENT_COLOURS[label]},
                "data": [b.sentiments.get(label, 0) for b in buckets],
            }
            for label in SENTIMENTS
        ],
        "_links": links,
    }


def _bucket_end(bucket: Bucket, ctx: PageContext) -> str:
    days = 1 if ctx.interval == "day" else 7
    return (bucket.start + timedelta(days=days - 1)).date().isoformat()


def ratings_chart(buckets: list[Bucket]) -> dict[str, Any]:
    """NPS and CSAT (left axis) and CES (right axis) per bucket; the tooltip names each one's responses."""
    labels = [b.start.strftime("%-d %b") for b in buckets]

    def series(name: str, values: list[Any], colour: str, axis: int, symbol: str) -> dict[str, Any]:
        return {
            "name": name,
            "type": "line",
            "yAxisIndex": axis,
            "connectNulls": True,
            "symbol": symbol,
            "symbolSize": 8,
            "itemStyle": {"color": colour},
            "data": values,
        }

    def point(metric: Any) -> dict[str, Any] | None:
        if metric.value is None:
            return None
        return {"value": round(metric.value, 1), "responses": metric.responses}

    return {
        "aria": {"enabled": True},
        "tooltip": {"trigger": "axis"},
        "legend": {"top": 0},
        "grid": {"left": 44, "right": 40, "top": 36, "bottom": 28},
        "xAxis": {"type": "category", "data": labels},
        "yAxis": [
            {"type": "value", "name": "NPS / CSAT %", "min": -100, "max": 100},
            {"type": "value", "name": "CES", "min": 1, "max": 7},
        ],
        "series": [
            series("NPS", [point(b.nps) for b in buckets], "#0072B2", 0, "circle"),
            series("CSAT %", [point(b.csat) for b in buckets], "#009E73", 0, "triangle"),
            series("CES", [point(b.ces) for b in buckets], "#E69F00", 1, "rect"),
        ],
    }


def emotion_chart(emotions: dict[str, int], ctx: PageContext) -> dict[str, Any]:
    """Horizontal bars of items per CX emotion; a click opens those items."""
    shown = [(k, v) for k, v in emotions.items() if k != "neutral"][:8][::-1]
    return {
        "aria": {"enabled": True},
        "tooltip": {"trigger": "item"},
        "grid": {"left": 100, "right": 24, "top": 8, "bottom": 24},
        "xAxis": {"type": "value"},
        "yAxis": {"type": "category", "data": [k for k, _ in shown]},
        "series": [{"type": "bar", "itemStyle": {"color": "#56B4E9"}, "data": [v for _, v in shown]}],
        "_links": [[ctx.feedback_link(emotion=k) for k, _ in shown]],
    }


def trending_now(session: Session, ctx: PageContext) -> tuple[PainPointReport, list[LocationSpike]]:
    """The top pain points across the chain and the touchpoints trending at a store (cached)."""
    report = ctx.cached(
        session,
        "pain_points",
        lambda: pain_point_report(
            session,
            scope=ctx.scope,
            touchpoints=ctx.touchpoints,
            limit=TOP_PAIN_POINTS,
            quotes=0,
            now=ctx.now,
            **TREND_TEST,
        ),
        TOP_PAIN_POINTS,
    )
    spikes = ctx.cached(
        session,
        "spikes",
        lambda: location_spikes(
            session, scope=ctx.scope, touchpoints=ctx.touchpoints, now=ctx.now, **TREND_TEST
        ),
    )
    return report, spikes


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, session: SessionDep, ctx: PageDep) -> HTMLResponse:
    """The overview page (also re-rendered for live updates)."""
    totals = ctx.cached(
        session, "summary", lambda: summary(session, scope=ctx.scope, touchpoints=ctx.touchpoints)
    )
    buckets = ctx.cached(
        session,
        "timeline",
        lambda: timeline(session, scope=ctx.scope, interval=ctx.interval, touchpoints=ctx.touchpoints),
        ctx.interval,
    )
    emotions = ctx.cached(
        session, "emotions", lambda: emotion_mix(session, scope=ctx.scope, touchpoints=ctx.touchpoints)
    )
    report, spikes = trending_now(session, ctx)
    labels = public_topic_labels(
        session,
        topic_ids=[t for s in spikes for t, _ in s.topics[:3]] + [p.topic_id for p in report.pain_points],
        allowed=ctx.web.caller.locations,
    )
    pain_points = [
        replace(p, label=labels[p.topic_id][0], keywords=labels[p.topic_id][1]) if p.topic_id in labels else p
        for p in report.pain_points
    ]
    sources = [
        (source, health_of(source, now=ctx.now))
        for source in session.scalars(select(Source).order_by(Source.name))
        if is_collector(source) or is_webhook(source)
    ]
    return render_page(
        request,
        "pages/overview.html",
        ctx=ctx,
        session=session,
        page="overview",
        totals=totals,
        pain_points=pain_points,
        spikes=spikes,
        labels=labels,
        trend_test=TREND_TEST,
        trend_window=timedelta(weeks=TREND_TEST["window"]),
        sources=sources,
        volume=volume_chart(buckets, ctx),
        ratings=ratings_chart(buckets),
        emotions=emotion_chart(emotions, ctx),
        has_data=totals.items > 0,
    )
