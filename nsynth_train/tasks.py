"""Classification tasks: which label column, which NSynth ids become which class index.

The cache keeps NSynth's own ids; a task maps them to contiguous class indices (-1: not in
the task) and the mapping is stored with every run and checkpoint.

A task is one head (``family``, ``source``, ``velocity``, ``pitch``, ``qualities``) or several
at once: ``both`` (family and source, as it always was) or a comma list such as
``family,source,pitch`` (:func:`make_task`). ``pitch``'s classes are the MIDI pitches present
in the train split, so it is made from the train cache; every other head's classes are fixed.
``qualities`` is multi-label: 10 independent yes/no outputs (sigmoid and binary cross-entropy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from nsynth_prep.errors import ConfigError
from nsynth_prep.labels import FAMILIES, QUALITIES, SOURCES, VELOCITIES
from nsynth_train.vocabulary import HEAD_NAMES, task_heads

MIDI_PITCHES = 128


class LabelSource(Protocol):
    """What :func:`make_task` reads from a train cache: one label column."""

    def label(self, name: str) -> np.ndarray: ...


@dataclass(frozen=True)
class Task:
    """A task: ``column`` of the cache, and the NSynth ids that are its classes, in order.

    ``second`` names a second head's task (``both``: family classes here, then ``source``):
    the model has ``outputs`` logits, the first ``num_classes`` for this task's classes and
    the rest for the second task's; each head has its own softmax and loss.

    ``parts``: the heads of a comma-list task (``family,source,pitch``), each a one-head task, in
    order; ``column``, ``class_ids`` and ``class_names`` are then the first head's (its notes are
    the ones a split yields). ``multilabel``: the classes are independent yes/no labels (the
    ``qualities`` column, (N, 10) flags), not one class per note.
    """

    name: str
    column: str
    class_ids: tuple[int, ...]
    class_names: tuple[str, ...]
    second: str | None = None
    multilabel: bool = False
    parts: tuple[Task, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.class_ids)

    @property
    def outputs(self) -> int:
        """Logits of the model: the classes of every head together."""
        if self.parts:
            return sum(p.num_classes for p in self.parts)
        return self.num_classes + (get_task(self.second).num_classes if self.second else 0)

    def heads(self) -> list[tuple[Task, slice]]:
        """Each head's task and its slice of the logits: one head, (family, source) for ``both``,
        or each part of a comma list."""
        if self.parts:
            out, start = [], 0
            for part in self.parts:
                out.append((part, slice(start, start + part.num_classes)))
                start += part.num_classes
            return out
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
        """(N,) NSynth ids -> (N,) class indices (-1 where the note is not in the task). A
        multi-label task takes every note: (N, 10) flags -> (N,) zeros."""
        if self.multilabel:
            return np.zeros(len(nsynth_ids), np.int64)
        table = self.lookup()
        ids = np.asarray(nsynth_ids, np.int64)
        out = np.full(ids.shape, -1, np.int64)
        ok = (ids >= 0) & (ids < len(table))
        out[ok] = table[ids[ok]]
        return out

    def targets(self, labels: np.ndarray) -> np.ndarray:
        """The training targets of a label column: (N,) int64 classes (-1: not in the task), or
        for a multi-label task the (N, 10) flags as float32."""
        if self.multilabel:
            return np.asarray(labels, np.float32)
        return self.classes_of(labels)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "column": self.column, "class_ids": list(self.class_ids),
                             "class_names": list(self.class_names)}
        # Keys only where they say something: a one-head task's dict is as runs have always stored it.
        if self.second:
            d["second"] = self.second
        if self.multilabel:
            d["multilabel"] = True
        if self.parts:
            d["heads"] = [p.to_dict() for p in self.parts]
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Task:
        parts = tuple(Task.from_dict(p) for p in d.get("heads", ()))
        return Task(d["name"], d["column"], tuple(d["class_ids"]), tuple(d["class_names"]), d.get("second"),
                    bool(d.get("multilabel", False)), parts)


def pitch_task(pitches: np.ndarray | list[int]) -> Task:
    """The pitch task over the MIDI pitches given (those present in the train split); each class
    is named by its MIDI number."""
    ids = sorted({int(p) for p in np.asarray(pitches).ravel()})
    if not ids or ids[0] < 0 or ids[-1] >= MIDI_PITCHES:
        raise ConfigError(f"the pitch task needs MIDI pitches 0-127 in the train split, not {ids[:3]}...")
    return Task("pitch", "pitch", tuple(ids), tuple(str(i) for i in ids))


# synth_lead (9) has no valid or test notes in NSynth, so the family task has 10 classes.
_FAMILY_IDS = tuple(i for i, f in enumerate(FAMILIES) if f != "synth_lead")
TASKS = {
    "family": Task("family", "family", _FAMILY_IDS, tuple(FAMILIES[i] for i in _FAMILY_IDS)),
    "source": Task("source", "source", tuple(range(len(SOURCES))), SOURCES),
    # One network, two heads: the family's 10 classes (rows of synth_lead are left out, as in
    # the family task) and the 3 sources; the loss is the sum of the two cross-entropies.
    "both": Task("both", "family", _FAMILY_IDS, tuple(FAMILIES[i] for i in _FAMILY_IDS), second="source"),
    # NSynth's five velocities; a note at any other velocity is not in the task.
    "velocity": Task("velocity", "velocity", VELOCITIES, tuple(str(v) for v in VELOCITIES)),
    "qualities": Task("qualities", "qualities", tuple(range(len(QUALITIES))), QUALITIES, multilabel=True),
}


def get_task(name: str) -> Task:
    """A task whose classes are fixed (every one but ``pitch``, which :func:`make_task` makes
    from the train split)."""
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}") from None


def head_names(spec: str) -> tuple[str, ...]:
    """The heads of a task name: ``("both",)``, ``("pitch",)``, ``("family", "source", "pitch")``.

    Raises
    ------
    ConfigError
        An unknown or refused name (``instrument``), a repeated head, ``both`` in a list.
    """
    heads, problem = task_heads(spec)
    if problem:
        raise ConfigError(problem)
    return heads


def make_task(spec: str, train: LabelSource | None = None) -> Task:
    """The task ``spec`` names (see :func:`head_names`); ``train``: the train split's cache, which
    ``pitch`` takes its classes from (any other task needs none)."""
    heads = head_names(spec)
    parts = []
    for name in heads:
        if name != "pitch":
            parts.append(get_task(name))
        elif train is None:
            raise ConfigError("the pitch task takes its classes from the train split: give its cache")
        else:
            parts.append(pitch_task(train.label("pitch")))
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    return Task(",".join(heads), first.column, first.class_ids, first.class_names, None, first.multilabel, tuple(parts))


def canonical(d: dict[str, Any]) -> Task:
    """The task a stored task dict must be, from its name (and, for pitch, its class ids): what
    a checkpoint's task is checked against. Raises :class:`ConfigError` for a name no version
    defines."""
    name = d.get("name")
    if not isinstance(name, str):
        raise ConfigError(f"task {name!r} is not a task name")
    if name in TASKS:
        return TASKS[name]
    heads = head_names(name)
    if len(heads) == 1:  # pitch: any MIDI pitches, as its train split had
        ids = d.get("class_ids")
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise ConfigError("the pitch task's class ids are not a list of MIDI pitches")
        return pitch_task(ids)
    stored = d.get("heads")
    if not isinstance(stored, list) or len(stored) != len(heads) or not all(isinstance(p, dict) for p in stored):
        raise ConfigError(f"task {name!r} does not hold its {len(heads)} heads")
    parts = tuple(canonical(p) for p in stored)
    if tuple(p.name for p in parts) != heads:
        raise ConfigError(f"task {name!r} holds the heads {', '.join(p.name for p in parts)}")
    first = parts[0]
    return Task(name, first.column, first.class_ids, first.class_names, None, first.multilabel, parts)


__all__ = ["HEAD_NAMES", "TASKS", "Task", "canonical", "get_task", "head_names", "make_task", "pitch_task"]
