"""A synthetic NSynth-format corpus: a fair, small stand-in for training, in the real layouts.

The notes (instruments, timbre, the plan of each split, the audio) come from :mod:`nsynth_prep.readers.tones`;
this module writes them: as WAVs, archives or TFRecords (:func:`write_corpus`), or described in a few
lines for ``build-cache`` to render (:func:`write_descriptors`, read by
:mod:`nsynth_prep.readers.descriptor`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from nsynth_prep.corpus.layouts import FORMATS, SplitWriter, tf_features
from nsynth_prep.errors import ConfigError
from nsynth_prep.labels import SPLITS
from nsynth_prep.progress import Progress
from nsynth_prep.readers.descriptor import DESCRIPTOR_SUFFIX
from nsynth_prep.readers.tones import parse_notes_per_split, plan_corpus, render_entry  # parse_...: public here too

log = logging.getLogger(__name__)
__all__ = ["FORMATS", "SPLITS", "parse_notes_per_split", "tf_features", "write_corpus", "write_descriptors"]


def write_corpus(out: Path, notes_per_split: dict[str, int], formats: tuple[str, ...] = ("jsonwav",),
                 seed: int = 0, progress: bool = True) -> dict[str, int]:
    """Write the corpus to ``out`` in each of ``formats``; returns the notes per split."""
    for f in formats:
        if f not in FORMATS:
            raise ConfigError(f"unknown format {f!r}; expected one of {', '.join(FORMATS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plans = plan_corpus(notes_per_split, seed)
    counts = {}
    for split in SPLITS:
        with Progress(len(plans[split]), f"synth {split}", enabled=progress) as bar, \
                SplitWriter(out, split, formats, seed) as w:
            for entry, inst in plans[split]:
                w.add(entry, render_entry(entry, inst, seed))
                bar.update(1)
            counts[split] = len(w.entries)
    return counts


# --- a corpus rendered straight into a cache -----------------------------------------------------


def write_descriptors(out: Path, notes_per_split: dict[str, int], seed: int = 0) -> dict[str, Path]:
    """Describe the corpus in ``out`` (one small ``nsynth-<split>.synth.json`` per split) without
    writing its audio: ``build-cache`` then renders each note as it computes the features, in its
    worker processes, and builds the same cache as from the written corpus (the same notes, bit
    for bit). For corpora too large to keep as WAVs beside their caches (NSynth train's 283,704
    notes are 36 GB of WAVs)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in SPLITS:
        paths[split] = out / f"nsynth-{split}{DESCRIPTOR_SUFFIX}"
        paths[split].write_text(json.dumps({"generator": "nsynth prep synth", "notes_per_split": notes_per_split,
                                            "seed": seed}, indent=1))
    return paths
