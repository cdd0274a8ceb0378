"""Vectorized value conversions for mapping field rules, each reporting a reason per bad row.

A field rule applies, in order: named string transforms, a value map, a cast or date-time
parsing, a unit conversion and a default. Every step here works on a whole ``pd.Series`` and
returns a :class:`Converted`: the converted values and, on the same index, a reason for every
row that could not be converted (null elsewhere). Reasons read
``"<field> <- <source> '<value>': <problem>"`` so a maintenance engineer looking at a
quarantined row knows which field, which source column and which value to fix.

Reasons are only formatted for failing rows; everything else stays in pyarrow / numpy. Spec
mistakes (unknown transform, bad regex, unknown unit) raise :class:`TransformSpecError` and are
meant to be found when a spec is loaded, with :func:`check_transform` and :func:`check_units`.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "CAST_TYPES",
    "DATETIME_FORMATS",
    "Converted",
    "TransformFn",
    "TransformSpecError",
    "apply_transform",
    "cast",
    "check_datetime",
    "check_transform",
    "check_units",
    "convert_units",
    "map_values",
    "parse_datetime",
    "register_transform",
    "transform_names",
]

STRING = "string[pyarrow]"
UTC_DTYPE = "datetime64[ns, UTC]"
DATETIME_FORMATS = ("iso8601", "sap", "epoch_ms", "epoch_s", "date")
CAST_TYPES = ("string", "integer", "float", "boolean", "datetime")
TRUE_WORDS = frozenset({"true", "yes", "1", "y", "x"})
FALSE_WORDS = frozenset({"false", "no", "0", "n"})
# Values longer than this are cut in reasons: a quarantine message is read, not parsed.
MAX_SHOWN = 80
# Arrow casts a whole array or nothing; on failure, blocks of this size are retried (and
# halved while they fail) so only small pieces holding bad values take the slower,
# row-tolerant pandas parser.
BLOCK_ROWS = 4096
# Failing blocks are halved down to this size before the row-tolerant parser takes them.
STRICT_ROWS = 32
NAT = np.iinfo(np.int64).min
NS_PER = {"epoch_ms": 1_000_000, "epoch_s": 1_000_000_000}

OFFSET_PATTERN = r"[Tt ]\d{2}(?::?\d{2}){0,2}(?:[.,]\d+)?\s*(?:[Zz]|\s*UTC|[+-]\d{2}(?::?\d{2})?)$"
SAP_PATTERN = r"^\\?/Date\((?P<millis>-?\d+)(?P<offset>[+-]\d{4})?\)\\?/$"
SAP_DATE_PROBLEM = "not an SAP date (/Date(milliseconds)/, or ISO-8601 with an offset)"
INTEGER_PATTERN = r"^[+-]?\d{1,18}$"
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"


@dataclass(frozen=True)
class Converted:
    """Converted values and, per row, why a value could not be converted (null if it could)."""

    values: pd.Series
    reasons: pd.Series


class TransformSpecError(ValueError):
    """A transform is misdeclared in a spec: unknown name, bad argument, bad regex, unknown unit."""


class _Missing:
    """Marks an argument that was not given (``None`` is a legitimate map default)."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()


# --- reasons ---------------------------------------------------------------------------------


class _Problems:
    """Collects failing rows (by position) and their problem text, then formats only those."""

    def __init__(self, raw: pd.Series, field: str, source: str) -> None:
        self.raw = raw
        self.field = field
        self.source = source
        self.positions: list[np.ndarray] = []
        self.texts: list[str | np.ndarray] = []

    def add(self, mask: np.ndarray, problem: str | Callable[[pd.Series], list[str]]) -> None:
        """Record ``problem`` for rows where ``mask`` is true (and no problem is recorded yet).

        ``problem`` may be a function of the failing raw values returning one text per row,
        for messages that depend on the value (e.g. a close code table entry).
        """
        positions = np.flatnonzero(mask)
        if not len(positions):
            return
        if self.positions:
            taken = np.concatenate(self.positions)
            positions = positions[~np.isin(positions, taken)]
            if not len(positions):
                return
        self.positions.append(positions)
        if callable(problem):
            self.texts.append(np.asarray(problem(self.raw.iloc[positions]), dtype=object))
        else:
            self.texts.append(problem)

    def failed(self) -> np.ndarray:
        """Boolean mask of rows with a problem."""
        mask = np.zeros(len(self.raw), dtype=bool)
        for positions in self.positions:
            mask[positions] = True
        return mask

    def reasons(self) -> pd.Series:
        size = len(self.raw)
        if not self.positions:
            array = pa.nulls(size, pa.large_string())
        else:
            order = np.concatenate(self.positions)
            texts: list[str] = []
            prefix = f"{self.field} <- {self.source}"
            for positions, problem in zip(self.positions, self.texts, strict=True):
                values = self.raw.iloc[positions].tolist()
                problems = [problem] * len(values) if isinstance(problem, str) else problem
                texts.extend(
                    f"{prefix} '{_show(value)}': {text}"
                    for value, text in zip(values, problems, strict=True)
                )
            mask = np.zeros(size, dtype=bool)
            mask[order] = True
            # replace_with_mask fills masked slots in position order.
            by_position = [texts[i] for i in np.argsort(order, kind="stable")]
            array = pc.replace_with_mask(
                pa.nulls(size, pa.large_string()),
                pa.array(mask),
                pa.array(by_position, type=pa.large_string()),
            )
        return pd.Series(pd.arrays.ArrowStringArray(array), index=self.raw.index, dtype=STRING)


