"""Any common WAV file -> float32 samples, for ``nsynth predict`` on a user's own audio.

:mod:`nsynth_prep.readers.wav` is the strict reader of NSynth's own files and stays strict. This one
walks the RIFF chunks the same way (:mod:`.riff`) but accepts what recorders and editors write: PCM of 8, 16,
24 or 32 bits, IEEE float of 32 or 64 bits (plain or WAVE_FORMAT_EXTENSIBLE), any sample rate
and any number of channels. Every problem is one :class:`WavFormatError` naming the file.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from nsynth_prep.errors import WavFormatError
from nsynth_prep.readers import riff

MAX_BYTES = 1 << 30  # 1 GiB: more than an hour of 16-bit stereo at 44.1 kHz; refuse what is larger
PCM, FLOAT, EXTENSIBLE = 1, 3, 0xFFFE
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"  # KSDATAFORMAT_SUBTYPE_* after the tag


def read_wav_any(path: Path) -> tuple[np.ndarray, int]:
    """``(samples (frames, channels) float32 in [-1, 1], sample_rate)`` of a WAV file.

    Raises
    ------
    WavFormatError
        Not a RIFF/WAVE file, truncated, a format other than PCM 8/16/24/32 or float 32/64,
        no ``fmt``/``data`` chunk, no frames, or larger than 1 GiB.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise WavFormatError(f"{path}: not a file")
        if size > MAX_BYTES:
            raise WavFormatError(f"{path}: {size:,} bytes, more than the {MAX_BYTES:,} read")
        data = path.read_bytes()
    except OSError as exc:
        raise WavFormatError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not riff.is_riff_wave(data):
        raise WavFormatError(f"{path}: not a WAV file (no RIFF/WAVE header)")
    fmt: tuple[int, int, int, int] | None = None  # (tag, channels, rate, bits)
    for chunk in riff.chunks(data):
        body = chunk.bytes_of(data)
        if chunk.id == b"fmt ":
            fmt = _fmt(path, body)
        elif chunk.id == b"data":
            if fmt is None:
                raise WavFormatError(f"{path}: data chunk before the fmt chunk")
            if chunk.truncated:  # a cut copy, or a size no file of this length can hold: not the recording
                raise WavFormatError(f"{path}: truncated: data chunk claims {chunk.size:,} bytes, "
                                     f"file holds {chunk.available:,}")
            return _decode(path, body, *fmt), fmt[2]
    raise WavFormatError(f"{path}: no {'data' if fmt else 'fmt'} chunk (truncated or not a WAV file)")


def _fmt(path: Path, body: riff.Buffer) -> tuple[int, int, int, int]:
    """``(tag, channels, rate, bits)`` of a ``fmt`` chunk; WAVE_FORMAT_EXTENSIBLE's sub-format as the tag."""
    if len(body) < 16:
        raise WavFormatError(f"{path}: fmt chunk of {len(body)} bytes, need 16")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
    if tag == EXTENSIBLE:
        if len(body) < 40 or bytes(body[26:40]) != _GUID_TAIL:
            raise WavFormatError(f"{path}: WAVE_FORMAT_EXTENSIBLE with an unknown sub-format")
        tag = struct.unpack_from("<H", body, 24)[0]
    return tag, channels, rate, bits


def _decode(path: Path, body: riff.Buffer, tag: int, channels: int, rate: int, bits: int) -> np.ndarray:
    kinds = {(PCM, 8): "u1", (PCM, 16): "<i2", (PCM, 24): "24", (PCM, 32): "<i4", (FLOAT, 32): "<f4",
             (FLOAT, 64): "<f8"}
    kind = kinds.get((tag, bits))
    if kind is None:
        what = {PCM: "PCM", FLOAT: "float"}.get(tag, f"format tag {tag}")
        raise WavFormatError(f"{path}: {what} with {bits} bits per sample is not supported "
                             "(PCM 8/16/24/32-bit and float 32/64-bit are)")
    if channels < 1 or not 1 <= rate <= 1_000_000:
        raise WavFormatError(f"{path}: {channels} channels at {rate} Hz")
    width = bits // 8
    frames = len(body) // (width * channels)
    if frames == 0:
        raise WavFormatError(f"{path}: no audio frames")
    raw = body[:frames * width * channels]
    if kind == "24":  # little-endian 3-byte ints: put them in the top of int32s, then scale
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        x = ((b[:, 0] << 8) | (b[:, 1] << 16) | (b[:, 2] << 24)).astype(np.float32) / 2.0 ** 31
    elif kind == "u1":
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128
    elif kind in ("<i2", "<i4"):
        x = np.frombuffer(raw, kind).astype(np.float32) / 2.0 ** (bits - 1)
    else:
        x = np.frombuffer(raw, kind).astype(np.float32)
        if not np.isfinite(x).all():
            raise WavFormatError(f"{path}: float samples that are NaN or infinite")
    return x.reshape(frames, channels)
