"""Authentication schemes, chosen by name, applied to each prepared request.

A scheme only decorates a request (header, query parameter, signature). Schemes that log in
first (OAuth2 client credentials, session tokens) fetch their token through the client, so the
login goes through the same seam, timeouts and errors as every other call, and they drop the
token when the system answers 401 so the client can retry once with a fresh one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from integration_platform.connectors.errors import AuthenticationError, BadResponse
from integration_platform.settings import ConfigError

if TYPE_CHECKING:
    import requests

    from integration_platform.connectors.rest import RestClient


class Auth:
    """Base: subclasses set ``name`` and implement ``apply``."""

    name: ClassVar[str] = ""
    refreshable: ClassVar[bool] = False

    def apply(self, request: requests.PreparedRequest, client: RestClient) -> None:
        raise NotImplementedError

    def invalidate(self) -> None:
        """Forget a cached token after the system refused it."""

    def refresh_on(self, error: AuthenticationError) -> bool:
        """Whether logging in again may cure ``error`` (not when the login itself failed)."""
        return self.refreshable and not error.at_login


@dataclass
class NoAuth(Auth):
    name: ClassVar[str] = "none"

    def apply(self, request: requests.PreparedRequest, client: RestClient) -> None:
        return None


@dataclass
class ApiKeyAuth(Auth):
    """A static key in a header (``apikey``, ``X-API-Key``) or, if a system insists, a query
    parameter (redacted from every message)."""

    name: ClassVar[str] = "api_key"
    key: str
    header: str = "X-API-Key"
    query_param: str | None = None

    def apply(self, request: requests.PreparedRequest, client: RestClient) -> None:
        if self.query_param:
            request.prepare_url(request.url, {self.query_param: self.key})
        else:
            request.headers[self.header] = self.key


@dataclass
class BasicAuth(Auth):
    name: ClassVar[str] = "basic"
    username: str
    password: str

    def apply(self, request: requests.PreparedRequest, client: RestClient) -> None:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")
        request.headers["Authorization"] = f"Basic {token}"


@dataclass
class _CachedToken(Auth):
    """Shared token cache: one login per expiry, thread-safe, dropped on 401."""

    refreshable: ClassVar[bool] = True
    _token: str | None = field(default=None, init=False, repr=False)
    _expires_at: float = field(default=0.0, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def token(self, client: RestClient) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._expires_at:
                try:
                    self._token, lifetime = self.fetch(client)
                except AuthenticationError as exc:
                    exc.at_login = True
                    raise
                self._expires_at = time.monotonic() + max(lifetime - 30.0, lifetime / 2)
            return self._token

    def fetch(self, client: RestClient) -> tuple[str, float]:
        raise NotImplementedError

    def invalidate(self) -> None:
        with self._lock:
            self._token = None


@dataclass
class OAuth2ClientCredentials(_CachedToken):
    """OAuth2 client-credentials grant (Azure AD for Dynamics and Power BI, SAP BTP)."""

    name: ClassVar[str] = "oauth2_client_credentials"
    token_url: str = ""
    client_id: str = ""
    client_secret: str = ""
    scope: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    def apply(self, request: requests.PreparedRequest, client: RestClient) -> None:
        request.headers["Authorization"] = f"Bearer {self.token(client)}"

    def fetch(self, client: RestClient) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            **({"scope": self.scope} if self.scope else {}),
            **self.extra,
        }
        response = client.request("POST", self.token_url, data=form, authenticate=False)
        body = client.json(response)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not token:
            raise BadResponse(
                system=client.system,
                method="POST",
                url=self.token_url,
                status=response.status_code,
                detail="the token response has no access_token",
            )
        return str(token), float(body.get("expires_in") or 3600)


@dataclass
class SessionTokenAuth(_CachedToken):
    """Log in with a user and password, then send the returned token in a header (UpKeep:
    ``POST /auth`` -> ``result.sessionToken`` -> ``Session-Token``)."""

    name: ClassVar[str] = "session_token"
    login_path: str = "/auth"
    username: str = ""
    password: str = ""
    username_field: str = "email"
    password_field: str = "password"
    token_path: str = "result/sessionToken"
    header: str = "Session-Token"
    lifetime_seconds: float = 3600.0

    def apply(self, request: requests.PreparedRequest, client: RestClient) -> None:
        request.headers[self.header] = self.token(client)

    def fetch(self, client: RestClient) -> tuple[str, float]:
        payload = {self.username_field: self.username, self.password_field: self.password}
        response = client.request("POST", self.login_path, json=payload, authenticate=False)
        body = client.json(response)
        token = dig(body, self.token_path)
        if not token:
            raise BadResponse(
                system=client.system,
                method="POST",
                url=client.url(self.login_path),
                status=response.status_code,
                detail=f"the login response has no {self.token_path!r}",
            )
        return str(token), self.lifetime_seconds


@dataclass
class HmacUrlSignature(Auth):
    """Fiix-style request signing: key parameters in the query string and an
    ``Authorization`` header holding the hex HMAC-SHA256 of the URL without its scheme."""

    name: ClassVar[str] = "hmac_url_signature"
    app_key: str = ""
    access_key: str = ""
    secret: str = ""
    header: str = "Authorization"

    def apply(self, request: requests.PreparedRequest, client: RestClient) -> None:
        request.prepare_url(
            request.url,
            {
                "appKey": self.app_key,
                "accessKey": self.access_key,
                "signatureMethod": "HmacSHA256",
                "signatureVersion": "1",
            },
        )
        request.headers[self.header] = sign_url(str(request.url), self.secret)


@dataclass
class CsrfToken(Auth):
    """SAP Gateway's CSRF protection around another scheme (Basic, OAuth2); a wrapper, so
    not chosen by name.

    Writes (anything but GET/HEAD/OPTIONS) carry ``X-CSRF-Token``, fetched once with a GET of
    ``fetch_path`` and ``X-CSRF-Token: Fetch``; the token belongs to the session cookies set
    by that GET, which the client's session keeps and sends. A write refused with ``403`` and
    ``x-csrf-token: Required`` was not applied: the token is dropped and the write is sent
    once more with a fresh one (sessions are lost behind load balancers without affinity).
    """

    name: ClassVar[str] = "csrf_token"
    refreshable: ClassVar[bool] = True
    inner: Auth = field(default_factory=lambda: NoAuth())
    fetch_path: str = "/"
    header: str = "X-CSRF-Token"
    fetches: int = field(default=0, init=False)
    _token: str | None = field(default=None, init=False, repr=False)
    # Re-entrant: a token fetch refused with 401 invalidates this scheme from the same thread.
    _lock: Any = field(default_factory=threading.RLock, init=False, repr=False)

    def apply(self, request: requests.PreparedRequest, client: RestClient) -> None:
        self.inner.apply(request, client)
        if (request.method or "GET").upper() in ("GET", "HEAD", "OPTIONS"):
            return
        request.headers[self.header] = self.token(client)
        # The request was prepared before the token's session cookies existed.
        request.headers.pop("Cookie", None)
        request.prepare_cookies(client.session.cookies)

    def token(self, client: RestClient) -> str:
        with self._lock:
            if self._token is None:
                response = client.request(
                    "GET", self.fetch_path, headers={self.header: "Fetch"}, retry=True
                )
                token = response.headers.get(self.header)
                if not token or token.lower() == "required":
                    raise BadResponse(
                        system=client.system,
                        method="GET",
                        url=client.url(self.fetch_path),
                        status=response.status_code,
                        detail=f"the answer to {self.header}: Fetch carries no token",
                        hint="check that the user may write to this service",
                    )
                self._token = token
                self.fetches += 1
            return self._token

    def invalidate(self) -> None:
        with self._lock:
            self._token = None

    def refresh_on(self, error: AuthenticationError) -> bool:
        if error.headers.get(self.header.lower(), "").lower() == "required":
            return True
        if self.inner.refresh_on(error):
            self.inner.invalidate()
            return True
        return False


def sign_url(url: str, secret: str) -> str:
    """Hex HMAC-SHA256 of ``url`` without ``http://`` or ``https://``."""
    message = url.split("://", 1)[-1]
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def dig(body: Any, path: str) -> Any:
    """The value at a ``/``-separated path (keys may contain dots, as ``@odata.nextLink``)."""
    current = body
    for part in (p for p in path.split("/") if p):
        if not isinstance(current, Mapping):
            return None
        current = current.get(part)
    return current


AUTH_TYPES: dict[str, Callable[..., Auth]] = {
    cls.name: cls
    for cls in (
        NoAuth,
        ApiKeyAuth,
        BasicAuth,
        OAuth2ClientCredentials,
        SessionTokenAuth,
        HmacUrlSignature,
    )
}


def build_auth(name: str, **options: Any) -> Auth:
    """An auth scheme by its name, e.g. ``build_auth("api_key", key=..., header="apikey")``."""
    try:
        factory = AUTH_TYPES[name]
    except KeyError:
        known = ", ".join(sorted(AUTH_TYPES))
        raise ConfigError(f"unknown auth type {name!r}; use one of: {known}") from None
    return factory(**options)
