"""An UpKeep API v2 contract server.

Follows UpKeep's documented shape: ``POST /api/v2/auth`` with email and password answers
``{success, result: {sessionToken}}``; the token goes in the ``Session-Token`` header;
``DELETE /api/v2/auth/`` ends the session. ``GET /work-orders?limit=&offset=`` answers
``{success, results[]}`` newest-created first, with no filter on ``updatedAt`` (so clients
filter themselves); a short page is the last. Creates and updates answer ``{success,
result}``. Assets (``/assets``: list, create, update) and preventive maintenance
(``/preventative-maintenance``: list) behave the same way; their attribute names are not
confirmed by UpKeep's public documentation (the connector treats them as settings). Data
lives in SQLite, so writes show on the next read.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
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
    """A seed work order as UpKeep lists it. A complete one carries ``completedDate``: the
    actual finish, or for an order closed without doing the work (UpKeep has no cancelled
    status, so it is completed too) the change that closed it."""
    changed_at = changed or datetime.fromisoformat(str(order["changedate"]))
    created = datetime.fromisoformat(str(order.get("reportdate") or order["changedate"]))
    status = STATUS.get(str(order.get("status")), "open")
    completion: dict[str, str] = {}
    if status == "complete":
        finished = order.get("actfinish")
        completion["completedDate"] = upkeep_time(
            datetime.fromisoformat(str(finished)) if finished else changed_at
        )
    return {
        "id": f"wo{order['wonum']}",
        "workOrderNo": str(order["wonum"]),
        "title": order["description"],
        "description": order["description"],
        "priority": max(0, 4 - int(str(order.get("wopriority", 3)))),
        "status": status,
        "category": CATEGORY.get(str(order.get("worktype")), "Mechanical"),
        "asset": f"as{order['assetnum']}" if order.get("assetnum") else None,
        "location": f"loc{order['siteid']}",
        "createdAt": upkeep_time(created),
        "updatedAt": upkeep_time(changed_at),
        **completion,
    }


# Maximo frequency units as UpKeep recurrence words.
FREQUENCY = {"DAYS": "daily", "WEEKS": "weekly", "MONTHS": "monthly", "YEARS": "yearly"}
# Store entity, required attribute of a create, the record's name in error messages, and
# whether the connector writes it (the server offers only what is exercised).
COLLECTIONS = {
    "work-orders": ("workorder", "title", "Work order", True),
    "assets": ("asset", "name", "Asset", True),
    "preventative-maintenance": ("pm", "title", "Preventative maintenance", False),
}


def upkeep_asset(asset: Mapping[str, Any], *, changed: datetime | None = None) -> dict:
    """A seed asset as UpKeep would list it (``id`` ``as<assetnum>``)."""
    changed_at = changed or datetime.fromisoformat(str(asset["changedate"]))
    installed = datetime.fromisoformat(str(asset.get("installdate") or asset["changedate"]))
    return {
        "id": f"as{asset['assetnum']}",
        "name": asset["description"],
        "description": f"{asset.get('manufacturer') or ''} {asset.get('assettype') or ''}".strip(),
        "serial": asset.get("serialnum"),
        "model": None,
        "barcode": str(asset["assetnum"]),
        "category": asset.get("assettype"),
        "area": asset.get("location"),
        "location": f"loc{asset['siteid']}",
        "parentAsset": None,
        "createdAt": upkeep_time(installed),
        "updatedAt": upkeep_time(changed_at),
    }


def upkeep_pm(pm: Mapping[str, Any], *, changed: datetime | None = None) -> dict:
    """A seed PM as UpKeep preventive maintenance (``id`` ``pm<number>``): a calendar
    recurrence, or only a meter for meter-based PMs."""
    changed_at = changed or datetime.fromisoformat(str(pm["changedate"]))
    meters = pm.get("pmmeter") or []
    unit = FREQUENCY.get(str(pm.get("frequnit")))
    return {
        "id": str(pm["pmnum"]).lower(),
        "title": pm["description"],
        "description": pm["description"],
        "asset": f"as{pm['assetnum']}",
        "location": f"loc{pm['siteid']}",
        "priority": max(0, 4 - int(str(pm.get("wopriority", 3)))),
        "category": CATEGORY.get(str(pm.get("worktype")), "Preventive"),
        "frequency": unit,
        "interval": pm.get("frequency") if unit else None,
        "meter": f"me{meters[0]['metername']}" if meters else None,
        "nextDueDate": upkeep_time(changed_at + timedelta(days=30)) if unit else None,
        "createdAt": upkeep_time(changed_at - timedelta(days=90)),
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
        for asset in seed.assets():
            self.put_asset(upkeep_asset(asset))
        for pm in seed.pms():
            self.put_pm(upkeep_pm(pm))
        return self

    def put_order(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return self.store.put("workorder", str(record["id"]), record)

    def put_asset(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return self.store.put("asset", str(record["id"]), record)

    def put_pm(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Store preventive maintenance as if changed in UpKeep (its updatedAt kept)."""
        return self.store.put("pm", str(record["id"]), record)

    @property
    def api_url(self) -> str:
        return self.base_url + API

    def routes(self) -> list[Route]:
        routes = [
            Route(f"{API}/auth", self._login, methods=["POST"]),
            Route(f"{API}/auth/", self._logout, methods=["DELETE"]),
        ]
        for name, (*_, writable) in COLLECTIONS.items():
            collection, member = partial(self._collection, name), partial(self._member, name)
            create, update = (["POST"], ["PATCH"]) if writable else ([], [])
            routes.append(Route(f"{API}/{name}", collection, methods=["GET", *create]))
            routes.append(Route(f"{API}/{name}/{{id}}", member, methods=["GET", *update]))
        return routes

    def is_public(self, path: str) -> bool:
        return path == f"{API}/auth"

    def is_data(self, path: str) -> bool:
        return any(path.startswith(f"{API}/{name}") for name in COLLECTIONS)

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

    async def _collection(self, name: str, request: Request) -> Response:
        entity, required, *_ = COLLECTIONS[name]
        if request.method == "POST":
            payload = await request.json()
            if not payload.get(required):
                return self.error(400, f"{required} is required")
            record = self._new_record(entity, payload)
            stored = self.store.put(entity, str(record["id"]), record)
            return JSONResponse({"success": True, "result": self._plain(stored)})
        try:
            limit = int(request.query_params.get("limit", "100"))
            offset = int(request.query_params.get("offset", "0"))
        except ValueError:
            return self.error(400, "limit and offset must be integers")
        records = sorted(self.store.all(entity), key=lambda r: (r["createdAt"], r["id"]))
        records.reverse()
        page = records[offset : offset + min(limit, 200)]
        return JSONResponse({"success": True, "results": [self._plain(r) for r in page]})

    def _new_record(self, entity: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """A created record: UpKeep's defaults, the payload, fresh id and timestamps."""
        now = upkeep_time(datetime.now(UTC))
        number = 2000 + next(self._numbers)
        if entity == "workorder":
            defaults: dict[str, Any] = {
                "id": f"wo{number}",
                "workOrderNo": str(number),
                "status": "open",
                "priority": 0,
                "asset": None,
                "location": None,
            }
        else:
            defaults = {"id": f"as{number}", "location": None, "parentAsset": None}
        return {**defaults, **payload, "createdAt": now, "updatedAt": now}

    async def _member(self, name: str, request: Request) -> Response:
        entity, _, label, _ = COLLECTIONS[name]
        record = self.store.get(entity, request.path_params["id"])
        if record is None:
            return self.error(404, f"{label} not found")
        if request.method == "GET":
            return JSONResponse({"success": True, "result": self._plain(record)})
        changes = await request.json()
        merged = {**self._plain(record), **changes, "id": record["id"]}
        merged["updatedAt"] = upkeep_time(datetime.now(UTC))
        stored = self.store.put(entity, str(record["id"]), merged)
        return JSONResponse({"success": True, "result": self._plain(stored)})

    def _plain(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in record.items() if not k.startswith("_")}
