"""Spool and Delta writer: durability, idempotent flushes, quarantine, lake outage."""

from __future__ import annotations

import math
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from integration_platform.streams.readings import Reading
from integration_platform.streams.spool import Spool, SpoolError, SpoolFullError, spool_path
from integration_platform.streams.writer import DeltaWriter, LakeWriteError, split_batch
from integration_platform_tests.streams_helpers import (
    delta_log_actions,
    read_delta_independently,
    row_keys,
    transaction_versions,
    wait_for,
)

T0 = datetime(2026, 3, 1, 23, 59, 58, tzinfo=UTC)


AUTO = object()


def reading(i: int, *, sensor: str = "s1", value: object = AUTO, **kw: object) -> Reading:
    fields: dict = {
        "device_id": "dev-1",
        "sensor_id": sensor,
        "sensor_type": "temperature",
        "ts": T0 + timedelta(seconds=i),
        "value": float(i) + 0.25 if value is AUTO else value,
        "unit": "degC",
        "quality": "good",
        "source_protocol": "mqtt",
    }
    fields.update(kw)
    return Reading(**fields)


def expected_keys(readings: list[Reading]) -> list[tuple]:
    return sorted((r.device_id, r.sensor_id, r.ts.isoformat(), r.value) for r in readings)


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    with Spool(spool_path(tmp_path, "writer-a"), "writer-a") as spool:
        yield spool


# -- spool --------------------------------------------------------------------------------


def test_spool_survives_reopen_and_keeps_the_open_batch(tmp_path: Path) -> None:
    path = spool_path(tmp_path, "w")
    with Spool(path, "w") as first:
        first.append([reading(i) for i in range(5)])
        batch = first.claim(3)
        assert batch is not None and batch.seq == 1 and len(batch.readings) == 3
    with Spool(path, "w") as again:  # as after a crash: the same batch, the same number
        assert again.pending == 5
        reclaimed = again.claim(100)
        assert reclaimed is not None
        assert (reclaimed.batch_id, reclaimed.seq) == (batch.batch_id, 1)
        assert reclaimed.readings == batch.readings
        again.commit(reclaimed.batch_id)
        rest = again.claim(100)
        assert rest is not None and rest.seq == 2 and len(rest.readings) == 2
        again.commit(rest.batch_id)
        assert again.pending == 0 and again.claim(100) is None


def test_spool_drops_redelivered_keys_even_after_commit(spool: Spool) -> None:
    first = [reading(i) for i in range(4)]
    assert spool.append(first).accepted == 4
    batch = spool.claim(10)
    spool.commit(batch.batch_id)
    result = spool.append([reading(2), reading(3), reading(4)])  # QoS 1 redelivery + one new
    assert (result.accepted, result.duplicates) == (1, 2)


def test_spool_belongs_to_one_app_id(tmp_path: Path) -> None:
    path = spool_path(tmp_path, "w")
    Spool(path, "w").close()
    with pytest.raises(SpoolError, match="belongs to writer app id 'w'"):
        Spool(path, "other")


def test_spool_full_stores_nothing_and_says_what_to_do(tmp_path: Path) -> None:
    with Spool(spool_path(tmp_path, "w"), "w", max_bytes=64 * 1024) as spool:
        with pytest.raises(SpoolFullError, match="--spool-max-mb") as error:
            for i in range(0, 10_000, 100):
                spool.append([reading(i + j) for j in range(100)])
        before = spool.pending
        assert "has not accepted" in str(error.value)
        with pytest.raises(SpoolFullError):
            spool.append([reading(20_000 + j) for j in range(100)])
        assert spool.pending == before


def test_spool_seq_floor_avoids_committed_numbers(spool: Spool) -> None:
    spool.append([reading(1)])
    assert spool.claim(10, seq_floor=42).seq == 42


# -- writer -------------------------------------------------------------------------------


