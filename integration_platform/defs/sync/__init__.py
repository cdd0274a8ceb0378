"""Syncs between systems: the shared audit table (each sync's job, schedule, sensor and
conflict queue come from its ``SyncComponent`` declaration)."""
