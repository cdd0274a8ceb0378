"""IBM Maximo objects (work orders, assets, PMs) as sync sides, through :class:`MaximoConnector`.

One base, :class:`MaximoOslcAdapter`, reads and writes any OSLC object structure; a subclass
only declares an :class:`OslcObject`: the canonical entity it carries, the connector's stream
(object structure and key fields), the connector's create and update methods for it, and how
a record the sync created is taken back.

The record id is the key fields joined with ``/`` (``SITEID/WONUM``, ``SITEID/ASSETNUM``,
``SITEID/PMNUM``); writes address the record by the ``href`` read with it. Give the
connector ``conditional_updates=True`` so an update carries the ``_rowstamp`` read as
``If-Match`` and a record changed meanwhile is refused (``Conflict``) instead of overwritten.
Maximo offers no delete through the sync: a record the sync created and must take back is
set to the ``cancel_values`` (work order ``CAN``, asset ``DECOMMISSIONED``, PM ``INACTIVE``).

Every write goes through the connector's own method for the object (``create_work_order``,
``update_asset``, ``create_maintenance_schedule``, ...), so OSLC conventions, retries (a
create is never repeated), errors and host pinning are decided in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import pandas as pd

from integration_platform.connectors.cmms.maximo import MaximoConnector
from integration_platform.connectors.cursor import Cursor
from integration_platform.connectors.pagination import Paginator, build_paginator
from integration_platform.connectors.rest import RestStream, versioned_frame
from integration_platform.sync.adapters.base import (
    SyncAdapter,
    WriteResult,
    json_values,
    version_text,
)

MATCH_CHUNK = 100  # values per oslc.where "in [...]": keeps the URL short


Create = Callable[[MaximoConnector, Mapping[str, Any]], dict[str, Any]]
"""A connector method ``(connector, record)`` answering the stored record."""
Update = Callable[..., dict[str, Any]]
"""A connector method ``(connector, href, changes, *, rowstamp)`` answering the record."""


@dataclass(frozen=True)
class OslcObject:
    """What tells one Maximo object apart for the sync: the canonical ``entity``, the
    connector's ``stream`` (object structure path, key fields, selected attributes), its
    ``create`` and ``update`` methods, and the values that take back a record the sync
    created."""

    entity: str
    stream: Callable[[MaximoConnector], RestStream]
    create: Create
    update: Update
    cancel_values: Mapping[str, Any]


class MaximoOslcAdapter(SyncAdapter):
    """A Maximo object structure read in full (or since a change date) and written one
    record at a time through the connector. Subclasses only set ``oslc``."""

    oslc: ClassVar[OslcObject]
    supports_since = True

    def __init__(
        self,
        connector: MaximoConnector,
        *,
        create_defaults: Mapping[str, Any] | None = None,
        cancel_values: Mapping[str, Any] | None = None,
        page_size: int | None = None,
    ) -> None:
        super().__init__()
        self.connector = connector
        self.create_defaults = dict(create_defaults or {})
        self.cancel_values = dict(cancel_values or self.oslc.cancel_values)
        self.page_size = page_size
        self._hrefs: dict[str, str] = {}

    @property
    def entity(self) -> str:
        return self.oslc.entity

    def stream(self) -> RestStream:
        """The connector's declaration of the object structure (its configured name)."""
        return self.oslc.stream(self.connector)

    # -- reading ----------------------------------------------------------------------------

    def read(self, *, since: datetime | None = None) -> pd.DataFrame:
        """Every record of the connector's sites; with ``since``, those whose
        ``changedate`` is at or after it (``oslc.where changedate>=``)."""
        cursor = None if since is None else Cursor(high_water_mark=pd.Timestamp(since))
        page_size = self.page_size or self.connector.page_size
        pages = self.connector.read_stream(self.stream(), since=cursor, page_size=page_size)
        return self._remember([page.frame for page in pages])

    def read_matching(self, field: str, values: Sequence[Any]) -> pd.DataFrame | None:
        """Records whose ``field`` is one of ``values`` (``oslc.where field in [...]``), a
        hundred values per request."""
        texts = sorted({str(v) for v in values})
        if any('"' in text for text in texts):
            return None  # not expressible in oslc.where: the engine reads everything
        connector = self.connector
        stream = self.stream()
        page_size = self.page_size or connector.page_size
        paginator = (
            stream.paginator
            if isinstance(stream.paginator, Paginator)
            else build_paginator(stream.paginator, **stream.paginator_options)
        )
        frames = []
        for start in range(0, len(texts), MATCH_CHUNK):
            chunk = texts[start : start + MATCH_CHUNK]
            params = connector.stream_params(stream, since=None, page_size=page_size)
            clause = f"{field} in [" + ",".join(f'"{text}"' for text in chunk) + "]"
            where = params.get("oslc.where")
            params["oslc.where"] = f"{where} and {clause}" if where else clause
            for records, _url in connector.client.paginate(
                stream.path, paginator=paginator, params=params, page_size=page_size
            ):
                frames.append(versioned_frame(stream, records)[0])
        return self._remember(frames)

    def _remember(self, frames: list[pd.DataFrame]) -> pd.DataFrame:
        """One frame of the pages read; the href of each record kept for writes."""
        frames = [frame for frame in frames if len(frame)]
        if not frames:
            return pd.DataFrame(columns=[*self.stream().primary_key, "_rowstamp", "href"])
        frame = pd.concat(frames, ignore_index=True)
        ids = self.external_ids(frame)
        self._hrefs.update(zip(ids.astype(str), frame["href"].astype(str), strict=True))
        return frame

    def fetch(self, external_id: str) -> Mapping[str, Any] | None:
        href = self._hrefs.get(external_id)
        if href is None:
            return None
        client = self.connector.client
        response = client.request(
            "GET", client.on_our_host(href), params={"lean": 1}, record_id=external_id
        )
        body = client.json(response, record_id=external_id)
        return dict(body) if isinstance(body, Mapping) else None

    # -- writing ----------------------------------------------------------------------------

    def create(self, values: Mapping[str, Any]) -> WriteResult:
        """Create a record. Without its number (``wonum``, ``assetnum``, ``pmnum``) Maximo
        numbers it (autokey); the number comes back in the stored record, which the engine
        writes back to the source."""
        record = self.without_empty_keys({**self.create_defaults, **json_values(values)})
        body = self.oslc.create(self.connector, record)
        external_id = self.external_id_of(body)
        if body.get("href"):
            self._hrefs[external_id] = str(body["href"])
        return WriteResult(external_id, version_text(body.get("_rowstamp")), body)

    def update(
        self,
        external_id: str,
        changes: Mapping[str, Any],
        *,
        version: str | None,
        expected: Mapping[str, Any],
    ) -> WriteResult:
        href = self._hrefs.get(external_id)
        if href is None:
            raise KeyError(f"{self.system}: no href known for {self.entity} {external_id}")
        body = self.oslc.update(self.connector, href, json_values(changes), rowstamp=version)
        if not body.get("_rowstamp"):
            body = dict(self.fetch(external_id) or {})
        return WriteResult(external_id, version_text(body.get("_rowstamp")), body)

    def retire(self, external_id: str, *, version: str | None) -> WriteResult:
        """Take back a record the sync created: Maximo keeps it, with ``cancel_values``."""
        return self.update(external_id, self.cancel_values, version=version, expected={})


