"""Training throughput under torchrun on the CPU: plain ``nsynth train`` vs DDP with 1 and 2 (or
more) gloo processes, on a synthetic corpus of a size you choose.

    PYTHONPATH=. python3 bench/bench_ddp.py --notes 4000 --epochs 3 [--procs 1,2] [--model cnn]
        [--batch-size 64] [--same-global-batch] [--resident no] [--work DIR]

Synthesizes the corpus (``nsynth prep synth``'s generator) and builds its caches once in
``--work`` (default: a temporary folder), then for each process count runs ``torchrun
--nproc_per_node P --no-python python3 cli.py train ...`` into a fresh run folder and reads its
``history.csv``. The table gives training notes per second over all ranks (sum of train_notes /
sum of the epochs' seconds, first epoch left out when there are several: it pays the start-up),
the wall time of the whole command (start-up, every epoch, validation, test scoring, figures),
and checks that every epoch's ``train_notes`` is the whole train split (exactly once over the
ranks). ``--batch-size`` is per rank, so P processes take P times the notes per optimizer step;
``--same-global-batch`` divides it by P instead, for the same optimization at every P.

Each torchrun rank gets cores / P torch threads; the plain run gets all the cores.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def prepare(work: Path, notes: int, feature: str) -> Path:
    """Caches of a synthetic corpus of ``notes`` train notes (valid and test a sixth each, at least
    30), made once per size in ``work``."""
    from nsynth_prep.builder.pipeline import BuildConfig, build_cache
    from nsynth_prep.corpus.synth import write_corpus

    held = max(30, notes // 6)
    corpus, caches = work / f"corpus-{notes}", work / f"cache-{notes}"
    marker = caches / ".complete"
    if marker.exists():
        return caches
    shutil.rmtree(corpus, ignore_errors=True)
    write_corpus(corpus, {"train": notes, "valid": held, "test": held}, ("jsonwav",), seed=0, progress=False)
    for split in ("train", "valid", "test"):
        build_cache(corpus / f"nsynth-{split}", caches, BuildConfig(features=(feature,), workers=2), progress=False)
    marker.write_text("ok\n")
    return caches


def train_notes(caches: Path) -> int:
    """Notes of the train split in the family task (what every epoch must see exactly once)."""
    from nsynth_prep.cache.format import cache_path, open_cache
    from nsynth_train.tasks import get_task

    task = get_task("family")
    return int((task.classes_of(open_cache(cache_path(caches, "train"), ()).label(task.column)) >= 0).sum())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(procs: int | None, caches: Path, out: Path, args: argparse.Namespace, batch: int) -> dict[str, float]:
    """One training command (``procs`` None: plain, no torchrun); its throughput from history.csv."""
    train = [sys.executable, str(ROOT / "cli.py"), "-q", "train", "--cache", str(caches), "--model", args.model,
             "--epochs", str(args.epochs), "--batch-size", str(batch), "--device", "cpu",
             "--resident", args.resident, "--out", str(out), "--overwrite"]
    cmd = train if procs is None else [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs), "--rdzv-backend", "c10d",
        "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--no-python", *train]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    timed = rows[1:] if len(rows) > 1 else rows
    notes = sum(int(r["train_notes"]) for r in timed)
    seconds = sum(float(r["seconds"]) for r in timed)
    return {"notes_per_s": notes / seconds, "wall": wall, "epoch_notes": [int(r["train_notes"]) for r in rows]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notes", type=int, default=4000, help="Train notes of the synthetic corpus.")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--procs", default="1,2", help="torchrun process counts, comma-separated.")
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--batch-size", type=int, default=64, help="Per rank (see --same-global-batch).")
    parser.add_argument("--same-global-batch", action="store_true",
                        help="Per-rank batch = --batch-size / processes: the same notes per step at every count.")
    parser.add_argument("--resident", choices=("auto", "yes", "no"), default="no")
    parser.add_argument("--no-plain", action="store_true", help="Leave out the plain (no torchrun) run.")
    parser.add_argument("--work", type=Path, help="Folder for the corpus, caches and runs (kept).")
    args = parser.parse_args()

    from nsynth_train.loop import TrainConfig

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-ddp-"))
    work.mkdir(parents=True, exist_ok=True)
    caches = prepare(work, args.notes, TrainConfig(model=args.model).feature)
    counts: list[int | None] = [] if args.no_plain else [None]
    counts += [int(p) for p in args.procs.split(",")]
    results = []
    for procs in counts:
        p = procs or 1
        batch = max(1, args.batch_size // p) if args.same_global_batch else args.batch_size
        r = run(procs, caches, work / "runs" / f"p{procs or 'plain'}", args, batch)
        results.append((procs, batch, r))
    cores = len(os.sched_getaffinity(0))
    print(f"{args.model}, {args.notes:,} train notes, {args.epochs} epochs, --resident {args.resident}, "
          f"{cores} cores, torch {__import__('torch').__version__}\n")
    print("| launch | processes | batch per rank | notes per step | notes/s (train) | wall s | vs 1 process |"
          " train_notes every epoch |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    one = next((r["notes_per_s"] for procs, _, r in results if procs == 1), None)
    split = train_notes(caches)
    for procs, batch, r in results:
        p = procs or 1
        ok = "= split" if all(n == split for n in r["epoch_notes"]) else f"split is {split}: NOT exactly once"
        speed = f"{r['notes_per_s'] / one:.2f}x" if one else "-"
        print(f"| {'plain' if procs is None else 'torchrun'} | {p} | {batch} | {p * batch} | "
              f"{r['notes_per_s']:,.0f} | {r['wall']:.1f} | {speed} | {r['epoch_notes'][0]:,} ({ok}) |")


if __name__ == "__main__":
    main()
