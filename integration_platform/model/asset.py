"""The canonical asset (equipment)."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from integration_platform.model.base import (
    ExternalRecord,
    Str,
    UtcTimestamp,
    amount_field,
    code_field,
    currency_field,
    enum_field,
    id_field,
    present_when,
    text_field,
    timestamp_field,
)
from integration_platform.model.enums import AssetCondition, AssetStatus, Priority


class Asset(ExternalRecord):
    """A physical piece of equipment that is maintained: a pump, compressor, chiller, motor.

    Assets are the anchor of maintenance data: work orders, schedules, sensors and alerts all
    point at one. The asset register is usually mastered in a CMMS or ERP; the platform keeps
    one row per asset with a stable ``asset_id`` so the other entities can be joined on it.
    """

    asset_id: Series[Str] = id_field(
        "Platform identifier of the asset, stable across source systems.", unique=True
    )
    site_id: Series[Str] = id_field("Plant or site the asset is installed at.")
    name: Series[Str] = text_field(
        "Name of the asset as maintenance staff know it, e.g. 'Cooling water pump 2'.",
        nullable=False,
        non_blank=True,
    )
    asset_type: Series[Str] = code_field(
        "Equipment class as a lowercase code: pump, compressor, chiller, hvac, boiler, "
        "conveyor, motor, fan, ... New classes need no code change."
    )
    manufacturer: Series[Str] = text_field("Manufacturer (OEM) of the equipment.")
    model: Series[Str] = text_field("Manufacturer's model designation.")
    serial_number: Series[Str] = text_field("Manufacturer's serial number.")
    installed_at: Series[UtcTimestamp] = timestamp_field(
        "When the asset was installed or commissioned (UTC)."
    )
    status: Series[Str] = enum_field(
        AssetStatus,
        "Availability: operating, standby, under_maintenance, out_of_service or decommissioned.",
    )
    condition: Series[Str] = enum_field(
        AssetCondition,
        "Assessed condition: excellent, good, fair, poor or critical; empty if not assessed.",
        nullable=True,
    )
    criticality: Series[Str] = enum_field(
        Priority,
        "How much production depends on the asset: critical, high, medium or low. Drives "
        "work order priority and spare-part stocking.",
    )
    location: Series[Str] = text_field(
        "Functional location or place in the plant, e.g. 'Building A / Line 2'."
    )
    parent_asset_id: Series[Str] = id_field(
        "Platform identifier of the asset this one is part of (e.g. the motor of a pump set).",
        nullable=True,
    )
    purchase_cost: Series[float] = amount_field("Acquisition cost of the asset in `currency`.")
    currency: Series[Str] = currency_field(
        "ISO 4217 code of purchase_cost; required when a cost is given."
    )
    updated_at: Series[UtcTimestamp] = timestamp_field(
        "When the record last changed in its source system (UTC).", nullable=False
    )

    @pa.dataframe_check(
        element_wise=False, ignore_na=False, error="currency: missing for purchase_cost"
    )
    def cost_has_currency(cls, df: pd.DataFrame) -> Series[bool]:
        return present_when(df, df["purchase_cost"].notna(), "currency")

    @pa.dataframe_check(
        element_wise=False,
        ignore_na=False,
        error="parent_asset_id: an asset cannot be its own parent",
    )
    def not_own_parent(cls, df: pd.DataFrame) -> Series[bool]:
        return ~(df["parent_asset_id"] == df["asset_id"]).fillna(False).astype(bool)
