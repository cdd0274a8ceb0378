"""An Oracle Fusion Cloud REST contract server: maintenance work orders and assets.

Follows Oracle's REST conventions for Fusion resources: ``/fscmRestApi/resources/
11.13.18.05/maintenanceWorkOrders`` and ``.../installedBaseAssets`` (maintenance assets; GET
and PATCH by ``AssetId``) paged with ``limit`` (at most 500) and ``offset``,
answering ``items[]``, ``count``, ``hasMore``, ``limit``, ``offset``; ``q`` filters
(``LastUpdateDate>='...'``, clauses joined with ``;``), ``orderBy=Field:asc,...``, ``fields``,
``onlyData=true`` (without it each item carries ``links``), ``totalResults=true``. Items have
an ``ETag`` when fetched alone; PATCH takes ``If-Match``. Basic or OAuth2 bearer auth.
"""

from __future__ import annotations

import base64
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from integration_platform_tests.contract_servers import seed
from integration_platform_tests.contract_servers.vendor_base import (
    VendorContractServer,
    parse_instant,
)

RESOURCE = "/fscmRestApi/resources/11.13.18.05/maintenanceWorkOrders"
ASSETS = "/fscmRestApi/resources/11.13.18.05/installedBaseAssets"
ORGS = {"BEDFORD": "BED", "NASHUA": "NSH"}
ID_BASE = 300_100_000_000_000
ASSET_ID_BASE = 300_200_000_000_000
# resource -> (store entity, id attribute, resource name in links)
RESOURCES = {
    RESOURCE: ("wo", "WorkOrderId", "maintenanceWorkOrders"),
    ASSETS: ("asset", "AssetId", "installedBaseAssets"),
}
STATUS = {
    "WAPPR": "UNRELEASED",
    "APPR": "RELEASED",
    "WSCH": "RELEASED",
    "WMATL": "ON_HOLD",
    "INPRG": "RELEASED",
    "COMP": "COMPLETED",
    "CLOSE": "CLOSED",
    "CAN": "CANCELED",
}
_Q = re.compile(r"^\s*(\w+)\s*(>=|<=|=|>|<)\s*'?([^']*)'?\s*$")


def oracle_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def oracle_order(order: Mapping[str, Any], *, changed: datetime | None = None) -> dict:
    changed_at = changed or datetime.fromisoformat(str(order["changedate"]))
    return {
        "WorkOrderId": ID_BASE + int(str(order["wonum"])),
        "WorkOrderNumber": str(order["wonum"]),
        "WorkOrderDescription": order["description"],
        "WorkOrderStatusCode": STATUS.get(str(order.get("status")), "UNRELEASED"),
        "WorkOrderTypeCode": "PREVENTIVE" if order.get("worktype") == "PM" else "CORRECTIVE",
        "WorkOrderPriority": int(str(order.get("wopriority", 3))),
        "OrganizationCode": ORGS[str(order["siteid"])],
        "AssetNumber": order.get("assetnum"),
        "ActualStartDate": _actual(order.get("actstart")),
        "ActualCompletionDate": _actual(order.get("actfinish")),
        "CreationDate": oracle_time(changed_at),
        "LastUpdateDate": oracle_time(changed_at),
    }


def _actual(maximo_time: Any) -> str | None:
    """The seed's actual start/finish (Maximo-style text), as Oracle renders a date-time."""
    return oracle_time(datetime.fromisoformat(str(maximo_time))) if maximo_time else None


def oracle_asset(asset: Mapping[str, Any]) -> dict[str, Any]:
    """A seed asset as an installed base (maintenance) asset."""
    changed = oracle_time(datetime.fromisoformat(str(asset["changedate"])))
    return {
        "AssetId": ASSET_ID_BASE + int(str(asset["assetnum"])),
        "AssetNumber": str(asset["assetnum"]),
        "Description": asset["description"],
        "SerialNumber": asset["serialnum"],
        "ItemNumber": f"{asset['assettype']}-{asset['manufacturer']}".upper(),
        "OperatingOrganizationCode": ORGS[str(asset["siteid"])],
        "ParentAssetNumber": asset.get("parent"),
        "CreationDate": changed,
        "LastUpdateDate": changed,
    }


