"""A Dataverse Web API contract server (Dynamics 365 Field Service work orders, customer assets
and agreement booking setups).

Follows Microsoft's documented behaviour, the same for every entity set served under
``/api/data/v9.2`` (``msdyn_workorders``, ``msdyn_customerassets``, and
``msdyn_agreementbookingsetups``, read only here): ``$select``,
``$filter``, ``$orderby``; the page size only as ``Prefer: odata.maxpagesize`` (``$skip`` is
refused), ``@odata.nextLink`` with an opaque ``$skiptoken``; formatted values as
``<column>@OData.Community.Display.V1.FormattedValue`` when asked for with
``odata.include-annotations``; change tracking with ``Prefer: odata.track-changes``, the last
page carrying ``@odata.deltaLink`` (``$deltatoken``), a delta read answering changed rows and
``$deletedEntity`` rows, and refusing ``$filter``/``$orderby`` as Dataverse does; ``@odata.etag``
on every row and ``If-Match`` on PATCH (412 when stale, ``If-Match: *`` to forbid an upsert);
lookups written as ``<lookup>@odata.bind: /<entity set>(<id>)`` and read back as
``_<lookup>_value``; a create may name the row's id, and a second create with that id is
refused (``0x80040237``, duplicate key; the HTTP status, 412 here, is not confirmed);
OAuth2 client credentials from a token endpoint on the same server (a stand-in for Entra ID).
"""

from __future__ import annotations

import base64
import itertools
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from integration_platform_tests.contract_servers import seed
from integration_platform_tests.contract_servers.odata import (
    BadQuery,
    order_by,
    parse_filter,
    select,
    v4_date,
)
from integration_platform_tests.contract_servers.vendor_base import (
    VendorContractServer,
    now_utc,
)

API = "/api/data/v9.2"
TOKEN_PATH = "/contoso-tenant/oauth2/v2.0/token"
FORMATTED = "@OData.Community.Display.V1.FormattedValue"
SYSTEM_STATUS = {
    "WAPPR": 690970000,
    "APPR": 690970000,
    "WSCH": 690970001,
    "WMATL": 690970001,
    "INPRG": 690970002,
    "COMP": 690970003,
    "CLOSE": 690970004,
    "CAN": 690970005,
}
STATUS_NAMES = {
    690970000: "Unscheduled",
    690970001: "Scheduled",
    690970002: "In Progress",
    690970003: "Completed",
    690970004: "Posted",
    690970005: "Canceled",
}
# System statuses of a work order whose work is done (Completed, Posted).
DONE = frozenset({690970003, 690970004})
PRIORITIES = {1: "Urgent", 2: "High", 3: "Normal", 4: "Low"}
TYPES = {
    "CM": "Repair",
    "EM": "Emergency",
    "PM": "Preventive",
    "INSP": "Inspection",
    "CAL": "Calibration",
    "LUB": "Preventive",
    "CLN": "Preventive",
    "PDM": "Inspection",
}


