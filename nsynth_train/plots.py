"""The figures a run ships with, from its scores: what needs the cache, the model's front end or
the run folder. Drawing is :mod:`nsynth_prep.display.training`'s; here the examples are chosen,
their audio read (and, for mel models, turned into the log-mel the model saw), and each figure
saved atomically into the run folder. Nothing here feeds back into training.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nsynth_prep.cache import format as cache_format
from nsynth_prep.display.notes import audio_feature
from nsynth_prep.display.training import (
    Context,
    Examples,
    LogMels,
    confusion_figure,
    examples_figure,
    learning_curves_figure,
    per_class_figure,
)
from nsynth_prep.display.waveform import time_axis
from nsynth_prep.errors import ConfigError
from nsynth_train.run_dir import atomic
from nsynth_train.tasks import Task
from nsynth_train.vocabulary import figure_formats_of

if TYPE_CHECKING:  # drawing is display's: only the type here
    from matplotlib.figure import Figure

EXAMPLES_PER_CLASS = 3
CONFIDENT = 0.5  # "confident": the predicted class has at least this probability (more than all others together)


# The formats every figure of a train or eval is written in (``--figure-format``): set for the
# duration of one command by :func:`figure_formats`; PNG alone unless asked.
_formats: ContextVar[tuple[str, ...]] = ContextVar("figure_formats", default=("png",))


@contextlib.contextmanager
def figure_formats(formats: tuple[str, ...] | None) -> Iterator[None]:
    """Write the figures made inside the block in each of ``formats`` (None: PNG)."""
    try:
        checked = figure_formats_of(formats)
    except ValueError as exc:
        raise ConfigError(f"figure format {exc}") from None
    token = _formats.set(checked)
    try:
        yield
    finally:
        _formats.reset(token)


def save(fig: Figure, path: Path) -> None:
    """``fig`` at ``path`` (a ``.png`` name) in each figure format asked for (``.svg``, ``.pdf``
    beside it), each written atomically (the run folder's rule for every file)."""
    for fmt in _formats.get():
        target = path.with_suffix(f".{fmt}")
        with atomic(target) as tmp:
            fig.savefig(tmp, dpi=110, format=fmt)


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


def write_learning_curves(out: Path, history: list[dict[str, float]], what: str, split: str,
                          best_epoch: int | None, chance: float, note: str = "") -> None:
    """``learning_curves.png``: loss and accuracy per epoch, train and valid; ``what`` names the
    model and task, ``note`` says what loss and accuracy mean when it is not obvious."""
    out.mkdir(parents=True, exist_ok=True)
    save(learning_curves_figure(history, what, split, best_epoch, chance, note), out / "learning_curves.png")


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
    for normalize, name in ((False, "confusion_counts.png"), (True, "confusion_normalized.png")):
        save(confusion_figure(cm, names, normalize, ctx), out / name)
    save(per_class_figure(cm, metrics, ctx), out / "per_class_accuracy.png")
    write_examples(out, cache, probs, y, rows, names, ctx)


def write_examples(out: Path, cache: cache_format.Cache, probs: np.ndarray, y: np.ndarray, rows: np.ndarray,
                   names: tuple[str, ...], ctx: Context) -> None:
    """``examples_confident.png`` and ``examples_boundary.png`` (see :func:`pick_examples`)."""
    # Show real samples where the cache has them: 25-sample means flatten high notes to zero.
    shown = audio_feature(cache)
    width = int(np.prod(cache.array(shown).shape[1:]))  # shape only: the rows are read as floats below
    t, xlabel = time_axis(cache.feature(shown).spec, width)
    labels = cache.labels()
    note_str, pitch = labels.note_str[rows], labels.pitch[rows]  # (N,) for the scored notes
    for kind in ("confident", "boundary"):
        grid = pick_examples(probs, y, kind)  # (C, k), one row per true class
        waves = _read_waves(cache, shown, rows[grid[grid >= 0]], width)
        mels = None
        if ctx.model.startswith("mel-") and shown == "trimmed" and len(waves):  # the model's input, beside the audio
            mels = log_mels(waves)
        examples = Examples(kind, grid, waves, t, xlabel, shown, probs, y, note_str, pitch, CONFIDENT, mels)
        save(examples_figure(examples, names, ctx), out / f"examples_{kind}.png")


def _read_waves(cache: cache_format.Cache, feature: str, rows: np.ndarray, width: int) -> np.ndarray:
    """(n, width) float audio of cache ``rows`` (n,), in the order given."""
    if not len(rows):
        return np.zeros((0, width), np.float32)
    order = np.argsort(rows)  # zarr reads faster in row order
    return cache.floats(feature, rows[order]).reshape(len(rows), -1)[np.argsort(order)]


def log_mels(waves: np.ndarray) -> LogMels:
    """The mel models' input for (n, T) ``waves``: the log-mel of their first ``CROP`` samples,
    made by the model's own front end, with its time span and band frequencies."""
    import torch

    from nsynth_train.frontend import F_MAX, F_MIN, HOP, SAMPLE_RATE, LogMel, hz_to_mel, mel_to_hz
    from nsynth_train.mel_models import CROP

    with torch.no_grad():
        values = LogMel()(torch.from_numpy(np.ascontiguousarray(waves[:, :CROP], np.float32))).numpy()
    bands, frames = values.shape[1:]
    centres = mel_to_hz(np.linspace(hz_to_mel(F_MIN), hz_to_mel(F_MAX), bands + 2))[1:-1]
    return LogMels(values, frames * HOP / SAMPLE_RATE, centres, CROP / SAMPLE_RATE)
