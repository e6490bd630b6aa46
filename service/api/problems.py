"""RFC 9457 problem details: the one error format of every 4xx and 5xx response."""

from __future__ import annotations

import logging
from datetime import datetime
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import FieldError, field_errors_from_pydantic

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "urn:cxmine:problem:"

logger = logging.getLogger("cxmine.api")


class Problem(BaseModel):
    """A problem details body (RFC 9457) with cxmine's field errors extension."""

    type: str = Field(description="A URI naming the kind of problem.")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


class ProblemError(Exception):
    """Raise anywhere in a request to answer with a problem details body."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        title: str | None = None,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug or _slug_for(status)
        self.title = title or HTTPStatus(status).phrase
        self.errors = errors
        self.headers = headers


def _slug_for(status: int) -> str:
    return HTTPStatus(status).phrase.lower().replace(" ", "-").replace("'", "")


def require_utc_offsets(**values: datetime | None) -> None:
    """Refuse query datetimes without a UTC offset (naive times are ambiguous across stores' time zones)."""
    for name, value in values.items():
        if value is not None and value.utcoffset() is None:
            raise ProblemError(
                422,
                f"{name} needs a UTC offset, e.g. 2026-03-01T00:00:00Z",
                slug="validation-error",
                errors=[FieldError(field=f"query.{name}", message="missing UTC offset")],
            )


def problem_response(
    *,
    status: int,
    detail: str | None,
    instance: str | None,
    slug: str | None = None,
    title: str | None = None,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSON response carrying a problem details body."""
    problem = Problem(
        type=PROBLEM_TYPE_BASE + (slug or _slug_for(status)),
        title=title or HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        instance=instance,
        errors=errors,
    )
    return JSONResponse(
        problem.model_dump(exclude_none=True),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error, expected or not, through problem details."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemError)
        return problem_response(
            status=exc.status,
            detail=exc.detail,
            instance=request.url.path,
            slug=exc.slug,
            title=exc.title,
            errors=exc.errors,
            headers=exc.headers,
        )

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return problem_response(
            status=exc.status_code,
            detail=str(exc.detail) if exc.detail else None,
            instance=request.url.path,
            headers=dict(exc.headers) if exc.headers else None,
        )

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = field_errors_from_pydantic(exc.errors())
        return problem_response(
            status=422,
            slug="validation-error",
            title="Invalid request",
            detail=f"{len(errors)} field(s) failed validation",
            instance=request.url.path,
            errors=errors,
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", extra={"path": request.url.path})
        return problem_response(
            status=500,
            detail="An unexpected error occurred; it has been logged.",
            instance=request.url.path,
        )

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected)
