"""The cache format: one zarr v3 group per split, ``<cache dir>/<split>.zarr``.

This module alone knows array names, dtypes, chunking and attrs. Layout (N notes, rows in
a seeded shuffled order):

==============  ===============  ==========================================================
array           dtype, shape     content
==============  ===============  ==========================================================
pooled          f4 (N, 2048)     mean of 25-sample windows over the first 51,200 samples
framed          f4 (N, 100, 160) first 16,000 samples as 100 frames of 160
trimmed         f4 (N, 51200)    first 51,200 samples
family          i1 (N,)          NSynth ``instrument_family`` 0..10
source          i1 (N,)          NSynth ``instrument_source`` 0..2
pitch           i2 (N,)          MIDI pitch
velocity        i2 (N,)          MIDI velocity
instrument      i2 (N,)          NSynth instrument id
note            i4 (N,)          NSynth note id
qualities       u1 (N, 10)       quality flags, order of ``attrs['nsynth']['qualities']``
note_str        string (N,)      e.g. ``guitar_acoustic_010-066-100``
==============  ===============  ==========================================================

Audio features are float32 in [-1, 1]. All metadata lives under ``attrs['nsynth']``; a reader
checks ``format_version`` and that ``state == 'complete'`` and only trusts features listed
in ``features`` (a feature being added later is listed in ``building`` until done).
"""

from __future__ import annotations

import math
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from .errors import CacheError
from .features import FeatureSpec, spec_from_dict
from .labels import FAMILIES, QUALITIES, SOURCES, LabelTable
from .lock import storage_errors

FORMAT = "nsynth-cache"
FORMAT_VERSION = 1
ATTR = "nsynth"
LABEL_CHUNK_ROWS = 1 << 16
LABEL_DTYPES: dict[str, Any] = {
    "family": np.int8, "source": np.int8, "pitch": np.int16, "velocity": np.int16,
    "instrument": np.int16, "note": np.int32, "qualities": np.uint8, "note_str": str,
}
# The per-file fingerprint of the source (see :mod:`.fingerprint`): a subgroup of plain arrays.
SOURCE_FILES = "source_files"

# Audio as float32 holds at most 16 significant bits: byte-shuffled LZ4 stores framed audio in
# 55 % of its size and decodes at ~3 GB/s, against 63 % and ~1 GB/s for zarr's default zstd.
FEATURE_CODEC = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")

# What zarr raises for metadata or chunk bytes it cannot use: JSON and zarr's own metadata errors
# are ValueErrors, the codecs raise RuntimeError (blosc, zstd), a chunk of the wrong size fails
# its reshape with ValueError, a missing array is a KeyError.
READ_ERRORS: tuple[type[Exception], ...] = (ValueError, RuntimeError, KeyError, TypeError, EOFError)


def cache_path(cache_dir: Path, split: str) -> Path:
    """Where the cache of ``split`` lives: ``<cache_dir>/<split>.zarr``."""
    return Path(cache_dir) / f"{split}.zarr"


def checksum(data: np.ndarray) -> str:
    """CRC32 (hex) of an array's C-order bytes; note_str arrays hash their newline-joined UTF-8."""
    if data.dtype.kind in "OUT":
        raw = "\n".join(str(s) for s in data.ravel()).encode()
        return f"{zlib.crc32(raw):08x}"
    # zlib reads the array's own buffer (no copy), ~6 GB/s: cheap enough to check every read.
    return f"{zlib.crc32(np.ascontiguousarray(data)):08x}"  # type: ignore[arg-type]


