"""Sync throughput: change detection over 100,000 work orders per side, and apply rates.

    python benchmarks/sync.py [--quick]

Detection: two systems with 100,000 paired work orders each (``--quick``: 20,000), a base
for every record, 1% of the records changed on each side and 0.1% of all records changed on
both sides in the same field (conflicts). The left system has a version token (``_rowstamp``
like Maximo), the right one has none, so its changes are found by content hash. Timed:
``detect`` (pairing through the cross-references, 3-way comparison, field diffs, conflict
decisions under the policy below) on in-memory frames, the median of three runs; the same
detection written row by row over Python dicts is the baseline. The mapping and validation
of raw records into canonical values (``read_side``) is timed separately.

Apply: a full ``SyncEngine.run`` (read both sides, detect, apply, state and audit commit)
against a work-order table on the real PostgreSQL (``BENCH_POSTGRES_URL``, default the local
server; a scratch database is created and dropped) and against the Maximo contract server
(bounded: 300 records, ``--quick`` 100), with the state database in SQLite. The rate is
writes applied per second of the whole run, so it includes the read and the bookkeeping.

Incremental reads: the detection cost of a whole run (a dry run: read both in-memory
systems, map, pair, detect, plan) reading in full next to one reading only what changed
since the last run (plus the partners of those records, read by id), on the same number of
work orders with 1% changed on each side; the median of three runs of each.

Policy: status owned by the CMMS, cost by the ERP, every other field last-writer-wins.

Last line: ``detect_records_per_s=<N> apply_records_per_s=<M> auto_resolved_pct=<P>`` with
N the paired work orders compared per second, M the SQL target's apply rate.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

FIELDS = ("title", "status", "priority", "labor_hours", "cost_amount", "assigned_to")
STATUSES = np.array(["scheduled", "in_progress", "completed", "on_hold"])
PRIORITIES = np.array(["critical", "high", "medium", "low"])
CREWS = np.array(["JONES", "SMITH", "BROWN", "GARCIA", "WILSON"])
MAXIMO_STATUS = {
    "APPR": "scheduled",
    "INPRG": "in_progress",
    "COMP": "completed",
    "WMATL": "on_hold",
}
MAXIMO_PRIORITY = {"1": "critical", "2": "high", "3": "medium", "4": "low"}


def make_spec(right: dict[str, Any] | None = None, *, right_version: str | None = None) -> Any:
    from integration_platform.sync import FieldPolicy, SideSpec, Strategy, SyncSpec

    plain = {name: name for name in ("external_id", *FIELDS)} | {"external_id": "wonum"}
    return SyncSpec(
        name="bench_work_orders",
        entity="work_order",
        left=SideSpec(system="cmms", connection="cmms", key_field="id", version_field="rowstamp",
                      modified_field="changed", fields=plain),
        right=SideSpec(system="erp", connection="erp", key_field=right_version or "id",
                       modified_field="changed", fields=right or plain,
                       version_field="_rowstamp" if right_version else None),
        fields=FIELDS,
        match_field="external_id",
        policies={
            "status": FieldPolicy(Strategy.SOURCE_PRIORITY, owner="cmms"),
            "cost_amount": FieldPolicy(Strategy.SOURCE_PRIORITY, owner="erp"),
        },
    )  # fmt: skip


# -- detection -----------------------------------------------------------------------------


def canonical(count: int, rng: np.random.Generator) -> pd.DataFrame:
    """``count`` canonical work orders, built column by column."""
    numbers = np.arange(count)
    return pd.DataFrame(
        {
            "title": pd.array([f"Replace bearing on pump P-{n % 997}" for n in numbers],
                              dtype="string[pyarrow]"),
            "status": pd.array(STATUSES[rng.integers(0, 4, count)], dtype="string[pyarrow]"),
            "priority": pd.array(PRIORITIES[rng.integers(0, 4, count)], dtype="string[pyarrow]"),
            "labor_hours": rng.integers(1, 40, count) / 2.0,
            "cost_amount": rng.integers(100, 100_000, count) / 100.0,
            "assigned_to": pd.array(CREWS[rng.integers(0, 5, count)], dtype="string[pyarrow]"),
            "external_id": pd.array([f"{100000 + n}" for n in numbers], dtype="string[pyarrow]"),
        }
    )  # fmt: skip


def detection_inputs(count: int) -> dict[str, Any]:
    from integration_platform.sync.canonical import HASH, MODIFIED, VERSION, SideRecords
    from integration_platform.sync.values import content_hash, field_kinds, normalize

    spec = make_spec()
    kinds = field_kinds(spec.model, spec.compared_fields)
    rng = np.random.default_rng(7)
    base = normalize(canonical(count, rng), kinds)
    pids = np.array([f"p{n:08d}" for n in range(count)], dtype=object)
    fields = list(kinds)
    base_hash = content_hash(base, fields).to_numpy()

    changed = count // 100
    both = count // 1000
    order = rng.permutation(count)
    left_rows = order[:changed]
    right_rows = np.concatenate([order[:both], order[changed : 2 * changed - both]])

    sides: dict[str, Any] = {}
    stamp = pd.Timestamp("2026-03-01T00:00:00Z")
    for name, rows, prefix in (("left", left_rows, "c"), ("right", right_rows, "e")):
        frame = base.copy()
        title = frame["title"].astype(object).to_numpy()
        title[rows] = [f"{title[r]} ({name} edit)" for r in rows]
        frame["title"] = pd.array(title, dtype="string[pyarrow]")
        if name == "left":
            frame.loc[rows[both:], "labor_hours"] += 1.0
        modified = stamp + pd.to_timedelta(rng.integers(0, 86_400, count), unit="s")
        frame[MODIFIED] = pd.Series(modified, index=frame.index).astype("datetime64[ns, UTC]")
        tokens = np.array([f"{n}" for n in range(count)], dtype=object)
        if name == "left":
            tokens[rows] = [f"{n}.1" for n in rows]
        frame[VERSION] = pd.array(tokens if name == "left" else [None] * count, dtype="string")
        frame[HASH] = content_hash(frame, fields)
        frame.index = pd.Index([f"{prefix}{n}" for n in range(count)])
        sides[name] = SideRecords(name, frame, frame, pd.DataFrame(columns=["external_id"]))
    xrefs = pd.concat(
        [
            pd.DataFrame({"system": system, "external_id": sides[name].frame.index,
                          "platform_id": pids, "retired": False})
            for name, system in (("left", "cmms"), ("right", "erp"))
        ],
        ignore_index=True,
    )  # fmt: skip
    bases = {}
    for name in ("left", "right"):
        frame = base.copy()
        frame.index = pd.Index(pids, name="platform_id")
        frame["content_hash"] = base_hash
        frame["version_token"] = [f"{n}" for n in range(count)] if name == "left" else None
        bases[name] = frame
    return {"spec": spec, "kinds": kinds, "sides": sides, "xrefs": xrefs, "bases": bases,
            "expected_conflicts": both}  # fmt: skip


def run_detect(inputs: dict[str, Any]) -> Any:
    from integration_platform.sync.detect import detect

    counter = iter(range(10**9))
    return detect(
        inputs["spec"], inputs["sides"]["left"], inputs["sides"]["right"],
        xrefs=inputs["xrefs"], bases=inputs["bases"],
        queue=pd.DataFrame(columns=["id", "platform_id", "field", "status"]),
        kinds=inputs["kinds"], new_ids=lambda n: [f"new{next(counter)}" for _ in range(n)],
    )  # fmt: skip


def baseline(inputs: dict[str, Any]) -> tuple[int, int]:
    """The same 3-way detection row by row over dicts; returns (updates, conflicts)."""
    fields = list(FIELDS)
    sides = {n: inputs["sides"][n].frame for n in ("left", "right")}
    xrefs = inputs["xrefs"]
    started = time.perf_counter()
    rows = {n: sides[n].astype(object).where(sides[n].notna(), None).to_dict("index")
            for n in sides}  # fmt: skip
    bases = {n: inputs["bases"][n].astype(object).where(inputs["bases"][n].notna(), None)
             .to_dict("index") for n in sides}  # fmt: skip
    pid = {(s, e): p for s, e, p in zip(xrefs["system"], xrefs["external_id"],
                                          xrefs["platform_id"], strict=True)}  # fmt: skip
    by_pid: dict[str, dict[str, Any]] = {"left": {}, "right": {}}
    for name, system in (("left", "cmms"), ("right", "erp")):
        for external_id, record in rows[name].items():
            by_pid[name][pid[(system, external_id)]] = record
    updates = conflicts = 0
    for platform_id, left in by_pid["left"].items():
        right = by_pid["right"].get(platform_id)
        if right is None:
            continue
        base_l, base_r = bases["left"][platform_id], bases["right"][platform_id]
        left_changed = left["_version"] != base_l["version_token"]
        right_changed = any(right[f] != base_r[f] for f in fields)
        if not (left_changed or right_changed):
            continue
        for name in fields:
            dl = left_changed and left[name] != base_l[name]
            dr = right_changed and right[name] != base_r[name]
            if dl and dr and left[name] != right[name]:
                conflicts += 1
            elif dl != dr and left[name] != right[name]:
                updates += 1
    elapsed = time.perf_counter() - started
    return updates + conflicts, elapsed  # type: ignore[return-value]


def bench_detection(count: int) -> tuple[float, float]:
    inputs = detection_inputs(count)
    run_detect(inputs)  # warm-up: imports and first-touch allocations
    times, found = [], None
    for _ in range(3):
        started = time.perf_counter()
        found = run_detect(inputs)
        times.append(time.perf_counter() - started)
    assert found is not None
    elapsed = statistics.median(times)
    conflicts = found.conflicts
    assert len(conflicts) == inputs["expected_conflicts"], len(conflicts)
    auto = 100.0 * float(conflicts["resolved"].mean()) if len(conflicts) else 100.0
    rate = count / elapsed
    print(f"detect: {count:,} paired work orders per side, {found.changed['left']:,} changed "
          f"left, {found.changed['right']:,} changed right, {len(found.updates):,} field "
          f"updates, {len(conflicts):,} conflicts ({auto:.1f}% decided by policy)")  # fmt: skip
    print(f"detect (vectorized): {elapsed:.3f} s (median of "
          f"{', '.join(f'{t:.3f}' for t in times)}), {rate:,.0f} records/s")  # fmt: skip
    _, base_elapsed = baseline(inputs)
    print(f"baseline (row by row over dicts): {base_elapsed:.3f} s, "
          f"{count / base_elapsed:,.0f} records/s; vectorized / baseline: "
          f"{base_elapsed / elapsed:.1f}x")  # fmt: skip
    bench_mapping(inputs, count)
    return rate, auto


def bench_mapping(inputs: dict[str, Any], count: int) -> None:
    """Raw side records -> canonical values with validation (``read_side``), for context."""
    from integration_platform.sync.canonical import read_side

    spec, kinds = inputs["spec"], inputs["kinds"]
    raw = inputs["sides"]["left"].frame[list(kinds)].rename(columns={"external_id": "wonum"})
    raw = raw.assign(id=raw.index, rowstamp="1", changed="2026-03-01T08:00:00Z")
    raw = raw.reset_index(drop=True)
    started = time.perf_counter()
    read_side(raw, spec.left, spec, kinds, raw["id"], run_id="bench")
    elapsed = time.perf_counter() - started
    print(f"map + validate one side (read_side): {elapsed:.3f} s, {count / elapsed:,.0f} records/s")


# -- incremental reads ---------------------------------------------------------------------


def bench_incremental(count: int, state_dir: Path) -> None:
    """Detection cost of a whole run (read both sides, map, pair, detect, plan; a dry run, so
    nothing is written) reading in full next to one reading incrementally, after 1% of the
    records changed on each side (0.1% on both). In-memory systems, state in SQLite."""
    from dataclasses import replace

    from integration_platform.state import StateDatabase
    from integration_platform.sync import ReadPolicy, SyncEngine
    from integration_platform.sync.adapters.memory import MemoryAdapter

    rng = np.random.default_rng(17)
    values = canonical(count, rng)
    # Last changed over the year before the last run (2026-03-01 08:00), as in a real system.
    age = pd.to_timedelta(rng.integers(0, 365 * 86_400, count), unit="s")
    changed = (pd.Timestamp("2026-03-01T08:00:00Z") - age).strftime("%Y-%m-%dT%H:%M:%SZ")
    cmms = memory_cmms(count, values, list(changed))
    frame = values.rename(columns={"external_id": "wonum"}).astype(object)
    frame = frame.where(frame.notna(), None)
    frame["id"] = [f"e{n}" for n in range(count)]
    frame["changed"] = list(changed)
    erp = MemoryAdapter(frame)
    reads = ReadPolicy(incremental=True, full_every_runs=None, full_every_hours=None)
    state = StateDatabase(url=f"sqlite:///{state_dir / 'incremental_state.db'}")
    state.ensure_schema()
    sync = SyncEngine(replace(make_spec(), reads=reads), cmms, erp, state)
    started = time.perf_counter()
    assert sync.run().raise_for_status().counts["applied"] == 0  # pairs by number
    setup_s = time.perf_counter() - started
    order = rng.permutation(count)
    changed, both = count // 100, count // 1000
    for n in order[:changed]:
        cmms.edit(f"c{n}", title=f"Job {n}, revised", changed="2026-03-02T08:00:00Z")
    for n in [*order[:both], *order[changed : 2 * changed - both]]:
        erp.edit(f"e{n}", title=f"Job {n} (ERP)", changed="2026-03-02T09:00:00Z")
    timings = {}
    for mode, full in (("full", True), ("incremental", False)):
        times, report = [], None
        for _ in range(3):
            started = time.perf_counter()
            report = sync.run(dry_run=True, full=full)
            times.append(time.perf_counter() - started)
        assert report is not None and report.read_mode == mode, report
        assert len(report.conflicts) == both, len(report.conflicts)
        timings[mode] = (
            statistics.median(times),
            report.counts["records_read"],
            len(report.planned),
        )
    (full_s, full_read, planned), (inc_s, inc_read, inc_planned) = timings.values()
    assert planned == inc_planned, (planned, inc_planned)
    print(f"incremental: {count:,} paired work orders per side (first run, pairing and bases: "
          f"{setup_s:.1f} s), {changed:,} changed on each side, {both:,} on both")  # fmt: skip
    print(f"run detection, full read: {full_s:.3f} s, {full_read:,} records read, "
          f"{planned:,} planned writes")  # fmt: skip
    print(f"run detection, incremental read: {inc_s:.3f} s, {inc_read:,} records read, "
          f"{inc_planned:,} planned writes; {full_s / inc_s:.1f}x less time")  # fmt: skip


# -- apply ---------------------------------------------------------------------------------


def memory_cmms(count: int, values: pd.DataFrame, changed: Any = "2026-03-01T08:00:00Z") -> Any:
    from integration_platform.sync.adapters.memory import MemoryAdapter

    frame = values.rename(columns={"external_id": "wonum"}).astype(object)
    frame = frame.where(frame.notna(), None)
    frame["id"] = [f"c{n}" for n in range(count)]
    frame["rowstamp"] = "v0"
    frame["changed"] = changed
    return MemoryAdapter(frame)


def bench_sql(count: int, state_dir: Path) -> float:
    import sqlalchemy as sa

    from integration_platform.state import StateDatabase
    from integration_platform.sync import SyncEngine
    from integration_platform.sync.adapters.sql import SqlTableAdapter

    admin_url = os.environ.get(
        "BENCH_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
    )
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"bench_sync_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine = sa.create_engine(admin.url.set(database=name))
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(
                "CREATE TABLE work_orders (id serial PRIMARY KEY, wonum text UNIQUE, title text,"
                " status text, priority text, labor_hours double precision,"
                " cost_amount double precision, assigned_to text,"
                " changed timestamptz NOT NULL DEFAULT now())"
            ))  # fmt: skip
        state = StateDatabase(url=f"sqlite:///{state_dir / 'sql_state.db'}")
        state.ensure_schema()
        values = canonical(count, np.random.default_rng(11))
        cmms = memory_cmms(count, values)
        sync = SyncEngine(make_spec(), cmms, SqlTableAdapter(engine, "work_orders"), state)
        started = time.perf_counter()
        report = sync.run().raise_for_status()
        create_s = time.perf_counter() - started
        created = report.counts["applied"]
        for n in range(0, count, 2):
            cmms.edit(f"c{n}", title=f"Revised job {n}", changed="2026-03-02T08:00:00Z")
        started = time.perf_counter()
        report = sync.run().raise_for_status()
        update_s = time.perf_counter() - started
        updated = report.counts["applied"]
        assert updated == count // 2, updated
        assert sync.run().counts["applied"] == 0
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    print(f"apply, SQL target (PostgreSQL, one transaction): {created:,} creates in "
          f"{create_s:.2f} s = {created / create_s:,.0f} records/s; {updated:,} updates in "
          f"{update_s:.2f} s = {updated / update_s:,.0f} records/s (whole runs)")  # fmt: skip
    return updated / update_s


def bench_maximo(count: int, state_dir: Path) -> float:
    from integration_platform.connectors.cmms.maximo import MaximoConnector
    from integration_platform.state import StateDatabase
    from integration_platform.sync import FieldMap, SyncEngine
    from integration_platform.sync.adapters.maximo import MaximoWorkOrderAdapter
    from integration_platform_tests.contract_servers.maximo import MaximoContractServer

    values = canonical(count, np.random.default_rng(13))
    server = MaximoContractServer(state_dir / "maximo.db")
    status_code = {v: k for k, v in MAXIMO_STATUS.items()}
    priority_code = {v: k for k, v in MAXIMO_PRIORITY.items()}
    for row in values.to_dict("records"):
        server.put_work_order({
            "wonum": row["external_id"], "siteid": "BEDFORD", "description": row["title"],
            "status": status_code[row["status"]], "wopriority": priority_code[row["priority"]],
            "actlabhrs": row["labor_hours"], "acttotalcost": row["cost_amount"],
            "lead": row["assigned_to"], "changedate": "2026-03-01T03:00:00-05:00",
        })  # fmt: skip
    server.start()
    try:
        maximo_fields = {
            "external_id": "wonum", "title": "description",
            "status": FieldMap("status", values=MAXIMO_STATUS),
            "priority": FieldMap("wopriority", values=MAXIMO_PRIORITY),
            "labor_hours": "actlabhrs", "cost_amount": "acttotalcost", "assigned_to": "lead",
        }  # fmt: skip
        spec = make_spec(maximo_fields, right_version="wonum")
        spec = type(spec)(**{**spec.__dict__, "right": type(spec.right)(
            **{**spec.right.__dict__, "key_field": ("siteid", "wonum"),
               "modified_field": "changedate"})})  # fmt: skip
        connector = MaximoConnector(
            base_url=server.base_url, api_key=server.api_keys[0], conditional_updates=True,
            requests_per_second=0, page_size=1000,
        )  # fmt: skip
        state = StateDatabase(url=f"sqlite:///{state_dir / 'maximo_state.db'}")
        state.ensure_schema()
        cmms = memory_cmms(count, values)
        sync = SyncEngine(spec, cmms, MaximoWorkOrderAdapter(connector), state)
        assert sync.run().raise_for_status().counts["applied"] == 0  # paired by number
        for n in range(count):
            cmms.edit(f"c{n}", assigned_to="CONTRACTOR", changed="2026-03-02T08:00:00Z")
        started = time.perf_counter()
        report = sync.run().raise_for_status()
        elapsed = time.perf_counter() - started
        assert report.counts["applied"] == count, report.counts
    finally:
        server.stop()
    rate = count / elapsed
    print(f"apply, Maximo contract server (one request per record, journaled): {count:,} "
          f"updates in {elapsed:.2f} s = {rate:,.0f} records/s (whole run)")  # fmt: skip
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 records, smaller applies")
    args = parser.parse_args()
    logging.getLogger("integration_platform").setLevel(logging.ERROR)
    count = 20_000 if args.quick else 100_000
    detect_rate, auto = bench_detection(count)
    with tempfile.TemporaryDirectory() as folder:
        bench_incremental(count, Path(folder))
        sql_rate = bench_sql(2_000 if args.quick else 10_000, Path(folder))
        bench_maximo(100 if args.quick else 300, Path(folder))
    print(
        f"detect_records_per_s={detect_rate:.0f} apply_records_per_s={sql_rate:.0f} "
        f"auto_resolved_pct={auto:.1f}"
    )


if __name__ == "__main__":
    main()
