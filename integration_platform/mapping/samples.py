"""Read sample source records (CSV or JSON as vendors return them) into a frame."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

# Where vendor APIs put the list of records in a JSON page (Maximo, OData, UpKeep, Fiix, ...).
RECORD_LIST_KEYS = (
    "member",
    "rdfs:member",
    "value",
    "results",
    "objects",
    "items",
    "data",
    "records",
)


def read_records(path: Path) -> pd.DataFrame:
    """CSV keeps every field as text with its line number; JSON may be a list of records or a
    vendor page (Maximo ``member``, OData ``value`` or ``d.results``, ``items``, ...)."""
    if path.suffix.lower() == ".csv":
        from integration_platform.components.file_extract import read_csv_with_lines

        return read_csv_with_lines(path)
    if path.suffix.lower() in (".json", ".jsonl"):
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".jsonl":
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            records = records_of(json.loads(text), path)
        frame = pd.DataFrame.from_records(records)
        for column in frame.columns:
            if frame[column].map(lambda value: isinstance(value, str) or value is None).all():
                frame[column] = frame[column].astype("string[pyarrow]")
        return frame
    raise ValueError(f"{path}: unsupported sample format; use .csv, .json or .jsonl")


def records_of(document: Any, path: Path) -> list[dict[str, Any]]:
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        if "d" in document and isinstance(document["d"], dict):
            return records_of(document["d"], path)
        for key in RECORD_LIST_KEYS:
            if isinstance(document.get(key), list):
                return document[key]
    raise ValueError(
        f"{path}: no list of records found; expected a JSON list or an object with one of "
        f"{', '.join(RECORD_LIST_KEYS)}"
    )
