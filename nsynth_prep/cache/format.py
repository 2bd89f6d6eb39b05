"""The cache format, version 2: one zarr v3 group per split, ``<cache dir>/<split>.zarr``.

This module alone knows array names, dtypes, chunking and the attrs: its metadata is the typed
:class:`CacheMeta` (see :mod:`nsynth_prep.cache.meta`, re-exported here), which every reader gets
from :func:`open_cache`. The format itself (every array, its dtype, shape, chunking and codec, the
attrs, the checksums) is specified once, in docs/cache-format.md; change the two together.

A feature's stored values times its ``scale`` are floats in [-1, 1]. A reader trusts only a
cache whose state is complete, and only the features listed as built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from nsynth_prep.cache.meta import (
    CHECKSUM,
    FORMAT,
    FORMAT_VERSION,
    BuildMeta,
    CacheMeta,
    Counts,
    FeatureMeta,
    MetaError,
    RowOptions,
    Skipped,
    SourceFingerprint,
    SourceMeta,
    rebuild_command,
)
from nsynth_prep.errors import CacheError
from nsynth_prep.features import FeatureSpec
from nsynth_prep.kernels.crc32c import crc32c, payload_crc
from nsynth_prep.labels import LABEL_DTYPES, QUALITIES, SPLITS, LabelTable
from nsynth_prep.storage import store
from nsynth_prep.storage.store import Location, storage_errors

__all__ = ["CHECKSUM", "FORMAT", "FORMAT_VERSION", "LABEL_DTYPES", "BuildMeta", "Cache", "CacheMeta", "Counts",
           "FeatureMeta", "RowOptions", "Skipped", "SourceFingerprint", "SourceMeta"]

ATTR = "nsynth"  # the key of our metadata in the group's attributes
LABEL_CHUNK_ROWS = 1 << 16
SOURCE_FILES = "source_files"  # the per-file fingerprint of the source (see .fingerprint): plain arrays
SKIPPED = "skipped"  # the notes a build skipped, when more than the attrs list (see .skipped): plain arrays

# The codec of each feature's chunks (measurements in docs/benchmarks.md). Unencoded chunks are
# memory-mapped and used in place by the loader, which on two cores sharing one memory bus reads
# them at about three times the rate of LZ4-compressed ones (decoded into a buffer). So the two
# features the presets stream are stored plain: pooled means (float32) only shrink to 83 % with
# byte-shuffled LZ4 anyway, framed (int16) to 80 % on rendered instruments. trimmed, NSynth
# train's largest (29 GB as int16) and not a preset's, shrinks to 70 %: it keeps LZ4, decoded at
# ~8 GB/s a core.
FEATURE_CODECS: dict[str, list[Any] | None] = {
    "pooled": None,
    "framed": None,
    "trimmed": [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")],
}

# What zarr raises for metadata or chunk bytes it cannot use: JSON and zarr's own metadata errors
# are ValueErrors, the codecs raise RuntimeError (blosc, zstd), a chunk of the wrong size fails
# its reshape with ValueError, a missing array is a KeyError.
READ_ERRORS: tuple[type[Exception], ...] = (ValueError, RuntimeError, KeyError, TypeError, EOFError, OSError)


def cache_path(cache_dir: store.Where, split: str) -> Location:
    """Where the cache of ``split`` lives: ``<cache_dir>/<split>.zarr`` (a folder or a URL)."""
    return store.location(cache_dir) / f"{split}.zarr"


def named_split(path: Location) -> str | None:
    """The split a cache's name says it holds: ``valid`` for ``.../valid.zarr``; None for a name
    that is not ``<split>.zarr`` of one of NSynth's splits (a user's ``mycache.zarr``)."""
    stem = path.name.removesuffix(".zarr")
    return stem if path.name.endswith(".zarr") and stem in SPLITS else None


def split_problem(path: Location, meta: CacheMeta, split: str | None = None) -> str | None:
    """Why the split ``meta`` records is not the one the cache is opened as (``split``, else its name's:
    :func:`named_split`), or None: a renamed ``valid.zarr`` must not be scored as ``test.zarr``."""
    want = split or named_split(path)
    if want is None or want == meta.split:
        return None
    return (f"{path}: records split {meta.split!r}, but is opened as split {want!r} (a cache renamed or moved?); "
            f"put it back at <cache>/{meta.split}.zarr, or build the {want} split")


def checksum(data: np.ndarray) -> str:
    """CRC-32C (8 hex digits) of an array's C-order bytes; note_str arrays hash their
    newline-joined UTF-8. google-crc32c's C build reads 16-27 GB/s on the reference machine
    (zlib's CRC-32, format 1's, 6.4 GB/s) and :mod:`.crc` calls it with the GIL released, so it
    is cheap enough for every chunk a loader reads, beside the thread that uses the rows."""
    if data.dtype.kind in "OUT":
        joined = "\n".join(str(s) for s in data.ravel())
        return f"{payload_crc(joined.encode()):08x}"
    return f"{crc32c(data):08x}"


def why(exc: BaseException) -> str:
    """An exception as a short phrase for a one-line message."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


