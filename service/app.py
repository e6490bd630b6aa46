"""The FastAPI application: routers, error format, middleware and process-wide resources."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service import __version__
from service.alerts import webhook_client
from service.api.middleware import BodySizeLimitMiddleware, RequestLogMiddleware
from service.api.problems import install_problem_handlers
from service.api.routes import (
    admin,
    alerts,
    analytics,
    drivers,
    feedback,
    health,
    score,
    sources,
    taxonomy,
    topic_names,
    topics,
    triage,
)
from service.config import Settings, get_settings
from service.db.engine import make_engine, make_session_factory
from service.db.migrate import is_at_head
from service.ingest.schemas import FeedbackItemIn
from service.metrics import install_metrics
from service.pipeline import ModelsUnavailableError, load_analyzer
from service.scheduler import Scheduler, pipeline_jobs
from service.touchpoints import TouchpointLabeler, active_taxonomy
from service.web import install_dashboard

logger = logging.getLogger("cxmine")

UPLOAD_PATHS = ("/v1/feedback/import",)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the database engine is opened in the lifespan, once per process."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.effective_database_url)
        app.state.engine = engine
        app.state.session_factory = make_session_factory(engine)
        migrated = is_at_head(engine)
        if not migrated:
            logger.warning("database schema is not at head; run `cxmine db upgrade` (/readyz reports 503)")
        try:
            app.state.analyzer = load_analyzer(settings)
        except ModelsUnavailableError as exc:
            app.state.analyzer = None
            logger.warning("scoring models not available; /v1/score answers 503", extra={"reason": str(exc)})
        app.state.labeler = None
        if app.state.analyzer is not None and migrated:
            with app.state.session_factory() as session:
                taxonomy = active_taxonomy(session)
            app.state.labeler = TouchpointLabeler(
                taxonomy=taxonomy, encoder=app.state.analyzer.encoder, sentiment=app.state.analyzer.sentiment
            )

        app.state.webhook_client = webhook_client()
        scheduler = None
        # With CXMINE_JOB_RUNNER=procrastinate the jobs run in `cxmine worker` processes instead.
        if migrated and settings.scheduler_enabled and settings.job_runner == "scheduler":
            scheduler = Scheduler(
                settings=settings,
                engine=engine,
                session_factory=app.state.session_factory,
                jobs=pipeline_jobs(
                    settings=settings,
                    session_factory=app.state.session_factory,
                    analyzer=app.state.analyzer,
                    webhook_client=app.state.webhook_client,
                    metrics=app.state.job_metrics,
                ),
                metrics=app.state.job_metrics,
            )
            scheduler.start()
        app.state.scheduler = scheduler
        logger.info("cxmine started", extra={"database": engine.url.render_as_string(hide_password=True)})
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.stop()
            app.state.webhook_client.close()
            engine.dispose()

    app = FastAPI(
        title="cxmine",
        version=__version__,
        summary="Self-hosted text mining for customer feedback.",
        description=(
            "Ingest reviews, survey comments and social mentions; read them back filtered by time, source, "
            "location and language. Authenticate with `Authorization: Bearer <API key>`. "
            "Every error is an RFC 9457 problem details body."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    # Keyword options for the HTTP calls webhook readers make (tests pass a replaying transport here).
    app.state.source_options = {}
    install_problem_handlers(app)
    app.include_router(health.router)
    app.include_router(feedback.router)
    app.include_router(admin.router)
    app.include_router(sources.router)
    app.include_router(score.router)
    app.include_router(taxonomy.router)
    app.include_router(analytics.router)
    app.include_router(drivers.router)
    app.include_router(topics.router)
    app.include_router(topic_names.router)
    app.include_router(triage.router)
    app.include_router(alerts.router)
    install_dashboard(app)

    def body_limit(path: str) -> int:
        return settings.max_upload_bytes if path in UPLOAD_PATHS else settings.max_json_body_bytes

    app.add_middleware(BodySizeLimitMiddleware, limit_for_path=body_limit)
    app.openapi = lambda: _openapi_with_item_schema(app)  # type: ignore[method-assign]
    app.add_middleware(RequestLogMiddleware)
    install_metrics(app, settings)  # outermost: every request is counted, refused ones too
    return app


def _openapi_with_item_schema(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, plus the item schema that batches validate item by item."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        item = FeedbackItemIn.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(item.pop("$defs", {}))
        components["FeedbackItemIn"] = item
        app.openapi_schema = schema
    return app.openapi_schema
