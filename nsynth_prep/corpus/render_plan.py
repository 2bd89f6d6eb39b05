"""What ``prep render`` will play: instruments, their split, numbering, notes and note ids.

An instrument is one (SoundFont, bank, preset) whose GM program has an NSynth family (bank 128,
where GM SoundFonts keep their drum kits, is never used). The plan depends only on the fonts'
preset lists and the options, never on the audio, so an interrupted render resumes with the
same plan and every worker can render any instrument on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nsynth_prep.corpus.gm_programs import Program
from nsynth_prep.corpus.layouts import SPLITS
from nsynth_prep.corpus.soundfont import PERCUSSION_BANK, read_presets
from nsynth_prep.errors import ConfigError
from nsynth_prep.labels import FAMILIES, SOURCES, note_str

HELD_OUT = 0.1  # share of each family's instruments in valid, and in test, with the automatic split


@dataclass(frozen=True)
class Instrument:
    """One instrument of the corpus and the notes it plays."""

    font: str  # the SoundFont's path
    bank: int
    program: int
    preset: str  # the preset's name in the SoundFont
    family: int  # NSynth ids
    source: int
    split: str
    index: int  # the NNN of instrument_str, counted per family and source over all splits
    id: int  # NSynth's global ``instrument``
    pitches: tuple[int, ...]
    velocities: tuple[int, ...]
    first_note: int  # ``note`` id of its first (pitch, velocity); the rest follow in order

    @property
    def instrument_str(self) -> str:
        return f"{FAMILIES[self.family]}_{SOURCES[self.source]}_{self.index:03d}"

    def notes(self) -> list[tuple[int, int, int, str]]:
        """(pitch, velocity, note id, note_str) of every note, pitch-major."""
        pairs = [(p, v) for p in self.pitches for v in self.velocities]
        return [(p, v, self.first_note + k, note_str(self.family, self.source, self.index, p, v))
                for k, (p, v) in enumerate(pairs)]


@dataclass(frozen=True)
class _Candidate:
    font_rank: int
    font: str
    bank: int
    preset: str
    program: Program


def parse_velocities(text: str) -> tuple[int, ...]:
    """``"25,50,75,100,127"`` -> sorted unique velocities 1..127."""
    try:
        values = sorted({int(v) for v in str(text).split(",")})
    except ValueError:
        values = []
    if not values or not 1 <= values[0] <= values[-1] <= 127:
        raise ConfigError(f"--velocities takes MIDI velocities 1..127 separated by commas, not {text!r}")
    return tuple(values)


def parse_split_fonts(specs: Sequence[str]) -> dict[str, list[Path]]:
    """``["train=A.sf2,B.sf3", "valid=C.sf2"]`` -> ``{"train": [A, B], "valid": [C]}``."""
    out: dict[str, list[Path]] = {}
    for spec in specs:
        name, _, files = spec.partition("=")
        name = name.strip()
        if name not in SPLITS or not files.strip():
            raise ConfigError(f"--split takes SPLIT=FONT[,FONT...] with SPLIT one of {', '.join(SPLITS)}, not {spec!r}")
        out.setdefault(name, []).extend(Path(f.strip()) for f in files.split(",") if f.strip())
    return out


def plan(fonts: Sequence[Path], split_fonts: dict[str, list[Path]] | None, table: Sequence[Program],
         programs: frozenset[int] | None, pitch_step: int, velocities: tuple[int, ...], seed: int) -> list[Instrument]:
    """Every instrument to render, in corpus order (train, valid, test; then font, bank, preset).

    Parameters
    ----------
    fonts
        The SoundFonts, in the order given. With ``split_fonts`` they may be left out (the fonts
        named there are used); a font given here must then be named there too.
    split_fonts
        Whole SoundFonts per split (``--split``), or None for the automatic split: within each
        family, instruments are shuffled with ``seed`` and about 10 % go to valid and 10 % to test
        (one each once a family has 3 instruments; fewer stay in train).
    table
        The 128 programs (:func:`nsynth_prep.corpus.gm_programs.program_table`).
    programs
        Program numbers to render (None: every program with a family).
    """
    if pitch_step < 1:
        raise ConfigError(f"--pitch-step must be at least 1, not {pitch_step}")
    split_of: dict[Path, str] = {}  # by resolved path: ./A.sf2 and A.sf2 are one font
    named: dict[Path, Path] = {}  # resolved -> as the user wrote it
    if split_fonts:
        for split, paths in split_fonts.items():
            for p in paths:
                key = Path(p).resolve()
                if split_of.setdefault(key, split) != split:
                    raise ConfigError(f"--split: {p} is in both {split_of[key]} and {split}")
                named.setdefault(key, Path(p))
        unassigned = [str(f) for f in fonts if Path(f).resolve() not in split_of]
        if unassigned:
            raise ConfigError(f"{unassigned[0]}: with --split, every SoundFont must be named in a --split")
        fonts = list(named.values())
    if not fonts:
        raise ConfigError("no SoundFont given")
    candidates = _candidates(fonts, table, programs)
    if split_fonts:
        assigned = {c: split_of[Path(c.font).resolve()] for c in candidates}
    else:
        assigned = _auto_split(candidates, seed)
    ordered = sorted(candidates, key=lambda c: (SPLITS.index(assigned[c]), c.font_rank, c.bank, c.program.number))
    counters: dict[tuple[int, int], int] = {}
    out: list[Instrument] = []
    first_note = 0
    for ident, c in enumerate(ordered):
        family, source = FAMILIES.index(str(c.program.family)), SOURCES.index(c.program.source)
        index = counters.get((family, source), 0)
        if index > 999:  # note_str has three digits for it
            raise ConfigError(f"more than 1000 {FAMILIES[family]}_{SOURCES[source]} instruments; render fewer fonts")
        counters[(family, source)] = index + 1
        pitches = tuple(range(c.program.low, c.program.high + 1, pitch_step))
        out.append(Instrument(c.font, c.bank, c.program.number, c.preset, family, source, assigned[c], index, ident,
                              pitches, velocities, first_note))
        first_note += len(pitches) * len(velocities)
    return out


def _candidates(fonts: Sequence[Path], table: Sequence[Program], programs: frozenset[int] | None) -> list[_Candidate]:
    out: list[_Candidate] = []
    seen_fonts: set[Path] = set()
    for rank, font in enumerate(fonts):
        if Path(font).resolve() in seen_fonts:
            continue
        seen_fonts.add(Path(font).resolve())
        seen: set[tuple[int, int]] = set()
        for preset in read_presets(font):
            prog = table[preset.program] if preset.program < len(table) else None
            if (preset.bank >= PERCUSSION_BANK or prog is None or prog.family is None
                    or (programs is not None and preset.program not in programs)
                    or (preset.bank, preset.program) in seen):
                continue
            seen.add((preset.bank, preset.program))
            out.append(_Candidate(rank, str(font), preset.bank, preset.name, prog))
    if not out:
        raise ConfigError(f"no preset of {', '.join(map(str, fonts))} has a GM program with an NSynth family "
                          "(and in --programs); see --family-map")
    return out


def _auto_split(candidates: list[_Candidate], seed: int) -> dict[_Candidate, str]:
    """Instrument-disjoint, family-stratified ~80/10/10, the same for the same fonts and seed."""
    out: dict[_Candidate, str] = {}
    for family in FAMILIES:
        members = sorted((c for c in candidates if c.program.family == family),
                         key=lambda c: (c.font_rank, c.bank, c.program.number))
        n = len(members)
        held = max(1, round(n * HELD_OUT)) if n >= 3 else 0
        order = np.random.default_rng([seed, FAMILIES.index(family)]).permutation(n)
        for rank, k in enumerate(order.tolist()):
            out[members[k]] = "valid" if rank < held else "test" if rank < 2 * held else "train"
    return out
