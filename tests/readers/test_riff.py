"""The RIFF chunk walk both WAV readers share: padding, short and lying chunks, headers; and what
each reader (strict NSynth, permissive predict) says of the same bad files."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from nsynth_prep.readers import riff
from nsynth_prep.readers.wav import WavFormatError, encode_pcm16, pcm16_span
from nsynth_prep.readers.wav_any import read_wav_any

FMT = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, 16_000, 32_000, 2, 16)


def _chunk(cid: bytes, body: bytes, size: int | None = None) -> bytes:
    pad = b"\x00" if len(body) % 2 else b""
    return struct.pack("<4sI", cid, len(body) if size is None else size) + body + pad


def _riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return struct.pack("<4sI", b"RIFF", len(body)) + body


def _walk(data: bytes, size: int | None = None) -> list[tuple[bytes, int, int, int]]:
    return [(c.id, c.body, c.size, c.available) for c in riff.chunks(data, size)]


def test_chunks_in_order_with_their_offsets() -> None:
    data = _riff(FMT, _chunk(b"data", b"\x01\x02\x03\x04"))
    assert riff.is_riff_wave(data)
    assert _walk(data) == [(b"fmt ", 20, 16, 16), (b"data", 44, 4, 4)]
    data_chunk = list(riff.chunks(data))[1]
    assert not data_chunk.truncated and data_chunk.bytes_of(data) == b"\x01\x02\x03\x04"


def test_odd_sized_chunk_is_followed_by_its_pad_byte() -> None:
    data = _riff(_chunk(b"LIST", b"INFO!"), FMT, _chunk(b"data", b"\x00\x00"))
    assert _walk(data) == [(b"LIST", 20, 5, 5), (b"fmt ", 34, 16, 16), (b"data", 58, 2, 2)]


def test_truncated_chunk_says_how_much_is_there_and_ends_the_walk() -> None:
    data = _riff(FMT, _chunk(b"data", b"\x00" * 10))[:-4]  # the file cut 4 bytes into the body
    (_, last) = riff.chunks(data)
    assert (last.id, last.size, last.available, last.truncated) == (b"data", 10, 6, True)
    assert len(last.bytes_of(data)) == 6


def test_chunk_size_past_the_end_is_not_trusted() -> None:
    data = _riff(FMT, _chunk(b"LIST", b"abcd", size=0xFFFFFFF0), _chunk(b"data", b"\x00\x00"))
    assert _walk(data) == [(b"fmt ", 20, 16, 16), (b"LIST", 44, 0xFFFFFFF0, len(data) - 44)]


def test_trailing_bytes_shorter_than_a_chunk_header_are_ignored() -> None:
    data = _riff(FMT) + b"junk\x00\x00\x00"  # 7 bytes: no room for an 8-byte header
    assert _walk(data) == [(b"fmt ", 20, 16, 16)]


def test_a_head_of_the_file_walks_until_its_end_then_raises() -> None:
    """With the file's size, a walk over its first bytes finds the chunks in them, then struct.error
    (the caller reads the whole file); a body past the head is not truncated in the file."""
    data = _riff(_chunk(b"LIST", b"x" * 100), FMT, _chunk(b"data", b"\x00" * 8))
    walk = riff.chunks(data[:60], size=len(data))
    assert next(walk) == riff.Chunk(b"LIST", 20, 100, 100)
    with pytest.raises(struct.error):
        next(walk)


@pytest.mark.parametrize("data", [b"", b"RIFF", b"RIFX\x04\x00\x00\x00WAVE", b"RIFF\x04\x00\x00\x00AVI ",
                                  b"not a wav file at all"])
def test_not_riff_wave(data: bytes) -> None:
    assert not riff.is_riff_wave(data)


def test_header_check_uses_the_file_size_of_a_head() -> None:
    assert riff.is_riff_wave(b"RIFF\x00\x00\x00\x00WAVE", size=100)
    assert not riff.is_riff_wave(b"RIFF\x00\x00\x00\x00WA", size=10)


def test_no_chunks_after_the_header() -> None:
    assert _walk(_riff()) == []


# --- the two readers on the same files ---------------------------------------------------------


def _both(tmp_path: Path, data: bytes) -> tuple[str, str]:
    """The strict reader's error and the permissive one's, for ``data``."""
    with pytest.raises(WavFormatError) as strict:
        pcm16_span(data, "x.wav", frames=1)
    (tmp_path / "x.wav").write_bytes(data)
    with pytest.raises(WavFormatError) as permissive:
        read_wav_any(tmp_path / "x.wav")
    return str(strict.value), str(permissive.value).replace(f"{tmp_path}/", "")


@pytest.mark.parametrize(("data", "strict", "permissive"), [
    (b"RIFX" + encode_pcm16(np.zeros(1, np.int16))[4:], "x.wav: not a RIFF/WAVE file",
     "x.wav: not a WAV file (no RIFF/WAVE header)"),
    (_riff(_chunk(b"data", b"\x00\x00")), "x.wav: data chunk before fmt chunk",
     "x.wav: data chunk before the fmt chunk"),
    (_riff(), "x.wav: no fmt chunk", "x.wav: no fmt chunk (truncated or not a WAV file)"),
    (_riff(_chunk(b"LIST", b"abc")), "x.wav: no fmt chunk", "x.wav: no fmt chunk (truncated or not a WAV file)"),
    (_riff(FMT), "x.wav: no data chunk", "x.wav: no data chunk (truncated or not a WAV file)"),
    (_riff(_chunk(b"fmt ", FMT[8:20])), "x.wav: fmt chunk is 12 bytes, too short",
     "x.wav: fmt chunk of 12 bytes, need 16"),
    (_riff(FMT[:8] + FMT[8:18]), "x.wav: fmt chunk is 16 bytes, too short", "x.wav: fmt chunk of 10 bytes, need 16"),
])
def test_each_reader_keeps_its_messages(tmp_path: Path, data: bytes, strict: str, permissive: str) -> None:
    assert _both(tmp_path, data) == (strict, permissive)


def test_truncated_data_chunk_is_refused_by_both(tmp_path: Path) -> None:
    data = _riff(FMT, _chunk(b"data", struct.pack("<4h", 1, 2, 3, 4)))[:-2]  # 3 of 4 samples left
    with pytest.raises(WavFormatError, match=r"x\.wav: truncated: data chunk claims 8 bytes, file holds 6"):
        pcm16_span(data, "x.wav", frames=4)
    assert _both(tmp_path, data)[1] == "x.wav: truncated: data chunk claims 8 bytes, file holds 6"


def test_odd_chunk_before_data_is_skipped_by_both(tmp_path: Path) -> None:
    data = _riff(_chunk(b"LIST", b"INFO!"), FMT, _chunk(b"data", struct.pack("<2h", 7, -7)))
    assert pcm16_span(data, "x.wav", frames=2) == (len(data) - 4, 2)
    (tmp_path / "x.wav").write_bytes(data)
    samples, _ = read_wav_any(tmp_path / "x.wav")
    np.testing.assert_allclose(samples[:, 0], np.array([7, -7]) / 32768)
