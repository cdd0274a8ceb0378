"""The canonical shipment (inbound delivery)."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from integration_platform.model.base import (
    ExternalRecord,
    Str,
    UtcTimestamp,
    enum_field,
    id_field,
    not_before,
    present_when,
    text_field,
    timestamp_field,
)
from integration_platform.model.enums import ShipmentStatus


class Shipment(ExternalRecord):
    """A delivery from a supplier, announced by an advance ship notice (EDI 856) or a
    carrier, against a purchase order.

    Planners use shipments to know when parts for planned work arrive, and receiving uses
    them to book goods in.
    """

    shipment_id: Series[Str] = id_field("Platform identifier of the shipment.", unique=True)
    purchase_order_id: Series[Str] = id_field(
        "Platform identifier of the purchase order delivered against.", nullable=True
    )
    purchase_order_external_id: Series[Str] = id_field(
        "The purchase order number as given by the supplier or carrier.", nullable=True
    )
    supplier_id: Series[Str] = id_field(
        "Platform identifier of the shipping supplier.", nullable=True
    )
    site_id: Series[Str] = id_field("Plant or site the goods are delivered to.", nullable=True)
    status: Series[Str] = enum_field(
        ShipmentStatus, "pending, in_transit, delivered, exception or cancelled."
    )
    carrier: Series[Str] = text_field("Carrier or forwarder, e.g. 'DHL'.")
    tracking_number: Series[Str] = text_field("Carrier's tracking number.")
    shipped_at: Series[UtcTimestamp] = timestamp_field("When the goods left the supplier (UTC).")
    expected_at: Series[UtcTimestamp] = timestamp_field("Announced delivery time (UTC).")
    delivered_at: Series[UtcTimestamp] = timestamp_field(
        "When the goods arrived (UTC); required once delivered."
    )
    updated_at: Series[UtcTimestamp] = timestamp_field(
        "When the record last changed in its source system (UTC).", nullable=False
    )

    @pa.dataframe_check(
        element_wise=False, ignore_na=False, error="delivered_at: before shipped_at"
    )
    def delivered_after_shipped(cls, df: pd.DataFrame) -> Series[bool]:
        return not_before(df, "delivered_at", "shipped_at")

    @pa.dataframe_check(
        element_wise=False,
        ignore_na=False,
        error="delivered_at: missing for a delivered shipment",
    )
    def delivered_has_time(cls, df: pd.DataFrame) -> Series[bool]:
        return present_when(df, df["status"] == ShipmentStatus.DELIVERED, "delivered_at")
