"""Split a dataframe into rows that fit a canonical model and rows to quarantine.

The platform never fails a whole batch for a few bad rows and never drops rows silently:
:func:`validate_rows` returns the valid rows, coerced to the model's types, and the rejected
rows exactly as they came in, each with the field(s) and reason(s) a maintenance engineer needs
to fix it at the source. Problems that are not about rows (a required column missing) raise
:class:`ModelSchemaError`, because no row could pass.

The module also renders a model as Dagster column metadata (:func:`table_schema`); Dagster is
imported only there, so the rest stays usable without it.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
from pandera.api.checks import Check
from pandera.engines import pandas_engine
from pandera.errors import ParserError, SchemaErrors

from integration_platform.model.base import (
    COUNTRY_CODE,
    CURRENCY_VALUES,
    LOWER_IDENTIFIER,
    NON_BLANK,
    STRING_DTYPE,
    UTC_DTYPE,
    UtcTimestamp,
    coerce_utc,
    describe_timestamp_problem,
)

if TYPE_CHECKING:
    import dagster as dg

REJECT_FIELD = "reject_field"
REJECT_REASON = "reject_reason"
FAILURE_COLUMNS = ["row", "field", "value", "reason"]

_PATTERN_TEXT = {
    NON_BLANK: "blank",
    LOWER_IDENTIFIER: "must be a lowercase code of letters, digits and '_' (e.g. 'pump')",
    COUNTRY_CODE: "is not an ISO 3166-1 alpha-2 country code (e.g. DE, US)",
}
_MAX_SHOWN = 60


class ModelSchemaError(ValueError):
    """The input as a whole does not fit the model (e.g. required columns are missing)."""

    def __init__(self, message: str, *, model_name: str, missing_columns: Iterable[str] = ()):
        super().__init__(message)
        self.model_name = model_name
        self.missing_columns = list(missing_columns)


@dataclasses.dataclass(frozen=True)
class ValidationResult:
    """Outcome of :func:`validate_rows`.

    ``valid``: the rows that passed, coerced to the model's dtypes, model columns first (in
    model order) then any extra input columns, index reset. ``rejected``: the failing input
    rows unchanged (original index and values) plus ``reject_field`` and ``reject_reason``.
    ``failures``: one line per problem found (``row`` is the input's index label), the
    evidence shown in check metadata and quarantine reports.
    """

    valid: pd.DataFrame
    rejected: pd.DataFrame
    failures: pd.DataFrame

    @property
    def passed(self) -> bool:
        """True when no row was rejected."""
        return self.rejected.empty


def validate_rows(df: pd.DataFrame, model: type[pa.DataFrameModel]) -> ValidationResult:
    """Validate ``df`` against ``model`` row by row; see :class:`ValidationResult`.

    Values that cannot be converted to the column's type (``'abc'`` for a number, a timestamp
    without a time zone) reject their row like any other failed rule. Nullable model columns
    absent from the input are added as nulls. Raises :class:`ModelSchemaError` when a required
    column is missing from a non-empty frame; an empty frame always validates.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"validate_rows expects a pandas DataFrame, got {type(df).__name__}")
    schema = model.to_schema()
    model_name = model.__name__
    columns = schema.columns
    missing = [
        name
        for name, column in columns.items()
        if name not in df.columns
        and column.required
        and not (column.nullable and schema.add_missing_columns)
    ]
    if missing and len(df):
        raise ModelSchemaError(
            f"{model_name}: the input has no column {', '.join(repr(m) for m in missing)}. "
            f"These columns are required by the {model_name} model; map them in the mapping "
            "that feeds this table (or rename the source columns to match). "
            f"Expected columns: {', '.join(columns)}.",
            model_name=model_name,
            missing_columns=missing,
        )

    index = pd.RangeIndex(len(df))
    failures: list[tuple[int, int, str, Any, str]] = []  # (position, order, field, value, reason)
    coerce_failed: set[tuple[int, str]] = set()
    field_order = {name: i for i, name in enumerate(columns)}

    data: dict[str, pd.Series] = {}
    added: dict[str, Any] = {}  # all-null columns added here: made anew, never filtered
    for name, column in columns.items():
        if name not in df.columns:
            nulls = _nulls(column.dtype, index)
            if nulls is not None:
                data[name] = nulls
                added[name] = column.dtype
                continue
            raw = pd.Series(None, index=index, dtype=object)
        else:
            raw = pd.Series(df[name].array, index=index, name=name, copy=False)
        coerced, failed = _coerce(raw, column.dtype)
        for position in np.flatnonzero(failed.to_numpy()):
            value = raw.iloc[position]
            failures.append(
                (
                    int(position),
                    field_order[name] * 1000,
                    name,
                    value,
                    f"{name}: {_show(value)} {_coercion_problem(value, column.dtype)}",
                )
            )
            coerce_failed.add((int(position), name))
        data[name] = coerced
    for name in df.columns:
        if name not in columns:
            data[name] = pd.Series(df[name].array, index=index, name=name, copy=False)
    # Every model column now has the model's dtype, so pandera only checks (coercing again
    # would copy every column for nothing).
    work = pd.DataFrame(data, index=index)

    # The model's rules are screened with vectorized kernels first; pandera then checks only
    # the rows they flag, so its failure cases (and so the reasons) are exactly those of a
    # full run at a fraction of the cost. A schema or frame the screen does not cover is
    # checked by pandera as a whole.
    suspects = _suspect_rows(work, model)
    checked = work if suspects is None else work.iloc[np.flatnonzero(suspects)]
    if suspects is None or len(checked):
        try:
            _checking_schema(model).validate(checked, lazy=True, inplace=True)
        except SchemaErrors as exc:
            failures.extend(_row_failures(exc.failure_cases, schema, model_name, coerce_failed))
    del checked

    if not failures:
        return ValidationResult(
            valid=work,
            rejected=_rejected_frame(df.iloc[[]], [], []),
            failures=pd.DataFrame(columns=FAILURE_COLUMNS),
        )

    table = pd.DataFrame(failures, columns=["position", "order", "field", "value", "reason"])
    table = table.sort_values(["position", "order"], kind="stable")
    grouped = table.groupby("position", sort=True)
    positions = list(grouped.groups)
    reasons = grouped["reason"].agg(lambda r: "; ".join(dict.fromkeys(r)))
    fields = grouped["field"].agg(lambda f: "; ".join(dict.fromkeys(f)))
    rejected = _rejected_frame(df.iloc[positions], fields.tolist(), reasons.tolist())
    report = pd.DataFrame(
        {
            "row": df.index[table["position"].to_numpy()],
            "field": table["field"].to_numpy(),
            "value": table["value"].to_numpy(),
            "reason": table["reason"].to_numpy(),
        }
    )
    keep = np.ones(len(work), dtype=bool)
    keep[positions] = False
    valid = _keep_rows(work, keep, added)
    return ValidationResult(valid=valid, rejected=rejected, failures=report)


