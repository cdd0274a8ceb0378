"""Vectorized column conversions that report, per row, why a value could not be converted.

Each function returns the converted column and a column of reasons (null where the row is
fine), so a mapping can reject exactly the rows that failed and say which field and why.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

OFFSET_PATTERN = r"(?:Z|[+-]\d{2}:?\d{2})$"


def _reasons(failed: pd.Series, template: str, raw: pd.Series) -> pd.Series:
    reasons = pd.Series(pd.NA, index=raw.index, dtype="string[pyarrow]")
    if failed.any():
        reasons[failed] = [template.format(value=value) for value in raw[failed]]
    return reasons


def map_codes(
    raw: pd.Series, table: Mapping[str, str], *, field: str, source: str
) -> tuple[pd.Series, pd.Series]:
    """Translate source codes through a code table; unknown codes are reasons, not guesses."""
    cleaned = raw.astype("string[pyarrow]").str.strip().str.upper()
    mapped = cleaned.map({key.upper(): value for key, value in table.items()})
    failed = cleaned.notna() & mapped.isna()
    known = ", ".join(table)
    template = f"{field} <- {source} {{value!r}}: not in the code table ({known})"
    return mapped.astype("string[pyarrow]"), _reasons(failed, template, raw)


def parse_timestamps(
    raw: pd.Series, *, field: str, source: str, local_tz: pd.Series | None = None
) -> tuple[pd.Series, pd.Series]:
    """ISO-8601 text to UTC timestamps.

    Values with an offset are exact; values without one are read in ``local_tz`` (the
    site's time zone, per row) when given, and rejected otherwise: guessing a zone would
    shift every maintenance date by hours without anyone noticing.
    """
    text = raw.astype("string[pyarrow]").str.strip()
    result = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
    has_offset = text.str.contains(OFFSET_PATTERN, regex=True, na=False)
    if has_offset.any():
        result[has_offset] = pd.to_datetime(
            text[has_offset], utc=True, errors="coerce", format="ISO8601"
        )
    naive = text.notna() & ~has_offset
    if naive.any() and local_tz is not None:
        parsed = pd.to_datetime(text[naive], errors="coerce", format="ISO8601")
        zones = local_tz[naive]
        for zone in zones.dropna().unique():
            rows = zones.index[zones == zone]
            result[rows] = (
                parsed[rows]
                .dt.tz_localize(str(zone), ambiguous="NaT", nonexistent="NaT")
                .dt.tz_convert("UTC")
            )
    failed = text.notna() & result.isna()
    template = f"{field} <- {source} {{value!r}}: not an ISO-8601 date-time"
    if local_tz is None:
        template += " with a UTC offset"
    return result, _reasons(failed, template, raw)


def parse_numbers(raw: pd.Series, *, field: str, source: str) -> tuple[pd.Series, pd.Series]:
    """Decimal text to float64; text that is not a number is a reason."""
    text = raw.astype("string[pyarrow]").str.strip()
    numbers = pd.to_numeric(text, errors="coerce").astype("float64")
    failed = text.notna() & numbers.isna()
    template = f"{field} <- {source} {{value!r}}: not a number"
    return numbers, _reasons(failed, template, raw)


def collect_rejects(reasons: Mapping[str, pd.Series]) -> pd.DataFrame:
    """Rows with at least one reason: ``reject_field`` (fields, comma-separated) and
    ``reject_reason`` (the reasons joined with '; '), indexed like the input."""
    frame = pd.concat(reasons, axis=1)
    failing = frame.notna()
    rows = failing.any(axis=1)
    if not rows.any():
        return pd.DataFrame(
            {"reject_field": [], "reject_reason": []}, index=frame.index[:0], dtype="string"
        )
    subset, flags = frame[rows], failing[rows]
    fields = flags.apply(lambda row: ", ".join(row.index[row]), axis=1)
    texts = subset.apply(lambda row: "; ".join(row.dropna()), axis=1)
    return pd.DataFrame(
        {"reject_field": fields, "reject_reason": texts}, index=subset.index, dtype="string"
    )
