"""MQTT collector (paho-mqtt 2.x, MQTT v5): broker -> spool, acknowledged after the spool.

Zero loss rests on four facts (docs/streams.md):

- the session is persistent from the *first* connect (``clean_start=False``, a session expiry
  interval, a fixed client id), so the broker queues for us while we are down;
- subscriptions are QoS 1 and acknowledged manually (``manual_ack=True``), only after the
  spool's fsync: a crash before that makes the broker redeliver;
- redeliveries are dropped by the spool's de-duplication on (device, sensor, ts);
- acknowledgements of messages received on an earlier connection are not sent (the broker
  redelivers those on the new one, and a stale packet id could acknowledge another message).

Messages are handed from paho's network thread to an ingest thread, which parses them,
appends whole groups to the spool in one transaction (one fsync for many messages) and then
acknowledges them in arrival order. A large group of JSON messages is parsed in one Arrow call
(:func:`parse_group`), outside the GIL; what Arrow cannot read exactly as the reference parser
(:func:`parse_message_columns`) would is parsed by the latter, message by message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import queue
import socket
import ssl
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from integration_platform.streams.devices import (
    DeviceSpec,
    MqttSettings,
    Registry,
    TopicPattern,
)
from integration_platform.streams.readings import (
    Reading,
    ReadingColumns,
    from_us,
    spool_schema,
    to_us,
)
from integration_platform.streams.sparkplug import SparkplugDecoder, rebirth_request
from integration_platform.streams.spool import Spool, SpoolFullError

if TYPE_CHECKING:
    import numpy as np
    import paho.mqtt.client as mqtt
    import pyarrow as pa

log = logging.getLogger(__name__)

MIN_TS = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TS = datetime(2262, 1, 1, tzinfo=UTC)  # pandas' nanosecond timestamps end in 2262
INGEST_GROUP = 500


class MalformedPayload(ValueError):
    """A message (or one item of it) cannot be read as readings; the text says why."""


# -- payload parsing (pure) ----------------------------------------------------------------


def get_path(data: Any, path: str) -> Any:
    """Value at a dotted path (``a.b.0.c``); ``KeyError`` when absent."""
    node = data
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif (
            isinstance(node, list)
            and part.lstrip("-").isdigit()
            and -len(node) <= int(part) < len(node)
        ):
            node = node[int(part)]
        else:
            raise KeyError(path)
    return node


def parse_timestamp(raw: Any, unit: str = "ms") -> datetime:
    """ISO-8601 with a zone, or epoch in ``unit`` (ms by default) -> aware UTC datetime."""
    if isinstance(raw, bool):
        raise MalformedPayload(f"ts {raw!r} is not a timestamp")
    if isinstance(raw, int | float):
        if not math.isfinite(raw):
            raise MalformedPayload(f"ts {raw!r} is not a timestamp")
        seconds = raw / 1000.0 if unit == "ms" else float(raw)
        try:
            ts = datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise MalformedPayload(f"ts {raw!r} is out of range") from exc
    elif isinstance(raw, str):
        try:
            ts = datetime.fromisoformat(raw.strip())
        except ValueError as exc:
            raise MalformedPayload(f"ts {raw!r} is not ISO-8601") from exc
        if ts.tzinfo is None:
            raise MalformedPayload(f"ts {raw!r} has no time zone (add Z or an offset)")
        ts = ts.astimezone(UTC)
    else:
        raise MalformedPayload(f"ts {raw!r} is not a timestamp")
    if not MIN_TS <= ts < MAX_TS:
        raise MalformedPayload(f"ts {raw!r} is outside 1970-2261")
    return ts


def _value(raw: Any) -> float | None:
    if raw is None:
        return None  # a gap; the writer accepts it only with quality bad
    if isinstance(raw, bool):
        raise MalformedPayload(f"value {raw!r} is not a number")
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, str):
        try:
            return float(raw)
        except ValueError:
            pass
    raise MalformedPayload(f"value {raw!r} is not a number")


def parse_message(
    device: DeviceSpec,
    topic: str,
    topic_values: dict[str, str],
    payload: bytes,
    received_at: datetime,
) -> tuple[list[Reading], list[str]]:
    """Readings in one message, and the reasons items were skipped (malformed).

    A message may hold one reading, a JSON array of readings, or an array at the ``readings``
    path; item fields are found at the device's payload paths, missing ``ts`` falling back to
    the envelope's. Values outside the sensor's valid range are kept with quality ``bad``.
    """
    columns = ReadingColumns()
    problems = parse_message_columns(
        device, topic, topic_values, payload, to_us(received_at), columns
    )
    return columns.readings(), problems


def parse_message_columns(
    device: DeviceSpec,
    topic: str,
    topic_values: dict[str, str],
    payload: bytes,
    received_us: int,
    out: ReadingColumns,
) -> list[str]:
    """:func:`parse_message` appending to ``out`` (no object per reading); the problems.

    Items of the common shape (an object with an epoch ``ts`` and a numeric or null value at
    top-level keys) take a short path with the same rules; anything else goes through
    :func:`_item`, which says exactly what is wrong.
    """
    paths = (device.mqtt or MqttSettings()).payload
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        raise MalformedPayload(f"not JSON: {payload[:60]!r}") from None
    envelope = data if isinstance(data, dict) else {}
    if paths.readings:
        try:
            items = get_path(data, paths.readings)
        except KeyError:
            raise MalformedPayload(f"no array at {paths.readings!r}") from None
        if not isinstance(items, list):
            raise MalformedPayload(f"{paths.readings!r} is not an array")
    else:
        items = data if isinstance(data, list) else [data]
    if not items:
        raise MalformedPayload("an empty array")
    problems: list[str] = []
    received_at: datetime | None = None
    # The short path needs one sensor for the whole message and top-level keys.
    sensor_id = topic_values.get("sensor_id")
    if sensor_id is None and not paths.sensor_id:
        sensor_id = device.sensors[0].sensor_id
    sensor = device.sensor(sensor_id) if sensor_id is not None else None
    simple = (
        sensor is not None
        and "." not in paths.ts
        and "." not in paths.value
        and (paths.quality is None or "." not in paths.quality)
    )
    if simple:
        assert sensor is not None
        ts_key, value_key, quality_key = paths.ts, paths.value, paths.quality
        scale = 1000 if paths.ts_unit == "ms" else 1_000_000
        low, high = sensor.valid_range or (-math.inf, math.inf)
        device_id, sensor_type, unit = device.device_id, sensor.type, sensor.unit
        ts_col, value_col, quality_col = out.ts_us, out.value, out.quality
        count = 0
    for item in items:
        if simple and type(item) is dict:
            raw_ts = item.get(ts_key)
            raw_value = item.get(value_key, _MISSING)
            quality = item.get(quality_key, "good") if quality_key else "good"
            kind = type(raw_value)
            if (
                type(raw_ts) is int
                and 0 <= raw_ts * scale < _MAX_US
                and (kind is float or kind is int or raw_value is None)
                and type(quality) is str
            ):
                value = None if raw_value is None else float(raw_value)
                if value is not None and not low <= value <= high and math.isfinite(value):
                    quality = "bad"
                ts_col.append(raw_ts * scale)
                value_col.append(value)
                quality_col.append(quality)
                count += 1
                continue
        if received_at is None:
            received_at = from_us(received_us)
        if simple and count:  # complete the short-path rows before a slow one joins
            _fill(out, count, device_id, sensor.sensor_id, sensor_type, unit, received_us, topic)
            count = 0
        try:
            out.add(_item(device, topic, topic_values, item, envelope, received_at))
        except MalformedPayload as exc:
            problems.append(str(exc))
    if simple and count:
        _fill(out, count, device_id, sensor.sensor_id, sensor_type, unit, received_us, topic)
    return problems


_MISSING = object()
_MAX_US = to_us(datetime(2262, 1, 1, tzinfo=UTC))


def _fill(
    out: ReadingColumns,
    count: int,
    device_id: str,
    sensor_id: str,
    sensor_type: str,
    unit: str | None,
    received_us: int,
    topic: str,
) -> None:
    """The columns that are constant per message, for the last ``count`` short-path rows
    (which filled ``ts_us``, ``value`` and ``quality`` only)."""
    out.device_id.extend([device_id] * count)
    out.sensor_id.extend([sensor_id] * count)
    out.sensor_type.extend([sensor_type] * count)
    out.unit.extend([unit] * count)
    out.source_protocol.extend(["mqtt"] * count)
    out.ingested_us.extend([received_us] * count)
    out.origin.extend([topic] * count)


def _item(
    device: DeviceSpec,
    topic: str,
    topic_values: dict[str, str],
    item: Any,
    envelope: dict,
    received_at: datetime,
) -> Reading:
    paths = (device.mqtt or MqttSettings()).payload
    if not isinstance(item, dict):
        raise MalformedPayload(f"item {item!r} is not an object")
    sensor_id = topic_values.get("sensor_id")
    if sensor_id is None and paths.sensor_id:
        try:
            sensor_id = str(get_path(item, paths.sensor_id))
        except KeyError:
            raise MalformedPayload(f"no sensor id at {paths.sensor_id!r}") from None
    if sensor_id is None:
        sensor_id = device.sensors[0].sensor_id
    sensor = device.sensor(sensor_id)
    if sensor is None:
        raise MalformedPayload(f"sensor {sensor_id!r} is not declared for {device.device_id}")
    try:
        raw_ts = get_path(item, paths.ts)
    except KeyError:
        try:
            raw_ts = get_path(envelope, paths.ts)
        except KeyError:
            raise MalformedPayload(f"no timestamp at {paths.ts!r}") from None
    ts = parse_timestamp(raw_ts, paths.ts_unit)
    try:
        value = _value(get_path(item, paths.value))
    except KeyError:
        raise MalformedPayload(f"no value at {paths.value!r}") from None
    quality = "good"
    if paths.quality:
        try:
            raw_quality = get_path(item, paths.quality)
        except KeyError:
            raw_quality = "good"
        if not isinstance(raw_quality, str):
            raise MalformedPayload(f"quality {raw_quality!r} is not text")
        quality = raw_quality
    if value is not None and math.isfinite(value) and not sensor.in_range(value):
        quality = "bad"
    return Reading.of(
        device,
        sensor,
        ts=ts,
        value=value,
        quality=quality,
        protocol="mqtt",
        ingested_at=received_at,
        origin=topic,
    )


# -- routing -------------------------------------------------------------------------------


class Router:
    """Subscription filters for the MQTT devices of a registry, and topic -> device."""

    def __init__(self, registry: Registry, devices: Sequence[DeviceSpec]) -> None:
        self.routes: list[tuple[TopicPattern, DeviceSpec, dict[str, str]]] = []
        for device in devices:
            settings = device.mqtt or MqttSettings()
            fixed = {"site": registry.site_of(device), "device_id": device.device_id}
            self.routes.append((TopicPattern(settings.topic), device, fixed))
        self._cache: dict[str, tuple[DeviceSpec, dict[str, str]] | None] = {}
        self._plans: dict[str, ColumnarPlan | None] = {}

    def filters(self) -> list[str]:
        return sorted({pattern.subscription(fixed) for pattern, _, fixed in self.routes})

    def route(self, topic: str) -> tuple[DeviceSpec, dict[str, str]] | None:
        if topic in self._cache:
            return self._cache[topic]
        found = None
        for pattern, device, fixed in self.routes:
            values = pattern.match(topic)
            if values is not None and all(values.get(k, v) == v for k, v in fixed.items()):
                found = (device, values)
                break
        if len(self._cache) > 10_000:
            self._cache.clear()
            self._plans.clear()
        self._cache[topic] = found
        return found

    def plan(self, topic: str) -> ColumnarPlan | None:
        """How the columnar parser reads a routed topic's messages (``None``: it cannot)."""
        if topic in self._plans:
            return self._plans[topic]
        found = self.route(topic)
        plan = columnar_plan(*found) if found is not None else None
        self._plans[topic] = plan
        return plan

    def read_exactly(self, topic: str) -> None:
        """Send a topic's messages to the reference parser from now on: Arrow could not
        read one of them (a device that sends ISO timestamps or text values, say)."""
        self._plans[topic] = None