def guid(kind: str, name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{kind}/{name}"))


def work_order_id(record_id: str) -> str:
    """The GUID of the work order with canonical id ``SITE/WONUM``."""
    return guid("msdyn_workorder", record_id)


def dataverse_order(order: Mapping[str, Any], *, changed: datetime | None = None) -> dict:
    """A seed work order as a Field Service work order: created when reported, first arrival
    at the actual start, completion (``msdyn_completedon``, kept once Posted) at the actual
    finish."""
    changed_at = changed or datetime.fromisoformat(str(order["changedate"]))
    created = datetime.fromisoformat(str(order.get("reportdate") or changed_at.isoformat()))
    record_id = f"{order['siteid']}/{order['wonum']}"
    priority = int(str(order.get("wopriority", 3)))
    status = SYSTEM_STATUS.get(str(order.get("status")), 690970000)
    actual: dict[str, str] = {}
    if order.get("actstart"):
        actual["msdyn_firstarrivedon"] = v4_date(datetime.fromisoformat(str(order["actstart"])))
    if status in DONE and order.get("actfinish"):
        actual["msdyn_completedon"] = v4_date(datetime.fromisoformat(str(order["actfinish"])))
    return {
        "msdyn_workorderid": work_order_id(record_id),
        "msdyn_name": f"WO-{order['wonum']}",
        "msdyn_workordersummary": order["description"],
        "msdyn_systemstatus": status,
        "_msdyn_serviceaccount_value": guid("account", str(order["siteid"])),
        "_msdyn_customerasset_value": (
            guid("msdyn_customerasset", str(order["assetnum"])) if order.get("assetnum") else None
        ),
        "_msdyn_priority_value": guid("msdyn_priority", str(priority)),
        "_msdyn_workordertype_value": guid("msdyn_workordertype", str(order.get("worktype"))),
        "priority_name": PRIORITIES.get(priority, "Normal"),
        "type_name": TYPES.get(str(order.get("worktype")), "Repair"),
        **actual,
        "createdon": v4_date(created),
        "modifiedon": v4_date(changed_at),
    }


def customer_asset_id(assetnum: str) -> str:
    """The GUID of the customer asset for seed asset ``assetnum`` (the work orders' lookup)."""
    return guid("msdyn_customerasset", assetnum)


def booking_setup_id(pmnum: str) -> str:
    """The GUID of the agreement booking setup for seed PM ``pmnum``."""
    return guid("msdyn_agreementbookingsetup", pmnum)


def dataverse_asset(asset: Mapping[str, Any], *, changed: datetime | None = None) -> dict:
    """A seed asset as a Field Service customer asset of the site's account."""
    changed_at = changed or datetime.fromisoformat(str(asset["changedate"]))
    installed = datetime.fromisoformat(str(asset.get("installdate") or asset["changedate"]))
    return {
        "msdyn_customerassetid": customer_asset_id(str(asset["assetnum"])),
        "msdyn_name": asset["description"],
        "_msdyn_account_value": guid("account", str(asset["siteid"])),
        "_msdyn_customerassetcategory_value": guid(
            "msdyn_customerassetcategory", str(asset.get("assettype"))
        ),
        "_msdyn_parentasset_value": None,
        "_msdyn_masterasset_value": None,
        "_msdyn_product_value": guid("product", str(asset.get("manufacturer"))),
        "statecode": 0,
        "statuscode": 1,
        "account_name": str(asset["siteid"]).title(),
        "category_name": str(asset.get("assettype") or "").title(),
        "createdon": v4_date(installed),
        "modifiedon": v4_date(changed_at),
    }


def recurrence_xml(every: int, unit: str, start: datetime) -> str:
    """Booking recurrence as Field Service keeps it in ``msdyn_recurrencesettings``."""
    period = {"DAYS": "daily", "WEEKS": "weekly", "MONTHS": "monthly", "YEARS": "yearly"}[unit]
    return (
        f"<root><pattern><period>{period}</period><option>every</option>"
        f"<{period} every='{every}'/></pattern><range><start>{start:%m/%d/%Y}</start>"
        "<option>noEndDate</option></range><datas/></root>"
    )


def dataverse_booking_setup(pm: Mapping[str, Any], *, changed: datetime | None = None) -> dict:
    """A seed PM with a calendar frequency as an agreement booking setup (Field Service has
    no meter-based recurrence)."""
    changed_at = changed or datetime.fromisoformat(str(pm["changedate"]))
    priority = int(str(pm.get("wopriority", 3)))
    worktype = str(pm.get("worktype"))
    return {
        "msdyn_agreementbookingsetupid": booking_setup_id(str(pm["pmnum"])),
        "msdyn_name": pm["description"],
        "_msdyn_agreement_value": guid("msdyn_agreement", str(pm["siteid"])),
        "_msdyn_workordertype_value": guid("msdyn_workordertype", worktype),
        "_msdyn_priority_value": guid("msdyn_priority", str(priority)),
        "msdyn_recurrencesettings": recurrence_xml(
            int(str(pm["frequency"])), str(pm["frequnit"]), changed_at - timedelta(days=30)
        ),
        "msdyn_autogenerateworkorder": True,
        "msdyn_generateworkorderdaysinadvance": 7,
        "statecode": 0 if pm.get("status") == "ACTIVE" else 1,
        "statuscode": 1 if pm.get("status") == "ACTIVE" else 2,
        "agreement_name": f"Maintenance agreement {pm['siteid']}",
        "priority_name": PRIORITIES.get(priority, "Normal"),
        "type_name": TYPES.get(worktype, "Preventive"),
        "createdon": v4_date(changed_at - timedelta(days=60)),
        "modifiedon": v4_date(changed_at),
    }


_BIND = re.compile(r"^(?:.*/)?(?P<set>\w+)\((?P<id>[0-9a-fA-F-]{36})\)$")


def bind_lookups(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A write's lookups set as Dataverse takes them, ``<lookup>@odata.bind`` =
    ``/<entity set>(<guid>)``, stored as the ``_<lookup>_value`` column reads return."""
    out: dict[str, Any] = {}
    for name, value in payload.items():
        lookup, _, annotation = name.partition("@")
        if annotation != "odata.bind":
            out[name] = value
            continue
        match = _BIND.match(str(value or ""))
        if match is None:
            raise BadQuery(f"Invalid value {value!r} for {name}: expected /<entity set>(<id>)")
        out[f"_{lookup}_value"] = match["id"].lower()
    return out


def _formatted_modified(record: Mapping[str, Any]) -> dict[str, Any]:
    moment = datetime.fromisoformat(str(record["modifiedon"]).replace("Z", "+00:00"))
    return {f"modifiedon{FORMATTED}": moment.strftime("%m/%d/%Y %I:%M %p")}


def _formatted_state(record: Mapping[str, Any]) -> dict[str, Any]:
    return {f"statecode{FORMATTED}": "Active" if record.get("statecode") == 0 else "Inactive"}


def _work_order_values(record: Mapping[str, Any]) -> dict[str, Any]:
    status = record.get("msdyn_systemstatus")
    return {
        f"msdyn_systemstatus{FORMATTED}": STATUS_NAMES.get(status, ""),  # type: ignore[arg-type]
        f"_msdyn_priority_value{FORMATTED}": record.get("priority_name"),
        f"_msdyn_workordertype_value{FORMATTED}": record.get("type_name"),
        **_formatted_modified(record),
    }


def _asset_values(record: Mapping[str, Any]) -> dict[str, Any]:
    return {
        f"_msdyn_account_value{FORMATTED}": record.get("account_name"),
        f"_msdyn_customerassetcategory_value{FORMATTED}": record.get("category_name"),
        **_formatted_state(record),
        **_formatted_modified(record),
    }


def _booking_setup_values(record: Mapping[str, Any]) -> dict[str, Any]:
    return {
        f"_msdyn_agreement_value{FORMATTED}": record.get("agreement_name"),
        f"_msdyn_priority_value{FORMATTED}": record.get("priority_name"),
        f"_msdyn_workordertype_value{FORMATTED}": record.get("type_name"),
        **_formatted_state(record),
        **_formatted_modified(record),
    }


@dataclass(frozen=True)
class EntitySet:
    """A table the server serves: the store entity, the primary id column, the display
    names sent as formatted values, and the defaults of a create (None: read only here)."""

    entity: str
    key: str
    formatted: Callable[[Mapping[str, Any]], dict[str, Any]]
    defaults: Callable[[int], dict[str, Any]] | None = None

    @property
    def logical_name(self) -> str:
        return self.key.removesuffix("id")


ENTITY_SETS = {
    "msdyn_workorders": EntitySet(
        "workorder",
        "msdyn_workorderid",
        _work_order_values,
        lambda number: {"msdyn_name": f"WO-{number}", "msdyn_systemstatus": 690970000},
    ),
    "msdyn_customerassets": EntitySet(
        "customerasset",
        "msdyn_customerassetid",
        _asset_values,
        lambda number: {"statecode": 0, "statuscode": 1},
    ),
    "msdyn_agreementbookingsetups": EntitySet(
        "bookingsetup", "msdyn_agreementbookingsetupid", _booking_setup_values
    ),
}
# Stored beside the columns to render display names; not columns themselves.
DISPLAY_NAMES = frozenset(
    {"priority_name", "type_name", "account_name", "category_name", "agreement_name"}
)


@dataclass
class DynamicsContractServer(VendorContractServer):
    """Dataverse on 127.0.0.1 over a SQLite file."""

    client_id: str = "9f1c2a7e-platform"
    client_secret: str = "dataverse-secret"
    max_page_size: int = 5000

    def __post_init__(self) -> None:
        super().__post_init__()
        self.tokens: set[str] = set()
        self._numbers = itertools.count(1)

    def seed(self) -> DynamicsContractServer:
        for order in seed.work_orders():
            self.put_order(dataverse_order(order))
        for asset in seed.assets():
            self.put("msdyn_customerassets", dataverse_asset(asset))
        for pm in seed.pms():
            if pm.get("frequency") is not None:
                self.put("msdyn_agreementbookingsetups", dataverse_booking_setup(pm))
        return self

    def put(self, entity_set: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """Store a row of ``entity_set`` as if changed in Dynamics (its modifiedon kept)."""
        table = ENTITY_SETS[entity_set]
        return self.store.put(table.entity, str(record[table.key]), record)

    def put_order(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return self.put("msdyn_workorders", record)

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    @property
    def api_url(self) -> str:
        return self.base_url + API

    # -- routing and auth ------------------------------------------------------------------

    def routes(self) -> list[Route]:
        routes = [
            Route(TOKEN_PATH, self._token, methods=["POST"]),
            Route(f"{API}/WhoAmI", self._whoami, methods=["GET"]),
        ]
        for name, table in ENTITY_SETS.items():
            create, update = (["POST"], ["PATCH"]) if table.defaults else ([], [])
            collection, entity = partial(self._collection, name), partial(self._entity, name)
            routes.append(Route(f"{API}/{name}", collection, methods=["GET", *create]))
            routes.append(Route(f"{API}/{name}({{id}})", entity, methods=["GET", *update]))
        return routes

    def is_public(self, path: str) -> bool:
        return path == TOKEN_PATH

    def is_data(self, path: str) -> bool:
        return any(path.startswith(f"{API}/{name}") for name in ENTITY_SETS)

    def error(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> Response:
        code = {400: "0x80060888", 404: "0x80040217", 412: "0x80060882"}.get(status, "0x80040216")
        body = {"error": {"code": code, "message": message}}
        return JSONResponse(body, status_code=status, headers=dict(headers or {}))

    def authenticate(self, request: Request) -> Response | None:
        authorization = request.headers.get("authorization", "")
        if authorization.startswith("Bearer ") and authorization[7:] in self.tokens:
            return None
        challenge = f"Bearer authorization_uri={self.base_url}{TOKEN_PATH.rsplit('/', 1)[0]}"
        return Response(status_code=401, headers={"WWW-Authenticate": challenge})

    async def _token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        if (form.get("client_id"), form.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return JSONResponse(
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.",
                },
                status_code=401,
            )
        token = f"dataverse-token-{next(self._numbers)}"
        self.tokens.add(token)
        return JSONResponse({"token_type": "Bearer", "expires_in": 3599, "access_token": token})

    async def _whoami(self, request: Request) -> Response:
        return JSONResponse(
            {
                "@odata.context": f"{self.api_url}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                "BusinessUnitId": guid("businessunit", "root"),
                "UserId": guid("systemuser", "integration"),
                "OrganizationId": guid("organization", "contoso"),
            }
        )

    # -- reads -----------------------------------------------------------------------------

    def _preferences(self, request: Request) -> dict[str, str]:
        prefs: dict[str, str] = {}
        for part in request.headers.get("prefer", "").split(","):
            name, _, value = part.strip().partition("=")
            if name:
                prefs[name] = value.strip('"')
        return prefs

    async def _collection(self, name: str, request: Request) -> Response:
        if request.method == "POST":
            return await self._create(name, request)
        table = ENTITY_SETS[name]
        params = request.query_params
        if "$skip" in params:
            return self.error(400, "The query parameter $skip is not supported")
        prefs = self._preferences(request)
        size = min(int(prefs.get("odata.maxpagesize", self.max_page_size)), self.max_page_size)
        tracking = "odata.track-changes" in prefs or "$deltatoken" in params
        try:
            if tracking and ("$filter" in params or "$orderby" in params):
                raise BadQuery("Change tracking does not support $filter or $orderby")
            records = self._matching(table, params)
        except BadQuery as exc:
            return self.error(400, str(exc))
        start = 0
        if params.get("$skiptoken"):
            start = int(base64.urlsafe_b64decode(params["$skiptoken"]).decode().split(":")[1])
        page = records[start : start + size]
        wanted = prefs.get("odata.include-annotations", "")
        annotations = FORMATTED[1:] in wanted or wanted in ("*", "OData.Community.Display.V1.*")
        body: dict[str, Any] = {"@odata.context": f"{self.api_url}/$metadata#{name}"}
        body["value"] = [
            self._render(name, r, params.get("$select"), annotations=annotations) for r in page
        ]
        query = {k: v for k, v in params.items() if k != "$skiptoken"}
        if start + size < len(records):
            token = base64.urlsafe_b64encode(f"page:{start + size}".encode()).decode()
            body["@odata.nextLink"] = f"{self.api_url}/{name}?" + urlencode(
                {**query, "$skiptoken": token}, safe="$,"
            )
        elif tracking:
            stamp = now_utc().strftime("%m/%d/%Y %H:%M:%S")
            query["$deltatoken"] = f"{self.store.version()}!{stamp}"
            body["@odata.deltaLink"] = f"{self.api_url}/{name}?" + urlencode(query, safe="$,")
        applied = [f"odata.maxpagesize={size}"] if "odata.maxpagesize" in prefs else []
        if tracking:
            applied.append("odata.track-changes")
        headers = {"Preference-Applied": ",".join(applied)} if applied else {}
        return JSONResponse(body, headers={"OData-Version": "4.0", **headers})

    def _matching(self, table: EntitySet, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """The rows a query asks for, in its order: changes since a delta token (deleted rows
        included, oldest change first), or the rows ``$filter`` keeps in ``$orderby`` order."""
        if "$deltatoken" in params:
            since = int(params["$deltatoken"].split("!")[0])
            records = [
                r for r in self.store.all(table.entity, deleted=True) if r["_version"] > since
            ]
            return sorted(records, key=lambda r: r["_version"])
        records = self.store.all(table.entity)
        if params.get("$filter"):
            predicate = parse_filter(params["$filter"], v2=False)
            records = [r for r in records if predicate(r)]
        return order_by(records, params.get("$orderby") or table.key)

    def _render(
        self,
        name: str,
        record: Mapping[str, Any],
        select_text: str | None,
        *,
        annotations: bool,
    ) -> dict[str, Any]:
        table = ENTITY_SETS[name]
        if record.get("_deleted"):
            return {
                "@odata.context": f"{self.api_url}/$metadata#{name}/$deletedEntity",
                "id": record[table.key],
                "reason": "deleted",
            }
        out: dict[str, Any] = {"@odata.etag": f'W/"{record["_version"]}"'}
        for column, value in record.items():
            if column.startswith("_") and not column.endswith("_value"):
                continue
            if column not in DISPLAY_NAMES:
                out[column] = value
        if annotations:
            out.update(table.formatted(record))
        return select(out, select_text, (table.key,))

    # -- writes ----------------------------------------------------------------------------

    async def _create(self, name: str, request: Request) -> Response:
        table = ENTITY_SETS[name]
        try:
            payload = await request.json()
        except ValueError:
            return self.error(400, "The request body is not valid JSON")
        now = v4_date(now_utc())
        record_id = payload.get(table.key) or str(uuid.uuid4())
        if self.store.get(table.entity, record_id) is not None:
            body = {"error": {"code": "0x80040237", "message": "Cannot insert duplicate key."}}
            return JSONResponse(body, status_code=412)
        try:
            payload = bind_lookups(payload)
        except BadQuery as exc:
            return self.error(400, str(exc))
        number = len(self.store.all(table.entity, deleted=True)) + 1001
        defaults = table.defaults(number) if table.defaults else {}
        record = {
            table.key: record_id,
            **defaults,
            **payload,
            "createdon": now,
            "modifiedon": now,
        }
        stored = self.put(name, record)
        entity = f"{self.api_url}/{name}({record_id})"
        if "return=representation" in request.headers.get("prefer", ""):
            body = self._render(name, stored, None, annotations=False)
            return JSONResponse(body, status_code=201, headers={"OData-EntityId": entity})
        return Response(status_code=204, headers={"OData-EntityId": entity})

    async def _entity(self, name: str, request: Request) -> Response:
        table = ENTITY_SETS[name]
        record_id = request.path_params["id"]
        record = self.store.get(table.entity, record_id)
        missing = f"{table.logical_name} With Id = {record_id} Does Not Exist"
        if request.method == "GET":
            if record is None:
                return self.error(404, missing)
            select_text = request.query_params.get("$select")
            return JSONResponse(self._render(name, record, select_text, annotations=False))
        expected = request.headers.get("if-match")
        if record is None:
            if expected == "*":
                return self.error(404, missing)
            record = {table.key: record_id, "_version": 0}  # PATCH is an upsert
        elif expected not in (None, "*") and expected != f'W/"{record["_version"]}"':
            return self.error(
                412,
                "The version of the existing record doesn't match the RowVersion property "
                "provided.",
            )
        try:
            changes = await request.json()
        except ValueError:
            return self.error(400, "The request body is not valid JSON")
        try:
            changes = bind_lookups(changes)
        except BadQuery as exc:
            return self.error(400, str(exc))
        merged = {k: v for k, v in record.items() if not k.startswith("_") or k.endswith("_value")}
        merged.update(changes)
        merged[table.key] = record_id
        merged["modifiedon"] = v4_date(now_utc())
        stored = self.put(name, merged)
        if "return=representation" in request.headers.get("prefer", ""):
            return JSONResponse(self._render(name, stored, None, annotations=False))
        return Response(status_code=204)

    def delete_order(self, record_id: str) -> None:
        """Delete a work order as a user would in Dynamics (seen by change tracking)."""
        self.delete("msdyn_workorders", work_order_id(record_id))

    def delete(self, entity_set: str, row_id: str) -> None:
        """Delete a row of ``entity_set`` by its GUID (seen by change tracking)."""
        self.store.delete(ENTITY_SETS[entity_set].entity, row_id)
