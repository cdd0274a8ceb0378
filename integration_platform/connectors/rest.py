"""The REST base every vendor connector stands on.

Three layers, as in the Singer SDK:

1. ``RestConnector`` - the Dagster resource: configuration (URL, timeouts, retry bounds, rate
   limit, credentials as ``dg.EnvVar``) and the domain methods a vendor adds
   (``read_work_orders``...).
2. ``RestClient`` - the system's client, decided once: base URL, auth, paginators, the
   request/retry/rate-limit loop and structured errors. All I/O goes through
   ``RestClient.send``; ``transport`` is the one thing to swap to take the network away.
3. ``RestStream`` - a declaration per entity (path, primary key, replication key, fields,
   paginator); ``RestConnector.read_stream`` turns it into pages of rows and cursors.
"""

from __future__ import annotations

import email.utils
import hashlib
import json as _json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urljoin, urlsplit, urlunsplit

import dagster as dg
from pydantic import Field, PrivateAttr

from integration_platform.connectors.auth import Auth, dig
from integration_platform.connectors.base import (
    TEXT_DTYPE,
    HealthStatus,
    Page,
    records_to_frame,
    resolve_secret,
)
from integration_platform.connectors.cursor import Cursor, MarkKind, advance, drop_seen, marks
from integration_platform.connectors.errors import (
    AuthenticationError,
    BadResponse,
    Conflict,
    ConnectionFailed,
    ConnectorError,
    NotFound,
    RequestRejected,
    ServerError,
    Throttled,
)
from integration_platform.connectors.pagination import (
    PageRequest,
    Paginator,
    PaginatorError,
    build_paginator,
)
from integration_platform.settings import ConfigError

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"})
Transport = Callable[["requests.PreparedRequest"], "requests.Response"]


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds for retrying 429, 5xx and connection failures (exponential backoff with full
    jitter; a ``Retry-After`` from the server is honoured up to ``max_retry_after``)."""

    max_attempts: int = 5
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 120.0

    def backoff_for(self, attempt: int) -> float:
        """Full jitter: uniform between 0 and the exponential ceiling for this attempt."""
        ceiling = min(self.max_backoff, self.backoff * 2 ** max(attempt - 1, 0))
        return random.uniform(0, ceiling)


class TokenBucket:
    """Client-side rate limit: ``rate`` requests per second with bursts of ``burst``.

    Callers reserve a token under the lock and sleep outside it, so concurrent threads queue
    fairly instead of spinning.
    """

    def __init__(self, rate: float, burst: int = 1, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = max(burst, 1)
        self._clock = clock
        self._tokens = float(self.burst)
        self._last = clock()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take a token; the seconds to wait before using it."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def acquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            time.sleep(wait)


def error_detail(response: requests.Response) -> str:
    """What the server said about a failure, from the common error shapes (Maximo
    ``Error.message``, OData ``error.message``, ``message``), else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:200] if text else (response.reason or "")
    if isinstance(body, Mapping):
        for outer in ("Error", "error", "odata.error"):
            inner = body.get(outer)
            if isinstance(inner, Mapping):
                message = inner.get("message")
                if isinstance(message, Mapping):
                    message = message.get("value")
                if message:
                    return str(message)
            elif isinstance(inner, str) and inner:
                return inner
        for key in ("message", "detail", "error_description"):
            if body.get(key):
                return str(body[key])
    return str(body)[:200]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(moment.timestamp() - time.time(), 0.0)


