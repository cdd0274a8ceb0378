"""Sensor streams: collectors (MQTT, Modbus), the local spool and the Delta writer.

A reading travels collector -> spool (durable, local) -> writer -> Delta table
``telemetry/sensor_readings``. Nothing is imported here, so importing a submodule stays cheap;
see ``docs/streams.md`` for the design.
"""