def why(exc: BaseException) -> str:
    """An exception as a short phrase for a one-line message."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


def damaged(path: Path, what: str) -> CacheError:
    """The one-line error for a cache whose bytes or metadata are not what its build wrote."""
    return CacheError(f"{path}: {what}; the cache is damaged: run nsynth prep verify {path} for a full "
                      "report, then remove it and build it again")


def group_path(group: zarr.Group) -> Path:
    """The folder of a group in a local store (for messages)."""
    return Path(str(getattr(group.store, "root", group.store))) / group.path


def open_group(path: Path, mode: Literal["r", "r+"] = "r") -> zarr.Group:
    """The zarr group of a cache; ``CacheError`` naming ``zarr.json`` when it is missing or unreadable."""
    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise CacheError(f"{path}: no cache here; build it with nsynth prep build-cache")
    try:
        return zarr.open_group(path, mode=mode, zarr_format=3)
    except READ_ERRORS as exc:
        raise CacheError(f"{path / 'zarr.json'}: not a readable zarr group ({why(exc)}); remove {path} "
                         "and build it again") from None


def meta(group: zarr.Group) -> dict[str, Any]:
    """The cache's own attrs (``attrs['nsynth']``)."""
    attrs: dict[str, Any] = dict(group.attrs.asdict())
    own = attrs.get(ATTR)
    if not isinstance(own, dict) or own.get("format") != FORMAT:
        raise CacheError(f"{group_path(group) / 'zarr.json'}: not an nsynth cache (no attrs['{ATTR}'])")
    return dict(own)


def read(arr: zarr.Array, selection: Any = Ellipsis) -> np.ndarray:
    """``arr[selection]`` as a numpy array (zarr's own typing is wider than what it returns)."""
    return np.asarray(arr[selection])


def set_meta(group: zarr.Group, **changes: Any) -> None:
    """Update ``attrs['nsynth']`` (zarr writes zarr.json atomically)."""
    with storage_errors(group_path(group)):
        group.attrs.update({ATTR: {**meta(group), **changes}})


# --- metadata accessors: every reader goes through these, not raw attrs lookups -------------


def label_checksums(m: dict[str, Any]) -> dict[str, str]:
    """CRC32 of each whole label array, recorded when the labels were written."""
    return dict(m["label_checksums"])


def feature_info(m: dict[str, Any], name: str) -> dict[str, Any]:
    """``params``, ``chunk_rows`` and per-chunk ``checksums`` of a built feature."""
    return dict(m["features"][name])


def source_fingerprint(m: dict[str, Any]) -> dict[str, Any]:
    """The fingerprint summary of the source a cache was built from."""
    return dict(m["build"]["source"].get("fingerprint") or {})


def meta_problems(m: dict[str, Any]) -> list[str]:
    """What is missing or malformed in a cache's attrs; ``[]`` when they are whole.

    A build killed while it created the group leaves partial attrs (no label checksums, say):
    such a cache never got as far as a plan of its rows.
    """
    problems = []
    if m.get("state") not in ("building", "complete"):
        problems.append(f"state is {m.get('state')!r}")
    n = m.get("notes")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        problems.append(f"notes is {n!r}, not a count")
        n = None
    build = m.get("build")
    if not (isinstance(build, dict) and isinstance(build.get("split"), str) and isinstance(build.get("source"), dict)):
        problems.append("the build record (split, source) is missing")
    sums = m.get("label_checksums")
    missing = [k for k in LABEL_DTYPES if not (isinstance(sums, dict) and isinstance(sums.get(k), str))]
    if missing:
        problems.append(f"no label checksum for {', '.join(missing)}")
    for key in ("families", "sources", "qualities", "building"):
        if not isinstance(m.get(key), list):
            problems.append(f"{key} is missing")
    features = m.get("features")
    if not isinstance(features, dict):
        problems.append("the feature list is missing")
    else:
        for name, info in features.items():
            problems += [f"feature {name}: {p}" for p in _feature_problems(info, n)]
    if m.get("state") == "complete" and not isinstance(m.get("counts"), dict):
        problems.append("counts are missing")
    return problems


def _feature_problems(info: Any, n: int | None) -> list[str]:
    if not isinstance(info, dict):
        return ["no record"]
    try:
        spec_from_dict(info["params"])
    except (KeyError, TypeError, ValueError):
        return [f"unknown params {info.get('params')!r}"]
    rows, sums = info.get("chunk_rows"), info.get("checksums")
    if not isinstance(rows, int) or rows < 1:
        return [f"chunk_rows is {rows!r}"]
    if not isinstance(sums, list) or not all(isinstance(s, str) for s in sums):
        return ["no chunk checksums"]
    if n is not None and len(sums) != math.ceil(n / rows):
        return [f"{len(sums)} chunk checksums for {math.ceil(n / rows)} chunks"]
    return []


