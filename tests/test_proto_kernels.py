"""CRC32C and protobuf kernels against textbook references."""

from __future__ import annotations

import google_crc32c  # zarr's own dependency: an independent, hardware-backed CRC32C
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsynth_prep import proto_kernels as pk
from nsynth_prep.tfrecord import _varint, encode_example


@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 15, 16, 17, 100, 4099])
def test_crc32c_matches_references(size: int) -> None:
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8)
    got = pk.crc32c(data)
    assert got == pk.crc32c_reference(data.tobytes())
    assert got == google_crc32c.value(data.tobytes())


def test_crc32c_known_vector_and_mask() -> None:
    assert pk.crc32c(np.frombuffer(b"123456789", np.uint8)) == 0xE3069283  # the standard check value
    assert pk.masked_crc(0) == 0xA282EAD8


def test_crc32c_of_a_slice() -> None:
    data = np.arange(50, dtype=np.uint8)
    assert pk.crc32c(data, 5, 30) == pk.crc32c_reference(data[5:30].tobytes())


@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=40))
@settings(max_examples=100, deadline=None)
def test_int64_varints_roundtrip(values: list[int]) -> None:
    packed = b"".join(_varint(v) for v in values)
    assert pk.decode_varints_reference(packed) == values
    message = b"\x0a" + _varint(len(packed)) + packed  # Int64List, field 1 packed
    buf = np.frombuffer(message, np.uint8)
    out = np.empty(64, np.int64)
    n = pk.decode_int64_list(buf, 0, len(buf), out)
    assert out[:n].tolist() == values


def test_unpacked_int64_and_float_lists() -> None:
    ints = b"".join(b"\x08" + _varint(v) for v in (3, -1, 300))  # field 1, wire type 0, repeated
    out = np.empty(8, np.int64)
    buf = np.frombuffer(ints, np.uint8)
    assert out[: pk.decode_int64_list(buf, 0, len(buf), out)].tolist() == [3, -1, 300]
    floats = b"".join(b"\x0d" + np.float32(v).tobytes() for v in (0.5, -0.25))  # wire type 5
    buf = np.frombuffer(floats, np.uint8)
    spans = np.empty((4, 2), np.int64)
    assert pk.float_list_span(buf, 0, len(buf), spans) == 2
    assert [float(np.frombuffer(floats, "<f4", 1, int(o))[0]) for o, _ in spans[:2]] == [0.5, -0.25]


def test_parse_example_finds_every_feature() -> None:
    audio = np.linspace(-1, 1, 10, dtype=np.float32)
    payload = encode_example({"note_str": ("a_b",), "pitch": [60], "audio": audio, "empty": []})
    buf = np.frombuffer(payload, np.uint8)
    table = np.empty((8, 5), np.int64)
    n = pk.parse_example(buf, table)
    keys = {buf[r[0] : r[0] + r[1]].tobytes().decode(): int(r[2]) for r in table[:n]}
    assert keys == {"note_str": pk.KIND_BYTES, "pitch": pk.KIND_INT64, "audio": pk.KIND_FLOAT,
                    "empty": pk.KIND_INT64}


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_truncated_example_gives_an_error_code(cut: int) -> None:
    payload = encode_example({"note_str": ("x",), "audio": np.zeros(8, np.float32)})
    buf = np.frombuffer(payload[:-cut], np.uint8)
    assert pk.parse_example(buf, np.empty((8, 5), np.int64)) < 0


def test_too_many_features_is_reported() -> None:
    payload = encode_example({f"k{i}": [i] for i in range(5)})
    assert pk.parse_example(np.frombuffer(payload, np.uint8), np.empty((3, 5), np.int64)) == pk.ERR_TOO_MANY
