"""The telemetry definitions against a temporary lake: rollups, sensor, compaction, health."""

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from deltalake import DeltaTable, write_deltalake

from integration_platform.defs.telemetry.assets import (
    CONDITION_TRIGGERS,
    DEVICE_HEALTH,
    ROLLUPS_1H,
    ROLLUPS_1M,
    SENSOR_READINGS,
    TELEMETRY_GAPS,
    condition_triggers_asset,
    device_health_asset,
    sensor_readings,
    sensor_rollups_1h,
    sensor_rollups_1m,
    telemetry_gaps_asset,
)
from integration_platform.defs.telemetry.checks import device_freshness
from integration_platform.defs.telemetry.jobs import (
    LAKE_WRITER_TAG,
    telemetry_health_job,
    telemetry_maintenance_job,
)
from integration_platform.defs.telemetry.sensors import sensor_readings_new_data_sensor
from integration_platform.lake import DeltaIOManager, DeltaLake
from integration_platform.streams.writer import to_arrow_readings
from integration_platform_tests.test_telemetry import readings, sample_readings, write_registry

DAY = "2026-11-20"


@pytest.fixture
def lake(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> DeltaLake:
    monkeypatch.setenv("INTEGRATION_PLATFORM_DEVICES", str(write_registry(data_dir)))
    return DeltaLake()


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def resources(lake: DeltaLake) -> dict[str, object]:
    return {"lake": lake, "io_manager": DeltaIOManager(lake=lake)}


def append(lake: DeltaLake, frame: pd.DataFrame) -> int:
    """One collector-style commit of readings; returns the new table version."""
    uri = lake.table_uri(SENSOR_READINGS.path)
    write_deltalake(uri, to_arrow_readings(frame), mode="append", partition_by=["date"])
    return DeltaTable(uri).version()


def one_reading(day: str, value: float = 1.0, device: str = "pump-1") -> pd.DataFrame:
    return readings([(device, "vib", "vibration", f"{day}T10:00:00Z", value, "good")])


def test_rollups_and_gaps_for_one_partition_replace_only_that_day(
    lake: DeltaLake, instance: dg.DagsterInstance
) -> None:
    append(lake, sample_readings())
    append(lake, one_reading("2026-11-21", 7.0))
    assets = [sensor_rollups_1m, sensor_rollups_1h, telemetry_gaps_asset]
    for key in (DAY, "2026-11-21", DAY):  # the repeat must overwrite, not append
        result = dg.materialize(
            assets, partition_key=key, resources=resources(lake), instance=instance
        )
        assert result.success
    minute = lake.read(ROLLUPS_1M.path)
    assert len(minute) == 6  # 5 windows on DAY + 1 on the next day
    vib = minute[(minute["sensor_id"] == "vib") & (minute["date"].astype(str) == DAY)]
    assert vib["count"].tolist() == [2, 1] and vib["bad_count"].tolist() == [2, 0]
    hour = lake.read(ROLLUPS_1H.path)
    assert sorted(hour["count"].tolist()) == [1, 1, 3, 3]
    assert lake.exists(TELEMETRY_GAPS.path)
    files = DeltaTable(lake.table_uri(ROLLUPS_1M.path)).get_add_actions(flatten=True)
    assert set(map(str, files.column("partition.date").to_pylist())) == {DAY, "2026-11-21"}


def test_rollups_of_a_day_without_table_are_empty(
    lake: DeltaLake, instance: dg.DagsterInstance
) -> None:
    result = dg.materialize(
        [sensor_rollups_1m], partition_key=DAY, resources=resources(lake), instance=instance
    )
    assert result.success
    assert lake.read(ROLLUPS_1M.path).empty


def test_observation_reads_version_and_rows_from_the_log(
    lake: DeltaLake, instance: dg.DagsterInstance
) -> None:
    append(lake, sample_readings())
    append(lake, one_reading("2026-11-21"))
    observe_job = dg.define_asset_job("observe_sensor_readings", selection=[SENSOR_READINGS])
    definitions = dg.Definitions(
        assets=[sensor_readings], jobs=[observe_job], resources={"lake": lake}
    )
    result = definitions.resolve_job_def(observe_job.name).execute_in_process(instance=instance)
    (observation,) = result.asset_observations_for_node(sensor_readings.op.name)
    assert observation.metadata["delta/version"].value == 1
    assert observation.metadata["dagster/row_count"].value == 10
    assert observation.metadata["delta/files"].value == 2


def tick(lake: DeltaLake, instance: dg.DagsterInstance, cursor: str | None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"lake": lake})
    return sensor_readings_new_data_sensor(context)


def test_sensor_asks_for_the_days_touched_since_its_cursor(
    lake: DeltaLake, instance: dg.DagsterInstance
) -> None:
    assert isinstance(tick(lake, instance, None), dg.SkipReason)  # no table yet

    append(lake, one_reading(DAY))  # version 0
    first = tick(lake, instance, None)
    assert [r.partition_key for r in first.run_requests] == [DAY]
    assert first.cursor == "0"

    append(lake, one_reading("2026-11-21"))  # version 1
    append(lake, one_reading(DAY, 2.0))  # version 2
    second = tick(lake, instance, "0")
    assert [r.partition_key for r in second.run_requests] == ["2026-11-21", DAY]
    assert [r.run_key for r in second.run_requests] == [
        "sensor_readings@2:2026-11-21",
        f"sensor_readings@2:{DAY}",
    ]
    assert second.cursor == "2"

    skipped = tick(lake, instance, "2")
    assert isinstance(skipped, dg.SkipReason)

    DeltaTable(lake.table_uri(SENSOR_READINGS.path)).optimize.compact()  # version 3
    after_compaction = tick(lake, instance, "2")
    assert after_compaction.run_requests == [] and after_compaction.cursor == "3"


