"""The example sync's Dagster job in process, against the Maximo contract server and a table
on the real PostgreSQL: it syncs, reports its counts as metadata, retries only retryable
connector errors, and fails the step with the cause when the run was rolled back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from integration_platform.components import SyncComponent
from integration_platform.sync import list_conflicts, list_runs, resolve_conflict
from integration_platform.sync.adapters.maximo import MaximoWorkOrderAdapter
from integration_platform_tests.sync_rig import JOB, OP, SYNC, SyncRig

pytestmark = pytest.mark.postgres


@pytest.fixture
def rig(tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[SyncRig]:
    found = SyncRig(tmp_path, postgres_url, monkeypatch)
    yield found
    found.close()


def run_job(rig: SyncRig, **config: Any) -> dg.ExecuteInProcessResult:
    component = SyncComponent.from_yaml(rig.defs_file)
    defs = dg.Definitions.merge(
        component.build_defs(None),
        dg.Definitions(resources={"state": rig.state, "lake": rig.lake}),
    )
    run_config = {"ops": {OP: {"config": config}}} if config else None
    with dg.instance_for_test() as instance:
        return defs.resolve_job_def(JOB).execute_in_process(
            instance=instance, run_config=run_config, raise_on_error=False
        )


def output_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    (event,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    return {k: v.value for k, v in event.step_output_data.metadata.items()}


def materialized(result: dg.ExecuteInProcessResult, key: list[str]) -> dict[str, Any]:
    (event,) = [
        e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(key)
    ]
    metadata = event.materialization.metadata
    return {k: v.value for k, v in metadata.items()}


def test_the_job_syncs_both_ways_and_reports_its_counts(rig: SyncRig) -> None:
    maximo_before = set(rig.maximo_rows())
    result = run_job(rig)
    assert result.success
    metadata = output_metadata(result)
    # Every Maximo work order was created in the plant table and the plant's 2001 in Maximo.
    assert set(rig.sql_rows()) == set(rig.maximo_rows()) == maximo_before | {"2001"}
    assert metadata["status"] == "succeeded" and metadata["dry_run"] is False
    assert metadata["read_mode"] == "full"
    assert metadata["records_read"] == len(maximo_before) + 1
    assert metadata["applied"] == metadata["records_changed"] == len(maximo_before) + 1
    assert metadata["conflicts"] == metadata["rolled_back"] == metadata["quarantined"] == 0
    (run,) = list_runs(rig.state, sync_name=SYNC).itertuples()
    assert run.run_id == metadata["sync_run_id"] and run.triggered_by.startswith("dagster ")
    assert materialized(result, ["sync", SYNC, "conflicts"])["conflicts_open"] == 0
    audit = materialized(result, ["audit", "sync_changes"])
    assert audit["changes_by_strategy"] == {"created": audit["changes_total"]}
    assert audit["delta_version"] >= 0

    # Edits on both sides, one of them a field a person decides.
    rig.edit_maximo("1003", description="Replace filters and belts, AHU-3", lead="GARCIA")
    rig.edit_sql("1003", assigned_to="NGUYEN")
    result = run_job(rig)
    metadata = output_metadata(result)
    assert (metadata["applied"], metadata["conflicts"], metadata["auto_resolved"]) == (1, 1, 0)
    assert rig.sql_rows()["1003"]["title"] == "Replace filters and belts, AHU-3"
    conflicts = materialized(result, ["sync", SYNC, "conflicts"])
    assert conflicts["conflicts_open"] == 1 and conflicts["open_by_field"] == {"assigned_to": 1}

    # A person decides; the next run applies it and counts it.
    (conflict_id,) = list_conflicts(rig.state, sync_name=SYNC)["id"]
    resolve_conflict(rig.state, int(conflict_id), choice="right", resolved_by="alice")
    metadata = output_metadata(run_job(rig))
    assert (metadata["applied"], metadata["resolved_manually"], metadata["resolved"]) == (1, 1, 1)
    assert rig.maximo_rows()["1003"]["lead"] == "NGUYEN"

    # Nothing changed since: a dry run plans nothing.
    metadata = output_metadata(run_job(rig, dry_run=True))
    assert metadata["dry_run"] is True and metadata["planned_writes"] == 0


def test_an_incremental_sync_reads_in_full_when_run_config_asks(rig: SyncRig) -> None:
    document = yaml.safe_load(rig.defs_file.read_text())
    document["attributes"]["syncs"][0]["reads"] = {
        "incremental": True,
        "full_every_runs": None,
        "full_every_hours": None,
    }
    rig.defs_file.write_text(yaml.safe_dump(document, sort_keys=False))
    modes = [output_metadata(run_job(rig))["read_mode"] for _ in range(2)]
    assert modes == ["full", "incremental"]  # the first run has nothing to continue from
    assert output_metadata(run_job(rig, full=True))["read_mode"] == "full"
    assert list(list_runs(rig.state, sync_name=SYNC)["read_mode"]) == [
        "full",
        "incremental",
        "full",
    ]


def test_a_dry_run_through_run_config_plans_and_writes_nothing(rig: SyncRig) -> None:
    before = rig.sql_rows(), rig.maximo_rows(), rig.state_counts()
    result = run_job(rig, dry_run=True)
    assert result.success
    metadata = output_metadata(result)
    assert metadata["status"] == "dry_run" and metadata["planned_writes"] > 0
    assert "| maximo " in metadata["planned"] and "2001" in metadata["planned"]
    assert (rig.sql_rows(), rig.maximo_rows(), rig.state_counts()) == before
    assert not result.get_asset_materialization_events()


def test_a_retryable_connector_error_retries_the_step(rig: SyncRig) -> None:
    rig.server.fail_next(3, status=503)  # every attempt of the first read
    result = run_job(rig)
    assert result.success
    steps = [e.event_type_value for e in result.all_events if e.step_key == OP]
    assert steps.count("STEP_UP_FOR_RETRY") == 1 and steps.count("STEP_RESTARTED") == 1
    runs = list_runs(rig.state, sync_name=SYNC)
    assert list(runs["status"]) == ["succeeded", "failed"]  # newest first
    assert "503" in runs["cause"].iloc[1]


def test_a_rolled_back_run_fails_the_step_with_the_cause_and_is_not_retried(rig: SyncRig) -> None:
    assert run_job(rig).success
    with rig.sql.begin() as connection:
        connection.execute(
            sa.text(
                "ALTER TABLE plant_work_orders ADD CONSTRAINT no_reject CHECK (title NOT LIKE "
                "'%REJECT%')"
            )
        )
    rig.edit_maximo("1004", description="REJECT this title")
    rig.edit_maximo("1005", lead="GARCIA")
    sql_before, maximo_before = rig.sql_rows(), rig.maximo_rows()
    result = run_job(rig)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    error = failure.step_failure_data.error
    assert error is not None and "rolled back" in error.message and "no_reject" in error.message
    metadata = failure.step_failure_data.user_failure_data.metadata
    assert metadata["status"].value == "rolled_back"
    # A rejected write would be rejected again: not retryable.
    assert (metadata["cause_type"].value, metadata["cause_retryable"].value) == (
        "ConnectorError",
        False,
    )
    steps = [e.event_type_value for e in result.all_events if e.step_key == OP]
    assert "STEP_UP_FOR_RETRY" not in steps
    assert rig.sql_rows() == sql_before and rig.maximo_rows() == maximo_before


def fail_maximo_updates(
    rig: SyncRig, monkeypatch: pytest.MonkeyPatch, *, attempts: int | None
) -> None:
    """Maximo answers 503 to every try of the first update of the first ``attempts`` runs
    (all runs when None): a transient error in the middle of the writes."""
    original = MaximoWorkOrderAdapter.update
    seen: list[int] = []

    def update(self: MaximoWorkOrderAdapter, *args: Any, **kwargs: Any) -> Any:
        if id(self) not in seen:
            seen.append(id(self))
            if attempts is None or len(seen) <= attempts:
                rig.server.fail_next(3, status=503)  # every retry of the connector
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MaximoWorkOrderAdapter, "update", update)


def edit_both(rig: SyncRig) -> tuple[dict[str, Any], dict[str, Any]]:
    rig.edit_sql("1004", title="Replace belts, AHU-4")  # to Maximo (an update there)
    rig.edit_maximo("1005", lead="GARCIA")  # to the plant table (its transaction)
    return rig.sql_rows(), rig.maximo_rows()


def test_a_run_rolled_back_by_a_transient_write_error_is_retried(
    rig: SyncRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_job(rig).success
    edit_both(rig)
    fail_maximo_updates(rig, monkeypatch, attempts=1)
    result = run_job(rig)
    assert result.success
    steps = [e.event_type_value for e in result.all_events if e.step_key == OP]
    assert steps.count("STEP_UP_FOR_RETRY") == 1
    runs = list_runs(rig.state, sync_name=SYNC)
    assert list(runs["status"]) == ["succeeded", "rolled_back", "succeeded"]  # newest first
    assert "503" in runs["cause"].iloc[1]
    assert rig.maximo_rows()["1004"]["description"] == "Replace belts, AHU-4"
    assert rig.sql_rows()["1005"]["assigned_to"] == "GARCIA"
    assert output_metadata(result)["applied"] == 2


def test_a_transient_write_error_that_persists_fails_after_the_retries(
    rig: SyncRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_job(rig).success
    sql_before, maximo_before = edit_both(rig)
    fail_maximo_updates(rig, monkeypatch, attempts=None)
    result = run_job(rig)
    assert not result.success
    steps = [e.event_type_value for e in result.all_events if e.step_key == OP]
    assert steps.count("STEP_UP_FOR_RETRY") == 2  # retry.max_retries of the rig
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    error = failure.step_failure_data.error
    assert error is not None and "503" in error.message and "after 2 retries" in error.message
    runs = list_runs(rig.state, sync_name=SYNC)
    assert list(runs["status"]) == ["rolled_back"] * 3 + ["succeeded"]
    assert (rig.sql_rows(), rig.maximo_rows()) == (sql_before, maximo_before)
