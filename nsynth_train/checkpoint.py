"""Checkpoints: written atomically, loaded without unpickling arbitrary objects, checked.

A checkpoint is a dict of tensors, numbers and strings (configs as JSON text), saved with
``torch.save`` and read with ``torch.load(weights_only=True)``: a stranger's file cannot run
code, it can only fail to load. Every way a file can fail (empty, truncated, another format,
missing keys, weights that are NaN or inf, a class list that is not its task's) is one
:class:`CheckpointError` line.

Unpickling builds shared objects once, so a 2 KB file can hold a list that contains itself
2^90 times over, or a tensor viewing one stored number 2^40 times: before anything walks what
was loaded, :func:`check_bounds` visits each object once (by id) and refuses what no checkpoint
of ours holds (deep nesting, huge containers, overlapping tensor views, too many elements).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch

from nsynth_prep.errors import CheckpointError, ConfigError
from nsynth_prep.storage.atomic import atomic_path
from nsynth_prep.storage.store import storage_errors
from nsynth_train.tasks import canonical

FORMAT = "nsynth-checkpoint"
VERSION = 1
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive
# key -> type of its value after loading (config, task and extra are JSON text in the file)
FIELDS: dict[str, type] = {"epoch": int, "config": str, "task": str, "extra": str, "model": dict,
                           "optimizer": dict, "torch_rng": torch.Tensor}
# What a checkpoint of ours may hold: its deepest nesting is the optimizer's state (about 5) and
# its configs' JSON (history rows, train pairs: about 4); its models have at most thousands of
# tensors and millions of weights.
MAX_DEPTH = 32
MAX_ITEMS = 1_000_000  # values in all containers together (each container counted once)
MAX_TENSORS = 100_000
MAX_ELEMENTS = 1 << 31  # tensor elements in all, each tensor counted once


def save(path: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, epoch: int,
         config: dict[str, Any], task: dict[str, Any], extra: dict[str, Any]) -> None:
    """Write ``path`` via a temporary file and an atomic rename: never half a checkpoint (a run
    folder's next writer removes the temporary file of a killed process).

    The checkpoint is serialized in memory first (a few MB to tens of MB) and written with one
    plain file write, so a failed write is the OS's own error with its errno (a full disk is
    ENOSPC, a failing device EIO): torch's zip writer reports both as the same RuntimeError.
    """
    state = {
        "format": FORMAT, "version": VERSION, "epoch": epoch,
        "config": json.dumps(config), "task": json.dumps(task), "extra": json.dumps(extra),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "torch_rng": torch.get_rng_state(),
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with storage_errors(path), atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(buffer.getbuffer())


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
    check_bounds(path, state)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an nsynth checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')} is not supported (want {VERSION})")
    for key, kind in FIELDS.items():
        if not isinstance(state.get(key), kind):
            raise CheckpointError(f"{path}: damaged checkpoint ({key!r} is missing or not a {kind.__name__})")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state["model"].items()):
        raise CheckpointError(f"{path}: damaged checkpoint ('model' is not a dict of named tensors)")
    for key in ("config", "task", "extra"):
        try:
            state[key] = json.loads(state[key])
        except RecursionError:  # json recurses once per level: "[[[[...]]]]" 200,000 deep
            raise CheckpointError(f"{path}: damaged checkpoint ({key!r} is JSON nested too deep)") from None
        except ValueError:
            raise CheckpointError(f"{path}: damaged checkpoint ({key!r} is not JSON)") from None
        if not isinstance(state[key], dict):
            raise CheckpointError(f"{path}: damaged checkpoint ({key!r} is not a JSON object)")
        check_bounds(path, state[key], key)
    check_task(path, state["task"])
    if check_finite:
        require_finite(path, state, "weights", state["model"])
    return state


def check_bounds(path: Path, tree: Any, what: str = "contents") -> None:
    """Raise :class:`CheckpointError` when ``tree`` is nested deeper than :data:`MAX_DEPTH`, or
    holds more than :data:`MAX_ITEMS` values, :data:`MAX_TENSORS` tensors or
    :data:`MAX_ELEMENTS` elements, or a tensor with more elements than its storage (a view
    repeating stored values). Each object is visited once however often it is shared."""
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(tree, 0)]
    items = tensors = elements = 0
    while stack:
        obj, depth = stack.pop()
        if id(obj) in seen or not isinstance(obj, dict | list | tuple | torch.Tensor):
            continue
        seen.add(id(obj))
        if depth > MAX_DEPTH:
            _refuse(path, what, f"nested more than {MAX_DEPTH} deep")
        if isinstance(obj, torch.Tensor):
            tensors += 1
            elements += obj.numel()
            if obj.numel() * obj.element_size() > obj.untyped_storage().nbytes():
                _refuse(path, what, f"a {tuple(obj.shape)} tensor that repeats the {obj.untyped_storage().nbytes():,} "
                        "bytes it stores")
            if tensors > MAX_TENSORS or elements > MAX_ELEMENTS:
                _refuse(path, what, f"more than {MAX_TENSORS:,} tensors or {MAX_ELEMENTS:,} weights")
            continue
        items += len(obj)
        if items > MAX_ITEMS:
            _refuse(path, what, f"more than {MAX_ITEMS:,} values")
        values = list(obj.values()) if isinstance(obj, dict) else list(obj)
        stack.extend((v, depth + 1) for v in values)


def _refuse(path: Path, what: str, why: str) -> None:
    raise CheckpointError(f"{path}: not an nsynth checkpoint (its {what} {'are' if what == 'contents' else 'is'} "
                          f"{why}, which no checkpoint of ours holds)")


def check_task(path: Path, task: dict[str, Any]) -> None:
    """Raise :class:`CheckpointError` unless ``task`` is a task as this version defines it (name,
    label column, class ids and names, heads; :func:`~nsynth_train.tasks.canonical`): a class
    list one short, or renamed, would score or predict under the wrong names."""
    name = task.get("name")
    try:
        known = canonical(task)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: damaged checkpoint (task {name!r}: {exc})") from None
    if task != known.to_dict():
        theirs = task.get("class_names")
        count = len(theirs) if isinstance(theirs, list) else "no"
        raise CheckpointError(f"{path}: damaged checkpoint (its {name} task has {count} classes or other "
                              f"class ids or names than the {known.num_classes} of the {name} task)")


def require_finite(path: Path, state: dict[str, Any], what: str, tree: Any) -> None:
    """Raise :class:`CheckpointError` when ``tree`` (a state dict) holds NaN or inf."""
    bad = non_finite(tree)
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise CheckpointError(f"{path}: non-finite {what} (NaN or inf in {', '.join(bad[:3])}{more}); the run "
                              f"diverged at or before epoch {state['epoch']}, so this checkpoint cannot be "
                              f"{'scored or resumed' if what == 'weights' else 'resumed'}")


def non_finite(tree: Any, prefix: str = "") -> list[str]:
    """Names of the floating tensors in a (nested) state dict that hold NaN or inf; each object
    is looked at once however often it is shared (the first name it is reached by)."""
    bad: list[str] = []
    seen: set[int] = set()
    stack: list[tuple[Any, str]] = [(tree, prefix)]
    while stack:
        obj, name = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            if obj.is_floating_point() and not bool(torch.isfinite(obj).all()):
                bad.append(name.rstrip("."))
        elif isinstance(obj, dict):
            stack.extend((v, f"{name}{k}.") for k, v in reversed(obj.items()))
        elif isinstance(obj, list | tuple):
            stack.extend((v, f"{name}{i}.") for i, v in reversed(list(enumerate(obj))))
    return bad
