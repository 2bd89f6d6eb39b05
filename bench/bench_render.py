"""Render throughput: notes per second of ``nsynth prep render``, and render + build-cache time.

    python3 bench/bench_render.py [--fonts A.sf2,B.sf2] [--pitch-step 2] [--programs 0-127]
                                  [--workers 2] [--repeat 1] [--out bench/out/render] [--no-build]

1. Per-note cost of each stage on one core (FluidSynth at 48 kHz, the FIR to 16 kHz, gain +
   qualities + WAV encoding), over a sample of notes of the first font.
2. The real CLI, a fresh process and an empty OUT each time (best of ``--repeat``):
   ``nsynth prep render FONTS OUT --pitch-step K --workers W``, notes written per second.
3. Unless ``--no-build``: ``nsynth prep build-cache OUT --feature pooled --feature framed`` on
   that corpus (all three splits), with the same workers.

Defaults are docs/render.md's 20,000+ note corpus from Debian's two GM SoundFonts. Prints a markdown
table for docs/benchmarks.md.
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
FONTS = "/usr/share/sounds/sf2/FluidR3_GM.sf2,/usr/share/sounds/sf2/TimGM6mb.sf2"


def stage_costs(font: str, notes: int = 60) -> dict[str, float]:
    """Milliseconds per note of each stage, one process."""
    import numpy as np

    from nsynth_prep.corpus import note_audio
    from nsynth_prep.corpus.fluid import FluidRenderer
    from nsynth_prep.readers.wav import encode_pcm16

    renderer = FluidRenderer()
    renderer.render(font, 0, 0, 60, 100)  # loads the font
    jobs = [(program, pitch, velocity) for program in (0, 24, 40, 56, 73, 81) for pitch in range(48, 84, 6)
            for velocity in (25, 127)][:notes]
    t = {"fluidsynth": 0.0, "fir": 0.0, "pcm+qualities+wav": 0.0}
    for program, pitch, velocity in jobs:
        t0 = time.perf_counter()
        x = renderer.render(font, 0, program, pitch, velocity)
        t1 = time.perf_counter()
        y = note_audio.decimate(x).astype(np.float32)
        t2 = time.perf_counter()
        pcm = note_audio.to_pcm16(y, 0.8 / max(float(np.abs(y).max()), 1e-9))
        note_audio.note_qualities(pcm)
        encode_pcm16(pcm)
        t["fluidsynth"] += t1 - t0
        t["fir"] += t2 - t1
        t["pcm+qualities+wav"] += time.perf_counter() - t2
    renderer.close()
    return {k: 1000 * v / len(jobs) for k, v in t.items()}


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fonts", default=FONTS, help="comma-separated SoundFonts")
    ap.add_argument("--pitch-step", type=int, default=2)
    ap.add_argument("--programs", default=None, help="GM programs (default: all with a family)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "render")
    ap.add_argument("--no-build", action="store_true", help="skip the build-cache step")
    args = ap.parse_args()
    fonts = args.fonts.split(",")
    nsynth = [sys.executable, str(ROOT / "cli.py"), "-q"]

    costs = stage_costs(fonts[0])
    corpus = args.out / "corpus"
    render_cmd = [*nsynth, "prep", "render", *fonts, str(corpus), "--pitch-step", str(args.pitch_step),
                  "--workers", str(args.workers)] + (["--programs", args.programs] if args.programs else [])
    best = float("inf")
    for _ in range(args.repeat):
        shutil.rmtree(corpus, ignore_errors=True)
        best = min(best, timed(render_cmd))
    meta = json.loads((corpus / "render.json").read_text())
    notes = sum(i["notes"] for i in meta["instruments"])
    silent = sum(i["silent"] for i in meta["instruments"])
    build = None
    if not args.no_build:
        cache = args.out / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        build = timed([*nsynth, "prep", "build-cache", str(corpus), "--cache", str(cache), "--feature", "pooled",
                       "--feature", "framed", "--workers", str(args.workers)])

    print(f"\ncores: {os.cpu_count()}, workers: {args.workers}, fonts: {', '.join(Path(f).name for f in fonts)}, "
          f"pitch step {args.pitch_step}, FluidSynth {meta['fluidsynth']}\n")
    print("| stage (1 core) | ms per note |\n|---|---|")
    for k, v in costs.items():
        print(f"| {k} | {v:.1f} |")
    print("\n| step | notes | seconds | notes/s |\n|---|---|---|---|")
    print(f"| render ({len(meta['instruments'])} instruments, {silent} silent dropped) | {notes:,} | {best:.1f} | "
          f"{notes / best:.0f} |")
    if build is not None:
        print(f"| build-cache pooled + framed | {notes:,} | {build:.1f} | {notes / build:.0f} |")
        print(f"| render + build-cache | {notes:,} | {best + build:.1f} | {notes / (best + build):.0f} |")


if __name__ == "__main__":
    main()
