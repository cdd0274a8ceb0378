"""One run per sync on SQLite: an exclusive OS file lock next to the database file.

PostgreSQL serialises runs with a session advisory lock, which the server releases when the
holder's connection ends. The file lock is its SQLite counterpart, chosen over a lock row
with a lease for the same reason: the operating system releases it when the holding process
ends, however it ends (kill, crash, power loss of the process), so a crashed run never blocks
the next one and no lease length has to be guessed. A lease would either block the next run
for the rest of the lease after a crash, or have to be renewed while a long run reads or
writes, by a heartbeat that itself competes for SQLite's single writer. SQLite is a file on
one host, so a host-local lock reaches every process that can open the database.

The lock is the ``filelock`` library's (``flock`` on POSIX, ``msvcrt.locking`` on Windows;
a Dagster dependency): held per open file, so two runs in one process (threads) exclude each
other as well, without its fallback to a "soft" lock file that a crash would leave behind. The
lock file is left in place after use: removing it while another process opens it would let
two runs lock two different files. Who holds it is written beside it (``<lock>.holder``), for
the message another run gets.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout


class LockHeld(RuntimeError):
    """Another process (or thread) holds the lock; ``holder`` describes it when known."""

    def __init__(self, path: Path, holder: str) -> None:
        self.path = path
        self.holder = holder
        super().__init__(f"{path} is locked by {holder}")


def sync_lock_path(database: str | Path, sync_name: str) -> Path:
    """Where the lock of one sync lives: ``<database file>.sync-locks/<sync name>.lock``."""
    database = Path(database).expanduser().resolve()
    return database.with_name(f"{database.name}.sync-locks") / f"{sync_name}.lock"


@contextmanager
def exclusive_file_lock(path: Path) -> Iterator[None]:
    """Hold ``path`` locked for the block, or raise :class:`LockHeld` at once (no waiting)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(
        path,
        blocking=False,
        thread_local=False,
        preserve_lock_file=True,
        fallback_to_soft=False,
    )
    holder = path.with_name(path.name + ".holder")
    try:
        lock.acquire()
    except Timeout:
        raise LockHeld(path, _holder(holder)) from None
    try:
        since = datetime.now(UTC).isoformat(timespec="seconds")
        about = {"pid": os.getpid(), "host": socket.gethostname(), "since": since}
        holder.write_text(json.dumps(about), encoding="utf-8")
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()


def _holder(path: Path) -> str:
    """The holder as it described itself, or a plain phrase while it has not yet."""
    try:
        found = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        found = {}
    if not isinstance(found, dict) or "pid" not in found:
        return "another process"
    return f"process {found['pid']} on {found.get('host', '?')} since {found.get('since', '?')}"
