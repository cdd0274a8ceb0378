"""SAP S/4HANA maintenance orders (API_MAINTENANCEORDER) as a sync side, through
:class:`SapConnector`, over OData V2 or V4 (the connector's ``odata_version``).

The record id is the order number (``MaintenanceOrder``); a create without one lets SAP
assign it. The version token is the order's ETag, which the connector leaves where each
protocol puts it: V4 sends ``@odata.etag`` on the record, V2 nests it in ``__metadata``
(read as JSON text), so V2 reads lift it into a ``__metadata.etag`` column. Declare that
column as the side's ``version_field``; updates then send it as ``If-Match`` (the connector
needs ``conditional_updates: true``), so an order saved in SAP during the run answers 412,
which the connector raises as ``Conflict`` and the engine turns into a conflict. SAP answers
an update with 204 and no body, so the adapter reads the order again for its new ETag (the
engine's echo suppression needs it). V2 sends ``LastChangeDateTime`` as ``/Date(ms+0000)/``;
it is read as ISO-8601 so the engine can compare change times (``last_writer_wins``).

SAP never deletes a maintenance order through its API: an order leaves the system only by
archiving after the deletion flag. So an order the sync created and must take back (a
rolled-back run) is set to ``cancel_values``, by default the deletion flag (system status
``DLFL``), and its cross-reference retired. The deletion flag rather than technical
completion (``TECO``) or cancelling by a user status, because:

- ``DLFL`` says "this order should not exist", which is what a rolled-back create means;
  ``TECO`` says the work was done, which would show in completion reports and KPIs and keep
  the order in cost settlement;
- the deletion flag can be taken back in SAP (unlike the deletion indicator), so an order
  flagged by mistake is recovered, and a later run that creates the same order again writes
  over the flagged order (it holds the same match value) instead of adding a second one;
- it needs no actual costs on the order, which an order created moments ago has none of.

The write goes through the one order write the connector has (``update_work_order``), with
the ETag the create answered, so an order someone edited since is left alone and reported.
Which property carries a status change differs between releases (some take status changes
only through the service's actions); ``cancel_values`` names the write that works there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import pandas as pd

from integration_platform.connectors.erp.sap import SapConnector
from integration_platform.sync.adapters.base import (
    SyncAdapter,
    WriteResult,
    json_values,
    version_text,
)
from integration_platform.sync.spec import SideSpec

VERSION_COLUMNS = {"v2": "__metadata.etag", "v4": "@odata.etag"}
"""The column holding an order's ETag, per OData version."""
KEY = ("MaintenanceOrder",)
MODIFIED = "LastChangeDateTime"
SAP_DATE = re.compile(r"/Date\((-?\d+)(?:[+-]\d{4})?\)/")


