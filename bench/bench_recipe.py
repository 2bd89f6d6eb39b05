"""The training recipe measured: each ingredient alone, all together, the baseline and a
stronger model, each with several seeds at one budget; the markdown table of mean +- std.

    OMP_NUM_THREADS=1 nice -n 10 python3 bench/bench_recipe.py --cache /tmp/xlib-cache --runs /tmp/xlib-runs \
        --epochs 6 --batch-size 32 --seeds 0,1,2 [--only baseline,mixup] [--table-only]

Each row x seed is one run folder ``<runs>/<row>-s<seed>`` trained with ``nsynth train``'s own
code on the family task (``--task`` for another), every row with the same epochs, batch size
and learning rate (the preset's), and scored on the test split with the best epoch by valid
accuracy. Runs go seed by seed (every row's seed 0 first), so a stopped bench leaves a complete
table of fewer seeds; a finished run (metrics.json) is not run again and an interrupted one resumes.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nsynth_train.api import train_run  # noqa: E402

SPEC_AUGMENT = {"freq_mask": 8, "time_mask": 5}  # PANNs' 2 x 8 of 64 bands; ~10 % of the 51 frames
MIXUP = {"mixup": 0.3}  # EfficientAT's alpha
BALANCED = {"balance": "sample"}
ROBUST = {"eq_db": 6.0, "noise_snr": 20.0, "pitch_shift": 0.5}
# row -> (model, options)
ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "baseline": ("mel-cnn", {}),
    "specaugment": ("mel-cnn", SPEC_AUGMENT),
    "mixup": ("mel-cnn", MIXUP),
    "balanced": ("mel-cnn", BALANCED),
    "robust": ("mel-cnn", ROBUST),
    "all": ("mel-cnn", {**SPEC_AUGMENT, **MIXUP, **BALANCED, **ROBUST}),
    "mel-cnn2": ("mel-cnn2", {}),
}


def options_text(options: dict[str, Any]) -> str:
    return " ".join(f"--{k.replace('_', '-')} {v}" for k, v in options.items()) or "(none)"


def cell(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    """``mean +- std`` (sample std over the seeds) of the values times ``scale``."""
    if not values:
        return "(not run)"
    mean = statistics.fmean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} +- {std:.{digits}f}"


def table(runs: Path, rows: list[str], seeds: list[int]) -> str:
    lines = ["| row | model | options | test accuracy % | macro-F1 | per seed (accuracy %) | best valid % | "
             "last train % | best epochs | seeds |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name in rows:
        model, options = ROWS[name]
        acc, f1, valid, trained, best = [], [], [], [], []
        for seed in seeds:
            run = runs / f"{name}-s{seed}"
            if (run / "metrics.json").is_file():
                metrics = json.loads((run / "metrics.json").read_text())
                acc.append(metrics["test"]["accuracy"])
                f1.append(metrics["test"]["macro_f1"])
                best.append(str(metrics["epoch"]))
                with open(run / "history.csv") as f:
                    history = list(csv.DictReader(f))
                valid.append(max(float(h["valid_accuracy"]) for h in history))
                trained.append(float(history[-1]["train_accuracy"]))  # mixup's: against each note's own class
        per_seed = ", ".join(f"{100 * a:.1f}" for a in acc)
        lines.append(f"| {name} | {model} | {options_text(options)} | {cell(acc)} | {cell(f1, 1.0, 3)} | "
                     f"{per_seed} | {cell(valid)} | {cell(trained)} | {', '.join(best)} | {len(acc)} |")
    return "\n".join(lines)


def speed(models: list[str], batch_size: int, steps: int = 5) -> str:
    """Parameters and training notes/s (forward, backward, Adam step on random audio, one thread,
    the first step left out) of each model, as markdown rows."""
    import time

    import torch

    from nsynth_train.models import build_model, count_parameters

    torch.set_num_threads(1)
    lines = ["| model | parameters (10 classes) | training notes/s, 1 thread |", "|---|---|---|"]
    for name in models:
        torch.manual_seed(0)
        model = build_model(name, 10)
        opt = torch.optim.Adam(model.parameters())
        x, y = torch.randn(batch_size, 51_200) * 0.1, torch.randint(0, 10, (batch_size,))
        for k in range(steps + 1):
            if k == 1:
                start = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        rate = batch_size * steps / (time.perf_counter() - start)
        lines.append(f"| {name} | {count_parameters(model):,} | {rate:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("--task", default="family")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seeds", default="0,1,2", help="Comma-separated seeds.")
    ap.add_argument("--only", help=f"Comma-separated rows (default: all of {', '.join(ROWS)}).")
    ap.add_argument("--table-only", action="store_true", help="Print the table of the finished runs; train nothing.")
    ap.add_argument("--speed", action="store_true", help="Only time a training step of each row's model.")
    args = ap.parse_args()
    rows = args.only.split(",") if args.only else list(ROWS)
    seeds = [int(s) for s in args.seeds.split(",")]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        ap.error(f"unknown rows {', '.join(unknown)}; expected some of {', '.join(ROWS)}")
    if args.speed:
        print(speed(sorted({ROWS[r][0] for r in rows}), args.batch_size))
        return
    if not args.table_only:
        for seed in seeds:
            for name in rows:
                out = args.runs / f"{name}-s{seed}"
                if (out / "metrics.json").is_file():
                    continue
                model, options = ROWS[name]
                print(f"== {name} seed {seed}", flush=True)
                train_run(args.task, model, args.cache, out, resume=True, progress=False, figures=False,
                          epochs=args.epochs, batch_size=args.batch_size, seed=seed, device="cpu", **options)
                print(table(args.runs, rows, seeds), flush=True)
    print(table(args.runs, rows, seeds))


if __name__ == "__main__":
    main()
