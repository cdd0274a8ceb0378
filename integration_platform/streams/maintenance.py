"""Which condition- and usage-based maintenance schedules the sensor data makes due.

Schedules name what they watch by asset and measured quantity (``condition_metric``, a sensor
type) or by meter (``meter_name``, a counter sensor's id or type); the device registry says
which sensor measures which asset. A condition holds when consecutive one-minute windows
breach the threshold for at least the minimum duration (the schedule's
``condition_min_duration_s`` when present, else the sensor's ``thresholds.min_duration_s``),
so a single spike does not raise work. A usage schedule is due when the meter reached
``next_due_meter``. Plain pandas, no Dagster.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from integration_platform.streams.devices import Registry

CONDITION = "condition"
USAGE = "usage"
ACTIVE = "active"

OPERATORS: dict[str, Callable[[object, object], object]] = {
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}

SENSOR_COLUMNS = ["device_id", "sensor_id", "sensor_type", "asset_id", "min_duration_s"]

TRIGGER_COLUMNS: dict[str, str] = {
    "schedule_id": "Maintenance schedule evaluated",
    "asset_id": "Asset the schedule maintains",
    "trigger_type": "condition or usage",
    "device_id": "Device whose sensor decided (empty when none matched)",
    "sensor_id": "Sensor that decided",
    "metric": "Sensor type watched (condition) or meter name (usage)",
    "operator": "gt, ge, lt or le (condition)",
    "threshold": "Condition threshold, or the meter value at which the schedule is due",
    "min_duration_s": "How long the condition must hold (condition)",
    "observed": "Most extreme window mean (condition) or the latest meter value (usage)",
    "breach_s": "Longest uninterrupted time the condition held, in seconds",
    "due": "True when the schedule should generate work",
    "reason": "Why it is due or not, in words",
    "evaluated_at": "When the schedules were evaluated (UTC)",
    "date": "UTC day of the rollups evaluated (the partition)",
}


def registry_sensors(registry: Registry | None) -> pd.DataFrame:
    """One row per enabled sensor with the asset it measures and its alert min duration."""
    rows = []
    for device in registry.devices if registry is not None else []:
        if not device.enabled:
            continue
        for sensor in device.sensors:
            rows.append(
                {
                    "device_id": device.device_id,
                    "sensor_id": sensor.sensor_id,
                    "sensor_type": sensor.type,
                    "asset_id": sensor.asset_id or device.asset_id,
                    "min_duration_s": sensor.thresholds.min_duration_s
                    if sensor.thresholds
                    else 0.0,
                }
            )
    frame = pd.DataFrame(rows, columns=SENSOR_COLUMNS)
    return frame.astype({"min_duration_s": "float64"})


def empty_triggers() -> pd.DataFrame:
    """The output columns with their types and no rows (no schedules, no sensors)."""
    return _typed(pd.DataFrame({name: [] for name in TRIGGER_COLUMNS}))


def condition_triggers(
    schedules: pd.DataFrame,
    rollups: pd.DataFrame,
    sensors: pd.DataFrame,
    *,
    as_of: datetime,
    date: str,
) -> pd.DataFrame:
    """One row per active condition or usage schedule: due or not, with the evidence.

    ``rollups`` are one-minute (or any fixed-window) rollups as made by
    :func:`integration_platform.streams.rollups.rollup`; ``sensors`` as from
    :func:`registry_sensors`.
    """
    if schedules.empty:
        return empty_triggers()
    active = schedules[
        (schedules["status"].astype("string") == ACTIVE).fillna(False).to_numpy(dtype=bool)
    ]
    parts = [
        _conditions(active[active["trigger_type"] == CONDITION], rollups, sensors),
        _usage(active[active["trigger_type"] == USAGE], rollups, sensors),
    ]
    parts = [part for part in parts if len(part)]
    if not parts:
        return empty_triggers()
    out = pd.concat(parts, ignore_index=True)
    out["evaluated_at"] = pd.Timestamp(as_of).tz_convert("UTC")
    out["date"] = pd.Timestamp(date).date()
    return _typed(out.sort_values("schedule_id", kind="stable").reset_index(drop=True))


def _conditions(
    schedules: pd.DataFrame, rollups: pd.DataFrame, sensors: pd.DataFrame
) -> pd.DataFrame:
    if schedules.empty:
        return pd.DataFrame()
    base = schedules.assign(
        metric=schedules["condition_metric"].astype("string"),
        operator=schedules["condition_operator"].astype("string"),
        threshold=schedules["condition_threshold"].astype("float64"),
    )[["schedule_id", "asset_id", "trigger_type", "metric", "operator", "threshold"]]
    if "condition_min_duration_s" in schedules:
        base["schedule_min_s"] = schedules["condition_min_duration_s"].astype("float64")
    else:
        base["schedule_min_s"] = np.nan
    matched = base.merge(
        sensors.rename(columns={"sensor_type": "metric"}),
        on=["asset_id", "metric"],
        how="left",
    )
    matched["min_duration_s"] = (
        matched["schedule_min_s"].fillna(matched["min_duration_s"].astype("float64")).fillna(0.0)
    )
    windows = rollups[["device_id", "sensor_id", "window_start", "window_end", "mean"]].dropna(
        subset=["mean"]
    )
    joined = matched.merge(windows, on=["device_id", "sensor_id"], how="inner")
    keys = ["schedule_id", "device_id", "sensor_id"]
    if len(joined):
        joined = joined.sort_values([*keys, "window_start"], kind="stable")
        breach = np.zeros(len(joined), dtype=bool)
        for code, compare in OPERATORS.items():
            mask = (joined["operator"] == code).fillna(False).to_numpy(dtype=bool)
            breach[mask] = np.asarray(
                compare(joined["mean"].to_numpy()[mask], joined["threshold"].to_numpy()[mask])
            )
        joined["breach"] = breach
        group = joined.groupby(keys, sort=False)
        follows = (joined["window_start"] == group["window_end"].shift()).to_numpy(dtype=bool)
        continues = follows & group["breach"].shift(fill_value=False).to_numpy(dtype=bool)
        joined["run"] = np.cumsum(breach & ~continues)
        joined["seconds"] = (joined["window_end"] - joined["window_start"]).dt.total_seconds()
        runs = joined[joined["breach"]].groupby([*keys, "run"])["seconds"].sum()
        longest = runs.groupby(level=keys).max().rename("breach_s")
        # Most extreme mean in the direction of the comparison: the evidence shown to people.
        signed = np.where(joined["operator"].isin(["lt", "le"]), -1.0, 1.0)
        joined["signed"] = joined["mean"] * signed
        extreme = joined.loc[joined.groupby(keys)["signed"].idxmax(), [*keys, "mean"]]
        evidence = extreme.rename(columns={"mean": "observed"}).merge(
            longest.reset_index(), on=keys, how="left"
        )
        matched = matched.merge(evidence, on=keys, how="left")
    else:
        matched["observed"] = np.nan
        matched["breach_s"] = np.nan
    matched["breach_s"] = matched["breach_s"].fillna(0.0)
    due = (matched["breach_s"] > 0) & (matched["breach_s"] >= matched["min_duration_s"])
    matched["due"] = due
    matched["reason"] = np.select(
        [matched["device_id"].isna(), matched["observed"].isna(), due],
        [
            "no sensor of type " + matched["metric"].fillna("?") + " on the asset",
            "no usable readings",
            "condition held " + matched["breach_s"].map("{:.0f}".format) + " s",
        ],
        default="condition held "
        + matched["breach_s"].map("{:.0f}".format)
        + " s, less than "
        + matched["min_duration_s"].map("{:.0f}".format)
        + " s",
    )
    return _best_per_schedule(matched)


def _usage(schedules: pd.DataFrame, rollups: pd.DataFrame, sensors: pd.DataFrame) -> pd.DataFrame:
    if schedules.empty:
        return pd.DataFrame()
    base = schedules.assign(
        metric=schedules["meter_name"].astype("string"),
        threshold=schedules["next_due_meter"].astype("float64"),
    )[["schedule_id", "asset_id", "trigger_type", "metric", "threshold"]]
    candidates = base.merge(sensors, on="asset_id", how="inner")
    candidates = candidates[
        (candidates["metric"] == candidates["sensor_id"])
        | (candidates["metric"] == candidates["sensor_type"])
    ]
    matched = base.merge(
        candidates[["schedule_id", "device_id", "sensor_id"]], on="schedule_id", how="left"
    )
    meters = rollups.groupby(["device_id", "sensor_id"])["max"].max().rename("observed")
    matched = matched.merge(meters.reset_index(), on=["device_id", "sensor_id"], how="left")
    due = (matched["observed"] >= matched["threshold"]).fillna(False).astype(bool)
    matched["due"] = due
    matched["operator"] = "ge"
    matched["min_duration_s"] = np.nan
    matched["breach_s"] = np.nan
    matched["reason"] = np.select(
        [
            matched["device_id"].isna(),
            matched["threshold"].isna(),
            matched["observed"].isna(),
            due,
        ],
        [
            "no counter sensor named " + matched["metric"].fillna("?") + " on the asset",
            "next_due_meter is not set",
            "no usable meter readings",
            "meter " + matched["observed"].map("{:g}".format) + " reached the due value",
        ],
        default="meter " + matched["observed"].map("{:g}".format) + " below the due value",
    )
    return _best_per_schedule(matched)


def _best_per_schedule(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per schedule: a due sensor first, then the strongest evidence."""
    ranked = frame.assign(
        _due=frame["due"].astype(bool),
        _breach=frame["breach_s"].fillna(0.0),
        _observed=frame["observed"].fillna(-np.inf),
    ).sort_values(
        ["schedule_id", "_due", "_breach", "_observed"],
        ascending=[True, False, False, False],
        kind="stable",
    )
    best = ranked.drop_duplicates("schedule_id")
    return best[[c for c in TRIGGER_COLUMNS if c in best.columns]]


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    types = {
        "schedule_id": "string",
        "asset_id": "string",
        "trigger_type": "string",
        "device_id": "string",
        "sensor_id": "string",
        "metric": "string",
        "operator": "string",
        "threshold": "float64",
        "min_duration_s": "float64",
        "observed": "float64",
        "breach_s": "float64",
        "due": "bool",
        "reason": "string",
    }
    for name in TRIGGER_COLUMNS:
        if name not in frame:
            frame[name] = pd.NA
    frame = frame[list(TRIGGER_COLUMNS)].astype(types)
    frame["evaluated_at"] = pd.to_datetime(frame["evaluated_at"], utc=True).astype(
        pd.DatetimeTZDtype("us", "UTC")
    )
    days = [None if pd.isna(d) else d for d in frame["date"]]
    frame["date"] = pd.Series(
        pa.array(days, type=pa.date32()), index=frame.index, dtype=pd.ArrowDtype(pa.date32())
    )
    return frame
