"""The metrics of the heads beyond a confusion matrix: multi-label (qualities) average precision
and F1, pitch's near misses, and every head's breakdown by pitch range and by velocity; and
:class:`HeadScores`, one head's share of a scored split, which the figures and the report draw.

Plain numpy on predictions and labels; :mod:`nsynth_train.evaluate` puts the results in
``metrics.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nsynth_train.tasks import Task

THRESHOLD = 0.5  # a quality is predicted present at p >= 0.5 (no threshold tuned on the scored split)
OCTAVE = 12  # semitones


@dataclass(frozen=True)
class HeadScores:
    """One head's share of a scored split: its probabilities (N, classes), true classes (N,)
    (-1: a note the head does not score, e.g. a pitch absent from train) and confusion matrix
    (C, C) of the scored notes; for a multi-label head (N, L) flags and (L, 2, 2) matrices."""

    head: Task
    probs: np.ndarray
    y: np.ndarray
    cm: np.ndarray


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Average precision of ``scores`` (N,) ranking the ``positive`` (N,) bool notes: the mean over
    thresholds of precision, weighted by the recall each adds (scikit-learn's definition; tied
    scores form one threshold). None when there is no positive note."""
    positive = np.asarray(positive, bool)
    if not positive.any():
        return None
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    s, t = np.asarray(scores, np.float64)[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # the last note of each distinct score
    tp = np.cumsum(t)[last]
    precision = tp / (last + 1)
    recall_gain = np.diff(np.r_[0, tp]) / tp[-1]
    return float(np.sum(precision * recall_gain))


def multilabel_confusion(flags: np.ndarray, probs: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """(L, 2, 2) int64 counts per label: rows true no/yes, columns predicted no/yes.

    ``flags`` (N, L) 0/1 truth; ``probs`` (N, L) probabilities, predicted yes at ``threshold``."""
    true, said = np.asarray(flags) > 0.5, np.asarray(probs) >= threshold
    return np.stack([[[np.sum(~t & ~p), np.sum(~t & p)], [np.sum(t & ~p), np.sum(t & p)]]
                     for t, p in zip(true.T, said.T, strict=True)]).astype(np.int64)


def _f1(tp: float, fp: float, fn: float) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def multilabel_summary(flags: np.ndarray, probs: np.ndarray, names: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Per label: notes with it, AP, precision, recall and F1 at p >= 0.5; over labels: mAP (the
    mean AP of the labels that have notes), macro- and micro-F1 and subset accuracy (every label
    of a note right).

    ``flags`` (N, L) 0/1 truth; ``probs`` (N, L) probabilities."""
    flags, probs = np.asarray(flags) > 0.5, np.asarray(probs)
    cms = multilabel_confusion(flags, probs)
    per: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(names):
        (_, fp), (fn, tp) = cms[i].tolist()
        per[name] = {"positives": int(flags[:, i].sum()), "ap": average_precision(probs[:, i], flags[:, i]),
                     "precision": tp / (tp + fp) if tp + fp else None, "recall": tp / (tp + fn) if tp + fn else None,
                     "f1": _f1(tp, fp, fn)}
    aps = [p["ap"] for p in per.values() if p["ap"] is not None]
    with_notes = [p["f1"] for p in per.values() if p["positives"]]
    tp, fp, fn = cms[:, 1, 1].sum(), cms[:, 0, 1].sum(), cms[:, 1, 0].sum()
    return {"notes": len(flags), "threshold": THRESHOLD, "mAP": float(np.mean(aps)) if aps else None,
            "micro_f1": _f1(tp, fp, fn), "macro_f1": float(np.mean(with_notes)) if with_notes else 0.0,
            "subset_accuracy": float(np.mean(np.all(flags == (probs >= THRESHOLD), 1))) if len(flags) else 0.0,
            "per_quality": per, "confusion": cms.tolist()}


def pitch_summary(y: np.ndarray, pred: np.ndarray, class_ids: tuple[int, ...], family: np.ndarray,
                  family_names: tuple[str, ...]) -> dict[str, Any]:
    """Pitch's near misses: accuracy within +-1 semitone, the octave-error rate (off by a whole
    number of octaves, not 0) and accuracy by family.

    ``y``, ``pred`` (N,) class indices (``class_ids[c]`` is the MIDI pitch of class c); ``family``
    (N,) NSynth family ids of the notes."""
    midi = np.asarray(class_ids, np.int64)
    error = midi[np.asarray(pred, np.int64)] - midi[np.asarray(y, np.int64)]  # (N,) semitones
    n = max(len(error), 1)
    by_family = {}
    for f in np.unique(family):
        of = family == f
        by_family[family_names[int(f)]] = {"notes": int(of.sum()), "accuracy": float(np.mean(error[of] == 0))}
    return {"within_1_semitone": float(np.sum(np.abs(error) <= 1) / n),
            "octave_error_rate": float(np.sum((error != 0) & (error % OCTAVE == 0)) / n),
            "accuracy_by_family": by_family, "error_histogram": _histogram(error)}


def _histogram(error: np.ndarray) -> dict[str, int]:
    """Notes per pitch error in semitones (predicted - true), as text keys for JSON."""
    values, counts = np.unique(error, return_counts=True)
    return {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)}


def pitch_range_name(octave: int) -> str:
    """``C4-B4 (60-71)``: the MIDI octave ``octave`` (pitches 12 * octave to 12 * octave + 11)."""
    return f"C{octave - 1}-B{octave - 1} ({OCTAVE * octave}-{OCTAVE * octave + 11})"


def breakdown(counts: np.ndarray, pitch: np.ndarray, velocity: np.ndarray, multilabel: bool) -> dict[str, Any]:
    """A head's score by pitch range (MIDI octaves C to B) and by velocity.

    ``counts`` (N, 3) per note: (hit, scored, 0) for a class head, whose score is accuracy;
    (true positives, false positives, false negatives) for a multi-label head, whose score is
    micro-F1. ``pitch``, ``velocity`` (N,) the notes' MIDI pitch and velocity."""
    key = "micro_f1" if multilabel else "accuracy"

    def score(rows: np.ndarray) -> dict[str, Any]:
        a, b, c = counts[rows].sum(0).tolist()
        notes = int(rows.sum()) if multilabel else int(b)
        return {"notes": notes, key: _f1(a, b, c) if multilabel else (a / b if b else None)}

    octave = np.asarray(pitch, np.int64) // OCTAVE
    return {"by_pitch_range": {pitch_range_name(int(o)): score(octave == o) for o in np.unique(octave)},
            "by_velocity": {str(int(v)): score(velocity == v) for v in np.unique(velocity)}}


def note_counts(y: np.ndarray, probs: np.ndarray, multilabel: bool) -> np.ndarray:
    """(N, 3) int64 per-note counts for :func:`breakdown`: (hit, scored, 0) of a class head's
    (N,) classes (-1: not scored) and (N, C) probabilities, or (tp, fp, fn) of a multi-label
    head's (N, L) flags and probabilities."""
    if multilabel:
        true, said = np.asarray(y) > 0.5, np.asarray(probs) >= THRESHOLD
        return np.stack([(true & said).sum(1), (~true & said).sum(1), (true & ~said).sum(1)], 1).astype(np.int64)
    scored = np.asarray(y) >= 0
    hit = scored & (np.asarray(probs).argmax(1) == y)
    return np.stack([hit, scored, np.zeros_like(scored)], 1).astype(np.int64)
