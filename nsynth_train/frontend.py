"""Log-mel spectrogram computed on the device, as the first module of a model.

The cache holds audio (``trimmed``: 51,200 samples, 3.2 s at 16 kHz); the time-frequency
picture is made from it on the device, so no second cache is needed and a GPU makes it for free.
:class:`LogMel` uses only torch ops (``torch.stft`` and a matrix product with a triangular mel
filterbank); :func:`log_mel_numpy` is an independent numpy reference that the tests compare
it against (framing by hand and ``np.fft.rfft``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

SAMPLE_RATE = 16_000  # Hz, NSynth's
N_FFT = 1024  # samples: 64 ms windows, 15.6 Hz bins
HOP = 512  # samples: 32 ms; 51,200 samples -> 101 frames (centred)
N_MELS = 64
F_MIN, F_MAX = 20.0, 8_000.0  # Hz; 8 kHz is Nyquist at 16 kHz
LOG_FLOOR = 1e-6  # added before the log: silence maps to log(1e-6) = -13.8, not -inf


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS,
                   f_min: float = F_MIN, f_max: float = F_MAX) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) float32 triangular filters, equally spaced on the HTK mel scale.

    Filter ``m`` rises linearly from centre ``m - 1`` to 1 at centre ``m`` and falls to 0 at
    centre ``m + 1`` (peak 1, no area normalisation: the log and the model's first
    batch norm absorb the scale).
    """
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= {sample_rate / 2}, got {f_min}, {f_max}")
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft  # (F,) Hz of each STFT bin
    centres = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))  # (n_mels + 2,)
    lower, centre, upper = centres[:-2, None], centres[1:-1, None], centres[2:, None]
    rise = (freqs[None] - lower) / (centre - lower)
    fall = (upper - freqs[None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rise, fall)).astype(np.float32)


def log_mel_numpy(x: np.ndarray, n_fft: int = N_FFT, hop: int = HOP, fb: np.ndarray | None = None) -> np.ndarray:
    """Reference: (B, L) float audio -> (B, n_mels, 1 + L // hop) float64 log-mel, in numpy.

    Centred frames (reflect padding of ``n_fft // 2`` each side), periodic Hann window,
    power spectrum, mel filterbank, ``log(mel + LOG_FLOOR)``: what :class:`LogMel` computes.
    """
    x = np.asarray(x, np.float64)
    fb = mel_filterbank(n_fft=n_fft) if fb is None else fb
    padded = np.pad(x, ((0, 0), (n_fft // 2, n_fft // 2)), mode="reflect")
    frames = 1 + x.shape[1] // hop
    idx = np.arange(frames)[:, None] * hop + np.arange(n_fft)[None]  # (T, n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    spec = np.abs(np.fft.rfft(padded[:, idx] * window, axis=-1)) ** 2  # (B, T, F)
    mel = spec @ fb.astype(np.float64).T  # (B, T, n_mels)
    return np.log(mel + LOG_FLOOR).transpose(0, 2, 1)


class LogMel(nn.Module):
    """(B, L) audio -> (B, n_mels, 1 + L // hop) log-mel power, with torch ops on x's device.

    The filterbank and window are buffers (moved with the model, not saved in checkpoints:
    they are rebuilt from the constants).
    """

    def __init__(self, n_fft: int = N_FFT, hop: int = HOP, n_mels: int = N_MELS) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.fb: torch.Tensor
        self.window: torch.Tensor
        self.register_buffer("fb", torch.from_numpy(mel_filterbank(n_fft=n_fft, n_mels=n_mels)), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # STFT in float32 even under autocast: power spans ~12 orders of magnitude.
        with torch.autocast(x.device.type, enabled=False):
            spec = torch.stft(x.float(), self.n_fft, self.hop, window=self.window, center=True,
                              pad_mode="reflect", return_complex=True)  # (B, F, T)
            power = spec.real.square() + spec.imag.square()
            mel = torch.matmul(self.fb, power)  # (n_mels, F) @ (B, F, T) -> (B, n_mels, T)
            return torch.log(mel + LOG_FLOOR)
