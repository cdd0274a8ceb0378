from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from integration_platform.lake import DeltaIOManager, DeltaLake, lake_uri
from integration_platform.settings import ConfigError


def test_lake_uri_defaults_under_the_data_dir(data_dir: Path) -> None:
    assert lake_uri() == str(data_dir / "lake")
    assert (data_dir / "lake").is_dir()


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("ftp://host/lake", "unsupported scheme 'ftp'"),
        ("s3:///no-bucket", "no bucket"),
        ("/proc/no-such-lake", "cannot create the lake folder"),
    ],
)
def test_bad_lake_uri_fails_fast_naming_the_variable(value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as error:
        lake_uri({"INTEGRATION_PLATFORM_LAKE_URI": value})
    assert "INTEGRATION_PLATFORM_LAKE_URI" in str(error.value)
    assert fragment in str(error.value)


def test_object_store_uri_is_taken_as_is() -> None:
    assert lake_uri({"INTEGRATION_PLATFORM_LAKE_URI": "s3://plant-lake/prod/"}) == (
        "s3://plant-lake/prod"
    )


def test_table_paths_cannot_escape_the_root(tmp_path: Path) -> None:
    lake = DeltaLake(uri=str(tmp_path))
    with pytest.raises(ValueError, match="invalid lake table path"):
        lake.table_uri(["silver", ".."])


def test_io_manager_stores_assets_at_their_key_path(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "id": ["a", "b"],
            "ts": pd.to_datetime(["2026-01-01T00:00Z", "2026-01-02T00:00Z"], utc=True),
            "empty": [None, None],
        }
    )

    @dg.asset(key=["silver", "things"])
    def things() -> pd.DataFrame:
        return frame

    @dg.asset(key=["gold", "thing_count"], ins={"things": dg.AssetIn(key=["silver", "things"])})
    def thing_count(things: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"count": [len(things)], "first": [things["ts"].min()]})

    lake = DeltaLake(uri=str(tmp_path))
    result = dg.materialize(
        [things, thing_count], resources={"io_manager": DeltaIOManager(lake=lake)}
    )
    assert result.success
    assert (tmp_path / "silver" / "things" / "_delta_log").is_dir()
    stored = lake.read(["gold", "thing_count"])
    assert stored["count"].tolist() == [2]
    assert stored["first"][0] == pd.Timestamp("2026-01-01T00:00Z")
    metadata = result.asset_materializations_for_node("silver__things")[0].metadata
    assert metadata["dagster/row_count"].value == 2


def test_io_manager_replaces_only_the_run_partition(tmp_path: Path) -> None:
    days = dg.DailyPartitionsDefinition(start_date="2026-01-01")

    @dg.asset(
        key=["telemetry", "daily"],
        partitions_def=days,
        metadata={"delta/partition_by": ["date"]},
    )
    def daily(context: dg.AssetExecutionContext) -> pd.DataFrame:
        return pd.DataFrame({"date": [context.partition_key] * 2, "value": [1.0, 2.0]})

    lake = DeltaLake(uri=str(tmp_path))
    resources = {"io_manager": DeltaIOManager(lake=lake)}
    for key in ("2026-01-01", "2026-01-02", "2026-01-01"):
        assert dg.materialize([daily], partition_key=key, resources=resources).success
    stored = lake.read(["telemetry", "daily"])
    assert sorted(stored["date"].tolist()) == ["2026-01-01"] * 2 + ["2026-01-02"] * 2