class RestClient:
    """One system's HTTP client: pooled session, auth, retries, rate limit, errors."""

    def __init__(
        self,
        *,
        system: str,
        base_url: str,
        auth: Auth,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        requests_per_second: float = 0.0,
        burst: int = 1,
        verify: bool = True,
        headers: Mapping[str, str] | None = None,
        auth_hint: str | None = None,
        pool_size: int = 10,
        transport: Transport | None = None,
    ) -> None:
        self.system = system
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.timeout = (connect_timeout, read_timeout)
        self.retry = retry or RetryPolicy()
        self.bucket = TokenBucket(requests_per_second, burst)
        self.verify = verify
        self.headers = dict(headers or {})
        self.auth_hint = auth_hint
        self.pool_size = pool_size
        self.transport: Transport = transport or self._send_with_session
        self.sleep: Callable[[float], None] = time.sleep
        self._session: requests.Session | None = None
        self._session_lock = threading.Lock()

    # -- the session, created on first use -------------------------------------------------

    @property
    def session(self) -> requests.Session:
        with self._session_lock:
            if self._session is None:
                import requests
                from requests.adapters import HTTPAdapter

                session = requests.Session()
                adapter = HTTPAdapter(pool_connections=2, pool_maxsize=self.pool_size)
                session.mount("https://", adapter)
                session.mount("http://", adapter)
                session.headers.update({"Accept": "application/json", **self.headers})
                self._session = session
            return self._session

    def close(self) -> None:
        with self._session_lock:
            if self._session is not None:
                self._session.close()
                self._session = None

    # -- the one I/O seam ------------------------------------------------------------------

    def send(self, request: requests.PreparedRequest) -> requests.Response:
        """Send one prepared request and return the raw response: the only network call."""
        return self.transport(request)

    def _send_with_session(self, request: requests.PreparedRequest) -> requests.Response:
        return self.session.send(
            request, timeout=self.timeout, verify=self.verify, allow_redirects=False
        )

    # -- requests with retries -------------------------------------------------------------

    def url(self, path_or_url: str) -> str:
        if "://" in path_or_url:
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        record_id: str | None = None,
        authenticate: bool = True,
        idempotent: bool | None = None,
        retry: bool = True,
    ) -> requests.Response:
        """Send a request, retrying what is safe to retry within the policy's bounds.

        A POST is retried only when it certainly did not reach the server (refused
        connection, connect timeout) or was throttled: a retried create could duplicate a
        record. Pass ``idempotent=True`` for POSTs that are safe to repeat.
        """
        import tenacity

        method = method.upper()
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        attempts = self.retry.max_attempts if retry else 1
        counter = {"n": 0}

        def retry_allowed(state: tenacity.RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome else None
            if not isinstance(exc, ConnectorError) or not exc.retryable:
                return False
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is not None and retry_after > self.retry.max_retry_after:
                return False
            if idempotent or isinstance(exc, Throttled):
                return True
            return isinstance(exc, ConnectionFailed) and not exc.sent

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is not None:
                return float(retry_after)
            return self.retry.backoff_for(state.attempt_number)

        def once() -> requests.Response:
            counter["n"] += 1
            kwargs = dict(params=params, json=json, data=data, headers=headers)
            try:
                return self._once(method, path_or_url, record_id, authenticate, **kwargs)
            except AuthenticationError as exc:
                if not (authenticate and self.auth.refreshable and self.auth.refresh_on(exc)):
                    raise
                # A cached token may have expired on the server's side: log in again once.
                self.auth.invalidate()
                return self._once(method, path_or_url, record_id, authenticate, **kwargs)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(attempts),
            wait=wait,
            retry=retry_allowed,
            sleep=self.sleep,
            reraise=True,
            before_sleep=self._log_retry,
        )
        try:
            return retrying(once)
        except ConnectorError as exc:
            exc.attempts = counter["n"]
            raise

    def _log_retry(self, state: Any) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "%s: attempt %d failed (%s); retrying in %.2f s",
            self.system,
            state.attempt_number,
            exc,
            state.upcoming_sleep,
        )

    def _once(
        self,
        method: str,
        path_or_url: str,
        record_id: str | None,
        authenticate: bool,
        **kwargs: Any,
    ) -> requests.Response:
        import requests

        request = requests.Request(method, self.url(path_or_url), **kwargs)
        try:
            prepared = self.session.prepare_request(request)
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema) as exc:
            raise ConfigError(
                f"{self.system}: {request.url!r} is not a valid URL ({exc}); check base_url"
            ) from exc
        if authenticate:
            self.auth.apply(prepared, self)
        self.bucket.acquire()
        where = dict(system=self.system, method=method, url=prepared.url, record_id=record_id)
        try:
            response = self.send(prepared)
        except requests.Timeout as exc:
            connect = isinstance(exc, requests.ConnectTimeout)
            phase = "connecting" if connect else "waiting for the answer"
            seconds = self.timeout[0] if connect else self.timeout[1]
            raise ConnectionFailed(
                **where, sent=not connect, detail=f"timed out after {seconds} s {phase}"
            ) from exc
        except requests.ConnectionError as exc:
            raise ConnectionFailed(**where, sent=not _never_sent(exc), detail=_reason(exc)) from exc
        return self._check(response, where)

    def _check(self, response: requests.Response, where: dict[str, Any]) -> requests.Response:
        status = response.status_code
        if status < 300:
            return response
        where = {**where, "status": status}
        if status < 400:
            location = response.headers.get("Location", "")
            raise BadResponse(
                **where,
                detail=f"unexpected redirect to {location}",
                hint="configure the URL the system redirects to, or check a login proxy",
            )
        detail = error_detail(response)
        if status in (401, 403):
            raise AuthenticationError(
                **where, detail=detail, hint=self.auth_hint, headers=response.headers
            )
        if status == 404:
            raise NotFound(**where, detail=detail)
        if status in (409, 412):
            raise Conflict(**where, detail=detail)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is not None and retry_after > self.retry.max_retry_after:
            detail += (
                f" (the server asks to wait {retry_after:.0f} s, more than "
                f"max_retry_after_seconds={self.retry.max_retry_after:.0f})"
            )
        if status == 429:
            raise Throttled(**where, detail=detail, retry_after=retry_after)
        if status >= 500:
            raise ServerError(**where, detail=detail, retry_after=retry_after)
        raise RequestRejected(**where, detail=detail)

    def json(self, response: requests.Response, *, record_id: str | None = None) -> Any:
        """The JSON body, or ``BadResponse`` naming the URL and what came instead."""
        try:
            return response.json()
        except ValueError as exc:
            start = response.text[:80]
            raise BadResponse(
                system=self.system,
                method=response.request.method if response.request else None,
                url=response.url,
                status=response.status_code,
                record_id=record_id,
                detail=f"the body is not valid JSON ({exc}); it begins with {start!r}",
            ) from exc

    # -- paging ----------------------------------------------------------------------------

    def paginate(
        self,
        path: str,
        *,
        paginator: Any,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        page_size: int | None = None,
        method: str = "GET",
        json: Any = None,
    ) -> Iterator[tuple[list[dict[str, Any]], str]]:
        """Raw records page by page, with the URL each page came from. One page is in
        memory at a time. A read is safe to repeat, so a POST read (an RPC ``FindRequest``)
        is retried like a GET."""
        first = PageRequest(
            self.url(path), dict(params or {}), dict(headers or {}), method=method, json=json
        )
        request: PageRequest | None = paginator.first(first, page_size)
        # Digests, not the links: a read of many thousand pages keeps 16 bytes per page.
        followed: set[bytes] = set()
        while request is not None:
            response = self.request(
                request.method,
                request.url,
                params=request.params or None,
                headers=request.headers,
                json=request.json,
                idempotent=True,
            )
            body = self.json(response)
            try:
                records = paginator.records(body)
                following = paginator.next(request, body, records)
            except PaginatorError as exc:
                raise BadResponse(
                    system=self.system,
                    method=request.method,
                    url=response.url,
                    status=response.status_code,
                    detail=str(exc),
                ) from exc
            yield records, response.url
            if following is not None:
                following = self._on_our_host(following, response.url)
                fingerprint = f"{following.url}?{sorted(following.params.items())}"
                if following.json is not None:
                    fingerprint += _json.dumps(following.json, sort_keys=True, default=str)
                digest = hashlib.blake2b(fingerprint.encode(), digest_size=16).digest()
                if digest in followed:
                    raise BadResponse(
                        system=self.system,
                        method=request.method,
                        url=response.url,
                        status=response.status_code,
                        detail="the next-page link repeats a page already read",
                    )
                followed.add(digest)
            request = following

    def _on_our_host(self, request: PageRequest, current_url: str) -> PageRequest:
        return replace(request, url=self.on_our_host(request.url, current_url))

    def on_our_host(self, url: str, current_url: str | None = None) -> str:
        """A link from the system, resolved and kept on the configured host.

        Systems behind a reverse proxy often put their internal host name in links (next
        pages, record hrefs); following it would fail or, worse, send our credentials
        elsewhere.
        """
        url = urljoin(current_url or f"{self.base_url}/", url)
        ours = urlsplit(self.base_url)
        theirs = urlsplit(url)
        if (theirs.scheme, theirs.netloc) != (ours.scheme, ours.netloc):
            log.info("%s: link on %s rebased onto %s", self.system, theirs.netloc, ours.netloc)
            url = urlunsplit((ours.scheme, ours.netloc, theirs.path, theirs.query, ""))
        return url


