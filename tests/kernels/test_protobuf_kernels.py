"""CRC32C and protobuf kernels against textbook references, published vectors and fuzzing."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable

import google_crc32c  # zarr's own dependency: an independent, hardware-backed CRC32C
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsynth_prep.corpus.synth import tf_features
from nsynth_prep.kernels import protobuf as pk
from nsynth_prep.readers.tfrecord import TFRecordError, _len_delimited, _varint, decode_example, encode_example

NO_DB = settings(database=None)  # hypothesis writes no .hypothesis/ folder into the checkout


def run_bounded(target: Callable[[], None], seconds: float) -> None:
    """Run ``target`` in a forked child and fail if it is not done in time.

    A numba loop cannot be interrupted from Python (no signal reaches it), so a walker that
    never ends would hang the suite: the child is killed instead.
    """
    proc = multiprocessing.get_context("fork").Process(target=target)
    proc.start()
    proc.join(seconds)
    if proc.is_alive():
        proc.kill()
        proc.join()
        pytest.fail(f"did not finish within {seconds} s (an endless loop?)")
    assert proc.exitcode == 0, "the child failed; its traceback is in the captured stderr"


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
@settings(NO_DB, max_examples=100, deadline=None)
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


# RFC 3720 (iSCSI), appendix B.4: CRC32C test vectors. The RFC lists the CRC bytes in wire
# order (least significant first): "aa 36 91 8a" is 0x8A9136AA.
RFC3720_VECTORS = [
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
    (bytes.fromhex("01c00000000000000000000000000000"
                   "14000000000004000000001400000018"
                   "28000000000000000200000000000000"), 0xD9963A56),  # an iSCSI read command PDU
]


@pytest.mark.parametrize(("data", "crc"), RFC3720_VECTORS)
def test_crc32c_rfc3720_vectors(data: bytes, crc: int) -> None:
    assert pk.crc32c(np.frombuffer(data, np.uint8)) == crc
    assert pk.crc32c_reference(data) == crc


def _walk(payload: bytes, rows: int = 8) -> list[tuple[int, ...]] | int:
    table = np.empty((rows, 5), np.int64)
    n = pk.parse_example(np.frombuffer(payload, np.uint8), table)
    return [tuple(r) for r in table[:n].tolist()] if n >= 0 else int(n)


@pytest.mark.parametrize("length", [2**64 - 11, 2**64 - 1, 2**63, 2**63 - 1, 2**62, 12])
def test_huge_lengths_end_with_truncated_not_a_loop(length: int) -> None:
    """Issue 7 item 8: an 11-byte payload whose length varint is 2**64 - 11 made ``pos + length``
    wrap to 0 and the walk loop forever; 2**63 gave a position that was no error code."""
    payload = b"\x0a" + _varint(length)  # Example.features, length-delimited, then nothing

    def check() -> None:
        assert _walk(payload) == pk.ERR_TRUNCATED
        assert pk.parse_example_reference(payload, 8) == pk.ERR_TRUNCATED
        feature = b"\x1a" + _varint(length)  # an Int64List of that length, inside a well-formed Example
        nested = _len_delimited(1, _len_delimited(1, _len_delimited(1, b"pitch") + _len_delimited(2, feature)))
        assert _walk(nested) == pk.parse_example_reference(nested, 8) == pk.ERR_TRUNCATED
        skipped = b"\x12" + _varint(length) + b"\x00"  # a field the walker only skips
        assert _walk(skipped) == pk.ERR_TRUNCATED
        with pytest.raises(TFRecordError, match="rec 3: truncated protobuf message"):
            decode_example(np.frombuffer(payload, np.uint8), "rec 3")

    run_bounded(check, 60)


def test_reference_walker_agrees_on_a_real_example() -> None:
    payload = encode_example({"note_str": ("a_b",), "pitch": [60], "audio": np.zeros(4, np.float32), "e": []})
    assert _walk(payload) == pk.parse_example_reference(payload, 8)
    assert len(pk.parse_example_reference(payload, 8)) == 4  # type: ignore[arg-type]


def _valid_payload() -> bytes:
    entry = {"qualities": [0, 1, 0, 0, 0, 0, 0, 0, 0, 0], "pitch": 49, "note": 217499,
             "instrument_source_str": "synthetic", "velocity": 25, "instrument_str": "bass_synthetic_068",
             "instrument": 656, "sample_rate": 16000, "qualities_str": ["dark"], "instrument_source": 2,
             "note_str": "bass_synthetic_068-049-025", "instrument_family": 0, "instrument_family_str": "bass"}
    feats = tf_features(entry, np.zeros(64_000, np.int16))
    feats["audio"] = feats["audio"][:16]  # short audio keeps the fuzzing fast; decode names the count
    return encode_example(feats)


def _fuzz_random_bytes() -> None:
    @given(st.binary(max_size=300))
    @settings(NO_DB, max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
    def fuzz(data: bytes) -> None:
        got = _walk(data, 4)
        assert got == pk.parse_example_reference(data, 4)
        assert isinstance(got, list) or got in pk.PROTO_ERRORS
        try:
            decode_example(np.frombuffer(data, np.uint8), "rec 0")
        except TFRecordError:
            pass

    fuzz()


def _fuzz_mutated_examples() -> None:
    base = _valid_payload()
    edit = st.tuples(st.integers(0, len(base) - 1), st.integers(0, 255), st.sampled_from(["set", "cut", "insert"]))

    @given(st.lists(edit, min_size=1, max_size=6), st.sampled_from([None, *_HUGE]))
    @settings(NO_DB, max_examples=800, deadline=None, suppress_health_check=list(HealthCheck))
    def fuzz(edits: list[tuple[int, int, str]], huge: bytes | None) -> None:
        data = bytearray(base)
        for pos, value, how in edits:
            pos = min(pos, len(data))
            if how == "set" and pos < len(data):
                data[pos] = value
            elif how == "cut":
                del data[pos:]
            else:
                data[pos:pos] = bytes([value]) if huge is None else huge
        got = _walk(bytes(data), 16)
        assert got == pk.parse_example_reference(bytes(data), 16)
        assert isinstance(got, list) or got in pk.PROTO_ERRORS
        try:
            decode_example(np.frombuffer(bytes(data), np.uint8), "rec 0")
        except TFRecordError:
            pass

    fuzz()


_HUGE = [_varint(n) for n in (2**64 - 1, 2**64 - 11, 2**63, 2**63 + 5, 2**32, 2**31 - 1, 300)]


@pytest.mark.parametrize("fuzz", [_fuzz_random_bytes, _fuzz_mutated_examples])
def test_fuzzed_payloads_end_with_a_result_or_a_clean_error(fuzz: Callable[[], None]) -> None:
    """Random bytes and mutated NSynth examples (bytes set, cut, inserted, huge varints spliced
    in): the numba walker agrees with the plain-Python reference, returns rows or a known error
    code, and the full decode raises nothing but :class:`TFRecordError`, all within a time bound."""
    _walk(b"")  # compile before the clock starts
    run_bounded(fuzz, 120)