# -- columnar parsing of a group of messages ------------------------------------------------

# Below this many bytes of candidates one Arrow call (~150 us fixed) costs more than json.
COLUMNAR_MIN_BYTES = 16 * 1024
_OPENERS = (b"[", b"{")


@dataclass(frozen=True)
class ColumnarPlan:
    """What the columnar parser needs to know of a topic: the item keys (top-level, so one
    Arrow schema reads them) and the per-message constants of its sensor."""

    keys: tuple[str, str, str | None]  # ts, value, quality
    device_id: str
    sensor_id: str
    sensor_type: str
    unit: str | None
    scale: int  # ts unit -> microseconds
    low: float
    high: float


def columnar_plan(device: DeviceSpec, topic_values: dict[str, str]) -> ColumnarPlan | None:
    """The plan for a device and topic, or ``None`` when its messages need the reference
    parser: nested paths, a readings envelope, sensor ids in the items, an undeclared
    sensor, or a payload format other than JSON."""
    settings = device.mqtt or MqttSettings()
    paths = settings.payload
    if getattr(settings, "format", "json") != "json" or paths.readings:
        return None
    keys = (paths.ts, paths.value, paths.quality)
    named = [key for key in keys if key]
    if any("." in key for key in named) or len(set(named)) != len(named):
        return None
    sensor_id = topic_values.get("sensor_id")
    if sensor_id is None:
        if paths.sensor_id:
            return None
        sensor_id = device.sensors[0].sensor_id
    sensor = device.sensor(sensor_id)
    if sensor is None:
        return None
    low, high = sensor.valid_range or (-math.inf, math.inf)
    return ColumnarPlan(
        keys=keys,
        device_id=device.device_id,
        sensor_id=sensor.sensor_id,
        sensor_type=sensor.type,
        unit=sensor.unit,
        scale=1000 if paths.ts_unit == "ms" else 1_000_000,
        low=float(low),
        high=float(high),
    )


