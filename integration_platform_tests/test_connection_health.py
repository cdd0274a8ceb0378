"""Connection health in the state database, on SQLite and the real PostgreSQL: what the health
job records, what the down sensor alerts on, and what ``connections health`` prints.

The connection is a real Maximo contract server on loopback; its outage is a stopped server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from integration_platform.cli import main
from integration_platform.components.connection import (
    DOWN_SENSOR,
    HEALTH_KEY,
    ConnectionComponent,
)
from integration_platform.lake import DeltaLake
from integration_platform.state import ConnectionHealthCheck, StateDatabase, dispose_engines
from integration_platform.state.health import (
    HealthCheck,
    latest_checks,
    prune_checks,
    record_checks,
)
from integration_platform_tests.contract_servers.maximo import MaximoContractServer

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def state(request: pytest.FixtureRequest, data_dir: Path) -> Iterator[StateDatabase]:
    """A migrated state database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{data_dir / 'state.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    database = StateDatabase(url=url)
    database.ensure_schema()
    yield database
    dispose_engines()


@pytest.fixture
def maximo(tmp_path: Path) -> Iterator[MaximoContractServer]:
    server = MaximoContractServer(db_path=tmp_path / "maximo.db").start().seed()
    yield server
    server.stop()


def check(name: str, status: str, **fields: Any) -> HealthCheck:
    endpoint = {"up": "primary", "failover": "secondary", "down": "none"}[status]
    return HealthCheck(name, status, endpoint, fields.pop("latency_ms", 12.5), f"{name} {status}")


# -- the table -----------------------------------------------------------------------------


def test_an_outage_keeps_its_start_until_the_connection_answers(state: StateDatabase) -> None:
    engine = state.engine()
    timeline = [
        (T0, "up", None),
        (T0 + timedelta(minutes=5), "down", T0 + timedelta(minutes=5)),
        (T0 + timedelta(minutes=10), "down", T0 + timedelta(minutes=5)),
        (T0 + timedelta(minutes=15), "failover", None),  # answered: the outage is over
        (T0 + timedelta(minutes=20), "down", T0 + timedelta(minutes=20)),
    ]
    for at, status, expected in timeline:
        since = record_checks(engine, [check("maximo", status)], checked_at=at, run_id="r")
        assert since == {"maximo": expected}
    record_checks(engine, [check("sap", "up")], checked_at=T0 + timedelta(minutes=1))

    latest = latest_checks(engine)
    assert set(latest) == {"maximo", "sap"}
    assert latest["maximo"].checked_at == T0 + timedelta(minutes=20)
    assert latest["maximo"].down_since == T0 + timedelta(minutes=20)
    assert (latest["maximo"].status, latest["maximo"].ok) == ("down", False)
    assert latest["maximo"].checked_at.tzinfo is not None
    assert (latest["sap"].status, latest["sap"].endpoint, latest["sap"].ok) == (
        "up",
        "primary",
        True,
    )
    assert set(latest_checks(engine, ["sap", "absent"])) == {"sap"}


def test_pruning_keeps_each_connections_newest_check(state: StateDatabase) -> None:
    engine = state.engine()
    for minutes in (0, 5, 10):
        record_checks(engine, [check("maximo", "down")], checked_at=T0 + timedelta(minutes=minutes))
    record_checks(engine, [check("retired", "up")], checked_at=T0 - timedelta(days=400))
    now = T0 + timedelta(days=100)
    assert prune_checks(engine, older_than=timedelta(days=90), now=now) == 2
    latest = latest_checks(engine)
    assert latest["maximo"].down_since == T0  # the outage start survives the pruning
    assert "retired" in latest
    with engine.connect() as connection:
        count = connection.scalar(sa.select(sa.func.count()).select_from(ConnectionHealthCheck))
    assert count == 2


def test_unknown_statuses_are_refused(state: StateDatabase) -> None:
    bad = HealthCheck("maximo", "degraded", "primary", 1.0, "x")
    with pytest.raises(sa.exc.IntegrityError):
        record_checks(state.engine(), [bad], checked_at=T0)


# -- the health job and the down sensor ----------------------------------------------------


def component(tmp_path: Path, **changes: Any) -> ConnectionComponent:
    connection = {
        "name": "maximo",
        "type": "maximo",
        "base_url_env": "MAXIMO_BASE_URL",
        "auth": {"api_key": "MAXIMO_API_KEY"},
        "options": {"max_attempts": 1, "requests_per_second": 0},
        "entities": ["work_orders"],
        "down_alert_after_minutes": 0,
        **changes,
    }
    document = {
        "type": "integration_platform.components.ConnectionComponent",
        "requirements": {"env": ["MAXIMO_BASE_URL", "MAXIMO_API_KEY"]},
        "attributes": {"connections": [connection]},
    }
    path = tmp_path / "defs" / "maximo" / "defs.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return ConnectionComponent.from_yaml(path)


def check_health(
    comp: ConnectionComponent,
    state: StateDatabase,
    data_dir: Path,
    instance: dg.DagsterInstance,
) -> dict[str, Any]:
    defs = comp.build_defs(None)
    asset = next(a for a in defs.assets or [] if getattr(a, "key", None) == HEALTH_KEY)
    lake = DeltaLake(uri=str(data_dir / "lake"))
    result = dg.materialize(
        [asset], resources={**comp.resources, "lake": lake, "state": state}, instance=instance
    )
    event = result.get_asset_materialization_events()[-1]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def sensor_says(
    comp: ConnectionComponent, state: StateDatabase, instance: dg.DagsterInstance
) -> list[Any]:
    shared = dg.Definitions(resources={"lake": DeltaLake(), "state": state})
    sensor = dg.Definitions.merge(comp.build_defs(None), shared).resolve_sensor_def(DOWN_SENSOR)
    return list(sensor(dg.build_sensor_context(instance=instance, resources={"state": state})))


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, maximo: MaximoContractServer) -> pytest.MonkeyPatch:
    monkeypatch.setenv("MAXIMO_BASE_URL", maximo.base_url)
    monkeypatch.setenv("MAXIMO_API_KEY", "contract-api-key")
    return monkeypatch


