"""SAP S/4HANA plant maintenance through OData: maintenance orders (API_MAINTENANCEORDER),
equipment (API_EQUIPMENT) and maintenance plans (API_MAINTENANCEPLAN), V2 or V4.

V2 (SAP Gateway) answers ``d.results`` with ``d.__next`` links carrying a ``$skiptoken``; the
server chooses the page size, and ``$top``/``$skip`` are not used because client paging can
skip or repeat rows while records change. V4 answers ``value[]`` with ``@odata.nextLink`` and
takes the page size as ``Prefer: odata.maxpagesize``. Reads filter ``LastChangeDateTime ge``
the cursor's mark and order by it and the key, so the cursor advances page by page.

Writes go through SAP's CSRF protection: a token fetched with ``X-CSRF-Token: Fetch`` on the
service root, sent with the session cookies of that fetch, and fetched again once when a write
is refused with ``403`` / ``x-csrf-token: Required`` (the write was not applied). Maintenance
orders are created and updated; equipment is updated (``PATCH`` of the time segment, keyed by
``Equipment`` and ``ValidityEndDate``; creating equipment is left to SAP).

Maintenance plans (entity set ``MaintenancePlan``, key ``MaintenancePlan``) are read like
orders, on ``LastChangeDateTime``. A plan's scheduling lives in its children, read in the same
request with ``$expand``: the cycles (``to_MaintenanceCycle``: interval
``MaintPlanCycRcrrcIntervalQty`` in ``MaintPlanCycRcrrcIntervalUnit``, a ``MeasuringPoint`` for
counter-based cycles) and the items (``to_Item``: the ``Equipment`` or functional location,
task list, order type, priority). V2 selects child attributes as ``to_Item/Equipment`` and
wraps expanded children in ``{"results": [...]}``, unwrapped here; V4 nests
``$expand=to_Item($select=...)``. Each child list is kept, like any nested value, as JSON
text in its column. The V2 shapes follow SAP's published API_MAINTENANCEPLAN; the V4 service
path and navigation names are not confirmed, so both are settings
(``maintenance_plan_service``, ``plan_expand``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field
from typing_extensions import override

from integration_platform.connectors.auth import (
    Auth,
    BasicAuth,
    CsrfToken,
    OAuth2ClientCredentials,
)
from integration_platform.connectors.base import Page, resolve_secret
from integration_platform.connectors.cursor import Cursor
from integration_platform.connectors.errors import NotFound
from integration_platform.connectors.pagination import ODataV2Next, build_paginator
from integration_platform.connectors.rest import RestConnector, RestStream

SERVICES: dict[str, dict[str, str]] = {
    "v2": {
        "orders": "/sap/opu/odata/sap/API_MAINTENANCEORDER",
        "equipment": "/sap/opu/odata/sap/API_EQUIPMENT",
        "plans": "/sap/opu/odata/sap/API_MAINTENANCEPLAN",
    },
    "v4": {
        "orders": "/sap/opu/odata4/sap/api_maintenanceorder/srvd/sap/api_maintenanceorder/0001",
        "equipment": "/sap/opu/odata4/sap/api_equipment/srvd/sap/api_equipment/0001",
        # Not confirmed: the V4 plan service is assumed to follow the naming of the others.
        "plans": "/sap/opu/odata4/sap/api_maintenanceplan/srvd/sap/api_maintenanceplan/0001",
    },
}
# Properties of SAP's MaintenanceOrder entity type (V2 and V4 name them alike). SAP answers 400
# to an unknown name in $select, so only published properties belong here. The header has no
# actual start or finish (confirmations carry those, per operation); the completion times it
# does carry are MainWorkCompletedDateTime (set when the main work is reported completed) and
# MaintOrderReferenceDateTime (the reference date and time given at technical completion).
MAINTENANCE_ORDER_FIELDS = (
    "MaintenanceOrder",
    "MaintenanceOrderType",
    "MaintenanceOrderDesc",
    "MaintenancePlant",
    "MaintenancePlanningPlant",
    "Equipment",
    "FunctionalLocation",
    "MaintPriority",
    "SystemStatusText",
    "MaintOrderCreationDateTime",
    "MaintOrdBasicStartDateTime",
    "MaintOrdBasicEndDateTime",
    "MaintOrdSchedldBscStrtDateTime",
    "MainWorkCompletedDateTime",
    "MaintOrderReferenceDateTime",
    "MaintOrdPersonResponsible",
    "MaintenancePlan",
    "LastChangeDateTime",
)
EQUIPMENT_FIELDS = (
    "Equipment",
    "ValidityEndDate",
    "EquipmentName",
    "TechnicalObjectType",
    "AssetManufacturerName",
    "ManufacturerSerialNumber",
    "MaintenancePlant",
    "MaintenancePlanningPlant",
    "ABCIndicator",
    "LastChangeDateTime",
)
MAINTENANCE_PLAN_FIELDS = (
    "MaintenancePlan",
    "MaintenancePlanDesc",
    "MaintenancePlanCategory",
    "MaintenanceStrategy",
    "MaintPlanSchedgIndicator",
    "SchedulingDuration",
    "SchedulingDurationUnit",
    "CycleModificationRatio",
    "BasicStartDate",
    "SchedulingStartDate",
    "SchedulingEndDate",
    "NumberOfMaintenanceItems",
    "MaintenancePlanCallObject",
    "MaintenancePlanSystemStatus",
    "CreationDate",
    "LastChangeDateTime",
)
# Attributes selected from each child of a plan; a child not listed is expanded whole.
PLAN_CHILD_FIELDS: dict[str, tuple[str, ...]] = {
    "to_MaintenanceCycle": (
        "MaintenancePlanCycle",
        "MaintPlanCycRcrrcIntervalQty",
        "MaintPlanCycRcrrcIntervalUnit",
        "MaintPlanCycleDesc",
        "MeasuringPoint",
        "MaintenancePlanCycleIsInactive",
    ),
    "to_Item": (
        "MaintenanceItem",
        "MaintenanceItemDescription",
        "Equipment",
        "FunctionalLocationLabelName",
        "TaskListType",
        "TaskListGroup",
        "TaskListGroupCounter",
        "MaintenanceOrderType",
        "MaintPriority",
        "MaintenancePlanningPlant",
    ),
}
# Where a record's ETag is (sent only by ETag-enabled services; rows without one are keyed by
# id alone). It lets the cursor tell a second change within the same second from a row read.
VERSION_KEYS = {"v2": "__metadata/etag", "v4": "@odata.etag"}
# The current time segment of an equipment ends on 9999-12-31.
END_OF_TIME = {"v2": "datetime'9999-12-31T00:00:00'", "v4": "9999-12-31"}


@dataclass(frozen=True)
class ODataV2Expanded(ODataV2Next):
    """OData V2 paging whose records carry expanded children: ``{"results": [...]}`` becomes
    the list itself (as V4 sends it), without the children's ``__metadata``, and a navigation
    left unexpanded (``{"__deferred": ...}``) becomes None."""

    def records(self, body: Any) -> list[dict[str, Any]]:
        return [
            {name: unwrap_child(value) for name, value in record.items()}
            for record in super().records(body)
        ]


def unwrap_child(value: Any) -> Any:
    """An expanded V2 navigation value as a plain list (or None when deferred)."""
    if not isinstance(value, Mapping):
        return value
    if "__deferred" in value:
        return None
    children = value.get("results")
    if not isinstance(children, list):
        return value
    return [
        {k: v for k, v in child.items() if k != "__metadata"}
        if isinstance(child, Mapping)
        else child
        for child in children
    ]


class SapConnector(RestConnector):
    """SAP S/4HANA maintenance orders and equipment (incremental reads, creates, updates)
    and maintenance plans (incremental reads)."""

    system: ClassVar[str] = "sap"

    odata_version: Literal["v2", "v4"] = Field(
        default="v2", description="OData V2 (/sap/opu/odata) or V4 (/sap/opu/odata4) services."
    )
    auth_method: Literal["basic", "oauth2"] = Field(
        default="basic", description="basic (on-premise) or oauth2 client credentials (cloud)."
    )
    username: str | None = Field(default=None, description="User for basic; use dg.EnvVar.")
    password: str | None = Field(default=None, description="Password for basic; dg.EnvVar.")
    client_id: str | None = Field(default=None, description="OAuth2 client id; dg.EnvVar.")
    client_secret: str | None = Field(default=None, description="OAuth2 secret; dg.EnvVar.")
    token_url: str | None = Field(
        default=None, description="OAuth2 token endpoint (absolute, or relative to base_url)."
    )
    scope: str | None = Field(default=None, description="OAuth2 scope, where the IdP needs it.")
    sap_client: str | None = Field(
        default=None, description="SAP client (mandant), sent as the sap-client header."
    )
    maintenance_order_service: str | None = Field(
        default=None, description="Service path override for API_MAINTENANCEORDER."
    )
    equipment_service: str | None = Field(
        default=None, description="Service path override for API_EQUIPMENT."
    )
    maintenance_plan_service: str | None = Field(
        default=None, description="Service path override for API_MAINTENANCEPLAN."
    )
    plan_expand: list[str] = Field(
        default_factory=lambda: list(PLAN_CHILD_FIELDS),
        description="Navigation properties of MaintenancePlan read with each plan (cycles, "
        "items); each becomes a column of JSON text. Empty reads the plan header only.",
    )
    page_size: int = Field(
        default=1000, ge=1, description="V4 odata.maxpagesize; V2 pages are sized by the server."
    )
    current_equipment_only: bool = Field(
        default=True, description="Read only the current time segment of each equipment."
    )
    update_method: Literal["PATCH", "MERGE"] = Field(
        default="PATCH", description="HTTP method of V2 updates (Gateway takes PATCH or MERGE)."
    )
    conditional_updates: bool = Field(
        default=False,
        description="Send the record's ETag as If-Match on updates so a stale update fails with "
        "Conflict (check that the service is ETag-enabled; not every release is).",
    )

    # -- declarations ----------------------------------------------------------------------

    def orders_service(self) -> str:
        return self.maintenance_order_service or SERVICES[self.odata_version]["orders"]

    def work_orders_stream(self) -> RestStream:
        return RestStream(
            name="maintenance_orders",
            path=f"{self.orders_service()}/MaintenanceOrder",
            primary_key=("MaintenanceOrder",),
            replication_key="LastChangeDateTime",
            version_key=VERSION_KEYS[self.odata_version],
            fields=MAINTENANCE_ORDER_FIELDS,
            paginator=f"odata_{self.odata_version}",
        )

    def equipment_stream(self) -> RestStream:
        service = self.equipment_service or SERVICES[self.odata_version]["equipment"]
        current = f"ValidityEndDate eq {END_OF_TIME[self.odata_version]}"
        return RestStream(
            name="equipment",
            path=f"{service}/Equipment",
            primary_key=("Equipment", "ValidityEndDate"),
            replication_key="LastChangeDateTime",
            version_key=VERSION_KEYS[self.odata_version],
            fields=EQUIPMENT_FIELDS,
            paginator=f"odata_{self.odata_version}",
            params={"$filter": current} if self.current_equipment_only else {},
        )

    def maintenance_plans_stream(self) -> RestStream:
        service = self.maintenance_plan_service or SERVICES[self.odata_version]["plans"]
        expand = tuple(dict.fromkeys(self.plan_expand))
        return RestStream(
            name="maintenance_plans",
            path=f"{service}/MaintenancePlan",
            primary_key=("MaintenancePlan",),
            replication_key="LastChangeDateTime",
            version_key=VERSION_KEYS[self.odata_version],
            fields=(*MAINTENANCE_PLAN_FIELDS, *expand),
            paginator=ODataV2Expanded() if self.odata_version == "v2" else "odata_v4",
            params={"$expand": ",".join(expand)} if expand else {},
        )

    # -- hooks -----------------------------------------------------------------------------

    @override
    def build_auth(self) -> Auth:
        inner: Auth
        if self.auth_method == "basic":
            inner = BasicAuth(
                username=resolve_secret(self.username, field="username", system=self.system),
                password=resolve_secret(self.password, field="password", system=self.system),
            )
        else:
            token_url = resolve_secret(self.token_url, field="token_url", system=self.system)
            inner = OAuth2ClientCredentials(
                token_url=token_url if "://" in token_url else f"{self.root_url()}{token_url}",
                client_id=resolve_secret(self.client_id, field="client_id", system=self.system),
                client_secret=resolve_secret(
                    self.client_secret, field="client_secret", system=self.system
                ),
                scope=self.scope,
            )
        return CsrfToken(inner=inner, fetch_path=f"{self.orders_service()}/")

    @override
    def auth_hint(self) -> str:
        if self.auth_method == "basic":
            return (
                "check username and password (SAP_USERNAME, SAP_PASSWORD by convention), that "
                "the user is not locked, holds the service's authorizations, and that "
                "sap_client names the right client"
            )
        return (
            "check client_id, client_secret and token_url (SAP_CLIENT_ID, SAP_CLIENT_SECRET, "
            "SAP_TOKEN_URL by convention) and that the communication arrangement grants the "
            "service"
        )

    @override
    def default_headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.sap_client:
            headers["sap-client"] = self.sap_client
        return headers

    @override
    def stream_params(
        self, stream: RestStream, *, since: Cursor | None, page_size: int | None
    ) -> dict[str, Any]:
        key = stream.replication_key or "LastChangeDateTime"
        filters = [stream.params["$filter"]] if "$filter" in stream.params else []
        if since is not None:
            filters.append(f"{key} ge {odata_instant(since.high_water_mark, self.odata_version)}")
        expand = [n for n in str(stream.params.get("$expand", "")).split(",") if n]
        params: dict[str, Any] = {
            **select_and_expand(stream.fields, expand, self.odata_version),
            "$orderby": ",".join(f"{name} asc" for name in (key, *stream.primary_key)),
        }
        if filters:
            params["$filter"] = " and ".join(filters)
        if self.odata_version == "v2":
            params["$format"] = "json"
        return params

    @override
    def probe(self) -> Any:
        response = self.client.request("GET", f"{self.orders_service()}/", retry=False)
        return self.client.json(response)

    @override
    def describe_health(self, body: Any) -> str:
        return f"{self.orders_service()} answered at {self.root_url()} (OData {self.odata_version})"

    # -- domain methods --------------------------------------------------------------------

    def read_work_orders(
        self, *, since: Cursor | None = None, page_size: int | None = None
    ) -> Iterator[Page]:
        """Maintenance orders changed at or after ``since`` (all when None), page by page."""
        return self.read_stream(
            self.work_orders_stream(), since=since, page_size=page_size or self.page_size
        )

    def read_equipment(
        self, *, since: Cursor | None = None, page_size: int | None = None
    ) -> Iterator[Page]:
        """Equipment (current time segments unless configured otherwise), page by page."""
        return self.read_stream(
            self.equipment_stream(), since=since, page_size=page_size or self.page_size
        )

    def read_maintenance_schedules(
        self, *, since: Cursor | None = None, page_size: int | None = None
    ) -> Iterator[Page]:
        """Maintenance plans changed at or after ``since`` (all when None), page by page,
        with their cycles and items (``plan_expand``)."""
        return self.read_stream(
            self.maintenance_plans_stream(), since=since, page_size=page_size or self.page_size
        )

    def find_work_orders(self, *, description_prefix: str) -> list[dict[str, Any]]:
        """Maintenance orders whose description starts with ``description_prefix``, by
        number: ``$filter=startswith(MaintenanceOrderDesc,'...')`` (V2 adds ``eq true``),
        so only the matches are read."""
        stream = self.work_orders_stream()
        text = description_prefix.replace("'", "''")
        clause = f"startswith(MaintenanceOrderDesc,'{text}')"
        params: dict[str, Any] = {
            "$select": ",".join(stream.fields),
            "$filter": f"{clause} eq true" if self.odata_version == "v2" else clause,
            "$orderby": "MaintenanceOrder asc",
        }
        if self.odata_version == "v2":
            params["$format"] = "json"
        paginator = build_paginator(f"odata_{self.odata_version}")
        found: list[dict[str, Any]] = []
        for records, _ in self.client.paginate(
            stream.path, paginator=paginator, params=params, page_size=self.page_size
        ):
            found += records
        return found

    def get_work_order(self, order: str) -> dict[str, Any] | None:
        """Maintenance order ``order`` as SAP has it now; None when SAP does not know it."""
        params: dict[str, Any] = {"$select": ",".join(MAINTENANCE_ORDER_FIELDS)}
        if self.odata_version == "v2":
            params["$format"] = "json"
        try:
            response = self.client.request(
                "GET",
                f"{self.work_orders_stream().path}('{order}')",
                params=params,
                record_id=order,
            )
        except NotFound:
            return None
        return self._entity(self.client.json(response, record_id=order))

    def create_work_order(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Create a maintenance order; SAP's stored order (with its number) comes back."""
        response = self.client.request(
            "POST",
            self.work_orders_stream().path,
            json=dict(record),
            record_id=str(record.get("MaintenanceOrder") or "") or None,
        )
        return self._entity(self.client.json(response))

    def update_work_order(
        self, order: str, changes: Mapping[str, Any], *, etag: str | None = None
    ) -> None:
        """Apply ``changes`` to maintenance order ``order`` (SAP answers 204, no body).

        ``etag`` is the version read with the order (``__metadata.etag`` in V2,
        ``@odata.etag`` in V4); with ``conditional_updates`` a stale one fails with
        ``Conflict``.
        """
        headers = {}
        if etag and self.conditional_updates:
            headers["If-Match"] = etag
        method = self.update_method if self.odata_version == "v2" else "PATCH"
        self.client.request(
            method,
            f"{self.work_orders_stream().path}('{order}')",
            json=dict(changes),
            headers=headers,
            record_id=order,
            idempotent=True,
        )

    def update_equipment(
        self,
        equipment: str,
        changes: Mapping[str, Any],
        *,
        valid_to: Any = "9999-12-31",
        etag: str | None = None,
    ) -> None:
        """Apply ``changes`` to one time segment of ``equipment`` (SAP answers 204).

        ``valid_to`` is the segment's ``ValidityEndDate`` as read (``/Date(ms)/`` in V2, a
        date in V4) or any date; the default is the current segment. ``etag`` works as for
        :meth:`update_work_order`.
        """
        headers = {}
        if etag and self.conditional_updates:
            headers["If-Match"] = etag
        method = self.update_method if self.odata_version == "v2" else "PATCH"
        key = equipment_key(equipment, valid_to, self.odata_version)
        self.client.request(
            method,
            f"{self.equipment_stream().path}({key})",
            json=dict(changes),
            headers=headers,
            record_id=equipment,
            idempotent=True,
        )

    def _entity(self, body: Any) -> dict[str, Any]:
        if isinstance(body, Mapping) and isinstance(body.get("d"), Mapping):
            body = body["d"]
        return dict(body) if isinstance(body, Mapping) else {"value": body}


