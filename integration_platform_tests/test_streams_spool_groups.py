"""Spool format 2: groups of readings as columns, in-memory keys, migration from format 1."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from integration_platform.streams.devices import parse_registry
from integration_platform.streams.mqtt import parse_message, parse_message_columns
from integration_platform.streams.readings import Reading, ReadingColumns, to_us
from integration_platform.streams.spool import Spool, spool_path
from integration_platform.streams.writer import DeltaWriter, split_columns
from integration_platform_tests.streams_helpers import (
    numbered_reading,
    read_delta_independently,
    row_keys,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RECEIVED = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)

REGISTRY = """
version: 1
site: s1
devices:
  - device_id: pump-1
    protocol: mqtt
    endpoint: mqtt://127.0.0.1:1883
    sensors:
      - {sensor_id: vib, type: vibration, unit: mm/s, valid_range: [0, 50]}
"""


# Reading i of sensor s1 on dev-1: i seconds after T0, received at RECEIVED.
reading = partial(numbered_reading, start=T0, ingested_at=RECEIVED)


def lake_rows(lake: Path) -> list[tuple]:
    return row_keys(read_delta_independently(lake / "telemetry" / "sensor_readings"))


def expected(readings: list[Reading]) -> list[tuple]:
    return sorted((r.device_id, r.sensor_id, r.ts.isoformat(), r.value) for r in readings)


def test_columns_round_trip_exactly() -> None:
    readings = [reading(i) for i in range(3)] + [reading(3, value=float("inf"))]
    columns = ReadingColumns.from_readings(readings)
    assert ReadingColumns.decode(columns.encode()).readings() == readings
    assert columns.keys()[0] == ("dev-1", "s1", to_us(T0))


def test_one_spool_row_per_append(tmp_path: Path) -> None:
    path = spool_path(tmp_path, "w")
    with Spool(path, "w") as spool:
        spool.append([reading(i) for i in range(100)])
        spool.append([reading(i) for i in range(100, 150)])
        assert spool.pending == 150
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM groups").fetchone()[0] == 2
        assert db.execute("SELECT COUNT(*) FROM recent_keys").fetchone()[0] == 2


def test_group_keys_survive_a_restart_and_a_commit(tmp_path: Path) -> None:
    path, lake = spool_path(tmp_path, "w"), tmp_path / "lake"
    first = [reading(i) for i in range(50)]
    with Spool(path, "w") as spool:
        assert spool.append(first).accepted == 50
        assert DeltaWriter(spool, str(lake)).flush_once() is not None
    with Spool(path, "w") as spool:  # a restart: the keys come back from the spool file
        result = spool.append([reading(i) for i in range(40, 60)])  # 10 redelivered
        assert (result.accepted, result.duplicates) == (10, 10)
        DeltaWriter(spool, str(lake)).drain()
    assert lake_rows(lake) == expected([reading(i) for i in range(60)])


def test_keys_expire_by_count_and_stay_bounded(tmp_path: Path) -> None:
    path = spool_path(tmp_path, "w")
    with Spool(path, "w", dedup_max_keys=100) as spool:
        for start in range(0, 300, 50):
            spool.append([reading(i) for i in range(start, start + 50)])
        assert spool.append([reading(299)]).duplicates == 1  # recent: still known
        assert spool.append([reading(0)]).accepted == 1  # forgotten beyond the bound
    with sqlite3.connect(path) as db:
        kept = db.execute("SELECT SUM(key_count) FROM recent_keys").fetchone()[0]
    assert kept <= 150


def test_duplicates_and_malformed_inside_one_message(tmp_path: Path) -> None:
    device = parse_registry(REGISTRY).devices[0]
    values = {"site": "s1", "device_id": "pump-1", "sensor_id": "vib"}
    base = int(T0.timestamp() * 1000)
    items = [
        {"ts": base, "value": 1.5},
        {"ts": base + 1, "value": 2.5},
        {"ts": base, "value": 9.0},  # the same key again in the same message
        {"ts": base + 2, "value": "high"},  # malformed
        {"ts": "2026-03-01T12:00:00.003Z", "value": 80},  # slow path, out of range
        {"value": 3.0},  # no timestamp
        {"ts": base + 4, "value": None, "quality": "bad"},  # a gap
    ]
    payload = json.dumps(items).encode()
    columns = ReadingColumns()
    problems = parse_message_columns(
        device, "plant/s1/pump-1/vib", values, payload, to_us(RECEIVED), columns
    )
    assert len(problems) == 2 and "not a number" in problems[0] and "timestamp" in problems[1]
    assert len({len(column) for column in columns.lists()}) == 1  # columns stay aligned
    readings, same_problems = parse_message(
        device, "plant/s1/pump-1/vib", values, payload, RECEIVED
    )
    assert same_problems == problems and readings == columns.readings()
    assert [(r.value, r.quality) for r in readings] == [
        (1.5, "good"),
        (2.5, "good"),
        (9.0, "good"),
        (80.0, "bad"),
        (None, "bad"),
    ]
    assert {r.origin for r in readings} == {"plant/s1/pump-1/vib"}
    assert {r.ingested_at for r in readings} == {RECEIVED}
    with Spool(spool_path(tmp_path, "w"), "w") as spool:
        result = spool.append_columns(columns)
        assert (result.accepted, result.duplicates) == (4, 1)  # first arrival wins
        batch = spool.claim(100)
        assert batch is not None
        assert [r.value for r in batch.readings] == [1.5, 2.5, 80.0, None]
    split = split_columns(columns)  # the writer de-duplicates a batch on its own too
    assert split.duplicates == 1 and split.table is not None
    assert split.table.column("value").to_pylist() == [1.5, 2.5, 80.0, None]


def _format_1_spool(path: Path, app_id: str) -> list[Reading]:
    """A spool as the previous version wrote it: an open batch, pending rows, keys."""
    readings = [reading(i) for i in range(7)]
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE readings (id INTEGER PRIMARY KEY AUTOINCREMENT, batch_id INTEGER,
                               body TEXT NOT NULL);
        CREATE TABLE batches (batch_id INTEGER PRIMARY KEY AUTOINCREMENT,
                              seq INTEGER NOT NULL UNIQUE, created_at REAL NOT NULL,
                              row_count INTEGER NOT NULL);
        CREATE TABLE recent (key TEXT PRIMARY KEY, seen_at REAL NOT NULL) WITHOUT ROWID;
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """
    )
    db.execute("INSERT INTO meta VALUES ('app_id', ?)", (app_id,))
    db.execute("INSERT INTO meta VALUES ('last_seq', '3')")
    db.execute("INSERT INTO batches VALUES (5, 3, 1000.0, 3)")
    for i, r in enumerate(readings):
        db.execute(
            "INSERT INTO readings (batch_id, body) VALUES (?, ?)",
            (5 if i < 3 else None, r.to_json()),
        )
        db.execute("INSERT INTO recent VALUES (?, ?)", (r.key(), 1000.0 + i))
    db.commit()
    db.close()
    return readings


def test_format_1_spool_is_migrated_on_open(tmp_path: Path) -> None:
    path, lake = spool_path(tmp_path, "w"), tmp_path / "lake"
    readings = _format_1_spool(path, "w")
    with Spool(path, "w") as spool:
        assert spool.pending == 7
        open_batch = spool.claim(100)  # the open batch comes back with its number and rows
        assert open_batch is not None
        assert (open_batch.batch_id, open_batch.seq) == (5, 3)
        assert open_batch.readings == readings[:3]
        assert spool.pending_readings() == readings
        assert spool.append([readings[4], reading(7)]).duplicates == 1  # keys migrated
        writer = DeltaWriter(spool, str(lake))
        assert writer.drain()
        assert writer.stats.batches_written == 2
    with sqlite3.connect(path) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        assert "readings" not in tables and "recent" not in tables
        assert db.execute("SELECT value FROM meta WHERE key='format'").fetchone()[0] == "3"
    assert lake_rows(lake) == expected([*readings, reading(7)])
