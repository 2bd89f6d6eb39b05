"""A run's state across epochs: saving it after each (rank 0), reading its last.pt to resume
(rank 0 under torchrun) and loading that on every rank."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from nsynth_prep.errors import RunError
from nsynth_train import checkpoint, run_dir
from nsynth_train.config import TrainConfig
from nsynth_train.distributed import Dist
from nsynth_train.vocabulary import CLI_OPTIONS


def read(path: Path, config: TrainConfig, world: int) -> dict[str, Any] | None:
    """A run's last.pt, checked for resuming ``config`` on ``world`` ranks; None when the run has
    none yet (a run interrupted in its first epoch starts from scratch)."""
    if not path.exists():
        return None
    state = checkpoint.load(path)  # refuses NaN weights: nothing to continue from
    checkpoint.require_finite(path, state, "optimizer state", state["optimizer"])
    saved = config.with_options_of(state["config"])  # a run from before the training options
    now = asdict(config)
    diff = {k: (v, now.get(k)) for k, v in saved.items() if now.get(k) != v and k != "epochs"}
    if diff:
        raise RunError(f"{path.parent}: --resume needs the run's own settings, and these differ: {differences(diff)}. "
                       f"Leave them out (or pass the run's), or train another run (--out elsewhere, or --overwrite)")
    if saved["epochs"] != now["epochs"] and (config.schedule or "constant") != "constant":
        raise RunError(f"{path.parent}: --epochs {now['epochs']} would stretch the {config.schedule} learning-rate "
                       f"schedule planned over the run's {saved['epochs']} epochs; a run with a schedule continues "
                       f"to its own end only")
    # --batch-size is per rank: on another number of ranks the run would go on with another batch.
    was = int(state["extra"].get("world_size", 1))
    if was != world:
        raise RunError(f"{path.parent}: this run was trained on {was} process{'es' * (was != 1)} and is resumed on "
                       f"{world}; the notes per step would change. Resume it with {was} (torchrun "
                       f"--nproc_per_node/--nnodes)" + (" or without torchrun" if was == 1 else ""))
    return state


def differences(diff: dict[str, tuple[Any, Any]]) -> str:
    """``--lr 0.001 (the run) vs 0.01 (now); ...``: the settings a resume would change, by option."""
    return "; ".join(f"{CLI_OPTIONS.get(k, k)} {v!r} (the run) vs {w!r} (now)" if isinstance(v, str) or isinstance(w, str)
                     else f"{CLI_OPTIONS.get(k, k)} {v} (the run) vs {w} (now)" for k, (v, w) in diff.items())


def apply(state: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                  dist: Dist) -> tuple[list[dict[str, float]], float, int]:
    """Load a last.pt's state into the model, optimizer and torch RNG; returns the history, the
    best valid accuracy so far and the next epoch."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if not dist.enabled:  # under torchrun every epoch seeds each rank's RNG itself
        torch.set_rng_state(state["torch_rng"])
    return state["extra"]["history"], state["extra"]["best_valid_accuracy"], state["epoch"] + 1


def save_epoch(out: Path, improved: bool, kwargs: dict[str, Any], history: list[dict[str, float]]) -> None:
    """Rank 0 after each epoch: best.pt when valid accuracy improved, last.pt, history.csv."""
    if improved:
        checkpoint.save(out / "best.pt", **kwargs)
    checkpoint.save(out / "last.pt", **kwargs)
    run_dir.write_history(out / "history.csv", history)