def _never_sent(exc: Exception) -> bool:
    """Whether a connection error happened before any byte of the request left."""
    import requests
    import urllib3.exceptions

    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    inner = getattr(reason, "reason", reason)
    return isinstance(inner, urllib3.exceptions.NewConnectionError | ConnectionRefusedError)


def _reason(exc: Exception) -> str:
    reason = exc.args[0] if exc.args else exc
    inner = getattr(reason, "reason", None)
    text = str(inner or reason)
    if "Connection refused" in text:
        return "connection refused"
    return text.split(": ", 1)[-1][:200]


# -- layer 3: declarations -----------------------------------------------------------------


@dataclass(frozen=True)
class RestStream:
    """One entity of a system, declared: where it lives and how rows are keyed and ordered."""

    name: str
    path: str
    primary_key: tuple[str, ...]
    replication_key: str | None = None
    # A column, or a "/"-path into the record (``__metadata/etag``).
    version_key: str | None = None
    fields: tuple[str, ...] = ()
    # A name from ``pagination.PAGINATORS``, or a system's own ``Paginator`` instance.
    paginator: str | Paginator = "offset"
    paginator_options: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    method: str = "GET"
    # How the replication key's text is read: ISO timestamps (and OData V2 "/Date(ms)/"),
    # epoch milliseconds (Fiix dtm*), or numbers; None guesses from the values.
    replication_kind: MarkKind | None = None
    # False when the source cannot filter or order by the replication key: every read then
    # scans the collection, keeps what the cursor does not cover and yields it in cursor
    # order, so a cursor saved after any page is exact.
    server_ordered: bool = True