def test_sensor_ignores_days_outside_the_partitions(
    lake: DeltaLake, instance: dg.DagsterInstance
) -> None:
    append(lake, one_reading("2019-01-01"))
    result = tick(lake, instance, None)
    assert result.run_requests == [] and result.cursor == "0"


def compaction_metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    (output,) = [e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"]
    return {key: value.value for key, value in output.step_output_data.metadata.items()}


def test_compaction_reduces_files_and_keeps_rows(
    lake: DeltaLake, instance: dg.DagsterInstance
) -> None:
    today = datetime.now(UTC).date()
    days = [today.isoformat(), (today - timedelta(days=1)).isoformat()]
    for n in range(6):
        append(lake, one_reading(days[n % 2], float(n)))
    uri = lake.table_uri(SENSOR_READINGS.path)
    assert DeltaTable(uri).get_add_actions().num_rows == 6
    assert telemetry_maintenance_job.tags[LAKE_WRITER_TAG] == "telemetry/sensor_readings"

    result = telemetry_maintenance_job.execute_in_process(
        resources=resources(lake), instance=instance
    )
    assert result.success
    summary = compaction_metadata(result)
    assert (summary["files_before"], summary["files_after"], summary["files_removed"]) == (6, 2, 6)
    table = DeltaTable(uri)
    assert table.to_pyarrow_table().num_rows == 6
    assert sorted(table.to_pyarrow_table().column("value").to_pylist()) == [0, 1, 2, 3, 4, 5]
    assert any(p.name.endswith(".checkpoint.parquet") for p in Path(uri, "_delta_log").iterdir())


def test_compaction_without_table_is_a_no_op(lake: DeltaLake, instance: dg.DagsterInstance) -> None:
    result = telemetry_maintenance_job.execute_in_process(
        resources=resources(lake), instance=instance
    )
    assert result.success and compaction_metadata(result) == {"skipped": "no table"}


def health_defs(lake: DeltaLake) -> dg.Definitions:
    return dg.Definitions(
        assets=[sensor_readings, device_health_asset],
        asset_checks=[device_freshness],
        jobs=[telemetry_health_job],
        resources=resources(lake),
    )


def test_freshness_warns_but_passes_before_any_data(
    lake: DeltaLake, instance: dg.DagsterInstance
) -> None:
    job = health_defs(lake).resolve_job_def(telemetry_health_job.name)
    result = job.execute_in_process(instance=instance)
    assert result.success
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["status"].value == "no data yet"
    health = lake.read(DEVICE_HEALTH.path)
    assert set(health["status"]) == {"offline"} and len(health) == 3


def test_freshness_fails_for_silent_devices_and_health_shows_them(
    lake: DeltaLake, instance: dg.DagsterInstance
) -> None:
    now = datetime.now(UTC)
    append(
        lake,
        readings(
            [
                ("pump-1", "vib", "vibration", now - timedelta(seconds=30), 3.0, "good"),
                ("pump-1", "vib", "vibration", now - timedelta(seconds=20), None, "bad"),
                ("plc-1", "pressure", "pressure", now - timedelta(minutes=5), 4.0, "good"),
            ]
        ),
    )
    job = health_defs(lake).resolve_job_def(telemetry_health_job.name)
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed
    assert evaluation.description == "silent: ghost-1, plc-1"
    assert evaluation.metadata["offline"].value == 2
    health = lake.read(DEVICE_HEALTH.path).set_index("device_id")
    assert health.loc["pump-1", "status"] == "online"
    assert health.loc["plc-1", "status"] == "offline"
    if now.date() == (now - timedelta(seconds=30)).date():
        assert health.loc["pump-1", "readings_today"] == 2
        assert health.loc["pump-1", "bad_share_today"] == 0.5


def test_condition_triggers_from_the_rollups_and_silver_schedules(
    lake: DeltaLake, instance: dg.DagsterInstance
) -> None:
    append(
        lake,
        readings(
            [("pump-1", "vib", "vibration", f"{DAY}T10:{m:02d}:30Z", 6.0, "good") for m in range(3)]
        ),
    )
    assets = [sensor_rollups_1m, condition_triggers_asset]
    result = dg.materialize(assets, partition_key=DAY, resources=resources(lake), instance=instance)
    assert result.success
    assert lake.read(CONDITION_TRIGGERS.path).empty  # no silver/maintenance_schedules yet

    schedules = pd.DataFrame(
        {
            "schedule_id": ["S1"],
            "asset_id": ["PUMP-1"],
            "status": ["active"],
            "trigger_type": ["condition"],
            "condition_metric": ["vibration"],
            "condition_operator": ["gt"],
            "condition_threshold": [4.5],
            "meter_name": [None],
            "next_due_meter": [None],
        }
    )
    lake.write(schedules, ["silver", "maintenance_schedules"])
    result = dg.materialize(
        [condition_triggers_asset],
        partition_key=DAY,
        resources=resources(lake),
        instance=instance,
        selection=[CONDITION_TRIGGERS],
    )
    assert result.success
    triggers = lake.read(CONDITION_TRIGGERS.path)
    assert triggers[["schedule_id", "due", "breach_s"]].values.tolist() == [["S1", True, 180.0]]
    assert triggers.loc[0, "date"] == date(2026, 11, 20)
