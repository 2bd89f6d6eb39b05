"""Write ``tfrecord-fixture.tfrecord`` with writers that are not ours: the test oracle for TFRecord framing.

The records are framed by TensorBoard's pure-Python ``RecordWriter`` (a port of TensorFlow's
record writer: uint64 length, masked CRC32C of the length, payload, masked CRC32C of the
payload), and the last payload is a ``tf.train.Example`` serialized by Google's protobuf
runtime from a descriptor of TensorFlow's ``example.proto`` / ``feature.proto`` built here.
Nothing of nsynth is imported, so the file checks our reader, our ``frame_record`` (which must
reproduce it byte for byte) and our ``encode_example`` against independent implementations.

It was made once and committed (neither package is a dependency of nsynth)::

    python3 -m pip install --no-deps --target /tmp/tb tensorboard==2.21.0 protobuf==7.36.2 absl-py==2.5.1
    PYTHONPATH=/tmp/tb python3 tests/data/make_tfrecord_fixture.py

The payloads are listed in :data:`RAW_PAYLOADS` and :data:`EXAMPLE`; ``tests/test_tfrecord_oracle.py``
repeats them.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from tensorboard.summary.writer.record_writer import RecordWriter

OUT = Path(__file__).resolve().parent / "tfrecord-fixture.tfrecord"

# Framing edge cases: empty, one byte, every byte value, a payload longer than 8 bytes that is
# not a multiple of 8 (the slicing-by-8 CRC kernel's tail).
RAW_PAYLOADS = [b"", b"\x00", bytes(range(256)), b"nsynth" * 50 + b"!"]

# A small NSynth-like example (short audio); keys in sorted order, as protobuf serializes maps
# with deterministic=True.
EXAMPLE = {
    "audio": [0.0, 0.5, -0.25, -1.0, 0.999969482421875, 3.0517578125e-05],
    "instrument": [656],
    "instrument_family": [0],
    "instrument_family_str": [b"bass"],
    "instrument_source": [2],
    "note": [217499],
    "note_str": [b"bass_synthetic_068-049-025"],
    "pitch": [49],
    "qualities": [0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
    "sample_rate": [16000],
    "velocity": [25],
}


def _example_class() -> type:
    """``tf.train.Example`` from a descriptor equal to TensorFlow's feature.proto and example.proto."""
    f = descriptor_pb2.FileDescriptorProto(name="oracle_example.proto", package="tensorflow", syntax="proto3")
    label, t = descriptor_pb2.FieldDescriptorProto, descriptor_pb2.FieldDescriptorProto
    for name, kind, packed in (("BytesList", t.TYPE_BYTES, False), ("FloatList", t.TYPE_FLOAT, True),
                               ("Int64List", t.TYPE_INT64, True)):
        m = f.message_type.add(name=name)
        field = m.field.add(name="value", number=1, label=label.LABEL_REPEATED, type=kind)
        if packed:
            field.options.packed = True
    feature = f.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, (name, type_name) in enumerate((("bytes_list", "BytesList"), ("float_list", "FloatList"),
                                                ("int64_list", "Int64List")), start=1):
        feature.field.add(name=name, number=number, label=label.LABEL_OPTIONAL, type=t.TYPE_MESSAGE,
                          type_name=f".tensorflow.{type_name}", oneof_index=0)
    features = f.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, label=label.LABEL_OPTIONAL, type=t.TYPE_STRING)
    entry.field.add(name="value", number=2, label=label.LABEL_OPTIONAL, type=t.TYPE_MESSAGE,
                    type_name=".tensorflow.Feature")
    features.field.add(name="feature", number=1, label=label.LABEL_REPEATED, type=t.TYPE_MESSAGE,
                       type_name=".tensorflow.Features.FeatureEntry")
    example = f.message_type.add(name="Example")
    example.field.add(name="features", number=1, label=label.LABEL_OPTIONAL, type=t.TYPE_MESSAGE,
                      type_name=".tensorflow.Features")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


def example_payload() -> bytes:
    example = _example_class()()
    for key, values in EXAMPLE.items():
        feature = example.features.feature[key]
        if key == "audio":
            feature.float_list.value.extend(values)
        elif isinstance(values[0], bytes):
            feature.bytes_list.value.extend(values)
        else:
            feature.int64_list.value.extend(values)
    return example.SerializeToString(deterministic=True)


def main() -> None:
    buf = io.BytesIO()
    writer = RecordWriter(buf)
    for payload in [*RAW_PAYLOADS, example_payload()]:
        writer.write(payload)
    OUT.write_bytes(buf.getvalue())
    print(f"{OUT}: {len(buf.getvalue())} bytes, {len(RAW_PAYLOADS) + 1} records")
    assert struct.unpack_from("<Q", buf.getvalue())[0] == 0  # the first record is the empty one


if __name__ == "__main__":
    main()
