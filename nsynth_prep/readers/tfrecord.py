"""TFRecord files of ``tf.train.Example`` notes, read and written without TensorFlow.

Record framing: uint64 LE length, uint32 masked CRC32C of those 8 bytes, the payload, uint32
masked CRC32C of the payload. Every CRC is verified; every error names the file, the record
index and its byte offset.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from nsynth_prep.errors import TFRecordError
from nsynth_prep.kernels.audio import first_inexact
from nsynth_prep.kernels.crc32c import payload_crc
from nsynth_prep.kernels.protobuf import (
    ERR_TRUNCATED,
    ERR_VARINT,
    KIND_BYTES,
    KIND_FLOAT,
    KIND_INT64,
    PROTO_ERRORS,
    crc32c,
    decode_int64_list,
    float_list_span,
    masked_crc,
)
from nsynth_prep.kernels.protobuf import parse_example as parse_example_wire
from nsynth_prep.labels import NOTE_SAMPLES, LabelError, NoteLabels, parse_example

MAX_FEATURES = 64  # NSynth examples have 14; more means a foreign file
MAX_RECORD_BYTES = 64 << 20  # a guard against reading a garbage length as a huge record



def iter_records(path: Path) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(index, offset, payload)`` for every record, both CRCs verified; ``payload`` is
    a read-only (n,) uint8 array."""
    with open(path, "rb") as f:
        yield from _iter_open(f, str(path))


def _iter_open(f: BinaryIO, name: str) -> Iterator[tuple[int, int, np.ndarray]]:
    index, offset = 0, 0
    while (length := read_header(f, index, offset, name)) is not None:
        yield index, offset, read_payload(f, index, offset, length, name)
        index += 1
        offset += 12 + length + 4


def read_header(f: BinaryIO, index: int, offset: int, name: str) -> int | None:
    """Payload length of the record at ``offset`` (where ``f`` stands), its CRC verified; None at the end."""
    header = f.read(12)
    if not header:
        return None
    where = f"{name}: record {index} at byte {offset}"
    if len(header) != 12:
        raise TFRecordError(f"{where}: truncated record header ({len(header)} of 12 bytes)")
    length, length_crc = struct.unpack("<QI", header)
    if masked_crc(payload_crc(header[:8])) != length_crc:
        raise TFRecordError(f"{where}: length CRC mismatch (corrupt file or not a TFRecord)")
    if length > MAX_RECORD_BYTES:
        raise TFRecordError(f"{where}: record claims {length} bytes")
    return int(length)


def read_payload(f: BinaryIO, index: int, offset: int, length: int, name: str) -> np.ndarray:
    """The payload after a header just read, its CRC verified: a read-only (length,) uint8 array."""
    payload, trailer = f.read(length), f.read(4)
    where = f"{name}: record {index} at byte {offset}"
    if len(payload) + len(trailer) != length + 4:
        raise TFRecordError(f"{where}: truncated record ({len(payload) + len(trailer)} of {length + 4} bytes)")
    if masked_crc(payload_crc(payload)) != struct.unpack("<I", trailer)[0]:
        raise TFRecordError(f"{where}: payload CRC mismatch")
    return np.frombuffer(payload, np.uint8)


def record_spans(path: Path) -> tuple[np.ndarray, np.ndarray, TFRecordError | None]:
    """Offsets and payload lengths of every record, from the headers alone (payloads are
    skipped with a seek, so this costs one small read per record).

    A framing error ends the walk: it is returned with the records before it, since nothing
    after a bad length can be located.
    """
    size = path.stat().st_size
    offsets: list[int] = []
    lengths: list[int] = []
    error = None
    with open(path, "rb") as f:
        index, offset = 0, 0
        try:
            while (length := read_header(f, index, offset, str(path))) is not None:
                if offset + 16 + length > size:
                    raise TFRecordError(f"{path}: record {index} at byte {offset}: truncated record "
                                        f"({size - offset - 12} of {length + 4} bytes)")
                offsets.append(offset)
                lengths.append(length)
                index, offset = index + 1, offset + 16 + length
                f.seek(offset)
        except TFRecordError as exc:
            error = exc
    return np.array(offsets, np.int64), np.array(lengths, np.int64), error


