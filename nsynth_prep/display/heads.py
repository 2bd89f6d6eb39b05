"""Figures of the heads beyond one-class-per-note: the qualities (multi-label) AP bars and
per-quality confusion matrices, pitch's confusion, error histogram and accuracy per pitch, and
any head's score by pitch range and by velocity.

Plain arrays and metric dicts in (the ``metrics.json`` entries of
:mod:`nsynth_train.head_metrics`), a new :class:`~matplotlib.figure.Figure` out; saving is the
caller's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

from nsynth_prep.display.training import Context


def breakdown_figure(metrics: dict[str, Any], ctx: Context) -> Figure:
    """A head's score (accuracy, or micro-F1 for a multi-label head) by pitch range and by
    velocity: ``metrics['by_pitch_range']`` and ``metrics['by_velocity']``, each bin's notes in
    its label."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2, width_ratios=[3, 2])
    overall_key = "accuracy" if "accuracy" in metrics else "micro_f1"
    for ax, key, what in ((axes[0], "by_pitch_range", "MIDI pitch range (octave C to B)"),
                          (axes[1], "by_velocity", "MIDI velocity")):
        bins = metrics[key]
        names = list(bins)
        values = [100 * (bins[n][overall_key] or 0) for n in names]
        bars = ax.bar(range(len(names)), values, color="#4c72b0")
        ax.bar_label(bars, labels=[f"{v:.0f}" if bins[n][overall_key] is not None else "-"
                                   for n, v in zip(names, values, strict=True)], fontsize=8, padding=2)
        ax.set_xticks(range(len(names)), [f"{n}\n{bins[n]['notes']} notes" for n in names], fontsize=7,
                      rotation=45 if key == "by_pitch_range" else 0, ha="right" if key == "by_pitch_range" else "center")
        ax.axhline(100 * metrics[overall_key], color="k", ls="--", lw=1, label=f"overall {100 * metrics[overall_key]:.1f} %")
        ax.set_ylim(0, 125)  # room above the bars for the legend
        ax.set_xlabel(what)
        ax.set_ylabel(f"{'accuracy' if overall_key == 'accuracy' else 'micro-F1 at p >= 0.5'} (%)")
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Score by pitch range and by velocity, {ctx.split} split\n{ctx.tag(split=False)}", fontsize=10)
    return fig


def qualities_figure(metrics: dict[str, Any], ctx: Context) -> Figure:
    """Per quality: average precision beside its chance level (the share of notes that have the
    quality), and F1 at the threshold; mAP in the title. ``metrics``: a multi-label summary."""
    per = metrics["per_quality"]
    names = list(per)
    notes = max(metrics["notes"], 1)
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(names))
    ap = [100 * (per[n]["ap"] or 0) for n in names]
    f1 = [100 * per[n]["f1"] for n in names]
    bars = ax.bar(x - 0.2, ap, 0.4, label="average precision", color="#4c72b0")
    ax.bar(x + 0.2, f1, 0.4, label=f"F1 at p >= {metrics['threshold']:g}", color="#dd8452")
    ax.bar_label(bars, labels=[f"{v:.0f}" if per[n]["ap"] is not None else "no notes"
                               for n, v in zip(names, ap, strict=True)], fontsize=8, padding=2)
    prevalence = [100 * per[n]["positives"] / notes for n in names]
    ax.scatter(x - 0.2, prevalence, marker="_", s=400, color="k", zorder=3,
               label="chance AP (share of notes with the quality)")
    ax.set_xticks(x, [f"{n}\n{per[n]['positives']} notes" for n in names], fontsize=8)
    ax.set_ylim(0, 112)
    ax.set_ylabel("%")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    m = metrics["mAP"]
    ax.set_title(f"Qualities, {ctx.split} split ({metrics['notes']:,} notes): mAP {100 * (m or 0):.1f} %, "
                 f"micro-F1 {100 * metrics['micro_f1']:.1f} %\n{ctx.tag(split=False)}", fontsize=10)
    return fig


