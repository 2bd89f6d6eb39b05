"""One pass over a split (:func:`run_epoch`) and what a training step optimises
(:class:`Objective`: heads, class weights, label smoothing, augmentation, the lr schedule).

:mod:`nsynth_train.loop` runs the epochs; this module is the inside of one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nsynth_prep.cache import format as cache_format
from nsynth_prep.errors import RunError
from nsynth_prep.progress import Progress
from nsynth_train.config import TrainConfig
from nsynth_train.data import Split
from nsynth_train.distributed import Dist, lockstep, lockstep_sizes, step_weights, unwrap
from nsynth_train.models import CNN, forward
from nsynth_train.options import augment, class_weights, lr_factor
from nsynth_train.recipe import mixed_cross_entropy, mixup, robust
from nsynth_train.tasks import Task

SYNC_SECONDS = 0.5  # read the running loss back from the device (and check it) at most this often


class Diverged(RunError):
    """The loss or the weights became NaN or infinite."""



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
    mixup: float = 0.0  # the recipe's (nsynth_train.recipe); 0 = off
    eq_db: float = 0.0
    noise_snr: float = 0.0
    pitch_shift: float = 0.0
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
            mix: tuple[torch.Tensor, torch.Tensor] | None = None  # mixup's partners and lambdas
            if training:
                x = robust(x, objective.eq_db, objective.noise_snr, objective.pitch_shift)
                x = augment(x, objective.gain_db, objective.shift)
                if objective.mixup:
                    x, perm, lam = mixup(x, objective.mixup)
                    mix = (perm, lam)
            logits = forward(model, x, amp)  # (B, outputs) float32
            targets = head_targets(objective, y, rows)
            loss = torch.zeros((), device=logits.device)
            for (part, weight), target in zip(objective.heads, targets, strict=True):
                # Smoothing and class weights shape the training objective only; the reported
                # validation loss is the plain cross-entropy, comparable across runs.
                if mix:  # training with mixup: the loss of both partners' classes
                    loss = loss + mixed_cross_entropy(logits[:, part], target, *mix, weight, objective.label_smoothing)
                else:
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


def make_scaler(device: torch.device, amp: torch.dtype | None) -> torch.amp.GradScaler:
    """fp16 gradients underflow without loss scaling; bf16 and fp32 need none (a no-op scaler)."""
    return torch.amp.GradScaler(device.type, enabled=amp == torch.float16)


def _finite(total: torch.Tensor, desc: str) -> float:
    value = float(total)
    if not math.isfinite(value):
        raise Diverged(f"the loss became {value} ({desc.strip()})")
    return value


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
                     gain_db=config.gain_db or 0.0, shift=config.shift or 0.0, mixup=config.mixup or 0.0,
                     eq_db=config.eq_db or 0.0, noise_snr=config.noise_snr or 0.0,
                     pitch_shift=config.pitch_shift or 0.0,
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
