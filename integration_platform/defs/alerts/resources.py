"""``cbm_cmms``: where condition-based work orders go.

Set ``CBM_CMMS_CONNECTION`` to the name of a connection declared in a ``ConnectionComponent``
``defs.yaml`` (for example ``maximo`` from ``connectors/examples/maximo/defs.yaml`` copied under
``defs/``); ``CBM_CMMS_CONNECTIONS_FILE`` names that file when it is not under ``defs/``.
Connections of type maximo, fiix, upkeep, sap and dynamics take work orders (``GATEWAYS`` in
``streams/cbm.py``); any other type is refused with the list. Unset, work orders go to the
state DB's ``cbm_work_orders`` outbox, so the embedded platform runs the whole loop without a
CMMS.

Where and how they are opened, in the vendor's own codes (each unset: the gateway's default):

- ``CBM_CMMS_SITE_ID``: Maximo site (else the connection's first ``site_ids``), Fiix site id
  (required), UpKeep location id, SAP planning plant, Dynamics service account (GUID);
- ``CBM_CMMS_WORK_TYPE``: Maximo worktype (CM), Fiix maintenance type id (2), UpKeep
  category, SAP order type (PM01), Dynamics work order type (GUID);
- ``CBM_CMMS_PRIORITY``: Maximo wopriority (1), Fiix priority id (1), UpKeep priority (3),
  SAP priority (1), Dynamics priority (GUID);
- ``CBM_CMMS_DONE_STATUSES``: comma-separated status codes that mean the work is done, for
  tenants whose codes differ from the defaults (Fiix status ids).

Everything is read when a tick needs it, never at import.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from integration_platform.settings import ConfigError

CONNECTION_VAR = "CBM_CMMS_CONNECTION"
CONNECTIONS_FILE_VAR = "CBM_CMMS_CONNECTIONS_FILE"
SITE_VAR = "CBM_CMMS_SITE_ID"
WORK_TYPE_VAR = "CBM_CMMS_WORK_TYPE"
PRIORITY_VAR = "CBM_CMMS_PRIORITY"
DONE_VAR = "CBM_CMMS_DONE_STATUSES"
# The variable behind each gateway setting, named in errors.
SETTING_VARS = {
    "site_id": SITE_VAR,
    "work_type": WORK_TYPE_VAR,
    "priority": PRIORITY_VAR,
    "done_statuses": DONE_VAR,
}
DEFS_DIR = Path(__file__).resolve().parents[1]
CONNECTION_COMPONENT = "integration_platform.components.ConnectionComponent"


class CbmCmms(dg.ConfigurableResource):
    """The CMMS condition-based work orders are opened in (or the local outbox)."""

    connection: str | None = Field(
        default=None, description=f"Connection name; unset: {CONNECTION_VAR}; empty: outbox."
    )
    connections_file: str | None = Field(
        default=None,
        description=f"defs.yaml declaring it; unset: {CONNECTIONS_FILE_VAR}, else search defs/.",
    )
    site_id: str | None = Field(
        default=None,
        description="Maximo site, Fiix site id, UpKeep location, SAP planning plant or Dynamics "
        f"service account; unset: {SITE_VAR}.",
    )
    work_type: str | None = Field(
        default=None,
        description="Maximo worktype, Fiix maintenance type id, UpKeep category, SAP order type "
        f"or Dynamics work order type; unset: {WORK_TYPE_VAR}, else the CMMS's default.",
    )
    priority: str | None = Field(
        default=None,
        description=f"The CMMS's priority code (Dynamics: its id); unset: {PRIORITY_VAR}, else "
        "the highest.",
    )
    done_statuses: list[str] | None = Field(
        default=None,
        description=f"Status codes of finished work; unset: {DONE_VAR} (comma-separated), else "
        "the CMMS's defaults.",
    )
    claim_lease_seconds: float = Field(
        default=300.0, ge=0, description="How long a claim blocks others (a crashed tick)."
    )
    max_per_tick: int = Field(default=20, ge=1, description="Work orders opened per tick.")

    def connection_name(self) -> str | None:
        name = self.connection if self.connection is not None else os.environ.get(CONNECTION_VAR)
        return (name or "").strip() or None

    def gateway(self, state_engine: Any) -> Any:
        """The work-order gateway of the named connection's system, else the outbox."""
        from integration_platform.streams.cbm import GATEWAYS, GatewaySettingError, OutboxGateway

        name = self.connection_name()
        if name is None:
            return OutboxGateway(state_engine)
        connector = self._connector(name)
        system = getattr(connector, "system", None)
        gateway = GATEWAYS.get(str(system))
        if gateway is None:
            raise ConfigError(
                f"{CONNECTION_VAR}={name!r} is a {system!r} connection, which cannot take "
                "condition-based work orders; name a connection of type "
                f"{', '.join(sorted(GATEWAYS))} (or unset it for the outbox)"
            )
        done = self.done_statuses
        if done is None and os.environ.get(DONE_VAR, "").strip():
            done = [code.strip() for code in os.environ[DONE_VAR].split(",") if code.strip()]
        try:
            return gateway(
                connector,
                site_id=self.site_id or os.environ.get(SITE_VAR),
                work_type=self.work_type or os.environ.get(WORK_TYPE_VAR),
                priority=self.priority or os.environ.get(PRIORITY_VAR),
                done_statuses=done,
            )
        except GatewaySettingError as exc:
            variable = SETTING_VARS.get(exc.setting, exc.setting)
            raise ConfigError(f"connection {name!r} ({system}): set {variable} to {exc}") from None

    def _connector(self, name: str) -> Any:
        from integration_platform.components.connection import ConnectionComponent, resource_key

        for path in self._candidate_files():
            component = ConnectionComponent.from_yaml(path)
            resource = component.resources.get(resource_key(name))
            if resource is not None:
                return resource
        where = self.connections_file or os.environ.get(CONNECTIONS_FILE_VAR) or str(DEFS_DIR)
        raise ConfigError(
            f"{CONNECTION_VAR}={name!r}: no connection of that name is declared in {where}; "
            "declare it in a ConnectionComponent defs.yaml or fix the name"
        )

    def _candidate_files(self) -> list[Path]:
        given = self.connections_file or os.environ.get(CONNECTIONS_FILE_VAR)
        if given:
            return [Path(given).expanduser()]
        return [
            path
            for path in sorted(DEFS_DIR.rglob("defs.yaml"))
            if CONNECTION_COMPONENT in path.read_text(encoding="utf-8")
        ]


@dg.definitions
def cbm_resources() -> dg.Definitions:
    return dg.Definitions(resources={"cbm_cmms": CbmCmms()})
