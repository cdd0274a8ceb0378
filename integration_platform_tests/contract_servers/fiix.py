"""A Fiix CMMS API contract server: one signed RPC endpoint.

Follows Fiix's published client shape: ``POST /api/?service=cmms&appKey=..&accessKey=..
&signatureMethod=HmacSHA256&signatureVersion=1`` with ``Authorization`` = hex HMAC-SHA256 of
the URL without its scheme, keyed with the API secret, and a ``text/plain`` JSON body naming
the request in ``_maCn``: ``FindRequest`` (``className``, ``fields``, ``filters`` as
``{"ql": "... >= ?", "parameters": [...]}``, ``orderBy``, ``maxObjects``,
``startObjectIndex``), ``AddRequest`` and ``ChangeRequest`` (``object``, ``changeFields``).
Classes: ``WorkOrder``, ``Asset`` and ``ScheduledMaintenance`` (whose change stamp is
``dtmUpdatedDate``, as in Fiix's generated client classes).
Field names carry type prefixes; ``dtm*`` values are epoch milliseconds. Request errors come
back with HTTP 200 and an ``error`` object; a bad signature with 401. The paging fields and
the error statuses are not confirmed by Fiix's public documentation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from integration_platform_tests.contract_servers import seed
from integration_platform_tests.contract_servers.vendor_base import VendorContractServer

SITES = {"BEDFORD": 1, "NASHUA": 2}
# WorkOrderStatus ids of a new tenant's default records: 1 Requested, 2 Assigned, 3 Open,
# 4 Work In Progress, 5 On Hold, 6 Closed, 7 Cancelled (the built-in mapping assumes the same).
STATUS = {"WAPPR": 1, "APPR": 2, "WSCH": 2, "WMATL": 5, "INPRG": 4, "COMP": 6, "CLOSE": 6, "CAN": 7}
CLOSED = 6
TYPES = {"PM": 1, "LUB": 1, "CLN": 1, "CM": 2, "EM": 4, "INSP": 5, "CAL": 5, "PDM": 5}
CLASSES = {
    "WorkOrder": "workorder",
    "Asset": "asset",
    "ScheduledMaintenance": "scheduledmaintenance",
}
# ScheduledMaintenanceStatus ids: active, paused (unconfirmed, as the field names).
SM_STATUS = {"ACTIVE": 1, "INACTIVE": 2}
# The field each class stamps on a change.
CHANGE_STAMPS = {"scheduledmaintenance": "dtmUpdatedDate"}
_QL = re.compile(r"^\s*(\w+)\s*(>=|<=|=|>|<)\s*\?\s*$")


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def fiix_order(order: Mapping[str, Any], *, changed: datetime | None = None) -> dict[str, Any]:
    """A seed work order as a Fiix ``WorkOrder``; a closed one carries ``dtmDateCompleted``,
    the actual finish (or the change that closed it when none was recorded)."""
    changed_at = changed or datetime.fromisoformat(str(order["changedate"]))
    created = datetime.fromisoformat(str(order.get("reportdate") or order["changedate"]))
    status = STATUS.get(str(order.get("status")), 1)
    completion: dict[str, int] = {}
    if status == CLOSED:
        finished = order.get("actfinish")
        completed = datetime.fromisoformat(str(finished)) if finished else changed_at
        completion["dtmDateCompleted"] = epoch_ms(completed)
    return {
        "id": int(str(order["wonum"])),
        "strCode": f"WO{order['wonum']}",
        "strDescription": order["description"],
        "intSiteID": SITES[str(order["siteid"])],
        "strAssetIds": str(order.get("assetnum") or ""),
        "intPriorityID": int(str(order.get("wopriority", 3))),
        "intWorkOrderStatusID": status,
        "intMaintenanceTypeID": TYPES.get(str(order.get("worktype")), 2),
        "dtmDateCreated": epoch_ms(created),
        **completion,
        "dtmDateLastModified": epoch_ms(changed_at),
        "strAssignedUsers": str(order.get("lead") or ""),
    }


def fiix_schedule(object_id: int, pm: Mapping[str, Any], *, changed: datetime) -> dict[str, Any]:
    """A Maximo-shaped seed PM as a Fiix ``ScheduledMaintenance`` object."""
    return {
        "id": object_id,
        "strCode": str(pm["pmnum"]),
        "strDescription": pm["description"],
        "intSiteID": SITES[str(pm["siteid"])],
        "intScheduledMaintenanceStatusID": SM_STATUS.get(str(pm["status"]), 1),
        "intMaintenanceTypeID": TYPES.get(str(pm.get("worktype")), 1),
        "intPriorityID": int(str(pm.get("wopriority", 3))),
        "dblSuggestedTime": 2.5,
        "dtmCreateDate": epoch_ms(changed) - 86_400_000 * 30,
        "dtmUpdatedDate": epoch_ms(changed),
    }


@dataclass
class FiixContractServer(VendorContractServer):
    app_key: str = "macmms-app-key"
    access_key: str = "macmms-access-key"
    secret: str = "macmms-secret"

    def seed(self) -> FiixContractServer:
        for order in seed.work_orders():
            self.put("workorder", fiix_order(order))
        for index, asset in enumerate(seed.assets()):
            changed = datetime.fromisoformat(str(asset["changedate"]))
            self.put(
                "asset",
                {
                    "id": 500 + index,
                    "strCode": asset["assetnum"],
                    "strName": asset["description"],
                    "intSiteID": 1,
                    "dtmDateLastModified": epoch_ms(changed),
                },
            )
        for index, pm in enumerate(seed.pms()):
            changed = datetime.fromisoformat(str(pm["changedate"]))
            self.put("scheduledmaintenance", fiix_schedule(900 + index, pm, changed=changed))
        return self

    def put(self, entity: str, record: Mapping[str, Any]) -> dict[str, Any]:
        return self.store.put(entity, str(record["id"]), record)

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    def routes(self) -> list[Route]:
        return [Route("/api/", self._rpc, methods=["POST"])]

    def error(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> Response:
        body = {
            "_maCn": "Response",
            "error": {"_maCn": "MaError", "code": status, "message": message},
        }
        return JSONResponse(body, status_code=status, headers=dict(headers or {}))

    def authenticate(self, request: Request) -> Response | None:
        query = request.scope["query_string"].decode()
        params = dict(request.query_params)
        url = f"{request.headers['host']}{request.scope['path']}?{query}"
        expected = hmac.new(self.secret.encode(), url.encode(), hashlib.sha256).hexdigest()
        if (
            params.get("appKey") == self.app_key
            and params.get("accessKey") == self.access_key
            and params.get("signatureMethod") == "HmacSHA256"
            and hmac.compare_digest(request.headers.get("authorization", ""), expected)
        ):
            return None
        return self.error(401, "Authentication failed: the request signature is not valid.")

    def _fail(self, message: str, name: str = "Response") -> Response:
        return JSONResponse(
            {"_maCn": name, "error": {"_maCn": "MaError", "code": 6000, "message": message}}
        )

    async def _rpc(self, request: Request) -> Response:
        if request.query_params.get("service") != "cmms":
            return self._fail("Unknown service.")
        try:
            body = json.loads(await request.body())
        except ValueError:
            return self._fail("The request body is not valid JSON.")
        kind = body.get("_maCn")
        entity = CLASSES.get(str(body.get("className")))
        if entity is None:
            return self._fail(f"Unknown className {body.get('className')!r}.", f"{kind}Response")
        if kind == "FindRequest":
            return self._find(body, entity)
        if kind == "AddRequest":
            return self._add_object(body, entity)
        if kind == "ChangeRequest":
            return self._change(body, entity)
        return self._fail(f"Unknown request {kind!r}.")

    def _fields(self, body: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
        wanted = [f.strip() for f in str(body.get("fields") or "").split(",") if f.strip()]
        shown = {k: v for k, v in record.items() if not k.startswith("_")}
        if wanted:
            shown = {k: v for k, v in shown.items() if k in wanted or k == "id"}
        return {"_maCn": body["className"], **shown}

    def _find(self, body: Mapping[str, Any], entity: str) -> Response:
        records = self.store.all(entity)
        for clause in body.get("filters") or []:
            match = _QL.match(str(clause.get("ql", "")))
            if match is None or len(clause.get("parameters") or []) != 1:
                return self._fail(f"Cannot parse filter {clause!r}.", "FindResponse")
            name, op, value = match[1], match[2], clause["parameters"][0]
            compare = {
                ">=": lambda a, b: a >= b,
                "<=": lambda a, b: a <= b,
                "=": lambda a, b: a == b,
                ">": lambda a, b: a > b,
                "<": lambda a, b: a < b,
            }[op]
            records = [r for r in records if r.get(name) is not None and compare(r[name], value)]
        order = [o.strip() for o in str(body.get("orderBy") or "id").split(",") if o.strip()]
        records.sort(key=lambda r: tuple(r.get(o) or 0 for o in order))
        start = int(body.get("startObjectIndex") or 0)
        size = int(body.get("maxObjects") or 1000)
        page = records[start : start + size]
        return JSONResponse(
            {
                "_maCn": "FindResponse",
                "totalObjects": len(records),
                "objects": [self._fields(body, r) for r in page],
            }
        )

    def _add_object(self, body: Mapping[str, Any], entity: str) -> Response:
        obj = {k: v for k, v in dict(body.get("object") or {}).items() if k != "_maCn"}
        if entity == "workorder" and not obj.get("intSiteID"):
            return self._fail("intSiteID is required.", "AddResponse")
        obj["id"] = max((int(r["id"]) for r in self.store.all(entity)), default=0) + 1
        now = epoch_ms(datetime.now(UTC))
        obj.setdefault("strCode", f"WO{obj['id']}")
        obj.setdefault("intWorkOrderStatusID", 1)
        obj["dtmDateCreated"] = obj["dtmDateLastModified"] = now
        stored = self.put(entity, obj)
        return JSONResponse({"_maCn": "AddResponse", "object": self._fields(body, stored)})

    def _change(self, body: Mapping[str, Any], entity: str) -> Response:
        obj = dict(body.get("object") or {})
        current = self.store.get(entity, str(obj.get("id")))
        if current is None:
            return self._fail(f"No {body['className']} with id {obj.get('id')}.", "ChangeResponse")
        fields = [f.strip() for f in str(body.get("changeFields") or "").split(",") if f.strip()]
        if not fields:
            return self._fail("changeFields is required.", "ChangeResponse")
        merged = {k: v for k, v in current.items() if not k.startswith("_")}
        merged.update({name: obj.get(name) for name in fields})
        merged[CHANGE_STAMPS.get(entity, "dtmDateLastModified")] = epoch_ms(datetime.now(UTC))
        stored = self.put(entity, merged)
        return JSONResponse({"_maCn": "ChangeResponse", "object": self._fields(body, stored)})
