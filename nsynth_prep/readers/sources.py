"""NSynth as shipped: find the splits in a path and read their labels and audio.

Four kinds of source, one interface, registered in one table (:data:`KINDS`). :func:`discover`
turns a path (a split folder, a parent folder, a ``.jsonwav.tar.gz``, a ``.tfrecord`` or a
synthetic corpus's ``.synth.json`` descriptor) into :class:`Source` objects; ``source.scan()``
returns a :class:`Catalog`: every good note's labels, the notes skipped and why, and a reader
that yields features for any set of notes. Folders and TFRecord files are read at random;
a ``.tar.gz`` is streamed once, its features spooled to disk (see :mod:`.targz`); a
descriptor's notes are rendered (see :mod:`.descriptor`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nsynth_prep.cpus import process_map
from nsynth_prep.errors import SourceError
from nsynth_prep.features import FeatureSpec
from nsynth_prep.kernels import audio as kernels
from nsynth_prep.labels import NOTE_SAMPLES, LabelTable, NoteLabels
from nsynth_prep.readers.catalog import (
    AudioReader,
    Catalog,
    OpenedPath,
    first_of_each,
    first_of_each_id,
    unlisted_audio,
)
from nsynth_prep.readers.descriptor import DESCRIPTOR_SUFFIX, scan_descriptor
from nsynth_prep.readers.examples_json import labels_from_examples, read_examples_json
from nsynth_prep.readers.fingerprint import Fingerprint
from nsynth_prep.readers.fingerprint import take as take_fingerprint
from nsynth_prep.readers.targz import scan_targz
from nsynth_prep.readers.tfrecord import TFRecordError, decode_example, read_payload, record_spans
from nsynth_prep.readers.wav import WavFormatError, pcm16_span, read_wav_file

log = logging.getLogger(__name__)

SPLIT_RE = re.compile(r"nsynth-(train|valid|test)")


def split_of(path: Path) -> str | None:
    """``nsynth-valid.jsonwav.tar.gz`` -> ``valid``; None when the name does not say."""
    m = SPLIT_RE.search(path.name)
    return m.group(1) if m else None


OnBytes = Callable[[int], None]  # told the bytes read, for a progress bar
Scan = Callable[["Source", Sequence[FeatureSpec], str, Path, OnBytes | None, int], Catalog]


@dataclass(frozen=True)
class SourceKind:
    """One format of NSynth source: how :func:`discover` recognises it, and how it is scanned.

    ``scan(source, specs, on_error, work_dir, progress, workers)`` returns the :class:`Catalog`
    (see :meth:`Source.scan`). ``progress_verb`` names the progress bar of a source read whole
    to find its notes ("stream", "scan"), whose scan reports the bytes read; None for one that
    needs no bar (a folder's examples.json, a descriptor's plan).
    """

    format: str  # as the cache records it (.cache.meta.SOURCE_FORMATS); fingerprinted by .fingerprint
    is_at: Callable[[Path], bool]
    scan: Scan
    progress_verb: str | None = None


def _folder_catalog(src: Source, specs: Sequence[FeatureSpec], on_error: str, work_dir: Path,
                    progress: OnBytes | None, workers: int) -> Catalog:
    return _scan_dir(src.path, on_error)


def _archive_catalog(src: Source, specs: Sequence[FeatureSpec], on_error: str, work_dir: Path,
                     progress: OnBytes | None, workers: int) -> Catalog:
    return scan_targz(src.path, specs, on_error, work_dir, progress)  # streamed: features spooled to work_dir


def _tfrecord_catalog(src: Source, specs: Sequence[FeatureSpec], on_error: str, work_dir: Path,
                      progress: OnBytes | None, workers: int) -> Catalog:
    return _scan_tfrecord(src.path, on_error, progress, workers)


def _descriptor_catalog(src: Source, specs: Sequence[FeatureSpec], on_error: str, work_dir: Path,
                        progress: OnBytes | None, workers: int) -> Catalog:
    return scan_descriptor(src.path, src.split, on_error)  # rendered as the features are computed


# Every kind of source, in the order a path is tried (``x.tfrecord.tar.gz`` is an archive).
KINDS: tuple[SourceKind, ...] = (
    SourceKind("jsonwav", lambda p: p.is_dir() and (p / "examples.json").is_file(), _folder_catalog),
    SourceKind("targz", lambda p: p.is_file() and p.name.endswith((".tar.gz", ".tgz")), _archive_catalog, "stream"),
    SourceKind("tfrecord", lambda p: p.is_file() and ".tfrecord" in p.name, _tfrecord_catalog, "scan"),
    SourceKind("synth", lambda p: p.is_file() and p.name.endswith(DESCRIPTOR_SUFFIX), _descriptor_catalog),
)
KIND_OF = {k.format: k for k in KINDS}


@dataclass
class Source:
    """One split of NSynth in one format."""

    path: Path
    format: str  # a SourceKind's: "jsonwav" | "targz" | "tfrecord" | "synth" (see .synth.write_descriptors)
    split: str

    @property
    def kind(self) -> SourceKind:
        return KIND_OF[self.format]

    def fingerprint(self, reference: Fingerprint | None = None) -> Fingerprint:
        """The files that define this source, with a digest of each one's content (see
        :mod:`.fingerprint`); files whose size and times match ``reference`` keep its digest
        instead of being read again."""
        return take_fingerprint(self.path, self.format, reference)

    def scan(self, specs: Sequence[FeatureSpec], on_error: str, work_dir: Path, progress: OnBytes | None = None,
             workers: int = 1) -> Catalog:
        """Read every note's labels (and, for ``skip``, validate the audio) of this source.

        ``progress`` is called with the number of bytes read, for the kinds with a
        ``progress_verb`` (archives and TFRecords).
        """
        return self.kind.scan(self, specs, on_error, work_dir, progress, workers)


def discover(path: Path, split: str | None = None) -> list[Source]:
    """The sources at ``path``: a split folder, an archive, a TFRecord, or a folder of them."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    kind = _kind(path)
    if kind:
        name = split or split_of(path)
        if name is None:
            raise SourceError(f"{path}: cannot tell the split from the name; pass --split train|valid|test")
        return [Source(path, kind, name)]
    if not path.is_dir():
        raise SourceError(f"{path}: not an NSynth split folder, .jsonwav.tar.gz or .tfrecord")
    found = [Source(p, k, s) for p in sorted(path.iterdir()) if (k := _kind(p)) and (s := split_of(p))]
    if not found:
        raise SourceError(
            f"{path}: no NSynth split here (expected examples.json + audio/, "
            "nsynth-<split>/ folders, *.jsonwav.tar.gz or *.tfrecord files)"
        )
    if split is not None:
        raise SourceError(f"{path}: holds several splits; --split applies to a single source")
    by_split: dict[str, Source] = {}
    for src in found:
        if src.split in by_split:
            raise SourceError(
                f"{path}: split {src.split!r} is there twice ({by_split[src.split].path.name} and "
                f"{src.path.name}); pass the one to build"
            )
        by_split[src.split] = src
    return list(by_split.values())


