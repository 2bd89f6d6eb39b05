"""The chunks of a RIFF/WAVE file: the one walk that both WAV readers use.

A RIFF/WAVE file is a 12-byte header (``RIFF``, the size of the rest, ``WAVE``) followed by
chunks: a 4-byte id, a 4-byte little-endian body size, the body, and a pad byte after a body
of odd size. The strict NSynth reader (:mod:`.wav`) and the permissive one of ``nsynth
predict`` (:mod:`.wav_any`) differ in what they accept, not in how chunks are found, so the walk
and its bounds checks live here and each reader keeps its own checks and messages.

No size in the file is trusted: the walk stops where fewer than 8 bytes of chunk header are
left, and says how many bytes of each body the file really holds (:attr:`Chunk.available`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

Buffer = bytes | bytearray | memoryview

HEADER_BYTES = 12  # "RIFF", uint32 size, "WAVE"
CHUNK_HEADER_BYTES = 8  # id, uint32 size


@dataclass(frozen=True)
class Chunk:
    """One chunk of a RIFF/WAVE file: where its body starts and how much of it there is."""

    id: bytes  # b"fmt ", b"data", b"LIST", ...
    body: int  # byte offset of the body's first byte in the file
    size: int  # the body's size as its header claims it
    available: int  # bytes of the body the file holds: ``size``, or fewer where the file ends first

    @property
    def truncated(self) -> bool:
        """Whether the file ends before the body does (the header claims more than is there)."""
        return self.available < self.size

    def bytes_of(self, data: Buffer) -> Buffer:
        """The body's bytes in ``data`` (those the file holds)."""
        return data[self.body : self.body + self.available]


def is_riff_wave(data: Buffer, size: int | None = None) -> bool:
    """Whether ``data`` starts with a RIFF/WAVE header (``size``: the whole file's, when ``data``
    is only its start)."""
    size = len(data) if size is None else size
    return size >= HEADER_BYTES and bytes(data[0:4]) == b"RIFF" and bytes(data[8:12]) == b"WAVE"


def chunks(data: Buffer, size: int | None = None) -> Iterator[Chunk]:
    """The chunks after the RIFF/WAVE header (check it with :func:`is_riff_wave`), in file order.

    Parameters
    ----------
    data
        The file's bytes, or its first bytes when ``size`` is given.
    size
        The whole file's size, when ``data`` holds only its start (a header check).

    Yields
    ------
    Chunk
        Each chunk whose 8-byte header lies within the file; a body that runs past the end is
        yielded with ``available < size`` and ends the walk. Odd-sized bodies are followed by
        their pad byte, which is skipped.

    Raises
    ------
    struct.error
        A chunk header lies within the file but past the bytes of ``data`` (its start only):
        the caller reads more of the file.
    """
    total = len(data) if size is None else size
    pos = HEADER_BYTES
    while pos + CHUNK_HEADER_BYTES <= total:
        (claimed,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + CHUNK_HEADER_BYTES
        yield Chunk(bytes(data[pos : pos + 4]), body, claimed, min(claimed, total - body))
        pos = body + claimed + (claimed & 1)  # chunks are padded to even sizes
