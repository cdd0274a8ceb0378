"""Any database SQLAlchemy can reach (PostgreSQL, SQLite, SQL Server, Oracle, MySQL...).

Tables are read incrementally on a cursor column with the same cursor semantics as the REST
connectors, streamed with a server-side cursor (``yield_per``) so only one page is in memory.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import dagster as dg
from pydantic import Field, PrivateAttr

from integration_platform.connectors.base import (
    TEXT_DTYPE,
    HealthStatus,
    Page,
    resolve_secret,
)
from integration_platform.connectors.cursor import Cursor, MarkKind, advance, drop_seen
from integration_platform.connectors.errors import ConnectionFailed, ConnectorError, NotFound
from integration_platform.settings import ConfigError

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa


class SqlConnector(dg.ConfigurableResource):
    """A SQL database read table by table, incrementally by a change column."""

    system: ClassVar[str] = "sql"

    url: str = Field(description="SQLAlchemy URL, e.g. postgresql+psycopg2://...; use dg.EnvVar.")
    system_name: str = Field(
        default="sql", description="Name of the system in messages and asset keys."
    )
    schema_name: str | None = Field(default=None, description="Schema holding the tables.")
    connect_timeout_seconds: int = Field(default=10, ge=1, description="Connect timeout.")

    _engine: Any = PrivateAttr(default=None)

    @property
    def engine(self) -> sa.Engine:
        """The engine, created on first use (connection pool, pre-ping for stale links)."""
        if self._engine is None:
            import sqlalchemy as sa

            url = sa.make_url(resolve_secret(self.url, field="url", system=self.system_name))
            connect_args: dict[str, Any] = {}
            if url.get_backend_name() == "postgresql":
                connect_args["connect_timeout"] = self.connect_timeout_seconds
            elif url.get_backend_name() == "sqlite":
                connect_args["timeout"] = self.connect_timeout_seconds
            self._engine = sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
        return self._engine

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()

    def _where(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def _require_sqlite_file(self) -> None:
        """Refuse a SQLite file that does not exist: connecting would create an empty one, and
        a health check would then report a database that holds nothing as up."""
        url = self.engine.url
        name = url.database or ""
        if url.get_backend_name() != "sqlite" or name in ("", ":memory:") or "mode=" in name:
            return
        if url.query.get("mode") or Path(name).exists():
            return
        raise NotFound(
            system=self.system_name,
            detail=f"the SQLite file {name} does not exist",
            hint="check the path in the connection's URL (a relative path in defs.yaml is "
            "relative to the project folder)",
        )

    def health_check(self) -> HealthStatus:
        """``SELECT 1`` on a fresh connection; reports instead of raising."""
        import sqlalchemy as sa

        started = time.perf_counter()
        try:
            self._require_sqlite_file()
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            ok, detail = True, f"{self.system_name}: connected to {self._where()}"
        except (sa.exc.SQLAlchemyError, ConfigError, ConnectorError) as exc:
            ok, detail = False, str(self._error(exc, "health check"))
        latency_ms = round((time.perf_counter() - started) * 1000.0, 1)
        return HealthStatus(ok=ok, latency_ms=latency_ms, detail=detail)

    def read_table(
        self,
        table: str,
        *,
        cursor_column: str,
        key_columns: Sequence[str],
        since: Cursor | None = None,
        until: Any = None,
        page_size: int = 10_000,
        columns: Sequence[str] | None = None,
    ) -> Iterator[Page]:
        """Rows of ``table`` changed at or after ``since``, ordered by the cursor column and
        the key, page by page with the cursor after each page.

        ``until`` (exclusive) bounds the read below "now": rows stamped by the writing
        transaction may commit out of order, and a cursor that passed them never sees them.
        """
        import sqlalchemy as sa

        target = self._reflect(table)
        for name in (cursor_column, *key_columns, *(columns or ())):
            if name not in target.c:
                known = ", ".join(target.c.keys())
                raise ConfigError(
                    f"{self.system_name}: table {table!r} has no column {name!r}; "
                    f"its columns are: {known}"
                )
        selected = [target.c[name] for name in columns] if columns else list(target.c)
        mark_column = target.c[cursor_column]
        kind = column_kind(mark_column.type)
        sqlite_time = self.engine.dialect.name == "sqlite" and kind == "timestamp"
        # SQLite keeps timestamps as text in whatever format the writer used; compare and
        # order them as instants, not as strings.
        comparable = sa.func.julianday(mark_column) if sqlite_time else mark_column
        statement = sa.select(*selected).order_by(
            comparable, *(target.c[name] for name in key_columns)
        )
        if since is not None:
            if sqlite_time:
                floor = pd_timestamp(since.high_water_mark).floor("s").isoformat()
                statement = statement.where(
                    sa.func.datetime(mark_column) >= sa.func.datetime(floor)
                )
            else:
                statement = statement.where(mark_column >= bind_value(since.high_water_mark))
        if until is not None:
            statement = statement.where(mark_column < bind_value(until))
        cursor = since
        try:
            with self.engine.connect() as conn:
                result = conn.execution_options(yield_per=page_size).execute(statement)
                names = list(result.keys())
                for number, rows in enumerate(result.partitions(), start=1):
                    frame = rows_to_frame(rows, names)
                    frame = drop_seen(
                        frame, cursor, cursor_field=cursor_column, key_fields=key_columns
                    )
                    if frame.empty:
                        continue
                    cursor = advance(
                        cursor,
                        frame,
                        cursor_field=cursor_column,
                        key_fields=key_columns,
                        kind=kind,
                    )
                    yield Page(frame=frame, cursor=cursor, number=number, url=table)
        except sa.exc.SQLAlchemyError as exc:
            raise self._error(exc, f"reading {table}") from exc

    def _reflect(self, table: str) -> sa.Table:
        import sqlalchemy as sa

        self._require_sqlite_file()
        try:
            return sa.Table(
                table, sa.MetaData(), schema=self.schema_name, autoload_with=self.engine
            )
        except sa.exc.NoSuchTableError as exc:
            raise NotFound(
                system=self.system_name,
                detail=f"table {table!r} does not exist in {self._where()}",
                hint="check the table name and schema_name",
            ) from exc
        except sa.exc.SQLAlchemyError as exc:
            raise self._error(exc, f"reading the columns of {table}") from exc

    def _error(self, exc: Exception, doing: str) -> ConnectorError | ConfigError:
        import sqlalchemy as sa

        if isinstance(exc, ConfigError | ConnectorError):
            return exc
        message = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        kind = ConnectionFailed if isinstance(exc, sa.exc.OperationalError) else ConnectorError
        where = "" if isinstance(exc, ConfigError) else f" at {self._where()}"
        return kind(system=self.system_name, detail=f"{doing}{where}: {message}")


def column_kind(column_type: Any) -> MarkKind:
    import sqlalchemy as sa

    if isinstance(column_type, sa.DateTime | sa.Date):
        return "timestamp"
    if isinstance(column_type, sa.Integer | sa.Numeric | sa.Float):
        return "number"
    return "text"


def pd_timestamp(value: Any) -> pd.Timestamp:
    import pandas as pd

    return pd.Timestamp(value)


def bind_value(mark: Any) -> Any:
    """A cursor mark as a DB-API parameter (pandas types become Python ones)."""
    if hasattr(mark, "to_pydatetime"):
        return mark.to_pydatetime()
    if isinstance(mark, datetime):
        return mark
    if hasattr(mark, "item"):
        return mark.item()
    return mark


def rows_to_frame(rows: Sequence[Any], names: Sequence[str]) -> pd.DataFrame:
    """Rows as a frame; text columns Arrow-backed, other types as the driver returned them."""
    import pandas as pd

    frame = pd.DataFrame.from_records([tuple(row) for row in rows], columns=list(names))
    for name in frame.columns:
        column = frame[name]
        if column.dtype == object and column.map(lambda v: v is None or isinstance(v, str)).all():
            frame[name] = column.astype(TEXT_DTYPE)
    return frame
