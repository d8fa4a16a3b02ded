"""One writer per run folder: an advisory lock that the operating system drops when its holder dies.

Two trainings in one folder would interleave their logs and checkpoints and both exit 0. The lock
is ``fcntl.flock`` on ``RUN/.lock``: a second process gets a one-line error naming the holder's
PID; a lock file left by a killed process holds no lock, so it is taken over (stale) without help.
Platforms without ``fcntl`` run unlocked.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from ..errors import ConfigError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"


class RunLock:
    """``with RunLock(run_dir):`` holds the folder's lock for the block."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        if fcntl is None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(f"{self.path.parent} is in use by another training (PID {holder}); "
                              "wait for it or use another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock; the file stays (removing it would race a new holder)
            self._fd = None
