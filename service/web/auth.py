"""Dashboard sign-in: an API key exchanged for a signed, HttpOnly, SameSite=Strict session cookie.

The cookie holds the key's id, the start of its hash (so a re-created database cannot hand the session to
another key) and the session's CSRF token; every request re-reads the key, so a revoked key signs out at once.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from service.api.deps import Caller, SessionDep, SettingsDep
from service.config import Settings
from service.db.models import ApiKey, Role

SESSION_COOKIE = "cxmine_session"
SIGNIN_CSRF_COOKIE = "cxmine_signin_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
DASHBOARD_ROLES = frozenset({Role.ANALYST, Role.ADMIN})


class SignInRequiredError(Exception):
    """No valid session: the page redirects to the sign-in form."""


class PageError(Exception):
    """An error page with a status: 403 for a role or location the caller lacks, 404, 422 for bad filters."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class WebSession:
    """The signed-in caller and the CSRF token their forms must echo."""

    caller: Caller
    csrf_token: str

    @property
    def is_admin(self) -> bool:
        return self.caller.role is Role.ADMIN


def _serializer(settings: Settings, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.session_secret_bytes(), salt=salt)


def caller_of(key: ApiKey) -> Caller:
    """The Caller a stored key stands for (with its locations, if scoped)."""
    return Caller(key_id=key.id, name=key.name, role=Role(key.role), locations=tuple(key.locations or ()))


def start_session(response: Response, *, settings: Settings, key: ApiKey) -> None:
    """Set the session cookie for ``key`` with a fresh CSRF token."""
    payload = {"k": key.id, "h": key.key_hash[:16], "c": secrets.token_urlsafe(24)}
    response.set_cookie(
        SESSION_COOKIE,
        _serializer(settings, "session").dumps(payload),
        max_age=settings.session_max_age_seconds,
        httponly=True,
        samesite="strict",
        secure=settings.session_cookie_secure,
        path="/",
    )
    response.delete_cookie(SIGNIN_CSRF_COOKIE, path="/")


def end_session(response: Response) -> None:
    """Drop the session cookie."""
    response.delete_cookie(SESSION_COOKIE, path="/")


def read_session(request: Request, *, session: Session, settings: Settings) -> WebSession | None:
    """The session a request's cookie proves, or None (absent, tampered, expired or key revoked)."""
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    try:
        payload: dict[str, Any] = _serializer(settings, "session").loads(
            raw, max_age=settings.session_max_age_seconds
        )
    except BadSignature:
        return None
    key = session.get(ApiKey, payload.get("k"))
    if key is None or key.revoked_at is not None or key.key_hash[:16] != payload.get("h"):
        return None
    if Role(key.role) not in DASHBOARD_ROLES:
        return None
    return WebSession(caller=caller_of(key), csrf_token=str(payload["c"]))


def signin_csrf_token(request: Request, *, settings: Settings) -> str:
    """The pre-session CSRF token of the sign-in form: the one its cookie holds, or a new one."""
    try:
        return str(
            _serializer(settings, "signin").loads(request.cookies.get(SIGNIN_CSRF_COOKIE, ""), max_age=3600)
        )
    except BadSignature:
        return secrets.token_urlsafe(24)


def set_signin_csrf_cookie(response: Response, *, settings: Settings, token: str) -> None:
    """Double-submit the sign-in form's token through a signed cookie."""
    response.set_cookie(
        SIGNIN_CSRF_COOKIE,
        _serializer(settings, "signin").dumps(token),
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=settings.session_cookie_secure,
        path="/",
    )


def check_signin_csrf(request: Request, *, settings: Settings, submitted: str) -> bool:
    """Whether the sign-in form echoed the token of its cookie."""
    try:
        expected = str(
            _serializer(settings, "signin").loads(request.cookies.get(SIGNIN_CSRF_COOKIE, ""), max_age=3600)
        )
    except BadSignature:
        return False
    return bool(submitted) and hmac.compare_digest(expected, submitted)


def current_session(request: Request, session: SessionDep, settings: SettingsDep) -> WebSession:
    """The signed-in user of a page; redirects to sign-in without one."""
    web_session = read_session(request, session=session, settings=settings)
    if web_session is None:
        raise SignInRequiredError
    request.state.web_session = web_session
    return web_session


def admin_session(web_session: Annotated[WebSession, Depends(current_session)]) -> WebSession:
    """The signed-in user of an admin page: 403 for analysts."""
    if not web_session.is_admin:
        raise PageError(403, "This page is for administrators; your key has the analyst role.")
    return web_session


async def csrf_checked_session(
    request: Request, web_session: Annotated[WebSession, Depends(current_session)]
) -> AsyncIterator[WebSession]:
    """A signed-in user whose POST carries the session's CSRF token (header or form field): 403 otherwise.

    After the POST, cached page aggregates re-check the data, so the change shows on the next view.
    """
    submitted = request.headers.get(CSRF_HEADER)
    if submitted is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        submitted = value if isinstance(value, str) else None
    if not submitted or not hmac.compare_digest(submitted, web_session.csrf_token):
        raise PageError(403, "The form's security token is missing or stale: reload the page and try again.")
    yield web_session
    cache = getattr(request.app.state, "aggregate_cache", None)
    if cache is not None:
        cache.expire_watermark()


def admin_post_session(web_session: Annotated[WebSession, Depends(csrf_checked_session)]) -> WebSession:
    """An administrator's POST carrying the session's CSRF token: 403 for analysts and for a missing token."""
    return admin_session(web_session)


WebSessionDep = Annotated[WebSession, Depends(current_session)]
AdminSessionDep = Annotated[WebSession, Depends(admin_session)]
PostSessionDep = Annotated[WebSession, Depends(csrf_checked_session)]
AdminPostSessionDep = Annotated[WebSession, Depends(admin_post_session)]
