"""The contract between the sync engine and a system it writes to.

An adapter reads every record of the synced entity (side field names as columns) and writes
single records back. The engine decides what to write; the adapter only knows its system:
how to address a record, how to send a value, which version token comes back. Transactional
adapters (SQL) group a run's writes in one transaction the engine commits or rolls back;
the others are compensated from the run journal.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from integration_platform.sync.spec import SideSpec


@dataclass(frozen=True)
class WriteResult:
    """What a write left in the system: the record's id there, its new version token (if the
    system has one) and the stored record when the system sent it back."""

    external_id: str
    version: str | None = None
    record: Mapping[str, Any] | None = field(default=None)


class SyncAdapter:
    """Base class: override ``read``, ``create`` and ``update``; the rest is optional."""

    transactional: bool = False
    supports_delete: bool = False
    supports_since: bool = False
    """Whether ``read(since=...)`` filters on the side's ``modified_field`` (incremental
    reads); such an adapter also answers ``read_matching``."""

    def __init__(self) -> None:
        self._side: SideSpec | None = None

    @property
    def side(self) -> SideSpec:
        if self._side is None:
            raise RuntimeError(f"{type(self).__name__} is not bound to a sync side yet")
        return self._side

    def bind(self, side: SideSpec) -> None:
        """Called by the engine before use: the side's keys, version and fields."""
        self._side = side

    @property
    def system(self) -> str:
        return self.side.system

    def external_ids(self, frame: pd.DataFrame) -> pd.Series:
        """The record id of each row: the key fields joined with ``/`` (null if one is empty)."""
        keys = self.side.key_fields
        missing = [k for k in keys if k not in frame.columns]
        if missing:
            raise KeyError(
                f"{self.system}: the records read have no key field {', '.join(missing)}; "
                f"check key_field of the sync side for {self.system}"
            )
        ids = frame[keys[0]].astype("string")
        for name in keys[1:]:
            ids = ids + "/" + frame[name].astype("string")
        return ids

    def external_id_of(self, record: Mapping[str, Any]) -> str:
        """The record id of one record (a system's answer to a write): its key fields joined
        with ``/``."""
        return "/".join(str(record[key]) for key in self.side.key_fields)

    def without_empty_keys(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """``record`` without the key fields it leaves empty, so that a create lets the system
        assign them (Maximo's autokey numbers, Dataverse's GUIDs)."""
        keys = self.side.key_fields
        return {
            name: value for name, value in record.items() if name not in keys or value is not None
        }

    def key_values(self, external_id: str) -> dict[str, str]:
        keys = self.side.key_fields
        parts = external_id.split("/", len(keys) - 1) if len(keys) > 1 else [external_id]
        return dict(zip(keys, parts, strict=True))

    # -- reading ----------------------------------------------------------------------------

    def read(self, *, since: datetime | None = None) -> pd.DataFrame:
        """Every record of the entity, one row each, side field names as columns; with
        ``since`` (adapters with ``supports_since``), only those whose ``modified_field`` is at
        or after it (or empty)."""
        raise NotImplementedError

    def read_matching(self, field: str, values: Sequence[Any]) -> pd.DataFrame | None:
        """The records whose side field ``field`` holds one of ``values``; ``None`` when the
        adapter cannot select records (the engine then reads the side in full)."""
        return None

    def read_ids(self, external_ids: Collection[str]) -> pd.DataFrame | None:
        """The records with these ids (those that still exist); ``None`` as above."""
        keys = self.side.key_fields
        wanted = set(external_ids)
        values = sorted({self.key_values(i)[keys[-1]] for i in wanted})
        frame = self.read_matching(keys[-1], values)
        if frame is None or len(keys) == 1 or not len(frame):
            return frame
        return frame[self.external_ids(frame).isin(wanted).fillna(False).to_numpy()]

    def fetch(self, external_id: str) -> Mapping[str, Any] | None:
        """One record as stored now (for recovery after a crash); ``None`` if unknown."""
        return None

    # -- writing ----------------------------------------------------------------------------

    def create(self, values: Mapping[str, Any]) -> WriteResult:
        raise NotImplementedError

    def update(
        self,
        external_id: str,
        changes: Mapping[str, Any],
        *,
        version: str | None,
        expected: Mapping[str, Any],
    ) -> WriteResult:
        """Write ``changes``; fail with ``connectors.errors.Conflict`` when the record is no
        longer at ``version`` (or, without versions, no longer holds ``expected``)."""
        raise NotImplementedError

    def delete(self, external_id: str) -> None:
        raise NotImplementedError(f"{self.system} does not delete records through the sync")

    # -- transactions (transactional adapters) -----------------------------------------------

    def begin(self) -> None:
        return None

    def commit(self) -> None:
        return None

    def rollback(self) -> None:
        return None


def json_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Values as a REST API's JSON takes them: timestamps as ISO-8601 with their offset (the
    engine hands over UTC ``Timestamp``s, which JSON cannot carry as they are)."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, datetime | pd.Timestamp):
            value = pd.Timestamp(value).isoformat()
        out[name] = value
    return out


def version_text(value: Any) -> str | None:
    """A version token as the engine keeps it: text, or None when the system sent none."""
    return None if value is None else str(value)
