"""Models on a log-mel spectrogram made on the device from the ``trimmed`` audio feature.

``mel-cnn``: :class:`~nsynth_train.frontend.LogMel` of the first 1.6 s (64 mel bands x 51 frames of 32 ms) -
batch norm - four blocks of conv 3x3, batch norm, ReLU, max-pool 2x2 (16, 32, 64, 128 channels)
- mean over time (keeping the 4 remaining frequency rows, which carry register) - dropout -
linear. Small on purpose: it has to train in minutes on 2 CPU cores.

``mel-cnn2``: the same with two conv-BN-ReLU layers in each block before the pool (the VGG /
PANNs CNN6-10 shape) and wider blocks (24, 48, 96, 192 channels): deeper and wider, training
about 3.6x slower than ``mel-cnn`` on a CPU; at the recipe table's budget it scored lower
(docs/benchmarks.md).
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from nsynth_train.frontend import N_MELS, LogMel
from nsynth_train.recipe import spec_augment

CHANNELS = (16, 32, 64, 128)
# The first 1.6 s (25,600 samples -> 51 frames of 32 ms) of the 3.2 s ``trimmed`` audio: attack,
# early decay and sustain are there; the whole 3.2 s doubled the step time on 2 CPU cores.
CROP = 25_600


CHANNELS2 = (24, 48, 96, 192)  # mel-cnn2's blocks


def _block(c_in: int, c_out: int, convs: int = 1) -> nn.Sequential:
    """``convs`` x (conv 3x3, batch norm, ReLU), then max-pool 2x2."""
    layers: list[nn.Module] = []
    for k in range(convs):
        layers += [nn.Conv2d(c_in if k == 0 else c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                   nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.MaxPool2d(2))


class MelCNN(nn.Module):
    """(B, 51200) audio -> (B, outputs) logits through a log-mel 2-D CNN."""

    def __init__(self, outputs: int, dropout: float = 0.3, channels: tuple[int, ...] = CHANNELS,
                 convs: int = 1) -> None:
        super().__init__()
        self.frontend = LogMel()
        self.norm = nn.BatchNorm2d(1)  # learns the log-mel's offset and scale
        chans = (1, *channels)
        self.blocks = nn.Sequential(*(_block(a, b, convs) for a, b in itertools.pairwise(chans)))
        freq = N_MELS // 2 ** len(channels)  # 64 -> 4 rows after four 2x2 pools
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(channels[-1] * freq, outputs)
        self.freq_mask = self.time_mask = 0  # SpecAugment while training (recipe.configure); 0 = off

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L >= 25600) audio -> (B, 1, 64, 51) normalised log-mel of its first 1.6 s."""
        return self.norm(self.frontend(x[:, :CROP]).unsqueeze(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 51200) -> (B, outputs)
        m = self.features(x)
        if self.training and (self.freq_mask or self.time_mask):
            m = spec_augment(m, self.freq_mask, self.time_mask)
        h = self.blocks(m)  # (B, channels[-1], 4, 3)
        h = h.mean(-1).flatten(1)  # (B, channels[-1] * 4): mean over time, frequency rows kept
        return self.out(self.drop(h))
