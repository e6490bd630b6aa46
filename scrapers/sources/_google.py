"""What the Google sources share: OAuth sign-in with an access or refresh token, Google API errors, timestamps."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Self

import httpx
from pydantic import Field, SecretStr, model_validator

from scrapers.base import HttpSource, HttpSourceConfig
from scrapers.http import (
    BadCredentialsError,
    ErrorAction,
    PoliteClient,
)
from scrapers.oauth import OAuthAccessToken

logger = logging.getLogger("cxmine.scrapers")

GOOGLE_QUOTA_REASONS = frozenset(
    {"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded", "dailyLimitExceeded"}
)
GOOGLE_OAUTH_ENDPOINT = "https://oauth2.googleapis.com/token"
OAUTH_CREDENTIAL_ERRORS = frozenset({"invalid_grant", "invalid_client", "unauthorized_client"})


class GoogleAuthConfig(HttpSourceConfig):
    """How a source signs in to a Google API: an access token, or an OAuth client and its refresh token."""

    access_token: SecretStr | None = Field(
        default=None, description="An OAuth 2 access token; it expires after an hour."
    )
    client_id: str | None = Field(default=None, description="OAuth client id (with a refresh token).")
    client_secret: SecretStr | None = Field(default=None, description="OAuth client secret.")
    refresh_token: SecretStr | None = Field(
        default=None, description="A refresh token of that client: the source mints its own access tokens."
    )
    token_url: str = Field(default=GOOGLE_OAUTH_ENDPOINT, description="Google's OAuth 2 token endpoint.")
    scope: str | None = Field(
        default=None, description="Not sent: a Google refresh token carries its scopes."
    )

    @model_validator(mode="after")
    def _one_way_to_sign_in(self) -> Self:
        refresh = (self.client_id, self.client_secret, self.refresh_token)
        if self.access_token is not None and any(refresh):
            raise ValueError("give access_token or client_id/client_secret/refresh_token, not both")
        if self.access_token is None and not all(refresh):
            raise ValueError(
                "give access_token (expires after an hour), or client_id, client_secret and refresh_token"
            )
        return self


def get_google_json(
    http: PoliteClient, access: OAuthAccessToken, url: str, params: Mapping[str, str | int]
) -> Any:
    """GET a Google API with the bearer token; a minted token the API refuses is minted again once."""
    try:
        try:
            return http.get_json(url, params=params, headers=access.headers())
        except BadCredentialsError as exc:
            if not (access.renewable and exc.status == 401):
                raise
            access.forget()
            return http.get_json(url, params=params, headers=access.headers())
    except BadCredentialsError as exc:
        hint = (
            "Check that the refresh token is still valid and that its account may see this resource."
            if access.renewable
            else "Access tokens expire after an hour: mint a fresh one, or configure client_id, "
            "client_secret and refresh_token so that the source mints its own."
        )
        raise BadCredentialsError(f"{exc} {hint}", status=exc.status) from None


def google_api_error_action(response: httpx.Response) -> ErrorAction | None:
    """Google's refinements: quota errors come as 429 or as 403 with a quota reason, and the token
    endpoint refuses a revoked refresh token or a wrong client with 400/401 and an OAuth error code."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        return ErrorAction.BAD_CREDENTIALS if error in OAUTH_CREDENTIAL_ERRORS else None
    if response.status_code != 403 or not isinstance(error, dict):
        return None
    reasons = {item.get("reason") for item in error.get("errors", []) if isinstance(item, dict)}
    if error.get("status") == "RESOURCE_EXHAUSTED" or reasons & GOOGLE_QUOTA_REASONS:
        return ErrorAction.RATE_LIMITED
    return None


def protobuf_timestamp(value: Any) -> datetime:
    """A protobuf ``Timestamp`` as JSON: ``{"seconds": "1443676826", "nanos": 713000000}``."""
    if not isinstance(value, dict) or not str(value.get("seconds", "")).lstrip("-").isdigit():
        raise ValueError(f"{value!r} is not a timestamp")
    whole_seconds = datetime.fromtimestamp(int(value["seconds"]), tz=UTC)
    return whole_seconds + timedelta(microseconds=int(value.get("nanos") or 0) // 1000)


class GoogleApiSource(HttpSource):
    """A source that reads a Google API: Google's error reasons refine the error table, one token per source."""

    config: GoogleAuthConfig

    def classify(self, response: httpx.Response) -> ErrorAction | None:
        return google_api_error_action(response)

    @functools.cached_property
    def _access(self) -> OAuthAccessToken:
        return OAuthAccessToken(self.config, self.http)
