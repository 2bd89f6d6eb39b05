"""Train, select on valid, test the best checkpoint; resume; evaluate any split.

Reads top to bottom: :func:`train` sets the seed, builds the model from its preset, runs
epochs (:func:`run_epoch`), keeps the best checkpoint by validation accuracy, then scores
it on test with :func:`evaluate_run`, which ``nsynth eval`` also calls.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nsynth_prep import cache as cache_format
from nsynth_prep.errors import RunError
from nsynth_prep.progress import Progress

from . import checkpoint
from .config import TrainConfig, amp_dtype, pick_device
from .data import Split
from .evaluate import evaluate_run
from .models import CNN, build_model, count_parameters, forward
from .run_dir import write_history
from .tasks import get_task

__all__ = ["TrainConfig", "run_epoch", "train"]

log = logging.getLogger(__name__)


def run_epoch(model: torch.nn.Module, split: Split, config: TrainConfig, epoch: int,
              optimizer: torch.optim.Optimizer | None, amp: torch.dtype | None, desc: str,
              progress: bool) -> tuple[float, float, int]:
    """One pass: trains when given an optimizer, else evaluates. Returns (loss, accuracy, notes)."""
    model.train(optimizer is not None)
    # fp16 gradients underflow without loss scaling; bf16 and fp32 need none.
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    total_loss, correct, seen = 0.0, 0, 0
    drop_last = bool(config.drop_last) and optimizer is not None
    with Progress(len(split), desc, enabled=progress) as bar, torch.set_grad_enabled(optimizer is not None):
        for x, y, _ in split.batches(epoch, drop_last):
            logits = forward(model, x, amp)
            loss = F.cross_entropy(logits, y)
            if optimizer is not None:
                objective = loss
                if isinstance(model, CNN) and (config.l1 or config.l2):
                    objective = loss + model.penalty(config.l1 or 0.0, config.l2 or 0.0)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(objective).backward()
                scaler.step(optimizer)
                scaler.update()
            n = len(y)
            total_loss += float(loss.detach()) * n
            correct += int((logits.argmax(1) == y).sum())
            seen += n
            bar.update(n)
            bar.postfix = f"loss {total_loss / seen:.3f} acc {correct / seen:.1%}"
    return total_loss / max(seen, 1), correct / max(seen, 1), seen


def train(config: TrainConfig, out: Path, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train ``config`` into run folder ``out``; returns the test metrics (also in metrics.json)."""
    config = config.resolved()
    task = get_task(config.task)
    device = pick_device(config.device)
    amp = amp_dtype(config, device)
    out.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(config.cache_dir)
    for split in ("train", "valid", "test"):  # fail before training if any split is unusable
        cache_format.open_cache(cache_format.cache_path(cache_dir, split), (config.feature,))
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    model = build_model(config.model, task.num_classes).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr or 0.0)
    history: list[dict[str, float]] = []
    start, best = 1, -1.0
    if resume and (out / "last.pt").exists():
        state = checkpoint.load(out / "last.pt")
        if state["config"] != asdict(config):
            diff = {k: (v, asdict(config)[k]) for k, v in state["config"].items() if asdict(config).get(k) != v}
            raise RunError(f"{out}: --resume with other settings than the run's (run vs now: {diff})")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        history, best = state["extra"]["history"], state["extra"]["best_valid_accuracy"]
        start = state["epoch"] + 1
        log.info("resuming %s after epoch %d", out, state["epoch"])
    elif resume:
        log.info("%s has no last.pt; starting from scratch", out)
    train_split = Split(cache_format.cache_path(cache_dir, "train"), config, task, device, shuffle=True)
    valid_split = Split(cache_format.cache_path(cache_dir, "valid"), config, task, device, shuffle=False)
    log.info("%s on %s, %s task: %d train / %d valid notes, %s parameters, %s%s", config.model, device,
             config.task, len(train_split), len(valid_split), f"{count_parameters(model):,}",
             "resident in memory" if train_split.resident else "streamed from zarr",
             f", autocast {amp}" if amp else "")
    assert config.epochs is not None
    for epoch in range(start, config.epochs + 1):
        stale = _epochs_since_best(history)
        if config.patience and stale >= config.patience:
            log.info("early stop: valid accuracy has not improved for %d epochs", stale)
            break
        t = time.perf_counter()
        tl, ta, n = run_epoch(model, train_split, config, epoch, optimizer, amp, f"epoch {epoch}/{config.epochs}",
                              progress)
        seconds = time.perf_counter() - t
        vl, va, _ = run_epoch(model, valid_split, config, epoch, None, amp, "  valid", False)
        history.append({"epoch": epoch, "train_loss": tl, "train_accuracy": ta, "valid_loss": vl,
                        "valid_accuracy": va, "seconds": seconds, "notes_per_s": n / seconds})
        log.info("epoch %d/%d: train loss %.3f acc %.1f%% | valid loss %.3f acc %.1f%% | %.1f s, %s notes/s",
                 epoch, config.epochs, tl, 100 * ta, vl, 100 * va, seconds, f"{n / seconds:,.0f}")
        improved = va > best
        best = max(best, va)
        extra = {"history": history, "best_valid_accuracy": best}
        kwargs = dict(model=model, optimizer=optimizer, epoch=epoch, config=asdict(config), task=task.to_dict(),
                      extra=extra)
        if improved:
            checkpoint.save(out / "best.pt", **kwargs)  # type: ignore[arg-type]
        checkpoint.save(out / "last.pt", **kwargs)  # type: ignore[arg-type]
        write_history(out / "history.csv", history)
    return evaluate_run(out / "best.pt", cache_dir, "test", out, progress=progress)


def _epochs_since_best(history: list[dict[str, float]]) -> int:
    """Epochs run since the first epoch with the best validation accuracy (0: the last was best)."""
    if not history:
        return 0
    accuracies = [h["valid_accuracy"] for h in history]
    return len(accuracies) - 1 - int(np.argmax(accuracies))