def _keep_rows(work: pd.DataFrame, keep: np.ndarray, added: dict[str, Any]) -> pd.DataFrame:
    """``work[keep]`` indexed 0..n-1, column by column (about twice as fast as the frame's
    boolean indexing); the all-null columns in ``added`` are cut to the new length without
    copying (every value is null, so the first rows are as good as the kept ones)."""
    size = int(keep.sum())
    index = pd.RangeIndex(size)
    data: dict[str, pd.Series] = {}
    for name in work.columns:
        array = work[name].array
        kept = array[:size] if name in added else array[keep]
        data[name] = pd.Series(kept, index=index, name=name, copy=False)
    return pd.DataFrame(data, index=index, copy=False)


_CHECKING_SCHEMAS: dict[type[pa.DataFrameModel], pa.DataFrameSchema] = {}


def _checking_schema(model: type[pa.DataFrameModel]) -> pa.DataFrameSchema:
    """The model's schema without coercion, for frames whose columns already have its dtypes."""
    schema = _CHECKING_SCHEMAS.get(model)
    if schema is None:
        schema = copy.deepcopy(model.to_schema())
        schema.coerce = False
        for column in schema.columns.values():
            column.coerce = False
        _CHECKING_SCHEMAS[model] = schema
    return schema


# --- screening: the model's rules as vectorized kernels -----------------------------------
#
# The screen flags a superset of the rows pandera would fail: every row failing a column rule
# or a row rule, and every row of a group of equal values in a unique column (so pandera,
# checking only the flagged rows, still sees each duplicate group whole). Row rules are
# row-wise by the models' convention (one boolean per row), so checking a subset of rows
# gives the same answer for each of them.

