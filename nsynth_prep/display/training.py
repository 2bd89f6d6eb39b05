"""The training figures: learning curves, confusion matrices, per-class accuracy, and example
notes (envelope, zoom and, for mel models, the log-mel the model saw) of a scored split.

Everything here takes plain arrays and dicts (no torch, no model): ``nsynth_train.plots``
scores, chooses the examples and saves. Each ``plot_*`` draws on given axes (or a new
figure) and returns it; each ``*_figure`` returns a new :class:`~matplotlib.figure.Figure`
(no pyplot, no backend chosen). Every title names the model, the task and the split, so
``figures/`` (test) and ``figures-valid/`` never look alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from nsynth_prep.display.palette import color_of
from nsynth_prep.display.waveform import ZOOM_WIDTH, label_axes, plot_waveform, waveform_cells

WRONG = "#e00000"  # frame and title of a wrong prediction


@dataclass(frozen=True)
class Context:
    """What every title says: which model, task and split, and which checkpoint."""

    model: str
    task: str
    split: str
    epoch: int | None = None

    def tag(self, split: bool = True) -> str:
        """``cnn, family task, test split, checkpoint of epoch 7`` (without the split when the
        line above already names it)."""
        epoch = f", checkpoint of epoch {self.epoch}" if self.epoch is not None else ""
        return f"{self.model}, {self.task} task{f', {self.split} split' if split else ''}{epoch}"


@dataclass(frozen=True)
class LogMels:
    """Log-mel panels beside example waveforms: what a mel model sees.

    ``values`` (n, bands, frames), one per example in the waves' order; ``seconds``: the span
    of the frames; ``band_hz`` (bands,): each band's centre frequency; ``audio_seconds``: how
    much of the note the model reads (named in the title).
    """

    values: np.ndarray
    seconds: float
    band_hz: np.ndarray
    audio_seconds: float


@dataclass(frozen=True)
class Examples:
    """The example notes of one examples figure, as plain arrays.

    ``kind``: ``confident`` (the most probable predictions, at least ``confident``) or
    ``boundary`` (the smallest margins between the top two classes). ``grid`` (C, k): per true
    class, indices into the scored notes, -1 for none. ``waves`` (n, T): the audio of the
    grid's indices in grid order, over times ``t`` (T,) in seconds (``xlabel`` says what they
    are), of the cache's ``feature``. ``probs`` (N, C), ``y`` (N,), ``note_str`` (N,) and
    ``pitch`` (N,): every scored note's probabilities, true class and labels.
    """

    kind: str
    grid: np.ndarray
    waves: np.ndarray
    t: np.ndarray
    xlabel: str
    feature: str
    probs: np.ndarray
    y: np.ndarray
    note_str: np.ndarray
    pitch: np.ndarray
    confident: float
    mels: LogMels | None = None


def plot_learning_curves(history: list[dict[str, float]], axes: tuple[Axes, Axes], best_epoch: int | None = None,
                         chance: float | None = None) -> tuple[Axes, Axes]:
    """Loss and accuracy per epoch, train vs valid split, with the selected checkpoint's epoch."""
    epochs = [int(h["epoch"]) for h in history]
    for ax, key, label in ((axes[0], "loss", "cross-entropy loss"), (axes[1], "accuracy", "accuracy (%)")):
        scale = 100 if key == "accuracy" else 1
        ax.plot(epochs, [scale * h[f"train_{key}"] for h in history], "o-", ms=4, label="train split")
        ax.plot(epochs, [scale * h[f"valid_{key}"] for h in history], "s-", ms=4, label="valid split")
        if best_epoch is not None and best_epoch in epochs:
            ax.axvline(best_epoch, color="k", ls="--", lw=1, label=f"selected checkpoint (epoch {best_epoch})")
        if key == "accuracy" and chance is not None:
            ax.axhline(100 * chance, color="grey", ls=":", lw=1, label=f"chance ({100 * chance:.0f} %)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if best_epoch is not None and best_epoch in epochs:
        _mark_best(history[epochs.index(best_epoch)], best_epoch, (min(epochs) + max(epochs)) / 2, axes[1])
    axes[0].set_title("Loss per epoch")
    axes[1].set_title("Accuracy per epoch")
    axes[1].legend(fontsize=8, loc="best")
    return axes


def _mark_best(h: dict[str, float], best_epoch: int, middle: float, ax: Axes) -> None:
    """A star and a label at the selected checkpoint's valid accuracy."""
    ax.plot([best_epoch], [100 * h["valid_accuracy"]], "*", color="k", ms=12, zorder=5)
    right = best_epoch > middle  # label on the side with room
    ax.annotate(f"best valid: {100 * h['valid_accuracy']:.1f} %", (best_epoch, 100 * h["valid_accuracy"]),
                textcoords="offset points", xytext=(-9 if right else 9, 6), fontsize=8,
                ha="right" if right else "left",
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8})
    low, high = ax.get_ylim()
    ax.set_ylim(low, high + 0.08 * (high - low))  # room for the label


