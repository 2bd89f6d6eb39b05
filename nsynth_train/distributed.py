"""Training under ``torchrun``: the process group, which rank does what, and agreeing on failures.

Without torchrun's environment nothing here starts a process group: :func:`setup` returns the
single-process :class:`Dist` (rank 0 of 1) and every helper is then a no-op, so a plain
``nsynth train`` runs exactly as before.

Under torchrun (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set)
each process joins one group: NCCL on ``cuda:LOCAL_RANK`` when CUDA is there (and ``--device``
is not ``cpu``), else gloo on the CPU with ``cores / local world size`` torch threads per rank.
Rank 0 alone takes the run folder and writes; the other ranks learn the outcome of everything
rank 0 (or any rank) does alone through :meth:`Dist.agree`, so a refusal (the run exists, the
folder is locked, a cache is missing on one node) stops every rank with one line instead of
leaving them waiting. The group has a timeout (``NSYNTH_DDP_TIMEOUT`` seconds, default 1800): a
rank that dies without a word makes the others fail after it rather than hang forever.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as tdist

from nsynth_prep.cpus import cpu_threads
from nsynth_prep.errors import ConfigError, NsynthError, RunError
from nsynth_train.config import pick_device

__all__ = ["TORCHRUN_VARS", "Dist", "setup", "torchrun_env"]

log = logging.getLogger(__name__)

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
DEFAULT_TIMEOUT_S = 1800  # a whole test-split scoring on rank 0 must fit in it (the others wait)
T = TypeVar("T")


def torchrun_env() -> dict[str, str] | None:
    """torchrun's variables when this process was started by it (all of them set), else None."""
    found = {name: os.environ.get(name) for name in TORCHRUN_VARS}
    if all(found.values()):
        return {k: v for k, v in found.items() if v is not None}
    if any(found.values()) and os.environ.get("WORLD_SIZE", "1") != "1":
        missing = ", ".join(k for k, v in found.items() if not v)
        raise ConfigError(f"some of torchrun's variables are set but not {missing}: start training with "
                          "torchrun (see docs/scaling.md, Training under torchrun) or unset them")
    return None


@dataclass(frozen=True)
class Dist:
    """This process's place in the job. ``world == 1`` is plain single-process training."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None  # None: no process group

    @property
    def enabled(self) -> bool:
        return self.backend is not None

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes the run folder."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            tdist.barrier()

    def all_sum(self, values: list[float]) -> list[float]:
        """Element-wise sums over the ranks of a few numbers (float64: counts stay exact to 2**53)."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device)
        tdist.all_reduce(t)
        return [float(v) for v in t.cpu()]

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (any picklable object)."""
        if not self.enabled:
            return value
        box = [value]
        tdist.broadcast_object_list(box, src=0, device=self._comm_device)
        return box[0]  # type: ignore[no-any-return]

    def agree(self, step: Callable[[], T], where: str = "all") -> T | None:
        """Run ``step`` (on every rank, or on rank 0 alone with ``where="main"``) and stop every
        rank if it failed on any: the rank that failed raises its own error, the others a
        :class:`RunError` naming it. Returns the step's result on the ranks that ran it (None on
        the others); rank 0's result is broadcast when ``where="main"``.
        """
        result: T | None = None
        error: BaseException | None = None
        if where == "all" or self.main:
            try:
                result = step()
            except BaseException as exc:  # a bug too: the others must hear of it, not wait for it
                error = exc
        if not self.enabled:
            if error is not None:
                raise error
            return result
        line = None if error is None else (str(error).splitlines() or [type(error).__name__])[0]
        if error is not None and not isinstance(error, NsynthError | KeyboardInterrupt):
            line = f"{type(error).__name__}: {line}"  # a bug: its traceback is on that rank
        lines: list[str | None] = [None] * self.world
        tdist.all_gather_object(lines, line)
        if error is not None:
            raise error
        failed = [(r, msg) for r, msg in enumerate(lines) if msg is not None]
        if failed:
            r, msg = failed[0]
            raise RunError(f"rank {self.rank} stopped: rank {r} failed: {msg}")
        return self.broadcast(result) if where == "main" else result

    def sync_buffers(self, model: torch.nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm running statistics). DDP copies them from
        rank 0 at the start of each training forward, and each rank's own last forward (a padding
        step's one row, too) then updates its copy: without this, each rank would validate
        slightly different weights from the ones rank 0 saves."""
        if self.enabled:
            for buf in model.buffers():
                tdist.broadcast(buf.data, src=0)

    @property
    def _comm_device(self) -> torch.device:
        """NCCL moves tensors on the GPU only; gloo on the CPU."""
        return self.device if self.backend == "nccl" else torch.device("cpu")

    def close(self) -> None:
        if self.enabled and tdist.is_initialized():
            tdist.destroy_process_group()


