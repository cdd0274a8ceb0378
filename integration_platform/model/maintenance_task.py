"""The canonical maintenance task (a step of a work order or job plan)."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from integration_platform.model.base import (
    ExternalRecord,
    Str,
    UtcTimestamp,
    amount_field,
    enum_field,
    id_field,
    present_when,
    text_field,
    timestamp_field,
)
from integration_platform.model.enums import TaskStatus

_PARENTS = ["work_order_id", "work_order_external_id", "schedule_id", "schedule_external_id"]


class MaintenanceTask(ExternalRecord):
    """One step of a work order or of a schedule's job plan ("isolate pump", "replace seal").

    Tasks carry the checklist technicians follow and the hours per step; they belong to a work
    order or to a maintenance schedule, referenced by platform id or by the source system's id.
    """

    task_id: Series[Str] = id_field(
        "Platform identifier of the task, stable across source systems.", unique=True
    )
    work_order_id: Series[Str] = id_field(
        "Platform identifier of the work order the task belongs to.", nullable=True
    )
    work_order_external_id: Series[Str] = id_field(
        "The work order's identifier in the source system.", nullable=True
    )
    schedule_id: Series[Str] = id_field(
        "Platform identifier of the schedule whose job plan the task belongs to.", nullable=True
    )
    schedule_external_id: Series[Str] = id_field(
        "The schedule's identifier in the source system.", nullable=True
    )
    sequence: Series[pd.Int64Dtype] = pa.Field(
        ge=1, nullable=True, description="Order of the step within its work order (1, 2, ...)."
    )
    description: Series[Str] = text_field(
        "What to do in this step.", nullable=False, non_blank=True
    )
    status: Series[Str] = enum_field(
        TaskStatus, "Progress of the step: pending, in_progress, completed or skipped."
    )
    estimated_hours: Series[float] = amount_field("Planned labour hours for the step.")
    actual_hours: Series[float] = amount_field("Labour hours actually booked to the step.")
    assigned_to: Series[Str] = text_field("Technician or craft doing the step.")
    completed_at: Series[UtcTimestamp] = timestamp_field(
        "When the step was finished (UTC); required once completed."
    )
    updated_at: Series[UtcTimestamp] = timestamp_field(
        "When the record last changed in its source system (UTC).", nullable=False
    )

    @pa.dataframe_check(
        element_wise=False,
        ignore_na=False,
        error="work_order_id: a task must belong to a work order or a schedule",
    )
    def has_parent(cls, df: pd.DataFrame) -> Series[bool]:
        return df[_PARENTS].notna().any(axis=1)

    @pa.dataframe_check(
        element_wise=False, ignore_na=False, error="completed_at: missing for a completed task"
    )
    def completed_has_time(cls, df: pd.DataFrame) -> Series[bool]:
        return present_when(df, df["status"] == TaskStatus.COMPLETED, "completed_at")
