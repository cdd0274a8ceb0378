"""Simulated Sparkplug B edge nodes for the MQTT devices declared with ``format: sparkplug_b``.

Each edge node publishes an NBIRTH, then a DBIRTH per device naming every metric with an
alias, then DDATA (or NDATA) carrying aliases only, as production edge nodes do to keep
payloads small. It answers an NCMD ``Node Control/Rebirth`` by publishing its births again on
the next tick, so a collector that joined late can learn the aliases.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import datetime

from google.protobuf.message import DecodeError

from integration_platform.streams.devices import DeviceSpec, Registry
from integration_platform.streams.sparkplug import (
    NAMESPACE,
    REBIRTH_METRIC,
    DataType,
    Metric,
    SparkplugTopic,
    encode_payload,
    payload_class,
)

log = logging.getLogger(__name__)

Node = tuple[str, str]


def is_sparkplug(device: DeviceSpec) -> bool:
    return device.mqtt is not None and device.mqtt.format == "sparkplug_b"


class SimulatedEdgeNodes:
    """Births, data and rebirths of the registry's Sparkplug devices, with per-node ``seq``."""

    def __init__(self, registry: Registry) -> None:
        self._devices = [d for d in registry.enabled("mqtt") if is_sparkplug(d)]
        self._seq: dict[Node, int] = {}
        self._born: set[tuple[str, str, str | None]] = set()
        self._rebirth_due: set[Node] = set()
        self._lock = threading.Lock()
        self.rebirths = 0

    def command_topics(self) -> list[str]:
        """NCMD topics of the simulated nodes, to subscribe to."""
        nodes = {_node(device) for device in self._devices}
        return [f"{NAMESPACE}/{group}/NCMD/{edge}" for group, edge in sorted(nodes)]

    def on_command(self, topic: str, payload: bytes) -> None:
        """An NCMD arrived (paho's thread): a rebirth request births the node again."""
        parsed = SparkplugTopic.parse(topic)
        if parsed is None or parsed.message_type != "NCMD":
            return
        try:
            message = payload_class().FromString(payload)
        except DecodeError:
            log.warning("ignoring an NCMD that is not a Sparkplug B payload on %s", topic)
            return
        if any(m.name == REBIRTH_METRIC and m.boolean_value for m in message.metrics):
            with self._lock:
                self._rebirth_due.add((parsed.group_id, parsed.edge_node_id))
                self.rebirths += 1

    def messages(
        self, device: DeviceSpec, values: dict[str, float], now: datetime
    ) -> list[tuple[str, bytes]]:
        """(topic, payload) for one tick of one device: births first when due, then data."""
        assert device.mqtt is not None and device.mqtt.sparkplug is not None
        settings = device.mqtt.sparkplug
        node = _node(device)
        source = (*node, settings.device_id)
        stamp = int(now.timestamp() * 1000)
        out: list[tuple[str, bytes]] = []
        with self._lock:
            rebirth = node in self._rebirth_due
            if rebirth:
                self._rebirth_due.discard(node)
                self._born = {s for s in self._born if s[:2] != node}
        if node not in {s[:2] for s in self._born} or rebirth:
            birth = self._node_birth(node, device, values, stamp)
            out.append((self._topic(node, "NBIRTH", None), birth))
            self._born.add((*node, None))
        if source not in self._born:
            kind = "DBIRTH" if settings.device_id else "NBIRTH"
            metrics = self._metrics(device, values, stamp, with_names=True)
            if settings.device_id:  # a node-level device's metrics went with the NBIRTH
                out.append(
                    (
                        self._topic(node, kind, settings.device_id),
                        self._payload(node, metrics, stamp),
                    )
                )
            self._born.add(source)
            return out
        kind = "DDATA" if settings.device_id else "NDATA"
        metrics = self._metrics(device, values, stamp, with_names=False)
        out.append(
            (self._topic(node, kind, settings.device_id), self._payload(node, metrics, stamp))
        )
        return out

    def _node_birth(
        self, node: Node, device: DeviceSpec, values: dict[str, float], stamp: int
    ) -> bytes:
        """NBIRTH: seq restarts at 0; the node's own metrics include the rebirth control and,
        for a node-level device, its sensors."""
        self._seq[node] = -1
        metrics = [
            Metric("bdSeq", 0, DataType.INT64),
            Metric(REBIRTH_METRIC, False, DataType.BOOLEAN),
        ]
        assert device.mqtt is not None and device.mqtt.sparkplug is not None
        if device.mqtt.sparkplug.device_id is None:
            metrics += self._metrics(device, values, stamp, with_names=True)
        return self._payload(node, metrics, stamp)

    def _metrics(
        self, device: DeviceSpec, values: dict[str, float], stamp: int, *, with_names: bool
    ) -> list[Metric]:
        """One metric per sensor; births name them, data does not. Aliases are unique
        across an edge node and its devices, as the specification requires."""
        base = 1000 * self._devices.index(device)
        return [
            Metric(
                (sensor.metric or sensor.sensor_id) if with_names else None,
                round(values[sensor.sensor_id], 4),
                DataType.DOUBLE,
                alias=base + number,
                timestamp_ms=stamp,
            )
            for number, sensor in enumerate(device.sensors, start=1)
        ]

    def _payload(self, node: Node, metrics: Sequence[Metric], stamp: int) -> bytes:
        seq = (self._seq.get(node, -1) + 1) % 256
        self._seq[node] = seq
        return encode_payload(metrics, seq=seq, timestamp_ms=stamp)

    @staticmethod
    def _topic(node: Node, kind: str, device_id: str | None) -> str:
        tail = f"/{device_id}" if device_id else ""
        return f"{NAMESPACE}/{node[0]}/{kind}/{node[1]}{tail}"


def _node(device: DeviceSpec) -> Node:
    assert device.mqtt is not None and device.mqtt.sparkplug is not None
    return (device.mqtt.sparkplug.group_id, device.mqtt.sparkplug.edge_node_id)
