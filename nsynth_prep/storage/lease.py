"""The writer lock of a cache on an object store: a lease object, created conditionally.

``flock`` cannot work on S3, so a writer of ``s3://.../<split>.zarr`` holds a lease: an object
``<split>.zarr.lock/lease-<generation>.json`` holding its pid, host, command and an expiry,
created with a conditional create (s3fs ``open(..., "xb")`` sends ``If-None-Match: *``, which S3
and moto refuse with 412 when the object exists; on ``file://`` a hard link of a written
temporary file, which refuses an existing name), so two writers cannot both create the same
generation. A heartbeat thread renews
the expiry every third of the lease time. The current lease is the highest generation:

- none (a holder deletes its lease when done), or the highest past its expiry (its holder was
  killed: no heartbeat), or held by a process of this host that is gone: the next writer
  creates generation + 1 (0 when there is none). Of two
  racing writers, one create fails and that writer looks again; a writer that finds a higher
  generation right after its create withdraws. The winner then removes the older generations.
- otherwise it is live, and a second writer gets the same one-line ``LockedError`` as with
  ``flock`` (or waits, with ``--wait``).

Limits (documented in docs/scaling.md): expiry is judged on the writers' clocks, so hosts must agree
to well within the lease time (``NSYNTH_LEASE_SECONDS``, default 60); a holder stalled for
longer than that (suspended, partitioned) can find its lease taken over: its heartbeat sees the
higher generation, or another writer's token in its own generation's object (numbers start
again at 0 once every lease is released), and says so in the log, and the writer ends with a ``LockedError`` saying so
instead of success, but it cannot stop writes already under way. Only backends known to refuse a conditional create are allowed (s3, file); others are refused with
one line rather than locked unsafely.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from nsynth_prep.errors import LockedError, StorageError
from nsynth_prep.storage.atomic import tmp_name
from nsynth_prep.storage.store import FILE_PROTOCOLS, Remote, write_atomic

log = logging.getLogger(__name__)

# Backends with a real conditional create (s3fs open(path, "xb"), checked against moto by the
# tests; a hard link on file://); gcsfs, adlfs and others are not known to have one: refused.
CONDITIONAL_CREATE = ("s3", "s3a", "file", "local")
_NAME = re.compile(r"lease-(\d{12})\.json$")


def lease_seconds() -> float:
    """How long a lease lasts without a heartbeat (``NSYNTH_LEASE_SECONDS``, default 60)."""
    try:
        return max(1.0, float(os.environ.get("NSYNTH_LEASE_SECONDS", "60")))
    except ValueError:
        return 60.0


def _generations(folder: Remote) -> dict[int, Remote]:
    found = {}
    for loc in folder.iterdir():
        match = _NAME.search(loc.name)
        if match:
            found[int(match.group(1))] = loc
    return found


def _read(loc: Remote) -> dict[str, Any] | None:
    try:
        info = json.loads(loc.read_text())
    except FileNotFoundError:
        return None
    except ValueError:  # a lease cut short cannot be trusted to be anyone's: treat it as expired
        return {}
    return info if isinstance(info, dict) else {}


def _pid_gone(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _pid_namespace() -> str:
    """This process's PID namespace ("" where there is none to read): containers that share a
    host name but not their PIDs must not judge each other's pids."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _live(info: dict[str, Any] | None, now: float) -> bool:
    if not info:  # unreadable: cut short, so no live holder wrote it whole
        return False
    if float(info.get("expires", 0)) <= now:
        return False
    # A holder on this host (and in this PID namespace) that has died left a lease that no
    # heartbeat renews: take it now rather than after its expiry.
    here = info.get("host") == socket.gethostname() and info.get("pidns") == _pid_namespace()
    return not (here and _pid_gone(info.get("pid")))


def describe(info: dict[str, Any]) -> str:
    left = float(info.get("expires", 0)) - time.time()
    return (f"pid {info.get('pid')} on {info.get('host')} ({info.get('command', '?')}, since {info.get('since', '?')}; "
            f"its lease runs {max(0, left):.0f} s more unless renewed)")


