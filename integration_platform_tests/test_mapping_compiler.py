"""Mapping specs: errors found at load time with file, line and field; rows mapped or rejected."""

from pathlib import Path

import pandas as pd
import pytest

from integration_platform.mapping.compiler import (
    MappingRuntimeError,
    MappingSpecError,
    compile_mapping,
    load_spec_file,
)

HEADER = """\
type: integration_platform.components.MappingComponent
attributes:
  source: bronze/plant/work_orders
  entity: work_orders
  key: [wo]
  source_columns: [wo, site, title, kind, prio, opened, changed, hours, temp_f, parent]
  fields:
"""
VALID_FIELDS = """\
    work_order_id: {formula: "concat('plant:', wo)"}
    external_id: wo
    site_id: site
    title: title
    work_type: {source: kind, map: {PM: preventive, CM: corrective}}
    priority: {source: prio, map: {"1": critical, "2": high, "3": medium, "4": low}}
    status: {value: scheduled}
    created_at: {source: opened, datetime: {timezone: Europe/Berlin}}
    updated_at: {source: changed, datetime: {format: epoch_ms}}
"""


def write(tmp_path: Path, fields: str, header: str = HEADER) -> Path:
    path = tmp_path / "defs.yaml"
    path.write_text(header + fields, encoding="utf-8")
    return path


def problems_of(path: Path) -> str:
    spec, source_map = load_spec_file(path)
    with pytest.raises(MappingSpecError) as error:
        compile_mapping(spec, source_map=source_map)
    return str(error.value)


def test_a_valid_spec_compiles(tmp_path: Path) -> None:
    spec, source_map = load_spec_file(write(tmp_path, VALID_FIELDS))
    compiled = compile_mapping(spec, source_map=source_map)
    assert [field.name for field in compiled.fields][:1] == ["work_order_id"] or compiled.fields


@pytest.mark.parametrize(
    ("extra", "line", "expected"),
    [
        (
            "    titel: title\n",
            17,
            "field titel: WorkOrder has no field 'titel' (did you mean title?)",
        ),
        (
            "    description: {source: titl}\n",
            17,
            "unknown source field 'titl' (did you mean title?)",
        ),
        ("    labor_hours: {formula: 'hours * (2'}\n", 17, "bad formula 'hours * (2'"),
        (
            "    labor_hours: {source: opened, datetime: {}}\n",
            17,
            "type clash: labor_hours is number",
        ),
        ("    labor_hours: {source: hours, transforms: [trimm]}\n", 17, "trimm"),
        ("    labor_hours: {source: temp_f, unit: {from: degF, to: bar}}\n", 17, "degF"),
    ],
)
def test_spec_errors_name_file_line_and_field(
    tmp_path: Path, extra: str, line: int, expected: str
) -> None:
    path = write(tmp_path, VALID_FIELDS + extra)
    message = problems_of(path)
    assert f"{path}, line {line}" in message
    assert expected in message


def test_formula_fields_in_a_cycle_are_reported(tmp_path: Path) -> None:
    cycle = (
        "    labor_hours: {formula: 'target.cost_amount / 85'}\n"
        "    cost_amount: {formula: 'target.labor_hours * 85'}\n"
    )
    message = problems_of(write(tmp_path, VALID_FIELDS + cycle))
    assert "cycle" in message
    assert "labor_hours" in message and "cost_amount" in message


def test_required_model_fields_must_be_mapped(tmp_path: Path) -> None:
    fields = VALID_FIELDS.replace("    title: title\n", "")
    message = problems_of(write(tmp_path, fields))
    assert "field title: required by WorkOrder but not mapped" in message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    extra = "    titel: title\n    description: {source: nope}\n"
    message = problems_of(write(tmp_path, VALID_FIELDS + extra))
    assert "titel" in message and "nope" in message


def test_shape_errors_name_the_line_of_the_bad_key(tmp_path: Path) -> None:
    path = write(tmp_path, VALID_FIELDS + "    labor_hours: {source: hours, cats: float}\n")
    with pytest.raises(MappingSpecError) as error:
        load_spec_file(path)
    assert f"{path}, line 17" in str(error.value)
    assert "cats" in str(error.value)


def test_unknown_entity_suggests_the_close_one(tmp_path: Path) -> None:
    path = write(
        tmp_path, VALID_FIELDS, header=HEADER.replace("entity: work_orders", "entity: workorders")
    )
    assert "did you mean work_orders?" in problems_of(path)


def records(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows).astype("string[pyarrow]")


def row(**values: str | None) -> dict:
    base = {
        "wo": "1",
        "site": "HAM",
        "title": "Seal leak",
        "kind": "CM",
        "prio": "2",
        "opened": "2026-03-01T08:00:00",
        "changed": "1772352000000",
        "hours": "2.5",
        "temp_f": "212",
        "parent": None,
    }
    base.update(values)
    return base


