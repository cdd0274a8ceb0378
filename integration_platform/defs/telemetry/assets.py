"""The telemetry table as a source, and the gold tables computed from it.

``telemetry/sensor_readings`` is written by the collector (``streams/writer.py``), never by
Dagster, so it is an observable source: observing it reads only the Delta log (version, file
and row counts). The gold assets are daily partitions that read one ``date`` partition of the
readings; their logic lives in ``streams/rollups.py`` and ``streams/maintenance.py``.
"""

import os
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd

from integration_platform.defs.telemetry.partitions import telemetry_daily_partitions
from integration_platform.lake import DeltaLake, Layer
from integration_platform.lake.io_manager import PARTITION_BY_KEY
from integration_platform.streams.devices import Registry, load_registry
from integration_platform.streams.maintenance import (
    TRIGGER_COLUMNS,
    condition_triggers,
    empty_triggers,
    registry_sensors,
)
from integration_platform.streams.rollups import (
    GAP_COLUMNS,
    HEALTH_COLUMNS,
    ROLLUP_COLUMNS,
    device_health,
    expected_intervals,
    rollup,
    telemetry_gaps,
)

SENSOR_READINGS = dg.AssetKey([Layer.TELEMETRY, "sensor_readings"])
ROLLUPS_1M = dg.AssetKey([Layer.GOLD, "sensor_rollups_1m"])
ROLLUPS_1H = dg.AssetKey([Layer.GOLD, "sensor_rollups_1h"])
DEVICE_HEALTH = dg.AssetKey([Layer.GOLD, "device_health"])
TELEMETRY_GAPS = dg.AssetKey([Layer.GOLD, "telemetry_gaps"])
CONDITION_TRIGGERS = dg.AssetKey([Layer.GOLD, "condition_triggers"])
SILVER_MAINTENANCE_SCHEDULES = (Layer.SILVER, "maintenance_schedules")

DEVICES_VAR = "INTEGRATION_PLATFORM_DEVICES"
DEFAULT_DEVICES = Path(__file__).resolve().parents[2] / "streams" / "examples" / "devices.yaml"
# device_health looks this far back for a device's last reading; older means "never seen".
HEALTH_LOOKBACK_DAYS = 7
READING_COLUMNS = ["device_id", "sensor_id", "sensor_type", "ts", "value", "unit", "quality"]


def devices_path() -> Path:
    """The registry file: ``INTEGRATION_PLATFORM_DEVICES``, else the shipped example."""
    raw = os.environ.get(DEVICES_VAR, "").strip()
    return Path(raw).expanduser() if raw else DEFAULT_DEVICES


def load_devices() -> Registry:
    """Parsed when a run needs it, never at import (definitions load in every process)."""
    return load_registry(devices_path())


def read_days(
    lake: DeltaLake,
    parts: Sequence[str],
    days: Sequence[date],
    *,
    columns: list[str] | None = None,
) -> pd.DataFrame | None:
    """Rows of the given ``date`` partitions only (partition pruning); ``None`` without table."""
    if not lake.exists(parts):
        return None
    values = ", ".join(f"'{day.isoformat()}'" for day in days)
    return lake.read(parts, columns=columns, where=f"date IN ({values})")


def _schema(columns: dict[str, str]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name=name, description=text) for name, text in columns.items()]
    )


@dg.observable_source_asset(
    key=SENSOR_READINGS,
    group_name="telemetry",
    description="Sensor readings landed by the collector (Delta, partitioned by date).",
    metadata={PARTITION_BY_KEY: ["date"]},
    tags={"dagster/kind/delta": ""},
)
def sensor_readings(lake: DeltaLake) -> dg.ObserveResult:
    """Delta version, files and rows from the log: no data file is read."""
    from deltalake import DeltaTable

    parts = SENSOR_READINGS.path
    if not lake.exists(parts):
        return dg.ObserveResult(
            data_version=dg.DataVersion("none"), metadata={"delta/exists": False}
        )
    table = DeltaTable(lake.table_uri(parts), storage_options=lake.storage_options)
    actions = table.get_add_actions(flatten=True)
    rows = sum(n for n in actions.column("num_records").to_pylist() if n is not None)
    return dg.ObserveResult(
        data_version=dg.DataVersion(str(table.version())),
        metadata={
            "delta/version": table.version(),
            "delta/files": actions.num_rows,
            "dagster/row_count": rows,
            "delta/table_uri": dg.MetadataValue.path(lake.table_uri(parts)),
        },
    )


def _readings_for(context: dg.AssetExecutionContext, lake: DeltaLake) -> pd.DataFrame:
    day = date.fromisoformat(context.partition_key)
    frame = read_days(lake, SENSOR_READINGS.path, [day], columns=READING_COLUMNS)
    if frame is None:
        context.log.info("telemetry/sensor_readings does not exist yet: empty partition")
        return pd.DataFrame({name: pd.Series(dtype="object") for name in READING_COLUMNS})
    return frame


