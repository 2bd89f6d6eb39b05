"""Exclusive locks for writers: one process at a time writes a cache split or a run folder.

A lock is an ``flock`` on a small file beside the artifact (``<split>.zarr.lock``,
``<run>/.lock``). The kernel releases it when its holder exits, however it exits, so the lock of
a killed process is simply taken over by the next writer: there is no stale lock to clean. The
file holds the holder's pid, host and command, so a second writer is told who holds it.

A cache on an object store (a :class:`.store.Remote` lock location) cannot be ``flock``-ed: it
holds a lease object instead, with the same message for a second writer (see :mod:`.lease`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from nsynth_prep.errors import LockedError
from nsynth_prep.storage.store import FILE_PROTOCOLS, Location, Remote, storage_errors


def holder(lock_path: Path) -> str:
    """Who holds (or last held) a lock, from its file: ``pid 123 on host: nsynth prep ...``."""
    try:
        info = json.loads(Path(lock_path).read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    return f"pid {info.get('pid')} on {info.get('host')} ({info.get('command', '?')}, since {info.get('since', '?')})"


@contextlib.contextmanager
def exclusive(lock_path: Location, what: str, wait: bool = False, poll: float = 0.2) -> Iterator[None]:
    """Hold the exclusive lock ``lock_path`` while the block runs.

    Parameters
    ----------
    lock_path
        The lock file (created if needed; never deleted, so that two processes always lock the
        same inode); for a remote one, the prefix of its lease objects.
    what
        The artifact, for messages: ``"cache data/cache/train.zarr"``.
    wait
        Block until the holder is done instead of failing at once.

    Raises
    ------
    LockedError
        Another live process holds the lock (and ``wait`` is False).
    """
    if isinstance(lock_path, Remote) and lock_path.protocol in FILE_PROTOCOLS:
        # A file:// URL is a local path: the same flock as the path itself, so that a build by
        # either spelling of one folder locks out the other.
        lock_path = Path(lock_path.key)
    if isinstance(lock_path, Remote):
        from nsynth_prep.storage.lease import hold

        with hold(lock_path, what, wait):
            yield
        return
    lock_path = Path(lock_path)
    with storage_errors(lock_path):
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    raise LockedError(f"{what} is being written by {holder(lock_path)}; wait for it to "
                                      "finish (or pass --wait), then run this again") from None
                time.sleep(poll)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)[:300],
                "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        with contextlib.suppress(OSError):  # who holds it is a courtesy; the flock is the lock
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock
