"""Every training figure. Each ``plot_*`` draws on given axes (or a new figure) and returns it;
:func:`write_all` saves the set a run ships with. Nothing here feeds back into training.

Every title names the model, the task and the split, so ``figures/`` (test) and
``figures-valid/`` never look alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from nsynth_prep.cache import format as cache_format
from nsynth_prep.display.notes import ZOOM_WIDTH, audio_feature, label_axes, plot_waveform, time_axis, waveform_cells
from nsynth_prep.display.palette import color_of
from nsynth_train.run_dir import atomic
from nsynth_train.tasks import Task

EXAMPLES_PER_CLASS = 3
CONFIDENT = 0.5  # "confident": the predicted class has at least this probability (more than all others together)
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


def save(fig: Figure, path: Path) -> None:
    with atomic(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


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
        h = history[epochs.index(best_epoch)]
        axes[1].plot([best_epoch], [100 * h["valid_accuracy"]], "*", color="k", ms=12, zorder=5)
        right = best_epoch > (min(epochs) + max(epochs)) / 2  # label on the side with room
        axes[1].annotate(f"best valid: {100 * h['valid_accuracy']:.1f} %", (best_epoch, 100 * h["valid_accuracy"]),
                         textcoords="offset points", xytext=(-9 if right else 9, 6), fontsize=8,
                         ha="right" if right else "left",
                         bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8})
        low, high = axes[1].get_ylim()
        axes[1].set_ylim(low, high + 0.08 * (high - low))  # room for the label
    axes[0].set_title("Loss per epoch")
    axes[1].set_title("Accuracy per epoch")
    axes[1].legend(fontsize=8, loc="best")
    return axes


def plot_confusion(cm: np.ndarray, names: list[str] | tuple[str, ...], normalize: bool, ax: Axes) -> Axes:
    """Confusion matrix (rows: true, columns: predicted), counts or row-normalised; each row's
    notes in its label."""
    support = cm.sum(1)
    data = cm / np.maximum(support[:, None], 1) if normalize else cm
    im = ax.imshow(data, cmap="Blues", vmin=0, vmax=1 if normalize else max(1, cm.max()))
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


def pick_examples(probs: np.ndarray, y: np.ndarray, kind: str, per_class: int = EXAMPLES_PER_CLASS) -> np.ndarray:
    """(classes, per_class) indices into ``probs`` (N, C), -1 where a class has fewer.

    Per true class: ``confident``, the notes whose predicted class has the highest probability,
    right or wrong, if at least :data:`CONFIDENT`; ``boundary``, the smallest margins between the
    top two classes.
    """
    confidence = probs.max(1)
    top2 = np.sort(probs, 1)[:, -2:] if probs.shape[1] > 1 else np.c_[np.zeros(len(probs)), probs]
    margin = top2[:, 1] - top2[:, 0]
    chosen = np.full((probs.shape[1], per_class), -1, np.int64)
    for c in range(probs.shape[1]):
        idx = np.flatnonzero(y == c)
        if kind == "confident":
            idx = idx[confidence[idx] >= CONFIDENT]
        key = -confidence[idx] if kind == "confident" else margin[idx]
        best = idx[np.argsort(key, kind="stable")[:per_class]]
        chosen[c, : len(best)] = best
    return chosen


def plot_examples(waves: np.ndarray, t: np.ndarray, xlabel: str, grid: np.ndarray, probs: np.ndarray,
                  y: np.ndarray, names: tuple[str, ...], note_str: np.ndarray, pitch: np.ndarray,
                  empty: list[str], title: str, runner_up: bool = False, mels: np.ndarray | None = None) -> Figure:
    """One row per true class: envelope and zoom of each example (``grid``: (C, k) indices into
    ``probs``, -1 for none; ``waves``: (N, T) for those indices, in ``grid`` order), one amplitude
    scale; a wrong prediction has a red frame. A class without examples gets a one-line row
    saying why (``empty[c]``). ``runner_up`` adds the second most probable class to each title.
    ``mels`` (N, bands, frames), in ``waves``' order: a log-mel panel after each zoom (mel models)."""
    per = grid.shape[1]
    cols = 3 if mels is not None else 2
    has = [bool((grid[c] >= 0).any()) for c in range(len(grid))]
    fig = plt.figure(figsize=((3.4 + 1.6 * (cols == 3)) * per + 0.6, sum(1.55 if h else 0.32 for h in has) + 0.8),
                     layout="constrained")
    gs = fig.add_gridspec(len(grid), cols * per, width_ratios=[1, ZOOM_WIDTH, 0.8][:cols] * per,
                          height_ratios=[1 if h else 0.2 for h in has])
    mel_range = (float(mels.min()), float(mels.max())) if mels is not None and len(mels) else (0.0, 1.0)
    ylim = 1.05 * float(np.abs(waves).max(initial=0.0)) or 1e-3
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
            pred = int(probs[i].argmax())
            plot_waveform(t, waves[k], color_of(names[c]), ax, zoom, int(pitch[i]), ylim)
            if mels is not None:
                plot_log_mel(mels[k], fig.add_subplot(gs[c, 3 * j + 2]), mel_range, bottom=c == last)
            k += 1
            wrong = pred != y[i]
            if runner_up:  # short: the title must fit above the envelope panel
                second = int(np.argsort(probs[i])[-2])
                verdict = f"{names[pred]} {probs[i, pred]:.2f} vs {names[second]} {probs[i, second]:.2f}"
            else:
                verdict = f"predicted {names[pred]}, p = {probs[i, pred]:.2f}"
            verdict = f"wrong: {verdict}" if wrong else verdict
            ax.set_title(f"{note_str[i]}\n{verdict}", fontsize=7, pad=2,
                         color=WRONG if wrong else "black")
            if wrong:
                for a in (ax, zoom):
                    for spine in a.spines.values():
                        spine.set(color=WRONG, linewidth=2.5)
        pairs[0][0].set_ylabel(f"true {names[c]}\namplitude", fontsize=8, color=color_of(names[c]))
        label_axes(pairs, xlabel, bottom=c == last)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_log_mel(mel: np.ndarray, ax: Axes, value_range: tuple[float, float], bottom: bool = True) -> Axes:
    """(bands, frames) log-mel as the model sees it (first 1.6 s), low frequencies at the bottom;
    y ticks at a few bands' centre frequencies."""
    from nsynth_train.frontend import F_MAX, F_MIN, HOP, SAMPLE_RATE, hz_to_mel, mel_to_hz

    bands, frames = mel.shape
    seconds = frames * HOP / SAMPLE_RATE
    ax.imshow(mel, origin="lower", aspect="auto", cmap="magma", vmin=value_range[0], vmax=value_range[1],
              extent=(0, seconds, -0.5, bands - 0.5), interpolation="nearest")
    centres = mel_to_hz(np.linspace(hz_to_mel(F_MIN), hz_to_mel(F_MAX), bands + 2))[1:-1]
    ticks = [int(np.argmin(np.abs(centres - hz))) for hz in (100, 1000, 4000)]
    ax.set_yticks(ticks, ["100", "1k", "4k"], fontsize=6)
    ax.tick_params(axis="x", labelsize=6)
    ax.set_title("log-mel (Hz)", fontsize=6, pad=2)
    if bottom:
        ax.set_xlabel("s", fontsize=7)
    return ax


