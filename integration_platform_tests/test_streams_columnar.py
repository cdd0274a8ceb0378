"""The columnar ingest path: Arrow parsing of message groups, spool format 3, burst flushes.

The columnar parser must read every message exactly as the reference parser
(``parse_message_columns``) does, or hand it to that parser; these tests compare the two on
the same messages, including malformed and hostile ones.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from integration_platform.streams import mqtt
from integration_platform.streams.devices import parse_registry
from integration_platform.streams.mqtt import MalformedPayload, Router, parse_group
from integration_platform.streams.readings import Reading, ReadingColumns, to_us
from integration_platform.streams.spool import Spool, spool_path
from integration_platform.streams.writer import DeltaWriter
from integration_platform_tests.streams_helpers import (
    numbered_reading,
    read_delta_independently,
    row_keys,
    wait_for,
)

T0 = datetime(2026, 6, 1, 6, 0, tzinfo=UTC)
BASE_MS = int(T0.timestamp() * 1000)
RECEIVED_US = to_us(T0) + 5_000_000

REGISTRY = """
version: 1
site: s1
devices:
  - device_id: pump-1
    protocol: mqtt
    endpoint: mqtt://127.0.0.1:1883
    sensors:
      - {sensor_id: vib, type: vibration, unit: mm/s, valid_range: [0, 50]}
      - {sensor_id: temp, type: temperature, unit: degC}
  - device_id: fan-2
    protocol: mqtt
    endpoint: mqtt://127.0.0.1:1883
    mqtt:
      topic: site/{site}/{device_id}/{sensor_id}
      payload: {ts: t, value: v, ts_unit: s}
    sensors:
      - {sensor_id: rpm, type: speed, unit: rpm, valid_range: [0, 3000]}
  - device_id: ahu-1
    protocol: mqtt
    endpoint: mqtt://127.0.0.1:1883
    mqtt:
      topic: plant/{site}/{device_id}/batch
      payload: {readings: data.items, sensor_id: id, ts: t, value: v, quality: q}
    sensors:
      - {sensor_id: rh, type: humidity, unit: "%RH"}
