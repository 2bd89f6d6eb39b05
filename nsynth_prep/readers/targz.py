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
from nsynth_prep.labels import NOTE_SAMPLES
from nsynth_prep.readers.catalog import (
    Catalog,
    OpenedPath,
    SourceError,
    first_of_each,
    refuse_or_skip,
    unlisted_audio,
)
from nsynth_prep.readers.examples_json import ExamplesJson, labels_from_examples, read_examples_json
from nsynth_prep.readers.wav import MAX_WAV_BYTES, WavFormatError, read_pcm16
from nsynth_prep.storage.atomic import atomic_path, remove_stale
from nsynth_prep.storage.store import storage_errors

log = logging.getLogger(__name__)

SPOOL_BLOCK = 1024  # notes per spool block
# The members that are notes: NSynth's archives hold nsynth-<split>/audio/<note_str>.wav and
# nsynth-<split>/examples.json; the top folder's name may vary, the audio/ level may not.
MEMBERS = "<top>/audio/<note>.wav"


def audio_note(name: str) -> str | None:
    """The note of an archive member named ``<top>/audio/<note>.wav`` (``./`` before it allowed),
    or None for any other name: a WAV elsewhere in the archive is not a note's audio."""
    parts = name.removeprefix("./").split("/")
    if len(parts) != 3 or parts[0] in ("", ".", "..") or parts[1] != "audio" or not parts[2].endswith(".wav"):
        return None
    return parts[2][: -len(".wav")]


def member_kind(member: tarfile.TarInfo) -> str:
    """What a member that is not a regular file is, for messages."""
    if member.issym():
        return "a symlink"
    if member.islnk():
        return "a hard link"
    if member.isdir():
        return "a folder"
    return "a device, FIFO or other special member"


class SpoolReader:
    """Features of spooled notes, gathered from memory-mapped blocks."""

    def __init__(self, spool_dir: Path, positions: np.ndarray) -> None:
        self.spool_dir, self.positions = spool_dir, positions

    def opens(self) -> list[OpenedPath]:
        return [OpenedPath(self.spool_dir, "the .tar.gz spooled by the client", spooled=True)]

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


def _read_manifest(path: Path) -> Any:
    """The spool's manifest, or None when there is none or it cannot be read (then the spool is
    started afresh: a manifest written by an older nsynth without the atomic write may be cut)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def scan_targz(path: Path, specs: Sequence[FeatureSpec], on_error: str, work_dir: Path,
               progress: Callable[[int], None] | None = None) -> Catalog:
    """Stream an archive, spool the features of every WAV, join them with examples.json.

    Members are size-checked from their headers before they are read (no WAV over
    :data:`.wav.MAX_WAV_BYTES`, no examples.json over :data:`.catalog.MAX_EXAMPLES_JSON_BYTES`).
    A refused write to the spool (disk full, read-only) is a :class:`StorageError` naming the
    spool; only errors while reading the archive are reported as a damaged archive.
    """
    spool = work_dir / "spool"
    # The stored dtypes too: a spool of an older nsynth (float32 audio) is not reused; and the
    # members that count as notes (MEMBERS): a spool that counted others is not resumed.
    manifest = {"features": [s.to_dict() for s in specs], "dtypes": [str(s.dtype) for s in specs], "block": SPOOL_BLOCK,
                "members": MEMBERS}
    manifest_path = spool / "manifest.json"
    with storage_errors(spool):
        spool.mkdir(parents=True, exist_ok=True)
        remove_stale(spool)  # a killed stream's unfinished block (the build holds the cache's lock)
        if _read_manifest(manifest_path) != manifest:
            for old in spool.iterdir():
                old.unlink()
            with atomic_path(manifest_path) as tmp:  # a kill mid-write leaves the old manifest or none
                tmp.write_text(json.dumps(manifest))
    done_blocks = 0
    while (spool / f"block-{done_blocks:05d}.json").exists():
        done_blocks += 1
    if done_blocks:
        log.info("%s: resuming after %d spooled blocks", path, done_blocks)

    spooler = _Spooler(spool, specs, on_error, done_blocks)
    entries = _stream(path, spooler, done_blocks, progress)
    spooler.finish()
    if entries is None:
        raise SourceError(f"{path}: no examples.json in the archive")
    skipped = spooler.skipped
    spooled = _spooled_notes(path, spool, spooler.block_index, done_blocks, on_error, skipped)
    return _join(path, spool, spooled, entries, skipped, on_error)


def _stream(path: Path, spooler: _Spooler, done_blocks: int,
            progress: Callable[[int], None] | None) -> ExamplesJson | None:
    """Read the archive once: its examples.json (returned; None when it has none) and every WAV
    after the first ``done_blocks`` blocks' worth, handed to ``spooler``."""
    entries: ExamplesJson | None = None
    wav_members = 0
    elsewhere: list[str] = []  # WAVs outside <top>/audio/: not notes
    try:
        with _CountingReader(path, progress) as raw, tarfile.open(fileobj=raw, mode="r|gz") as archive:  # type: ignore[call-overload]
            for member in archive:
                where = f"{path}:{member.name}"
                note = audio_note(member.name)
                if note is None:
                    if member.isfile() and os.path.basename(member.name) == "examples.json":
                        if entries is not None:
                            raise SourceError(f"{where}: a second examples.json in the archive")
                        handle = archive.extractfile(member)
                        assert handle is not None
                        entries = read_examples_json(handle, where, member.size)
                    elif member.name.endswith(".wav"):
                        elsewhere.append(member.name)
                    continue
                wav_members += 1
                if wav_members <= done_blocks * SPOOL_BLOCK:
                    continue  # spooled before the interruption; the stream skips its bytes
                if member.isfile():
                    spooler.add(archive, member, note, where)
                else:  # a link or folder named like a WAV: its note is there, its audio is not
                    spooler.refuse(note, f"{where}: not a regular file ({member_kind(member)})")
    except (tarfile.TarError, EOFError, zlib.error) as exc:  # reading: OSErrors are _CountingReader's
        raise SourceError(f"{path}: damaged archive after {wav_members} WAV files: {exc}") from None
    if elsewhere:
        log.warning("%s: %d WAV member(s) outside <top>/audio/ left out, not notes (e.g. %s)", path,
                    len(elsewhere), elsewhere[0])
    return entries


