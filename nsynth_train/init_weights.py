"""``nsynth train --init RUN_OR_CHECKPOINT``: start a run from another run's weights (fine-tuning).

Every tensor of the other checkpoint whose name and shape match this model's is loaded; the
output layer (``out``, every model's last) is left new when the class lists differ, e.g. a
family run fine-tuned on the source task, or a corpus with other families. What was loaded is
recorded in the run's config.json (``init``). The optimizer starts fresh: its moments belong to
the other run's objective.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import torch

from nsynth_prep.errors import ConfigError
from nsynth_train import checkpoint
from nsynth_train.tasks import Task

log = logging.getLogger(__name__)
OUTPUT_LAYER = "out."  # the prefix of every model's output layer's tensors


def checkpoint_of(source: str | Path) -> Path:
    """A run folder means its best.pt (as for eval and predict)."""
    path = Path(source)
    return path / "best.pt" if path.is_dir() else path


def load_init(model: torch.nn.Module, source: str | Path, model_name: str, task: Task) -> dict[str, Any]:
    """Load the matching tensors of ``source`` (a run folder or checkpoint) into ``model``;
    returns what config.json records of it.

    Raises
    ------
    ConfigError
        ``source`` holds another model, or no tensor of it fits.
    CheckpointError
        ``source`` is not a readable, finite checkpoint.
    """
    path = checkpoint_of(source)
    state = checkpoint.load(path)  # safe: weights only, bounded, finite
    theirs = state["config"].get("model")
    if theirs != model_name:
        raise ConfigError(f"--init {source}: a {theirs} checkpoint cannot start a {model_name} run "
                          f"(pass --model {theirs}, or another run's weights)")
    their_classes = list((state.get("task") or {}).get("class_names") or [])
    same_classes = their_classes == list(task.class_names)
    own = model.state_dict()
    loaded, new = {}, []
    for name, tensor in own.items():
        other = state["model"].get(name)
        fits = other is not None and tuple(other.shape) == tuple(tensor.shape)
        if fits and (same_classes or not name.startswith(OUTPUT_LAYER)):
            loaded[name] = other
        else:
            new.append(name)
    if not loaded:
        raise ConfigError(f"--init {source}: none of its tensors fits this {model_name}")
    model.load_state_dict(loaded, strict=False)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    record = {"from": str(path.resolve()), "sha256_16": digest, "epoch": state.get("epoch"),
              "task": (state.get("task") or {}).get("name"), "classes": their_classes,
              "tensors_loaded": len(loaded), "tensors_new": new}
    log.info("weights from %s (epoch %s of a %s run on the %s task): %d of %d tensors%s", path, record["epoch"],
             theirs, record["task"], len(loaded), len(own),
             f"; new: {', '.join(new)} ({'other classes' if not same_classes else 'other shapes'})" if new else "")
    return record
