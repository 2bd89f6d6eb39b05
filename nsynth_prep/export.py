"""Export a cache to one HDF5 file (MATLAB, h5py users), chunk by chunk in bounded memory.

Every array keeps its name, dtype, shape and row chunking; floats and ints are stored with
the shuffle filter and gzip (deflate, which MATLAB reads), ``note_str`` as variable-length
UTF-8 strings. ``attrs['nsynth']`` is stored as JSON text in the file's ``nsynth`` attribute,
beside a few plain attributes (``format_version``, ``split``, ``notes``, ``features``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from . import cache as cache_format


def export_hdf5(cache_path: Path, out: Path, progress: bool = False) -> Path:
    """Write ``out`` (via a temporary file renamed at the end, so a half-written file never
    has the final name) with every array and attribute of the cache at ``cache_path``."""
    from .progress import Progress

    c = cache_format.open_cache(Path(cache_path))
    out = Path(out)
    tmp = out.with_name(f".{out.name}.partial")
    names = [*c.attrs["features"], *cache_format.LABEL_DTYPES]
    total = sum(int(np.prod(c.array(n).shape)) * c.array(n).dtype.itemsize for n in c.attrs["features"])
    with h5py.File(tmp, "w") as h5, Progress(total >> 20, f"export {c.split}", unit="MiB", enabled=progress) as bar:
        h5.attrs["nsynth"] = json.dumps(c.attrs)
        h5.attrs["format_version"] = c.attrs["format_version"]
        h5.attrs["split"] = c.split
        h5.attrs["notes"] = len(c)
        h5.attrs["features"] = ",".join(c.attrs["features"])
        for name in names:
            arr = c.array(name)
            rows = max(1, min(int(arr.chunks[0]), len(c)))
            is_str = name == "note_str"
            dset = h5.create_dataset(
                name, shape=arr.shape, dtype=h5py.string_dtype("utf-8") if is_str else arr.dtype,
                chunks=(rows, *arr.shape[1:]) if len(c) else None,
                **({} if is_str else {"compression": "gzip", "compression_opts": 4, "shuffle": True}))
            for start in range(0, len(c), rows):
                block = cache_format.read(arr, slice(start, start + rows))
                dset[start : start + len(block)] = block.astype(object) if is_str else block
                if name in c.attrs["features"]:
                    bar.update(block.nbytes >> 20)
    os.replace(tmp, out)
    return out