def damaged(path: Location, what: str) -> CacheError:
    """The one-line error for a cache whose bytes or metadata are not what its build wrote."""
    return CacheError(f"{path}: {what}; the cache is damaged: run nsynth prep verify {path} for a full "
                      "report, then remove it and build it again")


def group_path(group: zarr.Group) -> Location:
    """The folder (or URL) of a group (for messages)."""
    url = store.store_url(group.store)
    root: Location = store.Remote(url) if url else Path(str(getattr(group.store, "root", group.store)))
    return root / group.path if group.path else root


def open_group(path: store.Where, mode: Literal["r", "r+"] = "r") -> zarr.Group:
    """The zarr group of a cache; ``CacheError`` naming ``zarr.json`` when it is missing or unreadable
    (``StorageError`` naming the URL when its store cannot be used)."""
    path = store.location(path)
    store.probe(path)
    if not (path / "zarr.json").is_file():
        raise CacheError(f"{path}: no cache here; build it with nsynth prep build-cache")
    try:
        return zarr.open_group(store.zarr_store(path, read_only=mode == "r"), mode=mode, zarr_format=3)
    except READ_ERRORS as exc:
        raise CacheError(f"{path / 'zarr.json'}: not a readable zarr group ({why(exc)}); remove {path} "
                         "and build it again") from None


class NotACache(CacheError):
    """A zarr group without nsynth metadata."""


class MetaProblem(CacheError):
    """Metadata this nsynth cannot use; ``state`` is what it says of itself, if anything."""

    def __init__(self, message: str, state: Any) -> None:
        super().__init__(message)
        self.state = state


class OtherVersion(MetaProblem):
    """A cache of another format version."""


class BadMeta(MetaProblem):
    """Metadata that is missing or malformed."""


def load_meta(group: zarr.Group) -> CacheMeta:
    """The typed metadata of a cache's group.

    Raises
    ------
    NotACache, OtherVersion, BadMeta
        Each a ``CacheError`` naming the group's ``zarr.json`` (``OtherVersion``: the cache, and
        for a version-1 cache the command that rebuilds it).
    """
    path = group_path(group)
    try:
        own = dict(group.attrs.asdict()).get(ATTR)
    except READ_ERRORS as exc:
        raise BadMeta(f"{path / 'zarr.json'}: attributes cannot be read ({why(exc)})", None) from None
    if not isinstance(own, dict) or own.get("format") != FORMAT:
        raise NotACache(f"{path / 'zarr.json'}: not an nsynth cache (no attrs['{ATTR}'])")
    version = own.get("format_version")
    if version != FORMAT_VERSION:
        if version == 1:
            raise OtherVersion(f"{path}: cache format version 1, written by an older nsynth (audio as float32); this "
                               f"nsynth reads version {FORMAT_VERSION} only. Rebuild it: {rebuild_command(path, own)}",
                               own.get("state"))
        raise OtherVersion(f"{path}: cache format version {version!r}; this nsynth reads version {FORMAT_VERSION} "
                           "only: use the nsynth that wrote it, or rebuild the cache with this one", own.get("state"))
    try:
        return CacheMeta.from_attrs(own)
    except MetaError as exc:
        raise BadMeta(str(damaged(path, f"zarr.json: attrs['{ATTR}'] {exc}")), own.get("state")) from None


def save_meta(group: zarr.Group, meta: CacheMeta) -> None:
    """Replace the cache's metadata (zarr writes zarr.json atomically)."""
    with storage_errors(group_path(group)):
        group.attrs.update({ATTR: meta.to_attrs()})


def read(arr: zarr.Array, selection: Any = Ellipsis) -> np.ndarray:
    """``arr[selection]`` as a numpy array (zarr's own typing is wider than what it returns)."""
    return np.asarray(arr[selection])


