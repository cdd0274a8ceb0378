"""Telemetry is processed by UTC day, the partition column ``date`` of the readings table."""

import dagster as dg

# end_offset=1: today's partition exists while the day is still filling, so the sensor can
# refresh today's rollups as readings arrive.
telemetry_daily_partitions = dg.DailyPartitionsDefinition(
    start_date="2025-01-01", timezone="UTC", end_offset=1
)
