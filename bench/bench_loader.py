"""Loader overhead, side by side in one run: zarr chunk stream vs an in-memory tensor vs the
model's own training step.

    python3 bench/bench_loader.py --corpus bench/out/corpus-8000/nsynth-train [--device cpu]

Builds a pooled + framed cache of the corpus (once), then measures samples/s of
(1) batches drawn from a tensor already in memory (the floor any loader is held to),
(2) :class:`ChunkStream` through a DataLoader with 0 workers, with and without the per-chunk
    CRC32 check (timed in turns, best of 3, so both see the same machine), and with 2 workers,
(3) one full training step (forward, backward, Adam) of ``cnn`` and ``lstm``,
and the time to load the whole feature for ``--resident`` with and without the check.
The loader is negligible when (2) is many times faster than (3).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rate(fn, samples: int, repeat: int = 2) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return samples / best


def best_in_turns(fns: dict, repeat: int = 3) -> dict[str, float]:  # type: ignore[type-arg]
    """Best seconds of each function, timed in turns (a, b, a, b, ...) so a busy moment of the
    machine does not fall on one of them only."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def main() -> None:
    import torch

    from nsynth_prep.build import BuildConfig, build_cache
    from nsynth_prep.cache import cache_path, open_cache, read
    from nsynth_prep.checked import CheckedArray
    from nsynth_train.data import ChunkStream, batches, loader
    from nsynth_train.models import build_model
    from nsynth_train.tasks import get_task

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, required=True, help="an nsynth-train folder")
    ap.add_argument("--cache", type=Path, default=ROOT / "bench" / "out" / "loader-cache")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=6, help="training steps timed per model")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    build_cache(args.corpus, args.cache, BuildConfig(features=("pooled", "framed"), workers=2), progress=False)
    path = cache_path(args.cache, "train")
    task = get_task("family")
    dev = torch.device(args.device)
    print(f"cache {path}: {len(open_cache(path))} notes; device {dev}; torch threads {torch.get_num_threads()}")
    print("| feature | batch | in-memory tensor | stream, 0 workers, unchecked | stream, 0 workers, checked | "
          "check cost | stream, 2 workers, checked | train step | model | stream(0) / step |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    loads = []
    for feature, model_name, batch in (("pooled", "cnn", 1024), ("framed", "lstm", 768)):
        data = torch.from_numpy(read(open_cache(path).array(feature)))
        n = len(data)

        def memory(data: torch.Tensor = data, batch: int = batch) -> None:
            for idx in torch.randperm(len(data)).split(batch):
                data[idx].to(dev)

        stream = ChunkStream(path, feature, task, batch, seed=0)
        unchecked = ChunkStream(path, feature, task, batch, seed=0, check=False)
        kept = len(stream)

        def streamed(workers: int, stream: ChunkStream = stream, batch: int = batch) -> None:
            for x, _, _ in batches(loader(stream, workers), batch, False):
                x.to(dev)

        model = build_model(model_name, task.num_classes).to(dev)
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        x = data[:batch].to(dev)
        y = torch.randint(0, 10, (batch,), device=dev)

        def steps(model: torch.nn.Module = model, opt: torch.optim.Optimizer = opt, x: torch.Tensor = x,
                  y: torch.Tensor = y) -> None:
            for _ in range(args.steps):
                loss = torch.nn.functional.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            if dev.type == "cuda":
                torch.cuda.synchronize()

        r_mem = rate(memory, n)
        t = best_in_turns({"unchecked": lambda s=unchecked: streamed(0, s), "checked": lambda: streamed(0)})
        r_un, r0 = kept / t["unchecked"], kept / t["checked"]
        r2 = rate(lambda: streamed(2), kept)
        r_step = rate(steps, args.steps * batch, repeat=1)
        print(f"| {feature} | {batch} | {r_mem:,.0f}/s | {r_un:,.0f}/s | {r0:,.0f}/s | "
              f"{100 * (t['checked'] / t['unchecked'] - 1):+.0f} % | {r2:,.0f}/s | {r_step:,.0f}/s | {model_name} "
              f"| {r0 / r_step:.0f}x |", flush=True)
        c = open_cache(path)
        t = best_in_turns({"unchecked": lambda c=c, f=feature: CheckedArray(c, f, check=False).read_all(),
                           "checked": lambda c=c, f=feature: CheckedArray(c, f).read_all()})
        loads.append(f"| {feature} | {data.nbytes / 2**20:,.0f} MiB | {t['unchecked']:.3f} s | {t['checked']:.3f} s | "
                      f"{100 * (t['checked'] / t['unchecked'] - 1):+.0f} % |")
    print("\nWhole feature loaded for --resident (DeviceSplit), best of 3 in turns:\n")
    print("| feature | size | unchecked | checked | check cost |")
    print("|---|---|---|---|---|")
    print("\n".join(loads))


if __name__ == "__main__":
    main()
