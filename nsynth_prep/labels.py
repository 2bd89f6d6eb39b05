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

from nsynth_prep.errors import ConfigError, LabelError

SAMPLE_RATE = 16_000  # Hz, every NSynth note
NOTE_SAMPLES = 64_000  # samples in a 4-second note
PIANO_RANGE = (21, 108)  # MIDI pitches of an 88-key piano, where NSynth's notes mostly lie

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
SPLITS: tuple[str, ...] = ("train", "valid", "test")  # as NSynth names them: nsynth-<split>

# Key order of a real examples.json entry (Python 2 dict order), kept so that the synthetic
# corpus is byte-for-byte in the real formatting.
EXAMPLE_KEYS: tuple[str, ...] = (
    "qualities", "pitch", "note", "instrument_source_str", "velocity", "instrument_str",
    "instrument", "sample_rate", "qualities_str", "instrument_source", "note_str",
    "instrument_family", "instrument_family_str",
)

# NSynth's note names: <family>_<source>_<NNN>-<PPP>-<VVV> (instrument index, pitch, velocity).
# ASCII digits only ("\d" would take any Unicode digit) and \Z, not $ (which allows a final
# newline): a name is used to build the WAV's path, so it must be exactly this.
NOTE_STR_RE = re.compile(r"^([a-z_]+)_(acoustic|electronic|synthetic)_([0-9]{3})-([0-9]{3})-([0-9]{3})\Z")

INT16_MAX, INT32_MAX = (1 << 15) - 1, (1 << 31) - 1
# Every integer label, its NSynth range, and so the cache dtype it must fit (see LabelTable).
LABEL_RANGES: dict[str, tuple[int, int]] = {
    "instrument_family": (0, 10), "instrument_source": (0, 2), "pitch": (0, 127), "velocity": (0, 127),
    "instrument": (0, INT16_MAX), "note": (0, INT32_MAX),
}


# The label columns of a cache, and their dtypes (every range above fits).
LABEL_DTYPES: dict[str, Any] = {
    "note_str": str, "family": np.int8, "source": np.int8, "pitch": np.int16, "velocity": np.int16,
    "instrument": np.int16, "note": np.int32, "qualities": np.uint8,
}
# Which range of LABEL_RANGES bounds each integer column (qualities are flags: 0..1).
COLUMN_RANGES: dict[str, tuple[int, int]] = {
    "family": LABEL_RANGES["instrument_family"], "source": LABEL_RANGES["instrument_source"],
    "pitch": LABEL_RANGES["pitch"], "velocity": LABEL_RANGES["velocity"],
    "instrument": LABEL_RANGES["instrument"], "note": LABEL_RANGES["note"], "qualities": (0, 1),
}


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

    A fast check accepts a good entry in about 3 us (train has 289,205); anything it does not
    accept goes to :func:`explain_example`, which finds and names the problem.

    Raises
    ------
    LabelError
        Naming ``where``, the note and what is wrong.
    """
    labels = _accept(key, entry)
    return labels if labels is not None else explain_example(key, entry, where)


_GOOD_QUALITIES = frozenset(tuple(int(b) for b in f"{i:010b}") for i in range(1 << len(QUALITIES)))


def _accept(key: Any, entry: Any) -> NoteLabels | None:
    """The labels of a good entry, or None: the same decisions as :func:`explain_example` (the
    tests hold them to it), with no message built and no per-label loop."""
    if type(key) is not str or type(entry) is not dict:
        return None
    match = NOTE_STR_RE.match(key)
    if match is None:
        return None
    try:
        f, s, p, v = entry["instrument_family"], entry["instrument_source"], entry["pitch"], entry["velocity"]
        i, n, q = entry["instrument"], entry["note"], entry["qualities"]
    except KeyError:
        return None
    if not (type(f) is int and type(s) is int and type(p) is int and type(v) is int and type(i) is int
            and type(n) is int and type(q) is list):
        return None
    if not (0 <= f <= 10 and 0 <= s <= 2 and 0 <= p <= 127 and 0 <= v <= 127 and 0 <= i <= INT16_MAX
            and 0 <= n <= INT32_MAX):
        return None
    qualities = tuple(q)
    if qualities not in _GOOD_QUALITIES or bool in map(type, qualities):  # True == 1: look at the types too
        return None
    rate = entry.get("sample_rate", SAMPLE_RATE)
    if type(rate) is not int or rate != SAMPLE_RATE or entry.get("note_str", key) != key:
        return None
    family, source, _, pitch, velocity = match.groups()
    if family != FAMILIES[f] or source != SOURCES[s] or int(pitch) != p or int(velocity) != v:
        return None
    if (entry.get("instrument_family_str", family) != family or entry.get("instrument_source_str", source) != source
            or entry.get("instrument_str", key[:-8]) != key[:-8]):  # key[:-8]: the name less "-PPP-VVV"
        return None
    return NoteLabels(key, f, s, p, v, i, n, qualities)


def explain_example(key: str, entry: Any, where: str) -> NoteLabels:
    """Validate one entry label by label, naming the first problem: the reference of :func:`parse_example`.

    Refuses anything that ``nsynth prep verify`` would reject in a cache, and more: a name that
    is not an NSynth note name (it becomes a file path), integer labels that are not JSON
    integers (``66.9``, ``"66"``, ``true``, ``1e400``) or are out of range, qualities that are
    not 10 flags of 0/1, and names (``note_str``, ``instrument_str``, ``*_str``) that disagree
    with the ids.

    Parameters
    ----------
    key
        The entry's key in examples.json (its note_str), or the record's note_str.
    entry
        The mapping of NSynth keys to values.
    where
        Human-readable location (file and record) used in error messages.

    Raises
    ------
    LabelError
        Naming ``where``, the note and what is wrong.
    """
    at = f"{where}: note {_show(key, typed=False)}"
    match = NOTE_STR_RE.match(key) if isinstance(key, str) else None
    if match is None:  # checked first: the name becomes a file path (audio/<note_str>.wav)
        raise LabelError(f"{at} is not an NSynth note name (<family>_<source>_<NNN>-<PPP>-<VVV>)")
    if not isinstance(entry, dict):
        raise LabelError(f"{at} is not a JSON object")
    missing = [k for k in (*LABEL_RANGES, "qualities") if k not in entry]
    if missing:
        raise LabelError(f"{at} lacks {', '.join(missing)}")
    values = _integer_labels(entry, at)
    qualities = _quality_flags(entry, at)
    _check_rate_and_name(key, entry, at)
    _check_names_agree(key, entry, match, values, at)
    return NoteLabels(key, values["instrument_family"], values["instrument_source"], values["pitch"],
                      values["velocity"], values["instrument"], values["note"], qualities)


def _integer_labels(entry: dict[str, Any], at: str) -> dict[str, int]:
    """Every label of :data:`LABEL_RANGES`, each a JSON integer in its range."""
    values = {}
    for name, (lo, hi) in LABEL_RANGES.items():
        v = entry[name]
        if isinstance(v, LongInteger):
            raise LabelError(f"{at} has {name} {v!r} (expected {lo}..{hi})")
        if type(v) is not int:  # not isinstance: bool is an int, and floats/strings must not be rounded
            raise LabelError(f"{at} has {name} {_show(v)}; expected an integer")
        if not lo <= v <= hi:
            what = "unknown " if name in ("instrument_family", "instrument_source") else ""
            raise LabelError(f"{at} has {what}{name} {v} (expected {lo}..{hi})")
        values[name] = v
    return values


def _quality_flags(entry: dict[str, Any], at: str) -> tuple[int, ...]:
    """The entry's qualities: a list of 10 JSON integers, each 0 or 1."""
    qualities = entry["qualities"]
    if (type(qualities) is not list or len(qualities) != len(QUALITIES)
            or any(type(q) is not int or q not in (0, 1) for q in qualities)):
        raise LabelError(f"{at} has qualities {_show(qualities)}; expected a list of 10 flags of 0/1")
    return tuple(qualities)


