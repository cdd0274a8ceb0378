"""Harnesses of the asset (equipment) contract: each connector that reads assets, against its
vendor's contract server seeded with ``seed.assets()``.

An asset harness wraps the connector's work-order harness (same server, same credentials) and
translates the vendor's asset records to the seed's asset number, so one suite checks every
connector: the shared entity checks (``test_connectors_entities.py``) and the asset writes
(``test_connectors_assets.py``). ``writes`` says whether the vendor's API lets the connector
update an asset (all of them do: Maximo, SAP, Fiix, Oracle, UpKeep, Dynamics), ``creates``
whether it creates one (Maximo, UpKeep, Dynamics; the others leave that to the system's own UI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from integration_platform.connectors.base import Page
from integration_platform_tests.contract_servers import seed
from integration_platform_tests.contract_servers.entity_harnesses import EntityContract
from integration_platform_tests.contract_servers.vendor_harnesses import (
    DynamicsHarness,
    FiixHarness,
    MaximoContract,
    OracleHarness,
    SapHarness,
    UpKeepHarness,
)

UPDATED_TEXT = "Pump P-204 after overhaul (new mechanical seal)"
UPDATED_ASSET = "11450"
CREATED_TEXT = "Dosing pump DP-3, chemical treatment skid"
CREATED_ASSET = "14010"


class AssetContract(EntityContract):
    """A connector's assets under contract."""

    entity = "assets"
    writes: ClassVar[bool] = False
    creates: ClassVar[bool] = False

    def seeded_numbers(self) -> set[str]:
        return {str(asset["assetnum"]) for asset in seed.assets()}

    def update(self, connector: Any, row: dict[str, Any]) -> str:
        """Change the asset read as ``row``; the value the next read must show."""
        raise NotImplementedError

    def create(self, connector: Any, text: str) -> str:
        """Create asset ``CREATED_ASSET`` described by ``text``; its number."""
        raise NotImplementedError


class MaximoAssets(AssetContract):
    """``mxasset``: created by POST with ``properties: *``, updated by POST to the record's
    href with ``x-method-override: PATCH`` and its ``_rowstamp`` as ``If-Match``."""

    name = "maximo"
    writes = True
    creates = True
    number_column = "assetnum"
    text_column = "description"
    resource = "/os/mxasset"

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(MaximoContract(tmp_path, context_root="/maximo/api", auth_method="apikey"))

    def connector(self, **overrides: Any) -> Any:
        return self.harness.connector(**{"conditional_updates": True, **overrides})

    def update(self, connector: Any, row: dict[str, Any]) -> str:
        connector.update_asset(
            row["href"], {"description": UPDATED_TEXT}, rowstamp=row["_rowstamp"]
        )
        return UPDATED_TEXT

    def create(self, connector: Any, text: str) -> str:
        record = {"siteid": "BEDFORD", "assetnum": CREATED_ASSET, "description": text}
        return str(connector.create_asset(record)["assetnum"])


class SapEquipment(AssetContract):
    """API_EQUIPMENT: the current time segment of each equipment; updated by PATCH (MERGE)
    of the segment through the CSRF handshake."""

    name = "sap"
    entity = "equipment"
    writes = True
    number_column = "Equipment"
    text_column = "EquipmentName"
    resource = "/API_EQUIPMENT/Equipment?"

    def __init__(self, tmp_path: Path, *, odata_version: str) -> None:
        super().__init__(SapHarness(tmp_path, odata_version=odata_version, auth_method="basic"))
        if odata_version == "v4":
            self.resource = "/api_equipment/0001/Equipment?"

    def numbers(self, page: Page) -> list[str]:
        return [str(value).removeprefix("100") for value in page.frame["Equipment"]]

    def update(self, connector: Any, row: dict[str, Any]) -> str:
        connector.update_equipment(
            row["Equipment"], {"EquipmentName": UPDATED_TEXT}, valid_to=row["ValidityEndDate"]
        )
        return UPDATED_TEXT


