"""The training side's vocabulary, written once: tasks, models and their presets, optimizers,
schedules, balance modes, devices, precisions, the limits of the options, and how each
:class:`~nsynth_train.config.TrainConfig` field is spelt on the command line.

Imports nothing but the standard library (no torch, no numpy): ``cli.py`` builds its
``click.Choice`` lists and the preset values its ``--help`` shows from here at start-up, and
the library (config, models, tasks) reads the same names. The prep side's names (features,
layouts) are :mod:`nsynth_prep.vocabulary`'s: prep never imports training.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

# The one-word task names (pitch is made from the train split, the rest are nsynth_train.tasks.TASKS);
# a comma list of HEAD_NAMES (family,source,pitch) trains one network with a head for each.
TASK_NAMES = ("family", "source", "both", "pitch", "velocity", "qualities")
HEAD_NAMES = ("family", "source", "pitch", "velocity", "qualities")
# Why --task instrument is refused (docs/training.md#instrument).
INSTRUMENT_REFUSED = ("--task instrument is not offered: NSynth's train, valid and test splits hold disjoint "
                      "instruments, so no instrument of valid or test is ever seen in training and instrument "
                      "identity cannot be scored on them (docs/training.md#instrument)")
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle")
BALANCE = ("off", "loss", "sample")
DEVICES = ("auto", "cpu", "cuda")
AMP = ("auto", "bf16", "fp16", "off")  # auto: bf16 on CUDA
RESIDENT = ("auto", "yes", "no")  # hold whole splits in device memory
GAIN_DB_MAX = 40  # augmentation: the largest random gain, in dB
SHIFT_MAX = 0.5  # augmentation: the largest random time shift, a fraction of the input (half of it)
EQ_DB_MAX = 40  # robustness: the largest gain of a random EQ band, in dB
PITCH_SHIFT_MAX = 12  # robustness: the largest pitch shift by resampling, in semitones
NOISE_SNR_SPAN = 30  # robustness: added noise's SNR is uniform in [--noise-snr, --noise-snr + this] dB


@dataclass(frozen=True)
class ModelPreset:
    """A model and the reference project's defaults for training it."""

    name: str
    feature: str
    lr: float
    batch_size: int
    epochs: int
    drop_last: bool
    l1: float = 0.0  # L1 penalty on conv kernels (cnn-reg)
    l2: float = 0.0  # L2 penalty on conv kernels (cnn-reg)
    # Training options (nsynth_train.options); the reference presets keep these defaults (off).
    optimizer: str = "adam"  # adam | adamw
    weight_decay: float = 0.0  # decoupled (AdamW) or L2 (Adam) weight decay
    schedule: str = "constant"  # constant | cosine | onecycle (per optimizer step)
    label_smoothing: float = 0.0
    balance: str = "off"  # off | loss: cross-entropy weighted by inverse train class frequency
    gain_db: float = 0.0  # augmentation: random gain, uniform in +-gain_db dB
    shift: float = 0.0  # augmentation: random time shift, up to this fraction of the input
    # The recipe's options (nsynth_train.recipe); 0 = off
    freq_mask: int = 0  # SpecAugment: two frequency masks of up to this many mel bands (log-mel models)
    time_mask: int = 0  # SpecAugment: two time masks of up to this many frames (log-mel models)
    mixup: float = 0.0  # mixup's Beta(alpha, alpha) parameter
    eq_db: float = 0.0  # robustness: random EQ, three bands of up to +-eq_db dB (audio features)
    noise_snr: float = 0.0  # robustness: white noise at an SNR from this many dB up (audio features)
    pitch_shift: float = 0.0  # robustness: pitch shift by resampling, up to +-this many semitones


PRESETS = {
    "cnn": ModelPreset("cnn", "pooled", lr=1e-3, batch_size=1024, epochs=20, drop_last=False),
    "cnn-reg": ModelPreset("cnn-reg", "pooled", lr=1e-3, batch_size=1024, epochs=20, drop_last=False,
                           l1=1e-3, l2=1e-3),
    "lstm": ModelPreset("lstm", "framed", lr=3e-3, batch_size=768, epochs=30, drop_last=True),
    "blstm": ModelPreset("blstm", "framed", lr=3e-3, batch_size=768, epochs=30, drop_last=True),
    # Every training option off: with AdamW, one-cycle, label smoothing, class-balanced loss and
    # gain/shift augmentation together it scored lower on the rendered corpus (docs/benchmarks.md).
    "mel-cnn": ModelPreset("mel-cnn", "trimmed", lr=3e-3, batch_size=128, epochs=10, drop_last=True),
    # Two convs a block, wider (nsynth_train.mel_models); the training options as mel-cnn's (off).
    "mel-cnn2": ModelPreset("mel-cnn2", "trimmed", lr=3e-3, batch_size=128, epochs=10, drop_last=True),
}
REFERENCE_PRESETS = ("cnn", "cnn-reg", "lstm", "blstm")  # the papers' models and settings, to reproduce them
# What `nsynth train` trains without --model: the best model the project has measured
# (docs/benchmarks.md: far past the reference models on held-out sample libraries).
DEFAULT_MODEL = "mel-cnn"
FIGURE_FORMATS = ("png", "svg", "pdf")  # --figure-format: what run figures may be written as
DEMO_EPOCHS = 5  # nsynth demo: the default model's epochs on the demo corpus (under a minute in all)