def _check_rate_and_name(key: str, entry: dict[str, Any], at: str) -> None:
    """An optional sample_rate must be NSynth's, an optional note_str the entry's key."""
    rate = entry.get("sample_rate", SAMPLE_RATE)
    if type(rate) is not int or rate != SAMPLE_RATE:
        raise LabelError(f"{at} has sample_rate {_show(rate)}; NSynth is {SAMPLE_RATE} Hz")
    name = entry.get("note_str", key)
    if name != key:
        raise LabelError(f"{at} has note_str {_show(name)}")


def _check_names_agree(key: str, entry: dict[str, Any], match: re.Match[str], values: dict[str, int],
                       at: str) -> None:
    """What the note's name says (family, source, pitch, velocity) and its ``*_str`` labels must
    be what its ids say."""
    family, source = values["instrument_family"], values["instrument_source"]
    named = {"instrument_family": (match.group(1), FAMILIES[family]), "instrument_source": (match.group(2), SOURCES[source])}
    for label, (in_name, of_id) in named.items():
        if in_name != of_id:
            raise LabelError(f"{at}: the name says {in_name!r} but {label} {values[label]} is {of_id!r}")
    for label, group in (("pitch", 4), ("velocity", 5)):
        if int(match.group(group)) != values[label]:
            raise LabelError(f"{at}: the name says {label} {int(match.group(group))} but the {label} label is "
                             f"{values[label]}")
    for label, want in (("instrument_family_str", FAMILIES[family]), ("instrument_source_str", SOURCES[source]),
                        ("instrument_str", key.rsplit("-", 2)[0])):
        if label in entry and entry[label] != want:
            raise LabelError(f"{at} has {label} {_show(entry[label])}; its ids and name say {want!r}")


class LongInteger(str):
    """A JSON integer of more digits than Python turns into an int (``sys.get_int_max_str_digits()``,
    4,300 by default; ``json`` raises ValueError for the whole file), kept as its text so that the
    note holding it is refused by name (see :func:`long_integer`)."""

    def __repr__(self) -> str:
        return f"<an integer of {len(self.lstrip('-')):,} digits>"


def long_integer(text: str) -> int | LongInteger:
    """``parse_int`` for ``json.loads``: an int, or a :class:`LongInteger` past Python's digit limit."""
    try:
        return int(text)
    except ValueError:
        return LongInteger(text)


def _show(value: Any, typed: bool = True) -> str:
    """A value for a message: its repr, cut short, and for scalars that are no integer their JSON type."""
    if isinstance(value, LongInteger):
        return repr(value)
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    kind = {bool: "a boolean", float: "a float", str: "a string", type(None): "null"}.get(type(value))
    return f"{text} ({kind})" if typed and kind else text


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
        cols = {c: np.array([getattr(n, c) for n in notes], dtype=object if c == "note_str" else LABEL_DTYPES[c])
                for c in LabelTable.COLUMNS}
        cols["qualities"] = cols["qualities"].reshape(len(notes), len(QUALITIES))
        return LabelTable(**cols)

    def __len__(self) -> int:
        return len(self.note_str)

    def take(self, index: np.ndarray) -> LabelTable:
        """Rows ``index`` (any integer array) of every column."""
        return LabelTable(**{c: getattr(self, c)[index] for c in self.COLUMNS})

    def columns(self) -> dict[str, np.ndarray]:
        return {c: getattr(self, c) for c in self.COLUMNS}
