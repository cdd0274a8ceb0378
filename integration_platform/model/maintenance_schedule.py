"""The canonical preventive-maintenance schedule."""

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
    enum_field,
    id_field,
    text_field,
    timestamp_field,
)
from integration_platform.model.enums import (
    ComparisonOperator,
    IntervalUnit,
    Priority,
    ScheduleStatus,
    ScheduleTriggerType,
    WorkType,
)


def _when(df: pd.DataFrame, trigger: ScheduleTriggerType, *required: str) -> pd.Series:
    """True where the row has another trigger type or all ``required`` fields are set."""
    applies = (df["trigger_type"] == trigger).fillna(False).astype(bool)
    complete = df[list(required)].notna().all(axis=1)
    return ~applies | complete


class MaintenanceSchedule(ExternalRecord):
    """A recurring maintenance plan (a PM) that generates work orders for an asset.

    A schedule becomes due by calendar time (every 3 months), by usage (every 500 operating
    hours on a meter) or by condition (when vibration exceeds 7.1 mm/s). Each trigger type
    needs its own fields; the others stay empty. The platform uses schedules to forecast work
    and to measure PM compliance.
    """

    schedule_id: Series[Str] = id_field(
        "Platform identifier of the schedule, stable across source systems.", unique=True
    )
    site_id: Series[Str] = id_field("Plant or site the schedule belongs to.")
    asset_id: Series[Str] = id_field(
        "Platform identifier of the asset maintained; empty until the asset is matched.",
        nullable=True,
    )
    asset_external_id: Series[Str] = id_field(
        "The asset's identifier in the source system.", nullable=True
    )
    title: Series[Str] = text_field(
        "What the schedule does, e.g. 'Quarterly bearing lubrication'.",
        nullable=False,
        non_blank=True,
    )
    description: Series[Str] = text_field("Job plan or instructions for the generated work.")
    work_type: Series[Str] = enum_field(
        WorkType, "Kind of work generated, usually preventive, inspection or lubrication."
    )
    priority: Series[Str] = enum_field(Priority, "Priority given to generated work orders.")
    status: Series[Str] = enum_field(ScheduleStatus, "active (generates work), paused or retired.")
    trigger_type: Series[Str] = enum_field(
        ScheduleTriggerType,
        "What makes the schedule due: time (calendar), usage (meter) or condition (sensor).",
    )
    interval_value: Series[float] = pa.Field(
        gt=0,
        nullable=True,
        description="Calendar interval for time-based schedules, in interval_unit (e.g. 3).",
    )
    interval_unit: Series[Str] = enum_field(
        IntervalUnit,
        "Unit of interval_value: hours, days, weeks, months or years.",
        nullable=True,
    )
    meter_name: Series[Str] = text_field(
        "Meter counted by usage-based schedules, e.g. 'operating_hours' or 'cycles'."
    )
    meter_unit: Series[Str] = text_field("Unit of the meter, e.g. 'h' or 'cycles'.")
    usage_interval: Series[float] = pa.Field(
        gt=0,
        nullable=True,
        description="Meter units between two executions of a usage-based schedule (e.g. 500).",
    )
    condition_metric: Series[Str] = code_field(
        "Measured quantity a condition-based schedule watches, as a sensor type "
        "(e.g. vibration, temperature).",
        nullable=True,
    )
    condition_operator: Series[Str] = enum_field(
        ComparisonOperator,
        "How the measurement is compared with the threshold: gt, ge, lt or le.",
        nullable=True,
    )
    condition_threshold: Series[float] = pa.Field(
        nullable=True,
        description="Threshold that makes a condition-based schedule due, in condition_unit.",
    )
    condition_unit: Series[Str] = text_field("Unit of the threshold, e.g. 'mm/s' or 'degC'.")
    estimated_hours: Series[float] = amount_field("Planned labour hours per execution.")
    last_performed_at: Series[UtcTimestamp] = timestamp_field(
        "When the work was last completed (UTC)."
    )
    next_due_at: Series[UtcTimestamp] = timestamp_field(
        "When the schedule is next due (UTC), for time-based schedules."
    )
    next_due_meter: Series[float] = pa.Field(
        nullable=True,
        ge=0,
        description="Meter reading at which a usage-based schedule is next due.",
    )
    updated_at: Series[UtcTimestamp] = timestamp_field(
        "When the record last changed in its source system (UTC).", nullable=False
    )

    @pa.dataframe_check(
        element_wise=False,
        ignore_na=False,
        error="interval_value: required with interval_unit for a time-based schedule",
    )
    def time_trigger_complete(cls, df: pd.DataFrame) -> Series[bool]:
        return _when(df, ScheduleTriggerType.TIME, "interval_value", "interval_unit")

    @pa.dataframe_check(
        element_wise=False,
        ignore_na=False,
        error="usage_interval: required with meter_name for a usage-based schedule",
    )
    def usage_trigger_complete(cls, df: pd.DataFrame) -> Series[bool]:
        return _when(df, ScheduleTriggerType.USAGE, "usage_interval", "meter_name")

    @pa.dataframe_check(
        element_wise=False,
        ignore_na=False,
        error=(
            "condition_threshold: required with condition_metric and condition_operator "
            "for a condition-based schedule"
        ),
    )
    def condition_trigger_complete(cls, df: pd.DataFrame) -> Series[bool]:
        return _when(
            df,
            ScheduleTriggerType.CONDITION,
            "condition_threshold",
            "condition_metric",
            "condition_operator",
        )
