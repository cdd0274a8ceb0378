"""A table in any SQLAlchemy database as a sync side, written in one transaction per run.

Reads the whole table; writes go through one connection and transaction opened by ``begin``
and ended by ``commit``/``rollback``, so a failed run leaves the table as it was. Updates are
optimistic: with a version column the row must still carry the version read (the column is
then incremented), without one the changed columns must still hold the values read, checked
under ``SELECT ... FOR UPDATE``. A mismatch raises ``Conflict`` like a REST 412.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from integration_platform.connectors.errors import (
    Conflict,
    ConnectionFailed,
    ConnectorError,
    NotFound,
)
from integration_platform.connectors.sql import SqlConnector, rows_to_frame
from integration_platform.sync.adapters.base import SyncAdapter, WriteResult

MATCH_CHUNK = 5_000


class SqlTableAdapter(SyncAdapter):
    """One table, keyed by the side's key field(s).

    ``touch_modified``: set the side's ``modified_field`` to the current time on every write,
    as an application editing the row would.
    """

    transactional = True
    supports_delete = True
    supports_since = True

    def __init__(
        self,
        source: SqlConnector | sa.Engine,
        table: str,
        *,
        schema: str | None = None,
        touch_modified: bool = True,
    ) -> None:
        super().__init__()
        self._source = source
        self.table_name = table
        self.schema = schema if schema is not None else getattr(source, "schema_name", None)
        self.touch_modified = touch_modified
        self._table: sa.Table | None = None
        self._connection: sa.Connection | None = None
        self._transaction: sa.RootTransaction | None = None
        self._statements: dict[tuple[tuple[str, ...], tuple[str, ...]], Any] = {}

    @property
    def engine(self) -> sa.Engine:
        return self._source if isinstance(self._source, sa.Engine) else self._source.engine

    @property
    def table(self) -> sa.Table:
        if self._table is None:
            try:
                self._table = sa.Table(
                    self.table_name, sa.MetaData(), schema=self.schema, autoload_with=self.engine
                )
            except sa.exc.NoSuchTableError as exc:
                raise NotFound(
                    system=self.system,
                    detail=f"table {self.table_name!r} does not exist",
                    hint="check the table name and schema of the sync side",
                ) from exc
        return self._table

    def _column(self, name: str) -> sa.Column[Any]:
        try:
            return self.table.c[name]
        except KeyError:
            known = ", ".join(self.table.c.keys())
            raise ConnectorError(
                system=self.system,
                detail=f"table {self.table_name!r} has no column {name!r} (columns: {known})",
                hint="fix the field map of the sync side",
            ) from None

    def read(self, *, since: datetime | None = None) -> pd.DataFrame:
        """The table; with ``since``, the rows whose ``modified_field`` is at or after it
        (or empty: such rows are read every time rather than missed)."""
        query = sa.select(self.table)
        modified = self.side.modified_field
        if since is not None and modified:
            column = self._column(modified)
            query = query.where(sa.or_(column >= since, column.is_(None)))
        with self.engine.connect() as connection:
            result = connection.execute(query)
            return rows_to_frame(result.fetchall(), list(result.keys()))

    def read_matching(self, field: str, values: Sequence[Any]) -> pd.DataFrame:
        column = self._column(field)
        bound = []
        for value in values:
            try:
                bound.append(_bind(column, value))
            except ValueError:  # not a value this column can hold: nothing matches
                continue
        frames = []
        with self.engine.connect() as connection:
            for start in range(0, max(len(bound), 1), MATCH_CHUNK):
                chunk = bound[start : start + MATCH_CHUNK]
                result = connection.execute(sa.select(self.table).where(column.in_(chunk)))
                frames.append(rows_to_frame(result.fetchall(), list(result.keys())))
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def fetch(self, external_id: str) -> Mapping[str, Any] | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(self.table).where(self._key_clause(external_id))
            ).first()
        return None if row is None else dict(row._mapping)

    # -- transaction --------------------------------------------------------------------------

    def begin(self) -> None:
        if self._connection is None:
            self._connection = self.engine.connect()
            self._transaction = self._connection.begin()

    def commit(self) -> None:
        if self._transaction is not None:
            self._transaction.commit()
        self._close()

    def rollback(self) -> None:
        if self._transaction is not None and self._transaction.is_active:
            self._transaction.rollback()
        self._close()

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = self._transaction = None

    def _conn(self) -> sa.Connection:
        if self._connection is None:
            self.begin()
        assert self._connection is not None
        return self._connection

    # -- writes -------------------------------------------------------------------------------

    def _key_clause(self, external_id: str) -> sa.ColumnElement[bool]:
        values = self.key_values(external_id)
        return sa.and_(
            *(self._column(name) == _bind(self._column(name), v) for name, v in values.items())
        )

    def _stamped(self, values: Mapping[str, Any]) -> dict[str, Any]:
        out = {self._column(name).name: value for name, value in values.items()}
        modified = self.side.modified_field
        if self.touch_modified and modified and modified in self.table.c:
            out[modified] = datetime.now(UTC)
        return out

    def create(self, values: Mapping[str, Any]) -> WriteResult:
        """Insert a row. An empty value for a column the database numbers itself (identity,
        sequence) is left to the database; the stored row comes back, so the engine can
        write a number assigned here back to the other system."""
        row = {
            name: value
            for name, value in self._stamped(values).items()
            if value is not None or not _fills_itself(self.table.c[name])
        }
        version_field = self.side.version_field
        if version_field and version_field in self.table.c and row.get(version_field) is None:
            row[version_field] = 1
        keys = [self._column(name) for name in self.side.key_fields]
        try:
            created = (
                self._conn()
                .execute(sa.insert(self.table).values(row).returning(*self.table.c))
                .one()
            )
        except sa.exc.SQLAlchemyError as exc:
            raise self._error(exc, "inserting a record") from exc
        stored = dict(created._mapping)
        external_id = "/".join(str(stored[key.name]) for key in keys)
        version = str(stored[version_field]) if version_field else None
        return WriteResult(external_id, version, stored)

    def update(
        self,
        external_id: str,
        changes: Mapping[str, Any],
        *,
        version: str | None,
        expected: Mapping[str, Any],
    ) -> WriteResult:
        connection = self._conn()
        table = self.table
        where = self._key_clause(external_id)
        version_field = self.side.version_field
        row = self._stamped(changes)
        try:
            if version_field and version is not None:
                column = self._column(version_field)
                row[version_field] = column + 1
                statement = (
                    sa.update(table)
                    .where(where, column == _bind(column, version))
                    .values(row)
                    .returning(column)
                )
                stored = connection.execute(statement).first()
                if stored is None:
                    raise self._stale(external_id, f"{version_field} is no longer {version}")
                return WriteResult(external_id, str(stored[0]))
            # One statement: the row is updated only if it still holds what was read. The
            # statement is built once per shape and reused with new parameters.
            statement = self._conditional_update(tuple(row), tuple(expected))
            params = {f"k_{k}": v for k, v in self._key_params(external_id).items()}
            params |= {f"v_{name}": value for name, value in row.items()}
            params |= {f"e_{name}": value for name, value in expected.items()}
            if connection.execute(statement, params).first() is None:
                raise self._stale(external_id, self._what_changed(connection, where, expected))
        except sa.exc.SQLAlchemyError as exc:
            raise self._error(exc, f"updating record {external_id}") from exc
        return WriteResult(external_id, None)

    def _key_params(self, external_id: str) -> dict[str, Any]:
        return {
            name: _bind(self._column(name), value)
            for name, value in self.key_values(external_id).items()
        }

    def _conditional_update(self, columns: tuple[str, ...], expected: tuple[str, ...]) -> Any:
        shape = (columns, expected)
        statement = self._statements.get(shape)
        if statement is None:
            keys = [self._column(n) for n in self.side.key_fields]
            where = [c == sa.bindparam(f"k_{c.name}", type_=c.type) for c in keys]
            where += [
                self._column(n).is_not_distinct_from(
                    sa.bindparam(f"e_{n}", type_=self._column(n).type)
                )
                for n in expected
            ]
            values = {n: sa.bindparam(f"v_{n}", type_=self._column(n).type) for n in columns}
            statement = sa.update(self.table).where(*where).values(values).returning(*keys)
            self._statements[shape] = statement
        return statement

    def _what_changed(
        self, connection: sa.Connection, where: sa.ColumnElement[bool], expected: Mapping[str, Any]
    ) -> str:
        current = connection.execute(
            sa.select(*(self._column(n) for n in expected)).where(where)
        ).first()
        if current is None:
            return "the record no longer exists"
        for name, value in zip(expected, current, strict=True):
            if not _same(value, expected[name]):
                return f"{name} is now {value!r}, read as {expected[name]!r}"
        return "the record changed"

    def delete(self, external_id: str) -> None:
        self._conn().execute(sa.delete(self.table).where(self._key_clause(external_id)))

    def _stale(self, external_id: str, detail: str) -> Conflict:
        return Conflict(
            system=self.system,
            record_id=external_id,
            detail=f"{self.table_name}: {detail} (changed since it was read)",
        )

    def _error(self, exc: Exception, doing: str) -> ConnectorError:
        """A lost connection is ``ConnectionFailed`` (retryable: the transaction was rolled
        back with it, so the job may run the sync again); anything else is not retried."""
        message = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        lost = getattr(exc, "connection_invalidated", False) or isinstance(
            exc, sa.exc.DisconnectionError
        )
        kind = ConnectionFailed if lost else ConnectorError
        return kind(system=self.system, detail=f"{self.table_name}: {doing}: {message}")


def _fills_itself(column: sa.Column[Any]) -> bool:
    """Whether the database numbers the column when an insert leaves it out (an identity
    column, or a sequence default such as PostgreSQL's ``serial``). Other defaults are not
    counted: an empty synced value is written as empty, as before."""
    if column.identity is not None:
        return True
    default = getattr(column.server_default, "arg", None)
    return default is not None and "nextval(" in str(getattr(default, "text", default)).lower()


def _bind(column: sa.Column[Any], value: Any) -> Any:
    """A key or version given as text, converted for an integer column."""
    if isinstance(value, str) and isinstance(column.type, sa.Integer):
        return int(value)
    return value


def _same(stored: Any, expected: Any) -> bool:
    if stored is None or expected is None:
        return stored is None and expected is None
    if isinstance(stored, datetime) and isinstance(expected, datetime | str | pd.Timestamp):
        return pd.Timestamp(stored) == pd.Timestamp(expected)
    if isinstance(stored, int | float) or isinstance(expected, int | float):
        try:
            return float(stored) == float(expected)
        except (TypeError, ValueError):
            return False
    return str(stored) == str(expected)
