"""Waveforms drawn so they can be read: an envelope and a zoom, on time axes in seconds.

A second of 16 kHz audio has 16,000 samples: drawn as one line at figure size it is a solid
block. :func:`plot_waveform` therefore draws the envelope (min and max per bin) and, beside it,
a zoom of a few periods of the note at its loudest, with the zoomed span shaded in the envelope.
The inspect figures (:mod:`.notes`) and the training figures (:mod:`.training`) draw their
example notes with it.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.gridspec import GridSpec
from matplotlib.ticker import MaxNLocator

from nsynth_prep.features import FeatureSpec, Pooled, feature_spec
from nsynth_prep.labels import SAMPLE_RATE

ENVELOPE_BINS = 400  # min/max pairs across an envelope panel (40-sample bins for a second of audio)
ZOOM_PERIODS = 4  # periods of the note's pitch in the zoom panel
ZOOM_SECONDS = (0.004, 0.05)  # the zoom's shortest and longest span (for very high and very low notes)
ZOOM_WIDTH = 0.45  # width of a zoom panel relative to its envelope panel


def time_axis(feature: FeatureSpec | str, width: int) -> tuple[np.ndarray, str]:
    """Seconds for each value of a flattened feature row, from the feature's own parameters (a
    cache's ``FeatureMeta.spec``; a name means that feature's default spec)."""
    spec = feature_spec(feature) if isinstance(feature, str) else feature
    t = spec.seconds(SAMPLE_RATE)[:width]
    if isinstance(spec, Pooled):
        return t, f"time (s); pooled: {spec.kernel}-sample means"
    return t, "time (s)"


def period(pitch: int | None) -> float:
    """Seconds per period of MIDI ``pitch`` (A4 = 69 = 440 Hz); 10 ms when the pitch is unknown."""
    return 1 / (440.0 * 2 ** ((pitch - 69) / 12)) if pitch is not None else 0.01


def envelope(wave: np.ndarray, bins: int = ENVELOPE_BINS, window: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The amplitude envelope of ``wave`` (N,): bin starts (B,) as indices, and the min and max
    (B,) of ``wave`` within ``window`` samples around each bin (at least the bin itself).

    ``window`` should be at least one period of the note: a bin shorter than a period holds
    only part of a cycle, and the envelope would show the cycle instead of the loudness.
    """
    starts = np.unique(np.linspace(0, len(wave), min(bins, len(wave)), endpoint=False).astype(np.int64))
    lo, hi = np.minimum.reduceat(wave, starts), np.maximum.reduceat(wave, starts)
    step = max(1, len(wave) // max(1, len(starts)))
    k = min(len(starts), max(1, -(-window // step)))  # bins per window
    if k > 1:
        # Window i covers bins [i - k//2, i - k//2 + k), moved inwards at the ends of the wave.
        first = np.clip(np.arange(len(lo)) - k // 2, 0, len(lo) - k)
        lo = np.lib.stride_tricks.sliding_window_view(lo, k).min(1)[first]
        hi = np.lib.stride_tricks.sliding_window_view(hi, k).max(1)[first]
    return starts, lo, hi


def zoom_span(t: np.ndarray, wave: np.ndarray, pitch: int | None) -> slice:
    """A few periods of the note (MIDI ``pitch``) around its loudest point, as a slice of ``wave``."""
    step = float(t[1] - t[0]) if len(t) > 1 else 1 / SAMPLE_RATE
    length = max(8, int(np.clip(ZOOM_PERIODS * period(pitch), *ZOOM_SECONDS) / step))
    starts, lo, hi = envelope(wave, window=int(period(pitch) / step))
    centre = int(starts[int(np.argmax(hi - lo))]) if len(wave) else 0
    begin = int(np.clip(centre - length // 2, 0, max(0, len(wave) - length)))
    return slice(begin, begin + length)


def plot_waveform(t: np.ndarray, wave: np.ndarray, color: str, ax: Axes, zoom_ax: Axes | None = None,
                  pitch: int | None = None, ylim: float | None = None) -> tuple[Axes, Axes | None]:
    """The envelope of ``wave`` (N,) over times ``t`` (N,) in seconds on ``ax``, and a zoom of a
    few periods on ``zoom_ax`` (its place marked on ``ax``); both on ``[-ylim, ylim]`` (default:
    the wave's own peak)."""
    peak = ylim or 1.05 * float(np.abs(wave).max(initial=0.0)) or 1e-3
    step = float(t[1] - t[0]) if len(t) > 1 else 1 / SAMPLE_RATE
    starts, lo, hi = envelope(wave, window=int(period(pitch) / step))
    ax.fill_between(t[starts], lo, hi, color=color, lw=0)
    ax.set_xlim(float(t[0]), float(t[-1]))
    ax.set_ylim(-peak, peak)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.25)
    if zoom_ax is not None:
        span = zoom_span(t, wave, pitch)
        begin, end = float(t[span.start]), float(t[span.stop - 1])
        ax.axvspan(begin, end, color="k", alpha=0.25, lw=0)
        ax.plot([(begin + end) / 2], [0.9 * peak], marker="v", color="k", ms=5)
        ms = (t[span] - t[span.start]) * 1000
        zoom_ax.plot(ms, wave[span], color=color, lw=1.0)
        zoom_ax.set_xlim(0, float(ms[-1]))
        zoom_ax.set_ylim(-peak, peak)
        zoom_ax.set_title(f"\u25bc zoom, {begin:.2f} s", fontsize=6.5, pad=2)
        zoom_ax.tick_params(labelsize=6, labelleft=False)
        zoom_ax.xaxis.set_major_locator(MaxNLocator(3))
        zoom_ax.grid(alpha=0.25)
    return ax, zoom_ax


def waveform_cells(fig: Figure, gs: GridSpec, row: int, count: int) -> list[tuple[Axes, Axes]]:
    """``count`` (envelope, zoom) axes pairs in grid row ``row`` (the grid has 2 columns per pair)."""
    return [(fig.add_subplot(gs[row, 2 * k]), fig.add_subplot(gs[row, 2 * k + 1])) for k in range(count)]


def label_axes(pairs: list[tuple[Axes, Axes]], xlabel: str, bottom: bool) -> None:
    """Axis labels on the outer panels only: the grid shares its scales."""
    if bottom:
        for ax, zoom in pairs:
            ax.set_xlabel(xlabel, fontsize=7)
            zoom.set_xlabel("ms", fontsize=7)
