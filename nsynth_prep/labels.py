"""NSynth label vocabularies, ``examples.json`` entries and the label table.

Every id here is NSynth's own: ``instrument_family`` 0..10, ``instrument_source`` 0..2 and
so on are stored as shipped and never remapped (the trainer maps them to class indices).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError, LabelError

SAMPLE_RATE = 16_000  # Hz, every NSynth note
NOTE_SAMPLES = 64_000  # samples in a 4-second note

FAMILIES: tuple[str, ...] = (
    "bass", "brass", "flute", "guitar", "keyboard", "mallet",
    "organ", "reed", "string", "synth_lead", "vocal",
)
SOURCES: tuple[str, ...] = ("acoustic", "electronic", "synthetic")
QUALITIES: tuple[str, ...] = (
    "bright", "dark", "distortion", "fast_decay", "long_release",
    "multiphonic", "nonlinear_env", "percussive", "reverb", "tempo-synced",
)
VELOCITIES: tuple[int, ...] = (25, 50, 75, 100, 127)

# Key order of a real examples.json entry (Python 2 dict order), kept so that the synthetic
# corpus is byte-for-byte in the real formatting.
EXAMPLE_KEYS: tuple[str, ...] = (
    "qualities", "pitch", "note", "instrument_source_str", "velocity", "instrument_str",
    "instrument", "sample_rate", "qualities_str", "instrument_source", "note_str",
    "instrument_family", "instrument_family_str",
)

NOTE_STR_RE = re.compile(r"^([a-z_]+)_(acoustic|electronic|synthetic)_(\d{3})-(\d{3})-(\d{3})$")


def family_id(name: str) -> int:
    """NSynth id of a family name; raises ``ValueError`` naming the valid choices."""
    try:
        return FAMILIES.index(name)
    except ValueError:
        raise ConfigError(f"unknown instrument family {name!r}; expected one of {', '.join(FAMILIES)}") from None


def note_str(family: int, source: int, instrument_index: int, pitch: int, velocity: int) -> str:
    """``<family>_<source>_<NNN>-<PPP>-<VVV>``, e.g. ``guitar_acoustic_010-066-100``."""
    return f"{FAMILIES[family]}_{SOURCES[source]}_{instrument_index:03d}-{pitch:03d}-{velocity:03d}"


def format_examples_json(entries: dict[str, dict[str, Any]]) -> str:
    """Serialise entries exactly as NSynth's examples.json is formatted (``", \\n"`` separators)."""
    ordered = {k: {key: e[key] for key in EXAMPLE_KEYS} for k, e in entries.items()}
    return json.dumps(ordered, indent=4, separators=(", ", ": "))


@dataclass(frozen=True)
class NoteLabels:
    """The labels of one note, as NSynth ids."""

    note_str: str
    family: int
    source: int
    pitch: int
    velocity: int
    instrument: int
    note: int
    qualities: tuple[int, ...]


def parse_example(key: str, entry: Any, where: str) -> NoteLabels:
    """Validate one examples.json (or TFRecord) entry and return its labels.

    Parameters
    ----------
    key
        The entry's key in examples.json (its note_str), or the record's note_str.
    entry
        The mapping of NSynth keys to values.
    where
        Human-readable location (file and record) used in error messages.
    """
    if not isinstance(entry, dict):
        raise LabelError(f"{where}: note {key!r} is not a JSON object")
    required = ("instrument_family", "instrument_source", "pitch", "velocity", "instrument", "note", "qualities")
    missing = [k for k in required if k not in entry]
    if missing:
        raise LabelError(f"{where}: note {key!r} lacks {', '.join(missing)}")
    try:
        family, source = int(entry["instrument_family"]), int(entry["instrument_source"])
        pitch, velocity = int(entry["pitch"]), int(entry["velocity"])
        instrument, note = int(entry["instrument"]), int(entry["note"])
        qualities = tuple(int(q) for q in entry["qualities"])
    except (TypeError, ValueError) as exc:
        raise LabelError(f"{where}: note {key!r} has a non-integer label ({exc})") from None
    if not 0 <= family < len(FAMILIES):
        raise LabelError(f"{where}: note {key!r} has unknown instrument_family {family} (expected 0..{len(FAMILIES) - 1})")
    if not 0 <= source < len(SOURCES):
        raise LabelError(f"{where}: note {key!r} has unknown instrument_source {source} (expected 0..2)")
    if "instrument_family_str" in entry and entry["instrument_family_str"] != FAMILIES[family]:
        raise LabelError(
            f"{where}: note {key!r} says family {family} ({FAMILIES[family]}) "
            f"but instrument_family_str {entry['instrument_family_str']!r}"
        )
    if not 0 <= pitch <= 127:
        raise LabelError(f"{where}: note {key!r} has pitch {pitch} outside MIDI 0..127")
    if not 0 <= velocity <= 127:
        raise LabelError(f"{where}: note {key!r} has velocity {velocity} outside 0..127")
    if len(qualities) != len(QUALITIES) or any(q not in (0, 1) for q in qualities):
        raise LabelError(f"{where}: note {key!r} has qualities {list(qualities)}; expected 10 flags of 0/1")
    rate = entry.get("sample_rate", SAMPLE_RATE)
    if int(rate) != SAMPLE_RATE:
        raise LabelError(f"{where}: note {key!r} has sample_rate {rate}; NSynth is {SAMPLE_RATE} Hz")
    name = str(entry.get("note_str", key))
    if name != key:
        raise LabelError(f"{where}: entry {key!r} has note_str {name!r}")
    return NoteLabels(name, family, source, pitch, velocity, instrument, note, qualities)


@dataclass(frozen=True)
class LabelTable:
    """Labels of N notes as parallel arrays (the cache's label columns).

    Attributes: ``note_str`` (N,) str; ``family``, ``source`` (N,) int8; ``pitch``,
    ``velocity``, ``instrument`` (N,) int16; ``note`` (N,) int32; ``qualities`` (N, 10) uint8.
    """

    note_str: np.ndarray
    family: np.ndarray
    source: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    instrument: np.ndarray
    note: np.ndarray
    qualities: np.ndarray

    COLUMNS = ("note_str", "family", "source", "pitch", "velocity", "instrument", "note", "qualities")

    @staticmethod
    def from_notes(notes: list[NoteLabels]) -> LabelTable:
        return LabelTable(
            note_str=np.array([n.note_str for n in notes], dtype=object),
            family=np.array([n.family for n in notes], dtype=np.int8),
            source=np.array([n.source for n in notes], dtype=np.int8),
            pitch=np.array([n.pitch for n in notes], dtype=np.int16),
            velocity=np.array([n.velocity for n in notes], dtype=np.int16),
            instrument=np.array([n.instrument for n in notes], dtype=np.int16),
            note=np.array([n.note for n in notes], dtype=np.int32),
            qualities=np.array([n.qualities for n in notes], dtype=np.uint8).reshape(len(notes), len(QUALITIES)),
        )

    def __len__(self) -> int:
        return len(self.note_str)

    def take(self, index: np.ndarray) -> LabelTable:
        """Rows ``index`` (any integer array) of every column."""
        return LabelTable(**{c: getattr(self, c)[index] for c in self.COLUMNS})

    def columns(self) -> dict[str, np.ndarray]:
        return {c: getattr(self, c) for c in self.COLUMNS}
