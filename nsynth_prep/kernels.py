"""Feature kernels: numba functions over (notes, samples) arrays, each beside a numpy reference.

Input audio is either int16 PCM (from WAV), scaled by ``1 / 32768``, or float32 already in
[-1, 1] (from TFRecord, where NSynth stores int16 / 32768). Sums are taken in float64, so the
same note gives bit-identical features from either source.
"""

from __future__ import annotations

import numba
import numpy as np

INT16_SCALE = 1.0 / 32768.0


def sample_scale(audio: np.ndarray) -> float:
    """Factor that maps ``audio``'s samples to [-1, 1]: 1/32768 for int16, 1 for floats."""
    if audio.dtype == np.int16:
        return INT16_SCALE
    if audio.dtype in (np.float32, np.float64):
        return 1.0
    raise TypeError(f"audio must be int16 or float32, got {audio.dtype}")


def _check(audio: np.ndarray, needed: int) -> None:
    if audio.ndim != 2:
        raise ValueError(f"audio must be (notes, samples), got shape {audio.shape}")
    if audio.shape[1] < needed:
        raise ValueError(f"audio has {audio.shape[1]} samples per note; the feature needs {needed}")


@numba.njit(cache=True, nogil=True)
def _pool_mean(audio, out, kernel, stride, scale):  # type: ignore[no-untyped-def]
    n, width = out.shape
    factor = scale / kernel
    for i in range(n):
        for j in range(width):
            start = j * stride
            acc = 0.0
            for k in range(kernel):
                acc += audio[i, start + k]
            out[i, j] = acc * factor


def pool_mean(audio: np.ndarray, length: int, kernel: int, stride: int, out: np.ndarray | None = None) -> np.ndarray:
    """Average-pool the first ``length`` samples of each note.

    Parameters
    ----------
    audio
        (N, S) int16 or float32, S >= length.
    length, kernel, stride
        Samples used, window size and hop (the CNN project: 51,200, 25, 25).
    out
        Optional (N, (length - kernel) // stride + 1) float32 to fill.

    Returns
    -------
    (N, (length - kernel) // stride + 1) float32, in [-1, 1].
    """
    _check(audio, length)
    width = (length - kernel) // stride + 1
    if out is None:
        out = np.empty((audio.shape[0], width), np.float32)
    _pool_mean(audio, out, kernel, stride, sample_scale(audio))
    return out


def pool_mean_reference(audio: np.ndarray, length: int, kernel: int, stride: int) -> np.ndarray:
    """Plain-numpy :func:`pool_mean`."""
    x = audio[:, :length].astype(np.float64) * sample_scale(audio)
    width = (length - kernel) // stride + 1
    idx = np.arange(width)[:, None] * stride + np.arange(kernel)[None, :]  # (width, kernel)
    return x[:, idx].mean(axis=2).astype(np.float32)


@numba.njit(cache=True, nogil=True)
def _scale_copy(audio, out, scale):  # type: ignore[no-untyped-def]
    n, length = out.shape
    for i in range(n):
        for j in range(length):
            out[i, j] = audio[i, j] * scale


def trim(audio: np.ndarray, length: int, out: np.ndarray | None = None) -> np.ndarray:
    """First ``length`` samples of each note: (N, S) -> (N, length) float32 in [-1, 1]."""
    _check(audio, length)
    if out is None:
        out = np.empty((audio.shape[0], length), np.float32)
    _scale_copy(audio, out, sample_scale(audio))
    return out


def trim_reference(audio: np.ndarray, length: int) -> np.ndarray:
    """Plain-numpy :func:`trim`."""
    return (audio[:, :length].astype(np.float64) * sample_scale(audio)).astype(np.float32)


def frame(audio: np.ndarray, frames: int, frame_length: int, out: np.ndarray | None = None) -> np.ndarray:
    """Non-overlapping frames from the start of each note.

    (N, S) -> (N, frames, frame_length) float32 in [-1, 1]; the RNN project uses the first
    second as 100 frames of 160 samples.
    """
    length = frames * frame_length
    _check(audio, length)
    if out is None:
        out = np.empty((audio.shape[0], frames, frame_length), np.float32)
    _scale_copy(audio, out.reshape(audio.shape[0], length), sample_scale(audio))
    return out


def frame_reference(audio: np.ndarray, frames: int, frame_length: int) -> np.ndarray:
    """Plain-numpy :func:`frame`."""
    flat = trim_reference(audio, frames * frame_length)
    return flat.reshape(audio.shape[0], frames, frame_length)
