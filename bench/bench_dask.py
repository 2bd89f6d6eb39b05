"""Build time on a Dask LocalCluster of 1 and 2 workers against the local build (workers 1 and 2).

    python3 bench/bench_dask.py [--notes 8000] [--source jsonwav|tfrecord] [--feature pooled ...]
                                [--repeat 2] [--out bench/out/dask]

Writes a synthetic train split of ``--notes`` notes (once; reused by later runs), warms the page
cache and the numba cache with one local build, then, into a fresh cache each time:

* ``local``: ``build_cache`` with ``--workers 1`` and ``2`` (a fork pool of chunk writers);
* ``dask``: a LocalCluster of 1 and 2 processes of one thread (as ``--dask local:N`` starts it),
  its start timed apart; the first build on it (its workers import nsynth and load the numba
  kernels) and the best of ``--repeat`` builds (warm workers).

Every Dask cache is compared file by file with the local cache of the same worker count
(identical: every byte of every file, zarr.json included). Prints a markdown table for
docs/benchmarks.md. Tasks own whole blocks of the largest feature's chunk rows (1024 for
pooled), so a corpus of fewer blocks than workers cannot use them all.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def same_files(a: Path, b: Path) -> bool:
    """Every file under ``a`` and ``b`` (but the writer lock, which names its holder) byte for byte."""
    def files(d: Path) -> dict[str, bytes]:
        return {str(p.relative_to(d)): p.read_bytes() for p in d.rglob("*") if p.is_file() and p.suffix != ".lock"}
    return files(a) == files(b)


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--notes", type=int, default=8000, help="train notes in the corpus")
    ap.add_argument("--source", choices=["jsonwav", "tfrecord"], default="jsonwav")
    ap.add_argument("--feature", action="append", choices=["pooled", "framed", "trimmed"],
                    help="feature(s) to build (default pooled)")
    ap.add_argument("--repeat", type=int, default=2, help="builds per setting (the best is reported)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "dask")
    args = ap.parse_args()
    import distributed

    from nsynth_prep.builder.dask_cluster import local_cluster_options
    from nsynth_prep.builder.pipeline import BuildConfig, build_cache
    from nsynth_prep.corpus.synth import write_corpus

    features = tuple(args.feature or ["pooled"])
    corpus = args.out / f"corpus-{args.notes}"
    if not (corpus / "done").exists():
        shutil.rmtree(corpus, ignore_errors=True)
        write_corpus(corpus, {"train": args.notes, "valid": 10, "test": 10}, ("jsonwav", "tfrecord"), seed=0)
        (corpus / "done").touch()
    source = corpus / ("nsynth-train" if args.source == "jsonwav" else "nsynth-train.tfrecord")
    subprocess.run(f"cat $(find {source} -type f) | wc -c > /dev/null", shell=True, check=True)  # page cache

    def build(cache: Path, workers: int, dask: str | None = None) -> float:
        shutil.rmtree(cache, ignore_errors=True)
        return timed(lambda: build_cache(source, cache, BuildConfig(features, workers=workers, dask=dask),
                                         progress=False))

    caches = args.out / "caches"
    build(caches / "warm", 1)  # numba's on-disk cache and the page cache, before anything is timed
    rows: list[tuple[str, int, float | None, float | None, float, str]] = []  # kind, workers, start, first, best
    for workers in (1, 2):
        best = min(build(caches / f"local-{workers}", workers) for _ in range(args.repeat))
        rows.append(("local", workers, None, None, best, "reference"))
    for workers in (1, 2):
        t = time.perf_counter()
        cluster = distributed.LocalCluster(**local_cluster_options(workers))  # as --dask local:N starts it
        started = time.perf_counter() - t
        try:
            cache = caches / f"dask-{workers}"
            times = [build(cache, workers, cluster.scheduler_address) for _ in range(args.repeat)]
        finally:
            cluster.close()
        verdict = "identical" if same_files(cache, caches / f"local-{workers}") else "DIFFERENT"
        rows.append(("dask LocalCluster", workers, started, times[0], min(times), verdict))

    print(f"\n{args.notes:,} notes ({args.source}, {'+'.join(features)}), {os.cpu_count()} cores, best of "
          f"{args.repeat}\n")
    print("| build | workers | cluster start s | first build s | best build s | notes/s | bytes vs local |")
    print("|---|---|---|---|---|---|---|")
    for kind, workers, start, first, best, verdict in rows:
        start_s, first_s = (f"{x:.2f}" if x is not None else "-" for x in (start, first))
        print(f"| {kind} | {workers} | {start_s} | {first_s} | {best:.2f} | {args.notes / best:,.0f} | {verdict} |")


if __name__ == "__main__":  # the guard the LocalCluster's spawned worker processes need
    main()
