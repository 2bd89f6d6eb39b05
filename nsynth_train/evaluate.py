"""Score a checkpoint on any split: metrics.json and every figure, from the run or anew."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nsynth_prep import cache as cache_format

from . import checkpoint
from .config import TrainConfig, amp_dtype, pick_device
from .data import Split
from .metrics import confusion_matrix, summarize
from .models import build_model, forward
from .run_dir import write_json
from .tasks import Task

log = logging.getLogger(__name__)


def predict(model: torch.nn.Module, split: Split, amp: torch.dtype | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class probabilities (N, C) float32, true classes (N,) and cache rows (N,) of a whole split."""
    model.eval()
    probs, ys, rows = [], [], []
    with torch.no_grad():
        for x, y, r in split.batches(0, drop_last=False):
            probs.append(torch.softmax(forward(model, x, amp), 1).cpu().numpy())
            ys.append(y.cpu().numpy())
            rows.append(r.cpu().numpy())
    return np.concatenate(probs), np.concatenate(ys), np.concatenate(rows)


def resolve_checkpoint(path: Path) -> Path:
    """A run folder means its best.pt."""
    path = Path(path)
    return path / "best.pt" if path.is_dir() else path


def evaluate_run(ckpt_path: Path, cache_dir: Path | None, split: str, out: Path | None = None,
                 device: str = "auto", progress: bool = True, figures: bool = True) -> dict[str, Any]:
    """Metrics (and figures) of a checkpoint on ``split``.

    Writes ``metrics.json`` for the test split, ``metrics-<split>.json`` otherwise, and
    figures to ``figures/`` (``figures-<split>/`` for other splits), in ``out`` (default:
    the checkpoint's folder).
    """
    ckpt_path = resolve_checkpoint(ckpt_path)
    state = checkpoint.load(ckpt_path)
    try:
        config = TrainConfig(**state["config"])
        task = Task.from_dict(state["task"])
    except TypeError as exc:
        raise checkpoint.CheckpointError(f"{ckpt_path}: config not understood ({exc})") from None
    config = replace(config, device=device, resident="auto",
                     cache_dir=str(cache_dir) if cache_dir else config.cache_dir)
    dev = pick_device(config.device)
    model = build_model(config.model, task.num_classes)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise checkpoint.CheckpointError(
            f"{ckpt_path}: weights do not fit a {config.model} for {task.num_classes} classes "
            f"({str(exc).splitlines()[0]})") from None
    model.to(dev)
    path = cache_format.cache_path(Path(config.cache_dir), split)
    data = Split(path, config, task, dev, shuffle=False)
    probs, y, rows = predict(model, data, amp_dtype(config, dev))
    cm = confusion_matrix(y, probs.argmax(1), task.num_classes)
    result = {"task": task.name, "model": config.model, "classes": list(task.class_names),
              "split": split, "cache": str(path), "checkpoint": str(ckpt_path), "epoch": state["epoch"],
              "seed": config.seed, split: summarize(cm, task.class_names)}
    out = Path(out) if out else ckpt_path.parent
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / ("metrics.json" if split == "test" else f"metrics-{split}.json"), result)
    log.info("%s on %s: accuracy %.1f%%, macro-F1 %.3f over %d notes", config.model, split,
             100 * result[split]["accuracy"], result[split]["macro_f1"], len(y))
    if figures:
        from . import plots

        fig_dir = out / ("figures" if split == "test" else f"figures-{split}")
        last = ckpt_path.parent / "last.pt"  # the whole history, not only up to the best epoch
        history = checkpoint.load(last)["extra"]["history"] if last.is_file() else state["extra"].get("history", [])
        plots.write_all(fig_dir, history, cm, task, result[split], probs, y, rows,
                        cache_format.open_cache(path, (config.feature,)))
        result["figures"] = str(fig_dir)
    return result
