"""The numerics of a rendered note, as pure functions: resampling to 16 kHz, gain, silence, qualities.

The synthesizer runs at 48 kHz (:data:`RENDER_RATE`) and the note is brought to NSynth's
16 kHz by a linear-phase low-pass FIR and keeping every third sample. Rendering at 16 kHz
directly would fold everything a SoundFont sample holds between 8 and 22 kHz back into the
band (the synthesizer's interpolation does not band-limit), which is what makes high notes of
bright instruments sound metallic. The filter passes 0..7 kHz, falls to -80 dB at 8 kHz (the
new Nyquist frequency) and delays by exactly 40 output samples, which are skipped, so a note
still starts at sample 0.

Gain rule: one gain per instrument, so that its loudest rendered note peaks at
:data:`TARGET_PEAK` of full scale. Velocity dynamics within an instrument are kept, the
arbitrary level of each SoundFont preset is not, and nothing clips.
"""

from __future__ import annotations

import numpy as np

from nsynth_prep.labels import NOTE_SAMPLES, QUALITIES, SAMPLE_RATE

RENDER_RATE = 48_000  # Hz, the synthesizer's rate; 3 x NSynth's
DECIMATION = RENDER_RATE // SAMPLE_RATE
TAPS = 241  # Kaiser design for 80 dB over a 1 kHz transition at 48 kHz: (80 - 7.95) / (2.285 * 2pi/48) = 241
DELAY = (TAPS - 1) // 2  # 120 input samples = 40 output samples
RENDER_SAMPLES = NOTE_SAMPLES * DECIMATION + DELAY  # input samples one note needs (192,120)
TARGET_PEAK = 0.8  # of full scale, for an instrument's loudest note (-1.9 dBFS)
SILENT_PEAK = 1e-3  # of full scale, after gain: below it a note is dropped (= `nsynth audit`'s default)

# Envelope-derived qualities (see :func:`note_qualities`); every other quality is 0.
DERIVED_QUALITIES = ("fast_decay", "long_release", "nonlinear_env", "percussive")
HOP = 160  # samples between envelope frames (10 ms)
WINDOW = 800  # samples each envelope frame averages (50 ms)
NOTE_OFF_FRAME = 300  # 3.0 s
ATTACK_FRAMES = 100  # the attack is looked for in the first second
FLOOR_DB = -60.0  # envelope frames below peak - 60 dB are treated as silence


def lowpass_taps(taps: int = TAPS, cutoff: float = 7_500.0, rate: float = RENDER_RATE, beta: float = 7.857) -> np.ndarray:
    """Kaiser-windowed sinc low-pass, (taps,) float64, unit gain at 0 Hz.

    ``beta`` 7.857 is Kaiser's formula for 80 dB stop-band attenuation: 0.1102 * (80 - 8.7).
    """
    n = np.arange(taps) - (taps - 1) / 2
    h = np.sinc(2 * cutoff / rate * n) * np.kaiser(taps, beta)
    return h / h.sum()


_TAPS = lowpass_taps()


