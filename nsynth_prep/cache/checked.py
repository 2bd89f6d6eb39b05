"""Reads that check what they read: feature chunks against the checksum recorded at build time.

Every chunk of a feature has its CRC-32C in the cache's metadata (``FeatureMeta.checksums``),
computed by the build from the rows it wrote, as stored (int16 audio, float32 pooled). zarr
itself returns whatever the files decode to: a deleted chunk file reads as zeros, a flipped bit
in an uncompressed chunk reads as a slightly different number. Training, evaluation, export,
audit and verify read through :class:`CheckedArray`, so such a cache stops with one line
naming the array and the chunk instead of feeding wrong numbers on. The check is one CRC-32C
pass over each chunk's bytes (~16 GB/s, GIL released), not per row; a chunk read in place
(memory-mapped, unencoded) is checked when it is first read and again whenever its file's inode,
size or modification time changes, not at every epoch. Labels are checked whole by
:meth:`.cache.Cache.label`.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from nsynth_prep.cache.chunks import ChunkFiles
from nsynth_prep.cache.format import READ_ERRORS, Cache, checksum, damaged, why
from nsynth_prep.cpus import cpu_threads
from nsynth_prep.storage.store import relative


class CheckedArray:
    """A feature array of an opened cache whose chunks are checked as they are read.

    Parameters
    ----------
    cache
        An opened (complete) cache.
    name
        A built feature (``pooled``, ``framed``, ``trimmed``).
    check
        False reads without checking (for benchmarks).
    """

    def __init__(self, cache: Cache, name: str, check: bool = True) -> None:
        self.cache, self.name, self.check = cache, name, check
        self.array = cache.array(name)  # its dtype, shape and chunks are checked here
        self.meta = cache.feature(name)
        self.files = ChunkFiles(cache.path, name, self.array)
        self.chunk_rows = self.meta.chunk_rows
        self.checksums = self.meta.checksums
        self.rows = len(cache)
        self.num_chunks = len(self.checksums)
        self.dtype = self.meta.dtype
        self.scale = self.meta.scale
        self.row_shape = self.meta.row_shape
        self._passed: dict[int, tuple[int, int, int]] = {}  # mapped chunk -> its file's signature when it passed

    def rows_of(self, chunk: int) -> range:
        """The cache rows held by ``chunk``."""
        return self.files.rows_of(chunk)

    def buffer(self, chunks: int) -> np.ndarray:
        """An empty buffer for ``chunks`` whole chunks: (chunks * chunk_rows, *row_shape) of the stored dtype."""
        return np.empty((chunks * self.chunk_rows, *self.row_shape), self.dtype)

    def read_into(self, chunk: int, out: np.ndarray) -> int:
        """Decode ``chunk`` into ``out[:chunk_rows]`` and check it; returns the rows that are the cache's
        (all but in the last chunk). ``out``: C-contiguous, the stored dtype (see :meth:`buffer`).

        Raises
        ------
        CacheError
            The chunk cannot be read or differs from its checksum (naming the chunk and its file).
        """
        n, problem = self.try_read_into(chunk, out)
        if problem:
            raise damaged(self.cache.path, problem)
        return n

    def try_read_into(self, chunk: int, out: np.ndarray) -> tuple[int, str | None]:
        """:meth:`read_into` that returns what is wrong (a phrase naming the chunk and its file)
        instead of raising, for ``verify``, which lists every problem."""
        rows = self.rows_of(chunk)
        where = f"{self.name}: chunk {chunk} (rows {rows.start}..{rows.stop - 1}, file {self._file(chunk)})"
        try:
            n = self.files.read_into(chunk, out)
        except READ_ERRORS as exc:  # a chunk that will not decompress, or of the wrong size
            return 0, f"{where} cannot be read ({why(exc)})"
        if self.check and checksum(out[:n]) != self.checksums[chunk]:
            missing = " (the file is missing, so zarr reads it as zeros)" if not self.files.file(chunk).exists() else ""
            return n, f"{where} differs from the checksum recorded at build time{missing}"
        return n, None

    def read_rows(self, chunk: int, out: np.ndarray | None) -> np.ndarray:
        """The rows of ``chunk``, checked: in place over the mapped file when the chunk is stored
        unencoded (read-only; ``out`` unused), else decoded into ``out`` (see :meth:`buffer`).

        Returns
        -------
        np.ndarray
            (rows in the chunk, *row_shape) as stored.
        """
        if not self.files.mappable:
            if out is None:
                out = self.buffer(1)
            return out[: self.read_into(chunk, out)]
        # A mapped chunk that passed its check is checked again only when its file changes (another
        # inode, size or modification time): its rows are the same pages of the same file. Every
        # epoch of a small split re-checking them cost as much as gathering its batches.
        signature = _signature(self.files.file(chunk)) if self.check else None  # type: ignore[arg-type]
        if signature is not None and self._passed.get(chunk) == signature:
            return self.files.view(chunk)
        rows = self.rows_of(chunk)
        where = f"{self.name}: chunk {chunk} (rows {rows.start}..{rows.stop - 1}, file {self._file(chunk)})"
        try:
            data = self.files.view(chunk)
        except READ_ERRORS as exc:
            raise damaged(self.cache.path, f"{where} cannot be read ({why(exc)})") from None
        if self.check and checksum(data) != self.checksums[chunk]:
            missing = " (the file is missing, so zarr reads it as zeros)" if not self.files.file(chunk).exists() else ""
            raise damaged(self.cache.path, f"{where} differs from the checksum recorded at build time{missing}")
        if signature is not None:
            self._passed[chunk] = signature
        return data

    def passed(self, chunk: int) -> bool:
        """Whether ``chunk`` is mapped, passed its check, and its file has not changed since: its rows
        can be used in place without reading or checking anything (see :meth:`read_rows`)."""
        return (self.check and self.files.mappable and chunk in self._passed
                and self._passed[chunk] == _signature(self.files.file(chunk)))  # type: ignore[arg-type]

    def chunk(self, chunk: int) -> np.ndarray:
        """The rows of one chunk, checked.

        Returns
        -------
        np.ndarray
            (rows in the chunk, *row_shape) in the stored dtype (int16 audio: times
            ``scale`` for floats); the last chunk may be short.
        """
        buf = self.buffer(1)
        return buf[: self.read_into(chunk, buf)]

    def read_all(self, threads: int | None = None) -> np.ndarray:
        """The whole array, every chunk checked, read by ``threads`` threads (default: every
        core): (N, *row_shape) in the stored dtype."""
        buf = self.buffer(self.num_chunks)
        with ThreadPoolExecutor(max(1, threads or cpu_threads())) as pool:
            for _ in pool.map(lambda c: self.read_into(c, buf[c * self.chunk_rows :]), range(self.num_chunks)):
                pass  # map re-raises the first chunk's error here
        return buf[: self.rows]

    def _file(self, chunk: int) -> str:
        return relative(self.files.file(chunk), self.cache.path)


def _signature(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, modification time in ns) of a chunk file; None when it is not there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns
