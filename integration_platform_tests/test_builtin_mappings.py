"""Built-in vendor mappings: each compiles and maps its golden vendor page to the golden rows.

Every spec under ``integration_platform/mapping/builtin/<vendor>/<entity>.yaml`` has a sample
page in the vendor's JSON shape (``golden/<vendor>/<entity>.json``) and the hand-checked result
(``golden/<vendor>/<entity>.expected.json``): the valid canonical rows, timestamps as ISO-8601
UTC text, and the rejected records with the field and a part of the reason.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from integration_platform.mapping.compiler import (
    CompiledMapping,
    MappingOutcome,
    MappingSpecError,
    compile_mapping,
    load_spec_file,
    parse_spec,
)
from integration_platform.mapping.locate import SourceMap
from integration_platform.mapping.samples import read_records
from integration_platform.mapping.spec import BUILTIN_DIR, builtin_names

GOLDEN = Path(__file__).resolve().parent / "golden"

BUILTINS = builtin_names()


def builtin_params() -> list[Any]:
    return [pytest.param(name, id=name) for name in BUILTINS]


def compiled_builtin(name: str) -> CompiledMapping:
    spec, source_map = load_spec_file(BUILTIN_DIR / f"{name}.yaml")
    return compile_mapping(spec, source_map=source_map)


def sample_records(path: Path, tmp_path: Path) -> pd.DataFrame:
    """The vendor page as ``read_records`` gives it (Fiix pages hold their records in
    ``objects``, Maximo in ``member``, OData in ``value`` or ``d.results``)."""
    del tmp_path
    return read_records(path)


def plain(value: Any) -> Any:
    """One cell as JSON: timestamps in ISO-8601 UTC, missing values as null."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.tz_convert("UTC").isoformat().replace("+00:00", "Z")
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return plain(value.item())
    return value


def canonical_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {column: plain(value) for column, value in row.items()}
        for row in frame.to_dict(orient="records")
    ]


def reject_rows(outcome: MappingOutcome, key: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "key": [plain(row[column]) for column in key],
            "reject_field": row["reject_field"],
            "reject_reason": row["reject_reason"],
        }
        for _, row in outcome.rejected.iterrows()
    ]


def run_golden(name: str, tmp_path: Path) -> tuple[CompiledMapping, MappingOutcome]:
    compiled = compiled_builtin(name)
    frame = sample_records(GOLDEN / f"{name}.json", tmp_path)
    return compiled, compiled.apply(frame)


def expected_of(name: str) -> dict[str, Any]:
    return json.loads((GOLDEN / f"{name}.expected.json").read_text(encoding="utf-8"))


def test_there_is_a_builtin_for_every_vendor_object() -> None:
    assert BUILTINS == [
        "dynamics/assets",
        "dynamics/maintenance_schedules",
        "dynamics/work_orders",
        "fiix/assets",
        "fiix/work_orders",
        "maximo/assets",
        "maximo/maintenance_schedules",
        "maximo/work_orders",
        "oracle/assets",
        "oracle/work_orders",
        "sap/equipment",
        "sap/maintenance_orders",
        "sap/maintenance_schedules",
        "upkeep/assets",
        "upkeep/maintenance_schedules",
        "upkeep/work_orders",
    ]


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_compiles_and_documents_its_source(name: str) -> None:
    compiled = compiled_builtin(name)
    spec = compiled.spec
    vendor, entity = name.split("/")
    assert spec.source == f"bronze/{vendor}/{entity}"
    assert spec.system == vendor
    assert spec.key, "a built-in names the columns identifying a record"
    assert spec.max_reject_ratio == 0.05
    assert isinstance(spec.source_columns, dict)
    blank = [column for column, text in spec.source_columns.items() if not text.strip()]
    assert not blank, f"source columns without a description: {blank}"
    assert (GOLDEN / f"{name}.json").is_file()
    assert (GOLDEN / f"{name}.expected.json").is_file()


@pytest.mark.parametrize("name", builtin_params())
def test_builtin_maps_its_golden_page(name: str, tmp_path: Path) -> None:
    compiled, outcome = run_golden(name, tmp_path)
    expected = expected_of(name)

    accounted = len(outcome.valid) + len(outcome.rejected) + outcome.filtered
    assert accounted + outcome.superseded == outcome.input_rows

    assert canonical_rows(outcome.valid) == expected["valid"]

    rejects = reject_rows(outcome, compiled.spec.key)
    assert [(row["key"], row["reject_field"]) for row in rejects] == [
        (row["key"], row["reject_field"]) for row in expected["rejected"]
    ]
    for found, wanted in zip(rejects, expected["rejected"], strict=True):
        assert wanted["reason_contains"] in found["reject_reason"], found


