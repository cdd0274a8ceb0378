"""Gold marts: figures people and BI tools read, computed from canonical silver tables."""
