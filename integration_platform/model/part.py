"""The canonical spare part and its stock (inventory item)."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from integration_platform.model.base import (
    ExternalRecord,
    Str,
    UtcTimestamp,
    amount_field,
    currency_field,
    id_field,
    present_when,
    text_field,
    timestamp_field,
)


class Part(ExternalRecord):
    """A spare part or consumable in the catalogue (bearing, seal kit, filter, lubricant).

    Parts link maintenance to purchasing: work orders consume them, purchase order lines and
    shipments replenish them. The catalogue is usually mastered in the ERP or CMMS.
    """

    part_id: Series[Str] = id_field(
        "Platform identifier of the part, stable across source systems.", unique=True
    )
    part_number: Series[Str] = id_field("Item or material number used when ordering.")
    name: Series[Str] = text_field(
        "Short name, e.g. 'Mechanical seal 45 mm'.", nullable=False, non_blank=True
    )
    description: Series[Str] = text_field("Full description and specification.")
    category: Series[Str] = text_field("Part group, e.g. 'bearings', 'filters', 'lubricants'.")
    unit_of_measure: Series[Str] = text_field(
        "Unit the part is counted in: 'each', 'l', 'kg', 'm'.", nullable=False, non_blank=True
    )
    manufacturer: Series[Str] = text_field("Manufacturer of the part.")
    manufacturer_part_number: Series[Str] = text_field("The manufacturer's part number.")
    unit_cost: Series[float] = amount_field("Standard cost of one unit in `currency`.")
    currency: Series[Str] = currency_field(
        "ISO 4217 code of unit_cost; required when a cost is given."
    )
    preferred_supplier_id: Series[Str] = id_field(
        "Platform identifier of the supplier usually ordered from.", nullable=True
    )
    updated_at: Series[UtcTimestamp] = timestamp_field(
        "When the record last changed in its source system (UTC).", nullable=False
    )

    @pa.dataframe_check(
        element_wise=False, ignore_na=False, error="currency: missing for unit_cost"
    )
    def cost_has_currency(cls, df: pd.DataFrame) -> Series[bool]:
        return present_when(df, df["unit_cost"].notna(), "currency")


class InventoryItem(ExternalRecord):
    """The stock of one part in one storeroom: what is on the shelf and when to reorder.

    Planners check it before scheduling work; purchasing reorders when the quantity on hand
    falls to the reorder point.
    """

    inventory_item_id: Series[Str] = id_field(
        "Platform identifier of the stock record.", unique=True
    )
    part_id: Series[Str] = id_field(
        "Platform identifier of the part; empty until the part is matched.", nullable=True
    )
    part_number: Series[Str] = id_field("Item or material number of the part.")
    site_id: Series[Str] = id_field("Plant or site holding the stock.")
    storeroom: Series[Str] = text_field("Storeroom or warehouse, e.g. 'MAIN'.")
    bin_location: Series[Str] = text_field("Shelf or bin within the storeroom.")
    quantity_on_hand: Series[float] = amount_field(
        "Quantity physically in stock, in unit_of_measure.", nullable=False
    )
    quantity_reserved: Series[float] = amount_field("Quantity reserved for planned work orders.")
    reorder_point: Series[float] = amount_field("Stock level at which to reorder.")
    reorder_quantity: Series[float] = amount_field("Quantity ordered when reordering.")
    unit_of_measure: Series[Str] = text_field(
        "Unit the quantities are counted in.", nullable=False, non_blank=True
    )
    unit_cost: Series[float] = amount_field("Average or standard cost of one unit.")
    currency: Series[Str] = currency_field(
        "ISO 4217 code of unit_cost; required when a cost is given."
    )
    updated_at: Series[UtcTimestamp] = timestamp_field(
        "When the record last changed in its source system (UTC).", nullable=False
    )

    @pa.dataframe_check(
        element_wise=False, ignore_na=False, error="currency: missing for unit_cost"
    )
    def cost_has_currency(cls, df: pd.DataFrame) -> Series[bool]:
        return present_when(df, df["unit_cost"].notna(), "currency")
