"""Training-step speed of every preset, eager vs ``torch.compile``, side by side in one run.

    python3 bench/bench_step.py [--device cpu] [--batch 256] [--steps 20]

Random inputs of each preset's feature shape (the step does not care what the numbers are), the
real model, loss and Adam (``run_epoch``'s step without a loader). Prints notes/s of both modes
(timed in alternating rounds, best of 3 each, so load drift hits both alike) and the one-off
compile time, so ``--compile`` is used only where it pays for itself.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from nsynth_prep.features import feature_spec  # noqa: E402
from nsynth_train.models import PRESETS, build_model  # noqa: E402


def make_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """One training step of ``model`` on the batch (forward, loss, backward, Adam)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if x.device.type == "cuda":
            torch.cuda.synchronize()

    return step


def timed(step: Callable[[], None], n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        step()
    return time.perf_counter() - t


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
        eager = make_step(build_model(name, 10).to(device), x, y)
        torch.manual_seed(0)
        torch._dynamo.reset()
        compiled = make_step(torch.compile(build_model(name, 10).to(device)), x, y)
        first = timed(compiled, 1)  # compiles
        timed(compiled, 1)
        timed(eager, 2)
        # Timed in turns, best of 3 rounds each, so both modes see the same machine.
        best = {"eager": float("inf"), "compiled": float("inf")}
        for _ in range(3):
            best["eager"] = min(best["eager"], timed(eager, args.steps))
            best["compiled"] = min(best["compiled"], timed(compiled, args.steps))
        eager_rate, compiled_rate = (args.steps * args.batch / best[k] for k in ("eager", "compiled"))
        print(f"| {name} | {eager_rate:,.0f} | {compiled_rate:,.0f} | {compiled_rate / eager_rate:.2f}x | {first:.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
