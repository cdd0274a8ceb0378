"""A small API guarded by OAuth2 client credentials or a session-token login, for the auth
schemes of the REST base: tokens are issued, expire on demand (``revoke_tokens``), and a
request with a stale token gets 401 like a real identity provider's API would answer."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from integration_platform_tests.contract_servers.runner import LoopbackServer


@dataclass
class TokenAuthServer:
    client_id: str = "platform"
    client_secret: str = "s3cret"
    email: str = "planner@example.com"
    password: str = "pa55"
    logins: int = 0
    valid: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        app = Starlette(
            routes=[
                Route("/oauth2/token", self._token, methods=["POST"]),
                Route("/api/v2/auth", self._login, methods=["POST"]),
                Route("/api/v2/work-orders", self._items, methods=["GET"]),
            ]
        )
        self._runner = LoopbackServer(app)

    @property
    def base_url(self) -> str:
        return self._runner.base_url

    def start(self) -> TokenAuthServer:
        self._runner.start()
        return self

    def stop(self) -> None:
        self._runner.stop()

    def revoke_tokens(self) -> None:
        with self._lock:
            self.valid.clear()

    def _issue(self) -> str:
        with self._lock:
            token = f"token-{next(self._numbers)}"
            self.valid.add(token)
            self.logins += 1
            return token

    async def _token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        if (form.get("client_id"), form.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        return JSONResponse(
            {"access_token": self._issue(), "token_type": "Bearer", "expires_in": 3599}
        )

    async def _login(self, request: Request) -> Response:
        body = await request.json()
        if (body.get("email"), body.get("password")) != (self.email, self.password):
            return JSONResponse({"success": False, "message": "Invalid credentials"}, 401)
        return JSONResponse({"success": True, "result": {"sessionToken": self._issue()}})

    async def _items(self, request: Request) -> Response:
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        token = request.headers.get("session-token") or bearer
        if token not in self.valid:
            return JSONResponse({"success": False, "message": "Session expired"}, 401)
        offset = int(request.query_params.get("offset", "0"))
        limit = int(request.query_params.get("limit", "200"))
        items = [{"id": str(i), "title": f"Work order {i}"} for i in range(7)]
        return JSONResponse({"success": True, "results": items[offset : offset + limit]})
