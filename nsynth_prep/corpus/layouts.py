"""Write a split of notes in NSynth's three shipped layouts (used by ``prep synth`` and ``prep render``).

* ``jsonwav``: ``nsynth-<split>/examples.json`` and ``nsynth-<split>/audio/<note_str>.wav``;
* ``targz``: the same tree in ``nsynth-<split>.jsonwav.tar.gz``;
* ``tfrecord``: ``nsynth-<split>.tfrecord``, one ``tf.train.Example`` per note.

examples.json, the archive and the TFRecord file appear under their final names only once
complete (written in ``.partial/``, then renamed), so a reader never takes a half-written split for
a whole one.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import tarfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from nsynth_prep.labels import SPLITS, format_examples_json
from nsynth_prep.readers.tfrecord import encode_example, frame_record
from nsynth_prep.readers.wav import encode_pcm16
from nsynth_prep.storage.store import write_atomic
from nsynth_prep.vocabulary import FORMATS as FORMATS  # the layouts' names, written once there

# Where archives and TFRecords are written before they are complete. Not atomic_path's
# temporary names: a streamed file keeps this fixed name, so that a rerun after a kill overwrites
# what the killed run left (``prep synth`` holds no lock under which a cleaner could remove it).
PARTIAL = ".partial"
TAR_MTIME = 1_500_000_000  # a fixed mtime, so archives of the same notes are byte-identical


def tf_features(entry: dict[str, Any], audio: np.ndarray) -> dict[str, Any]:
    """The tf.train.Example features of an NSynth note (audio as float32 = int16 / 32768)."""
    feats: dict[str, Any] = {}
    for key in ("note", "instrument", "pitch", "velocity", "sample_rate", "instrument_family", "instrument_source"):
        feats[key] = [entry[key]]
    for key in ("note_str", "instrument_str", "instrument_family_str", "instrument_source_str"):
        feats[key] = (entry[key],)
    feats["qualities"] = list(entry["qualities"])
    feats["qualities_str"] = tuple(entry["qualities_str"])
    feats["audio"] = audio.astype(np.float32) / 32768.0
    return feats


class SplitWriter:
    """Writes one split's notes to every requested layout, in the order they are added.

    Parameters
    ----------
    out
        The corpus folder.
    split
        ``train``, ``valid`` or ``test``.
    formats
        Layouts to write (:data:`FORMATS`).
    order_seed
        Seed of examples.json's key order (real examples.json lists notes in no particular
        order; ours is a seeded permutation of the order of :meth:`add`).
    wavs_written
        The ``jsonwav`` WAV files are already in ``nsynth-<split>/audio/`` (``prep render``
        writes them there as it goes); only examples.json is written for that layout.
    """

    def __init__(self, out: Path, split: str, formats: tuple[str, ...], order_seed: int,
                 wavs_written: bool = False) -> None:
        self.out, self.split, self.formats, self.seed = Path(out), split, formats, order_seed
        self.wavs_written = wavs_written
        self.entries: dict[str, dict[str, Any]] = {}
        self.name = f"nsynth-{split}"
        self._tar: tarfile.TarFile | None = None
        self._gz: gzip.GzipFile | None = None
        self._raw: BinaryIO | None = None
        self._tfrecord: BinaryIO | None = None

    def _part(self, suffix: str) -> Path:
        # In a hidden folder: build-cache, given the corpus folder, finds sources by name
        # (``*.tfrecord``...) and must not take a half-written file for one.
        return self.out / PARTIAL / f"{self.name}{suffix}"

    def __enter__(self) -> SplitWriter:
        if self.formats != ("jsonwav",):
            (self.out / PARTIAL).mkdir(parents=True, exist_ok=True)
        if "jsonwav" in self.formats:
            (self.out / self.name / "audio").mkdir(parents=True, exist_ok=True)
        if "targz" in self.formats:
            # gzip stores a file name and mtime in its header: give it the final name and a fixed
            # time, so the same notes give the same bytes.
            self._raw = open(self._part(".jsonwav.tar.gz"), "wb")
            self._gz = gzip.GzipFile(f"{self.name}.jsonwav.tar", "wb", 6, self._raw, mtime=TAR_MTIME)
            self._tar = tarfile.open(fileobj=self._gz, mode="w")
        if "tfrecord" in self.formats:
            self._tfrecord = open(self._part(".tfrecord"), "wb")
        return self

    def needs_audio(self) -> bool:
        """Whether :meth:`add` needs the samples (False: only examples.json is left to write)."""
        return self._tar is not None or self._tfrecord is not None or not self.wavs_written

    def add(self, entry: dict[str, Any], audio: np.ndarray | None = None, wav: bytes | None = None) -> None:
        """Add one note: its examples.json entry and (64000,) int16 samples (``wav``: their WAV file).

        The samples may be left out when :meth:`needs_audio` is False.
        """
        self.entries[entry["note_str"]] = entry
        if not self.needs_audio():
            return
        if audio is None:
            raise ValueError(f"{entry['note_str']}: the samples are needed for {', '.join(self.formats)}")
        wav = encode_pcm16(audio) if wav is None else wav
        if "jsonwav" in self.formats and not self.wavs_written:
            (self.out / self.name / "audio" / f"{entry['note_str']}.wav").write_bytes(wav)
        if self._tar is not None:
            self._tar_add(f"{self.name}/audio/{entry['note_str']}.wav", wav)
        if self._tfrecord is not None:
            self._tfrecord.write(frame_record(encode_example(tf_features(entry, audio))))

    def _tar_add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), TAR_MTIME, 0o644
        assert self._tar is not None
        self._tar.addfile(info, io.BytesIO(data))

    def _close_files(self) -> None:
        for handle in (self._tar, self._gz, self._raw, self._tfrecord):  # the tar stream, then what holds it
            if handle is not None:
                handle.close()

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None:  # leave no part file behind that looks like progress
            self._close_files()
            for suffix in (".jsonwav.tar.gz", ".tfrecord"):
                self._part(suffix).unlink(missing_ok=True)
            self._tidy()
            return
        keys = list(self.entries)
        order = np.random.default_rng([self.seed, 5, SPLITS.index(self.split)]).permutation(len(keys))
        text = format_examples_json({keys[i]: self.entries[keys[i]] for i in order}).encode()
        if self._tar is not None:
            self._tar_add(f"{self.name}/examples.json", text)
        self._close_files()
        if self._tar is not None:
            os.replace(self._part(".jsonwav.tar.gz"), self.out / f"{self.name}.jsonwav.tar.gz")
        if self._tfrecord is not None:
            os.replace(self._part(".tfrecord"), self.out / f"{self.name}.tfrecord")
        self._tidy()
        if "jsonwav" in self.formats:  # last: its presence says the folder is complete
            write_atomic(self.out / self.name / "examples.json", text)

    def _tidy(self) -> None:
        with contextlib.suppress(OSError):  # another split's writer may still be using it
            (self.out / PARTIAL).rmdir()
