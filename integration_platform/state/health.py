"""Connection health in the state database: one row per check of each declared connection.

``connections_health_job`` appends a row per connection and check; ``connections_down_sensor``
and ``integration-platform connections health`` read the newest row per connection. The table
is the operational record (queried by SQL, independent of the Dagster event log and the lake);
``gold/connection_health`` in the lake keeps the full history for analytics.

``down_since`` is stored on every row of an outage, copied forward from the previous row of the
same connection while it stays down. An outage therefore keeps one start time however the
history is pruned, which the sensor uses as the alert's run key (one alert per outage).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from integration_platform.state.models import NOW, Base, BigIntPK, utcnow

HEALTH_STATUSES: tuple[str, ...] = ("up", "failover", "down")
# The endpoint that answered: the primary, the secondary (failover), or none (both failed).
HEALTH_ENDPOINTS: tuple[str, ...] = ("primary", "secondary", "none")


def _in_list(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class ConnectionHealthCheck(Base):
    """One health check of one connection: status, endpoint used, latency and what was said.

    ``latency_ms`` and ``detail`` are those of the last endpoint tried (the secondary after a
    failed primary, whose own message is kept in ``primary_detail``).
    """

    __tablename__ = "connection_health_checks"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    connection: Mapped[str] = mapped_column(sa.String(200))
    status: Mapped[str] = mapped_column(sa.String(16))
    endpoint: Mapped[str] = mapped_column(sa.String(16))
    ok: Mapped[bool] = mapped_column()
    latency_ms: Mapped[float] = mapped_column(sa.Float)
    detail: Mapped[str] = mapped_column(sa.Text)
    primary_detail: Mapped[str | None] = mapped_column(sa.Text)
    # First check of the current outage; null unless status is down.
    down_since: Mapped[datetime | None] = mapped_column()
    checked_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    # The Dagster run that made the check (None outside Dagster).
    run_id: Mapped[str | None] = mapped_column(sa.String(64))

    __table_args__ = (
        sa.CheckConstraint(_in_list("status", HEALTH_STATUSES), name="status"),
        sa.CheckConstraint(_in_list("endpoint", HEALTH_ENDPOINTS), name="endpoint"),
        # "Newest check per connection" and pruning by age.
        sa.Index("ix_connection_health_checks_connection_checked_at", "connection", "checked_at"),
    )


_T = ConnectionHealthCheck.__table__


@dataclass(frozen=True)
class HealthCheck:
    """A connection's check as the health job hands it over."""

    connection: str
    status: str
    endpoint: str
    latency_ms: float
    detail: str
    primary_detail: str | None = None

    @classmethod
    def from_report(cls, connection: str, state: Mapping[str, Any]) -> HealthCheck:
        """From a state of ``components.connection.check_connection``."""
        return cls(
            connection=connection,
            status=str(state["status"]),
            endpoint=str(state["endpoint"]),
            latency_ms=float(state["latency_ms"]),
            detail=str(state.get("detail") or ""),
            primary_detail=state.get("primary_detail"),
        )


@dataclass(frozen=True)
class LatestHealth:
    """The newest recorded check of a connection."""

    connection: str
    status: str
    endpoint: str
    ok: bool
    latency_ms: float
    detail: str
    primary_detail: str | None
    down_since: datetime | None
    checked_at: datetime
    run_id: str | None

    def as_report(self) -> dict[str, Any]:
        """The shape of one entry of the ``connections`` metadata of ``gold/connection_health``."""
        state: dict[str, Any] = {
            "status": self.status,
            "endpoint": self.endpoint,
            "latency_ms": self.latency_ms,
            "detail": self.detail,
            "checked_at": self.checked_at.isoformat(),
        }
        if self.primary_detail is not None:
            state["primary_detail"] = self.primary_detail
        if self.down_since is not None:
            state["down_since"] = self.down_since.isoformat()
        return state


def record_checks(
    engine: Engine,
    checks: Sequence[HealthCheck],
    *,
    checked_at: datetime,
    run_id: str | None = None,
) -> dict[str, datetime | None]:
    """Append one row per check in one transaction; ``down_since`` per connection.

    A connection that is down keeps the ``down_since`` of its previous row if that row was
    down too; otherwise its outage starts at ``checked_at``.
    """
    names = [check.connection for check in checks]
    with engine.begin() as connection:
        previous = _latest(connection, names)
        rows = []
        since: dict[str, datetime | None] = {}
        for check in checks:
            before = previous.get(check.connection)
            started = None
            if check.status == "down":
                carried = before.down_since if before and before.status == "down" else None
                started = carried or checked_at
            since[check.connection] = started
            rows.append(
                {
                    "connection": check.connection,
                    "status": check.status,
                    "endpoint": check.endpoint,
                    "ok": check.status != "down",
                    "latency_ms": check.latency_ms,
                    "detail": check.detail,
                    "primary_detail": check.primary_detail,
                    "down_since": started,
                    "checked_at": checked_at,
                    "run_id": run_id,
                }
            )
        if rows:
            connection.execute(sa.insert(_T), rows)
    return since


def latest_checks(
    engine: Engine, connections: Iterable[str] | None = None
) -> dict[str, LatestHealth]:
    """The newest check of each connection (of the given ones, or of all recorded)."""
    with engine.connect() as connection:
        return _latest(connection, None if connections is None else list(connections))


def _latest(connection: sa.Connection, names: list[str] | None) -> dict[str, LatestHealth]:
    rank = (
        sa.func.row_number()
        .over(partition_by=_T.c.connection, order_by=(_T.c.checked_at.desc(), _T.c.id.desc()))
        .label("rank")
    )
    inner = sa.select(_T, rank)
    if names is not None:
        if not names:
            return {}
        inner = inner.where(_T.c.connection.in_(names))
    ranked = inner.subquery()
    columns = [ranked.c[column.name] for column in _T.columns]
    rows = connection.execute(sa.select(*columns).where(ranked.c.rank == 1)).mappings()
    found = {}
    for row in rows:
        found[row["connection"]] = LatestHealth(
            connection=row["connection"],
            status=row["status"],
            endpoint=row["endpoint"],
            ok=bool(row["ok"]),
            latency_ms=float(row["latency_ms"]),
            detail=row["detail"],
            primary_detail=row["primary_detail"],
            down_since=row["down_since"],
            checked_at=row["checked_at"],
            run_id=row["run_id"],
        )
    return found


def prune_checks(engine: Engine, *, older_than: timedelta, now: datetime) -> int:
    """Delete checks older than ``older_than``, except each connection's newest; the count.

    The newest row carries the current status and outage start, so it stays whatever its
    age (a paused schedule must not make an ongoing outage look new).
    """
    newest = sa.select(sa.func.max(_T.c.id)).group_by(_T.c.connection)
    statement = sa.delete(_T).where(_T.c.checked_at < now - older_than, _T.c.id.not_in(newest))
    with engine.begin() as connection:
        return connection.execute(statement).rowcount or 0


__all__ = [
    "HEALTH_ENDPOINTS",
    "HEALTH_STATUSES",
    "ConnectionHealthCheck",
    "HealthCheck",
    "LatestHealth",
    "latest_checks",
    "prune_checks",
    "record_checks",
]
