"""TFRecord framing and Example encoding against independent writers: a CRC oracle.

``tests/data/tfrecord-fixture.tfrecord`` was written by TensorBoard's pure-Python
``RecordWriter`` and Google's protobuf runtime (see ``tests/data/make_tfrecord_fixture.py``),
so a wrong CRC mask rotation or a wrong wire encoding on our side fails here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nsynth_prep.kernels import protobuf as pk
from nsynth_prep.readers.tfrecord import encode_example, frame_record, iter_records

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "tfrecord-fixture.tfrecord"
# The same payloads as make_tfrecord_fixture.RAW_PAYLOADS and EXAMPLE (that script needs
# packages nsynth does not depend on, so it is not imported here).
RAW_PAYLOADS = [b"", b"\x00", bytes(range(256)), b"nsynth" * 50 + b"!"]
EXAMPLE = {
    "audio": [0.0, 0.5, -0.25, -1.0, 0.999969482421875, 3.0517578125e-05],
    "instrument": [656], "instrument_family": [0], "instrument_family_str": ["bass"], "instrument_source": [2],
    "note": [217499], "note_str": ["bass_synthetic_068-049-025"], "pitch": [49],
    "qualities": [0, 1, 0, 0, 0, 0, 0, 0, 0, 0], "sample_rate": [16000], "velocity": [25],
}


def _records() -> list[tuple[int, int, bytes]]:
    return [(i, offset, payload.tobytes()) for i, offset, payload in iter_records(FIXTURE)]


def test_reader_accepts_independently_framed_records() -> None:
    records = _records()
    assert [r[0] for r in records] == [0, 1, 2, 3, 4]
    assert [r[2] for r in records[:4]] == RAW_PAYLOADS
    assert records[1][1] == 16  # the empty record is 16 bytes of framing


def test_frame_record_reproduces_the_fixture_byte_for_byte() -> None:
    """Changing the mask rotation (15/17) or the mask constant breaks this."""
    assert b"".join(frame_record(p) for _, _, p in _records()) == FIXTURE.read_bytes()


def test_protobuf_serialized_example_is_walked_and_reencoded_identically() -> None:
    payload = _records()[4][2]
    buf = np.frombuffer(payload, np.uint8)
    table = np.empty((16, 5), np.int64)
    n = pk.parse_example(buf, table)
    assert n == len(EXAMPLE)
    keys = [buf[r[0] : r[0] + r[1]].tobytes().decode() for r in table[:n].tolist()]
    assert sorted(keys) == sorted(EXAMPLE)
    out = np.empty(16, np.int64)
    spans = np.empty((2, 2), np.int64)
    for key, (_, _, kind, start, length) in zip(keys, table[:n].tolist(), strict=True):
        if key == "audio":
            assert kind == pk.KIND_FLOAT and pk.float_list_span(buf, start, start + length, spans) == 1
            audio = np.frombuffer(payload, "<f4", int(spans[0, 1]), int(spans[0, 0]))
            assert audio.tolist() == EXAMPLE["audio"]
        elif kind == pk.KIND_INT64:
            count = pk.decode_int64_list(buf, start, start + length, out)
            assert out[:count].tolist() == EXAMPLE[key]
        else:
            assert kind == pk.KIND_BYTES and EXAMPLE[key][0].encode() in payload[start : start + length]
    # Our encoder, given the features in protobuf's serialization order, writes the same bytes.
    ours = {k: (tuple(EXAMPLE[k]) if isinstance(EXAMPLE[k][0], str)
                else np.array(EXAMPLE[k], np.float32) if k == "audio" else list(EXAMPLE[k])) for k in keys}
    assert encode_example(ours) == payload  # type: ignore[arg-type]
