"""What a ``ConnectionComponent``'s YAML declares, and the names derived from it.

Shared by the component (resources and bronze extracts, ``connection.py``) and the health
job and sensor (``connection_health.py``).
"""

from typing import Any

import dagster as dg
from pydantic import Field

from integration_platform.connectors.registry import CONNECTORS

# One writer per lake table (deploy/dagster.yaml limits the tag per value; the pool is the
# same limit for op-level concurrency).
LAKE_WRITER_TAG = "integration_platform/lake_writer"


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
    health_retention_days: float = Field(
        default=90.0,
        gt=0,
        description="Checks kept in the state database (connection_health_checks); the newest "
        "per connection is always kept. The lake table gold/connection_health keeps all.",
    )


def resource_key(connection: str, *, secondary: bool = False) -> str:
    return f"connection_{connection}" + ("_secondary" if secondary else "")


def entity_name(entity: str | EntityDeclaration) -> str:
    return entity if isinstance(entity, str) else entity.name


def has_secondary(connection: ConnectionDeclaration) -> bool:
    return bool(connection.secondary_base_url or connection.secondary_base_url_env)
