"""Fiix CMMS through its signed RPC API.

Every call is ``POST /api/?service=cmms`` with the key parameters in the query string and an
``Authorization`` header holding the hex HMAC-SHA256 of the URL without its scheme, keyed
with the API secret (the ``hmac_url_signature`` auth scheme); the body is JSON sent as
``text/plain`` and names the request in ``_maCn``. Reads are ``FindRequest``s on a
``className`` with typed-prefix ``fields`` (``intSiteID``, ``strDescription``,
``dtmDateLastModified`` in epoch milliseconds), a filter ``dtmDateLastModified >= ?`` on the
cursor's mark and an ``orderBy``; writes are ``AddRequest`` and ``ChangeRequest``.

Scheduled maintenance (``ScheduledMaintenance``) is read the same way; its field names
(``intScheduledMaintenanceStatusID``, ``dblSuggestedTime``, the change stamp
``dtmUpdatedDate`` rather than ``dtmDateLastModified``) follow Fiix's generated client
classes, not its documentation, so they are settings. Its calendar or meter triggers live in
another class and are not read here.

Not confirmed by Fiix's public documentation, so configurable: the paging fields
(``maxObjects``/``startObjectIndex``), ``orderBy`` (without it, reads scan the class and
order rows in the client), the scheduled-maintenance fields and change stamp, and whether
request errors come back as HTTP 200 with an ``error`` object (handled either way). Fiix
rows carry no version token: updates cannot detect a concurrent change.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from pydantic import Field
from typing_extensions import override

from integration_platform.connectors.auth import Auth, HmacUrlSignature, dig
from integration_platform.connectors.base import Page, resolve_secret
from integration_platform.connectors.cursor import Cursor
from integration_platform.connectors.errors import BadResponse, RequestRejected
from integration_platform.connectors.pagination import PageRequest, Paginator, PaginatorError
from integration_platform.connectors.rest import RestConnector, RestStream

WORK_ORDER_FIELDS = (
    "id",
    "strCode",
    "strDescription",
    "intSiteID",
    "strAssetIds",
    "intPriorityID",
    "intWorkOrderStatusID",
    "intMaintenanceTypeID",
    "dtmDateCreated",
    "dtmSuggestedCompletionDate",
    "dtmDateCompleted",
    "dtmDateLastModified",
    "strAssignedUsers",
)
ASSET_FIELDS = ("id", "strCode", "strName", "strDescription", "intSiteID", "dtmDateLastModified")
SCHEDULE_FIELDS = (
    "id",
    "strCode",
    "strDescription",
    "intSiteID",
    "intScheduledMaintenanceStatusID",
    "intMaintenanceTypeID",
    "intPriorityID",
    "dblSuggestedTime",
    "dtmCreateDate",
    "dtmUpdatedDate",
)
CHANGE_STAMP = "dtmDateLastModified"
CLIENT_VERSION = {"major": 2, "minor": 8, "patch": 1}


@dataclass(frozen=True)
class FiixFind(Paginator):
    """Offset paging inside a JSON request body (Fiix ``FindRequest``: ``maxObjects`` and
    ``startObjectIndex``). Stops on a short or empty page, or when ``total_path`` says every
    object was read."""

    name: ClassVar[str] = "fiix"
    records_path: str = "objects"
    limit_field: str = "maxObjects"
    offset_field: str = "startObjectIndex"
    total_path: str | None = "totalObjects"
    default_page_size: int = 100

    def first(self, request: PageRequest, page_size: int | None) -> PageRequest:
        size = page_size or self.default_page_size
        body = {**(request.json or {}), self.limit_field: size, self.offset_field: 0}
        return replace(request, json=body)

    def records(self, body: Any) -> list[dict[str, Any]]:
        error = body.get("error") if isinstance(body, Mapping) else None
        if isinstance(error, Mapping):
            raise PaginatorError(f"Fiix refused the request: {error.get('message') or error}")
        return super().records(body)

    def next(
        self, request: PageRequest, body: Any, records: list[dict[str, Any]]
    ) -> PageRequest | None:
        sent = dict(request.json or {})
        limit, offset = int(sent[self.limit_field]), int(sent[self.offset_field])
        if not records or len(records) < limit:
            return None
        total = dig(body, self.total_path) if self.total_path else None
        if isinstance(total, int | float) and offset + len(records) >= total:
            return None
        return replace(request, json={**sent, self.offset_field: offset + len(records)})


class FiixConnector(RestConnector):
    """Fiix work orders (incremental reads, creates, updates) and assets (incremental reads,
    updates)."""

    system: ClassVar[str] = "fiix"

    api_path: str = Field(default="/api/", description="The RPC endpoint under base_url.")
    app_key: str | None = Field(default=None, description="Application key; use dg.EnvVar.")
    access_key: str | None = Field(default=None, description="Access key; use dg.EnvVar.")
    api_secret: str | None = Field(default=None, description="API secret; use dg.EnvVar.")
    page_size: int = Field(default=500, ge=1, description="Objects per FindRequest.")
    max_objects_field: str = Field(default="maxObjects", description="Page size field.")
    start_index_field: str = Field(default="startObjectIndex", description="Offset field.")
    order_by: str | None = Field(
        default="dtmDateLastModified, id",
        description="FindRequest orderBy; None reads the whole class and orders in the client. "
        "dtmDateLastModified stands for the class's change stamp (schedule_cursor_field for "
        "ScheduledMaintenance).",
    )
    schedule_class: str = Field(
        default="ScheduledMaintenance", description="className of scheduled maintenance."
    )
    schedule_fields: list[str] = Field(
        default_factory=lambda: list(SCHEDULE_FIELDS),
        description="Fields read from scheduled maintenance (unconfirmed names; the cursor "
        "field is added when missing).",
    )
    schedule_cursor_field: str = Field(
        default="dtmUpdatedDate",
        description="Change stamp of scheduled maintenance, epoch ms (unconfirmed name).",
    )

    # -- declarations ----------------------------------------------------------------------

    def _stream(
        self,
        name: str,
        class_name: str,
        fields: tuple[str, ...],
        cursor_field: str = CHANGE_STAMP,
    ) -> RestStream:
        return RestStream(
            name=name,
            path=self.api_path,
            primary_key=("id",),
            replication_key=cursor_field,
            replication_kind="epoch_ms",
            fields=fields,
            method="POST",
            params={"service": "cmms", "className": class_name},
            paginator=FiixFind(
                limit_field=self.max_objects_field, offset_field=self.start_index_field
            ),
            server_ordered=self.order_by is not None,
        )

    def work_orders_stream(self) -> RestStream:
        return self._stream("work_orders", "WorkOrder", WORK_ORDER_FIELDS)

    def assets_stream(self) -> RestStream:
        return self._stream("assets", "Asset", ASSET_FIELDS)

    def maintenance_schedules_stream(self) -> RestStream:
        fields = list(dict.fromkeys(["id", *self.schedule_fields, self.schedule_cursor_field]))
        return self._stream(
            "maintenance_schedules",
            self.schedule_class,
            tuple(fields),
            cursor_field=self.schedule_cursor_field,
        )

    # -- hooks -----------------------------------------------------------------------------

    @override
    def build_auth(self) -> Auth:
        return HmacUrlSignature(
            app_key=resolve_secret(self.app_key, field="app_key", system=self.system),
            access_key=resolve_secret(self.access_key, field="access_key", system=self.system),
            secret=resolve_secret(self.api_secret, field="api_secret", system=self.system),
        )

    @override
    def auth_hint(self) -> str:
        return (
            "check app_key, access_key and api_secret (FIIX_APP_KEY, FIIX_ACCESS_KEY, "
            "FIIX_API_SECRET by convention) against the API application in Fiix, and that "
            "base_url is the tenant (https://<tenant>.macmms.com)"
        )

    @override
    def default_headers(self) -> dict[str, str]:
        return {"Content-Type": "text/plain"}

    @override
    def stream_params(
        self, stream: RestStream, *, since: Cursor | None, page_size: int | None
    ) -> dict[str, Any]:
        return {"service": "cmms"}

    @override
    def stream_body(self, stream: RestStream, *, since: Cursor | None) -> Any:
        body: dict[str, Any] = {
            "_maCn": "FindRequest",
            "clientVersion": CLIENT_VERSION,
            "className": stream.params["className"],
            "fields": ", ".join(stream.fields),
        }
        if since is not None and self.order_by is not None:
            body["filters"] = [
                {"ql": f"{stream.replication_key} >= ?", "parameters": [epoch(since)]}
            ]
        if self.order_by:
            cursor_field = stream.replication_key or CHANGE_STAMP
            body["orderBy"] = self.order_by.replace(CHANGE_STAMP, cursor_field)
        return body

    @override
    def probe(self) -> Any:
        body = {**self.stream_body(self.work_orders_stream(), since=None), "fields": "id"}
        body[self.max_objects_field] = 1
        response = self.client.request(
            "POST",
            self.api_path,
            params={"service": "cmms"},
            json=body,
            retry=False,
            idempotent=True,
        )
        answer = self.client.json(response)
        self._raise_for_error(answer, response, None)
        return answer

    @override
    def describe_health(self, body: Any) -> str:
        return f"{self.api_url()} answered FindRequest ({dig(body, 'totalObjects')} work orders)"

    # -- domain methods --------------------------------------------------------------------

    def read_work_orders(
        self, *, since: Cursor | None = None, page_size: int | None = None
    ) -> Iterator[Page]:
        """Work orders changed at or after ``since`` (all when None), page by page."""
        return self.read_stream(
            self.work_orders_stream(), since=since, page_size=page_size or self.page_size
        )

    def read_assets(
        self, *, since: Cursor | None = None, page_size: int | None = None
    ) -> Iterator[Page]:
        """Assets changed at or after ``since`` (all when None), page by page."""
        return self.read_stream(
            self.assets_stream(), since=since, page_size=page_size or self.page_size
        )

    def read_maintenance_schedules(
        self, *, since: Cursor | None = None, page_size: int | None = None
    ) -> Iterator[Page]:
        """Scheduled maintenance changed at or after ``since`` (all when None), page by
        page, incremental on ``schedule_cursor_field``."""
        return self.read_stream(
            self.maintenance_schedules_stream(), since=since, page_size=page_size or self.page_size
        )

    def find_work_orders(self, *, where: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Work orders whose fields equal ``where`` (``{"strCode": "CB7QK2M4XA"}``), oldest
        id first: a ``FindRequest`` with one ``<field> = ?`` filter per field, so a lookup
        by code or id reads only the matches."""
        body: dict[str, Any] = {
            "_maCn": "FindRequest",
            "clientVersion": CLIENT_VERSION,
            "className": "WorkOrder",
            "fields": ", ".join(WORK_ORDER_FIELDS),
            "filters": [
                {"ql": f"{name} = ?", "parameters": [value]} for name, value in where.items()
            ],
        }
        if self.order_by is not None:
            body["orderBy"] = "id"
        paginator = FiixFind(
            limit_field=self.max_objects_field, offset_field=self.start_index_field
        )
        found: list[dict[str, Any]] = []
        for records, _ in self.client.paginate(
            self.api_path,
            paginator=paginator,
            params={"service": "cmms"},
            page_size=self.page_size,
            method="POST",
            json=body,
        ):
            found += [{k: v for k, v in r.items() if k != "_maCn"} for r in records]
        return sorted(found, key=lambda r: int(r.get("id") or 0))

    def create_work_order(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """``AddRequest`` for a work order; Fiix's stored object (with its id) comes back."""
        body = {
            "_maCn": "AddRequest",
            "clientVersion": CLIENT_VERSION,
            "className": "WorkOrder",
            "fields": ", ".join(WORK_ORDER_FIELDS),
            "object": {"_maCn": "WorkOrder", **record},
        }
        return self._call(body, record_id=str(record.get("strCode") or "") or None)

    def update_work_order(self, work_order_id: int | str, changes: Mapping[str, Any]) -> dict:
        """``ChangeRequest`` of the given fields (last writer wins: no version token)."""
        return self._change("WorkOrder", WORK_ORDER_FIELDS, work_order_id, changes)

    def update_asset(self, asset_id: int | str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """``ChangeRequest`` on an ``Asset`` (last writer wins: no version token); the
        changed object comes back."""
        return self._change("Asset", ASSET_FIELDS, asset_id, changes)

    def _change(
        self,
        class_name: str,
        fields: tuple[str, ...],
        object_id: int | str,
        changes: Mapping[str, Any],
    ) -> dict[str, Any]:
        body = {
            "_maCn": "ChangeRequest",
            "clientVersion": CLIENT_VERSION,
            "className": class_name,
            "changeFields": ", ".join(changes),
            "fields": ", ".join(fields),
            "object": {"_maCn": class_name, "id": int(object_id), **changes},
        }
        # Setting fields to values is safe to repeat.
        return self._call(body, record_id=str(object_id), idempotent=True)

    def _call(
        self, body: Mapping[str, Any], *, record_id: str | None, idempotent: bool = False
    ) -> dict[str, Any]:
        response = self.client.request(
            "POST",
            self.api_path,
            params={"service": "cmms"},
            json=dict(body),
            record_id=record_id,
            idempotent=idempotent,
        )
        answer = self.client.json(response, record_id=record_id)
        self._raise_for_error(answer, response, record_id)
        found = answer.get("object") if isinstance(answer, Mapping) else None
        if not isinstance(found, Mapping):
            raise BadResponse(
                system=self.system,
                method="POST",
                url=response.url,
                record_id=record_id,
                status=response.status_code,
                detail=f"{body['_maCn']} answered without object",
            )
        return {k: v for k, v in found.items() if k != "_maCn"}

    def _raise_for_error(self, answer: Any, response: Any, record_id: str | None) -> None:
        error = answer.get("error") if isinstance(answer, Mapping) else None
        if isinstance(error, Mapping):
            raise RequestRejected(
                system=self.system,
                method="POST",
                url=response.url,
                record_id=record_id,
                status=response.status_code,
                detail=str(error.get("message") or error),
            )


def epoch(cursor: Cursor) -> int:
    """The cursor's mark in epoch milliseconds, as Fiix compares ``dtm`` fields."""
    import pandas as pd

    moment = pd.Timestamp(cursor.high_water_mark)
    moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
    return int(moment.value // 1_000_000)
