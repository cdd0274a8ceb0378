"""An UpKeep API v2 contract server.

Follows UpKeep's documented shape: ``POST /api/v2/auth`` with email and password answers
``{success, result: {sessionToken}}``; the token goes in the ``Session-Token`` header;
``DELETE /api/v2/auth/`` ends the session. ``GET /work-orders?limit=&offset=`` answers
``{success, results[]}`` newest-created first, with no filter on ``updatedAt`` (so clients
filter themselves); a short page is the last. Creates and updates answer ``{success,
result}``. Data lives in SQLite, so writes show on the next read.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from integration_platform_tests.contract_servers import seed
from integration_platform_tests.contract_servers.vendor_base import VendorContractServer

API = "/api/v2"
STATUS = {
    "WAPPR": "open",
    "APPR": "open",
    "WSCH": "open",
    "WMATL": "onHold",
    "INPRG": "inProgress",
    "COMP": "complete",
    "CLOSE": "complete",
    "CAN": "complete",
}
CATEGORY = {
    "CM": "Mechanical",
    "EM": "Damage",
    "PM": "Preventive",
    "INSP": "Inspection",
    "CAL": "Electrical",
    "LUB": "Preventive",
    "CLN": "Preventive",
    "PDM": "Inspection",
}


def upkeep_time(moment: datetime) -> str:
    """UpKeep's timestamps: ISO-8601 in UTC with milliseconds and ``Z``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def upkeep_order(order: Mapping[str, Any], *, changed: datetime | None = None) -> dict:
    changed_at = changed or datetime.fromisoformat(str(order["changedate"]))
    created = datetime.fromisoformat(str(order.get("reportdate") or order["changedate"]))
    return {
        "id": f"wo{order['wonum']}",
        "workOrderNo": str(order["wonum"]),
        "title": order["description"],
        "description": order["description"],
        "priority": max(0, 4 - int(str(order.get("wopriority", 3)))),
        "status": STATUS.get(str(order.get("status")), "open"),
        "category": CATEGORY.get(str(order.get("worktype")), "Mechanical"),
        "asset": f"as{order['assetnum']}" if order.get("assetnum") else None,
        "location": f"loc{order['siteid']}",
        "createdAt": upkeep_time(created),
        "updatedAt": upkeep_time(changed_at),
    }


@dataclass
class UpKeepContractServer(VendorContractServer):
    email: str = "planner@example.com"
    password: str = "up-keep-pass"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.sessions: set[str] = set()
        self.logouts = 0
        self._numbers = itertools.count(1)

    def seed(self) -> UpKeepContractServer:
        for order in seed.work_orders():
            self.put_order(upkeep_order(order))
        return self

    def put_order(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return self.store.put("workorder", str(record["id"]), record)

    @property
    def api_url(self) -> str:
        return self.base_url + API

    def routes(self) -> list[Route]:
        return [
            Route(f"{API}/auth", self._login, methods=["POST"]),
            Route(f"{API}/auth/", self._logout, methods=["DELETE"]),
            Route(f"{API}/work-orders", self._collection, methods=["GET", "POST"]),
            Route(f"{API}/work-orders/{{id}}", self._member, methods=["GET", "PATCH"]),
        ]

    def is_public(self, path: str) -> bool:
        return path == f"{API}/auth"

    def is_data(self, path: str) -> bool:
        return path.startswith(f"{API}/work-orders")

    def error(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> Response:
        body = {"success": False, "message": message}
        return JSONResponse(body, status_code=status, headers=dict(headers or {}))

    def authenticate(self, request: Request) -> Response | None:
        if request.headers.get("session-token") in self.sessions:
            return None
        return self.error(401, "Session token is invalid or has expired")

    async def _login(self, request: Request) -> Response:
        body = await request.json()
        if (body.get("email"), body.get("password")) != (self.email, self.password):
            return self.error(401, "Invalid email or password")
        token = f"r:session{next(self._numbers):04d}"
        self.sessions.add(token)
        return JSONResponse({"success": True, "result": {"sessionToken": token}})

    async def _logout(self, request: Request) -> Response:
        self.sessions.discard(request.headers.get("session-token", ""))
        self.logouts += 1
        return JSONResponse({"success": True})

    async def _collection(self, request: Request) -> Response:
        if request.method == "POST":
            payload = await request.json()
            if not payload.get("title"):
                return self.error(400, "title is required")
            now = upkeep_time(datetime.now(UTC))
            number = 2000 + next(self._numbers)
            record = {
                "id": f"wo{number}",
                "workOrderNo": str(number),
                "status": "open",
                "priority": 0,
                "asset": None,
                "location": None,
                **payload,
                "createdAt": now,
                "updatedAt": now,
            }
            return JSONResponse({"success": True, "result": self._plain(self.put_order(record))})
        try:
            limit = int(request.query_params.get("limit", "100"))
            offset = int(request.query_params.get("offset", "0"))
        except ValueError:
            return self.error(400, "limit and offset must be integers")
        records = sorted(self.store.all("workorder"), key=lambda r: (r["createdAt"], r["id"]))
        records.reverse()
        page = records[offset : offset + min(limit, 200)]
        return JSONResponse({"success": True, "results": [self._plain(r) for r in page]})

    async def _member(self, request: Request) -> Response:
        record = self.store.get("workorder", request.path_params["id"])
        if record is None:
            return self.error(404, "Work order not found")
        if request.method == "GET":
            return JSONResponse({"success": True, "result": self._plain(record)})
        changes = await request.json()
        merged = {**self._plain(record), **changes, "id": record["id"]}
        merged["updatedAt"] = upkeep_time(datetime.now(UTC))
        return JSONResponse({"success": True, "result": self._plain(self.put_order(merged))})

    def _plain(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in record.items() if not k.startswith("_")}