"""


@dataclass
class Message:
    topic: str
    payload: bytes
    received_us: int = RECEIVED_US


def new_router() -> Router:
    """A fresh router each time: it remembers topics Arrow could not read."""
    registry = parse_registry(REGISTRY)
    return Router(registry, registry.devices)


def reference(router: Router, messages: list[Message]) -> tuple[list[tuple], list[str]]:
    """What the reference parser makes of the messages, one by one."""
    columns, problems = ReadingColumns(), []
    for message in messages:
        found = router.route(message.topic)
        if found is None:
            problems.append(f"{message.topic}: no device declared for this topic")
            continue
        device, values = found
        try:
            reasons = mqtt.parse_message_columns(
                device, message.topic, values, message.payload, message.received_us, columns
            )
        except MalformedPayload as exc:
            reasons = [str(exc)]
        problems += [f"{message.topic} ({device.device_id}): {reason}" for reason in reasons]
    return comparable(columns), problems


def comparable(columns: ReadingColumns) -> list[tuple]:
    """Rows with NaN spelled out (NaN != NaN would fail any comparison)."""
    return [
        tuple("NaN" if isinstance(v, float) and math.isnan(v) else v for v in row)
        for row in zip(*columns.lists(), strict=True)
    ]


def series(start: int, count: int, value: float = 1.5) -> list[dict]:
    return [{"ts": BASE_MS + start + k, "value": value + k * 0.01} for k in range(count)]


def body(items: object) -> bytes:
    return json.dumps(items).encode()


def padding(count: int) -> list[Message]:
    """Ordinary 100-reading messages, enough to take the columnar path."""
    return [
        Message("plant/s1/pump-1/temp", body(series(10_000 + 100 * i, 100))) for i in range(count)
    ]


def test_a_group_reads_as_the_reference_parser_reads_it() -> None:
    router = new_router()
    vib, temp = "plant/s1/pump-1/vib", "plant/s1/pump-1/temp"
    messages = [
        *padding(6),
        Message(vib, body({"ts": BASE_MS, "value": 2})),  # one object, an integer value
        Message(vib, body([*series(1, 3, value=49.99), {"ts": BASE_MS + 9, "value": 80.0}])),
        Message(temp, body([{"ts": BASE_MS + 20, "value": None, "quality": "bad"}])),  # a gap
        Message(temp, body([{"ts": BASE_MS + 21}])),  # no value
        Message(temp, body([{"ts": BASE_MS + 22, "value": 1.0, "quality": None}])),
        Message(temp, body([{"ts": BASE_MS + 23, "value": 1.0, "quality": "uncertain"}])),
        Message(temp, b'[{"ts":%d,"value":NaN},{"ts":%d,"value":-Infinity}]' % (BASE_MS, 1)),
        Message(temp, body([{"ts": -5, "value": 1.0}])),  # before 1970
        Message(temp, body([{"ts": 10**16, "value": 1.0}])),  # after 2261
        Message(temp, b"[]"),
        Message(temp, b"  [{}]"),  # leading white space: the reference parser's
        Message(temp, b"[5, null]"),
        Message(temp, b"not json"),
        Message("plant/s1/pump-1/unknown", body(series(30, 2))),  # sensor not declared
        Message("plant/elsewhere/pump-1/vib", body(series(31, 2))),  # no device
        Message("site/s1/fan-2/rpm", body([{"t": 1_780_000_000, "v": 1200}, {"t": 1, "v": 9e9}])),
        Message(
            "plant/s1/ahu-1/batch",
            body({"t": T0.isoformat(), "data": {"items": [{"id": "rh", "v": 41.5}]}}),
        ),
        # A message trying to add a line of its own, with readings for another topic.
        Message(temp, b'[{"ts":1,"value":1}]}\n{"i":19,"r":[{"ts":2,"value":666}]'),
        Message(temp, body([{"ts": BASE_MS + 40, "value": 3.25, "extra": {"a": [1]}}])),
    ]
    parsed = parse_group(router, messages)
    rows, problems = reference(router, messages)
    assert comparable(parsed.columns) == rows
    assert parsed.problems == problems
    assert parsed.malformed == len(problems) - parsed.unknown_topics
    assert parsed.columnar_messages >= 10  # the padding and the plain messages went to Arrow
    assert parsed.columns.is_arrow
    assert not [row for row in rows if row[4] == 666.0]
    assert router.plan(temp) is None  # odd messages came on it: the reference parser's now
    assert router.plan(vib) is not None


def test_messages_arrow_cannot_read_are_found_and_the_rest_stays_columnar() -> None:
    router = new_router()
    iso = [{"ts": T0.isoformat(), "value": 1.0}]  # text where Arrow expects an integer
    messages = [*padding(6), Message("plant/s1/pump-1/vib", body(iso)), *padding(2)]
    parsed = parse_group(router, messages)
    assert parsed.columnar_messages == 8
    assert comparable(parsed.columns) == reference(router, messages)[0]
    assert router.plan("plant/s1/pump-1/vib") is None
    again = parse_group(router, [*padding(6), Message("plant/s1/pump-1/vib", body(iso))])
    assert again.columnar_messages == 6  # no second search for the odd topic


def test_small_groups_take_the_reference_parser() -> None:
    router = new_router()
    messages = [Message("plant/s1/pump-1/vib", body(series(0, 2)))]
    parsed = parse_group(router, messages)
    assert parsed.columnar_messages == 0 and not parsed.columns.is_arrow
    assert comparable(parsed.columns) == reference(router, messages)[0]


FIELD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.sampled_from(["good", "bad", "uncertain", "2026-06-01T06:00:00Z", "1.5"]),
    st.lists(st.integers(), max_size=2),
)
ITEMS = st.one_of(
    st.dictionaries(st.sampled_from(["ts", "value", "quality", "x"]), FIELD_VALUES, max_size=4),
    st.fixed_dictionaries(
        {"ts": st.integers(0, 2**45), "value": st.floats(-1e3, 1e3)},
        optional={"quality": st.sampled_from(["good", "bad", "uncertain", "odd"])},
    ),
    st.none(),
    st.integers(),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["plant/s1/pump-1/vib", "plant/s1/pump-1/temp", "site/s1/fan-2/rpm"]),
            st.one_of(st.lists(ITEMS, max_size=5), ITEMS),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_any_json_reads_as_the_reference_parser_reads_it(
    drawn: list[tuple[str, object]],
) -> None:
    router = new_router()
    messages = [Message(topic, body(items)) for topic, items in drawn]
    original = mqtt.COLUMNAR_MIN_BYTES
    mqtt.COLUMNAR_MIN_BYTES = 0  # every group through Arrow first
    try:
        parsed = parse_group(router, messages)
    finally:
        mqtt.COLUMNAR_MIN_BYTES = original
    rows, problems = reference(router, messages)
    assert comparable(parsed.columns) == rows
    assert parsed.problems == problems


# -- columns ------------------------------------------------------------------------------


# Reading i of sensor s1 (or another) on dev-1: i seconds after T0, received at T0.
reading = partial(numbered_reading, start=T0, ingested_at=T0)


def test_arrow_columns_give_the_same_lists_runs_and_readings() -> None:
    readings = [reading(0), reading(1), reading(2, sensor="s2"), reading(3)]
    readings.append(Reading("dev-2", "s1", "flow", T0, None, None, "bad", "modbus", T0))
    listed = ReadingColumns.from_readings(readings)
    arrow = ReadingColumns.from_arrow(listed.to_arrow())
    assert arrow.is_arrow and arrow.lists() == listed.lists()
    assert (
        arrow.runs()
        == listed.runs()
        == [
            (("dev-1", "s1"), 0, 2),
            (("dev-1", "s2"), 2, 3),
            (("dev-1", "s1"), 3, 4),
            (("dev-2", "s1"), 4, 5),
        ]
    )
    assert arrow.readings() == readings
    mixed = ReadingColumns.concat([listed.slice(0, 2), arrow.slice(2, 4), listed.slice(4, 5)])
    assert mixed.readings() == readings
    big = ReadingColumns.from_readings([reading(i) for i in range(200)])
    assert isinstance(big.encode(), bytes) and isinstance(listed.encode(), str)
    assert ReadingColumns.decode(big.encode()).readings() == big.readings()


# -- spool --------------------------------------------------------------------------------


def test_duplicates_inside_and_across_runs_first_arrival_wins(tmp_path: Path) -> None:
    a = [reading(i) for i in (1, 2, 3)]
    b = [reading(i, sensor="s2") for i in (1, 2)]
    again = [reading(3, value=99.0), reading(4)]  # 3 repeats a reading of the first run
    repeated = [reading(5, sensor="s2"), reading(5, sensor="s2", value=7.0)]  # 5 twice
    repeated.append(reading(6, sensor="s2"))
    with Spool(spool_path(tmp_path, "w"), "w") as spool:
        result = spool.append(a + b + again + repeated)
        assert (result.accepted, result.duplicates) == (8, 2)
        batch = spool.claim(100)
        assert batch is not None
        assert [(r.sensor_id, r.value) for r in batch.readings] == [
            ("s1", 1.5),
            ("s1", 2.5),
            ("s1", 3.5),
            ("s2", 1.5),
            ("s2", 2.5),
            ("s1", 4.5),
            ("s2", 5.5),
            ("s2", 6.5),
        ]


def test_arrow_groups_and_their_keys_survive_a_restart(tmp_path: Path) -> None:
    path, lake = spool_path(tmp_path, "w"), tmp_path / "lake"
    first = ReadingColumns.from_arrow(
        ReadingColumns.from_readings([reading(i) for i in range(300)]).to_arrow()
    )
    with Spool(path, "w") as spool:
        assert spool.append_columns(first).accepted == 300
    with sqlite3.connect(path) as db:
        kinds = {t for (t,) in db.execute("SELECT typeof(body) FROM groups")}
        key_kinds = {t for (t,) in db.execute("SELECT typeof(body) FROM recent_keys")}
    assert kinds == key_kinds == {"blob"}
    with Spool(path, "w") as spool:
        result = spool.append([reading(i) for i in range(290, 310)])  # 10 redelivered
        assert (result.accepted, result.duplicates) == (10, 10)
        writer = DeltaWriter(spool, str(lake))
        assert writer.drain() and spool.pending == 0
    table = read_delta_independently(lake / "telemetry" / "sensor_readings")
    assert len(row_keys(table)) == 310


def _format_2_spool(path: Path, app_id: str) -> list[Reading]:
    """A spool as the previous version (format 2) left it: JSON groups, an open batch."""
    readings = [reading(i) for i in range(9)]
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE groups (id INTEGER PRIMARY KEY AUTOINCREMENT, batch_id INTEGER,
                             row_count INTEGER NOT NULL, created_at REAL NOT NULL,
                             body TEXT NOT NULL);
        CREATE INDEX groups_batch ON groups (batch_id, id);
        CREATE TABLE batches (batch_id INTEGER PRIMARY KEY AUTOINCREMENT,
                              seq INTEGER NOT NULL UNIQUE, created_at REAL NOT NULL,
                              row_count INTEGER NOT NULL);
        CREATE TABLE recent_keys (id INTEGER PRIMARY KEY AUTOINCREMENT, seen_at REAL NOT NULL,
                                  key_count INTEGER NOT NULL, body TEXT NOT NULL);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """
    )
    db.execute("INSERT INTO meta VALUES ('app_id', ?)", (app_id,))
    db.execute("INSERT INTO meta VALUES ('format', '2')")
    db.execute("INSERT INTO meta VALUES ('last_seq', '4')")
    db.execute("INSERT INTO batches VALUES (7, 4, 1000.0, 4)")
    for batch_id, part in ((7, readings[:4]), (None, readings[4:6]), (None, readings[6:])):
        columns = ReadingColumns.from_readings(part)
        db.execute(
            "INSERT INTO groups (batch_id, row_count, created_at, body) VALUES (?, ?, ?, ?)",
            (batch_id, len(part), 1000.0, json.dumps(columns.lists())),
        )
        runs = [["dev-1", "s1", columns.ts_us]]
        db.execute(
            "INSERT INTO recent_keys (seen_at, key_count, body) VALUES (?, ?, ?)",
            (time.time(), len(part), json.dumps(runs)),
        )
    db.commit()
    db.close()
    return readings