def _rollup_asset(key: dg.AssetKey, window: str, text: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=key,
        deps=[SENSOR_READINGS],
        partitions_def=telemetry_daily_partitions,
        group_name="telemetry",
        kinds={"delta", "pandas"},
        description=text,
        metadata={PARTITION_BY_KEY: ["date"], "dagster/column_schema": _schema(ROLLUP_COLUMNS)},
    )
    def _asset(context: dg.AssetExecutionContext, lake: DeltaLake) -> pd.DataFrame:
        readings = _readings_for(context, lake)
        out = rollup(readings, window)
        context.add_output_metadata(
            {"readings": len(readings), "bad_readings": int(out["bad_count"].sum())}
        )
        return out

    return _asset


sensor_rollups_1m = _rollup_asset(
    ROLLUPS_1M, "1min", "Per-minute min/max/mean/count (and vibration RMS) per sensor."
)
sensor_rollups_1h = _rollup_asset(
    ROLLUPS_1H, "1h", "Hourly min/max/mean/count (and vibration RMS) per sensor."
)


@dg.asset(
    key=TELEMETRY_GAPS,
    deps=[SENSOR_READINGS],
    partitions_def=telemetry_daily_partitions,
    group_name="telemetry",
    kinds={"delta", "pandas"},
    description="Silences longer than 3 expected intervals per device and sensor.",
    metadata={PARTITION_BY_KEY: ["date"], "dagster/column_schema": _schema(GAP_COLUMNS)},
)
def telemetry_gaps_asset(context: dg.AssetExecutionContext, lake: DeltaLake) -> pd.DataFrame:
    readings = _readings_for(context, lake)
    gaps = telemetry_gaps(readings, expected_intervals(load_devices()))
    longest = float(gaps["gap_s"].max()) if len(gaps) else 0.0
    context.add_output_metadata({"gaps": len(gaps), "longest_gap_s": longest})
    return gaps


def current_health(lake: DeltaLake, *, as_of: datetime) -> pd.DataFrame | None:
    """Health of every device from the last days of readings; ``None`` without a table."""
    today = as_of.astimezone(UTC).date()
    days = [today - timedelta(days=n) for n in range(HEALTH_LOOKBACK_DAYS + 1)]
    readings = read_days(
        lake, SENSOR_READINGS.path, days, columns=["device_id", "ts", "value", "quality"]
    )
    if readings is None:
        return None
    return device_health(readings, expected_intervals(load_devices()), as_of=as_of)


@dg.asset(
    key=DEVICE_HEALTH,
    deps=[SENSOR_READINGS],
    group_name="telemetry",
    kinds={"delta", "pandas"},
    description="Last seen, readings today, bad-quality share and online/offline per device.",
    metadata={"dagster/column_schema": _schema(HEALTH_COLUMNS)},
)
def device_health_asset(context: dg.AssetExecutionContext, lake: DeltaLake) -> pd.DataFrame:
    as_of = datetime.now(UTC)
    health = current_health(lake, as_of=as_of)
    if health is None:
        context.log.info("telemetry/sensor_readings does not exist yet: no readings to judge")
        health = device_health(
            pd.DataFrame(columns=["device_id", "ts", "value", "quality"]),
            expected_intervals(load_devices()),
            as_of=as_of,
        )
    offline = health.loc[health["status"] == "offline", "device_id"].tolist()
    context.add_output_metadata({"devices": len(health), "offline": ", ".join(offline) or "-"})
    return health


@dg.asset(
    key=CONDITION_TRIGGERS,
    deps=[ROLLUPS_1M],
    partitions_def=telemetry_daily_partitions,
    group_name="telemetry",
    kinds={"delta", "pandas"},
    description="Condition- and usage-based maintenance schedules the day's sensor data makes due.",
    metadata={PARTITION_BY_KEY: ["date"], "dagster/column_schema": _schema(TRIGGER_COLUMNS)},
)
def condition_triggers_asset(context: dg.AssetExecutionContext, lake: DeltaLake) -> pd.DataFrame:
    if not lake.exists(SILVER_MAINTENANCE_SCHEDULES):
        context.log.info(
            "silver/maintenance_schedules does not exist yet: no schedules to evaluate, "
            "writing an empty partition"
        )
        return empty_triggers()
    schedules = lake.read(SILVER_MAINTENANCE_SCHEDULES)
    day = date.fromisoformat(context.partition_key)
    rollups = read_days(lake, ROLLUPS_1M.path, [day])
    if rollups is None:
        rollups = rollup(pd.DataFrame(columns=READING_COLUMNS), "1min")
    triggers = condition_triggers(
        schedules,
        rollups,
        registry_sensors(load_devices()),
        as_of=datetime.now(UTC),
        date=context.partition_key,
    )
    due = triggers.loc[triggers["due"], "schedule_id"].tolist()
    context.add_output_metadata({"schedules": len(triggers), "due": ", ".join(due) or "-"})
    return triggers