def write_learning_curves(out: Path, history: list[dict[str, float]], what: str, split: str,
                          best_epoch: int | None, chance: float, note: str = "") -> None:
    """``learning_curves.png``: loss and accuracy per epoch, train and valid; ``what`` names the
    model and task, ``note`` says what loss and accuracy mean when it is not obvious."""
    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    plot_learning_curves(history, (axes[0], axes[1]), best_epoch, chance)
    fig.suptitle(f"Learning curves: {what}, train and valid splits (this folder scores the {split} split)"
                 + (f"\n{note}" if note else ""))
    save(fig, out / "learning_curves.png")


def write_all(out: Path, history: list[dict[str, float]], cm: np.ndarray, task: Task, split: str,
              metrics: dict[str, Any], probs: np.ndarray, y: np.ndarray, rows: np.ndarray, cache: cache_format.Cache,
              model: str = "", best_epoch: int | None = None) -> None:
    """Learning curves, confusion matrices, per-class accuracy, confident and boundary waveforms.

    ``probs`` (N, C), ``y`` (N,) and ``rows`` (N,) are the split's predicted probabilities,
    true classes and cache rows; ``best_epoch`` is the scored checkpoint's epoch.
    """
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(model, task.name, split, best_epoch)
    names = task.class_names
    if history:
        write_learning_curves(out, history, f"{model}, {task.name} task", split, best_epoch, 1 / len(names))
    notes = int(cm.sum())
    for normalize, name in ((False, "confusion_counts.png"), (True, "confusion_normalized.png")):
        fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(names) + 2.4, 0.6 * len(names) + 2.4), layout="constrained")
        plot_confusion(cm, names, normalize, ax)
        ax.set_title(f"Confusion matrix, {split} split ({notes:,} notes"
                     f"{', row-normalised' if normalize else ''})\n{ctx.tag(split=False)}", fontsize=10)
        save(fig, out / name)
    fig, ax = plt.subplots(figsize=(7.5, 0.4 * len(names) + 1.7), layout="constrained")
    plot_per_class(metrics["per_class_accuracy"], metrics["accuracy"], ax, cm.sum(1).tolist())
    ax.set_title(f"Accuracy per class, {split} split ({notes:,} notes)\n{ctx.tag(split=False)}", fontsize=10)
    save(fig, out / "per_class_accuracy.png")
    write_examples(out, cache, probs, y, rows, names, ctx)


