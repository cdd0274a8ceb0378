"""Bronze extraction from declared connections against the Maximo contract server.

The Delta table is the only state: every assertion reads it back, and the rows it holds must
be exactly the server's, whatever failed in between.
"""

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest
import yaml
from deltalake import CommitProperties, DeltaTable, write_deltalake

from integration_platform.components.connection import (
    DOWN_SENSOR,
    HEALTH_KEY,
    SCHEMA_DRIFT_CHECK,
    ConnectionComponent,
)
from integration_platform.connectors.extract import CURSOR_KEY, committed_cursor
from integration_platform.lake import DeltaLake
from integration_platform.state import StateDatabase
from integration_platform.state.health import latest_checks
from integration_platform_tests.contract_servers import seed
from integration_platform_tests.contract_servers.maximo import MaximoContractServer

WORK_ORDERS = ["bronze", "maximo", "work_orders"]
KEY = ["siteid", "wonum"]


@pytest.fixture
def maximo(tmp_path: Path) -> Iterator[MaximoContractServer]:
    server = MaximoContractServer(db_path=tmp_path / "maximo.db").start().seed()
    yield server
    server.stop()


@pytest.fixture
def lake(data_dir: Path) -> DeltaLake:
    return DeltaLake(uri=str(data_dir / "lake"))


@pytest.fixture
def state(data_dir: Path) -> StateDatabase:
    database = StateDatabase(url=f"sqlite:///{data_dir / 'state.db'}")
    database.ensure_schema()
    return database


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def write_defs(folder: Path, connection: dict[str, Any]) -> Path:
    """A defs.yaml like the ones under defs/ (requirements listing the variables)."""
    variables = [v for k, v in connection.items() if k.endswith("_env")]
    variables += list(connection.get("auth", {}).values())
    document = {
        "type": "integration_platform.components.ConnectionComponent",
        "requirements": {"env": variables},
        "attributes": {"connections": [connection]},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "defs.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def maximo_connection(server: MaximoContractServer, **changes: Any) -> dict[str, Any]:
    connection: dict[str, Any] = {
        "name": "maximo",
        "type": "maximo",
        "base_url_env": "MAXIMO_BASE_URL",
        "auth": {"api_key": "MAXIMO_API_KEY"},
        "options": {"max_attempts": 3, "backoff_seconds": 0.01, "requests_per_second": 0},
        "page_size": 5,
        "entities": ["work_orders", "assets"],
        "down_alert_after_minutes": 0,
    }
    connection.update(changes)
    return connection


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, maximo: MaximoContractServer) -> pytest.MonkeyPatch:
    monkeypatch.setenv("MAXIMO_BASE_URL", maximo.base_url)
    monkeypatch.setenv("MAXIMO_API_KEY", "contract-api-key")
    return monkeypatch


def component(tmp_path: Path, connection: dict[str, Any]) -> ConnectionComponent:
    return ConnectionComponent.from_yaml(write_defs(tmp_path / "defs" / "maximo", connection))


def run(
    comp: ConnectionComponent,
    lake: DeltaLake,
    keys: list[list[str]] | None = None,
    *,
    tags: dict[str, str] | None = None,
    instance: dg.DagsterInstance | None = None,
    state: StateDatabase | None = None,
) -> dg.ExecuteInProcessResult:
    defs = comp.build_defs(None)
    wanted = {dg.AssetKey(k) for k in (keys or [WORK_ORDERS])}
    assets = [
        a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition) and a.key in wanted
    ]
    extra = {"state": state} if state is not None else {}
    return dg.materialize(
        assets,
        resources={**comp.resources, "lake": lake, **extra},
        tags=tags,
        instance=instance,
        raise_on_error=False,
    )


def table(lake: DeltaLake, parts: list[str] = WORK_ORDERS) -> pd.DataFrame:
    return lake.read(parts)


def versions(frame: pd.DataFrame) -> list[tuple[str, str, str]]:
    return sorted(zip(frame["siteid"], frame["wonum"], frame["_rowstamp"], strict=True))


def server_versions(server: MaximoContractServer) -> list[tuple[str, str, str]]:
    return sorted((r["siteid"], r["wonum"], r["_rowstamp"]) for r in server.store.all("workorder"))


