"""One `sparkjobs up` per data dir: an exclusive lock the kernel frees when the holder dies."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from sparkjobs.errors import AlreadyRunning


class UpLock:
    """Holds `<data_dir>/run/up.lock` for the life of the `up` process."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "run" / "up.lock"
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock, or raise AlreadyRunning naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise AlreadyRunning(
                f"`sparkjobs up` is already running on data dir {self.path.parent.parent} "
                f"(pid {holder}); stop it first (Ctrl-C in its terminal, or kill {holder}), "
                "or give this one another data_dir (SPARKJOBS_DATA_DIR)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
