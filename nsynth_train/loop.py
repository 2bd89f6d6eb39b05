"""Train, select on valid, test the best checkpoint; resume.

Reads top to bottom: :func:`train` checks the caches, takes the run folder (its lock, and the
rule that a run is never overwritten unless asked), records ``config.json``, sets the seed,
builds the model from its preset, runs epochs (:func:`run_epoch`), keeps the best checkpoint by
validation accuracy, stops on a non-finite loss or weights, and finally scores the best
checkpoint on test with :func:`~nsynth_train.evaluate.score`, which ``nsynth eval`` also calls.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nsynth_prep.cache import format as cache_format
from nsynth_prep.cache.checked import cpu_threads
from nsynth_prep.errors import ConfigError, RunError
from nsynth_prep.progress import Progress
from nsynth_prep.storage.store import location
from nsynth_train import checkpoint, distributed, resume_state, run_dir
from nsynth_train.config import TrainConfig, amp_dtype
from nsynth_train.data import Split
from nsynth_train.distributed import Dist, lockstep, lockstep_sizes, step_weights, unwrap
from nsynth_train.evaluate import score
from nsynth_train.models import CNN, build_model, count_parameters, forward
from nsynth_train.options import augment, class_weights, lr_factor, make_optimizer
from nsynth_train.tasks import Task, get_task

__all__ = ["Diverged", "Interrupted", "Objective", "TrainConfig", "run_epoch", "train"]

log = logging.getLogger(__name__)

SYNC_SECONDS = 0.5  # read the running loss back from the device (and check it) at most this often
MIN_STEPS = 50  # fewer optimizer steps per epoch than this: warn (small corpus, large batch)


class Diverged(RunError):
    """The loss or the weights became NaN or infinite."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training; its text says what is saved and the command that continues."""

    def __init__(self, config: TrainConfig, out: Path, saved_epoch: int, launcher: str = "") -> None:
        super().__init__()
        self.config, self.out, self.saved_epoch, self.launcher = config, out, saved_epoch, launcher

    def __str__(self) -> str:
        last = self.out / "last.pt"
        saved = (f"{last} holds epoch {self.saved_epoch} of {self.config.epochs}" if self.saved_epoch
                 else f"{last} is as it was" if last.exists() else "no epoch was finished yet")
        command = self.config.resume_command(self.out)
        if self.launcher and command.startswith("nsynth "):  # under torchrun: the same processes again
            command = f"{self.launcher} {command}"
        return f"interrupted; {saved}. Continue with:\n  {command}"


@dataclass
class Objective:
    """What a training step optimises beyond plain cross-entropy on one head.

    ``heads``: each head's slice of the logits and its class weights (None = unweighted).
    ``second``: (N,) second-head class of every cache row of the split, on the device (the
    ``both`` task's source), or None. ``step``/``total``: optimizer steps done and planned,
    for the lr schedule.
    """

    heads: list[tuple[slice, torch.Tensor | None]]
    second: torch.Tensor | None = None
    label_smoothing: float = 0.0
    gain_db: float = 0.0
    shift: float = 0.0
    schedule: str = "constant"
    base_lr: float = 0.0
    step: int = 0
    total: int = 1


def head_targets(objective: Objective, y: torch.Tensor, rows: torch.Tensor) -> list[torch.Tensor]:
    """The target classes of each head for a batch: ``y`` itself, and for ``both`` the second
    head's classes looked up by cache row."""
    if objective.second is None:
        return [y]
    return [y, objective.second[rows.to(objective.second.device)]]


