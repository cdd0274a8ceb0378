"""Health of declared connections: a scheduled check, its three records, and the down alert.

``gold/connection_health`` (``connections_health_job``) calls ``health_check()`` on each
connection's primary and, when that fails and one is declared, on its secondary. Each check
is recorded three times, for three readers:

- a row in ``connection_health_checks`` in the state database (``state/health.py``): the
  operational record, read by ``connections_down_sensor`` and ``integration-platform
  connections health``; the outage start (``down_since``) is carried from row to row there;
- a row appended to the Delta table ``gold/connection_health``: the full history for
  analytics;
- the materialization's metadata: the latest report, visible in the UI.

``connections_down_sensor`` reads, per connection, whichever of the state table and the
latest materialization holds the newer check, so one store failing never hides an outage:
the table alone would go stale when the state database refuses a write (the check is still
in the metadata), the metadata alone would go stale when a health run fails after recording
(the lake write), and the table keeps the outage start independently of the event log. The
sensor never touches the network. A state database that cannot be read is reported in the
skip reason and the sensor uses the metadata.
"""

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import dagster as dg
import pandas as pd

from integration_platform.components.connection_model import (
    LAKE_WRITER_TAG,
    ConnectionDeclaration,
    ConnectionsDeclaration,
    has_secondary,
    resource_key,
)
from integration_platform.lake import DeltaLake, Layer
from integration_platform.state.resource import StateDatabase

HEALTH_JOB = "connections_health_job"
HEALTH_SCHEDULE = "connections_health_job_schedule"
DOWN_SENSOR = "connections_down_sensor"
DOWN_ALERT_JOB = "connections_down_alert_job"
DOWN_ALERT_OP = "connections_down_alert"
HEALTH_KEY = dg.AssetKey([Layer.GOLD, "connection_health"])
STATE_RESOURCE = "state"
DEFAULT_DOWN_ALERT_MINUTES = 15.0

Status = Literal["up", "failover", "down"]


class DownAlertConfig(dg.Config):
    message: str


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


# -- the health asset ----------------------------------------------------------------------


