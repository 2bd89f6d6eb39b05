"""Score a checkpoint on any split (:func:`score`: predictions and metrics), then write what a
run folder holds of it (:func:`write_scores`: metrics.json and every figure)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nsynth_prep.cache import format as cache_format
from nsynth_prep.errors import CheckpointError, ConfigError
from nsynth_prep.labels import FAMILIES
from nsynth_prep.storage.store import Where
from nsynth_train import checkpoint, run_dir
from nsynth_train.config import TrainConfig, amp_dtype, pick_device
from nsynth_train.head_metrics import (
    HeadScores,
    breakdown,
    multilabel_confusion,
    multilabel_summary,
    note_counts,
    pitch_summary,
)
from nsynth_train.metrics import confusion_matrix, summarize
from nsynth_train.models import build_model, forward
from nsynth_train.splits import Split
from nsynth_train.tasks import Task

log = logging.getLogger(__name__)


def head_softmax(logits: torch.Tensor, task: Task) -> torch.Tensor:
    """(B, outputs) logits -> (B, outputs) probabilities, a softmax over each head's slice (a
    sigmoid of each output of a multi-label head)."""
    return torch.cat([torch.sigmoid(logits[:, part]) if head.multilabel else torch.softmax(logits[:, part], 1)
                      for head, part in task.heads()], 1)


def predict(model: torch.nn.Module, split: Split, amp: torch.dtype | None,
            task: Task | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class probabilities (N, outputs) float32 (per head for ``both``), true classes (N,) of
    the first head and cache rows (N,) of a whole split."""
    model.eval()
    probs, ys, rows = [], [], []
    with torch.no_grad():
        for x, y, r in split.batches(0, drop_last=False):
            logits = forward(model, x, amp)
            p = head_softmax(logits, task) if task is not None else torch.softmax(logits, 1)
            probs.append(p.cpu().numpy())
            ys.append(y.cpu().numpy())
            rows.append(r.cpu().numpy())
    return np.concatenate(probs), np.concatenate(ys), np.concatenate(rows)


def resolve_checkpoint(path: Path) -> Path:
    """A run folder means its best.pt."""
    path = Path(path)
    return path / "best.pt" if path.is_dir() else path


def evaluate_run(ckpt_path: Path, cache_dir: Where | None, split: str, out: Path | None = None,
                 device: str = "auto", progress: bool = True, figures: bool = True) -> dict[str, Any]:
    """:func:`score` and :func:`write_scores`, under the lock of the folder written to (``out``,
    default the run's)."""
    ckpt_path = resolve_checkpoint(ckpt_path)
    with run_dir.locked(Path(out) if out else ckpt_path.parent):
        return write_scores(score(ckpt_path, cache_dir, split, device), out, figures)


@dataclass(frozen=True)
class Scores:
    """A checkpoint scored on one split, nothing written yet: ``result`` (what ``metrics.json``
    holds), the checkpoint (``state``) it came from, and what the figures are drawn from:
    ``probs`` (N, outputs), ``y`` (N,) the first head's true classes, ``rows`` (N,) cache rows,
    and each head's scores."""

    result: dict[str, Any]
    ckpt_path: Path
    state: dict[str, Any]
    model: str
    task: Task
    cache: cache_format.Cache
    probs: np.ndarray
    y: np.ndarray
    rows: np.ndarray
    heads: list[HeadScores]


