"""Every connector type by name, imported only when asked for.

Read top to bottom, this is the list of systems the platform connects to. Importing this
module imports nothing else: Dagster loads the code location in every process, and a
connector's client libraries should cost only the processes that use it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from integration_platform.settings import ConfigError

if TYPE_CHECKING:
    import dagster as dg

CONNECTORS: dict[str, str] = {
    # CMMS / EAM
    "maximo": "integration_platform.connectors.cmms.maximo:MaximoConnector",
    "upkeep": "integration_platform.connectors.cmms.upkeep:UpKeepConnector",
    "fiix": "integration_platform.connectors.cmms.fiix:FiixConnector",
    # ERP with plant maintenance
    "sap": "integration_platform.connectors.erp.sap:SapConnector",
    "dynamics": "integration_platform.connectors.erp.dynamics:DynamicsConnector",
    "oracle": "integration_platform.connectors.erp.oracle:OracleConnector",
    # Any JSON REST API, declared by fields
    "generic_rest": "integration_platform.connectors.generic_rest:GenericRestConnector",
    # Databases
    "sql": "integration_platform.connectors.sql:SqlConnector",
}


def connector_names() -> list[str]:
    return sorted(CONNECTORS)


def load_connector(name: str) -> type[dg.ConfigurableResource]:
    """The resource class registered as ``name`` (imports its module now)."""
    try:
        target = CONNECTORS[name]
    except KeyError:
        known = ", ".join(connector_names())
        raise ConfigError(f"unknown connector type {name!r}; known types: {known}") from None
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)
