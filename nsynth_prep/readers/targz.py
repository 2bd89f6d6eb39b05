"""Streaming ``.jsonwav.tar.gz`` archives: one pass, features spooled to disk, never unpacked.

A gzip stream cannot be read at random, but the cache is written in a shuffled row order.
So the archive is streamed once: each WAV is decoded in memory and its features are
appended to spool blocks of :data:`SPOOL_BLOCK` notes (``.npy`` files in the build's work
folder, each block made visible by an atomic rename once whole). The cache writer then reads
the spool at random. An interrupted stream resumes after the last whole block.
"""

from __future__ import annotations

import json
import logging
import os
import tarfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nsynth_prep.features import FeatureSpec
from nsynth_prep.labels import NOTE_SAMPLES, LabelTable
from nsynth_prep.readers.catalog import (
    Catalog,
    SourceError,
    first_of_each,
    labels_from_entries,
    load_examples_json,
    refuse_or_skip,
    unlisted_audio,
)
from nsynth_prep.readers.wav import MAX_WAV_BYTES, WavFormatError, read_pcm16
from nsynth_prep.storage.atomic import atomic_path, remove_stale
from nsynth_prep.storage.store import storage_errors

log = logging.getLogger(__name__)

SPOOL_BLOCK = 1024  # notes per spool block


class SpoolReader:
    """Features of spooled notes, gathered from memory-mapped blocks."""

    def __init__(self, spool_dir: Path, positions: np.ndarray) -> None:
        self.spool_dir, self.positions = spool_dir, positions

    def read_features(self, index: np.ndarray, specs: Sequence[FeatureSpec]) -> dict[str, np.ndarray]:
        pos = self.positions[index]
        block, row = pos // SPOOL_BLOCK, pos % SPOOL_BLOCK
        out = {}
        for s in specs:
            data = np.empty((len(index), *s.row_shape), s.dtype)
            for b in np.unique(block):
                arr = np.load(self.spool_dir / f"block-{b:05d}.{s.name}.npy", mmap_mode="r")
                sel = block == b
                data[sel] = arr[row[sel]]
            out[s.name] = data
        return out


def scan_targz(path: Path, specs: Sequence[FeatureSpec], on_error: str, work_dir: Path,
               progress: Callable[[int], None] | None = None) -> Catalog:
    """Stream an archive, spool the features of every WAV, join them with examples.json.

    Members are size-checked from their headers before they are read (no WAV over
    :data:`.wav.MAX_WAV_BYTES`, no examples.json over :data:`.catalog.MAX_EXAMPLES_JSON_BYTES`).
    A refused write to the spool (disk full, read-only) is a :class:`StorageError` naming the
    spool; only errors while reading the archive are reported as a damaged archive.
    """
    spool = work_dir / "spool"
    # The stored dtypes too: a spool of an older nsynth (float32 audio) is not reused.
    manifest = {"features": [s.to_dict() for s in specs], "dtypes": [str(s.dtype) for s in specs], "block": SPOOL_BLOCK}
    manifest_path = spool / "manifest.json"
    with storage_errors(spool):
        spool.mkdir(parents=True, exist_ok=True)
        remove_stale(spool)  # a killed stream's unfinished block (the build holds the cache's lock)
        if not manifest_path.exists() or json.loads(manifest_path.read_text()) != manifest:
            for old in spool.iterdir():
                old.unlink()
            manifest_path.write_text(json.dumps(manifest))
    done_blocks = 0
    while (spool / f"block-{done_blocks:05d}.json").exists():
        done_blocks += 1
    if done_blocks:
        log.info("%s: resuming after %d spooled blocks", path, done_blocks)

    skipped: list[dict[str, str]] = []
    entries: dict[str, Any] | None = None
    pending: list[tuple[str, np.ndarray]] = []
    block_names: list[str] = []
    block_skipped: list[dict[str, str]] = []
    buffers = {s.name: np.empty((SPOOL_BLOCK, *s.row_shape), s.dtype) for s in specs}
    wav_members = 0
    block_index = done_blocks

    def compute_pending() -> None:
        if not pending:
            return
        start = len(block_names)
        audio = np.stack([a for _, a in pending])
        for s in specs:
            s.compute(audio, buffers[s.name][start : start + len(pending)])
        block_names.extend(n for n, _ in pending)
        pending.clear()

    def flush_block() -> None:
        nonlocal block_index
        compute_pending()
        with storage_errors(spool):
            _write_block(spool, block_index, buffers, len(block_names), block_names, block_skipped)
        skipped.extend(block_skipped)
        block_names.clear()
        block_skipped.clear()
        block_index += 1

    try:
        with _CountingReader(path, progress) as raw, tarfile.open(fileobj=raw, mode="r|gz") as archive:  # type: ignore[call-overload]
            for member in archive:
                if not member.isfile():
                    continue
                where = f"{path}:{member.name}"
                if os.path.basename(member.name) == "examples.json":
                    if entries is not None:
                        raise SourceError(f"{where}: a second examples.json in the archive")
                    handle = archive.extractfile(member)
                    assert handle is not None
                    entries = load_examples_json(handle, where, member.size)
                    continue
                if not member.name.endswith(".wav"):
                    continue
                wav_members += 1
                if wav_members <= done_blocks * SPOOL_BLOCK:
                    continue  # spooled before the interruption; the stream skips its bytes
                note = os.path.basename(member.name)[: -len(".wav")]
                try:
                    if member.size > MAX_WAV_BYTES:  # refused from the header; the stream skips the bytes
                        raise WavFormatError(f"{where}: {member.size:,} bytes; an NSynth WAV is 128,044 and no "
                                             f"WAV over {MAX_WAV_BYTES:,} bytes is read")
                    handle = archive.extractfile(member)
                    assert handle is not None
                    pending.append((note, read_pcm16(handle.read(member.size), where, NOTE_SAMPLES)))
                except WavFormatError as exc:
                    refuse_or_skip(on_error, block_skipped, note, str(exc))
                if len(pending) == 32:
                    compute_pending()
                if len(block_names) + len(pending) + len(block_skipped) >= SPOOL_BLOCK:
                    flush_block()
    except (tarfile.TarError, EOFError, zlib.error) as exc:  # reading: OSErrors are _CountingReader's
        raise SourceError(f"{path}: damaged archive after {wav_members} WAV files: {exc}") from None
    if pending or block_names or block_skipped:
        flush_block()
    if entries is None:
        raise SourceError(f"{path}: no examples.json in the archive")
    # Spool position of each note: block * SPOOL_BLOCK + row in the block.
    names: list[str] = []
    positions: list[int] = []
    for b in range(block_index):
        meta = json.loads((spool / f"block-{b:05d}.json").read_text())
        if b < done_blocks:
            skipped.extend(meta["skipped"])
        names += meta["names"]
        positions += range(b * SPOOL_BLOCK, b * SPOOL_BLOCK + len(meta["names"]))
    keep = first_of_each(names, str(path), lambda i: f"WAV {names[i]}.wav (spool row {positions[i]})", on_error,
                         skipped)
    spooled = {names[i]: positions[i] for i in keep}
    return _join(path, spool, spooled, entries, skipped, on_error)