def score(ckpt_path: Path, cache_dir: Where | None, split: str, device: str = "auto") -> Scores:
    """Predictions and metrics of a checkpoint on ``split`` (``cache_dir``: default the one it
    was trained on); writes nothing (:func:`write_scores` does)."""
    ckpt_path = resolve_checkpoint(ckpt_path)
    state = checkpoint.load(ckpt_path)  # refuses damaged files and NaN/inf weights
    try:
        config = TrainConfig.from_dict(state["config"])
        task = Task.from_dict(state["task"])
    except (TypeError, KeyError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"{ckpt_path}: config not understood ({exc})") from None
    config = replace(config, device=device, resident="auto",
                     cache_dir=str(cache_dir) if cache_dir else config.cache_dir)
    dev = pick_device(config.device)
    model = build_model(config.model, task.outputs)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"{ckpt_path}: weights do not fit a {config.model} for {task.num_classes} classes "
            f"({str(exc).splitlines()[0]})") from None
    model.to(dev)
    path = cache_format.cache_path(config.cache_dir, split)  # a folder or a URL
    data = Split(path, config, task, dev, shuffle=False)
    probs, y, rows = predict(model, data, amp_dtype(config, dev), task)
    cache = cache_format.open_cache(path, (config.feature,))
    # Each head: its probabilities, true classes (the second head's looked up by cache row), matrix.
    heads = []
    for i, (head, part) in enumerate(task.heads()):
        y_head = y if i == 0 and not head.multilabel else head.targets(cache.label(head.column))[rows]
        heads.append(head_scores(head, probs[:, part], y_head))
    summaries = [head_summary(h, cache, rows) for h in heads]
    first = task.heads()[0][0]
    outside = 0 if first.multilabel else int(np.sum(first.classes_of(cache.label(first.column)) < 0))
    if outside:  # notes the split leaves out: a pitch train never had, a velocity outside NSynth's five
        summaries[0]["notes_not_scored"] = outside
    result = {"task": task.name, "model": config.model, "classes": list(task.class_names),
              "split": split, "cache": str(path), "checkpoint": str(ckpt_path), "epoch": state["epoch"],
              "seed": config.seed, split: summaries[0]}
    if task.parts:  # each head's metrics by its name; the first is also under the split's name
        result["heads"] = {h.head.name: m for h, m in zip(heads, summaries, strict=True)}
        result["head_weights"] = list(config.weights() or [1.0] * len(heads))
    if task.second:
        result["source_head"] = summaries[1]
        result["consistency"] = consistency(heads[0].probs.argmax(1), heads[1].probs.argmax(1),
                                            state["extra"].get("train_pairs", []), task)
    return Scores(result, ckpt_path, state, config.model, task, cache, probs, y, rows, heads)


def head_scores(head: Task, probs: np.ndarray, y: np.ndarray) -> HeadScores:
    """A head's scores from its probabilities (N, C) and targets (N,) classes or (N, L) flags."""
    if head.multilabel:
        return HeadScores(head, probs, y, multilabel_confusion(y, probs))
    keep = y >= 0
    return HeadScores(head, probs, y, confusion_matrix(y[keep], probs[keep].argmax(1), head.num_classes))


def head_summary(h: HeadScores, cache: cache_format.Cache, rows: np.ndarray) -> dict[str, Any]:
    """What ``metrics.json`` says of one head: accuracy, per-class accuracy and F1, macro-F1 and
    the confusion matrix (:func:`~.metrics.summarize`), or for a multi-label head AP, F1 and mAP
    (:func:`~.head_metrics.multilabel_summary`); for pitch its near misses; for every head its
    score by pitch range and by velocity. ``rows`` (N,): the notes' cache rows."""
    pitch, velocity = cache.label("pitch")[rows], cache.label("velocity")[rows]
    if h.head.multilabel:
        out = multilabel_summary(h.y, h.probs, h.head.class_names)
    else:
        out = summarize(h.cm, h.head.class_names)
        unscored = int(np.sum(h.y < 0))
        if unscored:  # notes of the split whose class the head does not have (a pitch absent from train)
            out["notes_not_scored"] = unscored
        if h.head.column == "pitch":
            keep = h.y >= 0
            family = cache.label("family")[rows][keep]
            out.update(pitch_summary(h.y[keep], h.probs[keep].argmax(1), h.head.class_ids, family, FAMILIES))
    out.update(breakdown(note_counts(h.y, h.probs, h.head.multilabel), pitch, velocity, h.head.multilabel))
    return out


