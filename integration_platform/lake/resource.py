"""The lake root as a Dagster resource: a local folder by default, object storage in production.

Tables are addressed by path parts that mirror asset keys (``bronze/sample_cmms/work_orders``),
so a reader finds an asset's table by its key and a lake browser shows the layers as folders.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final
from urllib.parse import urlparse

import dagster as dg
import pandas as pd
import pyarrow as pa

from integration_platform.settings import LAKE_URI_VAR, ConfigError, data_dir

OBJECT_STORE_SCHEMES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl"})


class Layer:
    """The lake's layers; the first part of every table path and asset key.

    Plain strings rather than an Enum: asset keys must hold plain ``str`` to serialize.
    """

    BRONZE: Final = "bronze"  # raw extracts, as the source system sent them
    SILVER: Final = "silver"  # canonical, validated tables
    GOLD: Final = "gold"  # marts and KPIs for people and BI tools
    QUARANTINE: Final = "quarantine"  # rejected records with the reason, never silently dropped
    TELEMETRY: Final = "telemetry"  # sensor readings landed by the collector
    AUDIT: Final = "audit"  # history of what the platform changed


def lake_uri(env: Mapping[str, str] | None = None) -> str:
    """The lake root: ``INTEGRATION_PLATFORM_LAKE_URI``, else ``<data dir>/lake``.

    Fails fast, naming the variable, when the value cannot be a lake: an unknown URI scheme,
    or a local folder that cannot be created or written.
    """
    env = os.environ if env is None else env
    raw = env.get(LAKE_URI_VAR, "").strip()
    if not raw:
        return _checked_local_root(data_dir(env) / "lake", source="the default <data dir>/lake")
    parsed = urlparse(raw)
    scheme = parsed.scheme.lower()
    if scheme in OBJECT_STORE_SCHEMES:
        if not parsed.netloc:
            raise ConfigError(
                f"{LAKE_URI_VAR}={raw!r} has no bucket or container; "
                f"write it as {scheme}://<bucket>/<prefix>"
            )
        return raw.rstrip("/")
    if scheme == "file":
        return _checked_local_root(Path(parsed.path), source=LAKE_URI_VAR)
    if scheme and len(scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise ConfigError(
            f"{LAKE_URI_VAR}={raw!r} uses the unsupported scheme {scheme!r}; use a local path, "
            f"file://, or one of {', '.join(sorted(OBJECT_STORE_SCHEMES))}"
        )
    return _checked_local_root(Path(raw).expanduser(), source=LAKE_URI_VAR)


def _checked_local_root(path: Path, *, source: str) -> str:
    path = path.resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"{LAKE_URI_VAR}: cannot create the lake folder {path} ({source}): {exc.strerror}; "
            f"point {LAKE_URI_VAR} at a writable folder"
        ) from exc
    if not os.access(path, os.W_OK):
        raise ConfigError(
            f"{LAKE_URI_VAR}: the lake folder {path} ({source}) is not writable; "
            f"fix its permissions or point {LAKE_URI_VAR} elsewhere"
        )
    return str(path)


class DeltaLake(dg.ConfigurableResource):
    """Reads and writes Delta tables under one root.

    ``uri`` defaults to :func:`lake_uri`; ``storage_options`` carry object-store settings
    (endpoint, region, credentials through ``dg.EnvVar``), passed to deltalake unchanged.
    """

    uri: str | None = None
    storage_options: dict[str, str] | None = None

    def root(self) -> str:
        if self.uri:
            return lake_uri({LAKE_URI_VAR: self.uri})
        return lake_uri()

    def table_uri(self, parts: Sequence[str]) -> str:
        if not parts or any(not part or "/" in part or part in {".", ".."} for part in parts):
            raise ValueError(f"invalid lake table path {list(parts)!r}")
        return "/".join([self.root(), *parts])

    def exists(self, parts: Sequence[str]) -> bool:
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(self.table_uri(parts), storage_options=self.storage_options)

    def version(self, parts: Sequence[str]) -> int | None:
        from deltalake import DeltaTable

        if not self.exists(parts):
            return None
        return DeltaTable(self.table_uri(parts), storage_options=self.storage_options).version()

    def read(
        self,
        parts: Sequence[str],
        *,
        columns: list[str] | None = None,
        where: str | None = None,
    ) -> pd.DataFrame:
        """The table as pandas; Arrow strings stay Arrow-backed (fast pandera checks).

        ``where`` is a SQL condition (e.g. ``"date IN ('2026-01-01')"``), pushed down to
        partition pruning. Reads go through deltalake's query engine: reading through
        ``DeltaTable.to_pyarrow_table()`` left native threads that abort the process at
        interpreter exit in about half of the runs measured here (exit status 134).
        """
        from deltalake import DeltaTable, QueryBuilder

        table = DeltaTable(self.table_uri(parts), storage_options=self.storage_options)
        condition = f" WHERE {where}" if where else ""
        if columns is not None and not columns:
            counted = (
                QueryBuilder()
                .register("t", table)
                .execute(f"SELECT count(*) AS n FROM t{condition}")
            )
            return pd.DataFrame(index=range(int(counted.read_all().column("n")[0].as_py())))
        selected = ", ".join(_quoted(name) for name in columns) if columns else "*"
        reader = QueryBuilder().register("t", table).execute(f"SELECT {selected} FROM t{condition}")
        arrow = _plain_strings(pa.RecordBatchReader.from_stream(reader).read_all())
        return arrow.to_pandas(types_mapper=_arrow_dtype)

    def write(
        self,
        frame: pd.DataFrame,
        parts: Sequence[str],
        *,
        mode: str = "overwrite",
        partition_by: list[str] | None = None,
        predicate: str | None = None,
        commit_metadata: dict[str, str] | None = None,
    ) -> int:
        """Write one atomic commit and return the new table version.

        ``overwrite`` replaces the table (or, with ``predicate``, only the matching rows, e.g.
        one date partition); the schema follows the frame, so a changed mapping never leaves a
        table that cannot be read.
        """
        from deltalake import CommitProperties, DeltaTable, write_deltalake

        uri = self.table_uri(parts)
        write_deltalake(
            uri,
            to_arrow(frame),
            mode=mode,
            partition_by=partition_by,
            predicate=predicate,
            schema_mode="overwrite" if mode == "overwrite" and predicate is None else "merge",
            storage_options=self.storage_options,
            commit_properties=CommitProperties(custom_metadata=commit_metadata or {}),
        )
        return DeltaTable(uri, storage_options=self.storage_options).version()

    def merge(
        self,
        frame: pd.DataFrame,
        parts: Sequence[str],
        *,
        on: Sequence[str],
        update: bool = True,
        update_when: str | None = None,
        commit_metadata: dict[str, str] | None = None,
    ) -> int:
        """Upsert ``frame`` by the key columns ``on`` in one commit; returns the new version.

        Rows whose key is new are inserted; stored rows are replaced when ``update`` and
        ``update_when`` holds (a Delta predicate over ``s.`` source and ``t.`` target columns,
        e.g. ``s.updated_at > t.updated_at``), else left alone. Source columns are cast to the
        table's types. A missing table is created from the frame.
        """
        from deltalake import CommitProperties, DeltaTable

        if not self.exists(parts):
            return self.write(frame, parts, mode="append", commit_metadata=commit_metadata)
        uri = self.table_uri(parts)
        table = DeltaTable(uri, storage_options=self.storage_options)
        source = _conform(to_arrow(frame), pa.schema(table.schema().to_arrow()))
        predicate = " AND ".join(f"t.`{column}` = s.`{column}`" for column in on)
        merger = table.merge(
            source,
            predicate=predicate,
            source_alias="s",
            target_alias="t",
            commit_properties=CommitProperties(custom_metadata=commit_metadata or {}),
        )
        if update:
            merger = merger.when_matched_update_all(predicate=update_when)
        merger.when_not_matched_insert_all().execute()
        return DeltaTable(uri, storage_options=self.storage_options).version()


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with the columns of ``schema``, in its order and types (missing ones null)."""
    columns = []
    for target in schema:
        if target.name in table.column_names:
            columns.append(table.column(target.name).cast(target.type))
        else:
            columns.append(pa.nulls(len(table), type=target.type))
    return pa.Table.from_arrays(columns, schema=schema)


def to_arrow(frame: pd.DataFrame) -> pa.Table:
    """Arrow table for Delta: all-null columns become strings (Delta has no null type)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for index, field in enumerate(table.schema):
        if pa.types.is_null(field.type) or pa.types.is_large_string(field.type):
            table = table.set_column(index, field.name, table.column(index).cast(pa.string()))
    return table


def _arrow_dtype(arrow_type: pa.DataType) -> pd.ArrowDtype | pd.StringDtype | None:
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return pd.StringDtype("pyarrow")
    return None


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _plain_strings(table: pa.Table) -> pa.Table:
    """Query results may carry ``string_view``/``large_string``; pandas wants plain strings."""
    for index, field in enumerate(table.schema):
        if pa.types.is_string_view(field.type) or pa.types.is_large_string(field.type):
            table = table.set_column(index, field.name, table.column(index).cast(pa.string()))
    return table
