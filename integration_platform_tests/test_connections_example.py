"""The example connection in ``defs/connections/defs.yaml`` works on the embedded defaults:
no environment variable, the sample CMMS export as a SQLite file, health and incremental
bronze extracts."""

import importlib.util
import sqlite3
from pathlib import Path
from types import ModuleType

import dagster as dg
import pytest

from integration_platform.components.connection import HEALTH_KEY, ConnectionComponent
from integration_platform.lake import DeltaLake
from integration_platform.state import StateDatabase
from integration_platform.state.health import latest_checks

REPO = Path(__file__).resolve().parents[1]
DEFS = REPO / "integration_platform" / "defs" / "connections" / "defs.yaml"
BUILDER = REPO / "data" / "samples" / "sqlite_source.py"


def sqlite_source() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sqlite_source", BUILDER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder holding the sample database where the connection expects it."""
    root = tmp_path / "project"
    counts = sqlite_source().build(root / "data" / "samples" / "cmms.sqlite")
    assert counts == {"sites": 4, "assets": 389, "work_orders": 3082}
    return root


def materialize(
    comp: ConnectionComponent, keys: list[dg.AssetKey], lake: DeltaLake, state: StateDatabase
) -> dg.ExecuteInProcessResult:
    assets = [a for a in comp.build_defs(None).assets or [] if getattr(a, "key", None) in keys]
    return dg.materialize(assets, resources={**comp.resources, "lake": lake, "state": state})


def test_the_sample_connection_needs_no_variable_and_extracts_incrementally(
    project: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("MAXIMO_BASE_URL", "MAXIMO_API_KEY", "INTEGRATION_PLATFORM_DB_URL"):
        monkeypatch.delenv(name, raising=False)
    comp = ConnectionComponent.from_yaml(DEFS, project_root=project)
    lake = DeltaLake(uri=str(data_dir / "lake"))
    state = StateDatabase(url=f"sqlite:///{data_dir / 'state.db'}")
    state.ensure_schema()
    orders = dg.AssetKey(["bronze", "sample_sql", "work_orders"])
    assets = dg.AssetKey(["bronze", "sample_sql", "assets"])

    first = materialize(comp, [orders, assets, HEALTH_KEY], lake, state)
    assert first.success
    assert len(lake.read(orders.path)) == 3082 and len(lake.read(assets.path)) == 389
    health = latest_checks(state.engine())["sample_sql"]
    assert (health.status, health.endpoint) == ("up", "primary")
    assert str(project) in health.detail

    with sqlite3.connect(project / "data" / "samples" / "cmms.sqlite") as db:
        db.execute(
            "UPDATE work_orders SET status = 'CLOSE', changedate = '2026-11-01 08:00:00.000000' "
            "WHERE wonum = 'WO-101048'"
        )
    second = materialize(comp, [orders], lake, state)
    written = second.get_asset_materialization_events()[-1].materialization.metadata
    assert written["rows_written"].value == 1
    frame = lake.read(orders.path).sort_values("_extracted_at")
    assert frame[frame["wonum"] == "WO-101048"]["status"].tolist() == ["CAN", "CLOSE"]


def test_a_missing_sample_database_is_reported_down_not_created(tmp_path: Path) -> None:
    comp = ConnectionComponent.from_yaml(DEFS, project_root=tmp_path)
    status = comp.resources["connection_sample_sql"].health_check()
    assert not status.ok
    assert f"{tmp_path}/data/samples/cmms.sqlite does not exist" in status.detail
    assert not (tmp_path / "data").exists()
