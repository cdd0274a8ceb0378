"""Threshold evaluation, reading by reading: levels, hysteresis, duration, cooldown, dedupe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from integration_platform.streams.alerts import AlertEvaluator, SensorEvaluator, episode_key
from integration_platform.streams.devices import Thresholds, parse_registry
from integration_platform.streams.readings import Reading

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def evaluator(**limits: object) -> SensorEvaluator:
    values: dict[str, object] = {"cooldown_s": 0.0}
    values.update(limits)
    return SensorEvaluator("pump-1", "vib", Thresholds(**values), asset_id="PUMP-1")


def run(ev: SensorEvaluator, values: list[float], *, step_s: float = 1.0) -> list[tuple]:
    """Feed one value per ``step_s``; (second, kind, severity) of every event."""
    out = []
    for i, value in enumerate(values):
        event = ev.feed(value, T0 + timedelta(seconds=i * step_s))
        if event is not None:
            out.append((i * step_s, event.kind, event.severity))
    return out


def test_raise_and_resolve_with_hysteresis() -> None:
    ev = evaluator(critical=7.0, hysteresis=0.5)
    # 7.0 reaches the limit; 6.8 and 6.6 are inside the hysteresis band; 6.4 clears.
    events = run(ev, [5.0, 7.0, 6.8, 7.2, 6.6, 6.4, 6.0])
    assert events == [(1.0, "raised", "critical"), (5.0, "resolved", "critical")]


def test_one_alert_per_episode_however_long_it_lasts() -> None:
    ev = evaluator(warning=4.5, critical=7.1)
    events = run(ev, [5.0] * 50 + [1.0])
    assert [e[1] for e in events] == ["raised", "resolved"]


def test_min_duration_counts_reading_time_and_restarts_on_a_dip() -> None:
    ev = evaluator(critical=7.0, min_duration_s=10)
    # Exceeded from t=0 to t=8, a dip at t=9 restarts the clock; raised 10 s after t=10.
    values = [8.0] * 9 + [6.0] + [8.0] * 12
    assert run(ev, values) == [(20.0, "raised", "critical")]
    # Sparse readings: 2 readings 15 s apart are already 15 s of exceedance.
    sparse = evaluator(critical=7.0, min_duration_s=10)
    assert run(sparse, [8.0, 8.0], step_s=15) == [(15.0, "raised", "critical")]


def test_escalation_updates_the_same_episode() -> None:
    ev = evaluator(warning=4.5, critical=7.1, hysteresis=0.2)
    events = []
    for i, value in enumerate([3.0, 5.0, 6.0, 8.0, 9.0, 5.0, 4.4, 4.2]):
        event = ev.feed(value, T0 + timedelta(seconds=i))
        if event is not None:
            events.append(event)
    assert [(e.kind, e.severity) for e in events] == [
        ("raised", "warning"),
        ("escalated", "critical"),
        ("resolved", "critical"),  # severity does not step down while open
    ]
    assert len({e.episode_key for e in events}) == 1
    assert events[0].episode_key == episode_key("pump-1", "vib", T0 + timedelta(seconds=1))
    assert (events[1].threshold, events[1].value) == (7.1, 8.0)
    assert events[2].peak_value == 9.0
    assert events[2].reading_ts == T0 + timedelta(seconds=7)


def test_escalation_also_waits_for_min_duration() -> None:
    ev = evaluator(warning=4.5, critical=7.1, min_duration_s=2)
    events = run(ev, [5.0, 5.0, 5.0, 8.0, 8.0, 8.0, 8.0])
    assert events == [(2.0, "raised", "warning"), (5.0, "escalated", "critical")]


def test_cooldown_holds_back_a_new_episode() -> None:
    ev = evaluator(critical=7.0, cooldown_s=10)
    # resolved at t=2; exceeded again at t=3..; no new episode before t=12.
    values = [8.0, 8.0, 1.0] + [8.0] * 12
    assert run(ev, values) == [
        (0.0, "raised", "critical"),
        (2.0, "resolved", "critical"),
        (12.0, "raised", "critical"),
    ]


def test_below_direction() -> None:
    ev = evaluator(warning=2.0, critical=1.0, direction="below", hysteresis=0.5)
    events = run(ev, [3.0, 2.0, 1.5, 0.9, 2.2, 2.6])
    assert events == [
        (1.0, "raised", "warning"),
        (3.0, "escalated", "critical"),
        (5.0, "resolved", "critical"),  # 2.2 is inside 2.0 + 0.5; 2.6 clears
    ]


def test_duplicates_late_readings_and_gaps_are_ignored() -> None:
    ev = evaluator(critical=7.0)
    assert ev.feed(8.0, T0) is not None
    assert ev.feed(8.0, T0) is None  # a QoS 1 redelivery
    assert ev.feed(1.0, T0 - timedelta(seconds=5)) is None  # older than what was evaluated
    assert ev.feed(float("nan"), T0 + timedelta(seconds=1)) is None
    assert ev.active is not None
    assert ev.feed(1.0, T0 + timedelta(seconds=2)).kind == "resolved"


def reading(device: str, sensor: str, second: int, value: float | None, quality: str = "good"):
    return Reading(
        device_id=device,
        sensor_id=sensor,
        sensor_type="vibration",
        ts=T0 + timedelta(seconds=second),
        value=value,
        unit="mm/s",
        quality=quality,
        source_protocol="mqtt",
    )


REGISTRY = """
devices:
  - device_id: pump-1
    protocol: mqtt
    endpoint: mqtt://127.0.0.1:1883
    asset_id: PUMP-1
    sensors:
      - sensor_id: vib
        type: vibration
        thresholds: {warning: 4.5, critical: 7.1, cooldown_s: 0}
      - {sensor_id: temp, type: temperature}
