"""The Delta lake: where the lake lives, its layers, and the IO manager that writes to it."""

from integration_platform.lake.io_manager import DeltaIOManager
from integration_platform.lake.resource import DeltaLake, Layer, lake_uri

__all__ = ["DeltaIOManager", "DeltaLake", "Layer", "lake_uri"]
