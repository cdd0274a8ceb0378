"""build_model_check: a blocking pandera check on an asset's dataframe, evidence as metadata."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from integration_platform.model import Asset, WorkOrder
from integration_platform.model.checks import build_model_check, model_check_result
from integration_platform_tests.test_model import GOOD_ROWS

ASSET_KEY = dg.AssetKey(["silver", "assets"])


def asset_returning(df: pd.DataFrame) -> dg.AssetsDefinition:
    @dg.asset(key=ASSET_KEY)
    def assets() -> pd.DataFrame:
        return df

    return assets


def run(
    df: pd.DataFrame, check: dg.AssetChecksDefinition
) -> tuple[dg.ExecuteInProcessResult, dg.AssetCheckEvaluation]:
    result = dg.materialize(
        [asset_returning(df), check],
        resources={"io_manager": dg.mem_io_manager},
        raise_on_error=False,
    )
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 1
    return result, evaluations[0]


def assets(*changes: dict[str, object]) -> pd.DataFrame:
    base = GOOD_ROWS["assets"]
    return pd.DataFrame([{**base, "asset_id": f"AST-{i}", **c} for i, c in enumerate(changes)])


def test_check_passes_on_valid_data() -> None:
    check = build_model_check(ASSET_KEY, Asset)
    result, evaluation = run(assets({}, {"condition": None}), check)
    assert result.success
    assert evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["rows"].value == 2
    assert evaluation.metadata["failed_rows"].value == 0
    assert evaluation.asset_key == ASSET_KEY
    assert evaluation.check_name == "asset_schema"


def test_failing_blocking_check_fails_the_run_with_failure_cases() -> None:
    check = build_model_check("silver/assets", Asset)  # key path as a string
    df = assets({}, {"status": "broken"}, {"currency": "EURO"})
    result, evaluation = run(df, check)
    assert not result.success  # blocking + ERROR stops downstream work
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["rows"].value == 3
    assert evaluation.metadata["failed_rows"].value == 2
    table = evaluation.metadata["failure_cases"].value
    assert "| row | field | value | reason |" in table
    assert (
        "| 1 | status | broken | status: 'broken' is not one of operating, standby, "
        "under_maintenance, out_of_service, decommissioned |"
    ) in table
    assert "| 2 | currency | EURO | currency: 'EURO' is not an ISO 4217 currency code" in table


def test_non_blocking_check_reports_without_failing_the_run() -> None:
    check = build_model_check(["silver", "assets"], Asset, blocking=False, name="asset_rows")
    result, evaluation = run(assets({"asset_type": "Pump"}), check)
    assert result.success
    assert not evaluation.passed
    assert evaluation.check_name == "asset_rows"


def test_failure_cases_are_capped_at_twenty() -> None:
    check = build_model_check(ASSET_KEY, Asset, blocking=False)
    _, evaluation = run(assets(*({"status": "broken"} for _ in range(25))), check)
    table = evaluation.metadata["failure_cases"].value
    assert evaluation.metadata["failed_rows"].value == 25
    assert table.count("is not one of operating") == 20
    assert "5 more failure case(s) not shown." in table


def test_missing_column_fails_the_check_with_the_reason() -> None:
    check = build_model_check(ASSET_KEY, Asset, blocking=False)
    _, evaluation = run(assets({}).drop(columns=["name"]), check)
    assert not evaluation.passed
    assert evaluation.metadata["failed_rows"].value == 1
    assert "the input has no column 'name'" in evaluation.metadata["failure_cases"].value


def test_check_definition_carries_name_blocking_and_description() -> None:
    check = build_model_check(
        dg.AssetKey(["silver", "work_orders"]), WorkOrder, description="Work orders fit."
    )
    spec = next(iter(check.check_specs))
    assert spec.name == "work_order_schema"
    assert spec.asset_key == dg.AssetKey(["silver", "work_orders"])
    assert spec.blocking
    assert spec.description == "Work orders fit."


def test_check_rejects_a_value_that_is_not_a_dataframe() -> None:
    @dg.asset(key=ASSET_KEY)
    def not_a_frame() -> list[int]:
        return [1, 2]

    check = build_model_check(ASSET_KEY, Asset)
    with pytest.raises(dg.DagsterTypeCheckDidNotPass, match="DataFrame"):
        dg.materialize([not_a_frame, check], resources={"io_manager": dg.mem_io_manager})
    with pytest.raises(TypeError, match="pandas DataFrame"):
        model_check_result([1, 2], Asset)
