"""Stream a cache into a model: whole chunks, read ahead in threads, shuffled in a bounded buffer.

:class:`ChunkStream` is a plain ``torch.utils.data.IterableDataset``. Each epoch it permutes
the chunk order (seeded by ``seed`` and the epoch) and goes through it in groups of
``buffer_chunks`` chunks: while the rows of one group are shuffled and yielded in batches, a
pool of threads reads the next group (file read, Blosc decompression and checksum each release
the GIL, so they run beside the consumer and beside each other). With ``num_workers > 0`` each
DataLoader worker takes a disjoint share of the chunks and its share of the cores; :func:`batches`
re-cuts the workers' tail pieces so that every row is seen exactly once per epoch and only the
very last batch may be partial (or dropped). Labels are read once and kept in memory; only
features stream.

What an epoch of a small split pays before its first batch is most of it (a 4,000-note pooled
epoch is one group of four chunks), so the stream keeps what it can from one epoch to the next:
the reader threads, the maps of unencoded chunks, the group buffers of encoded ones, which
mapped chunks passed their check (see :meth:`.CheckedArray.read_rows`), and the batch buffers
(reused once the consumer has let go of a batch, see :class:`.batching.BatchMemory`): from the second
epoch on, an unchanged unencoded chunk costs no reader and no check, only the gather.

Under torchrun each rank takes a disjoint share of every epoch's chunk order (``rank::world`` of
the same seeded permutation, before the DataLoader workers split it again), so across the ranks
every row is yielded exactly once per epoch; :meth:`ChunkStream.shares` says how many rows each
rank holds, from the labels alone, so the training loop can plan equal steps on every rank.

Features are yielded as stored: int16 audio (``framed``, ``trimmed``) stays int16, half the
bytes of float32 through the pipes, the pinned copy and the host-to-device transfer, and
:func:`to_float` makes it float32 on the device (``x * stream.scale``; exact, the scale being
1/32768). :class:`.splits.Split` does that for the training loop, which sees float32 as before;
:class:`.splits.DeviceSplit` is the other mode, the whole split resident in (GPU) memory.

Both check what they read against the checksums recorded at build time (per chunk as the
stream reads it, every chunk when a split is loaded, the task's labels on open): a damaged cache
stops with one ``CacheError`` line naming the array and chunk instead of training on wrong
numbers (see :mod:`nsynth_prep.cache.checked`).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from nsynth_prep.cache import format as cache_format
from nsynth_prep.cache.checked import CheckedArray
from nsynth_prep.cpus import cpu_threads
from nsynth_prep.errors import NsynthError
from nsynth_prep.storage.store import Where
from nsynth_train.batching import Batch, BatchBuilder, BatchMemory
from nsynth_train.recipe import balanced_counts
from nsynth_train.tasks import Task


def to_float(x: torch.Tensor, scale: float) -> torch.Tensor:
    """A batch as the model takes it: float32 values in [-1, 1].

    ``x``: (B, ...) int16 audio or float32 as stored, on any device; convert where it will be
    used, e.g. after the copy to the GPU. int16 times 2**-15 is exact in float32, so the result
    is bit for bit the float the source held.
    """
    if x.dtype == torch.float32:
        return x if scale == 1.0 else x * scale
    if x.device.type == "cpu":
        # Into memory from numpy's allocator: torch's page-faults every large new tensor. A framed
        # batch (768 x 100 x 160) ran at 55,000 rows/s through x.to(float32), 206,000 this way, on
        # the 2-core reference machine (docs/benchmarks.md).
        out = torch.from_numpy(np.empty(tuple(x.shape), np.float32))
        return out.copy_(x).mul_(scale)
    return x.to(torch.float32).mul_(scale)


class ChunkStream(IterableDataset):
    """Batches of ``(features, classes, rows)`` from one feature of a cache.

    Parameters
    ----------
    path
        A ``<split>.zarr`` cache.
    feature
        ``pooled`` -> (B, 2048) float32; ``framed`` -> (B, 100, 160) int16; ``trimmed`` ->
        (B, 51200) int16. int16 batches are the stored samples: ``to_float(x, stream.scale)``
        (``x.float() * stream.scale``) gives floats in [-1, 1).
    task
        Maps NSynth ids to classes; rows outside the task (e.g. synth_lead) are left out.
    batch_size, shuffle, seed, buffer_chunks
        Rows are shuffled within groups of ``buffer_chunks`` chunks, in a chunk order drawn
        from ``(seed, epoch)``: the same seed and epoch give the same batches.
    check
        Check every chunk against its build-time checksum as it is read (one CRC-32C pass over
        the bytes; a memory-mapped chunk once, and again if its file changes; see
        docs/benchmarks.md). False only for measuring that cost.
    threads
        Threads reading chunks (default: the cores this process may use, shared out between
        DataLoader workers, less one for the thread that gathers the batches; at least 1; for a
        cache on an object store, at least one per chunk in flight). They are kept from one epoch
        to the next, until :meth:`close` or the stream is garbage collected.
    prefetch
        Groups of chunks read ahead of the one being yielded.
    balanced
        Class-balanced sampling (``--balance sample``): each epoch uses each row the number of
        times :func:`~nsynth_train.recipe.balanced_counts` draws for it (0, 1 or more) instead of
        exactly once; chunks are still read once an epoch, a row's copies shuffled with its group.
    """

    def __init__(self, path: Where, feature: str, task: Task, batch_size: int, shuffle: bool = True,
                 seed: int = 0, buffer_chunks: int = 4, check: bool = True, threads: int | None = None,
                 prefetch: int = 1, balanced: bool = False) -> None:
        super().__init__()
        c = cache_format.open_cache(path, (feature,))
        meta = c.feature(feature)
        self.path, self.feature, self.task = c.path, feature, task  # a Path, or a URL's Remote (picklable)
        self.batch_size, self.shuffle, self.seed, self.check = batch_size, shuffle, seed, check
        self.balanced = balanced
        self.buffer_chunks = max(1, buffer_chunks)
        self.threads, self.prefetch = threads, max(0, prefetch)
        self.chunk_rows = meta.chunk_rows
        self.row_shape = meta.row_shape
        self.dtype, self.scale = meta.dtype, meta.scale  # as stored; stored * scale = floats in [-1, 1]
        self.classes = task.classes_of(c.label(task.column))  # (N,) -1 = not in task; checked
        self.num_chunks = len(meta.checksums)
        self.epoch = 0
        self.rank, self.world = 0, 1  # this process's share of each epoch's chunks (see shard)
        # (num_chunks,) rows of each chunk that belong to the task: the shares without reading features
        self._chunk_rows_in_task = np.bincount(np.flatnonzero(self.classes >= 0) // self.chunk_rows,
                                               minlength=self.num_chunks)
        self._array: CheckedArray | None = None  # opened lazily in each worker process
        self._spare: list[np.ndarray] = []  # group buffers of the last epoch (see _take_buffers)
        self._batch_memory = BatchMemory()  # batch buffers, reused once the consumer has let go of them
        # The reader threads, kept across epochs: (pool, threads, the pid of the process that made it)
        self._pool: tuple[ThreadPoolExecutor, int, int] | None = None

    def __len__(self) -> int:
        """Rows of the split that belong to the task (one epoch)."""
        return int((self.classes >= 0).sum())

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def shard(self, rank: int, world: int) -> None:
        """Yield only rank ``rank``'s share (of ``world``) of each epoch's chunks."""
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} of {world}")
        self.rank, self.world = rank, world

    def shares(self) -> list[int]:
        """Rows each rank yields this epoch (``world`` counts summing to ``len(self)``)."""
        order = self.chunk_order()
        per_chunk = self._chunk_rows_in_task
        if self.balanced:
            per_chunk = np.bincount(np.arange(len(self.classes)) // self.chunk_rows, weights=self.row_counts(),
                                    minlength=self.num_chunks).astype(np.int64)
        return [int(per_chunk[order[r :: self.world]].sum()) for r in range(self.world)]

    def row_counts(self) -> np.ndarray:
        """(N,) times each row is used this epoch: 1 for the task's rows (0 for the rest), or the
        class-balanced draw's counts (``balanced``)."""
        if self.balanced:
            return balanced_counts(self.classes, self.seed, self.epoch)
        return (self.classes >= 0).astype(np.int64)

    def chunk_order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.num_chunks)
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.num_chunks)

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        order = self.chunk_order()[self.rank :: self.world]  # every rank draws the same permutation
        if info is not None:
            order = order[info.id :: info.num_workers]
        if self._array is None:
            self._array = CheckedArray(cache_format.open_cache(self.path, (self.feature,)), self.feature, self.check)
        array = self._array
        key = [self.seed, self.epoch, 1 + (info.id if info else 0)]
        rng = np.random.default_rng([*key, self.rank] if self.world > 1 else key)  # 1 rank: as before
        groups = [order[g : g + self.buffer_chunks] for g in range(0, len(order), self.buffer_chunks)]
        counts = self.row_counts() if self.balanced else None
        # Unencoded chunks are used in place, over their mapped files; encoded ones are decoded into
        # one buffer per group in flight (the one being yielded and those read ahead). Batches are
        # gathered copies, so a buffer is free again once its group is yielded.
        slots = min(len(groups), self.prefetch + 1)
        buffers = [] if array.files.mappable else self._take_buffers(array, slots)
        # One core stays with the thread that gathers the batches (and, without DataLoader workers,
        # runs the training step): on 2 cores, 1 reader measured as fast as 2 or faster.
        threads = self.threads or max(1, cpu_threads() // (info.num_workers if info else 1) - 1)
        if self.threads is None and array.files.remote:
            # Chunks of a cache on an object store wait on the network, not on a core: one reader
            # per chunk in flight, so their requests overlap.
            threads = max(threads, slots * self.buffer_chunks)
        pool = self._reader_pool(threads)
        pending: deque[list[tuple[Future[np.ndarray], int, np.ndarray | None]]] = deque()
        reads: list[tuple[Future[np.ndarray], int, np.ndarray | None]] = []
        batch = BatchBuilder(self.batch_size, self.row_shape, self.dtype, self.chunk_rows, self._batch_memory)
        try:
            for k in range(len(groups)):
                while len(pending) < slots and k + len(pending) < len(groups):
                    ahead = k + len(pending)
                    buf = buffers[ahead % slots] if buffers else None
                    pending.append([(_read(pool, array, int(c), out), int(c), out) for i, c in
                                    enumerate(groups[ahead]) for out in [None if buf is None else buf[i * self.chunk_rows :]]])
                reads = pending.popleft()
                # A chunk no reader has started yet is read here rather than waited for: the first
                # group, and any the readers fall behind on, get this thread too.
                parts = _finish(array, reads)  # a damaged chunk raises here
                local, rows = self._shuffled(groups[k], [len(p) for p in parts], rng, counts)
                # Exact batches across groups: a batch begun with one group's last rows is
                # finished with the next group's first, each row gathered once (no join copy).
                yield from batch.fill(parts, local, rows, self.classes[rows])
            if batch.filled:
                yield batch.take()
        finally:
            # Reads in flight still write into our buffers: cancel those not started, wait for the rest.
            wait([fut for group in (reads, *pending) for fut, _, _ in group if not fut.cancel()])
            self._spare = buffers

    def _reader_pool(self, threads: int) -> ThreadPoolExecutor:
        """The chunk readers, kept from one epoch to the next (starting them is part of what a small
        split's epoch paid before its first batch)."""
        # A DataLoader worker forked from a process that had iterated inherits the pool without its
        # threads: it starts its own.
        if self._pool is None or self._pool[1:] != (threads, os.getpid()):
            if self._pool is not None and self._pool[2] == os.getpid():
                self._pool[0].shutdown(wait=False)
            self._pool = ThreadPoolExecutor(threads, thread_name_prefix="chunk-reader"), threads, os.getpid()
        return self._pool[0]

    def close(self) -> None:
        """End the reader threads now (they also end when the stream is garbage collected)."""
        if self._pool is not None and self._pool[2] == os.getpid():
            self._pool[0].shutdown(wait=True, cancel_futures=True)
        self._pool = None

    def __getstate__(self) -> dict[str, object]:
        """What a DataLoader worker gets: no threads, maps or buffers (each process opens its own)."""
        return {**self.__dict__, "_pool": None, "_array": None, "_spare": []}  # BatchMemory pickles empty

    def _take_buffers(self, array: CheckedArray, count: int) -> list[np.ndarray]:
        """Group buffers, kept from the last epoch when they are free: new memory is paid for in page
        faults on its first write (64 MiB of them per epoch, with the default four 8 MiB chunks
        read one group ahead), which an epoch of a small split noticeably pays."""
        spare, self._spare = self._spare, []  # a second iteration running at once gets its own
        return [spare.pop() if spare else array.buffer(self.buffer_chunks) for _ in range(count)]

    def _shuffled(self, group: np.ndarray, counts: list[int], rng: np.random.Generator,
                  uses: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The task's rows of one group of chunks, shuffled: their places in the group (chunk ``i``'s
        row ``r`` is ``i * chunk_rows + r``) and their cache rows, both (n,) int64. ``uses``: (N,)
        times each cache row is taken (the balanced draw); None = once each."""
        local = np.concatenate([i * self.chunk_rows + np.arange(n) for i, n in enumerate(counts)])
        rows = np.concatenate([int(c) * self.chunk_rows + np.arange(n) for c, n in zip(group, counts, strict=True)])
        keep = self.classes[rows] >= 0
        local, rows = local[keep], rows[keep]
        if uses is not None:
            local, rows = np.repeat(local, uses[rows]), np.repeat(rows, uses[rows])
        perm = rng.permutation(len(rows)) if self.shuffle else np.arange(len(rows))
        return local[perm], rows[perm]


def _read(pool: ThreadPoolExecutor, array: CheckedArray, chunk: int, out: np.ndarray | None) -> Future[np.ndarray]:
    """``chunk``'s rows, read and checked by a reader thread; at once for a mapped chunk that passed its
    check and has not changed since (waking a thread for it cost more than the rest of its work)."""
    if array.passed(chunk):
        done: Future[np.ndarray] = Future()
        done.set_result(array.files.view(chunk))
        return done
    return pool.submit(array.read_rows, chunk, out)


def _finish(array: CheckedArray, reads: list[tuple[Future[np.ndarray], int, np.ndarray | None]]) -> list[np.ndarray]:
    """The rows of a group's chunks, checked: a chunk no reader has started yet is read here (this
    thread helps the readers) rather than waited for. A damaged chunk raises ``CacheError``."""
    return [array.read_rows(c, out) if fut.cancel() else fut.result() for fut, c, out in reads]


def loader(stream: ChunkStream, num_workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over a stream's batches (the stream batches; the loader only moves them)."""
    return DataLoader(stream, batch_size=None, num_workers=num_workers, pin_memory=pin_memory,
                      persistent_workers=False, prefetch_factor=4 if num_workers else None)