# Bytes that may begin a whitespace character in Python's or RE2's sense: ASCII whitespace,
# the separators 0x1c-0x1f and the lead byte of any multi-byte UTF-8 character.
_MAYBE_SPACE = np.zeros(256, dtype=bool)
_MAYBE_SPACE[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True
_MAYBE_SPACE[128:] = True
_BUCKET_BITS = 21
_MIXERS = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93)


@dataclasses.dataclass(frozen=True)
class _Screen:
    """What the screen checks for one model, derived once from its pandera schema."""

    dtypes: tuple[tuple[str, Any], ...]
    not_null: tuple[str, ...]
    unique: tuple[str, ...]
    column_checks: tuple[tuple[str, Check], ...]
    row_checks: tuple[Check, ...]
    unique_together: tuple[str, ...]


_SCREENS: dict[type[pa.DataFrameModel], _Screen | None] = {}


def _screen(model: type[pa.DataFrameModel]) -> _Screen | None:
    """The model's screen, or ``None`` when its schema uses features the screen does not
    reproduce exactly (then pandera checks every row)."""
    if model in _SCREENS:
        return _SCREENS[model]
    schema = _checking_schema(model)
    screen: _Screen | None = None
    supported = (
        schema.index is None
        and not schema.ordered
        and not schema.unique_column_names
        and not getattr(schema, "parsers", None)
        and all(_plain_check(check) for check in schema.checks)
        and all(
            not column.regex
            and column.dtype is not None
            and not getattr(column, "parsers", None)
            and getattr(column, "default", None) is None
            and all(_plain_check(check) for check in column.checks)
            for column in schema.columns.values()
        )
    )
    if supported:
        columns = schema.columns
        screen = _Screen(
            dtypes=tuple((name, column.dtype) for name, column in columns.items()),
            not_null=tuple(name for name, column in columns.items() if not column.nullable),
            unique=tuple(name for name, column in columns.items() if column.unique),
            column_checks=tuple(
                (name, check) for name, column in columns.items() for check in column.checks
            ),
            row_checks=tuple(schema.checks),
            unique_together=tuple(schema.unique or ()),
        )
    _SCREENS[model] = screen
    return screen


def _plain_check(check: Check) -> bool:
    """A check whose outcome for a row does not depend on which other rows are checked."""
    return (
        check.groupby is None
        and check.n_failure_cases is None
        and not check.raise_warning
        and not getattr(check, "groups", None)
    )


def _suspect_rows(work: pd.DataFrame, model: type[pa.DataFrameModel]) -> np.ndarray | None:
    """Mask of the rows pandera must check (a superset of those it fails), or ``None`` when
    the whole frame must go through pandera."""
    screen = _screen(model)
    if screen is None or not len(work):
        return None
    suspects = np.zeros(len(work), dtype=bool)
    for name, dtype in screen.dtypes:
        if name not in work.columns:
            return None
        # pandera's own dtype check: one boolean for the column, or one per value.
        result = dtype.check(pandas_engine.Engine.dtype(work[name].dtype), work[name])
        if isinstance(result, bool | np.bool_):
            if not result:
                return None
            continue
        per_value = np.asarray(result, dtype=bool)
        if per_value.shape != suspects.shape:
            return None
        suspects |= ~per_value
    try:
        for name in screen.not_null:
            suspects |= work[name].isna().to_numpy(dtype=bool)
        for name in screen.unique:
            suspects |= _maybe_duplicated(work[name])
        if screen.unique_together:
            together = work[list(screen.unique_together)].duplicated(keep=False)
            suspects |= together.to_numpy(dtype=bool)
        for name, check in screen.column_checks:
            _flag_column(suspects, work[name], check)
        for check in screen.row_checks:
            if not _flag_rows(suspects, work, check):
                return None
    except Exception:  # a rule that cannot run vectorized: pandera reports it as today
        return None
    return suspects


