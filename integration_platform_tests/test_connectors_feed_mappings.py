"""Every connector's extract feeds its built-in mapping: what a connector reads from its vendor's
contract server maps to the canonical model with no rejected row.

The golden pages of ``test_builtin_mappings.py`` are written by hand from the vendor's
documentation; this test closes the other side of the loop, so a connector that stops reading a
column its mapping needs (an actual finish date, a status) fails here, not in production as a
rejected row per record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from integration_platform.mapping.compiler import compile_mapping, load_spec_file
from integration_platform.mapping.spec import BUILTIN_DIR
from integration_platform_tests.contract_servers import asset_harnesses, schedule_harnesses
from integration_platform_tests.contract_servers.vendor_harnesses import (
    DynamicsHarness,
    FiixHarness,
    MaximoContract,
    OracleHarness,
    SapHarness,
    UpKeepHarness,
)

PAGE = 50

WORK_ORDER_HARNESSES: dict[str, Callable[[Path], Any]] = {
    "maximo": lambda tmp: MaximoContract(tmp, context_root="/maximo/oslc", auth_method="apikey"),
    "sap": lambda tmp: SapHarness(tmp, odata_version="v2", auth_method="basic"),
    "sap-v4": lambda tmp: SapHarness(tmp, odata_version="v4", auth_method="oauth2"),
    "dynamics": DynamicsHarness,
    "upkeep": UpKeepHarness,
    "fiix": FiixHarness,
    "oracle": OracleHarness,
}
WORK_ORDER_MAPPINGS = {
    "sap": "sap/maintenance_orders",
    "sap-v4": "sap/maintenance_orders",
}  # otherwise <vendor>/work_orders

# (harness kind, built-in mapping) for the entities beyond work orders.
ENTITY_MAPPINGS = [
    ("assets:maximo", "maximo/assets"),
    ("assets:sap-v2", "sap/equipment"),
    ("assets:sap-v4", "sap/equipment"),
    ("assets:fiix", "fiix/assets"),
    ("assets:oracle", "oracle/assets"),
    ("assets:upkeep", "upkeep/assets"),
    ("assets:dynamics", "dynamics/assets"),
    ("schedules:maximo", "maximo/maintenance_schedules"),
    ("schedules:sap-v2", "sap/maintenance_schedules"),
    ("schedules:sap-v4", "sap/maintenance_schedules"),
    ("schedules:dynamics", "dynamics/maintenance_schedules"),
]


def map_everything(pages: Iterator[Any], mapping: str) -> tuple[int, pd.DataFrame]:
    """Rows read, and the rows the built-in mapping rejected (with field and reason)."""
    frame = pd.concat([page.frame for page in pages], ignore_index=True)
    spec, source_map = load_spec_file(BUILTIN_DIR / f"{mapping}.yaml")
    outcome = compile_mapping(spec, source_map=source_map).apply(frame)
    return len(frame), outcome.rejected


def rejected_text(rejected: pd.DataFrame) -> str:
    counts = rejected.groupby(["reject_field", "reject_reason"]).size()
    return "; ".join(f"{field}: {reason} (x{n})" for (field, reason), n in counts.items())


@pytest.mark.parametrize("vendor", list(WORK_ORDER_HARNESSES))
def test_work_orders_map_without_rejects(vendor: str, tmp_path: Path) -> None:
    harness = WORK_ORDER_HARNESSES[vendor](tmp_path)
    try:
        connector = harness.connector()
        pages = harness.read(connector, since=None, page_size=PAGE)
        read, rejected = map_everything(
            pages, WORK_ORDER_MAPPINGS.get(vendor, f"{vendor}/work_orders")
        )
    finally:
        harness.close()
    assert read > 0
    assert rejected.empty, rejected_text(rejected)


@pytest.mark.parametrize(("kind", "mapping"), ENTITY_MAPPINGS, ids=[k for k, _ in ENTITY_MAPPINGS])
def test_assets_and_schedules_map_without_rejects(kind: str, mapping: str, tmp_path: Path) -> None:
    entity, _, name = kind.partition(":")
    build = asset_harnesses.build if entity == "assets" else schedule_harnesses.build
    contract = build(name, tmp_path)
    try:
        pages = contract.read(contract.connector(), since=None, page_size=PAGE)
        read, rejected = map_everything(pages, mapping)
    finally:
        contract.close()
    assert read > 0
    assert rejected.empty, rejected_text(rejected)


def test_sap_refuses_a_property_the_order_type_lacks(tmp_path: Path) -> None:
    """What the SAP connector selects is checked, as SAP checks it: an unknown property in
    ``$select`` is a 400, so the read above passing means every selected name is real."""
    import requests

    harness = SapHarness(tmp_path, odata_version="v2", auth_method="basic")
    try:
        answer = requests.get(
            f"{harness.server.service_url}/MaintenanceOrder",
            params={"$select": "MaintenanceOrder,ActualFinishDateTime", "$format": "json"},
            auth=("INTEGRATION", "Welcome1"),
            headers={"sap-client": "100"},
            timeout=5,
        )
    finally:
        harness.close()
    assert answer.status_code == 400
    assert "ActualFinishDateTime" in answer.json()["error"]["message"]["value"]