"""


def test_registry_evaluator_skips_sensors_without_thresholds_and_bad_readings() -> None:
    engine = AlertEvaluator(parse_registry(REGISTRY))
    events = engine.observe(
        [
            reading("pump-1", "temp", 0, 900.0),  # no thresholds
            reading("other", "vib", 0, 900.0),  # unknown device
            reading("pump-1", "vib", 0, 60.0, quality="bad"),  # out of range: a sensor fault
            reading("pump-1", "vib", 1, None, quality="bad"),  # a gap
            reading("pump-1", "vib", 2, 8.0),
        ]
    )
    assert [(e.kind, e.severity, e.asset_id) for e in events] == [("raised", "critical", "PUMP-1")]


def test_reload_keeps_state_of_unchanged_sensors_and_resets_changed_ones() -> None:
    engine = AlertEvaluator(parse_registry(REGISTRY))
    engine.observe([reading("pump-1", "vib", 0, 8.0)])
    engine.configure(parse_registry(REGISTRY))
    assert engine.evaluator("pump-1", "vib").active is not None
    engine.configure(parse_registry(REGISTRY.replace("critical: 7.1", "critical: 9.0")))
    assert engine.evaluator("pump-1", "vib").active is None


def test_restore_continues_an_open_episode() -> None:
    engine = AlertEvaluator(parse_registry(REGISTRY))
    key = episode_key("pump-1", "vib", T0)
    assert engine.restore([("pump-1", "vib", key, "critical", 9.0, T0)]) == 1
    assert engine.observe([reading("pump-1", "vib", 1, 8.0)]) == []  # no second raise
    (event,) = engine.observe([reading("pump-1", "vib", 2, 1.0)])
    assert (event.kind, event.episode_key, event.peak_value) == ("resolved", key, 9.0)


def test_thresholds_declare_a_cooldown_by_default() -> None:
    assert Thresholds(critical=1.0).cooldown_s > 0
    with pytest.raises(ValueError):
        Thresholds(critical=1.0, cooldown_s=-1)
