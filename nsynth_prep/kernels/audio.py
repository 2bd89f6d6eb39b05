"""Feature kernels: numba functions over (notes, samples) arrays, each beside a numpy reference.

NSynth audio is 16-bit PCM. WAV sources give it as int16; TFRecord sources as float32 that
are exactly int16 / 32768. :func:`to_int16` turns such floats back into the int16 they came
from, refusing any float that is not one (so a cache never stores a rounded sample), and the
raw-audio features (:func:`trim`, :func:`frame`) are int16 copies of the samples. Only
:func:`pool_mean` computes: float32 means, summed in float64, so the same note gives
bit-identical features from either source.
"""

from __future__ import annotations

import numba
import numpy as np

INT16_SCALE = 1.0 / 32768.0  # int16 sample -> [-1, 1); a power of two, so the product is exact
INT16_STEPS = 32768.0  # the inverse: a float sample times this is its int16 value


class InexactAudio(ValueError):
    """A float sample that is not an int16 / 32768 (a rounded, NaN, inf or out-of-range value).

    ``note`` and ``sample`` locate the first such sample (row and column of the input),
    ``value`` is it.
    """

    def __init__(self, note: int, sample: int, value: float) -> None:
        super().__init__(f"note {note}, sample {sample}: {value!r} is not a 16-bit sample (int16 / 32768)")
        self.note, self.sample, self.value = note, sample, value


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
    sample_scale(audio)  # the dtype


# --- exact float -> int16 ----------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _to_int16(audio, out):  # type: ignore[no-untyped-def]
    """Fill ``out`` (N, L) with ``audio[:, :L] * 32768``; the flat index of the first sample that
    is not an integer in int16's range (NaN and inf fail the comparisons too), else -1."""
    n, length = out.shape
    for i in range(n):
        for j in range(length):
            v = audio[i, j] * 32768.0
            if not (-32768.0 <= v <= 32767.0) or v != np.floor(v):
                return i * length + j
            out[i, j] = np.int16(v)
    return -1


def to_int16(audio: np.ndarray, length: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """The first ``length`` samples of each note as int16, exactly.

    Parameters
    ----------
    audio
        (N, S) int16 (copied) or float32/float64 samples that are each int16 / 32768.
    length
        Samples kept per note (default S).
    out
        Optional (N, length) int16 to fill.

    Returns
    -------
    (N, length) int16.

    Raises
    ------
    InexactAudio
        A float sample times 32768 is not an integer in -32768..32767.
    """
    length = audio.shape[-1] if length is None else length
    _check(audio, length)
    if out is None:
        out = np.empty((audio.shape[0], length), np.int16)
    if audio.dtype == np.int16:
        np.copyto(out, audio[:, :length])
        return out
    bad = _to_int16(audio, out)
    if bad >= 0:
        note, sample = divmod(int(bad), length)
        raise InexactAudio(note, sample, float(audio[note, sample]))
    return out


def to_int16_reference(audio: np.ndarray, length: int | None = None) -> np.ndarray:
    """Plain-numpy :func:`to_int16`."""
    length = audio.shape[-1] if length is None else length
    if audio.dtype == np.int16:
        return audio[:, :length].copy()
    with np.errstate(invalid="ignore"):
        v = audio[:, :length].astype(np.float64) * INT16_STEPS
        bad = ~((v >= -32768) & (v <= 32767) & (v == np.floor(v)))
    if bad.any():
        note, sample = np.argwhere(bad)[0]
        raise InexactAudio(int(note), int(sample), float(audio[note, sample]))
    return v.astype(np.int16)


@numba.njit(cache=True, nogil=True)
def first_inexact(samples):  # type: ignore[no-untyped-def]
    """Index of the first float in (S,) ``samples`` that is not an int16 / 32768, else -1 (the
    check :func:`to_int16` makes, without the copy: for validating TFRecord audio in place)."""
    for j in range(samples.shape[0]):
        v = samples[j] * 32768.0
        if not (-32768.0 <= v <= 32767.0) or v != np.floor(v):
            return j
    return -1


# --- features ----------------------------------------------------------------------------------


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


def trim(audio: np.ndarray, length: int, out: np.ndarray | None = None) -> np.ndarray:
    """First ``length`` samples of each note: (N, S) int16 or exact floats -> (N, length) int16."""
    return to_int16(audio, length, out)


def trim_reference(audio: np.ndarray, length: int) -> np.ndarray:
    """Plain-numpy :func:`trim`."""
    return to_int16_reference(audio, length)


def frame(audio: np.ndarray, frames: int, frame_length: int, out: np.ndarray | None = None) -> np.ndarray:
    """Non-overlapping frames from the start of each note.

    (N, S) int16 or exact floats -> (N, frames, frame_length) int16; the RNN project uses the
    first second as 100 frames of 160 samples.
    """
    length = frames * frame_length
    if out is None:
        out = np.empty((audio.shape[0], frames, frame_length), np.int16)
    if not out.flags.c_contiguous:  # reshape would copy, and the copy would be filled instead
        raise ValueError("out must be C-contiguous")
    to_int16(audio, length, out.reshape(len(out), length))
    return out


def frame_reference(audio: np.ndarray, frames: int, frame_length: int) -> np.ndarray:
    """Plain-numpy :func:`frame`."""
    return trim_reference(audio, frames * frame_length).reshape(audio.shape[0], frames, frame_length)