def batches(source: DataLoader | ChunkStream, batch_size: int, drop_last: bool) -> Iterator[Batch]:
    """Exact ``batch_size`` batches from a stream: full ones pass through untouched; partial
    pieces (a buffer's or a worker's tail) are joined, and only the final remainder is partial
    (or dropped with ``drop_last``)."""
    parts: list[Batch] = []
    held = 0
    for batch in _one_line_errors(source):
        n = len(batch[1])
        if n == batch_size and not parts:
            yield batch
            continue
        parts.append(batch)
        held += n
        while held >= batch_size:
            joined = [torch.cat(t) for t in zip(*parts, strict=True)]
            yield joined[0][:batch_size], joined[1][:batch_size], joined[2][:batch_size]
            rest = (joined[0][batch_size:], joined[1][batch_size:], joined[2][batch_size:])
            parts, held = ([rest] if len(rest[1]) else []), len(rest[1])
    if held and not drop_last:
        # One piece (a small split's last batch) passes as it is: torch.cat would copy it into new
        # memory, page faults and all (a quarter of a 4,000-note pooled epoch, profiled).
        joined = list(parts[0]) if len(parts) == 1 else [torch.cat(t) for t in zip(*parts, strict=True)]
        yield joined[0], joined[1], joined[2]


def _one_line_errors(source: DataLoader | ChunkStream) -> Iterator[Batch]:
    """Iterate ``source``; an ``NsynthError`` raised in a DataLoader worker (a damaged chunk)
    comes back as the same one-line error, not torch's re-raise with the worker's traceback."""
    try:
        yield from source
    except NsynthError as exc:
        text = str(exc)
        if "DataLoader worker" not in text:
            raise
        last = text.strip().splitlines()[-1]  # "nsynth_prep.errors.CacheError: <the message>"
        raise type(exc)(last.split(": ", 1)[1] if ": " in last else last) from None