def _flag_column(suspects: np.ndarray, values: pd.Series, check: Check) -> None:
    """Flag the rows of ``values`` failing the column rule ``check``."""
    missing = values.isna().to_numpy(dtype=bool)
    stats = check.statistics or {}
    if check.name == "isin" and not check.element_wise:
        passed = values.isin(list(stats["allowed_values"])).to_numpy(dtype=bool)
    elif check.name == "str_matches" and not check.element_wise:
        passed = _matches_start(values, stats["pattern"], missing)
    else:
        # Any other rule runs through pandera's own check machinery on the whole column.
        output = check(values).check_output
        failed_labels = output.index[~output.to_numpy(dtype=bool)]
        suspects[values.index.get_indexer(failed_labels)] = True
        return
    failed = ~passed & ~missing
    if not check.ignore_na:
        failed |= missing
    suspects |= failed


def _matches_start(values: pd.Series, pattern: Any, missing: np.ndarray) -> np.ndarray:
    """``values.str.match(pattern)`` as a mask; for the non-blank rule on Arrow text only the
    values that are empty or begin with a possible whitespace character are matched."""
    array = values.array
    if pattern != NON_BLANK or not isinstance(array, pd.arrays.ArrowStringArray):
        return values.str.match(pattern, na=False).to_numpy(dtype=bool)
    chunked = array._pa_array
    if chunked.num_chunks != 1:
        chunked = pa_arrow.chunked_array([chunked.combine_chunks()])
    chunk = chunked.chunk(0)
    width = np.int64 if pa_arrow.types.is_large_string(chunk.type) else np.int32
    if not (pa_arrow.types.is_large_string(chunk.type) or pa_arrow.types.is_string(chunk.type)):
        return values.str.match(pattern, na=False).to_numpy(dtype=bool)
    _, offsets_buffer, data_buffer = chunk.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=width)[
        chunk.offset : chunk.offset + len(chunk) + 1
    ]
    starts = offsets[:-1]
    empty = offsets[1:] == starts
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else None
    if data is None or not len(data):
        doubtful = np.ones(len(values), dtype=bool)
    else:
        first = data[np.minimum(starts, len(data) - 1)]
        doubtful = empty | _MAYBE_SPACE[first]
    doubtful &= ~missing
    passed = np.ones(len(values), dtype=bool)
    rows = np.flatnonzero(doubtful)
    if len(rows):
        passed[rows] = values.iloc[rows].str.match(pattern, na=False).to_numpy(dtype=bool)
    return passed


def _flag_rows(suspects: np.ndarray, work: pd.DataFrame, check: Check) -> bool:
    """Flag the rows failing the row rule ``check`` (run by pandera on the whole frame);
    false when its result is not one boolean per row."""
    output = check(work).check_output
    if isinstance(output, pd.DataFrame):
        output = output.all(axis="columns")
    if not isinstance(output, pd.Series) or not output.index.equals(work.index):
        return False
    suspects |= ~output.to_numpy(dtype=bool)
    return True


