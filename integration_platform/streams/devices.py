"""The device registry: which devices to collect from, how, and what their sensors mean.

Declared in YAML (see ``streams/examples/devices.yaml`` and ``docs/streams.md``), checked with
pydantic, and reported with file, line and field on error, so a typo is fixed in one look.
:class:`RegistryWatcher` reloads the file when it changes; a broken edit is reported and the
last good registry stays in force, so a running collector never stops over a typo.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from integration_platform.mapping.locate import SourceMap

log = logging.getLogger(__name__)

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"  # no '/', '+', '#': ids are topic levels
CODE_PATTERN = r"^[a-z][a-z0-9_]*$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
# OPC-UA node ids in their string form: optional ns=<index>; or nsu=<uri>; then i= s= g= b=.
NODE_ID_PATTERN = r"^((ns=\d+|nsu=[^;]+);)?[isgb]=.+$"
# CoAP resource paths and BACnet object/property identifiers (coap and bacnet devices).
RESOURCE_PATTERN = r"^/[^\s?#]*$"
OBJECT_ID_PATTERN = r"^([a-z][a-z-]*|\d+),\d+$"
PROPERTY_PATTERN = r"^([a-z][a-z-]*|\d+)$"
PLACEHOLDERS = frozenset({"site", "device_id", "sensor_id"})
DEFAULT_TOPIC = "plant/{site}/{device_id}/{sensor_id}"
DEFAULT_COOLDOWN_S = 60.0  # alert episodes of one sensor: at most one a minute

_PATTERN_TEXT = {
    ID_PATTERN: "must be an identifier of letters, digits and _ . : - (no '/', '+', '#')",
    CODE_PATTERN: "must be a lowercase code of letters, digits and '_' (e.g. 'vibration')",
    ENV_NAME_PATTERN: "must be the name of an environment variable (e.g. MQTT_PASSWORD)",
    NODE_ID_PATTERN: "must be an OPC-UA node id such as 'ns=2;s=Pump1.Vibration' or 'i=2258'",
    RESOURCE_PATTERN: "must be a CoAP resource path starting with '/' (e.g. '/sensors/temp')",
    OBJECT_ID_PATTERN: "must be a BACnet object id 'type,instance' (e.g. 'analog-input,1')",
    PROPERTY_PATTERN: "must be a BACnet property name such as 'present-value'",
}

Id = Annotated[str, Field(pattern=ID_PATTERN)]
EnvName = Annotated[str, Field(pattern=ENV_NAME_PATTERN)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Thresholds(_Model):
    """Alert limits of a sensor: evaluated by the alerting part, declared and checked here."""

    warning: float | None = None
    critical: float | None = None
    direction: Literal["above", "below"] = "above"
    hysteresis: float = Field(0.0, ge=0, description="Distance back past a limit to clear it.")
    min_duration_s: float = Field(0.0, ge=0, description="How long a limit must be exceeded.")
    cooldown_s: float = Field(
        DEFAULT_COOLDOWN_S,
        ge=0,
        description="No new alert episode for this sensor within this many seconds (reading "
        "time) of the last one resolving, so a value hovering at a limit does not page twice.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.warning is None and self.critical is None:
            raise ValueError("give warning, critical or both")
        if self.warning is not None and self.critical is not None:
            if self.direction == "above" and self.critical < self.warning:
                raise ValueError("critical must not be below warning when direction is above")
            if self.direction == "below" and self.critical > self.warning:
                raise ValueError("critical must not be above warning when direction is below")
        return self


BIT_TABLES = frozenset({"coil", "discrete"})  # Modbus tables of single bits


class Register(_Model):
    """Where and how a Modbus value is stored.

    Coils and discrete inputs (read-only coils) hold one bit per address, read as 0.0 or 1.0
    before ``scale`` and ``offset``; ``type`` and ``order`` describe registers only.
    """

    table: Literal["holding", "input", "coil", "discrete"] = "holding"
    address: int = Field(ge=0, le=65535, description="Zero-based register or bit address.")
    type: Literal["int16", "uint16", "int32", "uint32", "float32", "float64"] = "uint16"
    order: Literal["ABCD", "CDAB", "BADC", "DCBA"] = "ABCD"
    scale: float = 1.0
    offset: float = 0.0

    @field_validator("type", "order")
    @classmethod
    def _registers_only(cls, value: str, info: ValidationInfo) -> str:
        """Refused on a bit rather than ignored: whoever wrote it expects a register."""
        table = info.data.get("table")
        name = info.field_name or ""
        if table in BIT_TABLES and value != cls.model_fields[name].default:
            kind = "coil" if table == "coil" else "discrete input"
            raise ValueError(
                f"{name} {value!r} does not apply to a {kind}: it is one bit, read as 0 or 1 "
                f"(then scale and offset); leave {name} out"
            )
        return value

    @property
    def bit(self) -> bool:
        return self.table in BIT_TABLES


class Simulation(_Model):
    """Signal shape for ``integration-platform simulate`` (optional; defaults by type)."""

    base: float | None = None
    daily_amplitude: float | None = None
    noise: float | None = None
    drift_per_hour: float | None = None
    fault: bool = False


class SensorSpec(_Model):
    sensor_id: Id
    name: str | None = None
    type: str = Field(pattern=CODE_PATTERN, description="temperature, vibration, ...")
    unit: str | None = None
    valid_range: tuple[float, float] | None = None
    thresholds: Thresholds | None = None
    asset_id: Id | None = None
    register_: Register | None = Field(None, alias="register")  # BaseModel has .register
    node_id: str | None = Field(
        None, pattern=NODE_ID_PATTERN, description="OPC-UA node of the value (opcua devices)."
    )
    resource: str | None = Field(
        None, pattern=RESOURCE_PATTERN, description="CoAP resource path (coap devices)."
    )
    object_id: str | None = Field(
        None, pattern=OBJECT_ID_PATTERN, description="BACnet object (bacnet devices)."
    )
    property_id: str = Field(
        "present-value", pattern=PROPERTY_PATTERN, description="BACnet property read."
    )
    metric: str | None = Field(
        None,
        min_length=1,
        description="Sparkplug B metric name (mqtt devices, format sparkplug_b); default: the "
        "sensor id.",
    )
    calibration_date: date | None = Field(
        None, description="When the sensor was last calibrated (YYYY-MM-DD)."
    )
    simulate: Simulation | None = None

    @field_validator("valid_range")
    @classmethod
    def _range_ordered(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and value[0] > value[1]:
            raise ValueError("write it as [min, max] with min <= max")
        return value

    def in_range(self, value: float) -> bool:
        if self.valid_range is None:
            return True
        return self.valid_range[0] <= value <= self.valid_range[1]


class PayloadPaths(_Model):
    """Where the fields sit in an MQTT JSON payload (dotted paths; digits index arrays)."""

    ts: str = "ts"
    value: str = "value"
    quality: str | None = "quality"
    sensor_id: str | None = Field(
        None, description="Path of the sensor id when the topic has no {sensor_id} level."
    )
    readings: str | None = Field(
        None, description="Path of an array of readings; a top-level array needs none."
    )
    ts_unit: Literal["ms", "s"] = Field("ms", description="Unit of numeric (epoch) timestamps.")


class SparkplugSettings(_Model):
    """Which Sparkplug B edge node (and device under it) an MQTT device is."""

    group_id: Id
    edge_node_id: Id
    device_id: Id | None = Field(
        None, description="The Sparkplug device under the edge node; none: the node's own metrics."
    )
    request_rebirth: bool = Field(
        False,
        description="Publish an NCMD 'Node Control/Rebirth' when a data message uses an alias "
        "no birth has declared (a write to the edge node, at most every 30 s).",
    )


class MqttSettings(_Model):
    topic: str = DEFAULT_TOPIC
    payload: PayloadPaths = PayloadPaths()
    format: Literal["json", "sparkplug_b"] = Field(
        "json", description="JSON readings, or Sparkplug B protobuf payloads."
    )
    sparkplug: SparkplugSettings | None = None

    @model_validator(mode="before")
    @classmethod
    def _sparkplug_topic(cls, data: Any) -> Any:
        """A Sparkplug device's topic follows from its group, edge node and device."""
        if not isinstance(data, dict) or data.get("format") != "sparkplug_b":
            return data
        if "topic" in data:
            raise ValueError("leave topic out for format sparkplug_b: it follows from sparkplug")
        found = data.get("sparkplug")
        if not isinstance(found, dict):
            raise ValueError("format sparkplug_b needs sparkplug: {group_id, edge_node_id}")
        levels = [
            str(found.get(k)) for k in ("group_id", "edge_node_id", "device_id") if found.get(k)
        ]
        if len(levels) < 2:
            return data  # the field errors name what is missing
        tail = f"/{levels[2]}" if len(levels) == 3 else ""
        return {**data, "topic": f"spBv1.0/{levels[0]}/+/{levels[1]}{tail}"}

    @field_validator("topic")
    @classmethod
    def _topic_valid(cls, value: str) -> str:
        TopicPattern(value)  # raises ValueError with the reason
        return value

    @model_validator(mode="after")
    def _sparkplug_declared(self) -> MqttSettings:
        if self.sparkplug is not None and self.format != "sparkplug_b":
            raise ValueError("sparkplug settings need format: sparkplug_b")
        return self


