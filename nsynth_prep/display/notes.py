"""Figures of a cache: class balance, example waveforms per family and per source, pitch
histograms, one note. Each ``plot_*`` draws on given axes and returns them; each ``*_figure``
returns a new :class:`~matplotlib.figure.Figure` (no pyplot: nothing here selects a backend or
keeps figures alive). Waveforms are drawn as envelope and zoom (:mod:`.waveform`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from nsynth_prep.cache import format as cache_format
from nsynth_prep.display.palette import color_of
from nsynth_prep.display.waveform import (
    ZOOM_PERIODS,
    ZOOM_WIDTH,
    label_axes,
    plot_waveform,
    time_axis,
    waveform_cells,
)
from nsynth_prep.labels import PIANO_RANGE as PIANO
from nsynth_prep.labels import LabelTable

PER_ROW = 4  # example waveforms per family or source


def audio_feature(c: cache_format.Cache) -> str:
    """The feature that looks most like audio: trimmed, else framed, else pooled."""
    return next(f for f in ("trimmed", "framed", "pooled") if f in c.meta.features)


def plot_balance(names: list[str], counts: list[int], title: str, ax: Axes) -> Axes:
    """Notes per class as bars, labelled with counts and shares."""
    total = max(1, sum(counts))
    bars = ax.bar(names, counts, color=[color_of(n) for n in names])
    ax.bar_label(bars, labels=[f"{c:,}\n{c / total:.0%}" for c in counts], fontsize=7, padding=2)
    ax.set_ylabel("notes")
    ax.set_title(title)
    ax.set_ylim(0, max([*counts, 1]) * 1.25)
    ax.tick_params(axis="x", rotation=45)
    return ax


def _example_rows(codes: np.ndarray, values: int, per: int) -> list[np.ndarray]:
    """The first ``per`` rows of each code (rows are shuffled at build, so these are a sample)."""
    return [np.flatnonzero(codes == v)[:per] for v in range(values)]


def waveform_grid(c: cache_format.Cache, labels: LabelTable, by: str, path: Path) -> None:
    """Save :func:`waveform_figure` to ``path``."""
    waveform_figure(c, labels, by).savefig(path, dpi=100)


def waveform_figure(c: cache_format.Cache, labels: LabelTable, by: str) -> Figure:
    """A row of example waveforms for every family (``by='family'``) or source present, on one
    amplitude scale."""
    feature = audio_feature(c)
    names = c.meta.families if by == "family" else c.meta.sources
    rows = _example_rows(getattr(labels, by), len(names), PER_ROW)
    present = [i for i, r in enumerate(rows) if len(r)]
    picked = np.concatenate([rows[i] for i in present]) if present else np.zeros(0, np.int64)
    order = np.argsort(picked)  # zarr reads faster in row order
    waves = c.floats(feature, picked[order]).reshape(len(picked), -1)[np.argsort(order)]
    ylim = 1.05 * float(np.abs(waves).max(initial=0.0)) or 1e-3
    t, xlabel = time_axis(c.feature(feature).spec, waves.shape[1])
    fig = Figure(figsize=(3.4 * PER_ROW, 1.45 * len(present) + 0.9), layout="constrained")
    gs = fig.add_gridspec(max(1, len(present)), 2 * PER_ROW, width_ratios=[1, ZOOM_WIDTH] * PER_ROW)
    k = 0
    for line, code in enumerate(present):
        pairs = waveform_cells(fig, gs, line, len(rows[code]))
        for ax, zoom in pairs:
            row = int(picked[k])
            plot_waveform(t, waves[k], color_of(names[code]), ax, zoom, int(labels.pitch[row]), ylim)
            ax.set_title(str(labels.note_str[row]), fontsize=7, pad=2)
            k += 1
        pairs[0][0].set_ylabel(f"{names[code]}\namplitude", fontsize=8, color=color_of(names[code]))
        label_axes(pairs, xlabel, bottom=line == len(present) - 1)
    fig.suptitle(f"Example notes per {by}, {c.split} split ({feature} feature, {len(t) * (t[1] - t[0]):.2g} s): "
                 f"envelope (min/max over each period) and a zoom of {ZOOM_PERIODS} periods at the loudest point "
                 "(\u25bc); one amplitude scale", fontsize=9)
    return fig


def plot_pitch_histograms(labels: LabelTable, families: list[str], path: Path) -> None:
    """Save :func:`pitch_figure` to ``path``."""
    pitch_figure(labels, families).savefig(path, dpi=100)


def pitch_figure(labels: LabelTable, families: list[str]) -> Figure:
    """One pitch histogram per family present, on a shared MIDI axis, every slot used: the last
    row's panels are widened to fill it."""
    present = [f for f in range(len(families)) if (labels.family == f).any()]
    cols = min(4, max(1, len(present)))
    nrows = max(1, -(-len(present) // cols))
    last = len(present) - cols * (nrows - 1)  # panels in the last row
    span = cols * last  # grid columns: each full row's panel spans `last`, each last-row panel `cols`
    fig = Figure(figsize=(3.2 * cols, 2.0 * nrows + 0.7), layout="constrained")
    gs = fig.add_gridspec(nrows, span)
    bins = list(range(0, 129, 3))  # 3 semitones a bin
    low, high = (int(labels.pitch.min()), int(labels.pitch.max())) if len(labels.pitch) else (0, 127)
    for k, f in enumerate(present):
        r, c = divmod(k, cols)
        width = span // cols if r < nrows - 1 else span // last
        ax = fig.add_subplot(gs[r, c * width : (c + 1) * width])
        ax.hist(labels.pitch[labels.family == f], bins=bins, color=color_of(families[f]))
        # The whole piano range always in view, so its edges (and notes beyond them) show.
        ax.set_xlim(max(0, min(low - 6, PIANO[0] - 6)), min(127, max(high + 6, PIANO[1] + 6)))
        ax.set_title(f"{families[f]} ({int((labels.family == f).sum()):,} notes)", fontsize=9)
        ax.set_xlabel("MIDI pitch", fontsize=8)
        ax.set_ylabel("notes", fontsize=8)
        ax.yaxis.set_major_locator(MaxNLocator(4, integer=True))
        ax.tick_params(labelsize=7)
        ax.axvspan(*PIANO, color="#d9e8f5", zorder=0)  # behind the bars, visible between them
        for edge in PIANO:
            ax.axvline(edge, color="#4a7fb0", lw=0.8, ls="--", zorder=0.5)
    fig.suptitle(f"Pitch per family (shaded, dashed edges: the piano range {PIANO[0]}-{PIANO[1]})")
    return fig


def write_overview(c: cache_format.Cache, out: Path) -> list[Path]:
    """Every inspect figure of a cache into ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    labels = c.labels()
    m = c.meta
    written = []
    fig = Figure(figsize=(13, 4.2))
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 1]})
    fam = np.bincount(labels.family.astype(np.int64), minlength=len(m.families))
    src = np.bincount(labels.source.astype(np.int64), minlength=len(m.sources))
    plot_balance(list(m.families), fam.tolist(), f"Notes per family ({c.split})", axes[0])
    plot_balance(list(m.sources), src.tolist(), f"Notes per source ({c.split})", axes[1])
    fig.tight_layout()
    written.append(out / "class_balance.png")
    fig.savefig(written[-1], dpi=100)
    for by in ("family", "source"):
        written.append(out / f"waveforms_by_{by}.png")
        waveform_grid(c, labels, by, written[-1])
    written.append(out / "pitch_by_family.png")
    plot_pitch_histograms(labels, list(m.families), written[-1])
    return written


def plot_note(c: cache_format.Cache, row: int, title: str, path: Path) -> Path:
    """Every built feature of one note, one row each: envelope and zoom."""
    feats = list(c.meta.features)
    color = color_of(c.meta.families[int(cache_format.read(c.array("family"), row))])
    pitch = int(cache_format.read(c.array("pitch"), row))
    fig = Figure(figsize=(11, 2.0 * len(feats) + 0.6), layout="constrained")
    gs = fig.add_gridspec(len(feats), 2, width_ratios=[3, 1])
    for line, f in enumerate(feats):
        wave = c.floats(f, row).ravel()
        t, xlabel = time_axis(c.feature(f).spec, len(wave))
        (ax, zoom), = waveform_cells(fig, gs, line, 1)
        plot_waveform(t, wave, color, ax, zoom, pitch)
        ax.set_title(f"{f} {tuple(c.array(f).shape[1:])}", fontsize=8, pad=2)
        ax.set_ylabel("amplitude", fontsize=7)
        label_axes([(ax, zoom)], xlabel, bottom=True)
    fig.suptitle(title)
    fig.savefig(path, dpi=100)
    return path
