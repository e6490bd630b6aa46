"""FastAPI dependencies: the database session, settings and the authenticated caller."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service.access import LocationForbiddenError, restrict_filter, restrict_scope
from service.api.problems import ProblemError
from service.config import Settings
from service.db.models import Role
from service.feedback import FeedbackFilter, Scope
from service.keys import authenticate


def get_session(request: Request) -> Iterator[Session]:
    """One session per request, closed afterwards; service functions decide when to commit."""
    session: Session = request.app.state.session_factory()
    try:
        yield session
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def get_settings(request: Request) -> Settings:
    """The settings the app was started with."""
    settings: Settings = request.app.state.settings
    return settings


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer cxm_...`")
_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="Alternatively `X-API-Key: cxm_...`"
)


@dataclass(frozen=True)
class Caller:
    """The authenticated API key behind a request."""

    key_id: int
    name: str
    role: Role
    locations: tuple[str, ...] = ()

    @property
    def scoped(self) -> bool:
        """Whether the key is limited to some locations (empty ``locations``: every location)."""
        return bool(self.locations)


def require_roles(*roles: Role) -> Callable[..., Caller]:
    """A dependency admitting keys of ``roles`` (admin is always admitted): 401 without a key, 403 else."""
    allowed = frozenset({Role.ADMIN, *roles})

    def dependency(
        session: SessionDep,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        header_key: Annotated[str | None, Depends(_api_key_header)],
    ) -> Caller:
        plaintext = bearer.credentials if bearer is not None else header_key
        challenge = {"WWW-Authenticate": "Bearer"}
        if not plaintext:
            raise ProblemError(
                401, "An API key is required: send `Authorization: Bearer <key>`.", headers=challenge
            )
        key = authenticate(session, plaintext=plaintext)
        if key is None:
            raise ProblemError(401, "The API key is unknown or revoked.", headers=challenge)
        role = Role(key.role)
        if role not in allowed:
            wanted = ", ".join(sorted(r.value for r in allowed))
            raise ProblemError(
                403, f"A key with role {role.value!r} may not do this; it needs one of: {wanted}."
            )
        locations = tuple(key.locations or ())
        if locations and role != Role.ANALYST:
            # Never made by create_api_key; refused rather than trusted with every location.
            raise ProblemError(403, f"A {role.value} key may not be limited to locations; make a new key.")
        return Caller(key_id=key.id, name=key.name, role=role, locations=locations)

    dependency.allowed_roles = allowed  # type: ignore[attr-defined]
    return dependency


ReaderDep = Annotated[Caller, Depends(require_roles(Role.ANALYST))]
IngestDep = Annotated[Caller, Depends(require_roles(Role.INGEST))]
AdminDep = Annotated[Caller, Depends(require_roles())]
ScorerDep = Annotated[Caller, Depends(require_roles(Role.SCORER))]


def _location_forbidden(exc: LocationForbiddenError) -> ProblemError:
    return ProblemError(403, str(exc), slug="location-forbidden", title="Location not allowed")


def caller_scope(caller: Caller, scope: Scope) -> Scope:
    """``scope`` limited to the caller's locations: 403 when it asks for a location outside them."""
    try:
        return restrict_scope(scope, allowed=caller.locations)
    except LocationForbiddenError as exc:
        raise _location_forbidden(exc) from exc


def caller_filter(caller: Caller, filters: FeedbackFilter) -> FeedbackFilter:
    """``filters`` limited to the caller's locations: 403 when they ask for a location outside them."""
    try:
        return restrict_filter(filters, allowed=caller.locations)
    except LocationForbiddenError as exc:
        raise _location_forbidden(exc) from exc


def require_unscoped(caller: Caller, *, what: str) -> None:
    """403 for a key limited to some locations: ``what`` spans every location."""
    if caller.scoped:
        raise ProblemError(
            403,
            f"{what} span every location; this key may only see {', '.join(map(repr, caller.locations))}.",
            slug="location-forbidden",
            title="Location not allowed",
        )
