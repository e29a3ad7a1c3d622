"""One run at a time per dataset: two runs writing one output folder mix their artefacts.

The lock is an advisory ``flock`` on ``data/.locks/<dataset>.lock``. The kernel drops it
when its holder exits, however it exits (``kill -9`` included), so a lock left by a dead
run is simply taken over; the file's text (pid, command, start time) only serves to name
the holder in the refusal. The file is never deleted: deleting it would let a waiting
process lock an orphaned inode while a third one locks a new file.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sys
import time
from pathlib import Path

from jmds_pipeline.errors import RunError

logger = logging.getLogger(__name__)


class RunLockError(RunError):
    """Another live run holds the dataset's lock."""


def lock_path(root: Path, dataset: str) -> Path:
    return Path(root) / "data" / ".locks" / f"{dataset}.lock"


def _holder(text: str) -> dict[str, object]:
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """``acquire()`` or raise :class:`RunLockError` naming the holder; ``release()``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(os.pread(fd, 65536, 0).decode("utf-8", "replace"))
            os.close(fd)
            raise RunLockError(
                f"another run is writing this dataset's outputs: pid {holder.get('pid', '?')} "
                f"({holder.get('command', '?')}), started {holder.get('started', '?')}; "
                f"wait for it or stop it (lock: {self.path})"
            ) from None
        previous = _holder(os.pread(fd, 65536, 0).decode("utf-8", "replace"))
        if previous and not _alive(previous.get("pid")):
            logger.info("taking over %s from pid %s, which is no longer running",
                        self.path, previous.get("pid"))
        record = {
            "pid": os.getpid(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "?",
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
