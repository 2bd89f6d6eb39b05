"""Noise-like notes: the spectral flatness of a note's sustained part.

Spectral flatness is the geometric mean of a power spectrum over its arithmetic mean: near 1 for
white noise (every frequency equally strong), near 0 for a tone (a few strong partials). NSynth
test's noise notes (brass_acoustic_046 at pitches 84-108, magenta issue 2092) are noise over
their whole length; real instruments' notes, even breathy ones, concentrate their power in
partials. The spectrum is averaged over the sustained part first (Welch's method), so the
flatness of noise comes out near 1 rather than the 0.56 of a single frame's periodogram.

Plain numpy on (rows, samples) float audio in [-1, 1]; :mod:`.audit` reads the cache.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

SAMPLE_RATE = 16_000
FRAME = 512  # 32 ms frames, Hann window, hop of half a frame
SUSTAIN_FROM = 0.25  # s: the attack before this is left out
SUSTAIN_TO = 2.5  # s: NSynth notes are held 3 s; the release after is left out
SUSTAIN_DB = 30.0  # frames more than this below the note's loudest frame are left out (decayed, or silent)
EPS = 1e-12


def sustained_spectrum(audio: np.ndarray, rate: int = SAMPLE_RATE, frame: int = FRAME) -> np.ndarray:
    """(rows, frame // 2) mean power spectrum of each note's sustained part (without the DC bin).

    ``audio`` (rows, samples) float. The sustained part: frames from :data:`SUSTAIN_FROM` to
    :data:`SUSTAIN_TO` seconds (as far as the audio goes) whose energy is within
    :data:`SUSTAIN_DB` of the note's loudest such frame. A note with no energy there gives zeros.
    """
    x = np.asarray(audio, np.float64)
    start, stop = int(SUSTAIN_FROM * rate), min(x.shape[1], int(SUSTAIN_TO * rate))
    hop = frame // 2
    count = max(0, (stop - start - frame) // hop + 1)
    if count == 0:
        return np.zeros((len(x), frame // 2))
    # (rows, frames, frame): windows over a view (no copy of the overlapping frames before the window)
    frames = sliding_window_view(x[:, start:stop], frame, axis=1)[:, : count * hop : hop] * np.hanning(frame)
    spectrum = np.fft.rfft(frames, axis=-1)[..., 1 : frame // 2 + 1]
    power = spectrum.real**2 + spectrum.imag**2  # (rows, frames, bins); |z|**2 without the square root
    energy = power.sum(-1)  # (rows, frames)
    loud = energy >= energy.max(1, keepdims=True) * 10 ** (-SUSTAIN_DB / 10)
    loud &= energy > 0
    used = np.maximum(loud.sum(1), 1)[:, None]
    # the loud frames' power summed per row: (rows, 1, frames) @ (rows, frames, bins), no masked copy
    return (loud[:, None, :].astype(np.float64) @ power)[:, 0] / used


def spectral_flatness(audio: np.ndarray, rate: int = SAMPLE_RATE, frame: int = FRAME) -> np.ndarray:
    """(rows,) spectral flatness in [0, 1] of each note's sustained part (see
    :func:`sustained_spectrum`); 0 for a note with no energy there."""
    p = sustained_spectrum(audio, rate, frame)
    mean = p.mean(1)
    geo = np.exp(np.log(p + EPS).mean(1))
    return np.where(mean > EPS, geo / np.maximum(mean, EPS), 0.0)
