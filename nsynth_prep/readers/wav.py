"""WAV files: walk the RIFF chunks (:mod:`.riff`) and return 16-bit PCM samples, with precise errors.

NSynth WAVs are 16-bit PCM, mono, 16 kHz, 64,000 frames. Real files may carry ``LIST``,
``fact`` or other chunks before ``data``, so the reader walks every chunk instead of assuming
a 44-byte header, and refuses anything that is not exactly the NSynth format.
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import numpy as np

from nsynth_prep.errors import WavFormatError
from nsynth_prep.labels import NOTE_SAMPLES, SAMPLE_RATE
from nsynth_prep.readers import riff

# An NSynth WAV is 128,044 bytes (44-byte header, 64,000 16-bit samples). Other chunks (LIST,
# fact, ...) are allowed, within reason: no file or archive member bigger than this is read, so
# a huge or endless "WAV" (a symlink to /dev/zero, 1 GiB of trailing zeros) cannot exhaust memory.
MAX_WAV_BYTES = 1 << 20

WAVE_FORMAT_PCM = 1
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
# The PCM sub-format GUID of WAVE_FORMAT_EXTENSIBLE (first two bytes are the format tag).
_KSDATAFORMAT_SUBTYPE_PCM = b"\x01\x00\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def pcm16_span(data: bytes | bytearray | memoryview, name: str, frames: int = NOTE_SAMPLES,
               file_size: int | None = None) -> tuple[int, int]:
    """Locate the samples of an NSynth WAV file held in memory.

    Parameters
    ----------
    data
        The file's bytes: all of them, or its first bytes when ``file_size`` is given (a header
        check; ``struct.error`` means the chunks before ``data`` run past what was read).
    name
        File name used in error messages.
    frames
        Number of frames the file must hold (64,000 for NSynth).
    file_size
        The whole file's size, when ``data`` is only its start.

    Returns
    -------
    (offset, count)
        Byte offset of the first sample and the number of int16 samples (== ``frames``).
    """
    size = len(data) if file_size is None else file_size
    if not riff.is_riff_wave(data, size):
        raise WavFormatError(f"{name}: not a RIFF/WAVE file")
    fmt_seen = False
    for chunk in riff.chunks(data, size):
        if chunk.id == b"fmt ":
            _check_fmt(data, chunk, name)
            fmt_seen = True
        elif chunk.id == b"data":
            if not fmt_seen:
                raise WavFormatError(f"{name}: data chunk before fmt chunk")
            if chunk.truncated:
                raise WavFormatError(
                    f"{name}: truncated: data chunk claims {chunk.size} bytes, file holds {chunk.available}"
                )
            count = chunk.available // 2
            if count != frames:
                raise WavFormatError(f"{name}: {count} frames; NSynth notes have {frames}")
            return chunk.body, count
    raise WavFormatError(f"{name}: no {'data' if fmt_seen else 'fmt'} chunk")


def _check_fmt(data: riff.Buffer, chunk: riff.Chunk, name: str) -> None:
    """Refuse a ``fmt`` chunk that is not NSynth's: PCM (plain or WAVE_FORMAT_EXTENSIBLE), mono,
    16 kHz, 16-bit."""
    if chunk.available < 16:  # claimed, or held by the file
        raise WavFormatError(f"{name}: fmt chunk is {chunk.size} bytes, too short")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, chunk.body)
    if tag == WAVE_FORMAT_EXTENSIBLE and chunk.size >= 40:
        if bytes(data[chunk.body + 24 : chunk.body + 40]) == _KSDATAFORMAT_SUBTYPE_PCM:
            tag = WAVE_FORMAT_PCM
    if tag != WAVE_FORMAT_PCM:
        raise WavFormatError(f"{name}: audio format {tag:#x} is not PCM (1)")
    if channels != 1:
        raise WavFormatError(f"{name}: {channels} channels; NSynth notes are mono")
    if rate != SAMPLE_RATE:
        raise WavFormatError(f"{name}: sample rate {rate} Hz; NSynth is {SAMPLE_RATE} Hz")
    if bits != 16:
        raise WavFormatError(f"{name}: {bits}-bit samples; expected 16-bit PCM")


def read_wav_file(path: Path, head: int | None = None) -> tuple[bytes, int]:
    """The bytes of a WAV file (or its first ``head`` bytes) and the file's size, read with a bound.

    Raises
    ------
    FileNotFoundError
        No such file (or a dangling link): the caller names the note.
    WavFormatError
        Not a regular file (a folder, a device such as ``/dev/zero``, a FIFO), larger than
        :data:`MAX_WAV_BYTES`, or unreadable; the message names the file.
    """
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; reads of regular files ignore it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise WavFormatError(f"{path}: cannot open ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a device, FIFO or socket"
            raise WavFormatError(f"{path}: not a regular file ({kind})")
        if info.st_size > MAX_WAV_BYTES:
            raise WavFormatError(f"{path}: {info.st_size:,} bytes; an NSynth WAV is 128,044 and no WAV over "
                                 f"{MAX_WAV_BYTES:,} bytes is read")
        with open(fd, "rb", closefd=False) as f:
            # +1: a file that grew since fstat shows; never more than the bound plus one byte.
            data = f.read(info.st_size + 1 if head is None else min(head, info.st_size))
    except OSError as exc:
        raise WavFormatError(f"{path}: cannot read ({exc.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > MAX_WAV_BYTES:
        raise WavFormatError(f"{path}: grew past {MAX_WAV_BYTES:,} bytes while it was read")
    return data, info.st_size


def read_pcm16(data: bytes | bytearray | memoryview, name: str, frames: int = NOTE_SAMPLES) -> np.ndarray:
    """Samples of an NSynth WAV held in memory: (frames,) int16, a view into ``data``."""
    offset, count = pcm16_span(data, name, frames)
    return np.frombuffer(data, dtype="<i2", count=count, offset=offset)


def encode_pcm16(samples: np.ndarray, rate: int = SAMPLE_RATE, extra_chunks: bytes = b"") -> bytes:
    """A mono 16-bit PCM WAV file for ``samples`` ((n,) int16), with optional chunks before data."""
    samples = np.ascontiguousarray(samples, dtype="<i2")
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, WAVE_FORMAT_PCM, 1, rate, rate * 2, 2, 16)
    data = struct.pack("<4sI", b"data", samples.nbytes) + samples.tobytes()
    body = b"WAVE" + fmt + extra_chunks + data
    return struct.pack("<4sI", b"RIFF", len(body)) + body