@pytest.mark.parametrize("name", builtin_params())
def test_golden_pages_exercise_dirty_records(name: str, tmp_path: Path) -> None:
    """Each golden page holds 10-30 records, 2-4 of them rejected, so the samples keep
    testing the code tables, date parsing and required fields."""
    _, outcome = run_golden(name, tmp_path)
    assert 10 <= outcome.input_rows <= 30
    assert 2 <= len(outcome.rejected) <= 5


def test_read_records_reads_a_fiix_page() -> None:
    frame = read_records(GOLDEN / "fiix" / "work_orders.json")
    assert len(frame) == 14


def extending_maximo(fields: dict[str, Any], **top: Any) -> CompiledMapping:
    document = {"extends": "maximo/work_orders", **top, "fields": fields}
    spec = parse_spec(document, SourceMap(file=None))
    return compile_mapping(spec)


MAXIMO_STATUS = {
    "source": "status",
    "map": {
        "WAPPR": "scheduled",
        "APPR": "scheduled",
        "WSCH": "scheduled",
        "INPRG": "in_progress",
        "REVIEW": "on_hold",
        "COMP": "completed",
        "CLOSE": "completed",
        "CAN": "cancelled",
    },
}


def test_a_user_mapping_extends_a_builtin(tmp_path: Path) -> None:
    compiled = extending_maximo(
        {"status": MAXIMO_STATUS, "schedule_id": None},
        source="bronze/maximo_plant1/work_orders",
        source_system="maximo_plant1",
    )
    assert "schedule_id" not in {field.name for field in compiled.fields}
    assert compiled.spec.key == ["siteid", "wonum"]

    frame = sample_records(GOLDEN / "maximo" / "work_orders.json", tmp_path)
    outcome = compiled.apply(frame)
    rows = {row["external_id"]: row for row in canonical_rows(outcome.valid)}

    # the site-specific status is known now; WMATL, not in the user's table, is rejected
    assert rows["1011"]["status"] == "on_hold"
    assert "1003" not in rows
    wmatl = outcome.rejected[outcome.rejected["wonum"] == "1003"]
    assert wmatl["reject_field"].tolist() == ["status"]
    # the removed field stays empty; ids follow the user's source system
    assert all(row["schedule_id"] is None for row in rows.values())
    assert rows["1001"]["work_order_id"] == "maximo_plant1:BEDFORD:1001"
    assert rows["1001"]["source_system"] == "maximo_plant1"
    # everything else is the built-in's mapping
    golden = {row["external_id"]: row for row in expected_of("maximo/work_orders")["valid"]}
    unchanged = ("title", "work_type", "priority", "created_at", "completed_at", "cost_amount")
    for wonum in ("1001", "1002", "T2002"):
        assert {f: rows[wonum][f] for f in unchanged} == {f: golden[wonum][f] for f in unchanged}


def test_extending_an_unknown_builtin_names_the_known_ones() -> None:
    with pytest.raises(MappingSpecError) as error:
        parse_spec({"extends": "maximo/workorders", "fields": {}}, SourceMap(file=None))
    assert "maximo/work_orders" in str(error.value)


def test_an_override_is_checked_like_any_spec() -> None:
    with pytest.raises(MappingSpecError) as error:
        extending_maximo({"status": {"source": "statuss", "map": {"APPR": "scheduled"}}})
    assert "unknown source field 'statuss'" in str(error.value)


def test_sap_keeps_the_newest_version_of_an_order(tmp_path: Path) -> None:
    page = json.loads((GOLDEN / "sap" / "maintenance_orders.json").read_text(encoding="utf-8"))
    newer = page["d"]["results"][1]
    older = {**newer, "SystemStatusText": "CRTD PRC", "LastChangeDateTime": "/Date(1740900000000)/"}
    path = tmp_path / "orders.json"
    path.write_text(json.dumps({"d": {"results": [newer, older]}}), encoding="utf-8")
    outcome = compiled_builtin("sap/maintenance_orders").apply(read_records(path))
    assert outcome.superseded == 1
    assert outcome.valid["status"].tolist() == ["in_progress"]
