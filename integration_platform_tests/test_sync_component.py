"""SyncComponent: a YAML declaration becomes a job, a schedule, a webhook sensor and a
conflicts asset; a declaration naming something unknown fails at load with file, line and
field. Nothing here talks to a system: the job's runs are in test_sync_component_job.py."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster.components.testing import create_defs_folder_sandbox

from integration_platform.components import SyncComponent
from integration_platform.components.sync_resolve import SYNC_ADAPTERS, SYNC_TAG
from integration_platform.lake import DeltaLake
from integration_platform.state import StateDatabase

CONNECTIONS = [
    {
        "name": "maximo",
        "type": "maximo",
        "base_url_env": "MAXIMO_BASE_URL",
        "auth": {"api_key": "MAXIMO_API_KEY"},
        "options": {"site_ids": ["BEDFORD"], "conditional_updates": True},
        "entities": [],
    },
    {
        "name": "plant_sql",
        "type": "sql",
        "base_url_env": "PLANT_DB_URL",
        "options": {"system_name": "plant_db"},
        "entities": [],
    },
]


def sync_declaration(**changes: Any) -> dict[str, Any]:
    sync: dict[str, Any] = {
        "name": "wo_sync",
        "entity": "work_order",
        "left": {
            "system": "maximo",
            "key_field": ["siteid", "wonum"],
            "version_field": "_rowstamp",
            "modified_field": "changedate",
            "fields": {
                "external_id": "wonum",
                "title": "description",
                "status": {
                    "field": "status",
                    "values": {"WAPPR": "scheduled", "COMP": "completed"},
                },
                "priority": {"field": "wopriority", "values": {1: "critical", 2: "high"}},
            },
            "options": {"create_defaults": {"siteid": "BEDFORD"}},
        },
        "right": {
            "system": "plant_db",
            "connection": "plant_sql",
            "key_field": "id",
            "modified_field": "updated_at",
            "fields": {
                "external_id": "wonum",
                "title": "title",
                "status": "status",
                "priority": "priority",
            },
            "options": {"table": "plant_work_orders"},
        },
        "fields": ["title", "status", "priority"],
        "match_field": "external_id",
        "policies": {"status": {"owner": "maximo"}, "priority": "manual"},
        "schedule": "*/15 * * * *",
        "triggers": [{"system": "maximo"}],
    }
    sync.update(changes)
    return sync


def write(path: Path, document: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def write_declaration(tmp_path: Path, *syncs: dict[str, Any]) -> Path:
    write(
        tmp_path / "syncs" / "connections.yaml",
        {
            "type": "integration_platform.components.ConnectionComponent",
            "attributes": {"connections": CONNECTIONS},
        },
    )
    return write(
        tmp_path / "syncs" / "defs.yaml",
        {
            "type": "integration_platform.components.SyncComponent",
            "attributes": {
                "connections_file": "connections.yaml",
                "syncs": list(syncs) or [sync_declaration()],
            },
        },
    )


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAXIMO_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("MAXIMO_API_KEY", "key")
    monkeypatch.setenv("PLANT_DB_URL", "sqlite:///plant.db")


def with_shared(defs: dg.Definitions) -> dg.Definitions:
    shared = dg.Definitions(resources={"lake": DeltaLake(), "state": StateDatabase()})
    return dg.Definitions.merge(defs, shared)


def test_a_declaration_builds_job_schedule_sensor_and_conflicts_asset(tmp_path: Path) -> None:
    component = SyncComponent.from_yaml(write_declaration(tmp_path), defs_root=None)
    defs = with_shared(component.build_defs(None))
    dg.Definitions.validate_loadable(defs)

    job = defs.resolve_job_def("sync_wo_sync_job")
    assert job.tags[SYNC_TAG] == "wo_sync"  # the run queue serialises runs of one sync
    (node,) = job.nodes
    assert node.definition.required_resource_keys == {
        "connection_maximo",
        "connection_plant_sql",
        "state",
        "lake",
    }
    schedule = defs.resolve_schedule_def("sync_wo_sync_job_schedule")
    assert schedule.cron_schedule == "*/15 * * * *" and schedule.job_name == job.name
    sensor = defs.resolve_sensor_def("sync_wo_sync_webhook_sensor")
    assert sensor.job_name == job.name
    assert defs.resolve_assets_def(dg.AssetKey(["sync", "wo_sync", "conflicts"])).group_names_by_key
    # Connections from a file outside defs/ are provided by the sync component itself.
    assert set(component.resources) == {"connection_maximo", "connection_plant_sql"}

    spec = component.sync("wo_sync").spec
    assert spec.policy("status").describe() == "source_priority(maximo)"
    assert spec.reads.incremental is False  # full reads unless the declaration asks
    assert spec.left.field_map("priority").read_table() == {"1": "critical", "2": "high"}


def test_incremental_reads_are_declared_under_reads(tmp_path: Path) -> None:
    reads = {"incremental": True, "overlap_seconds": 120, "full_every_runs": None}
    path = write_declaration(tmp_path, sync_declaration(reads=reads))
    spec = SyncComponent.from_yaml(path, defs_root=None).sync("wo_sync").spec
    assert (spec.reads.incremental, spec.reads.overlap_seconds) == (True, 120)
    assert (spec.reads.full_every_runs, spec.reads.full_every_hours) == (None, 24.0)
    right = sync_declaration()["right"] | {"modified_field": None}
    path = write_declaration(tmp_path, sync_declaration(reads=reads, right=right))
    with pytest.raises(ValueError, match=r"right\.modified_field: incremental reads need"):
        SyncComponent.from_yaml(path, defs_root=None)


def test_without_schedule_or_triggers_only_the_job_and_asset_are_built(tmp_path: Path) -> None:
    path = write_declaration(tmp_path, sync_declaration(schedule=None, triggers=[]))
    defs = SyncComponent.from_yaml(path, defs_root=None).build_defs(None)
    assert [job.name for job in defs.jobs or []] == ["sync_wo_sync_job"]
    assert not defs.schedules and not defs.sensors


def test_two_sync_files_naming_one_connections_file_share_its_resources(tmp_path: Path) -> None:
    first = SyncComponent.from_yaml(write_declaration(tmp_path), defs_root=None)
    other = write(
        tmp_path / "more" / "defs.yaml",
        {
            "type": "integration_platform.components.SyncComponent",
            "attributes": {
                "connections_file": "../syncs/connections.yaml",
                "syncs": [sync_declaration(name="wo_sync_2")],
            },
        },
    )
    second = SyncComponent.from_yaml(other, defs_root=None)
    # Dagster refuses two different resource objects under one key when definitions merge.
    merged = dg.Definitions.merge(first.build_defs(None), second.build_defs(None))
    assert {job.name for job in merged.jobs or []} == {"sync_wo_sync_job", "sync_wo_sync_2_job"}
    assert first.resources["connection_maximo"] is second.resources["connection_maximo"]


def test_the_yaml_type_loads_in_a_code_location_with_its_connections_declared_there() -> None:
    """`type: integration_platform.components.SyncComponent` in a defs folder; the connections
    come from a ConnectionComponent elsewhere in the same defs folder (no connections_file)."""
    with create_defs_folder_sandbox() as sandbox:
        write(
            sandbox.defs_folder_path / "plant" / "defs.yaml",
            {
                "type": "integration_platform.components.ConnectionComponent",
                "attributes": {"connections": CONNECTIONS},
            },
        )
        write(
            sandbox.defs_folder_path / "syncs" / "defs.yaml",
            {
                "type": "integration_platform.components.SyncComponent",
                "attributes": {"syncs": [sync_declaration()]},
            },
        )
        with sandbox.build_all_defs() as defs:
            resolved = with_shared(defs)
            dg.Definitions.validate_loadable(resolved)
            assert resolved.resolve_job_def("sync_wo_sync_job")
            # The ConnectionComponent provides the resources; the sync only requires them.
            assert {"connection_maximo", "connection_plant_sql"} <= set(resolved.resources or {})


def _line(path: Path, text: str) -> str:
    lines = path.read_text().splitlines()
    return f"line {next(n for n, line in enumerate(lines, 1) if text in line)}"


@pytest.mark.parametrize(
    ("changes", "marker", "field", "says"),
    [
        ({"entity": "work_ordr"}, "entity: work_ordr", "syncs[0].entity", "unknown entity"),
        (
            {"fields": ["title", "status", "priorty"]},
            "- priorty",
            "syncs[0].fields[2]",
            "did you mean priority",
        ),
        (
            {"right": {**sync_declaration()["right"], "connection": "plant_sq"}},
            "connection: plant_sq",
            "syncs[0].right.connection",
            "unknown connection 'plant_sq'; did you mean 'plant_sql'?",
        ),
        (
            {"policies": {"status": {"owner": "sap"}}},
            "owner: sap",
            "syncs[0].policies.status.owner",
            "needs the owner system, one of maximo, plant_db",
        ),
        (
            {"triggers": [{"system": "sap"}]},
            "system: sap",
            "syncs[0].triggers[0].system",
            "not one of the sync's systems",
        ),
        (
            {"schedule": "every hour"},
            "schedule: every hour",
            "syncs[0].schedule",
            "not a cron schedule",
        ),
        (
            {"policies": {"priority": "newest"}},
            "priority: newest",
            "syncs[0].policies.priority",
            "did you mean 'newest_non_null'?",
        ),
        (
            {"reads": {"incremental": True, "full_every_runs": 0}},
            "full_every_runs: 0",
            "syncs[0].reads.full_every_runs",
            "give 1 or more runs",
        ),
    ],
    ids=[
        "entity",
        "field",
        "connection",
        "owner-system",
        "trigger-system",
        "cron",
        "strategy",
        "reads",
    ],
)
def test_an_unknown_name_fails_at_load_with_file_line_and_field(
    tmp_path: Path, changes: dict[str, Any], marker: str, field: str, says: str
) -> None:
    path = write_declaration(tmp_path, sync_declaration(**changes))
    with pytest.raises(ValueError) as error:
        SyncComponent.from_yaml(path, defs_root=None)
    message = str(error.value)
    problem = next(line for line in message.splitlines() if field in line)
    assert f"{path}, {_line(path, marker)}: {field}: " in problem
    assert says in problem


def test_an_unknown_side_field_names_its_line_and_every_problem_is_listed(tmp_path: Path) -> None:
    left = sync_declaration()["left"]
    left["fields"]["titel"] = left["fields"].pop("title")
    path = write_declaration(tmp_path, sync_declaration(left=left, direction="both"))
    with pytest.raises(ValueError) as error:
        SyncComponent.from_yaml(path, defs_root=None)
    message = str(error.value)
    assert f"{_line(path, 'titel:')}: syncs[0].left.fields.titel: 'titel' is not a field" in message
    assert "syncs[0].left.fields.title: synced field 'title' has no maximo field" in message
    assert "syncs[0].direction: unknown value 'both'" in message


def test_a_load_error_through_dagster_names_the_file_line_and_field() -> None:
    with create_defs_folder_sandbox() as sandbox:
        path = write(
            sandbox.defs_folder_path / "syncs" / "defs.yaml",
            {
                "type": "integration_platform.components.SyncComponent",
                "attributes": {"syncs": [sync_declaration()]},
            },
        )
        with pytest.raises(Exception) as error, sandbox.build_all_defs():
            pass
        where = f"{path}, {_line(path, 'system: maximo')}"
    # Dagster shows the component tree and, below it, the cause: our message. No
    # ConnectionComponent in this code location, so both connections are unknown.
    causes = []
    cause: BaseException | None = error.value
    while cause is not None:
        causes.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    assert any(f"{where}: syncs[0].left.system: unknown connection 'maximo'" in c for c in causes)


def test_every_adapter_option_is_a_parameter_of_its_adapter() -> None:
    for name, adapter in SYNC_ADAPTERS.items():
        for entity in adapter.entities or ("work_order",):
            loaded = adapter.load(entity)
            assert set(adapter.options) <= set(inspect.signature(loaded).parameters), name
            oslc = getattr(loaded, "oslc", None)  # Maximo adapters declare their entity
            assert oslc is None or oslc.entity == entity, (name, entity)
        assert set(adapter.required) <= set(adapter.options), name


def asset_declaration(**changes: Any) -> dict[str, Any]:
    sync: dict[str, Any] = {
        "name": "asset_sync",
        "entity": "asset",
        "left": {
            "system": "maximo",
            "key_field": ["siteid", "assetnum"],
            "version_field": "_rowstamp",
            "modified_field": "changedate",
            "fields": {
                "external_id": "assetnum",
                "name": "description",
                "criticality": {"field": "priority", "values": {1: "critical", 2: "high"}},
            },
            "options": {"create_defaults": {"siteid": "BEDFORD"}},
        },
        "right": {
            "system": "plant_db",
            "connection": "plant_sql",
            "key_field": "id",
            "fields": {"external_id": "assetnum", "name": "name", "criticality": "criticality"},
            "options": {"table": "plant_assets"},
        },
        "fields": ["name", "criticality"],
        "match_field": "external_id",
        "policies": {"criticality": {"owner": "plant_db"}},
    }
    sync.update(changes)
    return sync


def pm_declaration() -> dict[str, Any]:
    fields = {"external_id": "pmnum", "title": "description", "interval_value": "frequency"}
    return asset_declaration(
        name="pm_sync",
        entity="maintenance_schedule",
        left=asset_declaration()["left"] | {"key_field": ["siteid", "pmnum"], "fields": fields},
        right=asset_declaration()["right"]
        | {"fields": {"external_id": "pmnum", "title": "title", "interval_value": "every"}},
        fields=["title", "interval_value"],
        policies={"interval_value": "min"},
    )


def test_asset_and_pm_syncs_with_a_maximo_side_build_their_maximo_adapters(
    tmp_path: Path,
) -> None:
    from integration_platform.sync.adapters.maximo import MaximoAssetAdapter, MaximoPmAdapter
    from integration_platform.sync.adapters.sql import SqlTableAdapter

    path = write_declaration(tmp_path, asset_declaration(), pm_declaration())
    component = SyncComponent.from_yaml(path, defs_root=None)
    dg.Definitions.validate_loadable(with_shared(component.build_defs(None)))
    built = {}
    for name in ("asset_sync", "pm_sync"):
        sync = component.sync(name)
        left = sync.left.build_adapter(component.resources[sync.left.resource_key])
        right = sync.right.build_adapter(component.resources[sync.right.resource_key])
        assert isinstance(right, SqlTableAdapter)
        built[name] = left
    assert type(built["asset_sync"]) is MaximoAssetAdapter
    assert type(built["pm_sync"]) is MaximoPmAdapter
    assert built["asset_sync"].create_defaults == {"siteid": "BEDFORD"}
    assert component.sync("pm_sync").spec.model.__name__ == "MaintenanceSchedule"


def test_asset_fields_are_checked_against_the_canonical_asset(tmp_path: Path) -> None:
    left = asset_declaration()["left"]
    left["fields"]["criticalty"] = left["fields"].pop("criticality")
    path = write_declaration(tmp_path, asset_declaration(left=left))
    with pytest.raises(ValueError) as error:
        SyncComponent.from_yaml(path, defs_root=None)
    message = str(error.value)
    assert (
        "syncs[0].left.fields.criticalty: 'criticalty' is not a field of the canonical asset; "
        "did you mean criticality?" in message
    )
    assert "syncs[0].left.fields.criticality: synced field 'criticality' has no maximo" in message
