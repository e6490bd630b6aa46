"""Sign-in and sign-out pages."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from service.api.deps import SessionDep, SettingsDep
from service.db.models import Role
from service.keys import authenticate
from service.web.auth import (
    DASHBOARD_ROLES,
    PostSessionDep,
    check_signin_csrf,
    end_session,
    read_session,
    set_signin_csrf_cookie,
    signin_csrf_token,
    start_session,
)
from service.web.templating import render

router = APIRouter(include_in_schema=False)


def safe_next(target: str | None) -> str:
    """Only a local path may follow sign-in (no open redirect)."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


@router.get("/signin")
def signin_page(request: Request, session: SessionDep, settings: SettingsDep, next: str = "/") -> Response:
    """The sign-in form (straight to the dashboard when already signed in)."""
    if read_session(request, session=session, settings=settings) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _form(request, settings=settings, next_path=safe_next(next))


def _form(
    request: Request, *, settings: SettingsDep, next_path: str, error: str | None = None, status: int = 200
) -> HTMLResponse:
    token = signin_csrf_token(request, settings=settings)
    response = render(
        request,
        "signin.html",
        web=None,
        next_path=next_path,
        error=error,
        signin_csrf=token,
        status_code=status,
    )
    set_signin_csrf_cookie(response, settings=settings, token=token)
    return response


@router.post("/signin")
def signin(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    api_key: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    """Exchange an API key for a session cookie."""
    next_path = safe_next(next)
    if not check_signin_csrf(request, settings=settings, submitted=csrf_token):
        return _form(
            request,
            settings=settings,
            next_path=next_path,
            status=403,
            error="The sign-in form expired or its security token is missing: please try again.",
        )
    key = authenticate(session, plaintext=api_key.strip()) if api_key.strip() else None
    if key is None:
        return _form(
            request,
            settings=settings,
            next_path=next_path,
            status=401,
            error="That API key is unknown or revoked. Ask an administrator for a key (cxmine keys create).",
        )
    if Role(key.role) not in DASHBOARD_ROLES:
        return _form(
            request,
            settings=settings,
            next_path=next_path,
            status=403,
            error=f"A key with the {key.role} role cannot use the dashboard; it needs analyst or admin.",
        )
    session.commit()
    response = RedirectResponse(next_path, status_code=303)
    start_session(response, settings=settings, key=key)
    return response


@router.post("/signout")
def signout(_web: PostSessionDep) -> Response:
    """End the session."""
    response = RedirectResponse("/signin", status_code=303)
    end_session(response)
    return response
