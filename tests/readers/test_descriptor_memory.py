"""The reader of a described corpus keeps its notes as label columns: what a build holds (and forks
into every worker) grows by about a hundred bytes a note, not by an examples.json dict per note."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import numpy as np

from nsynth_prep.corpus.synth import write_descriptors
from nsynth_prep.features import feature_spec
from nsynth_prep.readers.descriptor import scan_descriptor
from nsynth_prep.readers.tones import plan_corpus, render_entry


def test_a_described_corpus_is_held_as_columns(tmp_path: Path) -> None:
    notes = 4000
    path = write_descriptors(tmp_path, {"train": notes, "valid": 50, "test": 50})["train"]
    scan_descriptor(path, "train", "fail")  # imports and caches warmed outside the measurement
    gc.collect()
    tracemalloc.start()
    try:
        catalog = scan_descriptor(path, "train", "fail")
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(catalog.labels) == notes
    # note_str as Python strings (~85 B), the other label columns (~20 B), the split's instruments
    # (~100 of 1.2 KB each for 40 notes apiece: ~30 B a note). A dict per note was ~700 B more.
    assert held / notes < 300, f"{held / notes:.0f} bytes a note"  # 207 measured; 936 before
    # ... and renders what the planned entries say, bit for bit
    plan = {e["note_str"]: (e, inst) for e, inst in plan_corpus({"train": notes, "valid": 50, "test": 50}, 0)["train"]}
    rows = np.array([0, 1, notes // 2, notes - 1])
    audio = catalog.reader.read_features(rows, [feature_spec("trimmed")])["trimmed"]
    for row, i in zip(audio, rows, strict=True):
        entry, inst = plan[catalog.labels.note_str[i]]
        np.testing.assert_array_equal(row, render_entry(entry, inst, 0)[: len(row)])