def setup(device: str) -> Dist:
    """Join torchrun's process group when started by torchrun; else the single-process Dist.

    ``device`` is the ``--device`` choice (auto | cpu | cuda). Under torchrun with CUDA each
    rank takes ``cuda:LOCAL_RANK``; on the CPU each rank gets its share of the host's cores.
    """
    env = torchrun_env()
    if env is None:
        return Dist(device=pick_device(device))
    rank, world, local_rank = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"])
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    cuda = device != "cpu" and torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise ConfigError("--device cuda asked for, but torch sees no CUDA device")
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"local rank {local_rank} has no GPU: this node has {torch.cuda.device_count()}; "
                              "start torchrun with --nproc_per_node at most that")
        dev, backend = torch.device("cuda", local_rank), "nccl"
        torch.cuda.set_device(dev)
    else:
        dev, backend = torch.device("cpu"), "gloo"
        # Every rank on a host would otherwise start one torch thread per core: N times oversubscribed.
        threads = max(1, cpu_threads() // local_world)
        torch.set_num_threads(threads)
    timeout = float(os.environ.get("NSYNTH_DDP_TIMEOUT") or DEFAULT_TIMEOUT_S)
    if backend == "nccl":  # device_id: NCCL connects now, on this rank's GPU
        tdist.init_process_group(backend, timeout=timedelta(seconds=timeout), device_id=dev)
    else:
        tdist.init_process_group(backend, timeout=timedelta(seconds=timeout))
    dist = Dist(rank, world, local_rank, local_world, dev, backend)
    log.info("rank %d of %d (local %d of %d): %s, %s%s, timeout %g s", rank, world, local_rank, local_world,
             backend, dev, "" if cuda else f", {torch.get_num_threads()} torch threads", timeout)
    if rank:  # one rank tells the story; the others speak only of warnings and errors
        for name in ("nsynth", "nsynth_prep", "nsynth_train"):
            logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger(name).getEffectiveLevel()))
    return dist


def is_main_process() -> bool:
    """False on torchrun's ranks other than 0 (before or after the process group exists)."""
    return os.environ.get("RANK", "0") == "0" or torchrun_env() is None


