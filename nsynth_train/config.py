"""The settings of a training run, and the device and precision they resolve to."""

from __future__ import annotations

import hashlib
import json
import math
import shlex
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch

from nsynth_prep.errors import ConfigError
from nsynth_prep.storage.store import is_url
from nsynth_train.models import get_preset
from nsynth_train.vocabulary import (
    AMP,
    BALANCE,
    CLI_OPTIONS,
    DEFAULT_MODEL,
    DEVICES,
    EQ_DB_MAX,
    GAIN_DB_MAX,
    OPTIMIZERS,
    PITCH_SHIFT_MAX,
    PRESET_OPTIONS,
    PRESETS,
    REFERENCE_OPTIONS,
    RESIDENT,
    SCHEDULES,
    SHIFT_MAX,
    head_weights,
    number,
    task_heads,
)

CHOICES = {"model": tuple(PRESETS), "device": DEVICES, "amp": AMP, "resident": RESIDENT}
# Options whose None means "the preset's" (validated only when set)
OPTIONAL_CHOICES = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "balance": BALANCE}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a run; stored in every checkpoint and in the run's config.json.

    ``None`` means "the model preset's value" (:meth:`resolved` fills it in); any other value
    is used as given and must be in range: ``epochs=0`` is an error, never "the preset".
    """

    task: str = "family"
    model: str = DEFAULT_MODEL
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
    compile: bool = False  # torch.compile the model for training (see docs/benchmarks.md for when it helps)
    # Training options (nsynth_train.options); None = the preset's (off for the reference presets)
    optimizer: str | None = None  # adam | adamw
    weight_decay: float | None = None
    schedule: str | None = None  # constant | cosine | onecycle
    label_smoothing: float | None = None  # in [0, 1)
    balance: str | None = None  # off | loss (inverse class frequency weights)
    gain_db: float | None = None  # random gain in +-gain_db dB
    shift: float | None = None  # random time shift, fraction of the input in [0, 0.5]
    # Several heads (both, family,source,pitch): each head's loss weight, "1,1,0.5" (None: 1 each).
    # A sequence of numbers is accepted and stored as that text (what config.json and --resume compare).
    head_weights: str | None = None
    # Start from another run's weights (a run folder or checkpoint; nsynth_train.init_weights)
    init: str | None = None
    # The recipe's options (nsynth_train.recipe); None = the preset's, 0 = off
    freq_mask: int | None = None  # SpecAugment: 2 frequency masks of up to N mel bands
    time_mask: int | None = None  # SpecAugment: 2 time masks of up to N frames
    mixup: float | None = None  # Beta(alpha, alpha) of mixup
    eq_db: float | None = None  # random EQ, bands of up to +-eq_db dB
    noise_snr: float | None = None  # added white noise, SNR uniform in [noise_snr, noise_snr + 30] dB
    pitch_shift: float | None = None  # pitch shift by resampling, up to +-N semitones

    def __post_init__(self) -> None:
        heads, problem = task_heads(self.task)
        if problem:
            raise ConfigError(problem)
        object.__setattr__(self, "task", ",".join(heads))  # "family, pitch" -> "family,pitch"
        if self.head_weights is not None:
            self._check_head_weights(2 if heads == ("both",) else len(heads))
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"unknown {name} {getattr(self, name)!r}; expected one of {', '.join(allowed)}")
        _check_int(self, "epochs", 1, optional=True)
        _check_int(self, "batch_size", 1, optional=True)
        _check_int(self, "seed", 0)
        _check_int(self, "num_workers", 0)
        _check_int(self, "buffer_chunks", 1)
        _check_int(self, "patience", 0)
        _check_float(self, "lr", positive=True)
        _check_float(self, "l1", positive=False)
        _check_float(self, "l2", positive=False)
        for name, allowed in OPTIONAL_CHOICES.items():
            if getattr(self, name) is not None and getattr(self, name) not in allowed:
                raise ConfigError(f"unknown {name} {getattr(self, name)!r}; expected one of {', '.join(allowed)}")
        for name in ("weight_decay", "label_smoothing", "gain_db", "shift", "mixup", "eq_db", "noise_snr",
                     "pitch_shift"):
            _check_float(self, name, positive=False)
        _check_int(self, "freq_mask", 0, optional=True)
        _check_int(self, "time_mask", 0, optional=True)
        if self.eq_db is not None and self.eq_db > EQ_DB_MAX:
            raise ConfigError(f"eq_db must be at most {number(EQ_DB_MAX)}, not {self.eq_db!r}")
        if self.pitch_shift is not None and self.pitch_shift > PITCH_SHIFT_MAX:
            raise ConfigError(f"pitch_shift must be at most {number(PITCH_SHIFT_MAX)} semitones, not {self.pitch_shift!r}")
        if self.label_smoothing is not None and self.label_smoothing >= 1:
            raise ConfigError(f"label_smoothing must be below 1, not {self.label_smoothing!r}")
        if self.shift is not None and self.shift > SHIFT_MAX:
            raise ConfigError(f"shift must be at most {number(SHIFT_MAX)} (half the input), not {self.shift!r}")
        if self.gain_db is not None and self.gain_db > GAIN_DB_MAX:
            raise ConfigError(f"gain_db must be at most {number(GAIN_DB_MAX)}, not {self.gain_db!r}")
        if not isinstance(self.compile, bool):
            raise ConfigError(f"compile must be true or false, not {self.compile!r}")

    def _check_head_weights(self, heads: int) -> None:
        given: Any = self.head_weights  # a str, or from Python a sequence of numbers
        if heads < 2:
            raise ConfigError(f"--head-weights is for a task with several heads (both, family,source,...), not {self.task!r}")
        if not isinstance(given, str):
            ok = isinstance(given, tuple | list) and all(isinstance(v, int | float) and not isinstance(v, bool)
                                                        for v in given)
            if not ok:
                raise ConfigError(f"head_weights must be a text like '1,0.5' or a sequence of numbers, not {given!r}")
            given = ",".join(f"{float(v):g}" for v in given)
        values, problem = head_weights(given, heads)
        if problem:
            raise ConfigError(problem)
        object.__setattr__(self, "head_weights", ",".join(f"{v:g}" for v in values))  # one spelling per value

    def weights(self) -> tuple[float, ...] | None:
        """Each head's loss weight, or None (1 each)."""
        return tuple(float(v) for v in self.head_weights.split(",")) if self.head_weights else None

    def resolved(self) -> TrainConfig:
        """The config with every ``None`` filled from the model's preset, and an absolute cache
        folder (so ``nsynth eval`` finds it from anywhere)."""
        p = get_preset(self.model)
        # A URL (s3://...) stays as it is; a path is made absolute.
        cache_dir = self.cache_dir if is_url(self.cache_dir) else str(Path(self.cache_dir).resolve())
        out = replace(self, cache_dir=cache_dir, init=None if self.init is None else str(Path(self.init).resolve()),
                       epochs=p.epochs if self.epochs is None else self.epochs,
                       batch_size=p.batch_size if self.batch_size is None else self.batch_size,
                       lr=p.lr if self.lr is None else self.lr,
                       l1=p.l1 if self.l1 is None else self.l1,
                       l2=p.l2 if self.l2 is None else self.l2,
                       drop_last=p.drop_last if self.drop_last is None else self.drop_last,
                       **{name: getattr(p, name) if getattr(self, name) is None else getattr(self, name)
                          for name in PRESET_OPTIONS})
        check_recipe(out, p.feature)
        return out

    @property
    def feature(self) -> str:
        return get_preset(self.model).feature

    def fingerprint(self) -> str:
        """8 hex digits of a hash of every setting: the default run folder's suffix, so runs with
        other settings never share a folder and the same command finds its own run again."""
        d = asdict(self)
        for name in PRESET_OPTIONS:  # options at the reference recipe (or unset) leave the hash as it was
            if d[name] is None or d[name] == REFERENCE_OPTIONS[name]:  # before they existed
                del d[name]
        for name in ("head_weights", "init"):  # likewise, for the settings added since
            if d[name] is None:
                del d[name]
        text = json.dumps(d, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def with_options_of(self, saved: dict[str, Any]) -> dict[str, Any]:
        """``saved`` (a checkpoint's config) with the training options it predates filled in at
        the reference recipe, which is how it was trained: for comparing it with this config."""
        return {**{n: v for n, v in REFERENCE_OPTIONS.items() if n not in saved}, "head_weights": None, "init": None,
                **saved}

    def resume_command(self, out: Path) -> str:
        """The ``nsynth train`` command that continues this (resolved) config's run in ``out``:
        the task, model and cache, plus every setting that differs from the preset's."""
        preset = TrainConfig(task=self.task, model=self.model).resolved()
        if (self.drop_last, self.buffer_chunks) != (preset.drop_last, preset.buffer_chunks):
            return f"train(config, Path({str(out)!r}), resume=True) in Python (drop_last and buffer_chunks " \
                   "have no command-line option)"
        parts = ["nsynth", "train"]
        for name, option in CLI_OPTIONS.items():
            value = getattr(self, name)
            if name in ("task", "model", "cache_dir") or value != getattr(preset, name):
                parts += [option, shlex.quote(str(value))]
        return " ".join([*parts, "--resume", "--out", shlex.quote(str(out))])

    @staticmethod
    def from_dict(d: dict[str, Any]) -> TrainConfig:
        """The inverse of ``asdict``; unknown keys are an error (a checkpoint of another version)."""
        unknown = set(d) - {f.name for f in fields(TrainConfig)}
        if unknown:
            raise ConfigError(f"unknown settings {', '.join(sorted(unknown))}")
        return TrainConfig(**d)


def check_recipe(config: TrainConfig, feature: str) -> None:
    """The recipe's options that the model's input cannot take are an error, not silently off:
    SpecAugment needs a log-mel model, the robustness transforms audio (``trimmed``, ``framed``)."""
    if (config.freq_mask or config.time_mask) and not config.model.startswith("mel-"):
        raise ConfigError(f"--freq-mask/--time-mask mask a log-mel spectrogram; model {config.model} has none "
                          "(use a mel- model)")
    if (config.eq_db or config.noise_snr or config.pitch_shift) and feature == "pooled":
        raise ConfigError(f"--eq-db/--noise-snr/--pitch-shift transform audio; model {config.model} reads the "
                          "pooled spectrum")
    if config.pitch_shift and "pitch" in config.task.split(","):
        raise ConfigError("--pitch-shift changes the pitch the pitch task predicts; leave it off for that task")


def _check_int(config: TrainConfig, name: str, low: int, optional: bool = False) -> None:
    value = getattr(config, name)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be a whole number >= {low}, not {value!r}")


def _check_float(config: TrainConfig, name: str, positive: bool) -> None:
    value = getattr(config, name)
    if value is None:
        return
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        raise ConfigError(f"{name} must be a finite number {'>' if positive else '>='} 0, not {value!r}")


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
