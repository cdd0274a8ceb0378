"""The main job end to end on the bundled sample export, in a temporary lake."""

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from integration_platform.components.mapping import REJECT_RATIO_CHECK
from integration_platform.definitions import defs
from integration_platform.defs.maintenance.assets import GOLD_WORK_ORDER_KPIS, SILVER_WORK_ORDERS
from integration_platform.defs.maintenance.jobs import MAINTENANCE_KPIS_JOB
from integration_platform.lake import DeltaLake
from integration_platform.mapping.compiler import CompiledMapping, compile_mapping, load_spec_file

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "data" / "samples" / "cmms"
MAPPINGS = ROOT / "integration_platform" / "defs" / "sample_cmms"


def compiled(entity: str) -> CompiledMapping:
    spec, source_map = load_spec_file(MAPPINGS / entity / "defs.yaml")
    return compile_mapping(spec, source_map=source_map)


def canonical_targets(mapping: CompiledMapping, source: str) -> set[str]:
    """The target fields a source column feeds."""
    return {
        field.name for field in mapping.fields if source in mapping.source_columns_of(field.name)
    }


@pytest.fixture(scope="module")
def slice_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dg.ExecuteInProcessResult, DeltaLake]:
    data = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INTEGRATION_PLATFORM_DATA_DIR", str(data))
        patch.delenv("INTEGRATION_PLATFORM_LAKE_URI", raising=False)
        patch.delenv("INTEGRATION_PLATFORM_DB_URL", raising=False)
        job = defs().resolve_job_def(MAINTENANCE_KPIS_JOB)
        with dg.instance_for_test() as instance:
            result = job.execute_in_process(instance=instance)
    return result, DeltaLake(uri=str(data / "lake"))


def test_the_job_succeeds_with_every_check_passing(slice_run) -> None:
    result, _ = slice_run
    assert result.success
    checks = {
        (evaluation.asset_key, evaluation.check_name): evaluation.passed
        for evaluation in result.get_asset_check_evaluations()
    }
    assert checks[(SILVER_WORK_ORDERS, REJECT_RATIO_CHECK)] is True
    assert all(checks.values()), checks


@pytest.mark.parametrize(
    ("entity", "file", "key"),
    [("work_orders", "work_orders.csv", "wonum"), ("assets", "assets.csv", "assetnum")],
)
def test_every_dirty_sample_row_is_quarantined_with_its_field(
    slice_run, entity: str, file: str, key: str
) -> None:
    _, lake = slice_run
    mapping = compiled(entity)
    dirty = pd.read_csv(SAMPLES / "dirty_rows.csv")
    dirty = dirty[dirty["file"] == file]
    quarantine = lake.read(["quarantine", entity]).set_index("external_id")
    silver = lake.read(["silver", entity])

    assert set(quarantine.index) == set(dirty["key"])
    assert not set(silver["external_id"]) & set(dirty["key"])
    for row in dirty.itertuples():
        record = quarantine.loc[row.key]
        named = set(record["reject_field"].split(", "))
        assert named & canonical_targets(mapping, row.field), (row.key, row.field, record.to_dict())
        assert record["reject_reason"]
        original = pd.read_json(pd.io.common.StringIO(record["record"]), typ="series")
        assert original[key] == row.key
        source_lines = (SAMPLES / file).read_text(encoding="utf-8").splitlines()
        assert source_lines[int(record["source_line"]) - 1].startswith(f"{row.key},")


def test_silver_holds_the_newest_version_of_each_work_order_once(slice_run) -> None:
    _, lake = slice_run
    bronze = lake.read(["bronze", "sample_cmms", "work_orders"])
    silver = lake.read(["silver", "work_orders"])
    quarantined = lake.read(["quarantine", "work_orders"])
    assert silver["work_order_id"].is_unique
    distinct = bronze[["siteid", "wonum"]].drop_duplicates()
    assert len(silver) + len(quarantined) == len(distinct)
    duplicated = bronze.loc[bronze["wonum"].duplicated(), "wonum"]
    newest = bronze.sort_values("rowstamp").drop_duplicates("wonum", keep="last")
    for wonum in duplicated:
        stored = silver.loc[silver["external_id"] == wonum, "version_token"].item()
        assert stored == newest.loc[newest["wonum"] == wonum, "rowstamp"].item()
    assert isinstance(silver["created_at"].dtype, pd.DatetimeTZDtype)
    assert str(silver["created_at"].dtype.tz) == "UTC"


def test_gold_has_kpis_per_site_and_for_the_plant(slice_run) -> None:
    result, lake = slice_run
    kpis = lake.read(["gold", "work_order_kpis"]).set_index("site_id")
    assert set(kpis.index) == {"BEDFORD", "HAMBURG", "PUNE", "TEXAS_CITY", "ALL"}
    sites = kpis.drop(index="ALL")
    for column in ("work_orders", "backlog_open", "backlog_overdue", "pm_due"):
        assert kpis.loc["ALL", column] == sites[column].sum()
    assert 0 < kpis.loc["ALL", "pm_compliance_pct"] <= 100
    assert kpis.loc["ALL", "mttr_hours"] > 0
    materialization = result.asset_materializations_for_node("gold__work_order_kpis")[0]
    assert materialization.metadata["dagster/row_count"].value == 5
    assert materialization.asset_key == GOLD_WORK_ORDER_KPIS


def test_too_many_rejects_block_the_gold_layer(data_dir: Path) -> None:
    """The blocking reject-ratio check keeps a broken extract away from gold and BI."""
    lake = DeltaLake()
    bronze = lake_rows(SAMPLES / "work_orders.csv").head(50)
    bronze.loc[:20, "status"] = "BOGUS"
    lake.write(bronze, ["bronze", "sample_cmms", "work_orders"])
    lake.write(lake_rows(SAMPLES / "sites.csv"), ["bronze", "sample_cmms", "sites"])
    job = defs().resolve_job_def(MAINTENANCE_KPIS_JOB)
    selection = [
        SILVER_WORK_ORDERS,
        dg.AssetKey(["quarantine", "work_orders"]),
        GOLD_WORK_ORDER_KPIS,
    ]
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            instance=instance, asset_selection=selection, raise_on_error=False
        )
    assert not result.success
    assert not lake.exists(["gold", "work_order_kpis"])
    assert len(lake.read(["quarantine", "work_orders"])) >= 21


def lake_rows(path: Path) -> pd.DataFrame:
    from integration_platform.components.file_extract import read_csv_with_lines

    return read_csv_with_lines(path)