def test_flush_writes_exact_rows_partitioned_by_date(spool: Spool, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    readings = [reading(i) for i in range(4)]  # crosses midnight UTC: two partitions
    spool.append(readings)
    writer = DeltaWriter(spool, str(lake), flush_rows=100)
    result = writer.flush_once()
    assert result is not None and (result.seq, result.written, result.skipped) == (1, 4, False)
    table_dir = lake / "telemetry" / "sensor_readings"
    table = read_delta_independently(table_dir)
    assert row_keys(table) == expected_keys(readings)
    assert sorted(set(table.column("date").to_pylist())) == [date(2026, 3, 1), date(2026, 3, 2)]
    adds = [a["add"] for a in delta_log_actions(table_dir) if "add" in a]
    assert {a["partitionValues"]["date"] for a in adds} == {"2026-03-01", "2026-03-02"}
    assert transaction_versions(table_dir) == {"writer-a": 1}
    assert table.column("ts").type.tz == "UTC"
    assert spool.pending == 0 and writer.flush_once() is None


def test_crash_between_lake_commit_and_spool_commit_never_duplicates(tmp_path: Path) -> None:
    path, lake = spool_path(tmp_path, "w"), tmp_path / "lake"
    readings = [reading(i) for i in range(10)]

    def crash(batch: object) -> None:
        raise SystemExit("simulated crash after the Delta commit")

    with Spool(path, "w") as spool:
        spool.append(readings)
        with pytest.raises(SystemExit):
            DeltaWriter(spool, str(lake), flush_rows=6, after_lake_commit=crash).flush_once()
    with Spool(path, "w") as spool:  # restart: the batch is still open in the spool
        assert spool.pending == 10
        writer = DeltaWriter(spool, str(lake), flush_rows=6)
        retried = writer.flush_once()
        assert retried is not None and retried.seq == 1 and retried.skipped
        following = writer.flush_once()
        assert following is not None and following.seq == 2 and following.written == 4
        assert spool.pending == 0
    table_dir = lake / "telemetry" / "sensor_readings"
    assert row_keys(read_delta_independently(table_dir)) == expected_keys(readings)
    assert transaction_versions(table_dir) == {"w": 2}


def test_lost_spool_does_not_reuse_committed_sequence_numbers(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    with Spool(tmp_path / "one.sqlite", "w") as spool:
        spool.append([reading(1)])
        DeltaWriter(spool, str(lake)).flush_once()
    with Spool(tmp_path / "two.sqlite", "w") as fresh:  # e.g. the data dir was wiped
        fresh.append([reading(2)])
        result = DeltaWriter(fresh, str(lake)).flush_once()
    assert result is not None and result.seq == 2 and not result.skipped
    table = read_delta_independently(lake / "telemetry" / "sensor_readings")
    assert row_keys(table) == expected_keys([reading(1), reading(2)])


def test_bad_values_are_quarantined_with_reasons(spool: Spool, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    good = [reading(0), reading(1, value=None, quality="bad", sensor="gap")]
    bad = [
        reading(2, value=math.inf),
        reading(3, value=None),  # no value but quality good
        reading(4, quality="excellent"),
        reading(5, sensor_type="Vibration"),
    ]
    spool.append(good + bad)
    writer = DeltaWriter(spool, str(lake))
    result = writer.flush_once()
    assert result is not None and (result.written, result.quarantined) == (2, 4)
    assert writer.stats.rows_quarantined == 4
    table = read_delta_independently(lake / "telemetry" / "sensor_readings")
    assert len(row_keys(table)) == 2
    quarantine = read_delta_independently(lake / "quarantine" / "sensor_readings").to_pylist()
    reasons = {row["external_id"].split("@")[1][:19]: row["reject_reason"] for row in quarantine}
    assert "finite" in reasons["2026-03-02T00:00:00"]
    assert "missing" in reasons["2026-03-02T00:00:01"]
    assert "excellent" in reasons["2026-03-02T00:00:02"]
    assert "lowercase" in reasons["2026-03-02T00:00:03"]
    assert {row["entity"] for row in quarantine} == {"sensor_reading"}
    assert all(row["run_id"] == "writer-a#1" for row in quarantine)


def test_duplicates_within_a_batch_are_dropped() -> None:
    split = split_batch([reading(1), reading(1), reading(2), reading(1, value=99.0)])
    assert split.duplicates == 2
    assert list(split.valid["value"]) == [1.25, 2.25]  # the first arrival wins


def test_lake_outage_keeps_readings_in_the_spool_then_drains(spool: Spool, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    lake.mkdir()
    blocker = lake / "telemetry"
    blocker.write_text("not a folder: the lake cannot create its table here")
    writer = DeltaWriter(spool, str(lake), flush_rows=5, flush_seconds=0.2)
    spool.append([reading(i) for i in range(5)])
    with pytest.raises(LakeWriteError, match="cannot append batch 1"):
        writer.flush_once()
    stop = threading.Event()
    thread = threading.Thread(target=writer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        for i in range(5, 40):
            spool.append([reading(i)])
        assert wait_for(lambda: writer.stats.lake_errors >= 3, timeout=10)
        assert spool.pending == 40  # nothing lost, nothing written
        blocker.unlink()  # the lake recovers
        assert wait_for(lambda: spool.pending == 0, timeout=20)
    finally:
        stop.set()
        thread.join(timeout=10)
    table = read_delta_independently(lake / "telemetry" / "sensor_readings")
    assert row_keys(table) == expected_keys([reading(i) for i in range(40)])