def array_problem(meta: CacheMeta, name: str, arr: zarr.Array) -> str | None:
    """What is wrong with an array's own metadata (its ``zarr.json``) for this cache, or None."""
    n = meta.notes
    if name in LABEL_DTYPES:
        want_shape: tuple[int, ...] = (n, len(QUALITIES)) if name == "qualities" else (n,)
        dtype_ok = arr.dtype.kind in "OUT" if name == "note_str" else arr.dtype == np.dtype(LABEL_DTYPES[name])
        want_dtype = "string" if name == "note_str" else str(np.dtype(LABEL_DTYPES[name]))
    else:
        feature = meta.features[name]
        want_shape = (n, *feature.row_shape)
        dtype_ok, want_dtype = arr.dtype == feature.dtype, str(feature.dtype)
        if arr.chunks[0] != feature.chunk_rows or tuple(arr.chunks[1:]) != want_shape[1:]:
            return f"{name}/zarr.json: chunks {arr.chunks}, expected ({feature.chunk_rows}, ...{want_shape[1:]})"
    if not dtype_ok:
        return f"{name}/zarr.json: dtype {arr.dtype}, expected {want_dtype}"
    if tuple(arr.shape) != want_shape:
        return f"{name}/zarr.json: shape {arr.shape}, expected {want_shape}"
    return None


def chunk_file(path: Location, name: str, arr: zarr.Array, chunk: int) -> Location:
    """The file of row-chunk ``chunk`` of array ``name`` (zarr v3 key ``c/<chunk>/0/...``)."""
    key = arr.metadata.encode_chunk_key((chunk, *([0] * (arr.ndim - 1))))
    return path / name / key


def missing_chunk_files(path: Location, name: str, arr: zarr.Array, chunks: range) -> list[str]:
    """Chunk files that are not on disk. zarr reads a missing chunk as its fill value (zeros)
    without a word, and skips writing chunks that are all zeros, so a missing file is only
    a problem when the chunk's checksum says it held something else."""
    return [store.relative(chunk_file(path, name, arr, c), path) for c in chunks
            if not chunk_file(path, name, arr, c).exists()]


# --- writing -------------------------------------------------------------------------------


def create(path: Location, labels: LabelTable, build: BuildMeta, source_files: dict[str, np.ndarray],
           skipped: dict[str, np.ndarray] | None = None) -> zarr.Group:
    """A new cache group in state ``building`` holding the label arrays of ``labels``, the per-file
    fingerprint of its source and the ``skipped`` table (:mod:`.skipped`). The metadata is written last, in
    one piece: a group without it (a build killed while creating it) is not a cache; a rerun starts over."""
    with storage_errors(path):
        if path.exists():
            store.rmtree(path)
        group = zarr.open_group(store.zarr_store(path), mode="w", zarr_format=3)
        sums = {}
        for name, values in labels.columns().items():
            arr = group.create_array(name, shape=values.shape, dtype=LABEL_DTYPES[name],
                                     chunks=(LABEL_CHUNK_ROWS, *values.shape[1:]))
            if len(labels):
                arr[...] = values.astype(str) if name == "note_str" else values
            sums[name] = checksum(values)
        for name, table in ((SOURCE_FILES, source_files), (SKIPPED, skipped)):
            if table is not None:
                write_source_files(group, table, name)
    save_meta(group, CacheMeta("building", len(labels), build, sums))
    return group


def write_source_files(group: zarr.Group, columns: dict[str, np.ndarray], name: str = SOURCE_FILES) -> None:
    """Store (or replace) the per-file fingerprint table (or another table ``name``): one array per column."""
    with storage_errors(group_path(group)):
        sub = group.require_group(name)
        for name, values in columns.items():
            arr = sub.create_array(name, shape=values.shape, dtype=str if values.dtype.kind in "OUT" else values.dtype,
                                   chunks=(max(1, min(len(values), 1 << 16)),), overwrite=True)
            if len(values):
                arr[...] = values.astype(str) if values.dtype.kind in "OUT" else values


def read_source_files(group: zarr.Group, name: str = SOURCE_FILES) -> dict[str, np.ndarray] | None:
    """The per-file fingerprint table (or table ``name``), or None when missing or unreadable (damaged)."""
    try:
        sub = group[name]
        return {name: np.asarray(arr[...]) for name, arr in sub.arrays()}  # type: ignore[union-attr]
    except READ_ERRORS:
        return None


def add_feature(group: zarr.Group, spec: FeatureSpec) -> zarr.Array:
    """Create (or reset) the array of ``spec`` and list it as being built."""
    meta = load_meta(group)
    with storage_errors(group_path(group)):
        arr = group.create_array(spec.name, shape=(meta.notes, *spec.row_shape), dtype=spec.dtype,
                                 chunks=(spec.chunk_rows, *spec.row_shape),
                                 compressors=FEATURE_CODECS[spec.name], overwrite=True)
    save_meta(group, replace(meta, building=tuple(sorted({*meta.building, spec.name}))))
    return arr


