"""Mapping benchmark: bronze work orders -> canonical WorkOrder, engine vs. row-by-row Python.

The engine path is the one production runs: ``compile_mapping(spec).apply(frame)``, i.e. the
mapping *and* the pandera validation against the canonical model. Beside it runs a plain
Python implementation of the same mapping and the same rules, one dict per row, so the figure
shows what the columnar engine buys over the obvious code.

The input is built columnar (numpy + pyarrow) as ``string[pyarrow]`` columns, the way bronze
CSV extracts arrive, and about 0.1% of the rows are dirty so the reject path runs. Each side
runs in a fresh ``spawn`` subprocess, so its peak RSS is its own.

Usage: ``python benchmarks/mapping.py [--quick] [--records N] [--profile]``. The last line
of output is ``mapping_records_per_s=<N> baseline_records_per_s=<M> peak_rss_mb=<R>``.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import multiprocessing
import pstats
import re
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SYSTEM = "bench_cmms"
SEED = 20261101
DIRTY_SHARE = 0.001
SAMPLE_ROWS = 500

WORK_TYPES = {
    "PM": "preventive",
    "CM": "corrective",
    "EM": "emergency",
    "PDM": "predictive",
    "INSP": "inspection",
    "CAL": "calibration",
    "CLN": "cleaning",
    "LUB": "lubrication",
}
PRIORITIES = {"1": "critical", "2": "high", "3": "medium", "4": "low"}
STATUSES = {
    "WAPPR": "scheduled",
    "APPR": "scheduled",
    "WSCH": "scheduled",
    "INPRG": "in_progress",
    "WMATL": "on_hold",
    "COMP": "completed",
    "CLOSE": "completed",
    "CAN": "cancelled",
}
SITE_PATTERN = r"[A-Z]{2}[0-9]{2}"

# Ten target fields: a formula, a regex-checked code, three code tables, three date-times
# (one optional) and two copies; source_system is added by the engine.
SPEC: dict[str, Any] = {
    "source": f"bronze/{SYSTEM}/work_orders",
    "entity": "work_orders",
    "source_system": SYSTEM,
    "fields": {
        "work_order_id": {"formula": "concat(mapping.source_system, ':', siteid, ':', wonum)"},
        "external_id": "wonum",
        "site_id": {
            "source": "siteid",
            "transforms": [{"regex_extract": {"pattern": f"^({SITE_PATTERN})$"}}],
        },
        "title": "description",
        "work_type": {"source": "worktype", "map": WORK_TYPES},
        "priority": {"source": "wopriority", "map": PRIORITIES},
        "status": {"source": "status", "map": STATUSES},
        "created_at": {"source": "reportdate", "datetime": {"format": "iso8601"}},
        "completed_at": {"source": "actfinish", "datetime": {"format": "iso8601"}},
        "updated_at": {"source": "changedate", "datetime": {"format": "iso8601"}},
    },
}
OUTPUT_FIELDS = ["source_system", *SPEC["fields"]]
TIME_FIELDS = ("created_at", "completed_at", "updated_at")

SITES = ["DE01", "DE02", "DE07", "US01", "US03", "FR02", "GB01", "PL04", "CN01", "BR02"]
OFFSETS = ["Z", "+01:00", "+02:00", "-05:00", "+05:30", "+08:00", "-03:00"]
DESCRIPTIONS = [
    f"{verb} {thing}"
    for verb in ("Inspect", "Replace", "Lubricate", "Calibrate", "Repair", "Clean")
    for thing in (
        "pump P-101 mechanical seal",
        "conveyor belt drive",
        "cooling tower fan bearing",
        "compressor C-3 inlet valve",
        "boiler feedwater level sensor",
        "HVAC filter bank, building 4",
        "forklift hydraulic hose",
    )
]
# Dirty rows, one kind after another: what is wrong and which rule catches it.
DIRTY_KINDS = (
    "status code not in the code table",  # value map
    "impossible date (February 30)",  # date-time parsing
    "site code fails the pattern",  # regex check
    "blank description",  # model check: title not blank
    "date-time without an offset",  # date-time parsing: no zone known
    "completed without a finish date",  # model row check
    "missing work type",  # required field
)


# ---- input ---------------------------------------------------------------------------------


def _text(array: pa.Array) -> pd.Series:
    return pd.Series(pd.arrays.ArrowStringArray(array.cast(pa.large_string())))


def _iso(seconds: np.ndarray, offsets: pa.Array) -> pa.Array:
    wall = pc.strftime(pa.array(seconds, type=pa.timestamp("s")), format="%Y-%m-%dT%H:%M:%S")
    return pc.binary_join_element_wise(wall, offsets, "")


def _with(array: pa.Array, positions: np.ndarray, value: str | None) -> pa.Array:
    """``value`` at ``positions``; ``{k}`` (a per-row number), ``{m}`` and ``{s}`` (minutes and
    seconds derived from it) make each dirty value different, as real ones are."""
    mask = np.zeros(len(array), dtype=bool)
    mask[positions] = True
    texts = [
        None if value is None else value.format(k=k, m=k // 60 % 60, s=k % 60)
        for k in range(len(positions))
    ]
    replacement = pa.array(texts, type=array.type)
    return pc.replace_with_mask(array, pa.array(mask), replacement)


def build_input(records: int, seed: int = SEED) -> tuple[pd.DataFrame, dict[str, int]]:
    """A bronze work-order extract as ``string[pyarrow]`` columns, built without Python rows.

    Returns the frame and the number of dirty rows of each kind.
    """
    rng = np.random.default_rng(seed)
    numbers = pc.cast(pa.array(np.arange(1, records + 1) * 7 + 100_000), pa.string())
    wonum = pc.binary_join_element_wise("WO", pc.utf8_lpad(numbers, 9, "0"), "")

    def pick(pool: list[str], weights: list[float] | None = None) -> pa.Array:
        chosen = rng.choice(len(pool), size=records, p=weights)
        return pc.take(pa.array(pool), pa.array(chosen))

    status_codes = list(STATUSES)
    status = pick(status_codes, [0.08, 0.1, 0.12, 0.15, 0.05, 0.25, 0.2, 0.05])
    start = int(dt.datetime(2021, 1, 1, tzinfo=dt.UTC).timestamp())
    reported = start + rng.integers(0, 4 * 365 * 86400, size=records)
    changed = reported + rng.integers(3600, 90 * 86400, size=records)
    finished = reported + rng.integers(600, 30 * 86400, size=records)
    done = pc.is_in(status, pa.array(["COMP", "CLOSE"])).to_numpy(zero_copy_only=False)
    actfinish = pc.if_else(
        pa.array(done), _iso(finished, pick(OFFSETS)), pa.scalar(None, pa.string())
    )
    columns: dict[str, pa.Array] = {
        "wonum": wonum,
        "siteid": pick(SITES),
        "description": pick(DESCRIPTIONS),
        "worktype": pick(list(WORK_TYPES)),
        "wopriority": pick(list(PRIORITIES)),
        "status": status,
        "reportdate": _iso(reported, pick(OFFSETS)),
        "actfinish": actfinish,
        "changedate": _iso(changed, pick(OFFSETS)),
    }

    dirty = rng.choice(records, size=max(len(DIRTY_KINDS), round(records * DIRTY_SHARE)))
    dirty = np.unique(dirty)
    kinds = {kind: dirty[i :: len(DIRTY_KINDS)] for i, kind in enumerate(DIRTY_KINDS)}
    edits = {
        "status code not in the code table": [("status", "ZZZ")],
        "impossible date (February 30)": [("reportdate", "2024-02-30T10:{m:02d}:{s:02d}Z")],
        "site code fails the pattern": [("siteid", "de-{k}")],
        "blank description": [("description", "   ")],
        "date-time without an offset": [("changedate", "2024-03-01T10:{m:02d}:{s:02d}")],
        "completed without a finish date": [("status", "COMP"), ("actfinish", None)],
        "missing work type": [("worktype", None)],
    }
    for kind, positions in kinds.items():
        for column, value in edits[kind]:
            columns[column] = _with(columns[column], positions, value)
    frame = pd.DataFrame({name: _text(array) for name, array in columns.items()})
    return frame, {kind: len(positions) for kind, positions in kinds.items()}


def input_megabytes(frame: pd.DataFrame) -> float:
    return float(frame.memory_usage(deep=True, index=True).sum()) / 1e6


# ---- the engine ----------------------------------------------------------------------------


def compiled_mapping() -> Any:
    from integration_platform.mapping.compiler import compile_mapping
    from integration_platform.mapping.spec import MappingSpec

    return compile_mapping(MappingSpec.model_validate(SPEC))


def run_engine(frame: pd.DataFrame, repeat: int = 1, profile: bool = False) -> dict[str, Any]:
    mapping = compiled_mapping()
    mapping.apply(frame.head(2000))  # warm-up: imports, schema and regex caches
    profiler = cProfile.Profile() if profile else None
    runs: list[float] = []
    peaks: list[float] = []
    for _ in range(repeat):
        outcome = None  # the previous outcome is freed before the next run
        started = time.perf_counter()
        if profiler is not None:
            outcome = profiler.runcall(mapping.apply, frame)
        else:
            outcome = mapping.apply(frame)
        runs.append(time.perf_counter() - started)
        peaks.append(_peak_rss_mb())
    if profiler is not None:
        stats = pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative")
        stats.print_stats(60)
    valid = outcome.valid
    rejected = np.sort(outcome.rejected.index.to_numpy(dtype=np.int64))
    kept = np.setdiff1d(np.arange(len(frame)), rejected)
    picks = _sample_positions(len(kept))
    sample = {}
    for row in picks:
        values = []
        for name in OUTPUT_FIELDS:
            value = valid[name].iloc[row]
            values.append(None if pd.isna(value) else value)
        sample[int(kept[row])] = tuple(values)
    return {
        "runs": runs,
        "peak_rss_mb": peaks[0],
        "valid": len(valid),
        "rejected": rejected.tolist(),
        "sample": sample,
        "reasons": outcome.rejected["reject_reason"].head(3).tolist(),
    }


# ---- the row-by-row baseline ---------------------------------------------------------------

NON_BLANK = re.compile(r"\s*\S")
SITE_RE = re.compile(SITE_PATTERN)
WORK_TYPE_VALUES = frozenset(WORK_TYPES.values())
PRIORITY_VALUES = frozenset(PRIORITIES.values())
STATUS_VALUES = frozenset(STATUSES.values())


def _lookup(table: dict[str, str], code: str | None) -> tuple[str | None, str | None]:
    """Code -> value, as the engine compares codes: trimmed and case-folded."""
    if code is None or not code.strip():
        return None, None
    value = table.get(code.strip().casefold())
    return value, None if value is not None else f"{code!r} not in the code table"


def _timestamp(text: str | None) -> tuple[dt.datetime | None, str | None]:
    if text is None or not text.strip():
        return None, None
    try:
        parsed = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None, f"{text!r} is not an ISO-8601 date-time"
    if parsed.tzinfo is None:
        return None, f"{text!r} has no UTC offset"
    return parsed.astimezone(dt.UTC), None


def baseline(frame: pd.DataFrame) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """The same mapping and model rules, one Python dict per row.

    Returns the valid rows (dicts in input order, each with its input position under ``_row``)
    and the rejected rows as ``(position, reasons)``.
    """
    work_types = {key.casefold(): value for key, value in WORK_TYPES.items()}
    priorities = {key.casefold(): value for key, value in PRIORITIES.items()}
    statuses = {key.casefold(): value for key, value in STATUSES.items()}
    names = list(frame.columns)
    lists = [frame[name].array._pa_array.to_pylist() for name in names]
    candidates: list[dict[str, Any]] = []
    rejected: list[tuple[int, str]] = []
    for position, values in enumerate(zip(*lists, strict=True)):
        row = dict(zip(names, values, strict=True))
        problems: list[str] = []
        site = row["siteid"]
        wonum = row["wonum"]
        out: dict[str, Any] = {"_row": position, "source_system": SYSTEM}
        out["work_order_id"] = f"{SYSTEM}:{site or ''}:{wonum or ''}"
        out["external_id"] = wonum
        out["site_id"] = site if site is not None and SITE_RE.fullmatch(site) else None
        out["title"] = row["description"]
        for name, table, source in (
            ("work_type", work_types, "worktype"),
            ("priority", priorities, "wopriority"),
            ("status", statuses, "status"),
        ):
            out[name], problem = _lookup(table, row[source])
            if problem:
                problems.append(f"{name}: {problem}")
        for name, source in (
            ("created_at", "reportdate"),
            ("completed_at", "actfinish"),
            ("updated_at", "changedate"),
        ):
            out[name], problem = _timestamp(row[source])
            if problem:
                problems.append(f"{name}: {problem}")
        for name in ("work_order_id", "external_id", "site_id", "title", "work_type"):
            if out[name] is None and not any(p.startswith(name) for p in problems):
                problems.append(f"{name}: required, but empty")
        for name in ("priority", "status", "created_at", "updated_at"):
            if out[name] is None and not any(p.startswith(name) for p in problems):
                problems.append(f"{name}: required, but empty")
        if problems:
            rejected.append((position, "; ".join(problems)))
            continue
        # The model's rules, as validate_rows applies them.
        for name in ("source_system", "external_id", "work_order_id", "site_id", "title"):
            if not NON_BLANK.match(out[name]):
                problems.append(f"{name}: blank")
        if out["work_type"] not in WORK_TYPE_VALUES:
            problems.append("work_type: not an allowed value")
        if out["priority"] not in PRIORITY_VALUES:
            problems.append("priority: not an allowed value")
        if out["status"] not in STATUS_VALUES:
            problems.append("status: not an allowed value")
        if out["status"] == "completed" and out["completed_at"] is None:
            problems.append("completed_at: missing for a completed work order")
        if problems:
            rejected.append((position, "; ".join(problems)))
            continue
        candidates.append(out)
    seen: dict[str, int] = {}
    for out in candidates:
        seen[out["work_order_id"]] = seen.get(out["work_order_id"], 0) + 1
    valid = []
    for out in candidates:
        if seen[out["work_order_id"]] > 1:
            rejected.append((out["_row"], "work_order_id: appears more than once"))
        else:
            valid.append(out)
    rejected.sort()
    return valid, rejected


def run_baseline(frame: pd.DataFrame, repeat: int = 1) -> dict[str, Any]:
    baseline(frame.head(2000))
    runs: list[float] = []
    peaks: list[float] = []
    for _ in range(repeat):
        valid, rejected = [], []  # the previous result is freed before the next run
        started = time.perf_counter()
        valid, rejected = baseline(frame)
        runs.append(time.perf_counter() - started)
        peaks.append(_peak_rss_mb())
    picks = _sample_positions(len(valid))
    sample = {
        valid[row]["_row"]: tuple(valid[row][name] for name in OUTPUT_FIELDS) for row in picks
    }
    return {
        "runs": runs,
        "peak_rss_mb": peaks[0],
        "valid": len(valid),
        "rejected": [position for position, _ in rejected],
        "sample": sample,
        "reasons": [reason for _, reason in rejected[:3]],
    }


# ---- running both --------------------------------------------------------------------------


def _sample_positions(count: int) -> np.ndarray:
    if not count:
        return np.array([], dtype=np.int64)
    return np.unique(np.random.default_rng(1).integers(0, count, size=SAMPLE_ROWS))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(side: str, records: int, repeat: int, profile: bool = False) -> dict[str, Any]:
    """Build the input, then run one side ``repeat`` times; meant to run in a process of its
    own, so that the peak RSS is this side's."""
    frame, dirty = build_input(records)
    result: dict[str, Any] = {
        "input_mb": input_megabytes(frame),
        "dirty": dirty,
        "rss_before_mb": _peak_rss_mb(),
    }
    if side == "engine":
        result |= run_engine(frame, repeat, profile)
    else:
        result |= run_baseline(frame, repeat)
    # The peak after the first run is one run's; later runs add only allocator slack.
    result["seconds"] = statistics.median(result["runs"])
    return result