class ModbusSettings(_Model):
    unit_id: int = Field(1, ge=0, le=255)
    poll_interval_s: float = Field(1.0, gt=0)
    timeout_s: float = Field(1.0, gt=0)


class OpcuaSecurity(_Model):
    """Message security of an OPC-UA session: policy, mode and this client's key pair (paths)."""

    policy: Literal["None", "Basic256Sha256"] = "None"
    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate: str | None = Field(None, description="Client certificate (DER or PEM) path.")
    private_key: str | None = Field(None, description="Client private key (PEM) path.")
    server_certificate: str | None = Field(
        None, description="Expected server certificate path (else taken from the endpoint)."
    )

    @model_validator(mode="after")
    def _complete(self) -> OpcuaSecurity:
        if (self.policy == "None") != (self.mode == "None"):
            raise ValueError(
                "policy and mode go together: policy None with mode None, or Basic256Sha256 "
                "with mode Sign or SignAndEncrypt"
            )
        if self.policy != "None" and not (self.certificate and self.private_key):
            raise ValueError(f"policy {self.policy} needs certificate and private_key paths")
        return self


class OpcuaSettings(_Model):
    publishing_interval_ms: float = Field(
        500.0, gt=0, description="How often the server sends data-change notifications."
    )
    sampling_interval_ms: float = Field(
        0.0, ge=0, description="How often the server samples a node (0: every change)."
    )
    queue_size: int = Field(
        100, ge=1, description="Changes the server queues per node between notifications."
    )
    timeout_s: float = Field(4.0, gt=0, description="Answer timeout of each request.")
    reconnect_max_delay_s: float = Field(
        30.0, ge=1, description="Cap of the exponential backoff between reconnect attempts."
    )
    history_backfill: bool = Field(
        True, description="After an outage, read the gap from the server's history."
    )
    security: OpcuaSecurity = OpcuaSecurity()


