"""Dagster asset checks that validate an asset's dataframe against a canonical model.

Following PUDL's pattern, pandera runs inside an asset check built by a factory rather than
inside the asset: the asset materializes, the check loads it through the IO manager, and a
blocking check with ERROR severity stops downstream assets from consuming bad data. The
failure cases travel as check metadata, so the Dagster UI shows which rows failed and why.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import dagster as dg
import pandas as pd
import pandera.pandas as pa

from integration_platform.model.validation import ModelSchemaError, validate_rows

MAX_FAILURE_CASES_SHOWN = 20

CoercibleToAssetKey = dg.AssetKey | str | Sequence[str]


def build_model_check(
    asset_key: CoercibleToAssetKey | dg.AssetsDefinition,
    model: type[pa.DataFrameModel],
    *,
    name: str | None = None,
    blocking: bool = True,
    description: str | None = None,
) -> dg.AssetChecksDefinition:
    """An asset check that validates the asset's value (a pandas DataFrame) against ``model``.

    ``asset_key`` may be an ``AssetKey``, a key path such as ``"silver/work_orders"`` or
    ``["silver", "work_orders"]``, or the asset itself. The check is named
    ``<model>_schema`` (e.g. ``work_order_schema``) unless ``name`` is given. It passes when
    every row fits the model; otherwise its metadata lists up to
    ``MAX_FAILURE_CASES_SHOWN`` failure cases. With ``blocking`` (the default) a failure
    stops downstream materializations in the same run.
    """
    target: dg.AssetKey | dg.AssetsDefinition
    if isinstance(asset_key, dg.AssetsDefinition):
        target = asset_key
    elif isinstance(asset_key, str):
        target = dg.AssetKey.from_user_string(asset_key)
    else:
        target = dg.AssetKey.from_coercible(asset_key)
    model_name = model.__name__
    check_name = name or f"{_snake_case(model_name)}_schema"

    @dg.asset_check(
        asset=target,
        name=check_name,
        blocking=blocking,
        description=description
        or f"Every row fits the canonical {model_name} model (types, allowed values, rules).",
    )
    def _model_check(data: pd.DataFrame) -> dg.AssetCheckResult:
        return model_check_result(data, model)

    return _model_check


def model_check_result(data: object, model: type[pa.DataFrameModel]) -> dg.AssetCheckResult:
    """Validate ``data`` and express the outcome as an ERROR-severity check result."""
    model_name = model.__name__
    if not isinstance(data, pd.DataFrame):
        raise TypeError(
            f"The {model_name} check expects the asset to load as a pandas DataFrame, got "
            f"{type(data).__name__}; use an IO manager that returns pandas."
        )
    rows = len(data)
    try:
        result = validate_rows(data, model)
    except ModelSchemaError as exc:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            description=str(exc),
            metadata={
                "model": model_name,
                "rows": rows,
                "failed_rows": rows,
                "failure_cases": dg.MetadataValue.md(f"**Not validated:** {_md_cell(exc)}"),
            },
        )
    failed_rows = len(result.rejected)
    return dg.AssetCheckResult(
        passed=failed_rows == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        description=None
        if failed_rows == 0
        else f"{failed_rows} of {rows} rows do not fit the {model_name} model.",
        metadata={
            "model": model_name,
            "rows": rows,
            "failed_rows": failed_rows,
            "failure_cases": dg.MetadataValue.md(failure_cases_markdown(result.failures)),
        },
    )


def failure_cases_markdown(failures: pd.DataFrame, limit: int = MAX_FAILURE_CASES_SHOWN) -> str:
    """A markdown table of the first ``limit`` failures (row, field, value, reason)."""
    if failures.empty:
        return "No failure cases."
    lines = ["| row | field | value | reason |", "| --- | --- | --- | --- |"]
    for case in failures.head(limit).itertuples(index=False):
        value = "" if case.value is None or _is_na(case.value) else case.value
        lines.append(
            f"| {_md_cell(case.row)} | {_md_cell(case.field)} | {_md_cell(value)} "
            f"| {_md_cell(case.reason)} |"
        )
    if len(failures) > limit:
        lines.append(f"\n{len(failures) - limit} more failure case(s) not shown.")
    return "\n".join(lines)


def _md_cell(value: object) -> str:
    text = str(value).replace("\r", " ").replace("\n", " ")
    return text.replace("|", "\\|")


def _is_na(value: object) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