def test_format_2_spool_left_by_the_previous_version_drains(tmp_path: Path) -> None:
    path, lake = spool_path(tmp_path, "w"), tmp_path / "lake"
    readings = _format_2_spool(path, "w")
    late = ReadingColumns.from_readings([readings[8], *(reading(i) for i in range(9, 209))])
    with Spool(path, "w") as spool:
        assert spool.pending == 9
        open_batch = spool.claim(100)  # the open batch: its number and rows, for the retry
        assert open_batch is not None
        assert (open_batch.batch_id, open_batch.seq, open_batch.readings) == (7, 4, readings[:4])
        assert spool.append_columns(late).duplicates == 1  # format 2 keys are known
        writer = DeltaWriter(spool, str(lake))
        assert writer.drain()
        assert writer.stats.batches_written == 2  # the open batch, then JSON and Arrow rows
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key='format'").fetchone()[0] == "3"
    table = read_delta_independently(lake / "telemetry" / "sensor_readings")
    assert row_keys(table) == sorted(
        (r.device_id, r.sensor_id, r.ts.isoformat(), r.value)
        for r in [*readings, *(reading(i) for i in range(9, 209))]
    )


# -- writer -------------------------------------------------------------------------------


def _run_writer(writer: DeltaWriter) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=writer.run, args=(stop,), daemon=True)
    thread.start()
    return stop, thread


