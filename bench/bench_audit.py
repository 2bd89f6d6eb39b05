"""``nsynth audit`` in one process vs several, side by side in one run.

    python3 bench/bench_audit.py --notes 8000 [--workers 2] [--runs 3] [--out /tmp/bench-audit]

Describes a synthetic train split of ``--notes`` notes (``write_descriptors``: build-cache renders
the notes as it builds), builds its cache once with trimmed, framed and pooled (what a full audit
reads: silence, clipping and noise on trimmed, NaN checks on every feature), then runs
``nsynth audit --json CACHE --workers 1`` and ``--workers W`` in turns, ``--runs`` times each, so
both see the same machine. Per run: wall time, CPU time of the audit and its worker processes
(from the children's rusage), notes per second. The speed-up is of the best runs; the JSON reports
of every run must be identical (the report does not depend on the number of processes).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(out: Path, notes: int, workers: int) -> Path:
    """The train cache of a described corpus of ``notes`` notes (built once; reused when there)."""
    from nsynth_prep.corpus.synth import write_descriptors

    cache = out / "caches" / "train.zarr"
    if not cache.exists():
        corpus = write_descriptors(out / "corpus", {"train": notes, "valid": 1, "test": 1})
        subprocess.run([sys.executable, "cli.py", "-q", "prep", "build-cache", str(corpus["train"]),
                        "--cache", str(out / "caches"), "--workers", str(workers), "--feature", "trimmed",
                        "--feature", "framed", "--feature", "pooled"], cwd=ROOT, check=True)
    return cache


def audit_once(cache: Path, workers: int) -> dict[str, Any]:
    """One ``nsynth audit --json`` run: its wall and CPU seconds, and its report."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "cli.py", "-q", "audit", "--json", str(cache), "--workers", str(workers)],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"workers": workers, "seconds": seconds, "cpu_s": cpu, "report": json.loads(proc.stdout)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--notes", type=int, default=8000, help="notes in the audited cache")
    ap.add_argument("--workers", type=int, default=2, help="processes of the parallel audit (and of the build)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each, in turns")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-audit"))
    args = ap.parse_args()
    cache = build(args.out, args.notes, args.workers)
    load = os.getloadavg()[0]
    runs = [audit_once(cache, w) for _ in range(args.runs) for w in (1, args.workers)]
    reports = [r.pop("report") for r in runs]
    identical = all(r == reports[0] for r in reports)
    best = {w: min(r["seconds"] for r in runs if r["workers"] == w) for w in (1, args.workers)}
    lines = [f"audit of {args.notes:,} notes (trimmed + framed + pooled), {os.cpu_count()} cores, "
             f"load {load:.2f} before, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             "", "| run | workers | wall s | CPU s | notes/s |", "|---|---|---|---|---|"]
    lines += [f"| {i // 2 + 1} | {r['workers']} | {r['seconds']:.1f} | {r['cpu_s']:.1f} | "
              f"{args.notes / r['seconds']:,.0f} |" for i, r in enumerate(runs)]
    problems = reports[0]["problems"]
    lines += ["", f"best of {args.runs}: {best[1]:.1f} s in 1 process, {best[args.workers]:.1f} s in {args.workers}: "
              f"{best[1] / best[args.workers]:.2f}x; reports identical: {identical} ({problems} problem(s) found)"]
    text = "\n".join(lines)
    (args.out / "results.md").write_text(text + "\n")
    (args.out / "results.json").write_text(json.dumps({"notes": args.notes, "runs": runs, "identical": identical,
                                                       "best": best, "load": load}, indent=1))
    print(text)
    if not identical:
        sys.exit("bench_audit: the reports differ between runs")


if __name__ == "__main__":
    main()
