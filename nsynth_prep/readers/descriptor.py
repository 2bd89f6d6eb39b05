"""A described synthetic corpus (``nsynth-<split>.synth.json``): its notes planned from the
descriptor, their audio rendered as the features are computed.

The descriptors are written by :func:`nsynth_prep.corpus.synth.write_descriptors`; the notes are
those :func:`nsynth_prep.corpus.synth.write_corpus` writes for the same sizes and seed
(:mod:`nsynth_prep.readers.tones`), so a cache built from either is the same, bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from nsynth_prep.errors import ConfigError, SourceError
from nsynth_prep.labels import NOTE_SAMPLES, SPLITS, LabelTable
from nsynth_prep.readers.catalog import AudioReader, Catalog, OpenedPath, labels_from_entries
from nsynth_prep.readers.tones import NOTE_IDS, Instrument, parse_notes_per_split, plan_corpus, render_entry

DESCRIPTOR_SUFFIX = ".synth.json"  # nsynth-<split>.synth.json: a split of the corpus, described, not written
MAX_DESCRIPTOR_BYTES = 1 << 16


class SynthReader(AudioReader):
    """Renders the audio of planned notes on demand."""

    def __init__(self, plan: list[tuple[dict[str, Any], Instrument]], seed: int) -> None:
        self.plan, self.seed = plan, seed

    def opens(self) -> list[OpenedPath]:
        return []  # the notes are rendered from the plan: nothing to read

    def read_audio(self, index: np.ndarray) -> np.ndarray:
        out = np.empty((len(index), NOTE_SAMPLES), np.int16)
        for row, i in enumerate(index):
            entry, inst = self.plan[i]
            out[row] = render_entry(entry, inst, self.seed)
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
    plan = plan_corpus(notes, seed)[split]
    by_name = {entry["note_str"]: (entry, inst) for entry, inst in plan}
    skipped: list[dict[str, str]] = []
    labels = LabelTable.from_notes(labels_from_entries({k: e for k, (e, _) in by_name.items()}, str(path), on_error,
                                                       skipped))
    return Catalog(labels, SynthReader([by_name[n] for n in labels.note_str], seed), skipped)
