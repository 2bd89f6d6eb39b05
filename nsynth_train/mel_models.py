"""Models on a log-mel spectrogram made on the device from the ``trimmed`` audio feature.

``mel-cnn``: :class:`~nsynth_train.frontend.LogMel` of the first 1.6 s (64 mel bands x 51 frames of 32 ms) -
batch norm - four blocks of conv 3x3, batch norm, ReLU, max-pool 2x2 (16, 32, 64, 128 channels)
- mean over time (keeping the 4 remaining frequency rows, which carry register) - dropout -
linear. Small on purpose: it has to train in minutes on 2 CPU cores.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from nsynth_train.frontend import N_MELS, LogMel

CHANNELS = (16, 32, 64, 128)
# The first 1.6 s (25,600 samples -> 51 frames of 32 ms) of the 3.2 s ``trimmed`` audio: attack,
# early decay and sustain are there; the whole 3.2 s doubled the step time on 2 CPU cores.
CROP = 25_600


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2))


class MelCNN(nn.Module):
    """(B, 51200) audio -> (B, outputs) logits through a log-mel 2-D CNN."""

    def __init__(self, outputs: int, dropout: float = 0.3) -> None:
        super().__init__()
        self.frontend = LogMel()
        self.norm = nn.BatchNorm2d(1)  # learns the log-mel's offset and scale
        chans = (1, *CHANNELS)
        self.blocks = nn.Sequential(*(_block(a, b) for a, b in itertools.pairwise(chans)))
        freq = N_MELS // 2 ** len(CHANNELS)  # 64 -> 4 rows after four 2x2 pools
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(CHANNELS[-1] * freq, outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L >= 25600) audio -> (B, 1, 64, 51) normalised log-mel of its first 1.6 s."""
        return self.norm(self.frontend(x[:, :CROP]).unsqueeze(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 51200) -> (B, outputs)
        h = self.blocks(self.features(x))  # (B, 128, 4, 3)
        h = h.mean(-1).flatten(1)  # (B, 128 * 4): mean over time, frequency rows kept
        return self.out(self.drop(h))
