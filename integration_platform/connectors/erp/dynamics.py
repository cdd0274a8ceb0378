"""Microsoft Dynamics 365 Field Service through the Dataverse Web API (OData V4): work orders
(``msdyn_workorders``), customer assets (``msdyn_customerassets``) and agreement booking setups
(``msdyn_agreementbookingsetups``) as maintenance schedules.

Every request carries ``OData-MaxVersion``/``OData-Version: 4.0``. Pages are sized with
``Prefer: odata.maxpagesize`` (``$skip`` is not supported) and followed by ``@odata.nextLink``;
lookups and option sets come with their display names when
``odata.include-annotations="OData.Community.Display.V1.FormattedValue"`` is preferred.

Two incremental modes:

- by ``modifiedon`` (default): ``$filter=modifiedon ge <mark>`` ordered by ``modifiedon`` and
  the id, with the cursor semantics every connector shares;
- by change tracking (``change_tracking=True``): ``Prefer: odata.track-changes``; the last page
  carries ``@odata.deltaLink``, which becomes the cursor (kind ``text``) and is followed on the
  next read. Delta reads also return deleted rows (``id`` and ``reason: deleted``). Dataverse
  refuses ``$filter``/``$orderby`` with change tracking, and the entity must have change
  tracking enabled.

Rows carry ``@odata.etag``, kept as the version; updates send it as ``If-Match`` so a stale
update fails with ``Conflict`` (412), and ``If-Match: *`` without one, because a PATCH to an
unknown id would otherwise create a record. Work orders and customer assets are created and
updated this way.

Maintenance schedules are agreement booking setups, not agreements: an agreement
(``msdyn_agreement``) is the service contract (customer, price list, start and end), while
each of its booking setups holds one recurring maintenance visit - the recurrence
(``msdyn_recurrencesettings``), work order type, priority and whether and how far ahead work
orders are generated - which is what a PM or a maintenance plan is elsewhere. The assets a
visit covers are on its agreement booking incidents, which are not read here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import Field
from typing_extensions import override

from integration_platform.connectors.auth import Auth, OAuth2ClientCredentials, dig
from integration_platform.connectors.base import Page, records_to_frame, resolve_secret
from integration_platform.connectors.cursor import Cursor
from integration_platform.connectors.errors import NotFound
from integration_platform.connectors.pagination import ODataV4Next
from integration_platform.connectors.rest import RestConnector, RestStream

WORK_ORDER_FIELDS = (
    "msdyn_workorderid",
    "msdyn_name",
    "msdyn_workordersummary",
    "msdyn_instructions",
    "msdyn_systemstatus",
    "_msdyn_serviceaccount_value",
    "_msdyn_customerasset_value",
    "_msdyn_priority_value",
    "_msdyn_workordertype_value",
    "msdyn_timefrompromised",
    "msdyn_timetopromised",
    "msdyn_firstarrivedon",
    "msdyn_completedon",
    "createdon",
    "modifiedon",
)
CUSTOMER_ASSET_FIELDS = (
    "msdyn_customerassetid",
    "msdyn_name",
    "_msdyn_account_value",
    "_msdyn_customerassetcategory_value",
    "_msdyn_parentasset_value",
    "_msdyn_masterasset_value",
    "_msdyn_product_value",
    "statecode",
    "statuscode",
    "createdon",
    "modifiedon",
)
BOOKING_SETUP_FIELDS = (
    "msdyn_agreementbookingsetupid",
    "msdyn_name",
    "_msdyn_agreement_value",
    "_msdyn_workordertype_value",
    "_msdyn_priority_value",
    "msdyn_recurrencesettings",
    "msdyn_autogenerateworkorder",
    "msdyn_generateworkorderdaysinadvance",
    "statecode",
    "statuscode",
    "createdon",
    "modifiedon",
)
FORMATTED_VALUES = 'odata.include-annotations="OData.Community.Display.V1.FormattedValue"'


@dataclass(frozen=True)
class DeltaLinkWatch(ODataV4Next):
    """OData V4 paging that also notes the ``@odata.deltaLink`` of the last page."""

    seen: dict[str, str] = field(default_factory=dict, compare=False)

    def next(self, request: Any, body: Any, records: list[dict[str, Any]]) -> Any:
        link = dig(body, "@odata.deltaLink")
        if isinstance(link, str):
            self.seen["delta_link"] = link
        return super().next(request, body, records)


class DynamicsConnector(RestConnector):
    """Dynamics 365 / Dataverse work orders and customer assets (incremental reads, creates,
    conditional updates) and agreement booking setups (incremental reads)."""

    system: ClassVar[str] = "dynamics"
    health_path: ClassVar[str] = "/WhoAmI"

    api_version: str = Field(default="v9.2", description="Web API version in /api/data/<v>.")
    tenant_id: str | None = Field(
        default=None, description="Entra ID tenant (for the default token_url); dg.EnvVar."
    )
    client_id: str | None = Field(default=None, description="App registration id; dg.EnvVar.")
    client_secret: str | None = Field(default=None, description="Client secret; use dg.EnvVar.")
    token_url: str | None = Field(
        default=None,
        description="Token endpoint; default https://login.microsoftonline.com/<tenant_id>/"
        "oauth2/v2.0/token. A path is taken relative to base_url.",
    )
    scope: str | None = Field(
        default=None, description="OAuth2 scope; default <base_url>/.default."
    )
    entity_set: str = Field(default="msdyn_workorders", description="Entity set of work orders.")
    asset_entity_set: str = Field(
        default="msdyn_customerassets", description="Entity set of customer assets."
    )
    schedule_entity_set: str = Field(
        default="msdyn_agreementbookingsetups",
        description="Entity set of agreement booking setups (the maintenance schedules).",
    )
    schedule_fields: list[str] = Field(
        default_factory=lambda: list(BOOKING_SETUP_FIELDS),
        description="Columns read from agreement booking setups (the id and modifiedon are "
        "added when missing); trim it where a Field Service release lacks one.",
    )
    page_size: int = Field(
        default=5000, ge=1, le=5000, description="Prefer: odata.maxpagesize (at most 5,000)."
    )
    formatted_values: bool = Field(
        default=True, description="Ask for display names of lookups and option sets."
    )
    change_tracking: bool = Field(
        default=False,
        description="Read changes with odata.track-changes; the cursor is then the delta link.",
    )

    # -- declarations ----------------------------------------------------------------------

    def _stream(self, name: str, entity_set: str, fields: tuple[str, ...]) -> RestStream:
        """An entity set keyed by its id column (the first field), read on ``modifiedon``."""
        return RestStream(
            name=name,
            path=f"/{entity_set}",
            primary_key=(fields[0],),
            replication_key="modifiedon",
            version_key="@odata.etag",
            fields=fields,
            paginator="odata_v4",
            headers={"Prefer": FORMATTED_VALUES} if self.formatted_values else {},
        )

    def work_orders_stream(self) -> RestStream:
        return self._stream("work_orders", self.entity_set, WORK_ORDER_FIELDS)

    def assets_stream(self) -> RestStream:
        return self._stream("assets", self.asset_entity_set, CUSTOMER_ASSET_FIELDS)

    def maintenance_schedules_stream(self) -> RestStream:
        key, stamp = BOOKING_SETUP_FIELDS[0], "modifiedon"
        fields = tuple(dict.fromkeys([key, *self.schedule_fields, stamp]))
        return self._stream("maintenance_schedules", self.schedule_entity_set, fields)

    # -- hooks -----------------------------------------------------------------------------

    @override
    def api_url(self) -> str:
        return f"{self.root_url()}/api/data/{self.api_version}"

    @override
    def build_auth(self) -> Auth:
        if self.token_url:
            token_url = resolve_secret(self.token_url, field="token_url", system=self.system)
        else:
            tenant = resolve_secret(self.tenant_id, field="tenant_id", system=self.system)
            token_url = f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
        return OAuth2ClientCredentials(
            token_url=token_url if "://" in token_url else f"{self.root_url()}{token_url}",
            client_id=resolve_secret(self.client_id, field="client_id", system=self.system),
            client_secret=resolve_secret(
                self.client_secret, field="client_secret", system=self.system
            ),
            scope=self.scope or f"{self.root_url()}/.default",
        )

    @override
    def auth_hint(self) -> str:
        return (
            "check client_id, client_secret and tenant_id (DYNAMICS_CLIENT_ID, "
            "DYNAMICS_CLIENT_SECRET, DYNAMICS_TENANT_ID by convention), that the secret has "
            "not expired, and that the app is an application user with a security role in "
            "this environment"
        )

    @override
    def default_headers(self) -> dict[str, str]:
        return {
            "OData-MaxVersion": "4.0",
            "OData-Version": "4.0",
            "Content-Type": "application/json; charset=utf-8",
        }

    @override
    def stream_params(
        self, stream: RestStream, *, since: Cursor | None, page_size: int | None
    ) -> dict[str, Any]:
        key = stream.replication_key or "modifiedon"
        params: dict[str, Any] = {"$select": ",".join(stream.fields)}
        if self.change_tracking:
            return params
        params["$orderby"] = ",".join(f"{n} asc" for n in (key, *stream.primary_key))
        if since is not None:
            params["$filter"] = f"{key} ge {dataverse_instant(since.high_water_mark)}"
        return params

    @override
    def describe_health(self, body: Any) -> str:
        user = body.get("UserId") if isinstance(body, Mapping) else None
        return f"signed in to {self.api_url()} as user {user or 'unknown'}"

    # -- domain methods --------------------------------------------------------------------

    def read_work_orders(
        self, *, since: Cursor | None = None, page_size: int | None = None
    ) -> Iterator[Page]:
        """Work orders changed at or after ``since`` (all when None), page by page; with
        change tracking, the changes since the delta link in ``since``."""
        return self._read(self.work_orders_stream(), since=since, page_size=page_size)

    def read_assets(
        self, *, since: Cursor | None = None, page_size: int | None = None
    ) -> Iterator[Page]:
        """Customer assets changed at or after ``since`` (all when None), page by page; with
        change tracking, the changes since the delta link in ``since``."""
        return self._read(self.assets_stream(), since=since, page_size=page_size)

    def read_maintenance_schedules(
        self, *, since: Cursor | None = None, page_size: int | None = None
    ) -> Iterator[Page]:
        """Agreement booking setups changed at or after ``since`` (all when None), page by
        page; with change tracking, the changes since the delta link in ``since``."""
        return self._read(self.maintenance_schedules_stream(), since=since, page_size=page_size)

    def _read(
        self, stream: RestStream, *, since: Cursor | None, page_size: int | None
    ) -> Iterator[Page]:
        """By ``modifiedon``, or by change tracking when configured or when ``since`` is a
        delta link (a cursor of kind ``text``)."""
        size = page_size or self.page_size
        if self.change_tracking or (since is not None and since.kind == "text"):
            return self._read_changes(stream, since=since, page_size=size)
        return self.read_stream(stream, since=since, page_size=size)

    def _read_changes(
        self, stream: RestStream, *, since: Cursor | None, page_size: int
    ) -> Iterator[Page]:
        """Change-tracking pages; every page but the last keeps the old cursor (the delta
        link arrives with the last page), so an interrupted read starts again from it. The
        last page is yielded even when empty: it carries the new delta link."""
        paginator = DeltaLinkWatch()
        prefer = [p for p in (stream.headers.get("Prefer"),) if p] + ["odata.track-changes"]
        headers = {"Prefer": ",".join(prefer)}
        if since is None:
            path = stream.path
            params = self.stream_params(stream, since=None, page_size=page_size)
        else:
            path, params = self.client.on_our_host(str(since.high_water_mark)), {}
        pages = list_ahead(
            self.client.paginate(
                path, paginator=paginator, params=params, headers=headers, page_size=page_size
            )
        )
        for number, ((records, url), last) in enumerate(pages, start=1):
            cursor = since
            if last and "delta_link" in paginator.seen:
                cursor = Cursor(paginator.seen["delta_link"], kind="text")
            if records or (last and cursor != since):
                frame = records_to_frame(records, stream.fields)
                yield Page(frame=frame, cursor=cursor, number=number, url=url)

    def get_work_order(self, work_order_id: str) -> dict[str, Any] | None:
        """The work order with this id (GUID), with its ``@odata.etag``; None when Dataverse
        has no such row."""
        stream = self.work_orders_stream()
        try:
            response = self.client.request(
                "GET",
                f"{stream.path}({work_order_id})",
                params={"$select": ",".join(stream.fields)},
                record_id=work_order_id,
            )
        except NotFound:
            return None
        body = self.client.json(response, record_id=work_order_id)
        return dict(body) if isinstance(body, Mapping) else None

    def create_work_order(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Create a work order; the stored row (id, ``@odata.etag``) comes back. A record
        that names its id (``msdyn_workorderid``) is created with it, and Dataverse refuses
        a second create with the same id."""
        return self._create(self.work_orders_stream(), record)

    def update_work_order(
        self, work_order_id: str, changes: Mapping[str, Any], *, etag: str | None = None
    ) -> dict[str, Any]:
        """Apply ``changes`` to a work order and return the updated row. With ``etag`` (the
        ``@odata.etag`` read with the row) a row changed since fails with ``Conflict``."""
        return self._update(self.work_orders_stream(), work_order_id, changes, etag=etag)

    def create_asset(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Create a customer asset (``msdyn_name`` names it); the stored row comes back."""
        return self._create(self.assets_stream(), record)

    def update_asset(
        self, asset_id: str, changes: Mapping[str, Any], *, etag: str | None = None
    ) -> dict[str, Any]:
        """Apply ``changes`` to a customer asset and return the updated row; ``etag`` works
        as for :meth:`update_work_order`."""
        return self._update(self.assets_stream(), asset_id, changes, etag=etag)

    def _create(self, stream: RestStream, record: Mapping[str, Any]) -> dict[str, Any]:
        response = self.client.request(
            "POST",
            stream.path,
            json=dict(record),
            headers={"Prefer": "return=representation"},
            record_id=str(record.get("msdyn_name") or "") or None,
        )
        body = self.client.json(response)
        return dict(body) if isinstance(body, Mapping) else {}

    def _update(
        self,
        stream: RestStream,
        record_id: str,
        changes: Mapping[str, Any],
        *,
        etag: str | None,
    ) -> dict[str, Any]:
        response = self.client.request(
            "PATCH",
            f"{stream.path}({record_id})",
            json=dict(changes),
            headers={"If-Match": etag or "*", "Prefer": "return=representation"},
            record_id=record_id,
        )
        if response.status_code == 204 or not response.content:
            return {}
        body = self.client.json(response, record_id=record_id)
        return dict(body) if isinstance(body, Mapping) else {}


def list_ahead(pages: Iterator[Any]) -> Iterator[tuple[Any, bool]]:
    """Each item with whether it is the last, looking one item ahead."""
    previous: Any = None
    started = False
    for item in pages:
        if started:
            yield previous, False
        previous, started = item, True
    if started:
        yield previous, True


def dataverse_instant(mark: Any) -> str:
    """A cursor mark as a Dataverse date-time literal (UTC, second precision, floored: the
    extra rows this may fetch are dropped by the cursor)."""
    import pandas as pd

    moment = pd.Timestamp(mark)
    moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
    return moment.floor("s").strftime("%Y-%m-%dT%H:%M:%SZ")