class FiixAssets(AssetContract):
    """Fiix ``Asset`` objects: ``FindRequest`` reads, ``ChangeRequest`` updates."""

    name = "fiix"
    writes = True
    number_column = "strCode"
    text_column = "strName"
    resource = "/api/?service=cmms"

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(FiixHarness(tmp_path))

    def update(self, connector: Any, row: dict[str, Any]) -> str:
        connector.update_asset(row["id"], {"strName": UPDATED_TEXT})
        return UPDATED_TEXT


class OracleAssets(AssetContract):
    """Oracle Fusion ``installedBaseAssets``: offset paging on ``LastUpdateDate``, PATCH."""

    name = "oracle"
    writes = True
    number_column = "AssetNumber"
    text_column = "Description"
    resource = "/installedBaseAssets?"

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(OracleHarness(tmp_path))

    def update(self, connector: Any, row: dict[str, Any]) -> str:
        connector.update_asset(row["AssetId"], {"Description": UPDATED_TEXT})
        return UPDATED_TEXT


class UpKeepAssets(AssetContract):
    """UpKeep ``/assets``: scanned and ordered on ``updatedAt`` in the client; created by
    POST, updated by PATCH (no version token)."""

    name = "upkeep"
    writes = True
    creates = True
    number_column = "id"
    text_column = "name"
    resource = "/api/v2/assets?"

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(UpKeepHarness(tmp_path))
        self.canon = {f"as{a['assetnum']}": str(a["assetnum"]) for a in seed.assets()}

    def update(self, connector: Any, row: dict[str, Any]) -> str:
        connector.update_asset(row["id"], {"name": UPDATED_TEXT})
        return UPDATED_TEXT

    def create(self, connector: Any, text: str) -> str:
        row = connector.create_asset({"name": text, "barcode": CREATED_ASSET})
        self.canon[row["id"]] = CREATED_ASSET
        return CREATED_ASSET


class DynamicsAssets(AssetContract):
    """Field Service ``msdyn_customerassets``: read on ``modifiedon``, created by POST,
    updated by PATCH with the row's ``@odata.etag`` as ``If-Match``."""

    name = "dynamics"
    writes = True
    creates = True
    number_column = "msdyn_customerassetid"
    text_column = "msdyn_name"
    resource = "/msdyn_customerassets?"

    def __init__(self, tmp_path: Path) -> None:
        harness = DynamicsHarness(tmp_path)
        super().__init__(harness)
        self.asset_id = harness.dynamics.customer_asset_id
        self.canon = {self.asset_id(str(a["assetnum"])): str(a["assetnum"]) for a in seed.assets()}

    def update(self, connector: Any, row: dict[str, Any]) -> str:
        connector.update_asset(
            row["msdyn_customerassetid"], {"msdyn_name": UPDATED_TEXT}, etag=row["@odata.etag"]
        )
        return UPDATED_TEXT

    def create(self, connector: Any, text: str) -> str:
        asset_id = self.asset_id(CREATED_ASSET)
        connector.create_asset({"msdyn_customerassetid": asset_id, "msdyn_name": text})
        self.canon[asset_id] = CREATED_ASSET
        return CREATED_ASSET


def build(kind: str, tmp_path: Path) -> AssetContract:
    if kind == "maximo":
        return MaximoAssets(tmp_path)
    if kind in ("sap-v2", "sap-v4"):
        return SapEquipment(tmp_path, odata_version=kind[-2:])
    if kind == "fiix":
        return FiixAssets(tmp_path)
    if kind == "oracle":
        return OracleAssets(tmp_path)
    if kind == "upkeep":
        return UpKeepAssets(tmp_path)
    if kind == "dynamics":
        return DynamicsAssets(tmp_path)
    raise AssertionError(kind)


ASSET_HARNESSES = ("maximo", "sap-v2", "sap-v4", "fiix", "oracle", "upkeep", "dynamics")