def decimate(x: np.ndarray, taps: np.ndarray = _TAPS, factor: int = DECIMATION,
             out_len: int = NOTE_SAMPLES) -> np.ndarray:
    """Low-pass filter and keep every ``factor``-th sample, compensating the filter's delay.

    Parameters
    ----------
    x
        (n,) samples at the high rate; sample ``k`` is at time ``k / rate``. Samples before 0 are
        taken as silence; ``x`` must hold at least ``(out_len - 1) * factor + delay + 1`` samples.
    taps
        (m,) odd-length linear-phase FIR, delay ``(m - 1) / 2``.

    Returns
    -------
    (out_len,) float64: ``y[j] = sum_k taps[k] * x[j * factor + delay - k]``, the filtered signal at
    time ``j * factor / rate``.
    """
    delay = (len(taps) - 1) // 2
    need = (out_len - 1) * factor + delay + 1
    if len(x) < need:
        raise ValueError(f"decimate needs {need} input samples, got {len(x)}")
    # Polyphase: taps k = factor * m + r only meet input samples j * factor + delay - r - factor * m,
    # so each phase r is one short convolution at the low rate (a third of the work of filtering
    # every input sample and dropping two thirds).
    pad = -(-len(taps) // factor) * factor
    xp = np.concatenate([np.zeros(pad), np.asarray(x[:need], np.float64)])
    y = np.zeros(out_len)
    for r in range(factor):
        h_r = taps[r::factor]
        start = pad + delay - r  # position in xp of input sample (delay - r) for output 0
        first = start - factor * (len(h_r) - 1)
        u = xp[first : start + factor * (out_len - 1) + 1 : factor]  # len(h_r) - 1 + out_len samples
        y += np.convolve(u, h_r, mode="valid")
    return y


def instrument_gain(peaks: np.ndarray, target: float = TARGET_PEAK) -> float:
    """The gain that makes an instrument's loudest note peak at ``target`` of full scale.

    Parameters
    ----------
    peaks
        (notes,) peak |amplitude| of every note of the instrument as rendered (any scale).

    Returns
    -------
    The gain, or 0.0 when every note is silent (the instrument is dropped).
    """
    top = float(np.max(peaks, initial=0.0))
    return target / top if top > 0 else 0.0


def to_pcm16(x: np.ndarray, gain: float) -> np.ndarray:
    """(n,) float -> (n,) int16 ``round(x * gain * 32767)``; with the gain rule it never clips.

    Clipped nonetheless at +-32767 (as a guard: a gain from other peaks could exceed full scale).
    """
    return np.clip(np.round(np.asarray(x, np.float64) * gain * 32767.0), -32767, 32767).astype(np.int16)


def is_silent(peak: float, gain: float, threshold: float = SILENT_PEAK) -> bool:
    """Whether a note whose raw peak is ``peak`` falls below ``threshold`` of full scale after ``gain``."""
    return peak * gain < threshold


def envelope_db(audio: np.ndarray, hop: int = HOP, window: int = WINDOW) -> np.ndarray:
    """RMS level every ``hop`` samples over ``window`` samples centred there, in dB below the loudest.

    The window is longer than a period of the lowest notes (32.7 Hz at MIDI 24 is 31 ms), so the
    level follows the envelope, not the waveform.

    Parameters
    ----------
    audio
        (n,) samples (int16 or float), ``n`` a multiple of ``hop``.

    Returns
    -------
    (n // hop,) float64, max 0 dB; frame ``j`` is centred on sample ``j * hop + hop // 2``
    (windows are cut at the ends of the note). Silent frames are -inf, all of them for an
    all-zero note.
    """
    x = np.asarray(audio, np.float64)
    n = len(x)
    energy = np.concatenate([[0.0], np.cumsum(x * x)])
    centres = np.arange(n // hop) * hop + hop // 2
    lo, hi = np.clip(centres - window // 2, 0, n), np.clip(centres + window // 2, 0, n)
    rms = np.sqrt(np.maximum(energy[hi] - energy[lo], 0.0) / (hi - lo))
    top = rms.max(initial=0.0)
    with np.errstate(divide="ignore"):
        return 20 * np.log10(rms / top) if top > 0 else np.full(len(rms), -np.inf)


def note_qualities(audio: np.ndarray) -> list[int]:
    """NSynth's 10 quality flags of one note, the four derivable from its envelope set honestly.

    On the envelope in dB below its peak (:func:`envelope_db`: 50 ms RMS every 10 ms), with the
    note-off at 3 s:

    * ``fast_decay``: before note-off (2.8-3.0 s) the level is down more than 40 dB ("decays
      substantially before the note-off");
    * ``long_release``: at the end of the note (3.8-4.0 s, 0.8 s after note-off) the level is
      still within 40 dB of the peak ("still present at the end of the sample");
    * ``percussive``: the peak comes within the first 30 ms and the level 250 ms after it is
      down at least 10 dB (a loud, short onset);
    * ``nonlinear_env``: from the end of the attack (the first frame within 1 dB of the loudest
      of the first second) to the note-off, the level climbs more than 6 dB above its lowest so
      far while above -40 dB (a swell, filter or tremolo envelope, or beating, rather than the
      monotonic decay of a struck or plucked note).

    ``bright``, ``dark``, ``distortion``, ``multiphonic``, ``reverb`` and ``tempo-synced`` are
    0: NSynth's are human judgements of timbre that no fixed rule on the audio reproduces.

    Parameters
    ----------
    audio
        (64000,) samples of the note, int16 or float.

    Returns
    -------
    10 ints 0/1 in the order of :data:`nsynth_prep.labels.QUALITIES`.
    """
    env = envelope_db(audio)
    flags = dict.fromkeys(QUALITIES, 0)
    if not np.isfinite(env).any():
        return [0] * len(QUALITIES)
    env = np.maximum(env, FLOOR_DB)
    peak_frame = int(np.argmax(env))
    flags["fast_decay"] = int(env[NOTE_OFF_FRAME - 20 : NOTE_OFF_FRAME].max() < -40)
    flags["long_release"] = int(env[-20:].max() > -40)
    after = env[min(peak_frame + 25, len(env) - 1)]
    flags["percussive"] = int(peak_frame < 3 and after <= -10)
    attack = env[:ATTACK_FRAMES]
    settled = int(np.argmax(attack >= attack.max() - 1))  # the attack is over
    held = env[settled:NOTE_OFF_FRAME]
    rise = held - np.minimum.accumulate(held)  # how far the level climbed back from its lowest so far
    flags["nonlinear_env"] = int(bool(((rise > 6) & (held > -40)).any()))
    return [flags[q] for q in QUALITIES]
