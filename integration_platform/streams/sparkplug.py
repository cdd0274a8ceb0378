"""Sparkplug B over MQTT: birth, data and death messages of edge nodes, as readings.

Sparkplug B (Eclipse Tahu, spec 3.0) puts protobuf payloads on
``spBv1.0/<group>/<type>/<edge node>[/<device>]``. A birth (NBIRTH, DBIRTH) lists every
metric with its name, datatype and usually a numeric *alias*; later data messages (NDATA,
DDATA) may carry the alias alone, so a consumer must keep what each birth declared. A death
(NDEATH, DDEATH) invalidates it until the next birth. A consumer that joined after the birth
cannot resolve aliases; it may ask the edge node to publish its births again with an NCMD
``Node Control/Rebirth`` — that is a write to the plant, so it is opt-in per device.
Sequence numbers are not checked: they count every message of an edge node, and a collector
subscribes per device, so it sees only part of the sequence by design.

The schema is built at import from descriptors (no generated code, no ``protoc``), with the
fields a reader needs; fields it leaves out (datasets, templates, metadata) are kept by
protobuf as unknown fields and ignored.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import TYPE_CHECKING, Any, NamedTuple

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from integration_platform.streams.readings import Reading, ReadingColumns, from_us

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from integration_platform.streams.devices import DeviceSpec

log = logging.getLogger(__name__)

NAMESPACE = "spBv1.0"
REBIRTH_METRIC = "Node Control/Rebirth"
MESSAGE_TYPES = frozenset(
    {"NBIRTH", "NDEATH", "NDATA", "NCMD", "DBIRTH", "DDEATH", "DDATA", "DCMD", "STATE"}
)


class DataType(IntEnum):
    """Sparkplug B metric datatypes (spec 3.0, section 6.4.16); the ones a reading can hold."""

    INT8 = 1
    INT16 = 2
    INT32 = 3
    INT64 = 4
    UINT8 = 5
    UINT16 = 6
    UINT32 = 7
    UINT64 = 8
    FLOAT = 9
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12
    DATETIME = 13
    TEXT = 14


_SIGNED_32 = {DataType.INT8, DataType.INT16, DataType.INT32}


# -- the schema ------------------------------------------------------------------------------

_FIELD = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _FIELD.LABEL_OPTIONAL, _FIELD.LABEL_REPEATED
# The value fields of Metric (10-16) and PropertyValue (3-9), in field-number order.
_SCALARS = (
    ("int_value", _FIELD.TYPE_UINT32),
    ("long_value", _FIELD.TYPE_UINT64),
    ("float_value", _FIELD.TYPE_FLOAT),
    ("double_value", _FIELD.TYPE_DOUBLE),
    ("boolean_value", _FIELD.TYPE_BOOL),
    ("string_value", _FIELD.TYPE_STRING),
    ("bytes_value", _FIELD.TYPE_BYTES),
)


def _add_field(
    message: Any,
    name: str,
    number: int,
    kind: int,
    *,
    repeated: bool = False,
    type_name: str | None = None,
    oneof: int | None = None,
) -> None:
    spec = message.field.add(
        name=name, number=number, type=kind, label=_REPEATED if repeated else _OPTIONAL
    )
    if type_name:
        spec.type_name = type_name
    if oneof is not None:
        spec.oneof_index = oneof


@functools.cache
def payload_class() -> type[Message]:
    """The ``org.eclipse.tahu.protobuf.Payload`` message class, fields as in the spec."""
    package = "org.eclipse.tahu.protobuf"
    file = descriptor_pb2.FileDescriptorProto(
        name="integration_platform_sparkplug_b.proto", package=package, syntax="proto2"
    )
    payload = file.message_type.add(name="Payload")
    _add_field(payload, "timestamp", 1, _FIELD.TYPE_UINT64)
    _add_field(
        payload,
        "metrics",
        2,
        _FIELD.TYPE_MESSAGE,
        repeated=True,
        type_name=f".{package}.Payload.Metric",
    )
    _add_field(payload, "seq", 3, _FIELD.TYPE_UINT64)
    _add_field(payload, "uuid", 4, _FIELD.TYPE_STRING)
    _add_field(payload, "body", 5, _FIELD.TYPE_BYTES)

    value = payload.nested_type.add(name="PropertyValue")
    value.oneof_decl.add(name="value")
    _add_field(value, "type", 1, _FIELD.TYPE_UINT32)
    _add_field(value, "is_null", 2, _FIELD.TYPE_BOOL)
    for number, (name, kind) in enumerate(_SCALARS, start=3):
        _add_field(value, name, number, kind, oneof=0)

    properties = payload.nested_type.add(name="PropertySet")
    _add_field(properties, "keys", 1, _FIELD.TYPE_STRING, repeated=True)
    _add_field(
        properties,
        "values",
        2,
        _FIELD.TYPE_MESSAGE,
        repeated=True,
        type_name=f".{package}.Payload.PropertyValue",
    )

    metric = payload.nested_type.add(name="Metric")
    metric.oneof_decl.add(name="value")
    _add_field(metric, "name", 1, _FIELD.TYPE_STRING)
    _add_field(metric, "alias", 2, _FIELD.TYPE_UINT64)
    _add_field(metric, "timestamp", 3, _FIELD.TYPE_UINT64)
    _add_field(metric, "datatype", 4, _FIELD.TYPE_UINT32)
    _add_field(metric, "is_historical", 5, _FIELD.TYPE_BOOL)
    _add_field(metric, "is_transient", 6, _FIELD.TYPE_BOOL)
    _add_field(metric, "is_null", 7, _FIELD.TYPE_BOOL)
    _add_field(
        metric, "properties", 9, _FIELD.TYPE_MESSAGE, type_name=f".{package}.Payload.PropertySet"
    )
    for number, (name, kind) in enumerate(_SCALARS, start=10):
        _add_field(metric, name, number, kind, oneof=0)

    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.Payload"))


# -- topics ----------------------------------------------------------------------------------


class SparkplugTopic(NamedTuple):
    group_id: str
    message_type: str
    edge_node_id: str
    device_id: str | None

    @classmethod
    def parse(cls, topic: str) -> SparkplugTopic | None:
        levels = topic.split("/")
        if len(levels) not in (4, 5) or levels[0] != NAMESPACE or levels[2] not in MESSAGE_TYPES:
            return None
        return cls(levels[1], levels[2], levels[3], levels[4] if len(levels) == 5 else None)

    @property
    def source(self) -> tuple[str, str, str | None]:
        """Whose metrics: the edge node's own (device None) or one device's."""
        return (self.group_id, self.edge_node_id, self.device_id)


def topic_filter(group_id: str, edge_node_id: str, device_id: str | None) -> str:
    """Every message type of one edge node (device None) or one of its devices."""
    tail = f"/{device_id}" if device_id else ""
    return f"{NAMESPACE}/{group_id}/+/{edge_node_id}{tail}"


# -- values ----------------------------------------------------------------------------------


class Metric(NamedTuple):
    """One metric to encode (simulator, tests): a name or an alias or both."""

    name: str | None
    value: float | bool | None
    datatype: DataType = DataType.DOUBLE
    alias: int | None = None
    timestamp_ms: int | None = None


def encode_payload(
    metrics: Iterable[Metric], *, seq: int | None = None, timestamp_ms: int | None = None
) -> bytes:
    """A Sparkplug B payload, as an edge node sends it."""
    payload = payload_class()()
    if timestamp_ms is not None:
        payload.timestamp = timestamp_ms
    if seq is not None:
        payload.seq = seq
    for item in metrics:
        metric = payload.metrics.add()
        if item.name is not None:
            metric.name = item.name
        if item.alias is not None:
            metric.alias = item.alias
        if item.timestamp_ms is not None:
            metric.timestamp = item.timestamp_ms
        metric.datatype = int(item.datatype)
        if item.value is None:
            metric.is_null = True
        else:
            _set_value(metric, item.datatype, item.value)
    return payload.SerializeToString()


def _set_value(metric: Any, datatype: DataType, value: float | bool) -> None:
    if datatype in _SIGNED_32 or datatype in {DataType.UINT8, DataType.UINT16, DataType.UINT32}:
        metric.int_value = int(value) & 0xFFFFFFFF
    elif datatype in {DataType.INT64, DataType.UINT64, DataType.DATETIME}:
        metric.long_value = int(value) & 0xFFFFFFFFFFFFFFFF
    elif datatype == DataType.FLOAT:
        metric.float_value = float(value)
    elif datatype == DataType.BOOLEAN:
        metric.boolean_value = bool(value)
    elif datatype in {DataType.STRING, DataType.TEXT}:
        metric.string_value = str(value)
    else:
        metric.double_value = float(value)


class NotNumeric(ValueError):
    """A metric whose value cannot be a reading (text that is not a number, bytes)."""


def metric_value(metric: Any, datatype: int | None) -> float | None:
    """The metric's value as a float; ``None`` for a null metric.

    Int8/16/32 travel in the unsigned 32-bit field as two's complement and Int64 in the
    unsigned 64-bit one, so the sign comes back from the declared datatype.
    """
    if metric.is_null:
        return None
    which = metric.WhichOneof("value")
    if which is None:
        return None
    raw = getattr(metric, which)
    if which == "int_value" and datatype in _SIGNED_32:
        return float(raw - (1 << 32) if raw >= 1 << 31 else raw)
    if which == "long_value" and datatype == DataType.INT64:
        return float(raw - (1 << 64) if raw >= 1 << 63 else raw)
    if which == "boolean_value":
        return 1.0 if raw else 0.0
    if which == "string_value":
        try:
            return float(raw)
        except ValueError:
            raise NotNumeric(f"text {raw[:40]!r} is not a number") from None
    if which == "bytes_value":
        raise NotNumeric("bytes are not a number")
    return float(raw)


def metric_quality(metric: Any) -> str:
    """From the ``Quality`` property (OPC quality codes: 192 good, 64-191 uncertain, below
    64 bad), as Ignition and most edge nodes send it; ``good`` without it."""
    properties = metric.properties
    for key, value in zip(properties.keys, properties.values, strict=False):
        if key.lower() == "quality" and value.WhichOneof("value") in {"int_value", "long_value"}:
            code = getattr(value, value.WhichOneof("value"))
            return "good" if code >= 192 else "uncertain" if code >= 64 else "bad"
    return "good"


# -- decoding with state ---------------------------------------------------------------------


@dataclass
class _Declared:
    """What a birth declared for one source: names by alias, datatypes by name."""

    names: dict[int, str] = field(default_factory=dict)
    datatypes: dict[str, int] = field(default_factory=dict)


@dataclass
class SparkplugStats:
    births: int = 0
    deaths: int = 0
    data_messages: int = 0
    unmapped_metrics: int = 0
    transient_metrics: int = 0
    unknown_aliases: int = 0
    rebirths_requested: int = 0


class SparkplugDecoder:
    """Turns Sparkplug B messages into readings, remembering what each birth declared.

    One decoder per collector. ``request_rebirth(group, edge_node)`` is called, at most once
    per ``rebirth_interval_s`` per edge node, when a data message uses an alias no birth has
    declared and the device allows it (``mqtt.sparkplug.request_rebirth``).
    """

    def __init__(
        self,
        request_rebirth: Callable[[str, str], None] | None = None,
        *,
        rebirth_interval_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._request_rebirth = request_rebirth
        self._rebirth_interval_s = rebirth_interval_s
        self._clock = clock
        self._declared: dict[tuple[str, str, str | None], _Declared] = {}
        self._last_rebirth: dict[tuple[str, str], float] = {}
        self.stats = SparkplugStats()

    def decode(
        self, device: DeviceSpec, topic: str, payload: bytes, received_at: datetime
    ) -> tuple[list[Reading], list[str]]:
        """Readings of the device's declared sensors in one message, and what was wrong."""
        parsed = SparkplugTopic.parse(topic)
        if parsed is None:
            return [], [f"not a Sparkplug B topic ({NAMESPACE}/<group>/<type>/<edge>[/<device>])"]
        kind = parsed.message_type
        if kind in {"NCMD", "DCMD", "STATE"}:
            return [], []
        try:
            message = payload_class().FromString(payload)
        except DecodeError:
            return [], [f"not a Sparkplug B payload: {payload[:40]!r}"]
        if kind.endswith("DEATH"):
            self._forget(parsed)
            return [], []
        if kind.endswith("BIRTH"):
            self._remember(parsed, message)
        else:
            self.stats.data_messages += 1
        return self._readings(device, parsed, message, topic, received_at)

    def decode_into(
        self, device: DeviceSpec, topic: str, payload: bytes, received_us: int, out: ReadingColumns
    ) -> list[str]:
        """:meth:`decode` appending to ``out`` (the MQTT collector's columns); the problems."""
        readings, problems = self.decode(device, topic, payload, from_us(received_us))
        for reading in readings:
            out.add(reading)
        return problems

    # -- births and deaths ---------------------------------------------------------------

    def _remember(self, topic: SparkplugTopic, message: Any) -> None:
        self.stats.births += 1
        declared = _Declared()
        for metric in message.metrics:
            if not metric.name:
                continue
            if metric.HasField("alias"):
                declared.names[metric.alias] = metric.name
            if metric.datatype:
                declared.datatypes[metric.name] = metric.datatype
        self._declared[topic.source] = declared

    def _forget(self, topic: SparkplugTopic) -> None:
        """A node's death takes its devices' births with it; a device's only its own."""
        self.stats.deaths += 1
        if topic.device_id is not None:
            self._declared.pop(topic.source, None)
            return
        for source in [s for s in self._declared if s[:2] == topic.source[:2]]:
            del self._declared[source]

    # -- data ----------------------------------------------------------------------------

    def _readings(
        self,
        device: DeviceSpec,
        topic: SparkplugTopic,
        message: Any,
        origin: str,
        received_at: datetime,
    ) -> tuple[list[Reading], list[str]]:
        declared = self._declared.get(topic.source, _Declared())
        sensors = {sensor.metric or sensor.sensor_id: sensor for sensor in device.sensors}
        readings: list[Reading] = []
        problems: list[str] = []
        for metric in message.metrics:
            name = metric.name or declared.names.get(metric.alias)
            if name is None:
                self.stats.unknown_aliases += 1
                asked = self._ask_rebirth(device, topic)
                problems.append(
                    f"alias {metric.alias}: no birth declared it (the collector joined after "
                    "the birth; "
                    + (
                        "the edge node was asked to publish its births again)"
                        if asked
                        else "set mqtt.sparkplug.request_rebirth to ask the edge node again)"
                    )
                )
                continue
            sensor = sensors.get(name)
            if sensor is None:
                self.stats.unmapped_metrics += 1  # births list metrics no sensor names
                continue
            if metric.is_transient:  # the edge node asks that it not be historized
                self.stats.transient_metrics += 1
                continue
            try:
                value = metric_value(metric, metric.datatype or declared.datatypes.get(name))
            except NotNumeric as exc:
                problems.append(f"metric {name!r}: {exc}")
                continue
            stamp = metric.timestamp or message.timestamp
            ts = datetime.fromtimestamp(stamp / 1000, UTC) if stamp else received_at
            quality = metric_quality(metric)
            if value is not None and math.isfinite(value) and not sensor.in_range(value):
                quality = "bad"
            readings.append(
                Reading.of(
                    device,
                    sensor,
                    ts=ts,
                    value=value,
                    quality=quality if value is not None else "bad",
                    protocol="mqtt",
                    ingested_at=received_at,
                    origin=origin,
                )
            )
        return readings, problems

    def _ask_rebirth(self, device: DeviceSpec, topic: SparkplugTopic) -> bool:
        """Whether the edge node was (or was lately) asked for its births."""
        settings = device.mqtt.sparkplug if device.mqtt else None
        if self._request_rebirth is None or settings is None or not settings.request_rebirth:
            return False
        node = topic.source[:2]
        now = self._clock()
        last = self._last_rebirth.get(node)
        if last is not None and now - last < self._rebirth_interval_s:
            return True
        self._last_rebirth[node] = now
        self.stats.rebirths_requested += 1
        log.info("asking Sparkplug edge node %s/%s to publish its births again", *node)
        self._request_rebirth(*node)
        return True


def rebirth_request() -> tuple[bytes, int]:
    """The NCMD payload asking an edge node to rebirth, and its QoS (0, as the spec says)."""
    payload = encode_payload(
        [Metric(REBIRTH_METRIC, True, DataType.BOOLEAN)], timestamp_ms=int(time.time() * 1000)
    )
    return payload, 0
