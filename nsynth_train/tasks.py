"""Classification tasks: which label column, which NSynth ids become which class index.

The cache keeps NSynth's own ids; a task maps them to contiguous class indices (-1: not in
the task) and the mapping is stored with every run and checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nsynth_prep.errors import ConfigError
from nsynth_prep.labels import FAMILIES, SOURCES


@dataclass(frozen=True)
class Task:
    """A task: ``column`` of the cache, and the NSynth ids that are its classes, in order.

    ``second`` names a second head's task (``both``: family classes here, then ``source``):
    the model has ``outputs`` logits, the first ``num_classes`` for this task's classes and
    the rest for the second task's; each head has its own softmax and loss.
    """

    name: str
    column: str
    class_ids: tuple[int, ...]
    class_names: tuple[str, ...]
    second: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_ids)

    @property
    def outputs(self) -> int:
        """Logits of the model: this task's classes plus the second head's."""
        return self.num_classes + (get_task(self.second).num_classes if self.second else 0)

    def heads(self) -> list[tuple[Task, slice]]:
        """Each head's task and its slice of the logits: one head, or (family, source) for ``both``."""
        first = Task(self.column, self.column, self.class_ids, self.class_names) if self.second else self
        heads = [(first, slice(0, self.num_classes))]
        if self.second:
            heads.append((get_task(self.second), slice(self.num_classes, self.outputs)))
        return heads

    def lookup(self) -> np.ndarray:
        """(max id + 1,) int64: NSynth id -> class index, -1 for ids outside the task."""
        table = np.full(max(self.class_ids) + 2, -1, np.int64)
        table[list(self.class_ids)] = np.arange(self.num_classes)
        return table

    def classes_of(self, nsynth_ids: np.ndarray) -> np.ndarray:
        """(N,) NSynth ids -> (N,) class indices (-1 where the note is not in the task)."""
        table = self.lookup()
        ids = np.asarray(nsynth_ids, np.int64)
        out = np.full(ids.shape, -1, np.int64)
        ok = (ids >= 0) & (ids < len(table))
        out[ok] = table[ids[ok]]
        return out

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "column": self.column, "class_ids": list(self.class_ids),
             "class_names": list(self.class_names)}
        return {**d, "second": self.second} if self.second else d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Task:
        return Task(d["name"], d["column"], tuple(d["class_ids"]), tuple(d["class_names"]), d.get("second"))


# synth_lead (9) has no valid or test notes in NSynth, so the family task has 10 classes.
_FAMILY_IDS = tuple(i for i, f in enumerate(FAMILIES) if f != "synth_lead")
TASKS = {
    "family": Task("family", "family", _FAMILY_IDS, tuple(FAMILIES[i] for i in _FAMILY_IDS)),
    "source": Task("source", "source", tuple(range(len(SOURCES))), SOURCES),
    # One network, two heads: the family's 10 classes (rows of synth_lead are left out, as in
    # the family task) and the 3 sources; the loss is the sum of the two cross-entropies.
    "both": Task("both", "family", _FAMILY_IDS, tuple(FAMILIES[i] for i in _FAMILY_IDS), second="source"),
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}") from None
