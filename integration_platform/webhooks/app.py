"""The webhook receiver as a Starlette application.

``POST /api/v1/hooks/maintenance/events`` names its source in the ``X-Webhook-Source`` header;
``POST /api/v1/hooks/maintenance/events/{source}`` names it in the path, for senders whose
webhook settings hold only a URL. Checks run cheapest first and nothing is stored unless all
pass: source (400/404), content type (415), size (413), signature over the raw bytes (401),
rate (429), JSON (400), event shape (422). Only after the inbox transaction has committed is the
answer 202; a database that cannot take the event gives 503 with ``Retry-After``.

The database calls block, so they run on worker threads (at most ``db_concurrency`` at once,
within the connection pool): the event loop keeps reading, verifying and rejecting requests
while commits wait on the disk or the network. Inserts of concurrent requests share one
transaction (``groupcommit``), each request answered after that commit. See docs/webhooks.md
for the measurements.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.to_thread
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from integration_platform.webhooks import adapters, events, signatures, store
from integration_platform.webhooks.groupcommit import GroupCommitter
from integration_platform.webhooks.metrics import CONTENT_TYPE, ReceiverMetrics
from integration_platform.webhooks.ratelimit import TokenBucket, retry_after_header
from integration_platform.webhooks.sources import WebhookSource, WebhookSources

EVENTS_PATH = "/api/v1/hooks/maintenance/events"
SOURCE_HEADER = "x-webhook-source"
DEFAULT_MAX_BODY_BYTES = 256 * 1024
DEFAULT_DB_CONCURRENCY = 10
DB_RETRY_AFTER_SECONDS = 5
UNKNOWN = "unknown"

log = logging.getLogger("integration_platform.webhooks")
_EVENT_ID = re.compile(events.EVENT_ID_PATTERN)


class Rejection(Exception):
    """An answer other than 202; ``reason`` is the metric label and the ``error`` field."""

    def __init__(
        self,
        status: int,
        reason: str,
        detail: str,
        *,
        field: str | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.field = field
        self.errors = errors
        self.headers = headers

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"error": self.reason, "detail": self.detail}
        if self.field is not None:
            body["field"] = self.field
        if self.errors and len(self.errors) > 1:
            body["errors"] = self.errors
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def _is_json_media_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    media_type, *params = (part.strip().lower() for part in content_type.split(";"))
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        return False
    for param in params:
        name, _, value = param.partition("=")
        if name.strip() == "charset" and value.strip().strip('"') not in ("utf-8", "utf8"):
            return False
    return True


def _fallback_event_id(candidate: str | None, body: bytes) -> str:
    """The message's own id if usable as a key, else one derived from it or from the body."""
    if candidate is not None and _EVENT_ID.fullmatch(candidate):
        return candidate
    if candidate:
        return "sha256:" + hashlib.sha256(candidate.encode("utf-8", "surrogatepass")).hexdigest()
    # Identical bytes are the same message: a redelivery is recognised, a new event is not.
    return "sha256:" + hashlib.sha256(body).hexdigest()


