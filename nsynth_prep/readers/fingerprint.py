"""Source fingerprints: what a cache was built from, cheap to recheck, exact about what changed.

A fingerprint is a table of the files that define a source, one row per file: its name
(relative to the source), size, modification and change times, and a digest of its content:

- a JSON + WAV folder: ``examples.json`` and every entry of ``audio/``, each digested whole
  (CRC-32C of its bytes, ~20 GB/s with the C build that zarr installs; pieces of 1 MiB);
- a ``.tfrecord``: CRC-32 of its first and last 64 KiB and of every record's 12-byte header and
  stored payload CRC-32C (two small reads per record; every payload is covered by its own CRC,
  which the build verifies);
- a ``.jsonwav.tar.gz``: CRC-32 of its first and last 64 KiB; the last 8 bytes of a gzip stream
  are the CRC-32 and size of the whole uncompressed archive (NSynth's archives are one gzip
  member).

As git does with its index, a recheck reads again only the files whose size, mtime or ctime
differ from the table recorded in the cache: an untouched source costs one ``stat`` per file, a
WAV rewritten in place (same size or not) is read again and caught, and a byte-identical
regenerated corpus is accepted after one read. What is compared is the summary: the number of
files, their bytes and a BLAKE2b digest over every name, size and content digest.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nsynth_prep.errors import SourceError
from nsynth_prep.kernels.crc32c import (
    payload_crc,  # CRC-32C: google-crc32c's C build, or our numba kernel (same values)
)

SCHEME = 2  # 1 (before cache format 2) was size + mtime of examples.json and audio/ only
EDGE = 64 << 10  # bytes digested at each end of an archive or TFRecord
# A file modified this close to the moment it was digested may change again within the same
# timestamp tick; such an entry is recorded as untrusted and read again next time (git's "racy" rule).
RACY_NS = 200_000_000
NOT_A_FILE = -1  # the digest of a directory, device or unreadable entry


@dataclass(frozen=True)
class SourceFingerprint:
    """Summary of the source's per-file fingerprint (the table is stored in ``source_files``)."""

    scheme: int
    kind: str
    files: int
    bytes: int
    digest: str  # BLAKE2b over every file's name, size and content digest

    def to_attrs(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Fingerprint:
    """The files of one source. Arrays are (F,), sorted by name."""

    kind: str  # "jsonwav" | "tfrecord" | "targz"
    names: np.ndarray  # str, relative to the source: "examples.json", "audio/<note>.wav", or the file's name
    sizes: np.ndarray  # int64 bytes
    mtimes: np.ndarray  # int64 ns; -1 when untrusted (racy)
    ctimes: np.ndarray  # int64 ns
    digests: np.ndarray  # int64: a CRC as above, NOT_A_FILE for anything but a regular file
    read_now: int = 0  # files whose content was read for this fingerprint (the rest were trusted)

    def summary(self) -> SourceFingerprint:
        """What a cache records in its metadata (``BuildMeta.source.fingerprint``) and what is compared."""
        h = hashlib.blake2b(digest_size=16)
        h.update("\n".join(str(n) for n in self.names).encode())
        h.update(np.ascontiguousarray(self.sizes, "<i8").tobytes())
        h.update(np.ascontiguousarray(self.digests, "<i8").tobytes())
        return SourceFingerprint(SCHEME, self.kind, len(self.names), int(self.sizes.sum()), h.hexdigest())

    def columns(self) -> dict[str, np.ndarray]:
        """The table as named columns, for storage beside the cache."""
        return {"name": np.asarray(self.names, dtype=str), "size": self.sizes, "mtime_ns": self.mtimes,
                "ctime_ns": self.ctimes, "digest": self.digests}

    @classmethod
    def from_columns(cls, kind: str, cols: dict[str, np.ndarray]) -> Fingerprint | None:
        """The table stored by :meth:`columns`, or None when it is not whole."""
        try:
            names = np.array([str(s) for s in np.asarray(cols["name"]).tolist()], dtype=object)
            arrays = [np.asarray(cols[k], np.int64) for k in ("size", "mtime_ns", "ctime_ns", "digest")]
        except (KeyError, ValueError, TypeError):
            return None
        if any(len(a) != len(names) for a in arrays):
            return None
        sizes, mtimes, ctimes, digests = arrays
        return cls(kind, names, sizes, mtimes, ctimes, digests)


def take(path: Path, kind: str, reference: Fingerprint | None = None) -> Fingerprint:
    """The fingerprint of the source at ``path``.

    Parameters
    ----------
    path, kind
        The source (a split folder, ``.tfrecord`` or ``.jsonwav.tar.gz``) and its format.
    reference
        A fingerprint taken before (the cache's): files whose size, mtime and ctime are the
        same keep its digest instead of being read again. (Files are read by one thread: on two
        busy cores, two threads measured slower.)
    """
    path = Path(path)
    started = time.time_ns()
    files = _files(path, kind)
    n = len(files)
    names = np.array([name for name, _ in files], dtype=object)
    sizes, mtimes, ctimes = (np.full(n, -1, np.int64) for _ in range(3))
    regular = np.zeros(n, bool)
    for i, (_, full) in enumerate(files):
        try:
            st = os.stat(full)
        except OSError:
            continue  # gone or unreadable: recorded as size -1, not a file
        sizes[i], mtimes[i], ctimes[i], regular[i] = st.st_size, st.st_mtime_ns, st.st_ctime_ns, stat.S_ISREG(st.st_mode)
    digests = np.full(n, NOT_A_FILE, np.int64)
    todo = np.flatnonzero(regular)
    if reference is not None and reference.kind == kind:
        known = {str(name): i for i, name in enumerate(reference.names)}
        ref = np.array([known.get(str(name), -1) for name in names], np.int64)
        hit = ref >= 0
        same = hit.copy()
        same[hit] = ((reference.sizes[ref[hit]] == sizes[hit]) & (reference.mtimes[ref[hit]] == mtimes[hit])
                     & (reference.ctimes[ref[hit]] == ctimes[hit]) & (reference.mtimes[ref[hit]] >= 0))
        digests[same] = reference.digests[ref[same]]
        todo = np.flatnonzero(regular & ~same)
    digest = _DIGESTS[kind]
    digests[todo] = [digest(files[i][1], int(sizes[i])) for i in todo]
    mtimes[mtimes > started - RACY_NS] = -1  # too fresh to be trusted next time: read again then
    return Fingerprint(kind, names, sizes, mtimes, ctimes, digests, read_now=len(todo))


def _files(path: Path, kind: str) -> list[tuple[str, str]]:
    """(name, path) of every file that defines the source, sorted by name. Plain strings:
    pathlib costs more than the ``stat`` itself for a folder of 300,000 WAVs."""
    if kind != "jsonwav":
        return [(path.name, str(path))]
    files = [("examples.json", str(path / "examples.json"))]
    try:
        with os.scandir(path / "audio") as entries:
            files += [(f"audio/{e.name}", e.path) for e in entries]
    except FileNotFoundError:
        pass  # the build says which WAVs are missing
    except NotADirectoryError:
        raise SourceError(f"{path / 'audio'}: not a folder; a split folder holds examples.json and audio/") from None
    except OSError as exc:
        raise SourceError(f"{path / 'audio'}: cannot read ({exc.strerror})") from None
    return sorted(files)


def _whole(path: str, size: int) -> int:
    """A CRC of the ``size`` bytes of a regular file: CRC-32C of each piece of at most 1 MiB
    (memory stays bounded; a WAV is one piece), chained with CRC-32."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return NOT_A_FILE
    try:
        crc, left = 0, size
        while left > 0 and (piece := os.read(fd, min(left, 1 << 20))):
            crc, left = zlib.crc32(struct.pack("<I", payload_crc(piece)), crc), left - len(piece)
        return crc
    except OSError:
        return NOT_A_FILE
    finally:
        os.close(fd)


def _edges(f: Any, size: int) -> int:
    """CRC-32 of the first and last :data:`EDGE` bytes (the whole file when it is small)."""
    fd = f.fileno()
    if size <= 2 * EDGE:
        return zlib.crc32(os.pread(fd, size, 0))
    return zlib.crc32(os.pread(fd, EDGE, size - EDGE), zlib.crc32(os.pread(fd, EDGE, 0)))


def _archive(path: str, size: int) -> int:
    try:
        with open(path, "rb", buffering=0) as f:
            return _edges(f, size)
    except OSError:
        return NOT_A_FILE


def _tfrecord(path: str, size: int) -> int:
    """The edges, then every record's header (length and its CRC) and stored payload CRC."""
    try:
        with open(path, "rb", buffering=0) as f:
            crc = _edges(f, size)
            fd, offset = f.fileno(), 0
            while offset + 12 <= size:
                header = os.pread(fd, 12, offset)
                (length,) = struct.unpack("<Q", header[:8])
                if offset + 16 + length > size:  # a cut or garbage file: the edges cover the rest
                    break
                crc = zlib.crc32(header + os.pread(fd, 4, offset + 12 + length), crc)
                offset += 16 + length
            return zlib.crc32(struct.pack("<Q", offset), crc)
    except OSError:
        return NOT_A_FILE


_DIGESTS = {"jsonwav": _whole, "targz": _archive, "tfrecord": _tfrecord, "synth": _whole}


# --- comparing ----------------------------------------------------------------------------------


def differences(old: SourceFingerprint, old_files: Fingerprint | None, new: Fingerprint, limit: int = 5) -> list[str]:
    """What differs between a recorded fingerprint (summary ``old`` and, when stored, its table)
    and ``new``, as short phrases naming files: ``audio/x.wav: content changed (same size)``.
    ``[]`` when they are the same."""
    summary = new.summary()
    if old == summary:
        return []
    if old.scheme != SCHEME or old.kind != new.kind:
        return [f"recorded by another fingerprint scheme ({old})"]
    if old_files is None or old_files.summary() != old:  # no table to name files: say what the summary says
        if old.files != summary.files:
            return [f"{old.files} files then, {summary.files} now"]
        if old.bytes != summary.bytes:
            return [f"{old.bytes:,} bytes then, {summary.bytes:,} now"]
        return ["the content of its files changed (same number of files and bytes)"]
    before = {str(n): i for i, n in enumerate(old_files.names)}
    now = {str(n): i for i, n in enumerate(new.names)}
    added = sorted(now.keys() - before.keys())
    removed = sorted(before.keys() - now.keys())
    resized, rewritten = [], []
    for name in sorted(now.keys() & before.keys()):
        i, j = before[name], now[name]
        if old_files.sizes[i] != new.sizes[j]:
            resized.append(f"{name} ({old_files.sizes[i]:,} -> {new.sizes[j]:,} bytes)")
        elif old_files.digests[i] != new.digests[j]:
            rewritten.append(name)

    def listed(what: str, items: list[str]) -> list[str]:
        if not items:
            return []
        more = f" and {len(items) - limit} more" if len(items) > limit else ""
        return [f"{len(items)} file(s) {what}: {', '.join(items[:limit])}{more}"]

    return (listed("changed in content (same size)", rewritten) + listed("changed in size", resized)
            + listed("added", added) + listed("removed", removed))

