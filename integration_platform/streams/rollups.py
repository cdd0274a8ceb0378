"""Aggregations over the long telemetry frame: window rollups, device health and gaps.

Plain pandas, vectorized, no Dagster: the gold assets in ``defs/telemetry`` are thin wrappers,
and these functions are tested on hand-made readings. Only readings of quality ``good`` or
``uncertain`` with a value enter the statistics; ``bad`` readings (out of range, missed polls)
are counted separately so a noisy or silent sensor stays visible without skewing the numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from integration_platform.streams.devices import DeviceSpec, Registry

USABLE_QUALITIES = ("good", "uncertain")
BAD = "bad"
VIBRATION = "vibration"
# MQTT devices publish when they like; without a poll interval a minute is the expectation.
DEFAULT_EXPECTED_INTERVAL_S = 60.0
# A device is offline when silent for this many expected intervals (jitter, batching).
STALE_FACTOR = 3.0
# A gap is a silence longer than this many expected intervals between two usable readings.
GAP_FACTOR = 3.0

ROLLUP_COLUMNS: dict[str, str] = {
    "device_id": "Device that sent the readings",
    "sensor_id": "Sensor on the device",
    "sensor_type": "Measured quantity (temperature, vibration, ...)",
    "unit": "Engineering unit of the values",
    "window_start": "Start of the window (UTC, inclusive)",
    "window_end": "End of the window (UTC, exclusive)",
    "count": "Readings of quality good or uncertain with a value",
    "bad_count": "Readings of quality bad (excluded from the statistics)",
    "min": "Smallest usable value",
    "max": "Largest usable value",
    "mean": "Mean of the usable values",
    "rms": "Root mean square of the usable values; vibration sensors only",
    "date": "UTC day of window_start (the partition)",
}

HEALTH_COLUMNS: dict[str, str] = {
    "device_id": "Device",
    "expected_interval_s": "Seconds between readings the device should keep",
    "last_seen": "Time of the device's last usable reading (UTC)",
    "silent_s": "Seconds since last_seen at evaluation time",
    "readings_today": "Readings of any quality since UTC midnight",
    "bad_share_today": "Share of today's readings with quality bad (0..1)",
    "status": "online, or offline when silent longer than the stale limit",
    "evaluated_at": "When the health was computed (UTC)",
}

GAP_COLUMNS: dict[str, str] = {
    "device_id": "Device",
    "sensor_id": "Sensor",
    "gap_start": "Last usable reading before the gap (UTC)",
    "gap_end": "First usable reading after the gap (UTC)",
    "gap_s": "Length of the gap in seconds",
    "expected_interval_s": "Seconds between readings the device should keep",
    "bad_readings": "Readings of quality bad inside the gap (missed polls)",
    "date": "UTC day of gap_end (the partition)",
}

_UTC = pd.DatetimeTZDtype("us", "UTC")
_DATE = pd.ArrowDtype(pa.date32())


def expected_interval_s(device: DeviceSpec) -> float:
    """The device's declared ``expected_interval_s``; else polled devices report every poll
    and pushed ones are expected every minute."""
    if device.expected_interval_s is not None:
        return float(device.expected_interval_s)
    if device.protocol == "modbus" and device.modbus is not None:
        return float(device.modbus.poll_interval_s)
    return DEFAULT_EXPECTED_INTERVAL_S


def expected_intervals(registry: Registry | None) -> dict[str, float]:
    """Expected seconds between readings per enabled device of the registry."""
    if registry is None:
        return {}
    return {d.device_id: expected_interval_s(d) for d in registry.devices if d.enabled}


def _usable(readings: pd.DataFrame) -> pd.Series:
    return readings["quality"].isin(USABLE_QUALITIES).to_numpy(dtype=bool) & readings[
        "value"
    ].notna().to_numpy(dtype=bool)


def _as_date(series: pd.Series) -> pd.Series:
    days = pd.to_datetime(series, utc=True).dt.date
    return pd.Series(pa.array(days, type=pa.date32()), index=series.index, dtype=_DATE)


def rollup(readings: pd.DataFrame, window: str) -> pd.DataFrame:
    """min/max/mean/count per device, sensor and ``window`` (a pandas frequency: ``1min``,
    ``1h``), plus RMS for vibration sensors and the count of bad readings."""
    if readings.empty:
        return _empty(ROLLUP_COLUMNS, window_cols=("window_start", "window_end"))
    ts = pd.to_datetime(readings["ts"], utc=True)
    usable = _usable(readings)
    value = pd.to_numeric(readings["value"], errors="coerce").astype("float64").to_numpy()
    value = np.where(usable, value, np.nan)
    work = pd.DataFrame(
        {
            "device_id": readings["device_id"].astype("string"),
            "sensor_id": readings["sensor_id"].astype("string"),
            "window_start": ts.dt.floor(window),
            "sensor_type": readings["sensor_type"].astype("string"),
            "unit": readings["unit"].astype("string"),
            "v": value,
            "v2": value * value,
            "is_bad": (readings["quality"] == BAD).fillna(False).to_numpy(dtype=bool),
        }
    )
    out = (
        work.groupby(["device_id", "sensor_id", "window_start"], sort=True, observed=True)
        .agg(
            sensor_type=("sensor_type", "first"),
            unit=("unit", "first"),
            count=("v", "count"),
            bad_count=("is_bad", "sum"),
            min=("v", "min"),
            max=("v", "max"),
            mean=("v", "mean"),
            ms=("v2", "mean"),
        )
        .reset_index()
    )
    rms = np.sqrt(out["ms"].to_numpy())
    out["rms"] = np.where(out["sensor_type"] == VIBRATION, rms, np.nan)
    out["window_start"] = out["window_start"].astype(_UTC)
    out["window_end"] = out["window_start"] + pd.tseries.frequencies.to_offset(window)
    out["count"] = out["count"].astype("int64")
    out["bad_count"] = out["bad_count"].astype("int64")
    out["date"] = _as_date(out["window_start"])
    return out[list(ROLLUP_COLUMNS)]


def device_health(
    readings: pd.DataFrame,
    intervals: Mapping[str, float],
    *,
    as_of: datetime,
    stale_factor: float = STALE_FACTOR,
) -> pd.DataFrame:
    """Last seen, today's volume and bad share, and online/offline per device.

    Devices come from ``intervals`` (the registry) and from the readings, so a registered
    device that never reported shows as offline and an unregistered one still appears.
    """
    as_of_ts = pd.Timestamp(as_of).tz_convert("UTC")
    midnight = as_of_ts.floor("D")
    devices = sorted(set(intervals) | set(readings["device_id"].dropna().astype(str)))
    frame = pd.DataFrame({"device_id": pd.Series(devices, dtype="string")})
    frame["expected_interval_s"] = (
        frame["device_id"].map(dict(intervals)).fillna(DEFAULT_EXPECTED_INTERVAL_S)
    ).astype("float64")
    if len(readings):
        ts = pd.to_datetime(readings["ts"], utc=True)
        device = readings["device_id"].astype("string")
        last = ts[_usable(readings)].groupby(device[_usable(readings)]).max()
        today = ts >= midnight
        counts = device[today].value_counts()
        bad = device[today & (readings["quality"] == BAD).fillna(False)].value_counts()
    else:
        last = counts = bad = pd.Series(dtype="float64")
    frame["last_seen"] = frame["device_id"].map(last).astype(_UTC)
    frame["silent_s"] = (as_of_ts - frame["last_seen"]).dt.total_seconds().clip(lower=0)
    frame["readings_today"] = frame["device_id"].map(counts).fillna(0).astype("int64")
    bad_today = frame["device_id"].map(bad).fillna(0).astype("float64")
    frame["bad_share_today"] = np.where(
        frame["readings_today"] > 0, bad_today / frame["readings_today"].clip(lower=1), 0.0
    )
    online = frame["silent_s"].notna() & (
        frame["silent_s"] <= stale_factor * frame["expected_interval_s"]
    )
    frame["status"] = pd.Series(np.where(online, "online", "offline"), dtype="string")
    frame["evaluated_at"] = pd.Series(as_of_ts, index=frame.index).astype(_UTC)
    return frame[list(HEALTH_COLUMNS)]


def telemetry_gaps(
    readings: pd.DataFrame,
    intervals: Mapping[str, float],
    *,
    gap_factor: float = GAP_FACTOR,
) -> pd.DataFrame:
    """Silences longer than ``gap_factor`` expected intervals between two usable readings of
    one sensor; missed polls (bad readings without value) inside a gap are counted."""
    if readings.empty:
        return _empty(GAP_COLUMNS, window_cols=("gap_start", "gap_end"))
    work = pd.DataFrame(
        {
            "device_id": readings["device_id"].astype("string"),
            "sensor_id": readings["sensor_id"].astype("string"),
            "ts": pd.to_datetime(readings["ts"], utc=True),
            "usable": _usable(readings),
        }
    ).sort_values(["device_id", "sensor_id", "ts"], kind="stable")
    usable = work[work["usable"]].copy()
    keys = [usable["device_id"], usable["sensor_id"]]
    usable["gap_start"] = usable.groupby(keys, observed=True)["ts"].shift()
    usable["gap_s"] = (usable["ts"] - usable["gap_start"]).dt.total_seconds()
    usable["expected_interval_s"] = (
        usable["device_id"].map(dict(intervals)).fillna(DEFAULT_EXPECTED_INTERVAL_S)
    ).astype("float64")
    gaps = usable[usable["gap_s"] > gap_factor * usable["expected_interval_s"]].rename(
        columns={"ts": "gap_end"}
    )
    gaps = gaps.reset_index(drop=True)
    bad = work[~work["usable"]]
    if len(gaps) and len(bad):
        # Bad readings per gap: join on the sensor and keep those strictly inside the gap.
        joined = gaps.reset_index().merge(bad, on=["device_id", "sensor_id"], how="inner")
        inside = joined[(joined["ts"] > joined["gap_start"]) & (joined["ts"] < joined["gap_end"])]
        counts = inside.groupby("index").size()
        gaps["bad_readings"] = gaps.index.map(counts).fillna(0).astype("int64")
    else:
        gaps["bad_readings"] = pd.Series(0, index=gaps.index, dtype="int64")
    gaps["gap_start"] = gaps["gap_start"].astype(_UTC)
    gaps["gap_end"] = gaps["gap_end"].astype(_UTC)
    gaps["date"] = _as_date(gaps["gap_end"])
    return gaps[list(GAP_COLUMNS)].reset_index(drop=True)


def _empty(columns: Mapping[str, str], *, window_cols: tuple[str, ...]) -> pd.DataFrame:
    """A typed empty frame, so an empty partition writes the same schema as a full one."""
    dtypes: dict[str, object] = {
        "count": "int64",
        "bad_count": "int64",
        "bad_readings": "int64",
        "date": _DATE,
    }
    for name in window_cols:
        dtypes[name] = _UTC
    frame = {}
    for name in columns:
        dtype = dtypes.get(name, "float64" if name not in _STRING_COLUMNS else "string")
        frame[name] = pd.Series([], dtype=dtype)
    return pd.DataFrame(frame)


_STRING_COLUMNS = frozenset({"device_id", "sensor_id", "sensor_type", "unit", "status"})