class WebhookReceiver:
    """The request handlers and the state they share (sources, buckets, engine, metrics)."""

    def __init__(
        self,
        *,
        sources: WebhookSources,
        engine: Engine,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        db_concurrency: int = DEFAULT_DB_CONCURRENCY,
        clock: Callable[[], float] = time.time,
        group_commit: bool = True,
    ) -> None:
        self.sources = sources
        self.engine = engine
        self.max_body_bytes = max_body_bytes
        self.clock = clock
        self.metrics = ReceiverMetrics()
        self.buckets = {
            name: TokenBucket(source.rate_limit, source.burst) for name, source in sources.items()
        }
        self.db_limiter = anyio.CapacityLimiter(db_concurrency)
        self.committer = (
            GroupCommitter(
                engine, limiter=self.db_limiter, max_in_flight=min(4, max(1, db_concurrency))
            )
            if group_commit
            else None
        )

    async def _in_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(
            functools.partial(function, *args), limiter=self.db_limiter
        )

    async def receive(self, request: Request) -> Response:
        started = time.perf_counter()
        label = UNKNOWN
        try:
            source = self._source(request)
            label = source.name
            self.metrics.received[label] += 1
            response = await self._accept(request, source)
        except Rejection as rejection:
            if label == UNKNOWN:
                self.metrics.received[label] += 1
            self.metrics.rejected[label, rejection.reason] += 1
            log.info(
                "webhook rejected: source=%s status=%d reason=%s detail=%s",
                label,
                rejection.status,
                rejection.reason,
                rejection.detail,
            )
            response = rejection.response()
        self.metrics.observe_latency(time.perf_counter() - started)
        return response

    def _source(self, request: Request) -> WebhookSource:
        in_path = request.path_params.get("source")
        in_header = request.headers.get(SOURCE_HEADER)
        if in_path is not None and in_header is not None and in_path != in_header.strip():
            raise Rejection(
                400, "source_mismatch", "the path and X-Webhook-Source name different sources"
            )
        name = (in_path if in_path is not None else in_header or "").strip()
        if not name:
            raise Rejection(
                400,
                "missing_source",
                f"name the sender in the X-Webhook-Source header or post to {EVENTS_PATH}/<source>",
            )
        source = self.sources.get(name)
        if source is None:
            raise Rejection(404, "unknown_source", "no webhook source of that name is configured")
        return source

    async def _read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                raise Rejection(400, "bad_content_length", "Content-Length is not a number")
            if int(declared) > self.max_body_bytes:
                raise self._too_large()
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > self.max_body_bytes:
                    raise self._too_large()
                chunks.append(chunk)
        except ClientDisconnect:
            raise Rejection(400, "client_disconnected", "the request body was cut off") from None
        return b"".join(chunks)

    def _too_large(self) -> Rejection:
        return Rejection(413, "body_too_large", f"the body exceeds {self.max_body_bytes} bytes")

    async def _accept(self, request: Request, source: WebhookSource) -> Response:
        if not _is_json_media_type(request.headers.get("content-type")):
            raise Rejection(
                415, "unsupported_media_type", "send Content-Type: application/json (UTF-8)"
            )
        body = await self._read_body(request)
        try:
            verified = signatures.verify(
                source.scheme, request.headers, body, source.secrets, now=self.clock()
            )
        except signatures.SignatureError as exc:
            raise Rejection(401, exc.reason, exc.detail) from None
        wait = self.buckets[source.name].take()
        if wait > 0:
            raise Rejection(
                429,
                "rate_limited",
                f"more than {source.rate_limit:g} events per second from {source.name}",
                headers={"Retry-After": retry_after_header(wait)},
            )
        try:
            document = events.parse_json(body)
            events.check_storable(document)
            normalized = adapters.normalize(source.format, document)
        except events.MalformedBody as exc:
            raise Rejection(400, "malformed_json", str(exc)) from None
        except events.PayloadError as exc:
            raise Rejection(
                422, "invalid_payload", exc.detail, field=exc.field, errors=exc.errors
            ) from None
        received_at = datetime.now(UTC)
        event = store.InboxEvent(
            source=source.name,
            event_id=verified.event_id or _fallback_event_id(normalized.event_id, body),
            event_type=normalized.event_type,
            entity_type=normalized.entity_type,
            entity_external_id=normalized.entity_external_id,
            occurred_at=normalized.occurred_at or received_at,
            received_at=received_at,
            payload=document,
            signature=verified.signature,
            signature_scheme=verified.scheme,
            message_format=source.format,
        )
        try:
            if self.committer is not None:
                stored = await self.committer.store(event)
            else:
                stored = await self._in_thread(store.store_event, self.engine, event)
        except store.InboxUnavailable as exc:
            log.warning("inbox unavailable, answering 503: %s", exc)
            raise Rejection(
                503,
                "database_unavailable",
                "the event could not be stored; nothing was accepted, send it again later",
                headers={"Retry-After": str(DB_RETRY_AFTER_SECONDS)},
            ) from None
        except store.InboxRefused as exc:
            raise Rejection(
                422, "unstorable_payload", f"the database refused the event: {exc}"
            ) from None
        if stored.duplicate:
            self.metrics.duplicates[source.name] += 1
        else:
            self.metrics.stored[source.name] += 1
        status = "duplicate" if stored.duplicate else "accepted"
        return JSONResponse({"event_id": stored.event_id, "status": status}, status_code=202)

    async def healthz(self, request: Request) -> Response:
        try:
            await self._in_thread(store.ping, self.engine)
        except store.InboxUnavailable:
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, 503)
        return JSONResponse({"status": "ok", "database": "ok", "sources": len(self.sources)})

    async def metrics_endpoint(self, request: Request) -> Response:
        return PlainTextResponse(self.metrics.render(), media_type=CONTENT_TYPE)


def create_app(
    *,
    sources: WebhookSources,
    engine: Engine,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    db_concurrency: int = DEFAULT_DB_CONCURRENCY,
    clock: Callable[[], float] = time.time,
    dispose_engine: bool = False,
    group_commit: bool = True,
) -> Starlette:
    """The receiver for ``sources`` writing to ``engine`` (migrated to head by the caller)."""
    receiver = WebhookReceiver(
        sources=sources,
        engine=engine,
        max_body_bytes=max_body_bytes,
        db_concurrency=db_concurrency,
        clock=clock,
        group_commit=group_commit,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.event_types()  # define the built-in event types before the first request
        try:
            yield
        finally:
            if dispose_engine:
                engine.dispose()

    app = Starlette(
        routes=[
            Route(EVENTS_PATH, receiver.receive, methods=["POST"]),
            Route(EVENTS_PATH + "/{source}", receiver.receive, methods=["POST"]),
            Route("/healthz", receiver.healthz, methods=["GET"]),
            Route("/metrics", receiver.metrics_endpoint, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.receiver = receiver
    return app


def create_app_from_env() -> Starlette:
    """The receiver as configured by the environment (the uvicorn factory of ``webhooks serve``)."""
    from integration_platform.state.engine import database_url, make_engine

    sources = WebhookSources.from_env()
    return create_app(sources=sources, engine=make_engine(database_url()), dispose_engine=True)
