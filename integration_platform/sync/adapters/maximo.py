"""IBM Maximo work orders as a sync side, through :class:`MaximoConnector`.

The record id is ``SITEID/WONUM`` (key fields ``("siteid", "wonum")``); writes address the
record by the ``href`` read with it. Give the connector ``conditional_updates=True`` so an
update carries the ``_rowstamp`` read as ``If-Match`` and a record changed meanwhile is refused
(``Conflict``) instead of overwritten. Maximo offers no delete through the sync: a work order
the sync created and must take back is set to the ``cancel_values`` (status ``CAN``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from integration_platform.connectors.cmms.maximo import MaximoConnector
from integration_platform.connectors.cursor import Cursor
from integration_platform.connectors.pagination import Paginator, build_paginator
from integration_platform.connectors.rest import versioned_frame
from integration_platform.sync.adapters.base import SyncAdapter, WriteResult

MATCH_CHUNK = 100  # values per oslc.where "in [...]": keeps the URL short


class MaximoWorkOrderAdapter(SyncAdapter):
    """Maximo work orders (``mxwo``/``mxapiwodetail``) read in full and written one by one."""

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
        self.cancel_values = dict(cancel_values or {"status": "CAN"})
        self.page_size = page_size
        self._hrefs: dict[str, str] = {}

    supports_since = True

    def read(self, *, since: datetime | None = None) -> pd.DataFrame:
        """All work orders of the connector's sites; with ``since``, those whose
        ``changedate`` is at or after it (``oslc.where changedate>=``)."""
        cursor = None if since is None else Cursor(high_water_mark=pd.Timestamp(since))
        pages = self.connector.read_work_orders(since=cursor, page_size=self.page_size)
        return self._remember([page.frame for page in pages])

    def read_matching(self, field: str, values: Sequence[Any]) -> pd.DataFrame | None:
        """Work orders whose ``field`` is one of ``values`` (``oslc.where field in [...]``),
        a hundred values per request."""
        texts = sorted({str(v) for v in values})
        if any('"' in text for text in texts):
            return None  # not expressible in oslc.where: the engine reads everything
        connector = self.connector
        stream = connector.work_orders_stream()
        page_size = self.page_size or connector.page_size
        frames = []
        for start in range(0, len(texts), MATCH_CHUNK):
            chunk = texts[start : start + MATCH_CHUNK]
            params = connector.stream_params(stream, since=None, page_size=page_size)
            clause = f"{field} in [" + ",".join(f'"{text}"' for text in chunk) + "]"
            where = params.get("oslc.where")
            params["oslc.where"] = f"{where} and {clause}" if where else clause
            paginator = (
                stream.paginator
                if isinstance(stream.paginator, Paginator)
                else build_paginator(stream.paginator, **stream.paginator_options)
            )
            for records, _url in connector.client.paginate(
                stream.path, paginator=paginator, params=params, page_size=page_size
            ):
                frames.append(versioned_frame(stream, records)[0])
        return self._remember(frames)

    def _remember(self, frames: list[pd.DataFrame]) -> pd.DataFrame:
        """One frame of the pages read; the href of each record kept for writes."""
        frames = [frame for frame in frames if len(frame)]
        if not frames:
            return pd.DataFrame(columns=["siteid", "wonum", "_rowstamp", "href"])
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

    def create(self, values: Mapping[str, Any]) -> WriteResult:
        """Create a work order. Without a ``wonum`` Maximo numbers it (autokey); the number
        comes back in the stored record, which the engine writes back to the source."""
        record = {**self.create_defaults, **_json_values(values)}
        for key in self.side.key_fields:
            if record.get(key) is None:
                record.pop(key, None)
        body = self.connector.create_work_order(record)
        external_id = "/".join(str(body[k]) for k in self.side.key_fields)
        if body.get("href"):
            self._hrefs[external_id] = str(body["href"])
        return WriteResult(external_id, _text(body.get("_rowstamp")), body)

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
            raise KeyError(f"{self.system}: no href known for work order {external_id}")
        body = self.connector.update_work_order(href, _json_values(changes), rowstamp=version)
        if not body.get("_rowstamp"):
            body = dict(self.fetch(external_id) or {})
        return WriteResult(external_id, _text(body.get("_rowstamp")), body)

    def retire(self, external_id: str, *, version: str | None) -> WriteResult:
        """Take back a work order the sync created: Maximo keeps it, cancelled."""
        return self.update(external_id, self.cancel_values, version=version, expected={})


def _json_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Values as Maximo's JSON expects them: dates as ISO-8601 with offset."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, datetime | pd.Timestamp):
            value = pd.Timestamp(value).isoformat()
        out[name] = value
    return out


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
