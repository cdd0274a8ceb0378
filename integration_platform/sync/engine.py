"""Run a sync: read both systems, detect and decide, apply as one unit, record everything.

A run

1. undoes what an earlier run of the same sync left half done (its process ended mid-run),
   from the durable journal of before-images, then writes back the numbers earlier runs
   could not (``sync_pending_keys``: the write-back was refused as stale);
2. reads both systems (in full, or with ``ReadPolicy.incremental`` only what changed since
   the last run plus what detection needs beside it) and maps them to canonical values,
   quarantining records that do not fit;
3. pairs the records, compares each side with its base and decides conflicts by policy
   (``detect``/``resolve``);
4. applies the writes: transactional targets (SQL) inside one transaction, the others one
   record at a time with the before-image journaled (and committed) before each write. If a
   write fails, the transaction is rolled back and every record already written is restored
   by a compensating write, and the run is marked ``rolled_back`` with the cause. A write
   refused because the record changed meanwhile (HTTP 412, stale rowstamp) is not a failure:
   the record's fields go to the conflict queue and the rest of the run continues. A number
   the target assigned to a record created there is written back to its source at once (if
   that write is refused as stale, it is kept and made by a later run);
5. stores the new bases with the version tokens the targets answered (so the sync's own
   writes are not read back as changes), the cross-references, the conflict queue, the
   audit trail (state database and the Delta table ``audit/sync_changes``) and the run's
   counts, in one transaction.

``dry_run=True`` stops after step 3 and reports the planned writes; nothing is written
anywhere, not even to the state database.
"""

from __future__ import annotations

import logging
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import pandas as pd

from integration_platform.connectors.errors import Conflict
from integration_platform.sync.adapters.base import SyncAdapter, WriteResult
from integration_platform.sync.canonical import (
    EXTERNAL_ID,
    MODIFIED,
    VERSION,
    SideRecords,
    read_side,
    to_side_values,
)
from integration_platform.sync.detect import SIDES, Detection, detect, other, values_differ
from integration_platform.sync.spec import SyncSpec
from integration_platform.sync.store import ReadHistory, SyncStore
from integration_platform.sync.values import (
    Kind,
    content_hash,
    field_kinds,
    from_json_value,
    json_records,
    normalize,
    normalize_column,
    to_json_value,
)

log = logging.getLogger("integration_platform.sync")

AUDIT_TABLE = ("audit", "sync_changes")
INTERRUPTED = (
    "the run stopped before it finished (its process ended); the next run undid its writes"
)


class SyncRunFailed(RuntimeError):
    """Raised by :meth:`SyncReport.raise_for_status` for a run that did not succeed."""


class _RunAborted(Exception):
    def __init__(self, cause: str, compensated: int, error: BaseException) -> None:
        super().__init__(cause)
        self.cause = cause
        self.compensated = compensated
        self.error = error


@dataclass
class PlannedWrite:
    """One write to one record in one system, with what it needs to be undone."""

    seq: int
    target: str
    system: str
    platform_id: str
    operation: str  # "create" | "update"
    external_id: str | None
    changes: dict[str, Any]
    canonical: dict[str, Any]
    before: dict[str, Any]
    version: str | None
    audit: list[dict[str, Any]]
    revive: bool = False  # an update that takes the place of a create (see _revival)
    assigned_key: bool = False  # writes back a match value the other system assigned


