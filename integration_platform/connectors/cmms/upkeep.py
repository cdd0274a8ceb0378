"""UpKeep work orders, assets and preventive maintenance through its REST API v2.

A session starts with ``POST /auth`` (email and password) and ends with ``DELETE /auth/``;
the token from ``result.sessionToken`` goes in the ``Session-Token`` header and is fetched
again once when UpKeep answers 401. Lists page with ``limit``/``offset`` and end at a short
page.

Incremental reads filter on ``updatedAt`` on the client: the list filters and sort orders of
the API are not confirmed, so every read pages through the whole list, keeps the rows the
cursor does not cover and yields them in ``updatedAt`` order (the REST base's
``server_ordered=False``). ``extra_params`` passes list filters a tenant has verified (for
example a status filter) to narrow the scan.

Assets are ``/assets`` (read, create, update by ``PATCH /assets/{id}``). Preventive
maintenance is read from ``/preventative-maintenance``, the path UpKeep's public client code
uses; newer API versions replace these recurring work orders with PM triggers, so the path is
a setting. The asset and preventive-maintenance attribute names beyond ``id``, ``createdAt``
and ``updatedAt`` are not confirmed by UpKeep's public documentation: they are settings too.

UpKeep rows carry no version token, so updates cannot detect a concurrent change.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import dagster as dg
from pydantic import Field
from typing_extensions import override

from integration_platform.connectors.auth import Auth, SessionTokenAuth
from integration_platform.connectors.base import Page, resolve_secret
from integration_platform.connectors.cursor import Cursor
from integration_platform.connectors.errors import ConnectorError, NotFound
from integration_platform.connectors.pagination import build_paginator
from integration_platform.connectors.rest import RestConnector, RestStream

WORK_ORDER_FIELDS = (
    "id",
    "workOrderNo",
    "title",
    "description",
    "priority",
    "status",
    "category",
    "asset",
    "location",
    "dueDate",
    "createdAt",
    "updatedAt",
    "completedDate",
)
# Unconfirmed names (beyond id, createdAt, updatedAt): the asset_fields setting.
ASSET_FIELDS = (
    "id",
    "name",
    "description",
    "serial",
    "model",
    "barcode",
    "category",
    "area",
    "location",
    "parentAsset",
    "createdAt",
    "updatedAt",
)
# Unconfirmed names (beyond id, createdAt, updatedAt): the schedule_fields setting.
SCHEDULE_FIELDS = (
    "id",
    "title",
    "description",
    "asset",
    "location",
    "priority",
    "category",
    "frequency",
    "interval",
    "meter",
    "nextDueDate",
    "createdAt",
    "updatedAt",
)


class UpKeepConnector(RestConnector):
    """UpKeep work orders and assets (incremental reads on updatedAt in the client, creates,
    updates) and preventive maintenance (incremental reads)."""

    system: ClassVar[str] = "upkeep"
    health_path: ClassVar[str] = "/work-orders?limit=1&offset=0"

    api_path: str = Field(default="/api/v2", description="API root under base_url.")
    email: str | None = Field(default=None, description="Login email; use dg.EnvVar.")
    password: str | None = Field(default=None, description="Login password; use dg.EnvVar.")
    page_size: int = Field(default=200, ge=1, le=200, description="limit per list request.")
    extra_params: dict[str, str] = Field(
        default_factory=dict, description="Additional list filters verified for the tenant."
    )
    asset_fields: list[str] = Field(
        default_factory=lambda: list(ASSET_FIELDS),
        description="Asset attributes declared as columns (unconfirmed names; id and "
        "updatedAt are added when missing).",
    )
    schedule_path: str = Field(
        default="/preventative-maintenance",
        description="List of preventive maintenance under api_path (unconfirmed: newer API "
        "versions serve PM triggers instead).",
    )
    schedule_fields: list[str] = Field(
        default_factory=lambda: list(SCHEDULE_FIELDS),
        description="Preventive maintenance attributes declared as columns (unconfirmed "
        "names; id and updatedAt are added when missing).",
    )

    # -- declarations ----------------------------------------------------------------------

    def _list_stream(self, name: str, path: str, fields: tuple[str, ...] | list[str]) -> RestStream:
        """A list UpKeep pages with limit/offset, filtered and ordered in the client; the key
        and the cursor column are always declared."""
        return RestStream(
            name=name,
            path=path,
            primary_key=("id",),
            replication_key="updatedAt",
            fields=tuple(dict.fromkeys(["id", *fields, "updatedAt"])),
            paginator="offset",
            paginator_options={"records_path": "results", "has_more_path": None},
            params=self.extra_params,
            server_ordered=False,
        )

    def work_orders_stream(self) -> RestStream:
        return self._list_stream("work_orders", "/work-orders", WORK_ORDER_FIELDS)

    def assets_stream(self) -> RestStream:
        return self._list_stream("assets", "/assets", self.asset_fields)

    def maintenance_schedules_stream(self) -> RestStream:
        path = "/" + self.schedule_path.strip("/")
        return self._list_stream("maintenance_schedules", path, self.schedule_fields)

    # -- hooks -----------------------------------------------------------------------------

    @override
    def api_url(self) -> str:
        return f"{self.root_url()}/{self.api_path.strip('/')}"

    @override
    def build_auth(self) -> Auth:
        return SessionTokenAuth(
            login_path="/auth",
            username=resolve_secret(self.email, field="email", system=self.system),
            password=resolve_secret(self.password, field="password", system=self.system),
            token_path="result/sessionToken",
            header="Session-Token",
        )

    @override
    def auth_hint(self) -> str:
        return (
            "check email and password (UPKEEP_EMAIL, UPKEEP_PASSWORD by convention) and that "
            "the user may use the API"
        )

    @override
    def describe_health(self, body: Any) -> str:
        return f"signed in to {self.api_url()}"

    @override
    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()

    # -- domain methods --------------------------------------------------------------------

    def read_work_orders(
        self, *, since: Cursor | None = None, page_size: int | None = None
    ) -> Iterator[Page]:
        """Work orders updated at or after ``since`` (all when None), page by page."""
        return self.read_stream(
            self.work_orders_stream(), since=since, page_size=page_size or self.page_size
        )

    def read_assets(
        self, *, since: Cursor | None = None, page_size: int | None = None
    ) -> Iterator[Page]:
        """Assets updated at or after ``since`` (all when None), page by page."""
        return self.read_stream(
            self.assets_stream(), since=since, page_size=page_size or self.page_size
        )

    def read_maintenance_schedules(
        self, *, since: Cursor | None = None, page_size: int | None = None
    ) -> Iterator[Page]:
        """Preventive maintenance updated at or after ``since`` (all when None), page by page."""
        return self.read_stream(
            self.maintenance_schedules_stream(), since=since, page_size=page_size or self.page_size
        )

    def find_work_orders(self, *, title_prefix: str) -> list[dict[str, Any]]:
        """Work orders whose title starts with ``title_prefix``, oldest first.

        UpKeep's list filters are not confirmed, so the whole list is paged (without
        ``extra_params``, which could hide the match) and filtered here.
        """
        stream = self.work_orders_stream()
        paginator = build_paginator(str(stream.paginator), **stream.paginator_options)
        found: list[dict[str, Any]] = []
        for records, _ in self.client.paginate(
            stream.path, paginator=paginator, page_size=self.page_size
        ):
            found += [r for r in records if str(r.get("title") or "").startswith(title_prefix)]
        return sorted(found, key=lambda r: (str(r.get("createdAt") or ""), str(r.get("id"))))

    def get_work_order(self, work_order_id: str) -> dict[str, Any] | None:
        """One work order (``GET /work-orders/{id}``); None when UpKeep does not know it."""
        try:
            response = self.client.request(
                "GET", f"/work-orders/{work_order_id}", record_id=work_order_id
            )
        except NotFound:
            return None
        return self._result(response, work_order_id)

    def create_work_order(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Create a work order (``title`` is required); UpKeep's stored record comes back."""
        return self._create("/work-orders", record)

    def update_work_order(self, work_order_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Apply ``changes`` to a work order (last writer wins: UpKeep has no row version)."""
        return self._update("/work-orders", work_order_id, changes)

    def create_asset(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Create an asset (``name`` is required); UpKeep's stored record (with its id) comes
        back."""
        return self._create("/assets", record)

    def update_asset(self, asset_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Apply ``changes`` to an asset (last writer wins: UpKeep has no row version)."""
        return self._update("/assets", asset_id, changes)

    def close(self) -> None:
        """End the session on UpKeep (``DELETE /auth/``) and release the connection pool."""
        if self._client is None:
            return
        auth = self._client.auth
        if isinstance(auth, SessionTokenAuth) and auth._token is not None:
            with contextlib.suppress(ConnectorError):  # the session expires on its own
                self._client.request("DELETE", "/auth/", retry=False)
            auth.invalidate()
        self._client.close()

    def _create(self, path: str, record: Mapping[str, Any]) -> dict[str, Any]:
        response = self.client.request("POST", path, json=dict(record))
        return self._result(response, None)

    def _update(self, path: str, record_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        response = self.client.request(
            "PATCH", f"{path}/{record_id}", json=dict(changes), record_id=record_id
        )
        return self._result(response, record_id)

    def _result(self, response: Any, record_id: str | None) -> dict[str, Any]:
        body = self.client.json(response, record_id=record_id)
        result = body.get("result") if isinstance(body, Mapping) else None
        return dict(result) if isinstance(result, Mapping) else {}
