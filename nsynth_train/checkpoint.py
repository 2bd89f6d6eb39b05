"""Checkpoints: written atomically, loaded without unpickling arbitrary objects, checked.

A checkpoint is a dict of tensors, numbers and strings (configs as JSON text), saved with
``torch.save`` and read with ``torch.load(weights_only=True)``: a stranger's file cannot run
code, it can only fail to load. Every way a file can fail (empty, truncated, another format,
missing keys, weights that are NaN or inf) is one :class:`CheckpointError` line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from nsynth_prep.errors import CheckpointError
from nsynth_prep.storage.atomic import atomic_path
from nsynth_prep.storage.store import storage_errors

FORMAT = "nsynth-checkpoint"
VERSION = 1
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive
# key -> type of its value after loading (config, task and extra are JSON text in the file)
FIELDS: dict[str, type] = {"epoch": int, "config": str, "task": str, "extra": str, "model": dict,
                           "optimizer": dict, "torch_rng": torch.Tensor}


def save(path: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, epoch: int,
         config: dict[str, Any], task: dict[str, Any], extra: dict[str, Any]) -> None:
    """Write ``path`` via a temporary file and an atomic rename: never half a checkpoint (a run
    folder's next writer removes the temporary file of a killed process)."""
    state = {
        "format": FORMAT, "version": VERSION, "epoch": epoch,
        "config": json.dumps(config), "task": json.dumps(task), "extra": json.dumps(extra),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "torch_rng": torch.get_rng_state(),
    }
    with storage_errors(path), atomic_path(path) as tmp:
        torch.save(state, tmp)


def load(path: Path, check_finite: bool = True) -> dict[str, Any]:
    """Read a checkpoint safely; configs come back as dicts.

    Raises
    ------
    CheckpointError
        The file is missing, empty, truncated, not a checkpoint of this version, or (with
        ``check_finite``) holds NaN or infinite weights.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint here")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint; was its copy or its run "
                              "interrupted? A run folder keeps best.pt and last.pt")
    if head != ZIP_MAGIC:
        raise CheckpointError(f"{path}: not a checkpoint (nsynth checkpoints are torch.save files, e.g. a "
                              "run folder's best.pt or last.pt); give the run folder or one of those")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip errors, pickle errors, refused globals: all mean "not ours"
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(f"{path}: not a readable nsynth checkpoint, damaged or truncated "
                              f"({type(exc).__name__}: {reason})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an nsynth checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')} is not supported (want {VERSION})")
    for key, kind in FIELDS.items():
        if not isinstance(state.get(key), kind):
            raise CheckpointError(f"{path}: damaged checkpoint ({key!r} is missing or not a {kind.__name__})")
    for key in ("config", "task", "extra"):
        try:
            state[key] = json.loads(state[key])
        except ValueError:
            raise CheckpointError(f"{path}: damaged checkpoint ({key!r} is not JSON)") from None
        if not isinstance(state[key], dict):
            raise CheckpointError(f"{path}: damaged checkpoint ({key!r} is not a JSON object)")
    if check_finite:
        require_finite(path, state, "weights", state["model"])
    return state


def require_finite(path: Path, state: dict[str, Any], what: str, tree: Any) -> None:
    """Raise :class:`CheckpointError` when ``tree`` (a state dict) holds NaN or inf."""
    bad = non_finite(tree)
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise CheckpointError(f"{path}: non-finite {what} (NaN or inf in {', '.join(bad[:3])}{more}); the run "
                              f"diverged at or before epoch {state['epoch']}, so this checkpoint cannot be "
                              f"{'scored or resumed' if what == 'weights' else 'resumed'}")


def non_finite(tree: Any, prefix: str = "") -> list[str]:
    """Names of the floating tensors in a (nested) state dict that hold NaN or inf."""
    if isinstance(tree, torch.Tensor):
        return [prefix.rstrip(".")] if tree.is_floating_point() and not bool(torch.isfinite(tree).all()) else []
    if isinstance(tree, dict):
        return [n for k, v in tree.items() for n in non_finite(v, f"{prefix}{k}.")]
    if isinstance(tree, list | tuple):
        return [n for i, v in enumerate(tree) for n in non_finite(v, f"{prefix}{i}.")]
    return []
