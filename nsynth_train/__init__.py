"""nsynth train: PyTorch models trained, scored and used on nsynth caches.

The names below are the Python API; import them from here (``from nsynth_train import
train_run``): the modules inside may move, these names stay.

Runs
    :func:`train_run` (``nsynth train``), :func:`train_seeds` (``--seeds``: one run per seed),
    :func:`eval_run` (``nsynth eval``), :class:`TrainConfig` (every setting of a run; stored in
    its ``config.json`` and checkpoints), :func:`train` (the
    loop itself, into a run folder), :func:`evaluate_run`, :func:`demo_run` (``nsynth demo``'s
    training half, on the caches :func:`nsynth_prep.demo_caches` makes).
Reports and export
    :func:`write_report` (``nsynth report``: the HTML error-analysis page), :func:`export_model`
    (``nsynth export-model``: ONNX with the front end inside).
Prediction
    :func:`predict_files` / :func:`format_results` (``nsynth predict``), :func:`predict_audio`
    (an array of samples at any rate), :class:`Predictor` (a checkpoint loaded once).
Data
    :class:`Split` (one cache split as batches, resident or streamed), :class:`ChunkStream`
    (exactly-once shuffled epochs over a cache's checked chunks), :func:`loader`, :func:`batches`.
Models and tasks
    :func:`build_model`, :data:`PRESETS`, :func:`get_task`, :data:`TASKS`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> module that defines it; imported on first use (torch loads only when a name is used).
_WHERE = {
    "train_run": "api", "eval_run": "api", "demo_run": "api", "train_seeds": "api",
    "TrainConfig": "config", "train": "loop", "evaluate_run": "evaluate", "write_report": "report",
    "export_model": "export_onnx",
    "predict_files": "predict", "format_results": "predict", "predict_audio": "predict", "Predictor": "predict",
    "Split": "splits", "ChunkStream": "data", "loader": "data", "batches": "data",
    "build_model": "models", "PRESETS": "vocabulary", "get_task": "tasks", "TASKS": "tasks",
}

__all__ = [
    "PRESETS",
    "TASKS",
    "ChunkStream",
    "Predictor",
    "Split",
    "TrainConfig",
    "batches",
    "build_model",
    "demo_run",
    "eval_run",
    "evaluate_run",
    "export_model",
    "format_results",
    "get_task",
    "loader",
    "predict_audio",
    "predict_files",
    "train",
    "train_run",
    "train_seeds",
    "write_report",
]
assert set(_WHERE) == set(__all__)  # one list of names, two uses

if TYPE_CHECKING:
    from nsynth_train.api import demo_run, eval_run, train_run, train_seeds
    from nsynth_train.config import TrainConfig
    from nsynth_train.data import ChunkStream, batches, loader
    from nsynth_train.evaluate import evaluate_run
    from nsynth_train.export_onnx import export_model
    from nsynth_train.loop import train
    from nsynth_train.models import build_model
    from nsynth_train.predict import Predictor, format_results, predict_audio, predict_files
    from nsynth_train.report import write_report
    from nsynth_train.splits import Split
    from nsynth_train.tasks import TASKS, get_task
    from nsynth_train.vocabulary import PRESETS


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'nsynth_train' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"nsynth_train.{_WHERE[name]}"), name)
    globals()[name] = value  # next time without this hook
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
