"""``nsynth train --tensorboard``: per-epoch scalars (losses, accuracies, learning rate, notes/s)
and the test confusion matrix as a figure, written to ``<run>/tensorboard/`` for TensorBoard
(``tensorboard --logdir runs``). Imported only when asked for: nothing of TensorBoard loads
otherwise. Needs the ``tensorboard`` extra (torch's ``SummaryWriter`` writes the event files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nsynth_prep.errors import ConfigError

FOLDER = "tensorboard"
# history.csv column -> TensorBoard tag (grouped: loss/..., accuracy/... share a chart)
SCALARS = {"train_loss": "loss/train", "valid_loss": "loss/valid", "train_accuracy": "accuracy/train",
           "valid_accuracy": "accuracy/valid", "notes_per_s": "speed/notes_per_s", "seconds": "speed/epoch_seconds"}


class TensorBoardLog:
    """One run's event writer; :meth:`epoch` is the training loop's per-epoch hook."""

    def __init__(self, run: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("--tensorboard needs the tensorboard package: pip install -e '.[tensorboard]'") from None
        self.folder = Path(run) / FOLDER
        self.writer = SummaryWriter(str(self.folder))

    def epoch(self, record: dict[str, float], lr: float) -> None:
        """One epoch's history record (history.csv's columns) and the learning rate it ended at."""
        step = int(record["epoch"])
        for key, tag in SCALARS.items():
            if key in record:
                self.writer.add_scalar(tag, float(record[key]), step)
        self.writer.add_scalar("lr", lr, step)
        self.writer.flush()  # live: TensorBoard shows each epoch as it ends

    def confusion(self, result: dict[str, Any], model: str) -> None:
        """The test confusion matrix of each head (row-normalised) as a figure, at the
        checkpoint's epoch."""
        from nsynth_prep.display.training import Context, confusion_figure

        split = result["split"]
        if isinstance(result.get("heads"), dict):  # several heads
            heads = [(name, m, list(m.get("per_class_accuracy", {}))) for name, m in result["heads"].items()]
        else:
            heads = [(result["task"] if result["task"] != "both" else "family", result[split], result["classes"])]
        if "source_head" in result:
            heads.append(("source", result["source_head"], list(result["source_head"]["per_class_accuracy"])))
        for name, metrics, classes in heads:
            if "confusion_matrix" not in metrics:  # a multi-label head (qualities): its AP is in metrics.json
                continue
            cm = np.asarray(metrics["confusion_matrix"])
            names = tuple(classes[: cm.shape[0]])
            fig = confusion_figure(cm, names, True, Context(model, result["task"], split, result["epoch"]))
            self.writer.add_figure(f"confusion/{name}", fig, int(result["epoch"]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
