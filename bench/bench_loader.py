"""Loader throughput, side by side in one run: the chunk stream vs an in-memory gather of the same
rows vs the model's own training step.

    PYTHONPATH=. python3 bench/bench_loader.py --corpus CORPUS [--codecs lz4,none] [--profile]

``CORPUS``: an nsynth-train folder, or a described synthetic corpus
(``nsynth_prep.corpus.synth.write_descriptors``). Builds a pooled + framed cache of it (once per codec
compared), then measures rows per second of

(1) an in-memory gather: the whole feature in memory as stored (int16 audio, float32 pooled),
    one ``np.take`` of each batch's rows in a fresh random order, the same batch size: what
    a loader that had nothing to read would still do;
(2) :class:`ChunkStream` through the DataLoader wrapper that training uses (:func:`loader`,
    :func:`batches`), with and without the per-chunk checksum, and with 2 DataLoader workers;

all timed in turns, best of 3 (2 for workers), so each sees the same machine; both as stored
(what crosses to a GPU) and made float32 on the device (``to_float``; here the device is the
CPU, which pays for the conversion itself); and (3) a training step of ``cnn`` and ``lstm``.
``--profile`` adds the time of each stage of the stream, alone, on the same chunks (getting the
chunk's rows, checksum, shuffle-gather, conversion), when an epoch's first batch arrives against
the whole epoch, and a cProfile of streamed epochs (several for a small split, about 40,000 rows).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


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


def build(corpus: Path, out: Path, codec: str) -> Path:
    """The train cache of ``corpus`` with every feature stored with ``codec`` (``lz4``: Blosc LZ4
    with byte shuffle, or ``none``), built once; the format's own choice is compared with the other."""
    from zarr.codecs import BloscCodec

    from nsynth_prep.builder.pipeline import BuildConfig, build_cache
    from nsynth_prep.cache import format as cache

    chain = [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")] if codec == "lz4" else None
    saved = dict(cache.FEATURE_CODECS)
    cache.FEATURE_CODECS.update(dict.fromkeys(saved, chain))
    try:
        build_cache(corpus, out / codec, BuildConfig(features=("pooled", "framed"), workers=2), progress=False)
    finally:
        cache.FEATURE_CODECS.update(saved)
    return cache.cache_path(out / codec, "train")


def stage_profile(path: Path, feature: str, batch: int, chunks: int = 16) -> str:
    """Milliseconds per chunk of each stage of the stream, each timed alone on the same chunks."""
    import numpy as np
    import torch

    from nsynth_prep.cache.checked import CheckedArray
    from nsynth_prep.cache.chunks import ChunkFiles
    from nsynth_prep.cache.format import open_cache
    from nsynth_prep.kernels.crc32c import crc32c
    from nsynth_train.data import to_float

    arr = CheckedArray(open_cache(path), feature)
    n = min(chunks, arr.num_chunks)
    buf = arr.buffer(n)
    for c in range(n):  # warm: the page cache, and the rows for the later stages
        arr.files.read_into(c, buf[c * arr.chunk_rows :])
    rows = [buf[c * arr.chunk_rows : (c + 1) * arr.chunk_rows] for c in range(n)]

    def fetch() -> None:
        if arr.files.mappable:  # what a new stream's first epoch pays; later epochs keep the maps
            files = ChunkFiles(arr.files.path, arr.files.name, arr.array)
            for c in range(n):
                files.view(c)
        else:  # read and decode into the group's buffer
            for c in range(n):
                arr.files.read_into(c, buf[c * arr.chunk_rows :])

    def check() -> None:
        for r in rows:
            crc32c(r)

    order = np.random.default_rng(0).permutation(len(buf))

    def gather() -> None:
        for b in range(0, len(order), batch):
            torch.from_numpy(np.take(buf, np.sort(order[b : b + batch]), axis=0))

    x = torch.from_numpy(np.take(buf, order[:batch], axis=0))

    def convert() -> None:
        for _ in range(0, len(order), batch):
            to_float(x, arr.scale)

    t = best_in_turns({"fetch": fetch, "checksum": check, "gather": gather, "to float32": convert}, repeat=5)
    fetch_name = "map the file (MAP_POPULATE), first epoch only" if arr.files.mappable else "read + decompress"
    lines = [f"{feature}: {n} chunks of {arr.chunk_rows} rows, {buf.nbytes / 2**20:.0f} MiB as stored "
             f"({'Blosc LZ4' if arr.files.blosc else 'unencoded'})",
             "| stage | ms per chunk | GB/s of stored bytes | rows/s, alone |", "|---|---|---|---|"]
    names = {"fetch": fetch_name, "checksum": "checksum (CRC-32C)", "gather": "shuffle-gather into batches",
             "to float32": "to float32 (on the CPU)"}
    for name, s in t.items():
        lines.append(f"| {names[name]} | {1e3 * s / n:.2f} | {buf.nbytes / s / 1e9:.1f} | {len(buf) / s:,.0f} |")
    return "\n".join(lines)


def first_batch(stream: Any, batch: int, rows: int, repeat: int = 7) -> str:
    """When the first batch of an epoch arrives, against the whole epoch (best of ``repeat``; each
    after a warm epoch): the fixed cost that dominates a small split."""
    from nsynth_train.data import batches, loader

    first, whole = float("inf"), float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        arrived = None
        for _ in batches(loader(stream, 0), batch, False):
            arrived = arrived or time.perf_counter() - t
        first, whole = min(first, arrived or 0.0), min(whole, time.perf_counter() - t)
    return (f"{stream.feature}: first batch after {first * 1e3:.2f} ms of a {whole * 1e3:.2f} ms epoch "
            f"({rows:,} rows, {stream.num_chunks} chunks in groups of {stream.buffer_chunks}; best of {repeat})")


def epoch_profile(epoch: Any, rows: int, codec: str) -> str:
    """A cProfile of streamed epochs: several for a small split (about 40,000 rows in all)."""
    prof = cProfile.Profile()
    epochs = max(1, min(20, 40_000 // rows))
    for _ in range(epochs):
        prof.runcall(epoch)
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(10)
    return f"cProfile of {epochs} streamed epoch(s), {codec}:\n" + "\n".join(text.getvalue().splitlines()[:26])


def main() -> None:
    import numpy as np
    import torch

    from nsynth_prep.cache import format as cache_format
    from nsynth_prep.cache.checked import CheckedArray
    from nsynth_prep.cache.format import open_cache
    from nsynth_prep.cpus import cpu_threads
    from nsynth_train.data import ChunkStream, batches, loader, to_float
    from nsynth_train.models import build_model
    from nsynth_train.tasks import get_task

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, required=True, help="an nsynth-train folder or .synth.json")
    ap.add_argument("--cache", type=Path, default=ROOT / "bench" / "out" / "loader-cache")
    ap.add_argument("--codecs", default="format", help="'format' (the format's own per feature), or a list of "
                    "lz4,none to compare side by side")
    ap.add_argument("--threads", type=int, default=None, help="ChunkStream reader threads (default: every core)")
    ap.add_argument("--buffer-chunks", type=int, default=4)
    ap.add_argument("--steps", type=int, default=6, help="training steps timed per model")
    ap.add_argument("--profile", action="store_true", help="time each stage and cProfile one streamed epoch")
    args = ap.parse_args()
    fmt = {f: "none" if c is None else "lz4" for f, c in cache_format.FEATURE_CODECS.items()}
    codecs = sorted(set(fmt.values())) if args.codecs == "format" else args.codecs.split(",")
    paths = {c: build(args.corpus, args.cache, c) for c in codecs}
    task = get_task("family")
    dev = torch.device("cpu")
    print(f"{len(open_cache(next(iter(paths.values()))))} notes; torch threads {torch.get_num_threads()}; cores "
          f"{cpu_threads()}; load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    header = ("| feature | codec | on disk | in-memory gather | stream, unchecked | stream | stream / in-memory | "
              "stream, 2 workers | in-memory, float32 | stream, float32 | float32 ratio | train step |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    loads = []
    for feature, model_name, batch in (("pooled", "cnn", 1024), ("framed", "lstm", 768)):
        mine = [c for c in codecs if args.codecs != "format" or c == fmt[feature]]
        c = open_cache(paths[mine[0]])
        data = CheckedArray(c, feature).read_all()  # (N, ...) as stored
        classes = task.classes_of(c.label("family"))
        rows = np.flatnonzero(classes >= 0)  # the same rows the stream yields
        kept = len(rows)
        scale = c.feature(feature).scale

        def memory(as_float: bool, data: np.ndarray = data, rows: np.ndarray = rows, batch: int = batch,
                   scale: float = scale) -> None:
            order = rows[np.random.default_rng().permutation(len(rows))]
            for b in range(0, len(order), batch):
                x = torch.from_numpy(np.take(data, order[b : b + batch], axis=0)).to(dev)
                if as_float:
                    to_float(x, scale)

        def streamed(stream: ChunkStream, workers: int, as_float: bool, batch: int = batch) -> None:
            for x, _, _ in batches(loader(stream, workers), batch, False):
                x = x.to(dev)
                if as_float:
                    to_float(x, stream.scale)

        kwargs = {"seed": 0, "threads": args.threads, "buffer_chunks": args.buffer_chunks}
        fns = {"memory": partial(memory, False), "memory float": partial(memory, True)}
        streams = {}
        for codec in mine:
            streams[codec] = ChunkStream(paths[codec], feature, task, batch, **kwargs)  # type: ignore[arg-type]
            unchecked = ChunkStream(paths[codec], feature, task, batch, check=False, **kwargs)  # type: ignore[arg-type]
            fns |= {f"{codec} unchecked": partial(streamed, unchecked, 0, False),
                    f"{codec} stream": partial(streamed, streams[codec], 0, False),
                    f"{codec} stream float": partial(streamed, streams[codec], 0, True)}
        t = best_in_turns(fns)  # every variant and the in-memory gather in turns, best of 3
        t |= best_in_turns({f"{codec} workers": partial(streamed, streams[codec], 2, False) for codec in mine},
                           repeat=2)
        model = build_model(model_name, task.num_classes).to(dev)
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        x = to_float(torch.from_numpy(data[:batch]), scale)
        y = torch.randint(0, 10, (batch,))

        def steps(model: torch.nn.Module = model, opt: torch.optim.Optimizer = opt, x: torch.Tensor = x,
                  y: torch.Tensor = y) -> None:
            for _ in range(args.steps):
                loss = torch.nn.functional.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()

        r_step = args.steps * batch / best_in_turns({"step": steps}, repeat=1)["step"]
        r = {k: kept / v for k, v in t.items()}
        for codec in mine:
            disk = sum(f.stat().st_size for f in (paths[codec] / feature).rglob("*") if f.is_file()) / data.nbytes
            lines.append(
                f"| {feature} ({data.dtype}) | {codec} | {disk:.0%} | {r['memory']:,.0f}/s | "
                f"{r[codec + ' unchecked']:,.0f}/s | {r[codec + ' stream']:,.0f}/s | "
                f"**{r[codec + ' stream'] / r['memory']:.2f}x** | {r[codec + ' workers']:,.0f}/s | "
                f"{r['memory float']:,.0f}/s | {r[codec + ' stream float']:,.0f}/s | "
                f"{r[codec + ' stream float'] / r['memory float']:.2f}x | {r_step:,.0f}/s ({model_name}) |")
            print(lines[-1], flush=True)
        for codec in mine:
            c = open_cache(paths[codec])
            t = best_in_turns({"unchecked": lambda c=c, f=feature: CheckedArray(c, f, check=False).read_all(),
                               "checked": lambda c=c, f=feature: CheckedArray(c, f).read_all()})
            loads.append(f"| {feature} | {codec} | {data.nbytes / 2**20:,.0f} MiB | {t['unchecked']:.3f} s | "
                         f"{t['checked']:.3f} s |")
        if args.profile:
            for codec in mine:
                print("\n" + stage_profile(paths[codec], feature, batch) + "\n", flush=True)
            print(first_batch(streams[mine[0]], batch, kept) + "\n", flush=True)
            print(epoch_profile(partial(streamed, streams[mine[0]], 0, False), kept, mine[0]), flush=True)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end\n")
    print("\n".join(lines))
    print("\nWhole feature loaded for --resident (DeviceSplit), best of 3 in turns:\n")
    print("| feature | codec | size as stored | unchecked | checked |")
    print("|---|---|---|---|---|")
    print("\n".join(loads))


if __name__ == "__main__":
    main()
