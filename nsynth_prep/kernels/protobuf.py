"""Numba kernels for TFRecord files: CRC32C and the ``tf.train.Example`` protobuf wire format.

Pure functions over uint8 arrays, each with a plain-Python/numpy reference used by the tests.
Malformed input never raises inside numba: kernels return a negative error code that
:mod:`nsynth_prep.readers.tfrecord` turns into a message naming the file and record.
"""

from __future__ import annotations

import numba
import numpy as np

CRC32C_POLY = 0x82F63B78  # Castagnoli, bit-reflected
MASK_DELTA = 0xA282EAD8  # TFRecord's CRC mask constant

# Error codes returned by the protobuf kernels.
ERR_TRUNCATED = -1
ERR_WIRE_TYPE = -2
ERR_TOO_MANY = -3
ERR_VARINT = -4
PROTO_ERRORS = {
    ERR_TRUNCATED: "truncated protobuf message",
    ERR_WIRE_TYPE: "unsupported protobuf wire type",
    ERR_TOO_MANY: "more features than expected",
    ERR_VARINT: "varint longer than 10 bytes",
}

# Feature kinds, as the field numbers of tf.train.Feature's oneof.
KIND_BYTES, KIND_FLOAT, KIND_INT64 = 1, 2, 3


def _crc32c_tables() -> np.ndarray:
    """(8, 256) uint64 slicing-by-8 tables; row 0 is the classic byte table."""
    tables = np.zeros((8, 256), np.uint64)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ CRC32C_POLY if c & 1 else c >> 1
        tables[0, i] = c
    for k in range(1, 8):
        for i in range(256):
            prev = int(tables[k - 1, i])
            tables[k, i] = (prev >> 8) ^ int(tables[0, prev & 0xFF])
    return tables


CRC32C_TABLES = _crc32c_tables()


@numba.njit(cache=True, nogil=True)
def _crc32c(buf, start, stop, tables):  # type: ignore[no-untyped-def]
    m8 = np.uint64(0xFF)
    crc = np.uint64(0xFFFFFFFF)
    i = start
    while i + 8 <= stop:
        lo = (np.uint64(buf[i]) | (np.uint64(buf[i + 1]) << np.uint64(8))
              | (np.uint64(buf[i + 2]) << np.uint64(16)) | (np.uint64(buf[i + 3]) << np.uint64(24)))
        crc ^= lo
        crc = (tables[7, crc & m8] ^ tables[6, (crc >> np.uint64(8)) & m8]
               ^ tables[5, (crc >> np.uint64(16)) & m8] ^ tables[4, (crc >> np.uint64(24)) & m8]
               ^ tables[3, np.uint64(buf[i + 4])] ^ tables[2, np.uint64(buf[i + 5])]
               ^ tables[1, np.uint64(buf[i + 6])] ^ tables[0, np.uint64(buf[i + 7])])
        i += 8
    while i < stop:
        crc = tables[0, (crc ^ np.uint64(buf[i])) & m8] ^ (crc >> np.uint64(8))
        i += 1
    return crc ^ np.uint64(0xFFFFFFFF)


def crc32c(buf: np.ndarray, start: int = 0, stop: int | None = None) -> int:
    """CRC32C (Castagnoli) of ``buf[start:stop]`` ((n,) uint8)."""
    return int(_crc32c(buf, start, len(buf) if stop is None else stop, CRC32C_TABLES))