def _maybe_duplicated(values: pd.Series) -> np.ndarray:
    """Mask of values that may occur more than once (every member of each group of equal
    values is included). Arrow text is screened by fingerprints of its bytes, far cheaper
    than hashing every value exactly; only the few values sharing a fingerprint are compared
    exactly."""
    array = values.array
    if not isinstance(array, pd.arrays.ArrowStringArray):
        return values.duplicated(keep=False).to_numpy(dtype=bool)
    chunk = array._pa_array.combine_chunks()
    if not (pa_arrow.types.is_large_string(chunk.type) or pa_arrow.types.is_string(chunk.type)):
        return values.duplicated(keep=False).to_numpy(dtype=bool)
    size = len(chunk)
    missing = values.isna().to_numpy(dtype=bool)
    suspects = missing.copy() if missing.sum() > 1 else np.zeros(size, dtype=bool)
    width = np.int64 if pa_arrow.types.is_large_string(chunk.type) else np.int32
    _, offsets_buffer, data_buffer = chunk.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=width)[chunk.offset : chunk.offset + size + 1]
    starts = offsets[:-1].astype(np.int64)
    lengths = offsets[1:].astype(np.int64) - starts
    data = (
        np.frombuffer(data_buffer, dtype=np.uint8)
        if data_buffer is not None
        else np.zeros(0, np.uint8)
    )
    padded = np.zeros(len(data) + 16, dtype=np.uint8)
    padded[: len(data)] = data
    words = np.lib.stride_tricks.as_strided(padded, shape=(len(data) + 9, 8), strides=(1, 1))
    fingerprint = lengths.astype(np.uint64) * np.uint64(_MIXERS[0])
    short = np.minimum(lengths, 8)
    keep = np.where(
        short >= 8,
        np.uint64(0xFFFFFFFFFFFFFFFF),
        (np.uint64(1) << (short.astype(np.uint64) * np.uint64(8))) - np.uint64(1),
    )
    last = np.maximum(lengths - 8, 0)
    for at, mixer in zip((0, 8, 16, None), _MIXERS, strict=True):
        shift = last if at is None else np.minimum(at, last)
        word = words[starts + shift].view("<u8").ravel() & keep
        fingerprint ^= (word * np.uint64(mixer)) ^ (word >> np.uint64(29))
    candidates = np.flatnonzero(~missing)
    for round_ in range(4):
        if len(candidates) < 2:
            return suspects
        seed = np.uint64((_MIXERS[round_] * (2 * round_ + 3)) % 2**64 | 1)
        spread = (fingerprint[candidates] * seed) >> np.uint64(64 - _BUCKET_BITS)
        buckets = spread.astype(np.intp)
        counts = np.bincount(buckets, minlength=1 << _BUCKET_BITS)
        candidates = candidates[counts[buckets] > 1]
    if len(candidates) > 1:
        exact = values.iloc[candidates].duplicated(keep=False).to_numpy(dtype=bool)
        suspects[candidates[exact]] = True
    return suspects


def _nulls(dtype: Any, index: pd.Index) -> pd.Series | None:
    """An all-null column of ``dtype`` built directly (``None`` for other dtypes)."""
    if isinstance(dtype, UtcTimestamp):
        return pd.Series(pd.NaT, index=index, dtype=UTC_DTYPE)
    target = getattr(dtype, "type", None)
    if target == STRING_DTYPE:
        array = pa_arrow.nulls(len(index), pa_arrow.large_string())
        return pd.Series(pd.arrays.ArrowStringArray(array), index=index, dtype=STRING_DTYPE)
    if target == np.dtype("float64"):
        return pd.Series(np.full(len(index), np.nan), index=index)
    if isinstance(target, pd.Int64Dtype):
        values = np.zeros(len(index), dtype=np.int64)
        missing = np.ones(len(index), dtype=bool)
        return pd.Series(pd.arrays.IntegerArray(values, missing), index=index)
    return None


def _rejected_frame(rows: pd.DataFrame, fields: list[str], reasons: list[str]) -> pd.DataFrame:
    rejected = rows.copy()
    rejected[REJECT_FIELD] = pd.Series(fields, index=rejected.index, dtype=object)
    rejected[REJECT_REASON] = pd.Series(reasons, index=rejected.index, dtype=object)
    return rejected


# --- coercion ------------------------------------------------------------------------------


def _coerce(values: pd.Series, dtype: Any) -> tuple[pd.Series, pd.Series]:
    """Convert ``values`` to ``dtype``; return the result (null where conversion failed) and
    the mask of failed values. Vectorized for the types the canonical models use."""
    no_failure = pd.Series(False, index=values.index)
    if isinstance(dtype, UtcTimestamp):
        return coerce_utc(values)
    target = getattr(dtype, "type", None)
    if target == np.dtype("float64") or isinstance(target, pd.Int64Dtype):
        if pd.api.types.is_float_dtype(values.dtype) and target == np.dtype("float64"):
            return values.astype("float64"), no_failure
        numeric = pd.to_numeric(values, errors="coerce")
        as_float = pd.Series(
            np.asarray(numeric.to_numpy(dtype="float64", na_value=np.nan), dtype="float64"),
            index=values.index,
            name=values.name,
        )
        failed = as_float.isna() & values.notna()
        if target == np.dtype("float64"):
            return as_float, failed
        fractional = as_float.notna() & (np.floor(as_float) != as_float)
        failed |= fractional
        return as_float.mask(fractional).round().astype("Int64"), failed
    if target == STRING_DTYPE:
        if values.dtype == STRING_DTYPE:
            return values, no_failure
        return values.astype(STRING_DTYPE), no_failure
    try:
        return dtype.try_coerce(values), no_failure
    except ParserError as exc:
        cases = exc.failure_cases
        failed_index = [] if cases is None else cases["index"].dropna().tolist()
        failed = pd.Series(values.index.isin(failed_index), index=values.index)
        return dtype.coerce(values.mask(failed)), failed