def build_health_asset(declaration: ConnectionsDeclaration) -> dg.AssetsDefinition:
    connections = declaration.connections
    retention = timedelta(days=declaration.health_retention_days)
    needs = {"lake", STATE_RESOURCE}
    for connection in connections:
        needs.add(resource_key(connection.name))
        if has_secondary(connection):
            needs.add(resource_key(connection.name, secondary=True))

    @dg.asset(
        key=HEALTH_KEY,
        group_name="connections",
        kinds={"delta"},
        description="Health of every declared connection per check: status (up, failover, "
        "down), endpoint, latency. Each check is a row in the state database "
        "(connection_health_checks) and in this Delta table; the latest report is in the "
        "metadata.",
        required_resource_keys=needs,
        op_tags={LAKE_WRITER_TAG: "/".join(HEALTH_KEY.path)},
    )
    def connection_health(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        now = datetime.now(UTC)
        report: dict[str, dict[str, Any]] = {}
        for connection in connections:
            primary = getattr(context.resources, resource_key(connection.name))
            secondary = getattr(
                context.resources, resource_key(connection.name, secondary=True), None
            )
            report[connection.name] = check_connection(primary, secondary)
        outages, problem = record_in_state(
            context.resources.state, report, now=now, run_id=context.run.run_id, keep=retention
        )
        if problem is not None:
            context.log.error(
                f"health checks not recorded in the state database: {problem}. If the table "
                "is missing, run `integration-platform db upgrade`; until then "
                f"{DOWN_SENSOR} reads this materialization's metadata."
            )
            previous = latest_health_metadata(context.instance)
            outages = {name: _instant(previous.get(name, {}).get("down_since")) for name in report}
        for connection in connections:
            state = report[connection.name]
            if state["status"] == "down":
                state["down_since"] = (outages.get(connection.name) or now).isoformat()
            state["checked_at"] = now.isoformat()
            state["down_alert_after_minutes"] = connection.down_alert_after_minutes
            context.log.info(f"{connection.name}: {state['status']} ({state['detail']})")
        lake: DeltaLake = context.resources.lake
        lake.write(health_rows(report, now), HEALTH_KEY.path, mode="append")
        metadata: dict[str, Any] = {
            "connections": dg.MetadataValue.json(report),
            "state_db": "recorded" if problem is None else f"not recorded: {problem}",
        }
        for name, state in report.items():
            metadata[f"{name}/status"] = state["status"]
            metadata[f"{name}/latency_ms"] = float(state["latency_ms"])
        return dg.MaterializeResult(metadata=metadata)

    return connection_health


def record_in_state(
    state: Any,
    report: Mapping[str, Mapping[str, Any]],
    *,
    now: datetime,
    run_id: str | None,
    keep: timedelta,
) -> tuple[dict[str, datetime | None], str | None]:
    """Record the checks and prune old ones: ``(down_since per connection, None)``, or
    ``({}, what went wrong)`` when the state database refused."""
    import sqlalchemy as sa

    from integration_platform.settings import ConfigError
    from integration_platform.state.health import HealthCheck, prune_checks, record_checks

    checks = [HealthCheck.from_report(name, entry) for name, entry in report.items()]
    try:
        engine = state.engine()
        outages = record_checks(engine, checks, checked_at=now, run_id=run_id)
        prune_checks(engine, older_than=keep, now=now)
    except (sa.exc.SQLAlchemyError, ConfigError) as exc:
        return {}, _reason(exc)
    return outages, None


def health_rows(report: Mapping[str, Mapping[str, Any]], now: datetime) -> pd.DataFrame:
    """The rows appended to ``gold/connection_health``."""
    return pd.DataFrame(
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


def latest_health_metadata(instance: dg.DagsterInstance) -> dict[str, dict[str, Any]]:
    """The report of the newest ``gold/connection_health`` materialization (no network)."""
    event = instance.get_latest_materialization_event(HEALTH_KEY)
    if event is None or event.asset_materialization is None:
        return {}
    value = event.asset_materialization.metadata.get("connections")
    data = getattr(value, "value", None) or getattr(value, "data", None)
    return dict(data) if isinstance(data, Mapping) else {}


# -- reading the current health --------------------------------------------------------------


def current_health(
    instance: dg.DagsterInstance, state: Any, names: Sequence[str]
) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Per connection, the newer of its newest state-table row and the latest metadata;
    and what went wrong reading the state database, if anything."""
    import sqlalchemy as sa

    from integration_platform.settings import ConfigError
    from integration_platform.state.health import latest_checks

    problem = None
    try:
        table = {n: h.as_report() for n, h in latest_checks(state.engine(), names).items()}
    except (sa.exc.SQLAlchemyError, ConfigError) as exc:
        table, problem = {}, _reason(exc)
    metadata = latest_health_metadata(instance)
    merged: dict[str, dict[str, Any]] = {}
    for name in names:
        found = [entry for entry in (table.get(name), metadata.get(name)) if entry]
        if found:  # the table's on a tie: it is the record the alert's run key comes from
            merged[name] = max(found, key=lambda e: _instant(e.get("checked_at")) or _EPOCH)
    return merged, problem


def down_too_long(
    report: Mapping[str, Mapping[str, Any]],
    now: datetime,
    thresholds: Mapping[str, float] | None = None,
) -> list[tuple[str, str, str]]:
    """``(connection, down_since, message)`` for each connection down past its threshold.

    ``thresholds`` (minutes, from the declarations) win over the value stored with a check,
    so a changed threshold applies at the next tick.
    """
    found = []
    for name, state in sorted(report.items()):
        since = state.get("down_since")
        if state.get("status") != "down" or not since:
            continue
        started = _instant(since)
        assert started is not None
        minutes = (thresholds or {}).get(name)
        if minutes is None:
            minutes = float(state.get("down_alert_after_minutes", DEFAULT_DOWN_ALERT_MINUTES))
        limit = timedelta(minutes=minutes)
        if now - started >= limit:
            down_for = (now - started).total_seconds() / 60
            found.append(
                (
                    name,
                    started.isoformat(),
                    f"connection {name} has been down for {down_for:.0f} min (since "
                    f"{started.isoformat()}, threshold {minutes:.0f} min): {state.get('detail')}",
                )
            )
    return found


# -- the alert job and the sensor ----------------------------------------------------------


def build_alert_job() -> dg.JobDefinition:
    @dg.op(name=DOWN_ALERT_OP, description="Fails with the message, so run-failure alerts fire.")
    def connections_down_alert(config: DownAlertConfig) -> None:
        raise dg.Failure(description=config.message)

    @dg.job(name=DOWN_ALERT_JOB, description="Raised by connections_down_sensor: fails on purpose.")
    def connections_down_alert_job() -> None:
        connections_down_alert()

    return connections_down_alert_job


def build_down_sensor(
    connections: Sequence[ConnectionDeclaration], alert_job: dg.JobDefinition
) -> dg.SensorDefinition:
    names = [connection.name for connection in connections]
    thresholds = {c.name: c.down_alert_after_minutes for c in connections}

    @dg.sensor(
        name=DOWN_SENSOR,
        job=alert_job,
        minimum_interval_seconds=60,
        description="Reads the latest connection health (state database and the health "
        "asset's metadata, never the network) and fails an alert run once per outage longer "
        "than the connection's threshold.",
    )
    def connections_down_sensor(
        context: dg.SensorEvaluationContext, state: StateDatabase
    ) -> Iterator[dg.RunRequest | dg.SkipReason]:
        report, problem = current_health(context.instance, state, names)
        if problem is not None:
            context.log.warning(f"state database not readable, using asset metadata: {problem}")
        down = down_too_long(report, datetime.now(UTC), thresholds)
        if not down:
            note = f"; state database not readable: {problem}" if problem else ""
            yield dg.SkipReason(
                f"no connection down past its threshold ({len(report)} of {len(names)} "
                f"checked){note}"
            )
            return
        for name, since, message in down:
            yield dg.RunRequest(
                run_key=f"{name}:{since}",
                run_config={"ops": {DOWN_ALERT_OP: {"config": {"message": message}}}},
                tags={"integration_platform/connection": name},
            )

    return connections_down_sensor


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _instant(value: Any) -> datetime | None:
    """An ISO text or datetime as an aware UTC datetime (None stays None)."""
    if value is None or value == "":
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _reason(exc: Exception) -> str:
    return " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
