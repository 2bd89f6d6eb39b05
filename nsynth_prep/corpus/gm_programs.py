"""The 128 General MIDI programs as NSynth instruments: family, source and natural pitch range.

NSynth's source says how the sound was made: ``acoustic`` (a recorded acoustic instrument),
``electronic`` (a recorded electric or electronic instrument: electric piano, organ, guitar,
bass) or ``synthetic`` (synthesized). The GM groups map to NSynth's families; programs with no
NSynth family (accordions and harmonica, pads, effects, percussion, sound effects) have
``family=None`` and are not rendered unless a ``--family-map`` file maps them. Pitch ranges are
the instrument's usual playing range in MIDI notes (for families of sizes, e.g. saxophones,
the member's). ``--family-map`` is JSON keyed by program number::

    {"21": {"family": "reed", "source": "acoustic"},
     "88": {"family": "synth_lead", "source": "synthetic", "pitch": [36, 96]},
     "47": null}

(``null`` leaves a program out; ``pitch`` is optional and defaults to the table's range.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nsynth_prep.errors import ConfigError
from nsynth_prep.labels import FAMILIES, SOURCES


@dataclass(frozen=True)
class Program:
    """One GM program as an NSynth instrument."""

    number: int  # 0..127, the preset number in a GM SoundFont's bank 0
    name: str
    family: str | None  # NSynth family, or None: not rendered
    source: str  # acoustic, electronic or synthetic
    low: int  # natural pitch range, MIDI notes, inclusive
    high: int


A, E, S = "acoustic", "electronic", "synthetic"
_ROWS: tuple[tuple[str, str | None, str, int, int], ...] = (
    # 0-7 piano
    ("Acoustic Grand Piano", "keyboard", A, 21, 108), ("Bright Acoustic Piano", "keyboard", A, 21, 108),
    ("Electric Grand Piano", "keyboard", E, 21, 108), ("Honky-tonk Piano", "keyboard", A, 21, 108),
    ("Electric Piano 1", "keyboard", E, 28, 100), ("Electric Piano 2", "keyboard", S, 28, 100),
    ("Harpsichord", "keyboard", A, 29, 89), ("Clavinet", "keyboard", E, 29, 88),
    # 8-15 chromatic percussion
    ("Celesta", "mallet", A, 60, 108), ("Glockenspiel", "mallet", A, 79, 108),
    ("Music Box", "mallet", A, 60, 96), ("Vibraphone", "mallet", A, 53, 89),
    ("Marimba", "mallet", A, 45, 96), ("Xylophone", "mallet", A, 65, 108),
    ("Tubular Bells", "mallet", A, 60, 77), ("Dulcimer", "mallet", A, 50, 88),
    # 16-23 organ; accordions and harmonica (free reeds) have no NSynth family
    ("Drawbar Organ", "organ", E, 36, 96), ("Percussive Organ", "organ", E, 36, 96),
    ("Rock Organ", "organ", E, 36, 96), ("Church Organ", "organ", A, 24, 96),
    ("Reed Organ", "organ", A, 36, 96), ("Accordion", None, A, 41, 89),
    ("Harmonica", None, A, 60, 96), ("Tango Accordion", None, A, 41, 89),
    # 24-31 guitar
    ("Acoustic Guitar (nylon)", "guitar", A, 40, 84), ("Acoustic Guitar (steel)", "guitar", A, 40, 84),
    ("Electric Guitar (jazz)", "guitar", E, 40, 86), ("Electric Guitar (clean)", "guitar", E, 40, 86),
    ("Electric Guitar (muted)", "guitar", E, 40, 86), ("Overdriven Guitar", "guitar", E, 40, 86),
    ("Distortion Guitar", "guitar", E, 40, 86), ("Guitar Harmonics", "guitar", E, 52, 96),
    # 32-39 bass
    ("Acoustic Bass", "bass", A, 28, 60), ("Electric Bass (finger)", "bass", E, 28, 67),
    ("Electric Bass (pick)", "bass", E, 28, 67), ("Fretless Bass", "bass", E, 28, 67),
    ("Slap Bass 1", "bass", E, 28, 67), ("Slap Bass 2", "bass", E, 28, 67),
    ("Synth Bass 1", "bass", S, 24, 60), ("Synth Bass 2", "bass", S, 24, 60),
    # 40-47 strings; timpani are struck with mallets, not bowed or plucked
    ("Violin", "string", A, 55, 103), ("Viola", "string", A, 48, 88),
    ("Cello", "string", A, 36, 76), ("Contrabass", "string", A, 28, 67),
    ("Tremolo Strings", "string", A, 36, 96), ("Pizzicato Strings", "string", A, 36, 96),
    ("Orchestral Harp", "string", A, 24, 103), ("Timpani", "mallet", A, 40, 57),
    # 48-55 ensemble
    ("String Ensemble 1", "string", A, 28, 96), ("String Ensemble 2", "string", A, 28, 96),
    ("Synth Strings 1", "string", S, 36, 96), ("Synth Strings 2", "string", S, 36, 96),
    ("Choir Aahs", "vocal", A, 40, 84), ("Voice Oohs", "vocal", A, 40, 84),
    ("Synth Voice", "vocal", S, 40, 84), ("Orchestra Hit", None, A, 48, 84),
    # 56-63 brass
    ("Trumpet", "brass", A, 54, 86), ("Trombone", "brass", A, 40, 77),
    ("Tuba", "brass", A, 26, 65), ("Muted Trumpet", "brass", A, 54, 82),
    ("French Horn", "brass", A, 35, 77), ("Brass Section", "brass", A, 36, 84),
    ("Synth Brass 1", "brass", S, 36, 84), ("Synth Brass 2", "brass", S, 36, 84),
    # 64-71 reed
    ("Soprano Sax", "reed", A, 56, 88), ("Alto Sax", "reed", A, 49, 81),
    ("Tenor Sax", "reed", A, 44, 76), ("Baritone Sax", "reed", A, 36, 69),
    ("Oboe", "reed", A, 58, 91), ("English Horn", "reed", A, 52, 81),
    ("Bassoon", "reed", A, 34, 75), ("Clarinet", "reed", A, 50, 91),
    # 72-79 pipe
    ("Piccolo", "flute", A, 74, 108), ("Flute", "flute", A, 60, 96),
    ("Recorder", "flute", A, 60, 96), ("Pan Flute", "flute", A, 60, 96),
    ("Blown Bottle", "flute", A, 60, 84), ("Shakuhachi", "flute", A, 55, 84),
    ("Whistle", "flute", A, 60, 96), ("Ocarina", "flute", A, 60, 84),
    # 80-87 synth lead
    ("Lead 1 (square)", "synth_lead", S, 36, 96), ("Lead 2 (sawtooth)", "synth_lead", S, 36, 96),
    ("Lead 3 (calliope)", "synth_lead", S, 36, 96), ("Lead 4 (chiff)", "synth_lead", S, 36, 96),
    ("Lead 5 (charang)", "synth_lead", S, 36, 96), ("Lead 6 (voice)", "synth_lead", S, 36, 96),
    ("Lead 7 (fifths)", "synth_lead", S, 36, 96), ("Lead 8 (bass + lead)", "synth_lead", S, 36, 96),
    # 88-95 synth pad, 96-103 synth effects: no NSynth family
    ("Pad 1 (new age)", None, S, 36, 96), ("Pad 2 (warm)", None, S, 36, 96),
    ("Pad 3 (polysynth)", None, S, 36, 96), ("Pad 4 (choir)", None, S, 36, 96),
    ("Pad 5 (bowed)", None, S, 36, 96), ("Pad 6 (metallic)", None, S, 36, 96),
    ("Pad 7 (halo)", None, S, 36, 96), ("Pad 8 (sweep)", None, S, 36, 96),
    ("FX 1 (rain)", None, S, 36, 96), ("FX 2 (soundtrack)", None, S, 36, 96),
    ("FX 3 (crystal)", None, S, 36, 96), ("FX 4 (atmosphere)", None, S, 36, 96),
    ("FX 5 (brightness)", None, S, 36, 96), ("FX 6 (goblins)", None, S, 36, 96),
    ("FX 7 (echoes)", None, S, 36, 96), ("FX 8 (sci-fi)", None, S, 36, 96),
    # 104-111 ethnic
    ("Sitar", "guitar", A, 48, 84), ("Banjo", "guitar", A, 48, 84),
    ("Shamisen", "guitar", A, 50, 84), ("Koto", "guitar", A, 55, 91),
    ("Kalimba", "mallet", A, 60, 91), ("Bag pipe", "reed", A, 55, 77),
    ("Fiddle", "string", A, 55, 96), ("Shanai", "reed", A, 60, 88),
    # 112-119 percussive, 120-127 sound effects: no NSynth family
    ("Tinkle Bell", None, A, 72, 108), ("Agogo", None, A, 60, 84),
    ("Steel Drums", None, A, 52, 88), ("Woodblock", None, A, 60, 84),
    ("Taiko Drum", None, A, 36, 60), ("Melodic Tom", None, A, 40, 72),
    ("Synth Drum", None, S, 36, 72), ("Reverse Cymbal", None, S, 48, 84),
    ("Guitar Fret Noise", None, E, 40, 84), ("Breath Noise", None, A, 48, 84),
    ("Seashore", None, S, 48, 84), ("Bird Tweet", None, S, 60, 96),
    ("Telephone Ring", None, E, 60, 84), ("Helicopter", None, S, 36, 72),
    ("Applause", None, A, 48, 84), ("Gunshot", None, A, 36, 72),
)
GM_PROGRAMS: tuple[Program, ...] = tuple(Program(i, *row) for i, row in enumerate(_ROWS))
assert len(GM_PROGRAMS) == 128


def parse_programs(text: str | None) -> frozenset[int] | None:
    """``"0-87,104-111"`` -> the program numbers; None (all mapped programs) for None or ``""``."""
    if not text:
        return None
    numbers: set[int] = set()
    for part in str(text).split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise ConfigError(f"--programs takes GM program numbers and ranges like 0-87,104-111, not {text!r}") from None
        if not 0 <= first <= last <= 127:
            raise ConfigError(f"--programs: {part.strip()!r} is not a range within 0..127")
        numbers.update(range(first, last + 1))
    return frozenset(numbers)


def program_table(family_map: Path | None = None) -> tuple[Program, ...]:
    """The GM table with the overrides of a ``--family-map`` JSON file applied.

    Raises
    ------
    ConfigError
        The file is missing, not JSON, or maps a program to an unknown family, source or range;
        the message names the file and the program.
    """
    if family_map is None:
        return GM_PROGRAMS
    path = Path(family_map)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such --family-map file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the --family-map JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: --family-map must be a JSON object keyed by program number")
    table = list(GM_PROGRAMS)
    for key, value in data.items():
        table[_program_number(path, key)] = _override(path, GM_PROGRAMS[_program_number(path, key)], key, value)
    return tuple(table)


def _program_number(path: Path, key: str) -> int:
    try:
        number = int(key)
    except ValueError:
        number = -1
    if not 0 <= number <= 127:
        raise ConfigError(f"{path}: key {key!r} is not a GM program number 0..127")
    return number


def _override(path: Path, program: Program, key: str, value: Any) -> Program:
    if value is None:
        return replace(program, family=None)
    where = f"{path}: program {key}"
    if not isinstance(value, dict) or not {"family", "source"} <= value.keys() or value.keys() - {"family", "source", "pitch"}:
        raise ConfigError(f'{where}: expected null or {{"family": ..., "source": ..., "pitch": [low, high]}}, not {value!r}')
    if value["family"] not in FAMILIES:
        raise ConfigError(f"{where}: unknown family {value['family']!r}; expected one of {', '.join(FAMILIES)}")
    if value["source"] not in SOURCES:
        raise ConfigError(f"{where}: unknown source {value['source']!r}; expected one of {', '.join(SOURCES)}")
    pitch = value.get("pitch", [program.low, program.high])
    if not (isinstance(pitch, list) and len(pitch) == 2 and all(type(k) is int for k in pitch)
            and 0 <= pitch[0] <= pitch[1] <= 127):
        raise ConfigError(f"{where}: pitch must be [low, high] within 0..127, not {pitch!r}")
    low, high = pitch
    return replace(program, family=value["family"], source=value["source"], low=low, high=high)


def markdown_table(table: tuple[Program, ...] = GM_PROGRAMS) -> str:
    """The table for docs/render.md: one row per run of consecutive programs with the same mapping."""
    lines = ["| programs | GM names | family | source | pitch |", "|---|---|---|---|---|"]
    def key(p: Program) -> tuple[object, ...]:
        return (p.family, p.source, p.low, p.high) if p.family else (None,)

    rows: list[list[Program]] = []
    for p in table:
        if rows and key(rows[-1][-1]) == key(p):
            rows[-1].append(p)
        else:
            rows.append([p])
    for run in rows:
        first, last = run[0], run[-1]
        numbers = str(first.number) if first is last else f"{first.number}-{last.number}"
        names = ", ".join(p.name for p in run)
        family = first.family or "(none)"
        source = first.source if first.family else ""
        pitch = f"{first.low}..{first.high}" if first.family else ""
        lines.append(f"| {numbers} | {names} | {family} | {source} | {pitch} |")
    return "\n".join(lines)
