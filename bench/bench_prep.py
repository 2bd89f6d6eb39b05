"""Prep throughput, side by side in one run: build-cache vs ``cat`` vs a plain Python peer.

    python3 bench/bench_prep.py [--notes 2000,8000] [--workers 2] [--out bench/out]

For each corpus size it writes a synthetic train split as JSON+WAV and as TFRecord, warms
the page cache, then times (best of ``--repeat``):

* ``cat``: reading the same bytes through a pipe (``cat | wc -c``, the floor for warm files);
* ``nsynth prep build-cache --feature pooled`` (the real CLI, a fresh process each time);
* the peer: a plain loop, ``scipy.io.wavfile.read`` (or the stdlib ``wave``) + numpy
  reshape-mean, then ``np.save``: what people write by hand today;

and the peak RSS of the build at both sizes (memory must stay flat as the corpus grows).
Prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PEER = r"""
import sys, numpy as np
from pathlib import Path
try:
    from scipy.io import wavfile
    read = lambda p: wavfile.read(p)[1]
except ImportError:
    import wave
    def read(p):
        with wave.open(str(p)) as w:
            return np.frombuffer(w.readframes(w.getnframes()), np.int16)
files = sorted(Path(sys.argv[1]).glob("*.wav"))
out = np.empty((len(files), 2048), np.float32)
for i, f in enumerate(files):
    x = read(f)[:51200].astype(np.float32) / 32768
    out[i] = x.reshape(2048, 25).mean(1)
np.save(sys.argv[2], out)
"""

RSS = r"""
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def timed(cmd: list[str] | str, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, shell=isinstance(cmd, str), check=True, stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--notes", default="2000,8000", help="corpus sizes (train notes)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()
    from nsynth_prep.corpus.synth import write_corpus

    nsynth = [sys.executable, str(ROOT / "cli.py"), "-q"]
    rows = []
    for n in [int(x) for x in args.notes.split(",")]:
        corpus = args.out / f"corpus-{n}"
        if not (corpus / "done").exists():
            shutil.rmtree(corpus, ignore_errors=True)
            write_corpus(corpus, {"train": n, "valid": 10, "test": 10}, ("jsonwav", "tfrecord"), seed=0, progress=True)
            (corpus / "done").touch()
        audio, tfrecord = corpus / "nsynth-train" / "audio", corpus / "nsynth-train.tfrecord"
        wav_bytes = sum(f.stat().st_size for f in audio.iterdir())
        # Through a pipe: GNU cat straight to /dev/null may skip copying the bytes at all.
        cat_wav = f"find {audio} -name '*.wav' -print0 | xargs -0 cat | wc -c > /dev/null"
        cat_tf = f"cat {tfrecord} | wc -c > /dev/null"
        subprocess.run(cat_wav, shell=True, check=True)  # warm the page cache
        subprocess.run(cat_tf, shell=True, check=True)
        cache = args.out / "cache"

        def build(src: Path, cache: Path = cache) -> list[str]:
            return [*nsynth, "prep", "build-cache", str(src), "--cache", str(cache), "--feature", "pooled",
                    "--workers", str(args.workers)]

        def fresh_build(src: Path, cache: Path = cache) -> str:
            return f"rm -rf {cache} && " + " ".join(build(src))

        subprocess.run(fresh_build(corpus / "nsynth-train"), shell=True, check=True)  # numba cache warm
        r = {"notes": n, "wav_mb": wav_bytes / 1e6, "tf_mb": tfrecord.stat().st_size / 1e6}
        r["cat_wav"] = timed(cat_wav, args.repeat)
        r["build_wav"] = timed(fresh_build(corpus / "nsynth-train"), args.repeat)
        r["cat_tf"] = timed(cat_tf, args.repeat)
        r["build_tf"] = timed(fresh_build(tfrecord), args.repeat)
        r["peer_wav"] = timed([sys.executable, "-c", PEER, str(audio), str(args.out / "peer.npy")], 1)
        shutil.rmtree(cache, ignore_errors=True)
        r["rss_wav_mb"] = int(subprocess.run([sys.executable, "-c", RSS, *build(corpus / "nsynth-train")],
                                             capture_output=True, text=True, check=True).stdout) / 1024
        shutil.rmtree(cache, ignore_errors=True)
        r["rss_tf_mb"] = int(subprocess.run([sys.executable, "-c", RSS, *build(tfrecord)],
                                            capture_output=True, text=True, check=True).stdout) / 1024
        r["startup"] = timed([*nsynth, "prep", "--help"], args.repeat)
        rows.append(r)
        print(json.dumps(r), flush=True)
    print(f"\n{os.cpu_count()} cores, --workers {args.workers}, best of {args.repeat}, warm page cache\n")
    print("| notes | WAV MB | cat WAVs | build-cache (WAV) | ratio | TFRecord MB | cat TFRecord | build-cache (TFRecord) "
          "| ratio | peer loop (WAV) | peer / build | peak RSS WAV / TFRecord |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['notes']:,} | {r['wav_mb']:.0f} | {r['cat_wav']:.2f} s | {r['build_wav']:.2f} s "
              f"| {r['build_wav'] / r['cat_wav']:.2f}x | {r['tf_mb']:.0f} | {r['cat_tf']:.2f} s | {r['build_tf']:.2f} s "
              f"| {r['build_tf'] / r['cat_tf']:.2f}x | {r['peer_wav']:.2f} s | {r['peer_wav'] / r['build_wav']:.1f}x "
              f"| {r['rss_wav_mb']:.0f} / {r['rss_tf_mb']:.0f} MB |")
    print(f"\nCLI start-up alone (nsynth prep --help): {rows[0]['startup']:.2f} s")
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        dn = b["notes"] - a["notes"]
        for kind, cat in (("wav", "cat_wav"), ("tf", "cat_tf")):
            marginal = (b[f"build_{kind}"] - a[f"build_{kind}"]) / (b[cat] - a[cat])
            print(f"marginal cost per extra note, build vs cat ({kind}): {marginal:.2f}x "
                  f"({dn / (b[f'build_{kind}'] - a[f'build_{kind}']):,.0f} notes/s)")


if __name__ == "__main__":
    main()