def _kind(path: Path) -> str | None:
    """The format of the first of :data:`KINDS` that ``path`` is, or None."""
    return next((k.format for k in KINDS if k.is_at(path)), None)


# --- JSON + WAV folder ------------------------------------------------------------------------


class WavDirReader(AudioReader):
    def __init__(self, audio_dir: Path, names: np.ndarray) -> None:
        self.audio_dir, self.names = audio_dir, names

    def opens(self) -> list[OpenedPath]:
        return [OpenedPath(self.audio_dir, "the source's audio folder")]

    def read_audio(self, index: np.ndarray) -> np.ndarray:
        out = np.empty((len(index), NOTE_SAMPLES), np.int16)
        for row, i in enumerate(index):
            path = self.audio_dir / f"{self.names[i]}.wav"
            try:
                data, _ = read_wav_file(path)
            except FileNotFoundError:
                raise SourceError(f"{path}: WAV missing for note {self.names[i]}") from None
            offset, count = pcm16_span(data, str(path))
            out[row] = np.frombuffer(data, "<i2", count, offset)
        return out


def _scan_dir(folder: Path, on_error: str) -> Catalog:
    json_path = folder / "examples.json"
    skipped: list[dict[str, str]] = []
    try:
        with open(json_path, "rb") as f:
            examples = read_examples_json(f, str(json_path), os.fstat(f.fileno()).st_size)
        audio = [name[: -len(".wav")] for name in os.listdir(folder / "audio") if name.endswith(".wav")]
    except FileNotFoundError as exc:
        raise SourceError(f"{exc.filename}: missing; a split folder holds examples.json and audio/") from None
    except NotADirectoryError as exc:
        raise SourceError(f"{exc.filename}: not a folder; a split folder holds examples.json and audio/") from None
    except OSError as exc:
        raise SourceError(f"{exc.filename}: cannot read ({exc.strerror})") from None
    # Every name is validated (NOTE_STR_RE) here, before any path is built from it.
    labels = labels_from_examples(examples, on_error, skipped)
    unlisted_audio(str(folder), audio, examples.listed, on_error, skipped)
    del examples
    if on_error == "skip":  # validate every WAV now, so the row plan holds only good notes
        good = []
        for i, note_str in enumerate(labels.note_str):
            reason = _check_wav(folder / "audio" / f"{note_str}.wav")
            if reason:
                skipped.append({"note": note_str, "reason": reason})
            else:
                good.append(i)
        if len(good) < len(labels):
            labels = labels.take(np.asarray(good, np.int64))
    return Catalog(labels, WavDirReader(folder / "audio", labels.note_str), skipped)