def crc32c_reference(data: bytes) -> int:
    """Bit-at-a-time CRC32C, the textbook definition."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ CRC32C_POLY if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def masked_crc(crc: int) -> int:
    """TFRecord's masked CRC: rotate right by 15 and add a constant, mod 2**32."""
    return (((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF


@numba.njit(cache=True, nogil=True)
def _varint(buf, pos, stop):  # type: ignore[no-untyped-def]
    """(value as uint64, next position) or (0, error code)."""
    result = np.uint64(0)
    shift = np.uint64(0)
    for _ in range(10):
        if pos >= stop:
            return np.uint64(0), ERR_TRUNCATED
        b = np.uint64(buf[pos])
        pos += 1
        result |= (b & np.uint64(0x7F)) << shift
        if b < np.uint64(0x80):
            return result, pos
        shift += np.uint64(7)
    return np.uint64(0), ERR_VARINT


@numba.njit(cache=True, nogil=True)
def _len_field(buf, pos, stop):  # type: ignore[no-untyped-def]
    """(start, end) of a length-delimited value at ``pos``, or (error, error)."""
    length, pos = _varint(buf, pos, stop)
    if pos < 0:
        return pos, pos
    # Compare in uint64 against the bytes left *before* adding: a length near 2**64 read as
    # int64 is negative, and ``pos + length`` would move backwards (an endless walk).
    if length > np.uint64(stop - pos):
        return ERR_TRUNCATED, ERR_TRUNCATED
    return pos, pos + np.int64(length)


@numba.njit(cache=True, nogil=True)
def _skip(buf, pos, stop, wire):  # type: ignore[no-untyped-def]
    """Position after a field's value of the given wire type, or an error code."""
    if wire == 0:
        _, pos = _varint(buf, pos, stop)
        return pos
    if wire == 1:
        return pos + 8 if stop - pos >= 8 else ERR_TRUNCATED
    if wire == 5:
        return pos + 4 if stop - pos >= 4 else ERR_TRUNCATED
    if wire == 2:
        _, end = _len_field(buf, pos, stop)
        return end
    return ERR_WIRE_TYPE


@numba.njit(cache=True, nogil=True)
def _field(buf, pos, stop):  # type: ignore[no-untyped-def]
    """One field at ``pos``: (field number, wire type, value start, value end, next position).

    For length-delimited fields (wire type 2) the value span is the payload; for the others it
    is the raw value bytes. On malformed input the next position is a negative error code.
    """
    tag, p = _varint(buf, pos, stop)
    if p < 0:
        return 0, 0, 0, 0, p
    field, wire = np.int64(tag >> np.uint64(3)), np.int64(tag & np.uint64(7))
    if wire == 2:
        start, end = _len_field(buf, p, stop)
        return field, wire, start, end, end
    nxt = _skip(buf, p, stop, wire)
    return field, wire, p, nxt, nxt


@numba.njit(cache=True, nogil=True)
def _parse_feature_entry(buf, pos, stop, row):  # type: ignore[no-untyped-def]
    """Fill ``row`` = (key_start, key_len, kind, list_start, list_len) from a map entry."""
    row[:] = -1
    while pos < stop:
        field, wire, start, end, pos = _field(buf, pos, stop)
        if pos < 0:
            return pos
        if wire != 2:
            continue
        if field == 1:
            row[0], row[1] = start, end - start
        elif field == 2:  # tf.train.Feature: oneof bytes_list=1, float_list=2, int64_list=3
            p = start
            while p < end:
                kind, kwire, ls, le, p = _field(buf, p, end)
                if p < 0:
                    return p
                if kwire == 2:
                    row[2], row[3], row[4] = kind, ls, le - ls
    return 0


@numba.njit(cache=True, nogil=True)
def parse_example(buf, table):  # type: ignore[no-untyped-def]
    """Walk a serialized ``tf.train.Example``.

    Parameters
    ----------
    buf
        (n,) uint8, the record payload.
    table
        (max_features, 5) int64 to fill, one row per feature:
        key_start, key_len, kind (1 bytes, 2 float, 3 int64), list_start, list_len.

    Returns
    -------
    Number of features found, or a negative error code.
    """
    stop = len(buf)
    pos = 0
    n = 0
    while pos < stop:
        field, wire, fstart, fend, pos = _field(buf, pos, stop)
        if pos < 0:
            return pos
        if field != 1 or wire != 2:  # Example.features is field 1
            continue
        p = fstart
        while p < fend:  # Features.feature: repeated map entries, field 1
            efield, ewire, es, ee, p = _field(buf, p, fend)
            if p < 0:
                return p
            if efield != 1 or ewire != 2:
                continue
            if n >= table.shape[0]:
                return ERR_TOO_MANY
            err = _parse_feature_entry(buf, es, ee, table[n])
            if err < 0:
                return err
            n += 1
    return n


@numba.njit(cache=True, nogil=True)
def decode_int64_list(buf, start, stop, out):  # type: ignore[no-untyped-def]
    """Values of an ``Int64List`` message at buf[start:stop], packed or not, into ``out``.

    Returns the count, or a negative error code (or ERR_TOO_MANY if ``out`` is too small).
    """
    n = 0
    pos = start
    while pos < stop:
        field, wire, vs, ve, pos = _field(buf, pos, stop)
        if pos < 0:
            return pos
        if field != 1 or (wire != 0 and wire != 2):
            continue
        while vs < ve:  # one varint (wire type 0) or a packed run (2)
            v, vs = _varint(buf, vs, ve)
            if vs < 0:
                return vs
            if n >= len(out):
                return ERR_TOO_MANY
            out[n] = np.int64(v)  # two's complement, as protobuf encodes negative int64
            n += 1
    return n


@numba.njit(cache=True, nogil=True)
def float_list_span(buf, start, stop, spans):  # type: ignore[no-untyped-def]
    """Byte spans of the float32 data in a ``FloatList`` at buf[start:stop].

    Packed values give one span each run; unpacked (wire type 5) values give a 4-byte span
    each. Fills ``spans`` ((k, 2) int64: byte offset, float count) and returns how many
    spans, or a negative error code.
    """
    n = 0
    pos = start
    while pos < stop:
        field, wire, vs, ve, pos = _field(buf, pos, stop)
        if pos < 0:
            return pos
        if field != 1 or (wire != 2 and wire != 5):
            continue
        if (ve - vs) % 4 != 0:
            return ERR_TRUNCATED
        if n >= spans.shape[0]:
            return ERR_TOO_MANY
        spans[n, 0], spans[n, 1] = vs, (ve - vs) // 4
        n += 1
    return n


def decode_varints_reference(data: bytes) -> list[int]:
    """Plain-Python packed varint decoding (as signed int64)."""
    values, value, shift = [], 0, 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            values.append(value - (1 << 64) if value >= 1 << 63 else value)
            value, shift = 0, 0
    if shift:
        raise ValueError("truncated varint")
    return values


# --- plain-Python reference of the Example walker (the tests hold the kernels to it) ----------


def _varint_reference(data: bytes, pos: int, stop: int) -> tuple[int, int]:
    """(value mod 2**64, next position) or (0, error code), as :func:`_varint`."""
    value = 0
    for k in range(10):
        if pos >= stop:
            return 0, ERR_TRUNCATED
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << (7 * k)
        if byte < 0x80:
            return value & 0xFFFFFFFFFFFFFFFF, pos
    return 0, ERR_VARINT


def _field_reference(data: bytes, pos: int, stop: int) -> tuple[int, int, int, int, int]:
    """(field, wire type, value start, value end, next position or error code), as :func:`_field`."""
    tag, p = _varint_reference(data, pos, stop)
    if p < 0:
        return 0, 0, 0, 0, p
    field, wire = tag >> 3, tag & 7
    if wire == 0:
        _, nxt = _varint_reference(data, p, stop)
    elif wire in (1, 5):
        width = 8 if wire == 1 else 4
        nxt = p + width if stop - p >= width else ERR_TRUNCATED
    elif wire == 2:
        length, p = _varint_reference(data, p, stop)
        if p < 0 or length > stop - p:  # Python ints cannot wrap: the textbook check
            err = p if p < 0 else ERR_TRUNCATED
            return field, wire, err, err, err
        return field, wire, p, p + length, p + length
    else:
        nxt = ERR_WIRE_TYPE
    return field, wire, p, nxt, nxt


def parse_example_reference(data: bytes, max_features: int) -> list[tuple[int, int, int, int, int]] | int:
    """What :func:`parse_example` finds, in plain Python: the table's rows, or the error code."""
    rows: list[tuple[int, int, int, int, int]] = []
    pos, stop = 0, len(data)
    while pos < stop:
        field, wire, fstart, fend, pos = _field_reference(data, pos, stop)
        if pos < 0:
            return pos
        if field != 1 or wire != 2:
            continue
        p = fstart
        while p < fend:
            efield, ewire, es, ee, p = _field_reference(data, p, fend)
            if p < 0:
                return p
            if efield != 1 or ewire != 2:
                continue
            if len(rows) >= max_features:
                return ERR_TOO_MANY
            row = [-1] * 5
            q = es
            while q < ee:
                f, w, s, e, q = _field_reference(data, q, ee)
                if q < 0:
                    return q
                if w == 2 and f == 1:
                    row[0], row[1] = s, e - s
                elif w == 2 and f == 2:
                    r = s
                    while r < e:
                        kind, kwire, ls, le, r = _field_reference(data, r, e)
                        if r < 0:
                            return r
                        if kwire == 2:
                            row[2], row[3], row[4] = kind, ls, le - ls
            rows.append((row[0], row[1], row[2], row[3], row[4]))
    return rows
