"""Check a cache against itself: completeness, shapes, label ranges, recorded checksums."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from . import cache
from .features import spec_from_dict
from .labels import NOTE_STR_RE, QUALITIES


def verify_cache(path: Path) -> list[str]:
    """Every problem found in the cache at ``path`` (an empty list means it is sound).

    Reads every chunk once, so it costs about one pass over the cache.
    """
    path = Path(path)
    try:
        c = cache.open_cache(path)
    except (cache.CacheError, FileNotFoundError, ValueError) as exc:
        return [str(exc)]
    problems: list[str] = []
    m, n = c.attrs, len(c)
    families, sources = m["families"], m["sources"]
    for name, dtype in cache.LABEL_DTYPES.items():
        if name not in c.group:
            problems.append(f"label array {name!r} is missing")
            continue
        arr = c.group[name]
        assert isinstance(arr, zarr.Array)
        want = (n, len(QUALITIES)) if name == "qualities" else (n,)
        if arr.shape != want:
            problems.append(f"{name}: shape {arr.shape}, expected {want}")
            continue
        values = cache.read(arr)
        if name != "note_str" and values.dtype != np.dtype(dtype):
            problems.append(f"{name}: dtype {values.dtype}, expected {np.dtype(dtype)}")
        if cache.checksum(values) != m["label_checksums"].get(name):
            problems.append(f"{name}: checksum differs from the one recorded at build time")
    if problems:
        return problems
    labels = c.labels()
    ranges = {"family": (0, len(families) - 1), "source": (0, len(sources) - 1), "pitch": (0, 127),
              "velocity": (0, 127), "instrument": (0, 1 << 15), "qualities": (0, 1)}
    for name, (lo, hi) in ranges.items():
        v = getattr(labels, name)
        bad = np.flatnonzero((v < lo) | (v > hi))
        if len(bad):
            problems.append(f"{name}: {len(bad)} values outside {lo}..{hi}, e.g. row {bad[0]} = {v.ravel()[bad[0]]}")
    names = labels.note_str.astype(str)
    if len(set(names)) != n:
        problems.append(f"note_str: {n - len(set(names))} duplicate notes")
    for row, s in enumerate(names):
        match = NOTE_STR_RE.match(s)
        if not match or match.group(1) != families[labels.family[row]] or match.group(2) != sources[labels.source[row]]:
            problems.append(f"note_str row {row}: {s!r} does not agree with family/source labels")
            break
    if sum(m.get("counts", {}).get("family", {}).values()) != n:
        problems.append(f"attrs counts do not add up to {n} notes")
    for name, info in m["features"].items():
        problems += _verify_feature(c, name, info)
    return problems


def _verify_feature(c: cache.Cache, name: str, info: dict) -> list[str]:
    if name not in c.group:
        return [f"feature {name!r} is listed but its array is missing"]
    spec = spec_from_dict(info["params"])
    arr = c.group[name]
    assert isinstance(arr, zarr.Array)
    want = (len(c), *spec.row_shape)
    if arr.shape != want:
        return [f"{name}: shape {arr.shape}, expected {want}"]
    rows = info["chunk_rows"]
    sums = info["checksums"]
    if len(sums) != -(-len(c) // rows):
        return [f"{name}: {len(sums)} chunk checksums recorded for {-(-len(c) // rows)} chunks"]
    problems = []
    for i, expected in enumerate(sums):
        data = cache.read(arr, slice(i * rows, (i + 1) * rows))
        if cache.checksum(data) != expected:
            problems.append(f"{name}: chunk {i} (rows {i * rows}..{min(len(c), (i + 1) * rows) - 1}) "
                            "differs from its build-time checksum")
        if not np.isfinite(data).all():
            problems.append(f"{name}: chunk {i} holds NaN or inf")
        elif data.size and np.abs(data).max() > 1.0:
            problems.append(f"{name}: chunk {i} has values outside [-1, 1]")
    return problems
