"""What every vendor contract server shares: a SQLite record store, request recording and the
fault knobs, so each vendor module holds only its API's shape.

Faults (``throttle_next``, ``fail_next``, ``malformed_next``, ``slow_next``) hit the next
*data* requests (reads and writes of records), not logins or token requests: identity
providers are separate services in production, and the shared suite counts data requests.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from integration_platform_tests.contract_servers.maximo import Fault, SeenRequest
from integration_platform_tests.contract_servers.runner import LoopbackServer


class RecordStore:
    """Records as JSON in a SQLite file, each with a version number that grows on every
    write (the vendor's row version, ETag or change token)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS records (entity TEXT, key TEXT, version INTEGER,"
                " deleted INTEGER DEFAULT 0, data TEXT, PRIMARY KEY (entity, key))"
            )
            db.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INT)")
            db.execute("INSERT OR IGNORE INTO counters VALUES ('version', 1000)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10, isolation_level=None)

    def put(self, entity: str, key: str, record: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock, self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("UPDATE counters SET value = value + 1 WHERE name = 'version'")
            version = db.execute("SELECT value FROM counters WHERE name = 'version'").fetchone()[0]
            db.execute(
                "INSERT OR REPLACE INTO records VALUES (?, ?, ?, 0, ?)",
                (entity, key, version, json.dumps(dict(record))),
            )
            db.execute("COMMIT")
        return {**record, "_version": version}

    def delete(self, entity: str, key: str) -> None:
        """Mark a record deleted (kept as a tombstone for change tracking)."""
        with self._lock, self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("UPDATE counters SET value = value + 1 WHERE name = 'version'")
            version = db.execute("SELECT value FROM counters WHERE name = 'version'").fetchone()[0]
            db.execute(
                "UPDATE records SET deleted = 1, version = ? WHERE entity = ? AND key = ?",
                (version, entity, key),
            )
            db.execute("COMMIT")

    def get(self, entity: str, key: str) -> dict[str, Any] | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT version, data FROM records WHERE entity = ? AND key = ? AND deleted = 0",
                (entity, key),
            ).fetchone()
        return None if row is None else {**json.loads(row[1]), "_version": row[0]}

    def all(self, entity: str, *, deleted: bool = False) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT key, version, deleted, data FROM records WHERE entity = ?", (entity,)
            ).fetchall()
        return [
            {**json.loads(d), "_version": v, "_key": k, "_deleted": bool(x)}
            for k, v, x, d in rows
            if deleted or not x
        ]

    def version(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT value FROM counters WHERE name = 'version'").fetchone()[0]


@dataclass
class VendorContractServer:
    """Base of the vendor servers: recording, faults and authentication around ``routes()``.

    Subclasses implement ``routes``, ``authenticate`` (None when allowed, else the vendor's
    refusal), ``error`` (the vendor's error body) and ``is_data`` (which paths are data).
    """

    db_path: Path
    requests: list[SeenRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.store = RecordStore(self.db_path)
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self.app = Starlette(routes=self.routes())
        self._runner = LoopbackServer(self._guarded)

    # -- what a vendor module provides ----------------------------------------------------

    def routes(self) -> list[Route]:
        raise NotImplementedError

    def authenticate(self, request: Request) -> Response | None:
        raise NotImplementedError

    def error(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> Response:
        return PlainTextResponse(message, status_code=status, headers=dict(headers or {}))

    def is_data(self, path: str) -> bool:
        return True

    def is_public(self, path: str) -> bool:
        """Paths answered without credentials (token and login endpoints)."""
        return False

    # -- life cycle and knobs --------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self._runner.base_url

    def start(self) -> Self:
        self._runner.start()
        return self

    def stop(self) -> None:
        self._runner.stop()

    def throttle_next(self, count: int, *, retry_after: str | None = "1") -> None:
        """Answer the next ``count`` data requests with 429 (and ``Retry-After``)."""
        self._add(count, Fault("status", 429, retry_after))

    def fail_next(self, count: int, *, status: int = 503, retry_after: str | None = None) -> None:
        """Answer the next ``count`` data requests with a 5xx."""
        self._add(count, Fault("status", status, retry_after))

    def malformed_next(self, count: int = 1) -> None:
        """Cut the JSON body of the next ``count`` data answers short."""
        self._add(count, Fault("malformed"))

    def slow_next(self, count: int, *, seconds: float) -> None:
        """Delay the next ``count`` data answers by ``seconds``."""
        self._add(count, Fault("delay", seconds=seconds))

    def _add(self, count: int, fault: Fault) -> None:
        with self._lock:
            self._faults.extend([fault] * count)

    def data_requests(self, method: str | None = None) -> list[SeenRequest]:
        return [
            r
            for r in self.requests
            if self.is_data(r.path) and (method is None or r.method == method)
        ]

    def count(self, method: str | None = "GET") -> int:
        return len(self.data_requests(method))

    def refused(self) -> int:
        """How many requests were answered 401/403."""
        return sum(1 for r in self.requests if r.status in (401, 403))

    # -- the ASGI entry --------------------------------------------------------------------

    async def _guarded(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        seen = SeenRequest(
            request.method,
            request.url.path,
            dict(request.query_params),
            {k.lower(): v for k, v in request.headers.items()},
        )
        self.requests.append(seen)
        fault = None
        if self.is_data(request.url.path):
            with self._lock:
                fault = self._faults.popleft() if self._faults else None
        response: Response | None = None
        if fault is not None and fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
        if fault is not None and fault.kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            response = self.fault_response(fault.status, headers)
        if response is None and not self.is_public(request.url.path):
            response = self.authenticate(request)
        if response is None:
            await self.app(scope, receive, self._capture(send, seen, fault))
            return
        seen.status = response.status_code
        await response(scope, receive, send)

    def fault_response(self, status: int, headers: Mapping[str, str]) -> Response:
        text = {429: "Too Many Requests", 502: "Bad Gateway", 503: "Service Unavailable"}
        if status in text:
            return PlainTextResponse(text[status], status_code=status, headers=dict(headers))
        return self.error(status, "An internal error occurred.", headers)

    def _capture(self, send: Any, seen: SeenRequest, fault: Fault | None) -> Any:
        malformed = fault is not None and fault.kind == "malformed"

        async def wrapped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen.status = message["status"]
                if malformed:
                    headers = [(k, v) for k, v in message["headers"] if k != b"content-length"]
                    message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and malformed:
                body = message.get("body", b"")
                message = {**message, "body": body[: max(len(body) // 2, 1)] + b"\n<html"}
            await send(message)

        return wrapped


def parse_instant(text: str) -> datetime:
    """An ISO-8601 timestamp (``Z`` or an offset) as an aware UTC datetime."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def ordered(records: Iterable[dict[str, Any]], changed: Any, key: Any) -> list[dict[str, Any]]:
    """Records by change time, then key: the order a cursor-based read asks for."""
    return sorted(records, key=lambda r: (changed(r), key(r)))
