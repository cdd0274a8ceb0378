"""An SAP S/4HANA OData contract server: API_MAINTENANCEORDER, API_EQUIPMENT and
API_MAINTENANCEPLAN.

Follows SAP Gateway's published behaviour: OData V2 under ``/sap/opu/odata/sap/<service>``
(``d.results``, ``d.__next`` with a ``$skiptoken``, ``__metadata`` with an ETag, dates as
``/Date(ms)/``, typed literals ``datetimeoffset'...'`` in ``$filter``) and V4 under
``/sap/opu/odata4/sap/<service>/srvd/sap/<service>/0001/`` (``value[]``, ``@odata.nextLink``,
``Prefer: odata.maxpagesize``, ``@odata.etag``). The server chooses the V2 page size.
``$filter`` takes comparisons and ``startswith(Property,'text')`` (V2 also as
``startswith(...) eq true``).
Writes need a CSRF token fetched with ``X-CSRF-Token: Fetch`` and the session cookies set by
that fetch; a write without them gets ``403`` with ``x-csrf-token: Required``. Maintenance
orders are created and updated; equipment time segments are updated, addressed by their
composite key ``Equipment(Equipment='...',ValidityEndDate=datetime'...')`` (V4:
``ValidityEndDate=9999-12-31``). Maintenance plans are read (the entity set
``MaintenancePlan``) with their cycles and items as navigation properties: ``$expand`` brings
them in the same answer (V2 ``{"results": [...]}`` with ``$select=to_Item/Equipment``, V4 a
list with ``$expand=to_Item($select=Equipment)``); unexpanded, V2 sends ``__deferred`` links
and V4 leaves them out.
``drop_sessions_next`` loses the sessions before the next writes, as a load balancer without
affinity does. ``sap-client`` picks the client (only the configured ones exist).
"""

from __future__ import annotations

import base64
import itertools
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from integration_platform_tests.contract_servers import seed
from integration_platform_tests.contract_servers.odata import (
    BadQuery,
    literal,
    order_by,
    parse_filter,
    select,
    v2_date,
    v4_date,
)
from integration_platform_tests.contract_servers.vendor_base import (
    VendorContractServer,
    now_utc,
)

V2_ROOT = "/sap/opu/odata/sap"
V4_ROOT = "/sap/opu/odata4/sap"
ORDERS_V2 = f"{V2_ROOT}/API_MAINTENANCEORDER"
EQUIPMENT_V2 = f"{V2_ROOT}/API_EQUIPMENT"
ORDERS_V4 = f"{V4_ROOT}/api_maintenanceorder/srvd/sap/api_maintenanceorder/0001"
EQUIPMENT_V4 = f"{V4_ROOT}/api_equipment/srvd/sap/api_equipment/0001"
PLANS_V2 = f"{V2_ROOT}/API_MAINTENANCEPLAN"
PLANS_V4 = f"{V4_ROOT}/api_maintenanceplan/srvd/sap/api_maintenanceplan/0001"
PLANS_PLANT = "1010"
PLANTS = {"BEDFORD": "1010", "NASHUA": "1020"}
ORDER_BASE = 4_000_000
PLAN_BASE = 5_000_000
TYPES = {
    "CM": "PM01",
    "EM": "PM01",
    "PM": "PM02",
    "LUB": "PM02",
    "CLN": "PM02",
    "CAL": "PM03",
    "INSP": "PM03",
    "PDM": "PM03",
}
STATUS = {
    "WAPPR": "CRTD",
    "APPR": "REL",
    "WSCH": "REL",
    "WMATL": "REL MSPT",
    "INPRG": "REL PCNF",
    "COMP": "REL CNF",
    "CLOSE": "TECO",
    "CAN": "DLFL",
}
END_OF_TIME = datetime(9999, 12, 31, tzinfo=UTC)
# Key properties, which an update may not change.
KEYS = {
    "order": ("MaintenanceOrder",),
    "equipment": ("Equipment", "ValidityEndDate"),
    "plan": ("MaintenancePlan",),
}
SET_NAMES = {"order": "MaintenanceOrder", "equipment": "Equipment", "plan": "MaintenancePlan"}
# Navigation properties stored with the record (as lists of child records).
NAVIGATION = {"plan": ("to_MaintenanceCycle", "to_Item")}
CYCLE_UNITS = {"DAYS": "DAY", "WEEKS": "WK", "MONTHS": "MON", "YEARS": "YR"}
# Properties of the MaintenanceOrder entity type the server knows (a part of SAP's published
# type); a $select naming another is refused with 400, as SAP does. Sets not listed here
# accept any name.
PROPERTIES = {
    "order": frozenset(
        {
            "MaintenanceOrder", "MaintenanceOrderType", "MaintenanceOrderDesc",
            "MaintOrdBasicStartDateTime", "MaintOrdBasicEndDateTime",
            "MaintOrdSchedldBscStrtDateTime", "MaintOrdSchedldBscEndDateTime",
            "MaintOrderReferenceDateTime", "MainWorkCompletedDateTime",
            "MaintenanceNotification", "MainWorkCenter", "MainWorkCenterPlant",
            "MaintenancePlanningPlant", "MaintenancePlant", "Equipment", "EquipmentName",
            "FunctionalLocation", "MaintenancePlannerGroup", "MaintenanceActivityType",
            "MaintPriority", "MaintPriorityType", "CostCenter", "LatestAcceptableCompletionDate",
            "MaintOrdPersonResponsible", "LastChangeByUser", "LastChangeDateTime",
            "CreatedByUser", "MaintOrderCreationDateTime", "MaintenancePlan", "MaintenanceCall",
            "MaintenanceItem", "SystemStatusText", "UserStatusText",
        }
    ),
}  # fmt: skip


