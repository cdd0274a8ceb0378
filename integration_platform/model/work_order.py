"""The canonical work order."""

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
    text_field,
    timestamp_field,
)
from integration_platform.model.enums import Priority, WorkOrderStatus, WorkType


class WorkOrder(ExternalRecord):
    """A request for maintenance work on an asset, as held by a CMMS or ERP (Maximo, SAP PM,
    Fiix, UpKeep).

    The platform keeps one row per work order across systems so that syncs can move status
    and completion data between them and reliability KPIs (backlog, MTTR, PM compliance) can
    be computed from a single table.
    """

    work_order_id: Series[Str] = id_field(
        "Platform identifier of the work order, stable across source systems.", unique=True
    )
    site_id: Series[Str] = id_field("Plant or site the work is done at.")
    asset_id: Series[Str] = id_field(
        "Platform identifier of the asset worked on; empty until the asset is matched.",
        nullable=True,
    )
    asset_external_id: Series[Str] = id_field(
        "The asset's identifier in the source system (e.g. Maximo ASSETNUM, SAP equipment).",
        nullable=True,
    )
    title: Series[Str] = text_field(
        "Short description of the job, as shown in work order lists.",
        nullable=False,
        non_blank=True,
    )
    description: Series[Str] = text_field("Long description: symptoms, instructions, notes.")
    work_type: Series[Str] = enum_field(
        WorkType,
        "Kind of work: preventive, corrective, predictive, emergency, inspection, "
        "calibration, cleaning or lubrication.",
    )
    priority: Series[Str] = enum_field(Priority, "Urgency: critical, high, medium or low.")
    status: Series[Str] = enum_field(
        WorkOrderStatus,
        "Life-cycle state: scheduled, in_progress, completed, cancelled, overdue or on_hold.",
    )
    created_at: Series[UtcTimestamp] = timestamp_field(
        "When the work order was raised (UTC).", nullable=False
    )
    scheduled_start: Series[UtcTimestamp] = timestamp_field("Planned start of the work (UTC).")
    due_at: Series[UtcTimestamp] = timestamp_field(
        "When the work must be finished (UTC); past this an open order is overdue."
    )
    started_at: Series[UtcTimestamp] = timestamp_field("When work actually started (UTC).")
    completed_at: Series[UtcTimestamp] = timestamp_field(
        "When work was finished (UTC); required once the status is completed."
    )
    labor_hours: Series[float] = amount_field("Hours of labour booked to the work order.")
    cost_amount: Series[float] = amount_field(
        "Total cost booked (labour, parts, services) in `currency`."
    )
    currency: Series[Str] = currency_field(
        "ISO 4217 code of cost_amount (EUR, USD, ...); required when a cost is given."
    )
    assigned_to: Series[Str] = text_field("Technician, crew or contractor doing the work.")
    schedule_id: Series[Str] = id_field(
        "Platform identifier of the maintenance schedule that generated this order, if any "
        "(for PM compliance).",
        nullable=True,
    )
    updated_at: Series[UtcTimestamp] = timestamp_field(
        "When the record last changed in its source system (UTC); drives incremental sync.",
        nullable=False,
    )
    version_token: Series[Str] = text_field(
        "Source system's optimistic-locking token (ETag, rowstamp) used when writing back."
    )

    @pa.dataframe_check(
        element_wise=False, ignore_na=False, error="completed_at: before started_at"
    )
    def completed_after_started(cls, df: pd.DataFrame) -> Series[bool]:
        return not_before(df, "completed_at", "started_at")

    @pa.dataframe_check(
        element_wise=False,
        ignore_na=False,
        error="completed_at: missing for a completed work order",
    )
    def completed_has_completion_time(cls, df: pd.DataFrame) -> Series[bool]:
        return present_when(df, df["status"] == WorkOrderStatus.COMPLETED, "completed_at")

    @pa.dataframe_check(
        element_wise=False, ignore_na=False, error="currency: missing for cost_amount"
    )
    def cost_has_currency(cls, df: pd.DataFrame) -> Series[bool]:
        return present_when(df, df["cost_amount"].notna(), "currency")