def write_scores(scores: Scores, out: Path | None = None, figures: bool = True) -> dict[str, Any]:
    """Write ``metrics.json`` for the test split, ``metrics-<split>.json`` otherwise, and the
    figures to ``figures/`` (``figures-<split>/`` for other splits), in ``out`` (default: the
    checkpoint's folder); the caller holds ``out``'s lock. Returns the metrics, with where the
    run came from (``run``) and where the figures are (``figures``)."""
    result, split = dict(scores.result), scores.result["split"]
    out = Path(out) if out else scores.ckpt_path.parent
    out.mkdir(parents=True, exist_ok=True)
    run_dir.write_json(out / ("metrics.json" if split == "test" else f"metrics-{split}.json"), result)
    result["run"] = run_dir.summary(scores.ckpt_path.parent, scores.state["config"])
    first = result[split]
    if "accuracy" in first:
        log.info("%s on %s: accuracy %.1f%%, macro-F1 %.3f over %d notes", scores.model, split,
                 100 * first["accuracy"], first["macro_f1"], len(scores.y))
    else:  # a multi-label head first (qualities)
        log.info("%s on %s: mAP %.3f, micro-F1 %.3f over %d notes", scores.model, split,
                 first["mAP"] or 0.0, first["micro_f1"], len(scores.y))
    if figures:
        fig_dir = out / ("figures" if split == "test" else f"figures-{split}")
        write_figures(scores, fig_dir)
        result["figures"] = str(fig_dir)
    return result


def write_figures(scores: Scores, fig_dir: Path) -> None:
    """Every figure of ``scores`` into ``fig_dir``: learning curves, and per head the confusion
    matrices, per-class accuracy and example notes."""
    from nsynth_train import plots, task_plots

    split, epoch, model, result = scores.result["split"], scores.state["epoch"], scores.model, scores.result
    history = _full_history(scores.ckpt_path, scores.state)
    if not scores.task.second and not scores.task.parts:
        task_plots.write_head(fig_dir, history, scores.heads[0], split, result[split], scores.rows, scores.cache,
                              model, epoch)
        return
    # One set of curves for the network, one folder of figures per head.
    chance = float(np.mean([1 / h.head.num_classes for h in scores.heads]))
    if history and scores.task.second:
        plots.write_learning_curves(
            fig_dir, history, f"{model}, both task", split, epoch, chance,
            "loss: the sum of the family and source heads' cross-entropies; accuracy: the mean of "
            "the two heads' accuracies")
    elif history:
        plots.write_learning_curves(
            fig_dir, history, f"{model}, {scores.task.name} task", split, epoch, chance,
            "loss: the sum of the heads' losses times their weights; accuracy: the mean of the heads' scores "
            "(accuracy; micro-F1 for qualities)")
    keys = (split, "source_head") if scores.task.second else tuple(h.head.name for h in scores.heads)
    for h, key in zip(scores.heads, keys, strict=True):
        metrics = result[key] if scores.task.second else result["heads"][key]
        named = replace(h, head=replace(h.head, name=f"{h.head.name} head of the {scores.task.name}"))
        task_plots.write_head(fig_dir / f"{h.head.name}_head", [], named, split, metrics, scores.rows,
                              scores.cache, model, epoch)


def consistency(family: np.ndarray, source: np.ndarray, train_pairs: list[list[int]], task: Task) -> dict[str, Any]:
    """How often a ``both`` model's predicted (family, source) pair exists in the training data.

    ``family``, ``source`` (N,) predicted classes; ``train_pairs`` the (family, source) class
    pairs of the train split. Returns the fraction of notes whose predicted pair is a train pair,
    and every predicted pair with its count and whether it is one.
    """
    known = {tuple(p) for p in train_pairs}
    (fam, _), (src, _) = task.heads()
    pairs: dict[tuple[int, int], int] = {}
    for f, s in zip(family.tolist(), source.tolist(), strict=True):
        pairs[(f, s)] = pairs.get((f, s), 0) + 1
    table: list[dict[str, Any]] = [{"family": fam.class_names[f], "source": src.class_names[s], "notes": n, "in_train": (f, s) in known}
             for (f, s), n in sorted(pairs.items(), key=lambda kv: -kv[1])]
    consistent = sum(row["notes"] for row in table if row["in_train"])
    return {"fraction_in_train": consistent / max(len(family), 1), "pairs": table}


def _full_history(ckpt_path: Path, state: dict[str, Any]) -> list[dict[str, float]]:
    """The run's whole history (from its last.pt beside the checkpoint, when that is of the same
    run), not only the epochs up to the checkpoint's."""
    last = ckpt_path.parent / "last.pt"
    if last.is_file() and last != ckpt_path:
        try:
            other = checkpoint.load(last, check_finite=False)
        except CheckpointError as exc:
            log.warning("learning curves up to the checkpoint's epoch only: %s", exc)
        else:
            if other["config"] == state["config"]:
                return list(other["extra"].get("history", []))
    return list(state["extra"].get("history", []))
