"""Connectors for maintenance management systems (CMMS/EAM)."""
