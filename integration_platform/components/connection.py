"""Connections to source systems declared in YAML, with their bronze extracts and health.

For each declared connection the component builds the connector resource (credentials as
``dg.EnvVar`` of the variables the YAML names), one ``bronze/<connection>/<entity>`` asset per
entity appended page by page (see ``connectors/extract.py``: the cursor is in the Delta
commit of each page), a schema-drift check (WARN) and a freshness check per asset. Across
all connections it adds ``connections_health_job`` (materializing ``gold/connection_health``),
its schedule, and ``connections_down_sensor``, which fails a small alert run when a
connection has been down longer than its threshold.

A misdeclared connection fails when definitions load, naming the connection, the file and
line, and the field or variable, so ``dg check defs`` catches it before a run does.

Example (``connectors/examples/maximo/defs.yaml``)::

    type: integration_platform.components.ConnectionComponent
    requirements:
      env: [MAXIMO_BASE_URL, MAXIMO_API_KEY]
    attributes:
      connections:
        - name: maximo
          type: maximo
          base_url_env: MAXIMO_BASE_URL
          auth: {api_key: MAXIMO_API_KEY}
          options: {context_root: /maximo/api, site_ids: [BEDFORD]}
          page_size: 1000
          entities: [work_orders, assets]
"""

import difflib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import pandas as pd
from pydantic import BaseModel, Field, ValidationError

from integration_platform.connectors.base import HealthStatus
from integration_platform.connectors.extract import (
    CommittedPage,
    cursor_summary,
    cursor_to_text,
    extract_to_lake,
)
from integration_platform.connectors.registry import CONNECTORS, connector_names, load_connector
from integration_platform.lake import DeltaLake, Layer
from integration_platform.mapping.locate import SourceMap

HEALTH_JOB = "connections_health_job"
HEALTH_SCHEDULE = "connections_health_job_schedule"
DOWN_SENSOR = "connections_down_sensor"
DOWN_ALERT_JOB = "connections_down_alert_job"
DOWN_ALERT_OP = "connections_down_alert"
HEALTH_KEY = dg.AssetKey([Layer.GOLD, "connection_health"])
SCHEMA_DRIFT_CHECK = "schema_drift"
# One writer per lake table (deploy/dagster.yaml limits the tag per value; the pool is the
# same limit for op-level concurrency).
LAKE_WRITER_TAG = "integration_platform/lake_writer"
FULL_REFRESH_TAGS = ("full_refresh", "integration_platform/full_refresh")
# Fields that are not connector settings a YAML may set through ``options``.
RESERVED_FIELDS = frozenset({"base_url", "url"})


class EntityDeclaration(dg.Model):
    """An entity to extract, when its read method or arguments are not the defaults."""

    name: str = Field(description="Entity (table) name: the last part of the asset key.")
    read: str | None = Field(
        default=None, description="Connector method to call; default read_<name>."
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra keyword arguments of the read method (sql: table, cursor_column...).",
    )


class ConnectionDeclaration(dg.Model):
    """One connection: which connector, where, with which credentials, what to extract."""

    name: str = Field(description="Connection name: asset group and key prefix.")
    type: str = Field(description=f"Connector type from the registry: {', '.join(CONNECTORS)}.")
    base_url: str | None = Field(default=None, description="Root URL, when not secret.")
    base_url_env: str | None = Field(
        default=None, description="Environment variable holding the root URL (or SQL URL)."
    )
    secondary_base_url: str | None = Field(
        default=None, description="Failover endpoint of the same system (DR/HA node)."
    )
    secondary_base_url_env: str | None = Field(
        default=None, description="Environment variable holding the failover endpoint."
    )
    auth: dict[str, str] = Field(
        default_factory=dict,
        description="Credential field of the connector -> NAME of the environment variable.",
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Other (non-secret) fields of the connector."
    )
    page_size: int = Field(default=1000, ge=1, description="Records per page and commit.")
    rate_limit: float | None = Field(
        default=None, ge=0, description="Requests per second (0 = none); connector default."
    )
    entities: list[str | EntityDeclaration] = Field(description="Entities to extract.")
    freshness_hours: float = Field(
        default=24.0, gt=0, description="A bronze table older than this fails its freshness."
    )
    down_alert_after_minutes: float = Field(
        default=15.0, ge=0, description="Alert when down (both endpoints) longer than this."
    )


