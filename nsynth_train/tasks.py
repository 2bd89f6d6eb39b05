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
    """A task: ``column`` of the cache, and the NSynth ids that are its classes, in order."""

    name: str
    column: str
    class_ids: tuple[int, ...]
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_ids)

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
        return {"name": self.name, "column": self.column, "class_ids": list(self.class_ids),
                "class_names": list(self.class_names)}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Task:
        return Task(d["name"], d["column"], tuple(d["class_ids"]), tuple(d["class_names"]))


# synth_lead (9) has no valid or test notes in NSynth, so the family task has 10 classes.
_FAMILY_IDS = tuple(i for i, f in enumerate(FAMILIES) if f != "synth_lead")
TASKS = {
    "family": Task("family", "family", _FAMILY_IDS, tuple(FAMILIES[i] for i in _FAMILY_IDS)),
    "source": Task("source", "source", tuple(range(len(SOURCES))), SOURCES),
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}") from None
