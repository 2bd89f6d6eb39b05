"""Build caches: scan a source, plan the shuffled rows, write feature chunks in parallel, resume.

The rows of a cache are the source's notes sorted by ``note_str`` and permuted with
``seed``, so the same notes give the same cache whatever the format or record order. Work is
split in blocks of whole chunks; each worker owns its blocks' chunks and marks each chunk
done (with its checksum) in ``<split>.zarr.build/`` after zarr has written it, atomically.
A rerun after an interruption skips the marked chunks and ends with the same bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from nsynth_prep import kernels
from nsynth_prep.builder import resume
from nsynth_prep.builder.blocks import ChunkJob, ChunkRunner, DoneMarks, LocalRunner, collect_checksums
from nsynth_prep.cache import format as cache
from nsynth_prep.cache import skipped as skipped_table
from nsynth_prep.errors import CacheError, ConfigError, SourceError, StorageError
from nsynth_prep.exclusions import NoteList
from nsynth_prep.features import FeatureSpec, feature_spec
from nsynth_prep.labels import LabelTable, family_id
from nsynth_prep.progress import Progress
from nsynth_prep.readers import fingerprint
from nsynth_prep.readers.catalog import Catalog
from nsynth_prep.readers.sources import Source, discover
from nsynth_prep.storage import store
from nsynth_prep.storage.lock import exclusive
from nsynth_prep.storage.store import Location, storage_errors
from nsynth_prep.vocabulary import ON_ERROR

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildConfig:
    """How a cache is built; recorded in the cache's metadata (:class:`.cache.BuildMeta`)."""

    features: tuple[str, ...] = ("pooled",)
    families: tuple[str, ...] = ()  # keep only these (empty: all)
    exclude_families: tuple[str, ...] = ()
    seed: int = 0  # row-order seed
    workers: int = 1
    on_error: str = "fail"  # "fail" or "skip"
    allow_empty: bool = False  # write a cache with no notes instead of failing (recorded in the attrs)
    wait: bool = False  # wait for another writer of the same split instead of failing (not recorded)
    # Where the chunk-writing tasks run: None (local processes), "tcp://HOST:PORT" (a Dask scheduler) or
    # "local:N" (a Dask LocalCluster of N processes); see .dask_cluster. Not recorded: where a cache was
    # computed is not part of what it is (a Dask build and a local one write the same bytes).
    dask: str | None = None
    # Notes to leave out, by name (--exclude-notes); recorded as skipped notes with the list's name
    exclude_notes: NoteList | None = None

    def __post_init__(self) -> None:
        for name in self.features:
            feature_spec(name)
        for name in (*self.families, *self.exclude_families):
            family_id(name)
        if self.on_error not in ON_ERROR:
            raise ConfigError(f"on_error must be 'fail' or 'skip', not {self.on_error!r}")
        if self.workers < 1:
            raise ConfigError("workers must be >= 1")
        if self.dask is not None:
            from nsynth_prep.builder.dask_cluster import parse_dask  # a string check: Dask itself is not imported here

            parse_dask(self.dask)

    def rows(self) -> cache.RowOptions:
        """What decides which notes are in the cache and in which order."""
        return cache.RowOptions(self.families, self.exclude_families, self.seed, self.on_error,
                                self.exclude_notes.digest() if self.exclude_notes else "")


@dataclass
class BuildSummary:
    """What one split's build did, for the end-of-build report."""

    split: str
    path: Location
    notes: int
    features: list[str]
    built_now: list[str]
    skipped: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    family_counts: dict[str, int] = field(default_factory=dict)
    source_counts: dict[str, int] = field(default_factory=dict)

    def report(self) -> str:
        """A few human-readable lines."""
        rate = f", {self.notes / self.seconds:,.0f} notes/s" if self.built_now and self.seconds else ""
        built = ", ".join(self.built_now) if self.built_now else "nothing (up to date)"
        lines = [f"{self.split}: {self.path}  {self.notes:,} notes; built {built} in {self.seconds:.1f} s{rate}",
                 "  families: " + ", ".join(f"{k} {v:,}" for k, v in self.family_counts.items() if v),
                 "  sources:  " + ", ".join(f"{k} {v:,}" for k, v in self.source_counts.items() if v),
                 f"  features: {', '.join(self.features)}"]
        if self.skipped:
            lines.append(f"  skipped {len(self.skipped)} notes:")
            lines += [f"    {s['note']}: {s['reason']}" for s in self.skipped[:10]]
            if len(self.skipped) > 10:
                lines.append(f"    ... and {len(self.skipped) - 10} more (nsynth inspect lists them)")
        return "\n".join(lines)