def write_examples(out: Path, cache: cache_format.Cache, probs: np.ndarray, y: np.ndarray, rows: np.ndarray,
                   names: tuple[str, ...], ctx: Context) -> None:
    """``examples_confident.png`` and ``examples_boundary.png`` (see :func:`pick_examples`)."""
    # Show real samples where the cache has them: 25-sample means flatten high notes to zero.
    shown = audio_feature(cache)
    arr = cache.array(shown)  # shape only: the rows are read as floats below
    labels = cache.labels()
    note_str, pitch = labels.note_str[rows], labels.pitch[rows]  # (N,) for the scored notes
    counts = np.bincount(y, minlength=len(names))
    confidence = probs.max(1)
    for kind in ("confident", "boundary"):
        grid = pick_examples(probs, y, kind)  # (C, k), one row per true class
        pick = grid[grid >= 0]
        order = np.argsort(rows[pick])  # zarr reads faster in row order
        width = int(np.prod(arr.shape[1:]))
        waves = (cache.floats(shown, rows[pick][order]).reshape(len(pick), -1)[np.argsort(order)]
                 if len(pick) else np.zeros((0, width), np.float32))
        t, xlabel = time_axis(cache.feature(shown).spec, width)
        empty = []
        for c in range(len(names)):
            of_c = np.flatnonzero(y == c)
            if not len(of_c):
                empty.append(f"no notes of this class in the {ctx.split} split")
            else:
                top = of_c[np.argmax(confidence[of_c])]
                empty.append(f"no confident prediction: none of its {counts[c]} notes got p >= {CONFIDENT:g} "
                             f"(highest: p = {confidence[top]:.3f}, predicted {names[int(probs[top].argmax())]})")
        if kind == "confident":
            title = (f"Most confident predictions per true class (p of the predicted class >= {CONFIDENT:g}; "
                     f"red frame: wrong)\n{ctx.tag()}; {shown} audio: envelope and zoom of a few periods")
        else:
            title = (f"Nearest the decision boundary per true class (smallest margin between the top two "
                     f"classes, with their probabilities; red frame: wrong)\n{ctx.tag()}; {shown} audio: envelope and zoom of a few periods")
        mels = None
        if ctx.model == "mel-cnn" and shown == "trimmed" and len(waves):  # the model's input, beside the audio
            import torch

            from nsynth_train.frontend import LogMel
            from nsynth_train.mel_models import CROP

            with torch.no_grad():
                mels = LogMel()(torch.from_numpy(np.ascontiguousarray(waves[:, :CROP], np.float32))).numpy()
            title += "; log-mel of the first 1.6 s (the model's input)"
        fig = plot_examples(waves, t, xlabel, grid, probs, y, names, note_str, pitch, empty, title,
                            runner_up=kind == "boundary", mels=mels)
        save(fig, out / f"examples_{kind}.png")
