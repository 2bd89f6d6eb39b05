"""The figures of one head of a scored split, whatever its kind: a class head's confusion
matrices, per-class accuracy and examples (:func:`nsynth_train.plots.write_all`); pitch's
confusion over MIDI pitches and its errors; the qualities' AP bars and per-quality confusion;
and for every head its score by pitch range and by velocity (``breakdown.png``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nsynth_prep.cache import format as cache_format
from nsynth_prep.display.heads import breakdown_figure, pitch_figure, qualities_confusion_figure, qualities_figure
from nsynth_prep.display.training import Context
from nsynth_train import plots

if TYPE_CHECKING:
    from nsynth_train.head_metrics import HeadScores


def chance(h: HeadScores) -> float:
    """The chance line of a head's learning curve: 1 / classes, or for a multi-label head the
    micro-F1 of saying every label is present (2p / (1 + p), p the share of yes flags)."""
    if h.head.multilabel:
        p = float(np.mean(np.asarray(h.y) > 0.5)) if np.size(h.y) else 0.0
        return 2 * p / (1 + p)
    return 1 / h.head.num_classes


def write_head(out: Path, history: list[dict[str, float]], h: HeadScores, split: str, metrics: dict[str, Any],
               rows: np.ndarray, cache: cache_format.Cache, model: str, epoch: int | None) -> None:
    """Every figure of head ``h`` into ``out``; learning curves from ``history`` when given (a
    one-head run). ``metrics``: the head's entry of metrics.json; ``rows`` (N,) the notes' cache rows."""
    out.mkdir(parents=True, exist_ok=True)
    head = h.head
    ctx = Context(model, head.name, split, epoch)
    if head.multilabel or head.column == "pitch":
        if history:
            note = ("accuracy: micro-F1 of the qualities at p >= 0.5; chance: saying every quality is present"
                    if head.multilabel else "")
            plots.write_learning_curves(out, history, f"{model}, {head.name} task", split, epoch, chance(h), note)
        if head.multilabel:
            plots.save(qualities_figure(metrics, ctx), out / "qualities_ap.png")
            plots.save(qualities_confusion_figure(h.cm, head.class_names, ctx, metrics["threshold"]),
                       out / "qualities_confusion.png")
        else:  # dozens of pitches: one figure made for them, not a matrix with a number in every cell
            plots.save(pitch_figure(h.cm, head.class_ids, metrics, ctx), out / "pitch.png")
    else:
        keep = h.y >= 0  # a second head may not score every note (family's synth_lead)
        plots.write_all(out, history, h.cm, head, split, metrics, h.probs[keep], h.y[keep], rows[keep], cache,
                        model=model, best_epoch=epoch)
    plots.save(breakdown_figure(metrics, ctx), out / "breakdown.png")
