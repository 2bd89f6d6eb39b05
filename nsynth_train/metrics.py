"""Classification metrics from predictions: confusion matrix, accuracies, macro-F1."""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts; rows are true classes, columns predicted."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


def summarize(cm: np.ndarray, class_names: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Accuracy (fraction), per-class accuracy (recall), per-class F1, macro-F1 from a confusion matrix.

    A class with no true notes has accuracy ``None`` and is left out of the macro average.
    """
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(1).astype(np.float64)
    predicted = cm.sum(0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        f1 = np.where(precision + np.nan_to_num(recall) > 0,
                      2 * precision * recall / (precision + recall), 0.0)
    present = support > 0
    total = cm.sum()
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "notes": int(total),
        "per_class_accuracy": {n: (None if np.isnan(r) else float(r)) for n, r in zip(class_names, recall, strict=True)},
        "per_class_f1": {n: float(f) for n, f, p in zip(class_names, f1, present, strict=True) if p},
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "confusion_matrix": cm.tolist(),
    }