def assert_exactly_the_server(lake: DeltaLake, server: MaximoContractServer) -> None:
    frame = table(lake)
    stored = versions(frame)
    assert len(stored) == len(set(stored)), "a row version was written twice"
    latest = frame.sort_values("_rowstamp").groupby(KEY).tail(1)
    assert versions(latest) == server_versions(server)


def materialization(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    events = result.get_asset_materialization_events()
    assert events
    return {k: v.value for k, v in events[-1].materialization.metadata.items()}


# -- incremental extraction ----------------------------------------------------------------


def test_incremental_runs_return_exactly_the_server_rows(
    tmp_path: Path, env: Any, maximo: MaximoContractServer, lake: DeltaLake
) -> None:
    comp = component(tmp_path, maximo_connection(maximo))
    first = run(comp, lake, [WORK_ORDERS, ["bronze", "maximo", "assets"]])
    assert first.success
    assert len(table(lake)) == 23  # seed: an equal-timestamp group spans the page boundary
    assert len(table(lake, ["bronze", "maximo", "assets"])) == 9
    meta = materialization(first)
    assert meta["pages"] == 5
    assert_exactly_the_server(lake, maximo)

    # New rows AT the committed mark (same second as the last three) and after it, and a
    # change to an existing order: only these arrive, once.
    last = seed.maximo_date(seed.FIRST_CHANGE + timedelta(minutes=180))
    later = seed.maximo_date(seed.FIRST_CHANGE + timedelta(minutes=200))
    template = seed.work_orders()[0]
    for number, changed in (("2001", last), ("2002", last), ("2003", later)):
        maximo.put_work_order({**template, "wonum": number, "changedate": changed})
    maximo.put_work_order({**seed.work_orders()[4], "status": "CLOSE", "changedate": later})
    second = run(comp, lake)
    assert second.success
    assert materialization(second)["rows_written"] == 4
    assert_exactly_the_server(lake, maximo)

    third = run(comp, lake)
    assert third.success
    assert materialization(third)["rows_written"] == 0
    assert len(table(lake)) == 27


def test_the_cursor_is_in_each_page_commit(
    tmp_path: Path, env: Any, maximo: MaximoContractServer, lake: DeltaLake
) -> None:
    assert run(component(tmp_path, maximo_connection(maximo)), lake).success
    history = DeltaTable(lake.table_uri(WORK_ORDERS)).history()
    assert len(history) == 5
    assert all(CURSOR_KEY in commit and commit["run_id"] for commit in history)
    cursor, version = committed_cursor(lake, WORK_ORDERS)
    assert version == 4
    assert cursor is not None and len(cursor.ids_at_mark) == 3


def test_a_run_broken_after_page_k_then_rerun_yields_exactly_the_source(
    tmp_path: Path, env: Any, maximo: MaximoContractServer, lake: DeltaLake
) -> None:
    options = {"max_attempts": 1, "requests_per_second": 0}
    comp = component(tmp_path, maximo_connection(maximo, options=options))
    maximo.slow_next(2, seconds=0)  # the first two pages pass...
    maximo.fail_next(1, status=500)  # ...the third request breaks the run
    broken = run(comp, lake)
    assert not broken.success
    assert len(table(lake)) == 10  # two whole pages, committed with their cursor
    again = run(comp, lake)
    assert again.success
    assert materialization(again)["rows_written"] == 13
    assert_exactly_the_server(lake, maximo)


# -- failures: a clear error or a bounded retry, never a partial commit --------------------


def test_unreachable_host_fails_clearly_and_writes_nothing(
    tmp_path: Path, env: Any, maximo: MaximoContractServer, lake: DeltaLake
) -> None:
    env.setenv("MAXIMO_BASE_URL", closed_port_url())
    result = run(component(tmp_path, maximo_connection(maximo)), lake)
    assert not result.success
    failure = str(result.get_step_failure_events()[0].event_specific_data.error)
    assert "connection refused" in failure and "3 attempts" in failure
    assert not lake.exists(WORK_ORDERS)


def test_wrong_credentials_fail_at_once_and_write_nothing(
    tmp_path: Path, env: Any, maximo: MaximoContractServer, lake: DeltaLake
) -> None:
    env.setenv("MAXIMO_API_KEY", "wrong")
    result = run(component(tmp_path, maximo_connection(maximo)), lake)
    assert not result.success
    failure = str(result.get_step_failure_events()[0].event_specific_data.error)
    assert "401" in failure and "MAXIMO_API_KEY" in failure
    assert maximo.count() == 1  # not retried
    assert not lake.exists(WORK_ORDERS)


def test_malformed_json_fails_without_a_partial_page(
    tmp_path: Path, env: Any, maximo: MaximoContractServer, lake: DeltaLake
) -> None:
    comp = component(tmp_path, maximo_connection(maximo))
    maximo.slow_next(1, seconds=0)
    maximo.malformed_next(1)
    result = run(comp, lake)
    assert not result.success
    assert "BadResponse" in str(result.get_step_failure_events()[0].event_specific_data.error)
    assert len(table(lake)) == 5  # page 1 whole, page 2 not at all
    assert run(comp, lake).success
    assert_exactly_the_server(lake, maximo)


def test_throttling_is_retried_within_bounds(
    tmp_path: Path, env: Any, maximo: MaximoContractServer, lake: DeltaLake
) -> None:
    comp = component(tmp_path, maximo_connection(maximo))
    maximo.throttle_next(2, retry_after="0")
    assert run(comp, lake).success
    assert_exactly_the_server(lake, maximo)
    maximo.throttle_next(5, retry_after="0")  # more than max_attempts: fails, writes nothing
    before = DeltaTable(lake.table_uri(WORK_ORDERS)).version()
    result = run(comp, lake)
    assert not result.success
    assert "429" in str(result.get_step_failure_events()[0].event_specific_data.error)
    assert DeltaTable(lake.table_uri(WORK_ORDERS)).version() == before


# -- schema drift and full refresh ---------------------------------------------------------


def test_schema_drift_warns_and_the_run_goes_on(
    tmp_path: Path, env: Any, maximo: MaximoContractServer, lake: DeltaLake
) -> None:
    # A table written by an older declaration: an extra column, a number column, no "lead".
    old = pa.table(
        {
            "wonum": ["999"],
            "siteid": ["OLD"],
            "wopriority": pa.array([1], pa.int64()),
            "legacy_flag": ["Y"],
        }
    )
    write_deltalake(
        lake.table_uri(WORK_ORDERS),
        old,
        commit_properties=CommitProperties(custom_metadata={CURSOR_KEY: "null"}),
    )
    result = run(component(tmp_path, maximo_connection(maximo)), lake)
    assert result.success
    check = result.get_asset_check_evaluations()[0]
    assert check.check_name == SCHEMA_DRIFT_CHECK and not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
    drift = materialization(result)["schema_drift"]
    assert "lead" in drift["new"] and "legacy_flag" in drift["missing"]
    assert drift["retyped"]["wopriority"] == {"table": "int64", "page": "string"}
    frame = table(lake)
    assert len(frame) == 24 and frame["lead"].notna().sum() == 23


def test_full_refresh_overwrites_and_resets_the_cursor(
    tmp_path: Path, env: Any, maximo: MaximoContractServer, lake: DeltaLake
) -> None:
    comp = component(tmp_path, maximo_connection(maximo))
    assert run(comp, lake).success
    refreshed = run(comp, lake, tags={"full_refresh": "true"})
    assert refreshed.success
    meta = materialization(refreshed)
    assert meta["full_refresh"] is True and meta["rows_written"] == 23
    assert_exactly_the_server(lake, maximo)
    assert len(table(lake)) == 23


# -- declarations that fail at load --------------------------------------------------------


def load_error(tmp_path: Path, connection: dict[str, Any]) -> str:
    with pytest.raises(ValueError) as caught:
        component(tmp_path, connection)
    return str(caught.value)


def line_of(tmp_path: Path, text: str) -> str:
    lines = (tmp_path / "defs" / "maximo" / "defs.yaml").read_text().splitlines()
    return f"line {next(i for i, line in enumerate(lines, 1) if text in line)}"


def test_load_errors_name_file_line_and_variable(
    tmp_path: Path, env: Any, maximo: MaximoContractServer
) -> None:
    defs_yaml = str(tmp_path / "defs" / "maximo" / "defs.yaml")
    message = load_error(tmp_path, maximo_connection(maximo, type="maximmo"))
    assert defs_yaml in message and line_of(tmp_path, "type: maximmo") in message
    assert "'maximo'" in message and "did you mean 'maximo'" in message

    message = load_error(tmp_path, maximo_connection(maximo, options={"site_id": ["X"]}))
    assert defs_yaml in message and "did you mean 'site_ids'" in message

    env.delenv("MAXIMO_API_KEY")
    message = load_error(tmp_path, maximo_connection(maximo))
    assert defs_yaml in message and line_of(tmp_path, "auth:") in message
    assert "environment variable MAXIMO_API_KEY is not set" in message

    env.setenv("MAXIMO_API_KEY", "x")
    message = load_error(tmp_path, maximo_connection(maximo, entities=["work_order"]))
    assert "did you mean 'work_orders'" in message


def test_definitions_validate_with_jobs_schedule_and_sensors(
    tmp_path: Path, env: Any, maximo: MaximoContractServer
) -> None:
    defs = component(tmp_path, maximo_connection(maximo)).build_defs(None)
    shared = dg.Definitions(resources={"lake": DeltaLake(), "state": StateDatabase()})
    resolved = dg.Definitions.merge(defs, shared)
    dg.Definitions.validate_loadable(resolved)
    assert resolved.resolve_job_def("connections_health_job")
    assert resolved.resolve_schedule_def("connections_health_job_schedule")
    assert resolved.resolve_sensor_def(DOWN_SENSOR)


# -- health, failover and the down sensor --------------------------------------------------


def test_health_failover_and_down_sensor(
    tmp_path: Path, env: Any, maximo: MaximoContractServer, lake: DeltaLake, state: StateDatabase
) -> None:
    env.setenv("MAXIMO_BASE_URL", closed_port_url())
    env.setenv("MAXIMO_DR_BASE_URL", maximo.base_url)
    comp = component(
        tmp_path, maximo_connection(maximo, secondary_base_url_env="MAXIMO_DR_BASE_URL")
    )
    instance = dg.DagsterInstance.ephemeral()
    health = run(comp, lake, [HEALTH_KEY.path], instance=instance, state=state)
    assert health.success
    report = materialization(health)["connections"]["maximo"]
    assert report["status"] == "failover" and report["endpoint"] == "secondary"
    recorded = latest_checks(state.engine())["maximo"]
    assert (recorded.status, recorded.endpoint, recorded.ok) == ("failover", "secondary", True)
    assert "connection refused" in (recorded.primary_detail or "")

    extract = run(comp, lake, instance=instance)  # reads from the secondary
    assert extract.success and materialization(extract)["endpoint"] == "secondary"
    assert_exactly_the_server(lake, maximo)

    resources = {"lake": lake, "state": state}
    defs = dg.Definitions.merge(comp.build_defs(None), dg.Definitions(resources=resources))
    sensor = defs.resolve_sensor_def(DOWN_SENSOR)
    context = dg.build_sensor_context(instance=instance, resources={"state": state})
    assert isinstance(next(iter(sensor(context))), dg.SkipReason)

    maximo.stop()  # both endpoints down, twice: down_since stays the first failure
    first = materialization(run(comp, lake, [HEALTH_KEY.path], instance=instance, state=state))
    second = materialization(run(comp, lake, [HEALTH_KEY.path], instance=instance, state=state))
    assert second["connections"]["maximo"]["status"] == "down"
    since = first["connections"]["maximo"]["down_since"]
    assert second["connections"]["maximo"]["down_since"] == since
    assert latest_checks(state.engine())["maximo"].down_since == datetime.fromisoformat(since)
    context = dg.build_sensor_context(instance=instance, resources={"state": state})
    requests = list(sensor(context))
    assert len(requests) == 1 and isinstance(requests[0], dg.RunRequest)
    assert requests[0].run_key == f"maximo:{since}"
    assert (
        "down for" in requests[0].run_config["ops"]["connections_down_alert"]["config"]["message"]
    )
    history = lake.read(HEALTH_KEY.path).sort_values("checked_at")
    assert list(history["status"]) == ["failover", "down", "down"]
    assert datetime.fromisoformat(since) <= datetime.now(UTC)