def plot_confusion(cm: np.ndarray, names: list[str] | tuple[str, ...], normalize: bool, ax: Axes) -> Axes:
    """Confusion matrix (rows: true, columns: predicted), counts or row-normalised; each row's
    notes in its label."""
    support = cm.sum(1)
    data = cm / np.maximum(support[:, None], 1) if normalize else cm
    # aspect "auto": square cells would shrink the axes inside the space the layout gave it, and
    # long row labels then ran off the left edge with the axis label.
    im = ax.imshow(data, cmap="Blues", vmin=0, vmax=1 if normalize else max(1, cm.max()), aspect="auto")
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class" if normalize else "notes")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), [f"{n} ({s})" for n, s in zip(names, support, strict=True)])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (notes)")
    threshold = (1 if normalize else max(1, cm.max())) / 2
    for i in range(len(names)):
        for j in range(len(names)):
            if cm[i, j] == 0:
                continue  # empty cells stay empty: the eye finds the errors
            text = f"{data[i, j]:.2f}" if normalize else f"{int(data[i, j])}"
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="white" if data[i, j] > threshold else "black")
    return ax


def plot_per_class(per_class: dict[str, float | None], accuracy: float, ax: Axes,
                   support: list[int] | None = None) -> Axes:
    """Per-class accuracy bars (with each class's notes, ``support``), the overall accuracy and
    chance as lines; a class without notes in the split is labelled so."""
    names = list(per_class)
    values = [100 * float(per_class[n] or 0) for n in names]
    labels = [f"{n} ({s})" for n, s in zip(names, support, strict=True)] if support else names
    bars = ax.barh(labels, values, color=[color_of(n) for n in names])
    ax.bar_label(bars, labels=["no notes" if per_class[n] is None else f"{v:.0f} %" for n, v in
                               zip(names, values, strict=True)], padding=2, fontsize=8)
    ax.axvline(100 * accuracy, color="k", ls="--", lw=1, label=f"overall {100 * accuracy:.1f} %")
    ax.axvline(100 / max(1, len(per_class)), color="grey", ls=":", lw=1, label="chance")
    ax.set_xlim(0, 112)
    ax.invert_yaxis()
    ax.set_xlabel("accuracy (% of the class's notes predicted as it)")
    ax.set_ylabel("true class (notes)" if support else "true class")
    ax.legend(loc="lower right", fontsize=8)
    return ax