class Message(Protocol):
    topic: str
    payload: bytes
    received_us: int


@dataclass
class GroupParse:
    """The readings of a group of messages, in arrival order, and what could not be read."""

    columns: ReadingColumns
    problems: list[str] = field(default_factory=list)  # "<topic> (<device>): <reason>"
    unknown_topics: int = 0
    malformed: int = 0
    columnar_messages: int = 0  # given to Arrow (the rest to the reference parser)


def parse_group(
    router: Router, messages: Sequence[Message], sparkplug: SparkplugDecoder | None = None
) -> GroupParse:
    """Parse a group of messages: large sets of messages the columnar plan covers in one
    Arrow call per item layout, the rest (and any message Arrow could read differently from
    :func:`parse_message_columns`) with the reference parser. Readings keep arrival order.

    Sparkplug B devices go through ``sparkplug``, which remembers the births it has seen
    (a collector keeps one for its life; without it, each call starts from no births).
    """
    routes = [router.route(message.topic) for message in messages]
    result = GroupParse(ReadingColumns())
    noted: list[tuple[int, str]] = []  # problems by message, put in arrival order at the end
    parts: list[tuple[pa.Table, np.ndarray]] = []  # readings, and the message of each
    by_arrow: set[int] = set()
    for keys, members in _columnar_candidates(router, messages, routes).items():
        batch = [(k, messages[k], router.plan(messages[k].topic)) for k in members]
        retry: list[int] = []
        unreadable: list[int] = []
        _read_columnar(keys, batch, parts, retry, unreadable)  # type: ignore[arg-type]
        for k in unreadable:
            router.read_exactly(messages[k].topic)
        by_arrow.update(set(members) - set(retry) - set(unreadable))
        result.columnar_messages += len(members) - len(unreadable)
    exact = [k for k in range(len(messages)) if k not in by_arrow] if by_arrow else None
    columns, row_message = _parse_exactly(
        messages, routes, exact, result, noted, bool(parts), sparkplug or SparkplugDecoder()
    )
    if parts:
        assert row_message is not None
        parts.append((columns.to_arrow(), row_message))
        columns = _in_arrival_order(parts)
    result.columns = columns
    if noted:
        noted.sort(key=lambda item: item[0])
        result.problems = [text for _, text in noted]
    return result


