"""Component types that the YAML declarations under ``defs/`` instantiate.

Registered through ``[tool.dg.project] registry_modules`` so ``dg list components`` shows them.
"""

from integration_platform.components.connection import ConnectionComponent
from integration_platform.components.file_extract import FileExtractComponent
from integration_platform.components.mapping import MappingComponent
from integration_platform.components.sync import SyncComponent

__all__ = ["ConnectionComponent", "FileExtractComponent", "MappingComponent", "SyncComponent"]
