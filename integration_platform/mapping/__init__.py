"""Field mapping from source records to the canonical model."""