class CoapPayload(_Model):
    """Where the fields sit in a JSON CoAP payload; a bare number needs none of them."""

    ts: str | None = Field("ts", description="Path of the timestamp; absent: arrival time.")
    value: str = "value"
    quality: str | None = "quality"
    ts_unit: Literal["ms", "s"] = Field("ms", description="Unit of numeric (epoch) timestamps.")


class CoapSettings(_Model):
    observe: bool = Field(True, description="Observe each resource (RFC 7641); else poll.")
    poll_interval_s: float = Field(
        10.0, gt=0, description="Polling interval when a resource cannot be observed."
    )
    timeout_s: float = Field(5.0, gt=0, description="Answer timeout of each request.")
    reregister_s: float | None = Field(
        None,
        gt=0,
        description="Re-register an observation silent this long (default: Max-Age + 5 s).",
    )
    observe_retry_s: float = Field(
        300.0, gt=0, description="How often a polled resource is offered observe again."
    )
    reconnect_max_delay_s: float = Field(
        30.0, ge=1, description="Cap of the backoff after failed requests."
    )
    payload: CoapPayload = CoapPayload()


class BacnetSettings(_Model):
    device_instance: int = Field(
        ge=0, le=4194302, description="Instance number of the remote BACnet device object."
    )
    cov: bool = Field(True, description="Subscribe to change-of-value notifications.")
    cov_lifetime_s: int = Field(
        300, ge=2, description="Lifetime of each COV subscription; renewed at half of it."
    )
    cov_confirmed: bool = Field(True, description="Ask for confirmed COV notifications.")
    poll_interval_s: float = Field(
        10.0, gt=0, description="Polling interval when COV is refused or switched off."
    )
    timeout_s: float = Field(3.0, gt=0, description="APDU timeout of each request.")
    retries: int = Field(1, ge=0, le=5, description="APDU retries before a device counts as gone.")
    local_address: str = Field(
        "0.0.0.0:0",
        pattern=r"^[^:\s]+:\d+$",
        description="host:port the collector binds for this device (0: any port).",
    )
    reconnect_max_delay_s: float = Field(
        30.0, ge=1, description="Cap of the backoff after the device stops answering."
    )