def run_epoch(model: torch.nn.Module, split: Split, config: TrainConfig, epoch: int,
              optimizer: torch.optim.Optimizer | None, amp: torch.dtype | None, desc: str,
              progress: bool, scaler: torch.amp.GradScaler | None = None,
              objective: Objective | None = None, dist: Dist | None = None) -> tuple[float, float, int]:
    """One pass: trains when given an optimizer, else evaluates. Returns (loss, accuracy, notes).

    With two heads (``both``) the loss is the sum of the heads' cross-entropies and the
    accuracy the mean of the heads' accuracies.

    Under torchrun (``dist``) each rank goes through its share of ``split``; the returned loss,
    accuracy and notes are over all ranks (summed with an all-reduce). Training runs the same
    number of steps on every rank (:func:`~.distributed.lockstep`): a rank whose share is used
    up takes zero-weight steps, and each rank's loss is weighed by its share of the step's notes,
    so DDP's gradient mean is the gradient of the step's mean loss over all its notes.

    Raises
    ------
    Diverged
        The running loss became NaN or infinite.
    """
    model.train(optimizer is not None)
    if scaler is None:  # made once per run by train(): its scale adapts over the whole run
        scaler = make_scaler(split.device, amp)
    if objective is None:
        objective = Objective(heads=[(slice(None), None)])
    training = optimizer is not None
    dist = dist or Dist()
    # The sums stay on the device: reading them every batch would make the host wait for the GPU
    # at every step. They are read (and checked) every SYNC_SECONDS and at the end.
    total_loss = torch.zeros((), device=split.device)
    correct = torch.zeros((), dtype=torch.int64, device=split.device)
    seen, synced = 0, time.perf_counter()
    drop_last = bool(config.drop_last) and training
    shares = split.shares(epoch)
    assert config.batch_size is not None
    sizes = lockstep_sizes(shares, config.batch_size, drop_last)
    weights = step_weights(sizes, dist.rank)
    steps = (lockstep(split.batches(epoch, drop_last), sizes[dist.rank], split.blank) if training and dist.enabled
             else ((b, len(b[1])) for b in split.batches(epoch, drop_last)))
    with Progress(shares[dist.rank], desc, enabled=progress) as bar, torch.set_grad_enabled(training):
        for k, ((x, y, rows), n) in enumerate(steps):
            if training:
                x = augment(x, objective.gain_db, objective.shift)
            logits = forward(model, x, amp)  # (B, outputs) float32
            targets = head_targets(objective, y, rows)
            loss = torch.zeros((), device=logits.device)
            for (part, weight), target in zip(objective.heads, targets, strict=True):
                # Smoothing and class weights shape the training objective only; the reported
                # validation loss is the plain cross-entropy, comparable across runs.
                loss = loss + F.cross_entropy(logits[:, part], target, weight=weight if training else None,
                                              label_smoothing=objective.label_smoothing if training else 0.0)
                if n:  # not a padding step
                    correct += (logits[:, part].argmax(1) == target).sum()
            if optimizer is not None:
                # Under torchrun: this rank's share of the step's notes (0 on a padding step); the
                # penalty below is the same on every rank and stays unweighted.
                objective_value = loss * weights[k] if dist.enabled else loss
                base = unwrap(model)  # the model inside torch.compile's and DDP's wrappers
                if isinstance(base, CNN) and (config.l1 or config.l2):
                    objective_value = objective_value + base.penalty(config.l1 or 0.0, config.l2 or 0.0)
                factor = lr_factor(objective.schedule, objective.step, objective.total)
                for group in optimizer.param_groups:
                    group["lr"] = objective.base_lr * factor
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(objective_value).backward()
                scaler.step(optimizer)
                scaler.update()
                objective.step += 1
            total_loss += loss.detach() * n
            seen += n
            bar.update(n)
            if time.perf_counter() - synced > SYNC_SECONDS:
                bar.postfix = f"loss {_finite(total_loss, desc) / max(seen, 1):.3f} acc {_acc(correct, seen, objective):.1%}"
                synced = time.perf_counter()
    if dist.enabled:  # every rank's sums, so every rank gets the whole split's numbers
        loss_sum, hits, seen_all = dist.all_sum([float(total_loss), float(correct), float(seen)])
        seen = int(seen_all)
        total_loss = torch.tensor(loss_sum)
        correct = torch.tensor(int(hits))
    return _finite(total_loss, desc) / max(seen, 1), _acc(correct, seen, objective), seen


def _acc(correct: torch.Tensor, seen: int, objective: Objective) -> float:
    """Mean accuracy over the heads (correct counts every head's hits)."""
    return int(correct) / max(seen * len(objective.heads), 1)