def array_problem(m: dict[str, Any], name: str, arr: zarr.Array) -> str | None:
    """What is wrong with an array's own metadata (its ``zarr.json``) for this cache, or None."""
    n = m["notes"]
    if name in LABEL_DTYPES:
        want_shape: tuple[int, ...] = (n, len(QUALITIES)) if name == "qualities" else (n,)
        dtype_ok = arr.dtype.kind in "OUT" if name == "note_str" else arr.dtype == np.dtype(LABEL_DTYPES[name])
        want_dtype = "string" if name == "note_str" else str(np.dtype(LABEL_DTYPES[name]))
    else:
        info = feature_info(m, name)
        want_shape = (n, *spec_from_dict(info["params"]).row_shape)
        dtype_ok, want_dtype = arr.dtype == np.float32, "float32"
        if arr.chunks[0] != info["chunk_rows"] or tuple(arr.chunks[1:]) != want_shape[1:]:
            return f"{name}/zarr.json: chunks {arr.chunks}, expected ({info['chunk_rows']}, ...{want_shape[1:]})"
    if not dtype_ok:
        return f"{name}/zarr.json: dtype {arr.dtype}, expected {want_dtype}"
    if tuple(arr.shape) != want_shape:
        return f"{name}/zarr.json: shape {arr.shape}, expected {want_shape}"
    return None


def chunk_file(path: Path, name: str, arr: zarr.Array, chunk: int) -> Path:
    """The file of row-chunk ``chunk`` of array ``name`` (zarr v3 key ``c/<chunk>/0/...``)."""
    key = arr.metadata.encode_chunk_key((chunk, *([0] * (arr.ndim - 1))))
    return Path(path) / name / key


def missing_chunk_files(path: Path, name: str, arr: zarr.Array, chunks: range) -> list[str]:
    """Chunk files that are not on disk. zarr reads a missing chunk as its fill value (zeros)
    without a word, and skips writing chunks that are all zeros, so a missing file is only
    a problem when the chunk's checksum says it held something else."""
    return [str(chunk_file(path, name, arr, c).relative_to(path)) for c in chunks
            if not chunk_file(path, name, arr, c).exists()]


# --- writing -------------------------------------------------------------------------------


def create(path: Path, labels: LabelTable, build: dict[str, Any], source_files: dict[str, np.ndarray]) -> zarr.Group:
    """A new cache group in state ``building`` holding the label arrays of ``labels`` and the
    per-file fingerprint of its source. The label checksums are recorded last: until they are
    there, a rerun treats the cache as never started."""
    with storage_errors(path):
        if path.exists():
            shutil.rmtree(path)
        group = zarr.open_group(path, mode="w", zarr_format=3)
        n = len(labels)
        group.attrs.update({ATTR: {
            "format": FORMAT, "format_version": FORMAT_VERSION, "state": "building",
            "families": list(FAMILIES), "sources": list(SOURCES), "qualities": list(QUALITIES),
            "notes": n, "build": build, "features": {}, "building": [], "label_checksums": {},
        }})
        sums = {}
        for name, values in labels.columns().items():
            arr = group.create_array(name, shape=values.shape, dtype=LABEL_DTYPES[name],
                                     chunks=(LABEL_CHUNK_ROWS, *values.shape[1:]))
            if n:
                arr[...] = values.astype(str) if name == "note_str" else values
            sums[name] = checksum(values)
        write_source_files(group, source_files)
    set_meta(group, label_checksums=sums)
    return group


def write_source_files(group: zarr.Group, columns: dict[str, np.ndarray]) -> None:
    """Store (or replace) the per-file fingerprint table: one array per column."""
    with storage_errors(group_path(group)):
        sub = group.require_group(SOURCE_FILES)
        for name, values in columns.items():
            arr = sub.create_array(name, shape=values.shape, dtype=str if values.dtype.kind in "OUT" else values.dtype,
                                   chunks=(max(1, min(len(values), 1 << 16)),), overwrite=True)
            if len(values):
                arr[...] = values.astype(str) if values.dtype.kind in "OUT" else values


def read_source_files(group: zarr.Group) -> dict[str, np.ndarray] | None:
    """The per-file fingerprint table, or None when there is none (an older or damaged cache)."""
    try:
        sub = group[SOURCE_FILES]
        return {name: np.asarray(arr[...]) for name, arr in sub.arrays()}  # type: ignore[union-attr]
    except READ_ERRORS:
        return None