class Credentials(_Model):
    """Names of environment variables holding secrets; never the secrets themselves."""

    username_env: EnvName | None = None
    password_env: EnvName | None = None

    def resolve(self) -> tuple[str | None, str | None]:
        missing = [
            name
            for name in (self.username_env, self.password_env)
            if name and name not in os.environ
        ]
        if missing:
            raise RegistryError([f"environment variable {', '.join(missing)} is not set"])
        user = os.environ[self.username_env] if self.username_env else None
        password = os.environ[self.password_env] if self.password_env else None
        return user, password


class TlsSettings(_Model):
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = Field(False, description="Skip hostname verification (test rigs only).")


class DeviceSpec(_Model):
    device_id: Id
    name: str | None = None
    site: Id | None = None
    protocol: Literal["mqtt", "modbus", "opcua", "coap", "bacnet"]
    endpoint: str = Field(
        description="mqtt(s)://host:port, tcp://host:port (Modbus), opc.tcp://host:port/path, "
        "coap://host:port or bacnet://host:port"
    )
    credentials: Credentials | None = None
    tls: TlsSettings | None = None
    asset_id: Id | None = None
    enabled: bool = True
    expected_interval_s: float | None = Field(
        None,
        gt=0,
        description="Seconds between readings the device keeps: it counts as silent after 3 "
        "times this without one (undeclared: the collector's --offline-after).",
    )
    silence_alert: Literal["warning", "critical", "off"] = Field(
        "warning",
        description="Severity of the alert episode a silent device raises; off: status only. "
        "Critical episodes become work orders, so critical asks for one.",
    )
    mqtt: MqttSettings | None = None
    modbus: ModbusSettings | None = None
    opcua: OpcuaSettings | None = None
    coap: CoapSettings | None = None
    bacnet: BacnetSettings | None = None
    sensors: list[SensorSpec] = Field(min_length=1)

    @field_validator("silence_alert", mode="before")
    @classmethod
    def _switch(cls, value: object) -> object:
        """YAML reads an unquoted ``off``/``no`` as false and ``on``/``yes`` as true."""
        if value is False:
            return "off"
        if value is True:
            return "warning"
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DeviceSpec:
        ids = [s.sensor_id for s in self.sensors]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"sensor ids must be unique per device; repeated: {', '.join(twice)}")
        scheme = urlsplit(self.endpoint).scheme
        allowed = {
            "mqtt": {"mqtt", "mqtts", "tcp", "ssl"},
            "modbus": {"tcp", "modbus"},
            "opcua": {"opc.tcp"},
            "coap": {"coap"},
            "bacnet": {"bacnet"},
        }
        if self.protocol in allowed and scheme not in allowed[self.protocol]:
            raise ValueError(
                f"endpoint {self.endpoint!r}: a {self.protocol} endpoint starts with "
                f"{' or '.join(s + '://' for s in sorted(allowed[self.protocol]))}"
            )
        if self.protocol == "modbus":
            lacking = [s.sensor_id for s in self.sensors if s.register_ is None]
            if lacking:
                raise ValueError(f"modbus sensors need a register: {', '.join(lacking)}")
        if self.protocol == "coap":
            lacking = [s.sensor_id for s in self.sensors if s.resource is None]
            if lacking:
                raise ValueError(f"coap sensors need a resource: {', '.join(lacking)}")
        if self.protocol == "bacnet":
            if self.bacnet is None:
                raise ValueError("bacnet devices need bacnet.device_instance")
            lacking = [s.sensor_id for s in self.sensors if s.object_id is None]
            if lacking:
                raise ValueError(f"bacnet sensors need an object_id: {', '.join(lacking)}")
        if self.protocol == "opcua":
            lacking = [s.sensor_id for s in self.sensors if s.node_id is None]
            if lacking:
                raise ValueError(f"opcua sensors need a node_id: {', '.join(lacking)}")
        if self.protocol == "mqtt":
            settings = self.mqtt or MqttSettings()
            if (
                settings.format == "json"
                and "sensor_id" not in TopicPattern(settings.topic).names
                and (settings.payload.sensor_id is None and len(self.sensors) > 1)
            ):
                raise ValueError(
                    "the topic has no {sensor_id} level: set mqtt.payload.sensor_id to the "
                    "payload path of the sensor id (or declare one sensor)"
                )
        return self

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.endpoint)
        default = {
            "mqtt": 1883,
            "tcp": 1883 if self.protocol == "mqtt" else 502,
            "opc.tcp": 4840,
            "coap": 5683,
            "bacnet": 47808,
        }.get(parts.scheme, 8883 if parts.scheme in {"mqtts", "ssl"} else 502)
        return parts.hostname or "127.0.0.1", parts.port or default

    @property
    def uses_tls(self) -> bool:
        return urlsplit(self.endpoint).scheme in {"mqtts", "ssl"} or self.tls is not None

    def sensor(self, sensor_id: str) -> SensorSpec | None:
        for sensor in self.sensors:
            if sensor.sensor_id == sensor_id:
                return sensor
        return None