def select_and_expand(fields: tuple[str, ...], expand: list[str], version: str) -> dict[str, str]:
    """``$select`` (and ``$expand``) for ``fields``, of which ``expand`` are navigation
    properties: V2 selects child attributes as ``to_Item/Equipment`` beside ``$expand``, V4
    nests them as ``to_Item($select=Equipment)``. A child without listed attributes
    (``PLAN_CHILD_FIELDS``) comes whole."""
    plain = [name for name in fields if name not in expand]
    if not expand:
        return {"$select": ",".join(plain)}
    if version == "v2":
        nested: list[str] = []
        for nav in expand:
            nested += [f"{nav}/{attr}" for attr in PLAN_CHILD_FIELDS.get(nav, ())] or [nav]
        return {"$select": ",".join([*plain, *nested]), "$expand": ",".join(expand)}
    items = []
    for nav in expand:
        attrs = PLAN_CHILD_FIELDS.get(nav, ())
        items.append(f"{nav}($select={','.join(attrs)})" if attrs else nav)
    return {"$select": ",".join(plain), "$expand": ",".join(items)}


def odata_instant(mark: Any, version: str) -> str:
    """A cursor mark as an OData date-time literal in UTC (V2 ``datetimeoffset'...'``)."""
    import pandas as pd

    moment = pd.Timestamp(mark)
    moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond // 1000:03d}"
    return f"datetimeoffset'{text}Z'" if version == "v2" else f"{text}Z"


def equipment_key(equipment: str, valid_to: Any, version: str) -> str:
    """The key predicate of an equipment time segment:
    ``Equipment='10011430',ValidityEndDate=datetime'9999-12-31T00:00:00'`` in V2,
    ``Equipment='10011430',ValidityEndDate=9999-12-31`` in V4."""
    import re
    from datetime import UTC, date, datetime

    if isinstance(valid_to, datetime | date):
        day = valid_to.strftime("%Y-%m-%d")
    else:
        text = str(valid_to)
        epoch = re.fullmatch(r"/Date\((-?\d+)(?:[+-]\d{4})?\)/", text)
        if epoch:
            day = datetime.fromtimestamp(int(epoch[1]) / 1000, UTC).strftime("%Y-%m-%d")
        else:
            day = date.fromisoformat(text[:10]).isoformat()
    valid = f"datetime'{day}T00:00:00'" if version == "v2" else day
    return f"Equipment='{equipment}',ValidityEndDate={valid}"