# -- layer 1: the resource -----------------------------------------------------------------


class RestConnector(dg.ConfigurableResource):
    """Configuration and behaviour shared by every REST connector.

    Subclasses declare ``system`` and ``health_path`` and override ``build_auth`` (and
    ``api_url``/``stream_params`` where the system needs it); the loop is here.
    """

    system: ClassVar[str] = "rest"
    health_path: ClassVar[str] = "/"

    base_url: str = Field(description="Root URL of the system, e.g. https://maximo.example.com.")
    connect_timeout_seconds: float = Field(default=5.0, description="TCP/TLS connect timeout.")
    read_timeout_seconds: float = Field(
        default=60.0, description="Longest wait for an answer once connected."
    )
    max_attempts: int = Field(
        default=5, ge=1, description="Attempts per request (first try included) on 429/5xx."
    )
    backoff_seconds: float = Field(
        default=0.5, ge=0, description="First backoff ceiling; doubles per attempt (full jitter)."
    )
    max_backoff_seconds: float = Field(default=30.0, ge=0, description="Backoff ceiling.")
    max_retry_after_seconds: float = Field(
        default=120.0,
        ge=0,
        description="Longest Retry-After honoured; a longer one fails at once as Throttled.",
    )
    requests_per_second: float = Field(
        default=10.0, ge=0, description="Client-side rate limit (0 = none)."
    )
    burst: int = Field(default=5, ge=1, description="Requests allowed at once above the rate.")
    verify_tls: bool = Field(default=True, description="Verify the server's TLS certificate.")

    _client: RestClient | None = PrivateAttr(default=None)

    # -- hooks a vendor overrides ----------------------------------------------------------

    def build_auth(self) -> Auth:
        raise NotImplementedError

    def system_label(self) -> str:
        """The system's name in messages (a configured name for generic connectors)."""
        return self.system

    def root_url(self) -> str:
        """``base_url`` without a trailing slash (resolving a ``dg.EnvVar`` outside a run)."""
        return resolve_secret(self.base_url, field="base_url", system=self.system_label()).rstrip(
            "/"
        )

    def api_url(self) -> str:
        """URL that stream paths and ``health_path`` are relative to."""
        return self.root_url()

    def auth_hint(self) -> str | None:
        """What to check when credentials are refused (names the fields/variables)."""
        return None

    def default_headers(self) -> dict[str, str]:
        return {}

    def stream_params(
        self, stream: RestStream, *, since: Cursor | None, page_size: int | None
    ) -> dict[str, Any]:
        """Query parameters for reading ``stream`` from ``since``; vendors add filters."""
        return dict(stream.params)

    def stream_headers(self, stream: RestStream, *, since: Cursor | None) -> dict[str, str]:
        """Request headers for reading ``stream`` (OData ``Prefer`` preferences...)."""
        return dict(stream.headers)

    def stream_body(self, stream: RestStream, *, since: Cursor | None) -> Any:
        """The JSON body of a read sent as POST (RPC APIs); None for a GET."""
        return None

    def probe(self) -> Any:
        """The health check's one request, without retries; its JSON body."""
        response = self.client.request("GET", self.health_path, retry=False)
        return self.client.json(response)

    # -- shared behaviour ------------------------------------------------------------------

    @property
    def client(self) -> RestClient:
        """The connector's client, built on first use (no network or session at import)."""
        if self._client is None:
            self._client = RestClient(
                system=self.system_label(),
                base_url=self.api_url(),
                auth=self.build_auth(),
                connect_timeout=self.connect_timeout_seconds,
                read_timeout=self.read_timeout_seconds,
                retry=RetryPolicy(
                    max_attempts=self.max_attempts,
                    backoff=self.backoff_seconds,
                    max_backoff=self.max_backoff_seconds,
                    max_retry_after=self.max_retry_after_seconds,
                ),
                requests_per_second=self.requests_per_second,
                burst=self.burst,
                verify=self.verify_tls,
                headers=self.default_headers(),
                auth_hint=self.auth_hint(),
            )
        return self._client

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()

    def health_check(self) -> HealthStatus:
        """One request to the system's identity or root endpoint, without retries: a health
        check must answer quickly, and report instead of raise."""
        started = time.perf_counter()
        try:
            body = self.probe()
            ok, detail = True, self.describe_health(body)
        except (ConnectorError, ConfigError) as exc:
            ok, detail = False, str(exc)
        latency_ms = (time.perf_counter() - started) * 1000.0
        return HealthStatus(ok=ok, latency_ms=round(latency_ms, 1), detail=detail)

    def describe_health(self, body: Any) -> str:
        return f"{self.system_label()} answered at {self.api_url()}"

    def read_stream(
        self,
        stream: RestStream,
        *,
        since: Cursor | None = None,
        page_size: int | None = None,
    ) -> Iterator[Page]:
        """Pages of new rows of ``stream`` with the cursor after each page.

        Rows the cursor already covers (the source is asked for ``>= mark``) are dropped, and
        pages left empty by that are skipped.
        """
        paginator = (
            stream.paginator
            if isinstance(stream.paginator, Paginator)
            else build_paginator(stream.paginator, **stream.paginator_options)
        )
        params = self.stream_params(stream, since=since, page_size=page_size)
        pages: Iterator[tuple[list[dict[str, Any]], str]] = self.client.paginate(
            stream.path,
            paginator=paginator,
            params=params,
            headers=self.stream_headers(stream, since=since),
            page_size=page_size,
            method=stream.method,
            json=self.stream_body(stream, since=since),
        )
        if stream.replication_key and not stream.server_ordered:
            pages = self._in_cursor_order(stream, pages, since=since, page_size=page_size)
        cursor = since
        for number, (records, url) in enumerate(pages, start=1):
            frame, version = versioned_frame(stream, records)
            if stream.replication_key:
                check_columns(self.system_label(), stream, frame, url)
                frame = drop_seen(
                    frame,
                    cursor,
                    cursor_field=stream.replication_key,
                    key_fields=stream.primary_key,
                    version_field=version,
                )
                if frame.empty:
                    continue
                cursor = advance(
                    cursor,
                    frame,
                    cursor_field=stream.replication_key,
                    key_fields=stream.primary_key,
                    version_field=version,
                    kind=stream.replication_kind,
                )
            if version == NESTED_VERSION:
                frame = frame.drop(columns=[NESTED_VERSION])
            yield Page(frame=frame, cursor=cursor, number=number, url=url)

    def _in_cursor_order(
        self,
        stream: RestStream,
        pages: Iterator[tuple[list[dict[str, Any]], str]],
        *,
        since: Cursor | None,
        page_size: int | None,
    ) -> Iterator[tuple[list[dict[str, Any]], str]]:
        """The whole collection, less what ``since`` covers, re-paged in cursor order. Only
        the rows not yet read are held, one record list at a time from the source."""
        field = stream.replication_key or ""
        kept: list[dict[str, Any]] = []
        url = ""
        for records, url in pages:
            frame, version = versioned_frame(stream, records)
            check_columns(self.system_label(), stream, frame, url)
            frame["__position"] = range(len(records))
            fresh = drop_seen(
                frame,
                since,
                cursor_field=field,
                key_fields=stream.primary_key,
                version_field=version,
            )
            kept += [records[int(i)] for i in fresh["__position"]]
        if not kept:
            return
        frame = records_to_frame(kept, stream.fields)
        kind = since.kind if since is not None else stream.replication_kind
        # Rows without a cursor value first (they are always re-read), then by mark and key.
        rank = marks(frame[field], kind).rank(method="min").fillna(0).tolist()
        keys = ["/".join(str(record.get(name)) for name in stream.primary_key) for record in kept]
        ordered = sorted(range(len(kept)), key=lambda i: (rank[i], keys[i]))
        size = page_size or len(kept)
        for start in range(0, len(ordered), size):
            yield [kept[i] for i in ordered[start : start + size]], url