def order_number(wonum: int | str) -> str:
    return str(ORDER_BASE + int(wonum))


def sap_order(work_order: Mapping[str, Any], *, changed: datetime | None = None) -> dict:
    """A seed work order as an SAP maintenance order (values kept as instants until
    rendered for V2 or V4).

    The basic dates come from the scheduled start and target finish. The header carries no
    actual finish: an order whose work is done (finally confirmed or technically completed)
    has its main work completed at the actual finish, and a technically completed one its
    reference date at the change that completed it.
    """
    changed_at = changed or datetime.fromisoformat(str(work_order["changedate"]))
    reported = work_order.get("reportdate")
    status = str(work_order.get("status"))
    dates: dict[str, Any] = {
        "MaintOrdBasicStartDateTime": work_order.get("schedstart"),
        "MaintOrdBasicEndDateTime": work_order.get("targcompdate"),
    }
    if status in ("COMP", "CLOSE"):
        dates["MainWorkCompletedDateTime"] = work_order.get("actfinish")
    if status == "CLOSE":
        dates["MaintOrderReferenceDateTime"] = changed_at
    instants = {
        name: datetime.fromisoformat(str(value)).astimezone(UTC).isoformat()
        for name, value in dates.items()
        if value
    }
    return {
        "MaintenanceOrder": order_number(str(work_order["wonum"])),
        "MaintenanceOrderType": TYPES.get(str(work_order.get("worktype")), "PM01"),
        "MaintenanceOrderDesc": work_order["description"],
        "MaintenancePlanningPlant": PLANTS[str(work_order["siteid"])],
        "MaintenancePlant": PLANTS[str(work_order["siteid"])],
        "Equipment": f"100{work_order['assetnum']}" if work_order.get("assetnum") else "",
        "FunctionalLocation": "",
        "MaintPriority": str(work_order.get("wopriority", "3")),
        "SystemStatusText": STATUS.get(str(work_order.get("status")), "CRTD"),
        "MaintOrderCreationDateTime": (
            datetime.fromisoformat(str(reported)) if reported else changed_at
        ).isoformat(),
        **instants,
        "LastChangeDateTime": changed_at.astimezone(UTC).isoformat(),
    }


def plan_number(pmnum: str) -> str:
    """The maintenance plan number of seed PM ``pmnum`` (``PM1001`` -> ``5001001``)."""
    return str(PLAN_BASE + int(str(pmnum).removeprefix("PM")))


