"""One training epoch of every preset on an NSynth-train-sized corpus, resident and streamed,
beside the reference projects' epoch times (CNN 6:26, LSTM 2:03, BiLSTM 3:02 on their GPU).

    python3 bench/bench_gpu.py                               # 283,704 notes on the CUDA GPU
    python3 bench/bench_gpu.py --notes 2000 --device cpu     # the tiny mode, on any machine

Runs as is from a checkout with torch and the project's dependencies installed (numpy, numba,
zarr, ...; no network, no data). What it does, timing each step:

1. The corpus. NSynth train as WAVs is 36 GB, its caches another ~40 GB, on a 64 GB disk; so no
   audio is written: a synthetic corpus is *described* (``nsynth_prep.corpus.synth.write_descriptors``,
   the same notes ``nsynth prep synth`` would write for the seed) and ``build_cache`` renders each
   note as it computes the features, in ``--workers`` processes (default: every core). The
   caches are the real format 2 (their source format says ``synth``) and a rerun reuses them.
   A valid split (``notes / 50``, at least 256 or ``notes``) is built too, for the warm-up.
2. ``pooled`` and ``framed`` always; ``trimmed`` (int16, 51,200 samples a note: 29 GB for NSynth
   train) when the disk has room for it, else it is skipped and said so.
3. For each preset and mode (``mel-cnn`` reads ``trimmed``: skipped, and said so, without it): the training code's own :class:`Split` (``--resident yes`` or
   ``no``), ``build_model``, Adam at the preset's learning rate and ``run_epoch``: an untimed
   warm-up epoch on valid (cuDNN autotuning, allocator), then one timed epoch on train.
4. ``trimmed``: one streamed pass (``ChunkStream`` -> device -> float32), no model.

Prints a markdown table and writes it, with the raw figures, to ``OUT/results.md`` and
``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NSYNTH_TRAIN = 283_704  # notes in NSynth train (the reference projects' count)
# Their epoch times; mel-cnn is this project's own preset (on ``trimmed``), which they never ran.
REFERENCE = {"cnn": "6:26", "cnn-reg": "6:26", "lstm": "2:03", "blstm": "3:02", "mel-cnn": "-"}
PRESETS = ("cnn", "cnn-reg", "lstm", "blstm", "mel-cnn")


def clock(seconds: float) -> str:
    """``m:ss`` (or ``s.ss s`` under a minute, so tiny runs still say something)."""
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}" if seconds >= 60 else f"{seconds:.2f} s"


def build_caches(out: Path, notes: int, workers: int, seed: int) -> tuple[Path, list[str], dict[str, float]]:
    """The train and valid caches of the described corpus under ``out``; returns the cache folder,
    the notes about what was skipped, and the seconds each build step took."""
    from nsynth_prep.builder.pipeline import BuildConfig, build_cache
    from nsynth_prep.corpus.synth import write_descriptors

    valid = max(min(notes, 256), notes // 50)
    corpus = write_descriptors(out / "corpus", {"train": notes, "valid": valid, "test": 1}, seed)
    caches = out / "caches"
    caches.mkdir(parents=True, exist_ok=True)
    need = (notes + valid) * 51_200 * 2  # trimmed as int16, before compression
    room = (caches / "train.zarr" / "trimmed").exists() or shutil.disk_usage(caches).free > need * 1.1 + (2 << 30)
    notes_out = [] if room else [f"trimmed not built: it needs about {need / 2**30:.0f} GiB, the disk has "
                                 f"{shutil.disk_usage(caches).free / 2**30:.0f} GiB free"]
    seconds = {}
    features = ("pooled", "framed", "trimmed") if room else ("pooled", "framed")
    for split in ("valid", "train"):  # valid too: mel-cnn's warm-up epoch reads its trimmed
        t = time.perf_counter()  # every feature of a split in one pass: each note is rendered once
        build_cache(corpus[split], caches, BuildConfig(features=features, workers=workers), progress=True)
        seconds[f"{split} {'+'.join(features)}"] = time.perf_counter() - t
    return caches, notes_out, seconds


def time_preset(caches: Path, preset: str, resident: str, device: Any, batch_size: int | None,
                loader_workers: int) -> dict[str, Any]:
    """A warm-up epoch on valid, then one timed epoch on train, through the training code."""
    import torch

    from nsynth_prep.cache.format import cache_path
    from nsynth_train.config import TrainConfig, amp_dtype
    from nsynth_train.loop import run_epoch
    from nsynth_train.models import build_model
    from nsynth_train.splits import Split
    from nsynth_train.tasks import get_task

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    config = TrainConfig(model=preset, cache_dir=str(caches), device=device.type, resident=resident, epochs=1,
                         batch_size=batch_size, num_workers=loader_workers).resolved()
    task = get_task(config.task)
    amp = amp_dtype(config, device)
    t = time.perf_counter()
    try:
        train = Split(cache_path(caches, "train"), config, task, device, shuffle=True)
        valid = Split(cache_path(caches, "valid"), replace(config, resident="no"), task, device, shuffle=True)
    except torch.cuda.OutOfMemoryError:
        return {"preset": preset, "mode": resident, "error": "does not fit in GPU memory"}
    sync()
    load = time.perf_counter() - t
    torch.manual_seed(0)
    model = build_model(preset, task.num_classes).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr or 0.0)
    run_epoch(model, valid, config, 0, optimizer, amp, "warm-up", False)
    sync()
    t = time.perf_counter()
    loss, accuracy, seen = run_epoch(model, train, config, 1, optimizer, amp, f"{preset} {resident}", True)
    sync()
    seconds = time.perf_counter() - t
    del train, valid, model, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"preset": preset, "feature": config.feature, "mode": "resident" if resident == "yes" else "streamed",
            "batch_size": config.batch_size, "amp": str(amp).replace("torch.", "") if amp else "off",
            "load_s": load, "epoch_s": seconds, "notes": seen, "notes_per_s": seen / seconds, "loss": loss,
            "accuracy": accuracy}


def stream_trimmed(caches: Path, device: Any, batch_size: int) -> dict[str, Any]:
    """One pass over train's trimmed feature: rows streamed to the device and made float32."""
    import torch

    from nsynth_prep.cache.format import cache_path
    from nsynth_train.data import ChunkStream, batches, loader, to_float
    from nsynth_train.tasks import get_task

    stream = ChunkStream(cache_path(caches, "train"), "trimmed", get_task("family"), batch_size)
    t = time.perf_counter()
    rows = 0
    for x, _, _ in batches(loader(stream, 0, pin_memory=device.type == "cuda"), batch_size, False):
        to_float(x.to(device, non_blocking=True), stream.scale)
        rows += len(x)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds,
            "stored_gb_per_s": rows * 51_200 * 2 / seconds / 1e9}


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| preset | feature | mode | batch | amp | load | epoch | notes/s | reference epoch (their GPU) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['preset']} | | {r['mode']} | | | | {r['error']} | | {REFERENCE[r['preset']]} |")
            continue
        lines.append(f"| {r['preset']} | {r['feature']} | {r['mode']} | {r['batch_size']} | {r['amp']} | "
                     f"{r['load_s']:.1f} s | {clock(r['epoch_s'])} | {r['notes_per_s']:,.0f}/s | "
                     f"{REFERENCE[r['preset']]} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--notes", type=int, default=NSYNTH_TRAIN, help="train notes (default: NSynth train's)")
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "gpu", help="corpus, caches, results")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="build processes (default: every core)")
    ap.add_argument("--presets", default=",".join(PRESETS), help="comma-separated, default all five")
    ap.add_argument("--modes", default="resident,streamed", help="resident, streamed or both")
    ap.add_argument("--batch-size", type=int, default=None, help="override the presets' batch sizes")
    ap.add_argument("--loader-workers", type=int, default=0, help="DataLoader workers when streamed")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    try:
        import torch

        from nsynth_prep.errors import NsynthError
        from nsynth_train.config import pick_device
    except ImportError as exc:
        sys.exit(f"bench_gpu: {exc}; install torch and the project (pip install -e .) first")
    try:
        device = pick_device(args.device)
    except NsynthError as exc:
        sys.exit(f"bench_gpu: {exc}")
    presets = [p for p in args.presets.split(",") if p]
    modes = [{"resident": "yes", "streamed": "no"}[m] for m in args.modes.split(",") if m]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"# bench_gpu: {args.notes:,} train notes on {device} ({name}), torch {torch.__version__}, "
          f"{os.cpu_count()} cores; out {args.out}", flush=True)
    t = time.perf_counter()
    caches, notes, build_s = build_caches(args.out, args.notes, args.workers, args.seed)
    print(f"caches built in {time.perf_counter() - t:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in build_s.items())})"
          + "".join(f"; {n}" for n in notes), flush=True)
    results = []
    for preset in presets:
        for resident in modes:
            if preset == "mel-cnn" and not (caches / "train.zarr" / "trimmed").exists():
                results.append({"preset": preset, "mode": "resident" if resident == "yes" else "streamed",
                                "error": "skipped: trimmed was not built (disk)"})
                print(table(results[-1:]).splitlines()[-1], flush=True)
                continue
            results.append(time_preset(caches, preset, resident, device, args.batch_size, args.loader_workers))
            print(table(results[-1:]).splitlines()[-1], flush=True)
    trimmed = None
    if (caches / "train.zarr" / "trimmed").exists():
        trimmed = stream_trimmed(caches, device, args.batch_size or 256)
    text = [f"{args.notes:,} train notes, {device} ({name}), torch {torch.__version__}, {os.cpu_count()} cores", "",
            table(results)]
    if trimmed:
        text += ["", f"trimmed, one streamed pass to {device} as float32: {trimmed['rows']:,} rows in "
                     f"{trimmed['seconds']:.1f} s, {trimmed['rows_per_s']:,.0f} rows/s "
                     f"({trimmed['stored_gb_per_s']:.2f} GB/s of int16)"]
    text += [f"{n}" for n in notes]
    print("\n" + "\n".join(text))
    (args.out / "results.md").write_text("\n".join(text) + "\n")
    (args.out / "results.json").write_text(json.dumps({"notes": args.notes, "device": str(device), "name": name,
                                                       "torch": torch.__version__, "build_s": build_s,
                                                       "results": results, "trimmed": trimmed, "notes_out": notes},
                                                      indent=1))


if __name__ == "__main__":
    main()