def _columnar_candidates(
    router: Router, messages: Sequence[Message], routes: list[Any]
) -> dict[tuple[str, str, str | None], list[int]]:
    """Positions of the messages Arrow may read, by item layout; only layouts with at least
    ``COLUMNAR_MIN_BYTES`` of messages (a live trickle takes the reference parser)."""
    candidates: dict[tuple[str, str, str | None], list[int]] = {}
    sizes: dict[tuple[str, str, str | None], int] = {}
    if sum(len(message.payload) for message in messages) < COLUMNAR_MIN_BYTES:
        return candidates
    for k, message in enumerate(messages):
        if routes[k] is None or message.payload[:1] not in _OPENERS:
            continue
        plan = router.plan(message.topic)
        if plan is not None:
            candidates.setdefault(plan.keys, []).append(k)
            sizes[plan.keys] = sizes.get(plan.keys, 0) + len(message.payload)
    return {keys: ks for keys, ks in candidates.items() if sizes[keys] >= COLUMNAR_MIN_BYTES}


def _parse_exactly(
    messages: Sequence[Message],
    routes: list[Any],
    order: list[int] | None,
    result: GroupParse,
    noted: list[tuple[int, str]],
    track: bool,
    sparkplug: SparkplugDecoder,
) -> tuple[ReadingColumns, np.ndarray | None]:
    """The reference parser over the messages at ``order`` (``None``: all); with ``track``,
    the message of each reading too (to merge with Arrow's readings in arrival order)."""
    columns = ReadingColumns()
    row_message: list[int] = []
    for k in range(len(messages)) if order is None else order:
        message = messages[k]
        if routes[k] is None:
            result.unknown_topics += 1
            noted.append((k, f"{message.topic}: no device declared for this topic"))
            continue
        device, values = routes[k]
        before = len(columns)
        try:
            if device.mqtt is not None and device.mqtt.format == "sparkplug_b":
                problems = sparkplug.decode_into(
                    device, message.topic, message.payload, message.received_us, columns
                )
            else:
                problems = parse_message_columns(
                    device, message.topic, values, message.payload, message.received_us, columns
                )
        except MalformedPayload as exc:
            problems = [str(exc)]
        if track:
            row_message.extend([k] * (len(columns) - before))
        if problems:
            result.malformed += len(problems)
            noted += [(k, f"{message.topic} ({device.device_id}): {p}") for p in problems]
    if not track:
        return columns, None
    import numpy as np

    return columns, np.asarray(row_message, dtype=np.int64)


def _read_columnar(
    keys: tuple[str, str, str | None],
    batch: list[tuple[int, Message, ColumnarPlan]],
    parts: list[tuple[pa.Table, np.ndarray]],
    retry: list[int],
    unreadable: list[int],
) -> None:
    """Parse ``batch`` (group positions, messages, plans) with Arrow into ``parts``; the
    messages its rules send to the reference parser go to ``retry``. When Arrow cannot read
    the batch, each half is tried, down to the single messages it cannot read
    (``unreadable``), so one odd message does not slow down the rest."""
    import numpy as np

    parsed = _parse_columnar(keys, [(message, plan) for _, message, plan in batch])
    if parsed is None:
        if len(batch) == 1:
            unreadable.append(batch[0][0])
            return
        middle = len(batch) // 2
        _read_columnar(keys, batch[:middle], parts, retry, unreadable)
        _read_columnar(keys, batch[middle:], parts, retry, unreadable)
        return
    table, row_message, again = parsed
    positions = np.array([k for k, _, _ in batch], dtype=np.int64)
    parts.append((table, positions[row_message]))
    retry.extend(positions[again].tolist())


