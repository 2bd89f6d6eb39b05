"""Check a cache against itself: completeness, metadata, shapes, label ranges, recorded checksums.

``verify`` lists every problem it finds and never stops at the first: a damaged ``zarr.json``,
an array whose dtype or chunks were edited, a chunk that will not decompress, a chunk file that
is missing (zarr would read it as zeros), a chunk whose bytes differ from the checksum recorded
at build time, values out of range.
"""

from __future__ import annotations

import math

import numpy as np
import zarr

from nsynth_prep.cache import format as cache
from nsynth_prep.cache import skipped
from nsynth_prep.cache.checked import CheckedArray
from nsynth_prep.errors import CacheError
from nsynth_prep.labels import COLUMN_RANGES, NOTE_STR_RE
from nsynth_prep.progress import Progress
from nsynth_prep.readers.fingerprint import Fingerprint
from nsynth_prep.storage.store import Where, location


def verify_cache(path: Where, split: str | None = None, progress: bool = False) -> list[str]:
    """Every problem found in the cache at ``path``, a folder or a URL (an empty list means it is sound).

    A cache named ``<split>.zarr`` (or opened as ``split``) must record that split
    (:func:`.format.split_problem`).

    Reads every chunk once, so it costs about one pass over the cache (90 s for NSynth train's
    36 GiB: ``progress`` draws a bar over the features' chunks).
    """
    path = location(path)
    try:
        group = cache.open_group(path)
        meta = cache.load_meta(group)
    except CacheError as exc:
        return [str(exc)]
    if not meta.complete:
        return ["incomplete cache (its build was interrupted or failed); run the same nsynth prep build-cache "
                "again to resume"]
    c = cache.Cache(path, group, meta)
    split_problem = cache.split_problem(path, meta, split)
    problems = [split_problem] if split_problem else []
    for name in cache.LABEL_DTYPES:
        problem = _check_label(c, name)
        if problem:
            problems.append(problem)
    if not problems:
        problems += _check_labels(c)
    total = sum(len(f.checksums) for f in meta.features.values())
    with Progress(total, f"verify {c.split}", unit="chunks", enabled=progress) as bar:
        for name in meta.features:
            problems += _verify_feature(c, name, bar)
    problems += _check_source_files(c)
    skipped_problem = skipped.problem(c)
    return problems + ([skipped_problem] if skipped_problem else [])


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
    problem = cache.array_problem(c.meta, name, arr)
    return (None, problem) if problem else (arr, None)


def _check_label(c: cache.Cache, name: str) -> str | None:
    arr, problem = _open(c, name)
    if arr is None:
        return problem
    try:
        values = cache.read(arr)
    except cache.READ_ERRORS as exc:
        return f"{name}: cannot be read ({cache.why(exc)})"
    if cache.checksum(values) != c.meta.label_checksums[name]:
        gone = cache.missing_chunk_files(c.path, name, arr, range(math.ceil(len(c) / arr.chunks[0])))
        cause = f" (chunk file {', '.join(gone)} is missing)" if gone else ""
        return f"{name}: checksum differs from the one recorded at build time{cause}"
    return None


def _check_labels(c: cache.Cache) -> list[str]:
    """Ranges, unique notes, note_str agreeing with the ids, counts (labels already checksummed)."""
    problems = []
    n = len(c)
    labels = c.labels()
    for name, (lo, hi) in COLUMN_RANGES.items():
        v = getattr(labels, name)
        out = (v < lo) | (v > hi)
        bad = np.flatnonzero(out.any(axis=1) if out.ndim > 1 else out)  # rows (qualities: any flag)
        if len(bad):
            problems.append(f"{name}: {len(bad)} values outside {lo}..{hi}, e.g. row {bad[0]} = {v[bad[0]]}")
    if problems:
        return problems
    names = labels.note_str  # (N,) Python strings, as read: a numpy str copy and its set took ~100 MB for NSynth train
    distinct = len(set(names.tolist()))
    if distinct != n:
        problems.append(f"note_str: {n - distinct} duplicate notes")
    ids, first = np.unique(labels.note, return_index=True)
    if len(ids) != n:  # NSynth's note ids are unique; the reader refuses a source that repeats one
        again = np.setdiff1d(np.arange(n), first)[0]
        problems.append(f"note: {n - len(ids)} duplicate note ids, e.g. row {again} = {labels.note[again]}")
    families, sources = c.meta.families, c.meta.sources
    for row, s in enumerate(names):
        match = NOTE_STR_RE.match(s)
        if not match or match.group(1) != families[labels.family[row]] or match.group(2) != sources[labels.source[row]]:
            problems.append(f"note_str row {row}: {s!r} does not agree with family/source labels")
            break
    if c.meta.counts != cache.Counts.of(labels):
        problems.append("the counts in attrs do not match the labels")
    return problems


def _verify_feature(c: cache.Cache, name: str, bar: Progress) -> list[str]:
    """The problems of one feature's array and chunks; ``bar`` counts its chunks (all of them,
    read or not)."""
    arr, problem = _open(c, name)
    if arr is None:
        bar.update(len(c.feature(name).checksums))
        return [f"feature {problem}"]
    feature = CheckedArray(c, name)
    problems = []
    buf = feature.buffer(1)
    # Value ranges in stored terms: pooled floats within [-1, 1]; int16 audio has no value outside
    # its scale's range, but a float feature can hold NaN or inf.
    floats = feature.dtype.kind == "f"
    for i in range(feature.num_chunks):
        n, problem = feature.try_read_into(i, buf)
        bar.update(1)
        if problem:
            problems.append(problem)
            continue
        data = buf[:n]
        if floats and not np.isfinite(data).all():
            problems.append(f"{name}: chunk {i} holds NaN or inf")
        elif floats and data.size and np.abs(data).max() > 1.0:
            problems.append(f"{name}: chunk {i} has values outside [-1, 1]")
    return problems


def _check_source_files(c: cache.Cache) -> list[str]:
    """The stored per-file fingerprint must be the one the metadata summarises."""
    recorded = c.meta.build.source.fingerprint
    cols = cache.read_source_files(c.group)
    table = Fingerprint.from_columns(recorded.kind, cols) if cols else None
    if table is None:
        return [f"{cache.SOURCE_FILES}: the per-file fingerprint of the source is missing or unreadable"]
    if table.summary() != recorded:
        return [f"{cache.SOURCE_FILES}: the per-file fingerprint does not match the metadata's summary "
                "(build.source.fingerprint)"]
    return []
