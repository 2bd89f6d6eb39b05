"""Reads that check what they read: feature chunks against the CRC32 recorded at build time.

Every chunk of a feature has its CRC32 in the cache's attrs (``features[name]['checksums']``),
computed by the build from the float32 rows it wrote. zarr itself returns whatever the files
decode to: a deleted chunk file reads as zeros, a flipped bit in an uncompressed region reads
as a slightly different number. Training, evaluation, export and audit read through
:class:`CheckedArray`, so such a cache stops with one line naming the array and the chunk
instead of feeding wrong numbers on. The check is one ``zlib.crc32`` over each chunk's bytes
(~6 GB/s), not per row. Labels are checked whole by :meth:`.cache.Cache.label`.
"""

from __future__ import annotations

import math

import numpy as np

from .cache import READ_ERRORS, Cache, checksum, chunk_file, damaged, feature_info, read, why


class CheckedArray:
    """A feature array of an opened cache whose chunks are checked as they are read.

    Parameters
    ----------
    cache
        An opened (complete) cache.
    name
        A built feature (``pooled``, ``framed``, ``trimmed``).
    check
        False reads without checking (for benchmarks and for ``verify``, which reports instead).
    """

    def __init__(self, cache: Cache, name: str, check: bool = True) -> None:
        self.cache, self.name, self.check = cache, name, check
        self.array = cache.array(name)  # its dtype, shape and chunks are checked here
        info = feature_info(cache.attrs, name)
        self.chunk_rows: int = info["chunk_rows"]
        self.checksums: list[str] = info["checksums"]
        self.rows = len(cache)
        self.num_chunks = math.ceil(self.rows / self.chunk_rows)

    def rows_of(self, chunk: int) -> range:
        """The cache rows held by ``chunk``."""
        return range(chunk * self.chunk_rows, min(self.rows, (chunk + 1) * self.chunk_rows))

    def chunk(self, chunk: int) -> np.ndarray:
        """The rows of one chunk, checked.

        Returns
        -------
        np.ndarray
            (rows in the chunk, *row_shape) float32; the last chunk may be short.
        """
        rows = self.rows_of(chunk)
        try:
            data = read(self.array, slice(rows.start, rows.stop))
        except READ_ERRORS as exc:  # a chunk that will not decompress, or of the wrong size
            raise damaged(self.cache.path, f"{self.name}: chunk {chunk} (rows {rows.start}..{rows.stop - 1}, file "
                                           f"{self._file(chunk)}) cannot be read ({why(exc)})") from None
        if self.check:
            self.verify(chunk, data)
        return data

    def read_all(self) -> np.ndarray:
        """The whole array, every chunk checked: (N, *row_shape) float32."""
        try:
            data = read(self.array)
        except READ_ERRORS as exc:
            for c in range(self.num_chunks):  # find the chunk at fault, for the message
                self.chunk(c)
            raise damaged(self.cache.path, f"{self.name}: cannot be read ({why(exc)})") from None
        if self.check:
            for c in range(self.num_chunks):
                rows = self.rows_of(c)
                self.verify(c, data[rows.start : rows.stop])  # a view: C-contiguous rows, no copy
        return data

    def verify(self, chunk: int, data: np.ndarray) -> None:
        """Raise ``CacheError`` when ``data`` (chunk ``chunk``'s rows) differs from its build-time CRC32."""
        if checksum(data) == self.checksums[chunk]:
            return
        rows = self.rows_of(chunk)
        path = chunk_file(self.cache.path, self.name, self.array, chunk)
        cause = (f"its file {self._file(chunk)} is missing, so zarr reads it as zeros" if not path.exists()
                 else f"file {self._file(chunk)}")
        raise damaged(self.cache.path, f"{self.name}: chunk {chunk} (rows {rows.start}..{rows.stop - 1}) differs from "
                                       f"the CRC32 recorded at build time ({cause})")

    def _file(self, chunk: int) -> str:
        return str(chunk_file(self.cache.path, self.name, self.array, chunk).relative_to(self.cache.path))
