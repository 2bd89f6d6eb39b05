"""The networks, by name, with each one's training defaults.

``cnn``/``cnn-reg``: the CNN project's networks 1 and 2 on ``pooled`` (2,048 values).
``lstm``/``blstm``: the RNN project's 2-layer (Bi)LSTM, hidden 128, on ``framed`` (100 x 160).
These four reproduce the reference projects: every training option is off for them.
``mel-cnn``: a 2-D CNN on a log-mel spectrogram made on the device from ``trimmed``
(:mod:`nsynth_train.mel_models`); the training options are off for it too (measured better).
``mel-cnn2``: the same front end with two convs a block and wider blocks (about 3.6x the compute).
The presets themselves (:data:`PRESETS`) are :mod:`nsynth_train.vocabulary`'s, which the CLI reads
without torch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nsynth_prep.errors import ConfigError
from nsynth_train.vocabulary import PRESETS, ModelPreset


def get_preset(name: str) -> ModelPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; expected one of {', '.join(PRESETS)}") from None


class SamePool1d(nn.Module):
    """Keras ``AveragePooling1D(k, padding='same')``: stride k, ceil(L / k) outputs, padding
    split as Keras does (extra on the right) and left out of each window's mean."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, L) -> (B, C, ceil(L / k))
        length = x.shape[-1]
        out = math.ceil(length / self.kernel)
        pad = max(0, (out - 1) * self.kernel + self.kernel - length)
        left, right = pad // 2, pad - pad // 2
        # Window sums over zero padding, divided by how many real samples each window holds.
        total = F.avg_pool1d(F.pad(x, (left, right)), self.kernel)
        ones = F.pad(torch.ones(1, 1, length, device=x.device, dtype=x.dtype), (left, right))
        return total / F.avg_pool1d(ones, self.kernel)


class CNN(nn.Module):
    """conv32(k3) - avgpool3 - drop - conv64(k5) - avgpool5 - drop - conv128(k5) - flatten -
    dense64 - drop - dense32 - classes; ReLU after the convs and the first two dense layers."""

    def __init__(self, num_classes: int, input_length: int = 2048, dropout: float = 0.2) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, 32, 3)
        self.conv2 = nn.Conv1d(32, 64, 5)
        self.conv3 = nn.Conv1d(64, 128, 5)
        self.pool1, self.pool2 = SamePool1d(3), SamePool1d(5)
        self.drop = nn.Dropout(dropout)
        length = math.ceil((math.ceil((input_length - 2) / 3) - 4) / 5) - 4
        self.fc1 = nn.Linear(128 * length, 64)
        self.fc2 = nn.Linear(64, 32)
        self.out = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 2048) -> (B, classes) logits
        x = x.unsqueeze(1)  # (B, 1, 2048)
        x = self.drop(self.pool1(F.relu(self.conv1(x))))  # (B, 32, 682)
        x = self.drop(self.pool2(F.relu(self.conv2(x))))  # (B, 64, 136)
        x = F.relu(self.conv3(x)).flatten(1)  # (B, 128 * 132)
        x = self.drop(F.relu(self.fc1(x)))
        return self.out(F.relu(self.fc2(x)))

    def penalty(self, l1: float, l2: float) -> torch.Tensor:
        """Keras ``l1_l2`` kernel regularisers on the convs: l1 * sum|w| + l2 * sum w^2."""
        kernels = [self.conv1.weight, self.conv2.weight, self.conv3.weight]
        return sum((l1 * w.abs().sum() + l2 * w.pow(2).sum() for w in kernels), torch.zeros(()))


class RNN(nn.Module):
    """2-layer (Bi)LSTM, hidden 128, over 100 frames of 160 samples; last step -> linear."""

    def __init__(self, num_classes: int, bidirectional: bool, input_size: int = 160, hidden: int = 128) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden, num_layers=2, batch_first=True, bidirectional=bidirectional)
        self.out = nn.Linear(hidden * (2 if bidirectional else 1), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 100, 160) -> (B, classes) logits
        seq, _ = self.lstm(x)  # (B, 100, hidden * directions)
        return self.out(seq[:, -1])


def build_model(name: str, num_classes: int) -> nn.Module:
    """A fresh model by preset name; ``num_classes`` is its number of outputs (13 for the
    ``both`` task: 10 family logits then 3 source logits)."""
    get_preset(name)
    if name == "mel-cnn":
        from nsynth_train.mel_models import MelCNN

        return MelCNN(num_classes)
    if name == "mel-cnn2":
        from nsynth_train.mel_models import CHANNELS2, MelCNN

        return MelCNN(num_classes, channels=CHANNELS2, convs=2)
    if name in ("cnn", "cnn-reg"):
        return CNN(num_classes)
    return RNN(num_classes, bidirectional=name == "blstm")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward(model: torch.nn.Module, x: torch.Tensor, amp: torch.dtype | None) -> torch.Tensor:
    """(B, classes) float32 logits, under autocast when ``amp`` is set."""
    with torch.autocast(x.device.type, dtype=amp or torch.float32, enabled=amp is not None):
        return model(x).float()
