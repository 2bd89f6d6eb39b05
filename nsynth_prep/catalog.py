"""What a scan of a source yields: the notes' labels, the notes skipped, and a feature reader.

Shared by every format's reader (:mod:`.sources` for folders and TFRecords, :mod:`.spool`
for streamed archives), so neither imports the other's internals.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .errors import LabelError, SourceError
from .features import FeatureSpec
from .labels import LabelTable, NoteLabels, parse_example

__all__ = ["AUDIO_BATCH", "AudioReader", "Catalog", "FeatureReader", "SourceError", "labels_from_entries",
           "load_examples_json"]

AUDIO_BATCH = 32  # notes decoded at once: bounds memory to ~8 MB of audio per worker


class FeatureReader(Protocol):
    def read_features(self, index: np.ndarray, specs: Sequence[FeatureSpec]) -> dict[str, np.ndarray]:
        """Features of notes ``index`` (positions in the catalog), one (k, ...) array per spec."""
        ...


@dataclass
class Catalog:
    """What a scan of one source found."""

    labels: LabelTable  # good notes, in source order
    reader: FeatureReader
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"note": ..., "reason": ...}


class AudioReader:
    """Base for random-access sources: decode audio in small batches, compute features."""

    def read_audio(self, index: np.ndarray) -> np.ndarray:  # (k, 64000) int16 or float32
        raise NotImplementedError

    def read_features(self, index: np.ndarray, specs: Sequence[FeatureSpec]) -> dict[str, np.ndarray]:
        out = {s.name: np.empty((len(index), *s.row_shape), np.float32) for s in specs}
        for start in range(0, len(index), AUDIO_BATCH):
            part = index[start : start + AUDIO_BATCH]
            audio = self.read_audio(part)
            for s in specs:
                s.compute(audio, out[s.name][start : start + len(part)])
        return out


def load_examples_json(text: bytes | str, name: str) -> dict[str, Any]:
    """Parse examples.json, naming the file on failure."""
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(f"{name}: malformed JSON: {exc}") from None
    if not isinstance(entries, dict):
        raise SourceError(f"{name}: expected an object keyed by note_str")
    return entries


def labels_from_entries(entries: dict[str, Any], name: str, on_error: str,
                        skipped: list[dict[str, str]]) -> list[NoteLabels]:
    """Validated labels of every entry; bad ones raise, or are skipped and recorded."""
    notes = []
    for key, entry in entries.items():
        try:
            notes.append(parse_example(key, entry, name))
        except LabelError as exc:
            if on_error != "skip":
                raise SourceError(str(exc)) from None
            skipped.append({"note": key, "reason": str(exc)})
    return notes