class _CountingReader:
    """A file whose reads are reported to ``progress`` (bytes), for a progress bar over a stream.

    Its read errors (a bad disk, a vanished mount) are named here, so that the stream's own
    ``except`` reports only a malformed archive as damaged.
    """

    def __init__(self, path: Path, progress: Callable[[int], None] | None) -> None:
        self.path = path
        try:
            self.file = open(path, "rb")  # closed by __exit__
        except OSError as exc:
            raise SourceError(f"{path}: cannot open ({exc.strerror})") from None
        self.progress = progress

    def read(self, size: int = -1) -> bytes:
        try:
            data = self.file.read(size)
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot read ({exc.strerror})") from None
        if self.progress:
            self.progress(len(data))
        return data

    def __enter__(self) -> _CountingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def _write_block(spool: Path, index: int, buffers: dict[str, np.ndarray], rows: int,
                 names: list[str], skipped: list[dict[str, str]]) -> None:
    """Write one block's arrays, then its names file: the names file marks the block whole."""
    for name, buf in buffers.items():
        with atomic_path(spool / f"block-{index:05d}.{name}.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, buf[:rows])  # to the open file: given a name, np.save would add ".npy" to it
    with atomic_path(spool / f"block-{index:05d}.json") as tmp:
        tmp.write_text(json.dumps({"names": names, "skipped": skipped}))


def _join(path: Path, spool: Path, spooled: dict[str, int], entries: dict[str, Any],
          skipped: list[dict[str, str]], on_error: str) -> Catalog:
    """Match examples.json entries with spooled audio; unmatched notes raise or are skipped."""
    name = f"{path}:examples.json"
    notes = labels_from_entries(entries, name, on_error, skipped)
    bad_audio = {s["note"] for s in skipped}  # already recorded with the WAV's own problem
    missing = [(n.note_str, f"{path}: WAV missing for note {n.note_str}")
               for n in notes if n.note_str not in spooled and n.note_str not in bad_audio]
    if missing and on_error != "skip":
        raise SourceError(missing[0][1] + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    skipped.extend({"note": k, "reason": r} for k, r in missing)
    unlisted_audio(str(path), spooled, entries, on_error, skipped)
    labels = LabelTable.from_notes([n for n in notes if n.note_str in spooled])
    positions = np.array([spooled[n] for n in labels.note_str], np.int64)
    return Catalog(labels, SpoolReader(spool, positions), skipped)