def _in_arrival_order(parts: list[tuple[pa.Table, np.ndarray]]) -> ReadingColumns:
    import numpy as np
    import pyarrow as pa

    if len(parts) == 1:
        return ReadingColumns.from_arrow(parts[0][0])
    table = pa.concat_tables([part for part, _ in parts])
    order = np.argsort(np.concatenate([rows for _, rows in parts]), kind="stable")
    return ReadingColumns.from_arrow(table.take(pa.array(order)))


def warm_up() -> None:
    """Load Arrow's JSON reader and compute kernels (about a third of a second, once) before
    the first messages arrive instead of on them."""
    plan = ColumnarPlan(("ts", "value", None), "d", "s", "t", None, 1000, -math.inf, math.inf)
    payload = b'[{"ts":0,"value":0}]'
    message = _Inbound(mid=0, qos=0, topic="t", payload=payload, generation=0, received_us=0)
    _parse_columnar(plan.keys, [(message, plan)])


def _parse_columnar(
    keys: tuple[str, str, str | None], batch: list[tuple[Message, ColumnarPlan]]
) -> tuple[pa.Table, np.ndarray, list[int]] | None:
    """Readings of ``batch`` in one Arrow call: the table (spool schema), the batch position
    of each reading's message, and the positions of messages the reference parser must read
    (a missing or null field, a timestamp out of range, an empty array). ``None`` when Arrow
    cannot read the batch (a value of another type, invalid JSON, a message adding rows).

    Each message becomes one line ``{"i":<position>,"r":<its array>}`` (an object body is
    wrapped in ``[...]``). A line can only end where its own message ends: JSON strings
    cannot hold the newline, and anything left open makes the next line invalid. The check
    that the rows are exactly ``i`` = 0..n-1 rejects a message that tries to add rows.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.json as pj

    lines = []
    for i, (message, _) in enumerate(batch):
        body = message.payload
        if body[:1] == b"{":
            body = b"[" + body + b"]"
        lines.append(b'{"i":%d,"r":%b}\n' % (i, body))
    text = b"".join(lines)
    ts_key, value_key, quality_key = keys
    fields = [pa.field(ts_key, pa.int64()), pa.field(value_key, pa.float64())]
    if quality_key:
        fields.append(pa.field(quality_key, pa.string()))
    schema = pa.schema([("i", pa.int64()), ("r", pa.list_(pa.struct(fields)))])
    try:
        table = pj.read_json(
            pa.py_buffer(text),
            read_options=pj.ReadOptions(use_threads=False, block_size=len(text) + 1),
            parse_options=pj.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="ignore"
            ),
        )
    except Exception:  # any message Arrow cannot read: the reference parser decides
        return None
    count = len(batch)
    positions = table.column("i")
    if (
        table.num_rows != count
        or positions.null_count
        or not np.array_equal(positions.to_numpy(), np.arange(count))
    ):
        return None
    lists = table.column("r").combine_chunks()
    if lists.null_count:
        return None
    return _columns_of(lists, keys, batch)


def _columns_of(
    lists: pa.ListArray,
    keys: tuple[str, str, str | None],
    batch: list[tuple[Message, ColumnarPlan]],
) -> tuple[pa.Table, np.ndarray, list[int]]:
    """The spool's columns from the parsed items, with the reference parser's rules."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    ts_key, value_key, quality_key = keys
    plans = [plan for _, plan in batch]
    lengths = pc.list_value_length(lists).to_numpy()
    items = lists.flatten()
    row_message = np.repeat(np.arange(len(batch)), lengths)
    scale = np.array([plan.scale for plan in plans], dtype=np.int64)[row_message]
    stamps = items.field(ts_key).fill_null(-1).to_numpy()
    value = items.field(value_key)
    quality = items.field(quality_key) if quality_key else None
    retry = _to_retry(items, value, quality, stamps, scale, row_message, lengths, batch)
    keep = ~retry[row_message]
    if not keep.all():
        mask = pa.array(keep)
        value, row_message = value.filter(mask), row_message[keep]
        stamps, scale = stamps[keep], scale[keep]
        quality = quality.filter(mask) if quality is not None else None
    quality = pa.repeat("good", len(row_message)) if quality is None else quality
    quality = _out_of_range_bad(value, quality.fill_null("good"), plans, row_message)
    table = _spool_table(batch, row_message, stamps * scale, value, quality)
    return table, row_message, np.flatnonzero(retry).tolist()