def test_rows_are_mapped_or_rejected_and_none_are_lost(tmp_path: Path) -> None:
    extra = (
        "    labor_hours:\n"
        "      - when: \"kind == 'PM'\"\n"
        "        value: 1.0\n"
        "      - source: hours\n"
        "        cast: float\n"
    )
    spec, source_map = load_spec_file(write(tmp_path, VALID_FIELDS + extra))
    compiled = compile_mapping(spec, source_map=source_map)
    frame = records(
        [
            row(),
            row(wo="2", kind="PM", hours="bogus"),
            row(wo="3", prio="9"),
            row(wo="4", opened="yesterday", hours="x"),
        ]
    )
    outcome = compiled.apply(frame)
    assert len(outcome.valid) + len(outcome.rejected) + outcome.filtered == len(frame)
    valid = outcome.valid.set_index("external_id")
    # Berlin is UTC+1 in March.
    assert valid.loc["1", "created_at"] == pd.Timestamp("2026-03-01T07:00:00Z")
    assert valid.loc["1", "labor_hours"] == 2.5
    # The `when` rule wins for PM work, so the unreadable hours are never read.
    assert valid.loc["2", "labor_hours"] == 1.0
    assert valid.loc["1", "source_system"] == "plant"
    rejected = outcome.rejected.set_index("wo")
    assert set(rejected.index) == {"3", "4"}
    assert "priority" in rejected.loc["3", "reject_field"]
    assert rejected.loc["4", "reject_field"] == "created_at, labor_hours"
    assert "'yesterday'" in rejected.loc["4", "reject_reason"]


def test_filter_and_latest_version_are_counted_not_lost(tmp_path: Path) -> None:
    header = HEADER.replace(
        "  key: [wo]\n", "  key: [wo]\n  latest_by: changed\n  filter: \"site != 'OLD'\"\n"
    )
    spec, source_map = load_spec_file(write(tmp_path, VALID_FIELDS, header=header))
    compiled = compile_mapping(spec, source_map=source_map)
    frame = records(
        [
            row(changed="1772352000000", title="old version"),
            row(changed="1772352999999", title="new version"),
            row(wo="2", site="OLD"),
        ]
    )
    outcome = compiled.apply(frame)
    assert outcome.superseded == 1 and outcome.filtered == 1
    assert outcome.valid["title"].tolist() == ["new version"]


def test_a_declared_column_missing_from_the_data_fails_the_batch(tmp_path: Path) -> None:
    spec, source_map = load_spec_file(write(tmp_path, VALID_FIELDS))
    compiled = compile_mapping(spec, source_map=source_map)
    with pytest.raises(MappingRuntimeError, match=r"has no column.*prio"):
        compiled.apply(records([row()]).drop(columns="prio"))


def test_lookups_and_nested_paths(tmp_path: Path) -> None:
    header = HEADER.replace(
        "  fields:\n",
        "  lookups:\n"
        "    site_zone: {asset: bronze/plant/sites, match: site, key: code, value: zone,"
        " required: true}\n"
        "  fields:\n",
    ).replace("parent]", "parent, meta]")
    fields = (
        VALID_FIELDS.replace("{timezone: Europe/Berlin}", "{timezone_from: site_zone}")
        + "    assigned_to: meta.crew.lead\n"
    )
    spec, source_map = load_spec_file(write(tmp_path, fields, header=header))
    compiled = compile_mapping(spec, source_map=source_map)
    frame = records([row(), row(wo="2", site="NYC"), row(wo="3", site="MARS")])
    frame["meta"] = [{"crew": {"lead": "Ana"}}, {"crew": {}}, None]
    sites = pd.DataFrame({"code": ["HAM", "NYC"], "zone": ["Europe/Berlin", "America/New_York"]})
    outcome = compiled.apply(frame, {"site_zone": sites})
    valid = outcome.valid.set_index("external_id")
    assert valid.loc["2", "created_at"] == pd.Timestamp("2026-03-01T13:00:00Z")
    assert valid.loc["1", "assigned_to"] == "Ana"
    assert pd.isna(valid.loc["2", "assigned_to"])
    assert "'MARS' not found" in outcome.rejected.set_index("wo").loc["3", "reject_reason"]


def test_absent_columns_read_as_empty_when_the_spec_says_so(tmp_path: Path) -> None:
    header = HEADER.replace("  key: [wo]\n", "  key: [wo]\n  missing_columns: empty\n")
    extra = "    assigned_to: parent\n"
    spec, source_map = load_spec_file(write(tmp_path, VALID_FIELDS + extra, header=header))
    compiled = compile_mapping(spec, source_map=source_map)
    outcome = compiled.apply(records([row()]).drop(columns="parent"))
    assert len(outcome.valid) == 1
    assert pd.isna(outcome.valid["assigned_to"][0])


def test_column_names_with_dots_are_columns_not_paths(tmp_path: Path) -> None:
    header = HEADER.replace("parent]", "parent, '@odata.etag']")
    extra = "    version_token: '@odata.etag'\n"
    spec, source_map = load_spec_file(write(tmp_path, VALID_FIELDS + extra, header=header))
    frame = records([row()])
    frame["@odata.etag"] = pd.array(['W/"4711"'], dtype="string[pyarrow]")
    outcome = compile_mapping(spec, source_map=source_map).apply(frame)
    assert outcome.valid["version_token"].tolist() == ['W/"4711"']


def test_latest_by_ranks_sap_date_stamps(tmp_path: Path) -> None:
    header = HEADER.replace("  key: [wo]\n", "  key: [wo]\n  latest_by: changed\n")
    fields = VALID_FIELDS.replace("{format: epoch_ms}", "{format: sap}")
    spec, source_map = load_spec_file(write(tmp_path, fields, header=header))
    frame = records(
        [
            row(changed="/Date(1772352999000)/", title="newer"),
            row(changed="/Date(1772352000000)/", title="older"),
        ]
    )
    outcome = compile_mapping(spec, source_map=source_map).apply(frame)
    assert outcome.valid["title"].tolist() == ["newer"]
    assert outcome.superseded == 1
