"""The canonical sensor reading (telemetry in long format)."""

from __future__ import annotations

import numpy as np
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
    timestamp_field,
)
from integration_platform.model.enums import ReadingQuality


class SensorReading(CanonicalModel):
    """One measured value from one sensor at one instant, whatever the protocol.

    Every industrial collector (MQTT, OPC-UA, Modbus, CoAP, BACnet) yields this same long
    frame, so the Delta telemetry table, threshold alerts and condition analytics do not care
    where a value came from. Readings are produced by the platform's collectors, so they carry
    no source_system/external_id; ``source_protocol`` records the path instead. The lake's
    ``date`` partition column is derived from ``ts`` when writing and is not part of the model.
    """

    device_id: Series[Str] = id_field("Device (gateway, PLC, IoT node) that sent the value.")
    sensor_id: Series[Str] = id_field("Sensor or channel on the device, unique per device.")
    sensor_type: Series[Str] = code_field(
        "Measured quantity as a lowercase code: temperature, vibration, pressure, flow, "
        "humidity, or any other identifier a device declares."
    )
    ts: Series[UtcTimestamp] = timestamp_field(
        "When the value was measured (UTC), as stamped by the device or collector.",
        nullable=False,
    )
    value: Series[float] = pa.Field(
        nullable=True,
        in_range={
            "min_value": -np.inf,
            "max_value": np.inf,
            "include_min": False,
            "include_max": False,
        },
        description="Measured value in `unit`; may be empty only when quality is bad.",
    )
    unit: Series[Str] = pa.Field(
        nullable=True, description="Engineering unit of the value, e.g. 'degC', 'mm/s', 'bar'."
    )
    quality: Series[Str] = enum_field(
        ReadingQuality, "Trust in the value: good, uncertain or bad (OPC-UA status classes)."
    )
    source_protocol: Series[Str] = code_field(
        "Protocol the value arrived by: mqtt, opcua, modbus, coap, bacnet, ..."
    )
    ingested_at: Series[UtcTimestamp] = timestamp_field(
        "When the platform received the value (UTC); the gap to ts shows collection delay.",
        nullable=False,
    )

    @pa.dataframe_check(
        element_wise=False,
        ignore_na=False,
        error="value: missing (only readings of bad quality may have no value)",
    )
    def value_unless_bad(cls, df: pd.DataFrame) -> Series[bool]:
        return df["value"].notna() | (df["quality"] == ReadingQuality.BAD).fillna(False)
