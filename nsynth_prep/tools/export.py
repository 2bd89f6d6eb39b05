"""Export a cache to one HDF5 file (MATLAB, h5py users), chunk by chunk in bounded memory.

Every array keeps its name, dtype, shape and row chunking; floats and ints are stored with
the shuffle filter and gzip (deflate, which MATLAB reads), ``note_str`` as variable-length
UTF-8 strings. Each feature dataset has a ``scale`` attribute: its values times ``scale`` are
floats in [-1, 1] (int16 audio: 1/32768). The cache's metadata is stored as JSON text in the
file's ``nsynth`` attribute, beside a few plain attributes (``format_version``, ``split``,
``notes``, ``features``).
What is read is checked against the cache's build-time CRC32s, so a damaged cache is never
copied on silently.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from nsynth_prep.cache import format as cache_format
from nsynth_prep.cache.checked import CheckedArray
from nsynth_prep.errors import ConfigError
from nsynth_prep.storage.atomic import atomic_path
from nsynth_prep.storage.store import Where, storage_errors


def export_hdf5(cache_path: Where, out: Path, progress: bool = False, overwrite: bool = False) -> Path:
    """Write ``out`` with every array and attribute of the cache at ``cache_path``.

    It is written to a temporary file renamed at the end, so a half-written file never has the
    final name. The progress bar counts the bytes of the numeric arrays as they are copied
    and ends exactly at their total.

    Raises
    ------
    ConfigError
        ``out`` exists and ``overwrite`` is False, or is a folder.
    CacheError
        The cache is missing, incomplete or damaged (a chunk or label that fails its CRC32).
    """
    from nsynth_prep.progress import Progress

    c = cache_format.open_cache(cache_path)
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder; give the .h5 file to write")
    if out.exists() and not overwrite:
        raise ConfigError(f"{out}: already exists; pass --overwrite to replace it")
    features = list(c.meta.features)
    labels = list(cache_format.LABEL_DTYPES)
    # What the bar counts: every byte of the numeric arrays (note_str's size is only known as it is encoded).
    total = sum(int(c.array(n).nbytes) for n in [*features, *labels] if n != "note_str")
    with storage_errors(out), atomic_path(out) as tmp, h5py.File(tmp, "w") as h5, \
            Progress(total, f"export {c.split}", unit="B", enabled=progress) as bar:
        h5.attrs["nsynth"] = json.dumps(c.meta.to_attrs())
        h5.attrs["format_version"] = cache_format.FORMAT_VERSION
        h5.attrs["split"] = c.split
        h5.attrs["notes"] = len(c)
        h5.attrs["features"] = ",".join(features)
        for name in features:
            feature = CheckedArray(c, name)
            dset = _dataset(h5, name, feature.array.shape, feature.array.dtype, feature.chunk_rows, len(c))
            dset.attrs["scale"] = feature.scale
            buf = feature.buffer(1)
            for chunk in range(feature.num_chunks):
                block = buf[: feature.read_into(chunk, buf)]  # (rows, *row_shape) as stored, checked
                dset[chunk * feature.chunk_rows : chunk * feature.chunk_rows + len(block)] = block
                bar.update(block.nbytes)
        for name in labels:
            values = c.label(name)  # whole (N or N x 10 small values), checked
            arr = c.array(name)
            dset = _dataset(h5, name, arr.shape, None if name == "note_str" else values.dtype, int(arr.chunks[0]),
                            len(c))
            if len(c):
                dset[...] = values.astype(object) if name == "note_str" else values
            if name != "note_str":
                bar.update(values.nbytes)
    return out


def _dataset(h5: h5py.File, name: str, shape: tuple[int, ...], dtype: np.dtype | None, chunk_rows: int,
             n: int) -> h5py.Dataset:
    """An HDF5 dataset with the cache's row chunks; ``dtype`` None for UTF-8 strings."""
    rows = max(1, min(chunk_rows, n))
    if dtype is None:
        return h5.create_dataset(name, shape=shape, dtype=h5py.string_dtype("utf-8"),
                                 chunks=(rows, *shape[1:]) if n else None)
    return h5.create_dataset(name, shape=shape, dtype=dtype, chunks=(rows, *shape[1:]) if n else None,
                             compression="gzip", compression_opts=4, shuffle=True)
