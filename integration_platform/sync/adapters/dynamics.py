"""Dynamics 365 Field Service tables as sync sides, through :class:`DynamicsConnector`: work
orders (``msdyn_workorders``) and customer assets (``msdyn_customerassets``).

One base, :class:`DataverseAdapter`, reads and writes any Dataverse table the connector
serves; a subclass only declares a :class:`DataverseTable`: the canonical entity it carries,
the connector's stream (entity set and id column), the connector's read, create and update
methods for it, the option-set columns, and how a row the sync created is taken back.

The record id is the row's GUID (``msdyn_workorderid``, ``msdyn_customerassetid``). Updates
send the ``@odata.etag`` read with the row as ``If-Match``, so a row changed meanwhile answers
412, which the connector raises as ``Conflict`` and the engine turns into a conflict. Option
sets (``msdyn_systemstatus``, ``statecode``, ``statuscode``) are kept as text codes in code
tables and sent to Dataverse as the integers it expects.

Taking back a row the sync created (a rolled-back run) never deletes it: the row is set to
the table's ``cancel_values`` (a work order ``Canceled``; a customer asset deactivated,
``statecode`` 1 and ``statuscode`` 2) and its cross-reference retired. Dataverse could delete
a customer asset, but deactivating is the better undo here:

- a delete runs the table's cascade rules: whatever was linked to the asset meanwhile (a work
  order, a child asset, an agreement incident) would lose its link or be deleted with it,
  while deactivating touches that one row;
- a deactivation is an ordinary update, sent with the ``@odata.etag`` the create answered: an
  asset someone edited since is left alone and reported, and it needs only the write
  privilege every sync write needs, not the delete privilege an integration user is often
  rightly refused on master data;
- the row keeps its audit history, and a later run that creates the same asset again writes
  over the retired row (it holds the same match value) instead of adding a second one; sync
  ``status`` mapped to ``statecode`` so that this also reactivates it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import pandas as pd

from integration_platform.connectors.base import Page
from integration_platform.connectors.erp.dynamics import DynamicsConnector
from integration_platform.connectors.rest import RestStream
from integration_platform.sync.adapters.base import (
    SyncAdapter,
    WriteResult,
    json_values,
    version_text,
)
from integration_platform.sync.spec import SideSpec

VERSION = "@odata.etag"


@dataclass(frozen=True)
class DataverseTable:
    """What tells one Dataverse table apart for the sync: the canonical ``entity``, the
    connector's ``stream`` (entity set, id column), its ``read``, ``create`` and ``update``
    methods (``update(connector, id, changes, *, etag)``), the ``option_sets`` sent as
    integers and the values that take back a row the sync created."""

    entity: str
    stream: Callable[[DynamicsConnector], RestStream]
    read: Callable[[DynamicsConnector], Iterable[Page]]
    create: Callable[[DynamicsConnector, Mapping[str, Any]], dict[str, Any]]
    update: Callable[..., dict[str, Any]]
    option_sets: tuple[str, ...]
    cancel_values: Mapping[str, Any]


class DataverseAdapter(SyncAdapter):
    """A Dataverse table read in full and written one row at a time with its ETag, through
    the connector. Subclasses only set ``table``."""

    table: ClassVar[DataverseTable]

    def __init__(
        self,
        connector: DynamicsConnector,
        *,
        create_defaults: Mapping[str, Any] | None = None,
        cancel_values: Mapping[str, Any] | None = None,
        option_sets: tuple[str, ...] | None = None,
    ) -> None:
        super().__init__()
        self.connector = connector
        self.create_defaults = dict(create_defaults or {})
        self.cancel_values = dict(cancel_values or self.table.cancel_values)
        self.option_sets = self.table.option_sets if option_sets is None else option_sets

    @property
    def entity(self) -> str:
        return self.table.entity

    def bind(self, side: SideSpec) -> None:
        """Refuse a key other than the table's id column: writes address rows by it."""
        key = self.table.stream(self.connector).primary_key
        if side.key_fields != tuple(key):
            raise ValueError(
                f"{side.system}: {self.entity_set} rows are addressed by {', '.join(key)}; "
                f"set key_field of the sync side for {side.system} to it (got "
                f"{', '.join(side.key_fields)})"
            )
        super().bind(side)

    @property
    def entity_set(self) -> str:
        """The table's entity set as the connector is configured (``msdyn_customerassets``)."""
        return self.table.stream(self.connector).path.strip("/")

    def _body(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """JSON for Dataverse: option-set codes (kept as text in code tables) as integers."""
        out = json_values(values)
        for name in self.option_sets:
            if isinstance(out.get(name), str) and out[name].lstrip("-").isdigit():
                out[name] = int(out[name])
        return out

    # -- reading ----------------------------------------------------------------------------

    def read(self, *, since: datetime | None = None) -> pd.DataFrame:
        """Every row of the table (``supports_since`` is off, so ``since`` never comes)."""
        pages = [page.frame for page in self.table.read(self.connector)]
        pages = [frame for frame in pages if len(frame)]
        if not pages:
            return pd.DataFrame(columns=[*self.side.key_fields, VERSION])
        return pd.concat(pages, ignore_index=True)

    # -- writing ----------------------------------------------------------------------------

    def create(self, values: Mapping[str, Any]) -> WriteResult:
        """Create a row; without its id (the GUID) Dataverse assigns one, which comes back
        in the stored row with its ``@odata.etag``."""
        record = self.without_empty_keys({**self.create_defaults, **self._body(values)})
        body = self.table.create(self.connector, record)
        missing = [key for key in self.side.key_fields if not body.get(key)]
        if missing:
            raise KeyError(
                f"{self.system}: the {self.entity_set} row created answered without "
                f"{', '.join(missing)}; check key_field of the sync side for {self.system}"
            )
        return WriteResult(self.external_id_of(body), version_text(body.get(VERSION)), body)

    def update(
        self,
        external_id: str,
        changes: Mapping[str, Any],
        *,
        version: str | None,
        expected: Mapping[str, Any],
    ) -> WriteResult:
        """PATCH the row with ``If-Match: <version>``; a row changed since answers 412,
        raised by the connector as ``Conflict``."""
        body = self.table.update(self.connector, external_id, self._body(changes), etag=version)
        return WriteResult(external_id, version_text(body.get(VERSION)), body)

    def retire(self, external_id: str, *, version: str | None) -> WriteResult:
        """Take back a row the sync created: it stays in Dataverse with ``cancel_values``
        (see the module's notes on why it is not deleted)."""
        return self.update(external_id, self.cancel_values, version=version, expected={})


class DynamicsWorkOrderAdapter(DataverseAdapter):
    """Field Service work orders (``msdyn_workorders``); taken back as ``Canceled``."""

    table = DataverseTable(
        entity="work_order",
        stream=DynamicsConnector.work_orders_stream,
        read=DynamicsConnector.read_work_orders,
        create=DynamicsConnector.create_work_order,
        update=DynamicsConnector.update_work_order,
        option_sets=("msdyn_systemstatus",),
        cancel_values={"msdyn_systemstatus": 690970005},
    )


class DynamicsAssetAdapter(DataverseAdapter):
    """Field Service customer assets (``msdyn_customerassets``); taken back by deactivating
    (``statecode`` 1 Inactive, ``statuscode`` 2 Inactive)."""

    table = DataverseTable(
        entity="asset",
        stream=DynamicsConnector.assets_stream,
        read=DynamicsConnector.read_assets,
        create=DynamicsConnector.create_asset,
        update=DynamicsConnector.update_asset,
        option_sets=("statecode", "statuscode"),
        cancel_values={"statecode": 1, "statuscode": 2},
    )


DYNAMICS_ADAPTERS: dict[str, type[DataverseAdapter]] = {
    adapter.table.entity: adapter for adapter in (DynamicsWorkOrderAdapter, DynamicsAssetAdapter)
}
"""The Dynamics adapter for each canonical entity."""
