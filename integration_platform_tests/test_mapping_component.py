"""MappingComponent as Dagster assets: quarantine, strict mode, lineage to lookups."""

from pathlib import Path

import dagster as dg
import pandas as pd

from integration_platform.components.mapping import MappingComponent
from integration_platform.lake import DeltaIOManager, DeltaLake
from integration_platform.mapping.compiler import parse_spec
from integration_platform.mapping.locate import SourceMap
from integration_platform.mapping.transforms import register_transform

ATTRIBUTES = {
    "source": "bronze/plant/assets",
    "entity": "assets",
    "key": ["tag"],
    "lookups": {
        "site_zone": {
            "asset": "bronze/plant/sites",
            "match": "site",
            "key": "code",
            "value": "zone",
        }
    },
    "fields": {
        "asset_id": {"formula": "concat(mapping.source_system, ':', tag)"},
        "external_id": "tag",
        "site_id": "site",
        "name": {"source": "name", "transforms": ["plant_title"]},
        "asset_type": {"value": "pump"},
        "status": {"source": "state", "map": {"RUN": "operating", "OFF": "standby"}},
        "criticality": {"value": "high"},
        "updated_at": {"source": "changed", "datetime": {"timezone_from": "site_zone"}},
    },
}


@register_transform("plant_title")
def plant_title(series: pd.Series, *, field: str, source: str) -> pd.Series:
    """A user transform registered from Python, used by name in the spec."""
    return series.str.title()


def component(**changes: object) -> MappingComponent:
    source_map = SourceMap(file=None)
    return MappingComponent(parse_spec({**ATTRIBUTES, **changes}, source_map), source_map)


@dg.asset(key=["bronze", "plant", "assets"])
def plant_assets() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "tag": ["P-1", "P-2", "P-3"],
            "site": ["HAM", "HAM", "HAM"],
            "name": ["cooling pump", "feed pump", "spare pump"],
            "state": ["RUN", "BROKEN", "OFF"],
            "changed": ["2026-01-05T10:00:00"] * 3,
        },
        dtype="string[pyarrow]",
    )


@dg.asset(key=["bronze", "plant", "sites"])
def plant_sites() -> pd.DataFrame:
    return pd.DataFrame({"code": ["HAM"], "zone": ["Europe/Berlin"]})


def run(mapping: MappingComponent, lake_root: Path) -> dg.ExecuteInProcessResult:
    assets = mapping.build_defs(None).assets  # type: ignore[arg-type]
    lake = DeltaLake(uri=str(lake_root))
    return dg.materialize(
        [plant_assets, plant_sites, *assets],
        resources={"io_manager": DeltaIOManager(lake=lake)},
        raise_on_error=False,
    )


def test_rejects_are_quarantined_and_the_ratio_check_blocks(tmp_path: Path) -> None:
    result = run(component(max_reject_ratio=0.5), tmp_path)
    assert result.success
    lake = DeltaLake(uri=str(tmp_path))
    silver = lake.read(["silver", "assets"])
    assert silver["name"].tolist() == ["Cooling Pump", "Spare Pump"]
    assert str(silver["updated_at"][0]) == "2026-01-05 09:00:00+00:00"
    quarantine = lake.read(["quarantine", "assets"])
    assert quarantine["external_id"].tolist() == ["P-2"]
    assert "'BROKEN'" in quarantine["reject_reason"][0]
    check = result.get_asset_check_evaluations()[0]
    assert check.passed and check.metadata["rows_rejected"].value == 1


def test_a_reject_ratio_above_the_limit_fails_the_check(tmp_path: Path) -> None:
    result = run(component(max_reject_ratio=0.1), tmp_path)
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed
    assert check.metadata["reject_ratio"].value == round(1 / 3, 4)


def test_strict_mode_fails_the_run_but_keeps_the_rejects(tmp_path: Path) -> None:
    result = run(component(strict=True), tmp_path)
    assert not result.success
    lake = DeltaLake(uri=str(tmp_path))
    assert lake.read(["quarantine", "assets"])["external_id"].tolist() == ["P-2"]
    assert not lake.exists(["silver", "assets"])


def test_lineage_reaches_the_lookup_asset() -> None:
    (asset,) = component().build_defs(None).assets  # type: ignore[arg-type]
    spec = asset.specs_by_key[dg.AssetKey(["silver", "assets"])]
    lineage = spec.metadata["dagster/column_lineage"]
    updated = {
        (dep.asset_key.to_user_string(), dep.column_name)
        for dep in lineage.deps_by_column["updated_at"]
    }
    assert updated == {
        ("bronze/plant/assets", "changed"),
        ("bronze/plant/assets", "site"),
        ("bronze/plant/sites", "zone"),
    }
    assert dg.AssetKey(["bronze", "plant", "sites"]) in asset.keys_by_input_name.values()
