"""``cbm_cmms``: where condition-based work orders go.

Set ``CBM_CMMS_CONNECTION`` to the name of a connection declared in a ``ConnectionComponent``
``defs.yaml`` (for example ``maximo`` from ``connectors/examples/maximo/defs.yaml`` copied under
``defs/``); ``CBM_CMMS_CONNECTIONS_FILE`` names that file when it is not under ``defs/``, and
``CBM_CMMS_SITE_ID`` the Maximo site (else the connection's first ``site_ids``). Unset, work
orders go to the state DB's ``cbm_work_orders`` outbox, so the embedded platform runs the
whole loop without a CMMS. Everything is read when a tick needs it, never at import.
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
    site_id: str | None = Field(default=None, description=f"Maximo site; unset: {SITE_VAR}.")
    work_type: str = Field(default="CM", description="Maximo worktype of the work orders.")
    claim_lease_seconds: float = Field(
        default=300.0, ge=0, description="How long a claim blocks others (a crashed tick)."
    )
    max_per_tick: int = Field(default=20, ge=1, description="Work orders opened per tick.")

    def connection_name(self) -> str | None:
        name = self.connection if self.connection is not None else os.environ.get(CONNECTION_VAR)
        return (name or "").strip() or None

    def gateway(self, state_engine: Any) -> Any:
        """The work-order gateway: Maximo through its connection, else the outbox."""
        from integration_platform.streams.cbm import MaximoGateway, OutboxGateway

        name = self.connection_name()
        if name is None:
            return OutboxGateway(state_engine)
        connector = self._connector(name)
        system = getattr(connector, "system", None)
        if system != "maximo":
            raise ConfigError(
                f"{CONNECTION_VAR}={name!r} is a {system!r} connection; condition-based work "
                "orders are supported for maximo connections (or unset it for the outbox)"
            )
        site = self.site_id or os.environ.get(SITE_VAR) or next(iter(connector.site_ids), None)
        if not site:
            raise ConfigError(
                f"connection {name!r}: set {SITE_VAR} (or options.site_ids) to the Maximo site "
                "condition-based work orders are opened in"
            )
        return MaximoGateway(connector, site_id=site, work_type=self.work_type)

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
