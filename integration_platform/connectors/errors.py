"""Errors every connector raises, so callers handle a failing system the same way for all.

A message must let an operator act without reading code: it names the system, the request
(method and URL, secrets redacted), the HTTP status, the record when one record failed, what
the server said, and what to check.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SECRET_ENDINGS = ("key", "token", "secret", "password", "passwd", "signature", "sig", "auth")
REDACTED = "***"


def redact_url(url: str | None) -> str:
    """The URL with credentials in the user-info or the query string replaced by ``***``."""
    if not url:
        return ""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{REDACTED}@{host}" if ":" in userinfo else f"{user}@{host}"
    query = [
        (name, REDACTED if is_secret_name(name) else value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="$,*"), ""))


def is_secret_name(name: str) -> bool:
    """Whether a query parameter or header name carries a credential: names ending in key,
    token, secret, password or signature (``appKey``, ``access_token``, but not
    ``signatureMethod``); OData's ``$skiptoken`` is paging state, not a secret."""
    lowered = name.lower().replace("-", "_")
    if lowered.startswith("$"):
        return False
    return lowered == "authorization" or lowered.endswith(SECRET_ENDINGS)


class ConnectorError(Exception):
    """A call to an external system failed; the message says where and what to check."""

    default_hint = ""

    def __init__(
        self,
        *,
        system: str,
        method: str | None = None,
        url: str | None = None,
        status: int | None = None,
        record_id: str | None = None,
        detail: str = "",
        hint: str | None = None,
    ) -> None:
        self.system = system
        self.method = method
        self.url = redact_url(url)
        self.status = status
        self.record_id = record_id
        self.detail = detail
        self.hint = self.default_hint if hint is None else hint
        self.attempts = 1
        super().__init__(system, method, self.url, status)

    @property
    def retryable(self) -> bool:
        return False

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only constructors do not survive the default pickling of exceptions, and
        # errors cross process boundaries (executors, process pools).
        return (_rebuild, (type(self), self.__dict__.copy()))

    def __str__(self) -> str:
        text = f"{self.system}:"
        if self.method and self.url:
            text += f" {self.method} {self.url}"
        if self.record_id:
            text += f" (record {self.record_id})"
        text += f" answered HTTP {self.status}" if self.status else " failed"
        if self.detail:
            text += f": {self.detail.rstrip('. ')}"
        if self.attempts > 1:
            text += f" (gave up after {self.attempts} attempts)"
        if self.hint:
            text += f". {self.hint[0].upper()}{self.hint[1:]}"
        return text


class AuthenticationError(ConnectorError):
    """401/403: the credentials were refused or lack a permission.

    ``headers`` keeps the response headers (lower-case names) because some refusals are
    challenges a scheme can answer (SAP's ``x-csrf-token: Required``); ``at_login`` marks a
    refused login or token request, which logging in again cannot fix.
    """

    default_hint = (
        "check the credentials configured for this connection (their environment variables) "
        "and that the account is active and allowed to use the API"
    )

    def __init__(self, *, headers: Mapping[str, str] | None = None, **kwargs: object) -> None:
        self.headers = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
        self.at_login = False
        super().__init__(**kwargs)  # type: ignore[arg-type]


class NotFound(ConnectorError):
    """404: the record or the endpoint does not exist."""

    default_hint = "check the base URL, the path or object name, and the record id"


class Conflict(ConnectorError):
    """409/412: the record changed since it was read (version token no longer matches)."""

    default_hint = "read the record again and re-apply the change to its current version"


class RequestRejected(ConnectorError):
    """Another 4xx: the server refused the request as malformed or not allowed."""

    default_hint = "the server's message above names the field or parameter it refused"


class Throttled(ConnectorError):
    """429: the system's rate limit was hit and retrying did not get through."""

    default_hint = (
        "lower requests_per_second for this connection, or run fewer jobs against the system "
        "at once"
    )

    def __init__(self, *, retry_after: float | None = None, **kwargs: object) -> None:
        self.retry_after = retry_after
        super().__init__(**kwargs)  # type: ignore[arg-type]

    @property
    def retryable(self) -> bool:
        return True


class ServerError(ConnectorError):
    """5xx: the system failed; usually transient, so it is retried within bounds."""

    default_hint = "the system reported an internal error; check its status and logs"

    def __init__(self, *, retry_after: float | None = None, **kwargs: object) -> None:
        self.retry_after = retry_after
        super().__init__(**kwargs)  # type: ignore[arg-type]

    @property
    def retryable(self) -> bool:
        return self.status != 501


class ConnectionFailed(ConnectorError):
    """No HTTP answer at all: refused connection, DNS failure, TLS failure or a timeout."""

    default_hint = (
        "check that the system is up and reachable from this machine (URL, port, proxy, "
        "firewall) and the connection's timeouts"
    )

    def __init__(self, *, sent: bool = False, **kwargs: object) -> None:
        self.sent = sent
        super().__init__(**kwargs)  # type: ignore[arg-type]

    @property
    def retryable(self) -> bool:
        return True


class BadResponse(ConnectorError):
    """The system answered, but not with what its API promises (bad JSON, missing fields,
    an unexpected redirect). Not retried: the same request usually gets the same answer."""

    default_hint = (
        "the response does not follow the system's API; check the base URL points at the API "
        "(not a login page or proxy) and the API version"
    )


def _rebuild(cls: type[ConnectorError], state: dict[str, object]) -> ConnectorError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, state.get("system"), state.get("method"), state.get("url"))
    return error
