"""The chunk-block writer of a build: one block of rows in, its chunks and their done marks out.

A build splits its rows in blocks of whole chunks (:class:`ChunkJob`); :func:`write_block`
computes one block's features, writes its chunks and marks each one done (with its checksum)
in ``<split>.zarr.build/done/<feature>/<chunk>.json`` after zarr has written it, atomically. The
blocks run in this process, in a local pool (:class:`LocalRunner`) or on a Dask cluster
(:class:`.dask_cluster.DaskRunner`); all of them import this module, not each other.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import zarr

from nsynth_prep.cache import format as cache
from nsynth_prep.cpus import process_map
from nsynth_prep.features import FeatureSpec
from nsynth_prep.readers.catalog import FeatureReader
from nsynth_prep.storage import store
from nsynth_prep.storage.store import Location, storage_errors


@dataclass(frozen=True, eq=False)
class ChunkJob:
    """What a chunk writer needs, in one picklable object: paths and arrays, no open files.

    Sent once to each local pool process, or to each Dask worker (see :mod:`.dask_cluster`), and
    passed to :func:`write_block` with a block number. ``order`` is (n,) int64: the catalog
    position of each cache row; ``reader`` reopens its files lazily in whatever process runs it.
    """

    path: Location  # the cache group, <split>.zarr
    work: Location  # <split>.zarr.build: done markers (and a .tar.gz's spool)
    reader: FeatureReader
    order: np.ndarray
    specs: tuple[FeatureSpec, ...]
    block_rows: int  # rows per task: the largest feature chunk, so that every chunk has one writer


class ChunkRunner(Protocol):
    """Runs blocks of a job (here, in a pool, on a Dask cluster); ``update(rows)`` as each one ends."""

    def run(self, job: ChunkJob, blocks: Sequence[int], update: Callable[[int], None]) -> None: ...


def write_block(job: ChunkJob, block: int) -> int:
    """Compute and write every chunk of rows ``[block * B, (block + 1) * B)``; returns notes done."""
    path, work, specs, reader, order = job.path, job.work, job.specs, job.reader, job.order
    group = zarr.open_group(store.zarr_store(path), mode="r+")
    arrays: dict[str, Any]
    arrays = {s.name: group[s.name] for s in specs}  # zarr arrays, written whole chunks at a time
    start, stop = block * job.block_rows, min(len(order), (block + 1) * job.block_rows)
    step = min(s.chunk_rows for s in specs)  # every chunk size is a multiple of this
    pending: dict[str, list[np.ndarray]] = {s.name: [] for s in specs}
    for sub in range(start, stop, step):
        end = min(stop, sub + step)
        feats = reader.read_features(order[sub:end], specs)
        for s in specs:
            pending[s.name].append(feats[s.name])
            if end % s.chunk_rows == 0 or end == stop:  # a whole chunk (or the array's last)
                data = np.concatenate(pending[s.name])
                pending[s.name] = []
                with storage_errors(path / s.name):
                    arrays[s.name][end - len(data) : end] = data
                mark_done(work, s, (end - len(data)) // s.chunk_rows, cache.checksum(data))
    return stop - start


class LocalRunner:
    """Runs the blocks of a job on this machine: in this process, or in a pool of ``workers``
    forked processes (see :class:`ChunkRunner`)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def run(self, job: ChunkJob, blocks: Sequence[int], update: Callable[[int], None]) -> None:
        if self.workers == 1 or len(blocks) == 1:
            for b in blocks:
                update(write_block(job, b))
            return
        # Each process gets the job once (initargs; inherited at fork, not pickled per task).
        with contextlib.closing(process_map(_pool_block, blocks, min(self.workers, len(blocks)), ordered=False,
                                            initializer=_set_pool_job, initargs=(job,))) as written:
            for done in written:
                update(done)


# In a pool process: the job it was started with. The one module-level holder left: a pool's
# tasks are plain functions of their argument, and passing the job with every block would pickle
# it per task (tens of MiB for NSynth train); the initializer sets it once per process instead.
# Only pool processes set it (the parent never does), and each is forked for one job.
_POOL_JOB: list[ChunkJob] = []


def _set_pool_job(job: ChunkJob) -> None:
    _POOL_JOB[:] = [job]


def _pool_block(block: int) -> int:
    return write_block(_POOL_JOB[0], block)


# --- done marks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DoneMarks:
    """The done marks of a build's work folder, as the client sees them before it dispatches.

    For a remote cache they are listed once (one LIST request instead of a HEAD per block:
    NSynth train's trimmed has 9,000 chunks), after the marks of a cache that is no more were
    cleared; ``listed`` is None for a local folder, where each mark is looked up.
    """

    work: Location
    listed: frozenset[str] | None = None

    @classmethod
    def of(cls, work: Location, specs: Sequence[FeatureSpec]) -> DoneMarks:
        if not isinstance(work, store.Remote):
            return cls(work)
        return cls(work, frozenset(str(store.Remote(f"{work.protocol}://{key}")) for s in specs
                                   for key in work.fs.find((work / "done" / s.name).key)))

    def block_done(self, specs: Sequence[FeatureSpec], block: int, block_rows: int, n: int) -> bool:
        """Whether every chunk of every spec in rows ``[block * block_rows, ...)`` of ``n`` is marked."""
        for s in specs:
            first = block * block_rows // s.chunk_rows
            last = (min(n, (block + 1) * block_rows) - 1) // s.chunk_rows
            marks = [self.work / "done" / s.name / f"{c}.json" for c in range(first, last + 1)]
            if not all(str(m) in self.listed if self.listed is not None else m.exists() for m in marks):
                return False
        return True


def mark_done(work: Location, spec: FeatureSpec, chunk: int, crc: str) -> None:
    """Record chunk ``chunk`` of ``spec`` written, with its checksum (one atomic write)."""
    with storage_errors(work):
        store.write_atomic(work / "done" / spec.name / f"{chunk}.json", json.dumps({"crc": crc}).encode())


def collect_checksums(work: Location, spec: FeatureSpec, n: int) -> list[str]:
    """The checksum of every chunk of ``spec`` (``n`` rows), from their done marks, in order."""
    chunks = range(math.ceil(n / spec.chunk_rows))
    if isinstance(work, store.Remote):  # fetched concurrently (fsspec's batch cat), not one GET at a time
        keys = [(work / "done" / spec.name / f"{c}.json").key for c in chunks]
        got = work.fs.cat(keys) if keys else {}
        return [json.loads(got[k])["crc"] for k in keys]
    return [json.loads((work / "done" / spec.name / f"{c}.json").read_text())["crc"] for c in chunks]
