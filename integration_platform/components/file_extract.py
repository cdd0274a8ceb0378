"""Bronze extracts from files a system exported (CSV), declared in YAML.

Bronze keeps what the source sent: every column as text, exactly as exported, plus where each
row came from (file and line), so a rejected record can be traced back to the export that
carried it.
"""

import csv
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import Field

from integration_platform.lake import Layer

SOURCE_FILE = "_source_file"
SOURCE_LINE = "_source_line"
EXTRACTED_AT = "_extracted_at"


class FileTable(dg.Model):
    """One exported file that becomes one bronze table."""

    name: str = Field(description="Table (entity) name, the last part of the asset key.")
    path: str = Field(description="CSV file, relative to the project root or absolute.")
    description: str = Field(default="", description="What the file holds, shown in the UI.")
    primary_key: list[str] = Field(default_factory=list, description="Columns naming a record.")


class FileExtractComponent(dg.Component, dg.Model, dg.Resolvable):
    """Turns each listed file into a ``bronze/<system>/<table>`` asset stored in the lake."""

    system: str = Field(description="Source system name; the asset group and key prefix.")
    tables: list[FileTable] = Field(description="The files to extract.")

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        assets = []
        for table in self.tables:
            path = Path(table.path)
            if not path.is_absolute():
                path = context.project_root / path
            if not path.is_file():
                raise FileNotFoundError(
                    f"{context.path / 'defs.yaml'}: table {table.name!r} of system "
                    f"{self.system!r} points at {table.path!r}, which is not a file "
                    f"(looked for {path}); fix the path or remove the table"
                )
            assets.append(self._bronze_asset(table, path))
        return dg.Definitions(assets=assets)

    def _bronze_asset(self, table: FileTable, path: Path) -> dg.AssetsDefinition:
        system = self.system

        @dg.asset(
            key=dg.AssetKey([Layer.BRONZE, system, table.name]),
            group_name=system,
            kinds={"csv", "delta", "pandas"},
            description=table.description or f"Raw {table.name} exported by {system}.",
            metadata={
                "source/path": dg.MetadataValue.path(str(path)),
                "source/primary_key": ", ".join(table.primary_key),
            },
        )
        def bronze_table(context: dg.AssetExecutionContext) -> pd.DataFrame:
            frame = read_csv_with_lines(path)
            frame[EXTRACTED_AT] = pd.Timestamp(datetime.now(UTC))
            context.log.info(f"read {len(frame)} rows from {path}")
            context.add_output_metadata(
                {
                    "dagster/column_schema": dg.TableSchema(
                        columns=[
                            dg.TableColumn(name=str(column), type="string")
                            for column in frame.columns
                        ]
                    ),
                    "preview": dg.MetadataValue.md(frame.head(5).to_markdown(index=False)),
                }
            )
            return frame

        return bronze_table


def read_csv_with_lines(path: Path) -> pd.DataFrame:
    """Every field as text (blank -> null), with the physical line each record starts on.

    The csv module is used instead of pandas because only it knows line numbers when quoted
    fields span lines, and error messages must point at the right line.
    """
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path}: the file is empty; expected a header line") from None
        rows: list[list[str]] = []
        lines: list[int] = []
        start = reader.line_num + 1
        for row in reader:
            if len(row) != len(header):
                raise ValueError(
                    f"{path}, line {start}: {len(row)} fields where the header has "
                    f"{len(header)}; fix the quoting or the delimiter on that line"
                )
            rows.append(row)
            lines.append(start)
            start = reader.line_num + 1
    frame = pd.DataFrame(rows, columns=header, dtype="string[pyarrow]")
    frame = frame.replace("", pd.NA)
    frame[SOURCE_FILE] = pd.array([path.name] * len(frame), dtype="string[pyarrow]")
    frame[SOURCE_LINE] = pd.array(lines, dtype="int64")
    return frame
