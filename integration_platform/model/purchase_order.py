"""The canonical purchase order and its lines."""

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
    enum_field,
    id_field,
    present_when,
    text_field,
    timestamp_field,
)
from integration_platform.model.enums import PurchaseOrderStatus


class PurchaseOrder(ExternalRecord):
    """An order for parts or services placed with a supplier, usually in the ERP.

    Maintenance follows purchase orders to know when parts for planned work will arrive;
    ``work_order_id`` ties a direct purchase to the job that needs it.
    """

    purchase_order_id: Series[Str] = id_field(
        "Platform identifier of the purchase order.", unique=True
    )
    po_number: Series[Str] = id_field("Purchase order number as printed on the document.")
    supplier_id: Series[Str] = id_field(
        "Platform identifier of the supplier; empty until matched.", nullable=True
    )
    supplier_external_id: Series[Str] = id_field(
        "The supplier's identifier in the source system (vendor number).", nullable=True
    )
    site_id: Series[Str] = id_field("Plant or site that ordered and receives the goods.")
    status: Series[Str] = enum_field(
        PurchaseOrderStatus,
        "draft, submitted, approved, partially_received, received, closed or cancelled.",
    )
    ordered_at: Series[UtcTimestamp] = timestamp_field("When the order was placed (UTC).")
    expected_delivery_at: Series[UtcTimestamp] = timestamp_field(
        "Delivery date confirmed or requested (UTC)."
    )
    total_amount: Series[float] = amount_field("Order total in `currency`.")
    currency: Series[Str] = currency_field(
        "ISO 4217 code of total_amount; required when an amount is given."
    )
    work_order_id: Series[Str] = id_field(
        "Platform identifier of the work order the purchase is for, if any.", nullable=True
    )
    created_at: Series[UtcTimestamp] = timestamp_field(
        "When the order was created (UTC).", nullable=False
    )
    updated_at: Series[UtcTimestamp] = timestamp_field(
        "When the record last changed in its source system (UTC).", nullable=False
    )

    @pa.dataframe_check(
        element_wise=False, ignore_na=False, error="currency: missing for total_amount"
    )
    def amount_has_currency(cls, df: pd.DataFrame) -> Series[bool]:
        return present_when(df, df["total_amount"].notna(), "currency")


class PurchaseOrderLine(ExternalRecord):
    """One line of a purchase order: a part or service, a quantity and a price.

    Lines are where receipts are booked, so their received quantity tells maintenance whether
    the parts for a job are in.
    """

    purchase_order_line_id: Series[Str] = id_field("Platform identifier of the line.", unique=True)
    purchase_order_id: Series[Str] = id_field(
        "Platform identifier of the purchase order the line belongs to."
    )
    line_number: Series[pd.Int64Dtype] = pa.Field(
        ge=1, description="Line number within the purchase order (1, 2, ...)."
    )
    part_id: Series[Str] = id_field(
        "Platform identifier of the part ordered; empty for services.", nullable=True
    )
    part_number: Series[Str] = id_field("Item or material number ordered.", nullable=True)
    description: Series[Str] = text_field(
        "What is ordered, as on the order.", nullable=False, non_blank=True
    )
    quantity: Series[float] = pa.Field(gt=0, description="Quantity ordered, in unit_of_measure.")
    unit_of_measure: Series[Str] = text_field("Unit of the quantity: 'each', 'l', 'h'.")
    unit_price: Series[float] = amount_field("Price of one unit in `currency`.")
    line_amount: Series[float] = amount_field("Line total in `currency`.")
    currency: Series[Str] = currency_field(
        "ISO 4217 code of the prices; required when a price is given."
    )
    quantity_received: Series[float] = amount_field("Quantity received so far.")
    updated_at: Series[UtcTimestamp] = timestamp_field(
        "When the record last changed in its source system (UTC).", nullable=False
    )

    class Config:
        unique = ["purchase_order_id", "line_number"]

    @pa.dataframe_check(
        element_wise=False, ignore_na=False, error="currency: missing for unit_price/line_amount"
    )
    def price_has_currency(cls, df: pd.DataFrame) -> Series[bool]:
        priced = df["unit_price"].notna() | df["line_amount"].notna()
        return present_when(df, priced, "currency")
