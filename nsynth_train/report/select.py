"""Which notes a report lists: pure numpy over one head's scores, no I/O.

Every function takes ``probs`` (N, C) float probabilities of one head and ``y`` (N,) its true
classes (-1: the note is outside the head's classes, never listed), and returns indices into them.
"""

from __future__ import annotations

import numpy as np

PER_CELL = 3  # notes listed (with audio) per confusion-matrix cell: the report's size bound
CONFIDENT_ERRORS = 10  # the most confident wrong notes listed per head
BOUNDARY_PER_CLASS = 2  # notes nearest the decision boundary listed per true class


def margins(probs: np.ndarray) -> np.ndarray:
    """(N,) the top probability minus the second (1 for a single class): small = near the boundary."""
    if probs.shape[1] < 2:
        return np.ones(len(probs))
    top2 = np.sort(probs, 1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def cell_notes(probs: np.ndarray, y: np.ndarray, per_cell: int = PER_CELL) -> dict[tuple[int, int], np.ndarray]:
    """``{(true, predicted): indices}`` for every non-empty cell of the confusion matrix, at most
    ``per_cell`` each: the cell's most confident notes first (ties: lower index first)."""
    pred = probs.argmax(1)
    confidence = probs.max(1)
    cells: dict[tuple[int, int], np.ndarray] = {}
    valid = np.flatnonzero(y >= 0)
    for t, p in sorted(set(zip(y[valid].tolist(), pred[valid].tolist(), strict=True))):
        idx = valid[(y[valid] == t) & (pred[valid] == p)]
        cells[(t, p)] = idx[np.argsort(-confidence[idx], kind="stable")[:per_cell]]
    return cells


def confident_errors(probs: np.ndarray, y: np.ndarray, count: int = CONFIDENT_ERRORS) -> np.ndarray:
    """The ``count`` wrong notes whose (wrong) predicted class had the highest probability."""
    pred = probs.argmax(1)
    wrong = np.flatnonzero((y >= 0) & (pred != y))
    return wrong[np.argsort(-probs.max(1)[wrong], kind="stable")[:count]]


def boundary_notes(probs: np.ndarray, y: np.ndarray, per_class: int = BOUNDARY_PER_CLASS) -> dict[int, np.ndarray]:
    """``{true class: indices}``: per class, the notes with the smallest margin between the top
    two predicted classes (right or wrong)."""
    m = margins(probs)
    out = {}
    for c in range(probs.shape[1]):
        idx = np.flatnonzero(y == c)
        if len(idx):
            out[c] = idx[np.argsort(m[idx], kind="stable")[:per_class]]
    return out


def flag_errors(probs: np.ndarray, flags: np.ndarray, per_kind: int = PER_CELL) -> dict[tuple[int, str], np.ndarray]:
    """A multi-label head's listed notes: ``{(label, "missed" | "false"): indices}``, per label the
    ``per_kind`` most confident misses (flag set, lowest probability first) and false alarms (flag
    unset, highest probability first), only where there are any at p >= 0.5.

    ``probs`` (N, L) probabilities, ``flags`` (N, L) 0/1 truth."""
    out: dict[tuple[int, str], np.ndarray] = {}
    said, true = probs >= 0.5, flags > 0.5
    for q in range(probs.shape[1]):
        missed = np.flatnonzero(true[:, q] & ~said[:, q])
        false = np.flatnonzero(~true[:, q] & said[:, q])
        if len(missed):
            out[(q, "missed")] = missed[np.argsort(probs[missed, q], kind="stable")[:per_kind]]
        if len(false):
            out[(q, "false")] = false[np.argsort(-probs[false, q], kind="stable")[:per_kind]]
    return out


def nearest_boundary(probs: np.ndarray, y: np.ndarray, count: int = CONFIDENT_ERRORS) -> np.ndarray:
    """The ``count`` scored notes with the smallest top-two margin over all classes (a head with
    too many classes to list notes per class)."""
    valid = np.flatnonzero(y >= 0)
    return valid[np.argsort(margins(probs)[valid], kind="stable")[:count]]
