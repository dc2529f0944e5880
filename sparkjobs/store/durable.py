"""Putting a verified file in place: fsync, atomic rename, fsync of the folder, cache drop.

A reader never sees half a file: the bytes land in a partial file on the same
filesystem and are renamed only once they are whole, verified and on disk.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from sparkjobs.errors import DiskFull


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (the directory entry is on disk)."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def make_dirs(folder: Path) -> None:
    """Create `folder` and its missing parents, each durably (its parent fsynced).

    A file renamed into a folder made a moment ago is durable only once the folder's
    own entry is on disk too: fsyncing the file's folder does not write that.
    """
    missing: list[Path] = []
    current = folder
    while not current.is_dir():
        missing.append(current)
        current = current.parent
    for made in reversed(missing):
        made.mkdir(exist_ok=True)
        fsync_dir(made.parent)


def commit(descriptor: int, partial: Path, dest: Path) -> None:
    """fsync the open partial file, rename it to `dest`, fsync `dest`'s folder."""
    os.fsync(descriptor)
    make_dirs(dest.parent)
    os.replace(partial, dest)
    fsync_dir(dest.parent)
    drop_cache(descriptor)


def drop_cache(descriptor: int) -> None:
    """Evict the file's pages: on unified-memory nodes the page cache is GPU memory."""
    with contextlib.suppress(OSError, AttributeError):
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)


def preallocate(descriptor: int, size_bytes: int, dest: Path) -> None:
    """Reserve the whole file up front, so a full disk fails now and not half-way.

    Raises:
        DiskFull: naming the destination and the size asked for.
    """
    if size_bytes == 0:
        return
    try:
        os.posix_fallocate(descriptor, 0, size_bytes)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full(dest, size_bytes, exc) from exc
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        os.ftruncate(descriptor, size_bytes)


def disk_full(dest: Path, size_bytes: int, exc: OSError) -> DiskFull:
    return DiskFull(
        f"no space for {size_bytes} bytes in {dest.parent} ({exc.strerror}); nothing was "
        "kept. Fix: free space there, or choose another destination"
    )


def is_disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)