def _coercion_problem(value: Any, dtype: Any) -> str:
    if isinstance(dtype, UtcTimestamp):
        return describe_timestamp_problem(value)
    target = getattr(dtype, "type", None)
    if isinstance(target, pd.Int64Dtype):
        return "is not a whole number"
    if target == np.dtype("float64"):
        return "is not a number"
    return f"cannot be read as {_type_name(dtype)}"


# --- failure cases -> reasons --------------------------------------------------------------


def _row_failures(
    cases: pd.DataFrame,
    schema: pa.DataFrameSchema,
    model_name: str,
    coerce_failed: set[tuple[int, str]],
) -> list[tuple[int, int, str, Any, str]]:
    """Turn pandera failure cases into (position, order, field, value, reason) tuples."""
    not_rows = cases[cases["index"].isna()]
    if len(not_rows):
        details = "; ".join(
            f"{c.column or 'table'}: {c.check} ({c.failure_case})"
            for c in not_rows.itertuples(index=False)
        )
        raise ModelSchemaError(
            f"{model_name}: the input cannot be validated row by row: {details}. "
            "Check that the mapping produces the model's columns with usable types.",
            model_name=model_name,
        )
    cases = cases.assign(
        _key=cases["column"].where(cases["schema_context"] == "Column", "").fillna(""),
    ).drop_duplicates(subset=["_key", "check", "check_number", "index"])

    columns = schema.columns
    order = {name: i for i, name in enumerate(columns)}
    unique_fields = list(schema.unique or [])
    out: list[tuple[int, int, str, Any, str]] = []
    for case in cases.itertuples(index=False):
        position = int(case.index)
        value = case.failure_case
        number = None if pd.isna(case.check_number) else int(case.check_number)
        if case.schema_context != "Column":
            if number is not None:
                field, text = _split_row_error(schema.checks[number])
                if (position, field) in coerce_failed:
                    continue  # e.g. "missing for a completed work order" after a bad timestamp
                rank = order.get(field, len(order)) * 1000 + 500 + number
                out.append((position, rank, field, None, f"{field}: {text}"))
            elif case.check == "multiple_fields_uniqueness":
                field = ", ".join(unique_fields)
                rank = order.get(unique_fields[0], 0) * 1000 + 400 if unique_fields else 0
                out.append(
                    (
                        position,
                        rank,
                        field,
                        None,
                        f"{field}: this combination appears twice or more",
                    )
                )
            continue
        field = str(case.column)
        if (position, field) in coerce_failed:
            continue  # the conversion failure already explains this value
        rank = order.get(field, len(order)) * 1000
        if number is not None:
            text = _check_problem(columns[field].checks[number], value)
            out.append((position, rank + 10 + number, field, value, f"{field}: {text}"))
        elif case.check == "not_nullable":
            out.append((position, rank + 1, field, None, f"{field}: missing"))
        elif case.check == "field_uniqueness":
            out.append(
                (
                    position,
                    rank + 2,
                    field,
                    value,
                    f"{field}: {_show(value)} appears more than once",
                )
            )
        else:
            out.append((position, rank + 3, field, value, f"{field}: {_show(value)} {case.check}"))
    return out


def _split_row_error(check: Check) -> tuple[str, str]:
    """Row checks are written ``"<field>: <problem>"``; fall back to the check's name."""
    error = check.error or check.name or "row check"
    field, sep, text = str(error).partition(":")
    if sep and field.strip().isidentifier():
        return field.strip(), text.strip()
    return "row", str(error)


