"""Building blocks shared by every canonical model.

The canonical models are the contract between connectors, mappings, syncs and the lake, so
they agree on a few things here once:

- text is ``string[pyarrow]`` (:data:`Str`): nulls stay nulls instead of turning into the text
  ``"None"``, and pandera checks on Arrow strings are several times faster than on objects;
- timestamps are timezone-aware UTC (:class:`UtcTimestamp`). Offset-aware input of any zone is
  converted to UTC; input without a zone is *rejected*, because guessing the zone of a plant
  clock silently shifts maintenance history by hours;
- money is a non-negative float next to a ``currency`` column holding an ISO 4217 code;
- records that come from an external system keep ``source_system`` and ``external_id``
  (:class:`ExternalRecord`);
- row-wise rules are dataframe checks returning one boolean per row, with an error written as
  ``"<field>: <what is wrong>"`` so a rejected row names the field to fix.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import Annotated, Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.engines import pandas_engine
from pandera.typing import Series

from integration_platform.model.currency import CURRENCY_CODES
from integration_platform.model.enums import values

Str = Annotated[pd.StringDtype, "pyarrow", pd.NA]
"""Nullable Arrow-backed text (pandas dtype ``string[pyarrow]``)."""

STRING_DTYPE = pd.StringDtype("pyarrow")
UTC_DTYPE = pd.DatetimeTZDtype(unit="ns", tz="UTC")

NON_BLANK = r"\s*\S"
"""Pattern for text that must contain something other than whitespace."""

LOWER_IDENTIFIER = r"^[a-z][a-z0-9_]*$"
"""Pattern for extensible codes such as sensor and asset types: ``pump``, ``cooling_tower``."""

COUNTRY_CODE = r"^[A-Z]{2}$"
"""Pattern for ISO 3166-1 alpha-2 country codes (DE, US)."""

CURRENCY_VALUES: list[str] = sorted(CURRENCY_CODES)

# An ISO 8601 time of day followed by a zone designator. The time must be there: a bare date
# such as "2024-01-01" ends in "-01", which is not an offset.
_ZONED_TIME = re.compile(
    r"(?:\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?|T\d{4}(?:\d{2}(?:[.,]\d+)?)?)"
    r"\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
)


def coerce_utc(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Convert ``values`` to UTC timestamps; return them and a mask of values that failed.

    Accepted: timezone-aware datetimes of any zone and ISO 8601 strings with ``Z`` or an
    offset. Failed (and null in the result): text without a zone, naive datetimes, dates,
    numbers (an epoch value's unit is ambiguous) and anything unparseable. Vectorized except
    for object columns that mix kinds of values.
    """
    index = values.index
    dtype = values.dtype
    none_failed = pd.Series(False, index=index)
    if dtype == UTC_DTYPE:
        return values, none_failed
    if isinstance(dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").astype(UTC_DTYPE), none_failed
    present = values.notna()
    if not present.any():
        return pd.Series(pd.NaT, index=index, dtype=UTC_DTYPE, name=values.name), none_failed
    if isinstance(dtype, pd.ArrowDtype):
        import pyarrow as pyarrow_types

        arrow_type = dtype.pyarrow_dtype
        if pyarrow_types.types.is_timestamp(arrow_type) and arrow_type.tz is not None:
            return values.astype(UTC_DTYPE), none_failed
    if pd.api.types.is_datetime64_dtype(dtype):
        empty = pd.Series(pd.NaT, index=index, dtype=UTC_DTYPE, name=values.name)
        return empty, present

    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind == "string":
        text = values.astype(STRING_DTYPE).str.strip()
        zoned = text.str.contains(_ZONED_TIME.pattern, regex=True).fillna(False).astype(bool)
        parsed = pd.to_datetime(text.where(zoned), utc=True, format="ISO8601", errors="coerce")
    elif kind == "datetime":
        zoned = values.map(_has_tzinfo).astype(bool)
        parsed = pd.to_datetime(values.where(zoned), utc=True, errors="coerce")
    else:
        parsed = pd.to_datetime(values.map(_scalar_to_utc), utc=True, errors="coerce")
    parsed = pd.Series(parsed, index=index, name=values.name).astype(UTC_DTYPE)
    return parsed, present & parsed.isna()


def _has_tzinfo(value: Any) -> bool:
    return isinstance(value, dt.datetime) and value.tzinfo is not None


def _scalar_to_utc(value: Any) -> pd.Timestamp | None:
    """One value of a mixed column; ``None`` when it is not a zoned timestamp."""
    if isinstance(value, str):
        parsed, failed = coerce_utc(pd.Series([value], dtype=object))
        return None if failed.iloc[0] else parsed.iloc[0]
    if _has_tzinfo(value):
        return pd.Timestamp(value).tz_convert("UTC")
    return None


def describe_timestamp_problem(value: Any) -> str:
    """Why ``value`` is not an acceptable timestamp, in words for the person who must fix it."""
    if isinstance(value, bool | int | float | np.number):
        return "is a number, not a timestamp (convert epoch times with their unit first)"
    if isinstance(value, dt.datetime | np.datetime64):
        return "has no time zone (give it in UTC or with its offset)"
    if isinstance(value, dt.date):
        return "is a date without a time and time zone"
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = pd.to_datetime(text, format="ISO8601")
        except (ValueError, OverflowError):
            return "is not an ISO 8601 timestamp (e.g. 2024-03-01T08:30:00Z)"
        if parsed.tzinfo is None:
            return "has no time zone (add 'Z' for UTC or an offset such as +01:00)"
        return "is outside the supported range of dates (1677-2262)"
    return "is not a timestamp"


class UtcTimestamp(pandas_engine.DateTime):
    """pandera data type for timezone-aware UTC timestamps that rejects naive input.

    pandera's own ``DateTime(tz="UTC")`` localizes naive values to UTC; this type refuses them
    instead (see :func:`coerce_utc`) and reports each offending value as a failure case.
    """

    def __init__(self) -> None:
        # DateTime is a frozen dataclass; its fields are set the way its own __post_init__ does.
        for name, value in {
            "unit": "ns",
            "tz": dt.UTC,
            "type": UTC_DTYPE,
            "time_zone_agnostic": False,
            "to_datetime_kwargs": {},
            "tz_localize_kwargs": {},
        }.items():
            object.__setattr__(self, name, value)

    def coerce(self, data_container: Any) -> Any:
        coerced, failed = coerce_utc(data_container)
        if failed.any():
            raise ValueError(
                f"{int(failed.sum())} value(s) are not timezone-aware timestamps, "
                f"e.g. {data_container[failed].iloc[0]!r}"
            )
        return coerced

    def coerce_value(self, value: Any) -> Any:
        coerced, failed = coerce_utc(pd.Series([value], dtype=object))
        if failed.iloc[0]:
            raise ValueError(f"{value!r} {describe_timestamp_problem(value)}")
        return coerced.iloc[0]

    def __str__(self) -> str:
        return "datetime64[ns, UTC]"


# --- field helpers -------------------------------------------------------------------------
# Each returns a pandera Field so the models read as declarations: name, type, rule, meaning.


def id_field(description: str, *, unique: bool = False, nullable: bool = False) -> Any:
    """An identifier: non-blank text."""
    return pa.Field(
        description=description, unique=unique, nullable=nullable, str_matches=NON_BLANK
    )


def text_field(description: str, *, nullable: bool = True, non_blank: bool = False) -> Any:
    """Free text; ``non_blank`` for names and titles a person must be able to read."""
    if non_blank:
        return pa.Field(description=description, nullable=nullable, str_matches=NON_BLANK)
    return pa.Field(description=description, nullable=nullable)


def code_field(description: str, *, nullable: bool = False) -> Any:
    """An extensible lowercase code (``pump``, ``vibration``), not a closed list."""
    return pa.Field(description=description, nullable=nullable, str_matches=LOWER_IDENTIFIER)


def enum_field(enum: type[StrEnum], description: str, *, nullable: bool = False) -> Any:
    """A value from a closed domain vocabulary."""
    return pa.Field(description=description, nullable=nullable, isin=values(enum))


def timestamp_field(description: str, *, nullable: bool = True) -> Any:
    """A point in time; the column type must be :class:`UtcTimestamp`."""
    return pa.Field(description=description, nullable=nullable)


def amount_field(description: str, *, nullable: bool = True) -> Any:
    """A non-negative quantity or amount of money."""
    return pa.Field(description=description, nullable=nullable, ge=0)


def currency_field(description: str = "", *, nullable: bool = True) -> Any:
    """An ISO 4217 code in upper case, e.g. EUR, USD."""
    return pa.Field(
        description=description
        or "Currency of the amounts in this row as an ISO 4217 code (EUR, USD, GBP, ...).",
        nullable=nullable,
        isin=CURRENCY_VALUES,
    )


# --- row-check helpers ---------------------------------------------------------------------


def not_before(df: pd.DataFrame, later: str, earlier: str) -> pd.Series:
    """True where ``later`` is missing, ``earlier`` is missing, or ``later >= earlier``."""
    return ~(df[later] < df[earlier]).fillna(False).astype(bool)


def present_when(df: pd.DataFrame, condition: pd.Series, column: str) -> pd.Series:
    """True where ``condition`` does not hold or ``column`` has a value."""
    return ~(condition.fillna(False).astype(bool) & df[column].isna())


# --- base models ---------------------------------------------------------------------------


class CanonicalModel(pa.DataFrameModel):
    """Base of every canonical model: one configuration for the whole platform.

    ``coerce`` turns source types into the canonical ones (failures become row rejections in
    :func:`~integration_platform.model.validation.validate_rows`); ``strict = False`` keeps
    extra columns, because sources carry more than the model; nullable columns may be absent
    from the input and are then added as nulls, so downstream code can rely on every column.
    """

    class Config:
        coerce = True
        strict = False
        add_missing_columns = True


class ExternalRecord(CanonicalModel):
    """A record that came from (or is kept in step with) an external system.

    ``source_system`` + ``external_id`` say where the record lives outside the platform; syncs
    and cross-references need them to write changes back to the right record.
    """

    source_system: Series[Str] = id_field(
        "Configured name of the system the record comes from, e.g. 'maximo_plant1' or 'sap_pm'."
    )
    external_id: Series[Str] = id_field(
        "The record's identifier in its source system (e.g. the Maximo WONUM or SAP order "
        "number), used to write changes back."
    )
