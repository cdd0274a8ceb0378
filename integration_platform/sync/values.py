"""Canonical values for comparison: one dtype per field, null-safe differences, content hashes
and the JSON form kept in the state database.

Both sides of a sync are compared only after their values are brought to the canonical
model's dtypes, so ``"2.50"`` from a REST API and ``2.5`` from a SQL column are the same value.
Timestamps are compared to the second: CMMS keep seconds, and a microsecond that one system
drops must not look like a change on every run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd

from integration_platform.model.base import STRING_DTYPE, UTC_DTYPE, UtcTimestamp

Kind = Literal["text", "float", "int", "bool", "timestamp"]


def field_kinds(model: Any, fields: Iterable[str]) -> dict[str, Kind]:
    """The value kind of each canonical field, from the pandera model's column dtypes."""
    columns = model.to_schema().columns
    kinds: dict[str, Kind] = {}
    for name in fields:
        dtype = columns[name].dtype
        text = str(dtype).lower()
        if isinstance(dtype, UtcTimestamp) or "datetime" in text:
            kinds[name] = "timestamp"
        elif "float" in text:
            kinds[name] = "float"
        elif "int" in text:
            kinds[name] = "int"
        elif "bool" in text:
            kinds[name] = "bool"
        else:
            kinds[name] = "text"
    return kinds


def normalize_column(values: pd.Series, kind: Kind) -> pd.Series:
    """``values`` in the dtype of ``kind`` (vectorized; unparseable values become null)."""
    if kind == "text":
        if values.dtype == STRING_DTYPE:
            return values
        out = values.astype(object).where(values.notna(), None)
        return out.map(lambda v: v if v is None or isinstance(v, str) else str(v)).astype(
            STRING_DTYPE
        )
    if kind == "float":
        return pd.to_numeric(values, errors="coerce").astype("float64")
    if kind == "int":
        return pd.to_numeric(values, errors="coerce").astype("Int64")
    if kind == "bool":
        return values.astype("boolean")
    if values.dtype != UTC_DTYPE:
        values = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    return values.astype(UTC_DTYPE).dt.floor("s")


def normalize(frame: pd.DataFrame, kinds: Mapping[str, Kind]) -> pd.DataFrame:
    """A copy of ``frame`` with each field of ``kinds`` in its canonical dtype."""
    out = frame.copy()
    for name, kind in kinds.items():
        out[name] = normalize_column(out[name], kind) if name in out else _nulls(kind, out.index)
    return out


def _nulls(kind: Kind, index: pd.Index) -> pd.Series:
    dtype = {
        "text": STRING_DTYPE,
        "float": "float64",
        "int": "Int64",
        "bool": "boolean",
        "timestamp": UTC_DTYPE,
    }[kind]
    return pd.Series(pd.NA if kind != "float" else np.nan, index=index, dtype=dtype)


def differs(a: pd.Series, b: pd.Series) -> np.ndarray:
    """Row-wise ``a != b`` where two nulls are equal and a null differs from a value."""
    a_na = a.isna().to_numpy(dtype=bool)
    b_na = b.isna().to_numpy(dtype=bool)
    left, right = a.reset_index(drop=True), b.reset_index(drop=True)
    if left.dtype != right.dtype:
        left, right = left.astype(object), right.astype(object)
    unequal = left.ne(right).to_numpy(dtype=bool, na_value=True)
    return np.where(a_na | b_na, a_na != b_na, unequal)


def content_hash(frame: pd.DataFrame, fields: Sequence[str]) -> pd.Series:
    """A stable 64-bit hash of the canonical values of each row, as decimal text.

    ``pandas.util.hash_pandas_object`` uses a fixed key, so the same values give the same hash
    in every process; the frame must already be normalized (same dtypes every time).
    """
    if not len(frame):
        return pd.Series([], index=frame.index, dtype=object)
    hashed = pd.util.hash_pandas_object(frame[list(fields)], index=False)
    return pd.Series(hashed.to_numpy().astype(str), index=frame.index, dtype=object)


def to_json_value(value: Any) -> Any:
    """One canonical value as JSON: text, number, ISO-8601 UTC text or null."""
    if value is None or (not isinstance(value, str | bytes) and _is_na(value)):
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return pd.Timestamp(value).tz_convert("UTC").isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


def to_python_value(value: Any, kind: Kind) -> Any:
    """One canonical value for an adapter: ``datetime`` (UTC), float, int, bool, str or None."""
    if value is None or (not isinstance(value, str | bytes) and _is_na(value)):
        return None
    if kind == "timestamp":
        return pd.Timestamp(value).tz_convert("UTC").to_pydatetime()
    if kind == "float":
        return float(value)
    if kind == "int":
        return int(value)
    if kind == "bool":
        return bool(value)
    return str(value)


def from_json_value(value: Any, kind: Kind) -> Any:
    """A JSON value from the state database back as a canonical scalar."""
    if value is None:
        return None
    if kind == "timestamp":
        return pd.Timestamp(value).tz_convert("UTC") if pd.Timestamp(value).tzinfo else None
    return to_python_value(value, kind)


def json_records(frame: pd.DataFrame, fields: Sequence[str]) -> list[dict[str, Any]]:
    """Each row's fields as a JSON-ready dict (timestamps as ISO text, nulls as None)."""
    columns: dict[str, list[Any]] = {}
    for name in fields:
        column = frame[name]
        if isinstance(column.dtype, pd.DatetimeTZDtype):
            text = column.dt.tz_convert("UTC").map(
                lambda v: None if pd.isna(v) else v.isoformat(), na_action=None
            )
            columns[name] = text.tolist()
        else:
            as_object = column.astype(object)
            columns[name] = [None if _is_na(v) else _plain(v) for v in as_object.tolist()]
    size = len(frame)
    return [{name: columns[name][i] for name in fields} for i in range(size)]


def frame_from_json(
    records: Sequence[Mapping[str, Any]], kinds: Mapping[str, Kind], index: pd.Index
) -> pd.DataFrame:
    """JSON dicts (from :func:`json_records`) as a normalized frame on ``index``."""
    raw = pd.DataFrame.from_records(list(records), columns=list(kinds))
    raw.index = index
    return normalize(raw, kinds)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _is_na(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
