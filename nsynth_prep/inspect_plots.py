"""Figures of a cache: class balance, example waveforms per family and per source, pitch
histograms, one note. Each ``plot_*`` draws on an ``ax`` (or a new figure) and returns it."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from . import cache as cache_format
from .features import FeatureSpec, Pooled, feature_spec
from .labels import SAMPLE_RATE, LabelTable
from .palette import color_of

PER_ROW = 4  # example waveforms per family or source


def audio_feature(c: cache_format.Cache) -> str:
    """The feature that looks most like audio: trimmed, else framed, else pooled."""
    return next(f for f in ("trimmed", "framed", "pooled") if f in c.meta.features)


def time_axis(feature: FeatureSpec | str, width: int) -> tuple[np.ndarray, str]:
    """Seconds for each value of a flattened feature row, from the feature's own parameters (a
    cache's ``FeatureMeta.spec``; a name means that feature's default spec)."""
    spec = feature_spec(feature) if isinstance(feature, str) else feature
    t = spec.seconds(SAMPLE_RATE)[:width]
    if isinstance(spec, Pooled):
        return t, f"time (s); pooled: {spec.kernel}-sample means"
    return t, "time (s)"


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


def plot_waveform(t: np.ndarray, wave: np.ndarray, title: str, color: str, xlabel: str, ax: Axes) -> Axes:
    ax.plot(t, wave, lw=0.5, color=color)
    peak = float(np.abs(wave).max()) or 1e-3
    ax.set_ylim(-1.1 * peak, 1.1 * peak)
    ax.set_title(title, fontsize=8)
    ax.set_xlabel(xlabel, fontsize=7)
    ax.set_ylabel("amplitude", fontsize=7)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.2)
    return ax


def _example_rows(codes: np.ndarray, values: int, per: int) -> list[np.ndarray]:
    """The first ``per`` rows of each code (rows are shuffled at build, so these are a sample)."""
    return [np.flatnonzero(codes == v)[:per] for v in range(values)]


def waveform_grid(c: cache_format.Cache, labels: LabelTable, by: str, path: Path) -> None:
    """A row of example waveforms for every family (``by='family'``) or source present."""
    feature = audio_feature(c)
    names = c.meta.families if by == "family" else c.meta.sources
    rows = _example_rows(getattr(labels, by), len(names), PER_ROW)
    present = [i for i, r in enumerate(rows) if len(r)]
    fig, axes = plt.subplots(len(present), PER_ROW, figsize=(3.2 * PER_ROW, 1.8 * len(present) + 0.8), squeeze=False)
    for line, code in enumerate(present):
        for k in range(PER_ROW):
            ax = axes[line, k]
            if k >= len(rows[code]):
                ax.axis("off")
                continue
            row = int(rows[code][k])
            wave = c.floats(feature, row).ravel()
            t, xlabel = time_axis(c.feature(feature).spec, len(wave))
            plot_waveform(t, wave, str(labels.note_str[row]), color_of(names[code]), xlabel, ax)
    fig.suptitle(f"Example notes per {by} ({feature} feature, {c.split} split)")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_pitch_histograms(labels: LabelTable, families: list[str], path: Path) -> None:
    """One pitch histogram per family present, on a shared MIDI axis."""
    present = [f for f in range(len(families)) if (labels.family == f).any()]
    cols = 4
    nrows = -(-len(present) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.2 * nrows + 0.6), squeeze=False, sharex=True)
    bins = np.arange(0, 129, 3)
    for k, ax in enumerate(axes.ravel()):
        if k >= len(present):
            ax.axis("off")
            continue
        f = present[k]
        ax.hist(labels.pitch[labels.family == f], bins=bins, color=color_of(families[f]))
        ax.set_title(f"{families[f]} ({int((labels.family == f).sum()):,} notes)", fontsize=9)
        ax.set_xlabel("MIDI pitch", fontsize=8)
        ax.set_ylabel("notes", fontsize=8)
        ax.axvspan(21, 108, color="grey", alpha=0.08)
    fig.suptitle("Pitch per family (shaded: piano range 21-108)")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_overview(c: cache_format.Cache, out: Path) -> list[Path]:
    """Every inspect figure of a cache into ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    labels = c.labels()
    m = c.meta
    written = []
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [3, 1]})
    fam = np.bincount(labels.family.astype(np.int64), minlength=len(m.families))
    src = np.bincount(labels.source.astype(np.int64), minlength=len(m.sources))
    plot_balance(list(m.families), fam.tolist(), f"Notes per family ({c.split})", axes[0])
    plot_balance(list(m.sources), src.tolist(), f"Notes per source ({c.split})", axes[1])
    fig.tight_layout()
    written.append(out / "class_balance.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)
    for by in ("family", "source"):
        written.append(out / f"waveforms_by_{by}.png")
        waveform_grid(c, labels, by, written[-1])
    written.append(out / "pitch_by_family.png")
    plot_pitch_histograms(labels, list(m.families), written[-1])
    return written


def plot_note(c: cache_format.Cache, row: int, title: str, path: Path) -> Path:
    """Every built feature of one note, one panel each."""
    feats = list(c.meta.features)
    fig, axes = plt.subplots(len(feats), 1, figsize=(10, 2.4 * len(feats) + 0.5), squeeze=False)
    color = color_of(c.meta.families[int(cache_format.read(c.array("family"), row))])
    for ax, f in zip(axes[:, 0], feats, strict=True):
        wave = c.floats(f, row).ravel()
        t, xlabel = time_axis(c.feature(f).spec, len(wave))
        plot_waveform(t, wave, f"{f} {tuple(c.array(f).shape[1:])}", color, xlabel, ax)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
