"""The training recipe's options beyond :mod:`nsynth_train.options`: SpecAugment, mixup,
class-balanced sampling and robustness augmentation. Every one is off by default (0 / ``off``)
and off in every preset, so a run that does not ask for them trains bit for bit as before.

All the random draws run on the batch's device from torch's global generator (seeded by
``--seed`` at the start of a run, and per epoch and rank under torchrun), except the balanced
draw, which is numpy's, seeded by (seed, epoch) alone so that every rank draws the same.

- :func:`spec_augment`: time and frequency masking of a normalised log-mel (Park et al. 2019;
  two masks of each kind, as SpecAugment's LD policy and PANNs), set to 0, the mean of the
  batch-normed log-mel. Applied inside a log-mel model while it trains (:func:`configure`).
- :func:`mixup`: EfficientAT's convention (Schmid et al. 2023, ``helpers/mixup.py``): one
  lambda per note from Beta(alpha, alpha), folded to max(lambda, 1 - lambda) so the note keeps
  the larger share, partner notes a random permutation of the batch, the loss mixed with the
  same lambda. Applied to the model's input (the audio, like AST), so it works for every model.
- :func:`balanced_counts`: the class-balanced draw of an epoch, see its docstring.
- :func:`robust`: pitch shift by resampling, a random EQ and added white noise at a random SNR,
  for recordings that sound unlike NSynth's (other rooms, microphones, tunings).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from nsynth_train.vocabulary import NOISE_SNR_SPAN

MASKS = 2  # masks of each kind (SpecAugment LD, PANNs)
EQ_BANDS = 3  # bands of the random EQ
EQ_LOW, EQ_HIGH = 50.0, 7_000.0  # Hz: the range of the bands' centres (log-uniform)
EQ_WIDTH = (0.3, 1.5)  # octaves: the range of a band's width (the Gaussian's standard deviation)
SAMPLE_RATE = 16_000
BALANCE_KEY = 0xBA1  # third word of the balanced draw's seed, apart from the shuffles' keys


def spec_augment(m: torch.Tensor, freq_mask: int, time_mask: int) -> torch.Tensor:
    """(B, C, F, T) spectrograms with, per note, ``MASKS`` frequency bands of width uniform in
    0..``freq_mask`` and ``MASKS`` time spans of width 0..``time_mask`` set to 0 (widths are
    clipped to the axis). The input is returned unchanged when both are 0."""
    if not freq_mask and not time_mask:
        return m
    b, _, n_freq, n_time = m.shape
    keep = torch.ones(b, 1, n_freq, n_time, device=m.device, dtype=m.dtype)
    for axis, most in ((2, freq_mask), (3, time_mask)):
        size = m.shape[axis]
        most = min(most, size)
        if not most:
            continue
        pos = torch.arange(size, device=m.device)
        for _ in range(MASKS):
            width = torch.randint(0, most + 1, (b,), device=m.device)
            start = (torch.rand(b, device=m.device) * (size - width + 1)).long()  # the mask inside the axis
            hit = (pos[None] >= start[:, None]) & (pos[None] < (start + width)[:, None])  # (B, size)
            shape = (b, 1, size, 1) if axis == 2 else (b, 1, 1, size)
            keep = keep * (~hit).to(m.dtype).reshape(shape)
    return m * keep


def configure(model: torch.nn.Module, freq_mask: int, time_mask: int) -> None:
    """Turn SpecAugment on in a log-mel model (one with ``freq_mask``/``time_mask`` attributes)."""
    if not hasattr(model, "freq_mask"):
        if freq_mask or time_mask:
            raise ValueError(f"{type(model).__name__} has no log-mel to mask")
        return
    setattr(model, "freq_mask", freq_mask)  # noqa: B010 (an nn.Module attribute mypy cannot see)
    setattr(model, "time_mask", time_mask)  # noqa: B010


def mixup(x: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mix each note with a partner: returns (mixed x, partner index (B,), lambda (B,)).

    ``x`` (B, ...): note ``i`` becomes ``lam[i] * x[i] + (1 - lam[i]) * x[perm[i]]``, with
    ``lam ~ Beta(alpha, alpha)`` folded into [0.5, 1] and ``perm`` a random permutation.
    """
    b = x.shape[0]
    beta = torch.distributions.Beta(torch.tensor(float(alpha), device=x.device),
                                    torch.tensor(float(alpha), device=x.device))
    lam = beta.sample((b,))
    lam = torch.maximum(lam, 1 - lam)
    perm = torch.randperm(b, device=x.device)
    shape = (b,) + (1,) * (x.dim() - 1)
    mixed = x * lam.reshape(shape).to(x.dtype) + x[perm] * (1 - lam).reshape(shape).to(x.dtype)
    return mixed, perm, lam


def mixed_cross_entropy(logits: torch.Tensor, target: torch.Tensor, perm: torch.Tensor, lam: torch.Tensor,
                        weight: torch.Tensor | None, label_smoothing: float) -> torch.Tensor:
    """Mixup's loss: the mean of ``lam * CE(target) + (1 - lam) * CE(target[perm])`` over the
    batch's notes (with class weights, each term carries its class's weight). A target of -1 (a
    note outside a looked-up head's task) adds nothing to its term; a batch with none scored is 0."""
    def ce(t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, t, weight=weight, label_smoothing=label_smoothing, reduction="none",
                               ignore_index=-1)
    scored = ((target >= 0).float() * lam + (target[perm] >= 0).float() * (1 - lam)).sum()
    total = (lam * ce(target) + (1 - lam) * ce(target[perm])).sum()
    return torch.nan_to_num(total / scored, nan=0.0)  # 0 / 0 when no note is scored


