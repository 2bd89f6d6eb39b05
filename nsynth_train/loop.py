"""Train, select on valid, test the best checkpoint; resume.

Reads top to bottom, like nanoGPT's train.py: :func:`train` opens the caches, takes the run
folder (its lock, and the rule that a run is never overwritten unless asked), then
:func:`setup` makes everything before the first epoch (the seed, the model from its preset, the
optimizer, the resumed state, ``config.json``, the splits and objectives) and :func:`fit` runs
the epochs (:func:`~nsynth_train.epoch.run_epoch`), keeps the best checkpoint by validation
accuracy and stops on a non-finite loss or weights. Finally the best checkpoint is scored on
test with :func:`~nsynth_train.evaluate.score`, which ``nsynth eval`` also calls.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nsynth_prep.cache import format as cache_format
from nsynth_prep.cpus import cpu_threads
from nsynth_prep.errors import ConfigError, StorageError
from nsynth_prep.storage.store import Where, location
from nsynth_train import checkpoint, distributed, recipe, resume_state, run_dir
from nsynth_train.batch_size import auto_batch_line, fitting_batch, small_corpus_warning
from nsynth_train.config import TrainConfig, amp_dtype
from nsynth_train.distributed import Dist, lockstep_sizes
from nsynth_train.epoch import Diverged, Objective, make_scaler, objective_for, run_epoch, train_pairs
from nsynth_train.evaluate import score, write_scores
from nsynth_train.init_weights import load_init
from nsynth_train.models import build_model, count_parameters
from nsynth_train.options import make_optimizer
from nsynth_train.splits import Split
from nsynth_train.tasks import Task, head_names, make_task

__all__ = ["Diverged", "Interrupted", "Objective", "TrainConfig", "run_epoch", "train"]

log = logging.getLogger(__name__)

# A per-epoch callback (rank 0): the epoch's history record and the learning rate it ended at.
EpochHook = Callable[[dict[str, float], float], None]
SPLITS = ("train", "valid", "test")


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
class Saved:
    """The epoch ``last.pt`` holds, for what a run that stops says (0: none of this run's yet)."""

    epoch: int = 0


@dataclass
class Run:
    """What the epoch loop reads and updates: made by :func:`setup`, run by :func:`fit`.

    ``model`` is the plain model (checkpoints save it, validation runs it under DDP);
    ``step_model`` the one training steps call (DDP's and torch.compile's wrappers around it);
    ``eval_model`` the one validation calls. ``history``, ``best`` (valid accuracy) and
    ``start`` (the first epoch to run) come from ``last.pt`` on resume.
    """

    config: TrainConfig
    task: Task
    dist: Dist
    out: Path
    progress: bool
    amp: torch.dtype | None
    model: torch.nn.Module
    step_model: torch.nn.Module
    eval_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    train_split: Split
    valid_split: Split
    train_objective: Objective
    valid_objective: Objective
    pairs: list[list[int]]
    history: list[dict[str, float]]
    best: float
    start: int
    saved: Saved
    hooks: list[EpochHook] = field(default_factory=list)  # called after each epoch is saved


def train(config: TrainConfig, out: Path, resume: bool = False, overwrite: bool = False,
          progress: bool = True, figures: bool = True, hooks: list[EpochHook] | None = None) -> dict[str, Any]:
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
    hooks
        Called on rank 0 after each epoch is saved, with its history record and learning rate
        (``nsynth train --tensorboard`` logs through one).

    Raises
    ------
    Interrupted
        Ctrl-C; ``str()`` of it is the command that continues the run.
    Diverged
        The loss or weights became non-finite; ``last.pt`` keeps the last finite epoch.
    """
    chosen_batch = config.batch_size is not None  # None: the preset's, made smaller on a small corpus
    config = config.resolved()
    if resume and overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite replaces it: pass one of them")
    head_names(config.task)  # a refused task fails here, before any process group
    dist = distributed.setup(config.device)
    try:
        return _train(config, dist, Path(out), resume, overwrite, progress and dist.main, figures,
                      hooks if dist.main else None, chosen_batch)
    finally:
        dist.close()


def _train(config: TrainConfig, dist: Dist, out: Path, resume: bool, overwrite: bool,
           progress: bool, figures: bool, hooks: list[EpochHook] | None = None,
           chosen_batch: bool = True) -> dict[str, Any]:
    cache_dir = location(config.cache_dir)  # a folder or a URL (s3://...)
    caches = dist.agree(lambda: {split: cache_format.open_cache(cache_format.cache_path(cache_dir, split),
                                                                (config.feature,))
                                 for split in SPLITS})  # fail before touching the run folder
    assert caches is not None
    task = make_task(config.task, caches["train"])  # pitch: the pitches the train split holds
    if not chosen_batch:
        config = small_corpus_batch(config, task, caches["train"], dist)
    with contextlib.ExitStack() as held:
        def take() -> None:  # rank 0: one writer at a time; stale temporary files removed
            held.enter_context(run_dir.locked(out))
            run_dir.claim(out, resume, overwrite)
        dist.agree(take, where="main")
        saved = Saved()
        try:
            run = setup(config, task, dist, caches, out, resume, progress, saved)
            run.hooks = list(hooks or [])
            done = finished(run)
            if done and (out / "metrics.json").exists():
                log.info("nothing to train: %s %s; its test metrics are in %s (--epochs N, more, goes on)",
                         out, done, out / "metrics.json")
                kept = dist.agree(lambda: json.loads((out / "metrics.json").read_text()), where="main")
                assert kept is not None
                return kept
            fit(run)
            test = dist.agree(lambda: _test(out, cache_dir, config.device, figures), where="main")
            assert test is not None
            return test
        except Diverged as exc:
            kept = (f"{out / 'last.pt'} keeps epoch {saved.epoch}; start again with --overwrite" if saved.epoch
                    else "no checkpoint was written")
            raise Diverged(f"{out}: training stopped in epoch {saved.epoch + 1}: {exc}; {kept}. A lower --lr "
                           f"(now {config.lr:g}) usually helps") from None
        except KeyboardInterrupt:
            raise Interrupted(config, out, saved.epoch, distributed.launcher(dist)) from None
        except StorageError as exc:  # a full disk: what is saved stays, and the run continues from it
            kept = f"{out / 'last.pt'} keeps epoch {saved.epoch}" if saved.epoch else "no epoch was saved"
            raise StorageError(f"{exc.refused or exc}; {kept}. Free some space, then continue with: "
                               f"{config.resume_command(out)}") from None


def small_corpus_batch(config: TrainConfig, task: Task, train_cache: cache_format.Cache, dist: Dist) -> TrainConfig:
    """``config`` with a smaller batch than its preset's when the train split (this rank's share
    under torchrun) would give fewer than :data:`~.batch_size.MIN_STEPS` steps an epoch; says so
    in one line. The batch is recorded in config.json, so ``--resume`` continues with it."""
    assert config.batch_size is not None
    head = task.heads()[0][0]
    notes = len(train_cache) if head.multilabel else int((head.classes_of(train_cache.label(head.column)) >= 0).sum())
    notes //= dist.world
    batch = fitting_batch(notes, config.batch_size, bool(config.drop_last))
    if batch == config.batch_size:
        return config
    if dist.main:
        log.info(auto_batch_line(notes, config.model, config.batch_size, batch, bool(config.drop_last)))
    return replace(config, batch_size=batch)


def setup(config: TrainConfig, task: Task, dist: Dist, caches: dict[str, cache_format.Cache], out: Path,
          resume: bool, progress: bool, saved: Saved) -> Run:
    """Everything before the first epoch: seed, model, optimizer, the state of ``last.pt`` (on
    resume; ``saved`` then says its epoch), config.json, the train and valid splits (this rank's
    shares) and their objectives."""
    device, amp = dist.device, amp_dtype(config, dist.device)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    model = build_model(config.model, task.outputs).to(device)
    recipe.configure(model, config.freq_mask or 0, config.time_mask or 0)  # SpecAugment, when asked
    optimizer = make_optimizer(list(model.parameters()), config.optimizer or "adam", config.lr or 0.0,
                               config.weight_decay or 0.0)
    scaler = make_scaler(device, amp)
    # Another run's weights first: a resume's last.pt, when there is one, replaces them.
    init = dist.agree(lambda: load_init(model, config.init, config.model, task) if config.init else None)
    history, best, start = _resumed(config, dist, out, model, optimizer, saved) if resume else ([], -1.0, 1)
    # DDP (under torchrun) averages the gradients over the ranks; the compiled module shares
    # the model's parameters; checkpoints save the plain model (no "module." prefix).
    step_model: torch.nn.Module = distributed.wrap(model, dist)
    if config.compile:
        step_model = torch.compile(step_model)  # type: ignore[assignment]
    # Evaluation runs the plain model under DDP: DDP's forward would sync buffers, and the
    # ranks' shares of valid need not be the same number of batches.
    eval_model = model if dist.enabled else step_model
    info = _run_info(config, dist, model, amp, caches)
    if init is not None:
        info["init"] = init
    dist.agree(lambda: run_dir.write_config(out, asdict(config), task.to_dict(), info,
                                            resumed_after=start - 1 if start > 1 else None), where="main")
    shard = (dist.rank, dist.world)
    threads = max(1, cpu_threads() // dist.local_world - 1) if dist.local_world > 1 else None
    train_split = Split(caches["train"].path, config, task, device, shuffle=True, shard=shard, threads=threads)
    valid_split = Split(caches["valid"].path, config, task, device, shuffle=False, shard=shard, threads=threads)
    log.info("%s on %s, %s task: %d train / %d valid notes, %s parameters, %s%s", config.model, device,
             config.task, len(train_split), len(valid_split), f"{count_parameters(model):,}",
             "resident in memory" if train_split.resident else "streamed from zarr",
             f", autocast {amp}" if amp else "")
    steps = _steps(config, dist, train_split)
    train_objective = objective_for(config, task, caches["train"], device, sum(steps))
    train_objective.step = sum(steps[: start - 1])  # a resumed run continues the schedule where it was
    valid_objective = objective_for(config, task, caches["valid"], device, 1)
    return Run(config, task, dist, out, progress, amp, model, step_model, eval_model, optimizer, scaler,
               train_split, valid_split, train_objective, valid_objective, train_pairs(task, caches["train"]),
               history, best, start, saved)


def finished(run: Run) -> str:
    """Why a (resumed) run has no epoch left to train: its epochs all done, or it stopped early;
    "" when it has."""
    assert run.config.epochs is not None
    if run.start > run.config.epochs:
        return f"has trained its {run.config.epochs} epochs"
    stale = _epochs_since_best(run.history)
    if run.config.patience and run.history and stale >= run.config.patience:
        return f"stopped early after epoch {run.start - 1} (--patience {run.config.patience})"
    return ""


def fit(run: Run) -> None:
    """The epochs: train, validate, check the weights, record, save; stop early once valid
    accuracy has not improved for ``patience`` epochs."""
    config, dist = run.config, run.dist
    assert config.epochs is not None
    for epoch in range(run.start, config.epochs + 1):
        stale = _epochs_since_best(run.history)
        if config.patience and stale >= config.patience:
            log.info("early stop: valid accuracy has not improved for %d epochs", stale)
            break
        if dist.enabled:  # dropout and augmentation: other draws on each rank, the same on resume
            torch.manual_seed(int(np.random.SeedSequence([config.seed, epoch, dist.rank]).generate_state(1)[0]))
        t = time.perf_counter()
        tl, ta, n = run_epoch(run.step_model, run.train_split, config, epoch, run.optimizer, run.amp,
                              f"epoch {epoch}/{config.epochs}", run.progress, run.scaler, run.train_objective, dist)
        seconds = time.perf_counter() - t
        dist.sync_buffers(run.model)  # validate the weights rank 0 saves
        vl, va, _ = run_epoch(run.eval_model, run.valid_split, config, epoch, None, run.amp, "  valid", False,
                              run.scaler, run.valid_objective, dist)
        _check_finite(run)
        run.history.append({"epoch": epoch, "train_loss": tl, "train_accuracy": ta, "valid_loss": vl,
                            "valid_accuracy": va, "seconds": seconds, "notes_per_s": n / seconds, "train_notes": n})
        log.info("epoch %d/%d: train loss %.3f acc %.1f%% | valid loss %.3f acc %.1f%% | %.1f s, %s notes/s",
                 epoch, config.epochs, tl, 100 * ta, vl, 100 * va, seconds, f"{n / seconds:,.0f}")
        improved = va > run.best
        run.best = max(run.best, va)
        _save(run, epoch, improved)
        run.saved.epoch = epoch
        for hook in run.hooks:
            hook(run.history[-1], run.optimizer.param_groups[0]["lr"])


def _resumed(config: TrainConfig, dist: Dist, out: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             saved: Saved) -> tuple[list[dict[str, float]], float, int]:
    """The history, best valid accuracy and next epoch of the run in ``out``, its ``last.pt``
    loaded into ``model`` and ``optimizer``; a fresh start when it has none. Rank 0 reads
    ``last.pt`` and hands it to every rank (no shared folder needed)."""
    state = dist.agree(lambda: resume_state.read(out / "last.pt", config, dist.world), where="main")
    if state is None:
        log.info("%s has no last.pt; starting from scratch", out)
        return [], -1.0, 1
    history, best, start = resume_state.apply(state, model, optimizer, dist)
    saved.epoch = start - 1
    log.info("resuming %s after epoch %d", out, saved.epoch)
    return history, best, start


def _run_info(config: TrainConfig, dist: Dist, model: torch.nn.Module, amp: torch.dtype | None,
              caches: dict[str, cache_format.Cache]) -> dict[str, Any]:
    """What config.json records beside the settings: feature, device, precision, size, data."""
    info: dict[str, Any] = {"feature": config.feature, "device": str(dist.device),
                            "amp": str(amp).removeprefix("torch.") if amp else None,
                            "parameters": count_parameters(model),
                            "data": {s: run_dir.data_record(c, config.feature) for s, c in caches.items()}}
    if dist.enabled:
        info["distributed"] = {"world_size": dist.world, "backend": dist.backend,
                               "batch_per_rank": config.batch_size,
                               "notes_per_step": dist.world * (config.batch_size or 0)}
    return info


def _steps(config: TrainConfig, dist: Dist, train_split: Split) -> list[int]:
    """Optimizer steps of each epoch (the same on every rank; under torchrun they vary a little
    from epoch to epoch with the ranks' shares of the chunks), after warning when they are few
    or the ranks' shares uneven."""
    assert config.epochs is not None and config.batch_size is not None
    if dist.enabled:
        log.info(distributed.describe(dist, config.batch_size))
    drop_last = bool(config.drop_last)
    shares = train_split.shares(1)
    for warning in (small_corpus_warning(max(shares), config.batch_size, drop_last),
                    distributed.uneven_warning(shares, train_split)):
        if warning and dist.main:  # from every rank's shares: the same on all, said once
            log.warning(warning)
    return [len(lockstep_sizes(train_split.shares(e), config.batch_size, drop_last)[0])
            for e in range(1, config.epochs + 1)]


def _check_finite(run: Run) -> None:
    """Once an epoch, before saving: a few small syncs. Adam's moments overflow (inf) when
    gradients do, even while the loss still looks finite."""
    bad = checkpoint.non_finite(run.model.state_dict()) + checkpoint.non_finite(run.optimizer.state_dict())
    if bad:
        raise Diverged(f"the weights or optimizer state became non-finite ({', '.join(bad[:3])})")


def _save(run: Run, epoch: int, improved: bool) -> None:
    """Rank 0: ``best.pt`` when valid accuracy improved, ``last.pt`` and ``history.csv``."""
    kwargs = dict(model=run.model, optimizer=run.optimizer, epoch=epoch, config=asdict(run.config),
                  task=run.task.to_dict(), extra={"history": run.history, "best_valid_accuracy": run.best,
                                                  "train_pairs": run.pairs, "world_size": run.dist.world})
    run.dist.agree(lambda: resume_state.save_epoch(run.out, improved, kwargs, run.history), where="main")


def _test(out: Path, cache_dir: Where, device: str, figures: bool) -> dict[str, Any]:
    """Rank 0 after the epochs: the best checkpoint scored on test, metrics.json and figures."""
    return write_scores(score(out / "best.pt", cache_dir, "test", device), out, figures)


def _epochs_since_best(history: list[dict[str, float]]) -> int:
    """Epochs run since the first epoch with the best validation accuracy (0: the last was best)."""
    if not history:
        return 0
    accuracies = [h["valid_accuracy"] for h in history]
    return len(accuracies) - 1 - int(np.argmax(accuracies))
