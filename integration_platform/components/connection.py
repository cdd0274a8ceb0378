"""Connections to source systems declared in YAML, with their bronze extracts and health.

For each declared connection the component builds the connector resource (credentials as
``dg.EnvVar`` of the variables the YAML names), one ``bronze/<connection>/<entity>`` asset per
entity appended page by page (see ``connectors/extract.py``: the cursor is in the Delta
commit of each page), a schema-drift check (WARN) and a freshness check per asset. Across
all connections it adds ``connections_health_job`` (materializing ``gold/connection_health``,
recorded in the state database too), its schedule, and ``connections_down_sensor``, which
fails a small alert run when a connection has been down longer than its threshold (see
``connection_health.py``). The YAML model is in ``connection_model.py``.

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
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import BaseModel, Field, ValidationError

from integration_platform.components.connection_health import (
    DOWN_ALERT_JOB,
    DOWN_ALERT_OP,
    DOWN_SENSOR,
    HEALTH_JOB,
    HEALTH_KEY,
    HEALTH_SCHEDULE,
    build_alert_job,
    build_down_sensor,
    build_health_asset,
    check_connection,
    down_too_long,
)
from integration_platform.components.connection_model import (
    LAKE_WRITER_TAG,
    ConnectionDeclaration,
    ConnectionsDeclaration,
    EntityDeclaration,
    entity_name,
    has_secondary,
    resource_key,
)
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

SCHEMA_DRIFT_CHECK = "schema_drift"
FULL_REFRESH_TAGS = ("full_refresh", "integration_platform/full_refresh")
# Fields that are not connector settings a YAML may set through ``options``.
RESERVED_FIELDS = frozenset({"base_url", "url"})

__all__ = [
    "DOWN_ALERT_JOB",
    "DOWN_ALERT_OP",
    "DOWN_SENSOR",
    "HEALTH_JOB",
    "HEALTH_KEY",
    "HEALTH_SCHEDULE",
    "LAKE_WRITER_TAG",
    "SCHEMA_DRIFT_CHECK",
    "ConnectionComponent",
    "ConnectionDeclaration",
    "ConnectionsDeclaration",
    "EntityDeclaration",
    "check_connection",
    "choose_endpoint",
    "down_too_long",
    "resource_key",
]


class ExtractConfig(dg.Config):
    """Run configuration of a bronze extract."""

    full_refresh: bool = Field(
        default=False, description="Read everything again and overwrite the table."
    )


class ConnectionError_(ValueError):
    """A connection declared wrongly; the message names file, line and what to fix."""


def _suggest(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


class ConnectionComponent(dg.Component):
    """Connections to source systems: resources, bronze extracts, health job and alert."""

    def __init__(
        self,
        declaration: ConnectionsDeclaration,
        source_map: SourceMap,
        project_root: Path | None = None,
    ) -> None:
        self.declaration = declaration
        self.source_map = source_map
        self.resources = {
            key: resource
            for index, connection in enumerate(declaration.connections)
            for key, resource in build_resources(
                connection, source_map, index, project_root
            ).items()
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
        return cls(attributes, source_map, context.project_root)

    @classmethod
    def from_yaml(cls, path: Path, *, project_root: Path | None = None) -> "ConnectionComponent":
        """The component of a ``defs.yaml`` without a Dagster project (scripts, tests).

        ``project_root`` is what relative SQLite paths are relative to (default: the current
        folder, as SQLite itself does)."""
        import yaml

        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        source_map = SourceMap.from_file(path, prefix=("attributes",))
        try:
            declaration = ConnectionsDeclaration.model_validate(document.get("attributes") or {})
        except ValidationError as exc:
            raise ConnectionError_(f"{path}: {exc}") from None
        return cls(declaration, source_map, project_root)

    def build_defs(self, context: dg.ComponentLoadContext | None) -> dg.Definitions:
        assets = [
            build_extract_asset(connection, entity, self.source_map)
            for connection in self.declaration.connections
            for entity in connection.entities
        ]
        health = build_health_asset(self.declaration)
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
    connection: ConnectionDeclaration,
    source_map: SourceMap,
    index: int,
    project_root: Path | None = None,
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
        value = dg.EnvVar(url_env) if url_env else local_url(url, project_root)
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


def local_url(url: str | None, project_root: Path | None) -> str | None:
    """A SQLite URL with a relative path made absolute under ``project_root``, as file paths
    elsewhere in ``defs.yaml`` are: the code server's working folder is not the project's
    everywhere (``dg``, the daemon, a deployment)."""
    prefix = "sqlite:///"
    if url is None or project_root is None or not url.startswith(prefix):
        return url
    path = url[len(prefix) :]
    if not path or path.startswith(("/", ":memory:", "file:")):
        return url
    return prefix + str((project_root / path).resolve())


def _read_method(entity: str | EntityDeclaration) -> str:
    if isinstance(entity, EntityDeclaration) and entity.read:
        return entity.read
    return f"read_{entity_name(entity)}"


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
    needs = {"lake", primary_key} | ({secondary_key} if has_secondary(connection) else set())
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