def decode_example(payload: np.ndarray, where: str) -> tuple[NoteLabels, int, int]:
    """Labels of an NSynth Example and where its audio lies, both validated.

    The labels are checked as examples.json entries are (:func:`.labels.parse_example`), a
    feature given twice is refused, and the audio must be 64,000 finite floats in [-1, 1]
    (checked with two numpy reductions over the float span: no per-sample Python).

    Returns
    -------
    (labels, audio_offset, audio_count)
        ``payload[audio_offset : audio_offset + 4 * audio_count]`` holds the float32 samples.
    """
    table = np.empty((MAX_FEATURES, 5), np.int64)
    n = parse_example_wire(payload, table)
    if n < 0:
        raise TFRecordError(f"{where}: {PROTO_ERRORS[n]}")
    entry: dict[str, object] = {}
    audio = None
    ints = np.empty(16, np.int64)
    spans = np.empty((4, 2), np.int64)
    for key_start, key_len, kind, start, length in table[:n].tolist():  # plain ints: numpy scalars are slow here
        key = payload[key_start : key_start + key_len].tobytes().decode("utf-8", "replace")
        if key in entry or (key == "audio" and audio is not None):
            raise TFRecordError(f"{where}: feature {key!r} is there twice")
        if kind == KIND_INT64:
            count = decode_int64_list(payload, start, start + length, ints)
            if count < 0:
                raise TFRecordError(f"{where}: feature {key!r}: {PROTO_ERRORS[count]}")
            # One value is a label; anything else stays a list, which the label checks refuse.
            entry[key] = int(ints[0]) if count == 1 and key != "qualities" else ints[:count].tolist()
        elif kind == KIND_FLOAT and key == "audio":
            count = float_list_span(payload, start, start + length, spans)
            if count != 1:
                raise TFRecordError(f"{where}: audio is not one packed float list")
            audio = (int(spans[0, 0]), int(spans[0, 1]))
        elif kind == KIND_BYTES:
            values = _bytes_list(payload[start : start + length].tobytes(), f"{where}: feature {key!r}")
            entry[key] = values[0] if len(values) == 1 and key != "qualities_str" else values
    if audio is None:
        raise TFRecordError(f"{where}: no 'audio' feature")
    if audio[1] != NOTE_SAMPLES:
        raise TFRecordError(f"{where}: audio has {audio[1]} samples; NSynth notes have {NOTE_SAMPLES}")
    name = entry.get("note_str")
    if not isinstance(name, str):
        raise TFRecordError(f"{where}: no single 'note_str' feature")
    try:
        labels = parse_example(name, entry, where)
    except LabelError as exc:
        raise TFRecordError(str(exc)) from None
    samples = np.frombuffer(payload, "<f4", audio[1], audio[0])
    # NSynth's floats are its 16-bit samples / 32768: the cache stores them back as int16, so
    # any other float (NaN, inf, out of range, between two 16-bit steps) is refused here.
    first = first_inexact(samples)
    if first >= 0:
        low, high = samples.min(), samples.max()
        bad = int(np.count_nonzero(~np.isfinite(samples)))
        if bad or not (-1.0 <= low and high <= 1.0):
            what = f"{bad} NaN or infinite samples" if bad else f"samples from {low:g} to {high:g}"
            raise TFRecordError(f"{where}: note {name}: audio has {what}; NSynth audio is in [-1, 1]")
        raise TFRecordError(f"{where}: note {name}: audio sample {first} is {float(samples[first])!r}, not a 16-bit "
                            "sample (int16 / 32768, as NSynth's are)")
    return labels, audio[0], audio[1]


def _bytes_list(message: bytes, where: str) -> list[str]:
    """Strings of a ``BytesList`` message (repeated field 1, length-delimited)."""
    values, pos = [], 0
    while pos < len(message):
        tag, pos = _read_varint(message, pos, where)
        if tag != (1 << 3 | 2):
            raise TFRecordError(f"{where}: unexpected field tag {tag} in a BytesList")
        length, pos = _read_varint(message, pos, where)
        if length > len(message) - pos:
            raise TFRecordError(f"{where}: {PROTO_ERRORS[ERR_TRUNCATED]}")
        values.append(message[pos : pos + length].decode("utf-8", "replace"))
        pos += length
    return values


def _read_varint(data: bytes, pos: int, where: str) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data) and shift < 70:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise TFRecordError(f"{where}: {PROTO_ERRORS[ERR_VARINT if shift >= 70 else ERR_TRUNCATED]}")


# --- writing (the synthetic corpus, tests) --------------------------------------------------


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _len_delimited(field: int, body: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(body)) + body


def encode_example(features: dict[str, tuple[str, ...] | list[int] | np.ndarray]) -> bytes:
    """Serialize a ``tf.train.Example``: tuples of str -> BytesList, lists of int -> Int64List
    (packed), float arrays -> FloatList (packed float32)."""
    entries = []
    for key, value in features.items():
        if isinstance(value, np.ndarray):
            data = np.ascontiguousarray(value, dtype="<f4").tobytes()
            feature = _len_delimited(KIND_FLOAT, _len_delimited(1, data))
        elif isinstance(value, tuple):
            body = b"".join(_len_delimited(1, str(s).encode()) for s in value)
            feature = _len_delimited(KIND_BYTES, body)
        else:
            body = b"".join(_varint(int(v)) for v in value)
            feature = _len_delimited(KIND_INT64, _len_delimited(1, body) if value else b"")
        entry = _len_delimited(1, key.encode()) + _len_delimited(2, feature)
        entries.append(_len_delimited(1, entry))
    return _len_delimited(1, b"".join(entries))


def frame_record(payload: bytes) -> bytes:
    """One TFRecord record: length, masked CRC of the length, payload, masked CRC of payload."""
    length = struct.pack("<Q", len(payload))
    length_crc = masked_crc(crc32c(np.frombuffer(length, np.uint8)))
    data_crc = masked_crc(crc32c(np.frombuffer(payload, np.uint8)))
    return length + struct.pack("<I", length_crc) + payload + struct.pack("<I", data_crc)