class _Spooler:
    """The block being spooled: WAVs decoded as they stream by, their features computed 32 notes
    at a time, and the block written (:func:`_write_block`) once :data:`SPOOL_BLOCK` notes, good
    or skipped, are in it."""

    def __init__(self, spool: Path, specs: Sequence[FeatureSpec], on_error: str, first_block: int) -> None:
        self.spool, self.specs, self.on_error = spool, specs, on_error
        self.block_index = first_block  # the block being filled
        self.skipped: list[dict[str, str]] = []  # the notes skipped in the blocks written so far
        self.pending: list[tuple[str, np.ndarray]] = []  # decoded, features not computed yet
        self.block_names: list[str] = []  # notes whose features are in the buffers
        self.block_skipped: list[dict[str, str]] = []
        self.buffers = {s.name: np.empty((SPOOL_BLOCK, *s.row_shape), s.dtype) for s in specs}

    def refuse(self, note: str, reason: str) -> None:
        """A note whose member cannot be its audio: refused, or skipped in the block."""
        refuse_or_skip(self.on_error, self.block_skipped, note, reason)
        self._flush_if_full()

    def add(self, archive: tarfile.TarFile, member: tarfile.TarInfo, note: str, where: str) -> None:
        """Decode the WAV ``member`` of ``note`` (or refuse or skip it) into the block; write the block when full."""
        try:
            if member.size > MAX_WAV_BYTES:  # refused from the header; the stream skips the bytes
                raise WavFormatError(f"{where}: {member.size:,} bytes; an NSynth WAV is 128,044 and no "
                                     f"WAV over {MAX_WAV_BYTES:,} bytes is read")
            handle = archive.extractfile(member)
            assert handle is not None
            self.pending.append((note, read_pcm16(handle.read(member.size), where, NOTE_SAMPLES)))
        except WavFormatError as exc:
            refuse_or_skip(self.on_error, self.block_skipped, note, str(exc))
        if len(self.pending) == 32:
            self._compute_pending()
        self._flush_if_full()

    def _flush_if_full(self) -> None:
        if len(self.block_names) + len(self.pending) + len(self.block_skipped) >= SPOOL_BLOCK:
            self._flush_block()

    def finish(self) -> None:
        """Write the last block, if it holds any note."""
        if self.pending or self.block_names or self.block_skipped:
            self._flush_block()

    def _compute_pending(self) -> None:
        if not self.pending:
            return
        start = len(self.block_names)
        audio = np.stack([a for _, a in self.pending])
        for s in self.specs:
            s.compute(audio, self.buffers[s.name][start : start + len(self.pending)])
        self.block_names.extend(n for n, _ in self.pending)
        self.pending.clear()

    def _flush_block(self) -> None:
        self._compute_pending()
        with storage_errors(self.spool):
            _write_block(self.spool, self.block_index, self.buffers, len(self.block_names), self.block_names,
                         self.block_skipped)
        self.skipped.extend(self.block_skipped)
        self.block_names.clear()
        self.block_skipped.clear()
        self.block_index += 1


def _spooled_notes(path: Path, spool: Path, blocks: int, done_blocks: int, on_error: str,
                   skipped: list[dict[str, str]]) -> dict[str, int]:
    """Spool position of each note (block * SPOOL_BLOCK + row in the block) in the first ``blocks``
    blocks; the notes the first ``done_blocks`` (of an interrupted stream) skipped go to
    ``skipped``, and so does a WAV that is in the archive twice (the first is kept)."""
    names: list[str] = []
    positions: list[int] = []
    for b in range(blocks):
        meta = json.loads((spool / f"block-{b:05d}.json").read_text())
        if b < done_blocks:
            skipped.extend(meta["skipped"])
        names += meta["names"]
        positions += range(b * SPOOL_BLOCK, b * SPOOL_BLOCK + len(meta["names"]))
    keep = first_of_each(names, str(path), lambda i: f"WAV {names[i]}.wav (spool row {positions[i]})", on_error,
                         skipped)
    return {names[i]: positions[i] for i in keep}


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


def _join(path: Path, spool: Path, spooled: dict[str, int], entries: ExamplesJson,
          skipped: list[dict[str, str]], on_error: str) -> Catalog:
    """Match examples.json entries with spooled audio; unmatched notes raise or are skipped."""
    notes = labels_from_examples(entries, on_error, skipped)
    bad_audio = {s["note"] for s in skipped}  # already recorded with the WAV's own problem
    missing = [(n, f"{path}: WAV missing for note {n}") for n in notes.note_str if n not in spooled and n not in bad_audio]
    if missing and on_error != "skip":
        raise SourceError(missing[0][1] + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    skipped.extend({"note": k, "reason": r} for k, r in missing)
    unlisted_audio(str(path), spooled, entries.listed, on_error, skipped)
    labels = notes.take(np.flatnonzero([n in spooled for n in notes.note_str]))
    positions = np.array([spooled[n] for n in labels.note_str], np.int64)
    return Catalog(labels, SpoolReader(spool, positions), skipped)