NESTED_VERSION = "__version"


def versioned_frame(stream: RestStream, records: list[dict[str, Any]]) -> tuple[Any, str | None]:
    """The page's frame and the column holding the row version. A version nested in the
    record (OData V2 ``__metadata/etag``) is lifted into a temporary column for the cursor."""
    frame = records_to_frame(records, stream.fields)
    if not stream.version_key or "/" not in stream.version_key:
        return frame, stream.version_key
    import pandas as pd

    values = [dig(record, stream.version_key) for record in records]
    frame[NESTED_VERSION] = pd.array(
        [None if v is None else str(v) for v in values], dtype=TEXT_DTYPE
    )
    return frame, NESTED_VERSION


def check_columns(system: str, stream: RestStream, frame: Any, url: str) -> None:
    """Key and cursor columns must be present for a page to advance a cursor safely."""
    if frame.empty:
        return
    needed: Sequence[str] = (*stream.primary_key, stream.replication_key or "")
    missing = [name for name in needed if name and name not in frame.columns]
    if missing:
        raise BadResponse(
            system=system,
            method="GET",
            url=url,
            detail=f"{stream.name}: the records lack {', '.join(missing)}, needed for the cursor",
            hint="include these attributes in the stream's fields (oslc.select / $select)",
        )


__all__ = [
    "RestClient",
    "RestConnector",
    "RestStream",
    "RetryPolicy",
    "TokenBucket",
]
