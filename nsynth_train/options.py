"""Training options beyond the reference recipe: optimizer, learning-rate schedule, loss
weighting and label smoothing, augmentation on the device. All off in the reference presets.

Everything here is a small pure function of its arguments, so the loop stays readable and a
resumed run recomputes the same schedule from the step number.
"""

from __future__ import annotations

import math

import numpy as np
import torch

ONECYCLE_WARMUP = 0.3  # fraction of the steps spent rising to the peak lr (torch's OneCycleLR default)
ONECYCLE_START = 1 / 25  # starting lr as a fraction of the peak (OneCycleLR's div_factor 25)
ONECYCLE_END = 1e-4  # final lr as a fraction of the peak


def make_optimizer(params: list[torch.nn.Parameter], name: str, lr: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    """Adam (weight decay as an L2 term in the gradient) or AdamW (decoupled weight decay)."""
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def lr_factor(schedule: str, step: int, total: int) -> float:
    """Multiplier of the base lr at optimizer step ``step`` (0-based) of ``total``.

    ``cosine``: 1 -> 0 along half a cosine. ``onecycle``: cosine rise from 1/25 to 1 over the
    first 30 % of the steps, then cosine fall to 1e-4 (torch's ``OneCycleLR`` shape).
    """
    if schedule == "constant" or total <= 1:
        return 1.0
    t = min(max(step / (total - 1), 0.0), 1.0)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    if t < ONECYCLE_WARMUP:
        u = t / ONECYCLE_WARMUP
        return ONECYCLE_START + (1 - ONECYCLE_START) * 0.5 * (1 - math.cos(math.pi * u))
    u = (t - ONECYCLE_WARMUP) / (1 - ONECYCLE_WARMUP)
    return ONECYCLE_END + (1 - ONECYCLE_END) * 0.5 * (1 + math.cos(math.pi * u))


def class_weights(classes: np.ndarray, num_classes: int) -> np.ndarray:
    """(C,) float32 inverse-frequency weights of the train classes (``classes`` (N,), -1 left
    out), scaled so that the weighted mean over the notes is 1; a class with no notes gets 0."""
    counts = np.bincount(classes[classes >= 0], minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 0.0)
    present = counts > 0
    weights[present] *= counts.sum() / (weights * counts).sum()
    return weights.astype(np.float32)


def positive_weights(flags: np.ndarray) -> np.ndarray:
    """(L,) float32 ``pos_weight`` of a multi-label head from its train flags (N, L): negatives
    over positives of each label (BCE then weighs a label's yes as much as its no); 1 for a label
    with no positives."""
    positives = np.asarray(flags, np.float64).sum(0)
    negatives = len(flags) - positives
    return np.where(positives > 0, negatives / np.maximum(positives, 1), 1.0).astype(np.float32)


def augment(x: torch.Tensor, gain_db: float, shift: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random gain and time shift of a batch of audio features, on x's device.

    ``x`` (B, ...) with time along the flattened trailing axes (``pooled`` (B, 2048),
    ``framed`` (B, 100, 160), ``trimmed`` (B, 51200)). Each note gets a gain uniform in
    +-``gain_db`` dB and a shift uniform in +-``shift`` of its length (the note moves later or
    earlier; what moves out is dropped, what moves in is silence).
    """
    if not gain_db and not shift:
        return x
    shape, b = x.shape, x.shape[0]
    flat = x.reshape(b, -1)
    length = flat.shape[1]
    if gain_db:
        db = (torch.rand(b, 1, device=x.device, generator=generator) * 2 - 1) * gain_db
        flat = flat * torch.pow(10.0, db / 20).to(flat.dtype)
    if shift:
        most = int(shift * length)
        s = torch.randint(-most, most + 1, (b, 1), device=x.device, generator=generator)
        src = torch.arange(length, device=x.device)[None] - s  # (B, L): output t reads input t - s
        inside = (src >= 0) & (src < length)
        flat = torch.gather(flat, 1, src.clamp(0, length - 1)) * inside
    return flat.reshape(shape)