def _show(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _no_reasons(index: pd.Index) -> pd.Series:
    array = pa.nulls(len(index), pa.large_string())
    return pd.Series(pd.arrays.ArrowStringArray(array), index=index, dtype=STRING)


# --- shared helpers ---------------------------------------------------------------------------


def _text(raw: pd.Series) -> pd.Series:
    """The values as ``string[pyarrow]``; whole floats render without ``.0`` (an id read as
    float because of a missing value must still match ``"1042"``)."""
    if isinstance(raw.dtype, pd.StringDtype) and raw.dtype.storage == "pyarrow":
        return raw
    text = raw.astype(STRING)
    if pd.api.types.is_float_dtype(raw.dtype):
        text = text.str.replace(r"\.0$", "", regex=True)
    return text


def _arrow(text: pd.Series) -> pa.ChunkedArray:
    array = text.array
    if isinstance(array, pd.arrays.ArrowStringArray):
        return array._pa_array
    return pa.chunked_array([pa.array(text.to_numpy(dtype=object), type=pa.large_string())])


def _present(series: pd.Series) -> np.ndarray:
    return series.notna().to_numpy(dtype=bool)


def _matches(text: pd.Series, pattern: str) -> np.ndarray:
    return text.str.contains(pattern, regex=True, na=False).to_numpy(dtype=bool)


def _matches_at(text: pd.Series, rows: np.ndarray, pattern: str) -> np.ndarray:
    """:func:`_matches`, computed only for ``rows`` (false elsewhere)."""
    if rows.all():
        return _matches(text, pattern)
    positions = np.flatnonzero(rows)
    found = np.zeros(len(text), dtype=bool)
    found[positions] = _matches(text.iloc[positions], pattern)
    return found


def _is_numeric(raw: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype)


def _floats(raw: pd.Series) -> np.ndarray:
    """float64 values (NaN where missing or not a number): Arrow's parser first, pandas' for
    batches Arrow refuses."""
    if _is_numeric(raw):
        return raw.to_numpy(dtype="float64", na_value=np.nan)
    text = _text(raw).str.strip()
    try:
        floats = pc.cast(_arrow(text), pa.float64())
        return floats.to_numpy(zero_copy_only=False).astype("float64")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pd.to_numeric(text, errors="coerce").astype("float64").to_numpy()


def _exact_integers(text: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Plain integer text read exactly as int64 (floats lose digits past 2**53)."""
    plain = _matches(text, INTEGER_PATTERN)
    values = np.zeros(len(text), dtype=np.int64)
    if plain.any():
        chosen = pa.array(text[plain].to_numpy(dtype=object), type=pa.large_string())
        values[plain] = pc.cast(chosen, pa.int64()).to_numpy()
    return values, plain


def _by_unique(text: pd.Series, fn: Callable[[str], str | None]) -> pd.Series:
    """Apply a Python function once per distinct value (codes repeat a lot in CMMS data)."""
    codes, uniques = pd.factorize(text, use_na_sentinel=True)
    if not len(uniques):
        return pd.Series(pd.NA, index=text.index, dtype=STRING)
    mapped = pa.array([fn(value) for value in uniques], type=pa.large_string())
    indices = pa.array(codes, mask=codes < 0)
    return pd.Series(
        pd.arrays.ArrowStringArray(pc.take(mapped, indices)), index=text.index, dtype=STRING
    )


# --- date-times -------------------------------------------------------------------------------


@functools.cache
def _zone(name: str) -> bool:
    """Whether pandas knows the IANA zone ``name`` (it localizes by name, vectorized)."""
    try:
        pd.DatetimeTZDtype(tz=name)
    except Exception:
        return False
    return bool(name)


def _is_strftime(fmt: str) -> bool:
    return "%" in fmt


def _strftime_is_aware(fmt: str) -> bool:
    return "%z" in fmt or "%Z" in fmt


def check_datetime(fmt: str, timezone: str | None = None) -> None:
    """Load-time check of a datetime rule: known format, valid strftime pattern, known zone."""
    if fmt not in DATETIME_FORMATS and not _is_strftime(fmt):
        close = difflib.get_close_matches(fmt, DATETIME_FORMATS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise TransformSpecError(
            f"unknown date-time format '{fmt}'{hint} (use one of "
            f"{', '.join(DATETIME_FORMATS)} or a strftime pattern such as '%d.%m.%Y %H:%M')"
        )
    if _is_strftime(fmt):
        bad = sorted(set(re.findall(r"%(.)", fmt)) - set("aAwdbBmyYHIpMSfzZjUWcxXGuV%"))
        if bad:
            codes = ", ".join(f"%{code}" for code in bad)
            raise TransformSpecError(f"date-time pattern '{fmt}' uses unknown codes {codes}")
    if timezone is not None and not _zone(timezone):
        raise TransformSpecError(f"unknown time zone '{timezone}' (use an IANA name)")


def parse_datetime(
    raw: pd.Series,
    *,
    fmt: str = "iso8601",
    timezone: str | pd.Series | None = None,
    field: str,
    source: str,
) -> Converted:
    """Text (or numbers, or datetimes) to ``datetime64[ns, UTC]``.

    Values carrying an offset are exact. Values without one are wall-clock times in
    ``timezone`` (one IANA name, or a Series of them aligned on ``raw``'s index, e.g. each
    row's site zone) and are rejected when no zone is known: guessing would shift maintenance
    dates by hours without anyone noticing. Local times skipped or repeated by a DST change
    are rejected too, for the same reason.
    """
    check_datetime(fmt, timezone if isinstance(timezone, str) else None)
    problems = _Problems(raw, field, source)
    size = len(raw)
    ns = np.full(size, NAT, dtype=np.int64)

    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        values = raw.dt.tz_convert("UTC") if raw.dt.tz is not None else None
        if values is not None:
            ns = _nanoseconds(values)
        else:
            naive = _present(raw)
            _localize(ns, problems, _nanoseconds(raw), naive, timezone, raw.index)
    elif fmt in NS_PER:
        _parse_epoch(raw, ns, problems, NS_PER[fmt])
    else:
        text = _text(raw).str.strip()
        present = _present(text) & (text.str.len().to_numpy(dtype="int64", na_value=0) > 0)
        if fmt == "iso8601":
            _parse_iso(text, present, ns, problems, timezone)
        elif fmt == "sap":
            _parse_sap(text, present, ns, problems)
        elif fmt == "date":
            shaped = present & _matches(text, DATE_PATTERN)
            wall = _arrow_or_pandas(text, shaped, pa.timestamp("ns"))
            problems.add(present & ~shaped | shaped & (wall == NAT), "not a date (YYYY-MM-DD)")
            _localize(ns, problems, wall, shaped & (wall != NAT), timezone, raw.index)
        else:
            _parse_strftime(text, present, ns, problems, fmt, timezone)

    values = pd.Series(ns.view("datetime64[ns]"), index=raw.index).dt.tz_localize("UTC")
    return Converted(values, problems.reasons())


def _nanoseconds(values: pd.Series) -> np.ndarray:
    """int64 nanoseconds since the epoch (NaT as the int64 minimum)."""
    return (
        values.astype("datetime64[ns, UTC]" if values.dt.tz else "datetime64[ns]")
        .to_numpy(dtype="datetime64[ns]")
        .view(np.int64)
    )


def _arrow_or_pandas(
    text: pd.Series, rows: np.ndarray, target: pa.DataType, fmt: str = "ISO8601"
) -> np.ndarray:
    """Parse ``text[rows]`` into int64 nanoseconds (NaT where unparseable).

    pandas' parsers are the authority on what is valid; Arrow's, many times faster, do the
    bulk. Arrow's ISO cast is strict but all-or-nothing, so blocks holding a bad value are
    parsed again by pandas. Arrow's strptime is lenient (31.02. becomes 03.03.), so its
    results are kept only where formatting them back gives the original text.
    """
    out = np.full(len(text), NAT, dtype=np.int64)
    positions = np.flatnonzero(rows)
    if not len(positions):
        return out
    everything = len(positions) == len(text)
    chosen = text if everything else text.iloc[positions]
    aware = target.tz is not None

    def strict(block: pd.Series) -> np.ndarray:
        parsed = pd.to_datetime(block.astype(object), format=fmt, errors="coerce", utc=aware)
        return _nanoseconds(parsed)

    array = _arrow(chosen).combine_chunks()
    if array.type != pa.large_string():
        array = array.cast(pa.large_string())
    if fmt != "ISO8601":
        if aware or "%f" in fmt:
            out[positions] = strict(chosen)
            return out
        parsed = pc.strptime(array, format=fmt, unit="s", error_is_null=True)
        same = pc.fill_null(pc.equal(pc.strftime(parsed, format=fmt), array), False)
        same_mask = same.to_numpy(zero_copy_only=False)
        nanos = parsed.cast(pa.timestamp("ns")).cast(pa.int64()).to_numpy(zero_copy_only=False)
        out[positions[same_mask]] = nanos[same_mask]
        if not same_mask.all():
            out[positions[~same_mask]] = strict(chosen[~same_mask])
        return out

    parsed, refused = _arrow_blocks(array, target)
    out[positions] = parsed
    if refused.any():
        chosen_rows = np.flatnonzero(refused)
        out[positions[chosen_rows]] = strict(chosen.iloc[chosen_rows])
    return out


def _arrow_blocks(array: pa.Array, target: pa.DataType) -> tuple[np.ndarray, np.ndarray]:
    """Cast text to ``target`` with Arrow: int64 nanoseconds (NaT where null) and the mask of
    values in the small pieces Arrow refused (their nanoseconds are NaT).

    Arrow casts a whole array or nothing: the whole array is tried first, then blocks, and a
    failing block is halved until the pieces holding a bad value are at most
    :data:`STRICT_ROWS` long.
    """
    out = np.full(len(array), NAT, dtype=np.int64)
    refused = np.zeros(len(array), dtype=bool)

    def arrow(block: pa.Array) -> np.ndarray:
        nanos = pc.cast(block, target).cast(pa.int64())
        if nanos.null_count:
            nanos = pc.fill_null(nanos, NAT)
        return nanos.to_numpy(zero_copy_only=False)

    pending = [(0, len(array))]
    while pending:
        start, stop = pending.pop()
        try:
            out[start:stop] = arrow(array.slice(start, stop - start))
            continue
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        size = stop - start
        if size <= STRICT_ROWS:
            refused[start:stop] = True
        elif size > BLOCK_ROWS:
            pending.extend(
                (low, min(low + BLOCK_ROWS, stop)) for low in range(start, stop, BLOCK_ROWS)
            )
        else:
            middle = start + size // 2
            pending.extend([(middle, stop), (start, middle)])
    return out, refused


def _parse_iso(
    text: pd.Series,
    present: np.ndarray,
    ns: np.ndarray,
    problems: _Problems,
    timezone: str | pd.Series | None,
) -> None:
    # Arrow's ISO parser takes an offset-aware value only with a time and an offset (Z, +hh,
    # +hhmm, +hh:mm), all of which OFFSET_PATTERN matches: what it parses is done, and only
    # the few values it refuses need the pattern and the slower paths below.
    rows = present
    array = _arrow(text).combine_chunks()
    # Missing values are nulls (parsed as NaT) unless some are blank text, which Arrow
    # refuses; then only the present values are cast.
    if not present.all() and not np.array_equal(_present(text), present):
        array = array.take(pa.array(np.flatnonzero(present)))
    if array.type != pa.large_string():
        array = array.cast(pa.large_string())
    parsed, refused = _arrow_blocks(array, pa.timestamp("ns", tz="UTC"))
    if len(array) == len(text):
        done = present & ~refused
        ns[done] = parsed[done]
        rows = present & refused
    else:
        positions = np.flatnonzero(present)
        ns[positions[~refused]] = parsed[~refused]
        rows = np.zeros(len(text), dtype=bool)
        rows[positions[refused]] = True
    if not rows.any():
        return
    has_offset = rows & _matches_at(text, rows, OFFSET_PATTERN)
    if has_offset.any():
        aware = _arrow_or_pandas(
            text.str.replace(r"\s*UTC$", "Z", regex=True) if _any_utc(text, has_offset) else text,
            has_offset,
            pa.timestamp("ns", tz="UTC"),
        )
        ns[has_offset] = aware[has_offset]
        problems.add(has_offset & (aware == NAT), "not an ISO-8601 date-time")
    naive = rows & ~has_offset
    if naive.any():
        wall = _arrow_or_pandas(text, naive, pa.timestamp("ns"))
        problems.add(naive & (wall == NAT), "not an ISO-8601 date-time")
        _localize(ns, problems, wall, naive & (wall != NAT), timezone, text.index)


def _any_utc(text: pd.Series, rows: np.ndarray) -> bool:
    return bool(text[rows].str.endswith("UTC").any())


def _parse_sap(text: pd.Series, present: np.ndarray, ns: np.ndarray, problems: _Problems) -> None:
    """SAP's OData date-times: V2 ``/Date(ms)/`` and ``/Date(ms+hhmm)/``, V4 ISO-8601 with an
    offset (``Edm.DateTimeOffset``), so one spec reads a service of either version.

    V2's milliseconds count from the Unix epoch in UTC; the offset only says which local zone
    the writer was in, so it does not move the instant. A value without an offset is refused:
    neither version sends one, and guessing its zone would shift the date.
    """
    parts = pc.extract_regex(_arrow(text), pattern=SAP_PATTERN)
    millis = pd.Series(
        pd.arrays.ArrowStringArray(pc.struct_field(parts, "millis").cast(pa.large_string())),
        index=text.index,
        dtype=STRING,
    )
    shaped = present & _present(millis)
    iso = present & ~shaped & _matches(text, OFFSET_PATTERN)
    if iso.any():
        aware = _arrow_or_pandas(text, iso, pa.timestamp("ns", tz="UTC"))
        ns[iso] = aware[iso]
        problems.add(iso & (aware == NAT), SAP_DATE_PROBLEM)
    problems.add(present & ~shaped & ~iso, SAP_DATE_PROBLEM)
    if shaped.any():
        exact, plain = _exact_integers(millis)
        in_range = plain & (np.abs(exact) <= np.iinfo(np.int64).max // NS_PER["epoch_ms"])
        problems.add(shaped & ~in_range, "outside the supported date range (1677-2262)")
        good = shaped & in_range
        ns[good] = exact[good] * NS_PER["epoch_ms"]


def _parse_epoch(raw: pd.Series, ns: np.ndarray, problems: _Problems, per_unit: int) -> None:
    limit = np.iinfo(np.int64).max // per_unit
    if pd.api.types.is_integer_dtype(raw.dtype):
        present = _present(raw)
        exact = raw.to_numpy(dtype="float64", na_value=np.nan)
        ints = np.where(present, raw.fillna(0).to_numpy(dtype=np.int64), 0)
        good = present & (np.abs(exact) <= limit)
        problems.add(present & ~good, "outside the supported date range (1677-2262)")
        ns[good] = ints[good] * per_unit
        return
    if _is_numeric(raw):
        present = _present(raw)
        floats = raw.to_numpy(dtype="float64", na_value=np.nan)
        plain = np.zeros(len(raw), dtype=bool)
        exact = np.zeros(len(raw), dtype=np.int64)
    else:
        text = _text(raw).str.strip()
        present = _present(text) & (text.str.len().to_numpy(dtype="int64", na_value=0) > 0)
        exact, plain = _exact_integers(text)
        floats = _floats(text)
    with np.errstate(invalid="ignore"):
        fine_float = present & ~plain & np.isfinite(floats)
        problems.add(present & ~plain & ~fine_float, "not a number of seconds/milliseconds")
        in_range = (plain & (np.abs(exact) <= limit)) | (
            fine_float & (np.abs(np.nan_to_num(floats)) < limit)
        )
        problems.add(
            (plain | fine_float) & ~in_range, "outside the supported date range (1677-2262)"
        )
        ints = plain & in_range
        ns[ints] = exact[ints] * per_unit
        frac = fine_float & in_range
        whole = np.floor(floats[frac])
        ns[frac] = whole.astype(np.int64) * per_unit + np.round(
            (floats[frac] - whole) * per_unit
        ).astype(np.int64)


def _parse_strftime(
    text: pd.Series,
    present: np.ndarray,
    ns: np.ndarray,
    problems: _Problems,
    fmt: str,
    timezone: str | pd.Series | None,
) -> None:
    if _strftime_is_aware(fmt):
        aware = _arrow_or_pandas(text, present, pa.timestamp("ns", tz="UTC"), fmt)
        problems.add(present & (aware == NAT), f"does not match the date-time pattern {fmt}")
        ns[present] = aware[present]
        return
    wall = _arrow_or_pandas(text, present, pa.timestamp("ns"), fmt)
    problems.add(present & (wall == NAT), f"does not match the date-time pattern {fmt}")
    _localize(ns, problems, wall, present & (wall != NAT), timezone, text.index)


def _localize(
    ns: np.ndarray,
    problems: _Problems,
    wall: np.ndarray,
    rows: np.ndarray,
    timezone: str | pd.Series | None,
    index: pd.Index,
) -> None:
    """Read wall-clock nanoseconds ``wall[rows]`` in the rows' zones into UTC ``ns``."""
    if not rows.any():
        return
    if timezone is None:
        problems.add(
            rows,
            "no UTC offset and no time zone known; give datetime.timezone or timezone_from",
        )
        return
    if isinstance(timezone, str):
        names = np.zeros(len(ns), dtype=np.int64)
        uniques: list[Any] = [timezone]
    else:
        zones = timezone.reindex(index) if not timezone.index.equals(index) else timezone
        zones = zones.astype(STRING).str.strip()
        zones = zones.mask(zones.eq("").fillna(False))
        names, uniques_index = pd.factorize(zones, use_na_sentinel=True)
        uniques = list(uniques_index)
        problems.add(
            rows & (names < 0),
            "no UTC offset and no time zone known for this row (its site has no time zone)",
        )
    for code, name in enumerate(uniques):
        chosen = rows & (names == code)
        if not chosen.any():
            continue
        zone_name = str(name).strip()
        if not _zone(zone_name):
            problems.add(chosen, f"unknown time zone '{zone_name}'")
            continue
        local = pd.Series(wall[chosen].view("datetime64[ns]"))
        placed = local.dt.tz_localize(zone_name, ambiguous="NaT", nonexistent="NaT")
        converted = _nanoseconds(placed.dt.tz_convert("UTC"))
        ns[chosen] = converted
        if (converted == NAT).any():
            _explain_dst(problems, chosen, local, converted == NAT, zone_name)


def _explain_dst(
    problems: _Problems, chosen: np.ndarray, local: pd.Series, lost: np.ndarray, zone: str
) -> None:
    """Tell skipped (spring forward) from repeated (fall back) local times, for failing rows."""
    positions = np.flatnonzero(chosen)[lost]
    failing = local[lost]
    summer = np.ones(len(failing), dtype=bool)
    earliest = failing.dt.tz_localize(zone, ambiguous=summer, nonexistent="NaT")
    skipped = earliest.isna().to_numpy()
    gap = np.zeros(len(chosen), dtype=bool)
    gap[positions[skipped]] = True
    overlap = np.zeros(len(chosen), dtype=bool)
    overlap[positions[~skipped]] = True
    problems.add(
        gap, f"local time does not exist in {zone} (clocks jump forward); add a UTC offset"
    )
    problems.add(
        overlap,
        f"local time is ambiguous in {zone} (clocks fall back, it happens twice); add a UTC offset",
    )


# --- casts ------------------------------------------------------------------------------------


def cast(raw: pd.Series, *, to: str, field: str, source: str) -> Converted:
    """Convert to one of :data:`CAST_TYPES`, with a reason for each value that does not fit.

    dtypes: string -> ``string[pyarrow]``, integer -> ``Int64``, float -> ``float64``,
    boolean -> ``boolean``, datetime -> ``datetime64[ns, UTC]``. Empty text counts as missing
    (CSV has no other way to write it); "1.5" is not an integer (no silent truncation).
    """
    if to == "string":
        return Converted(_text(raw), _no_reasons(raw.index))
    if to == "datetime":
        return parse_datetime(raw, fmt="iso8601", field=field, source=source)
    if to == "float":
        return _cast_float(raw, field, source)
    if to == "integer":
        return _cast_integer(raw, field, source)
    if to == "boolean":
        return _cast_boolean(raw, field, source)
    close = difflib.get_close_matches(to, CAST_TYPES, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise TransformSpecError(f"unknown cast type '{to}'{hint} (use {', '.join(CAST_TYPES)})")


def _text_present(raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    text = _text(raw).str.strip()
    return text, _present(text) & (text.str.len().to_numpy(dtype="int64", na_value=0) > 0)


def _cast_float(raw: pd.Series, field: str, source: str) -> Converted:
    problems = _Problems(raw, field, source)
    if _is_numeric(raw) or pd.api.types.is_bool_dtype(raw.dtype):
        floats = raw.to_numpy(dtype="float64", na_value=np.nan)
        return Converted(pd.Series(floats, index=raw.index), problems.reasons())
    text, present = _text_present(raw)
    floats = _floats(text)
    finite = np.isfinite(floats)
    problems.add(present & ~finite, "not a number")
    floats = np.where(present & finite, floats, np.nan)
    return Converted(pd.Series(floats, index=raw.index, dtype="float64"), problems.reasons())


def _cast_integer(raw: pd.Series, field: str, source: str) -> Converted:
    problems = _Problems(raw, field, source)
    size = len(raw)
    if pd.api.types.is_bool_dtype(raw.dtype):
        return Converted(raw.astype("Int64"), problems.reasons())
    if pd.api.types.is_integer_dtype(raw.dtype):
        return Converted(raw.astype("Int64"), problems.reasons())
    values = np.zeros(size, dtype=np.int64)
    if _is_numeric(raw):
        present = _present(raw)
        exact = np.zeros(size, dtype=bool)
        floats = raw.to_numpy(dtype="float64", na_value=np.nan)
    else:
        text, present = _text_present(raw)
        values, exact = _exact_integers(text)
        floats = _floats(text)
    other = present & ~exact
    with np.errstate(invalid="ignore"):
        number = other & np.isfinite(floats)
        whole = number & (np.floor(floats) == floats)
        fits = whole & (np.abs(floats) < 2.0**53)
    problems.add(other & ~number, "not a number")
    problems.add(number & ~whole, "not a whole number (it would have to be rounded)")
    problems.add(whole & ~fits, "too large for an integer")
    values[fits] = floats[fits].astype(np.int64)
    good = exact | fits
    result = pd.arrays.IntegerArray(values, ~good)
    return Converted(pd.Series(result, index=raw.index), problems.reasons())


def _cast_boolean(raw: pd.Series, field: str, source: str) -> Converted:
    problems = _Problems(raw, field, source)
    if pd.api.types.is_bool_dtype(raw.dtype):
        return Converted(raw.astype("boolean"), problems.reasons())
    text, present = _text_present(raw)
    lowered = text.str.lower()
    true = lowered.isin(TRUE_WORDS).to_numpy(dtype=bool, na_value=False)
    false = lowered.isin(FALSE_WORDS).to_numpy(dtype=bool, na_value=False)
    problems.add(present & ~true & ~false, "not a yes/no value (true/false, yes/no, 1/0, y/n, X)")
    result = pd.arrays.BooleanArray(true, ~(true | false))
    return Converted(pd.Series(result, index=raw.index), problems.reasons())


# --- value maps -------------------------------------------------------------------------------


def map_values(
    raw: pd.Series,
    *,
    table: Mapping[Any, Any],
    default: Any = MISSING,
    field: str,
    source: str,
    case_sensitive: bool = False,
) -> Converted:
    """Translate source codes through a code table.

    Keys and values are compared as trimmed strings, so a numeric source value 1 matches a
    ``"1"`` key. Unknown codes are reasons unless ``default`` is given (``None`` is a valid
    default: unknown codes become null). Missing values stay missing; an empty string is
    missing too unless the table has an ``""`` key.
    """
    keys: dict[str, Any] = {}
    shown: dict[str, str] = {}
    for key, value in table.items():
        cleaned = str(key).strip()
        folded = cleaned if case_sensitive else cleaned.casefold()
        if folded in keys and keys[folded] != value:
            raise TransformSpecError(
                f"code table keys '{shown[folded]}' and '{cleaned}' are the same code "
                f"but map to different values"
            )
        keys[folded] = value
        shown[folded] = cleaned
    text = _text(raw).str.strip()
    codes, uniques = pd.factorize(text, use_na_sentinel=True)
    folded = [value if case_sensitive else value.casefold() for value in uniques]
    found = np.array([code in keys for code in folded] + [False], dtype=bool)
    mapped = [keys.get(code) for code in folded] + [None]
    row_found = found[codes]
    present = codes >= 0
    if "" not in keys and "" in uniques:
        present &= codes != list(uniques).index("")
    unknown = present & ~row_found
    fill = None if default is MISSING else default
    outputs = [*mapped[:-1], fill, None]
    # codes: 0..n-1 known uniques; n = unknown with default; n+1 = missing.
    choice = np.where(row_found, codes, np.where(unknown, len(uniques), len(uniques) + 1))
    values = _typed(outputs, choice, raw.index)
    problems = _Problems(raw, field, source)
    if default is MISSING:
        listing = ", ".join(shown.values())
        if len(shown) > 12:
            listing = ", ".join(list(shown.values())[:12]) + f", ... ({len(shown)} codes)"

        def explain(values: pd.Series) -> list[str]:
            texts = []
            for value in values:
                cleaned = str(value).strip()
                wanted = cleaned if case_sensitive else cleaned.casefold()
                close = difflib.get_close_matches(wanted, list(keys), n=1)
                hint = f"; did you mean '{shown[close[0]]}'?" if close else ""
                texts.append(f"not in the code table ({listing}){hint}")
            return texts

        problems.add(unknown, explain)
    return Converted(values, problems.reasons())


def _typed(outputs: list[Any], choice: np.ndarray, index: pd.Index) -> pd.Series:
    """Pick ``outputs[choice]`` per row, in the dtype the table's values call for."""
    kinds = {type(value) for value in outputs if value is not None}
    if kinds <= {str}:
        array = pa.array(outputs, type=pa.large_string())
        taken = pc.take(array, pa.array(choice))
        return pd.Series(pd.arrays.ArrowStringArray(taken), index=index, dtype=STRING)
    if kinds <= {bool}:
        dtype = "boolean"
    elif kinds <= {int}:
        dtype = "Int64"
    elif kinds <= {int, float}:
        dtype = "float64"
    else:
        dtype = "object"
    picked = pd.Series(outputs, dtype=dtype).take(choice)
    picked.index = index
    return picked


# --- units ------------------------------------------------------------------------------------


@functools.cache
def _registry() -> Any:
    import pint

    return pint.UnitRegistry()


def _unit_name(unit: str) -> str:
    """Accept the common ``m3/h`` spelling for ``m**3/h``."""
    return re.sub(r"(?<=[A-Za-z])([23])(?![\d.*])", r"**\1", unit.strip())


@functools.cache
def _conversion(from_unit: str, to_unit: str) -> tuple[float, float]:
    """``(scale, offset)`` with ``to = from * scale + offset``, computed once per unit pair."""
    import pint

    registry = _registry()
    quantity = registry.Quantity
    try:
        offset = quantity(0.0, _unit_name(from_unit)).to(_unit_name(to_unit)).magnitude
        # The scale comes from differences so offset units (degC, degF) keep full precision.
        step = quantity(1.0, _unit_name(from_unit)) - quantity(0.0, _unit_name(from_unit))
        target = quantity(1.0, _unit_name(to_unit)) - quantity(0.0, _unit_name(to_unit))
        scale = step.to(target.units).magnitude
    except pint.UndefinedUnitError as error:
        unknown = from_unit if _unknown(from_unit) else to_unit
        raise TransformSpecError(
            f"unknown unit '{unknown}' (use pint names such as degC, degF, K, bar, psi, kPa, "
            f"m**3/h, l/min, gal/min, mm, in, kg, lb, mm/s)"
        ) from error
    except pint.DimensionalityError as error:
        raise TransformSpecError(
            f"cannot convert {from_unit} to {to_unit}: they measure different things "
            f"({_dimension(from_unit)} vs {_dimension(to_unit)})"
        ) from error
    except Exception as error:
        raise TransformSpecError(f"cannot convert {from_unit} to {to_unit}: {error}") from error
    return float(_tidy(scale)), float(_tidy(offset))


def _unknown(unit: str) -> bool:
    try:
        _registry().parse_units(_unit_name(unit))
    except Exception:
        return True
    return False


def _dimension(unit: str) -> str:
    return str(_registry().parse_units(_unit_name(unit)).dimensionality)


def _tidy(number: float) -> float:
    """Undo pint's last-bit noise on exact ratios (5/9 stays 5/9, 14.5037738 stays as is)."""
    fraction = Fraction(number).limit_denominator(1000)
    return float(fraction) if abs(float(fraction) - number) <= 1e-12 * abs(number) else number


def check_units(from_unit: str, to_unit: str) -> None:
    """Load-time check that both units exist and measure the same thing."""
    _conversion(from_unit, to_unit)


def convert_units(
    raw: pd.Series, *, from_unit: str, to_unit: str, field: str, source: str
) -> Converted:
    """Numbers in ``from_unit`` to float64 in ``to_unit``; non-numeric values are reasons.

    The factor and offset come from pint once per unit pair; the values only see numpy.
    """
    scale, offset = _conversion(from_unit, to_unit)
    problems = _Problems(raw, field, source)
    if _is_numeric(raw):
        floats = raw.to_numpy(dtype="float64", na_value=np.nan)
    else:
        text, present = _text_present(raw)
        floats = _floats(text)
        finite = np.isfinite(floats)
        problems.add(present & ~finite, f"not a number, cannot convert {from_unit} to {to_unit}")
        floats = np.where(present & finite, floats, np.nan)
    values = floats * scale + offset if offset else floats * scale
    return Converted(pd.Series(values, index=raw.index, dtype="float64"), problems.reasons())


# --- named string transforms ------------------------------------------------------------------

TransformFn = Callable[..., pd.Series | Converted]


@dataclass(frozen=True)
class _Registered:
    fn: TransformFn
    arguments: Mapping[str, Any]
    required: frozenset[str]
    check: Callable[[Mapping[str, Any]], None] | None


_TRANSFORMS: dict[str, _Registered] = {}


def register_transform(
    name: str,
    *,
    arguments: Mapping[str, Any] | None = None,
    check: Callable[[Mapping[str, Any]], None] | None = None,
) -> Callable[[TransformFn], TransformFn]:
    """Register ``fn(series, *, field, source, **args)`` as the transform ``name``.

    ``series`` arrives as ``string[pyarrow]``. ``arguments`` maps argument names to types
    (``str``, ``int``, ``float``, ``bool``, a tuple of those, or ``re.Pattern`` for a string
    that must be a valid regex); when omitted they are read from the function's keyword
    parameters. Parameters without a default are required. ``check`` may reject argument
    values beyond their type by raising :class:`TransformSpecError`. The function may return
    a Series or a :class:`Converted` with reasons of its own.
    """
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ValueError(f"transform name {name!r} must be lower_snake_case")

    def decorator(fn: TransformFn) -> TransformFn:
        parameters = [
            parameter
            for parameter in list(inspect.signature(fn).parameters.values())[1:]
            if parameter.name not in ("field", "source")
            and parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL)
        ]
        declared = dict(arguments) if arguments is not None else _hinted(fn, parameters)
        names = {parameter.name for parameter in parameters}
        if set(declared) - names:
            extra = ", ".join(sorted(set(declared) - names))
            raise ValueError(f"transform {name!r}: arguments {extra} are not parameters of {fn}")
        required = frozenset(
            parameter.name
            for parameter in parameters
            if parameter.default is inspect.Parameter.empty
        )
        existing = _TRANSFORMS.get(name)
        if existing is not None and _identity(existing.fn) != _identity(fn):
            raise ValueError(f"transform {name!r} is already registered by {existing.fn}")
        _TRANSFORMS[name] = _Registered(fn, declared, required, check)
        return fn

    return decorator


def _identity(fn: Callable[..., Any]) -> tuple[str, str]:
    return getattr(fn, "__module__", ""), getattr(fn, "__qualname__", repr(fn))


def _hinted(fn: Callable[..., Any], parameters: list[inspect.Parameter]) -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    return {parameter.name: hints.get(parameter.name, object) for parameter in parameters}


def transform_names() -> list[str]:
    """Registered transform names, sorted (for docs, completion and error messages)."""
    return sorted(_TRANSFORMS)


def check_transform(name: str, args: Mapping[str, Any] | None) -> None:
    """Load-time check of one transform use: name, argument names, types and regexes."""
    registered = _TRANSFORMS.get(name)
    if registered is None:
        close = difflib.get_close_matches(name, list(_TRANSFORMS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise TransformSpecError(
            f"unknown transform '{name}'{hint} (known: {', '.join(transform_names())})"
        )
    args = dict(args or {})
    allowed = registered.arguments
    for key in args:
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            takes = ", ".join(allowed) if allowed else "no arguments"
            raise TransformSpecError(
                f"transform {name}: unknown argument '{key}'{hint} (it takes {takes})"
            )
    missing = sorted(registered.required - set(args))
    if missing:
        raise TransformSpecError(f"transform {name}: missing argument {', '.join(missing)}")
    for key, value in args.items():
        expected = allowed[key]
        if not _type_ok(value, expected):
            raise TransformSpecError(
                f"transform {name}: argument {key} must be {_type_name(expected)}, got {value!r}"
            )
        if expected is re.Pattern:
            try:
                _compiled(value)
            except re.error as error:
                raise TransformSpecError(
                    f"transform {name}: invalid regular expression '{value}' in argument "
                    f"{key}: {error}"
                ) from error
    if registered.check is not None:
        registered.check(args)


def _type_ok(value: Any, expected: Any) -> bool:
    if expected is object or expected is Any:
        return True
    if expected is re.Pattern:
        return isinstance(value, str)
    options = expected if isinstance(expected, tuple) else _union_members(expected)
    if value is None:
        return type(None) in options
    for option in options:
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            return True
        if option is int and isinstance(value, bool):
            continue
        origin = typing.get_origin(option) or option
        if isinstance(origin, type) and isinstance(value, origin):
            return True
    return False


def _union_members(expected: Any) -> tuple[Any, ...]:
    if typing.get_origin(expected) in (typing.Union, types.UnionType):
        return typing.get_args(expected)
    return (expected,)


def _type_name(expected: Any) -> str:
    names = {str: "text", int: "a whole number", float: "a number", bool: "true or false"}
    names[list] = "a list"
    names[type(None)] = "null"
    if expected is re.Pattern:
        return "a regular expression (text)"
    options = expected if isinstance(expected, tuple) else _union_members(expected)
    return " or ".join(
        names.get(option, getattr(option, "__name__", str(option))) for option in options
    )


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def apply_transform(
    name: str, args: Mapping[str, Any] | None, raw: pd.Series, *, field: str, source: str
) -> Converted:
    """Run one named transform over a column (the spec was checked when it was loaded)."""
    check_transform(name, args)
    registered = _TRANSFORMS[name]
    text = _text(raw)
    result = registered.fn(text, field=field, source=source, **dict(args or {}))
    if isinstance(result, Converted):
        converted = result
    elif isinstance(result, pd.Series):
        converted = Converted(result, _no_reasons(raw.index))
    else:
        raise TypeError(f"transform {name} returned {type(result).__name__}, not a Series")
    if len(converted.values) != len(raw) or not converted.values.index.equals(raw.index):
        raise ValueError(f"transform {name} changed the rows of its input")
    return converted


# Built-ins. Each takes string[pyarrow] and returns string[pyarrow], null in -> null out.


@register_transform("trim")
def _trim(text: pd.Series, *, field: str, source: str) -> pd.Series:
    return text.str.strip()


@register_transform("upper")
def _upper(text: pd.Series, *, field: str, source: str) -> pd.Series:
    return text.str.upper()


@register_transform("lower")
def _lower(text: pd.Series, *, field: str, source: str) -> pd.Series:
    return text.str.lower()


def _check_group(args: Mapping[str, Any]) -> None:
    compiled = _compiled(args["pattern"])
    group = args.get("group", 1)
    if isinstance(group, str):
        if group not in compiled.groupindex:
            raise TransformSpecError(
                f"transform regex_extract: pattern '{args['pattern']}' has no group named '{group}'"
            )
    elif not 0 <= group <= compiled.groups:
        raise TransformSpecError(
            f"transform regex_extract: pattern '{args['pattern']}' has {compiled.groups} "
            f"group(s), so group {group} does not exist"
        )


@register_transform(
    "regex_extract", arguments={"pattern": re.Pattern, "group": (int, str)}, check=_check_group
)
def _regex_extract(
    text: pd.Series, *, field: str, source: str, pattern: str, group: int | str = 1
) -> pd.Series:
    """The first match's group; no match is null (``required`` decides if that is an error)."""
    compiled = _compiled(pattern)

    def extract(value: str) -> str | None:
        match = compiled.search(value)
        return None if match is None else match.group(group)

    return _by_unique(text, extract)


def _check_replacement(args: Mapping[str, Any]) -> None:
    compiled = _compiled(args["pattern"])
    for number, name in re.findall(r"\\(\d+)|\\g<([^>]*)>", args["replacement"]):
        reference = name or number
        exists = (
            int(reference) <= compiled.groups
            if reference.isdigit()
            else reference in compiled.groupindex
        )
        if not exists:
            raise TransformSpecError(
                f"transform regex_replace: replacement '{args['replacement']}' refers to "
                f"group {reference}, which pattern '{args['pattern']}' does not have"
            )


@register_transform(
    "regex_replace",
    arguments={"pattern": re.Pattern, "replacement": str},
    check=_check_replacement,
)
def _regex_replace(
    text: pd.Series, *, field: str, source: str, pattern: str, replacement: str
) -> pd.Series:
    """Python ``re.sub`` semantics; Arrow's regex engine runs it when it can."""
    try:
        return text.str.replace(pattern, replacement, regex=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        compiled = _compiled(pattern)
        return _by_unique(text, lambda value: compiled.sub(replacement, value))


def _check_split(args: Mapping[str, Any]) -> None:
    if args["separator"] == "":
        raise TransformSpecError("transform split: separator must not be empty")


@register_transform("split", arguments={"separator": str, "index": int}, check=_check_split)
def _split(text: pd.Series, *, field: str, source: str, separator: str, index: int) -> pd.Series:
    """Part ``index`` (0-based, negative from the end) of the text split on ``separator``;
    null when there are fewer parts."""
    array = _arrow(text).combine_chunks()
    lists = pc.split_pattern(array, pattern=separator)
    offsets = np.asarray(lists.offsets)
    starts, lengths = offsets[:-1], np.diff(offsets)
    position = np.full(len(lengths), index) if index >= 0 else lengths + index
    valid = _present(text) & (position >= 0) & (position < lengths)
    picked = pc.take(lists.values, pa.array(np.where(valid, starts + position, 0)))
    result = pc.if_else(pa.array(valid), picked, pa.scalar(None, pa.large_string()))
    return pd.Series(
        pd.arrays.ArrowStringArray(result.cast(pa.large_string())), index=text.index, dtype=STRING
    )


def _check_pad(args: Mapping[str, Any]) -> None:
    if args["width"] < 0:
        raise TransformSpecError("transform pad: width must not be negative")
    if len(args.get("fill", " ")) != 1:
        raise TransformSpecError("transform pad: fill must be exactly one character")
    if args.get("side", "left") not in ("left", "right"):
        raise TransformSpecError("transform pad: side must be 'left' or 'right'")


@register_transform("pad", arguments={"width": int, "fill": str, "side": str}, check=_check_pad)
def _pad(
    text: pd.Series,
    *,
    field: str,
    source: str,
    width: int,
    fill: str = " ",
    side: str = "left",
) -> pd.Series:
    return text.str.pad(width, side=side, fillchar=fill)


@register_transform("prefix", arguments={"text": str})
def _prefix(series: pd.Series, *, field: str, source: str, text: str) -> pd.Series:
    return text + series


@register_transform("suffix", arguments={"text": str})
def _suffix(series: pd.Series, *, field: str, source: str, text: str) -> pd.Series:
    return series + text


@register_transform("strip_leading_zeros")
def _strip_leading_zeros(text: pd.Series, *, field: str, source: str) -> pd.Series:
    """SAP pads numbers to fixed width ("000010004711"); all-zero text keeps one "0"."""
    stripped = text.str.lstrip("0")
    return stripped.mask(stripped.eq("").fillna(False) & text.ne("").fillna(False), "0")


@register_transform("replace", arguments={"old": str, "new": str})
def _replace(text: pd.Series, *, field: str, source: str, old: str, new: str) -> pd.Series:
    return text.str.replace(old, new, regex=False)


@register_transform("nullif", arguments={"value": (str, int, float, list)})
def _nullif(text: pd.Series, *, field: str, source: str, value: Any) -> pd.Series:
    """Turn sentinels ("N/A", "", "-", or a list of them) into null."""
    sentinels = [str(item) for item in value] if isinstance(value, list) else [str(value)]
    return text.mask(text.isin(sentinels).fillna(False))