def build_cache(source: Path, cache_dir: store.Where, config: BuildConfig, split: str | None = None,
                progress: bool = True) -> list[BuildSummary]:
    """Build (or resume, or extend with new features) the cache of every split at ``source``;
    ``cache_dir`` is a folder or an fsspec URL (``s3://bucket/prefix``).

    With ``config.dask`` the chunks of every split are written by tasks on that Dask cluster
    (one client, or one LocalCluster, for all the splits); the scan stays in this process.
    """
    if kernels.first_compile():
        log.info("compiling numba kernels, once per install (up to ~20 s; kept in %s)",
                 os.environ.get("NUMBA_CACHE_DIR", "the numba cache folder"))
    sources = discover(Path(source), split)
    with _cluster(config) as runner:
        return [build_split(s, store.location(cache_dir), config, progress, runner) for s in sources]


def order_rows(labels: LabelTable, seed: int) -> np.ndarray:
    """Catalog positions in cache row order: sorted by note_str, then a seeded permutation."""
    by_name = np.argsort(labels.note_str.astype(str), kind="stable")
    return by_name[np.random.default_rng(seed).permutation(len(by_name))]


def build_split(src: Source, cache_dir: store.Where, config: BuildConfig, progress: bool = True,
                runner: ChunkRunner | None = None) -> BuildSummary:
    """Build one split's cache; see :func:`build_cache`. ``runner`` writes the chunks (a Dask
    cluster's, opened by :func:`build_cache`); by default this machine's ``config.workers`` processes.

    The whole build holds the split's writer lock (``<cache>/<split>.zarr.lock``): a second
    writer of the same split (another build, resume or feature add) is refused with one line
    naming the holder, or waits with ``config.wait``.
    """
    path = cache.cache_path(cache_dir, src.split)
    store.probe(path)  # a missing bucket or refused credentials: one line naming the URL
    with exclusive(path.with_name(path.name + ".lock"), f"cache {path}", wait=config.wait):
        return _build_locked(src, path, config, progress, runner)