def sap_plan(pm: Mapping[str, Any], *, changed: datetime | None = None) -> dict[str, Any]:
    """A seed PM as a single-cycle maintenance plan with one item: a time cycle from its
    frequency, or a counter cycle on a measuring point for a meter-only PM."""
    changed_at = changed or datetime.fromisoformat(str(pm["changedate"]))
    plan = plan_number(str(pm["pmnum"]))
    started = datetime.fromisoformat(str(pm.get("laststartdate") or pm["changedate"]))
    cycle: dict[str, Any] = {"MaintenancePlan": plan, "MaintenancePlanCycle": "1"}
    if pm.get("frequency") is not None:
        cycle |= {
            "MaintPlanCycRcrrcIntervalQty": str(pm["frequency"]),
            "MaintPlanCycRcrrcIntervalUnit": CYCLE_UNITS[str(pm["frequnit"])],
            "MaintPlanCycleDesc": f"Every {pm['frequency']} {str(pm['frequnit']).lower()}",
            "MeasuringPoint": "",
        }
    else:
        meter = (pm.get("pmmeter") or [{}])[0]
        cycle |= {
            "MaintPlanCycRcrrcIntervalQty": str(meter.get("frequency")),
            "MaintPlanCycRcrrcIntervalUnit": "H",
            "MaintPlanCycleDesc": f"Every {meter.get('frequency')} {meter.get('metername')}",
            "MeasuringPoint": f"MP-{pm['assetnum']}",
        }
    cycle["MaintenancePlanCycleIsInactive"] = False
    item = {
        "MaintenanceItem": plan,
        "MaintenanceItemDescription": pm["description"],
        "MaintenancePlan": plan,
        "Equipment": f"100{pm['assetnum']}",
        "FunctionalLocationLabelName": "",
        "TaskListType": "A",
        "TaskListGroup": f"TL{pm['assetnum']}",
        "TaskListGroupCounter": "1",
        "MaintenanceOrderType": TYPES.get(str(pm.get("worktype")), "PM02"),
        "MaintPriority": str(pm.get("wopriority", "3")),
        "MaintenancePlanningPlant": PLANS_PLANT,
    }
    return {
        "MaintenancePlan": plan,
        "MaintenancePlanDesc": pm["description"],
        "MaintenancePlanCategory": "PM",
        "MaintenanceStrategy": "",
        "MaintPlanSchedgIndicator": "",
        "SchedulingDuration": "365",
        "SchedulingDurationUnit": "DAY",
        "CycleModificationRatio": "1.00",
        "BasicStartDate": started.isoformat(),
        "SchedulingStartDate": started.isoformat(),
        "NumberOfMaintenanceItems": "1",
        "MaintenancePlanCallObject": "1",
        "MaintenancePlanSystemStatus": "" if pm.get("status") == "ACTIVE" else "INAK",
        "CreationDate": (changed_at - timedelta(days=365)).isoformat(),
        "LastChangeDateTime": changed_at.astimezone(UTC).isoformat(),
        "to_MaintenanceCycle": [cycle],
        "to_Item": [item],
    }


def parse_expand(text: str) -> dict[str, list[str] | None]:
    """``$expand`` as navigation -> nested ``$select`` (V4 ``to_Item($select=a,b)``), None
    when the child is expanded whole."""
    found: dict[str, list[str] | None] = {}
    depth, start = 0, 0
    for position, char in enumerate(text + ","):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char != "," or depth:
            continue
        part, start = text[start:position].strip(), position + 1
        if not part:
            continue
        name, _, options = part.partition("(")
        nested = options.rstrip(")").removeprefix("$select=")
        found[name.strip()] = [a.strip() for a in nested.split(",") if a.strip()] or None
    return found


def top_level_select(select_text: str | None, expand: Mapping[str, Any]) -> str | None:
    """The properties ``$select`` keeps on the record itself: V2 ``to_Item/Equipment``
    selects the navigation, and an expanded navigation always comes."""
    if not select_text:
        return None
    names = {part.strip().split("/")[0] for part in select_text.split(",") if part.strip()}
    return ",".join(sorted(names | set(expand)))


