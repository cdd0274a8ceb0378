"""One run per sync on SQLite: an exclusive OS file lock next to the database file.

PostgreSQL serialises runs with a session advisory lock, which the server releases when the
holder's connection ends. The file lock is its SQLite counterpart, chosen over a lock row
with a lease for the same reason: the operating system releases it when the holding process
ends, however it ends (kill, crash, power loss of the process), so a crashed run never blocks
the next one and no lease length has to be guessed. A lease would either block the next run
for the rest of the lease after a crash, or have to be renewed while a long run reads or
writes, by a heartbeat that itself competes for SQLite's single writer. SQLite is a file on
one host, so a host-local lock reaches every process that can open the database.

The lock is ``flock`` on POSIX and ``msvcrt.locking`` on Windows; both are held per open
file, so two runs in one process (threads) exclude each other as well. The file is left in
place after use: removing it while another process opens it would let two runs lock two
different files.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

WINDOWS_LOCK_OFFSET = 1 << 20  # the byte locked on Windows, past the holder's description


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
    """Hold ``path`` locked for the block, or raise :class:`LockHeld` at once (no waiting).

    While held, the file names the holder (process id, host, since when) for the message
    another run gets.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_lock(fd):
            raise LockHeld(path, _holder(path))
        try:
            _describe_holder(fd)
            yield
        finally:
            os.ftruncate(fd, 0)
            _unlock(fd)
    finally:
        os.close(fd)


def _describe_holder(fd: int) -> None:
    since = datetime.now(UTC).isoformat(timespec="seconds")
    text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since})
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, text.encode())


def _holder(path: Path) -> str:
    """The holder as it described itself, or a plain phrase while it has not yet."""
    try:
        found = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        found = {}
    if not isinstance(found, dict) or "pid" not in found:
        return "another process"
    return f"process {found['pid']} on {found.get('host', '?')} since {found.get('since', '?')}"


if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