class ConnectionsDeclaration(dg.Model):
    """The attributes of a ``ConnectionComponent``."""

    connections: list[ConnectionDeclaration] = Field(description="The connections.")
    health_cron: str = Field(default="*/5 * * * *", description="When health is checked.")


class ExtractConfig(dg.Config):
    """Run configuration of a bronze extract."""

    full_refresh: bool = Field(
        default=False, description="Read everything again and overwrite the table."
    )


class DownAlertConfig(dg.Config):
    message: str


class ConnectionError_(ValueError):
    """A connection declared wrongly; the message names file, line and what to fix."""


def _suggest(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def resource_key(connection: str, *, secondary: bool = False) -> str:
    return f"connection_{connection}" + ("_secondary" if secondary else "")


def entity_name(entity: str | EntityDeclaration) -> str:
    return entity if isinstance(entity, str) else entity.name


class ConnectionComponent(dg.Component):
    """Connections to source systems: resources, bronze extracts, health job and alert."""

    def __init__(self, declaration: ConnectionsDeclaration, source_map: SourceMap) -> None:
        self.declaration = declaration
        self.source_map = source_map
        self.resources = {
            key: resource
            for index, connection in enumerate(declaration.connections)
            for key, resource in build_resources(connection, source_map, index).items()
        }

    @classmethod
    def get_model_cls(cls) -> type[BaseModel]:
        return ConnectionsDeclaration

    @classmethod
    def load(
        cls, attributes: BaseModel | None, context: dg.ComponentLoadContext
    ) -> "ConnectionComponent":
        source_map = SourceMap.for_component(context.path)
        if not isinstance(attributes, ConnectionsDeclaration):
            data = attributes.model_dump() if attributes is not None else {}
            attributes = ConnectionsDeclaration.model_validate(data)
        return cls(attributes, source_map)

    @classmethod
    def from_yaml(cls, path: Path) -> "ConnectionComponent":
        """The component of a ``defs.yaml`` without a Dagster project (scripts, tests)."""
        import yaml

        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        source_map = SourceMap.from_file(path, prefix=("attributes",))
        try:
            declaration = ConnectionsDeclaration.model_validate(document.get("attributes") or {})
        except ValidationError as exc:
            raise ConnectionError_(f"{path}: {exc}") from None
        return cls(declaration, source_map)

    def build_defs(self, context: dg.ComponentLoadContext | None) -> dg.Definitions:
        assets = [
            build_extract_asset(connection, entity, self.source_map)
            for connection in self.declaration.connections
            for entity in connection.entities
        ]
        health = build_health_asset(self.declaration.connections)
        health_job = dg.define_asset_job(HEALTH_JOB, selection=[HEALTH_KEY])
        alert_job = build_alert_job()
        return dg.Definitions(
            assets=[*assets, health],
            jobs=[health_job, alert_job],
            schedules=[
                dg.ScheduleDefinition(
                    name=HEALTH_SCHEDULE, job=health_job, cron_schedule=self.declaration.health_cron
                )
            ],
            sensors=[build_down_sensor(self.declaration.connections, alert_job)],
            resources=self.resources,
        )


# -- resources -----------------------------------------------------------------------------


def build_resources(
    connection: ConnectionDeclaration, source_map: SourceMap, index: int
) -> dict[str, dg.ConfigurableResource]:
    """The connector resource (and its failover twin), checked against the connector."""

    def fail(field: str, message: str) -> ConnectionError_:
        where = source_map.where(("connections", index, field))
        return ConnectionError_(f"{where}: connection {connection.name!r}: {message}")

    if connection.type not in CONNECTORS:
        known = ", ".join(connector_names())
        raise fail(
            "type",
            f"unknown connector type {connection.type!r}; "
            f"{_suggest(connection.type, connector_names())}known types: {known}",
        )
    cls = load_connector(connection.type)
    fields = cls.model_fields
    url_field = "base_url" if "base_url" in fields else "url"
    settable = sorted(name for name in fields if name not in RESERVED_FIELDS)
    for section, names in (("auth", connection.auth), ("options", connection.options)):
        for name in names:
            if name not in fields or name in RESERVED_FIELDS:
                raise fail(
                    section,
                    f"{section} field {name!r} is not a field of connector "
                    f"{connection.type!r}; {_suggest(name, settable)}its fields: "
                    f"{', '.join(settable)}",
                )
    if (connection.base_url is None) == (connection.base_url_env is None):
        raise fail("base_url_env", "declare exactly one of base_url and base_url_env")
    variables = {
        "base_url_env": [connection.base_url_env],
        "secondary_base_url_env": [connection.secondary_base_url_env],
        "auth": list(connection.auth.values()),
    }
    for field, names in variables.items():
        for variable in names:
            if variable and not os.environ.get(variable):
                raise fail(
                    field,
                    f"environment variable {variable} is not set; set it (and list it under "
                    "requirements: env: in this defs.yaml)",
                )
    settings: dict[str, Any] = dict(connection.options)
    settings |= {name: dg.EnvVar(variable) for name, variable in connection.auth.items()}
    if connection.rate_limit is not None and "requests_per_second" in fields:
        settings["requests_per_second"] = connection.rate_limit
    if "page_size" in fields:
        settings["page_size"] = connection.page_size
    for entity in connection.entities:
        method = _read_method(entity)
        if not callable(getattr(cls, method, None)):
            readers = sorted(n[5:] for n in dir(cls) if n.startswith("read_"))
            raise fail(
                "entities",
                f"connector {connection.type!r} cannot read entity {entity_name(entity)!r} "
                f"(no method {method}); {_suggest(entity_name(entity), readers)}"
                f"it reads: {', '.join(readers)}",
            )

    def build(url: str | None, url_env: str | None) -> dg.ConfigurableResource:
        value = dg.EnvVar(url_env) if url_env else url
        try:
            return cls(**settings, **{url_field: value})
        except (ValidationError, TypeError) as exc:
            message = f"connector {connection.type!r} refused its fields: {exc}"
            raise fail("options", message) from None

    resources = {resource_key(connection.name): build(connection.base_url, connection.base_url_env)}
    if connection.secondary_base_url or connection.secondary_base_url_env:
        resources[resource_key(connection.name, secondary=True)] = build(
            connection.secondary_base_url, connection.secondary_base_url_env
        )
    return resources


def _read_method(entity: str | EntityDeclaration) -> str:
    if isinstance(entity, EntityDeclaration) and entity.read:
        return entity.read
    return f"read_{entity_name(entity)}"


def _has_secondary(connection: ConnectionDeclaration) -> bool:
    return bool(connection.secondary_base_url or connection.secondary_base_url_env)


def choose_endpoint(
    primary: Any, secondary: Any | None, log: Any | None = None
) -> tuple[Any, str, HealthStatus | None]:
    """The endpoint to read from: the primary unless it is down and the secondary is up."""
    if secondary is None:
        return primary, "primary", None
    status = primary.health_check()
    if status.ok:
        return primary, "primary", status
    backup = secondary.health_check()
    if backup.ok:
        if log is not None:
            log.warning(f"primary endpoint down ({status.detail}); reading from the secondary")
        return secondary, "secondary", backup
    return primary, "primary", status


# -- bronze extracts -----------------------------------------------------------------------


def build_extract_asset(
    connection: ConnectionDeclaration,
    entity: str | EntityDeclaration,
    source_map: SourceMap,
) -> dg.AssetsDefinition:
    name = entity_name(entity)
    key = dg.AssetKey([Layer.BRONZE, connection.name, name])
    table = "/".join(key.path)
    primary_key = resource_key(connection.name)
    secondary_key = resource_key(connection.name, secondary=True)
    needs = {"lake", primary_key} | ({secondary_key} if _has_secondary(connection) else set())
    method = _read_method(entity)
    read_options = entity.options if isinstance(entity, EntityDeclaration) else {}
    page_size = connection.page_size

    @dg.asset(
        key=key,
        group_name=connection.name,
        kinds={connection.type, "delta"},
        description=f"{name} from connection {connection.name} ({connection.type}) as sent, "
        "appended page by page; the cursor is in each page's Delta commit.",
        required_resource_keys=needs,
        # Dagster 1.13's freshness: evaluated by the daemon, no check sensor to run.
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=timedelta(hours=connection.freshness_hours)
        ),
        pool=f"{LAKE_WRITER_TAG}/{table}",
        op_tags={LAKE_WRITER_TAG: table},
        metadata={
            "connection": connection.name,
            "connector": connection.type,
            "page_size": page_size,
            "declared_in": dg.MetadataValue.path(source_map.where(("connections",))),
        },
        check_specs=[
            dg.AssetCheckSpec(
                SCHEMA_DRIFT_CHECK,
                asset=key,
                description="Columns of the pages read match the table's (new, missing, "
                "retyped columns warn; the run goes on).",
            )
        ],
    )
    def extract(context: dg.AssetExecutionContext, config: ExtractConfig) -> dg.MaterializeResult:
        lake: DeltaLake = context.resources.lake
        secondary = getattr(context.resources, secondary_key, None)
        connector, endpoint, _ = choose_endpoint(
            getattr(context.resources, primary_key), secondary, context.log
        )
        tags = context.run.tags
        full = config.full_refresh or any(
            tags.get(tag, "").lower() == "true" for tag in FULL_REFRESH_TAGS
        )
        read = getattr(connector, method)

        def pages(since: Any) -> Iterator[Any]:
            context.log.info(
                f"{table}: reading from {endpoint} endpoint after cursor {cursor_summary(since)}"
                + (" (full refresh)" if full else "")
            )
            return read(since=since, page_size=page_size, **read_options)

        def progress(page: CommittedPage) -> None:
            drift = f", schema drift {page.drift.as_dict()}" if page.drift else ""
            context.log.info(
                f"{table}: page {page.number} committed: {page.rows} rows, table version "
                f"{page.version}, cursor {cursor_summary(page.cursor)}, "
                f"{page.seconds:.2f} s{drift}"
            )

        result = extract_to_lake(
            pages,
            lake,
            key.path,
            run_id=context.run.run_id,
            full_refresh=full,
            on_page=progress,
        )
        return dg.MaterializeResult(
            metadata={
                "rows_written": result.rows,
                "pages": result.pages,
                "cursor": dg.MetadataValue.json(json.loads(cursor_to_text(result.cursor))),
                "start_cursor": cursor_summary(result.start_cursor),
                "table_version": result.version if result.version is not None else -1,
                "full_refresh": result.full_refresh,
                "endpoint": endpoint,
                "schema_drift": dg.MetadataValue.json(result.drift),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=SCHEMA_DRIFT_CHECK,
                    passed=not result.drifted,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={
                        "new": ", ".join(result.drift["new"]),
                        "missing": ", ".join(result.drift["missing"]),
                        "retyped": dg.MetadataValue.json(result.drift["retyped"]),
                        "kept_aside": ", ".join(result.drift["kept_aside"]),
                    },
                )
            ],
        )

    return extract


