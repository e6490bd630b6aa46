"""The dashboard: server-rendered pages (Jinja2 + HTMX + ECharts) on the same app and service functions as the API."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from service.web import events, signin
from service.web.auth import PageError, SignInRequiredError
from service.web.cache import AggregateCache
from service.web.pages import (
    alerts,
    drivers,
    explorer,
    journey,
    locations,
    overview,
    painpoints,
    sources,
    theme,
)
from service.web.templating import render

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE_ROUTERS = (overview, painpoints, drivers, theme, journey, locations, explorer, alerts, sources)


def install_dashboard(app: FastAPI) -> None:
    """Serve the dashboard under ``/`` with its static files under ``/static``."""
    app.state.aggregate_cache = AggregateCache(
        watermark_max_age=app.state.settings.dashboard_events_poll_seconds
    )
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(signin.router)
    app.include_router(events.router)
    for module in PAGE_ROUTERS:
        app.include_router(module.router)

    async def on_signin_required(request: Request, exc: Exception) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        location = f"/signin?next={quote(target, safe='')}"
        if request.headers.get("HX-Request"):
            return Response(status_code=401, headers={"HX-Redirect": location})
        return RedirectResponse(location, status_code=303)

    async def on_page_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageError)
        web = getattr(request.state, "web_session", None)
        template = "partials/error.html" if request.headers.get("HX-Request") else "error.html"
        return render(
            request, template, web=web, status=exc.status, message=exc.message, status_code=exc.status
        )

    app.add_exception_handler(SignInRequiredError, on_signin_required)
    app.add_exception_handler(PageError, on_page_error)
