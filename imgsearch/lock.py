"""One writer per index dir: an OS file lock, released by the kernel when its process dies."""

from __future__ import annotations

import fcntl
import os

from .errors import IndexLocked

LOCK_NAME = ".write.lock"


class WriteLock:
    def __init__(self, index_dir: str):
        self.path = os.path.join(index_dir, LOCK_NAME)
        self._fd: int | None = None

    def __enter__(self) -> "WriteLock":
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise IndexLocked(
                f"another imgsearch process (pid {holder}) is writing to {os.path.dirname(self.path)}; "
                "wait for it to finish (searches keep working meanwhile)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