def _same(engine_value: Any, baseline_value: Any) -> bool:
    if engine_value is None or baseline_value is None:
        return engine_value is None and baseline_value is None
    if isinstance(baseline_value, dt.datetime):
        return pd.Timestamp(engine_value) == pd.Timestamp(baseline_value)
    return str(engine_value) == str(baseline_value)


def check_agreement(records: int, engine: dict[str, Any], base: dict[str, Any]) -> int:
    """Both sides account for every row, reject the same rows and agree on sampled values."""
    rejected = len(engine["rejected"])
    assert engine["valid"] + rejected == records, (engine["valid"], rejected, records)
    assert base["valid"] + len(base["rejected"]) == records
    assert engine["valid"] == base["valid"], (engine["valid"], base["valid"])
    assert engine["rejected"] == base["rejected"], "engine and baseline reject different rows"
    expected_dirty = sum(engine["dirty"].values())
    assert rejected == expected_dirty, (rejected, expected_dirty)
    compared = 0
    for position, values in engine["sample"].items():
        if position not in base["sample"]:
            continue
        for name, mine, theirs in zip(OUTPUT_FIELDS, values, base["sample"][position], strict=True):
            assert _same(mine, theirs), (position, name, mine, theirs)
        compared += 1
    other = set(base["sample"]) - set(engine["sample"])
    for position in other:
        assert position not in engine["rejected"]
    assert compared > 0, "no sampled row in common"
    return compared


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 records")
    parser.add_argument("--records", type=int, help="number of records (default 1,000,000)")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the engine run (stats on stderr)"
    )
    parser.add_argument("--engine-only", action="store_true", help="skip the baseline")
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed runs per side; the median counts"
    )
    args = parser.parse_args(argv)
    records = args.records or (100_000 if args.quick else 1_000_000)

    context = multiprocessing.get_context("spawn")
    with context.Pool(1, maxtasksperchild=1) as pool:
        engine = pool.apply(measure, ("engine", records, args.repeat, args.profile))
    if args.engine_only:
        base = {"seconds": float("nan"), "peak_rss_mb": float("nan"), "valid": 0, "runs": []}
    else:
        with context.Pool(1, maxtasksperchild=1) as pool:
            base = pool.apply(measure, ("baseline", records, args.repeat))
        compared = check_agreement(records, engine, base)

    engine_rate = records / engine["seconds"]
    base_rate = records / base["seconds"]
    rejected = len(engine["rejected"])
    print(f"records: {records:,} ({rejected:,} dirty, {engine['valid']:,} valid)")
    for kind, count in engine["dirty"].items():
        print(f"  dirty: {count:>5,}  {kind}")
    print(f"reject reason (first): {engine['reasons'][0] if engine['reasons'] else '-'}")
    if not args.engine_only:
        print(f"agreement: same valid count and rejected rows; {compared} sampled rows equal")
    print(f"input in memory: {engine['input_mb']:.1f} MB")
    for name, side in (("engine   (map + validate)", engine), ("baseline (row by row)   ", base)):
        runs = ", ".join(f"{run:.3f}" for run in side["runs"])
        print(
            f"{name}: {side['seconds']:.3f} s (median of: {runs}), "
            f"{records / side['seconds']:,.0f} records/s, peak RSS {side['peak_rss_mb']:.0f} MB"
        )
    working = engine["peak_rss_mb"] - engine["rss_before_mb"]
    print(
        f"engine / baseline: {engine_rate / base_rate:.1f}x; engine peak RSS "
        f"{engine['peak_rss_mb']:.0f} MB = {engine['rss_before_mb']:.0f} MB with the input built "
        f"+ {working:.0f} MB mapping ({working / engine['input_mb']:.2f}x the input); "
        f"peak RSS / input: {engine['peak_rss_mb'] / engine['input_mb']:.2f}x"
    )
    print(
        f"mapping_records_per_s={engine_rate:.0f} baseline_records_per_s={base_rate:.0f} "
        f"peak_rss_mb={engine['peak_rss_mb']:.0f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