def mixed_flags(target: torch.Tensor, perm: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """(B, K) float mixup targets of a multi-label head: ``lam * flags + (1 - lam) * flags[perm]``."""
    lam2 = lam.reshape(-1, 1).to(target.dtype)
    return lam2 * target + (1 - lam2) * target[perm]


def balanced_counts(classes: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """(N,) int64 times each row is used in ``epoch`` under class-balanced sampling.

    ``classes`` (N,): each row's class, -1 = not in the task (count 0). The epoch draws as many
    rows as the task has, with replacement: each present class is equally likely and, within a
    class, each row (``np.random.default_rng([seed, epoch, BALANCE_KEY]).multinomial``). So a
    class of n rows among C present classes gets N / C rows in expectation, its rows N / (C n)
    uses each: a rare class's notes repeat within an epoch, a common class's are partly left
    out. The draw depends on (seed, epoch) alone: under torchrun every rank draws the same counts
    and takes them for its own chunks, so the ranks together use each row its count of times.
    """
    inside = classes >= 0
    counts = np.bincount(classes[inside], minlength=int(classes.max(initial=-1)) + 1)
    present = int((counts > 0).sum())
    n = int(inside.sum())
    if n == 0:
        return np.zeros(len(classes), np.int64)
    p = np.zeros(len(classes), np.float64)
    p[inside] = 1.0 / (present * counts[classes[inside]])
    p /= p.sum()  # exact 1 for multinomial despite rounding
    return np.random.default_rng([seed, epoch, BALANCE_KEY]).multinomial(n, p).astype(np.int64)


def robust(x: torch.Tensor, eq_db: float, noise_snr: float, pitch_shift: float) -> torch.Tensor:
    """Robustness augmentation of a batch of audio, in this order, each only when its option is set.

    ``x`` (B, ...) float audio at 16 kHz with time along the flattened trailing axes
    (``trimmed`` (B, 51200), ``framed`` (B, 100, 160)). Per note:

    - pitch shift: a factor ``2 ** (s / 12)``, ``s`` uniform in +-``pitch_shift`` semitones, by
      resampling with linear interpolation (the note also gets shorter or longer, like tape;
      what runs past the end is silence);
    - random EQ: ``EQ_BANDS`` Gaussian bands on a log-frequency axis, centres log-uniform in
      50 Hz-7 kHz, widths 0.3-1.5 octaves, gains uniform in +-``eq_db`` dB, applied as a
      zero-phase gain on the note's spectrum;
    - white noise at an SNR uniform in [``noise_snr``, ``noise_snr`` + 30] dB relative to the
      note's mean power (a silent note stays silent).
    """
    if not eq_db and not noise_snr and not pitch_shift:
        return x
    shape, b = x.shape, x.shape[0]
    flat = x.reshape(b, -1).float()
    if pitch_shift:
        flat = _resample(flat, pitch_shift)
    if eq_db:
        flat = _eq(flat, eq_db)
    if noise_snr:
        snr = noise_snr + torch.rand(b, 1, device=x.device) * NOISE_SNR_SPAN
        power = flat.square().mean(1, keepdim=True)
        flat = flat + torch.randn_like(flat) * torch.sqrt(power / torch.pow(10.0, snr / 10))
    return flat.reshape(shape).to(x.dtype)


def _resample(flat: torch.Tensor, semitones: float) -> torch.Tensor:
    """(B, L) -> (B, L): output sample t reads input position t * 2**(s/12), linearly interpolated."""
    b, length = flat.shape
    s = (torch.rand(b, 1, device=flat.device) * 2 - 1) * semitones
    pos = torch.arange(length, device=flat.device, dtype=torch.float32)[None] * torch.pow(2.0, s / 12)  # (B, L)
    i0 = pos.floor().long()
    frac = pos - i0
    inside = i0 < length - 1
    i0 = i0.clamp(max=length - 2)
    a, z = torch.gather(flat, 1, i0), torch.gather(flat, 1, i0 + 1)
    return (a + (z - a) * frac) * inside


def _eq(flat: torch.Tensor, eq_db: float) -> torch.Tensor:
    """(B, L) -> (B, L) through a random zero-phase EQ (see :func:`robust`)."""
    b, length = flat.shape
    dev = flat.device
    spec = torch.fft.rfft(flat, dim=1)  # (B, L // 2 + 1)
    freqs = torch.fft.rfftfreq(length, 1 / SAMPLE_RATE, device=dev).clamp(min=1.0)
    octave = torch.log2(freqs)[None, None]  # (1, 1, F)
    lo, hi = math.log2(EQ_LOW), math.log2(EQ_HIGH)
    centre = lo + torch.rand(b, EQ_BANDS, 1, device=dev) * (hi - lo)
    width = EQ_WIDTH[0] + torch.rand(b, EQ_BANDS, 1, device=dev) * (EQ_WIDTH[1] - EQ_WIDTH[0])
    gain = (torch.rand(b, EQ_BANDS, 1, device=dev) * 2 - 1) * eq_db
    db = (gain * torch.exp(-0.5 * ((octave - centre) / width) ** 2)).sum(1)  # (B, F)
    return torch.fft.irfft(spec * torch.pow(10.0, db / 20), n=length, dim=1)