def _check_problem(check: Check, value: Any) -> str:
    """A readable sentence (without the field name) saying why ``value`` fails ``check``."""
    stats = check.statistics or {}
    shown = _show(value)
    name = check.name
    if name == "isin":
        allowed = list(stats.get("allowed_values", []))
        if allowed == CURRENCY_VALUES:
            return f"{shown} is not an ISO 4217 currency code (e.g. EUR, USD)"
        return f"{shown} is not one of {', '.join(map(str, allowed))}"
    if name == "greater_than_or_equal_to":
        minimum = stats.get("min_value")
        return f"{shown} is negative" if minimum == 0 else f"{shown} is below {minimum}"
    if name == "greater_than":
        return f"{shown} must be greater than {stats.get('min_value')}"
    if name in ("less_than", "less_than_or_equal_to"):
        return f"{shown} is above {stats.get('max_value')}"
    if name == "in_range":
        low, high = stats.get("min_value"), stats.get("max_value")
        if low == -np.inf and high == np.inf:
            return f"{shown} is not a finite number"
        return f"{shown} is outside {low}..{high}"
    if name == "str_matches":
        pattern = stats.get("pattern")
        text = _PATTERN_TEXT.get(pattern, f"does not match the pattern {pattern}")
        return text if pattern == NON_BLANK else f"{shown} {text}"
    if name == "str_length":
        return f"{shown} has the wrong length"
    if check.error and check.error != name:
        return f"{shown} {check.error}"
    return f"{shown} fails {name}"


def _show(value: Any) -> str:
    """Render a value for a reason: quoted text, plain numbers, ISO timestamps, 'empty'."""
    if value is None or (not isinstance(value, str | bytes) and _is_na(value)):
        return "empty"
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, str):
        text = value if len(value) <= _MAX_SHOWN else value[: _MAX_SHOWN - 3] + "..."
        return repr(text)
    if isinstance(value, float):
        return repr(value)
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _is_na(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


# --- metadata ------------------------------------------------------------------------------


def column_descriptions(model: type[pa.DataFrameModel]) -> dict[str, str]:
    """Column name -> description, in model order (for docs and Dagster metadata)."""
    return {name: column.description or "" for name, column in model.to_schema().columns.items()}


def table_schema(model: type[pa.DataFrameModel]) -> dg.TableSchema:
    """The model as a Dagster table schema, for the ``dagster/column_schema`` metadata key.

    Each column carries its type, description, nullability, uniqueness and rules in words;
    the model's row rules are listed as table constraints.
    """
    import dagster as dg

    schema = model.to_schema()
    columns = [
        dg.TableColumn(
            name=name,
            type=_type_name(column.dtype),
            description=column.description or None,
            constraints=dg.TableColumnConstraints(
                nullable=bool(column.nullable),
                unique=bool(column.unique),
                other=[_check_rule(check) for check in column.checks],
            ),
        )
        for name, column in schema.columns.items()
    ]
    rules = [
        ": ".join(_split_row_error(check)) if _split_row_error(check)[0] != "row" else str(check)
        for check in schema.checks
    ]
    if schema.unique:
        rules.insert(0, f"unique combination: {', '.join(schema.unique)}")
    return dg.TableSchema(columns=columns, constraints=dg.TableConstraints(other=rules))


def _type_name(dtype: Any) -> str:
    if isinstance(dtype, UtcTimestamp):
        return "timestamp (UTC)"
    target = getattr(dtype, "type", None)
    if target == STRING_DTYPE:
        return "string"
    if target == np.dtype("float64"):
        return "float"
    if isinstance(target, pd.Int64Dtype):
        return "integer"
    return str(dtype)


def _check_rule(check: Check) -> str:
    """A column rule in words, e.g. 'one of: low, high' or '>= 0'."""
    stats = check.statistics or {}
    name = check.name
    if name == "isin":
        allowed = list(stats.get("allowed_values", []))
        if allowed == CURRENCY_VALUES:
            return "ISO 4217 currency code"
        return f"one of: {', '.join(map(str, allowed))}"
    if name == "greater_than_or_equal_to":
        return f">= {stats.get('min_value')}"
    if name == "greater_than":
        return f"> {stats.get('min_value')}"
    if name == "in_range" and stats.get("min_value") == -np.inf:
        return "finite number"
    if name == "str_matches":
        pattern = stats.get("pattern")
        return {
            NON_BLANK: "not blank",
            LOWER_IDENTIFIER: "lowercase code",
            COUNTRY_CODE: "ISO 3166-1 alpha-2 country code",
        }.get(pattern, f"matches {pattern}")
    return str(check.error or name)
