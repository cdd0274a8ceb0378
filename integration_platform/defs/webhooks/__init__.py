"""Processing of webhook events: the pending-events sensor, its job, and the inbox status."""
