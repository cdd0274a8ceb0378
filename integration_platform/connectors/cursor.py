"""Incremental-read cursors that neither skip nor repeat rows sharing a timestamp.

A cursor is the high-water mark (the largest change timestamp or version read so far) plus
the ids of the rows already read AT that exact mark. Where the source has a row version
(Maximo ``_rowstamp``, an ETag), the id carries it (``BEDFORD/1001@1000042``): a row changed
again within the same clock second keeps its timestamp but not its version, so it is read
again rather than taken for one already seen. The next read asks the source for rows
``>= mark`` (never ``>``, which loses rows committed later with the same timestamp) and drops
the rows whose id is already listed. Both steps are pure functions of the cursor and a page,
so they are tested without a server and behave the same for every connector.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pandas as pd

# "epoch_ms": a timestamp sent as milliseconds since 1970 (Fiix dtm* fields); the mark is
# kept as a UTC timestamp all the same.
MarkKind = Literal["timestamp", "number", "text", "epoch_ms"]
TIMESTAMP_KINDS = ("timestamp", "epoch_ms")
# OData V2 (SAP Gateway) date-times: "/Date(1501027200000)/", optionally "+0000"-style offset
# (the milliseconds are UTC either way).
ODATA_V2_DATE = r"^/Date\((-?\d+)(?:[+-]\d{4})?\)/$"


@dataclass(frozen=True)
class Cursor:
    """Where an incremental read stopped: the high-water mark and the ids seen at it."""

    high_water_mark: Any
    ids_at_mark: frozenset[str] = field(default_factory=frozenset)
    kind: MarkKind = "timestamp"

    def to_json(self) -> str:
        """Text for durable storage (a Dagster cursor, the state database)."""
        mark = self.high_water_mark
        if self.kind in TIMESTAMP_KINDS:
            mark = mark.isoformat()
        elif self.kind == "number":
            mark = int(mark) if float(mark).is_integer() else float(mark)
        return json.dumps(
            {"high_water_mark": mark, "kind": self.kind, "ids_at_mark": sorted(self.ids_at_mark)},
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Cursor:
        import pandas as pd

        data = json.loads(text)
        kind = data.get("kind", "timestamp")
        mark = data["high_water_mark"]
        if kind in TIMESTAMP_KINDS:
            mark = pd.Timestamp(mark)
            mark = mark.tz_convert("UTC") if mark.tzinfo is not None else mark
        return cls(mark, frozenset(data.get("ids_at_mark", ())), kind)


def marks(values: pd.Series, kind: MarkKind | None = None) -> pd.Series:
    """Cursor values in comparable form: UTC timestamps for text with offsets (Maximo's
    ``2026-01-05T10:00:00-05:00`` and ``...Z`` compare as instants), numbers as numbers."""
    import pandas as pd

    if kind is None:
        if pd.api.types.is_datetime64_any_dtype(values.dtype):
            kind = "timestamp"
        elif pd.api.types.is_numeric_dtype(values.dtype):
            kind = "number"
        else:
            kind = "timestamp"
    if kind == "number":
        return pd.to_numeric(values)
    if kind == "text":
        return values.astype("string[pyarrow]")
    if kind == "epoch_ms":
        return pd.to_datetime(pd.to_numeric(values), unit="ms", utc=True)
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        tz = getattr(values.dtype, "tz", None)
        return values.dt.tz_convert("UTC") if tz is not None else values
    instants = _instants_with_offsets(values)
    if instants is not None:
        return instants
    text = values.astype(object)
    odata = _odata_v2_millis(values)
    if odata is not None:
        from_ms = pd.to_datetime(pd.to_numeric(odata), unit="ms", utc=True)
        rest = text.where(odata.isna(), None)
        parsed = pd.to_datetime(rest, utc=True, format="ISO8601")
        return from_ms.where(odata.notna(), parsed)
    parsed = pd.to_datetime(text, utc=True, format="ISO8601")
    return parsed


def _instants_with_offsets(values: pd.Series) -> pd.Series | None:
    """ISO 8601 text where every value carries its zone offset (``Z``, ``-05:00``) as UTC
    timestamps, parsed by Arrow in one pass; None when any value lacks an offset or has
    another shape (OData V2 dates, bare dates), which pandas then reads."""
    import pandas as pd
    import pyarrow as pa

    try:
        parsed = pa.array(values.astype("string[pyarrow]")).cast(pa.timestamp("ns", "UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    utc = pd.DatetimeTZDtype(unit="ns", tz="UTC")  # the values are UTC already
    return pd.Series(
        parsed.to_numpy(zero_copy_only=False), index=values.index, name=values.name, dtype=utc
    )


def _odata_v2_millis(values: pd.Series) -> pd.Series | None:
    """The milliseconds of OData V2 dates (text, null elsewhere); None when there are none.

    The test for the ``/Date(`` prefix runs in Arrow over the whole column, so pages of ISO
    timestamps skip the per-value regular expression.
    """
    if not values.astype("string[pyarrow]").str.startswith("/Date(").any():
        return None
    odata = values.astype("string").str.extract(ODATA_V2_DATE, expand=False)
    return odata if odata.notna().any() else None


def mark_kind(values: pd.Series, kind: MarkKind | None = None) -> MarkKind:
    import pandas as pd

    if kind is not None:
        return kind
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return "number"
    return "timestamp"


def record_ids(
    frame: pd.DataFrame, key_fields: Sequence[str], version_field: str | None = None
) -> pd.Series:
    """One text id per row; composite keys are joined with ``/`` (``BEDFORD/1001``), and a
    version, when given, follows ``@``. Built by Arrow for the whole frame at once."""
    import pandas as pd
    import pyarrow.compute as pc

    ids = pc.binary_join_element_wise(*(_arrow_text(frame[name]) for name in key_fields), "/")
    if version_field is not None and version_field in frame.columns:
        ids = pc.binary_join_element_wise(ids, _arrow_text(frame[version_field]), "@")
    return pd.Series(pd.arrays.ArrowStringArray(ids), index=frame.index)


def _arrow_text(column: pd.Series) -> Any:
    """A column as Arrow text, nulls as empty text (text columns are taken as they are)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    text = column if isinstance(column.dtype, pd.StringDtype) else column.astype("string")
    return pc.fill_null(pa.array(text).cast(pa.string()), "")


def drop_seen(
    frame: pd.DataFrame,
    cursor: Cursor | None,
    *,
    cursor_field: str,
    key_fields: Sequence[str],
    version_field: str | None = None,
) -> pd.DataFrame:
    """The rows the cursor does not cover yet: newer than the mark, or at the mark but not
    listed. Rows without a cursor value are kept (they cannot be placed, and dropping them
    would lose them). When every row is kept (as without a cursor) the frame itself comes
    back, not a copy."""
    if cursor is None or frame.empty:
        return frame
    values = marks(frame[cursor_field], cursor.kind)
    at_mark = (values == cursor.high_water_mark).fillna(False).to_numpy(dtype=bool)
    keep = (values > cursor.high_water_mark).fillna(False).to_numpy(dtype=bool)
    keep |= values.isna().to_numpy()  # unplaced
    if at_mark.any():  # only rows at the mark can have been read already
        ids = record_ids(frame, key_fields, version_field)
        listed = ids.isin(list(cursor.ids_at_mark)).to_numpy(dtype=bool)
        keep |= at_mark & ~listed
    if keep.all():
        return frame
    return frame.loc[keep].reset_index(drop=True)


def advance(
    cursor: Cursor | None,
    frame: pd.DataFrame,
    *,
    cursor_field: str,
    key_fields: Sequence[str],
    version_field: str | None = None,
    kind: MarkKind | None = None,
) -> Cursor | None:
    """The cursor after ``frame`` was read: a new mark resets the id list, the same mark
    adds to it, and an older page (or one without cursor values) leaves the cursor as is."""
    if frame.empty:
        return cursor
    kind = cursor.kind if cursor is not None else mark_kind(frame[cursor_field], kind)
    values = marks(frame[cursor_field], kind)
    valid = values.notna().to_numpy()
    if not valid.any():
        return cursor
    top = values[valid].max()
    at_top = (values == top).fillna(False).to_numpy(dtype=bool) & valid
    ids = frozenset(record_ids(frame, key_fields, version_field)[at_top].tolist())
    if cursor is None or top > cursor.high_water_mark:
        return Cursor(top, ids, kind)
    if top == cursor.high_water_mark:
        return Cursor(top, cursor.ids_at_mark | ids, kind)
    return cursor
