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

import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from .errors import CacheError
from .features import FeatureSpec
from .labels import FAMILIES, QUALITIES, SOURCES, LabelTable

FORMAT = "nsynth-cache"
FORMAT_VERSION = 1
ATTR = "nsynth"
LABEL_CHUNK_ROWS = 1 << 16
LABEL_DTYPES: dict[str, Any] = {
    "family": np.int8, "source": np.int8, "pitch": np.int16, "velocity": np.int16,
    "instrument": np.int16, "note": np.int32, "qualities": np.uint8, "note_str": str,
}


# Audio as float32 holds at most 16 significant bits: byte-shuffled LZ4 stores framed audio in
# 55 % of its size and decodes at ~3 GB/s, against 63 % and ~1 GB/s for zarr's default zstd.
FEATURE_CODEC = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")


def cache_path(cache_dir: Path, split: str) -> Path:
    """Where the cache of ``split`` lives: ``<cache_dir>/<split>.zarr``."""
    return Path(cache_dir) / f"{split}.zarr"


def checksum(data: np.ndarray) -> str:
    """CRC32 (hex) of an array's C-order bytes; note_str arrays hash their newline-joined UTF-8."""
    if data.dtype.kind in "OUT":
        raw = "\n".join(str(s) for s in data.ravel()).encode()
    else:
        raw = np.ascontiguousarray(data).tobytes()
    return f"{zlib.crc32(raw):08x}"


def meta(group: zarr.Group) -> dict[str, Any]:
    """The cache's own attrs (``attrs['nsynth']``)."""
    attrs: dict[str, Any] = dict(group.attrs.asdict())
    own = attrs.get(ATTR)
    if not isinstance(own, dict) or own.get("format") != FORMAT:
        raise CacheError(f"{group.store}: not an nsynth cache (no attrs['{ATTR}'])")
    return dict(own)


def read(arr: zarr.Array, selection: Any = Ellipsis) -> np.ndarray:
    """``arr[selection]`` as a numpy array (zarr's own typing is wider than what it returns)."""
    return np.asarray(arr[selection])


def set_meta(group: zarr.Group, **changes: Any) -> None:
    """Update ``attrs['nsynth']`` (zarr writes zarr.json atomically)."""
    group.attrs.update({ATTR: {**meta(group), **changes}})


def create(path: Path, labels: LabelTable, build: dict[str, Any]) -> zarr.Group:
    """A new cache group in state ``building`` holding the label arrays of ``labels``."""
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
    set_meta(group, label_checksums=sums)
    return group


def add_feature(group: zarr.Group, spec: FeatureSpec) -> zarr.Array:
    """Create (or reset) the array of ``spec`` and list it as being built."""
    n = meta(group)["notes"]
    arr = group.create_array(spec.name, shape=(n, *spec.row_shape), dtype=np.float32,
                             chunks=(spec.chunk_rows, *spec.row_shape), compressors=FEATURE_CODEC, overwrite=True)
    building = sorted(set(meta(group)["building"]) | {spec.name})
    set_meta(group, building=building)
    return arr


def finish_feature(group: zarr.Group, spec: FeatureSpec, checksums: list[str]) -> None:
    """Record a fully written feature and its per-chunk checksums."""
    m = meta(group)
    features = dict(m["features"])
    features[spec.name] = {"params": spec.to_dict(), "chunk_rows": spec.chunk_rows, "checksums": checksums}
    set_meta(group, features=features, building=[b for b in m["building"] if b != spec.name])


@dataclass
class Cache:
    """An opened, complete cache: labels in memory, features read on demand."""

    path: Path
    group: zarr.Group
    attrs: dict[str, Any]

    def __len__(self) -> int:
        return int(self.attrs["notes"])

    @property
    def split(self) -> str:
        return str(self.attrs["build"]["split"])

    def array(self, name: str) -> zarr.Array:
        """The zarr array of a feature or label, for chunk-wise reading."""
        if name not in self.attrs["features"] and name not in LABEL_DTYPES:
            built = ", ".join(self.attrs["features"]) or "none"
            raise CacheError(f"{self.path}: has no feature {name!r} (built: {built}); "
                             f"run nsynth prep build-cache --feature {name}")
        arr = self.group[name]
        assert isinstance(arr, zarr.Array)
        return arr

    def labels(self) -> LabelTable:
        """Every label column, read whole."""
        return read_labels(self.group)


def read_labels(group: zarr.Group) -> LabelTable:
    """Every label column of a cache group, read whole."""
    cols = {name: read(group[name]) for name in LabelTable.COLUMNS}  # type: ignore[arg-type]
    cols["note_str"] = np.asarray(cols["note_str"]).astype(object)
    return LabelTable(**cols)


def open_cache(path: Path, features: tuple[str, ...] = ()) -> Cache:
    """Open a complete cache, checking its format version and that ``features`` were built."""
    path = Path(path)
    if not (path / "zarr.json").exists():
        raise CacheError(f"{path}: no cache here; build it with nsynth prep build-cache")
    group = zarr.open_group(path, mode="r")
    m = meta(group)
    if m.get("format_version") != FORMAT_VERSION:
        raise CacheError(f"{path}: cache format version {m.get('format_version')} is not supported "
                         f"(this nsynth reads version {FORMAT_VERSION}); rebuild it")
    if m.get("state") != "complete":
        raise CacheError(f"{path}: incomplete cache (its build was interrupted or failed); "
                         "run the same nsynth prep build-cache again to resume")
    cache = Cache(path, group, m)
    for f in features:
        cache.array(f)
    return cache
