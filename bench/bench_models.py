"""Every preset x task trained on one corpus with one budget, and the markdown table of results.

    nice -n 19 python3 bench/bench_models.py --cache /work/gm-cache --runs /work/gm-runs \
        --epochs 3 --batch-size 128 [--only cnn,mel-cnn] [--tasks family] [--options] [--table-only]

Each row is one run folder ``<runs>/<task>-<model>`` trained with ``nsynth train``'s own code
(the preset's lr and options, the given ``--epochs`` and ``--batch-size`` for every row, so the
budget is the same) and scored on the test split. A finished run (metrics.json) is not run
again and an interrupted one resumes, so the command can be repeated until the table is full.
Columns: test accuracy and macro-F1 (``both``: family / source head), parameters, training
notes/s and seconds per epoch on this machine (mean over the epochs), the best epoch.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nsynth_train.api import train_run  # noqa: E402
from nsynth_train.models import PRESETS  # noqa: E402

REFERENCE = ("cnn", "cnn-reg", "lstm", "blstm")
# --options: the new presets also with every training option on, run folders <task>-<model>-options:
# what the options bring, measured (the presets themselves have them off)
OPTIONS = {"optimizer": "adamw", "weight_decay": 0.01, "schedule": "onecycle", "label_smoothing": 0.1,
           "balance": "loss", "gain_db": 6.0, "shift": 0.1}


def jobs(models: list[str]) -> list[tuple[str, str]]:
    """(model, task) pairs: family and source for each preset, and ``both`` for the new ones."""
    out = []
    for model in models:
        tasks = ("family", "source") if model in REFERENCE else ("family", "source", "both")
        out += [(model, task) for task in tasks]
    return out


def row(run: Path, model: str, task: str) -> str | None:
    """One markdown row from a finished run folder, or None when it has not finished."""
    if not (run / "metrics.json").is_file():
        return None
    metrics = json.loads((run / "metrics.json").read_text())
    config = json.loads((run / "config.json").read_text())
    with open(run / "history.csv") as f:
        history = list(csv.DictReader(f))
    seconds = sum(float(h["seconds"]) for h in history) / len(history)
    rate = sum(float(h["notes_per_s"]) for h in history) / len(history)
    test = metrics["test"]
    if "source_head" in metrics:
        src = metrics["source_head"]
        acc = f"{100 * test['accuracy']:.1f} / {100 * src['accuracy']:.1f}"
        f1 = f"{test['macro_f1']:.3f} / {src['macro_f1']:.3f}"
    else:
        acc, f1 = f"{100 * test['accuracy']:.1f}", f"{test['macro_f1']:.3f}"
    settings = config["config"]
    params = config["parameters"]
    return (f"| {model} | {task} | {acc} | {f1} | {params:,} | {rate:,.0f} | {seconds:,.0f} | "
            f"{settings['batch_size']} | {len(history)} (best {metrics['epoch']}) |")


def table(runs: Path, pairs: list[tuple[str, str]], options: bool = False) -> str:
    lines = ["| preset | task | test accuracy % | macro-F1 | parameters | train notes/s | s/epoch | batch | epochs |",
             "|---|---|---|---|---|---|---|---|---|"]
    for model, task in pairs:
        lines.append(row(runs / f"{task}-{model}", model, task) or f"| {model} | {task} | (not run) | | | | | | |")
        if options and model not in REFERENCE:
            name = f"{model} + options"
            lines.append(row(runs / f"{task}-{model}-options", name, task) or f"| {name} | {task} | (not run) | | | | | | |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--only", help="Comma-separated presets (default: all)")
    ap.add_argument("--tasks", help="Comma-separated tasks (default: all that apply)")
    ap.add_argument("--options", action="store_true",
                    help="Also train the new presets with every training option on (<task>-<model>-options).")
    ap.add_argument("--table-only", action="store_true", help="Print the table of the finished runs; train nothing.")
    args = ap.parse_args()
    models = args.only.split(",") if args.only else list(PRESETS)
    pairs = [p for p in jobs(models) if not args.tasks or p[1] in args.tasks.split(",")]
    if not args.table_only:
        todo = [(m, t, "", {}) for m, t in pairs]
        if args.options:
            todo += [(m, t, "-options", OPTIONS) for m, t in pairs if m not in REFERENCE]
        for model, task, suffix, options in todo:
            out = args.runs / f"{task}-{model}{suffix}"
            if (out / "metrics.json").is_file():
                continue
            print(f"== {task} {model}{suffix}", flush=True)
            train_run(task, model, args.cache, out, resume=True, progress=False, epochs=args.epochs,
                      batch_size=args.batch_size, **options)
    print(table(args.runs, pairs, args.options))


if __name__ == "__main__":
    main()