class SapMaintenanceOrderAdapter(SyncAdapter):
    """Maintenance orders read in full and written one at a time with their ETag."""

    entity: ClassVar[str] = "work_order"

    def __init__(
        self,
        connector: SapConnector,
        *,
        create_defaults: Mapping[str, Any] | None = None,
        cancel_values: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.connector = connector
        self.create_defaults = dict(create_defaults or {})
        self.cancel_values = dict(cancel_values or {"SystemStatusText": "DLFL"})

    @property
    def version_column(self) -> str:
        """Where the ETag is in the frames this adapter reads (see the module's notes)."""
        return VERSION_COLUMNS[self.connector.odata_version]

    def bind(self, side: SideSpec) -> None:
        """Refuse a key other than the order number (writes address orders by it), another
        version column, and a version the connector would never send (a stale update would
        then overwrite SAP's newer values instead of becoming a conflict)."""
        where = f"{side.system}: maintenance orders"
        if side.key_fields != KEY:
            raise ValueError(
                f"{where} are addressed by MaintenanceOrder; set key_field of the sync side "
                f"for {side.system} to it (got {', '.join(side.key_fields)})"
            )
        if side.version_field and side.version_field != self.version_column:
            raise ValueError(
                f"{where} carry their ETag in {self.version_column!r} over OData "
                f"{self.connector.odata_version}; set version_field of the sync side for "
                f"{side.system} to it (got {side.version_field!r})"
            )
        if side.version_field and not self.connector.conditional_updates:
            raise ValueError(
                f"{where}: the connection sends no If-Match, so version_field would not "
                "protect SAP's changes; set conditional_updates: true on the connection"
            )
        super().bind(side)

    # -- reading ----------------------------------------------------------------------------

    def read(self, *, since: datetime | None = None) -> pd.DataFrame:
        """Every maintenance order (``supports_since`` is off, so ``since`` never comes)."""
        pages = [page.frame for page in self.connector.read_work_orders()]
        pages = [frame for frame in pages if len(frame)]
        if not pages:
            return pd.DataFrame(columns=[*KEY, self.version_column])
        frame = pd.concat(pages, ignore_index=True)
        if "__metadata" in frame.columns:
            etags = [etag_of(text) for text in frame["__metadata"]]
            frame = frame.drop(columns=["__metadata"])
            frame[self.version_column] = pd.array(etags, dtype="string")
        if MODIFIED in frame.columns:
            frame[MODIFIED] = pd.array([iso_instant(v) for v in frame[MODIFIED]], dtype="string")
        return frame

    def fetch(self, external_id: str) -> Mapping[str, Any] | None:
        """One order as SAP has it now, its ETag in the version column."""
        record = self.connector.get_work_order(external_id)
        return None if record is None else self._flat(record)

    def _flat(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """An order as SAP answered it, shaped like a row of :meth:`read`."""
        out = {k: v for k, v in record.items() if k != "__metadata"}
        meta = record.get("__metadata")
        if isinstance(meta, Mapping):
            out[self.version_column] = meta.get("etag")
        if MODIFIED in out:
            out[MODIFIED] = iso_instant(out[MODIFIED])
        return out

    # -- writing ----------------------------------------------------------------------------

    def create(self, values: Mapping[str, Any]) -> WriteResult:
        """Create an order (``create_defaults`` supply what SAP requires and the sync does
        not carry, e.g. ``MaintenanceOrderType``); SAP answers the stored order with its
        number and ETag."""
        record = self.without_empty_keys({**self.create_defaults, **json_values(values)})
        body = self._flat(self.connector.create_work_order(record))
        if not body.get(KEY[0]):
            raise KeyError(f"{self.system}: the maintenance order created answered no number")
        version = version_text(body.get(self.version_column))
        return WriteResult(self.external_id_of(body), version, body)

    def update(
        self,
        external_id: str,
        changes: Mapping[str, Any],
        *,
        version: str | None,
        expected: Mapping[str, Any],
    ) -> WriteResult:
        """PATCH (or MERGE) the order with ``If-Match: <version>``; an order changed since
        answers 412, raised by the connector as ``Conflict``. The answer has no body, so the
        order is read again for its new ETag."""
        self.connector.update_work_order(external_id, json_values(changes), etag=version)
        stored = self.fetch(external_id)
        if stored is None:
            return WriteResult(external_id)
        return WriteResult(external_id, version_text(stored.get(self.version_column)), stored)

    def retire(self, external_id: str, *, version: str | None) -> WriteResult:
        """Take back an order the sync created: it stays in SAP with ``cancel_values`` (the
        deletion flag; see the module's notes on why)."""
        return self.update(external_id, self.cancel_values, version=version, expected={})


def etag_of(meta: Any) -> str | None:
    """The ETag in a V2 ``__metadata`` value (JSON text as read, or a mapping)."""
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except ValueError:
            return None
    return meta.get("etag") if isinstance(meta, Mapping) else None


def iso_instant(value: Any) -> Any:
    """A V2 ``/Date(ms)/`` as ISO-8601 in UTC (the milliseconds count from the epoch in UTC;
    the offset only names the writer's zone); anything else as it is."""
    if not isinstance(value, str):
        return value
    found = SAP_DATE.fullmatch(value)
    if found is None:
        return value
    return datetime.fromtimestamp(int(found[1]) / 1000, UTC).isoformat()


SAP_ADAPTERS: dict[str, type[SyncAdapter]] = {"work_order": SapMaintenanceOrderAdapter}
"""The SAP adapter for each canonical entity."""
