"""A listed note's files beside the report: its audio as a 16-bit WAV, and one PNG of its
waveform (min/max envelope) above its log-mel spectrogram, drawn with numpy alone (hundreds of
notes in seconds; no matplotlib figure per note)."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import numpy as np

from nsynth_prep.readers.wav import encode_pcm16
from nsynth_train.frontend import log_mel_numpy

WIDTH = 240  # pixels of the note image
WAVE_HEIGHT, MEL_SCALE = 48, 2  # waveform rows; each of the 64 mel bands drawn 2 pixels high
# A perceptually ordered dark-blue -> green -> yellow ramp (viridis' ends and middle).
_RAMP = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], np.float64)


def safe_name(note: str) -> str:
    """A file name for a note string (NSynth's are already safe; anything else becomes _)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", note)[:120] or "note"


def png_bytes(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> a PNG file's bytes (8-bit RGB, no filter, zlib level 9)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[r].tobytes() for r in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def colormap(values: np.ndarray) -> np.ndarray:
    """(...) floats in [0, 1] -> (..., 3) uint8 along :data:`_RAMP`."""
    v = np.clip(values, 0, 1) * (len(_RAMP) - 1)
    low = np.minimum(v.astype(np.int64), len(_RAMP) - 2)
    frac = (v - low)[..., None]
    return (_RAMP[low] * (1 - frac) + _RAMP[low + 1] * frac).astype(np.uint8)


def waveform_rows(wave: np.ndarray, width: int = WIDTH, height: int = WAVE_HEIGHT) -> np.ndarray:
    """(T,) float audio -> (height, width, 3) uint8: per column the min..max of its samples,
    dark on white, scaled to the note's own peak (a quiet note is still visible)."""
    cols = np.array_split(np.asarray(wave, np.float64), width)
    low = np.array([c.min() if len(c) else 0.0 for c in cols])
    high = np.array([c.max() if len(c) else 0.0 for c in cols])
    peak = max(float(np.abs(wave).max()), 1e-9)
    rows = (1 - (np.arange(height)[:, None] + 0.5) / height * 2)  # (H, 1) amplitude at each row, +1 top
    inside = (rows >= low[None] / peak - 1 / height) & (rows <= high[None] / peak + 1 / height)
    img = np.full((height, width, 3), 255, np.uint8)
    img[inside] = (40, 70, 120)
    img[height // 2] = np.where(inside[height // 2][:, None], img[height // 2], 200)
    return img


def log_mel_rows(wave: np.ndarray, width: int = WIDTH) -> np.ndarray:
    """(T,) float audio -> (64 * MEL_SCALE, width, 3) uint8: the log-mel (low bands at the
    bottom), frames stretched to ``width``, colours over the note's own 60 dB below its peak."""
    mel = log_mel_numpy(np.asarray(wave, np.float64)[None])[0]  # (64, frames), natural log of power
    top = mel.max()
    scaled = (mel - (top - np.log(1e6))) / np.log(1e6)  # 60 dB of power below the peak -> 0..1
    cols = np.minimum((np.arange(width) * mel.shape[1]) // width, mel.shape[1] - 1)
    img = colormap(scaled[::-1][:, cols])
    return np.repeat(img, MEL_SCALE, axis=0)


def write_note(folder: Path, note: str, wave: np.ndarray, rate: int) -> tuple[str, str]:
    """Write ``<note>.wav`` and ``<note>.png`` into ``folder`` (kept if already there: a note
    listed twice is written once); returns their names."""
    name = safe_name(note)
    wav, png = folder / f"{name}.wav", folder / f"{name}.png"
    if not wav.exists():
        pcm = np.clip(np.rint(np.asarray(wave, np.float64) * 32768), -32768, 32767).astype(np.int16)
        wav.write_bytes(encode_pcm16(pcm, rate))
    if not png.exists():
        gap = np.full((4, WIDTH, 3), 255, np.uint8)
        png.write_bytes(png_bytes(np.concatenate([waveform_rows(wave), gap, log_mel_rows(wave)])))
    return wav.name, png.name
