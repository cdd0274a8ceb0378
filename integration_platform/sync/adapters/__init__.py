"""Sync adapters: how the engine reads and writes one kind of system.

Vendor adapters are imported from their modules (``adapters.maximo``, ``adapters.sql``) so
importing this package loads no connector.
"""

from integration_platform.sync.adapters.base import SyncAdapter, WriteResult

__all__ = ["SyncAdapter", "WriteResult"]