# -- health --------------------------------------------------------------------------------

Status = Literal["up", "failover", "down"]


def check_connection(primary: Any, secondary: Any | None) -> dict[str, Any]:
    """Health of one connection: up on the primary, failover to the secondary, or down."""
    first = primary.health_check()
    if first.ok or secondary is None:
        status: Status = "up" if first.ok else "down"
        return {
            "status": status,
            "endpoint": "primary",
            "latency_ms": first.latency_ms,
            "detail": first.detail,
        }
    second = secondary.health_check()
    return {
        "status": "failover" if second.ok else "down",
        "endpoint": "secondary" if second.ok else "none",
        "latency_ms": second.latency_ms,
        "primary_detail": first.detail,
        "detail": second.detail,
    }


def build_health_asset(connections: Sequence[ConnectionDeclaration]) -> dg.AssetsDefinition:
    needs = {"lake"}
    for connection in connections:
        needs.add(resource_key(connection.name))
        if _has_secondary(connection):
            needs.add(resource_key(connection.name, secondary=True))

    @dg.asset(
        key=HEALTH_KEY,
        group_name="connections",
        kinds={"delta"},
        description="Health of every declared connection per check: status (up, failover, "
        "down), endpoint, latency; the history is appended, the latest is in the metadata.",
        required_resource_keys=needs,
        op_tags={LAKE_WRITER_TAG: "/".join(HEALTH_KEY.path)},
    )
    def connection_health(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        previous = _latest_health(context.instance)
        now = datetime.now(UTC)
        report: dict[str, dict[str, Any]] = {}
        for connection in connections:
            primary = getattr(context.resources, resource_key(connection.name))
            secondary = getattr(
                context.resources, resource_key(connection.name, secondary=True), None
            )
            state = check_connection(primary, secondary)
            before = previous.get(connection.name, {})
            if state["status"] == "down":
                state["down_since"] = before.get("down_since") or now.isoformat()
            state["checked_at"] = now.isoformat()
            state["down_alert_after_minutes"] = connection.down_alert_after_minutes
            report[connection.name] = state
            context.log.info(f"{connection.name}: {state['status']} ({state['detail']})")
        rows = pd.DataFrame(
            [
                {
                    "connection": name,
                    "checked_at": pd.Timestamp(now),
                    "status": state["status"],
                    "endpoint": state["endpoint"],
                    "latency_ms": float(state["latency_ms"]),
                    "detail": state["detail"],
                }
                for name, state in report.items()
            ]
        )
        lake: DeltaLake = context.resources.lake
        lake.write(rows, HEALTH_KEY.path, mode="append")
        metadata: dict[str, Any] = {"connections": dg.MetadataValue.json(report)}
        for name, state in report.items():
            metadata[f"{name}/status"] = state["status"]
            metadata[f"{name}/latency_ms"] = float(state["latency_ms"])
        return dg.MaterializeResult(metadata=metadata)

    return connection_health


def _latest_health(instance: dg.DagsterInstance) -> dict[str, dict[str, Any]]:
    """The report of the newest ``gold/connection_health`` materialization (no network)."""
    event = instance.get_latest_materialization_event(HEALTH_KEY)
    if event is None or event.asset_materialization is None:
        return {}
    value = event.asset_materialization.metadata.get("connections")
    data = getattr(value, "value", None) or getattr(value, "data", None)
    return dict(data) if isinstance(data, Mapping) else {}


def build_alert_job() -> dg.JobDefinition:
    @dg.op(name=DOWN_ALERT_OP, description="Fails with the message, so run-failure alerts fire.")
    def connections_down_alert(config: DownAlertConfig) -> None:
        raise dg.Failure(description=config.message)

    @dg.job(name=DOWN_ALERT_JOB, description="Raised by connections_down_sensor: fails on purpose.")
    def connections_down_alert_job() -> None:
        connections_down_alert()

    return connections_down_alert_job


def down_too_long(
    report: Mapping[str, Mapping[str, Any]], now: datetime
) -> list[tuple[str, str, str]]:
    """``(connection, down_since, message)`` for each connection down past its threshold."""
    found = []
    for name, state in sorted(report.items()):
        since = state.get("down_since")
        if state.get("status") != "down" or not since:
            continue
        started = datetime.fromisoformat(since)
        limit = timedelta(minutes=float(state.get("down_alert_after_minutes", 15)))
        if now - started >= limit:
            minutes = (now - started).total_seconds() / 60
            found.append(
                (
                    name,
                    since,
                    f"connection {name} has been down for {minutes:.0f} min (since {since}, "
                    f"threshold {limit.total_seconds() / 60:.0f} min): {state.get('detail')}",
                )
            )
    return found


def build_down_sensor(
    connections: Sequence[ConnectionDeclaration], alert_job: dg.JobDefinition
) -> dg.SensorDefinition:
    @dg.sensor(
        name=DOWN_SENSOR,
        job=alert_job,
        minimum_interval_seconds=60,
        description="Reads the latest connection health (never the network) and fails an "
        "alert run once per outage longer than the connection's threshold.",
    )
    def connections_down_sensor(
        context: dg.SensorEvaluationContext,
    ) -> Iterator[dg.RunRequest | dg.SkipReason]:
        report = _latest_health(context.instance)
        down = down_too_long(report, datetime.now(UTC))
        if not down:
            yield dg.SkipReason(f"no connection down past its threshold ({len(report)} known)")
            return
        for name, since, message in down:
            yield dg.RunRequest(
                run_key=f"{name}:{since}",
                run_config={"ops": {DOWN_ALERT_OP: {"config": {"message": message}}}},
                tags={"integration_platform/connection": name},
            )

    return connections_down_sensor
