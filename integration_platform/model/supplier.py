"""The canonical supplier (vendor)."""

from __future__ import annotations

import pandera.pandas as pa
from pandera.typing import Series

from integration_platform.model.base import (
    COUNTRY_CODE,
    ExternalRecord,
    Str,
    UtcTimestamp,
    currency_field,
    enum_field,
    id_field,
    text_field,
    timestamp_field,
)
from integration_platform.model.enums import SupplierStatus


class Supplier(ExternalRecord):
    """A vendor of parts and services, as held in the ERP's vendor master.

    Purchase orders, shipments and invoices point at suppliers; the EDI fields let the
    platform route X12 documents (850 orders, 856 ship notices, 810 invoices) to the right
    trading partner.
    """

    supplier_id: Series[Str] = id_field(
        "Platform identifier of the supplier, stable across source systems.", unique=True
    )
    name: Series[Str] = text_field("Legal or trading name.", nullable=False, non_blank=True)
    status: Series[Str] = enum_field(
        SupplierStatus, "Whether orders may be placed: active, inactive or blocked."
    )
    country: Series[Str] = pa.Field(
        nullable=True,
        str_matches=COUNTRY_CODE,
        description="Country as an ISO 3166-1 alpha-2 code, e.g. DE, US.",
    )
    email: Series[Str] = text_field("Ordering e-mail address.")
    phone: Series[Str] = text_field("Ordering phone number.")
    tax_id: Series[Str] = text_field("VAT or tax registration number.")
    edi_id: Series[Str] = text_field(
        "EDI interchange id of the trading partner (X12 ISA sender/receiver id)."
    )
    payment_terms: Series[Str] = text_field("Agreed payment terms, e.g. 'NET30'.")
    currency: Series[Str] = currency_field("ISO 4217 code the supplier invoices in by default.")
    updated_at: Series[UtcTimestamp] = timestamp_field(
        "When the record last changed in its source system (UTC).", nullable=False
    )
