"""``nsynth predict`` on labelled audio (an NSynth split folder, whose examples.json gives each
file's true family and source): the accuracy and confusion counts of each head over the files
that have a label. Works on :func:`~nsynth_train.predict.predict_files`' results alone."""

from __future__ import annotations

from typing import Any

TRUTH_FIELDS = ("family", "source")  # the order of a result's "truth": "<family> <source>"


def score_results(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{head: {"files", "correct", "accuracy", "confusion": {true: {predicted: n}}}}`` for every
    head whose truth the labelled results give (empty when none are labelled). A file whose true
    class is outside the run's classes (``synth_lead`` for a family run) still counts, as wrong."""
    scored: dict[str, dict[str, Any]] = {}
    for r in results:
        if "truth" not in r:
            continue
        truth = dict(zip(TRUTH_FIELDS, r["truth"].split(), strict=False))
        for head, best in r["predictions"].items():
            if head not in truth or not best:
                continue
            s = scored.setdefault(head, {"files": 0, "correct": 0, "confusion": {}})
            predicted = best[0]["class"]
            s["files"] += 1
            s["correct"] += predicted == truth[head]
            row = s["confusion"].setdefault(truth[head], {})
            row[predicted] = row.get(predicted, 0) + 1
    for s in scored.values():
        s["accuracy"] = s["correct"] / s["files"]
    return scored


def format_scores(scored: dict[str, dict[str, Any]]) -> str:
    """Each head's accuracy line and its confusion counts (rows true, columns predicted)."""
    lines = []
    for head, s in scored.items():
        lines.append(f"{head}: accuracy {100 * s['accuracy']:.1f}% ({s['correct']} of {s['files']} labelled files)")
        rows = sorted(s["confusion"])
        cols = sorted({p for row in s["confusion"].values() for p in row})
        width = max(len(c) for c in [*rows, *cols, "true \\ predicted"])
        lines.append("  " + "true \\ predicted".ljust(width) + "".join(f" {c[:9]:>9}" for c in cols))
        lines += ["  " + t.ljust(width) + "".join(f" {s['confusion'][t].get(c, 0) or '.':>9}" for c in cols)
                  for t in rows]
    return "\n".join(lines)