def child_select(select_text: str | None, nav: str) -> list[str]:
    """The child attributes a V2 ``$select`` names as ``nav/attribute``."""
    parts = [p.strip() for p in (select_text or "").split(",")]
    return [p.split("/", 1)[1] for p in parts if p.startswith(f"{nav}/")]


@dataclass
class SapContractServer(VendorContractServer):
    """S/4HANA on 127.0.0.1 over a SQLite file; V2 and V4 side by side, as in a real system."""

    users: Mapping[str, str] = field(default_factory=lambda: {"INTEGRATION": "Welcome1"})
    clients: tuple[str, ...] = ("100",)
    client_id: str = "sb-integration"
    client_secret: str = "oauth-secret"
    v2_page_size: int = 5
    v4_default_page_size: int = 1000

    def __post_init__(self) -> None:
        super().__post_init__()
        self.sessions: dict[str, str] = {}
        self.tokens: set[str] = set()
        self._drop_sessions = 0
        self._numbers = itertools.count(1)

    # -- seed and knobs --------------------------------------------------------------------

    def seed(self) -> SapContractServer:
        for order in seed.work_orders():
            self.put_order(sap_order(order))
        for asset in seed.assets():
            changed = datetime.fromisoformat(str(asset["changedate"]))
            self.store.put(
                "equipment",
                f"100{asset['assetnum']}",
                {
                    "Equipment": f"100{asset['assetnum']}",
                    "ValidityEndDate": END_OF_TIME.isoformat(),
                    "EquipmentName": asset["description"],
                    "TechnicalObjectType": asset["assettype"],
                    "AssetManufacturerName": asset["manufacturer"],
                    "ManufacturerSerialNumber": asset["serialnum"],
                    "MaintenancePlant": "1010",
                    "MaintenancePlanningPlant": "1010",
                    "ABCIndicator": "ABC"[int(str(asset["priority"])) - 1],
                    "LastChangeDateTime": changed.astimezone(UTC).isoformat(),
                },
            )
            # An older time segment of the same equipment, ended before the current one.
            self.store.put(
                "equipment",
                f"100{asset['assetnum']}@old",
                {
                    "Equipment": f"100{asset['assetnum']}",
                    "ValidityEndDate": (changed - timedelta(days=400)).isoformat(),
                    "EquipmentName": f"{asset['description']} (before relocation)",
                    "MaintenancePlant": "1010",
                    "LastChangeDateTime": (changed - timedelta(days=400)).isoformat(),
                },
            )
        for pm in seed.pms():
            self.put_plan(sap_plan(pm))
        return self

    def put_order(self, order: Mapping[str, Any]) -> dict[str, Any]:
        return self.store.put("order", str(order["MaintenanceOrder"]), order)

    def put_plan(self, plan: Mapping[str, Any]) -> dict[str, Any]:
        """Store a maintenance plan as if changed in SAP (its LastChangeDateTime kept)."""
        return self.store.put("plan", str(plan["MaintenancePlan"]), plan)

    def drop_sessions_next(self, count: int = 1) -> None:
        """The next ``count`` writes find their session gone (403, token Required)."""
        self._drop_sessions += count

    @property
    def service_url(self) -> str:
        return self.base_url + ORDERS_V2

    # -- routing ---------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        methods = ["GET", "POST", "PATCH", "PUT", "MERGE", "DELETE"]
        return [
            Route("/oauth/token", self._token, methods=["POST"]),
            Route("/{path:path}", self._dispatch, methods=methods),
        ]

    def is_public(self, path: str) -> bool:
        return path == "/oauth/token"

    def is_data(self, path: str) -> bool:
        tail = path.rstrip("/").rsplit("/", 1)[-1]
        return tail.startswith(tuple(SET_NAMES.values()))

    def error(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> Response:
        body = {
            "error": {
                "code": "/IWBEP/CM_MGW_RT/020" if status < 500 else "/IWBEP/CX_MGW_TECH",
                "message": {"lang": "en", "value": message},
            }
        }
        return JSONResponse(body, status_code=status, headers=dict(headers or {}))

    def authenticate(self, request: Request) -> Response | None:
        client = request.headers.get("sap-client") or request.query_params.get("sap-client")
        if client is not None and client not in self.clients:
            return self.error(401, f"Client {client} is not available in this system")
        authorization = request.headers.get("authorization", "")
        if authorization.startswith("Bearer ") and authorization[7:] in self.tokens:
            return None
        if authorization.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            except ValueError:
                user, password = "", ""
            if user and self.users.get(user) == password:
                return None
        return Response(
            "Logon failed: name or password is incorrect",
            status_code=401,
            media_type="text/plain",
            headers={"WWW-Authenticate": 'Basic realm="SAP NetWeaver Application Server"'},
        )

    async def _token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        if (form.get("client_id"), form.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return JSONResponse(
                {"error": "invalid_client", "error_description": "Bad credentials"}, 401
            )
        token = f"sap-token-{next(self._numbers)}"
        self.tokens.add(token)
        return JSONResponse({"access_token": token, "token_type": "bearer", "expires_in": 43199})

    async def _dispatch(self, request: Request) -> Response:
        path = "/" + request.path_params["path"].rstrip("/")
        for root, v2, entity in (
            (ORDERS_V2, True, "order"),
            (EQUIPMENT_V2, True, "equipment"),
            (PLANS_V2, True, "plan"),
            (ORDERS_V4, False, "order"),
            (EQUIPMENT_V4, False, "equipment"),
            (PLANS_V4, False, "plan"),
        ):
            if path == root or path == f"{root}/$metadata":
                return self._service_root(request, v2=v2, entity=entity)
            if path.startswith(root + "/"):
                tail = path[len(root) + 1 :]
                try:
                    return await self._resource(request, tail, entity=entity, v2=v2)
                except BadQuery as exc:
                    return self.error(400, str(exc))
        return self.error(404, f"Resource not found for segment '{path}'")

    # -- CSRF ------------------------------------------------------------------------------

    def _service_root(self, request: Request, *, v2: bool, entity: str) -> Response:
        headers: dict[str, str] = {}
        if request.headers.get("x-csrf-token", "").lower() == "fetch":
            session, token = secrets.token_hex(8), secrets.token_urlsafe(16)
            self.sessions[session] = token
            headers["x-csrf-token"] = token
            response = self._root_body(v2, entity)
            response.headers.update(headers)
            response.set_cookie("SAP_SESSIONID_S4H_100", session, path="/")
            response.set_cookie("sap-usercontext", "sap-client=100", path="/")
            return response
        return self._root_body(v2, entity)

    def _root_body(self, v2: bool, entity: str) -> JSONResponse:
        set_name = SET_NAMES[entity]
        if v2:
            return JSONResponse({"d": {"EntitySets": [set_name]}})
        return JSONResponse(
            {"@odata.context": "$metadata", "value": [{"name": set_name, "url": set_name}]}
        )

    def _csrf_refusal(self, request: Request) -> Response | None:
        if self._drop_sessions > 0:
            self._drop_sessions -= 1
            self.sessions.clear()
        session = request.cookies.get("SAP_SESSIONID_S4H_100")
        token = request.headers.get("x-csrf-token")
        if session and token and self.sessions.get(session) == token:
            return None
        return self.error(403, "CSRF token validation failed", {"x-csrf-token": "Required"})

    # -- collections and entities ----------------------------------------------------------

    async def _resource(self, request: Request, tail: str, *, entity: str, v2: bool) -> Response:
        set_name = SET_NAMES[entity]
        method = request.method.upper()
        if method == "POST" and request.headers.get("x-http-method"):
            method = request.headers["x-http-method"].upper()
        if tail == set_name:
            if method == "GET":
                return self._query(request, entity=entity, v2=v2)
            if method == "POST" and entity == "order":
                return self._csrf_refusal(request) or await self._create(request, v2=v2)
            return self.error(405, f"Method {method} not allowed on {set_name}")
        if tail.startswith(f"{set_name}(") and tail.endswith(")"):
            found = self._entity_at(entity, tail[len(set_name) + 1 : -1])
            if found is None:
                return self.error(404, f"Resource not found for segment '{set_name}'")
            key, record = found
            if method == "GET":
                return JSONResponse(self._render_one(request, record, entity=entity, v2=v2))
            if method in ("PATCH", "MERGE", "PUT"):
                refusal = self._csrf_refusal(request)
                return refusal or await self._update(request, key, record, entity=entity)
            return self.error(405, f"Method {method} not allowed on {set_name}")
        return self.error(404, f"Resource not found for segment '{tail}'")

    def _entity_at(self, entity: str, predicate: str) -> tuple[str, dict[str, Any]] | None:
        """The stored key and record a key predicate names (``'4001001'``,
        ``MaintenanceOrder='4001001'``, or both parts of an equipment segment's key)."""
        parts: dict[str, Any] = {}
        for part in predicate.split(","):
            name, equals, value = part.partition("=")
            if equals:
                parts[name.strip()] = literal(value.strip())
            else:  # the single key's value alone: ('4001001')
                parts[""] = literal(name.strip())
        if entity != "equipment":
            key = str(next(iter(parts.values()), ""))
            record = self.store.get(entity, key)
            return None if record is None else (key, record)
        if set(parts) != {"Equipment", "ValidityEndDate"}:
            raise BadQuery("The key predicate of Equipment needs Equipment and ValidityEndDate")
        valid_to = parts["ValidityEndDate"]
        for record in self.store.all("equipment"):
            stored_end = datetime.fromisoformat(str(record["ValidityEndDate"]))
            if record["Equipment"] == parts["Equipment"] and stored_end.date() == valid_to.date():
                return record["_key"], record
        return None

    def _query(self, request: Request, *, entity: str, v2: bool) -> Response:
        params = request.query_params
        records = self.store.all(entity)
        key = SET_NAMES[entity]
        expand = parse_expand(params.get("$expand", ""))
        unknown = sorted(set(expand) - set(NAVIGATION.get(entity, ())))
        if unknown:
            raise BadQuery(f"Property {unknown[0]} not found in type {key}Type")
        if params.get("$filter"):
            predicate = parse_filter(params["$filter"], v2=v2)
            records = [r for r in records if predicate(r)]
        records = order_by(records, params.get("$orderby") or key)
        if v2:
            size = self.v2_page_size
        else:
            size = self.v4_default_page_size
            for part in request.headers.get("prefer", "").split(","):
                name, _, value = part.strip().partition("=")
                if name == "odata.maxpagesize" and value.isdigit():
                    size = int(value)
        skip = int(params.get("$skiptoken", "0") or 0)
        page = records[skip : skip + size]
        rendered = [self._render(request, r, entity=entity, v2=v2) for r in page]
        wanted = top_level_select(params.get("$select"), expand)
        known = PROPERTIES.get(entity)
        if wanted and known is not None:
            unknown = sorted(set(wanted.split(",")) - known - set(expand))
            if unknown:
                raise BadQuery(f"Property {unknown[0]} not found in type {key}Type")
        rendered = [select(r, wanted, ("__metadata",)) for r in rendered]
        next_link = None
        if skip + size < len(records):
            query = {k: v for k, v in params.items() if k != "$skiptoken"}
            query["$skiptoken"] = str(skip + size)
            next_link = f"{self.base_url}{request.url.path}?{urlencode(query)}"
        if v2:
            body: dict[str, Any] = {"d": {"results": rendered}}
            if next_link:
                body["d"]["__next"] = next_link
            return JSONResponse(body)
        body = {"@odata.context": f"$metadata#{request.url.path.rsplit('/', 1)[-1]}"}
        body["value"] = rendered
        if next_link:
            body["@odata.nextLink"] = next_link
        headers = {"Preference-Applied": f"odata.maxpagesize={size}"}
        return JSONResponse(body, headers=headers)

    def _etag(self, record: Mapping[str, Any]) -> str:
        return f'W/"{record["_version"]}"'

    def _render(
        self, request: Request, record: Mapping[str, Any], *, entity: str, v2: bool
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in record.items():
            if name.startswith("_"):
                continue
            if name in NAVIGATION.get(entity, ()):
                child = self._navigation(request, record, name, value, entity=entity, v2=v2)
                if child is not None:
                    out[name] = child
                continue
            if name.endswith(("DateTime", "Date")) and isinstance(value, str) and value:
                moment = datetime.fromisoformat(value)
                if v2:
                    value = v2_date(moment, offset=name == "LastChangeDateTime")
                elif name.endswith("DateTime"):
                    value = v4_date(moment)
                else:
                    value = moment.date().isoformat()
            out[name] = value
        if v2:
            uri = self._uri(request, record, entity)
            meta = {"id": uri, "uri": uri, "type": f"API.A_{SET_NAMES[entity]}Type"}
            meta["etag"] = self._etag(record)
            return {"__metadata": meta, **out}
        return {"@odata.etag": self._etag(record), **out}

    def _uri(self, request: Request, record: Mapping[str, Any], entity: str) -> str:
        set_name = SET_NAMES[entity]
        uri = f"{self.base_url}{request.url.path.split(set_name)[0]}{set_name}"
        return uri + f"('{record.get(set_name)}')"

    def _navigation(
        self,
        request: Request,
        record: Mapping[str, Any],
        nav: str,
        children: list[dict[str, Any]],
        *,
        entity: str,
        v2: bool,
    ) -> Any:
        """A navigation property as rendered: expanded children (V2 in ``results``, each with
        its ``__metadata``), a V2 ``__deferred`` link, or None (V4 leaves it out)."""
        params = request.query_params
        expand = parse_expand(params.get("$expand", ""))
        parent = self._uri(request, record, entity)
        if nav not in expand:
            return {"__deferred": {"uri": f"{parent}/{nav}"}} if v2 else None
        attributes = expand[nav] or child_select(params.get("$select"), nav)
        wanted = ",".join(attributes) or None
        rendered = [select(child, wanted) for child in children]
        if not v2:
            return rendered
        return {
            "results": [
                {"__metadata": {"uri": f"{parent}/{nav}({index})"}, **child}
                for index, child in enumerate(rendered, start=1)
            ]
        }

    def _render_one(
        self, request: Request, record: Mapping[str, Any], *, entity: str, v2: bool
    ) -> dict[str, Any]:
        rendered = self._render(request, record, entity=entity, v2=v2)
        return {"d": rendered} if v2 else rendered

    async def _create(self, request: Request, *, v2: bool) -> Response:
        try:
            payload = await request.json()
        except ValueError:
            return self.error(400, "The request body is not valid JSON")
        if not payload.get("MaintenanceOrderType"):
            return self.error(400, "Property MaintenanceOrderType is mandatory")
        numbers = [int(r["MaintenanceOrder"]) for r in self.store.all("order")]
        now = now_utc()
        record = {
            "MaintenanceOrder": str(max(numbers, default=ORDER_BASE + 1000) + 1),
            "MaintenanceOrderDesc": "",
            "MaintenancePlanningPlant": "1010",
            "Equipment": "",
            "FunctionalLocation": "",
            "MaintPriority": "3",
            **{k: v for k, v in payload.items() if not k.startswith("__")},
            "SystemStatusText": "CRTD",
            "MaintOrderCreationDateTime": now.isoformat(),
            "LastChangeDateTime": now.isoformat(),
        }
        stored = self.put_order(record)
        body = self._render_one(request, stored, entity="order", v2=v2)
        location = f"{self.base_url}{request.url.path}('{record['MaintenanceOrder']}')"
        return JSONResponse(body, status_code=201, headers={"Location": location})

    async def _update(
        self, request: Request, key: str, record: dict[str, Any], *, entity: str
    ) -> Response:
        expected = request.headers.get("if-match")
        if expected is not None and expected != "*" and expected != self._etag(record):
            return self.error(412, "Precondition failed: the entity was changed meanwhile")
        try:
            changes = await request.json()
        except ValueError:
            return self.error(400, "The request body is not valid JSON")
        for name in KEYS[entity]:
            if name in changes and changes[name] != record[name]:
                return self.error(400, f"Property {name} is read-only")
        merged = {k: v for k, v in record.items() if not k.startswith("_")}
        merged.update({k: v for k, v in changes.items() if not k.startswith("__")})
        merged["LastChangeDateTime"] = now_utc().isoformat()
        stored = self.store.put(entity, key, merged)
        return Response(status_code=204, headers={"ETag": self._etag(stored)})