def _check_wav(path: Path) -> str | None:
    """Why the WAV at ``path`` cannot be used, or None; reads its header, the whole file only
    when the chunks before ``data`` run past the first 4 KiB."""
    try:
        head, size = read_wav_file(path, head=4096)
        try:
            # The header with the real size, so that a truncated data chunk is caught.
            pcm16_span(head, str(path), file_size=size)
        except struct.error:  # chunks before "data" run past the first 4 KiB
            pcm16_span(read_wav_file(path)[0], str(path))
    except FileNotFoundError:
        return f"{path}: WAV missing"
    except WavFormatError as exc:
        return str(exc)
    return None


# --- TFRecord -----------------------------------------------------------------------------


class TFRecordReader(AudioReader):
    """Reads only the audio bytes of each record, at offsets found by the scan."""

    def __init__(self, path: Path, audio_offsets: np.ndarray) -> None:
        self.path, self.audio_offsets = path, audio_offsets
        self._fd: int | None = None
        self._pid = -1

    def __getstate__(self) -> dict[str, object]:
        # Pickled for another process or host (a Dask worker): the path, never this process's descriptor,
        # whose number could match an unrelated file there (same pid on another host).
        return {**self.__dict__, "_fd": None, "_pid": -1}

    def opens(self) -> list[OpenedPath]:
        return [OpenedPath(self.path, "the source TFRecord")]

    def __del__(self) -> None:  # a long-lived Dask worker unpickles one reader per build: close its descriptor
        if getattr(self, "_fd", None) is not None and self._pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(self._fd)  # type: ignore[arg-type]

    def read_audio(self, index: np.ndarray) -> np.ndarray:
        """(k, 64000) int16: the records' float samples times 32768, exactly."""
        if self._pid != os.getpid():  # one descriptor per worker process
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        assert self._fd is not None
        floats = np.empty((len(index), NOTE_SAMPLES), "<f4")
        nbytes = NOTE_SAMPLES * 4
        for row, i in enumerate(index):
            got = os.preadv(self._fd, [memoryview(floats[row]).cast("B")], int(self.audio_offsets[i]))
            if got != nbytes:
                raise SourceError(f"{self.path}: audio of record at byte {self.audio_offsets[i]} is truncated")
        try:
            return kernels.to_int16(floats)
        except kernels.InexactAudio as exc:  # the scan checked every record: the file changed since
            raise SourceError(f"{self.path}: audio of the record at byte {self.audio_offsets[index[exc.note]]}: sample "
                              f"{exc.sample} is {exc.value!r}, not a 16-bit sample (int16 / 32768); the file changed "
                              "after it was scanned") from None


