"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from service.db.migrate import current_revision, head_revision

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
def healthz() -> dict[str, str]:
    """Always ok while the process serves requests."""
    return {"status": "ok"}


@router.get("/readyz", summary="The database is reachable and migrated to head", response_model=None)
def readyz(request: Request) -> dict[str, Any] | JSONResponse:
    """Ready when the database answers and its schema is at the shipped head revision."""
    engine = request.app.state.engine
    head = head_revision()
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        current = current_revision(engine)
    except SQLAlchemyError as exc:
        return _not_ready(request, f"database unreachable: {type(exc).__name__}", {"database": "down"})
    checks = {"database": "up", "migration": current, "head": head}
    if current != head:
        return _not_ready(
            request, f"database schema at {current}, expected {head}: run `cxmine db upgrade`", checks
        )
    return {"status": "ready", **checks}


def _not_ready(request: Request, detail: str, checks: dict[str, Any]) -> JSONResponse:
    return JSONResponse(
        {
            "type": "urn:cxmine:problem:not-ready",
            "title": "Service Unavailable",
            "status": 503,
            "detail": detail,
            "instance": request.url.path,
            "checks": checks,
        },
        status_code=503,
        media_type="application/problem+json",
    )
