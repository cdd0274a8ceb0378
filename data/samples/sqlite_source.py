"""The sample CMMS export as a SQL database: ``cmms.sqlite`` next to the CSVs.

Run ``python data/samples/sqlite_source.py [--out FILE]`` after ``generate.py``. The example
connection ``sample_sql`` (``integration_platform/defs/connections/defs.yaml``) reads it with
the ``sql`` connector, so a fresh checkout has a connection with health checks and an
incremental bronze extract without any environment variable.

The database looks like a CMMS reporting database rather than an export: one row per work
order and asset (the newest ``rowstamp`` of each work order), the CSV columns as text exactly
as exported (empty fields as NULL), except ``changedate``, a ``DATETIME`` in UTC (the change
column incremental reads run on), and ``rowstamp``, an integer. The content depends only on the
CSVs.
"""

from __future__ import annotations

import argparse
import csv
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "cmms.sqlite"
# table -> (CSV file, primary key)
TABLES = {
    "sites": ("sites.csv", ("siteid",)),
    "assets": ("assets.csv", ("siteid", "assetnum")),
    "work_orders": ("work_orders.csv", ("siteid", "wonum")),
}
TYPES = {"changedate": "DATETIME NOT NULL", "rowstamp": "INTEGER NOT NULL"}


def utc_text(value: str) -> str:
    """An ISO timestamp with offset as SQLite/SQLAlchemy's naive UTC ``YYYY-MM-DD HH:MM:SS``."""
    moment = datetime.fromisoformat(value).astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def read_rows(path: Path, key: tuple[str, ...]) -> tuple[list[str], list[dict[str, str]]]:
    """The CSV's columns and rows; for a repeated key only the newest ``rowstamp`` stays."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        newest: dict[tuple[str, ...], dict[str, str]] = {}
        for row in reader:
            ident = tuple(row[name] for name in key)
            kept = newest.get(ident)
            if kept is None or int(row.get("rowstamp") or 0) >= int(kept.get("rowstamp") or 0):
                newest[ident] = row
    return columns, [newest[ident] for ident in sorted(newest)]


def build(out: Path, source: Path = HERE / "cmms") -> dict[str, int]:
    """Write the database at ``out`` (replacing it); rows per table."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    counts = {}
    with sqlite3.connect(out) as db:
        for table, (file_name, key) in TABLES.items():
            columns, rows = read_rows(source / file_name, key)
            defined = ", ".join(f'"{name}" {TYPES.get(name, "TEXT")}' for name in columns)
            db.execute(f'CREATE TABLE "{table}" ({defined}, PRIMARY KEY ({", ".join(key)}))')
            if "changedate" in columns:
                db.execute(f'CREATE INDEX "ix_{table}_changedate" ON "{table}" (changedate)')
            values = [tuple(_value(name, row[name]) for name in columns) for row in rows]
            marks = ", ".join("?" for _ in columns)
            db.executemany(f'INSERT INTO "{table}" VALUES ({marks})', values)
            counts[table] = len(rows)
    with sqlite3.connect(out) as db:
        db.execute("VACUUM")
    return counts


def _value(name: str, text: str) -> str | int | None:
    if name == "changedate":
        return utc_text(text)
    if name == "rowstamp":
        return int(text)
    return text if text != "" else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="database file to write")
    args = parser.parse_args()
    counts = build(args.out)
    print(f"{args.out}: " + ", ".join(f"{n} {table}" for table, n in counts.items()))


if __name__ == "__main__":
    main()
