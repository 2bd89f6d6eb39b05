"""The numerics of synthetic NSynth notes: instruments, their timbre, the plan of a corpus, and
each note's audio.

Timbre depends on the family (harmonic roll-off, odd/even balance, formants, inharmonic
partials, envelope, pitch range, vibrato, breath noise) and on the source (acoustic notes are
noisier and slightly inharmonic, synthetic ones brighter), and every instrument draws its own
parameters around its family's, so families overlap as real ones do. Splits are
instrument-disjoint and synth_lead is in train only, as in NSynth. Each note is rendered from
its own seeded generator, so the corpus is the same for a seed whatever is written.

Pure numbers (numpy and the label vocabularies): the decoder of the described ("synth") source,
so it sits with the readers: what the reader of a described corpus
(:mod:`nsynth_prep.readers.descriptor`) renders, and what the corpus writers
(:mod:`nsynth_prep.corpus.synth`) write out as NSynth files.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from nsynth_prep.errors import ConfigError
from nsynth_prep.labels import FAMILIES, NOTE_SAMPLES, QUALITIES, SAMPLE_RATE, SOURCES, SPLITS, VELOCITIES, note_str

__all__ = ["NOTE_IDS", "Instrument", "iter_corpus_split", "iter_split", "make_instruments", "parse_notes_per_split",
           "plan_corpus", "plan_split", "render_entry", "render_note", "render_planned"]

SYNTH_LEAD = FAMILIES.index("synth_lead")
TABLE = 2048  # wavetable length, one period
NOTES_PER_INSTRUMENT = 40
NOTE_IDS = 400_000  # note ids are drawn from 0..NOTE_IDS-1 (NSynth's run to about 306,000)

# Per family: pitch range, harmonic roll-off exponent, odd-harmonic weight, attack (s),
# decay time constant (s), vibrato depth (semitones), breath noise, inharmonic (mallet-like).
FAMILY_TIMBRE: dict[str, dict[str, Any]] = {
    "bass":       dict(pitch=(28, 60), rolloff=2.2, odd=1.0, attack=0.010, decay=1.2, vibrato=0.00, noise=0.01, inharm=0),
    "brass":      dict(pitch=(45, 82), rolloff=0.9, odd=1.0, attack=0.060, decay=6.0, vibrato=0.05, noise=0.02, inharm=0),
    "flute":      dict(pitch=(60, 96), rolloff=3.2, odd=1.0, attack=0.080, decay=8.0, vibrato=0.12, noise=0.08, inharm=0),
    "guitar":     dict(pitch=(40, 84), rolloff=1.5, odd=1.0, attack=0.003, decay=0.9, vibrato=0.00, noise=0.01, inharm=0),
    "keyboard":   dict(pitch=(21, 108), rolloff=1.8, odd=1.0, attack=0.004, decay=2.0, vibrato=0.00, noise=0.005, inharm=0),
    "mallet":     dict(pitch=(48, 96), rolloff=1.6, odd=1.0, attack=0.002, decay=0.35, vibrato=0.00, noise=0.01, inharm=1),
    "organ":      dict(pitch=(36, 96), rolloff=1.1, odd=1.0, attack=0.020, decay=30.0, vibrato=0.00, noise=0.0, inharm=0),
    "reed":       dict(pitch=(50, 86), rolloff=1.2, odd=4.0, attack=0.040, decay=7.0, vibrato=0.04, noise=0.03, inharm=0),
    "string":     dict(pitch=(40, 96), rolloff=1.3, odd=1.0, attack=0.180, decay=6.0, vibrato=0.15, noise=0.02, inharm=0),
    "synth_lead": dict(pitch=(48, 84), rolloff=1.0, odd=1.0, attack=0.010, decay=20.0, vibrato=0.08, noise=0.0, inharm=0),
    "vocal":      dict(pitch=(48, 80), rolloff=1.4, odd=1.0, attack=0.070, decay=6.0, vibrato=0.20, noise=0.03, inharm=0),
}
# NSynth's train family counts, flattened by a square root: a mild, realistic imbalance.
FAMILY_WEIGHT = np.sqrt([65474, 12675, 8773, 32690, 51821, 34201, 34477, 13911, 19474, 5501, 10208])
SOURCE_WEIGHT = np.array([0.4, 0.35, 0.25])


@dataclass(frozen=True)
class Instrument:
    family: int
    source: int
    index: int  # the NNN of note_str, per family and source
    id: int  # NSynth's global instrument id
    notes: int  # how many notes it plays in its split
    params: dict[str, float]


def parse_notes_per_split(text: str) -> dict[str, int]:
    """``"2400,400,400"`` (train, valid, test) or one number for all three."""
    try:
        parts = [int(p) for p in str(text).split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3 or min(parts) < 1:
        raise ConfigError(f"--notes-per-split takes N or TRAIN,VALID,TEST (positive), not {text!r}")
    return dict(zip(SPLITS, parts, strict=True))


def make_instruments(notes_per_split: dict[str, int], seed: int) -> dict[str, list[Instrument]]:
    """Instrument-disjoint instruments of every split, each with its own timbre parameters."""
    rng = np.random.default_rng([seed, 1])
    counters: dict[tuple[int, int], int] = {}
    next_id = 0
    out: dict[str, list[Instrument]] = {}
    for split in SPLITS:
        families = [f for f in range(len(FAMILIES)) if split == "train" or f != SYNTH_LEAD]
        weights = FAMILY_WEIGHT[families] / FAMILY_WEIGHT[families].sum()
        # Largest-remainder split of the split's notes over families, then over instruments.
        share = weights * notes_per_split[split]
        per_family = np.floor(share).astype(int)
        per_family[np.argsort(share - per_family)[::-1][: notes_per_split[split] - per_family.sum()]] += 1
        insts = []
        for fam, fam_notes in zip(families, per_family, strict=True):
            count = max(1, -(-int(fam_notes) // NOTES_PER_INSTRUMENT))
            for k in range(count if fam_notes else 0):
                src = int(rng.choice(3, p=SOURCE_WEIGHT))
                idx = counters.get((fam, src), 0)
                counters[(fam, src)] = idx + 1
                notes = int(fam_notes) // count + (k < int(fam_notes) % count)
                insts.append(Instrument(fam, src, idx, next_id, notes, _instrument_params(fam, src, rng)))
                next_id += 1
        out[split] = insts
    return out


def _instrument_params(family: int, source: int, rng: np.random.Generator) -> dict[str, float]:
    t = FAMILY_TIMBRE[FAMILIES[family]]
    jitter = lambda x, spread: float(x * np.exp(rng.normal(0, spread)))  # noqa: E731
    lo, hi = t["pitch"]
    span = hi - lo
    p_lo = int(lo + rng.integers(0, max(1, span // 4)))
    p_hi = int(hi - rng.integers(0, max(1, span // 4)))
    params = dict(
        pitch_lo=p_lo, pitch_hi=max(p_lo + 8, p_hi),
        rolloff=jitter(t["rolloff"], 0.25), odd=jitter(t["odd"], 0.3), attack=jitter(t["attack"], 0.4),
        decay=jitter(t["decay"], 0.35), vibrato=jitter(t["vibrato"] + 1e-3, 0.4),
        vib_rate=float(rng.uniform(4.5, 6.5)), noise=jitter(t["noise"] + 1e-3, 0.4),
        inharm=float(t["inharm"]), formant=float(rng.uniform(500, 1200)), release=float(rng.uniform(0.05, 0.6)),
    )
    if source == 0:  # acoustic: breathier, a little inharmonic
        params["noise"] *= 1.8
        params["stretch"] = float(rng.uniform(0.0002, 0.001))
    else:
        params["stretch"] = 0.0
    if source == 2:  # synthetic: brighter, more square-like
        params["rolloff"] *= 0.75
        params["odd"] *= 1.5
    return params


def render_note(params: dict[str, float], family: int, pitch: int, velocity: int,
                rng: np.random.Generator) -> np.ndarray:
    """One 4-second note: (64000,) int16. Held for 3 s, then released."""
    t = np.arange(NOTE_SAMPLES) / SAMPLE_RATE
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    loud = (velocity / 127) ** 0.7
    rolloff = params["rolloff"] * (1.25 - 0.35 * velocity / 127)  # louder is brighter
    vib = params["vibrato"] * np.sin(2 * np.pi * params["vib_rate"] * t) * np.minimum(1, t / 0.5)
    freq = f0 * 2 ** (vib / 12)
    phase = np.cumsum(freq) / SAMPLE_RATE  # in periods
    if params["inharm"]:  # mallets: a few inharmonic partials, the higher ones decaying faster
        ratios, amps = np.array([1.0, 2.76, 5.40, 8.93]), np.array([1.0, 0.5, 0.25, 0.12]) ** (rolloff / 1.6)
        wave: np.ndarray = np.zeros(NOTE_SAMPLES)
        for r, a in zip(ratios, amps, strict=True):
            if f0 * r < SAMPLE_RATE / 2:
                wave += a * np.sin(2 * np.pi * r * phase) * np.exp(-t * r / (params["decay"] * 2))
    else:
        harmonics = np.arange(1, max(2, min(40, int(SAMPLE_RATE / 2 / f0))) + 1)
        amps = harmonics.astype(np.float64) ** (-rolloff) * np.where(harmonics % 2 == 1, 1.0, 1.0 / params["odd"])
        if FAMILIES[family] == "vocal":  # a formant bump
            amps *= 1 + 3 * np.exp(-(((harmonics * f0 - params["formant"]) / 300) ** 2))
        grid = np.arange(TABLE) / TABLE
        # Slight stretch of partials (acoustic) is folded into a per-harmonic phase offset.
        offsets = rng.uniform(0, 2 * np.pi, len(harmonics)) if params["stretch"] else np.zeros(len(harmonics))
        table = (amps[:, None] * np.sin(2 * np.pi * harmonics[:, None] * grid[None, :] + offsets[:, None])).sum(0)
        pos = (phase * (1 + params["stretch"])) % 1.0 * TABLE
        i0 = pos.astype(np.int64)
        frac = pos - i0
        wave = table[i0] * (1 - frac) + table[(i0 + 1) % TABLE] * frac
    env = np.minimum(1.0, t / params["attack"]) * np.exp(-t / params["decay"])
    env *= np.where(t < 3.0, 1.0, np.exp(-(t - 3.0) / params["release"]))
    noise = params["noise"] * rng.standard_normal(NOTE_SAMPLES) * env
    out = wave / (np.abs(wave).max() + 1e-9) * env + noise
    out *= 0.8 * loud / (np.abs(out).max() + 1e-9)
    return np.round(out * 32767).astype(np.int16)


def _qualities(params: dict[str, float], source: int) -> list[int]:
    flags = dict(bright=params["rolloff"] < 1.0, dark=params["rolloff"] > 2.2, distortion=False,
                 fast_decay=params["decay"] < 0.5, long_release=params["release"] > 0.45, multiphonic=False,
                 nonlinear_env=params["vibrato"] > 0.15, percussive=params["attack"] < 0.004,
                 reverb=source == 0 and params["noise"] > 0.05, **{"tempo-synced": False})
    return [int(flags[q]) for q in QUALITIES]


def plan_split(instruments: list[Instrument], seed: int, note_ids: Iterator[int]
               ) -> list[tuple[dict[str, Any], Instrument]]:
    """The examples.json entry of every note of a split, with its instrument, in corpus order."""
    return list(iter_split(instruments, seed, note_ids))


def iter_split(instruments: list[Instrument], seed: int, note_ids: Iterator[int]
               ) -> Iterator[tuple[dict[str, Any], Instrument]]:
    """:func:`plan_split`'s notes one at a time (a dict per note is ~1 KB: NSynth train's are
    0.3 GB held at once, which the reader of a described corpus need not hold)."""
    for inst in instruments:
        rng = np.random.default_rng([seed, 2, inst.id])
        pitches = np.arange(inst.params["pitch_lo"], inst.params["pitch_hi"] + 1)
        combos = [(int(p), v) for p in pitches for v in VELOCITIES]
        picks = rng.choice(len(combos), size=min(inst.notes, len(combos)), replace=False)
        qualities = _qualities(inst.params, inst.source)
        for pitch, velocity in sorted(combos[i] for i in picks):
            name = note_str(inst.family, inst.source, inst.index, pitch, velocity)
            yield ({
                "qualities": qualities, "pitch": pitch, "note": next(note_ids),
                "instrument_source_str": SOURCES[inst.source], "velocity": velocity,
                "instrument_str": name.rsplit("-", 2)[0], "instrument": inst.id, "sample_rate": SAMPLE_RATE,
                "qualities_str": [q for q, f in zip(QUALITIES, qualities, strict=True) if f],
                "instrument_source": inst.source, "note_str": name, "instrument_family": inst.family,
                "instrument_family_str": FAMILIES[inst.family],
            }, inst)


def render_entry(entry: dict[str, Any], inst: Instrument, seed: int) -> np.ndarray:
    """The audio of one planned note: (64000,) int16, from its own seeded generator."""
    return render_planned(entry["note"], entry["pitch"], entry["velocity"], inst, seed)


def render_planned(note: int, pitch: int, velocity: int, inst: Instrument, seed: int) -> np.ndarray:
    """The audio of the planned note with id ``note``: (64000,) int16 (what :func:`render_entry` gives)."""
    return render_note(inst.params, inst.family, int(pitch), int(velocity), np.random.default_rng([seed, 3, int(note)]))


def plan_corpus(notes_per_split: dict[str, int], seed: int) -> dict[str, list[tuple[dict[str, Any], Instrument]]]:
    """Every split's planned notes (see :func:`plan_split`): what :func:`write_corpus` writes."""
    instruments = make_instruments(notes_per_split, seed)
    ids = iter(np.random.default_rng([seed, 4]).permutation(NOTE_IDS).tolist())
    return {split: plan_split(instruments[split], seed, ids) for split in SPLITS}


def iter_corpus_split(notes_per_split: dict[str, int], seed: int, split: str
                      ) -> tuple[list[Instrument], Iterator[tuple[dict[str, Any], Instrument]]]:
    """One split of :func:`plan_corpus`: its instruments, and its notes one at a time (the
    splits before it are planned and dropped, for the note ids they take)."""
    instruments = make_instruments(notes_per_split, seed)
    ids = iter(np.random.default_rng([seed, 4]).permutation(NOTE_IDS).tolist())
    for before in SPLITS[: SPLITS.index(split)]:
        deque(iter_split(instruments[before], seed, ids), maxlen=0)
    return instruments[split], iter_split(instruments[split], seed, ids)
