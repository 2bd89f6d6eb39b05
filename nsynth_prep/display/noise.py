"""The figure of a noise-like note found by ``nsynth audit``: its waveform, with the sustained
part the check measured marked, and the mean power spectrum of that part, whose flatness (geometric
over arithmetic mean) decided."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def noise_figure(audio: np.ndarray, spectrum: np.ndarray, flatness: float, threshold: float, note: str,
                 rate: int, sustain: tuple[float, float], what: str) -> Figure:
    """``audio`` (T,) float in [-1, 1]; ``spectrum`` (bins,) its sustained part's mean power from
    the first bin above DC to Nyquist; ``sustain`` (from, to) seconds; ``what`` names the cache and
    the feature."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_wave, ax_spec = fig.subplots(1, 2)
    t = np.arange(len(audio)) / rate
    ax_wave.plot(t, audio, lw=0.4, color="#4c72b0")
    ax_wave.axvspan(sustain[0], min(sustain[1], t[-1]), color="#dd8452", alpha=0.15, label="sustained part measured")
    ax_wave.set_xlabel("time (s)")
    ax_wave.set_ylabel("amplitude")
    ax_wave.set_ylim(-1.05, 1.05)
    ax_wave.legend(fontsize=8, loc="upper right")
    ax_wave.set_title("Waveform", fontsize=9)
    hz = np.arange(1, len(spectrum) + 1) * rate / (2 * len(spectrum))
    db = 10 * np.log10(np.maximum(spectrum, 1e-12) / max(float(spectrum.max()), 1e-12))
    ax_spec.plot(hz, db, lw=0.8, color="#4c72b0")
    ax_spec.set_xlabel("frequency (Hz)")
    ax_spec.set_ylabel("power (dB below the strongest bin)")
    ax_spec.set_ylim(max(-100.0, min(-60.0, float(db.min()) - 5)), 5)  # a flat spectrum looks flat
    ax_spec.grid(alpha=0.3)
    ax_spec.set_title(f"Mean spectrum of the sustained part: flatness {flatness:.2f}\n"
                      f"(noise-like above {threshold:g}; white noise ~1, a tone ~0)", fontsize=9)
    fig.suptitle(f"Noise-like note {note}\n{what}", fontsize=10)
    return fig
