"""Check a cache against itself: completeness, metadata, shapes, label ranges, recorded checksums.

``verify`` lists every problem it finds and never stops at the first: a damaged ``zarr.json``,
an array whose dtype or chunks were edited, a chunk that will not decompress, a chunk file that
is missing (zarr would read it as zeros), a chunk whose bytes differ from the CRC32 recorded
at build time.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import zarr

from . import cache
from .errors import CacheError
from .fingerprint import Fingerprint
from .labels import NOTE_STR_RE


def verify_cache(path: Path) -> list[str]:
    """Every problem found in the cache at ``path`` (an empty list means it is sound).

    Reads every chunk once, so it costs about one pass over the cache.
    """
    path = Path(path)
    try:
        group = cache.open_group(path)
        m = cache.meta(group)
    except CacheError as exc:
        return [str(exc)]
    if m.get("format_version") != cache.FORMAT_VERSION:
        return [f"cache format version {m.get('format_version')} (this nsynth reads {cache.FORMAT_VERSION})"]
    if m.get("state") != "complete":
        return ["incomplete cache (its build was interrupted or failed); run the same nsynth prep build-cache "
                "again to resume"]
    problems = [f"attrs (zarr.json): {p}" for p in cache.meta_problems(m)]
    if problems:  # the arrays cannot be checked against attrs that are not whole
        return problems
    c = cache.Cache(path, group, m)
    for name in cache.LABEL_DTYPES:
        problem = _check_label(c, name)
        if problem:
            problems.append(problem)
    if not problems:
        problems += _check_labels(c)
    for name in m["features"]:
        problems += _verify_feature(c, name)
    problems += _check_source_files(c)
    return problems


def _open(c: cache.Cache, name: str) -> tuple[zarr.Array | None, str | None]:
    """An array and its metadata checked, or the problem with it."""
    try:
        arr = c.group[name]
    except KeyError:
        return None, f"{name}: array missing ({name}/zarr.json not found)"
    except cache.READ_ERRORS as exc:
        return None, f"{name}/zarr.json cannot be read ({cache.why(exc)})"
    if not isinstance(arr, zarr.Array):
        return None, f"{name}: not an array"
    problem = cache.array_problem(c.attrs, name, arr)
    return (None, problem) if problem else (arr, None)


def _check_label(c: cache.Cache, name: str) -> str | None:
    arr, problem = _open(c, name)
    if arr is None:
        return problem
    try:
        values = cache.read(arr)
    except cache.READ_ERRORS as exc:
        return f"{name}: cannot be read ({cache.why(exc)})"
    if cache.checksum(values) != cache.label_checksums(c.attrs)[name]:
        gone = cache.missing_chunk_files(c.path, name, arr, range(math.ceil(len(c) / arr.chunks[0])))
        cause = f" (chunk file {', '.join(gone)} is missing)" if gone else ""
        return f"{name}: checksum differs from the one recorded at build time{cause}"
    return None


def _check_labels(c: cache.Cache) -> list[str]:
    """Ranges, unique notes, note_str agreeing with the ids, counts (labels already checksummed)."""
    problems = []
    m, n = c.attrs, len(c)
    families, sources = m["families"], m["sources"]
    labels = c.labels()
    ranges = {"family": (0, len(families) - 1), "source": (0, len(sources) - 1), "pitch": (0, 127),
              "velocity": (0, 127), "instrument": (0, 1 << 15), "qualities": (0, 1)}
    for name, (lo, hi) in ranges.items():
        v = getattr(labels, name)
        bad = np.flatnonzero((v < lo) | (v > hi))
        if len(bad):
            problems.append(f"{name}: {len(bad)} values outside {lo}..{hi}, e.g. row {bad[0]} = {v.ravel()[bad[0]]}")
    if problems:
        return problems
    names = labels.note_str.astype(str)
    if len(set(names)) != n:
        problems.append(f"note_str: {n - len(set(names))} duplicate notes")
    for row, s in enumerate(names):
        match = NOTE_STR_RE.match(s)
        if not match or match.group(1) != families[labels.family[row]] or match.group(2) != sources[labels.source[row]]:
            problems.append(f"note_str row {row}: {s!r} does not agree with family/source labels")
            break
    if sum(m["counts"].get("family", {}).values()) != n:
        problems.append(f"attrs counts do not add up to {n} notes")
    return problems


def _verify_feature(c: cache.Cache, name: str) -> list[str]:
    arr, problem = _open(c, name)
    if arr is None:
        return [f"feature {problem}"]
    info = cache.feature_info(c.attrs, name)
    rows, sums = info["chunk_rows"], info["checksums"]
    problems = []
    for i, expected in enumerate(sums):
        start, stop = i * rows, min(len(c), (i + 1) * rows)
        where = f"{name}: chunk {i} (rows {start}..{stop - 1}, file {_file(c, name, arr, i)})"
        try:
            data = cache.read(arr, slice(start, stop))
        except cache.READ_ERRORS as exc:
            problems.append(f"{where} cannot be read ({cache.why(exc)})")
            continue
        if cache.checksum(data) != expected:
            missing = not cache.chunk_file(c.path, name, arr, i).exists()
            problems.append(f"{where} differs from its build-time checksum"
                            + (" (the file is missing: zarr reads it as zeros)" if missing else ""))
        if not np.isfinite(data).all():
            problems.append(f"{where} holds NaN or inf")
        elif data.size and np.abs(data).max() > 1.0:
            problems.append(f"{where} has values outside [-1, 1]")
    return problems


def _file(c: cache.Cache, name: str, arr: zarr.Array, chunk: int) -> str:
    return str(cache.chunk_file(c.path, name, arr, chunk).relative_to(c.path))


def _check_source_files(c: cache.Cache) -> list[str]:
    """The stored per-file fingerprint must be the one the attrs summarise (when there is one)."""
    recorded = cache.source_fingerprint(c.attrs)
    if recorded.get("scheme") is None:
        return []  # fingerprinted by an older nsynth: no table
    cols = cache.read_source_files(c.group)
    table = Fingerprint.from_columns(str(recorded.get("kind")), cols) if cols else None
    if table is None:
        return [f"{cache.SOURCE_FILES}: the per-file fingerprint of the source is missing or unreadable"]
    if table.summary() != recorded:
        return [f"{cache.SOURCE_FILES}: the per-file fingerprint does not match attrs build.source.fingerprint"]
    return []
