"""validate_rows: split a frame into valid rows and quarantined rows with readable reasons."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from integration_platform.model import (
    REJECT_FIELD,
    REJECT_REASON,
    Asset,
    ModelSchemaError,
    SensorReading,
    ValidationResult,
    WorkOrder,
    column_descriptions,
    table_schema,
    validate_rows,
)
from integration_platform_tests.test_model import GOOD_ROWS


def work_orders(*changes: dict[str, object], index: list[object] | None = None) -> pd.DataFrame:
    base = GOOD_ROWS["work_orders"]
    rows = [{**base, "work_order_id": f"WO-{i}", **change} for i, change in enumerate(changes)]
    return pd.DataFrame(rows, index=index)


@pytest.fixture
def mixed() -> pd.DataFrame:
    """Five work orders from a CMMS extract: two good, three with typical mistakes."""
    df = work_orders(
        {},
        {"priority": "urgent", "completed_at": "2024-03-01T07:00:00Z"},
        {"sla_class": "gold"},
        {"cost_amount": -5.0, "currency": "EURO", "created_at": "2024-03-01 08:00"},
        {"external_id": None, "status": "completed", "completed_at": None},
        index=[100, 101, 102, 103, 104],
    )
    df["sla_class"] = ["silver", "bronze", "gold", "silver", None]  # a source-only column
    return df


def test_mixed_frame_is_split_with_exact_rows_and_reasons(mixed: pd.DataFrame) -> None:
    result = validate_rows(mixed, WorkOrder)

    assert isinstance(result, ValidationResult)
    assert result.rejected.index.tolist() == [101, 103, 104]
    assert result.rejected[REJECT_FIELD].tolist() == [
        "priority; completed_at",
        "created_at; cost_amount; currency",
        "external_id; completed_at",
    ]
    assert result.rejected[REJECT_REASON].tolist() == [
        "priority: 'urgent' is not one of critical, high, medium, low; "
        "completed_at: before started_at",
        "created_at: '2024-03-01 08:00' has no time zone (add 'Z' for UTC or an offset such "
        "as +01:00); cost_amount: -5.0 is negative; "
        "currency: 'EURO' is not an ISO 4217 currency code (e.g. EUR, USD)",
        "external_id: missing; completed_at: missing for a completed work order",
    ]
    assert result.valid["work_order_id"].tolist() == ["WO-0", "WO-2"]
    assert result.valid.index.tolist() == [0, 1]
    assert not result.passed


def test_rejected_rows_are_the_input_rows_unchanged(mixed: pd.DataFrame) -> None:
    before = mixed.copy(deep=True)
    rejected = validate_rows(mixed, WorkOrder).rejected
    pd.testing.assert_frame_equal(mixed, before)  # the caller's frame is not modified
    assert list(rejected.columns) == [*mixed.columns, REJECT_FIELD, REJECT_REASON]
    original = mixed.loc[[101, 103, 104]]
    pd.testing.assert_frame_equal(rejected[list(mixed.columns)], original)
    assert rejected.loc[103, "created_at"] == "2024-03-01 08:00"  # not coerced


def test_valid_rows_are_coerced_and_keep_extra_columns(mixed: pd.DataFrame) -> None:
    valid = validate_rows(mixed, WorkOrder).valid
    columns = list(WorkOrder.to_schema().columns)
    assert list(valid.columns) == [*columns, "sla_class"]
    assert valid["sla_class"].tolist() == ["silver", "gold"]
    assert str(valid["created_at"].dtype) == "datetime64[ns, UTC]"
    assert valid["priority"].dtype == pd.StringDtype("pyarrow")
    assert valid["labor_hours"].dtype == np.float64
    assert valid["started_at"].iloc[0] == pd.Timestamp("2024-03-01T08:30:00Z")
    assert WorkOrder.validate(valid) is not None  # the output is itself valid


def test_failures_list_every_problem_with_the_input_index(mixed: pd.DataFrame) -> None:
    failures = validate_rows(mixed, WorkOrder).failures
    assert list(failures.columns) == ["row", "field", "value", "reason"]
    assert failures["row"].tolist() == [101, 101, 103, 103, 103, 104, 104]
    assert failures.loc[0, "value"] == "urgent"
    assert failures.loc[3, "value"] == -5.0


def test_duplicate_and_non_range_index_labels_are_handled() -> None:
    df = work_orders({}, {"priority": "urgent"}, {}, index=["a", "a", "b"])
    result = validate_rows(df, WorkOrder)
    assert result.rejected.index.tolist() == ["a"]
    assert result.rejected["priority"].tolist() == ["urgent"]
    assert result.valid["work_order_id"].tolist() == ["WO-0", "WO-2"]


def test_duplicate_platform_ids_reject_every_copy() -> None:
    df = work_orders({}, {}, {})
    df.loc[2, "work_order_id"] = "WO-0"
    result = validate_rows(df, WorkOrder)
    assert result.rejected.index.tolist() == [0, 2]
    assert set(result.rejected[REJECT_REASON]) == {"work_order_id: 'WO-0' appears more than once"}


def test_all_problems_of_a_row_are_reported_even_when_a_value_cannot_be_converted() -> None:
    df = work_orders({"cost_amount": "n/a", "priority": "urgent", "labor_hours": -1})
    reason = validate_rows(df, WorkOrder).rejected[REJECT_REASON].iloc[0]
    assert reason == (
        "priority: 'urgent' is not one of critical, high, medium, low; "
        "labor_hours: -1.0 is negative; cost_amount: 'n/a' is not a number"
    )


def test_an_unreadable_value_is_reported_once() -> None:
    df = work_orders({"completed_at": "yesterday"})  # status is completed
    rejected = validate_rows(df, WorkOrder).rejected
    assert rejected[REJECT_REASON].tolist() == [
        "completed_at: 'yesterday' is not an ISO 8601 timestamp (e.g. 2024-03-01T08:30:00Z)"
    ]


def test_importing_the_models_does_not_import_dagster() -> None:
    code = "import sys, integration_platform.model; print('dagster' in sys.modules)"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "False"


def test_missing_required_column_raises_a_clear_error() -> None:
    df = work_orders({}).drop(columns=["title", "created_at"])
    with pytest.raises(ModelSchemaError) as excinfo:
        validate_rows(df, WorkOrder)
    error = excinfo.value
    assert isinstance(error, ValueError)
    assert error.model_name == "WorkOrder"
    assert error.missing_columns == ["title", "created_at"]
    message = str(error)
    assert "WorkOrder" in message and "'title'" in message and "'created_at'" in message
    assert "mapping" in message


def test_missing_nullable_columns_are_added_as_nulls() -> None:
    df = work_orders({}).drop(columns=["version_token", "description", "labor_hours"])
    result = validate_rows(df, WorkOrder)
    assert result.passed
    valid = result.valid
    assert valid["version_token"].isna().all()
    assert valid["version_token"].dtype == pd.StringDtype("pyarrow")
    assert valid["labor_hours"].dtype == np.float64


@pytest.mark.parametrize(
    "empty",
    [
        pytest.param(lambda: work_orders({}).iloc[:0], id="no rows"),
        pytest.param(pd.DataFrame, id="no rows, no columns"),
    ],
)
def test_empty_input_validates(empty: object) -> None:
    result = validate_rows(empty(), WorkOrder)  # type: ignore[operator]
    assert result.valid.empty and result.rejected.empty and result.passed
    assert list(result.valid.columns) == list(WorkOrder.to_schema().columns)
    assert str(result.valid["created_at"].dtype) == "datetime64[ns, UTC]"
    assert REJECT_REASON in result.rejected.columns


def test_not_a_dataframe_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="pandas DataFrame"):
        validate_rows([{"work_order_id": "x"}], WorkOrder)  # type: ignore[arg-type]


def test_large_frame_with_few_bad_rows() -> None:
    n = 50_000
    ts = pd.Timestamp("2024-03-01", tz="UTC") + pd.to_timedelta(np.arange(n), unit="s")
    readings = pd.DataFrame(
        {
            "device_id": "gw-line2",
            "sensor_id": "p101-de-vib",
            "sensor_type": "vibration",
            "ts": ts.astype(str),
            "value": np.linspace(0, 10, n),
            "unit": "mm/s",
            "quality": "good",
            "source_protocol": "mqtt",
            "ingested_at": ts,
        }
    )
    readings.loc[[17, 40_001], "quality"] = "excellent"
    readings.loc[123, "ts"] = "2024-03-01 00:02:03"
    result = validate_rows(readings, SensorReading)
    assert result.rejected.index.tolist() == [17, 123, 40_001]
    assert len(result.valid) == n - 3
    assert result.valid["ts"].iloc[0] == pd.Timestamp("2024-03-01T00:00:00Z")


def test_column_descriptions_cover_every_column() -> None:
    descriptions = column_descriptions(WorkOrder)
    assert list(descriptions) == list(WorkOrder.to_schema().columns)
    assert "ISO 4217" in descriptions["currency"]
    assert all(descriptions.values())


def test_table_schema_for_dagster_metadata() -> None:
    schema = table_schema(Asset)
    assert isinstance(schema, dg.TableSchema)
    by_name = {column.name: column for column in schema.columns}
    assert list(by_name) == list(Asset.to_schema().columns)
    assert by_name["asset_id"].type == "string"
    assert by_name["asset_id"].constraints.unique
    assert not by_name["asset_id"].constraints.nullable
    assert by_name["installed_at"].type == "timestamp (UTC)"
    assert by_name["installed_at"].constraints.nullable
    assert by_name["purchase_cost"].type == "float"
    assert ">= 0" in by_name["purchase_cost"].constraints.other
    assert by_name["currency"].constraints.other == ["ISO 4217 currency code"]
    assert by_name["status"].constraints.other == [
        "one of: operating, standby, under_maintenance, out_of_service, decommissioned"
    ]
    assert by_name["name"].description
    assert "currency: missing for purchase_cost" in schema.constraints.other
    # usable as the metadata value Dagster expects
    assert dg.MetadataValue.table_schema(schema).schema == schema
