"""Prep on a Dask cluster: the chunk-writing blocks of a build run as Dask tasks.

``nsynth prep build-cache SOURCE... --dask tcp://HOST:PORT`` (or ``DASK_SCHEDULER_ADDRESS``)
connects to a running scheduler; ``--dask local:N`` starts a ``LocalCluster`` of N one-thread
processes on this machine. The scan of the source (labels, the row plan, a ``.tar.gz``'s spool)
stays in the client, as in a local build; each task then owns whole blocks of chunks
(:class:`.blocks.ChunkJob`, the same decomposition as the local pool), so the bytes are the
same as a local build's. Workers read the source and write the cache themselves: both must be
on storage every worker reaches, which each task checks before it starts.

Dask is an optional extra (``pip install -e '.[dask]'``); nothing here imports it at module
level, so :func:`parse_dask` works (and says how to install it) without it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import logging
import os
import re
import signal
import socket
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nsynth_prep.builder.blocks import ChunkJob, write_block
from nsynth_prep.errors import ConfigError, NsynthError, SourceError, StorageError
from nsynth_prep.storage.store import Remote, probe

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install -e '.[dask]'"
CONNECT_TIMEOUT = 10.0  # seconds to reach a scheduler before giving up with one line
WORKERS_TIMEOUT = 60  # seconds a scheduler may take to have a worker (ones just started are joining)
# A task that raised something other than an NsynthError (an I/O error nsynth does not name, such as a
# network file system's EIO while a WAV is read) runs again this many times. A task whose worker died is rescheduled by the scheduler itself (up to its
# distributed.scheduler.allowed-failures, 3 by default), whatever this says.
RETRIES = 2
_LOCAL_RE = re.compile(r"local:(\d+)")
_ADDRESS_RE = re.compile(r"[a-z][a-z0-9+.-]*://\S+")


@dataclass(frozen=True)
class ClusterSpec:
    """A parsed ``--dask`` value: a scheduler address, or the size of a LocalCluster to start."""

    address: str | None = None
    local_workers: int = 0

    def __str__(self) -> str:
        return self.address or f"local:{self.local_workers}"


def parse_dask(text: str) -> ClusterSpec:
    """``"tcp://10.0.0.5:8786"`` or ``"local:4"`` -> :class:`ClusterSpec`; anything else a :class:`ConfigError`."""
    m = _LOCAL_RE.fullmatch(text)
    if m:
        if int(m.group(1)) < 1:
            raise ConfigError(f"--dask {text}: a LocalCluster needs at least 1 worker (local:N, N >= 1)")
        return ClusterSpec(local_workers=int(m.group(1)))
    if _ADDRESS_RE.fullmatch(text):
        return ClusterSpec(address=text)
    raise ConfigError(f"--dask {text!r}: expected a scheduler address (tcp://HOST:PORT) or local:N "
                      "(a LocalCluster of N processes)")


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ConfigError(f"--dask needs Dask's distributed scheduler, not installed here: {INSTALL_HINT}") from None
    return distributed


def local_cluster_options(workers: int) -> dict[str, Any]:
    """``LocalCluster`` arguments of ``--dask local:N``: N processes of one thread on 127.0.0.1,
    no dashboard, Dask's own log lines silenced below CRITICAL: at Ctrl-C a worker can lose its
    scheduler mid-heartbeat and log that with a traceback (an ERROR); what stops a build reaches the
    client as an exception, said in one line.

    Without a dashboard the scheduler still serves its HTTP routes (health, metrics), by default
    on port 8787 of every interface: here on a free port of 127.0.0.1, so that two builds (or a
    build beside a notebook's cluster) do not meet there.
    """
    return {"n_workers": workers, "threads_per_worker": 1, "processes": True, "host": "127.0.0.1",
            "dashboard_address": None, "scheduler_kwargs": {"dashboard_address": "127.0.0.1:0"},
            "silence_logs": logging.CRITICAL}


@contextlib.contextmanager
def connect(text: str) -> Iterator[DaskRunner]:
    """A :class:`DaskRunner` on the cluster ``text`` names, for the ``with`` body.

    ``local:N`` starts a LocalCluster (N processes of one thread each, on 127.0.0.1, no
    dashboard) and closes it at the end; an address is connected to within
    :data:`CONNECT_TIMEOUT` seconds or refused in one line. The client (and the LocalCluster) is
    closed however the body ends, Ctrl-C included.
    """
    spec = parse_dask(text)
    distributed = _import_distributed()
    with _quiet_distributed(), contextlib.ExitStack() as stack:
        if spec.address is None:
            # A terminal's Ctrl-C reaches every process of the group: the workers ignore it (from their
            # start, and again when a Nanny restarts one) and the client closes them, instead of each
            # printing a KeyboardInterrupt traceback.
            with _sigint_ignored():
                cluster = stack.enter_context(distributed.LocalCluster(**local_cluster_options(spec.local_workers)))
            client = stack.enter_context(distributed.Client(cluster))
            client.register_plugin(_ignore_sigint_plugin())
        else:
            try:
                client = distributed.Client(spec.address, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:  # distributed raises OSError("Timed out trying to connect ...")
                raise ConfigError(f"--dask {spec.address}: cannot reach the Dask scheduler ({exc})") from None
            stack.enter_context(client)
            try:  # tasks on a scheduler without workers would wait, silently, for ever
                client.wait_for_workers(1, timeout=WORKERS_TIMEOUT)
            except (TimeoutError, OSError):
                raise ConfigError(f"--dask {spec.address}: the scheduler has no workers (waited {WORKERS_TIMEOUT} s); "
                                  f"start some (dask worker {spec.address}) and run this again") from None
        runner = DaskRunner(client, str(spec))
        log.info("Dask: %s", runner.describe())
        yield runner


@contextlib.contextmanager
def _quiet_distributed() -> Iterator[None]:
    """Dask's own log lines in this process off for the ``with`` body, closing included: every key
    cancelled at Ctrl-C, each nanny closing, the client's attempts to reconnect to a lost scheduler.
    What stops a build reaches it as an exception, said in one line; ``nsynth -v`` shows them all."""
    logger = logging.getLogger("distributed")
    previous = logger.level
    if not log.isEnabledFor(logging.DEBUG):
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored in this process for the ``with`` body, so that processes spawned in it start so."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _ignore_sigint_plugin() -> Any:
    """A worker plugin: SIGINT ignored in a LocalCluster's worker, one a Nanny restarts included.

    Made here, not at module level, because its base class is Dask's (an optional import).
    """
    base = _import_distributed().WorkerPlugin

    class IgnoreSigint(base):  # type: ignore[misc, valid-type]
        name = "nsynth-ignore-sigint"

        def setup(self, worker: Any) -> None:
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, signal.SIG_IGN)

    return IgnoreSigint()


class DaskRunner:
    """Runs the blocks of a build as tasks on a connected client (see :class:`.blocks.ChunkRunner`)."""

    def __init__(self, client: Any, name: str) -> None:
        self.client, self.name = client, name

    def describe(self) -> str:
        workers = self.client.nthreads()
        return f"{self.name}: {len(workers)} workers, {sum(workers.values())} threads"

    def run(self, job: ChunkJob, blocks: Sequence[int], update: Callable[[int], None]) -> None:
        """Write ``blocks`` of ``job`` as one task each; ``update(rows)`` as each completes.

        The job goes to the cluster once, as the result of a task (so a worker that dies with
        it is recomputed from the scheduler's copy, where scattered data would be lost), and
        every block task takes it as an argument. The first error cancels the rest and is
        raised here: an :class:`.errors.NsynthError` as it was raised on the worker.
        """
        distributed = _import_distributed()
        tag = uuid.uuid4().hex[:8]  # this run's keys: a resumed build never meets an old client's tasks
        name = job.path.name
        with warnings.catch_warnings():
            # Dask warns of a graph over 10 MiB and suggests a future to send such data once: this is that
            # future. Pickled jobs measured 21 (TFRecord), 44 (folder) and 143 (synth) bytes a note: 6 to
            # 40 MiB for NSynth train's 289,205 notes.
            warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
            shared = self.client.submit(_the_job, job, key=f"nsynth-job-{name}-{tag}", pure=False)
        futures = [self.client.submit(write_block_task, shared, b, key=f"nsynth-{name}-block-{b}-{tag}",
                                      retries=RETRIES, pure=False) for b in blocks]
        try:
            for future in distributed.as_completed(futures):
                try:
                    result = future.result()  # re-raises an unexpected exception of the task (after its retries)
                except (concurrent.futures.CancelledError, distributed.comm.CommClosedError) as exc:
                    # (distributed's FutureCancelledError, with the reason, is a CancelledError)
                    # Not by us (we cancel after the loop): the scheduler went away, or another client cancelled.
                    why = getattr(exc, "reason", None) or "the connection to the scheduler closed"
                    raise ConfigError(f"Dask: lost the tasks of {job.path} ({why}); the chunks written stay, and the "
                                      "same command resumes") from None
                except distributed.KilledWorker as exc:  # not our bug: workers died under it (memory, most often)
                    dead = exc.allowed_failures + 1
                    raise ConfigError(f"Dask: block {blocks[futures.index(future)]} of {job.path} killed the "
                                      f"{dead} worker{'s' if dead > 1 else ''} it ran on (out of memory? see the "
                                      "workers' logs); the chunks written stay, and the same command resumes") from None
                if isinstance(result, NsynthError):
                    raise result
                update(result)
        finally:  # an error or Ctrl-C: no block starts for a build that has stopped (a running one ends)
            self.client.cancel([*futures, shared])


def _the_job(job: ChunkJob) -> ChunkJob:
    return job


def write_block_task(job: ChunkJob, block: int) -> int | NsynthError:
    """The Dask task: check that this worker reaches the source and cache, write the block.

    Returns the rows written, or the :class:`.errors.NsynthError` that stopped it: returned,
    not raised, so that a bad note or an unreachable path is not retried as a crash would be.
    """
    try:
        _keep_freed_memory()
        check_reachable(job)
        return write_block(job, block)
    except NsynthError as exc:
        return exc


_MALLOC_TUNED: list[bool] = []  # set once per worker process


def _keep_freed_memory() -> None:
    """Let this worker's C allocator reuse the memory of freed arrays instead of handing it back.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``; setting it at all turns off
    glibc's adaptive mmap threshold, so every array over 128 KiB is a fresh ``mmap`` whose pages
    fault in, zeroed, on first touch. A block's task allocates tens of MB of such arrays: on a
    LocalCluster of one worker a framed+trimmed block took 0.16 s against 0.07-0.10 s in the
    client process, and 0.10-0.11 s with the variable unset (the numba int16 kernel alone: 15 ms
    against 1-3 ms). Arrays up to 32 MiB now come from the heap and freed memory up to 256 MiB
    is kept; a build's working set is a few blocks, tens of MB. The setting stays with the worker
    process after the build (on a shared cluster, its workers keep up to that much freed memory,
    which Dask's memory monitor counts). Linux/glibc only; elsewhere a no-op.
    """
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED.append(True)
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD (its maximum on 64-bit glibc)
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc
        pass


def _where() -> str:
    """This worker as a message names it: its address and host."""
    try:
        from distributed import get_worker

        address = get_worker().address
    except (ImportError, ValueError):  # not in a Dask worker (called directly)
        address = f"pid {os.getpid()}"
    return f"Dask worker {address} (host {socket.gethostname()})"


def _source_paths(job: ChunkJob) -> list[tuple[Path, str]]:
    """What the job's reader opens (see :meth:`.catalog.FeatureReader.opens`), with what it is, for
    the reachability check. A spool is where the build put it: say where that is, and why shared."""
    where = ("$NSYNTH_SPOOL_DIR (the spool of a cache at a URL), which must be a shared folder"
             if isinstance(job.path, Remote) else "the build's work folder, which must be on shared storage too")
    return [(opened.path, f"{opened.what} into {where}" if opened.spooled else opened.what)
            for opened in job.reader.opens()]


def check_reachable(job: ChunkJob) -> None:
    """Raise, naming this worker and the path, if it cannot read the source or write the cache.

    Workers read the source and write ``<split>.zarr`` and ``<split>.zarr.build`` themselves, so
    all three must be on storage every worker reaches, at the same path on every host.
    """
    hint = "sources and caches of a Dask build must be on storage that every worker reaches, at the same path"
    for path, what in _source_paths(job):
        if not os.access(path, os.R_OK):
            raise SourceError(f"{_where()} cannot read {path} ({what}); {hint}")
    if isinstance(job.path, Remote):  # an object store: this worker's credentials and endpoint must reach it
        try:
            probe(job.path)
            found = (job.path / "zarr.json").is_file()
        except (StorageError, OSError) as exc:
            raise StorageError(f"{_where()} cannot use {job.path}: {exc}; {hint}") from None
        if not found:
            raise StorageError(f"{_where()} cannot read {job.path / 'zarr.json'} (the cache being built); {hint}")
        return  # objects have no folder permissions to check: a refused write fails its task with the URL
    # zarr.json proves that this is the client's cache, not an empty folder of the same name on this host.
    if not os.access(job.path / "zarr.json", os.R_OK):
        raise StorageError(f"{_where()} cannot read {job.path / 'zarr.json'} (the cache being built); {hint}")
    if isinstance(job.work, Path) and not os.access(job.work / "done", os.W_OK | os.X_OK):
        raise StorageError(f"{_where()} cannot write {job.work / 'done'} (the build's work folder); {hint}")
