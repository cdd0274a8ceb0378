"""Telemetry jobs: daily rollups, device health, and the table's nightly maintenance."""

from datetime import UTC, datetime, timedelta

import dagster as dg
from pydantic import Field

from integration_platform.defs.telemetry.assets import (
    CONDITION_TRIGGERS,
    DEVICE_HEALTH,
    ROLLUPS_1H,
    ROLLUPS_1M,
    SENSOR_READINGS,
    TELEMETRY_GAPS,
)
from integration_platform.lake import DeltaLake

TELEMETRY_ROLLUPS_JOB = "telemetry_rollups_job"
TELEMETRY_HEALTH_JOB = "telemetry_health_job"
TELEMETRY_MAINTENANCE_JOB = "telemetry_maintenance_job"
# One writer per lake table (deploy/dagster.yaml): compaction rewrites the readings' files,
# so it never runs beside another run that names the same table.
LAKE_WRITER_TAG = "integration_platform/lake_writer"
SENSOR_READINGS_WRITER = "/".join(SENSOR_READINGS.path)
ROLLUPS_WRITER = "gold/sensor_rollups"

telemetry_rollups_job = dg.define_asset_job(
    TELEMETRY_ROLLUPS_JOB,
    selection=dg.AssetSelection.assets(ROLLUPS_1M, ROLLUPS_1H, TELEMETRY_GAPS, CONDITION_TRIGGERS),
    executor_def=dg.in_process_executor,
    # Day partitions of the same gold tables are overwritten one run at a time.
    tags={LAKE_WRITER_TAG: ROLLUPS_WRITER},
    description="Rollups, gaps and condition triggers for one UTC day of readings.",
)

telemetry_health_job = dg.define_asset_job(
    TELEMETRY_HEALTH_JOB,
    selection=dg.AssetSelection.assets(DEVICE_HEALTH)
    | dg.AssetSelection.checks_for_assets(SENSOR_READINGS),
    executor_def=dg.in_process_executor,
    description="Device health table and the per-device freshness check.",
)


class CompactionConfig(dg.Config):
    """Which partitions are compacted and how long removed files are kept."""

    days: int = Field(default=3, ge=1, le=60, description="Compact today and the days before.")
    retention_hours: int = Field(
        default=168, ge=168, description="Vacuum keeps removed files this long (time travel)."
    )
    target_size_mb: int = Field(default=256, ge=8, description="Target size of compacted files.")


def _files(table: object) -> int:
    return table.get_add_actions(flatten=True).num_rows  # type: ignore[attr-defined]


@dg.op(
    description="Compact recent date partitions, checkpoint the log, vacuum expired files.",
    # Nothing: the summary is run metadata, not data for the lake's IO manager.
    out=dg.Out(dg.Nothing),
)
def compact_sensor_readings(
    context: dg.OpExecutionContext, config: CompactionConfig, lake: DeltaLake
) -> dg.Output:
    """Micro-batches leave many small files and a long log; both slow every later commit."""
    from deltalake import DeltaTable

    parts = SENSOR_READINGS.path
    if not lake.exists(parts):
        context.log.info("telemetry/sensor_readings does not exist yet: nothing to compact")
        return dg.Output(None, metadata={"skipped": "no table"})
    uri = lake.table_uri(parts)
    table = DeltaTable(uri, storage_options=lake.storage_options)
    before = _files(table)
    today = datetime.now(UTC).date()
    days = [(today - timedelta(days=n)).isoformat() for n in range(config.days)]
    metrics = table.optimize.compact(
        partition_filters=[("date", "in", days)],
        target_size=config.target_size_mb * 1024 * 1024,
    )
    table.create_checkpoint()
    removed = table.vacuum(
        retention_hours=config.retention_hours,
        enforce_retention_duration=True,
        dry_run=False,
    )
    table = DeltaTable(uri, storage_options=lake.storage_options)
    after = _files(table)
    summary = {
        "files_before": before,
        "files_after": after,
        "files_added": int(metrics.get("numFilesAdded", 0)),
        "files_removed": int(metrics.get("numFilesRemoved", 0)),
        "files_vacuumed": len(removed),
        "version": table.version(),
    }
    context.log_event(
        dg.AssetObservation(asset_key=SENSOR_READINGS, metadata={"delta/files": after})
    )
    return dg.Output(None, metadata={**summary, "days": ", ".join(days)})


@dg.job(
    name=TELEMETRY_MAINTENANCE_JOB,
    tags={LAKE_WRITER_TAG: SENSOR_READINGS_WRITER},
    executor_def=dg.in_process_executor,
    description="Nightly compaction, checkpoint and vacuum of telemetry/sensor_readings.",
)
def telemetry_maintenance_job() -> None:
    compact_sensor_readings()
