"""OAuth 2 bearer tokens for sources: a configured access token, or one minted from a refresh token.

Access tokens expire (an hour at Google and Microsoft); a refresh token lets a scheduled source mint its own,
renewing a minute before expiry and once more when the service refuses one.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import SecretStr

from scrapers.http import MalformedResponseError, PoliteClient


class OAuthSettings(Protocol):
    """The config fields a source signs in with."""

    @property
    def access_token(self) -> SecretStr | None: ...

    @property
    def client_id(self) -> str | None: ...

    @property
    def client_secret(self) -> SecretStr | None: ...

    @property
    def refresh_token(self) -> SecretStr | None: ...

    @property
    def token_url(self) -> str | None: ...

    @property
    def scope(self) -> str | None: ...


class OAuthAccessToken:
    """The bearer token a source sends: the configured one, or one minted from the refresh token."""

    def __init__(self, config: OAuthSettings, http: PoliteClient) -> None:
        self._config = config
        self._http = http
        self._minted: str | None = None
        self._expires_at = 0.0

    @property
    def renewable(self) -> bool:
        return self._config.refresh_token is not None

    def token(self) -> str:
        """A token valid for at least another minute."""
        if self._config.access_token is not None:
            return self._config.access_token.get_secret_value()
        if self._minted is None or self._http.clock() >= self._expires_at:
            self._minted = self._mint()
        return self._minted

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def forget(self) -> None:
        """Drop a minted token the service refused, so the next request mints a new one."""
        self._minted = None

    def _mint(self) -> str:
        config = self._config
        if not config.token_url:
            raise MalformedResponseError("no token_url is configured to mint access tokens from")
        form = {
            "grant_type": "refresh_token",
            "client_id": config.client_id or "",
            "refresh_token": _revealed(config.refresh_token),
        }
        if config.client_secret is not None:
            form["client_secret"] = config.client_secret.get_secret_value()
        if config.scope:
            form["scope"] = config.scope
        body = self._http.json_of(self._http.request("POST", config.token_url, data=form))
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise MalformedResponseError(
                f"the token endpoint {config.token_url} answered without an access_token"
            )
        lifetime = body.get("expires_in")
        lifetime = float(lifetime) if isinstance(lifetime, int | float) else 3600.0
        # Renew a minute early so that a token does not expire between the check and its use.
        self._expires_at = self._http.clock() + max(0.0, lifetime - 60.0)
        return token


def _revealed(secret: SecretStr | None) -> str:
    return secret.get_secret_value() if secret is not None else ""