def _build_locked(src: Source, path: Location, config: BuildConfig, progress: bool,
                  runner: ChunkRunner | None) -> BuildSummary:
    started = time.perf_counter()
    # The work folder sits beside the cache in the same store, so that a resume on another
    # machine sees its done marks; only a .tar.gz's spool of the source may be local (spool_dir).
    work = path.with_name(path.name + ".build")
    spool = store.spool_dir(work)
    specs = [feature_spec(f) for f in config.features]
    existing = resume.find_existing(path, work)
    t0 = time.perf_counter()
    fp = src.fingerprint(existing.files if existing else None)
    log.debug("%s: fingerprint of %d files (%d read) in %.3f s", src.path, len(fp.names), fp.read_now,
              time.perf_counter() - t0)
    source_info = cache.SourceMeta(str(src.path.resolve()), src.format, fp.summary())
    if existing is not None:
        if resume.check_existing(existing, work, src.path, src.format, fp, config.rows()):
            # The same content, but files were read again (their times changed): store the new
            # table, so that the next check is a stat again.
            group = cache.open_group(path, "r+")
            with contextlib.suppress(StorageError):  # only saves reading these files next time: never fail for it
                cache.write_source_files(group, fp.columns())
    else:
        with storage_errors(work):
            if work.exists() and not resume.check_work(work, source_info, fp, spool):
                store.rmtree(work)  # nothing in it to resume from this source
            if spool != work and not work.exists():  # a local spool of a remote build that is no more
                shutil.rmtree(spool, ignore_errors=True)
            store.rmtree(work / "done", ignore_errors=True)  # chunks of a cache that is no more
    built = set(existing.meta.features) if existing else set()
    todo = [s for s in specs if s.name not in built]
    if existing is not None and not todo:
        group = cache.open_group(path, "r+")
        if not existing.complete:  # stopped after the last feature, before the final mark
            cache.mark_complete(group, cache.Cache(path, group, existing.meta).labels())
            _remove_work(work, spool)
        return _summary(src, path, group, config, [], started)

    with storage_errors(work):
        work.mkdir(parents=True, exist_ok=True)
        _write_json(work / resume.SOURCE_JSON, source_info.to_attrs())
    verb = src.kind.progress_verb
    if verb is None:
        catalog = src.scan(todo, config.on_error, spool)
    else:  # archives and TFRecords are read whole to find the notes: show it
        with Progress(src.path.stat().st_size, f"{src.split} {verb}", unit="B", enabled=progress) as bar:
            catalog = src.scan(todo, config.on_error, spool, bar.update, config.workers)
    keep = _family_filter(catalog.labels, config)
    keep, excluded = _note_filter(catalog.labels, keep, config.exclude_notes, path)
    if not len(keep) and not config.allow_empty and existing is None:
        _remove_work(work, spool)  # nothing worth resuming
        raise SourceError(f"{src.path}: no notes to build ({len(catalog.labels)} read, {len(catalog.skipped)} "
                          f"skipped{_first_skip(catalog.skipped)}, {len(catalog.labels) - len(keep)} left out by "
                          f"--families/--exclude-families{' and --exclude-notes' if excluded else ''}); pass "
                          "--allow-empty to write an empty cache")
    order = keep[order_rows(catalog.labels.take(keep), config.seed)]
    labels = catalog.labels.take(order)
    if existing is None:
        # A long list goes beside the attrs; excluded notes are recorded as skipped, with the list as reason.
        head, count, crc, table = skipped_table.plan([*catalog.skipped, *excluded])
        build = cache.BuildMeta(src.split, source_info, config.rows(), config.workers, config.allow_empty, head,
                                count, crc)
        group = cache.create(path, labels, build, fp.columns(), table)
        log.info("%s: %d notes planned (%d skipped, %d excluded)", path, len(labels), len(catalog.skipped), len(excluded))
    else:
        group = cache.open_group(path, "r+")
        if existing.meta.label_checksums["note_str"] != cache.checksum(labels.note_str):
            raise CacheError(f"{path}: its rows no longer match the source; remove the cache and build it again")
    for spec in todo:
        if spec.name not in cache.load_meta(group).building or spec.name not in group:
            cache.add_feature(group, spec)
    marks = DoneMarks.of(work, todo)  # after the marks of a cache that is no more were cleared
    _write_features(path, marks, catalog, order, todo, runner or LocalRunner(config.workers), progress, src.split)
    # What was read must be what the fingerprint describes: a file rewritten during the build
    # would leave rows of two versions of the source under one fingerprint.
    after = src.fingerprint(fp)
    changed = fingerprint.differences(fp.summary(), fp, after)
    if changed:
        raise CacheError(f"{src.path}: changed while this build read it ({'; '.join(changed)}); {path} is left "
                         f"incomplete: remove it and {work}, and build again once the source is stable")
    for spec in todo:
        cache.finish_feature(group, spec, collect_checksums(work, spec, len(labels)))
    cache.mark_complete(group, labels)
    _remove_work(work, spool)
    return _summary(src, path, group, config, [s.name for s in todo], started)


def _first_skip(skipped: list[dict[str, str]]) -> str:
    return f", e.g. {skipped[0]['note']}: {skipped[0]['reason']}" if skipped else ""


