"""The canonical supplier invoice."""

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
    not_before,
    present_when,
    timestamp_field,
)
from integration_platform.model.enums import InvoiceStatus


class Invoice(ExternalRecord):
    """A supplier's bill for parts or services (EDI 810 or the ERP's accounts payable).

    Invoices close the purchasing loop and give maintenance its actual external spend per
    purchase order and, through it, per work order and asset.
    """

    invoice_id: Series[Str] = id_field("Platform identifier of the invoice.", unique=True)
    invoice_number: Series[Str] = id_field("The supplier's invoice number.")
    supplier_id: Series[Str] = id_field(
        "Platform identifier of the supplier; empty until matched.", nullable=True
    )
    supplier_external_id: Series[Str] = id_field(
        "The supplier's identifier in the source system (vendor number).", nullable=True
    )
    purchase_order_id: Series[Str] = id_field(
        "Platform identifier of the purchase order invoiced, if any.", nullable=True
    )
    status: Series[Str] = enum_field(
        InvoiceStatus, "received, approved, disputed, paid or cancelled."
    )
    issued_at: Series[UtcTimestamp] = timestamp_field("Invoice date (UTC).", nullable=False)
    due_at: Series[UtcTimestamp] = timestamp_field("Payment due date (UTC).")
    paid_at: Series[UtcTimestamp] = timestamp_field(
        "When the invoice was paid (UTC); required once paid."
    )
    total_amount: Series[float] = amount_field(
        "Invoice total including tax, in `currency`.", nullable=False
    )
    tax_amount: Series[float] = amount_field("Tax included in total_amount.")
    currency: Series[Str] = currency_field(
        "ISO 4217 code of the amounts (EUR, USD, ...).", nullable=False
    )
    updated_at: Series[UtcTimestamp] = timestamp_field(
        "When the record last changed in its source system (UTC).", nullable=False
    )

    @pa.dataframe_check(element_wise=False, ignore_na=False, error="due_at: before issued_at")
    def due_after_issued(cls, df: pd.DataFrame) -> Series[bool]:
        return not_before(df, "due_at", "issued_at")

    @pa.dataframe_check(
        element_wise=False, ignore_na=False, error="paid_at: missing for a paid invoice"
    )
    def paid_has_time(cls, df: pd.DataFrame) -> Series[bool]:
        return present_when(df, df["status"] == InvoiceStatus.PAID, "paid_at")

    @pa.dataframe_check(
        element_wise=False, ignore_na=False, error="tax_amount: greater than total_amount"
    )
    def tax_within_total(cls, df: pd.DataFrame) -> Series[bool]:
        return ~(df["tax_amount"] > df["total_amount"]).fillna(False).astype(bool)