@dataclass
class SyncReport:
    """The outcome of a run (or of a dry run: what it would do).

    ``planned``: one row per field write (``platform_id, system, operation, external_id,
    field, old_value, new_value, source_system, strategy, reason``); ``conflicts``: the
    conflicts found, decided or not; ``deletions`` and ``quarantine`` as found.

    For a rolled-back run, ``cause_type`` names the exception behind it and ``retryable``
    says whether it was transient (a connector error with ``retryable``: connection reset,
    timeout, 429, 5xx): the rollback left both systems as they were, so running again is safe
    and may succeed. ``retry_after`` is the server's ``Retry-After``, when it sent one.
    """

    run_id: str
    sync_name: str
    status: str
    dry_run: bool
    counts: dict[str, int]
    planned: pd.DataFrame
    conflicts: pd.DataFrame
    deletions: pd.DataFrame
    quarantine: pd.DataFrame
    cause: str | None = None
    problems: list[str] = field(default_factory=list)
    cause_type: str | None = None
    retryable: bool = False
    retry_after: float | None = None
    read_mode: str = "full"

    @property
    def ok(self) -> bool:
        return self.status in ("succeeded", "dry_run")

    @property
    def auto_resolved_pct(self) -> float:
        found = self.counts.get("conflicts", 0)
        return 100.0 if not found else 100.0 * self.counts.get("auto_resolved", 0) / found

    def raise_for_status(self) -> SyncReport:
        if not self.ok:
            raise SyncRunFailed(
                f"sync {self.sync_name} run {self.run_id}: {self.status}: {self.cause}"
            )
        return self

    def summary(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        text = f"sync {self.sync_name} run {self.run_id}: {self.status} "
        text += f"({self.read_mode} read, {counts})"
        return text + (f"; cause: {self.cause}" if self.cause else "")


class SyncEngine:
    """Runs one :class:`SyncSpec` between two adapters, keeping state in ``state``.

    ``state`` is a ``StateDatabase`` (or anything with ``engine()`` and ``session()``);
    ``lake`` (a ``DeltaLake``) receives the audit trail and quarantined records when given.
    """

    def __init__(
        self,
        spec: SyncSpec,
        left: SyncAdapter,
        right: SyncAdapter,
        state: Any,
        *,
        lake: Any = None,
        new_id: Callable[[], str] | None = None,
    ) -> None:
        self.spec = spec.validate()
        self.adapters = {"left": left, "right": right}
        left.bind(spec.left)
        right.bind(spec.right)
        self.sides = {"left": spec.left, "right": spec.right}
        self.store = SyncStore(state)
        self.lake = lake
        self.kinds: dict[str, Kind] = field_kinds(spec.model, spec.compared_fields)
        self._new_id = new_id or (lambda: uuid.uuid4().hex)

    # -- the run ------------------------------------------------------------------------------

    def run(
        self, *, dry_run: bool = False, triggered_by: str | None = None, full: bool = False
    ) -> SyncReport:
        """One run; see the module docstring. Returns the report (``raise_for_status()`` to
        turn a rolled-back or failed run into an exception). ``full``: read both systems in
        full even when the spec reads incrementally (see :class:`ReadPolicy`)."""
        spec = self.spec
        run_id = uuid.uuid4().hex
        with self.store.run_lock(spec.name):
            if not dry_run:
                self.recover()
                self.store.start_run(run_id, spec.name, spec.entity, triggered_by)
            read_info: dict[str, Any] = {"read_mode": "full", "high_water": None}
            written_back: list[dict[str, Any]] = []
            try:
                if not dry_run:
                    written_back = self._write_back_pending(run_id)
                history = self.store.read_history(spec.name)
                since, why = self._read_plan(full, history)
                read_info["read_mode"] = "full" if since is None else "incremental"
                log.info("sync %s: %s", spec.name, why)
                reads, xrefs, queue, pids = self._gather(run_id, since)
                read_info["high_water"] = self._high_water(reads, history)
                found = self._detect(reads, xrefs, queue, pids)
                writes, problems = self._plan(found, reads)
                problems += [
                    f"{record}: its {spec.match_field} is held by more than one record (or by "
                    "one already paired), so it is neither paired nor created; make it unique"
                    for record in found.ambiguous
                ]
            except Exception as exc:
                if not dry_run:
                    self.store.finish_run(
                        run_id, status="failed", cause=_cause(exc), read_mode=read_info["read_mode"]
                    )
                raise
            quarantine = pd.concat([reads[n].quarantine for n in SIDES], ignore_index=True)
            conflicts = found.conflicts
            new = conflicts["conflict_id"].isna() if len(conflicts) else conflicts["resolved"]
            counts = {
                "records_read": sum(len(reads[n].raw) for n in SIDES) + len(quarantine),
                "records_changed": len({w.platform_id for w in writes}),
                "conflicts": int(new.sum()),
                "auto_resolved": int((new & conflicts["resolved"].astype(bool)).sum()),
                "resolved_manually": 0,
                "applied": len(written_back),
                "rolled_back": 0,
                "quarantined": len(quarantine),
            }

            def report(
                status: str, cause: str | None = None, error: BaseException | None = None
            ) -> SyncReport:
                return SyncReport(
                    run_id=run_id,
                    sync_name=spec.name,
                    status=status,
                    dry_run=dry_run,
                    counts=counts,
                    planned=_planned_frame(writes),
                    conflicts=conflicts,
                    deletions=found.deletions,
                    quarantine=quarantine,
                    cause=cause,
                    problems=problems,
                    cause_type=None if error is None else type(error).__name__,
                    retryable=bool(getattr(error, "retryable", False)),
                    retry_after=getattr(error, "retry_after", None),
                    read_mode=read_info["read_mode"],
                )

            if dry_run:
                return report("dry_run")
            self._quarantine(quarantine, run_id)
            log.info("sync %s: %d writes planned, %d new conflicts", spec.name, len(writes),
                     counts["conflicts"])  # fmt: skip
            try:
                results, stale, refused = self._apply(run_id, writes, found, reads)
            except _RunAborted as aborted:
                counts["rolled_back"] = aborted.compensated
                self.store.finish_run(
                    run_id,
                    status="rolled_back",
                    cause=aborted.cause,
                    read_mode=read_info["read_mode"],
                    **counts,
                )
                log.error("sync %s rolled back: %s", spec.name, aborted.cause)
                return report("rolled_back", aborted.cause, aborted.error)
            counts["applied"] = len(results) + len(written_back)
            counts["resolved_manually"] = found.resolved_manually
            audit = self._commit(
                run_id, found, writes, results, stale, counts | read_info, refused=refused
            )
            self._audit_to_lake(audit, run_id)
            log.info("sync %s: %s", spec.name, counts)
            return report("succeeded")

    # -- reading and deciding -----------------------------------------------------------------

    def _read_plan(
        self, full: bool, history: ReadHistory | None
    ) -> tuple[dict[str, datetime] | None, str]:
        """Where each side's read starts (None: a full read), and why."""
        policy = self.spec.reads
        if full:
            return None, "full read (asked for)"
        if not policy.incremental:
            return None, "full read"
        unable = [
            self.sides[n].system
            for n in SIDES
            if not self.sides[n].modified_field or not self.adapters[n].supports_since
        ]
        if unable:
            return None, f"full read ({', '.join(unable)} cannot be read by modified time)"
        systems = [self.sides[n].system for n in SIDES]
        if history is None or any(not history.high_water.get(s) for s in systems):
            return None, "full read (no earlier successful run to continue from)"
        if policy.full_every_runs and history.incremental_runs + 1 >= policy.full_every_runs:
            return None, f"full read (every {policy.full_every_runs} runs)"
        if policy.full_every_hours and history.last_full_at is not None:
            age = pd.Timestamp.now(tz="UTC") - pd.Timestamp(history.last_full_at)
            if age >= pd.Timedelta(hours=policy.full_every_hours):
                return None, f"full read (the last one is older than {policy.full_every_hours} h)"
        overlap = pd.Timedelta(seconds=policy.overlap_seconds)
        since = {
            n: (pd.Timestamp(history.high_water[self.sides[n].system]) - overlap).to_pydatetime()
            for n in SIDES
        }
        described = ", ".join(f"{self.sides[n].system} since {since[n].isoformat()}" for n in SIDES)
        return since, f"incremental read ({described})"

    def _gather(
        self, run_id: str, since: Mapping[str, datetime] | None
    ) -> tuple[dict[str, SideRecords], pd.DataFrame, pd.DataFrame, set[str] | None]:
        """Read both sides: everything, or (``since``) what changed plus what detection
        needs beside it. Returns the reads, the cross-references and the conflict queue
        detection needs, and the platform ids whose bases it needs (None: all)."""
        spec = self.spec
        systems = {n: self.sides[n].system for n in SIDES}
        queue = self.store.queue(spec.name)
        if since is None:
            raws = {n: self.adapters[n].read() for n in SIDES}
            xrefs = self.store.xrefs(spec.entity, list(systems.values()))
            return self._map(raws, run_id), xrefs, queue, None
        raws = {n: self.adapters[n].read(since=since[n]) for n in SIDES}
        ids = {n: self._ids(n, raws[n]) for n in SIDES}
        known = self.store.linked_xrefs(
            spec.entity, external_ids={systems[n]: ids[n] for n in SIDES}
        )
        wanted = set(known["platform_id"]) | set(queue["platform_id"].astype(str))
        linked = self.store.linked_xrefs(
            spec.entity, platform_ids=wanted, systems=list(systems.values())
        )
        linked = linked[~linked["retired"].astype(bool)]
        extra: dict[str, list[pd.DataFrame | None]] = {n: [] for n in SIDES}
        for name in SIDES:
            adapter, source = self.adapters[name], other(name)
            # The partners of the records read on the other side, and queued records.
            missing = set(linked.loc[linked["system"] == systems[name], "external_id"])
            missing -= set(ids[name])
            if missing:
                extra[name].append(adapter.read_ids(missing))
            # Records holding the match value of a record seen for the first time.
            new = ~ids[source].isin(
                set(known.loc[known["system"] == systems[source], "external_id"])
            )
            values = self._match_values(source, raws[source][new.to_numpy()], name)
            if values:
                field_name = self.sides[name].field_map(str(spec.match_field)).field
                extra[name].append(adapter.read_matching(field_name, values))
        for name in SIDES:
            if any(frame is None for frame in extra[name]):
                log.info("sync %s: %s reads in full (it cannot select records)", spec.name,
                         systems[name])  # fmt: skip
                raws[name] = self.adapters[name].read()
                continue
            frames = [raws[name], *(f for f in extra[name] if f is not None and len(f))]
            frames = [f for f in frames if len(f)] or frames[:1]
            if len(frames) > 1:
                with warnings.catch_warnings():
                    # A column empty in one part takes its type from the others: wanted.
                    warnings.simplefilter("ignore", FutureWarning)
                    frame = pd.concat(frames, ignore_index=True)
                raws[name] = frame[~self._ids(name, frame).duplicated().to_numpy()]
        ids = {n: self._ids(n, raws[n]) for n in SIDES}
        xrefs = self.store.linked_xrefs(
            spec.entity, external_ids={systems[n]: ids[n] for n in SIDES}
        )
        pids = set(xrefs["platform_id"]) | set(queue["platform_id"].astype(str))
        more = self.store.linked_xrefs(
            spec.entity, platform_ids=pids, systems=list(systems.values())
        )
        xrefs = pd.concat([xrefs, more], ignore_index=True).drop_duplicates(
            ["system", "external_id"], ignore_index=True
        )
        return self._map(raws, run_id), xrefs, queue, pids | set(xrefs["platform_id"])

    def _ids(self, name: str, raw: pd.DataFrame) -> pd.Series:
        if not len(raw):
            return pd.Series([], dtype=object)
        return self.adapters[name].external_ids(raw).astype(object)

    def _match_values(self, source: str, raw: pd.DataFrame, target: str) -> list[Any]:
        """The match values of ``raw`` (records of ``source``) as ``target`` stores them."""
        match = self.spec.match_field
        if not match or not len(raw):
            return []
        rule = self.sides[source].field_map(match)
        if rule.field not in raw.columns:
            return []
        values = raw[rule.field].dropna()
        table = rule.read_table()
        if table is not None:
            values = values.astype(str).map(table).dropna()
        out = []
        for value in normalize_column(values.astype(object), self.kinds[match]).dropna().unique():
            try:
                converted = to_side_values(self.sides[target], {match: value}, self.kinds)
            except ValueError:
                continue
            out.extend(v for v in converted.values() if v is not None)
        return out

    def _map(self, raws: Mapping[str, pd.DataFrame], run_id: str) -> dict[str, SideRecords]:
        return {
            n: read_side(
                raws[n].reset_index(drop=True),
                self.sides[n],
                self.spec,
                self.kinds,
                self._ids(n, raws[n]).astype("string")
                if len(raws[n])
                else pd.Series([], dtype="string"),
                run_id=run_id,
            )
            for n in SIDES
        }

    def _high_water(
        self, reads: Mapping[str, SideRecords], history: ReadHistory | None
    ) -> dict[str, str]:
        """Per system, the newest modified time read so far (this run or an earlier one)."""
        marks = dict(history.high_water) if history is not None else {}
        for name in SIDES:
            side = self.sides[name]
            raw = reads[name].raw
            if not side.modified_field or side.modified_field not in raw.columns:
                continue
            newest = pd.to_datetime(
                raw[side.modified_field], utc=True, errors="coerce", format="ISO8601"
            ).max()
            if pd.isna(newest):
                continue
            before = marks.get(side.system)
            if before is None or newest > pd.Timestamp(before):
                marks[side.system] = newest.isoformat()
        return marks

    def _detect(
        self,
        reads: Mapping[str, SideRecords],
        xrefs: pd.DataFrame,
        queue: pd.DataFrame,
        pids: set[str] | None,
    ) -> Detection:
        spec = self.spec
        return detect(
            spec,
            reads["left"],
            reads["right"],
            xrefs=xrefs,
            bases={
                n: self.store.bases(spec.name, self.sides[n].system, self.kinds, platform_ids=pids)
                for n in SIDES
            },
            queue=queue,
            kinds=self.kinds,
            new_ids=lambda n: [self._new_id() for _ in range(n)],
        )

    def _plan(
        self, found: Detection, reads: Mapping[str, SideRecords]
    ) -> tuple[list[PlannedWrite], list[str]]:
        """The writes, per target record, with before-images and audit lines."""
        writes: list[PlannedWrite] = []
        problems: list[str] = []
        records = found.records
        updates = found.updates.drop_duplicates(["target", "platform_id", "field"], keep="last")
        grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for line in updates.sort_values(["target", "platform_id"], kind="stable").to_dict(
            "records"
        ):
            grouped.setdefault((str(line["target"]), str(line["platform_id"])), []).append(line)
        rows = {n: _rows(records[n], [p for t, p in grouped if t == n]) for n in SIDES}
        raws = {
            n: _rows(reads[n].raw, [str(r[EXTERNAL_ID]) for r in rows[n].values()]) for n in SIDES
        }
        for (target, pid), group in grouped.items():
            side, source = self.sides[target], other(target)
            record = rows[target][pid]
            external_id = str(record[EXTERNAL_ID])
            canonical = {line["field"]: line["value"] for line in group}
            try:
                changes = to_side_values(side, canonical, self.kinds)
            except ValueError as exc:
                problems.append(f"{side.system} record {external_id}: {exc}")
                continue
            raw = raws[target][external_id]
            before = {name: _plain(raw.get(name)) for name in changes}
            version = record[VERSION]
            audit = [
                {
                    "field": line["field"],
                    "old_value": to_json_value(record[line["field"]]),
                    "new_value": to_json_value(line["value"]),
                    "source_system": self._source_system(line["source"], source),
                    "strategy": line["strategy"],
                    "resolved_by": line["resolved_by"],
                    "reason": line["reason"],
                    "conflict_id": None
                    if _plain(line["conflict_id"]) is None
                    else int(line["conflict_id"]),
                }
                for line in group
            ]
            writes.append(
                PlannedWrite(
                    seq=len(writes) + 1,
                    target=target,
                    system=side.system,
                    platform_id=pid,
                    operation="update",
                    external_id=external_id,
                    changes=changes,
                    canonical=canonical,
                    before=before,
                    version=None if _plain(version) is None else str(version),
                    audit=audit,
                )
            )
        for row in found.creates.itertuples(index=False):
            side = self.sides[row.target]
            source = records[row.source].loc[row.platform_id]
            canonical = {name: source[name] for name in self.spec.compared_fields}
            try:
                changes = to_side_values(side, canonical, self.kinds)
            except ValueError as exc:
                problems.append(
                    f"{self.sides[row.source].system} record {source[EXTERNAL_ID]} cannot be "
                    f"created in {side.system}: {exc}"
                )
                continue
            audit = [
                {
                    "field": name,
                    "old_value": None,
                    "new_value": to_json_value(value),
                    "source_system": self.sides[row.source].system,
                    "strategy": "created",
                    "resolved_by": None,
                    "reason": f"new in {self.sides[row.source].system}",
                    "conflict_id": None,
                }
                for name, value in canonical.items()
                if to_json_value(value) is not None
            ]
            writes.append(
                PlannedWrite(
                    seq=len(writes) + 1,
                    target=row.target,
                    system=side.system,
                    platform_id=row.platform_id,
                    operation="create",
                    external_id=None,
                    changes=changes,
                    canonical=canonical,
                    before={},
                    version=None,
                    audit=audit,
                )
            )
        for row in found.revivals.itertuples(index=False):
            writes += self._revival(row, records, reads, len(writes) + 1, problems)
        return writes, problems

    def _revival(
        self,
        row: Any,
        records: Mapping[str, pd.DataFrame],
        reads: Mapping[str, SideRecords],
        seq: int,
        problems: list[str],
    ) -> list[PlannedWrite]:
        """Write a new record over the one a rolled-back run created and cancelled."""
        side, origin = self.sides[row.target], self.sides[row.source].system
        source = records[row.source].loc[row.platform_id]
        current = reads[row.target].frame.loc[row.external_id]
        canonical = {
            name: source[name]
            for name in self.spec.fields
            if values_differ(current[name], source[name])
        }
        try:
            changes = to_side_values(side, canonical, self.kinds)
        except ValueError as exc:
            problems.append(f"{origin} record {source[EXTERNAL_ID]}: {exc}")
            return []
        raw = reads[row.target].raw.loc[row.external_id]
        audit = [
            {
                "field": name,
                "old_value": to_json_value(current[name]),
                "new_value": to_json_value(value),
                "source_system": origin,
                "strategy": "created",
                "resolved_by": None,
                "reason": f"new in {origin}; written over the record a rolled-back run had "
                "created and cancelled",
                "conflict_id": None,
            }
            for name, value in canonical.items()
        ]
        version = current[VERSION]
        return [
            PlannedWrite(
                seq=seq,
                target=row.target,
                system=side.system,
                platform_id=row.platform_id,
                operation="update",
                external_id=str(row.external_id),
                changes=changes,
                canonical=canonical,
                before={name: _plain(raw.get(name)) for name in changes},
                version=None if _plain(version) is None else str(version),
                audit=audit,
                revive=True,
            )
        ]

    def _source_system(self, source: str, default: str) -> str:
        if source in self.sides:
            return self.sides[source].system
        return self.sides[default].system if source in ("queue", "rule") else source

    # -- applying -----------------------------------------------------------------------------

    def _apply(
        self,
        run_id: str,
        writes: list[PlannedWrite],
        found: Detection | None = None,
        reads: Mapping[str, SideRecords] | None = None,
    ) -> tuple[dict[int, WriteResult], dict[int, Conflict], dict[int, Conflict]]:
        """Make the writes as one unit; returns, by seq, the results, the writes refused as
        stale and the refused write-backs of assigned numbers.

        A create answered with a match value the target assigned itself (Maximo numbering a
        work order, an identity column) is followed at once by an update of the source
        record to that value (appended to ``writes``): part of the same unit, so rolled back
        with it. A write-back refused because the source record changed meanwhile does not
        stop the run: it is kept in ``sync_pending_keys`` and made by a later run.
        """
        transactional = [w for w in writes if self.adapters[w.target].transactional]
        journaled = [w for w in writes if not self.adapters[w.target].transactional]
        entry_ids = dict(
            zip(
                [w.seq for w in journaled],
                self.store.journal([self._journal_row(run_id, w) for w in journaled]),
                strict=True,
            )
        )
        results: dict[int, WriteResult] = {}
        stale: dict[int, Conflict] = {}
        refused: dict[int, Conflict] = {}
        open_tx = {n for n in SIDES if self.adapters[n].transactional and _targets(writes, n)}
        for name in open_tx:
            self.adapters[name].begin()
        done: list[PlannedWrite] = []
        pending = deque([*transactional, *journaled])
        try:
            while pending:
                write = pending.popleft()
                entry = entry_ids.get(write.seq)
                try:
                    result = self._write(write)
                except Conflict as exc:
                    if entry is not None:
                        self.store.mark(entry, "skipped", error=str(exc))
                    log.warning("sync %s: %s", self.spec.name, exc)
                    # A refused write-back waits for a later run; the created record and
                    # its source stay paired by their cross-references.
                    (refused if write.assigned_key else stale)[write.seq] = exc
                    continue
                except Exception as exc:
                    if entry is not None:
                        self.store.mark(entry, "failed", error=_cause(exc))
                    raise
                results[write.seq] = result
                done.append(write)
                if entry is not None:
                    self.store.mark(
                        entry,
                        "applied",
                        external_id=result.external_id,
                        version_after=result.version,
                    )
                follow = None
                if found is not None and reads is not None:
                    follow = self._assigned_key(write, result, found, reads, len(writes) + 1)
                if follow is None:
                    continue
                writes.append(follow)
                if self.adapters[follow.target].transactional:
                    if follow.target not in open_tx:
                        self.adapters[follow.target].begin()
                        open_tx = open_tx | {follow.target}
                else:
                    (entry_ids[follow.seq],) = self.store.journal(
                        [self._journal_row(run_id, follow)]
                    )
                pending.appendleft(follow)
            for name in list(open_tx):
                self.adapters[name].commit()
                open_tx = open_tx - {name}
        except Exception as exc:
            for name in open_tx:
                self.adapters[name].rollback()
            number = len(done) + len(stale) + len(refused) + 1
            cause = f"write {number} of {len(writes)} failed: {_cause(exc)}"
            undone = self._compensate([w for w in done if w.seq in entry_ids], results, entry_ids)
            raise _RunAborted(cause, len(done) - undone.failed, exc) from exc
        except BaseException:
            # The process is going away (interrupt, exit): an open transaction is dropped,
            # journaled writes are left for the next run to undo.
            for name in open_tx:
                self.adapters[name].rollback()
            raise
        return results, stale, refused

    def _assigned_key(
        self,
        write: PlannedWrite,
        result: WriteResult,
        found: Detection,
        reads: Mapping[str, SideRecords],
        seq: int,
    ) -> PlannedWrite | None:
        """The update that gives the source record the match value the target assigned to
        the record created from it, or None when both already carry the same value."""
        match = self.spec.match_field
        source = other(write.target)
        if not match or write.operation != "create" or write.revive:
            return None
        if not self.spec.writes_to(source) or not result.record:
            return None
        rule = self.sides[write.target].field_map(match)
        if rule.field not in result.record:
            return None
        raw = result.record[rule.field]
        planned = write.canonical.get(match)
        if raw is None or (_plain(planned) is not None and str(raw) == str(_plain(planned))):
            return None  # the usual case, decided without pandas: the value sent was kept
        table = rule.read_table()
        if table is not None and raw is not None:
            raw = table.get(str(raw), raw)
        assigned = normalize_column(pd.Series([raw], dtype=object), self.kinds[match]).iloc[0]
        if _plain(assigned) is None or not values_differ(planned, assigned):
            return None
        side = self.sides[source]
        record = found.records[source].loc[write.platform_id]
        external_id = str(record[EXTERNAL_ID])
        try:
            changes = to_side_values(side, {match: assigned}, self.kinds)
        except ValueError as exc:
            log.warning("sync %s: %s record %s: %s", self.spec.name, side.system, external_id, exc)
            return None
        raw_source = reads[source].raw.loc[external_id]
        origin = write.system
        return PlannedWrite(
            seq=seq,
            target=source,
            system=side.system,
            platform_id=write.platform_id,
            operation="update",
            external_id=external_id,
            changes=changes,
            canonical={match: assigned},
            before={name: _plain(raw_source.get(name)) for name in changes},
            version=None if _plain(record[VERSION]) is None else str(record[VERSION]),
            audit=[
                {
                    "field": match,
                    "old_value": to_json_value(planned),
                    "new_value": to_json_value(assigned),
                    "source_system": origin,
                    "strategy": "assigned_key",
                    "resolved_by": None,
                    "reason": f"{origin} assigned {match} {to_json_value(assigned)!r} to the "
                    f"record the sync created there ({result.external_id}); written back so "
                    "both systems carry the same key",
                    "conflict_id": None,
                }
            ],
            assigned_key=True,
        )

    def _write(self, write: PlannedWrite) -> WriteResult:
        adapter = self.adapters[write.target]
        if write.operation == "create":
            return adapter.create(write.changes)
        assert write.external_id is not None
        return adapter.update(
            write.external_id, write.changes, version=write.version, expected=write.before
        )

    def _journal_row(self, run_id: str, write: PlannedWrite) -> dict[str, Any]:
        return {
            "run_id": run_id,
            "sync_name": self.spec.name,
            "seq": write.seq,
            "system": write.system,
            "entity": self.spec.entity,
            "platform_id": write.platform_id,
            "external_id": write.external_id,
            "operation": write.operation,
            "before_image": {k: to_json_value(v) for k, v in write.before.items()},
            "changes": {k: to_json_value(v) for k, v in write.changes.items()},
        }

    @dataclass
    class _Undone:
        failed: int = 0
        retired: list[tuple[str, str]] = field(default_factory=list)

    def _compensate(
        self,
        done: list[PlannedWrite],
        results: Mapping[int, WriteResult],
        entry_ids: Mapping[int, int],
    ) -> SyncEngine._Undone:
        """Restore every journaled record already written, newest first."""
        outcome = SyncEngine._Undone()
        for write in reversed(done):
            result = results[write.seq]
            entry = entry_ids[write.seq]
            try:
                retired = self._undo(
                    write.target,
                    write.operation,
                    result.external_id,
                    before=write.before,
                    changes=write.changes,
                    version=result.version,
                )
            except Exception as exc:
                outcome.failed += 1
                self.store.mark(entry, "failed", error=f"not restored: {_cause(exc)}")
                log.error(
                    "sync %s: could not restore %s %s: %s",
                    self.spec.name,
                    write.system,
                    result.external_id,
                    exc,
                )
                continue
            if retired:
                self._retire_xref(write.target, result.external_id)
            self.store.mark(entry, "compensated")
        return outcome

    def _undo(
        self,
        target: str,
        operation: str,
        external_id: str,
        *,
        before: Mapping[str, Any],
        changes: Mapping[str, Any],
        version: str | None,
    ) -> bool:
        """One compensating write; returns True when a created record was retired (kept,
        cancelled) rather than deleted."""
        adapter = self.adapters[target]
        if operation == "create":
            if adapter.supports_delete:
                adapter.delete(external_id)
                return False
            retire = getattr(adapter, "retire", None)
            if retire is None:
                raise NotImplementedError(
                    f"{adapter.system} can neither delete nor retire record {external_id}"
                )
            retire(external_id, version=version)
            return True
        adapter.update(external_id, dict(before), version=version, expected=dict(changes))
        return False

    def _retire_xref(self, target: str, external_id: str) -> None:
        """Record a created-then-retired record so later runs ignore it."""
        self.store.retire(self.spec.entity, self.sides[target].system, external_id, self._new_id())

    # -- recovery -----------------------------------------------------------------------------

    def recover(self) -> list[str]:
        """Undo the journaled writes of runs whose process ended mid-run; returns their ids.

        An applied write is restored with the version it left. A write whose outcome was not
        recorded (the process ended during the call) is checked against the record: restored
        if it took effect, skipped if not. A create whose outcome is unknown cannot be found
        by id; the next run pairs it through the match field.
        """
        runs = self.store.unfinished_runs(self.spec.name)
        if not runs:
            return []
        systems = {self.sides[n].system: n for n in SIDES}
        read_once: set[str] = set()
        for run_id in runs:
            entries = self.store.journal_entries(run_id, ["applied", "pending"])
            undone = failed = 0
            for entry in entries:
                target = systems.get(entry.system)
                if target is None:
                    continue
                if target not in read_once:
                    self.adapters[target].read()  # learn how to address records (hrefs)
                    read_once.add(target)
                try:
                    state = self._recover_entry(target, entry)
                except Exception as exc:
                    failed += 1
                    self.store.mark(entry.id, "failed", error=f"not restored: {_cause(exc)}")
                    continue
                self.store.mark(entry.id, state)
                undone += state == "compensated"
            cause = INTERRUPTED + (f"; {failed} record(s) could not be restored" if failed else "")
            self.store.finish_run(run_id, status="rolled_back", cause=cause, rolled_back=undone)
            log.warning("sync %s: run %s %s", self.spec.name, run_id, cause)
        return runs

    # -- numbers assigned by an earlier run ----------------------------------------------------

    def _write_back_pending(self, run_id: str) -> list[dict[str, Any]]:
        """Write back the numbers earlier runs could not (``sync_pending_keys``), before
        reading, so this run reads both records carrying the same key. Returns the audit
        lines of the numbers written (already stored; appended to the lake here)."""
        pending = self.store.pending_keys(self.spec.name)
        sides = {self.sides[n].system: n for n in SIDES}
        audit = []
        for item in pending:
            name = sides.get(str(item["system"]))
            if name is None or item["field"] not in self.kinds:
                continue  # the sync no longer has that system or field
            if not self.spec.writes_to(name):
                note = f"the sync no longer writes to {item['system']}"
                self.store.settle_pending_key(
                    int(item["id"]), status="superseded", run_id=run_id, attempted=False, note=note
                )
                continue
            line = self._write_back(run_id, name, item)
            if line is not None:
                audit.append(line)
        self._audit_to_lake(audit, run_id)
        return audit

    def _write_back(self, run_id: str, name: str, item: Mapping[str, Any]) -> dict[str, Any] | None:
        """One pending write-back: made with the record's current version, or settled
        without a write when the record already holds a number or is gone."""
        side, system = self.sides[name], self.sides[name].system
        external_id, field_name = str(item["external_id"]), str(item["field"])
        settle = partial(self.store.settle_pending_key, int(item["id"]), run_id=run_id)
        try:
            record = self._current_record(name, external_id)
        except Exception as exc:  # cannot look now (system down): the next run tries again
            settle(status="pending", attempted=False, error=_cause(exc))
            return None
        if record is None:
            note = f"{system} has no record {external_id} any more"
            settle(status="superseded", attempted=False, note=note)
            return None
        wanted = from_json_value(item["value"], self.kinds[field_name])
        held = self._canonical(name, field_name, record)
        if not values_differ(held, wanted):
            settle(status="applied", attempted=False, note="the record already held the number")
            return None
        if _plain(held) is not None:
            note = (
                f"{system} record {external_id} now holds {field_name} "
                f"{to_json_value(held)!r}, set there; left as it is"
            )
            log.warning("sync %s: %s", self.spec.name, note)
            settle(status="superseded", attempted=False, note=note)
            return None
        changes = dict(item["changes"])
        version = record.get(side.version_field) if side.version_field else None
        try:
            self._update_alone(
                name,
                external_id,
                changes,
                version=None if _plain(version) is None else str(version),
                expected={k: _plain(record.get(k)) for k in changes},
            )
        except Exception as exc:  # refused again, or the system failed: try next run
            log.warning("sync %s: write-back to %s %s: %s", self.spec.name, system,
                        external_id, exc)  # fmt: skip
            settle(status="pending", attempted=True, error=_cause(exc))
            return None
        line = self._written_back(run_id, item)
        settle(status="applied", attempted=True, audit=[line])
        return line

    def _written_back(self, run_id: str, item: Mapping[str, Any]) -> dict[str, Any]:
        """The audit line of a number written back by a later run than the one refused."""
        return {
            "run_id": run_id,
            "sync_name": self.spec.name,
            "entity": self.spec.entity,
            "platform_id": str(item["platform_id"]),
            "external_id": str(item["external_id"]),
            "operation": "update",
            "target_system": str(item["system"]),
            "applied_at": pd.Timestamp.now(tz="UTC").to_pydatetime(),
            "field": str(item["field"]),
            "old_value": None,
            "new_value": item["value"],
            "source_system": str(item["assigned_by"]),
            "strategy": "assigned_key",
            "resolved_by": None,
            "reason": f"{item['assigned_by']} assigned {item['field']} {item['value']!r} to the "
            f"record the sync created there ({item['assigned_external_id']}); written back "
            f"now, as run {item['run_id']} was refused (the record changed during that run)",
            "conflict_id": None,
        }

    def _current_record(self, name: str, external_id: str) -> dict[str, Any] | None:
        """One record as its system holds it now (read by id where the adapter can)."""
        adapter = self.adapters[name]
        frame = adapter.read_ids([external_id])
        if frame is None:
            frame = adapter.read()
        if not len(frame):
            return None
        rows = frame[(self._ids(name, frame).astype(str) == external_id).to_numpy()]
        return None if not len(rows) else rows.iloc[0].to_dict()

    def _canonical(self, name: str, field_name: str, record: Mapping[str, Any]) -> Any:
        """A record's field in canonical form (code table, type), as detection sees it."""
        rule = self.sides[name].field_map(field_name)
        raw = _plain(record.get(rule.field))
        table = rule.read_table()
        if table is not None and raw is not None:
            raw = table.get(str(raw), raw)
        series = pd.Series([raw], dtype=object)
        return normalize_column(series, self.kinds[field_name]).iloc[0]

    def _update_alone(
        self,
        name: str,
        external_id: str,
        changes: Mapping[str, Any],
        *,
        version: str | None,
        expected: Mapping[str, Any],
    ) -> WriteResult:
        """An update outside a run's unit: its own transaction on a transactional side."""
        adapter = self.adapters[name]
        adapter.begin()
        try:
            result = adapter.update(external_id, changes, version=version, expected=expected)
        except BaseException:
            adapter.rollback()
            raise
        adapter.commit()
        return result

    def _recover_entry(self, target: str, entry: Any) -> str:
        adapter = self.adapters[target]
        if entry.operation == "create":
            if entry.state == "pending" or not entry.external_id:
                return "failed"
            retired = self._undo(
                target,
                "create",
                entry.external_id,
                before={},
                changes={},
                version=entry.version_after,
            )
            if retired:
                self._retire_xref(target, entry.external_id)
            return "compensated"
        version = entry.version_after
        if entry.state == "pending":
            current = adapter.fetch(entry.external_id)
            if current is None:
                return "failed"
            took_effect = all(_same(current.get(k), v) for k, v in entry.changes.items())
            if not took_effect:
                return "skipped"
            version_field = self.sides[target].version_field
            version = str(current.get(version_field)) if version_field else None
        self._undo(
            target,
            "update",
            entry.external_id,
            before=entry.before_image,
            changes=entry.changes,
            version=version,
        )
        return "compensated"

    # -- recording ----------------------------------------------------------------------------

    def _commit(
        self,
        run_id: str,
        found: Detection,
        writes: list[PlannedWrite],
        results: Mapping[int, WriteResult],
        stale: Mapping[int, Conflict],
        counts: Mapping[str, Any],
        *,
        refused: Mapping[int, Conflict] | None = None,
    ) -> list[dict[str, Any]]:
        spec = self.spec
        refused = refused or {}
        now = pd.Timestamp.now(tz="UTC").to_pydatetime()
        records = found.records
        stale_pids = {w.platform_id for w in writes if w.seq in stale}

        # Cross-references: pairs found by the match field, created records, new tokens.
        xrefs: dict[tuple[str, str], dict[str, Any]] = {}

        def xref(name: str, pid: str, external_id: str, token: Any) -> None:
            system = self.sides[name].system
            xrefs[(system, external_id)] = {
                "entity": spec.entity,
                "platform_id": pid,
                "system": system,
                "external_id": external_id,
                "version_token": None if pd.isna(token) else str(token),
                "retired": False,
                "updated_at": now,
            }

        touched = found.touched.difference(pd.Index(list(stale_pids)))
        for name in SIDES:
            frame = records[name]
            rows = frame.loc[frame.index.intersection(touched.union(found.new_xrefs.index))]
            for pid, ext, token in zip(rows.index, rows[EXTERNAL_ID], rows[VERSION], strict=True):
                xref(name, str(pid), str(ext), token)

        # New bases: today's values, with what this run wrote on top.
        values = {n: records[n][records[n].index.isin(touched)].copy() for n in SIDES}
        written: dict[str, dict[str, tuple[list[str], list[Any]]]] = {n: {} for n in SIDES}
        created: dict[str, list[tuple[str, str, str | None]]] = {n: [] for n in SIDES}
        assigned: list[tuple[str, str, Any, str | None]] = []
        for write in writes:
            result = results.get(write.seq)
            if result is None or write.platform_id in stale_pids:
                continue
            target, pid = write.target, write.platform_id
            xref(target, pid, result.external_id, result.version)
            if write.assigned_key:
                assigned.append((target, pid, write.canonical[spec.match_field], result.version))
                continue
            if write.operation == "create" or write.revive:
                created[target].append((pid, result.external_id, result.version))
                source = records[other(target)]
                xref(other(target), pid, str(source.at[pid, EXTERNAL_ID]), source.at[pid, VERSION])
                continue
            for name, value in [*write.canonical.items(), (VERSION, result.version)]:
                pids, new = written[target].setdefault(name, ([], []))
                pids.append(pid)
                new.append(value)
        for name in SIDES:
            frame = values[name]
            for column, (pids, new) in written[name].items():
                frame[column] = frame[column].astype(object)
                frame.loc[pids, column] = pd.Series(new, index=pids, dtype=object)
            if created[name]:
                pids = [pid for pid, _, _ in created[name]]
                rows = records[other(name)].loc[pids].copy()
                rows[EXTERNAL_ID] = [external for _, external, _ in created[name]]
                rows[VERSION] = pd.array([v for _, _, v in created[name]], dtype="string")
                source = records[other(name)].loc[pids]
                source = source[~source.index.isin(values[other(name)].index)]
                values[other(name)] = pd.concat([values[other(name)], source])
                values[name] = pd.concat([frame, rows])
        for target, pid, key, version in assigned:  # both sides now carry the assigned key
            for name in SIDES:
                if pid in values[name].index:
                    values[name][spec.match_field] = values[name][spec.match_field].astype(object)
                    values[name].at[pid, spec.match_field] = key
            if version is not None and pid in values[target].index:
                values[target].at[pid, VERSION] = version
        pending = self._pending_keys(run_id, writes, results, refused, now)
        for row in pending:  # the numbering side carries its number; the source not yet
            numbered = next(n for n in SIDES if self.sides[n].system == row["assigned_by"])
            if row["platform_id"] in values[numbered].index:
                values[numbered][spec.match_field] = values[numbered][spec.match_field].astype(
                    object
                )
                values[numbered].at[row["platform_id"], spec.match_field] = row["_canonical"]
        bases = []
        fields = list(self.kinds)
        for name in SIDES:
            frame = values[name]
            if not len(frame):
                continue
            frame = normalize(frame, self.kinds)
            hashes = content_hash(frame, fields)
            for pid, ext, token, digest, field_values in zip(
                frame.index,
                frame[EXTERNAL_ID],
                frame[VERSION],
                hashes,
                json_records(frame, fields),
                strict=True,
            ):
                bases.append(
                    {
                        "sync_name": spec.name,
                        "entity": spec.entity,
                        "platform_id": str(pid),
                        "system": self.sides[name].system,
                        "external_id": str(ext),
                        "field_values": field_values,
                        "content_hash": str(digest),
                        "version_token": None if pd.isna(token) else str(token),
                        "run_id": run_id,
                        "synced_at": now,
                    }
                )

        # The conflict queue: new conflicts (decided or waiting), re-decided and settled ones.
        new_conflicts, conflict_updates, refs = self._conflict_rows(run_id, found, now)
        for write in writes:
            if write.seq in stale:
                new_conflicts += self._stale_conflicts(run_id, write, stale[write.seq], found, now)

        audit = []
        for write in writes:
            result = results.get(write.seq)
            if result is None:
                continue
            for line in write.audit:
                ref = refs.get((write.platform_id, line["field"]))
                audit.append(
                    {
                        "run_id": run_id,
                        "sync_name": spec.name,
                        "entity": spec.entity,
                        "platform_id": write.platform_id,
                        "external_id": result.external_id,
                        "operation": write.operation,
                        "target_system": write.system,
                        "applied_at": now,
                        **line,
                        "conflict_ref": ref if line["conflict_id"] is None else None,
                    }
                )
        ids = self.store.commit_outcome(
            run_id,
            xrefs=list(xrefs.values()),
            bases=bases,
            new_conflicts=new_conflicts,
            conflict_updates=conflict_updates,
            audit=audit,
            status="succeeded",
            cause=None,
            counts=dict(counts),
            pending_keys=[{k: v for k, v in row.items() if k != "_canonical"} for row in pending],
        )
        for line in audit:
            ref = line.pop("conflict_ref", None)
            if ref is not None and line.get("conflict_id") is None:
                line["conflict_id"] = ids[ref]
        return audit

    def _pending_keys(
        self,
        run_id: str,
        writes: list[PlannedWrite],
        results: Mapping[int, WriteResult],
        refused: Mapping[int, Conflict],
        now: datetime,
    ) -> list[dict[str, Any]]:
        """A ``sync_pending_keys`` row per refused write-back (``_canonical``: the value as
        the canonical model holds it, for the bases)."""
        match = self.spec.match_field
        created = {
            w.platform_id: results[w.seq].external_id
            for w in writes
            if w.operation == "create" and w.seq in results
        }
        rows = []
        for write in writes:
            if write.seq not in refused or match is None or write.external_id is None:
                continue
            assigned = write.canonical[match]
            rows.append(
                {
                    "sync_name": self.spec.name,
                    "entity": self.spec.entity,
                    "platform_id": write.platform_id,
                    "system": write.system,
                    "external_id": write.external_id,
                    "field": match,
                    "value": to_json_value(assigned),
                    "changes": {k: to_json_value(v) for k, v in write.changes.items()},
                    "assigned_by": self.sides[other(write.target)].system,
                    "assigned_external_id": created.get(write.platform_id, ""),
                    "status": "pending",
                    "attempts": 1,
                    "last_error": str(refused[write.seq]),
                    "note": None,
                    "run_id": run_id,
                    "applied_run_id": None,
                    "updated_at": now,
                    "_canonical": assigned,
                }
            )
            log.warning(
                "sync %s: %s %s keeps %s empty for now (the record changed during the run); "
                "the next run writes %r back",
                self.spec.name,
                write.system,
                write.external_id,
                match,
                to_json_value(assigned),
            )
        return rows

    def _conflict_rows(
        self, run_id: str, found: Detection, now: datetime
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[tuple[str, str], int]]:
        spec = self.spec
        new_rows: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        refs: dict[tuple[str, str], int] = {}
        ids = {n: found.records[n][EXTERNAL_ID] for n in SIDES}
        for row in found.conflicts.itertuples(index=False):
            decided = bool(row.resolved)
            common = {
                "left_value": to_json_value(row.left),
                "right_value": to_json_value(row.right),
                "left_modified_at": _when(row.left_modified),
                "right_modified_at": _when(row.right_modified),
                "strategy": row.strategy,
                "reason": row.reason,
            }
            if decided:
                common |= {
                    "status": "applied",
                    "resolution": row.winner,
                    "resolved_value": to_json_value(row.value),
                    "resolved_by": f"policy:{row.strategy}",
                    "resolved_at": now,
                    "applied_run_id": run_id,
                }
            if row.conflict_id is not None and not pd.isna(row.conflict_id):
                updates.append({"id": int(row.conflict_id), **common})
                continue
            refs[(row.platform_id, row.field)] = len(new_rows)
            new_rows.append(
                {
                    "sync_name": spec.name,
                    "run_id": run_id,
                    "entity": spec.entity,
                    "platform_id": row.platform_id,
                    "field": row.field,
                    "left_system": spec.left.system,
                    "right_system": spec.right.system,
                    "left_external_id": _get(ids["left"], row.platform_id),
                    "right_external_id": _get(ids["right"], row.platform_id),
                    "base_value": to_json_value(row.base),
                    "status": "open",
                    **common,
                }
            )
        for conflict_id, change in found.settled.items():
            updates.append(
                {"id": conflict_id, "applied_run_id": run_id, "resolved_at": now, **change}
            )
        return new_rows, updates, refs

    def _stale_conflicts(
        self, run_id: str, write: PlannedWrite, exc: Conflict, found: Detection, now: datetime
    ) -> list[dict[str, Any]]:
        """A write the target refused as stale: each of its fields waits in the queue and is
        decided again, 3-way, on the next run."""
        spec = self.spec
        rows = []
        target, source = write.target, other(write.target)
        bases = {n: found.records[n] for n in SIDES}
        for name, value in write.canonical.items():
            current = bases[target].at[write.platform_id, name]
            values = {target: current, source: value}
            rows.append(
                {
                    "sync_name": spec.name,
                    "run_id": run_id,
                    "entity": spec.entity,
                    "platform_id": write.platform_id,
                    "field": name,
                    "left_system": spec.left.system,
                    "right_system": spec.right.system,
                    "left_external_id": _get(found.records["left"][EXTERNAL_ID], write.platform_id),
                    "right_external_id": _get(
                        found.records["right"][EXTERNAL_ID], write.platform_id
                    ),
                    "base_value": to_json_value(current),
                    "left_value": to_json_value(values["left"]),
                    "right_value": to_json_value(values["right"]),
                    "left_modified_at": _when(bases["left"].at[write.platform_id, MODIFIED]),
                    "right_modified_at": _when(bases["right"].at[write.platform_id, MODIFIED]),
                    "strategy": spec.policy(name).describe(),
                    "reason": f"{write.system} refused the write because the record changed "
                    f"during the run ({exc.status or 'stale version'}); decided again on the "
                    "next run",
                    "status": "open",
                    "created_at": now,
                }
            )
        return rows

    def _quarantine(self, quarantine: pd.DataFrame, run_id: str) -> None:
        if not len(quarantine):
            return
        log.warning("sync %s: %d record(s) quarantined", self.spec.name, len(quarantine))
        if self.lake is not None:
            self.lake.write(
                quarantine,
                ["quarantine", "sync", self.spec.name],
                mode="append",
                commit_metadata={"run_id": run_id},
            )

    def _audit_to_lake(self, audit: list[dict[str, Any]], run_id: str) -> None:
        if self.lake is None or not audit:
            return
        import json

        frame = pd.DataFrame(audit)
        for name in ("old_value", "new_value"):
            frame[name] = frame[name].map(lambda v: json.dumps(v, ensure_ascii=False))
        frame["conflict_id"] = frame["conflict_id"].astype("Int64")
        frame["applied_at"] = pd.to_datetime(frame["applied_at"], utc=True)
        try:
            self.lake.write(
                frame, list(AUDIT_TABLE), mode="append", commit_metadata={"run_id": run_id}
            )
        except Exception as exc:  # the state database holds the same trail
            log.error("sync %s: audit not appended to the lake: %s", self.spec.name, exc)


def _rows(frame: pd.DataFrame, labels: list[str]) -> dict[str, dict[str, Any]]:
    """The rows of ``frame`` at ``labels`` as dicts keyed by label, in one lookup."""
    if not labels:
        return {}
    picked = frame.iloc[frame.index.get_indexer(labels)]
    return dict(zip(labels, picked.to_dict("records"), strict=True))


def _targets(writes: list[PlannedWrite], name: str) -> bool:
    return any(w.target == name for w in writes)


def _planned_frame(writes: list[PlannedWrite]) -> pd.DataFrame:
    rows = [
        {
            "platform_id": w.platform_id,
            "system": w.system,
            "operation": w.operation,
            "external_id": w.external_id,
            **{k: line[k] for k in ("field", "old_value", "new_value", "source_system")},
            "strategy": line["strategy"],
            "reason": line["reason"],
        }
        for w in writes
        for line in w.audit
    ]
    columns = ["platform_id", "system", "operation", "external_id", "field", "old_value"]
    columns += ["new_value", "source_system", "strategy", "reason"]
    return pd.DataFrame(rows, columns=columns)


def _plain(value: Any) -> Any:
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        return value
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value.item() if hasattr(value, "item") else value


def _same(current: Any, wanted: Any) -> bool:
    if current is None or wanted is None:
        return current is None and wanted is None
    try:
        return float(current) == float(wanted)
    except (TypeError, ValueError):
        return str(current) == str(wanted)


def _when(value: Any) -> datetime | None:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).to_pydatetime()


def _get(series: pd.Series, key: str) -> str | None:
    value = series.get(key)
    return None if value is None or pd.isna(value) else str(value)


def _cause(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