class Lease:
    """A held lease and its heartbeat; see the module docstring."""

    def __init__(self, folder: Remote, seconds: float) -> None:
        self.folder, self.seconds = folder, seconds
        self.generation = -1
        self.lost = False
        self._stop = threading.Event()
        # The token tells this writer's lease from another's of the same generation: numbers are
        # reused once every lease is released, and a stalled holder must not renew (or delete)
        # the lease of the writer that came after it.
        self._info = {"pid": os.getpid(), "host": socket.gethostname(), "pidns": _pid_namespace(),
                      "command": " ".join(sys.argv)[:300], "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                      "token": uuid.uuid4().hex}
        self._thread: threading.Thread | None = None

    @property
    def key(self) -> Remote:
        return self.folder / f"lease-{self.generation:012d}.json"

    def _payload(self) -> bytes:
        return json.dumps({**self._info, "expires": time.time() + self.seconds}).encode()

    def _create(self) -> None:
        """Create this generation's object, whole, only if it is absent (``FileExistsError`` if not).
        On S3 the object appears whole with its PUT; on a local filesystem a file created with
        O_EXCL is empty until written, and a reader then could take it for a cut-short one, so the
        content is written to a temporary file first and hard-linked to its name (link refuses
        an existing name)."""
        if self.folder.protocol in FILE_PROTOCOLS:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.key.with_name(tmp_name(self.key.name)).key  # unique to this write
            with open(tmp, "wb") as f:
                f.write(self._payload())
            try:
                os.link(tmp, self.key.key)
            finally:
                os.unlink(tmp)
            return
        with self.folder.fs.open(self.key.key, "xb") as f:
            f.write(self._payload())

    def try_take(self) -> dict[str, Any] | None:
        """Take the lease, or return the live holder's record."""
        while True:
            gens = _generations(self.folder)
            if gens:
                top = max(gens)
                info = _read(gens[top])
                if info is None:
                    continue  # released or cleaned up while we looked: look again
                if _live(info, time.time()):
                    return info
                self.generation = top + 1
            else:
                self.generation = 0
            try:
                self._create()
            except FileExistsError:
                continue  # another writer took this generation first
            except (NotImplementedError, ValueError) as exc:  # an fsspec backend without mode "xb"
                raise StorageError(f"{self.folder}: this {type(self.folder.fs).__name__} cannot create an object "
                                   f"only if it is absent ({exc}), which the writer lock needs; upgrade it "
                                   "(pip install -U 'nsynth[s3]')") from None
            if max(_generations(self.folder)) > self.generation:
                self.key.unlink(missing_ok=True)  # a faster writer is ahead: withdraw
                continue
            for g, loc in gens.items():  # the expired generations below ours
                if g < self.generation:
                    with contextlib.suppress(OSError):
                        loc.unlink(missing_ok=True)
            return None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._beat, name=f"lease {self.folder}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                gens = _generations(self.folder)
                if not self._ours() or max(gens) > self.generation:
                    self.lost = True
                    log.error("%s: this writer's lease was taken over (it was not renewed for %.0f s); another "
                              "process may now write the same cache", self.folder, self.seconds)
                    return
                write_atomic(self.key, self._payload())  # one PUT; on file:// tmp + rename
            except Exception as exc:  # the next beat tries again; the expiry leaves 2 more chances
                log.warning("%s: could not renew the lease (%s)", self.folder, exc)

    def _ours(self) -> bool:
        """Whether the lease object of our generation is still the one this writer created."""
        info = _read(self.key)
        return bool(info) and info.get("token") == self._info["token"]  # type: ignore[union-attr]

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(OSError):
            if self._ours():  # never another writer's lease of the same generation
                self.key.unlink(missing_ok=True)
            else:
                self.lost = True


@contextlib.contextmanager
def hold(folder: Remote, what: str, wait: bool = False, poll: float = 0.5) -> Iterator[Lease]:
    """Hold the lease under ``folder`` while the block runs (see the module docstring).

    Raises
    ------
    LockedError
        Another writer holds a live lease (and ``wait`` is False).
    StorageError
        The backend has no conditional create nsynth knows of.
    """
    if folder.protocol not in CONDITIONAL_CREATE:
        raise StorageError(f"{folder}: cannot lock a cache on {folder.protocol}:// (nsynth's writer lock needs a "
                           f"conditional create, known only for {', '.join(p + '://' for p in CONDITIONAL_CREATE)})")
    lease = Lease(folder, lease_seconds())
    while True:
        holder = lease.try_take()
        if holder is None:
            break
        if not wait:
            raise LockedError(f"{what} is being written by {describe(holder)}; wait for it to finish (or pass "
                              "--wait), then run this again")
        time.sleep(poll)
    lease.start()
    try:
        yield lease
    finally:
        lease.release()
    if lease.lost:  # the work is done, but maybe not alone: say so rather than report success
        raise LockedError(f"{what}: this writer's lease ({folder}) was taken over while it wrote (it was not "
                          f"renewed for {lease.seconds:.0f} s); another writer may have written the same cache: "
                          "run nsynth prep verify on it, and build it again if it reports problems")
