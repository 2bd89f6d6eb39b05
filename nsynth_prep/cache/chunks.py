"""Whole row-chunks of a cache's feature arrays, read straight from their files.

zarr v3 stores row-chunk ``i`` of an array in the file ``<array>/c/i/0...`` as the output of its
codec chain: the chunk's little-endian bytes, then, for a compressed array, a Blosc frame.
Reading a chunk through zarr costs about 1-2 ms of Python and asyncio per chunk whatever its
size (measured on this project's 2-core machine: 1.9 GB/s for 4 MiB chunks of int16, against
27 GB/s to read the same files into memory), so the loader reads the files itself:

- an unencoded chunk is memory-mapped (read-only, shared with the page cache) and its rows are
  used in place: no copy into a buffer, which on two cores sharing one memory bus is the cost
  that matters. Mappings are kept for the next epochs (setting one up costs about as much as a
  copy);
- a Blosc chunk is read and decoded into the caller's buffer with numcodecs (the library behind
  zarr's ``BloscCodec``).

File reads, page-ins and decompression release the GIL, so threads read chunks in parallel. An
array with any other codec chain, fill value or key layout is read through zarr: slower, the same.

A cache on an object store (a :class:`.store.Remote` path) has nothing to map: each chunk object
is fetched whole (one GET, in the calling reader thread) and decoded by the same logic into the
caller's buffer.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys

import numpy as np
import zarr
from numcodecs import blosc
from zarr.codecs import BloscCodec, BytesCodec
from zarr.core.metadata import ArrayV3Metadata

from nsynth_prep.cache.format import chunk_file, read
from nsynth_prep.storage.store import Location, Remote


class ChunkFiles:
    """Decode row-chunks of one zarr array into caller-owned buffers.

    Parameters
    ----------
    path
        The cache (group folder).
    name
        The array's name in the group.
    arr
        The opened array (its metadata decides whether the files can be read directly).
    """

    def __init__(self, path: Location, name: str, arr: zarr.Array) -> None:
        self.path, self.name, self.array = path, name, arr
        self.remote = isinstance(path, Remote)
        self.chunk_rows = int(arr.chunks[0])
        self.rows = int(arr.shape[0])
        self.chunk_shape = (self.chunk_rows, *arr.shape[1:])
        self.dtype = np.dtype(arr.dtype)
        self.chunk_bytes = int(np.prod(self.chunk_shape)) * self.dtype.itemsize
        meta = arr.metadata
        codecs = meta.codecs if isinstance(meta, ArrayV3Metadata) else ()
        plain = (len(codecs) >= 1 and isinstance(codecs[0], BytesCodec)
                 and (self.dtype.itemsize == 1 or str(getattr(codecs[0].endian, "value", "")) == "little"))
        self.blosc = len(codecs) == 2 and isinstance(codecs[1], BloscCodec)
        # Anything else (another codec, a filter, sharding, a non-zero fill value, a big-endian
        # host, a non-default key layout) goes through zarr.
        self.direct = (plain and (len(codecs) == 1 or self.blosc) and sys.byteorder == "little"
                       and not arr.metadata.fill_value and arr.ndim == len(self.chunk_shape)
                       and isinstance(meta, ArrayV3Metadata)
                       and type(meta.chunk_key_encoding).__name__ == "DefaultChunkKeyEncoding")
        self.mappable = self.direct and not self.blosc and not self.remote
        self._views: dict[int, np.ndarray] = {}  # chunk -> its mapped rows, kept for the next epochs

    def rows_of(self, chunk: int) -> range:
        """The array rows held by ``chunk`` (the last chunk may hold fewer than ``chunk_rows``)."""
        return range(chunk * self.chunk_rows, min(self.rows, (chunk + 1) * self.chunk_rows))

    def file(self, chunk: int) -> Location:
        return chunk_file(self.path, self.name, self.array, chunk)

    def view(self, chunk: int) -> np.ndarray:
        """The rows of an unencoded chunk as stored, in place: (rows, *row_shape), read-only, over the
        memory-mapped file (zeros, as zarr reads it, for a chunk file that is not there).

        Raises
        ------
        ValueError, OSError
            The array is not unencoded (see ``mappable``), or the file holds the wrong number of bytes.
        """
        if not self.mappable:
            raise ValueError(f"{self.name}: chunks are encoded; decode them with read_into")
        rows = self.rows_of(chunk)
        arr = self._views.get(chunk)
        if arr is None:
            try:
                fd = os.open(self.file(chunk), os.O_RDONLY)  # type: ignore[arg-type]  # mappable: a Path
            except FileNotFoundError:
                arr = np.zeros(self.chunk_shape, self.dtype)
            else:
                try:
                    size = os.fstat(fd).st_size
                    if size != self.chunk_bytes:
                        raise ValueError(f"the chunk file holds {size} bytes, not the chunk's {self.chunk_bytes}")
                    # MAP_POPULATE: the page tables are filled here, in the reading thread, not by
                    # page faults in the one that gathers the rows.
                    m = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                                  prot=mmap.PROT_READ)
                finally:
                    os.close(fd)
                arr = np.frombuffer(m, self.dtype).reshape(self.chunk_shape)  # read-only: the map is
            self._views[chunk] = arr
        return arr[: len(rows)]

    def read_into(self, chunk: int, out: np.ndarray) -> int:
        """Decode ``chunk`` into ``out[:chunk_rows]``; returns how many of those rows are the array's.

        ``out``: C-contiguous, of the array's dtype, at least ``chunk_rows`` rows of the row
        shape. A chunk file that is not there reads as zeros, as zarr reads it (zarr does not
        write chunks that are all zeros); the caller's checksum tells a lost file from that.

        Raises
        ------
        ValueError, RuntimeError, OSError
            The file holds the wrong number of bytes or is not a Blosc frame of the chunk.
        """
        rows = self.rows_of(chunk)
        dest = out[: self.chunk_rows]
        if dest.shape != self.chunk_shape or dest.dtype != self.dtype or not dest.flags.c_contiguous:
            raise TypeError(f"buffer {dest.shape} {dest.dtype} does not fit a chunk {self.chunk_shape} {self.dtype}")
        if not self.direct:
            dest[: len(rows)] = read(self.array, slice(rows.start, rows.stop))
            return len(rows)
        where = self.file(chunk)
        if isinstance(where, Remote):
            try:
                data = where.fs.cat_file(where.key)
            except FileNotFoundError:
                dest[...] = 0
                return len(rows)
            self._decode(data, dest, "object")
            return len(rows)
        try:
            f = open(where, "rb", buffering=0)  # closed by the with below
        except FileNotFoundError:
            dest[...] = 0
            return len(rows)
        with f:
            if self.blosc:
                self._decode(f.read(), dest, "file")
            else:
                got = f.readinto(memoryview(dest).cast("B"))  # type: ignore[arg-type]
                if got != self.chunk_bytes or f.read(1):
                    raise ValueError(f"the chunk file holds {where.stat().st_size} bytes, not the chunk's "
                                     f"{self.chunk_bytes}")
        return len(rows)

    def _decode(self, data: bytes | memoryview, dest: np.ndarray, what: str) -> None:
        """Decode one chunk's stored bytes (a Blosc frame, or the plain bytes) into ``dest``."""
        if self.blosc:
            # A Blosc frame's header: 4 bytes of versions, flags and typesize, then the
            # uncompressed size (uint32, little-endian).
            size = struct.unpack_from("<I", data, 4)[0] if len(data) >= 16 else -1
            if size != self.chunk_bytes:
                raise ValueError(f"the chunk {what} decodes to {size} bytes, not the chunk's {self.chunk_bytes}")
            blosc.decompress(data, dest)
        elif len(data) != self.chunk_bytes:
            raise ValueError(f"the chunk {what} holds {len(data)} bytes, not the chunk's {self.chunk_bytes}")
        else:
            memoryview(dest).cast("B")[:] = data  # type: ignore[arg-type]
