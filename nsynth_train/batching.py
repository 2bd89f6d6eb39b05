"""Batches gathered from a group of chunks, in memory that is reused once the consumer lets go.

:class:`BatchBuilder` takes the shuffled rows of one group of chunks at a time and fills batches of
exactly ``size`` rows across groups (a batch begun with one group's last rows is finished with
the next group's first), each chunk's rows gathered in row order with one ``np.take``.
:class:`BatchMemory` hands out the buffers and takes them back; :class:`.data.ChunkStream` keeps
one from epoch to epoch.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import numpy as np
import torch

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # features (B, ...), classes (B,), rows (B,)


class BatchMemory:
    """Batch buffers (features, classes, rows) that a stream hands out and takes back.

    New memory is paid for in page faults on its first write: a 1,024-row pooled batch (8 MiB) is
    2,048 of them, about a third of the time of a 4,000-note pooled epoch (measured), and the
    consumer usually still holds the last batch while the next is gathered, so the allocator
    cannot reuse its memory. A buffer is reused once nothing else refers to it: a batch's tensors
    keep their numpy arrays alive (``torch.from_numpy``), as do autograd's saved tensors and a
    DataLoader's queue until the batch is pickled, so a batch still held anywhere is never
    written. At most ``keep`` sets are kept; a consumer holding more batches gets new memory.
    """

    # References to a free buffer while it is looked at: the kept tuple, the loop's name, and
    # getrefcount's own argument.
    FREE = 3

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self.sets: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._lock = threading.Lock()  # two threads iterating one stream never take the same free set

    def __getstate__(self) -> dict[str, object]:
        return {"keep": self.keep}  # a DataLoader worker starts with none kept (and its own lock)

    def __setstate__(self, state: dict[str, int]) -> None:
        self.__init__(state["keep"])  # type: ignore[misc]

    def get(self, size: int, row_shape: tuple[int, ...], dtype: np.dtype
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(size, *row_shape) features, (size,) classes and (size,) rows: a free kept set, or new."""
        with self._lock:
            for kept in self.sets:
                if kept[0].shape == (size, *row_shape) and kept[0].dtype == dtype and all(
                        sys.getrefcount(a) == self.FREE for a in kept):
                    return kept[0], kept[1], kept[2]  # a tuple of its own: held, it holds the arrays
            new = np.empty((size, *row_shape), dtype), np.empty(size, np.int64), np.empty(size, np.int64)
            if len(self.sets) < self.keep:
                self.sets.append(new)
            return new[0], new[1], new[2]


class BatchBuilder:
    """Gathers rows from successive groups of chunks into batches of exactly ``size`` rows."""

    def __init__(self, size: int, row_shape: tuple[int, ...], dtype: np.dtype, chunk_rows: int,
                 memory: BatchMemory | None = None) -> None:
        self.size, self.row_shape, self.dtype, self.chunk_rows = size, row_shape, dtype, chunk_rows
        self.memory = memory or BatchMemory(keep=0)
        self.filled = 0
        self._new()

    def _new(self) -> None:
        # (B, *row_shape) as stored; (B,) classes; (B,) cache rows
        self.x, self.y, self.rows = self.memory.get(self.size, self.row_shape, self.dtype)
        self.filled = 0

    def take(self) -> Batch:
        """The batch so far (full, or the epoch's last, partial) as tensors; a fresh one begins."""
        n = self.filled
        out = torch.from_numpy(self.x[:n]), torch.from_numpy(self.y[:n]), torch.from_numpy(self.rows[:n])
        self._new()
        return out

    def fill(self, parts: list[np.ndarray], local: np.ndarray, rows: np.ndarray, classes: np.ndarray
             ) -> Iterator[Batch]:
        """Yield every batch that the rows ``local`` of a group complete (``parts``: each chunk's rows,
        (n_i, *row_shape)); the rest stay for the next group.

        Which rows make a batch is the shuffle's; within a batch they are taken chunk by chunk,
        each chunk's in row order (one ``np.take`` per chunk, reading it front to back).
        """
        start = 0
        while start < len(local):
            n = min(self.size - self.filled, len(local) - start)
            seg = slice(start, start + n)
            order = np.argsort(local[seg], kind="stable")
            sel = local[seg][order]
            edges = np.searchsorted(sel // self.chunk_rows, np.arange(len(parts) + 1))
            for i, part in enumerate(parts):
                a, z = int(edges[i]), int(edges[i + 1])
                if z > a:  # mode="clip" gathers straight into ``out`` (the default buffers a copy);
                    # the indices are in range by construction. numpy releases the GIL here.
                    np.take(part, sel[a:z] - i * self.chunk_rows, axis=0, out=self.x[self.filled + a : self.filled + z],
                            mode="clip")
            self.y[self.filled : self.filled + n] = classes[seg][order]
            self.rows[self.filled : self.filled + n] = rows[seg][order]
            self.filled, start = self.filled + n, start + n
            if self.filled == self.size:
                yield self.take()
