"""The code location loads, validates, and exposes exactly the expected definitions.

The snapshot makes accidental changes to asset keys, checks, jobs, schedules and sensors show
up in review. After an intended change: ``UPDATE_SNAPSHOTS=1 make test``.
"""

import json
import os
from pathlib import Path

import dagster as dg
import pytest
from dagster.components.testing.utils import component_defs

from integration_platform.components import FileExtractComponent
from integration_platform.definitions import defs

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"


def describe(definitions: dg.Definitions) -> dict[str, list[str]]:
    repository = definitions.get_repository_def()
    asset_graph = repository.asset_graph
    return {
        "assets": sorted(key.to_user_string() for key in asset_graph.get_all_asset_keys()),
        "asset_checks": sorted(
            f"{key.asset_key.to_user_string()}:{key.name}" for key in asset_graph.asset_check_keys
        ),
        "jobs": sorted(
            job.name for job in repository.get_all_jobs() if not job.name.startswith("__")
        ),
        "schedules": sorted(schedule.name for schedule in repository.schedule_defs),
        "sensors": sorted(sensor.name for sensor in repository.sensor_defs),
        "resources": sorted(definitions.resources or {}),
    }


def test_definitions_validate() -> None:
    dg.Definitions.validate_loadable(defs())


def test_definitions_match_the_snapshot() -> None:
    current = describe(defs())
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=2) + "\n", encoding="utf-8")
    assert current == json.loads(SNAPSHOT.read_text(encoding="utf-8"))


def test_silver_assets_publish_schema_lineage_and_mapping() -> None:
    graph = defs().get_repository_def().asset_graph
    node = graph.get(dg.AssetKey(["silver", "work_orders"]))
    metadata = node.metadata
    schema = metadata["dagster/column_schema"]
    assert {column.name for column in schema.columns} >= {"work_order_id", "status", "due_at"}
    assert all(column.description for column in schema.columns)
    lineage = metadata["dagster/column_lineage"]
    due = lineage.deps_by_column["due_at"]
    assert dg.AssetKey(["bronze", "sample_cmms", "work_orders"]) in {d.asset_key for d in due}
    assert {dep.column_name for dep in due} >= {"targcompdate", "siteid", "timezone"}
    assert dg.AssetKey(["bronze", "sample_cmms", "sites"]) in {d.asset_key for d in due}
    assert "| due_at | siteid, targcompdate, lookup site_timezone |" in metadata["mapping"].value


def test_file_extract_component_names_the_table_and_path_of_a_missing_file(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "exports" / "orders.csv"
    component = FileExtractComponent.model_validate(
        {"system": "plant_x", "tables": [{"name": "orders", "path": str(missing)}]}
    )
    with pytest.raises(FileNotFoundError, match=r"table 'orders' of system 'plant_x'.*orders.csv"):
        component_defs(component=component)


def test_file_extract_component_builds_one_bronze_asset_per_table(tmp_path: Path) -> None:
    export = tmp_path / "orders.csv"
    export.write_text("id\n1\n", encoding="utf-8")
    component = FileExtractComponent.model_validate(
        {"system": "plant_x", "tables": [{"name": "orders", "path": str(export)}]}
    )
    built = component_defs(component=component)
    keys = {key for asset in built.assets or [] for key in asset.keys}
    assert keys == {dg.AssetKey(["bronze", "plant_x", "orders"])}
