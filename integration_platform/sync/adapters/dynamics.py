"""Dynamics 365 Field Service work orders (Dataverse ``msdyn_workorders``) as a sync side.

The record id is the row's GUID (``msdyn_workorderid``); updates send the ``@odata.etag`` read
with the row as ``If-Match``, so a row changed meanwhile answers 412 (``Conflict``). Dataverse
deletes are not used: a work order the sync created and must take back gets ``cancel_values``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from integration_platform.connectors.erp.dynamics import DynamicsConnector
from integration_platform.sync.adapters.base import SyncAdapter, WriteResult
from integration_platform.sync.adapters.maximo import _json_values, _text


class DynamicsWorkOrderAdapter(SyncAdapter):
    """Dataverse work orders read in full and written one by one with their ETag."""

    def __init__(
        self,
        connector: DynamicsConnector,
        *,
        create_defaults: Mapping[str, Any] | None = None,
        cancel_values: Mapping[str, Any] | None = None,
        option_sets: tuple[str, ...] = ("msdyn_systemstatus",),
    ) -> None:
        super().__init__()
        self.connector = connector
        self.create_defaults = dict(create_defaults or {})
        self.cancel_values = dict(cancel_values or {"msdyn_systemstatus": 690970005})
        self.option_sets = option_sets

    def _body(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """JSON for Dataverse: option-set codes (kept as text in code tables) as integers."""
        out = _json_values(values)
        for name in self.option_sets:
            if isinstance(out.get(name), str) and out[name].isdigit():
                out[name] = int(out[name])
        return out

    def read(self) -> pd.DataFrame:
        pages = [page.frame for page in self.connector.read_work_orders()]
        if not pages:
            return pd.DataFrame(columns=[*self.side.key_fields, "@odata.etag"])
        return pd.concat(pages, ignore_index=True)

    def create(self, values: Mapping[str, Any]) -> WriteResult:
        body = self.connector.create_work_order({**self.create_defaults, **self._body(values)})
        external_id = "/".join(str(body[k]) for k in self.side.key_fields)
        return WriteResult(external_id, _text(body.get("@odata.etag")), body)

    def update(
        self,
        external_id: str,
        changes: Mapping[str, Any],
        *,
        version: str | None,
        expected: Mapping[str, Any],
    ) -> WriteResult:
        body = self.connector.update_work_order(external_id, self._body(changes), etag=version)
        return WriteResult(external_id, _text(body.get("@odata.etag")), body)

    def retire(self, external_id: str, *, version: str | None) -> WriteResult:
        """Take back a work order the sync created: it stays in Dataverse, cancelled."""
        return self.update(external_id, self.cancel_values, version=version, expected={})
