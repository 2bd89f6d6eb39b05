"""Every training figure. Each ``plot_*`` draws on an ``ax`` (or a new figure) and returns it;
:func:`write_all` saves the set a run ships with. Nothing here feeds back into training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from nsynth_prep import cache as cache_format
from nsynth_prep.features import FeatureSpec
from nsynth_prep.inspect_plots import audio_feature, plot_waveform, time_axis
from nsynth_prep.palette import color_of

from .tasks import Task

EXAMPLES_PER_CLASS = 3


def _save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_learning_curves(history: list[dict[str, float]], axes: tuple[Axes, Axes]) -> tuple[Axes, Axes]:
    """Loss and accuracy per epoch, train vs valid."""
    epochs = [h["epoch"] for h in history]
    for ax, key, label in ((axes[0], "loss", "cross-entropy loss"), (axes[1], "accuracy", "accuracy")):
        scale = 100 if key == "accuracy" else 1
        ax.plot(epochs, [scale * h[f"train_{key}"] for h in history], "o-", label="train")
        ax.plot(epochs, [scale * h[f"valid_{key}"] for h in history], "s-", label="valid")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label + (" (%)" if key == "accuracy" else ""))
        ax.set_title(f"{label.capitalize()} per epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    return axes


def plot_confusion(cm: np.ndarray, names: list[str] | tuple[str, ...], normalize: bool, ax: Axes) -> Axes:
    """Confusion matrix (rows: true, columns: predicted), counts or row-normalised."""
    data = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalize else cm
    im = ax.imshow(data, cmap="Blues", vmin=0, vmax=1 if normalize else max(1, cm.max()))
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class" if normalize else "notes")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix, row-normalised" if normalize else "Confusion matrix (notes)")
    threshold = data.max() / 2 if data.size else 0
    for i in range(len(names)):
        for j in range(len(names)):
            text = f"{data[i, j]:.2f}" if normalize else f"{int(data[i, j])}"
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="white" if data[i, j] > threshold else "black")
    return ax


def plot_per_class(per_class: dict[str, float | None], accuracy: float, ax: Axes) -> Axes:
    """Per-class accuracy bars, with the overall accuracy and chance as lines."""
    names = [n for n, v in per_class.items() if v is not None]
    values = [100 * float(per_class[n] or 0) for n in names]
    bars = ax.barh(names, values, color=[color_of(n) for n in names])
    ax.bar_label(bars, fmt="%.0f%%", padding=2, fontsize=8)
    ax.axvline(100 * accuracy, color="k", ls="--", lw=1, label=f"overall {100 * accuracy:.1f}%")
    ax.axvline(100 / max(1, len(per_class)), color="grey", ls=":", lw=1, label="chance")
    ax.set_xlim(0, 110)
    ax.invert_yaxis()
    ax.set_xlabel("accuracy (%)")
    ax.set_title("Accuracy per class")
    ax.legend(loc="lower right", fontsize=8)
    return ax


def plot_examples(waves: np.ndarray, titles: list[str], colors: list[str], feature: FeatureSpec | str, suptitle: str,
                  ncols: int) -> plt.Figure:
    """A grid of waveforms, one per example, titled with true/predicted class and probability."""
    n = len(waves)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.0 * nrows + 0.6), squeeze=False)
    t, xlabel = time_axis(feature, waves.shape[1] if n else 1)
    for k, ax in enumerate(axes.ravel()):
        if k >= n or not titles[k]:  # no example for this cell
            ax.axis("off")
            continue
        plot_waveform(t, waves[k], titles[k], colors[k], xlabel, ax)
    fig.suptitle(suptitle)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))
    return fig


def pick_examples(probs: np.ndarray, y: np.ndarray, kind: str, per_class: int = EXAMPLES_PER_CLASS) -> np.ndarray:
    """(classes, per_class) indices, -1 where a class has fewer: per true class, the most
    confident correct predictions (``confident``) or the smallest margins between the top two
    classes (``boundary``)."""
    pred = probs.argmax(1)
    top2 = np.sort(probs, 1)[:, -2:] if probs.shape[1] > 1 else np.c_[np.zeros(len(probs)), probs]
    margin = top2[:, 1] - top2[:, 0]
    chosen = np.full((probs.shape[1], per_class), -1, np.int64)
    for c in range(probs.shape[1]):
        idx = np.flatnonzero((y == c) & (pred == c)) if kind == "confident" else np.flatnonzero(y == c)
        key = -probs[idx, c] if kind == "confident" else margin[idx]
        best = idx[np.argsort(key, kind="stable")[:per_class]]
        chosen[c, : len(best)] = best
    return chosen


def write_all(out: Path, history: list[dict[str, float]], cm: np.ndarray, task: Task, metrics: dict[str, Any],
              probs: np.ndarray, y: np.ndarray, rows: np.ndarray, cache: cache_format.Cache) -> None:
    """Learning curves, confusion matrices, per-class accuracy, confident and boundary waveforms."""
    out.mkdir(parents=True, exist_ok=True)
    names = task.class_names
    if history:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        plot_learning_curves(history, (axes[0], axes[1]))
        _save(fig, out / "learning_curves.png")
    for normalize, name in ((False, "confusion_counts.png"), (True, "confusion_normalized.png")):
        fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(names) + 2, 0.6 * len(names) + 2.2))
        plot_confusion(cm, names, normalize, ax)
        _save(fig, out / name)
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(names) + 1.5))
    plot_per_class(metrics["per_class_accuracy"], metrics["accuracy"], ax)
    _save(fig, out / "per_class_accuracy.png")
    # Show real samples where the cache has them: 25-sample means flatten high notes to zero.
    shown = audio_feature(cache)
    for kind, title in (("confident", "Classified with high confidence"),
                        ("boundary", "Near the decision boundary (smallest top-2 margin)")):
        grid = pick_examples(probs, y, kind).ravel()  # one row per class
        pick = grid[grid >= 0]
        waves = np.zeros((len(grid), 1))
        if len(pick):
            order = np.argsort(rows[pick])  # zarr reads faster in row order
            data = cache.floats(shown, rows[pick][order]).reshape(len(pick), -1)[np.argsort(order)]
            waves = np.zeros((len(grid), data.shape[1]), np.float32)
            waves[grid >= 0] = data
        titles, colors = [], []
        for i in grid:
            p = int(probs[i].argmax()) if i >= 0 else 0
            titles.append(f"true {names[y[i]]} / pred {names[p]}\np = {probs[i, p]:.2f}" if i >= 0 else "")
            colors.append(color_of(names[y[i]]) if i >= 0 else "")
        fig = plot_examples(waves, titles, colors, cache.feature(shown).spec, f"{title}: {task.name} task ({shown} audio)",
                            EXAMPLES_PER_CLASS)
        fig.savefig(out / f"examples_{kind}.png", dpi=110)
        plt.close(fig)
