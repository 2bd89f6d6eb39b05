"""Training-step speed of every preset, eager vs ``torch.compile``, side by side in one run.

    python3 bench/bench_step.py [--device cpu] [--batch 256] [--steps 20]

Random inputs of each preset's feature shape (the step does not care what the numbers are), the
real model, loss and Adam (``run_epoch``'s step without a loader). Prints notes/s of both modes
and the one-off compile time, so ``--compile`` is used only where it pays for itself.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from nsynth_prep.features import feature_spec  # noqa: E402
from nsynth_train.models import PRESETS, build_model  # noqa: E402


def step_rate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> tuple[float, float]:
    """(seconds of the first step, notes/s over ``steps`` further steps)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    t = time.perf_counter()
    step()
    first = time.perf_counter() - t
    step()  # a second warm-up: compiled graphs may specialise again
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return first, steps * len(y) / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--models", default=",".join(PRESETS))
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"{args.steps} timed steps\n")
    print("| model | eager notes/s | compiled notes/s | compiled / eager | first compiled step (s) |")
    print("|---|---|---|---|---|")
    for name in args.models.split(","):
        shape = feature_spec(PRESETS[name].feature).row_shape
        gen = torch.Generator().manual_seed(0)
        x = (torch.rand((args.batch, *shape), generator=gen) * 2 - 1).to(device)
        y = torch.randint(0, 10, (args.batch,), generator=gen).to(device)
        torch.manual_seed(0)
        _, eager = step_rate(build_model(name, 10).to(device), x, y, args.steps)
        torch.manual_seed(0)
        torch._dynamo.reset()
        first, compiled = step_rate(torch.compile(build_model(name, 10).to(device)), x, y, args.steps)
        print(f"| {name} | {eager:,.0f} | {compiled:,.0f} | {compiled / eager:.2f}x | {first:.1f} |", flush=True)


if __name__ == "__main__":
    main()