class CollectorSettings(_Model):
    client_id: Id | None = Field(None, description="Fixed MQTT client id of this collector.")
    session_expiry_s: int = Field(86400, ge=0, description="How long the broker keeps our queue.")
    shared_group: Id | None = Field(None, description="Subscribe as $share/<group>/...")
    keepalive_s: int = Field(30, ge=5)


class Registry(_Model):
    version: Literal[1] = 1
    site: Id = "default"
    collector: CollectorSettings = CollectorSettings()
    devices: list[DeviceSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_devices(self) -> Registry:
        ids = [d.device_id for d in self.devices]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"device ids must be unique; repeated: {', '.join(twice)}")
        return self

    def site_of(self, device: DeviceSpec) -> str:
        return device.site or self.site

    def enabled(self, protocol: str) -> list[DeviceSpec]:
        return [d for d in self.devices if d.enabled and d.protocol == protocol]


class RegistryError(ValueError):
    """The registry file is unusable; ``problems`` lists ``file, line N: field: what``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_registry(path: str | Path) -> Registry:
    """Read and check a registry file; :class:`RegistryError` names file, line and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError([f"{path}: cannot read the device registry: {exc.strerror}"]) from exc
    return parse_registry(text, path)


def parse_registry(text: str, path: Path | None = None) -> Registry:
    where = str(path) if path else "<registry>"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RegistryError([f"{where}{line}: not valid YAML: {problem}"]) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RegistryError([f"{where}, line 1: expected a mapping with a 'devices' list"])
    try:
        return Registry.model_validate(data)
    except ValidationError as exc:
        source = SourceMap.from_text(text, file=path)
        raise RegistryError(
            [_describe(error, source, data) for error in exc.errors(include_url=False)]
        ) from None