def test_health_job_records_each_check_and_the_sensor_alerts_from_the_table(
    tmp_path: Path,
    data_dir: Path,
    env: pytest.MonkeyPatch,
    maximo: MaximoContractServer,
    state: StateDatabase,
) -> None:
    comp = component(tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    meta = check_health(comp, state, data_dir, instance)
    assert meta["state_db"] == "recorded"
    up = latest_checks(state.engine())["maximo"]
    assert (up.status, up.endpoint, up.ok, up.down_since) == ("up", "primary", True, None)
    assert up.latency_ms > 0 and "signed in to" in up.detail and up.run_id

    maximo.stop()
    first = check_health(comp, state, data_dir, instance)["connections"]["maximo"]
    second = check_health(comp, state, data_dir, instance)["connections"]["maximo"]
    down = latest_checks(state.engine())["maximo"]
    assert (down.status, down.endpoint, down.ok) == ("down", "primary", False)
    assert "connection refused" in down.detail
    assert down.down_since is not None
    assert first["down_since"] == second["down_since"] == down.down_since.isoformat()

    # A Dagster instance that never saw a health run: the table alone raises the alert.
    requests = sensor_says(comp, state, dg.DagsterInstance.ephemeral())
    assert [r.run_key for r in requests] == [f"maximo:{down.down_since.isoformat()}"]
    assert (
        "down for" in requests[0].run_config["ops"]["connections_down_alert"]["config"]["message"]
    )
    # The declared threshold decides, not the one stored with the check.
    patient = component(tmp_path, down_alert_after_minutes=60)
    assert isinstance(sensor_says(patient, state, instance)[0], dg.SkipReason)


def test_the_sensor_reads_the_newer_of_table_and_metadata(
    tmp_path: Path,
    data_dir: Path,
    env: pytest.MonkeyPatch,
    maximo: MaximoContractServer,
    state: StateDatabase,
) -> None:
    comp = component(tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    record_checks(state.engine(), [check("maximo", "up")], checked_at=datetime.now(UTC))

    # The state database refuses (not migrated): the run still reports, in its metadata.
    maximo.stop()
    unmigrated = StateDatabase(url=f"sqlite:///{data_dir / 'not-migrated.db'}")
    meta = check_health(comp, unmigrated, data_dir, instance)
    assert meta["state_db"].startswith("not recorded:")
    assert meta["connections"]["maximo"]["status"] == "down"
    assert latest_checks(state.engine())["maximo"].status == "up"  # stale

    requests = sensor_says(comp, state, instance)  # the metadata is newer: it wins
    assert len(requests) == 1 and isinstance(requests[0], dg.RunRequest)
    assert requests[0].run_key == f"maximo:{meta['connections']['maximo']['down_since']}"

    fallback = sensor_says(comp, unmigrated, instance)  # the table cannot be read at all
    assert [r.run_key for r in fallback] == [requests[0].run_key]


# -- the command ---------------------------------------------------------------------------


def test_connections_health_prints_the_latest_check_per_connection(
    state: StateDatabase, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INTEGRATION_PLATFORM_DB_URL", state.url or "")
    engine = state.engine()
    now = datetime.now(UTC)
    record_checks(engine, [check("maximo", "down")], checked_at=now - timedelta(minutes=30))
    record_checks(engine, [check("maximo", "down"), check("sap", "up")], checked_at=now)

    assert main(["connections", "health"]) == 1  # a connection is down
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["CONNECTION", "STATUS", "ENDPOINT"]
    assert lines[1].split()[:3] == ["maximo", "down", "none"]
    assert "(30 min)" in lines[1] and lines[1].endswith("maximo down")
    assert lines[2].split()[:4] == ["sap", "up", "primary", "12"]

    assert main(["connections", "health", "--connection", "sap", "--json"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line) | {"checked_at": None} == {
        "connection": "sap",
        "status": "up",
        "endpoint": "primary",
        "latency_ms": 12.5,
        "detail": "sap up",
        "checked_at": None,
    }


def test_connections_health_names_a_database_that_is_not_migrated(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INTEGRATION_PLATFORM_DB_URL", f"sqlite:///{data_dir / 'empty.db'}")
    assert main(["connections", "health"]) == 2
    error = capsys.readouterr().err
    assert "empty.db" in error and "integration-platform db upgrade" in error
