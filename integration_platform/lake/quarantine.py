"""Quarantine records: rejected input rows kept whole, with the field and the reason.

A rejected row is never dropped: it is stored with the original record (as JSON, since every
source has its own columns), where it came from, and what to fix.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

QUARANTINE_COLUMNS: dict[str, str] = {
    "entity": "Canonical entity the record was meant for",
    "source_system": "System the record came from",
    "external_id": "The record's key in the source system",
    "source_file": "File (or extract) the record came from",
    "source_line": "Line in that file where the record starts",
    "reject_field": "Canonical field(s) that failed",
    "reject_reason": "Why, and the offending value",
    "record": "The original record as JSON, exactly as received",
    "run_id": "Dagster run that rejected it",
    "quarantined_at": "When it was rejected (UTC)",
}


def quarantine_records(
    source_rows: pd.DataFrame,
    rejects: pd.DataFrame,
    *,
    entity: str,
    source_system: str,
    key_column: str | None,
    run_id: str,
) -> pd.DataFrame:
    """Join rejects (``reject_field``/``reject_reason``, indexed like ``source_rows``) back to
    their source rows and shape them as quarantine records."""
    rows = source_rows.loc[rejects.index]
    bookkeeping = {"reject_field", "reject_reason"}
    original = rows.drop(
        columns=[c for c in rows.columns if str(c).startswith("_") or c in bookkeeping]
    )
    missing = pd.Series(pd.NA, index=rows.index, dtype="string")
    records = original.apply(lambda row: row.dropna().to_json(), axis=1) if len(rows) else []
    return pd.DataFrame(
        {
            "entity": entity,
            "source_system": source_system,
            "external_id": rows[key_column].astype("string") if key_column else missing,
            "source_file": rows.get("_source_file", missing),
            "source_line": rows.get(
                "_source_line", pd.Series(pd.NA, index=rows.index, dtype="Int64")
            ),
            "reject_field": rejects["reject_field"].astype("string"),
            "reject_reason": rejects["reject_reason"].astype("string"),
            "record": pd.Series(records, index=rows.index, dtype="string"),
            "run_id": run_id,
            "quarantined_at": pd.Timestamp(datetime.now(UTC)),
        },
        index=rows.index,
        columns=list(QUARANTINE_COLUMNS),
    ).reset_index(drop=True)
