"""Refresh the day rollups when the collector commits new readings.

The cursor is the last Delta version seen. A tick reads only the table version when nothing
changed; otherwise it compares the file lists of the two versions (Delta log only, no data)
to find the ``date`` partitions that received files, and asks for one run per day. Commits
that only rewrite files (compaction, vacuum) start nothing.
"""

from collections.abc import Sequence

import dagster as dg

from integration_platform.defs.telemetry.assets import SENSOR_READINGS
from integration_platform.defs.telemetry.jobs import telemetry_rollups_job
from integration_platform.defs.telemetry.partitions import telemetry_daily_partitions
from integration_platform.lake import DeltaLake

# Operations that change no rows: their new files are rewrites of existing data.
NO_DATA_OPERATIONS = frozenset({"OPTIMIZE", "VACUUM START", "VACUUM END"})
# A tick asks for at most this many days (newest first); a larger late backfill of readings
# is logged and left to a Dagster backfill.
MAX_PARTITIONS_PER_TICK = 14


def _dates(table: object) -> dict[str, str]:
    """Path -> ``date`` partition value of each live file."""
    actions = table.get_add_actions(flatten=True)  # type: ignore[attr-defined]
    paths = actions.column("path").to_pylist()
    days = actions.column("partition.date").to_pylist()
    return {path: str(day) for path, day in zip(paths, days, strict=True) if day is not None}


def touched_dates(
    uri: str,
    *,
    since: int | None,
    storage_options: dict[str, str] | None = None,
) -> list[str]:
    """``date`` partitions with files added after version ``since`` (all when ``None``)."""
    from deltalake import DeltaTable

    table = DeltaTable(uri, storage_options=storage_options)
    version = table.version()
    if since is not None:
        commits = table.history(limit=max(version - since, 1))
        ops = {c.get("operation") for c in commits if c.get("version", version) > since}
        if ops and ops <= NO_DATA_OPERATIONS:
            return []
    current = _dates(table)
    previous: dict[str, str] = {}
    if since is not None and since >= 0:
        try:
            previous = _dates(DeltaTable(uri, version=since, storage_options=storage_options))
        except Exception:  # that version's log is gone (log retention): treat all as new
            previous = {}
    return sorted({day for path, day in current.items() if path not in previous}, reverse=True)


def run_requests(version: int, dates: Sequence[str]) -> list[dg.RunRequest]:
    """One run per day, keyed by version and day so a repeated tick starts nothing twice."""
    return [
        dg.RunRequest(run_key=f"sensor_readings@{version}:{day}", partition_key=day)
        for day in dates
    ]


@dg.sensor(
    name="sensor_readings_new_data_sensor",
    job=telemetry_rollups_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Runs the day rollups for the dates touched by new commits to the readings.",
)
def sensor_readings_new_data_sensor(
    context: dg.SensorEvaluationContext, lake: DeltaLake
) -> dg.SensorResult | dg.SkipReason:
    from deltalake import DeltaTable

    parts = SENSOR_READINGS.path
    if not lake.exists(parts):
        return dg.SkipReason("telemetry/sensor_readings does not exist yet")
    uri = lake.table_uri(parts)
    version = DeltaTable(uri, storage_options=lake.storage_options).version()
    since = int(context.cursor) if context.cursor else None
    if since is not None and version <= since:
        return dg.SkipReason(f"no new commits (version {version})")
    dates = [
        day
        for day in touched_dates(uri, since=since, storage_options=lake.storage_options)
        if telemetry_daily_partitions.has_partition_key(day)
    ]
    if len(dates) > MAX_PARTITIONS_PER_TICK:
        context.log.warning(
            "%d days received readings; refreshing the newest %d, backfill %s..%s by hand",
            len(dates),
            MAX_PARTITIONS_PER_TICK,
            dates[-1],
            dates[MAX_PARTITIONS_PER_TICK],
        )
        dates = dates[:MAX_PARTITIONS_PER_TICK]
    return dg.SensorResult(run_requests=run_requests(version, dates), cursor=str(version))
