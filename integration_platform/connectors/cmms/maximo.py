"""IBM Maximo through its OSLC/JSON API (Maximo 7.6 ``/maximo/oslc``, MAS 8+ ``/maximo/api``).

Reads use ``lean=1`` JSON, ``oslc.select`` for the declared attributes, ``oslc.where`` on
``changedate >=`` the cursor's mark and ``oslc.orderBy=+changedate,+<key>`` so the cursor can
advance page by page; Maximo pages with ``oslc.pageSize`` and ``responseInfo.nextPage.href``.
Writes follow the API's own conventions for work orders, assets and PMs alike: a create POSTs
to the object structure with ``properties: *`` to get the record back (never retried: Maximo
may have stored it before failing); an update POSTs to the record's ``href`` with
``x-method-override: PATCH`` (safe to repeat), with the ``_rowstamp`` read as ``If-Match``
when ``conditional_updates`` is on, so a record changed meanwhile fails with ``Conflict``.

Preventive maintenance records (``mxpm``/``mxapipm``) are read like work orders. Their
calendar frequency is on the PM (``frequency``, ``frequnit``); meter-based frequencies are
``PMMETER`` child rows, selected as ``pmmeter{metername,frequency,lastpmwogenread}`` and
kept, like any nested value, as JSON text in the ``pmmeter`` column.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field
from typing_extensions import override

from integration_platform.connectors.auth import ApiKeyAuth, Auth, BasicAuth
from integration_platform.connectors.base import Page, resolve_secret
from integration_platform.connectors.cursor import Cursor
from integration_platform.connectors.rest import RestConnector, RestStream

WORK_ORDER_FIELDS = (
    "wonum",
    "siteid",
    "orgid",
    "description",
    "status",
    "worktype",
    "wopriority",
    "assetnum",
    "location",
    "reportdate",
    "schedstart",
    "schedfinish",
    "targcompdate",
    "actstart",
    "actfinish",
    "actlabhrs",
    "actlabcost",
    "actmatcost",
    "acttotalcost",
    "lead",
    "pmnum",
    "changedate",
    "_rowstamp",
    "href",
)
ASSET_FIELDS = (
    "assetnum",
    "siteid",
    "orgid",
    "description",
    "assettype",
    "status",
    "manufacturer",
    "serialnum",
    "installdate",
    "priority",
    "location",
    "parent",
    "purchaseprice",
    "changedate",
    "_rowstamp",
    "href",
)
PM_FIELDS = (
    "pmnum",
    "siteid",
    "orgid",
    "description",
    "status",
    "assetnum",
    "location",
    "worktype",
    "wopriority",
    "jpnum",
    "frequency",
    "frequnit",
    "nextdate",
    "laststartdate",
    "lastcompdate",
    "usetargetdate",
    "pmmeter",
    "changedate",
    "_rowstamp",
    "href",
)
PM_METER_ATTRIBUTES = ("metername", "frequency", "lastpmwogenread")
# Returned by Maximo on every record; not attributes to put in oslc.select.
SYSTEM_PROPERTIES = frozenset({"_rowstamp", "href"})


class MaximoConnector(RestConnector):
    """IBM Maximo work orders, assets and PMs: incremental reads, creates and updates."""

    system: ClassVar[str] = "maximo"
    health_path: ClassVar[str] = "/whoami"

    context_root: str = Field(
        default="/maximo/oslc",
        description="API root under base_url: /maximo/oslc (7.6) or /maximo/api (MAS 8+).",
    )
    auth_method: Literal["apikey", "maxauth", "basic"] = Field(
        default="apikey",
        description="apikey header, maxauth (native login) or basic (LDAP).",
    )
    api_key: str | None = Field(
        default=None, description="API key for auth_method apikey; use dg.EnvVar."
    )
    username: str | None = Field(default=None, description="User for maxauth/basic; dg.EnvVar.")
    password: str | None = Field(
        default=None, description="Password for maxauth/basic; use dg.EnvVar."
    )
    site_ids: list[str] = Field(
        default_factory=list, description="Only these sites (SITEID); empty reads every site."
    )
    work_order_object_structure: str = Field(
        default="mxwo", description="Object structure for work orders (mxwo, mxapiwodetail)."
    )
    asset_object_structure: str = Field(
        default="mxasset", description="Object structure for assets (mxasset, mxapiasset)."
    )
    pm_object_structure: str = Field(
        default="mxpm", description="Object structure for PMs (mxpm, mxapipm)."
    )
    pm_meter_child: str | None = Field(
        default="pmmeter",
        description="Child object of the PM object structure holding meter-based frequencies "
        "(PMMETER); None when the object structure has no such child.",
    )
    page_size: int = Field(default=500, ge=1, description="oslc.pageSize for reads.")
    conditional_updates: bool = Field(
        default=False,
        description="Send the record's _rowstamp as If-Match on updates, so a stale update "
        "fails with Conflict instead of overwriting (check your Maximo honours it).",
    )

    # -- declarations ----------------------------------------------------------------------

    def work_orders_stream(self) -> RestStream:
        return RestStream(
            name="work_orders",
            path=f"/os/{self.work_order_object_structure}",
            primary_key=("siteid", "wonum"),
            replication_key="changedate",
            version_key="_rowstamp",
            fields=WORK_ORDER_FIELDS,
            paginator="maximo",
        )

    def assets_stream(self) -> RestStream:
        return RestStream(
            name="assets",
            path=f"/os/{self.asset_object_structure}",
            primary_key=("siteid", "assetnum"),
            replication_key="changedate",
            version_key="_rowstamp",
            fields=ASSET_FIELDS,
            paginator="maximo",
        )

    def maintenance_schedules_stream(self) -> RestStream:
        child = self.pm_meter_child
        fields = tuple(
            child if name == "pmmeter" else name for name in PM_FIELDS if name != "pmmeter" or child
        )
        return RestStream(
            name="maintenance_schedules",
            path=f"/os/{self.pm_object_structure}",
            primary_key=("siteid", "pmnum"),
            replication_key="changedate",
            version_key="_rowstamp",
            fields=fields,
            paginator="maximo",
        )

    # -- hooks -----------------------------------------------------------------------------

    @override
    def api_url(self) -> str:
        return f"{self.root_url()}/{self.context_root.strip('/')}"

    @override
    def build_auth(self) -> Auth:
        if self.auth_method == "apikey":
            key = resolve_secret(self.api_key, field="api_key", system=self.system)
            return ApiKeyAuth(key=key, header="apikey")
        user = resolve_secret(self.username, field="username", system=self.system)
        password = resolve_secret(self.password, field="password", system=self.system)
        if self.auth_method == "basic":
            return BasicAuth(username=user, password=password)
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        return ApiKeyAuth(key=token, header="maxauth")

    @override
    def auth_hint(self) -> str:
        if self.auth_method == "apikey":
            return (
                "check the API key in field api_key (MAXIMO_API_KEY by convention): it must be "
                "listed in Maximo's API Keys application for an active user; Maximo "
                "Application Suite serves API keys under context_root /maximo/api"
            )
        return (
            "check username and password (MAXIMO_USERNAME, MAXIMO_PASSWORD by convention), "
            "that the user is active, and that auth_method matches the server: maxauth for "
            "native Maximo login, basic for LDAP"
        )

    @override
    def default_headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json"}

    @override
    def stream_params(
        self, stream: RestStream, *, since: Cursor | None, page_size: int | None
    ) -> dict[str, Any]:
        select = [
            self._select_item(name) for name in stream.fields if name not in SYSTEM_PROPERTIES
        ]
        order = [stream.replication_key or "changedate"]
        order += [key for key in stream.primary_key if key != "siteid"]
        params: dict[str, Any] = {
            "lean": 1,
            "oslc.select": ",".join(select),
            "oslc.orderBy": ",".join(f"+{name}" for name in order),
        }
        where = self.where_clauses(since=since, replication_key=stream.replication_key)
        if where:
            params["oslc.where"] = " and ".join(where)
        return params

    @override
    def describe_health(self, body: Any) -> str:
        who = body.get("loginID") or body.get("personid") if isinstance(body, Mapping) else None
        return f"signed in to {self.api_url()} as {who or 'an unnamed user'}"

    def _select_item(self, name: str) -> str:
        """An attribute for oslc.select; a child object with the attributes it needs."""
        if self.pm_meter_child and name == self.pm_meter_child:
            return f"{name}{{{','.join(PM_METER_ATTRIBUTES)}}}"
        return name

    # -- domain methods --------------------------------------------------------------------

    def where_clauses(self, *, since: Cursor | None, replication_key: str | None) -> list[str]:
        """``siteid`` and ``changedate >=`` clauses in Maximo's where syntax."""
        clauses = []
        if len(self.site_ids) == 1:
            clauses.append(f'siteid="{self.site_ids[0]}"')
        elif self.site_ids:
            clauses.append("siteid in [" + ",".join(f'"{s}"' for s in self.site_ids) + "]")
        if since is not None and replication_key:
            clauses.append(f'{replication_key}>="{maximo_datetime(since.high_water_mark)}"')
        return clauses

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
        """PMs changed at or after ``since`` (all when None), page by page."""
        return self.read_stream(
            self.maintenance_schedules_stream(), since=since, page_size=page_size or self.page_size
        )

    def create_work_order(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Create a work order; Maximo's stored record (href, wonum, _rowstamp) comes back."""
        return self._create(self.work_orders_stream(), record)

    def update_work_order(
        self,
        href: str,
        changes: Mapping[str, Any],
        *,
        rowstamp: str | None = None,
        merge_children: bool = False,
    ) -> dict[str, Any]:
        """Apply ``changes`` to the work order at ``href`` and return the updated record.

        ``rowstamp`` is the version read with the record; with ``conditional_updates`` it is
        sent as ``If-Match`` and a record changed since then fails with ``Conflict``.
        """
        return self._patch(href, changes, rowstamp=rowstamp, merge_children=merge_children)

    def create_asset(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Create an asset; the stored record (href, assetnum, _rowstamp) comes back. Without
        ``assetnum`` Maximo numbers it (autokey)."""
        return self._create(self.assets_stream(), record)

    def update_asset(
        self, asset_id: str, changes: Mapping[str, Any], *, rowstamp: str | None = None
    ) -> dict[str, Any]:
        """Apply ``changes`` to an asset and return the updated record.

        ``asset_id`` is the asset's ``href`` as read, or ``SITEID/ASSETNUM``, from which the
        href is built (Maximo's rest id: ``_`` + base64 of ``ASSETNUM/SITEID``). As for work
        orders, ``rowstamp`` is sent as ``If-Match`` with ``conditional_updates``.
        """
        return self._patch(self.asset_href(asset_id), changes, rowstamp=rowstamp)

    def create_maintenance_schedule(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Create a PM; the stored record (href, pmnum, _rowstamp) comes back. Without
        ``pmnum`` Maximo numbers it (autokey)."""
        return self._create(self.maintenance_schedules_stream(), record)

    def update_maintenance_schedule(
        self,
        href_or_id: str,
        changes: Mapping[str, Any],
        *,
        rowstamp: str | None = None,
        merge_children: bool = False,
    ) -> dict[str, Any]:
        """Apply ``changes`` to a PM and return the updated record.

        ``href_or_id`` is the PM's ``href`` as read, or ``SITEID/PMNUM``. ``rowstamp`` works
        as for work orders. Meter frequencies are ``pmmeter`` child rows: a change that lists
        some of them replaces the PM's meter rows unless ``merge_children`` (``patchtype:
        MERGE``) is set.
        """
        href = self.record_href(self.maintenance_schedules_stream(), href_or_id)
        return self._patch(href, changes, rowstamp=rowstamp, merge_children=merge_children)

    def asset_href(self, asset_id: str) -> str:
        """The asset's href: ``asset_id`` itself when it is one, else built from the key."""
        return self.record_href(self.assets_stream(), asset_id)

    def record_href(self, stream: RestStream, record_id: str) -> str:
        """A record's href: ``record_id`` itself when it is one, else built from
        ``SITEID/NUMBER`` (the rest id lists the number first, as Maximo's key does)."""
        if "://" in record_id or record_id.startswith("/"):
            return record_id
        site, separator, number = record_id.partition("/")
        if not separator or not site or not number:
            key = "/".join(name.upper() for name in stream.primary_key)
            raise ValueError(f"maximo: {stream.name}: {record_id!r} is neither an href nor {key}")
        return f"{self.api_url()}{stream.path}/{rest_id(number, site)}"

    def _create(self, stream: RestStream, record: Mapping[str, Any]) -> dict[str, Any]:
        """POST to the object structure with ``properties: *``: the stored record back. Not
        retried after a failure that may have reached Maximo (it could create it twice).
        Errors name the record by ``SITEID/NUMBER`` when the number is given."""
        key = stream.primary_key
        record_id = "/".join(str(record[k]) for k in key) if all(map(record.get, key)) else ""
        response = self.client.request(
            "POST",
            stream.path,
            params={"lean": 1},
            json=dict(record),
            headers={"properties": "*"},
            record_id=record_id or None,
        )
        return self._record_body(response, record_id or None)

    def _patch(
        self,
        href: str,
        changes: Mapping[str, Any],
        *,
        rowstamp: str | None,
        merge_children: bool = False,
    ) -> dict[str, Any]:
        headers = {"x-method-override": "PATCH", "properties": "*"}
        if merge_children:
            headers["patchtype"] = "MERGE"
        if rowstamp is not None and self.conditional_updates:
            headers["If-Match"] = str(rowstamp)
        record_id = record_key_from_href(href)
        response = self.client.request(
            "POST",
            self.client.on_our_host(href),
            params={"lean": 1},
            json=dict(changes),
            headers=headers,
            record_id=record_id,
            idempotent=True,
        )
        return self._record_body(response, record_id)

    def _record_body(self, response: Any, record_id: str | None) -> dict[str, Any]:
        if response.status_code == 204 or not response.content:
            return {}
        body = self.client.json(response, record_id=record_id)
        return dict(body) if isinstance(body, Mapping) else {"value": body}


def maximo_datetime(mark: Any) -> str:
    """A cursor mark as a Maximo date literal, in UTC and floored to the second (Maximo
    compares at second precision; flooring only re-reads rows the cursor then drops)."""
    import pandas as pd

    moment = pd.Timestamp(mark)
    moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
    return moment.floor("s").strftime("%Y-%m-%dT%H:%M:%S+00:00")


def rest_id(*values: str) -> str:
    """Maximo's rest id of a record: ``_`` + base64 of its key values joined by ``/`` (in
    the MBO's key order, e.g. ``ASSETNUM/SITEID``), ``=`` written as ``-``."""
    encoded = base64.b64encode("/".join(values).encode()).decode("ascii")
    return "_" + encoded.replace("=", "-")


def record_key_from_href(href: str) -> str:
    """``BEDFORD/1001`` from ``.../os/mxwo/_QkVERk9SRC8xMDAx`` (the rest id is ``_`` plus
    base64 of the key values, ``=`` written as ``-``); the last path segment otherwise."""
    tail = href.rstrip("/").rsplit("/", 1)[-1]
    if tail.startswith("_"):
        try:
            return base64.b64decode(tail[1:].replace("-", "=")).decode()
        except (binascii.Error, UnicodeDecodeError):
            return tail
    return tail
