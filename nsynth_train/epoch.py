"""One pass over a split (:func:`run_epoch`) and what a training step optimises
(:class:`Objective`: heads, class weights, label smoothing, augmentation, the lr schedule).

:mod:`nsynth_train.loop` runs the epochs; this module is the inside of one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from nsynth_prep.cache import format as cache_format
from nsynth_prep.errors import RunError
from nsynth_prep.progress import Progress
from nsynth_train.config import TrainConfig
from nsynth_train.distributed import Dist, lockstep, lockstep_sizes, step_weights, unwrap
from nsynth_train.models import CNN, forward
from nsynth_train.options import augment, class_weights, lr_factor, positive_weights
from nsynth_train.recipe import mixed_cross_entropy, mixed_flags, mixup, robust
from nsynth_train.splits import Split
from nsynth_train.tasks import Task

SYNC_SECONDS = 0.5  # read the running loss back from the device (and check it) at most this often


class Diverged(RunError):
    """The loss or the weights became NaN or infinite."""



@dataclass
class HeadObjective:
    """One head's share of the loss.

    ``part``: its slice of the logits; ``weight``: class weights of its cross-entropy (for a
    multi-label head, BCE's ``pos_weight``), None = unweighted; ``targets``: every cache row's
    target on the device ((N,) classes, -1 = none; (N, 10) flags for a multi-label head), None
    = the batch's own classes (the first head's); ``scale``: its weight in the summed loss.
    """

    part: slice
    weight: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    multilabel: bool = False
    scale: float = 1.0


@dataclass
class Objective:
    """What a training step optimises beyond plain cross-entropy on one head.

    ``heads``: each head's loss (:class:`HeadObjective`). ``step``/``total``: optimizer steps
    done and planned, for the lr schedule.
    """

    heads: list[HeadObjective]
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
    """The targets of each head for a batch: ``y`` itself for the first head, the others' looked
    up by cache row."""
    return [y if h.targets is None else h.targets[rows.to(h.targets.device)] for h in objective.heads]


def head_loss(h: HeadObjective, logits: torch.Tensor, target: torch.Tensor, training: bool,
              label_smoothing: float, mix: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """One head's loss on a batch (unscaled). Smoothing and class weights shape the training
    objective only; the reported validation loss is plain, comparable across runs. ``mix``:
    mixup's partner index and lambda (B,) each, when the batch was mixed (training only)."""
    if mix is not None:
        if h.multilabel:  # the mixed notes' flags, mixed in the same proportions
            return F.binary_cross_entropy_with_logits(logits, mixed_flags(target, *mix), pos_weight=h.weight)
        return mixed_cross_entropy(logits, target, *mix, h.weight, label_smoothing)
    if h.multilabel:  # (B, 10) logits and flags
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=h.weight if training else None)
    loss = F.cross_entropy(logits, target, weight=h.weight if training else None,
                           label_smoothing=label_smoothing if training else 0.0, ignore_index=-1)
    # A looked-up head may have no target in a batch (every note -1): its mean is 0/0, taken as 0.
    return loss if h.targets is None else torch.nan_to_num(loss, nan=0.0)


def head_counts(h: HeadObjective, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(3,) int64 counts a head's score is made of: hits, scored notes, 0 for a class head
    (its accuracy); true positives, false positives, false negatives at p >= 0.5 for a
    multi-label head (its micro-F1)."""
    if h.multilabel:
        said, true = logits >= 0, target > 0.5
        return torch.stack([(said & true).sum(), (said & ~true).sum(), (~said & true).sum()])
    scored = target >= 0
    hits = ((logits.argmax(1) == target) & scored).sum()
    return torch.stack([hits, scored.sum(), torch.zeros_like(hits)])


def head_scores(counts: torch.Tensor, objective: Objective) -> list[float]:
    """Each head's score from its (3,) counts: accuracy, or micro-F1 for a multi-label head."""
    out = []
    for h, (a, b, c) in zip(objective.heads, counts.tolist(), strict=True):
        out.append(2 * a / max(2 * a + b + c, 1) if h.multilabel else a / max(b, 1))
    return out


def run_epoch(model: torch.nn.Module, split: Split, config: TrainConfig, epoch: int,
              optimizer: torch.optim.Optimizer | None, amp: torch.dtype | None, desc: str,
              progress: bool, scaler: torch.amp.GradScaler | None = None,
              objective: Objective | None = None, dist: Dist | None = None) -> tuple[float, float, int]:
    """One pass: trains when given an optimizer, else evaluates. Returns (loss, accuracy, notes).

    With several heads (``both``, ``family,source,pitch``) the loss is the sum of the heads'
    losses, each times its weight, and the accuracy the plain mean of the heads' scores (a
    class head's accuracy; a multi-label head's micro-F1 at p >= 0.5).

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
        objective = Objective(heads=[HeadObjective(slice(None))])
    training = optimizer is not None
    dist = dist or Dist()
    # The sums stay on the device: reading them every batch would make the host wait for the GPU
    # at every step. They are read (and checked) every SYNC_SECONDS and at the end.
    total_loss = torch.zeros((), device=split.device)
    counts = torch.zeros((len(objective.heads), 3), dtype=torch.int64, device=split.device)
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
            for i, (h, target) in enumerate(zip(objective.heads, targets, strict=True)):
                part_loss = head_loss(h, logits[:, h.part], target, training, objective.label_smoothing, mix)
                loss = loss + (part_loss if h.scale == 1.0 else h.scale * part_loss)
                if n:  # not a padding step
                    counts[i] += head_counts(h, logits[:, h.part], target)
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
                bar.postfix = f"loss {_finite(total_loss, desc) / max(seen, 1):.3f} acc {_acc(counts, objective):.1%}"
                synced = time.perf_counter()
    if dist.enabled:  # every rank's sums, so every rank gets the whole split's numbers
        summed = dist.all_sum([float(total_loss), float(seen), *(float(v) for v in counts.flatten().tolist())])
        total_loss, seen = torch.tensor(summed[0]), int(summed[1])
        counts = torch.tensor([int(v) for v in summed[2:]], dtype=torch.int64).reshape(counts.shape)
    return _finite(total_loss, desc) / max(seen, 1), _acc(counts, objective), seen


def _acc(counts: torch.Tensor, objective: Objective) -> float:
    """The plain mean of the heads' scores (accuracy; micro-F1 for a multi-label head)."""
    return float(np.mean(head_scores(counts.cpu(), objective)))


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
    cache's labels, used for the train split), the other heads' targets, their loss weights,
    schedule, augmentation."""
    heads: list[HeadObjective] = []
    scales = config.weights() or (1.0,) * len(task.heads())
    for i, ((head, part), scale) in enumerate(zip(task.heads(), scales, strict=True)):
        labels = cache.label(head.column)
        weight = None
        if config.balance == "loss":
            w = positive_weights(labels) if head.multilabel else class_weights(head.classes_of(labels), head.num_classes)
            weight = torch.from_numpy(w).to(device)
        # The first head's targets are the batch's classes; the others' (and multi-label flags)
        # are looked up by cache row.
        targets = None if i == 0 and not head.multilabel else torch.from_numpy(head.targets(labels)).to(device)
        heads.append(HeadObjective(part, weight, targets, head.multilabel, float(scale)))
    return Objective(heads=heads, label_smoothing=config.label_smoothing or 0.0,
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