@dataclass
class OracleContractServer(VendorContractServer):
    username: str = "maint.integration"
    password: str = "Fusion#2026"
    client_id: str = "fusion-client"
    client_secret: str = "fusion-secret"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.tokens: set[str] = set()
        self._numbers = itertools.count(1)

    def seed(self) -> OracleContractServer:
        for order in seed.work_orders():
            self.put(oracle_order(order))
        for asset in seed.assets():
            record = oracle_asset(asset)
            self.store.put("asset", str(record["AssetId"]), record)
        return self

    def put(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return self.store.put("wo", str(record["WorkOrderId"]), record)

    @property
    def resource_url(self) -> str:
        return self.base_url + RESOURCE

    def routes(self) -> list[Route]:
        return [
            Route("/oauth2/v1/token", self._token, methods=["POST"]),
            Route(RESOURCE, self._collection, methods=["GET", "POST"]),
            Route(RESOURCE + "/{id}", self._item, methods=["GET", "PATCH"]),
            Route(ASSETS, self._list, methods=["GET"]),
            Route(ASSETS + "/{id}", self._item, methods=["GET", "PATCH"]),
        ]

    def is_public(self, path: str) -> bool:
        return path == "/oauth2/v1/token"

    def is_data(self, path: str) -> bool:
        return path.startswith((RESOURCE, ASSETS))

    def resource(self, request: Request) -> tuple[str, str, str, str]:
        """``(path, store entity, id attribute, name)`` of the resource a request is for."""
        path = next(p for p in RESOURCES if request.url.path.startswith(p))
        return (path, *RESOURCES[path])

    def error(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> Response:
        return PlainTextResponse(message, status_code=status, headers=dict(headers or {}))

    def authenticate(self, request: Request) -> Response | None:
        authorization = request.headers.get("authorization", "")
        if authorization.startswith("Bearer ") and authorization[7:] in self.tokens:
            return None
        if authorization.lower().startswith("basic "):
            user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            if (user, password) == (self.username, self.password):
                return None
        return self.error(401, "Unauthorized: the user name or password is invalid")

    async def _token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        if (form.get("client_id"), form.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        token = f"fusion-token-{next(self._numbers)}"
        self.tokens.add(token)
        return JSONResponse({"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    def _etag(self, record: Mapping[str, Any]) -> str:
        return f'"{record["_version"]}"'

    def _render(
        self,
        record: Mapping[str, Any],
        params: Mapping[str, str],
        resource: tuple[str, str, str, str] = (RESOURCE, *RESOURCES[RESOURCE]),
    ) -> dict[str, Any]:
        path, _, id_attribute, name = resource
        out = {k: v for k, v in record.items() if not k.startswith("_")}
        if params.get("fields"):
            wanted = set(params["fields"].split(","))
            out = {k: v for k, v in out.items() if k in wanted}
        if params.get("onlyData") != "true":
            href = f"{self.base_url}{path}/{record[id_attribute]}"
            out["links"] = [
                {
                    "rel": "self",
                    "href": href,
                    "name": name,
                    "kind": "item",
                    "properties": {"changeIndicator": "ACED0005"},
                }
            ]
        return out

    async def _collection(self, request: Request) -> Response:
        if request.method == "POST":
            payload = await request.json()
            if not payload.get("OrganizationCode"):
                return self.error(
                    400, "Attribute OrganizationCode in maintenanceWorkOrders is required"
                )
            number = max(int(r["WorkOrderNumber"]) for r in self.store.all("wo")) + 1
            now = oracle_time(datetime.now(UTC))
            record = {
                "WorkOrderId": ID_BASE + number,
                "WorkOrderNumber": str(number),
                "WorkOrderStatusCode": "UNRELEASED",
                **payload,
                "CreationDate": now,
                "LastUpdateDate": now,
            }
            stored = self.put(record)
            return JSONResponse(
                self._render(stored, {"onlyData": "true"}),
                status_code=201,
                headers={"ETag": self._etag(stored)},
            )
        return await self._list(request)

    async def _list(self, request: Request) -> Response:
        resource = self.resource(request)
        _, entity, id_attribute, resource_name = resource
        params = request.query_params
        try:
            limit = min(int(params.get("limit", "25")), 500)
            offset = int(params.get("offset", "0"))
        except ValueError:
            return self.error(400, "limit and offset must be integers")
        records = self.store.all(entity)
        for clause in filter(None, (params.get("q") or "").split(";")):
            match = _Q.match(clause)
            if match is None:
                return self.error(400, f"The query expression {clause!r} is not valid")
            name, op, raw = match.groups()
            value: Any = parse_instant(raw) if name.endswith("Date") else raw

            def current(r: Mapping[str, Any], n: str = name) -> Any:
                v = r.get(n)
                return parse_instant(v) if n.endswith("Date") and v else v

            ops = {">=": "__ge__", "<=": "__le__", "=": "__eq__", ">": "__gt__", "<": "__lt__"}
            records = [
                r
                for r in records
                if current(r) is not None and getattr(current(r), ops[op])(value) is True
            ]
        for item in reversed((params.get("orderBy") or id_attribute).split(",")):
            name, _, direction = item.partition(":")
            records.sort(
                key=lambda r, n=name: str(r.get(n)) if n.endswith("Date") else r.get(n),
                reverse=direction == "desc",
            )
        page = records[offset : offset + limit]
        body: dict[str, Any] = {
            "items": [self._render(r, params, resource) for r in page],
            "count": len(page),
            "hasMore": offset + len(page) < len(records),
            "limit": limit,
            "offset": offset,
            "links": [
                {
                    "rel": "self",
                    "href": str(request.url),
                    "name": resource_name,
                    "kind": "collection",
                }
            ],
        }
        if params.get("totalResults") == "true":
            body["totalResults"] = len(records)
        return JSONResponse(body)

    async def _item(self, request: Request) -> Response:
        resource = self.resource(request)
        _, entity, id_attribute, _ = resource
        record = self.store.get(entity, request.path_params["id"])
        if record is None:
            return self.error(404, "The requested resource was not found")
        if request.method == "GET":
            return JSONResponse(
                self._render(record, request.query_params, resource),
                headers={"ETag": self._etag(record)},
            )
        expected = request.headers.get("if-match")
        if expected is not None and expected != self._etag(record):
            return self.error(412, "The resource has been modified by another user")
        changes = await request.json()
        if id_attribute in changes and changes[id_attribute] != record[id_attribute]:
            return self.error(400, f"Attribute {id_attribute} is read-only")
        merged = {k: v for k, v in record.items() if not k.startswith("_")}
        merged.update(changes)
        merged["LastUpdateDate"] = oracle_time(datetime.now(UTC))
        stored = self.store.put(entity, str(record[id_attribute]), merged)
        return JSONResponse(
            self._render(stored, {"onlyData": "true"}, resource),
            headers={"ETag": self._etag(stored)},
        )
