"""A synthetic NSynth-format corpus: a fair, small stand-in for training, in the real layouts.

The notes (instruments, timbre, the plan of each split, the audio) come from :mod:`nsynth_prep.readers.tones`;
this module writes them: as WAVs, archives or TFRecords (:func:`write_corpus`), or described in a few
lines for ``build-cache`` to render (:func:`write_descriptors`, read by
:mod:`nsynth_prep.readers.descriptor`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from nsynth_prep.corpus.layouts import FORMATS, SplitWriter, tf_features
from nsynth_prep.cpus import cpu_threads, process_map
from nsynth_prep.errors import ConfigError
from nsynth_prep.labels import SPLITS
from nsynth_prep.progress import Progress
from nsynth_prep.readers.descriptor import DESCRIPTOR_SUFFIX
from nsynth_prep.readers.tones import (  # parse_...: public too
    Instrument,
    parse_notes_per_split,
    plan_corpus,
    render_entry,
)

log = logging.getLogger(__name__)
__all__ = ["FORMATS", "SPLITS", "parse_notes_per_split", "tf_features", "write_corpus", "write_descriptors"]


RENDER_BATCH = 64  # notes a worker renders per job: ~0.8 s of work, 8 MiB of audio sent back


def write_corpus(out: Path, notes_per_split: dict[str, int], formats: tuple[str, ...] = ("jsonwav",),
                 seed: int = 0, progress: bool = True, workers: int | None = None) -> dict[str, int]:
    """Write the corpus to ``out`` in each of ``formats``; returns the notes per split.

    ``workers`` processes render the notes (default: the usable cores); this process writes them
    in corpus order. Each note's audio comes from its own seeded generator, so the files are the
    same bytes whatever the number of workers."""
    for f in formats:
        if f not in FORMATS:
            raise ConfigError(f"unknown format {f!r}; expected one of {', '.join(FORMATS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plans = plan_corpus(notes_per_split, seed)
    workers = cpu_threads() if workers is None else workers
    counts = {}
    for split in SPLITS:
        with Progress(len(plans[split]), f"synth {split}", enabled=progress) as bar, \
                SplitWriter(out, split, formats, seed) as w:
            for entry, audio in _rendered(plans[split], seed, workers):
                w.add(entry, audio)
                bar.update(1)
            counts[split] = len(w.entries)
    return counts


def _rendered(plan: list[tuple[dict[str, Any], Instrument]], seed: int, workers: int
              ) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    """``(entry, audio)`` of every planned note, in plan order; rendered in ``workers`` processes
    (spawned: the caller may run threads, or have torch loaded) when there is enough to share."""
    if workers <= 1 or len(plan) <= RENDER_BATCH:
        yield from ((entry, render_entry(entry, inst, seed)) for entry, inst in plan)
        return
    it = iter(plan)
    jobs = [(batch, seed) for batch in iter(lambda: list(islice(it, RENDER_BATCH)), [])]
    with contextlib.closing(process_map(_render_batch, jobs, workers, start="spawn")) as results:
        for (batch, _), audio in zip(jobs, results, strict=True):
            yield from ((entry, a) for (entry, _), a in zip(batch, audio, strict=True))


def _render_batch(job: tuple[list[tuple[dict[str, Any], Instrument]], int]) -> np.ndarray:
    """(len(batch), 64000) int16: the audio of a batch of planned notes (a worker's job)."""
    batch, seed = job
    return np.stack([render_entry(entry, inst, seed) for entry, inst in batch])


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
