"""An in-memory system for tests, benchmarks and dry experiments: a frame of records with a
version counter, behaving like a REST system with optimistic locking."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from integration_platform.connectors.errors import Conflict, NotFound
from integration_platform.sync.adapters.base import SyncAdapter, WriteResult


class MemoryAdapter(SyncAdapter):
    """Records keyed by the side's (single) key field; ``version_field`` increases on every
    write when the side declares one. Not transactional: the engine compensates it."""

    supports_delete = True
    supports_since = True

    def __init__(self, records: pd.DataFrame | None = None) -> None:
        super().__init__()
        self._frame = records
        self._rows: dict[str, dict[str, Any]] | None = None
        self._counter = itertools.count(1)
        self.writes = 0

    def _ensure(self) -> dict[str, dict[str, Any]]:
        if self._rows is None:
            key = self.side.key_fields[0]
            frame = self._frame if self._frame is not None else pd.DataFrame(columns=[key])
            self._rows = {str(r[key]): r for r in frame.to_dict("records")}
            self._frame = None
        return self._rows

    def read(self, *, since: datetime | None = None) -> pd.DataFrame:
        rows = list(self._ensure().values())
        modified = self.side.modified_field
        if since is not None and modified:
            at = pd.to_datetime(
                pd.Series([r.get(modified) for r in rows], dtype=object), utc=True,
                errors="coerce", format="ISO8601",
            )  # fmt: skip
            keep = (at.isna() | (at >= pd.Timestamp(since))).to_numpy()
            rows = [row for row, kept in zip(rows, keep, strict=True) if kept]
        return pd.DataFrame.from_records(rows)

    def read_matching(self, field: str, values: Sequence[Any]) -> pd.DataFrame:
        wanted = {str(v) for v in values}
        rows = [r for r in self._ensure().values() if r.get(field) is not None]
        return pd.DataFrame.from_records([r for r in rows if str(r[field]) in wanted])

    def fetch(self, external_id: str) -> Mapping[str, Any] | None:
        row = self._ensure().get(external_id)
        return None if row is None else dict(row)

    def edit(self, external_id: str, **changes: Any) -> None:
        """Change a record as a user of the system would (bumps the version)."""
        row = self._ensure()[external_id]
        row.update(changes)
        self._bump(row)

    def _bump(self, row: dict[str, Any]) -> str | None:
        field = self.side.version_field
        if field:
            row[field] = f"v{next(self._counter)}"
            return str(row[field])
        return None

    def create(self, values: Mapping[str, Any]) -> WriteResult:
        rows = self._ensure()
        key = self.side.key_fields[0]
        external_id = str(values.get(key) or f"M{len(rows) + 1:07d}")
        row = {**values, key: external_id}
        version = self._bump(row)
        rows[external_id] = row
        self.writes += 1
        return WriteResult(external_id, version, dict(row))

    def update(
        self,
        external_id: str,
        changes: Mapping[str, Any],
        *,
        version: str | None,
        expected: Mapping[str, Any],
    ) -> WriteResult:
        row = self._ensure().get(external_id)
        if row is None:
            raise NotFound(system=self.system, record_id=external_id, detail="no such record")
        field = self.side.version_field
        if field and version is not None and str(row.get(field)) != str(version):
            raise Conflict(system=self.system, record_id=external_id, detail="stale version")
        row.update(changes)
        self.writes += 1
        return WriteResult(external_id, self._bump(row), dict(row))

    def delete(self, external_id: str) -> None:
        self._ensure().pop(external_id, None)