# The training options a preset sets (None in a TrainConfig: the preset's)
PRESET_OPTIONS = ("optimizer", "weight_decay", "schedule", "label_smoothing", "balance", "gain_db", "shift",
                  "freq_mask", "time_mask", "mixup", "eq_db", "noise_snr", "pitch_shift")
# Their values in the reference recipe (every option off): what runs made before they existed used
REFERENCE_OPTIONS: dict[str, Any] = {f.name: f.default for f in fields(ModelPreset) if f.name in PRESET_OPTIONS}

# TrainConfig field -> its `nsynth train` option (drop_last and buffer_chunks are Python-only)
CLI_OPTIONS = {"task": "--task", "model": "--model", "cache_dir": "--cache", "epochs": "--epochs",
               "batch_size": "--batch-size", "lr": "--lr", "l1": "--l1", "l2": "--l2", "device": "--device",
               "amp": "--amp", "resident": "--resident", "num_workers": "--workers", "patience": "--patience",
               "seed": "--seed", "optimizer": "--optimizer", "weight_decay": "--weight-decay",
               "schedule": "--schedule", "label_smoothing": "--label-smoothing", "balance": "--balance",
               "gain_db": "--gain-db", "shift": "--shift", "head_weights": "--head-weights", "init": "--init",
               "freq_mask": "--freq-mask", "time_mask": "--time-mask", "mixup": "--mixup", "eq_db": "--eq-db",
               "noise_snr": "--noise-snr", "pitch_shift": "--pitch-shift"}


def number(value: float) -> str:
    """A preset value as ``--help`` writes it: ``1e-3``, ``1024``, ``0``."""
    if isinstance(value, float) and 0 < abs(value) < 0.01:
        mantissa, exponent = f"{value:.0e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return f"{value:g}"


def preset_values(field: str, models: tuple[str, ...] = ("cnn", "lstm")) -> str:
    """``cnn 20, lstm 30``: the presets' values of ``field`` (a :class:`ModelPreset` field), for ``--help``."""
    return ", ".join(f"{m} {number(getattr(PRESETS[m], field))}" for m in models)


def task_heads(spec: str) -> tuple[tuple[str, ...], str | None]:
    """The heads a ``--task`` value names and None, or () and the one line saying what is wrong.

    ``family`` -> ("family",); ``both`` -> ("both",); ``family,source,pitch`` -> the three.
    """
    if not isinstance(spec, str):
        return (), f"the task must be a name, not {spec!r}"
    heads = tuple(h.strip() for h in spec.split(",") if h.strip())
    expected = f"expected one of {', '.join(TASK_NAMES)}, or a comma list of {', '.join(HEAD_NAMES)}"
    if "instrument" in heads:
        return (), INSTRUMENT_REFUSED
    if not heads:
        return (), f"no task named; {expected}"
    if len(heads) == 1:
        return (heads, None) if heads[0] in TASK_NAMES else ((), f"unknown task {spec!r}; {expected}")
    unknown = [h for h in heads if h not in HEAD_NAMES]
    if unknown:
        return (), f"unknown head {unknown[0]!r} in the task {spec!r}; {expected}"
    if len(set(heads)) < len(heads):
        return (), f"the task {spec!r} names a head twice"
    return heads, None


def head_weights(text: str, heads: int) -> tuple[tuple[float, ...], str | None]:
    """``"1,1,0.5"`` for ``heads`` heads -> the weights and None, or () and what is wrong: one
    finite number >= 0 per head, at least one above 0."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        return (), f"--head-weights must be numbers separated by commas, not {text!r}"
    if len(values) != heads:
        return (), f"--head-weights gives {len(values)} weight(s) for a task with {heads} heads"
    if any(not (v >= 0 and v != float("inf")) for v in values) or not any(values):
        return (), f"--head-weights must be finite numbers >= 0, at least one above 0, not {text!r}"
    return values, None


def figure_formats_of(formats: tuple[str, ...] | str | None) -> tuple[str, ...]:
    """``"png,svg"`` or ``("png", "svg")`` as checked formats, each once, in order (None: PNG).

    Raises
    ------
    ValueError
        A format not in :data:`FIGURE_FORMATS`, or none at all.
    """
    if formats is None:
        return ("png",)
    items = formats.split(",") if isinstance(formats, str) else formats
    out = tuple(dict.fromkeys(f.strip().lower() for f in items if f.strip()))
    bad = [f for f in out if f not in FIGURE_FORMATS]
    if bad or not out:
        raise ValueError(f"{', '.join(bad) or 'nothing'}: expected one or more of png, svg, pdf, comma-separated "
                         "(e.g. png,svg)")
    return out
