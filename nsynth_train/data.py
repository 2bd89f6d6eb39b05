"""Stream a cache into a model: whole zarr chunks, shuffled in a bounded buffer.

:class:`ChunkStream` is a plain ``torch.utils.data.IterableDataset``. Each epoch it permutes
the chunk order (seeded by ``seed`` and the epoch), reads ``buffer_chunks`` whole chunks at a
time, shuffles their rows together and yields them in batches. With ``num_workers > 0``
each worker takes a disjoint share of the chunks; :func:`batches` re-cuts the workers'
tail pieces so that every row is seen exactly once per epoch and only the very last batch
may be partial (or dropped). Labels are read once and kept in memory; only features stream.

:class:`DeviceSplit` is the other mode: the whole split loaded once into (GPU) memory and
indexed there, for splits that fit.

Both check what they read against the CRC32s recorded at build time (per chunk as the stream
reads it, every chunk when a split is loaded, the task's labels on open): a damaged cache
stops with one ``CacheError`` line naming the array and chunk instead of training on wrong
numbers (see :mod:`nsynth_prep.checked`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from nsynth_prep import cache as cache_format
from nsynth_prep.checked import CheckedArray
from nsynth_prep.errors import NsynthError

from .config import TrainConfig
from .tasks import Task

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # features (B, ...), classes (B,), rows (B,)


class ChunkStream(IterableDataset):
    """Batches of ``(features, classes, rows)`` from one feature of a cache.

    Parameters
    ----------
    path
        A ``<split>.zarr`` cache.
    feature
        ``pooled`` -> (B, 2048), ``framed`` -> (B, 100, 160), ``trimmed`` -> (B, 51200), float32.
    task
        Maps NSynth ids to classes; rows outside the task (e.g. synth_lead) are left out.
    batch_size, shuffle, seed, buffer_chunks
        Rows are shuffled within groups of ``buffer_chunks`` chunks, in a chunk order drawn
        from ``(seed, epoch)``: the same seed and epoch give the same batches.
    check
        Check every chunk against its build-time CRC32 as it is read (about one ``zlib.crc32``
        pass over the bytes; see docs/benchmarks.md). False only for measuring that cost.
    """

    def __init__(self, path: Path, feature: str, task: Task, batch_size: int, shuffle: bool = True,
                 seed: int = 0, buffer_chunks: int = 4, check: bool = True) -> None:
        super().__init__()
        c = cache_format.open_cache(Path(path), (feature,))
        self.path, self.feature, self.task = Path(path), feature, task
        self.batch_size, self.shuffle, self.seed, self.check = batch_size, shuffle, seed, check
        self.buffer_chunks = max(1, buffer_chunks)
        arr = c.array(feature)
        self.chunk_rows = int(arr.chunks[0])
        self.row_shape = tuple(arr.shape[1:])
        self.classes = task.classes_of(c.label(task.column))  # (N,) -1 = not in task; checked
        self.num_chunks = -(-len(c) // self.chunk_rows)
        self.epoch = 0
        self._array: CheckedArray | None = None  # opened lazily in each worker process

    def __len__(self) -> int:
        """Rows of the split that belong to the task (one epoch)."""
        return int((self.classes >= 0).sum())

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def chunk_order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.num_chunks)
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.num_chunks)

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        order = self.chunk_order()
        if info is not None:
            order = order[info.id :: info.num_workers]
        if self._array is None:
            self._array = CheckedArray(cache_format.open_cache(self.path, (self.feature,)), self.feature, self.check)
        array = self._array
        rng = np.random.default_rng([self.seed, self.epoch, 1 + (info.id if info else 0)])
        for g in range(0, len(order), self.buffer_chunks):
            group = order[g : g + self.buffer_chunks]
            rows = np.concatenate([np.arange(c * self.chunk_rows, min(len(self.classes), (c + 1) * self.chunk_rows))
                                   for c in group])
            data = np.concatenate([array.chunk(int(c)) for c in group])
            keep = self.classes[rows] >= 0
            data, rows = data[keep], rows[keep]
            perm = rng.permutation(len(rows)) if self.shuffle else np.arange(len(rows))
            for b in range(0, len(perm), self.batch_size):
                sel = perm[b : b + self.batch_size]
                yield (torch.from_numpy(data[sel]), torch.from_numpy(self.classes[rows[sel]]),
                       torch.from_numpy(rows[sel]))


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
        joined = [torch.cat(t) for t in zip(*parts, strict=True)]
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


class DeviceSplit:
    """A whole split's feature and classes held in one tensor on ``device``; batches by indexing."""

    def __init__(self, path: Path, feature: str, task: Task, device: torch.device) -> None:
        c = cache_format.open_cache(Path(path), (feature,))
        classes = task.classes_of(c.label(task.column))
        self.rows = torch.from_numpy(np.flatnonzero(classes >= 0)).to(device)
        data = CheckedArray(c, feature).read_all()[classes >= 0]  # every chunk checked
        self.x = torch.from_numpy(data).to(device)
        self.y = torch.from_numpy(classes[classes >= 0]).to(device)
        self.device = device

    def __len__(self) -> int:
        return len(self.y)

    def batches(self, batch_size: int, shuffle: bool, seed: int, epoch: int, drop_last: bool) -> Iterator[Batch]:
        n = len(self.y)
        if shuffle:
            gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
            order = torch.randperm(n, generator=gen).to(self.device)
        else:
            order = torch.arange(n, device=self.device)
        stop = n - n % batch_size if drop_last else n
        for b in range(0, stop, batch_size):
            idx = order[b : b + batch_size]
            yield self.x[idx], self.y[idx], self.rows[idx]


class Split:
    """One split as the loop sees it: batches on the device, streamed or resident."""

    def __init__(self, path: Path, config: TrainConfig, task: Task, device: torch.device, shuffle: bool) -> None:
        self.path, self.config, self.shuffle, self.device = path, config, shuffle, device
        c = cache_format.open_cache(path, (config.feature,))
        nbytes = c.array(config.feature).nbytes
        limit = (torch.cuda.mem_get_info(device)[0] * 0.4 if device.type == "cuda" else 2 << 30)
        self.resident = config.resident == "yes" or (config.resident == "auto" and nbytes <= limit)
        assert config.batch_size is not None
        if self.resident:
            self.data: DeviceSplit | ChunkStream = DeviceSplit(path, config.feature, task, device)
        else:
            self.data = ChunkStream(path, config.feature, task, config.batch_size, shuffle, config.seed,
                                    config.buffer_chunks)
            self.loader = loader(self.data, config.num_workers, pin_memory=device.type == "cuda")

    def __len__(self) -> int:
        return len(self.data)

    def batches(self, epoch: int, drop_last: bool) -> Iterator[Batch]:
        assert self.config.batch_size is not None
        if isinstance(self.data, DeviceSplit):
            yield from self.data.batches(self.config.batch_size, self.shuffle, self.config.seed, epoch, drop_last)
            return
        self.data.set_epoch(epoch)
        for x, y, rows in batches(self.loader, self.config.batch_size, drop_last):
            yield (x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True), rows)
