"""A hand-made corpus whose labels can be read off the audio: each note a tone at its MIDI pitch,
as loud as its velocity says, bright (with harmonics) or not, fast-decaying or not; and, planted
among them, notes of pure white noise (as NSynth test's brass_acoustic_046 notes are).

For the tasks' tests (every label learnable, so "above chance" is a fair test) and the noise
audit's (the planted notes must be found, and only they).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nsynth_prep.corpus.layouts import SplitWriter
from nsynth_prep.labels import FAMILIES, NOTE_SAMPLES, QUALITIES, SAMPLE_RATE, SOURCES, note_str

PITCHES = (48, 52, 55, 60, 64, 67)
VELOCITIES = (25, 75, 127)
# (family, instrument index) per split: instrument-disjoint splits, as NSynth's
INSTRUMENTS = {"train": ((4, 0), (3, 1), (4, 2), (3, 3)), "valid": ((4, 4), (3, 5)), "test": ((4, 6), (3, 7))}


def tone(pitch: int, velocity: int, bright: bool, fast: bool, rng: np.random.Generator) -> np.ndarray:
    """(64000,) int16: a tone at MIDI ``pitch``, peak ``velocity`` / 127 of full scale, harmonics
    when ``bright``, decaying in 0.2 s (else 2 s) when ``fast``, with a little noise."""
    t = np.arange(NOTE_SAMPLES) / SAMPLE_RATE
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    harmonics = (1, 2, 3, 4, 5) if bright else (1,)
    x = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k for k in harmonics)
    x = x * np.exp(-t / (0.2 if fast else 2.0)) + 0.002 * rng.standard_normal(len(t))
    x = x / np.abs(x).max() * 0.9 * velocity / 127
    return np.round(x * 32767).astype(np.int16)


def noise(velocity: int, rng: np.random.Generator) -> np.ndarray:
    """(64000,) int16 white noise over the whole note, at the note's loudness."""
    x = rng.uniform(-1, 1, NOTE_SAMPLES) * 0.9 * velocity / 127
    return np.round(x * 32767).astype(np.int16)


def write_hand_corpus(out: Path, noise_notes: dict[str, list[str]] | None = None, seed: int = 0) -> dict[str, list[str]]:
    """Write ``nsynth-<split>/`` (JSON+WAV) folders of tones to ``out`` (72 train, 36 valid, 36 test
    notes); the notes named in ``noise_notes[split]`` (note_str) are white noise instead. Returns
    each split's note_str, in order."""
    rng = np.random.default_rng(seed)
    noise_notes = noise_notes or {}
    written: dict[str, list[str]] = {}
    note_id = 0
    for split, instruments in INSTRUMENTS.items():
        written[split] = []
        with SplitWriter(out, split, ("jsonwav",), seed) as w:
            for family, index in instruments:
                for pitch in PITCHES:
                    for velocity in VELOCITIES:
                        bright, fast = bool(rng.integers(2)), bool(rng.integers(2))
                        flags = [int(q == "bright" and bright) or int(q == "fast_decay" and fast) for q in QUALITIES]
                        name = note_str(family, 0, index, pitch, velocity)
                        audio = (noise(velocity, rng) if name in noise_notes.get(split, [])
                                 else tone(pitch, velocity, bright, fast, rng))
                        w.add({"qualities": flags, "pitch": pitch, "note": note_id,
                               "instrument_source_str": SOURCES[0], "velocity": velocity,
                               "instrument_str": name.rsplit("-", 2)[0], "instrument": index,
                               "sample_rate": SAMPLE_RATE,
                               "qualities_str": [q for q, f in zip(QUALITIES, flags, strict=True) if f],
                               "instrument_source": 0, "note_str": name, "instrument_family": family,
                               "instrument_family_str": FAMILIES[family]}, audio)
                        written[split].append(name)
                        note_id += 1
    return written