def plot_examples(ex: Examples, names: tuple[str, ...], empty: list[str], title: str) -> Figure:
    """One row per true class: envelope and zoom of each example, one amplitude scale; a wrong
    prediction has a red frame. A class without examples gets a one-line row saying why
    (``empty[c]``). The boundary kind adds the second most probable class to each title; log-mel
    panels (``ex.mels``) come after each zoom."""
    grid, mels = ex.grid, ex.mels
    per = grid.shape[1]
    cols = 3 if mels is not None else 2
    has = [bool((grid[c] >= 0).any()) for c in range(len(grid))]
    bar = 0.8 if mels is not None else 0.0  # the log-mel panels' colour bar, at the right
    width, height = (3.4 + 1.6 * (cols == 3)) * per + 0.6 + bar, sum(1.55 if h else 0.32 for h in has) + 1.2
    # Fixed margins, not a constrained layout: with ~100 small axes, the layout engine's bounding
    # boxes took 6-8 s a figure (two per run); these spacings fit the 7-point titles and labels.
    fig = Figure(figsize=(width, height))
    gs = fig.add_gridspec(len(grid), cols * per, width_ratios=[1, ZOOM_WIDTH, 0.8][:cols] * per,
                          height_ratios=[1 if h else 0.2 for h in has], left=0.75 / width, right=1 - (0.15 + bar) / width,
                          top=1 - 1.05 / height, bottom=0.45 / height, wspace=0.3, hspace=0.75)
    mel_range = ((float(mels.values.min()), float(mels.values.max())) if mels is not None and len(mels.values)
                 else (0.0, 1.0))
    ylim = 1.05 * float(np.abs(ex.waves).max(initial=0.0)) or 1e-3
    last = max((c for c in range(len(grid)) if has[c]), default=-1)
    k = 0
    for c in range(len(grid)):
        if not has[c]:
            ax = fig.add_subplot(gs[c, :])
            ax.axis("off")
            ax.text(0, 0.5, f"{names[c]}: {empty[c]}", color=color_of(names[c]), fontsize=8, va="center",
                    transform=ax.transAxes)
            continue
        n_here = int((grid[c] >= 0).sum())
        if mels is None:
            pairs = waveform_cells(fig, gs, c, n_here)
        else:
            pairs = [(fig.add_subplot(gs[c, 3 * j]), fig.add_subplot(gs[c, 3 * j + 1])) for j in range(n_here)]
        for j, ((ax, zoom), i) in enumerate(zip(pairs, grid[c][grid[c] >= 0], strict=True)):
            plot_waveform(ex.t, ex.waves[k], color_of(names[c]), ax, zoom, int(ex.pitch[i]), ylim)
            if mels is not None:
                plot_log_mel(mels.values[k], fig.add_subplot(gs[c, 3 * j + 2]), mel_range, mels.seconds,
                             mels.band_hz, bottom=c == last)
            k += 1
            _verdict(ex, int(i), names, ax, zoom)
        pairs[0][0].set_ylabel(f"true {names[c]}\namplitude", fontsize=8, color=color_of(names[c]))
        label_axes(pairs, ex.xlabel, bottom=c == last)
    if mels is not None and k:  # one scale for every log-mel panel (they share mel_range)
        top, bottom = 1 - 1.05 / height, 0.45 / height
        cax = fig.add_axes((1 - (bar - 0.1) / width, bottom + 0.25 * (top - bottom), 0.12 / width,
                            0.5 * (top - bottom)))
        fig.colorbar(ScalarMappable(Normalize(*mel_range), "magma"), cax=cax)
        cax.set_ylabel("log-mel: ln(mel power + 1e-6)", fontsize=7)
        cax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=10)
    return fig


def _verdict(ex: Examples, i: int, names: tuple[str, ...], ax: Axes, zoom: Axes) -> None:
    """Note ``i``'s name and prediction as the envelope panel's title; red frames when wrong."""
    probs = ex.probs
    pred = int(probs[i].argmax())
    wrong = pred != ex.y[i]
    if ex.kind == "boundary":  # short: the title must fit above the envelope panel
        second = int(np.argsort(probs[i])[-2])
        verdict = f"{names[pred]} {probs[i, pred]:.2f} vs {names[second]} {probs[i, second]:.2f}"
    else:
        verdict = f"predicted {names[pred]}, p = {probs[i, pred]:.2f}"
    verdict = f"wrong: {verdict}" if wrong else verdict
    ax.set_title(f"{ex.note_str[i]}\n{verdict}", fontsize=7, pad=2,
                 color=WRONG if wrong else "black")
    if wrong:
        for a in (ax, zoom):
            for spine in a.spines.values():
                spine.set(color=WRONG, linewidth=2.5)


def plot_log_mel(mel: np.ndarray, ax: Axes, value_range: tuple[float, float], seconds: float, band_hz: np.ndarray,
                 bottom: bool = True) -> Axes:
    """(bands, frames) log-mel as the model sees it, over ``seconds``, low frequencies at the
    bottom; y ticks at the bands nearest 100 Hz, 1 kHz and 4 kHz (``band_hz``: each band's centre)."""
    bands, _ = mel.shape
    ax.imshow(mel, origin="lower", aspect="auto", cmap="magma", vmin=value_range[0], vmax=value_range[1],
              extent=(0, seconds, -0.5, bands - 0.5), interpolation="nearest")
    ticks = [int(np.argmin(np.abs(band_hz - hz))) for hz in (100, 1000, 4000)]
    ax.set_yticks(ticks, ["100", "1k", "4k"], fontsize=6)
    ax.tick_params(axis="x", labelsize=6)
    ax.set_title("log-mel (Hz)", fontsize=6, pad=2)
    if bottom:
        ax.set_xlabel("s", fontsize=7)
    return ax