def _to_retry(
    items: pa.StructArray,
    value: pa.Array,
    quality: pa.Array | None,
    stamps: np.ndarray,
    scale: np.ndarray,
    row_message: np.ndarray,
    lengths: np.ndarray,
    batch: list[tuple[Message, ColumnarPlan]],
) -> np.ndarray:
    """Per message: whether the reference parser must read it, because one of its items is
    not an object, lacks a value or a timestamp, has a timestamp outside 1970-2261 or a
    quality spelled ``null`` (a missing quality means good), or because it is empty."""
    import numpy as np

    doubtful = (
        items.is_null().to_numpy(zero_copy_only=False)
        | value.is_null().to_numpy(zero_copy_only=False)
        | (stamps < 0)
        | (stamps >= _MAX_US // scale)
    )
    if quality is not None and quality.null_count:
        nulls = quality.is_null().to_numpy(zero_copy_only=False)
        spelled = np.array([b"null" in message.payload for message, _ in batch])
        doubtful |= nulls & spelled[row_message]
    retry = lengths == 0
    retry[row_message[doubtful]] = True
    return retry


def _out_of_range_bad(
    value: pa.Array, quality: pa.Array, plans: list[ColumnarPlan], row_message: np.ndarray
) -> pa.Array:
    """Quality ``bad`` for finite values outside their sensor's valid range."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    numbers = value.to_numpy(zero_copy_only=False)
    low = np.array([plan.low for plan in plans])[row_message]
    high = np.array([plan.high for plan in plans])[row_message]
    with np.errstate(invalid="ignore"):
        outside = np.isfinite(numbers) & ((numbers < low) | (numbers > high))
    return pc.if_else(pa.array(outside), "bad", quality) if outside.any() else quality


def _spool_table(
    batch: list[tuple[Message, ColumnarPlan]],
    row_message: np.ndarray,
    ts_us: np.ndarray,
    value: pa.Array,
    quality: pa.Array,
) -> pa.Table:
    """The readings in the spool's schema; per-message values are repeated by ``take``."""
    import pyarrow as pa

    index = pa.array(row_message)
    text, number = pa.string(), pa.int64()

    def per_message(values: list[Any], kind: pa.DataType) -> pa.Array:
        return pa.array(values, type=kind).take(index)

    plans = [plan for _, plan in batch]
    return pa.Table.from_arrays(
        [
            per_message([p.device_id for p in plans], text),
            per_message([p.sensor_id for p in plans], text),
            per_message([p.sensor_type for p in plans], text),
            pa.array(ts_us, type=number),
            value,
            per_message([p.unit for p in plans], text),
            quality.cast(text),
            pa.repeat("mqtt", len(row_message)).cast(text),
            per_message([m.received_us for m, _ in batch], number),
            per_message([m.topic for m, _ in batch], text),
        ],
        schema=spool_schema(),
    )


# -- the collector -------------------------------------------------------------------------


@dataclass
class MqttStats:
    messages: int = 0
    readings: int = 0
    duplicates: int = 0
    malformed: int = 0
    unknown_topic: int = 0
    columnar_messages: int = 0  # parsed by Arrow, the rest by the reference parser
    acked: int = 0
    stale_acks_skipped: int = 0
    spool_full: int = 0
    connects: int = 0
    connect_failures: int = 0
    problems: list[str] = field(default_factory=list)  # the latest few, for logs and tests


@dataclass(frozen=True)
class BrokerConfig:
    """One broker connection; devices with equal settings share it."""

    host: str
    port: int
    tls: bool
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False
    username_env: str | None = None
    password_env: str | None = None

    @classmethod
    def of(cls, device: DeviceSpec) -> BrokerConfig:
        host, port = device.host_port
        tls, creds = device.tls, device.credentials
        return cls(
            host=host,
            port=port,
            tls=device.uses_tls,
            ca_file=tls.ca_file if tls else None,
            cert_file=tls.cert_file if tls else None,
            key_file=tls.key_file if tls else None,
            insecure=tls.insecure if tls else False,
            username_env=creds.username_env if creds else None,
            password_env=creds.password_env if creds else None,
        )

    def label(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def connect_error_text(broker: BrokerConfig, devices: Sequence[str], error: object) -> str:
    """Why a connection attempt failed and what to check, naming the broker and its devices."""
    where = f"MQTT {broker.label()} (devices {', '.join(devices) or '-'})"
    if isinstance(error, ssl.SSLCertVerificationError):
        reason = error.verify_message or str(error)
        if "mismatch" in reason.lower() or "hostname" in reason.lower():
            hint = (
                f"the broker's certificate is not issued for {broker.host!r}: use a host name "
                "or address listed in the certificate in the endpoint (tls.insecure: true skips "
                "this check; test rigs only)"
            )
        else:
            hint = (
                f"the broker's certificate is not trusted with tls.ca_file={broker.ca_file!r}"
                " (the system CAs when unset): set tls.ca_file to the CA certificate (PEM) that "
                "signed the broker's certificate, and check the certificate's validity dates"
            )
        return f"{where}: TLS certificate verification failed ({reason}); {hint}"
    if isinstance(error, ssl.SSLError):
        return (
            f"{where}: TLS handshake failed ({error.reason or error}); check that the endpoint "
            "is the broker's TLS listener (mqtts://, usually port 8883) and, if the broker asks "
            f"for client certificates, tls.cert_file={broker.cert_file!r} and "
            f"tls.key_file={broker.key_file!r} (a pair signed by a CA the broker trusts)"
        )
    if isinstance(error, ConnectionRefusedError):
        return (
            f"{where}: connection refused; check the endpoint's host and port and that the "
            "broker is running (reconnecting with back-off)"
        )
    if isinstance(error, socket.gaierror):
        return f"{where}: cannot resolve {broker.host!r} ({error}); check the endpoint's host"
    if isinstance(error, TimeoutError | socket.timeout):
        return (
            f"{where}: no answer ({error}); check the endpoint, firewalls and that the broker "
            "is running (reconnecting with back-off)"
        )
    return (
        f"{where}: cannot connect ({type(error).__name__}: {error}); check the endpoint and "
        "the network (reconnecting with back-off)"
    )


@dataclass
class _Inbound:
    mid: int
    qos: int
    topic: str
    payload: bytes
    generation: int
    received_us: int


class MqttCollector:
    """One persistent MQTT v5 session feeding the spool."""

    def __init__(
        self,
        broker: BrokerConfig,
        registry: Registry,
        devices: Sequence[DeviceSpec],
        spool: Spool,
        *,
        client_id: str,
        session_expiry_s: int = 86400,
        shared_group: str | None = None,
        keepalive_s: int = 30,
    ) -> None:
        self.broker = broker
        self.spool = spool
        self.client_id = client_id
        self.session_expiry_s = session_expiry_s
        self.shared_group = shared_group
        self.keepalive_s = keepalive_s
        self.stats = MqttStats()
        self.sparkplug = SparkplugDecoder(self._request_rebirth)
        self.ready = threading.Event()  # set once the subscriptions are confirmed
        self._router = Router(registry, devices)
        self._subscribed: set[str] = set()
        self._inbox: queue.Queue[_Inbound] = queue.Queue()
        self._generation = 0
        self._stopping = threading.Event()
        self._stop_deadline = float("inf")
        self._ingest_thread: threading.Thread | None = None
        self._client: mqtt.Client | None = None
        self._lock = threading.Lock()
        self._last_failure: str | None = None

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
            reconnect_on_failure=True,
        )
        if self.broker.username_env or self.broker.password_env:
            from integration_platform.streams.devices import Credentials

            user, password = Credentials(
                username_env=self.broker.username_env, password_env=self.broker.password_env
            ).resolve()
            client.username_pw_set(user, password)
        if self.broker.tls:
            try:
                client.tls_set(
                    ca_certs=self.broker.ca_file,
                    certfile=self.broker.cert_file,
                    keyfile=self.broker.key_file,
                )
            except (OSError, ssl.SSLError) as exc:
                from integration_platform.streams.devices import RegistryError

                raise RegistryError(
                    [
                        f"MQTT {self.broker.label()} (devices {', '.join(self._devices())}): "
                        f"cannot load the TLS files tls.ca_file={self.broker.ca_file!r}, "
                        f"tls.cert_file={self.broker.cert_file!r}, "
                        f"tls.key_file={self.broker.key_file!r} ({exc}); check that the paths "
                        "exist and hold PEM certificates and an unencrypted key that match"
                    ]
                ) from exc
            client.tls_insecure_set(self.broker.insecure)
        warm_up()
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_socket_open = _no_delay
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.session_expiry_s
        # clean_start=False on the very first connect: paho's default (clean first only)
        # drops the broker's queue across a restart.
        client.connect_async(
            self.broker.host,
            self.broker.port,
            keepalive=self.keepalive_s,
            clean_start=False,
            properties=properties,
        )
        self._client = client
        self._ingest_thread = threading.Thread(
            target=self._ingest, name=f"mqtt-ingest-{self.client_id}", daemon=True
        )
        self._ingest_thread.start()
        client.loop_start()
        log.info(
            "MQTT %s as %r: %d topic filters, session expiry %ds",
            self.broker.label(),
            self.client_id,
            len(self._router.filters()),
            self.session_expiry_s,
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Spool and acknowledge what was received, then disconnect (the session stays).

        Under a steady flood the drain ends after ``timeout``; messages not spooled by then
        stay unacknowledged and the broker redelivers them on the next start.
        """
        self._stop_deadline = time.monotonic() + timeout
        self._stopping.set()
        if self._ingest_thread is not None:
            self._ingest_thread.join(timeout + 5)
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()

    def update(self, registry: Registry, devices: Sequence[DeviceSpec]) -> None:
        """Apply a reloaded registry: new routes, and (un)subscribe the changed filters."""
        router = Router(registry, devices)
        with self._lock:
            self._router = router
        client = self._client
        if client is None or not client.is_connected():
            return  # on_connect subscribes to the current filters
        wanted = set(self._filters())
        removed = sorted(self._subscribed - wanted)
        added = sorted(wanted - self._subscribed)
        if removed:
            client.unsubscribe(removed)
        if added:
            self.ready.clear()  # set again by the SUBACK
            client.subscribe([(f, 1) for f in added])
        self._subscribed = wanted

    # -- paho callbacks (network thread) ------------------------------------------------

    def _filters(self) -> list[str]:
        filters = self._router.filters()
        if self.shared_group:
            return [f"$share/{self.shared_group}/{f}" for f in filters]
        return filters

    def _devices(self) -> list[str]:
        return sorted({device.device_id for _, device, _ in self._router.routes})

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            hint = (
                "check the credentials (the variables named by credentials.username_env and "
                "password_env) and the broker's ACL for this client id"
                if "user" in str(reason).lower() or "authori" in str(reason).lower()
                else "check the broker's log"
            )
            self._connect_failed(
                f"MQTT {self.broker.label()} (devices {', '.join(self._devices())}) refused the "
                f"connection of client id {self.client_id!r}: {reason}; {hint}"
            )
            return
        self._last_failure = None
        self._generation += 1
        self.stats.connects += 1
        log.info(
            "MQTT connected to %s (session present: %s)",
            self.broker.label(),
            flags.session_present,
        )
        filters = self._filters()
        self._subscribed = set(filters)
        if filters:
            client.subscribe([(f, 1) for f in filters])
        else:
            self.ready.set()

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        # paho calls this from its ``except OSError`` around the connection attempt, so the
        # exception being handled is the reason (TLS verification, refused, timeout, ...).
        self._connect_failed(connect_error_text(self.broker, self._devices(), sys.exception()))

    def _connect_failed(self, text: str) -> None:
        """Log a failed connection attempt: a new reason at once, a repeated one now and then."""
        self.stats.connect_failures += 1
        problems = self.stats.problems
        problems.append(text)
        del problems[:-20]
        if text != self._last_failure or self.stats.connect_failures % 20 == 0:
            log.error("%s", text)
        self._last_failure = text

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if not self._stopping.is_set():
            log.warning("MQTT %s disconnected (%s); reconnecting", self.broker.label(), reason)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            log.error("MQTT subscription refused: %s", ", ".join(failed))
        self.ready.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self._inbox.put(
            _Inbound(
                mid=message.mid,
                qos=message.qos,
                topic=message.topic,
                payload=message.payload,
                generation=self._generation,
                received_us=time.time_ns() // 1000,
            )
        )

    # -- ingest thread ------------------------------------------------------------------

    def _ingest(self) -> None:
        while True:
            if self._stopping.is_set() and time.monotonic() > self._stop_deadline:
                return
            try:
                first = self._inbox.get(timeout=0.2)
            except queue.Empty:
                if self._stopping.is_set():
                    return
                continue
            group = [first]
            while len(group) < INGEST_GROUP:
                try:
                    group.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            self._handle(group)

    def _handle(self, group: list[_Inbound]) -> None:
        stats = self.stats
        with self._lock:
            router = self._router
        parsed = parse_group(router, group, self.sparkplug)
        columns = parsed.columns
        stats.messages += len(group)
        stats.columnar_messages += parsed.columnar_messages
        skipped = stats.malformed + stats.unknown_topic
        stats.unknown_topic += parsed.unknown_topics
        stats.malformed += parsed.malformed
        for number, problem in enumerate(parsed.problems, skipped + 1):
            self._problem(problem, number)
        append = getattr(self.spool, "append_columns", None)
        while True:
            try:
                if append is not None:
                    result = append(columns)
                else:  # a sink without the columnar entry point
                    result = self.spool.append(columns.readings())
                break
            except SpoolFullError as exc:
                # Not acknowledged: the broker keeps the messages (back pressure).
                stats.spool_full += 1
                if stats.spool_full % 30 == 1:
                    log.error("%s", exc)
                if self._stopping.wait(1.0):
                    return
        stats.readings += result.accepted
        stats.duplicates += result.duplicates
        client = self._client
        for inbound in group:
            if inbound.qos == 0 or client is None:
                continue
            if inbound.generation != self._generation:
                stats.stale_acks_skipped += 1  # redelivered on the new connection
                continue
            client.ack(inbound.mid, inbound.qos)
            stats.acked += 1

    def _request_rebirth(self, group_id: str, edge_node_id: str) -> None:
        """Ask a Sparkplug edge node for its births again (NCMD, as the spec says: QoS 0)."""
        client = self._client
        if client is None:
            return
        payload, qos = rebirth_request()
        client.publish(f"spBv1.0/{group_id}/NCMD/{edge_node_id}", payload, qos=qos)

    def _problem(self, text: str, number: int) -> None:
        """Keep the latest reasons; log the first ten, then every thousandth."""
        problems = self.stats.problems
        problems.append(text)
        del problems[:-20]
        if number <= 10 or number % 1000 == 0:
            log.warning("MQTT message skipped (%d so far): %s", number, text)


def _no_delay(client: Any, userdata: Any, sock: Any) -> None:
    """TCP_NODELAY: Nagle's algorithm held small PUBACKs/PUBLISHes back by tens of ms."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
