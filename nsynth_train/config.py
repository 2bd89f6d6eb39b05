"""The settings of a training run, and the device and precision they resolve to."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from nsynth_prep.errors import ConfigError

from .models import get_preset
from .tasks import get_task


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a run; stored in every checkpoint. ``None`` = the preset's value."""

    task: str = "family"
    model: str = "cnn"
    cache_dir: str = "data/cache"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    l1: float | None = None
    l2: float | None = None
    drop_last: bool | None = None
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: str = "auto"  # auto (bf16 on CUDA) | bf16 | fp16 | off
    resident: str = "auto"  # auto | yes | no: hold whole splits in device memory
    num_workers: int = 0
    buffer_chunks: int = 4
    patience: int = 0  # early stopping after this many epochs without a better valid accuracy; 0 = off

    def resolved(self) -> TrainConfig:
        """The config with every ``None`` filled from the model's preset, and an absolute cache
        folder (so ``nsynth eval`` finds it from anywhere)."""
        p = get_preset(self.model)
        get_task(self.task)
        return replace(self, cache_dir=str(Path(self.cache_dir).resolve()), epochs=self.epochs or p.epochs, batch_size=self.batch_size or p.batch_size,
                       lr=self.lr or p.lr, l1=p.l1 if self.l1 is None else self.l1,
                       l2=p.l2 if self.l2 is None else self.l2,
                       drop_last=p.drop_last if self.drop_last is None else self.drop_last)

    @property
    def feature(self) -> str:
        return get_preset(self.model).feature


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but torch sees no CUDA device")
    return torch.device(name)


def amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or config.amp == "off":
        return None
    if config.amp == "fp16":
        return torch.float16
    return torch.bfloat16