def _scan_tfrecord(path: Path, on_error: str, progress: Callable[[int], None] | None = None,
                   workers: int = 1) -> Catalog:
    """Walk the record headers, then verify and decode ranges of records in ``workers`` processes."""
    offsets, lengths, framing = record_spans(path)
    if framing is not None and on_error != "skip":
        raise SourceError(str(framing))
    parts = [r for r in np.array_split(np.arange(len(offsets)), max(1, min(len(offsets), 8 * workers))) if len(r)]
    jobs = [(path, on_error, int(r[0]), offsets[r], lengths[r]) for r in parts]
    notes: list[NoteLabels] = []
    audio_offsets: list[int] = []
    records: list[int] = []
    skipped: list[dict[str, str]] = []
    results: Iterable[tuple[list[NoteLabels], list[int], list[int], list[dict[str, str]], int]]
    with contextlib.ExitStack() as stack:
        if workers > 1 and len(jobs) > 1:
            results = stack.enter_context(contextlib.closing(process_map(_scan_records, jobs, min(workers, len(jobs)))))
        else:
            results = map(_scan_records, jobs)
        for part_notes, part_offsets, part_records, part_skipped, nbytes in results:  # in record order
            notes += part_notes
            audio_offsets += part_offsets
            records += part_records
            skipped += part_skipped
            if progress:
                progress(nbytes)
    if framing is not None:  # nothing after a bad length can be located: the rest is skipped
        skipped.append({"note": "rest of file", "reason": str(framing)})
        log.warning("%s", framing)
    # A note recorded twice (a duplicated record) would be two rows of one note: keep the first.
    keep = first_of_each([n.note_str for n in notes], str(path), lambda i: f"record {records[i]}", on_error, skipped)
    if len(keep) < len(notes):
        notes, audio_offsets = [notes[i] for i in keep], [audio_offsets[i] for i in keep]
        records = [records[i] for i in keep]
    keep = first_of_each_id([n.note for n in notes], [n.note_str for n in notes], str(path),
                            lambda i: f"record {records[i]}", on_error, skipped)
    if len(keep) < len(notes):
        notes, audio_offsets = [notes[i] for i in keep], [audio_offsets[i] for i in keep]
    labels = LabelTable.from_notes(notes)
    return Catalog(labels, TFRecordReader(path, np.array(audio_offsets, np.int64)), skipped)


def _scan_records(job: tuple[Path, str, int, np.ndarray, np.ndarray]
                  ) -> tuple[list[NoteLabels], list[int], list[int], list[dict[str, str]], int]:
    """Verify and decode records ``first, first + 1, ...`` at the given offsets (a worker's share).

    Returns the good notes, their audio's byte offsets and record indices, the records skipped
    and the bytes covered.
    """
    path, on_error, first, offsets, lengths = job
    notes, audio_offsets, records, skipped = [], [], [], []
    with open(path, "rb") as f:
        for k, (offset, length) in enumerate(zip(offsets.tolist(), lengths.tolist(), strict=True)):
            index = first + k
            try:
                f.seek(offset + 12)
                payload = read_payload(f, index, offset, length, str(path))
                # Labels and audio are validated here, where the payload is in memory already.
                note, audio_offset, _ = decode_example(payload, f"{path}: record {index}")
            except TFRecordError as exc:
                if on_error != "skip":
                    raise SourceError(str(exc)) from None
                skipped.append({"note": f"record {index}", "reason": str(exc)})
                continue
            notes.append(note)
            audio_offsets.append(offset + 12 + audio_offset)
            records.append(index)
    return notes, audio_offsets, records, skipped, int(lengths.sum() + 16 * len(lengths))
