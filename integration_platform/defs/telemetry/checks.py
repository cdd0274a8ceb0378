"""Freshness of the telemetry: every registered device must have reported recently."""

from datetime import UTC, datetime

import dagster as dg

from integration_platform.defs.telemetry.assets import SENSOR_READINGS, current_health
from integration_platform.lake import DeltaLake

DEVICE_FRESHNESS_CHECK = "device_freshness"


@dg.asset_check(
    asset=SENSOR_READINGS,
    name=DEVICE_FRESHNESS_CHECK,
    description="Fails for devices silent longer than 3 expected intervals (device registry).",
)
def device_freshness(lake: DeltaLake) -> dg.AssetCheckResult:
    """A missing table means the collector has not written yet: a warning, not an error."""
    health = current_health(lake, as_of=datetime.now(UTC))
    if health is None:
        return dg.AssetCheckResult(
            passed=True,
            severity=dg.AssetCheckSeverity.WARN,
            description="no data yet: telemetry/sensor_readings does not exist",
            metadata={"status": "no data yet"},
        )
    offline = health[health["status"] == "offline"]
    table = health[["device_id", "status", "last_seen", "silent_s", "expected_interval_s"]]
    return dg.AssetCheckResult(
        passed=offline.empty,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            "all devices reporting"
            if offline.empty
            else f"silent: {', '.join(offline['device_id'].astype(str))}"
        ),
        metadata={
            "devices": len(health),
            "offline": len(offline),
            "devices_table": dg.MetadataValue.md(table.to_markdown(index=False)),
        },
    )