def test_the_end_of_a_burst_is_flushed_without_waiting_for_flush_seconds(
    tmp_path: Path,
) -> None:
    with Spool(spool_path(tmp_path, "w"), "w") as spool:
        writer = DeltaWriter(spool, str(tmp_path / "lake"), flush_rows=100, flush_seconds=60)
        stop, thread = _run_writer(writer)
        try:
            spool.append([reading(i) for i in range(250)])  # a burst: 2 flushes by size...
            assert wait_for(lambda: spool.pending == 0, timeout=15)  # ...and its end
            assert writer.stats.rows_written == 250
            spool.append([reading(i) for i in range(1000, 1010)])  # the burst is over
            time.sleep(0.8)
            assert spool.pending == 10
        finally:
            stop.set()
            thread.join(timeout=30)
        assert spool.pending == 0  # drained on stop


def test_steady_traffic_below_flush_rows_waits_for_flush_seconds(tmp_path: Path) -> None:
    with Spool(spool_path(tmp_path, "w"), "w") as spool:
        writer = DeltaWriter(spool, str(tmp_path / "lake"), flush_rows=100, flush_seconds=1.5)
        stop, thread = _run_writer(writer)
        try:
            spool.append([reading(i) for i in range(10)])
            time.sleep(0.8)
            assert spool.pending == 10  # no burst: batched as configured
            assert wait_for(lambda: spool.pending == 0, timeout=10)
        finally:
            stop.set()
            thread.join(timeout=30)
