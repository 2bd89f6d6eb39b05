"""Checkpoints: written atomically, loaded without unpickling arbitrary objects.

A checkpoint is a dict of tensors, numbers and strings (configs as JSON text), saved with
``torch.save`` and read with ``torch.load(weights_only=True)``: a stranger's file cannot run
code, it can only fail to load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from nsynth_prep.errors import CheckpointError

FORMAT = "nsynth-checkpoint"
VERSION = 1


def save(path: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, epoch: int,
         config: dict[str, Any], task: dict[str, Any], extra: dict[str, Any]) -> None:
    """Write ``path`` via a temporary file and an atomic rename: never half a checkpoint."""
    state = {
        "format": FORMAT, "version": VERSION, "epoch": epoch,
        "config": json.dumps(config), "task": json.dumps(task), "extra": json.dumps(extra),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "torch_rng": torch.get_rng_state(),
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint safely; configs come back as dicts."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint here")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, zip errors, refused globals: all mean "not ours"
        raise CheckpointError(f"{path}: not a readable nsynth checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an nsynth checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')} is not supported (want {VERSION})")
    for key in ("config", "task", "extra"):
        state[key] = json.loads(state[key])
    return state