def learning_curves_figure(history: list[dict[str, float]], what: str, split: str, best_epoch: int | None,
                           chance: float, note: str = "") -> Figure:
    """Loss and accuracy per epoch, train and valid; ``what`` names the model and task, ``note``
    says what loss and accuracy mean when it is not obvious."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    plot_learning_curves(history, (axes[0], axes[1]), best_epoch, chance)
    fig.suptitle(f"Learning curves: {what}, train and valid splits (this folder scores the {split} split)"
                 + (f"\n{note}" if note else ""))
    return fig


def confusion_figure(cm: np.ndarray, names: tuple[str, ...], normalize: bool, ctx: Context) -> Figure:
    """The confusion matrix of ``ctx.split``, counts or row-normalised."""
    # Room for the longest label: the row labels ("name (notes)") on the left, the column labels
    # rotated below (about 0.085 in a character at 10 points).
    wide = max((len(n) for n in names), default=0)
    fig = Figure(figsize=(max(6.0, 2.4 + 0.6 * len(names) + 0.085 * (wide + 8)),
                          2.4 + 0.6 * len(names) + 0.06 * wide), layout="constrained")
    ax = fig.subplots()
    plot_confusion(cm, names, normalize, ax)
    ax.set_title(f"Confusion matrix, {ctx.split} split ({int(cm.sum()):,} notes"
                 f"{', row-normalised' if normalize else ''})\n{ctx.tag(split=False)}", fontsize=10)
    return fig


def per_class_figure(cm: np.ndarray, metrics: dict[str, Any], ctx: Context) -> Figure:
    """Accuracy per true class of ``ctx.split`` (``metrics``: its ``per_class_accuracy`` and
    ``accuracy``), each class's notes from the confusion matrix ``cm``."""
    names = metrics["per_class_accuracy"]
    fig = Figure(figsize=(7.5, 0.4 * len(names) + 1.7), layout="constrained")
    ax = fig.subplots()
    plot_per_class(metrics["per_class_accuracy"], metrics["accuracy"], ax, cm.sum(1).tolist())
    ax.set_title(f"Accuracy per class, {ctx.split} split ({int(cm.sum()):,} notes)\n{ctx.tag(split=False)}",
                 fontsize=10)
    return fig


def examples_figure(ex: Examples, names: tuple[str, ...], ctx: Context) -> Figure:
    """The confident or boundary examples of ``ex``, titled with what they are; a class without
    any says why (no notes in the split, or none predicted with p >= ``ex.confident``)."""
    counts = np.bincount(ex.y, minlength=len(names))
    confidence = ex.probs.max(1)
    empty = []
    for c in range(len(names)):
        of_c = np.flatnonzero(ex.y == c)
        if not len(of_c):
            empty.append(f"no notes of this class in the {ctx.split} split")
        else:
            top = of_c[np.argmax(confidence[of_c])]
            empty.append(f"no confident prediction: none of its {counts[c]} notes got p >= {ex.confident:g} "
                         f"(highest: p = {confidence[top]:.3f}, predicted {names[int(ex.probs[top].argmax())]})")
    if ex.kind == "confident":
        title = (f"Most confident predictions per true class (p of the predicted class >= {ex.confident:g}; "
                 f"red frame: wrong)\n{ctx.tag()}; {ex.feature} audio: envelope and zoom of a few periods")
    else:
        title = (f"Nearest the decision boundary per true class (smallest margin between the top two "
                 f"classes, with their probabilities; red frame: wrong)\n{ctx.tag()}; {ex.feature} audio: "
                 "envelope and zoom of a few periods")
    if ex.mels is not None:
        title += f"; log-mel of the first {ex.mels.audio_seconds:g} s (the model's input)"
    return plot_examples(ex, names, empty, title)