def _write_json(path: Location, data: Any) -> None:
    """Write ``path`` atomically (locally a temporary file renamed over it; one PUT on an object store)."""
    store.write_atomic(path, json.dumps(data).encode())


def _remove_work(work: Location, spool: Path) -> None:
    """Remove a build's work folder, and its local spool when that is elsewhere (a remote cache)."""
    store.rmtree(work, ignore_errors=True)
    if spool != work:
        shutil.rmtree(spool, ignore_errors=True)


def _family_filter(labels: LabelTable, config: BuildConfig) -> np.ndarray:
    keep = np.ones(len(labels), bool)
    if config.families:
        keep &= np.isin(labels.family, [family_id(f) for f in config.families])
    if config.exclude_families:
        keep &= ~np.isin(labels.family, [family_id(f) for f in config.exclude_families])
    return np.flatnonzero(keep)


def _note_filter(labels: LabelTable, keep: np.ndarray, notes: NoteList | None, path: Location
                 ) -> tuple[np.ndarray, list[dict[str, str]]]:
    """``keep`` (catalog positions) less the notes on the list, and those notes as skipped-note
    records (``note``, ``reason``), by name."""
    if notes is None:
        return keep, []
    names = labels.note_str[keep].astype(str)
    out = notes.left_out(names)
    reason = f"excluded: listed in {notes.source}"
    excluded = [{"note": n, "reason": reason} for n in sorted(names[out].tolist())]
    log.info("%s: %d notes left out as listed in %s (%d of its %d names are not in this split)", path,
             len(excluded), notes.source, len(notes.notes) - len(excluded), len(notes.notes))
    return keep[~out], excluded


def _summary(src: Source, path: Location, group: zarr.Group, config: BuildConfig, built_now: list[str],
             started: float) -> BuildSummary:
    m = cache.load_meta(group)
    counts = m.counts or cache.Counts.of(LabelTable.from_notes([]))
    return BuildSummary(src.split, path, m.notes, sorted(m.features), built_now,
                        [dataclasses.asdict(s) for s in skipped_table.skipped_notes(cache.Cache(path, group, m))],
                        time.perf_counter() - started,
                        counts.family, counts.source)


# --- the chunk writers (see .blocks) ----------------------------------------------------------


@contextlib.contextmanager
def _cluster(config: BuildConfig) -> Iterator[ChunkRunner | None]:
    """The Dask runner of ``config.dask`` (its client, or its LocalCluster, open for the ``with``
    body: one for all the splits of a build); None without it."""
    if config.dask is None:
        yield None
        return
    from nsynth_prep.builder.dask_cluster import connect  # only here: Dask is an optional extra

    with connect(config.dask) as runner:
        yield runner


def _write_features(path: Location, marks: DoneMarks, catalog: Catalog, order: np.ndarray,
                    specs: Sequence[FeatureSpec], runner: ChunkRunner, progress: bool, desc: str) -> None:
    work, n = marks.work, len(order)
    if isinstance(path, Path):  # zarr writes a local chunk to <key>.<uuid>.partial, then renames it: a
        for s in specs:         # writer killed in between leaves that file, which nothing else removes
            for stray in (path / s.name).glob("c/**/*.partial"):
                stray.unlink(missing_ok=True)  # (we hold the split's lock: no live writer's file)
    block_rows = max(s.chunk_rows for s in specs)
    blocks = [b for b in range(math.ceil(n / block_rows)) if not marks.block_done(specs, b, block_rows, n)]
    with storage_errors(work):
        for s in specs:
            (work / "done" / s.name).mkdir(parents=True, exist_ok=True)
    remaining = sum(min(block_rows, n - b * block_rows) for b in blocks)
    if not blocks:  # all written before an interruption, or an empty split
        return
    job = ChunkJob(path, work, catalog.reader, order, tuple(specs), block_rows)
    with Progress(remaining, f"{desc} {'+'.join(s.name for s in specs)}", enabled=progress) as bar:
        runner.run(job, blocks, bar.update)
