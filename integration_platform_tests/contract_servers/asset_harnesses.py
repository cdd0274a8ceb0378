"""Harnesses of the asset (equipment) contract: each connector that reads assets, against its
vendor's contract server seeded with ``seed.assets()``.

An asset harness wraps the connector's work-order harness (same server, same credentials) and
translates the vendor's asset records to the seed's asset number, so one suite
(``test_connectors_assets.py``) checks every connector. ``writes`` says whether the vendor's
API lets the connector update an asset (all of them do now: Maximo, SAP, Fiix, Oracle).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from integration_platform.connectors.base import Page
from integration_platform.connectors.cursor import Cursor
from integration_platform_tests.contract_servers import seed
from integration_platform_tests.contract_servers.vendor_harnesses import (
    FiixHarness,
    HttpContract,
    MaximoContract,
    OracleHarness,
    SapHarness,
)

UPDATED_TEXT = "Pump P-204 after overhaul (new mechanical seal)"
UPDATED_ASSET = "11450"


class AssetContract:
    """A connector's assets under contract."""

    name: ClassVar[str]
    writes: ClassVar[bool] = False
    # Column holding the asset number, and the one an update changes.
    number_column: ClassVar[str]
    text_column: ClassVar[str] = ""

    def __init__(self, harness: HttpContract) -> None:
        self.harness = harness

    def connector(self, **overrides: Any) -> Any:
        return self.harness.connector(**overrides)

    def read(self, connector: Any, *, since: Cursor | None, page_size: int) -> Iterator[Page]:
        return connector.read_assets(since=since, page_size=page_size)

    def seeded_numbers(self) -> set[str]:
        return {str(asset["assetnum"]) for asset in seed.assets()}

    def numbers(self, page: Page) -> list[str]:
        return [str(value) for value in page.frame[self.number_column]]

    def update(self, connector: Any, row: dict[str, Any]) -> str:
        """Change the asset read as ``row``; the value the next read must show."""
        raise NotImplementedError

    def close(self) -> None:
        self.harness.close()


class MaximoAssets(AssetContract):
    """``mxasset``: updated by POST to the record's href with ``x-method-override: PATCH``
    and its ``_rowstamp`` as ``If-Match``."""

    name = "maximo"
    writes = True
    number_column = "assetnum"
    text_column = "description"

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(MaximoContract(tmp_path, context_root="/maximo/api", auth_method="apikey"))

    def connector(self, **overrides: Any) -> Any:
        return self.harness.connector(**{"conditional_updates": True, **overrides})

    def update(self, connector: Any, row: dict[str, Any]) -> str:
        connector.update_asset(
            row["href"], {"description": UPDATED_TEXT}, rowstamp=row["_rowstamp"]
        )
        return UPDATED_TEXT


class SapEquipment(AssetContract):
    """API_EQUIPMENT: the current time segment of each equipment; updated by PATCH (MERGE)
    of the segment through the CSRF handshake."""

    name = "sap"
    writes = True
    number_column = "Equipment"
    text_column = "EquipmentName"

    def __init__(self, tmp_path: Path, *, odata_version: str) -> None:
        super().__init__(SapHarness(tmp_path, odata_version=odata_version, auth_method="basic"))

    def read(self, connector: Any, *, since: Cursor | None, page_size: int) -> Iterator[Page]:
        return connector.read_equipment(since=since, page_size=page_size)

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

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(OracleHarness(tmp_path))

    def update(self, connector: Any, row: dict[str, Any]) -> str:
        connector.update_asset(row["AssetId"], {"Description": UPDATED_TEXT})
        return UPDATED_TEXT


def build(kind: str, tmp_path: Path) -> AssetContract:
    if kind == "maximo":
        return MaximoAssets(tmp_path)
    if kind in ("sap-v2", "sap-v4"):
        return SapEquipment(tmp_path, odata_version=kind[-2:])
    if kind == "fiix":
        return FiixAssets(tmp_path)
    if kind == "oracle":
        return OracleAssets(tmp_path)
    raise AssertionError(kind)


ASSET_HARNESSES = ("maximo", "sap-v2", "sap-v4", "fiix", "oracle")
