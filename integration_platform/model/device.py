"""The canonical field device and its sensors."""

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
    text_field,
    timestamp_field,
)
from integration_platform.model.enums import DeviceStatus, Protocol


class Device(CanonicalModel):
    """A field device the platform collects from: a PLC, gateway, smart sensor or BMS
    controller.

    Devices are declared in the platform's YAML (not mastered in a CMMS), so they carry no
    source_system/external_id. The registry tells collectors how to reach each device and
    links telemetry to the asset it monitors.
    """

    device_id: Series[Str] = id_field(
        "Platform identifier of the device; also the device segment of MQTT topics.",
        unique=True,
    )
    site_id: Series[Str] = id_field("Plant or site the device is installed at.")
    name: Series[Str] = text_field(
        "Human-readable name, e.g. 'Line 2 vibration gateway'.", nullable=False, non_blank=True
    )
    protocol: Series[Str] = enum_field(
        Protocol, "How the device is reached: mqtt, opcua, modbus, coap or bacnet."
    )
    address: Series[Str] = text_field(
        "Where to reach it: OPC-UA endpoint URL, host:port, MQTT topic prefix or BACnet address."
    )
    asset_id: Series[Str] = id_field(
        "Platform identifier of the asset the device monitors, if one.", nullable=True
    )
    manufacturer: Series[Str] = text_field("Manufacturer of the device.")
    model: Series[Str] = text_field("Model of the device.")
    firmware_version: Series[Str] = text_field("Firmware version last reported.")
    status: Series[Str] = enum_field(
        DeviceStatus, "Connectivity as last seen: online, offline, error or unknown."
    )
    last_seen_at: Series[UtcTimestamp] = timestamp_field(
        "When the device last delivered data (UTC)."
    )
    updated_at: Series[UtcTimestamp] = timestamp_field(
        "When the registry entry last changed (UTC).", nullable=False
    )


class Sensor(CanonicalModel):
    """One measuring channel of a device: what it measures, in which unit, where to read it.

    ``(device_id, sensor_id)`` identifies a sensor and is the key every SensorReading carries.
    The valid range lets collectors mark implausible values as bad quality.
    """

    device_id: Series[Str] = id_field("Device the sensor belongs to.")
    sensor_id: Series[Str] = id_field("Sensor or channel identifier, unique per device.")
    name: Series[Str] = text_field("Human-readable name, e.g. 'Drive-end bearing temperature'.")
    sensor_type: Series[Str] = code_field(
        "Measured quantity as a lowercase code: temperature, vibration, pressure, flow, "
        "humidity, ..."
    )
    unit: Series[Str] = text_field("Engineering unit of the values, e.g. 'degC', 'mm/s'.")
    address: Series[Str] = text_field(
        "Where the value is read: OPC-UA node id, Modbus register, MQTT topic, BACnet object."
    )
    asset_id: Series[Str] = id_field(
        "Platform identifier of the asset measured, if different from the device's.",
        nullable=True,
    )
    sampling_interval_s: Series[float] = pa.Field(
        gt=0, nullable=True, description="Seconds between two polls or expected publications."
    )
    valid_min: Series[float] = pa.Field(
        nullable=True, description="Lowest physically plausible value, in unit."
    )
    valid_max: Series[float] = pa.Field(
        nullable=True, description="Highest physically plausible value, in unit."
    )
    updated_at: Series[UtcTimestamp] = timestamp_field(
        "When the registry entry last changed (UTC).", nullable=False
    )

    class Config:
        unique = ["device_id", "sensor_id"]

    @pa.dataframe_check(element_wise=False, ignore_na=False, error="valid_max: below valid_min")
    def range_ordered(cls, df: pd.DataFrame) -> Series[bool]:
        return ~(df["valid_max"] < df["valid_min"]).fillna(False).astype(bool)
