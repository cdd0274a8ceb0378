"""Oracle Fusion Cloud Maintenance work orders and assets through the Fusion REST API.

Collections page with ``limit``/``offset`` and answer ``items[]`` with ``hasMore``; reads ask
for ``onlyData=true`` (no per-item links), filter with ``q=LastUpdateDate>='<mark>'`` and order
with ``orderBy=LastUpdateDate:asc,<id>:asc`` so the cursor advances page by page. Work orders
are ``maintenanceWorkOrders``; maintenance assets are ``installedBaseAssets`` (the resource
that replaced ``maintenanceAssets``, deprecated since 23D; both paths are settings). Creates
POST to the collection; updates PATCH the item. Whether the resources honour ``If-Match`` with
an item's ``ETag`` is not confirmed, so conditional updates are an option.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field
from typing_extensions import override

from integration_platform.connectors.auth import Auth, BasicAuth, OAuth2ClientCredentials
from integration_platform.connectors.base import Page, resolve_secret
from integration_platform.connectors.cursor import Cursor
from integration_platform.connectors.rest import RestConnector, RestStream

WORK_ORDER_FIELDS = (
    "WorkOrderId",
    "WorkOrderNumber",
    "WorkOrderDescription",
    "WorkOrderStatusCode",
    "WorkOrderTypeCode",
    "WorkOrderPriority",
    "OrganizationCode",
    "AssetNumber",
    "ActualStartDate",
    "ActualCompletionDate",
    "CreationDate",
    "LastUpdateDate",
)
# Attributes of installedBaseAssets (Oracle's REST reference); LastUpdateDate is the standard
# Fusion who-column the cursor runs on.
ASSET_FIELDS = (
    "AssetId",
    "AssetNumber",
    "Description",
    "SerialNumber",
    "ItemNumber",
    "OperatingOrganizationCode",
    "ParentAssetNumber",
    "CreationDate",
    "LastUpdateDate",
)
ITEM_TYPE = "application/vnd.oracle.adf.resourceitem+json"


class OracleConnector(RestConnector):
    """Oracle Fusion maintenance work orders (incremental reads, creates, updates) and
    maintenance assets (incremental reads, updates)."""

    system: ClassVar[str] = "oracle"

    resource_path: str = Field(
        default="/fscmRestApi/resources/11.13.18.05/maintenanceWorkOrders",
        description="Path of the work order resource (REST version in the path).",
    )
    asset_resource_path: str = Field(
        default="/fscmRestApi/resources/11.13.18.05/installedBaseAssets",
        description="Path of the asset resource (maintenanceAssets on releases before 23D).",
    )
    auth_method: Literal["basic", "oauth2"] = Field(default="basic", description="basic or oauth2.")
    username: str | None = Field(default=None, description="User for basic; use dg.EnvVar.")
    password: str | None = Field(default=None, description="Password for basic; dg.EnvVar.")
    client_id: str | None = Field(default=None, description="OAuth2 client id; dg.EnvVar.")
    client_secret: str | None = Field(default=None, description="OAuth2 secret; dg.EnvVar.")
    token_url: str | None = Field(
        default=None, description="OAuth2 token endpoint (absolute, or relative to base_url)."
    )
    scope: str | None = Field(default=None, description="OAuth2 scope (the Fusion audience).")
    page_size: int = Field(default=500, ge=1, le=500, description="limit per request (<= 500).")
    conditional_updates: bool = Field(
        default=False, description="Send the item's ETag as If-Match on updates (unconfirmed)."
    )

    def work_orders_stream(self) -> RestStream:
        return RestStream(
            name="work_orders",
            path=self.resource_path,
            primary_key=("WorkOrderId",),
            replication_key="LastUpdateDate",
            fields=WORK_ORDER_FIELDS,
            paginator="offset",
            paginator_options={"records_path": "items", "has_more_path": "hasMore"},
        )

    def assets_stream(self) -> RestStream:
        return RestStream(
            name="assets",
            path=self.asset_resource_path,
            primary_key=("AssetId",),
            replication_key="LastUpdateDate",
            fields=ASSET_FIELDS,
            paginator="offset",
            paginator_options={"records_path": "items", "has_more_path": "hasMore"},
        )

    @override
    def build_auth(self) -> Auth:
        if self.auth_method == "basic":
            return BasicAuth(
                username=resolve_secret(self.username, field="username", system=self.system),
                password=resolve_secret(self.password, field="password", system=self.system),
            )
        token_url = resolve_secret(self.token_url, field="token_url", system=self.system)
        return OAuth2ClientCredentials(
            token_url=token_url if "://" in token_url else f"{self.root_url()}{token_url}",
            client_id=resolve_secret(self.client_id, field="client_id", system=self.system),
            client_secret=resolve_secret(
                self.client_secret, field="client_secret", system=self.system
            ),
            scope=self.scope,
        )

    @override
    def auth_hint(self) -> str:
        return (
            "check the credentials (ORACLE_USERNAME/ORACLE_PASSWORD or ORACLE_CLIENT_ID/"
            "ORACLE_CLIENT_SECRET by convention) and that the user holds a role that may "
            "view maintenance work orders"
        )

    @override
    def stream_params(
        self, stream: RestStream, *, since: Cursor | None, page_size: int | None
    ) -> dict[str, Any]:
        key = stream.replication_key or "LastUpdateDate"
        params: dict[str, Any] = {
            "onlyData": "true",
            "fields": ",".join(stream.fields),
            "orderBy": ",".join(f"{n}:asc" for n in (key, *stream.primary_key)),
        }
        if since is not None:
            params["q"] = f"{key}>='{oracle_instant(since.high_water_mark)}'"
        return params

    @override
    def probe(self) -> Any:
        response = self.client.request(
            "GET", self.resource_path, params={"limit": 1, "onlyData": "true"}, retry=False
        )
        return self.client.json(response)

    @override
    def describe_health(self, body: Any) -> str:
        return f"{self.resource_path} answered at {self.root_url()}"

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
        """Maintenance assets updated at or after ``since`` (all when None), page by page."""
        return self.read_stream(
            self.assets_stream(), since=since, page_size=page_size or self.page_size
        )

    def create_work_order(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Create a work order; the stored item (WorkOrderId, number) comes back."""
        response = self.client.request(
            "POST",
            self.resource_path,
            json=dict(record),
            headers={"Content-Type": ITEM_TYPE},
            record_id=str(record.get("WorkOrderNumber") or "") or None,
        )
        return dict(self.client.json(response))

    def update_work_order(
        self, work_order_id: int | str, changes: Mapping[str, Any], *, etag: str | None = None
    ) -> dict[str, Any]:
        """PATCH the work order item; with ``conditional_updates`` and ``etag`` a changed
        item fails with ``Conflict``."""
        return self._patch(self.resource_path, work_order_id, changes, etag=etag)

    def update_asset(
        self, asset_id: int | str, changes: Mapping[str, Any], *, etag: str | None = None
    ) -> dict[str, Any]:
        """PATCH the asset item (``AssetId``); the updated item comes back. With
        ``conditional_updates`` and ``etag`` a changed item fails with ``Conflict``."""
        return self._patch(self.asset_resource_path, asset_id, changes, etag=etag)

    def _patch(
        self,
        path: str,
        item_id: int | str,
        changes: Mapping[str, Any],
        *,
        etag: str | None,
    ) -> dict[str, Any]:
        headers = {"Content-Type": ITEM_TYPE}
        if etag and self.conditional_updates:
            headers["If-Match"] = etag
        response = self.client.request(
            "PATCH",
            f"{path}/{item_id}",
            json=dict(changes),
            headers=headers,
            record_id=str(item_id),
        )
        return dict(self.client.json(response, record_id=str(item_id)))


def oracle_instant(mark: Any) -> str:
    """A cursor mark as Oracle's ISO-8601 literal in UTC (millisecond precision)."""
    import pandas as pd

    moment = pd.Timestamp(mark)
    moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
    return moment.floor("ms").isoformat(timespec="milliseconds")
