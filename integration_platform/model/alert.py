"""The canonical alert (alarm)."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from integration_platform.model.base import (
    CanonicalModel,
    Str,
    UtcTimestamp,
    code_field,
    enum_field,
    id_field,
    not_before,
    present_when,
    text_field,
    timestamp_field,
)
from integration_platform.model.enums import AlertSeverity, AlertState


class Alert(CanonicalModel):
    """An abnormal condition that needs attention: a threshold crossed, a device gone
    silent, an alarm raised by SCADA or a BMS.

    Alerts come from the platform's own threshold rules (``source_system`` 'platform') or from
    external alarm systems (then ``external_id`` holds their alarm id). An alert may lead to a
    work order, which is recorded so the loop from detection to repair can be measured.
    """

    alert_id: Series[Str] = id_field("Platform identifier of the alert.", unique=True)
    source_system: Series[Str] = id_field(
        "Who raised it: 'platform' for the platform's own rules, else the alarm system's name."
    )
    external_id: Series[Str] = id_field(
        "The alarm's identifier in the external system; empty for platform alerts.",
        nullable=True,
    )
    site_id: Series[Str] = id_field("Plant or site concerned.")
    asset_id: Series[Str] = id_field("Platform identifier of the asset concerned.", nullable=True)
    device_id: Series[Str] = id_field("Device whose data raised the alert.", nullable=True)
    sensor_id: Series[Str] = id_field("Sensor whose data raised the alert.", nullable=True)
    sensor_type: Series[Str] = code_field(
        "Measured quantity involved, e.g. vibration or temperature.", nullable=True
    )
    rule: Series[Str] = text_field(
        "The rule that fired, e.g. 'vibration > 7.1 mm/s for 5 min' or 'device offline'."
    )
    severity: Series[Str] = enum_field(
        AlertSeverity, "How serious: critical, high, medium, low or info."
    )
    state: Series[Str] = enum_field(
        AlertState, "Life cycle: active, acknowledged, cleared or suppressed."
    )
    message: Series[Str] = text_field(
        "What happened, in words for the person on shift.", nullable=False, non_blank=True
    )
    value: Series[float] = pa.Field(
        nullable=True, description="Measured value that triggered the alert, in unit."
    )
    threshold: Series[float] = pa.Field(
        nullable=True, description="Threshold the value was compared with, in unit."
    )
    unit: Series[Str] = text_field("Engineering unit of value and threshold.")
    raised_at: Series[UtcTimestamp] = timestamp_field(
        "When the condition started (UTC).", nullable=False
    )
    acknowledged_at: Series[UtcTimestamp] = timestamp_field(
        "When someone acknowledged the alert (UTC)."
    )
    cleared_at: Series[UtcTimestamp] = timestamp_field(
        "When the condition ended (UTC); required once cleared."
    )
    work_order_id: Series[Str] = id_field(
        "Platform identifier of the work order raised for the alert.", nullable=True
    )
    updated_at: Series[UtcTimestamp] = timestamp_field(
        "When the alert last changed (UTC).", nullable=False
    )

    @pa.dataframe_check(element_wise=False, ignore_na=False, error="cleared_at: before raised_at")
    def cleared_after_raised(cls, df: pd.DataFrame) -> Series[bool]:
        return not_before(df, "cleared_at", "raised_at")

    @pa.dataframe_check(
        element_wise=False, ignore_na=False, error="acknowledged_at: before raised_at"
    )
    def acknowledged_after_raised(cls, df: pd.DataFrame) -> Series[bool]:
        return not_before(df, "acknowledged_at", "raised_at")

    @pa.dataframe_check(
        element_wise=False, ignore_na=False, error="cleared_at: missing for a cleared alert"
    )
    def cleared_has_time(cls, df: pd.DataFrame) -> Series[bool]:
        return present_when(df, df["state"] == AlertState.CLEARED, "cleared_at")