def lockstep_sizes(shares: list[int], batch_size: int, drop_last: bool) -> list[list[int]]:
    """Each rank's batch sizes in an epoch, padded with 0 so that all ranks run the same steps.

    ``shares``: rows each rank holds this epoch (W,). Returns (W, S) sizes: rank ``r`` runs
    ``shares[r] // batch_size`` full batches, then its remainder (unless ``drop_last``), then
    zero-row steps up to ``S``, the most steps of any rank.
    """
    per_rank = []
    for n in shares:
        sizes = [batch_size] * (n // batch_size)
        if n % batch_size and not drop_last:
            sizes.append(n % batch_size)
        per_rank.append(sizes)
    steps = max((len(s) for s in per_rank), default=0)
    return [s + [0] * (steps - len(s)) for s in per_rank]


def step_weights(sizes: list[list[int]], rank: int) -> list[float]:
    """The factor on rank ``rank``'s mean loss at each step so that DDP's gradient mean over the
    ranks is the gradient of the mean loss over every note of the step: ``n_rank * W / n_step``
    (0 for a padding step, 1 everywhere when the ranks' batches are equal)."""
    world = len(sizes)
    totals = [sum(col) for col in zip(*sizes, strict=True)]
    return [(n * world / total if total else 0.0) for n, total in zip(sizes[rank], totals, strict=True)]


def uneven_warning(shares: list[int], split: Any) -> str | None:
    """The warning line when some rank's share of an epoch is under half another's (a streamed
    split of few chunks: whole chunks are shared out), else None. ``split``: a :class:`.splits.Split`."""
    if len(shares) < 2 or min(shares) * 2 >= max(shares):
        return None
    rows = getattr(split.data, "chunk_rows", None)
    return (f"the {len(shares)} ranks' shares of the train split are uneven ({min(shares):,} to {max(shares):,} "
            f"notes in epoch 1): a streamed split is shared out in whole chunks of {rows} notes, and the "
            "ranks with less wait for the others; --resident yes shares it note by note")


def launcher(dist: Dist) -> str:
    """The torchrun prefix that starts this job's processes again ("" without torchrun)."""
    if not dist.enabled:
        return ""
    if dist.local_world == dist.world:
        return f"torchrun --nproc_per_node {dist.world} --no-python"
    return (f"torchrun --nnodes {dist.world // dist.local_world} --nproc_per_node {dist.local_world} "
            "--rdzv-backend c10d --rdzv-endpoint <first node>:29400 --no-python")


def wrap(model: torch.nn.Module, dist: Dist) -> torch.nn.Module:
    """The module the training steps call: DDP around ``model`` under torchrun, else ``model``.
    Checkpoints keep saving ``model`` itself (no ``module.`` prefix)."""
    if not dist.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)


def describe(dist: Dist, batch_size: int) -> str:
    """The log line that says what the batch size means under torchrun."""
    return (f"{dist.world} ranks x batch {batch_size} = {dist.world * batch_size} notes per optimizer step "
            "(--batch-size is per rank)")


def any_true(dist: Dist, flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any (e.g. a rank saw a non-finite loss)."""
    return bool(dist.all_sum([float(flag)])[0]) if dist.enabled else flag


def unwrap(model: torch.nn.Module) -> Any:
    """The plain model inside torch.compile's and DDP's wrappers."""
    from torch.nn.parallel import DistributedDataParallel

    model = getattr(model, "_orig_mod", model)
    return model.module if isinstance(model, DistributedDataParallel) else model


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def lockstep(batches: Iterator[Batch], sizes: list[int], blank: Callable[[], Batch]) -> Iterator[tuple[Batch, int]]:
    """This rank's batches with padding steps: ``(batch, notes)`` for each of ``len(sizes)`` steps.

    ``sizes``: this rank's row of :func:`lockstep_sizes`. A padding step (size 0) repeats the first
    row of the rank's last batch with ``notes == 0``: a real note keeps batch-norm statistics
    sane, and the loop weighs it 0, so it only joins the step's gradient all-reduce. ``blank()``
    gives a one-row batch for a rank that has no notes at all this epoch (fewer chunks than ranks).
    """
    it = iter(batches)
    last: Batch | None = None
    for size in sizes:
        if size:
            batch = next(it, None)
            if batch is None or len(batch[1]) != size:
                got = "none" if batch is None else len(batch[1])
                raise RuntimeError(f"the rank's batches do not follow its plan: want {size} rows, got {got}")
            last = batch
            yield batch, size
        else:
            pad = last if last is not None else blank()
            yield (pad[0][:1], pad[1][:1], pad[2][:1]), 0
    if next(it, None) is not None:
        raise RuntimeError("the rank's batches outnumber its planned steps")