def qualities_confusion_figure(cms: np.ndarray, names: tuple[str, ...] | list[str], ctx: Context,
                               threshold: float) -> Figure:
    """One 2 x 2 confusion matrix per quality (``cms`` (L, 2, 2): rows true no/yes, columns
    predicted no/yes at ``threshold``), counts with each row's share."""
    cols = 5
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(2.3 * cols, 2.3 * rows + 0.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, cm, name in zip(axes, np.asarray(cms), names, strict=False):
        share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(2):
            for j in range(2):
                ax.text(j, i, f"{cm[i, j]}\n{100 * share[i, j]:.0f} %", ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.5 else "black")
        ax.set_xticks([0, 1], ["no", "yes"], fontsize=8)
        ax.set_yticks([0, 1], ["no", "yes"], fontsize=8)
        ax.set_title(name, fontsize=9)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.supxlabel(f"predicted (p >= {threshold:g})", fontsize=9)
    fig.supylabel("true", fontsize=9)
    fig.suptitle(f"Per-quality confusion, {ctx.split} split (notes; % of the true row)\n{ctx.tag(split=False)}",
                 fontsize=10)
    return fig


def pitch_figure(cm: np.ndarray, class_ids: tuple[int, ...], metrics: dict[str, Any], ctx: Context) -> Figure:
    """Pitch: the confusion matrix over MIDI pitches (counts, log colour scale), the histogram of
    errors in semitones, and accuracy per true pitch. ``cm`` (C, C) over ``class_ids``;
    ``metrics``: the head's summary (its error histogram and per-class accuracy)."""
    fig = Figure(figsize=(15, 4.8), layout="constrained")
    ax_cm, ax_err, ax_acc = fig.subplots(1, 3, width_ratios=[1.1, 1, 1])
    ids = np.asarray(class_ids)
    lo, hi = ids[0] - 0.5, ids[-1] + 0.5
    full = np.zeros((ids[-1] - ids[0] + 1,) * 2, np.int64)  # on a MIDI axis: gaps stay empty
    full[np.ix_(ids - ids[0], ids - ids[0])] = cm
    shown = np.ma.masked_equal(full, 0)
    im = ax_cm.imshow(shown, cmap="Blues", norm=LogNorm(vmin=1, vmax=max(2, int(cm.max()))), origin="lower",
                      extent=(lo, hi, lo, hi), interpolation="nearest")
    bar = fig.colorbar(im, ax=ax_cm, fraction=0.046, pad=0.04, label="notes")
    _plain_log_ticks(bar.ax.yaxis)
    ax_cm.set_xlabel("predicted MIDI pitch")
    ax_cm.set_ylabel("true MIDI pitch")
    ax_cm.set_title("Confusion matrix (log colour)", fontsize=9)
    hist = {int(k): v for k, v in metrics["error_histogram"].items()}
    errors = np.array(sorted(hist))
    ax_err.bar(errors, [hist[e] for e in errors], color=["#55a868" if e == 0 else
                                                         "#dd8452" if abs(e) == 1 else
                                                         "#c44e52" if e % 12 == 0 else "#8c8c8c" for e in errors])
    ax_err.set_yscale("log")
    _plain_log_ticks(ax_err.yaxis)
    ax_err.set_xlabel("predicted - true (semitones); red: octave errors, orange: +-1")
    ax_err.set_ylabel("notes (log scale)")
    ax_err.set_title(f"Errors: exact {100 * metrics['accuracy']:.1f} %, within +-1 {100 * metrics['within_1_semitone']:.1f} %, "
                     f"octave errors {100 * metrics['octave_error_rate']:.1f} %", fontsize=9)
    acc = metrics["per_class_accuracy"]
    pairs = [(int(k), 100 * v) for k, v in acc.items() if v is not None]
    if pairs:
        xs, ys = zip(*pairs, strict=True)
        ax_acc.plot(xs, ys, "o-", ms=3)
    ax_acc.axhline(100 * metrics["accuracy"], color="k", ls="--", lw=1, label=f"overall {100 * metrics['accuracy']:.1f} %")
    ax_acc.set_ylim(-2, 105)
    ax_acc.set_xlim(lo, hi)
    ax_acc.set_xlabel("true MIDI pitch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_title("Accuracy per pitch", fontsize=9)
    ax_acc.legend(fontsize=8)
    ax_acc.grid(alpha=0.3)
    fig.suptitle(f"Pitch, {ctx.split} split ({int(cm.sum()):,} notes)\n{ctx.tag(split=False)}", fontsize=10)
    return fig


def _plain_log_ticks(axis: Any) -> None:
    """Ticks of a log axis at 1, 2, 5, 10, 20, ... written as plain numbers (not 2 x 10^0)."""
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())
