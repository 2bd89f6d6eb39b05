"""A described synthetic corpus (``nsynth-<split>.synth.json``): its notes planned from the
descriptor, their audio rendered as the features are computed.

The descriptors are written by :func:`nsynth_prep.corpus.synth.write_descriptors`; the notes are
those :func:`nsynth_prep.corpus.synth.write_corpus` writes for the same sizes and seed
(:mod:`nsynth_prep.readers.tones`), so a cache built from either is the same, bit for bit.
"""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import numpy as np

from nsynth_prep.errors import ConfigError, SourceError
from nsynth_prep.labels import NOTE_SAMPLES, SPLITS, LabelTable
from nsynth_prep.readers.catalog import AudioReader, Catalog, OpenedPath
from nsynth_prep.readers.examples_json import labels_from_entries
from nsynth_prep.readers.tones import NOTE_IDS, Instrument, iter_corpus_split, parse_notes_per_split, render_planned

DESCRIPTOR_SUFFIX = ".synth.json"  # nsynth-<split>.synth.json: a split of the corpus, described, not written
MAX_DESCRIPTOR_BYTES = 1 << 16
PLAN_BATCH = 4096  # planned notes validated at once


class SynthReader(AudioReader):
    """Renders the audio of planned notes on demand.

    Holds the plan as columns ((N,) note ids, pitches, velocities and instrument ids, in catalog
    order) and the split's instruments, not a dict per note: the reader is kept by the build and
    forked into every worker, and NSynth train's 289,205 entries as dicts were 0.3 GB in each.
    """

    def __init__(self, labels: LabelTable, instruments: list[Instrument], seed: int) -> None:
        self.note, self.pitch, self.velocity = labels.note, labels.pitch, labels.velocity
        self.instrument = labels.instrument
        self.instruments = {inst.id: inst for inst in instruments}
        self.seed = seed

    def opens(self) -> list[OpenedPath]:
        return []  # the notes are rendered from the plan: nothing to read

    def read_audio(self, index: np.ndarray) -> np.ndarray:
        out = np.empty((len(index), NOTE_SAMPLES), np.int16)
        for row, i in enumerate(index):
            out[row] = render_planned(self.note[i], self.pitch[i], self.velocity[i],
                                      self.instruments[int(self.instrument[i])], self.seed)
        return out


def scan_descriptor(path: Path, split: str, on_error: str) -> Catalog:
    """The notes of one split of a described corpus (see :func:`.synth.write_descriptors`), validated as
    examples.json entries are, with a reader that renders them."""
    try:
        size = path.stat().st_size
        if size > MAX_DESCRIPTOR_BYTES:
            raise SourceError(f"{path}: {size:,} bytes; a corpus descriptor is a few lines")
        doc = json.loads(path.read_text())
        notes = parse_notes_per_split(",".join(str(doc["notes_per_split"][s]) for s in SPLITS))
        seed = doc["seed"]
        if type(seed) is not int or sum(notes.values()) > NOTE_IDS:
            raise ValueError(f"seed {seed!r}, {sum(notes.values())} notes (at most {NOTE_IDS:,})")
    except (OSError, ValueError, KeyError, TypeError, ConfigError) as exc:
        raise SourceError(f"{path}: not a corpus descriptor ({type(exc).__name__}: {exc})") from None
    instruments, plan = iter_corpus_split(notes, seed, split)
    skipped: list[dict[str, str]] = []
    # Validated as examples.json entries are, a batch at a time, and kept as label columns only:
    # the entries themselves (~1 KB each in Python) are never all held at once.
    tables = []
    while batch := {entry["note_str"]: entry for entry, _ in islice(plan, PLAN_BATCH)}:
        tables.append(labels_from_entries(batch, str(path), on_error, skipped))
    labels = LabelTable(**{c: np.concatenate([getattr(t, c) for t in tables]) for c in LabelTable.COLUMNS}) \
        if tables else LabelTable.from_notes([])
    if len(set(labels.note_str)) != len(labels):  # by construction never; a batch alone cannot tell
        raise SourceError(f"{path}: the planned corpus repeats a note name (seed {seed})")
    return Catalog(labels, SynthReader(labels, instruments, seed), skipped)