def _describe(error: Any, source: SourceMap, data: Any) -> str:
    loc = tuple(part for part in error["loc"] if not _is_union_tag(part))
    field = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            label = _label(node[part]) if isinstance(node, list) and part < len(node) else None
            field += f"[{label or part}]"
        else:
            field += f".{part}" if field else str(part)
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "string_pattern_mismatch":
        message = _PATTERN_TEXT.get(error["ctx"]["pattern"], message)
        message += f" (got {error['input']!r})"
    return f"{source.where(loc)}: {field or '(top level)'}: {message}"


def _label(item: Any) -> str | None:
    if isinstance(item, dict):
        for key in ("device_id", "sensor_id"):
            if isinstance(item.get(key), str):
                return item[key]
    return None


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and (part.startswith("function-") or "[" in part)


# -- topic patterns ------------------------------------------------------------------------


class TopicPattern:
    """``plant/{site}/{device_id}/{sensor_id}``: placeholders fill whole levels; ``+`` is an
    anonymous single-level wildcard. Gives the subscription filter and matches topics."""

    def __init__(self, pattern: str) -> None:
        if not pattern or pattern.startswith("$"):
            raise ValueError(f"topic pattern {pattern!r}: must be non-empty and not start with $")
        self.pattern = pattern
        self.levels = pattern.split("/")
        regex = []
        names: list[str] = []
        for level in self.levels:
            match = re.fullmatch(r"\{(\w+)\}", level)
            if match:
                name = match.group(1)
                if name not in PLACEHOLDERS:
                    raise ValueError(
                        f"topic pattern {pattern!r}: unknown placeholder {{{name}}}; "
                        f"use {', '.join('{' + p + '}' for p in sorted(PLACEHOLDERS))}"
                    )
                if name in names:
                    raise ValueError(f"topic pattern {pattern!r}: {{{name}}} appears twice")
                names.append(name)
                regex.append(f"(?P<{name}>[^/]+)")
            elif level == "+":
                regex.append("[^/]+")
            elif any(ch in level for ch in "+#{}"):
                raise ValueError(
                    f"topic pattern {pattern!r}: level {level!r} mixes text and wildcards; "
                    "a placeholder or + must be a whole level ('#' is not supported)"
                )
            else:
                regex.append(re.escape(level))
        self.names = tuple(names)
        self._regex = re.compile("/".join(regex) + "$")

    def subscription(self, values: dict[str, str]) -> str:
        """The filter with known placeholders filled and the rest as ``+``."""
        out = []
        for level in self.levels:
            match = re.fullmatch(r"\{(\w+)\}", level)
            out.append(values.get(match.group(1), "+") if match else level)
        return "/".join(out)

    def match(self, topic: str) -> dict[str, str] | None:
        found = self._regex.match(topic)
        return found.groupdict() if found else None


# -- reloading -----------------------------------------------------------------------------


@dataclass
class RegistryWatcher:
    """Polls a registry file's mtime and size; :meth:`check` returns a new good registry."""

    path: Path
    current: Registry | None = None
    _stamp: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    def load(self) -> Registry:
        """First load: errors raise (a collector must not start on a broken registry)."""
        self._stamp = self._read_stamp()
        self.current = load_registry(self.path)
        return self.current

    def check(self) -> Registry | None:
        """The new registry if the file changed and is valid; else ``None`` (errors logged)."""
        stamp = self._read_stamp()
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        try:
            registry = load_registry(self.path)
        except RegistryError as exc:
            log.error("device registry not reloaded, keeping the previous one:\n%s", exc)
            return None
        if registry == self.current:
            return None
        self.current = registry
        log.info("device registry reloaded from %s (%d devices)", self.path, len(registry.devices))
        return registry

    def _read_stamp(self) -> tuple[int, int] | None:
        try:
            info = self.path.stat()
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size