def add_feature(group: zarr.Group, spec: FeatureSpec) -> zarr.Array:
    """Create (or reset) the array of ``spec`` and list it as being built."""
    n = meta(group)["notes"]
    with storage_errors(group_path(group)):
        arr = group.create_array(spec.name, shape=(n, *spec.row_shape), dtype=np.float32,
                                 chunks=(spec.chunk_rows, *spec.row_shape), compressors=FEATURE_CODEC,
                                 overwrite=True)
    building = sorted(set(meta(group)["building"]) | {spec.name})
    set_meta(group, building=building)
    return arr


def finish_feature(group: zarr.Group, spec: FeatureSpec, checksums: list[str]) -> None:
    """Record a fully written feature and its per-chunk checksums."""
    m = meta(group)
    features = dict(m["features"])
    features[spec.name] = {"params": spec.to_dict(), "chunk_rows": spec.chunk_rows, "checksums": checksums}
    set_meta(group, features=features, building=[b for b in m["building"] if b != spec.name])


# --- reading -------------------------------------------------------------------------------


@dataclass
class Cache:
    """An opened cache: its group and attrs; arrays opened (and their metadata checked) on demand."""

    path: Path
    group: zarr.Group
    attrs: dict[str, Any]

    def __len__(self) -> int:
        return int(self.attrs["notes"])

    @property
    def split(self) -> str:
        return str(self.attrs["build"]["split"])

    def array(self, name: str) -> zarr.Array:
        """The zarr array of a feature or label, its dtype, shape and chunks checked against the cache's attrs."""
        if name not in self.attrs["features"] and name not in LABEL_DTYPES:
            built = ", ".join(self.attrs["features"]) or "none"
            raise CacheError(f"{self.path}: has no feature {name!r} (built: {built}); "
                             f"run nsynth prep build-cache --feature {name}")
        try:
            arr = self.group[name]
        except KeyError:
            raise damaged(self.path, f"array {name!r} is missing") from None
        except READ_ERRORS as exc:
            raise damaged(self.path, f"{name}/zarr.json cannot be read ({why(exc)})") from None
        if not isinstance(arr, zarr.Array):
            raise damaged(self.path, f"{name} is not an array")
        problem = array_problem(self.attrs, name, arr)
        if problem:
            raise damaged(self.path, problem)
        return arr

    def label(self, name: str) -> np.ndarray:
        """One whole label array, checked against the CRC32 recorded when it was written.

        Returns
        -------
        np.ndarray
            (N,) ids, (N, 10) qualities, or (N,) note_str (numpy strings).
        """
        arr = self.array(name)
        try:
            values = read(arr)
        except READ_ERRORS as exc:
            raise damaged(self.path, f"{name}: cannot be read ({why(exc)})") from None
        if checksum(values) != label_checksums(self.attrs)[name]:
            gone = missing_chunk_files(self.path, name, arr, range(math.ceil(len(self) / arr.chunks[0])))
            cause = f" (chunk file {', '.join(gone)} is missing)" if gone else ""
            raise damaged(self.path, f"{name}: differs from the CRC32 recorded at build time{cause}")
        return values

    def labels(self) -> LabelTable:
        """Every label column, read whole and checked."""
        cols = {name: self.label(name) for name in LabelTable.COLUMNS}
        cols["note_str"] = np.asarray(cols["note_str"]).astype(object)
        return LabelTable(**cols)


def open_cache(path: Path, features: tuple[str, ...] = ()) -> Cache:
    """Open a complete cache, checking its format version, its metadata and that ``features`` were built."""
    path = Path(path)
    group = open_group(path)
    m = meta(group)
    if m.get("format_version") != FORMAT_VERSION:
        raise CacheError(f"{path}: cache format version {m.get('format_version')} is not supported "
                         f"(this nsynth reads version {FORMAT_VERSION}); rebuild it")
    if m.get("state") != "complete":
        raise CacheError(f"{path}: incomplete cache (its build was interrupted or failed); "
                         "run the same nsynth prep build-cache again to resume")
    problems = meta_problems(m)
    if problems:
        raise damaged(path, "its attrs (zarr.json) are incomplete: " + "; ".join(problems[:3]))
    cache = Cache(path, group, m)
    for f in features:
        cache.array(f)
    return cache
