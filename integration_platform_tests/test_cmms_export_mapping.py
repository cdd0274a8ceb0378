"""The sample CMMS export mapping, on hand-made rows and on the bundled sample files."""

from pathlib import Path

import pandas as pd

from integration_platform.components.file_extract import read_csv_with_lines
from integration_platform.mapping.cmms_export import map_assets, map_work_orders

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples" / "cmms"
SITES = pd.DataFrame({"siteid": ["BEDFORD"], "timezone": ["America/New_York"]})
WORK_ORDER_COLUMNS = [
    "wonum",
    "siteid",
    "assetnum",
    "description",
    "worktype",
    "wopriority",
    "status",
    "reportdate",
    "schedstart",
    "targcompdate",
    "actstart",
    "actfinish",
    "actlabhrs",
    "actlabcost",
    "currency",
    "lead",
    "changedate",
    "rowstamp",
]


def work_order(**values: str | None) -> dict[str, str | None]:
    row: dict[str, str | None] = dict.fromkeys(WORK_ORDER_COLUMNS)
    row.update(
        wonum="WO-1",
        siteid="BEDFORD",
        assetnum="P-1001",
        description="Replace seal",
        worktype="CM",
        wopriority="2",
        status="INPRG",
        reportdate="2026-03-04T08:15:00-05:00",
        changedate="2026-03-04T09:00:00",
        rowstamp="10",
    )
    row.update(values)
    return row


def frame(rows: list[dict[str, str | None]]) -> pd.DataFrame:
    data = pd.DataFrame(rows, dtype="string[pyarrow]")
    data["_source_file"] = "work_orders.csv"
    data["_source_line"] = range(2, len(rows) + 2)
    return data


def test_a_clean_row_becomes_a_canonical_work_order() -> None:
    result = map_work_orders(frame([work_order()]), SITES, source_system="cmms")
    assert result.rejected.empty
    row = result.mapped.iloc[0]
    assert row["work_order_id"] == "cmms:BEDFORD:WO-1"
    assert row["asset_id"] == "cmms:BEDFORD:P-1001"
    assert (row["work_type"], row["priority"], row["status"]) == (
        "corrective",
        "high",
        "in_progress",
    )
    assert row["created_at"] == pd.Timestamp("2026-03-04T13:15:00Z")
    # No offset on changedate: read in the site's zone (EST in March).
    assert row["updated_at"] == pd.Timestamp("2026-03-04T14:00:00Z")
    assert row["_source_line"] == 2


def test_the_newest_rowstamp_wins_among_duplicates() -> None:
    rows = [work_order(status="COMP", rowstamp="12"), work_order(status="APPR", rowstamp="11")]
    result = map_work_orders(frame(rows), SITES, source_system="cmms")
    assert result.mapped["status"].tolist() == ["completed"]
    assert result.mapped["version_token"].tolist() == ["12"]


def test_unmappable_rows_are_rejected_with_every_reason() -> None:
    rows = [work_order(), work_order(wonum="WO-2", status="DONE", targcompdate="31/02/2026")]
    result = map_work_orders(frame(rows), SITES, source_system="cmms")
    assert result.mapped["external_id"].tolist() == ["WO-1"]
    assert result.rejected.loc[1, "reject_field"] == "status, due_at"
    assert "'DONE'" in result.rejected.loc[1, "reject_reason"]
    assert "targcompdate '31/02/2026'" in result.rejected.loc[1, "reject_reason"]


def test_sample_assets_map_with_only_the_known_dirty_rows_rejected() -> None:
    sites = read_csv_with_lines(SAMPLES / "sites.csv")
    assets = read_csv_with_lines(SAMPLES / "assets.csv")
    result = map_assets(assets, sites, source_system="sample_cmms")
    rejected_keys = set(assets.loc[result.rejected.index, "assetnum"])
    dirty = pd.read_csv(SAMPLES / "dirty_rows.csv")
    dirty_assets = dirty[dirty["file"] == "assets.csv"]
    # Mapping catches code and date problems; value ranges are the model's job.
    mapping_fields = {"status", "installdate"}
    expected = set(dirty_assets.loc[dirty_assets["field"].isin(mapping_fields), "key"])
    assert rejected_keys == expected
    assert set(result.mapped["asset_type"]) <= {
        "pump",
        "compressor",
        "chiller",
        "hvac",
        "boiler",
        "conveyor",
        "motor",
        "fan",
        "cooling_tower",
    }
    assert result.mapped["updated_at"].notna().all()