def steps_per_epoch(notes: int, batch_size: int, drop_last: bool) -> int:
    return notes // batch_size if drop_last else -(-notes // batch_size)


def small_corpus_warning(notes: int, batch_size: int, drop_last: bool) -> str | None:
    """The warning line when an epoch would be fewer than MIN_STEPS optimizer steps, naming a
    batch size (a power of two) that gives at least that many; None when the epoch is long enough."""
    steps = steps_per_epoch(notes, batch_size, drop_last)
    if steps >= MIN_STEPS:
        return None
    better = 2 ** max(0, int(math.log2(max(1, notes // MIN_STEPS))))
    return (f"an epoch of {notes:,} notes at batch size {batch_size} is only {steps} optimizer steps; "
            f"models learn little from so few: --batch-size {better} gives "
            f"{steps_per_epoch(notes, better, drop_last)}")


def make_scaler(device: torch.device, amp: torch.dtype | None) -> torch.amp.GradScaler:
    """fp16 gradients underflow without loss scaling; bf16 and fp32 need none (a no-op scaler)."""
    return torch.amp.GradScaler(device.type, enabled=amp == torch.float16)


def _finite(total: torch.Tensor, desc: str) -> float:
    value = float(total)
    if not math.isfinite(value):
        raise Diverged(f"the loss became {value} ({desc.strip()})")
    return value


def train(config: TrainConfig, out: Path, resume: bool = False, overwrite: bool = False,
          progress: bool = True, figures: bool = True) -> dict[str, Any]:
    """Train ``config`` into run folder ``out``; returns the test metrics (also in metrics.json).

    Under torchrun (see :mod:`.distributed`) every rank calls this; rank 0 alone takes the run
    folder and writes, and every rank returns the same test metrics.

    Parameters
    ----------
    resume
        Continue the run in ``out`` from its ``last.pt`` (same settings only).
    overwrite
        Replace the run ``out`` holds. Without ``resume`` or ``overwrite``, a folder that
        holds a run is refused (:class:`RunError`).
    figures
        Draw the test split's figures into ``figures/`` (off: metrics only, seconds sooner).

    Raises
    ------
    Interrupted
        Ctrl-C; ``str()`` of it is the command that continues the run.
    Diverged
        The loss or weights became non-finite; ``last.pt`` keeps the last finite epoch.
    """
    config = config.resolved()
    if resume and overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite replaces it: pass one of them")
    task = get_task(config.task)
    dist = distributed.setup(config.device)
    try:
        return _train(config, task, dist, Path(out), resume, overwrite, progress and dist.main, figures)
    finally:
        dist.close()


def _train(config: TrainConfig, task: Task, dist: Dist, out: Path, resume: bool, overwrite: bool,
           progress: bool, figures: bool) -> dict[str, Any]:
    device = dist.device
    amp = amp_dtype(config, device)
    cache_dir = location(config.cache_dir)  # a folder or a URL (s3://...)
    caches = dist.agree(lambda: {split: cache_format.open_cache(cache_format.cache_path(cache_dir, split),
                                                                (config.feature,))
                                 for split in ("train", "valid", "test")})  # fail before touching the run folder
    assert caches is not None
    with contextlib.ExitStack() as held:
        def take() -> None:  # rank 0: one writer at a time; stale temporary files removed
            held.enter_context(run_dir.locked(out))
            run_dir.claim(out, resume, overwrite)
        dist.agree(take, where="main")
        saved = 0  # the epoch last.pt holds (for the Ctrl-C message)
        try:
            torch.manual_seed(config.seed)
            np.random.seed(config.seed)
            model = build_model(config.model, task.outputs).to(device)
            optimizer = make_optimizer(list(model.parameters()), config.optimizer or "adam", config.lr or 0.0,
                                       config.weight_decay or 0.0)
            scaler = make_scaler(device, amp)
            history: list[dict[str, float]] = []
            start, best = 1, -1.0
            if resume:  # rank 0 reads last.pt and hands it to every rank (no shared folder needed)
                state = dist.agree(lambda: resume_state.read(out / "last.pt", config, dist.world), where="main")
                if state is not None:
                    history, best, start = resume_state.apply(state, model, optimizer, dist)
                    saved = start - 1
                    log.info("resuming %s after epoch %d", out, saved)
                else:
                    log.info("%s has no last.pt; starting from scratch", out)
            # DDP (under torchrun) averages the gradients over the ranks; the compiled module shares
            # the model's parameters; checkpoints save the plain model (no "module." prefix).
            step_model: torch.nn.Module = distributed.wrap(model, dist)
            if config.compile:
                step_model = torch.compile(step_model)  # type: ignore[assignment]
            # Evaluation runs the plain model under DDP: DDP's forward would sync buffers, and the
            # ranks' shares of valid need not be the same number of batches.
            eval_model = model if dist.enabled else step_model
            run_info: dict[str, Any] = {"feature": config.feature, "device": str(device),
                        "amp": str(amp).removeprefix("torch.") if amp else None,
                        "parameters": count_parameters(model),
                        "data": {s: run_dir.data_record(c, config.feature) for s, c in caches.items()}}
            if dist.enabled:
                run_info["distributed"] = {"world_size": dist.world, "backend": dist.backend,
                                           "batch_per_rank": config.batch_size,
                                           "notes_per_step": dist.world * (config.batch_size or 0)}
            dist.agree(lambda: run_dir.write_config(out, asdict(config), task.to_dict(), run_info,
                                                    resumed_after=start - 1 if start > 1 else None), where="main")
            shard = (dist.rank, dist.world)
            threads = max(1, cpu_threads() // dist.local_world - 1) if dist.local_world > 1 else None
            train_split = Split(caches["train"].path, config, task, device, shuffle=True, shard=shard, threads=threads)
            valid_split = Split(caches["valid"].path, config, task, device, shuffle=False, shard=shard,
                                threads=threads)
            log.info("%s on %s, %s task: %d train / %d valid notes, %s parameters, %s%s", config.model, device,
                     config.task, len(train_split), len(valid_split), f"{count_parameters(model):,}",
                     "resident in memory" if train_split.resident else "streamed from zarr",
                     f", autocast {amp}" if amp else "")
            assert config.epochs is not None and config.batch_size is not None
            if dist.enabled:
                log.info(distributed.describe(dist, config.batch_size))
            drop_last = bool(config.drop_last)
            shares = train_split.shares(1)
            for warning in (small_corpus_warning(max(shares), config.batch_size, drop_last),
                            distributed.uneven_warning(shares, train_split)):
                if warning and dist.main:  # from every rank's shares: the same on all, said once
                    log.warning(warning)
            # Steps of each epoch (the same on every rank; under torchrun they vary a little from
            # epoch to epoch with the ranks' shares of the chunks)
            steps = [len(lockstep_sizes(train_split.shares(e), config.batch_size, drop_last)[0])
                     for e in range(1, config.epochs + 1)]
            train_obj = objective_for(config, task, caches["train"], device, sum(steps))
            train_obj.step = sum(steps[: start - 1])  # a resumed run continues the schedule where it was
            valid_obj = objective_for(config, task, caches["valid"], device, 1)
            pairs = train_pairs(task, caches["train"])
            for epoch in range(start, config.epochs + 1):
                stale = _epochs_since_best(history)
                if config.patience and stale >= config.patience:
                    log.info("early stop: valid accuracy has not improved for %d epochs", stale)
                    break
                if dist.enabled:  # dropout and augmentation: other draws on each rank, the same on resume
                    torch.manual_seed(int(np.random.SeedSequence([config.seed, epoch, dist.rank]).generate_state(1)[0]))
                t = time.perf_counter()
                tl, ta, n = run_epoch(step_model, train_split, config, epoch, optimizer, amp,
                                      f"epoch {epoch}/{config.epochs}", progress, scaler, train_obj, dist)
                seconds = time.perf_counter() - t
                dist.sync_buffers(model)  # validate the weights rank 0 saves
                vl, va, _ = run_epoch(eval_model, valid_split, config, epoch, None, amp, "  valid", False, scaler,
                                      valid_obj, dist)
                # Once an epoch, before saving: a few small syncs. Adam's moments overflow (inf) when
                # gradients do, even while the loss still looks finite.
                bad = checkpoint.non_finite(model.state_dict()) + checkpoint.non_finite(optimizer.state_dict())
                if bad:
                    raise Diverged(f"the weights or optimizer state became non-finite ({', '.join(bad[:3])})")
                history.append({"epoch": epoch, "train_loss": tl, "train_accuracy": ta, "valid_loss": vl,
                                "valid_accuracy": va, "seconds": seconds, "notes_per_s": n / seconds,
                                "train_notes": n})
                log.info("epoch %d/%d: train loss %.3f acc %.1f%% | valid loss %.3f acc %.1f%% | %.1f s, %s notes/s",
                         epoch, config.epochs, tl, 100 * ta, vl, 100 * va, seconds, f"{n / seconds:,.0f}")
                improved = va > best
                best = max(best, va)
                kwargs = dict(model=model, optimizer=optimizer, epoch=epoch, config=asdict(config),
                              task=task.to_dict(), extra={"history": history, "best_valid_accuracy": best,
                                                          "train_pairs": pairs, "world_size": dist.world})
                dist.agree(lambda: resume_state.save_epoch(out, improved, kwargs, history), where="main")  # noqa: B023 (called now)
                saved = epoch
            test = dist.agree(lambda: score(out / "best.pt", cache_dir, "test", out, device=config.device,
                                            progress=progress, figures=figures), where="main")
            assert test is not None
            return test
        except Diverged as exc:
            kept = (f"{out / 'last.pt'} keeps epoch {saved}; start again with --overwrite" if saved
                    else "no checkpoint was written")
            raise Diverged(f"{out}: training stopped in epoch {saved + 1}: {exc}; {kept}. A lower --lr "
                           f"(now {config.lr:g}) usually helps") from None
        except KeyboardInterrupt:
            raise Interrupted(config, out, saved, distributed.launcher(dist)) from None


def objective_for(config: TrainConfig, task: Task, cache: cache_format.Cache, device: torch.device,
                  total_steps: int) -> Objective:
    """The training objective of ``config`` on one split's cache: heads, class weights (from this
    cache's labels, used for the train split), the second head's labels, schedule, augmentation."""
    heads: list[tuple[slice, torch.Tensor | None]] = []
    for head, part in task.heads():
        weight = None
        if config.balance == "loss":
            w = class_weights(head.classes_of(cache.label(head.column)), head.num_classes)
            weight = torch.from_numpy(w).to(device)
        heads.append((part, weight))
    second = None
    if task.second:
        head = task.heads()[1][0]
        second = torch.from_numpy(head.classes_of(cache.label(head.column))).to(device)
    return Objective(heads=heads, second=second, label_smoothing=config.label_smoothing or 0.0,
                     gain_db=config.gain_db or 0.0, shift=config.shift or 0.0,
                     schedule=config.schedule or "constant", base_lr=config.lr or 0.0, total=total_steps)


def train_pairs(task: Task, cache: cache_format.Cache) -> list[list[int]]:
    """The (family class, source class) pairs present in the train split, for ``both`` runs
    (the consistency table of their predictions); [] for one-head tasks."""
    if not task.second:
        return []
    (first, _), (second, _) = task.heads()
    a, b = first.classes_of(cache.label(first.column)), second.classes_of(cache.label(second.column))
    keep = (a >= 0) & (b >= 0)
    return sorted({(int(i), int(j)) for i, j in zip(a[keep], b[keep], strict=True)})  # type: ignore[misc]


def _epochs_since_best(history: list[dict[str, float]]) -> int:
    """Epochs run since the first epoch with the best validation accuracy (0: the last was best)."""
    if not history:
        return 0
    accuracies = [h["valid_accuracy"] for h in history]
    return len(accuracies) - 1 - int(np.argmax(accuracies))