class MaximoWorkOrderAdapter(MaximoOslcAdapter):
    """Maximo work orders (``mxwo``/``mxapiwodetail``)."""

    oslc = OslcObject(
        entity="work_order",
        stream=MaximoConnector.work_orders_stream,
        create=MaximoConnector.create_work_order,
        update=MaximoConnector.update_work_order,
        cancel_values={"status": "CAN"},
    )


class MaximoAssetAdapter(MaximoOslcAdapter):
    """Maximo assets (``mxasset``/``mxapiasset``)."""

    oslc = OslcObject(
        entity="asset",
        stream=MaximoConnector.assets_stream,
        create=MaximoConnector.create_asset,
        update=MaximoConnector.update_asset,
        cancel_values={"status": "DECOMMISSIONED"},
    )


class MaximoPmAdapter(MaximoOslcAdapter):
    """Maximo preventive maintenance records (``mxpm``/``mxapipm``) as canonical maintenance
    schedules. Meter-based frequencies (the ``pmmeter`` child rows) are read as JSON text and
    are not written: sync the PM's own attributes."""

    oslc = OslcObject(
        entity="maintenance_schedule",
        stream=MaximoConnector.maintenance_schedules_stream,
        create=MaximoConnector.create_maintenance_schedule,
        update=MaximoConnector.update_maintenance_schedule,
        cancel_values={"status": "INACTIVE"},
    )


MAXIMO_ADAPTERS: dict[str, type[MaximoOslcAdapter]] = {
    adapter.oslc.entity: adapter
    for adapter in (MaximoWorkOrderAdapter, MaximoAssetAdapter, MaximoPmAdapter)
}
"""The Maximo adapter for each canonical entity."""