def finish_feature(group: zarr.Group, spec: FeatureSpec, checksums: list[str]) -> None:
    """Record a fully written feature and its per-chunk checksums."""
    meta = load_meta(group)
    features = {**meta.features, spec.name: FeatureMeta(spec, spec.chunk_rows, tuple(checksums))}
    save_meta(group, replace(meta, features=features, building=tuple(b for b in meta.building if b != spec.name)))


def mark_complete(group: zarr.Group, labels: LabelTable) -> None:
    """The last write of a build: the counts of its labels, and the state that lets readers in."""
    save_meta(group, replace(load_meta(group), state="complete", counts=Counts.of(labels)))


# --- reading -------------------------------------------------------------------------------


@dataclass
class Cache:
    """An opened cache: its group and metadata; arrays opened (and their metadata checked) on demand."""

    path: Location
    group: zarr.Group
    meta: CacheMeta

    def __len__(self) -> int:
        return self.meta.notes

    @property
    def split(self) -> str:
        return self.meta.split

    def feature(self, name: str) -> FeatureMeta:
        """The metadata of a built feature; ``CacheError`` saying how to build it when it is not."""
        if name not in self.meta.features:
            built = ", ".join(self.meta.features) or "none"
            raise CacheError(f"{self.path}: has no feature {name!r} (built: {built}); "
                             f"run nsynth prep build-cache --feature {name}")
        return self.meta.features[name]

    def array(self, name: str) -> zarr.Array:
        """The zarr array of a feature or label, its dtype, shape and chunks checked against the metadata."""
        if name not in LABEL_DTYPES:
            self.feature(name)
        try:
            arr = self.group[name]
        except KeyError:
            raise damaged(self.path, f"array {name!r} is missing") from None
        except READ_ERRORS as exc:
            raise damaged(self.path, f"{name}/zarr.json cannot be read ({why(exc)})") from None
        if not isinstance(arr, zarr.Array):
            raise damaged(self.path, f"{name} is not an array")
        problem = array_problem(self.meta, name, arr)
        if problem:
            raise damaged(self.path, problem)
        return arr

    def floats(self, name: str, rows: Any) -> np.ndarray:
        """Rows of a feature as float32 in [-1, 1] (stored values times the feature's scale), for
        looking at a few notes; unchecked, as plain zarr reads them. ``rows``: an int, a slice or
        a sorted index array. Training and exports read checked chunks (:mod:`.checked`)."""
        arr = self.array(name)
        try:
            data = np.asarray(arr.oindex[rows] if isinstance(rows, np.ndarray) else arr[rows])
        except READ_ERRORS as exc:
            raise damaged(self.path, f"{name}: cannot be read ({why(exc)})") from None
        return (data * np.float32(self.feature(name).scale)).astype(np.float32, copy=False)

    def label(self, name: str) -> np.ndarray:
        """One whole label array, checked against the checksum recorded when it was written.

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
        if checksum(values) != self.meta.label_checksums[name]:
            gone = missing_chunk_files(self.path, name, arr, range(math.ceil(len(self) / arr.chunks[0])))
            cause = f" (chunk file {', '.join(gone)} is missing)" if gone else ""
            raise damaged(self.path, f"{name}: differs from the checksum recorded at build time{cause}")
        return values

    def labels(self) -> LabelTable:
        """Every label column, read whole and checked."""
        cols = {name: self.label(name) for name in LabelTable.COLUMNS}
        cols["note_str"] = np.asarray(cols["note_str"]).astype(object)
        return LabelTable(**cols)


def open_cache(path: store.Where, features: tuple[str, ...] = (), split: str | None = None) -> Cache:
    """Open a complete cache (a folder or a URL), checking its format version, its metadata, that
    ``features`` were built, and that it records the split it is opened as: ``split`` when given,
    else the one its name says (``<cache>/test.zarr`` holds test; see :func:`split_problem`).
    A cache under another name (``mycache.zarr``) opened without ``split`` is not checked."""
    path = store.location(path)
    group = open_group(path)
    meta = load_meta(group)
    if not meta.complete:
        raise CacheError(f"{path}: incomplete cache (its build was interrupted or failed); "
                         "run the same nsynth prep build-cache again to resume")
    problem = split_problem(path, meta, split)
    if problem:
        raise CacheError(problem)
    cache = Cache(path, group, meta)
    for f in features:
        cache.array(f)
    return cache
